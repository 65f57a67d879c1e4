/*
 * Private to the nbd module: the NBD wire format (doc/proto.md of
 * NetworkBlockDevice/nbd) and pure parsers over byte buffers, free of any
 * socket or connection state so that unit tests and the fuzzer can call
 * them directly.
 */
#ifndef DUET_NBD_PROTO_H
#define DUET_NBD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nbd/nbd.h"

/* ---- magics ---- */
#define NBD_MAGIC		   0x4e42444d41474943ull /* "NBDMAGIC" */
#define NBD_IHAVEOPT		   0x49484156454f5054ull /* "IHAVEOPT" */
#define NBD_REP_MAGIC		   0x0003e889045565a9ull
#define NBD_REQUEST_MAGIC	   0x25609513u
#define NBD_SIMPLE_REPLY_MAGIC	   0x67446698u
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33efu

/* ---- handshake ---- */
#define NBD_FLAG_FIXED_NEWSTYLE	  (1u << 0)
#define NBD_FLAG_NO_ZEROES	  (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE (1u << 0)
#define NBD_FLAG_C_NO_ZEROES	  (1u << 1)

#define NBD_OPT_EXPORT_NAME	  1u
#define NBD_OPT_ABORT		  2u
#define NBD_OPT_LIST		  3u
#define NBD_OPT_STARTTLS	  5u
#define NBD_OPT_INFO		  6u
#define NBD_OPT_GO		  7u
#define NBD_OPT_STRUCTURED_REPLY  8u
#define NBD_OPT_LIST_META_CONTEXT 9u
#define NBD_OPT_SET_META_CONTEXT  10u

#define NBD_REP_ACK		    1u
#define NBD_REP_SERVER		    2u
#define NBD_REP_INFO		    3u
#define NBD_REP_META_CONTEXT	    4u
#define NBD_REP_ERR_UNSUP	    (0x80000000u + 1)
#define NBD_REP_ERR_POLICY	    (0x80000000u + 2)
#define NBD_REP_ERR_INVALID	    (0x80000000u + 3)
#define NBD_REP_ERR_PLATFORM	    (0x80000000u + 4)
#define NBD_REP_ERR_TLS_REQD	    (0x80000000u + 5)
#define NBD_REP_ERR_UNKNOWN	    (0x80000000u + 6)
#define NBD_REP_ERR_SHUTDOWN	    (0x80000000u + 7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD (0x80000000u + 8)
#define NBD_REP_ERR_TOO_BIG	    (0x80000000u + 9)

#define NBD_INFO_EXPORT	     0u
#define NBD_INFO_NAME	     1u
#define NBD_INFO_DESCRIPTION 2u
#define NBD_INFO_BLOCK_SIZE  3u

/* ---- transmission ---- */
#define NBD_FLAG_HAS_FLAGS	   (1u << 0)
#define NBD_FLAG_READ_ONLY	   (1u << 1)
#define NBD_FLAG_SEND_FLUSH	   (1u << 2)
#define NBD_FLAG_SEND_FUA	   (1u << 3)
#define NBD_FLAG_ROTATIONAL	   (1u << 4)
#define NBD_FLAG_SEND_TRIM	   (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES (1u << 6)
#define NBD_FLAG_SEND_DF	   (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN	   (1u << 8)
#define NBD_FLAG_SEND_CACHE	   (1u << 10)
#define NBD_FLAG_SEND_FAST_ZERO	   (1u << 11)

#define NBD_REPLY_FLAG_DONE	    (1u << 0)
#define NBD_REPLY_TYPE_NONE	    0u
#define NBD_REPLY_TYPE_OFFSET_DATA  1u
#define NBD_REPLY_TYPE_OFFSET_HOLE  2u
#define NBD_REPLY_TYPE_BLOCK_STATUS 5u
#define NBD_REPLY_TYPE_ERROR	    (0x8000u + 1)
#define NBD_REPLY_TYPE_ERROR_OFFSET (0x8000u + 2)

#define NBD_EPERM     1u
#define NBD_EIO	      5u
#define NBD_ENOMEM    12u
#define NBD_EINVAL    22u
#define NBD_ENOSPC    28u
#define NBD_EOVERFLOW 75u
#define NBD_ENOTSUP   95u
#define NBD_ESHUTDOWN 108u

/* ---- sizes ---- */
#define NBD_GREETING_LEN  18u	      /* magic, IHAVEOPT, handshake flags */
#define NBD_OPT_HDR_LEN	  16u	      /* IHAVEOPT, option, length */
#define NBD_REQ_LEN	  28u	      /* request header */
#define NBD_SIMPLE_LEN	  16u	      /* simple reply header */
#define NBD_CHUNK_LEN	  20u	      /* structured reply chunk header */
#define NBD_STRING_MAX	  4096u	      /* longest name or query the spec allows */
#define NBD_OPT_DATA_MAX  (64u << 10) /* option data we buffer and parse */
#define NBD_OPT_SKIP_MAX  (16u << 20) /* larger option data: disconnect */
#define NBD_META_ALLOC_ID 1u	      /* our context id for base:allocation */
#define NBD_MAX_EXTENTS	  2048u	      /* extents per BLOCK_STATUS reply */

/* ---- big-endian accessors ---- */
static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t get_be64(const uint8_t *p)
{
	return ((uint64_t)get_be32(p) << 32) | get_be32(p + 4);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

/* ---- pure parsers ---- */

struct nbd_request {
	uint16_t flags;
	uint16_t type;
	uint64_t cookie;
	uint64_t offset;
	uint32_t length;
};

/** Parse a NBD_REQ_LEN-byte request header. @return 0 or -EPROTO (magic). */
int nbd_parse_request(const uint8_t *p, struct nbd_request *r);

/** Parse a NBD_OPT_HDR_LEN-byte option header. @return 0 or -EPROTO. */
int nbd_parse_opt_hdr(const uint8_t *p, uint32_t *opt, uint32_t *len);

/** NBD_OPT_INFO / NBD_OPT_GO data. */
struct nbd_opt_go {
	const char *name; /* not NUL-terminated */
	uint32_t name_len;
	bool want_name;
	bool want_desc;
	bool want_block_size;
};
/** @return 0, or -EINVAL when the lengths do not add up or the name is bad. */
int nbd_parse_opt_go(const uint8_t *d, uint32_t len, struct nbd_opt_go *out);

/** NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT data. */
struct nbd_opt_meta {
	const char *name;
	uint32_t name_len;
	uint32_t n_queries;
	bool all;	  /* LIST with zero queries: every context */
	bool match_alloc; /* some query selects base:allocation */
};
/**
 * Validate the whole option and match its queries against the one context
 * we have. @p list selects LIST semantics ("base:" is a wildcard there and
 * ignored by SET). @return 0 or -EINVAL (syntax: lengths, missing colon).
 */
int nbd_parse_opt_meta(const uint8_t *d, uint32_t len, bool list, struct nbd_opt_meta *out);

/** True when @p s (length @p len) is a valid NBD string: no NUL, <= 4096. */
bool nbd_string_ok(const char *s, uint32_t len);

/** What the server enforces on requests of one connection. */
struct nbd_xmit_params {
	uint64_t size;
	uint64_t max_payload;
	uint32_t min_block;
	uint16_t tflags; /* as advertised */
	bool structured;
	bool meta_alloc; /* base:allocation selected for this export */
};

/**
 * Check a request against the negotiated parameters.
 * @return 0 or the NBD error to reply; @p msg a static explanation;
 * @p fatal when the stream cannot be trusted any more (payload too large):
 * the connection must close after the reply.
 */
uint32_t nbd_check_request(const struct nbd_xmit_params *p, const struct nbd_request *r,
			   const char **msg, bool *fatal);

/** Transmission flags for an export, given what was negotiated. */
uint16_t nbd_tflags(const struct nbd_export_info *info, bool structured);

/** Map 0 or a negative errno from a backend to an NBD error for @p type. */
uint32_t nbd_wire_error(int err, uint16_t type);

/** A short human text for an NBD error. */
const char *nbd_error_text(uint32_t nbd_err);

/**
 * Encode backend extents as base:allocation descriptors, in place over
 * @p ext (the 8-byte wire records never overtake the 16-byte structs).
 * Clips to the export end, to @p req_len with @p req_one, to 32-bit
 * lengths; merges neighbours with equal flags; stops once the request is
 * covered. @return the number of descriptors (0: the backend gave none).
 */
uint32_t nbd_encode_extents(struct nbd_extent *ext, uint32_t n, uint64_t offset, uint64_t req_len,
			    uint64_t size, bool req_one);

#endif
