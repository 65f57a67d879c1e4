/* One interconnect link over libfabric (see fabric.h for the contract).
 *
 * Internals in short:
 * - Every operation gets an internal slot from a per-link pool; the slot,
 *   not the caller's fab_op, is libfabric's context. Slots live on exactly
 *   one list: free, backlog (not posted yet, -FI_EAGAIN), posted, or failed
 *   (post error, completed from the timer).
 * - One timer does all deferred work: drive the CQ after posts (a pre-sleep
 *   hook so no completion is left behind the wait fd), complete failed
 *   posts, reset the endpoint, retry the backlog with backoff.
 * - The endpoint generation: the fabric, domain and regions live as long as
 *   the link; the endpoint with its address vector and completion queue is
 *   recreated by a reset. A reset takes every operation away from the link,
 *   closes the endpoint (libfabric is then done with their buffers), closes
 *   the CQ (no stale completion can name a reused slot) and only then calls
 *   the operations back. The new endpoint is created on a helper thread
 *   when the domain is thread safe (its buffer pools cost 4-50 ms on rxm),
 *   and handed to the loop through an eventfd; until then operations wait
 *   in the backlog.
 * - Recovery from a broken connection is such a reset, never fi_av_remove:
 *   libfabric 1.17's rxm crashes in fi_av_remove (FI_AV_REMOVE_CLEANUP) on
 *   a peer whose connect failed (docs/FABRIC.md).
 */
#define LOG_MODULE "fabric"
#include "fabric/fabric.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

/* util.h first: libfabric defines container_of only when it is missing. */
#include "common/util.h"

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "common/log.h"
#include "common/loop.h"

#define FAB_FI_VERSION	  FI_VERSION(1, 12)
#define SLOTS_PER_CHUNK	  64
#define SBUFS_PER_CHUNK	  16
#define CQ_BATCH	  32
#define CQ_ROUNDS	  16 /* batches per wake-up before yielding to the loop */
#define RETRY_MIN_NS	  50000ull
#define DEFAULT_RETRY_MS  20
#define POLL_IDLE_NS	  1000000ull
#define IDLE_POLL_MIN_NS  50000ull
#define IDLE_POLL_MAX_NS  2000000ull
#define EP_RETRY_MIN_NS	  10000000ull /* endpoint creation failed: try again */
#define EP_RETRY_MAX_NS	  1000000000ull
#define SLOW_CALL_NS	  5000000ull /* a libfabric call this long is logged */
#define RESERVED_KEYS	  256
#define DEFAULT_PROVIDER  "tcp;ofi_rxm"
#define SUPPORTED_MR_MODE (FI_MR_LOCAL | FI_MR_ALLOCATED)
#define LOG_INTERVAL_NS	  1000000000ull

enum slot_kind { KIND_TX = 1, KIND_RX };
enum slot_state { ST_FREE, ST_BACKLOG, ST_POSTED, ST_FAILED };
enum op_type { OP_READ, OP_WRITE, OP_WRITEDATA, OP_SEND };

/* Common head of everything passed to libfabric as a context. */
struct ctx_head {
	struct fi_context2 fictx; /* first: libfabric's op_context points here */
	uint8_t kind;
};

struct sbuf {
	struct sbuf *next;
	void *desc;
	unsigned char data[];
};

struct slot {
	struct ctx_head h;
	uint8_t state;
	uint8_t type;
	unsigned flags;
	int status;
	uint64_t gen;
	uint64_t accepted_ns; /* when fab_read & co. took it */
	struct fab_op *op;
	struct slot *prev, *next;
	/* Parameters, kept for posting from the backlog. */
	void *local;
	size_t len;
	void *desc;
	uint64_t raddr, key, imm;
	struct sbuf *sbuf;
};

struct slot_list {
	struct slot *head, *tail;
	size_t n;
};

struct slot_chunk {
	struct slot_chunk *next;
	struct slot slots[SLOTS_PER_CHUNK];
};

struct sbuf_chunk {
	struct sbuf_chunk *next;
	struct fid_mr *mr;
	unsigned char mem[];
};

struct rx_slot {
	struct ctx_head h;
	bool pending; /* not posted on the current endpoint: post from the timer */
	unsigned char *buf;
};

struct fab_mr {
	struct fab_link *link; /* NULL once the link closed */
	struct fab_mr *next;
	struct fid_mr *mr;
	unsigned char *buf;
	size_t len;
	void *desc;
};

struct ratelimit {
	uint64_t last_ns;
	unsigned suppressed;
};

/* What one endpoint generation consists of. */
struct ep_res {
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	fi_addr_t peer;
	int wait_fd;	 /* -1: poll the CQ */
	bool no_wait_fd; /* the provider refused FI_WAIT_FD */
};

/* An endpoint being created on a helper thread. The thread only reads the
 * link's immutable parts (info, domain, names, peer address, flags). */
struct ep_job {
	pthread_t thread;
	struct fab_link *link;
	struct ep_res res;
	int rc;
	const char *what; /* the step that failed */
	uint64_t ns;
	atomic_bool finished;
};

struct fab_link {
	struct loop *loop;
	char name[32];
	char prov[64];
	char host[64], port[16];
	struct fab_link_events ev;
	unsigned flags;

	/* For the whole life of the link. */
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct sockaddr_storage peer_sa;
	socklen_t peer_salen;
	bool async;	/* endpoints are created on a helper thread */
	bool poll_mode; /* no wait fd (forced, or the provider has none) */
	struct loop_timer timer;

	/* The current endpoint generation. */
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	fi_addr_t peer;
	int wait_fd; /* -1 in poll mode */
	struct loop_io io;
	bool ep_ready;	      /* av, cq and ep are there */
	bool suspended;	      /* no endpoint until fab_link_resume() */
	uint64_t ep_gen;      /* bumped by every reset: a CQ batch of an older one is dropped */
	bool reset_pending;   /* a transport error asks for a reset (from the timer) */
	uint64_t ep_retry_ns; /* creation failed: backoff */
	uint64_t ep_retry_at;

	/* Endpoint creation off the loop. */
	struct ep_job job;
	bool job_active;
	int job_fd; /* eventfd: the helper thread is done */
	struct loop_io job_io;

	bool mr_local;
	size_t max_rma;
	size_t cq_data_size;
	uint64_t key_max; /* largest key the provider accepts */
	uint64_t next_internal_key;
	struct fab_mr *mrs;

	/* Operations. */
	struct slot_chunk *chunks;
	struct slot_list free, backlog, posted, failed;
	uint64_t gen;
	uint64_t retry_ns, retry_max_ns;
	uint64_t retry_at;     /* next backlog retry not driven by a completion */
	uint64_t idle_poll_ns; /* delay of the next poll while fi_trywait refuses */
	unsigned reaped;       /* transmit completions in the current progress */
	bool need_progress;

	/* Messages. */
	size_t max_msg;
	unsigned rx_depth;
	struct rx_slot *rx;
	unsigned char *rx_mem;
	struct fid_mr *rx_mr;
	unsigned rx_pending;
	size_t sbuf_stride;
	struct sbuf *sbuf_free;
	struct sbuf_chunk *sbuf_chunks;

	struct fab_link_stats st;
	struct ratelimit rl_err, rl_slow, rl_ep;
	unsigned busy; /* callbacks running: free() waits for 0 */
	bool closing;
};

/* ---- small helpers ---- */

static bool log_allowed(struct ratelimit *rl)
{
	uint64_t now = now_ns();

	if (rl->last_ns && now - rl->last_ns < LOG_INTERVAL_NS) {
		rl->suppressed++;
		return false;
	}
	rl->last_ns = now;
	return true;
}

/* DUET_FABRIC_CPU_TIMING=1: slow calls also report the thread's CPU time
 * and context switches (voluntary: it blocked; involuntary: it was
 * preempted). Two more system calls per libfabric call: for measurements. */
static bool cpu_timing;

struct tstart {
	uint64_t wall, cpu;
	long vcsw, ivcsw;
};

static void thread_usage(uint64_t *cpu, long *vcsw, long *ivcsw)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	*cpu = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
	*vcsw = ru.ru_nvcsw;
	*ivcsw = ru.ru_nivcsw;
}

static void tstart(struct tstart *t)
{
	t->wall = now_ns();
	if (cpu_timing)
		thread_usage(&t->cpu, &t->vcsw, &t->ivcsw);
}

/* Account the time of one libfabric call made on the loop thread since
 * @p t: the longest is kept, and calls that held the loop past
 * SLOW_CALL_NS are counted and logged (rate-limited). */
static void call_timed(struct fab_link *link, const char *what, const struct tstart *t)
{
	uint64_t d = now_ns() - t->wall;

	if (d <= link->st.max_call_ns && d < SLOW_CALL_NS)
		return;
	if (d > link->st.max_call_ns) {
		link->st.max_call_ns = d;
		link->st.max_call = what;
	}
	if (d >= SLOW_CALL_NS) {
		link->st.slow_calls++;
		if (!log_allowed(&link->rl_slow))
			return;
		if (cpu_timing) {
			uint64_t cpu;
			long vcsw, ivcsw;
			thread_usage(&cpu, &vcsw, &ivcsw);
			LOG_INFO("%s: %s held the loop thread for %.1f ms (%.1f ms on the CPU, "
				 "%ld blocking and %ld preempting context switches)",
				 link->name, what, (double)d / 1e6, (double)(cpu - t->cpu) / 1e6,
				 vcsw - t->vcsw, ivcsw - t->ivcsw);
		} else {
			LOG_INFO("%s: %s held the loop thread for %.1f ms", link->name, what,
				 (double)d / 1e6);
		}
	}
}

/* libfabric's own error codes (>= FI_ERRNO_OFFSET) have no errno twin. */
static int fi_errno(int fi_err)
{
	if (fi_err < 0)
		fi_err = -fi_err;
	if (fi_err == 0)
		return -EIO;
	if (fi_err < FI_ERRNO_OFFSET)
		return -fi_err;
	switch (fi_err) {
	case FI_ETRUNC:
		return -EMSGSIZE;
	case FI_ENOKEY:
		return -EKEYREJECTED;
	case FI_ETOOSMALL:
		return -ENOBUFS;
	default:
		return -EIO;
	}
}

static void list_push(struct slot_list *l, struct slot *s)
{
	s->next = NULL;
	s->prev = l->tail;
	if (l->tail)
		l->tail->next = s;
	else
		l->head = s;
	l->tail = s;
	l->n++;
}

static void list_del(struct slot_list *l, struct slot *s)
{
	if (s->prev)
		s->prev->next = s->next;
	else
		l->head = s->next;
	if (s->next)
		s->next->prev = s->prev;
	else
		l->tail = s->prev;
	s->prev = s->next = NULL;
	l->n--;
}

static struct slot_list *list_of(struct fab_link *link, struct slot *s)
{
	switch (s->state) {
	case ST_FREE:
		return &link->free;
	case ST_BACKLOG:
		return &link->backlog;
	case ST_POSTED:
		return &link->posted;
	default:
		return &link->failed;
	}
}

static void slot_move(struct fab_link *link, struct slot *s, enum slot_state to)
{
	list_del(list_of(link, s), s);
	s->state = (uint8_t)to;
	list_push(list_of(link, s), s);
}

/* Pools grow in chunks and never shrink: no allocation on the steady path. */
static int slot_pool_grow(struct fab_link *link)
{
	struct slot_chunk *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->next = link->chunks;
	link->chunks = c;
	for (int i = 0; i < SLOTS_PER_CHUNK; i++) {
		c->slots[i].h.kind = KIND_TX;
		c->slots[i].state = ST_FREE;
		list_push(&link->free, &c->slots[i]);
	}
	return 0;
}

static struct slot *slot_get(struct fab_link *link)
{
	struct slot *s;

	if (!link->free.head && slot_pool_grow(link) < 0)
		return NULL;
	s = link->free.head;
	list_del(&link->free, s);
	s->gen = ++link->gen;
	s->status = 0;
	s->sbuf = NULL;
	s->desc = NULL;
	return s;
}

static void sbuf_put(struct fab_link *link, struct sbuf *b)
{
	b->next = link->sbuf_free;
	link->sbuf_free = b;
}

static void slot_put(struct fab_link *link, struct slot *s)
{
	list_del(list_of(link, s), s);
	if (s->sbuf) {
		sbuf_put(link, s->sbuf);
		s->sbuf = NULL;
	}
	s->op = NULL;
	s->state = ST_FREE;
	list_push(&link->free, s);
}

/* Internal regions (receive and send buffers) need registration only on
 * FI_MR_LOCAL providers; their keys come from the reserved top of the key
 * space so they never collide with the application's. They belong to the
 * domain and survive endpoint resets. */
static int reg_internal(struct fab_link *link, void *buf, size_t len, struct fid_mr **mr)
{
	uint64_t access = FI_SEND | FI_RECV | FI_READ | FI_WRITE;
	int rc;

	*mr = NULL;
	if (!link->mr_local)
		return 0;
	rc = fi_mr_reg(link->domain, buf, len, access, 0, link->next_internal_key--, 0, mr, NULL);
	if (rc) {
		LOG_ERROR("%s: registering %zu internal bytes: %s", link->name, len,
			  fi_strerror(-rc));
		return fi_errno(rc);
	}
	return 0;
}

static int sbuf_pool_grow(struct fab_link *link)
{
	size_t bytes = link->sbuf_stride * SBUFS_PER_CHUNK;
	struct sbuf_chunk *c = aligned_alloc(64, (sizeof(*c) + bytes + 63) & ~(size_t)63);
	int rc;

	if (!c)
		return -ENOMEM;
	rc = reg_internal(link, c->mem, bytes, &c->mr);
	if (rc) {
		free(c);
		return rc;
	}
	c->next = link->sbuf_chunks;
	link->sbuf_chunks = c;
	for (int i = 0; i < SBUFS_PER_CHUNK; i++) {
		struct sbuf *b = (struct sbuf *)(c->mem + (size_t)i * link->sbuf_stride);
		b->desc = c->mr ? fi_mr_desc(c->mr) : NULL;
		sbuf_put(link, b);
	}
	return 0;
}

static void schedule(struct fab_link *link, uint64_t delay_ns)
{
	if (link->closing)
		return;
	if (loop_timer_armed(&link->timer) && link->timer.deadline_ns <= now_ns() + delay_ns)
		return;
	loop_timer_arm(link->loop, &link->timer, delay_ns);
}

static void link_free(struct fab_link *link)
{
	free(link);
}

/* Leave a callback section; the last one out frees a link closed inside it. */
static void link_leave(struct fab_link *link)
{
	if (--link->busy == 0 && link->closing)
		link_free(link);
}

static void stats_done(struct fab_link *link, struct slot *s, int status)
{
	link->st.inflight--;
	link->st.inflight_bytes -= s->len;
	if (status == 0) {
		link->st.ops++;
		link->st.bytes += s->len;
	} else {
		link->st.errors++;
	}
}

static void close_fid(const char *name, struct fid *fid, const char *what)
{
	int rc;

	if (!fid)
		return;
	rc = fi_close(fid);
	if (rc)
		LOG_WARN("%s: closing the %s: %s", name, what, fi_strerror(-rc));
}

/* ---- endpoint generations ---- */

static void ep_res_close(const char *name, struct ep_res *r)
{
	/* The endpoint first: once it is closed no buffer of ours is touched. */
	close_fid(name, r->ep ? &r->ep->fid : NULL, "endpoint");
	close_fid(name, r->av ? &r->av->fid : NULL, "address vector");
	close_fid(name, r->cq ? &r->cq->fid : NULL, "completion queue");
	r->ep = NULL;
	r->av = NULL;
	r->cq = NULL;
	r->wait_fd = -1;
}

/*
 * Create one endpoint generation: an AV holding the peer, a CQ (with a wait
 * fd unless polling), and the endpoint bound to both and enabled (it then
 * listens at the link's local address). Runs on the loop or on a helper
 * thread, so it reads only what stays fixed for the link's life and logs
 * nothing: *what names the step that failed.
 * @return 0 or a negative errno.
 */
static int ep_create(const struct fab_link *link, struct ep_res *r, const char **what)
{
	struct fi_cq_attr cq_attr;
	struct fi_av_attr av_attr;
	int rc;

	memset(r, 0, sizeof(*r));
	r->wait_fd = -1;
	memset(&av_attr, 0, sizeof(av_attr));
	av_attr.type = FI_AV_TABLE;
	av_attr.count = 4;
	*what = "fi_av_open";
	rc = fi_av_open(link->domain, &av_attr, &r->av, NULL);
	if (rc)
		goto fail;
	*what = "fi_av_insert";
	rc = fi_av_insert(r->av, &link->peer_sa, 1, &r->peer, 0, NULL);
	if (rc != 1) {
		rc = rc < 0 ? rc : -FI_EADDRNOTAVAIL;
		goto fail;
	}
	memset(&cq_attr, 0, sizeof(cq_attr));
	cq_attr.format = FI_CQ_FORMAT_DATA;
	cq_attr.size = link->info->tx_attr->size + link->info->rx_attr->size;
	cq_attr.wait_obj = link->poll_mode ? FI_WAIT_NONE : FI_WAIT_FD;
	*what = "fi_cq_open";
	rc = fi_cq_open(link->domain, &cq_attr, &r->cq, NULL);
	if (rc && cq_attr.wait_obj == FI_WAIT_FD) {
		r->no_wait_fd = true;
		cq_attr.wait_obj = FI_WAIT_NONE;
		rc = fi_cq_open(link->domain, &cq_attr, &r->cq, NULL);
	}
	if (rc)
		goto fail;
	if (cq_attr.wait_obj == FI_WAIT_FD &&
	    fi_control(&r->cq->fid, FI_GETWAIT, &r->wait_fd) != 0) {
		r->no_wait_fd = true;
		r->wait_fd = -1;
	}
	*what = "fi_endpoint";
	rc = fi_endpoint(link->domain, link->info, &r->ep, NULL);
	if (rc)
		goto fail;
	*what = "fi_ep_bind";
	rc = fi_ep_bind(r->ep, &r->av->fid, 0);
	if (!rc)
		rc = fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV);
	if (rc)
		goto fail;
	*what = "fi_enable";
	rc = fi_enable(r->ep);
	if (rc)
		goto fail;
	return 0;
fail:
	ep_res_close(link->name, r);
	if (rc == -FI_EADDRINUSE)
		return -EADDRINUSE;
	return fi_errno(rc);
}

static void on_cq_fd(struct loop_io *io, uint32_t events);
static void repost_rx(struct fab_link *link, struct rx_slot *r);

/* Make @p r the link's endpoint: watch its wait fd, post the receive
 * buffers, and let the backlog go. */
static void ep_install(struct fab_link *link, struct ep_res *r)
{
	link->av = r->av;
	link->cq = r->cq;
	link->ep = r->ep;
	link->peer = r->peer;
	link->wait_fd = r->wait_fd;
	if (r->no_wait_fd && !link->poll_mode) {
		LOG_WARN("%s: provider %s gives no wait fd for its completion queue: polling",
			 link->name, link->prov);
		link->poll_mode = true;
	}
	if (link->wait_fd >= 0) {
		/* Edge-triggered: wake on every new event behind the wait fd, not
		 * on readiness the provider leaves standing (a signal byte or a
		 * listening socket it has not served yet), which would spin. */
		int rc = loop_io_add(link->loop, &link->io, link->wait_fd, EPOLLIN | EPOLLET,
				     on_cq_fd, link);
		if (rc) {
			LOG_WARN("%s: cannot watch the completion queue (%s): polling", link->name,
				 strerror(-rc));
			link->wait_fd = -1;
			link->poll_mode = true;
		}
	}
	link->ep_ready = true;
	link->ep_retry_ns = 0;
	link->retry_ns = RETRY_MIN_NS;
	link->retry_at = 0;
	link->idle_poll_ns = IDLE_POLL_MIN_NS;
	for (unsigned i = 0; i < link->rx_depth; i++)
		repost_rx(link, &link->rx[i]);
	link->need_progress = true;
	schedule(link, 0);
}

/* Close the current endpoint generation. The caller has taken every
 * operation away from the link; their contexts die with the CQ. */
static void ep_drop(struct fab_link *link)
{
	struct ep_res r = {.av = link->av, .cq = link->cq, .ep = link->ep};
	struct tstart t0;

	tstart(&t0);
	if (link->io.added)
		loop_io_del(link->loop, &link->io);
	ep_res_close(link->name, &r);
	call_timed(link, "fi_close(endpoint)", &t0);
	link->av = NULL;
	link->cq = NULL;
	link->ep = NULL;
	link->wait_fd = -1;
	link->ep_ready = false;
	for (unsigned i = 0; link->rx && i < link->rx_depth; i++) {
		if (!link->rx[i].pending)
			link->rx_pending++;
		link->rx[i].pending = true;
	}
}

/* An endpoint creation ended (on the loop or the helper thread). */
static void ep_created(struct fab_link *link, struct ep_res *r, int rc, const char *what)
{
	if (rc == 0) {
		ep_install(link, r);
		return;
	}
	link->ep_retry_ns =
	    link->ep_retry_ns ? MIN(link->ep_retry_ns * 2, EP_RETRY_MAX_NS) : EP_RETRY_MIN_NS;
	link->ep_retry_at = now_ns() + link->ep_retry_ns;
	if (log_allowed(&link->rl_ep))
		LOG_ERROR("%s: cannot create the endpoint at %s:%s over %s (%s: %s); retrying",
			  link->name, link->host, link->port, link->prov, what, strerror(-rc));
	schedule(link, link->ep_retry_ns);
}

static void *job_main(void *arg)
{
	struct ep_job *j = arg;
	uint64_t t0 = now_ns(), one = 1;
	const char *what = "";

	j->rc = ep_create(j->link, &j->res, &what);
	j->ns = now_ns() - t0;
	j->what = what;
	atomic_store(&j->finished, true);
	/* Wake the loop; should this fail, its next timer run collects us. */
	if (write(j->link->job_fd, &one, sizeof(one)) < 0)
		return NULL;
	return NULL;
}

/* Create the next endpoint on a helper thread (all signals blocked in it).
 * @return 0, or a negative errno when no thread could be started. */
static int job_start(struct fab_link *link)
{
	sigset_t all, old;
	int rc;

	if (link->job_fd < 0)
		return -ENOSYS;
	link->job.link = link;
	link->job.rc = 0;
	link->job.what = "";
	atomic_store(&link->job.finished, false);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&link->job.thread, NULL, job_main, &link->job);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		if (log_allowed(&link->rl_ep))
			LOG_WARN("%s: no helper thread (%s): creating the endpoint on the loop",
				 link->name, strerror(rc));
		return -rc;
	}
	link->job_active = true;
	return 0;
}

/* Join the helper thread (at once when it has finished; in fab_link_close
 * it may still be working) and install or discard its endpoint. */
static void job_collect(struct fab_link *link)
{
	struct ep_job *j = &link->job;

	if (!link->job_active)
		return;
	pthread_join(j->thread, NULL);
	link->job_active = false;
	link->st.ep_open_ns = j->ns;
	if (link->closing || link->suspended) {
		/* Suspended meanwhile: connections it may have accepted die. */
		if (j->rc == 0)
			ep_res_close(link->name, &j->res);
		return;
	}
	ep_created(link, &j->res, j->rc, j->what);
}

/* Start creating an endpoint: on a helper thread when the domain is thread
 * safe, else here. */
static void ep_start(struct fab_link *link)
{
	struct ep_res r;
	const char *what = "";
	struct tstart t0;
	int rc;

	if (link->closing || link->ep_ready || link->job_active || link->suspended)
		return;
	if (link->async && job_start(link) == 0)
		return;
	tstart(&t0);
	rc = ep_create(link, &r, &what);
	link->st.ep_open_ns = now_ns() - t0.wall;
	call_timed(link, "endpoint creation", &t0);
	ep_created(link, &r, rc, what);
}

static void on_job_fd(struct loop_io *io, uint32_t events)
{
	struct fab_link *link = io->arg;
	uint64_t v;

	(void)events;
	if (read(link->job_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		LOG_DEBUG("%s: reading the helper's eventfd: %s", link->name, strerror(errno));
	if (link->job_active && atomic_load(&link->job.finished)) {
		link->busy++;
		job_collect(link);
		link_leave(link);
	}
}

/* ---- posting ---- */

static ssize_t post_now(struct fab_link *link, struct slot *s, const char **what)
{
	struct iovec iov;
	struct fi_rma_iov riov;
	struct fi_msg_rma msg;
	uint64_t fl;

	switch (s->type) {
	case OP_READ:
		*what = "fi_read";
		return fi_read(link->ep, s->local, s->len, s->desc, link->peer, s->raddr, s->key,
			       &s->h.fictx);
	case OP_SEND:
		*what = "fi_send";
		return fi_send(link->ep, s->sbuf->data, s->len, s->sbuf->desc, link->peer,
			       &s->h.fictx);
	case OP_WRITE:
		if (!(s->flags & FAB_DELIVERY_COMPLETE)) {
			*what = "fi_write";
			return fi_write(link->ep, s->local, s->len, s->desc, link->peer, s->raddr,
					s->key, &s->h.fictx);
		}
		break;
	default:
		break;
	}
	*what = "fi_writemsg";
	iov.iov_base = s->local;
	iov.iov_len = s->len;
	riov.addr = s->raddr;
	riov.len = s->len;
	riov.key = s->key;
	msg.msg_iov = &iov;
	msg.desc = &s->desc;
	msg.iov_count = 1;
	msg.addr = link->peer;
	msg.rma_iov = &riov;
	msg.rma_iov_count = 1;
	msg.context = &s->h.fictx;
	msg.data = s->imm;
	fl = FI_COMPLETION;
	if (s->flags & FAB_DELIVERY_COMPLETE)
		fl |= FI_DELIVERY_COMPLETE;
	if (s->type == OP_WRITEDATA)
		fl |= FI_REMOTE_CQ_DATA;
	return fi_writemsg(link->ep, &msg, fl);
}

/* Post one operation, timing the call (a post may connect: rxm opens the
 * peer's connection from inside the first post). */
static ssize_t post(struct fab_link *link, struct slot *s)
{
	const char *what = "post";
	struct tstart t0;
	ssize_t rc;

	tstart(&t0);
	rc = post_now(link, s, &what);
	call_timed(link, what, &t0);
	return rc;
}

/* Errors of a post that leave the provider's connection state sound: the
 * connect attempt failed cleanly (rxm retries it at the next post), or the
 * request itself was refused. Anything else may have left a dead
 * connection behind: reset. */
static bool post_error_needs_reset(ssize_t rc)
{
	switch ((int)-rc) {
	case ENETUNREACH:
	case EHOSTUNREACH:
	case EINVAL:
	case EMSGSIZE:
	case ENOMEM:
		return false;
	default:
		return true;
	}
}

static void post_failed(struct fab_link *link, struct slot *s, ssize_t rc)
{
	bool reset = post_error_needs_reset(rc);

	if (log_allowed(&link->rl_err))
		LOG_WARN("%s: posting an operation: %s%s", link->name, fi_strerror((int)-rc),
			 reset ? ": resetting the endpoint" : "");
	s->status = fi_errno((int)rc);
	slot_move(link, s, ST_FAILED);
	if (reset)
		link->reset_pending = true;
	schedule(link, 0);
}

/* Post from the head of the backlog until the provider pushes back.
 * @return true when the backlog is empty. */
static bool flush_backlog(struct fab_link *link)
{
	while (link->backlog.head && link->ep_ready && !link->reset_pending && !link->closing) {
		struct slot *s = link->backlog.head;
		ssize_t rc = post(link, s);

		if (rc == -FI_EAGAIN)
			return false;
		link->need_progress = true;
		if (rc == 0)
			slot_move(link, s, ST_POSTED);
		else
			post_failed(link, s, rc);
	}
	return !link->backlog.head;
}

static void repost_rx(struct fab_link *link, struct rx_slot *r)
{
	struct tstart t0;
	ssize_t rc;

	if (link->closing)
		return;
	if (!link->ep_ready) {
		if (!r->pending) {
			r->pending = true;
			link->rx_pending++;
		}
		return; /* posted when the next endpoint is installed */
	}
	tstart(&t0);
	rc = fi_recv(link->ep, r->buf, link->max_msg, link->rx_mr ? fi_mr_desc(link->rx_mr) : NULL,
		     FI_ADDR_UNSPEC, &r->h.fictx);
	call_timed(link, "fi_recv", &t0);
	if (rc == 0) {
		if (r->pending) {
			r->pending = false;
			link->rx_pending--;
		}
		return;
	}
	if (rc != -FI_EAGAIN && log_allowed(&link->rl_err))
		LOG_ERROR("%s: posting a receive buffer: %s", link->name, fi_strerror((int)-rc));
	if (!r->pending) {
		r->pending = true;
		link->rx_pending++;
	}
	schedule(link, link->retry_ns);
}

/* Accept an operation filled in @p s. It joins the backlog and is posted at
 * once when it is the head: the backlog keeps the order of posting. */
static void submit(struct fab_link *link, struct slot *s, struct fab_op *op)
{
	s->op = op;
	s->accepted_ns = now_ns();
	op->link = link;
	op->gen = s->gen;
	op->next = NULL;
	link->st.inflight++;
	link->st.inflight_bytes += s->len;
	s->state = ST_BACKLOG;
	list_push(&link->backlog, s);
	if (s != link->backlog.head || !link->ep_ready || link->reset_pending)
		return; /* the timer is already retrying, or an endpoint is coming */
	if (!flush_backlog(link))
		link->need_progress = true; /* completions may free credits */
	schedule(link, 0);
}

/* Common checks of an RMA: the remote range [offset, offset+len) must lie
 * in rem->size without overflow, and FI_MR_LOCAL needs a local region. */
static int check_rma(struct fab_link *link, const void *local, size_t len,
		     const struct fab_remote *rem, uint64_t offset, void **desc)
{
	*desc = NULL;
	if (!link || !rem || (!local && len))
		return -EINVAL;
	if (link->closing)
		return -ESHUTDOWN;
	if (offset > rem->size || len > rem->size - offset) {
		LOG_DEBUG("%s: remote range %" PRIu64 "+%zu outside region of %" PRIu64 " bytes",
			  link->name, offset, len, rem->size);
		return -EINVAL;
	}
	if (len > link->max_rma)
		return -EMSGSIZE;
	if (link->mr_local && len) {
		const unsigned char *p = local;
		for (struct fab_mr *m = link->mrs; m; m = m->next) {
			if (p >= m->buf && len <= m->len && (size_t)(p - m->buf) <= m->len - len) {
				*desc = m->desc;
				return 0;
			}
		}
		LOG_ERROR("%s: provider %s needs local buffers registered (FI_MR_LOCAL): "
			  "%p+%zu is in no region",
			  link->name, link->prov, local, len);
		return -EINVAL;
	}
	return 0;
}

static int rma(struct fab_link *link, enum op_type type, void *local, size_t len,
	       const struct fab_remote *rem, uint64_t offset, uint64_t imm, unsigned flags,
	       struct fab_op *op)
{
	void *desc;
	struct slot *s;
	int rc;

	if (!op || !op->done)
		return -EINVAL;
	rc = check_rma(link, local, len, rem, offset, &desc);
	if (rc)
		return rc;
	s = slot_get(link);
	if (!s)
		return -ENOMEM;
	s->type = (uint8_t)type;
	s->flags = flags;
	s->local = local;
	s->len = len;
	s->desc = desc;
	s->raddr = offset;
	s->key = rem->key;
	s->imm = imm;
	submit(link, s, op);
	return 0;
}

int fab_read(struct fab_link *link, void *local, size_t len, const struct fab_remote *rem,
	     uint64_t offset, struct fab_op *op)
{
	return rma(link, OP_READ, local, len, rem, offset, 0, 0, op);
}

int fab_write(struct fab_link *link, const void *local, size_t len, const struct fab_remote *rem,
	      uint64_t offset, unsigned flags, struct fab_op *op)
{
	return rma(link, OP_WRITE, (void *)local, len, rem, offset, 0, flags, op);
}

int fab_writedata(struct fab_link *link, const void *local, size_t len,
		  const struct fab_remote *rem, uint64_t offset, uint64_t imm, unsigned flags,
		  struct fab_op *op)
{
	if (link && link->cq_data_size < 8 && (imm >> (8 * link->cq_data_size)) != 0)
		return -EOPNOTSUPP;
	return rma(link, OP_WRITEDATA, (void *)local, len, rem, offset, imm, flags, op);
}

int fab_send(struct fab_link *link, const void *msg, size_t len, struct fab_op *op)
{
	struct slot *s;
	struct sbuf *b;

	if (!link || !op || !op->done || (!msg && len))
		return -EINVAL;
	if (link->closing)
		return -ESHUTDOWN;
	if (len > link->max_msg)
		return -EMSGSIZE;
	if (!link->sbuf_free && sbuf_pool_grow(link) < 0)
		return -ENOMEM;
	s = slot_get(link);
	if (!s)
		return -ENOMEM;
	b = link->sbuf_free;
	link->sbuf_free = b->next;
	if (len)
		memcpy(b->data, msg, len);
	s->type = OP_SEND;
	s->flags = 0;
	s->sbuf = b;
	s->local = b->data;
	s->len = len;
	submit(link, s, op);
	return 0;
}

/* ---- completions ---- */

static bool is_conn_error(int err)
{
	/* Anything but a local truncation may have broken the connection;
	 * a reset costs one reconnect, a dead connection costs the link. */
	return err != FI_ETRUNC;
}

/* Hand a finished slot back and call its operation's callback. */
static void complete_slot(struct fab_link *link, struct slot *s, int status)
{
	struct fab_op *op;

	link->reaped++;
	op = s->op;
	stats_done(link, s, status);
	if (op && op->gen != s->gen) {
		/* The caller reused an op still in flight: never call it twice. */
		LOG_ERROR("%s: operation reused while in flight; completion dropped", link->name);
		op = NULL;
	}
	slot_put(link, s);
	if (op)
		op->done(op, status);
}

static void handle_rx_done(struct fab_link *link, struct rx_slot *r,
			   const struct fi_cq_data_entry *e)
{
	if ((e->flags & FI_REMOTE_CQ_DATA) && (e->flags & FI_RMA)) {
		/* A doorbell that consumed a receive (FI_RX_CQ_DATA providers). */
		link->st.doorbells_in++;
		if (link->ev.on_doorbell)
			link->ev.on_doorbell(link->ev.arg, e->data);
	} else {
		link->st.msgs_in++;
		if (link->ev.on_msg)
			link->ev.on_msg(link->ev.arg, r->buf, e->len);
	}
	repost_rx(link, r);
}

static void handle_entry(struct fab_link *link, const struct fi_cq_data_entry *e)
{
	struct ctx_head *h = e->op_context;

	if (!h) {
		if (e->flags & FI_REMOTE_CQ_DATA) {
			link->st.doorbells_in++;
			if (link->ev.on_doorbell)
				link->ev.on_doorbell(link->ev.arg, e->data);
		}
		return;
	}
	if (h->kind == KIND_RX) {
		handle_rx_done(link, (struct rx_slot *)h, e);
		return;
	}
	complete_slot(link, (struct slot *)h, 0);
}

static void handle_error(struct fab_link *link)
{
	struct fi_cq_err_entry err;
	char pbuf[128];
	ssize_t rc;
	struct ctx_head *h;
	struct tstart t0;

	tstart(&t0);
	memset(&err, 0, sizeof(err));
	rc = fi_cq_readerr(link->cq, &err, 0);
	call_timed(link, "fi_cq_readerr", &t0);
	if (rc < 0) {
		if (rc != -FI_EAGAIN && log_allowed(&link->rl_err))
			LOG_ERROR("%s: fi_cq_readerr: %s", link->name, fi_strerror((int)-rc));
		return;
	}
	h = err.op_context;
	if (!h || h->kind == KIND_RX) {
		if (log_allowed(&link->rl_err))
			LOG_WARN("%s: %s error: %s (%s)", link->name, h ? "receive" : "remote",
				 fi_strerror(err.err),
				 fi_cq_strerror(link->cq, err.prov_errno, err.err_data, pbuf,
						sizeof(pbuf)));
		if (h)
			repost_rx(link, (struct rx_slot *)h);
		return;
	}
	struct slot *s = (struct slot *)h;
	bool reset = is_conn_error(err.err);
	if (log_allowed(&link->rl_err))
		LOG_WARN("%s: operation failed: %s (%s)%s", link->name, fi_strerror(err.err),
			 fi_cq_strerror(link->cq, err.prov_errno, err.err_data, pbuf, sizeof(pbuf)),
			 reset ? ": resetting the endpoint" : "");
	if (reset)
		link->reset_pending = true;
	complete_slot(link, s, fi_errno(err.err));
}

/* After a callback: was the link closed, or its endpoint reset (the rest
 * of the batch then belongs to a dead CQ and names freed slots)? */
static bool stale(const struct fab_link *link, uint64_t ep_gen)
{
	return link->closing || link->ep_gen != ep_gen;
}

/* Read the CQ until it is empty and the wait fd may be slept on again
 * (fi_trywait). Bounded: a busy CQ yields to the loop and continues from
 * the timer. fi_trywait may keep refusing with nothing to read (rxm does
 * until its periodic connection progress consumes an event): then poll
 * again after a short, growing delay instead of spinning.
 * @return false when a callback closed the link or reset its endpoint. */
static bool progress(struct fab_link *link)
{
	struct fi_cq_data_entry ents[CQ_BATCH];
	uint64_t g = link->ep_gen;
	unsigned got = 0;

	link->need_progress = false;
	if (!link->ep_ready)
		return true;
	struct fid *fids[1] = {&link->cq->fid};
	for (int round = 0; round < CQ_ROUNDS; round++) {
		struct tstart t0;
		ssize_t n;

		tstart(&t0);
		n = fi_cq_read(link->cq, ents, CQ_BATCH);
		call_timed(link, "fi_cq_read", &t0);
		if (n > 0) {
			got += (unsigned)n;
			for (ssize_t i = 0; i < n; i++) {
				handle_entry(link, &ents[i]);
				if (stale(link, g))
					return false;
			}
			continue;
		}
		if (n == -FI_EAVAIL) {
			got++;
			handle_error(link);
			if (stale(link, g))
				return false;
			continue;
		}
		if (n != -FI_EAGAIN) {
			if (log_allowed(&link->rl_err))
				LOG_ERROR("%s: fi_cq_read: %s", link->name, fi_strerror((int)-n));
			schedule(link, link->retry_max_ns);
			return true;
		}
		if (link->wait_fd < 0)
			return true;
		tstart(&t0);
		n = fi_trywait(link->fabric, fids, 1);
		call_timed(link, "fi_trywait", &t0);
		if (n == 0) {
			link->idle_poll_ns = IDLE_POLL_MIN_NS;
			return true;
		}
		if (n != -FI_EAGAIN) {
			if (log_allowed(&link->rl_err))
				LOG_ERROR("%s: fi_trywait: %s", link->name, fi_strerror((int)-n));
			schedule(link, link->retry_max_ns);
			return true;
		}
		if (!got && round >= 2)
			break; /* refusing with nothing to read: do not spin */
	}
	if (got) {
		link->need_progress = true;
		schedule(link, 0);
	} else {
		schedule(link, link->idle_poll_ns);
		link->idle_poll_ns = MIN(link->idle_poll_ns * 2, IDLE_POLL_MAX_NS);
	}
	return true;
}

static void link_reset(struct fab_link *link, int status);

/* The deferred work after progress: failed posts, a reset, the endpoint's
 * creation, the backlog, receives.
 * @return false when a callback closed the link or reset its endpoint. */
static bool after_progress(struct fab_link *link)
{
	uint64_t g = link->ep_gen;
	uint64_t now;

	while (link->failed.head) {
		struct slot *s = link->failed.head;
		complete_slot(link, s, s->status);
		if (stale(link, g))
			return false;
	}
	if (link->reset_pending) {
		LOG_INFO("%s: connection to the peer broken: endpoint reset", link->name);
		link_reset(link, -ECANCELED);
		return false;
	}
	now = now_ns();
	if (!link->ep_ready) {
		if (link->suspended)
			return !link->closing;
		if (!link->job_active && now >= link->ep_retry_at)
			ep_start(link);
		else if (!link->job_active)
			schedule(link, link->ep_retry_at - now);
		if (!link->ep_ready)
			return !link->closing;
	}
	/* Retry the backlog when completions freed credits or the backoff
	 * expired, never merely because the fd woke us: on rxm a refused
	 * connect signals the fd, and retrying then would connect again at
	 * once, a busy loop for as long as the peer is absent. */
	if (link->backlog.head && (link->reaped || now >= link->retry_at)) {
		if (flush_backlog(link)) {
			link->retry_ns = RETRY_MIN_NS;
		} else {
			link->retry_at = now + link->retry_ns;
			schedule(link, link->retry_ns);
			if (!link->reaped)
				link->retry_ns = MIN(link->retry_ns * 2, link->retry_max_ns);
		}
	} else if (link->backlog.head) {
		schedule(link, link->retry_at - now);
	}
	link->reaped = 0;
	if (link->rx_pending) {
		for (unsigned i = 0; i < link->rx_depth && !link->closing; i++)
			if (link->rx[i].pending)
				repost_rx(link, &link->rx[i]);
	}
	if (link->reset_pending || link->failed.head)
		schedule(link, 0);
	if (link->need_progress)
		schedule(link, 0);
	return !link->closing;
}

static void run(struct fab_link *link)
{
	link->busy++;
	if (link->job_active && atomic_load(&link->job.finished))
		job_collect(link);
	if (!link->closing && progress(link) && after_progress(link) && link->poll_mode &&
	    link->ep_ready) {
		/* Poll mode: keep polling while anything is outstanding. */
		schedule(link, link->posted.n ? 0 : POLL_IDLE_NS);
	}
	link_leave(link);
}

static void on_cq_fd(struct loop_io *io, uint32_t events)
{
	(void)events;
	run(io->arg);
}

static void on_timer(struct loop_timer *t)
{
	run(t->arg);
}

/* ---- reset and close ---- */

/* Take every accepted operation away from the link (their slots go back
 * to the pool: call only right before the endpoint is closed, or when
 * nothing is posted).
 * @return the callers' ops, chained through op->next, in posting order. */
static struct fab_op *detach_all(struct fab_link *link)
{
	struct fab_op *head = NULL, **tail = &head;
	struct slot_list *lists[] = {&link->posted, &link->failed, &link->backlog};

	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		while (lists[i]->head) {
			struct slot *s = lists[i]->head;
			struct fab_op *op = s->op;

			link->st.inflight--;
			link->st.inflight_bytes -= s->len;
			link->st.errors++;
			if (op && op->gen == s->gen) {
				op->next = NULL;
				*tail = op;
				tail = &op->next;
			}
			slot_put(link, s);
		}
	}
	return head;
}

/* Call back detached ops (no longer known to the link: each exactly once,
 * even when a callback closes the link). */
static void call_detached(struct fab_op *op, int status)
{
	while (op) {
		struct fab_op *next = op->next;
		op->next = NULL;
		op->done(op, status);
		op = next;
	}
}

/*
 * Fail every operation with @p status after closing the endpoint (nothing
 * touches their buffers any more, nothing of the old connections lands),
 * and start the next endpoint. While one is being created there is nothing
 * to close: only the backlog fails.
 */
static void link_reset(struct fab_link *link, int status)
{
	uint64_t t0 = now_ns();
	struct fab_op *ops;

	link->reset_pending = false;
	ops = detach_all(link);
	link->ep_gen++;
	if (link->ep_ready) {
		ep_drop(link);
		link->st.resets++;
	}
	ep_start(link);
	link->retry_ns = RETRY_MIN_NS;
	link->retry_at = 0;
	link->st.reset_ns = now_ns() - t0;
	LOG_DEBUG("%s: endpoint reset in %.2f ms on the loop", link->name,
		  (double)link->st.reset_ns / 1e6);
	link->busy++;
	call_detached(ops, status);
	if (!link->closing)
		schedule(link, 0);
	link_leave(link);
}

void fab_link_reset(struct fab_link *link)
{
	if (!link || link->closing)
		return;
	link_reset(link, -ECANCELED);
}

void fab_link_suspend(struct fab_link *link)
{
	if (!link || link->closing)
		return;
	link->suspended = true;
	link_reset(link, -ECANCELED);
}

void fab_link_resume(struct fab_link *link)
{
	if (!link || link->closing || !link->suspended)
		return;
	link->suspended = false;
	link->ep_retry_at = 0;
	ep_start(link);
	schedule(link, 0);
}

void fab_link_abort(struct fab_link *link)
{
	if (!link || link->closing)
		return;
	LOG_INFO("%s: aborted: operations failed with -ETIMEDOUT, endpoint reset", link->name);
	link_reset(link, -ETIMEDOUT);
}

/* Release libfabric resources in reverse order of creation. The endpoint
 * goes first: after it is closed no buffer of ours is touched any more. */
static void teardown(struct fab_link *link)
{
	loop_timer_cancel(link->loop, &link->timer);
	if (link->job_active)
		job_collect(link); /* waits for the helper, closes its endpoint */
	if (link->job_io.added)
		loop_io_del(link->loop, &link->job_io);
	if (link->job_fd >= 0)
		close(link->job_fd);
	link->job_fd = -1;
	if (link->ep || link->av || link->cq)
		ep_drop(link);
	for (struct fab_mr *m = link->mrs; m; m = m->next) {
		close_fid(link->name, m->mr ? &m->mr->fid : NULL, "region");
		m->mr = NULL;
		m->link = NULL;
	}
	link->mrs = NULL;
	close_fid(link->name, link->rx_mr ? &link->rx_mr->fid : NULL, "receive region");
	link->rx_mr = NULL;
	for (struct sbuf_chunk *c = link->sbuf_chunks, *n; c; c = n) {
		n = c->next;
		close_fid(link->name, c->mr ? &c->mr->fid : NULL, "send region");
		free(c);
	}
	link->sbuf_chunks = NULL;
	link->sbuf_free = NULL;
	close_fid(link->name, link->domain ? &link->domain->fid : NULL, "domain");
	close_fid(link->name, link->fabric ? &link->fabric->fid : NULL, "fabric");
	link->domain = NULL;
	link->fabric = NULL;
	if (link->info)
		fi_freeinfo(link->info);
	link->info = NULL;
	for (struct slot_chunk *c = link->chunks, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	link->chunks = NULL;
	memset(&link->free, 0, sizeof(link->free));
	free(link->rx);
	link->rx = NULL;
	link->rx_depth = 0;
	free(link->rx_mem);
	link->rx_mem = NULL;
}

void fab_link_close(struct fab_link *link)
{
	struct fab_op *ops;

	if (!link || link->closing)
		return;
	link->closing = true;
	link->busy++;
	ops = detach_all(link);
	/* Close the endpoint before calling back, so that the callers may free
	 * their buffers at once: nothing touches them any more. */
	teardown(link);
	call_detached(ops, -ECANCELED);
	LOG_INFO("%s: closed", link->name);
	link_leave(link);
}

const char *fab_link_name(const struct fab_link *link)
{
	return link ? link->name : "(none)";
}

/* Each list holds its slots in the order they were accepted (the backlog
 * is posted in order, and failed posts leave it in order): the oldest is
 * at one of the heads. */
static uint64_t oldest_accepted(const struct fab_link *link)
{
	const struct slot *heads[] = {link->posted.head, link->backlog.head, link->failed.head};
	uint64_t t = 0;

	for (size_t i = 0; i < ARRAY_SIZE(heads); i++)
		if (heads[i] && (!t || heads[i]->accepted_ns < t))
			t = heads[i]->accepted_ns;
	return t;
}

void fab_link_get_stats(const struct fab_link *link, struct fab_link_stats *st)
{
	*st = link->st;
	st->oldest_ns = oldest_accepted(link);
	st->backlog = link->backlog.n;
	st->ep_ready = link->ep_ready;
	st->suspended = link->suspended;
}

/* ---- memory regions ---- */

int fab_mr_reg(struct fab_link *link, void *buf, size_t len, uint64_t key, unsigned access,
	       struct fab_mr **out)
{
	uint64_t fa = 0;
	struct tstart t0;
	struct fab_mr *m;
	int rc;

	if (!link || !buf || !len || !out || (access & ~(FAB_REMOTE_READ | FAB_REMOTE_WRITE)))
		return -EINVAL;
	if (link->closing)
		return -ESHUTDOWN;
	if (key > link->key_max - RESERVED_KEYS) {
		LOG_ERROR("%s: key %#" PRIx64 " too large for provider %s (max %#" PRIx64 ")",
			  link->name, key, link->prov, link->key_max - RESERVED_KEYS);
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->buf = buf;
	m->len = len;
	if (access & FAB_REMOTE_READ)
		fa |= FI_REMOTE_READ;
	if (access & FAB_REMOTE_WRITE)
		fa |= FI_REMOTE_WRITE;
	if (link->mr_local)
		fa |= FI_READ | FI_WRITE | FI_SEND | FI_RECV;
	if (fa) {
		tstart(&t0);
		rc = fi_mr_reg(link->domain, buf, len, fa, 0, key, 0, &m->mr, NULL);
		call_timed(link, "fi_mr_reg", &t0);
		if (rc) {
			if (rc == -FI_ENOKEY) {
				LOG_ERROR("%s: key %#" PRIx64 " is already registered", link->name,
					  key);
				rc = -EEXIST;
			} else {
				LOG_ERROR("%s: registering %zu bytes under key %#" PRIx64 ": %s",
					  link->name, len, key, fi_strerror(-rc));
				rc = fi_errno(rc);
			}
			free(m);
			return rc;
		}
		m->desc = fi_mr_desc(m->mr);
	}
	m->link = link;
	m->next = link->mrs;
	link->mrs = m;
	*out = m;
	return 0;
}

void fab_mr_close(struct fab_mr *m)
{
	if (!m)
		return;
	if (m->link) {
		for (struct fab_mr **pp = &m->link->mrs; *pp; pp = &(*pp)->next) {
			if (*pp == m) {
				*pp = m->next;
				break;
			}
		}
		if (m->mr) {
			int rc = fi_close(&m->mr->fid);
			if (rc)
				LOG_WARN("%s: closing a region: %s", m->link->name,
					 fi_strerror(-rc));
		}
	}
	free(m);
}
/* ---- open ---- */

static void set_env_default(const char *name, const char *value)
{
	if (!getenv(name))
		setenv(name, value, 0);
}

static struct fi_info *make_hints(const char *prov, int addr_format, uint64_t mr_mode)
{
	struct fi_info *h = fi_allocinfo();

	if (!h)
		return NULL;
	h->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_MSG |
		  FI_SEND | FI_RECV;
	h->mode = FI_CONTEXT | FI_CONTEXT2 | FI_RX_CQ_DATA;
	h->addr_format = (uint32_t)addr_format;
	h->ep_attr->type = FI_EP_RDM;
	h->domain_attr->mr_mode = (int)mr_mode;
	h->domain_attr->threading = FI_THREAD_DOMAIN;
	h->domain_attr->resource_mgmt = FI_RM_ENABLED;
	h->fabric_attr->prov_name = strdup(prov);
	if (!h->fabric_attr->prov_name) {
		fi_freeinfo(h);
		return NULL;
	}
	return h;
}

/* fi_getinfo found nothing: ask again with looser hints to tell the user
 * why (the provider needs an MR mode duet cannot serve, lacks a capability,
 * or cannot bind the address). */
static void explain_getinfo_failure(const char *name, const char *prov, const char *host,
				    const char *port, int addr_format, int rc)
{
	struct fi_info *h, *info = NULL;
	uint64_t all_mr = FI_MR_LOCAL | FI_MR_ALLOCATED | FI_MR_ENDPOINT | FI_MR_VIRT_ADDR |
			  FI_MR_PROV_KEY | FI_MR_RAW | FI_MR_MMU_NOTIFY | FI_MR_RMA_EVENT;

	h = make_hints(prov, addr_format, all_mr);
	if (h && fi_getinfo(FAB_FI_VERSION, host, port, FI_SOURCE, h, &info) == 0) {
		char modes[256];
		int mm = info->domain_attr->mr_mode & ~(int)SUPPORTED_MR_MODE;
		fi_tostr_r(modes, sizeof(modes), &mm, FI_TYPE_MR_MODE);
		LOG_ERROR("%s: provider %s needs memory registration modes [%s] which duet links "
			  "do not support (regions are addressed by offset under application "
			  "chosen keys)",
			  name, prov, modes);
		goto out;
	}
	if (h) {
		h->caps = 0;
		h->mode = ~0ull;
		if (fi_getinfo(FAB_FI_VERSION, host, port, FI_SOURCE, h, &info) == 0) {
			LOG_ERROR("%s: provider %s at %s:%s lacks what duet needs (FI_EP_RDM with "
				  "RMA read/write, remote CQ data and messages, or an accepted "
				  "mode bit)",
				  name, prov, host, port);
			goto out;
		}
	}
	LOG_ERROR("%s: no libfabric provider \"%s\" can bind %s:%s: %s", name, prov, host, port,
		  fi_strerror(-rc));
out:
	if (info)
		fi_freeinfo(info);
	if (h)
		fi_freeinfo(h);
}

/* libfabric before 1.18 completes an RMA read response twice when its tcp
 * or net connection fails while the response is half received (upstream
 * commit a74ea0fcd); rxm then dereferences a NULL context and the process
 * dies (docs/FABRIC.md). Nothing here can prevent it: say so, once. */
static void warn_known_crash(const char *name, const char *prov)
{
	static bool warned;
	uint32_t v = fi_version();

	if (warned || FI_MAJOR(v) > 1 || FI_MINOR(v) >= 18)
		return;
	if (!strstr(prov, "tcp") && !strstr(prov, "net"))
		return;
	warned = true;
	LOG_WARN("%s: libfabric %u.%u's %s crashes when a connection fails during an RMA read "
		 "response (fixed in 1.18): a link failure under read load may end this process",
		 name, FI_MAJOR(v), FI_MINOR(v), prov);
}

/* rxm's eager limit is its buffer size, FI_OFI_RXM_BUFFER_SIZE (read once,
 * at libfabric's first call: fab_link_open sets it first; 16 KiB when
 * unset). A message above it goes rendezvous or segmented, and such a send
 * is never completed when the peer closes the connection before answering
 * it. That happens only when the environment set a smaller size: say so,
 * once. */
static void warn_rendezvous(const struct fab_link *link)
{
	static bool warned;
	const char *e = getenv("FI_OFI_RXM_BUFFER_SIZE");
	size_t eager = e ? (size_t)strtoull(e, NULL, 0) : 16384;

	if (warned || !strstr(link->prov, "rxm") || link->max_msg <= eager)
		return;
	warned = true;
	LOG_WARN("%s: %s sends messages above %zu bytes by rendezvous (FI_OFI_RXM_BUFFER_SIZE): "
		 "such a send may never complete when a connection fails (the CCM then takes the "
		 "link out); set FI_OFI_RXM_BUFFER_SIZE to %d or more",
		 link->name, link->prov, eager, FAB_MSG_MAX);
}

/* What lives as long as the link: fi_getinfo (the first call in a process
 * loads every provider: 100-170 ms), the fabric and the domain. */
static int open_domain(struct fab_link *link, int addr_format)
{
	struct fi_info *hints;
	int rc;

	hints = make_hints(link->prov, addr_format, SUPPORTED_MR_MODE);
	if (!hints)
		return -ENOMEM;
	struct tstart t0;
	tstart(&t0);
	rc = fi_getinfo(FAB_FI_VERSION, link->host, link->port, FI_SOURCE, hints, &link->info);
	call_timed(link, "fi_getinfo", &t0);
	fi_freeinfo(hints);
	if (rc) {
		explain_getinfo_failure(link->name, link->prov, link->host, link->port, addr_format,
					rc);
		link->info = NULL;
		return rc == -FI_ENODATA ? -ENODATA : -EADDRNOTAVAIL;
	}
	struct fi_info *info = link->info;
	uint64_t mr_mode = (uint64_t)info->domain_attr->mr_mode;
	if (mr_mode & ~(uint64_t)SUPPORTED_MR_MODE) {
		LOG_ERROR("%s: provider %s returned unsupported mr_mode %#" PRIx64, link->name,
			  link->prov, mr_mode);
		return -ENODATA;
	}
	link->mr_local = (mr_mode & FI_MR_LOCAL) || (link->flags & FAB_LINK_FORCE_MR_LOCAL);
	link->max_rma = info->ep_attr->max_msg_size;
	link->cq_data_size = info->domain_attr->cq_data_size;
	link->key_max = info->domain_attr->mr_key_size >= 8
			    ? UINT64_MAX
			    : (1ull << (8 * info->domain_attr->mr_key_size)) - 1;
	if (link->key_max <= RESERVED_KEYS) {
		LOG_ERROR("%s: provider %s has %zu-byte keys: too few", link->name, link->prov,
			  info->domain_attr->mr_key_size);
		return -ENODATA;
	}
	link->next_internal_key = link->key_max;
	if (link->max_msg > info->ep_attr->max_msg_size) {
		LOG_ERROR("%s: max_msg %zu above provider %s's limit %zu", link->name,
			  link->max_msg, link->prov, info->ep_attr->max_msg_size);
		return -EINVAL;
	}
	warn_rendezvous(link);
	rc = fi_fabric(info->fabric_attr, &link->fabric, NULL);
	if (rc) {
		LOG_ERROR("%s: fi_fabric(%s): %s", link->name, link->prov, fi_strerror(-rc));
		return fi_errno(rc);
	}
	rc = fi_domain(link->fabric, info, &link->domain, NULL);
	if (rc) {
		LOG_ERROR("%s: fi_domain(%s): %s", link->name, link->prov, fi_strerror(-rc));
		return fi_errno(rc);
	}
	warn_known_crash(link->name, link->prov);
	/* Endpoints may be created on a helper thread only if the domain
	 * allows concurrent calls (regions may be registered meanwhile). */
	link->async =
	    !(link->flags & FAB_LINK_SYNC_RESET) && info->domain_attr->threading == FI_THREAD_SAFE;
	return 0;
}

static int open_rx(struct fab_link *link)
{
	int rc;

	link->rx = calloc(link->rx_depth, sizeof(*link->rx));
	link->rx_mem = aligned_alloc(4096, (link->max_msg * link->rx_depth + 4095) & ~4095ul);
	if (!link->rx || !link->rx_mem)
		return -ENOMEM;
	rc = reg_internal(link, link->rx_mem, link->max_msg * link->rx_depth, &link->rx_mr);
	if (rc)
		return rc;
	for (unsigned i = 0; i < link->rx_depth; i++) {
		link->rx[i].h.kind = KIND_RX;
		link->rx[i].buf = link->rx_mem + (size_t)i * link->max_msg;
		link->rx[i].pending = true; /* posted when the endpoint is installed */
	}
	link->rx_pending = link->rx_depth;
	return 0;
}

/* The helper thread's wake-up: an eventfd in the loop. Without one,
 * endpoints are created on the loop. */
static void open_job_fd(struct fab_link *link)
{
	int rc;

	if (!link->async)
		return;
	link->job_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (link->job_fd >= 0) {
		rc = loop_io_add(link->loop, &link->job_io, link->job_fd, EPOLLIN, on_job_fd, link);
		if (rc == 0)
			return;
		close(link->job_fd);
		link->job_fd = -1;
	}
	LOG_WARN("%s: no eventfd for a helper thread: endpoints are recreated on the loop",
		 link->name);
	link->async = false;
}

int fab_link_open(struct loop *loop, const struct fab_link_opts *opts,
		  const struct fab_link_events *ev, struct fab_link **out)
{
	struct sockaddr_storage local_sa;
	socklen_t local_len;
	struct fab_link *link;
	struct ep_res r;
	const char *what = "";
	uint64_t t0;
	int rc;

	if (!loop || !opts || !out || !opts->local || !opts->peer)
		return -EINVAL;
	const char *name = opts->name ? opts->name : "fab";
	if (opts->max_msg > FAB_MSG_MAX) {
		LOG_ERROR("%s: max_msg %zu above FAB_MSG_MAX (%d)", name, opts->max_msg,
			  FAB_MSG_MAX);
		return -EINVAL;
	}
	link = calloc(1, sizeof(*link));
	if (!link)
		return -ENOMEM;
	if (split_hostport(opts->local, link->host, sizeof(link->host), link->port,
			   sizeof(link->port)) < 0 ||
	    parse_hostport(opts->local, &local_sa, &local_len) < 0) {
		LOG_ERROR("%s: bad local address \"%s\" (numeric host:port)", name, opts->local);
		free(link);
		return -EINVAL;
	}
	snprintf(link->name, sizeof(link->name), "%s", name);
	snprintf(link->prov, sizeof(link->prov), "%s",
		 opts->provider ? opts->provider : DEFAULT_PROVIDER);
	if (parse_hostport(opts->peer, &link->peer_sa, &link->peer_salen) < 0 ||
	    link->peer_sa.ss_family != local_sa.ss_family) {
		LOG_ERROR("%s: bad peer address \"%s\" (numeric host:port, same family as %s)",
			  name, opts->peer, opts->local);
		free(link);
		return -EINVAL;
	}
	if (ev)
		link->ev = *ev;
	link->loop = loop;
	link->flags = opts->flags;
	link->wait_fd = -1;
	link->job_fd = -1;
	link->poll_mode = opts->flags & FAB_LINK_FORCE_POLL;
	link->rx_depth = opts->rx_depth ? opts->rx_depth : 64;
	link->max_msg = opts->max_msg ? opts->max_msg : 4096;
	link->sbuf_stride = (sizeof(struct sbuf) + link->max_msg + 63) & ~(size_t)63;
	link->retry_ns = RETRY_MIN_NS;
	link->idle_poll_ns = IDLE_POLL_MIN_NS;
	link->retry_max_ns =
	    (opts->retry_max_ms ? opts->retry_max_ms : DEFAULT_RETRY_MS) * 1000000ull;
	loop_timer_init(&link->timer, on_timer, link);

	/* Read by libfabric once, at its first call in the process. */
	set_env_default("FI_TCP_NODELAY", "1");
	/* rxm handles connection events only every 10 ms by default, and
	 * fi_trywait refuses meanwhile: handle them on every CQ read. */
	set_env_default("FI_OFI_RXM_CM_PROGRESS_INTERVAL", "0");
	/* rxm preposts 4096 receive buffers per endpoint (68 MB, 40-100 ms of
	 * page faults in fi_enable with 16 KiB buffers): 1024 are plenty for
	 * one peer (a provider short of receive buffers only delays). Its
	 * buffer size is its eager limit: messages above it go rendezvous,
	 * whose sends rxm never completes when the peer closes the connection
	 * before answering (a link flap: the CCM's message channel then
	 * stalls for good), so every message a link takes must fit. */
	set_env_default("FI_OFI_RXM_MSG_RX_SIZE", "1024");
	char eager[24];
	snprintf(eager, sizeof(eager), "%d", FAB_MSG_MAX);
	set_env_default("FI_OFI_RXM_BUFFER_SIZE", eager);
	set_env_default("IPATH_NO_BACKTRACE", "1");
	cpu_timing = getenv("DUET_FABRIC_CPU_TIMING") && atoi(getenv("DUET_FABRIC_CPU_TIMING"));

	rc = open_domain(link, local_sa.ss_family == AF_INET6 ? FI_SOCKADDR_IN6 : FI_SOCKADDR_IN);
	if (rc)
		goto fail;
	rc = open_rx(link);
	if (rc)
		goto fail;
	/* The first endpoint on the loop: a bind error is the caller's. */
	t0 = now_ns();
	rc = ep_create(link, &r, &what);
	link->st.ep_open_ns = now_ns() - t0;
	if (rc) {
		LOG_ERROR("%s: cannot open %s with %s (%s: %s)", link->name, opts->local,
			  link->prov, what, strerror(-rc));
		goto fail;
	}
	ep_install(link, &r);
	open_job_fd(link);
	/* The statistics of calls count from here: opening blocks by design. */
	link->st.slow_calls = 0;
	link->st.max_call_ns = 0;
	link->st.max_call = NULL;
	LOG_INFO("%s: link %s -> %s over %s%s%s", link->name, opts->local, opts->peer, link->prov,
		 link->mr_local ? " (local regions)" : "", link->poll_mode ? " (polling)" : "");
	*out = link;
	return 0;
fail:
	link->closing = true;
	teardown(link);
	link_free(link);
	return rc;
}
