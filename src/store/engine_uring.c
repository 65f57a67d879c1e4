/* The io_uring engine: one ring per store, its completions signalled on an
 * eventfd watched by the loop. Steps are queued as SQEs and submitted once
 * per loop turn by a posted task; at most `depth` steps are in the ring, the
 * rest wait in an overflow list, so the SQ never fills and the CQ never
 * overflows. */
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
};

/* Room for one more step: a free slot (bounding what is in flight, so the
 * CQ cannot overflow) and a free SQE (always there while busy < slots, as
 * the SQ has at least slots entries; checked anyway). */
static bool has_room(struct uring *u)
{
	return u->busy < u->slots && io_uring_sq_space_left(&u->ring) > 0;
}

/* Turn the current step of @p io into an SQE; the caller checked has_room. */
static void prep(struct uring *u, struct store_io *io)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	struct store_step st;
	int fd;

	store_step_get(io, &st);
	fd = st.slot != STORE_SLOT_NONE ? st.slot : st.fd;
	if (io->eng_sync) /* the second half of a FUA write (fua_sync) */
		st.kind = STORE_STEP_SYNC;
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
		 * write is done on the loop thread (sync_write). */
		if (io->vol->no_nowait)
			sqe->rw_flags = st.dsync ? RWF_DSYNC : 0;
		else
			sqe->rw_flags = RWF_NOWAIT; /* FUA: an fdatasync follows */
		break;
	case STORE_STEP_SYNC:
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		break;
	case STORE_STEP_FALLOC:
		io_uring_prep_fallocate(sqe, fd, st.mode, (off_t)st.offset, (off_t)st.len);
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

/* A write that would have blocked: do it here, on the loop thread, after
 * the gate (a stop during it lets it finish first: the thread stops only
 * on its way back to user space). Rare: page cache writes seldom block. */
static int sync_write(struct uring *u, struct store_io *io, int res)
{
	struct store_step st;
	ssize_t n;

	store_step_get(io, &st);
	if ((res != -EAGAIN && res != -EOPNOTSUPP) || st.kind != STORE_STEP_WRITE ||
	    io->vol->no_nowait)
		return res;
	if (res == -EOPNOTSUPP) {
		/* The file system cannot say "would block" (tmpfs): its writes go
		 * as before, and may run in io-wq (docs/FAILOVER.md). */
		LOG_INFO("volume %s: its file system refuses RWF_NOWAIT writes", io->vol->name);
		io->vol->no_nowait = true;
	}
	if (!store_gate_open(u->s))
		return STORE_GATED_RES;
	do
		n = pwrite(st.fd, st.buf, (size_t)st.len, (off_t)st.offset);
	while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : (int)n;
}

/* A FUA write's data is in (written with RWF_NOWAIT, not RWF_DSYNC, so
 * that it never waits in io-wq): make it durable with an fdatasync, which
 * may run in io-wq as it changes no data. @return true if one was queued;
 * its completion then ends the step with the write's byte count. */
static bool fua_sync(struct uring *u, struct store_io *io, int res)
{
	struct store_step st;

	if (io->eng_sync || res < 0 || io->vol->no_nowait)
		return false;
	store_step_get(io, &st);
	if (st.kind != STORE_STEP_WRITE || !st.dsync || (uint64_t)res != st.len)
		return false; /* a short write: the next step syncs */
	io->eng_sync = 1;
	io->result = res;
	store_io_push(&u->ovf, io);
	loop_post(u->s->loop, &u->submit_task);
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
			int r;
			if (io->eng_sync) {
				io->eng_sync = 0;
				if (res[i] >= 0)
					u->s->st.fua_syncs++;
				store_step_done(u->s, io, res[i] < 0 ? res[i] : io->result);
				continue;
			}
			r = sync_write(u, io, res[i]);
			if (r == STORE_GATED_RES)
				store_gate_park(u->s, io);
			else if (!fua_sync(u, io, r))
				store_step_done(u->s, io, r);
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
	while (!slist_empty(&u->ovf) && has_room(u))
		prep(u, store_io_pop(&u->ovf));
	if (io_uring_sq_ready(&u->ring) == 0)
		return;
	rc = io_uring_submit(&u->ring);
	if (rc < 0) {
		if (rc != -EINTR && rc != -EAGAIN && rc != -EBUSY)
			LOG_ERROR("io_uring_submit: %s", strerror(-rc));
		/* The SQEs stay queued; try again on the next turn. */
		loop_post(u->s->loop, &u->submit_task);
		return;
	}
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
	loop_io_del(s->loop, &u->lio);
	io_uring_queue_exit(&u->ring);
	close(u->efd);
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
