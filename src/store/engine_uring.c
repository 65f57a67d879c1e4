/* The io_uring engine: one ring per store, its completions signalled on an
 * eventfd watched by the loop. Steps are queued as SQEs and submitted once
 * per loop turn by a posted task; at most `depth` steps are in the ring, the
 * rest wait in an overflow list, so the SQ never fills and the CQ never
 * overflows.
 *
 * Nothing that changes the shelf may wait in io-wq: its workers are threads
 * of this process, stop with it, and would run after a SIGCONT without a new
 * look at the lease (docs/FAILOVER.md, "The race at SIGSTOP"). So the ring
 * gets only reads and writes sent with RWF_NOWAIT; a write that would block
 * (-EAGAIN), every write on a file system that refuses RWF_NOWAIT
 * (-EOPNOTSUPP: tmpfs, FUSE, NFS), fallocate and fdatasync go to a small
 * worker pool whose threads check the gate right before their system call. */
#define LOG_MODULE "store"
#include "common/log.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define URING_FIXED_FILES    256
#define URING_REAP_BATCH     64
#define URING_ASYNC_READ_MIN (256u << 10)

struct uring {
	struct store *s;
	struct io_uring ring;
	int efd;
	struct loop_io lio;
	struct loop_task submit_task;
	unsigned slots; /* most steps in the ring at once */
	unsigned busy;	/* steps prepared or in flight */
	struct slist ovf;
	bool fixed; /* a sparse registered-file table exists */
	bool slot_used[URING_FIXED_FILES];
	struct store_pool *pool;     /* the steps that may block */
	struct io_uring_sqe **batch; /* SQEs prepared and not yet submitted */
	unsigned nbatch;
};

bool store_test_refuse_nowait;

/* Whether the current step of @p io may block in the kernel and change the
 * shelf: such a step never goes to the ring (io-wq), but to the pool. */
static bool goes_to_pool(const struct store_io *io)
{
	struct store_step st;

	if (io->eng_sync)
		return true;
	store_step_get(io, &st);
	return st.kind == STORE_STEP_SYNC || st.kind == STORE_STEP_FALLOC ||
	       (st.kind == STORE_STEP_WRITE && io->vol->no_nowait);
}

/* Room for one more step: a free slot (bounding what is in flight, so the
 * CQ cannot overflow) and a free SQE (always there while busy < slots, as
 * the SQ has at least slots entries; checked anyway). */
static bool has_room(struct uring *u)
{
	return u->busy < u->slots && io_uring_sq_space_left(&u->ring) > 0;
}

/* Turn the current step of @p io into an SQE; the caller checked has_room. */
static void prep(struct uring *u, struct store_io *io, struct io_uring_sqe *sqe)
{
	struct store_step st;
	int fd;

	store_step_get(io, &st);
	fd = st.slot != STORE_SLOT_NONE ? st.slot : st.fd;
	io->eng_nowait = 0;
	switch (st.kind) {
	case STORE_STEP_READ:
		io_uring_prep_read(sqe, fd, st.buf, (unsigned)st.len, st.offset);
		break;
	case STORE_STEP_WRITE:
		io_uring_prep_write(sqe, fd, st.buf, (unsigned)st.len, st.offset);
		/* A write that would block is not handed to io-wq: its workers
		 * are threads of this process and stop with it, so after a
		 * SIGSTOP such a write would reach the disk after SIGCONT,
		 * past the fencing gate. -EAGAIN comes back instead and the
		 * write goes to the pool (blocked()). FUA: an fdatasync
		 * follows. Bit 31 is no RWF_ flag: the kernel refuses it with
		 * -EOPNOTSUPP, as a file system does that cannot do NOWAIT. */
		sqe->rw_flags = RWF_NOWAIT | (store_test_refuse_nowait ? 0x80000000u : 0);
		io->eng_nowait = 1;
		break;
	case STORE_STEP_SYNC:
	case STORE_STEP_FALLOC:
		/* goes_to_pool() keeps them out of the ring; never here. */
		io_uring_prep_nop(sqe);
		break;
	case STORE_STEP_FADVISE:
	default:
		io_uring_prep_fadvise(sqe, fd, st.offset, (off_t)st.len, POSIX_FADV_WILLNEED);
		break;
	}
	if (st.slot != STORE_SLOT_NONE)
		sqe->flags |= IOSQE_FIXED_FILE;
	/* A large read served from the page cache is a long copy; done inline
	 * it stalls the reactor, and in io-wq several run on several cores
	 * (bench: 1 MiB reads at depth 8, 8.5 -> 12 GB/s). Writes gain nothing
	 * there (the inode lock serialises them) and their tail latency grows,
	 * so they stay inline. */
	if (st.kind == STORE_STEP_READ && st.len >= URING_ASYNC_READ_MIN)
		sqe->flags |= IOSQE_ASYNC;
	io_uring_sqe_set_data(sqe, io);
	u->busy++;
}

/* A RWF_NOWAIT write came back: one that would have blocked (-EAGAIN), or
 * refused by its file system (-EOPNOTSUPP: every write of the volume goes
 * to the pool from now on), is run by the pool, which checks the gate right
 * before its system call. @return true if it went there. Another write of
 * the same volume sent before the first refusal came back is refused too,
 * and takes the same way (each io knows how it was sent). */
static bool blocked(struct uring *u, struct store_io *io, int res)
{
	if (!io->eng_nowait || (res != -EAGAIN && res != -EOPNOTSUPP))
		return false;
	io->eng_nowait = 0;
	if (res == -EOPNOTSUPP && !io->vol->no_nowait) {
		LOG_WARN("volume %s: its file system refuses RWF_NOWAIT writes: they go to "
			 "the worker pool",
			 io->vol->name);
		io->vol->no_nowait = true;
	}
	store_pool_queue(u->pool, io);
	return true;
}

/* A FUA write's data is in (written with RWF_NOWAIT, not RWF_DSYNC, so
 * that it never waits in io-wq): make it durable with an fdatasync in the
 * pool (gate checked right before it). @return true if one was queued; its
 * completion then ends the step with the write's byte count. */
static bool fua_sync(struct uring *u, struct store_io *io, int res)
{
	struct store_step st;

	if (res < 0)
		return false;
	store_step_get(io, &st);
	if (st.kind != STORE_STEP_WRITE || !st.dsync || (uint64_t)res != st.len)
		return false; /* a short write: the next step syncs */
	io->eng_sync = 1;
	io->eng_bytes = res;
	store_pool_queue(u->pool, io);
	return true;
}

/* Hand every CQE to the state machine. Completions are copied out and the CQ
 * advanced first, so handlers that queue more work see a consistent ring. */
static void reap(struct uring *u)
{
	struct io_uring_cqe *cqes[URING_REAP_BATCH];
	struct store_io *ios[URING_REAP_BATCH];
	int res[URING_REAP_BATCH];
	unsigned n;

	while ((n = io_uring_peek_batch_cqe(&u->ring, cqes, URING_REAP_BATCH)) > 0) {
		for (unsigned i = 0; i < n; i++) {
			ios[i] = io_uring_cqe_get_data(cqes[i]);
			res[i] = cqes[i]->res;
		}
		io_uring_cq_advance(&u->ring, n);
		u->busy -= n;
		for (unsigned i = 0; i < n; i++) {
			struct store_io *io = ios[i];
			if (io->eng_nop) { /* the gate closed before the submit */
				io->eng_nop = 0;
				store_gate_park(u->s, io);
				continue;
			}
			if (!blocked(u, io, res[i]) && !fua_sync(u, io, res[i]))
				store_step_done(u->s, io, res[i]);
		}
	}
	if (!slist_empty(&u->ovf) || io_uring_sq_ready(&u->ring))
		loop_post(u->s->loop, &u->submit_task);
}

/* Once per loop turn: move waiting steps into free slots, submit all SQEs in
 * one system call, and reap what completed inline (page-cache hits). */
static void submit_task(void *arg)
{
	struct uring *u = arg;
	int rc;

	/* The gate is checked here, right before the system call: a step
	 * becomes an SQE only on its way into the kernel. */
	if (!store_gate_open(u->s)) {
		struct store_io *io;
		while ((io = store_io_pop(&u->ovf)))
			store_gate_park(u->s, io);
		return;
	}
	while (!slist_empty(&u->ovf) && has_room(u)) {
		struct store_io *io = store_io_pop(&u->ovf);
		if (store_io_fenced(u->s, io)) { /* came before a fence: never runs */
			store_gate_park(u->s, io);
			continue;
		}
		u->batch[u->nbatch] = io_uring_get_sqe(&u->ring);
		prep(u, io, u->batch[u->nbatch++]);
	}
	if (io_uring_sq_ready(&u->ring) == 0)
		return;
	/* And again: a stop while the batch was prepared must not let it in
	 * after a SIGCONT. Prepared SQEs cannot be taken back: they become
	 * NOPs, and their ios wait for the gate when the NOPs complete. */
	if (u->nbatch && !store_gate_open(u->s)) {
		for (unsigned i = 0; i < u->nbatch; i++) {
			struct store_io *io = (void *)(uintptr_t)u->batch[i]->user_data;
			io_uring_prep_nop(u->batch[i]);
			io_uring_sqe_set_data(u->batch[i], io);
			io->eng_nop = 1;
			io->eng_nowait = 0;
		}
	}
	rc = io_uring_submit(&u->ring);
	if (rc < 0) {
		if (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			LOG_ERROR("io_uring_submit: %s", strerror(-rc));
		/* The SQEs stay queued (and in the batch, to be checked
		 * again); try again on the next turn. */
		loop_post(u->s->loop, &u->submit_task);
		return;
	}
	u->nbatch = 0;
	reap(u);
}

static void efd_cb(struct loop_io *lio, uint32_t events)
{
	(void)events;
	/* Edge-triggered: every eventfd signal is a new edge, so the counter is
	 * never read; reap() drains the CQ entirely on each wake. */
	reap(lio->arg);
}

static void uring_queue(struct store *s, struct store_io *io)
{
	struct uring *u = s->engine;

	if (goes_to_pool(io)) {
		store_pool_queue(u->pool, io);
		return;
	}
	store_io_push(&u->ovf, io);
	loop_post(s->loop, &u->submit_task);
}

static int uring_init(struct store *s)
{
	struct io_uring_params p;
	struct uring *u = calloc(1, sizeof(*u));
	int rc;

	if (!u)
		return -ENOMEM;
	u->s = s;
	u->efd = -1;
	u->slots = s->opts.depth;
	slist_init(&u->ovf);
	loop_task_init(&u->submit_task, submit_task, u);
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CLAMP | IORING_SETUP_SUBMIT_ALL;
	rc = io_uring_queue_init_params(u->slots, &u->ring, &p);
	if (rc == -EINVAL) {
		/* A kernel older than 5.18 lacks SUBMIT_ALL. */
		p.flags = IORING_SETUP_CLAMP;
		rc = io_uring_queue_init_params(u->slots, &u->ring, &p);
	}
	if (rc < 0) {
		LOG_WARN("io_uring_queue_init(%u): %s", u->slots, strerror(-rc));
		goto err_free;
	}
	if (u->ring.sq.ring_entries < u->slots)
		u->slots = u->ring.sq.ring_entries;
	u->batch = calloc(u->slots, sizeof(*u->batch));
	if (!u->batch) {
		rc = -ENOMEM;
		goto err_ring;
	}
	rc = store_pool_new(s, s->opts.workers, s->opts.depth, &u->pool);
	if (rc < 0)
		goto err_ring;
	u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->efd < 0) {
		rc = -errno;
		LOG_ERROR("eventfd: %s", strerror(errno));
		goto err_ring;
	}
	rc = io_uring_register_eventfd(&u->ring, u->efd);
	if (rc < 0) {
		LOG_ERROR("io_uring_register_eventfd: %s", strerror(-rc));
		goto err_efd;
	}
	rc = loop_io_add(s->loop, &u->lio, u->efd, EPOLLIN | EPOLLET, efd_cb, u);
	if (rc < 0)
		goto err_efd;
	/* Registered files spare the kernel a file lookup per request (within
	 * the noise of the bench on this machine); without them every step
	 * simply uses the plain descriptor. */
	u->fixed = io_uring_register_files_sparse(&u->ring, URING_FIXED_FILES) == 0;
	s->engine = u;
	LOG_DEBUG("io_uring: %u entries, registered files %s", u->slots, u->fixed ? "on" : "off");
	return 0;

err_efd:
	close(u->efd);
err_ring:
	store_pool_free(u->pool);
	free(u->batch);
	io_uring_queue_exit(&u->ring);
err_free:
	free(u);
	return rc;
}

static void uring_fini(struct store *s)
{
	struct uring *u = s->engine;

	if (!u)
		return;
	store_pool_free(u->pool);
	loop_io_del(s->loop, &u->lio);
	io_uring_queue_exit(&u->ring);
	close(u->efd);
	free(u->batch);
	free(u);
	s->engine = NULL;
}

static void uring_add_volume(struct store *s, struct store_volume *v)
{
	struct uring *u = s->engine;

	v->slot = STORE_SLOT_NONE;
	if (!u->fixed)
		return;
	for (int i = 0; i < URING_FIXED_FILES; i++) {
		if (u->slot_used[i])
			continue;
		if (io_uring_register_files_update(&u->ring, (unsigned)i, &v->fd, 1) == 1) {
			u->slot_used[i] = true;
			v->slot = i;
		}
		return;
	}
}

static void uring_del_volume(struct store *s, struct store_volume *v)
{
	struct uring *u = s->engine;
	int none = -1;

	if (v->slot == STORE_SLOT_NONE)
		return;
	io_uring_register_files_update(&u->ring, (unsigned)v->slot, &none, 1);
	u->slot_used[v->slot] = false;
	v->slot = STORE_SLOT_NONE;
}

const struct store_engine_ops store_uring_ops = {
    .init = uring_init,
    .fini = uring_fini,
    .add_volume = uring_add_volume,
    .del_volume = uring_del_volume,
    .queue = uring_queue,
};
