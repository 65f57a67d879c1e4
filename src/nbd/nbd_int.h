/*
 * The one private header of the nbd module, in three layers:
 *
 * 1. the NBD wire format (doc/proto.md of NetworkBlockDevice/nbd) and the
 *    pure parsers of proto.c: no socket, no connection, no state, so that
 *    the unit tests and the fuzzer call them directly on bytes;
 * 2. the server, its connections and their requests (struct nbd_server,
 *    nbd_conn, nbd_xio);
 * 3. the prototypes of the stateful files, grouped by the file that
 *    defines them (those of proto.c sit with their structs in 1).
 *
 * Files and who calls whom (no cycle):
 *   server.c       owns the listener and the connections: accept, receive
 *                  and send paths, timers; it calls the two phases below.
 *   handshake.c    the option phase: called by server.c for each option.
 *   transmission.c the command phase: called by server.c for each request,
 *                  and by the backend through nbd_io_done().
 *   conn.c         the connection helpers both phases may call back into
 *                  (references, request buffers, reply queue, closing); a
 *                  leaf: it calls nothing else in the module. Its only way
 *                  back up is the connection task that server.c installed,
 *                  posted by nbd_conn_schedule().
 *   transport.c    the plain socket under a connection (struct nbd_xport).
 *   tls.c          STARTTLS's TLS session (GnuTLS): the handshake, driven
 *                  by server.c, and the TLS transport that replaces the
 *                  socket one once it is done.
 *   proto.c        pure parsers and checks; called by all of the above.
 *   allow.c        pure parser and matcher of [nbd] allow networks.
 * Tests and the fuzzer may include this header.
 */
#ifndef DUET_NBD_NBD_INT_H
#define DUET_NBD_NBD_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/byteorder.h"
#include "common/list.h"
#include "common/loop.h"
#include "nbd/nbd.h"

/* ======== 1. wire format ======== */

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

/* ---- proto.c: pure parsers and checks ---- */

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

/* ======== 2. server, connections, requests ======== */

#define NBD_RBUF_SIZE  (2 * (NBD_OPT_DATA_MAX + NBD_OPT_HDR_LEN))
#define NBD_HS_OUT_MAX (1u << 20) /* pending handshake output: stop reading */
#define NBD_MAX_XIO    1024u	  /* requests in flight per connection */
#define NBD_XIO_HDR    32u

/**
 * The byte transport under a connection: the plain socket (transport.c),
 * TLS over it once STARTTLS is done (tls.c), or memory for the fuzzer.
 * readv and writev return bytes moved, or -errno (-EAGAIN when nothing
 * can move now); readv returns 0 at end of input. A transport that keeps
 * bytes of its own (TLS records) has the optional two: @c flush pushes
 * output it accepted but has not sent (0 or -EAGAIN), @c pending says
 * whether input is already decoded above the socket (epoll will not
 * report it).
 */
struct nbd_xport {
	ssize_t (*readv)(void *arg, const struct iovec *iov, int iovcnt);
	ssize_t (*writev)(void *arg, const struct iovec *iov, int iovcnt, bool more);
	int (*flush)(void *arg);
	bool (*pending)(void *arg);
};

/** The plain socket: arg is the struct nbd_conn. */
extern const struct nbd_xport nbd_xport_socket;

enum nbd_xio_state {
	NBD_XIO_FREE = 0,
	NBD_XIO_RX,	 /* receiving its WRITE payload */
	NBD_XIO_BACKEND, /* submitted, waiting for nbd_io_done */
	NBD_XIO_TX,	 /* reply queued */
};

struct nbd_conn;

/** One request: the nbd_io the backend sees, plus its reply. */
struct nbd_xio {
	struct nbd_io io;
	struct nbd_conn *conn;
	struct slist_node link; /* in the reply queue or the free list */
	enum nbd_xio_state state;
	uint32_t error;	 /* NBD error of the reply, 0 = success */
	const char *msg; /* error text for a structured error chunk */
	void *mem;	 /* owned buffer, 4096-aligned */
	size_t cap;
	uint64_t budget; /* payload bytes charged to the connection */
	uint8_t hdr[NBD_XIO_HDR];
	uint32_t hdr_len;
	const void *data; /* sent after hdr */
	uint32_t data_len;
	size_t sent; /* of hdr_len + data_len */
};

/** A growable output buffer for handshake replies. */
struct nbd_buf {
	uint8_t *p;
	size_t len; /* bytes appended */
	size_t off; /* bytes already sent */
	size_t cap;
};

enum nbd_rx_state {
	NBD_RX_CFLAGS,	/* 4 bytes of client flags */
	NBD_RX_OPT,	/* an option header and its data */
	NBD_RX_REQ,	/* a request header */
	NBD_RX_PAYLOAD, /* a WRITE payload into rx_dst */
	NBD_RX_DISCARD, /* rx_left bytes to skip */
	NBD_RX_TLS,	/* STARTTLS answered: nothing is parsed until TLS is up */
};

#define NBD_TLS_IDS_MAX 8    /* identities kept per client */
#define NBD_TLS_ID_LEN	256u /* longest identity kept */

struct nbd_tls;	     /* server credentials (tls.c) */
struct nbd_tls_sess; /* one connection's session (tls.c) */

struct nbd_conn {
	struct nbd_server *srv;
	struct list link;	    /* in srv->conns while open */
	int fd;			    /* the socket, or -1 (memory transport) */
	const struct nbd_xport *xp; /* never NULL */
	void *xp_arg;
	struct nbd_tls_sess *tls; /* from STARTTLS on */
	bool tls_up;		  /* handshake done: the transport is TLS */
	bool tls_want_out;	  /* the handshake waits to write */
	unsigned n_ids;		  /* identities of a TLS client */
	char *ids[NBD_TLS_IDS_MAX];
	struct loop_io lio;
	struct loop_timer timer;
	struct loop_task task;
	unsigned refs;
	char peer[64];

	bool closed;
	bool in_rx;	     /* inside conn_rx: it flushes at its end */
	bool rx_paused;	     /* budget or handshake output exhausted */
	bool want_rx;	     /* the task should run conn_rx */
	bool draining;	     /* DISC or EOF: finish, flush, close */
	bool close_after_tx; /* fatal error reply queued */
	bool tx_blocked;     /* waiting for EPOLLOUT */
	bool xmit;	     /* in transmission phase */
	uint64_t start_ns;
	uint64_t last_rx_ns;
	uint64_t last_tx_ns;

	/* receive */
	enum nbd_rx_state rx;
	uint8_t *rbuf;
	size_t rpos, rlen;
	struct nbd_xio *rx_xio;
	uint8_t *rx_dst;
	uint64_t rx_left;
	uint32_t skip_opt; /* option whose oversized data is being skipped */

	/* handshake */
	bool fixed, no_zeroes, structured;
	bool meta_set;	   /* SET_META_CONTEXT selected base:allocation */
	char *meta_export; /* ... for this export name */
	struct nbd_buf hs_out;

	/* transmission */
	void *handle;
	char export_name[64]; /* the export's name, in transmission (for the node) */
	struct nbd_export_info info;
	struct nbd_xmit_params xp_params;

	/* replies */
	struct slist txq; /* of nbd_xio, in send order */

	/* requests */
	uint64_t budget_used;
	struct list budget_link; /* on the shared budget's waiters while paused for it */
	unsigned n_xio;		 /* allocated, not yet released */
	unsigned n_backend;	 /* at the backend */
	struct slist free_xio;	 /* of nbd_xio kept for reuse */
	unsigned n_free;
	size_t free_bytes;
};

/* [nbd] buffer_limit, shared by the node's servers (conn.c). */
struct nbd_budget {
	uint64_t limit;
	uint64_t used;	     /* payload bytes charged by requests not yet released */
	uint64_t cached;     /* buffer bytes connections keep for reuse: at most limit/4 */
	unsigned refs;	     /* the creator's and each server's */
	struct list waiters; /* connections paused for it, by budget_link */
};

struct nbd_server {
	struct loop *loop;
	struct nbd_server_opts opts;
	char name[32];
	const struct nbd_backend_ops *ops;
	void *ctx;
	int lfd;	    /* the listener, or -1 */
	struct loop_io lio; /* of the listener */
	struct loop_timer accept_timer;
	struct list conns; /* open nbd_conn, by link */
	unsigned refs;
	bool destroyed;
	uint64_t timeout_ns;
	uint64_t full_refused, full_logged_ns; /* clients beyond max_clients, for the log */
	struct nbd_server_stats st;
	struct nbd_tls *tls; /* NULL: tls = off */
	enum nbd_tls_mode tls_mode;
	struct nbd_allow allow;
	uint64_t refused_log_ns; /* last "not allowed" line */
	uint64_t refused_quiet;	 /* refusals not logged since */
};

/* ======== 3. prototypes ======== */

/* conn.c: the connection helpers the phases call back into. */
/** Drop a reference to the server; the last one frees it. */
void nbd_server_put(struct nbd_server *srv);
/** Append to the handshake output; false when out of memory. */
bool nbd_buf_put(struct nbd_buf *b, const void *p, size_t len);
/** Take a reference: the connection's memory stays until the matching put. */
void nbd_conn_get(struct nbd_conn *c);
/** Drop a reference; the last one frees the connection. */
void nbd_conn_put(struct nbd_conn *c);
/** Set the poll interest from the state (read unless paused, write when full). */
void nbd_conn_update_events(struct nbd_conn *c);
/** Charge @p x's @p bytes of payload to its connection and the shared budget. */
void nbd_conn_charge(struct nbd_conn *c, struct nbd_xio *x, uint64_t bytes);
/** Paused for the shared budget: wait on it (resumed when requests release). */
void nbd_conn_budget_wait(struct nbd_conn *c);
/** True when the payload bytes or requests in flight reached the budget
 * (the connection's own, or the shared one). */
bool nbd_conn_over_budget(const struct nbd_conn *c);
/** Resume reading if paused and the budget allows (the task parses). */
void nbd_conn_maybe_resume(struct nbd_conn *c);
/** Flush soon, from the posted connection task (batches several completions). */
void nbd_conn_schedule(struct nbd_conn *c);
/** Close the socket at once (idempotent); the memory goes with the last reference. */
void nbd_conn_close(struct nbd_conn *c, const char *why);
/** Close after a protocol violation: counted, logged once at WARN. */
void nbd_conn_protocol_error(struct nbd_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** An xio with a buffer of at least @p need bytes (holds a reference), or NULL. */
struct nbd_xio *nbd_xio_get(struct nbd_conn *c, size_t need);
/** Put a finished xio's reply on the send queue. */
void nbd_xio_queue(struct nbd_conn *c, struct nbd_xio *x);
/** Give back an xio (to the free list or the allocator) and its reference. */
void nbd_xio_release(struct nbd_conn *c, struct nbd_xio *x);

/* server.c */
/** Drive a connection from memory (fuzzer): see struct nbd_xport. */
int nbd_server_add_xport(struct nbd_server *srv, const struct nbd_xport *xp, void *arg);
/** Let every memory-driven connection read (as if its socket were readable). */
void nbd_server_kick(struct nbd_server *srv);

/* handshake.c */
/** Queue the fixed newstyle greeting of a new connection. */
void nbd_hs_greeting(struct nbd_conn *c);
/** Check the client flags. @return 0, or -EPROTO after closing the connection. */
int nbd_hs_client_flags(struct nbd_conn *c, uint32_t flags);
/** Handle one option whose data is in memory. */
void nbd_hs_option(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len);
/** Refuse an option whose data was too big to buffer (it was skipped). */
void nbd_hs_option_skipped(struct nbd_conn *c, uint32_t opt);

/* tls.c */
/** Load the credentials the options name. @return 0 or -errno (logged). */
int nbd_tls_create(const struct nbd_server_opts *o, const char *name, struct nbd_tls **out);
void nbd_tls_destroy(struct nbd_tls *t);
/** Start a server session on c->fd, taking the bytes still in the receive
 * buffer as the first TLS input. @return 0 or -errno. */
int nbd_tls_start(struct nbd_conn *c);
/**
 * Drive the handshake. @return 0 once done (c->xp is then TLS, the
 * client's identities in c->ids), -EAGAIN (c->tls_want_out says which
 * way), or -EPROTO/-EACCES after a failure (logged).
 */
int nbd_tls_handshake(struct nbd_conn *c);
/** Free the session (conn close). */
void nbd_tls_free(struct nbd_conn *c);

/* transmission.c */
/** Handle one request header; may start receiving or skipping a payload. */
void nbd_xmit_request(struct nbd_conn *c, const struct nbd_request *r);
/** The WRITE payload of c->rx_xio has arrived: submit it. */
void nbd_xmit_payload_done(struct nbd_conn *c);

#endif
