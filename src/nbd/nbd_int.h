/*
 * Private to the nbd module: the server, its connections and their ios,
 * shared by server.c (sockets, buffers, lifetime), handshake.c (options)
 * and transmission.c (commands, replies).
 */
#ifndef DUET_NBD_NBD_INT_H
#define DUET_NBD_NBD_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "common/loop.h"
#include "nbd/nbd.h"
#include "nbd/proto.h"

#define NBD_RBUF_SIZE  (2 * (NBD_OPT_DATA_MAX + NBD_OPT_HDR_LEN))
#define NBD_HS_OUT_MAX (1u << 20) /* pending handshake output: stop reading */
#define NBD_MAX_XIO    1024u	  /* requests in flight per connection */
#define NBD_XIO_HDR    32u

/**
 * A byte source and sink other than a socket, for the fuzzer: it drives a
 * whole connection from memory. Both return bytes moved, or -errno
 * (-EAGAIN when nothing can move now); readv returns 0 at end of input.
 */
struct nbd_xport {
	ssize_t (*readv)(void *arg, const struct iovec *iov, int iovcnt);
	ssize_t (*writev)(void *arg, const struct iovec *iov, int iovcnt, bool more);
};

enum xio_state {
	XIO_FREE = 0,
	XIO_RX,	     /* receiving its WRITE payload */
	XIO_BACKEND, /* submitted, waiting for nbd_io_done */
	XIO_TX,	     /* reply queued */
};

struct nbd_conn;

/** One request: the nbd_io the backend sees, plus its reply. */
struct nbd_xio {
	struct nbd_io io;
	struct nbd_conn *conn;
	struct nbd_xio *next; /* tx queue or free list */
	enum xio_state state;
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

enum rx_state {
	RX_CFLAGS,  /* 4 bytes of client flags */
	RX_OPT,	    /* an option header and its data */
	RX_REQ,	    /* a request header */
	RX_PAYLOAD, /* a WRITE payload into rx_dst */
	RX_DISCARD, /* rx_left bytes to skip */
};

struct nbd_conn {
	struct nbd_server *srv;
	struct nbd_conn *prev, *next; /* open connections of srv */
	int fd;
	const struct nbd_xport *xp; /* NULL: the socket fd */
	void *xp_arg;
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
	enum rx_state rx;
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
	struct nbd_export_info info;
	struct nbd_xmit_params xp_params;

	/* replies */
	struct nbd_xio *txq_head, **txq_tail;

	/* requests */
	uint64_t budget_used;
	unsigned n_xio;	    /* allocated, not yet released */
	unsigned n_backend; /* at the backend */
	struct nbd_xio *free_xio;
	unsigned n_free;
	size_t free_bytes;
};

struct nbd_server {
	struct loop *loop;
	struct nbd_server_opts opts;
	char name[32];
	const struct nbd_backend_ops *ops;
	void *ctx;
	int lfd;
	struct loop_io lio;
	struct loop_timer accept_timer;
	struct nbd_conn *conns;
	unsigned refs;
	bool destroyed;
	uint64_t timeout_ns;
	struct nbd_server_stats st;
};

/* ---- server.c ---- */
void nbd_conn_close(struct nbd_conn *c, const char *why);
/** Close after a protocol violation: counted, logged once at WARN. */
void nbd_conn_protocol_error(struct nbd_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void nbd_conn_get(struct nbd_conn *c);
void nbd_conn_put(struct nbd_conn *c);
/** Flush soon, from a posted task (batches several completions). */
void nbd_conn_schedule(struct nbd_conn *c);
/** An xio with a buffer of at least @p need bytes, or NULL. */
struct nbd_xio *nbd_xio_get(struct nbd_conn *c, size_t need);
void nbd_xio_queue(struct nbd_conn *c, struct nbd_xio *x);
void nbd_xio_release(struct nbd_conn *c, struct nbd_xio *x);
/** Append to the handshake output; false when out of memory. */
bool nbd_buf_put(struct nbd_buf *b, const void *p, size_t len);

/** Drive a connection from memory (fuzzer): see struct nbd_xport. */
int nbd_server_add_xport(struct nbd_server *srv, const struct nbd_xport *xp, void *arg);
/** Let every memory-driven connection read (as if its socket were readable). */
void nbd_server_kick(struct nbd_server *srv);

/* ---- handshake.c ---- */
void nbd_hs_greeting(struct nbd_conn *c);
/** @return 0, or -EPROTO after closing the connection. */
int nbd_hs_client_flags(struct nbd_conn *c, uint32_t flags);
/** Handle one option whose data is in memory. */
void nbd_hs_option(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len);
/** An option whose data was too big to buffer was skipped. */
void nbd_hs_option_skipped(struct nbd_conn *c, uint32_t opt);

/* ---- transmission.c ---- */
/** Handle one request header; may start receiving or skipping a payload. */
void nbd_xmit_request(struct nbd_conn *c, const struct nbd_request *r);
/** The WRITE payload of c->rx_xio has arrived. */
void nbd_xmit_payload_done(struct nbd_conn *c);

#endif
