/**
 * @file nbd.h
 * NBD server: fixed newstyle handshake, options and the transmission phase
 * (NetworkBlockDevice/nbd doc/proto.md), on the node's reactor.
 *
 * The server knows nothing of where a command goes: it asks a backend
 * (struct nbd_backend_ops) for exports and hands it each command as a
 * struct nbd_io, which the backend completes with nbd_io_done(), inline or
 * later, in any order. Replies go out in completion order.
 */
#ifndef DUET_NBD_NBD_H
#define DUET_NBD_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct nbd_server;
struct sockaddr;

/** Command types and flags, as on the wire. */
enum nbd_cmd_type {
	NBD_CMD_READ = 0,
	NBD_CMD_WRITE = 1,
	NBD_CMD_DISC = 2,
	NBD_CMD_FLUSH = 3,
	NBD_CMD_TRIM = 4,
	NBD_CMD_CACHE = 5,
	NBD_CMD_WRITE_ZEROES = 6,
	NBD_CMD_BLOCK_STATUS = 7,
};

#define NBD_CMD_FLAG_FUA       (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE   (1u << 1)
#define NBD_CMD_FLAG_DF	       (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE   (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO (1u << 4)

/** base:allocation extent flags. */
#define NBD_STATE_HOLE (1u << 0)
#define NBD_STATE_ZERO (1u << 1)

/** What the backend tells the server about one export. */
struct nbd_export_info {
	uint64_t size;
	bool read_only;
	bool can_trim;
	bool can_zero;
	bool can_fast_zero;
	bool can_cache;
	bool can_flush;
	bool can_fua;
	bool can_multi_conn; /* only if a FLUSH on one connection covers all */
	bool can_block_status;
	uint32_t min_block;  /* 1 or 512 */
	uint32_t pref_block; /* e.g. 4096 */
	char description[64];
};

struct nbd_extent {
	uint64_t length;
	uint32_t flags; /* NBD_STATE_* */
};

/**
 * One command handed to the backend. The server owns it and its buffer;
 * the backend fills what the command asks and calls nbd_io_done() once.
 *
 * The server has already checked the request against the export (bounds,
 * alignment to min_block, flags the export advertised, read-only), so the
 * backend sees only valid commands: READ, WRITE, FLUSH, TRIM, CACHE,
 * WRITE_ZEROES and BLOCK_STATUS (the latter only if can_block_status; the
 * server answers "all allocated" itself otherwise). FUA is passed on only
 * for commands that write (WRITE, TRIM, WRITE_ZEROES). @c buf is aligned
 * to 4096 bytes (fit for O_DIRECT) and stays valid until nbd_io_done().
 * A zero-length READ, WRITE, TRIM, WRITE_ZEROES or CACHE never reaches
 * the backend, nor does CACHE when the export has no can_cache.
 */
struct nbd_io {
	uint16_t type;	/* enum nbd_cmd_type (never DISC) */
	uint16_t flags; /* NBD_CMD_FLAG_* */
	uint64_t offset;
	uint64_t length;
	void *buf; /* READ: length bytes to fill; WRITE: length bytes of data */
	void *export_handle;
	/* BLOCK_STATUS: the backend writes up to max_extents extents from
	 * offset, covering at most length bytes, and sets n_extents. */
	struct nbd_extent *extents;
	uint32_t max_extents;
	uint32_t n_extents;
	/* Private to the server. */
	void *priv;
	uint64_t cookie;
	/* Completion hook for ios that do not come from an nbd_server (the
	 * proxy submits its own to a backend): when set, nbd_io_done() calls
	 * complete(io, result) and nothing else. The server leaves it NULL. */
	void (*complete)(struct nbd_io *io, int result);
	void *complete_arg;
	/* READ from memory the backend owns (the proxy's slot, saving a copy
	 * into buf): before nbd_io_done() the backend may set reply_buf to
	 * length bytes of its own, and must then set release. The server
	 * sends the reply's data from reply_buf instead of buf (plain or TLS,
	 * simple or structured reply) and calls release(io) exactly once, on
	 * the loop thread, once it no longer reads reply_buf: when the reply
	 * has left (handed to the socket or copied into TLS records), or when
	 * the connection closed first, or inside nbd_io_done() when it was
	 * closed already; whatever the result. Only on ios without a
	 * completion hook (complete NULL), which the server sends itself. */
	const void *reply_buf;
	void (*release)(struct nbd_io *io);
	void *release_arg;
};

/**
 * Backend operations. @c ctx is the pointer given to nbd_server_create().
 * All are called on the server's loop thread.
 * @c list calls @p emit for every export (desc may be NULL or "").
 * @c open returns 0, -ENOENT for an unknown name (NBD_REP_ERR_UNKNOWN),
 * -EACCES/-EPERM (ERR_POLICY) or -ESHUTDOWN (ERR_SHUTDOWN); the name is
 * NUL-terminated, may be "" (the default export). NBD_OPT_INFO opens and
 * closes at once. @c close is called once per successful open, after the
 * last nbd_io_done() of that handle: it may come from inside nbd_io_done(),
 * and after nbd_server_destroy() if ios were still in flight then.
 * @c submit must eventually call nbd_io_done(io, 0 or -errno), inline or
 * later, in any order.
 */
struct nbd_backend_ops {
	int (*list)(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
		    void *arg);
	int (*open)(void *ctx, const char *name, void **handle, struct nbd_export_info *info);
	void (*close)(void *ctx, void *handle);
	void (*submit)(void *ctx, struct nbd_io *io);
	/* Optional: may the client known by @p ids (its TLS identities: the
	 * PSK username, or the certificate's CN and SAN names; n_ids 0 for a
	 * client without one) see and open export @p name? NULL: everyone.
	 * A refused export is left out of NBD_OPT_LIST and answered
	 * NBD_REP_ERR_UNKNOWN, as if it did not exist. */
	bool (*allowed)(void *ctx, const char *name, const char *const *ids, unsigned n_ids);
	/* Optional: memory of the backend's own to receive the payload of the
	 * WRITE @p io into (its type, flags, offset, length and export_handle
	 * are set), asked at its request header, before any payload byte.
	 * Either NULL (the server uses a buffer of its own), or io->length
	 * bytes, with io->release set: the server reads the payload into it,
	 * submits the io with buf pointing there, and calls release(io)
	 * exactly once, as for reply_buf: once the reply has left, or when
	 * the connection closed first (the io is then never submitted if its
	 * payload was not all there). A client may send a header and never
	 * its payload: what the backend lends this way until the connection
	 * times out must be bounded. */
	void *(*write_buf)(void *ctx, struct nbd_io *io);
};

/** NBD_OPT_STARTTLS: not offered, offered, or required before any other option. */
enum nbd_tls_mode {
	NBD_TLS_OFF = 0,
	NBD_TLS_ON,
	NBD_TLS_REQUIRE,
};

/**
 * A bound on payload bytes buffered across every connection of the servers
 * that share it ([nbd] buffer_limit): over it, no connection reads another
 * request until requests complete and their replies leave. Reference
 * counted: each server holds one, so it outlives their connections.
 */
struct nbd_budget;
int nbd_budget_create(uint64_t limit, struct nbd_budget **out);
void nbd_budget_put(struct nbd_budget *b);
/** Payload bytes charged now, and buffers kept for reuse (both bounded). */
void nbd_budget_get(const struct nbd_budget *b, uint64_t *used, uint64_t *cached);

struct nbd_server_opts {
	const char *listen;   /* "host:port"; NULL: no listener (nbd_server_add_fd) */
	const char *name;     /* for logs: "nbd" or "proxy" */
	uint64_t max_payload; /* largest READ/WRITE; 0: 32 MiB; 4 KiB..1 GiB */
	uint64_t conn_buffer; /* bytes of payload in flight per connection; 0: 64 MiB */
	unsigned max_clients; /* connections beyond are refused; 0: 1024 */
	unsigned timeout_ms;  /* handshake deadline, and stall of a half-received
				 request; 0: 30000 */
	/* TLS (GnuTLS; docs/SECURITY.md): with tls on or require, at least one
	 * of tls_certificates (a directory holding ca-cert.pem, server-cert.pem
	 * and server-key.pem, as nbdkit and qemu lay them out) and tls_psk (a
	 * psktool file). tls_verify_peer: x509 clients must present a
	 * certificate signed by ca-cert.pem. Paths are read at create. */
	enum nbd_tls_mode tls;
	const char *tls_certificates; /* NULL or "": none */
	const char *tls_psk;	      /* NULL or "": none */
	bool tls_verify_peer;
	/* Who may connect: "CIDR, CIDR, ..." (IPv4 or IPv6, a bare address is
	 * a /32 or /128); NULL or "": anyone. Checked at accept. */
	const char *allow;
	struct nbd_budget *budget; /* shared across servers; NULL: per connection only */
	bool freebind;		   /* bind even while the address is not on an interface */
};

/** The largest number of networks in an allow list. */
#define NBD_ALLOW_MAX 64

/** One network of an allow list; addresses in network byte order, IPv4
 * as family AF_INET in the first 4 bytes. */
struct nbd_allow_net {
	int family;
	uint8_t addr[16];
	unsigned prefix;
};

struct nbd_allow {
	unsigned n; /* 0: anyone */
	struct nbd_allow_net nets[NBD_ALLOW_MAX];
};

/**
 * Parse an allow list ("10.0.0.0/8, fd00::/8, 192.0.2.7"; commas and/or
 * blanks between entries). Host bits past the prefix are an error, so
 * that a typo does not silently widen a network. @return 0, or -EINVAL
 * with a one-line reason in @p err.
 */
int nbd_allow_parse(const char *s, struct nbd_allow *out, char *err, size_t errlen);
/** True when @p sa (AF_INET, AF_INET6, an IPv4-mapped IPv6 address
 * counting as IPv4) is in one of the networks, or the list is empty. */
bool nbd_allow_match(const struct nbd_allow *a, const struct sockaddr *sa);

/**
 * Complete @p io with 0 or a negative errno (mapped to an NBD error:
 * -EPERM/-EROFS/-EACCES EPERM, -EIO EIO, -ENOMEM ENOMEM, -EINVAL EINVAL,
 * -ENOSPC/-EDQUOT/-EFBIG ENOSPC, -EOVERFLOW EOVERFLOW, -ENOTSUP ENOTSUP
 * (only for WRITE_ZEROES, the fast-zero refusal; EINVAL elsewhere),
 * -ESHUTDOWN ESHUTDOWN, anything else EIO). Call it on the server's loop
 * thread, exactly once per io, inline from submit or later. An io with a
 * completion hook (io->complete) hands the result to it instead.
 */
void nbd_io_done(struct nbd_io *io, int result);

int nbd_server_create(struct loop *loop, const struct nbd_server_opts *opts,
		      const struct nbd_backend_ops *ops, void *ctx, struct nbd_server **out);
/** Close the listener and every connection (their in-flight ios complete
 * into the void: the backend may still call nbd_io_done on them). The
 * server's memory is released once those ios are done and the loop has
 * run one more turn (a connection may have a posted task queued). */
void nbd_server_destroy(struct nbd_server *srv);

/** Serve a client on an already connected stream socket (socketpair,
 * UNIX socket, socket activation). The server takes @p fd in every case.
 * @return 0, -EMFILE beyond max_clients, or another negative errno. */
int nbd_server_add_fd(struct nbd_server *srv, int fd);

/** Close every connection in the transmission phase on the export named
 * @p name (a volume being deleted), logging @p why; their ios in flight
 * complete into the void and close() follows the last one. The number
 * closed. */
unsigned nbd_server_close_export(struct nbd_server *srv, const char *name, const char *why);

/** Connections in the transmission phase on the export named @p name. */
unsigned nbd_server_export_clients(const struct nbd_server *srv, const char *name);

struct nbd_server_stats {
	uint64_t connections; /* open now */
	uint64_t accepted;    /* since start */
	uint64_t requests;
	uint64_t errors; /* error replies */
	uint64_t bytes_read;
	uint64_t bytes_written;
	uint64_t protocol_errors; /* connections dropped for bad input */
	uint64_t refused;	  /* connections closed at accept: not in [nbd] allow */
};
void nbd_server_get_stats(const struct nbd_server *srv, struct nbd_server_stats *st);

#endif
