/**
 * @file fabric.h
 * One interconnect link: a libfabric fabric + domain + endpoint bound at a
 * predefined local address, talking to one peer address, with one-sided
 * RMA, write-with-immediate doorbells and two-sided messages.
 *
 * Completions are driven from the node's reactor: the link registers its
 * completion queue's wait descriptor with the loop. Nothing here knows of
 * storage or of the cluster protocol. A link never trusts the peer: every
 * remote access is checked against the peer region's advertised size before
 * it is posted, and an operation that fails with the peer's connection
 * broken is reported, after which the link resets its endpoint so that a
 * later operation connects afresh.
 *
 * A link keeps its fabric, domain and regions for its whole life; its
 * endpoint (with its address vector and completion queue) is the part that
 * fab_link_reset() closes and recreates. Regions belong to the domain, so
 * their keys stay valid across resets and the peer notices nothing but a
 * new connection. fi_av_remove is never used: on libfabric 1.17's rxm it
 * crashes on a peer whose connect failed (docs/FABRIC.md).
 *
 * Known limit (libfabric < 1.18, tcp and net providers, docs/FABRIC.md): a
 * connection that fails or is closed while the response of one of our
 * fab_read()s is half received makes libfabric dereference NULL and the
 * process die. Nothing here can prevent it; fab_link_open warns once.
 *
 * Operation contract (fab_read, fab_write, fab_writedata, fab_send):
 * - A call that returns 0 accepted the operation: op->done(op, status) is
 *   then called exactly once, always later from the loop (or from
 *   fab_link_reset / fab_link_abort / fab_link_close), never from inside
 *   the call itself.
 * - A call that returns a negative errno did not accept it and never calls
 *   op->done: -EINVAL (remote range outside rem->size, NULL arguments, or a
 *   local buffer outside every registered region on a provider that needs
 *   FI_MR_LOCAL), -EMSGSIZE (longer than the provider or max_msg allows),
 *   -EOPNOTSUPP (immediate data wider than the provider carries), -ENOMEM,
 *   -ESHUTDOWN (the link is closing).
 * - status is 0 or a negative errno: -ETIMEDOUT (fab_link_abort),
 *   -ECANCELED (fab_link_reset, fab_link_close, or the endpoint was reset
 *   because the peer's connection broke), or another error reported by the
 *   provider. A transport error resets the endpoint: the other operations
 *   in flight fail with -ECANCELED (they shared the broken connection) and
 *   later operations open a fresh connection.
 * - An operation the provider cannot take yet (-FI_EAGAIN: send queue full,
 *   peer not up, endpoint being recreated) is kept in the link's backlog
 *   and posted again from the loop, with backoff while it keeps failing.
 *   Order of posting is kept.
 * - The local buffer of an operation must stay valid until done is called.
 *   Once done was called, the provider no longer touches it: resets and
 *   aborts close the endpoint before they call back.
 *
 * Remote addresses are offsets into the peer's region, with application
 * chosen keys: providers that need FI_MR_VIRT_ADDR, FI_MR_PROV_KEY, FI_MR_RAW
 * or FI_MR_ENDPOINT are refused at fab_link_open with an error naming the
 * provider. Providers that need FI_MR_LOCAL are served: local buffers must
 * then lie in a region registered with fab_mr_reg (access 0 registers for
 * local use).
 *
 * Progress: the completion queue's wait fd sits in the loop (edge
 * triggered); every wake-up reads the CQ until fi_trywait allows sleeping
 * again, which is all a target needs to serve the peer's RMA while idle.
 * When fi_trywait keeps refusing with nothing to read, or the provider has
 * no wait fd at all, the link polls from a short timer instead.
 *
 * Reactor time: fab_link_open blocks (fi_getinfo, the first in a process
 * 100-500 ms; the first endpoint, 2-7 ms). A reset closes the endpoint on
 * the loop (0.1-5 ms) and, when the domain is thread safe (rxm always is),
 * creates the new one on a short-lived helper thread (2-7 ms on
 * tcp;ofi_rxm), meanwhile operations wait in the backlog; the first post
 * on a new endpoint costs 1-3 ms (rxm's transmit pool). Every libfabric
 * call made on the loop thread is timed: calls of 5 ms or more are counted
 * and logged (stats.slow_calls, stats.max_call_ns); with
 * DUET_FABRIC_CPU_TIMING=1 in the environment the log also gives the
 * thread's CPU time and context switches during the call (measurements).
 *
 * Process-wide side effects of the first fab_link_open: unless already set,
 * it sets in the environment FI_TCP_NODELAY=1,
 * FI_OFI_RXM_CM_PROGRESS_INTERVAL=0 (rxm otherwise handles connection
 * events only every 10 ms and refuses fi_trywait meanwhile),
 * FI_OFI_RXM_MSG_RX_SIZE=1024 (rxm's default, 4096 receive buffers per
 * endpoint, costs 68 MB and 40-100 ms per endpoint),
 * FI_OFI_RXM_BUFFER_SIZE=FAB_MSG_MAX (rxm's eager limit: every message of
 * a link goes eager; see FAB_MSG_MAX) and IPATH_NO_BACKTRACE=1 (psm's
 * SIGSEGV handler; too late where psm is linked at load time, as on
 * Debian: set it in the process's environment). libfabric reads them once,
 * so no other libfabric call may come first in the process.
 *
 * libfabric's descriptors (sockets, epoll and event fds) are NOT
 * close-on-exec and this module does nothing about it: a process that execs
 * must close them in the child (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC)).
 *
 * Everything runs on the thread of the link's loop; nothing is thread safe.
 * (The helper thread that creates endpoints is internal: it touches only
 * the domain, which is thread safe when it is used.)
 */
#ifndef DUET_FABRIC_FABRIC_H
#define DUET_FABRIC_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct fab_link;
struct fab_mr;

/**
 * The largest two-sided message a link carries (fab_link_opts.max_msg):
 * 16 KiB of payload plus a 64-byte header. rxm's eager limit is set to it,
 * so that no message goes through rxm's rendezvous or segmentation
 * protocols: those complete a send only after the peer answered on the same
 * connection, and when that connection closes first (the peer reset its
 * endpoint) the send is never completed at all (libfabric 1.17 to at least
 * 1.22; docs/FABRIC.md). An eager send completes, or fails, with its
 * connection.
 */
#define FAB_MSG_MAX (16384 + 64)

/** Flags of fab_link_opts.flags (for tests and odd providers). */
#define FAB_LINK_FORCE_MR_LOCAL (1u << 0) /* act as if the provider needed FI_MR_LOCAL */
#define FAB_LINK_FORCE_POLL	(1u << 1) /* poll the CQ from timers, no wait fd */
#define FAB_LINK_SYNC_RESET	(1u << 2) /* recreate the endpoint on the loop thread */

struct fab_link_opts {
	const char *name;     /* "ic0", for logs; NULL: "fab" */
	const char *provider; /* "tcp;ofi_rxm"; NULL: that */
	const char *local;    /* "host:port" this link binds */
	const char *peer;     /* "host:port" of the partner's link */
	unsigned rx_depth;    /* receive buffers posted for messages; 0: 64 */
	size_t max_msg;	      /* largest two-sided message, <= FAB_MSG_MAX; 0: 4096 */
	/* Extensions (zero means default). */
	unsigned retry_max_ms; /* backlog retry backoff cap; 0: 20 ms */
	unsigned flags;	       /* FAB_LINK_* */
	unsigned spin_us;      /* busy-poll the CQ this long with operations in flight (0: never) */
};

/** A region the peer advertised: its key and size (offsets are relative). */
struct fab_remote {
	uint64_t key;
	uint64_t size;
};

struct fab_op;
typedef void (*fab_op_cb)(struct fab_op *op, int status);

/** An operation in flight, embedded in the caller's object. status: 0 or -errno. */
struct fab_op {
	fab_op_cb done;
	void *arg;
	/* Private to the fabric. */
	struct fab_link *link;
	uint64_t gen;
	struct fab_op *next;
};

/** Events the link raises on the reactor thread. */
struct fab_link_events {
	/** A two-sided message arrived (valid only during the call). */
	void (*on_msg)(void *arg, const void *msg, size_t len);
	/** The peer wrote into one of our regions with immediate data. */
	void (*on_doorbell)(void *arg, uint64_t imm);
	void *arg;
};

/**
 * Open a link bound at opts->local towards opts->peer. The peer need not be
 * up: operations wait in the backlog until it is. @p ev may be NULL.
 * @return 0, -EINVAL (bad options), -EADDRNOTAVAIL/-ENODATA (no provider
 * can bind there or the provider lacks what duet needs: logged), -ENOMEM.
 */
int fab_link_open(struct loop *loop, const struct fab_link_opts *opts,
		  const struct fab_link_events *ev, struct fab_link **out);
/**
 * Close the link; in-flight operations complete with -ECANCELED first (from
 * inside this call). Safe to call from any callback of the link. Regions
 * still registered are deregistered; their fab_mr_close() only frees them.
 */
void fab_link_close(struct fab_link *link);
const char *fab_link_name(const struct fab_link *link);

/**
 * Register @p len bytes at @p buf for remote read and/or write under @p key
 * (application chosen; the peer addresses the region by offset). access 0
 * registers for local use only (needed on FI_MR_LOCAL providers).
 * @return 0, -EEXIST (key in use), -EINVAL (key too wide for the provider,
 * or in the reserved top 256 keys), or another negative errno.
 */
#define FAB_REMOTE_READ	 (1u << 0)
#define FAB_REMOTE_WRITE (1u << 1)
int fab_mr_reg(struct fab_link *link, void *buf, size_t len, uint64_t key, unsigned access,
	       struct fab_mr **out);
/** Deregister and free; may be called before or after fab_link_close. */
void fab_mr_close(struct fab_mr *mr);

/** Flags for writes. */
#define FAB_DELIVERY_COMPLETE (1u << 0) /* done only once in the peer's memory */

/** Read @p len bytes at @p offset of the peer's region into @p local. */
int fab_read(struct fab_link *link, void *local, size_t len, const struct fab_remote *rem,
	     uint64_t offset, struct fab_op *op);
/** Write @p len bytes of @p local at @p offset of the peer's region. Without
 * FAB_DELIVERY_COMPLETE, done means the local buffer may be reused only. */
int fab_write(struct fab_link *link, const void *local, size_t len, const struct fab_remote *rem,
	      uint64_t offset, unsigned flags, struct fab_op *op);
/** Write with 64 bits of immediate data, raised as on_doorbell at the peer
 * (len 0 is a pure doorbell; the range is still checked). */
int fab_writedata(struct fab_link *link, const void *local, size_t len,
		  const struct fab_remote *rem, uint64_t offset, uint64_t imm, unsigned flags,
		  struct fab_op *op);
/** Send a two-sided message of at most opts.max_msg bytes (copied). */
int fab_send(struct fab_link *link, const void *msg, size_t len, struct fab_op *op);

/**
 * Reset the endpoint: every operation accepted so far completes with
 * -ECANCELED from inside this call, after the endpoint was closed (so the
 * provider touches none of their buffers any more, and nothing the peer
 * sent on the old connections lands in our regions afterwards). The
 * fabric, the domain and the regions stay (same keys); a new endpoint
 * (address vector, completion queue) is created, on a helper thread when
 * the domain is thread safe, and operations posted meanwhile wait in the
 * backlog. Cheap when the endpoint is still being created (nothing to
 * close). May be called from the link's callbacks.
 */
void fab_link_reset(struct fab_link *link);

/**
 * Like fab_link_reset(), but no new endpoint is created until
 * fab_link_resume(): meanwhile the peer's connects are refused and
 * operations posted here wait in the backlog. Used to fence a failed link:
 * nothing the peer sends reaches our regions through it until resumed.
 */
void fab_link_suspend(struct fab_link *link);
/** End a suspension: the next endpoint is created (as by a reset). */
void fab_link_resume(struct fab_link *link);

/**
 * Like fab_link_reset(), but the operations complete with -ETIMEDOUT (the
 * caller decided the link is dead).
 */
void fab_link_abort(struct fab_link *link);

struct fab_link_stats {
	uint64_t ops;		 /* operations completed successfully */
	uint64_t bytes;		 /* their bytes */
	uint64_t errors;	 /* operations completed with an error (incl. aborted) */
	uint64_t inflight;	 /* accepted, not completed (posted + backlog) */
	uint64_t inflight_bytes; /* their bytes */
	/* Extensions. */
	uint64_t backlog;      /* of inflight: waiting to be posted */
	uint64_t msgs_in;      /* messages received */
	uint64_t doorbells_in; /* doorbells received */
	uint64_t resets;       /* endpoints closed and recreated */
	uint64_t reset_ns;     /* reactor time of the last reset (closing, handing over) */
	uint64_t ep_open_ns;   /* time to create the last endpoint (helper thread or not) */
	uint64_t slow_calls;  /* libfabric calls that held the loop thread over 5 ms (after open) */
	uint64_t max_call_ns; /* the longest libfabric call on the loop thread (after open) */
	const char *max_call; /* its name ("fi_cq_read", ...), NULL if none yet */
	uint64_t oldest_ns;   /* loop_now_ns() when the oldest operation still in flight was
				 accepted; 0 when none is (an operation older than one
				 that completed after it was accepted is lost, see
				 docs/FABRIC.md) */
	uint64_t spin_reaped; /* completions the spinning poller read (spin_us) */
	uint64_t spin_sleeps; /* spins that ended with the budget spent (the loop slept) */
	bool ep_ready;	      /* an endpoint is up (false while one is being created) */
	bool suspended;	      /* fab_link_suspend() without fab_link_resume() yet */
};
void fab_link_get_stats(const struct fab_link *link, struct fab_link_stats *st);

#endif
