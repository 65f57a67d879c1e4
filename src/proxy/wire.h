/* Wire format of the proxy's messages on its CCM ports (docs/PROXY.md).
 * Every integer is little-endian; the structs have no padding (checked
 * below). The decoders check structure only (magic, sizes, flags, command
 * types, names); what depends on state (sessions, volume ids, bounds) is
 * checked by the side that owns that state. Private to src/proxy. */
#ifndef DUET_PROXY_WIRE_H
#define DUET_PROXY_WIRE_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PX_MAGIC   0x31585044u /* "DPX1" */
#define PX_VERSION 1u

/* WRITE data up to this size rides in the request message; bigger goes by
 * RDMA (the server reads it from the forwarder's slot). */
#define PX_INLINE_MAX 8192u
/* READ data up to PX_INLINE_MAX comes back in the reply (the forwarder sets
 * PX_F_INLINE on the request) only while fewer than this many requests are
 * in flight: one interconnect round trip less than an RDMA write that must
 * be delivered before the reply. Under load it goes by RDMA: the CCM MACs
 * every message byte (SHA-256, about 3 us per 4 KiB at each end), which
 * costs more CPU than the RDMA write plus a small reply that shares a batch
 * with others (docs/PROXY.md, "Performance"). */
#define PX_READ_INLINE_LOAD 4u
/* Extents of a BLOCK_STATUS reply (one message). */
#define PX_MAX_EXTENTS 1000u
/* Volumes in one PX_VOLS message, and in all. */
#define PX_VOLS_PER_MSG 185u
#define PX_MAX_VOLS	1024u
#define PX_NAME_MAX	64u
/* Largest request length the server takes (chunks are smaller). */
#define PX_CHUNK_MAX (64u << 20)

enum px_type {
	PX_HELLO = 1, /* forwarder -> server: first message of a port, each session */
	PX_VOLS = 2,  /* server -> forwarder: volume list (after HELLO, on change) */
	PX_REQ = 3,   /* forwarder -> server: one forwarded request */
	PX_REP = 4,   /* server -> forwarder: its result */
	PX_BATCH = 5, /* several of the above in one CCM message */
};

/* Header flags. */
#define PX_F_RETRY  (1u << 0) /* REQ: sent before, in an earlier session */
#define PX_F_NOEXEC (1u << 1) /* REQ: only report; never execute (abandoned request) */
#define PX_F_INLINE (1u << 2) /* REQ WRITE / REP READ: data follows; REQ READ: reply inline */
#define PX_F_FIRST  (1u << 3) /* VOLS: first message of a list */
#define PX_F_LAST   (1u << 4) /* VOLS: last message of a list */

struct px_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t flags;
};
static_assert(sizeof(struct px_hdr) == 8, "header layout");

struct px_hello {
	struct px_hdr h;
	uint32_t version;
	uint32_t rsvd;
	uint64_t session;   /* the forwarder's session id (random, per process) */
	uint64_t data_size; /* bytes at the start of its port memory holding data */
	uint64_t chunk;	    /* largest request it sends */
};
static_assert(sizeof(struct px_hello) == 40, "hello layout");

/* Volume flags. */
#define PXV_READ_ONLY	     (1u << 0)
#define PXV_CAN_TRIM	     (1u << 1)
#define PXV_CAN_ZERO	     (1u << 2)
#define PXV_CAN_FAST_ZERO    (1u << 3)
#define PXV_CAN_CACHE	     (1u << 4)
#define PXV_CAN_FLUSH	     (1u << 5)
#define PXV_CAN_FUA	     (1u << 6)
#define PXV_CAN_MULTI_CONN   (1u << 7)
#define PXV_CAN_BLOCK_STATUS (1u << 8)
#define PXV_ALL		     0x1ffu

struct px_vol {
	uint32_t id;
	uint32_t flags; /* PXV_* */
	uint64_t size;
	uint32_t min_block;
	uint32_t pref_block;
	char name[PX_NAME_MAX]; /* NUL-terminated, zero-padded */
};
static_assert(sizeof(struct px_vol) == 88, "volume layout");

struct px_vols {
	struct px_hdr h;
	uint32_t count;
	uint32_t rsvd;
	uint64_t server_session; /* the server's session id: ids are valid within it */
				 /* count x struct px_vol */
};
static_assert(sizeof(struct px_vols) == 24, "volume list layout");

struct px_req {
	struct px_hdr h;
	uint32_t vol;
	uint16_t cmd;	 /* enum nbd_cmd_type */
	uint16_t cflags; /* NBD_CMD_FLAG_* */
	uint64_t session;
	uint64_t seq;
	uint64_t offset;
	uint32_t length;
	uint32_t max_extents; /* BLOCK_STATUS */
	uint64_t data_off;    /* READ/WRITE not inline: where in the forwarder's port memory */
			      /* WRITE with PX_F_INLINE: length bytes of data */
};
static_assert(sizeof(struct px_req) == 56, "request layout");

struct px_rep {
	struct px_hdr h;
	int32_t result; /* 0 or a negative errno */
	uint32_t count; /* BLOCK_STATUS extents that follow */
	uint64_t session;
	uint64_t seq;
	uint32_t length; /* READ: bytes of data (inline, or placed in the slot) */
	uint32_t rsvd;
	/* READ with PX_F_INLINE: length bytes; BLOCK_STATUS: count x px_ext */
};
static_assert(sizeof(struct px_rep) == 40, "reply layout");

struct px_ext {
	uint64_t length;
	uint32_t flags; /* NBD_STATE_* */
	uint32_t rsvd;
};
static_assert(sizeof(struct px_ext) == 16, "extent layout");

static_assert(sizeof(struct px_req) + PX_INLINE_MAX <= 16384, "inline write fits a message");
static_assert(sizeof(struct px_rep) + PX_MAX_EXTENTS * sizeof(struct px_ext) <= 16384,
	      "extents fit a message");
static_assert(sizeof(struct px_vols) + PX_VOLS_PER_MSG * sizeof(struct px_vol) <= 16384,
	      "volume list fits a message");

/* A batch: the records of one loop turn to the same port, each a whole
 * message of the types above, in order. */
struct px_batch {
	struct px_hdr h;
	uint32_t count;
	uint32_t rsvd;
	/* count x (struct px_rec, len bytes, zero padding to 8) */
};
static_assert(sizeof(struct px_batch) == 16, "batch layout");

struct px_rec {
	uint32_t len;
	uint32_t rsvd;
};
static_assert(sizeof(struct px_rec) == 8, "record layout");

#define PX_MSG_MAX	 16384u /* CCM_MSG_MAX */
#define PX_BATCH_MAX	 2048u	/* records in one batch */
#define PX_REC_SIZE(len) (sizeof(struct px_rec) + (((size_t)(len) + 7) & ~(size_t)7))
/* Every record fits a batch on its own. */
static_assert(sizeof(struct px_batch) +
		      PX_REC_SIZE(sizeof(struct px_rep) + PX_MAX_EXTENTS * sizeof(struct px_ext)) <=
		  PX_MSG_MAX,
	      "a reply fits a batch");
static_assert(sizeof(struct px_batch) + PX_REC_SIZE(sizeof(struct px_vols) +
						    PX_VOLS_PER_MSG * sizeof(struct px_vol)) <=
		  PX_MSG_MAX,
	      "a volume list fits a batch");
static_assert(sizeof(struct px_batch) + PX_REC_SIZE(sizeof(struct px_req) + PX_INLINE_MAX) <=
		  PX_MSG_MAX,
	      "a request fits a batch");

/* Decoded messages, in host order. */
struct pxm_hello {
	uint32_t version;
	uint64_t session, data_size, chunk;
};

struct pxm_req {
	uint16_t flags;
	uint32_t vol;
	uint16_t cmd, cflags;
	uint64_t session, seq, offset;
	uint32_t length, max_extents;
	uint64_t data_off;
	const uint8_t *data; /* inline WRITE data (in the message) */
};

struct pxm_rep {
	uint16_t flags;
	int32_t result;
	uint32_t count;
	uint64_t session, seq;
	uint32_t length;
	const uint8_t *data; /* inline READ data, or count px_ext */
};

struct pxm_vols {
	uint16_t flags;
	uint32_t count;
	uint64_t server_session;
	const uint8_t *vols; /* count x struct px_vol, read with px_vol_get() */
};

/* Type of a message (0 when not even a header), without checking further. */
unsigned px_msg_type(const void *msg, size_t len);

/* Walk the records of a batch: call @p fn on each, in order.
 * @return 0, or -EBADMSG (*why set) at the first malformed one; the records
 * before it have been handed over. */
int px_batch_walk(const void *msg, size_t len, void (*fn)(void *arg, const void *rec, size_t len),
		  void *arg, const char **why);
/* Batch building: the header, then records appended at @p off. */
void px_batch_init(void *buf);
size_t px_batch_add(void *buf, size_t off, const void *rec, size_t len);
void px_batch_finish(void *buf, uint32_t count);

/* Each returns 0, or -EBADMSG with *why set to a short reason. */
int px_decode_hello(const void *msg, size_t len, struct pxm_hello *out, const char **why);
int px_decode_req(const void *msg, size_t len, struct pxm_req *out, const char **why);
int px_decode_rep(const void *msg, size_t len, struct pxm_rep *out, const char **why);
int px_decode_vols(const void *msg, size_t len, struct pxm_vols *out, const char **why);
/* One volume entry of a decoded list, checked (name, flags, blocks). */
int px_vol_get(const struct pxm_vols *v, unsigned i, struct px_vol *out, const char **why);
/* One extent of a decoded BLOCK_STATUS reply. */
void px_ext_get(const struct pxm_rep *r, unsigned i, uint64_t *length, uint32_t *flags);

/* Encoders write into @p buf (at least the size they return) and return
 * the message length. */
size_t px_encode_hello(void *buf, const struct pxm_hello *m);
size_t px_encode_req(void *buf, const struct pxm_req *m, const void *data);
/* Header of a reply; the caller appends length data bytes or count extents. */
size_t px_encode_rep(void *buf, const struct pxm_rep *m);
void px_put_ext(void *buf, unsigned i, uint64_t length, uint32_t flags);
size_t px_encode_vols_hdr(void *buf, uint16_t flags, uint32_t count, uint64_t server_session);
void px_put_vol(void *buf, unsigned i, const struct px_vol *v);

/* A volume name we accept: [A-Za-z0-9._-], 1..63 chars. */
bool px_name_ok(const char *s, size_t max);

#endif
