/* The fabric module's private header: the link's internal structures and
 * the functions its files share (fabric.h holds the public contract).
 *
 * Rule: struct fab_link embeds one sub-struct per concern (the domain for
 * the link's life, the endpoint generation, the helper thread, the regions,
 * the operations, the messages), each named with the file that owns it;
 * other files read it and touch it only through that file's functions,
 * except for the few resets of backoff state noted at their fields.
 * Prototypes are grouped by the file that defines them; every non-static
 * symbol starts with fab_.
 *
 * Layering (a file calls only the files below it):
 *   link.c      open, close, reset/suspend/resume/abort, statistics
 *   progress.c  the timer and the completion queue: the deferred work
 *   endpoint.c  endpoint generations: create, install, drop, reset
 *   ops.c       operation slots, send buffers, posting, the backlog
 *   mr.c        memory regions (the application's and internal ones)
 *   base.c      timed calls, error codes, rate-limited logs, the timer arm
 * The one reference upwards: endpoint.c installs progress.c's
 * fab_progress_on_cq_fd as the handler of a new endpoint's wait fd.
 */
#ifndef DUET_FABRIC_FABRIC_INT_H
#define DUET_FABRIC_FABRIC_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* util.h first: libfabric defines container_of only when it is missing. */
#include "common/util.h"

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>

#include "common/list.h"
#include "common/loop.h"
#include "fabric/fabric.h"

#define FAB_FI_VERSION	      FI_VERSION(1, 12)
#define FAB_SLOTS_PER_CHUNK   64
#define FAB_SBUFS_PER_CHUNK   16
#define FAB_CQ_BATCH	      32
#define FAB_CQ_ROUNDS	      16 /* batches per wake-up before yielding to the loop */
#define FAB_RETRY_MIN_NS      50000ull
#define FAB_DEFAULT_RETRY_MS  20
#define FAB_POLL_IDLE_NS      1000000ull
#define FAB_IDLE_POLL_MIN_NS  50000ull
#define FAB_IDLE_POLL_MAX_NS  2000000ull
#define FAB_EP_RETRY_MIN_NS   10000000ull /* endpoint creation failed: try again */
#define FAB_EP_RETRY_MAX_NS   1000000000ull
#define FAB_SLOW_CALL_NS      5000000ull /* a libfabric call this long is logged */
#define FAB_RESERVED_KEYS     256
#define FAB_DEFAULT_PROVIDER  "tcp;ofi_rxm"
#define FAB_SUPPORTED_MR_MODE (FI_MR_LOCAL | FI_MR_ALLOCATED)
#define FAB_LOG_INTERVAL_NS   1000000000ull

enum fab_slot_kind { FAB_KIND_TX = 1, FAB_KIND_RX };
enum fab_slot_state { FAB_ST_FREE, FAB_ST_BACKLOG, FAB_ST_POSTED, FAB_ST_FAILED };
enum fab_op_type { FAB_OP_READ, FAB_OP_WRITE, FAB_OP_WRITEDATA, FAB_OP_SEND };

/* Common head of everything passed to libfabric as a context. */
struct fab_ctx_head {
	struct fi_context2 fictx; /* first: libfabric's op_context points here */
	uint8_t kind;
};

/* A send buffer: a message is copied here so the caller's may go at once. */
struct fab_sbuf {
	struct slist_node node; /* in fab_msgs.sbuf_free */
	void *desc;
	unsigned char data[];
};

/* The internal state of one accepted operation: libfabric's context. */
struct fab_slot {
	struct fab_ctx_head h;
	uint8_t state;
	uint8_t type;
	unsigned flags;
	int status;
	uint64_t gen;
	uint64_t accepted_ns; /* when fab_read & co. took it */
	struct fab_op *op;
	struct list node; /* in the fab_slot_list of its state */
	/* Parameters, kept for posting from the backlog. */
	void *local;
	size_t len;
	void *desc;
	uint64_t raddr, key, imm;
	struct fab_sbuf *sbuf;
};

/* Slots of one state, in the order they were accepted, with their count. */
struct fab_slot_list {
	struct list head;
	size_t n;
};

struct fab_slot_chunk {
	struct slist_node node; /* in fab_ops.chunks */
	struct fab_slot slots[FAB_SLOTS_PER_CHUNK];
};

struct fab_sbuf_chunk {
	struct slist_node node; /* in fab_msgs.sbuf_chunks */
	struct fid_mr *mr;
	unsigned char mem[];
};

struct fab_rx_slot {
	struct fab_ctx_head h;
	bool pending; /* not posted on the current endpoint: post from the timer */
	unsigned char *buf;
};

struct fab_mr {
	struct fab_link *link; /* NULL once the link closed */
	struct list node;      /* in fab_regions.mrs */
	struct fid_mr *mr;
	unsigned char *buf;
	size_t len;
	void *desc;
};

struct fab_ratelimit {
	uint64_t last_ns;
	unsigned suppressed;
};

/* What one endpoint generation consists of. */
struct fab_ep_res {
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	fi_addr_t peer;
	int wait_fd;	 /* -1: poll the CQ */
	bool no_wait_fd; /* the provider refused FI_WAIT_FD */
};

/* An endpoint being created on a helper thread. The thread only reads the
 * link's immutable parts (fab_dom, names, flags). */
struct fab_ep_job {
	pthread_t thread;
	struct fab_link *link;
	struct fab_ep_res res;
	int rc;
	const char *what; /* the step that failed */
	uint64_t ns;
	atomic_bool finished;
};

/* For the whole life of the link (set by link.c at open, read-only after). */
struct fab_dom {
	char prov[64];
	char host[64], port[16];
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct sockaddr_storage peer_sa;
	socklen_t peer_salen;
	bool async; /* endpoints are created on a helper thread */
	bool mr_local;
	size_t max_rma;
	size_t cq_data_size;
	uint64_t key_max; /* largest key the provider accepts */
};

/* The current endpoint generation (endpoint.c). */
struct fab_ep_state {
	struct fab_ep_res res; /* av, cq, ep, peer address, wait fd (-1 in poll mode) */
	struct loop_io io;     /* the wait fd in the loop */
	bool ready;	       /* res is there */
	bool suspended;	       /* no endpoint until fab_link_resume() */
	uint64_t gen;	       /* bumped by every reset: a CQ batch of an older one is dropped */
	bool reset_pending;    /* a transport error asks for a reset (from the timer) */
	uint64_t retry_ns;     /* creation failed: backoff */
	uint64_t retry_at;
	bool poll_mode; /* no wait fd (forced, or the provider has none) */
};

/* Endpoint creation off the loop (endpoint.c). */
struct fab_ep_helper {
	struct fab_ep_job job;
	bool active;
	int fd; /* eventfd: the helper thread is done */
	struct loop_io io;
};

/* Operations (ops.c) and their progress (progress.c). A new endpoint
 * (endpoint.c) restarts the backoffs. */
struct fab_ops {
	struct slist chunks; /* struct fab_slot_chunk */
	struct fab_slot_list free, backlog, posted, failed;
	uint64_t gen;
	uint64_t retry_ns, retry_max_ns;
	uint64_t retry_at;     /* next backlog retry not driven by a completion */
	uint64_t idle_poll_ns; /* delay of the next poll while fi_trywait refuses */
	unsigned reaped;       /* transmit completions in the current progress */
	bool need_progress;
	uint64_t spin_ns;    /* busy-poll budget with operations in flight; 0: never */
	uint64_t spin_since; /* start of the current spin (last completion); 0: not spinning */
};

/* Two-sided messages: receive buffers and the send buffer pool (ops.c). */
struct fab_msgs {
	size_t max_msg;
	unsigned rx_depth;
	struct fab_rx_slot *rx;
	unsigned char *rx_mem;
	struct fid_mr *rx_mr;
	unsigned rx_pending;
	size_t sbuf_stride;
	struct slist sbuf_free;	  /* struct fab_sbuf, used LIFO */
	struct slist sbuf_chunks; /* struct fab_sbuf_chunk */
};

/* Memory regions (mr.c). */
struct fab_regions {
	struct list mrs;	    /* struct fab_mr, newest first */
	uint64_t next_internal_key; /* counts down from dom.key_max */
};

struct fab_link {
	struct loop *loop;
	char name[32];
	struct fab_link_events ev;
	unsigned flags;
	struct loop_timer timer;   /* all deferred work (progress.c) */
	struct loop_poller poller; /* reads the CQ directly while spinning (progress.c) */

	struct fab_dom dom;
	struct fab_ep_state ep;
	struct fab_ep_helper helper;
	struct fab_regions reg;
	struct fab_ops ops;
	struct fab_msgs msg;

	struct fab_link_stats st;
	struct fab_ratelimit rl_err, rl_slow, rl_ep;
	unsigned busy; /* callbacks running: free() waits for 0 */
	bool closing;
};

/* The start of a timed libfabric call. */
struct fab_tstart {
	uint64_t wall, cpu;
	long vcsw, ivcsw;
};

/* base.c */
/** Read DUET_FABRIC_CPU_TIMING from the environment (once per open). */
void fab_timing_init(void);
/** Whether a rate-limited log may be written now (one per second). */
bool fab_log_allowed(struct fab_ratelimit *rl);
/** Note the start of a libfabric call made on the loop thread. */
void fab_tstart(struct fab_tstart *t);
/** Account a libfabric call started at @p t: slow ones counted and logged. */
void fab_call_timed(struct fab_link *link, const char *what, const struct fab_tstart *t);
/** Translate a libfabric error code into a negative errno. */
int fab_errno(int fi_err);
/** fi_close @p fid (NULL: nothing), logging a failure with @p what. */
void fab_close_fid(const char *name, struct fid *fid, const char *what);
/** Have the link's timer run within @p delay_ns (never later than armed). */
void fab_schedule(struct fab_link *link, uint64_t delay_ns);
/** Leave a callback section; the last one out frees a link closed in it. */
void fab_link_leave(struct fab_link *link);
/** Free the link's memory (its resources are gone already). */
void fab_link_free(struct fab_link *link);

/* mr.c */
/** Register an internal region (only on FI_MR_LOCAL providers, else NULL). */
int fab_mr_reg_internal(struct fab_link *link, void *buf, size_t len, struct fid_mr **mr);
/** The descriptor of the region holding [p, p+len), or -EINVAL (logged). */
int fab_mr_find_local(struct fab_link *link, const void *p, size_t len, void **desc);
/** Close every region's registration at link close; their fab_mr stay. */
void fab_mr_detach_all(struct fab_link *link);

/* ops.c */
/** Initialise the empty slot lists and buffer pools of a new link. */
void fab_ops_init(struct fab_link *link);
/** Allocate the receive buffers (posted when an endpoint is installed). */
int fab_msgs_open(struct fab_link *link);
/** Deregister and free the receive region and the send buffer chunks. */
void fab_msgs_close_regions(struct fab_link *link);
/** Free the slot chunks and the receive buffers (after the domain closed). */
void fab_ops_free(struct fab_link *link);
/** The first slot of @p l, or NULL. */
struct fab_slot *fab_slot_list_first(const struct fab_slot_list *l);
/** Post the backlog from its head until the provider pushes back; true: empty. */
bool fab_flush_backlog(struct fab_link *link);
/** Post receive buffer @p r, or mark it pending for the timer. */
void fab_repost_rx(struct fab_link *link, struct fab_rx_slot *r);
/** Hand a finished slot back to the pool and call its op back with @p status. */
void fab_slot_complete(struct fab_link *link, struct fab_slot *s, int status);
/** Take every accepted operation away; their ops chained via op->next, in order. */
struct fab_op *fab_detach_all(struct fab_link *link);
/** Call back detached ops with @p status, each exactly once. */
void fab_call_detached(struct fab_op *op, int status);
/** loop_now_ns() of the oldest operation in flight, 0 when none. */
uint64_t fab_oldest_accepted(const struct fab_link *link);

/* endpoint.c */
/** Create one endpoint generation; logs nothing, *what names a failed step. */
int fab_ep_create(const struct fab_link *link, struct fab_ep_res *r, const char **what);
/** Make @p r the link's endpoint, post receives, release the backlog. */
void fab_ep_install(struct fab_link *link, struct fab_ep_res *r);
/** Close the current endpoint generation (operations already taken away). */
void fab_ep_drop(struct fab_link *link);
/** Start creating an endpoint: on the helper thread or here. */
void fab_ep_start(struct fab_link *link);
/** Join the helper thread and install or discard its endpoint. */
void fab_ep_job_collect(struct fab_link *link);
/** Set up the helper thread's eventfd (or fall back to creating on the loop). */
void fab_ep_helper_open(struct fab_link *link);
/** Close the helper's eventfd (after fab_ep_job_collect). */
void fab_ep_helper_close(struct fab_link *link);
/** Fail every operation with @p status once the endpoint is closed; start the next. */
void fab_ep_reset(struct fab_link *link, int status);

/* progress.c */
/** The wait fd's handler: drive the link (installed by endpoint.c). */
void fab_progress_on_cq_fd(struct loop_io *io, uint32_t events);
/** The link timer's handler: drive the link. */
void fab_progress_on_timer(struct loop_timer *t);
/** The loop's poller of a link with a spin budget (fab_link_opts.spin_us). */
int fab_progress_poll(void *arg);

#endif
