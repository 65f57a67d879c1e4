/* The per-io state machine shared by both engines, submission checks, the
 * synchronous step runner of the worker pool, and block status. */
#define LOG_MODULE "store"
#include "common/log.h"
#include "common/util.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	ST_RW = 0,     /* READ/WRITE: one transfer per step until done */
	ST_FLUSH,      /* fdatasync */
	ST_PUNCH,      /* TRIM and WRITE_ZEROES without NO_HOLE */
	ST_ZERO_RANGE, /* WRITE_ZEROES with NO_HOLE */
	ST_ZERO_WRITE, /* WRITE_ZEROES fallback: write from the zero buffer */
	ST_SYNC,       /* fdatasync after a FUA trim/zero */
	ST_CACHE,      /* fadvise WILLNEED, chunk by chunk */
	ST_BREAD,      /* direct I/O: read [boff, boff + blen) into the bounce buffer */
	ST_BWRITE,     /* direct I/O: write it back */
};

/* io->excl: counted in the volume's running writes; holds all others off. */
#define EXCL_COUNTED 1u
#define EXCL_ALONE   2u

static void defer(struct store *s, struct store_io *io, int res);

static bool bounced(const struct store_io *io)
{
	return io->stage == ST_BREAD || io->stage == ST_BWRITE;
}

/* Bytes the io moves in its current stage: the bounce range, or its own. */
static uint64_t total(const struct store_io *io)
{
	return bounced(io) ? io->blen : io->length;
}

static uint64_t remaining(const struct store_io *io)
{
	return total(io) - io->done_bytes;
}

/* Largest transfer of one step; a multiple of the alignment on a direct
 * volume, so that every piece of an aligned transfer stays aligned. */
static uint64_t chunk(const struct store_volume *v)
{
	uint64_t m = v->s->max_io;

	if (!v->direct)
		return m;
	m &= ~(uint64_t)(v->align - 1);
	return m ? m : v->align;
}

static bool aligned(const struct store_volume *v, uint64_t x)
{
	return (x & (v->align - 1)) == 0;
}

void store_step_get(const struct store_io *io, struct store_step *st)
{
	const struct store_volume *v = io->vol;
	const struct store *s = v->s;

	memset(st, 0, sizeof(*st));
	st->fd = v->fd;
	st->slot = v->slot;
	st->offset = io->offset + io->done_bytes;
	switch (io->stage) {
	case ST_RW:
		st->kind = io->op == STORE_OP_READ ? STORE_STEP_READ : STORE_STEP_WRITE;
		st->buf = (char *)io->buf + io->done_bytes;
		st->len = MIN(remaining(io), chunk(v));
		st->dsync = io->op == STORE_OP_WRITE && (io->flags & STORE_F_FUA);
		break;
	case ST_BREAD:
	case ST_BWRITE:
		st->kind = io->stage == ST_BREAD ? STORE_STEP_READ : STORE_STEP_WRITE;
		st->buf = (char *)io->bounce + io->done_bytes;
		st->offset = io->boff + io->done_bytes;
		st->len = MIN(remaining(io), chunk(v));
		st->dsync = io->stage == ST_BWRITE && (io->flags & STORE_F_FUA);
		break;
	case ST_FLUSH:
	case ST_SYNC:
		st->kind = STORE_STEP_SYNC;
		break;
	case ST_PUNCH:
		st->kind = STORE_STEP_FALLOC;
		st->mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
		st->offset = io->offset;
		st->len = io->length;
		break;
	case ST_ZERO_RANGE:
		st->kind = STORE_STEP_FALLOC;
		st->mode = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
		st->offset = io->offset;
		st->len = io->length;
		break;
	case ST_ZERO_WRITE:
		st->kind = STORE_STEP_WRITE;
		st->buf = s->zeros;
		st->len = MIN(MIN(remaining(io), (uint64_t)STORE_ZERO_BYTES), chunk(v));
		st->dsync = io->flags & STORE_F_FUA;
		break;
	case ST_CACHE:
	default:
		st->kind = STORE_STEP_FADVISE;
		st->len = MIN(remaining(io), (uint64_t)STORE_CHUNK_MAX);
		break;
	}
}

static bool modifies(enum store_op op)
{
	return op == STORE_OP_WRITE || op == STORE_OP_TRIM || op == STORE_OP_WRITE_ZEROES;
}

static void queue_step(struct store *s, struct store_io *io);

/*
 * Write ordering on a direct volume. A write not aligned to the volume's
 * block is a read-modify-write of the blocks around it; a write to the same
 * blocks between its read and its write would be undone. So such an io
 * (EXCL_ALONE) starts only when no modifying io runs on the volume, and
 * holds every later one off until it completes; the others run side by
 * side as before. Ios held off wait in order. Unaligned writes are rare
 * (clients follow the advertised block size), so this costs nothing on the
 * hot path but a counter. @return true if @p io may start now.
 */
static bool write_admit(struct store_volume *v, struct store_io *io)
{
	if (!v->excl_running && slist_empty(&v->excl_wait) &&
	    (!(io->excl & EXCL_ALONE) || v->writes == 0)) {
		v->writes++;
		io->excl |= EXCL_COUNTED;
		if (io->excl & EXCL_ALONE)
			v->excl_running = true;
		return true;
	}
	store_io_push(&v->excl_wait, io);
	return false;
}

/* A modifying io of @p v completed: start the ios it held off. */
static void write_release(struct store *s, struct store_volume *v, struct store_io *io)
{
	struct slist_node *n;

	v->writes--;
	if (io->excl & EXCL_ALONE)
		v->excl_running = false;
	io->excl = 0;
	while (!v->excl_running && (n = v->excl_wait.head)) {
		struct store_io *w = slist_entry(n, struct store_io, link);
		if ((w->excl & EXCL_ALONE) && v->writes)
			break;
		store_io_pop(&v->excl_wait);
		v->writes++;
		w->excl |= EXCL_COUNTED;
		if (w->excl & EXCL_ALONE)
			v->excl_running = true;
		queue_step(s, w);
	}
}

static void finish(struct store *s, struct store_io *io, int res)
{
	/* Counted whatever the result: a failed write may have changed some
	 * of its range, and a FLUSH after it must not be skipped. */
	if (modifies(io->op))
		io->vol->wgen++;
	if (io->excl & EXCL_COUNTED)
		write_release(s, io->vol, io);
	free(io->bounce);
	io->bounce = NULL;
	s->inflight--;
	s->progress_ns = loop_now_ns();
	if (store_error_is_shelf(res) && !store_io_fenced(s, io)) /* a fence is no shelf failure */
		s->shelf_errors++;
	io->done(io, res);
}

/* Direct I/O of a range or buffer that is not aligned: through an aligned
 * bounce buffer covering the blocks around [offset, offset + length). */
static int bounce_setup(struct store_io *io)
{
	const struct store_volume *v = io->vol;
	uint64_t a = v->align, end = io->offset + io->length;
	void *b;

	io->boff = io->offset & ~(a - 1);
	io->blen = ((end + a - 1) & ~(a - 1)) - io->boff;
	if (posix_memalign(&b, MAX(a, (uint64_t)STORE_DIO_ALIGN), io->blen) != 0) {
		LOG_ERROR("%s: no memory for a bounce buffer of %llu bytes", v->name,
			  (unsigned long long)io->blen);
		return -ENOMEM;
	}
	io->bounce = b;
	io->done_bytes = 0;
	return 0;
}

/* The blocks around an unaligned io are read: hand the data out (READ), or
 * lay the new bytes over them and write them back. */
static void bounce_read_done(struct store *s, struct store_io *io)
{
	char *at = (char *)io->bounce + (io->offset - io->boff);

	if (io->op == STORE_OP_READ) {
		memcpy(io->buf, at, io->length);
		finish(s, io, 0);
		return;
	}
	if (io->op == STORE_OP_WRITE)
		memcpy(at, io->buf, io->length);
	else
		memset(at, 0, io->length); /* WRITE_ZEROES, written */
	io->stage = ST_BWRITE;
	io->done_bytes = 0;
	queue_step(s, io);
}

/* Every step goes to the engine through here: behind the steps already
 * waiting for the fencing gate, if any, so that the disk sees them in order. */
static void queue_step(struct store *s, struct store_io *io)
{
	if (!slist_empty(&s->gated)) {
		store_gate_park(s, io);
		return;
	}
	s->ops->queue(s, io);
}

/* A transfer step returned @p res bytes: account them and go on with the
 * rest (a short transfer simply leads to another step). */
static void transfer_done(struct store *s, struct store_io *io, int res)
{
	if (res < 0) {
		finish(s, io, res);
		return;
	}
	if (res == 0) {
		/* The file ends before the volume does: someone truncated it. */
		LOG_ERROR("%s: unexpected end of file at offset %llu", io->vol->name,
			  (unsigned long long)(io->offset + io->done_bytes));
		finish(s, io, -EIO);
		return;
	}
	io->done_bytes += (uint64_t)res;
	if (io->done_bytes < total(io))
		queue_step(s, io);
	else if (io->stage == ST_BREAD)
		bounce_read_done(s, io);
	else
		finish(s, io, 0);
}

/* The fallocate of a trim or write-zeroes returned: follow a FUA with a
 * data sync, and let a filesystem that cannot do it fall back. */
static void falloc_done(struct store *s, struct store_io *io, int res)
{
	if (res == -EOPNOTSUPP) {
		if (io->op == STORE_OP_TRIM) {
			finish(s, io, 0); /* advisory */
			return;
		}
		if (io->flags & STORE_F_FAST_ZERO) {
			finish(s, io, -ENOTSUP);
			return;
		}
		io->stage = ST_ZERO_WRITE;
		io->done_bytes = 0;
		if (io->vol->direct &&
		    !(aligned(io->vol, io->offset) && aligned(io->vol, io->length))) {
			/* Zeros written over part of a block: read-modify-write
			 * (the io holds its volume's writes off: store_submit). */
			int rc = bounce_setup(io);
			if (rc < 0) {
				finish(s, io, rc);
				return;
			}
			io->stage = ST_BREAD;
		}
		queue_step(s, io);
		return;
	}
	if (res < 0) {
		finish(s, io, res);
		return;
	}
	if (io->flags & STORE_F_FUA) {
		io->stage = ST_SYNC;
		queue_step(s, io);
		return;
	}
	finish(s, io, 0);
}

/*
 * FLUSH: one fdatasync per volume at a time. A FLUSH must cover the writes
 * completed before it arrived. If none completed since the last successful
 * sync began, there is nothing to sync; if the running sync began after the
 * last of them, the FLUSH rides on it; otherwise it waits for the next sync,
 * which serves every FLUSH that queued meanwhile (one system call for many).
 */
static void flush_start(struct store *s, struct store_volume *v, struct store_io *io)
{
	v->sync_io = io;
	v->sync_gen = v->wgen;
	io->stage = ST_FLUSH;
	queue_step(s, io);
}

static void flush_submit(struct store *s, struct store_volume *v, struct store_io *io)
{
	if (v->sync_io) {
		store_io_push(v->sync_gen == v->wgen ? &v->sync_riders : &v->sync_next, io);
		return;
	}
	if (v->synced_gen == v->wgen) {
		s->st.flushes++;
		s->st.flushes_clean++;
		defer(s, io, 0);
		return;
	}
	flush_start(s, v, io);
}

static void flush_done(struct store *s, struct store_io *io, int res)
{
	struct store_volume *v = io->vol;
	struct slist riders;
	struct store_io *r;

	if (res > 0)
		res = 0;
	if (res == 0)
		v->synced_gen = v->sync_gen;
	v->sync_io = NULL;
	store_io_take_all(&riders, &v->sync_riders);
	/* Those that came while it ran and after a write: the next sync is
	 * theirs. Started before any done callback runs, so a FLUSH submitted
	 * from one finds consistent state. */
	if (!slist_empty(&v->sync_next)) {
		struct store_io *first = store_io_pop(&v->sync_next);
		slist_splice_tail(&v->sync_riders, &v->sync_next);
		flush_start(s, v, first);
	}
	s->st.syncs++;
	s->st.flushes++;
	finish(s, io, res);
	while ((r = store_io_pop(&riders))) {
		s->st.flushes++;
		s->st.flushes_shared++;
		finish(s, r, res);
	}
}

void store_step_done(struct store *s, struct store_io *io, int res)
{
	if (res == -EINTR || res == -EAGAIN) {
		queue_step(s, io);
		return;
	}
	switch (io->stage) {
	case ST_RW:
	case ST_ZERO_WRITE:
	case ST_BREAD:
	case ST_BWRITE:
		transfer_done(s, io, res);
		break;
	case ST_PUNCH:
	case ST_ZERO_RANGE:
		falloc_done(s, io, res);
		break;
	case ST_CACHE:
		if (res < 0) {
			finish(s, io, res);
			break;
		}
		io->done_bytes += MIN(remaining(io), (uint64_t)STORE_CHUNK_MAX);
		if (io->done_bytes < io->length)
			queue_step(s, io);
		else
			finish(s, io, 0);
		break;
	case ST_FLUSH:
		flush_done(s, io, res);
		break;
	case ST_SYNC:
	default:
		finish(s, io, res < 0 ? res : 0);
		break;
	}
}

int store_step_exec(const struct store_step *st)
{
	ssize_t n;
	int rc;

	for (;;) {
		switch (st->kind) {
		case STORE_STEP_READ:
			n = pread(st->fd, st->buf, st->len, (off_t)st->offset);
			break;
		case STORE_STEP_WRITE:
			if (st->dsync) {
				struct iovec iov = {.iov_base = st->buf, .iov_len = st->len};
				n = pwritev2(st->fd, &iov, 1, (off_t)st->offset, RWF_DSYNC);
			} else {
				n = pwrite(st->fd, st->buf, st->len, (off_t)st->offset);
			}
			break;
		case STORE_STEP_SYNC:
			n = fdatasync(st->fd);
			break;
		case STORE_STEP_FALLOC:
			n = fallocate(st->fd, st->mode, (off_t)st->offset, (off_t)st->len);
			break;
		case STORE_STEP_FADVISE:
		default:
			/* posix_fadvise returns the error instead of setting errno. */
			rc = posix_fadvise(st->fd, (off_t)st->offset, (off_t)st->len,
					   POSIX_FADV_WILLNEED);
			return -rc;
		}
		if (n >= 0)
			return (int)n;
		/* A step that changes the shelf is not retried here: a signal
		 * (SIGSTOP and SIGCONT among them) can interrupt it after the
		 * request reached the file system (FUSE, NFS), and the retry
		 * must pass the gate again, which the caller checks. */
		if (errno != EINTR || st->kind != STORE_STEP_READ)
			return -errno;
	}
}

static void run_deferred(void *arg)
{
	struct store *s = arg;
	struct slist l;
	struct store_io *io;

	store_io_take_all(&l, &s->deferred);
	while ((io = store_io_pop(&l)))
		finish(s, io, io->result);
}

/* Complete @p io with @p res on a later turn of the loop, never inline. */
static void defer(struct store *s, struct store_io *io, int res)
{
	io->result = res;
	store_io_push(&s->deferred, io);
	loop_post(s->loop, &s->deferred_task);
}

void store_set_gate(struct store *s, bool (*allowed)(void *arg), void (*wait)(void *arg), void *arg)
{
	s->gate_allowed = allowed;
	s->gate_wait = wait;
	s->gate_arg = arg;
}

void store_gate_park(struct store *s, struct store_io *io)
{
	if (store_io_fenced(s, io)) {
		store_step_done(s, io, s->fence_err);
		return;
	}
	store_io_push(&s->gated, io);
	if (s->gate_wait)
		s->gate_wait(s->gate_arg);
}

void store_gate_release(struct store *s)
{
	struct slist l;
	struct store_io *io;

	if (!s || slist_empty(&s->gated) || !store_gate_open(s))
		return;
	store_io_take_all(&l, &s->gated);
	while ((io = store_io_pop(&l)))
		queue_step(s, io);
}

void store_gate_fail(struct store *s, int err)
{
	struct slist l;
	struct store_io *io;

	if (!s)
		return;
	s->fence_err = err;
	__atomic_add_fetch(&s->fence_gen, 1, __ATOMIC_RELEASE);
	if (slist_empty(&s->gated))
		return;
	LOG_WARN("%s: failing the I/O held by the fencing gate: %s", s->dir, strerror(-err));
	store_io_take_all(&l, &s->gated);
	while ((io = store_io_pop(&l)))
		store_step_done(s, io, err);
}

void store_io_init(struct store *s)
{
	slist_init(&s->deferred);
	slist_init(&s->gated);
	loop_task_init(&s->deferred_task, run_deferred, s);
}

void store_io_init_volume(struct store_volume *v)
{
	slist_init(&v->sync_riders);
	slist_init(&v->sync_next);
	slist_init(&v->excl_wait);
}

int store_check_range(const struct store_volume *v, uint64_t offset, uint64_t length)
{
	if (offset > v->size || length > v->size - offset)
		return -EINVAL;
	return 0;
}

/* A direct volume's io that does not fit O_DIRECT's alignment takes the
 * bounce buffer: a READ reads the blocks around it; a WRITE of an aligned
 * range from an unaligned buffer is copied; one of an unaligned range is a
 * read-modify-write, as is the zero-writing fallback of an unaligned
 * WRITE_ZEROES: those hold the volume's other writes off (write_admit).
 * CACHE (read-ahead into the page cache) is of no use: done at once.
 * @return 0, or -errno when the io was completed here. */
static int direct_prepare(struct store *s, struct store_volume *v, struct store_io *io)
{
	bool range_ok = aligned(v, io->offset) && aligned(v, io->length);
	int rc;

	switch (io->op) {
	case STORE_OP_CACHE:
		defer(s, io, 0);
		return -EALREADY;
	case STORE_OP_WRITE_ZEROES:
		if (!range_ok)
			io->excl = EXCL_ALONE;
		return 0;
	case STORE_OP_READ:
	case STORE_OP_WRITE:
		if (range_ok && aligned(v, (uintptr_t)io->buf))
			return 0;
		break;
	default:
		return 0;
	}
	rc = bounce_setup(io);
	if (rc < 0) {
		defer(s, io, rc);
		return rc;
	}
	if (io->op == STORE_OP_READ || !range_ok) {
		io->stage = ST_BREAD;
		if (io->op == STORE_OP_WRITE)
			io->excl = EXCL_ALONE;
	} else {
		memcpy(io->bounce, io->buf, io->length);
		io->stage = ST_BWRITE;
	}
	return 0;
}

void store_submit(struct store_volume *v, struct store_io *io)
{
	struct store *s = v->s;

	io->vol = v;
	io->done_bytes = 0;
	io->link.next = NULL;
	io->result = 0;
	io->eng_sync = 0;
	io->eng_nowait = 0;
	io->eng_nop = 0;
	io->excl = 0;
	io->bounce = NULL;
	io->fence_gen = s->fence_gen;
	if (s->inflight++ == 0)
		s->progress_ns = loop_now_ns();
	if (s->hang) { /* test hook: parked for good, as on a hung shelf */
		s->hung++;
		return;
	}
	if (s->fail_err) {
		defer(s, io, s->fail_err);
		return;
	}
	switch (io->op) {
	case STORE_OP_READ:
	case STORE_OP_WRITE:
		if (!io->buf && io->length) {
			defer(s, io, -EINVAL);
			return;
		}
		io->stage = ST_RW;
		break;
	case STORE_OP_FLUSH:
		flush_submit(s, v, io);
		return;
	case STORE_OP_TRIM:
		io->stage = ST_PUNCH;
		break;
	case STORE_OP_WRITE_ZEROES:
		io->stage = (io->flags & STORE_F_NO_HOLE) ? ST_ZERO_RANGE : ST_PUNCH;
		break;
	case STORE_OP_CACHE:
		io->stage = ST_CACHE;
		break;
	default:
		LOG_DEBUG("%s: unknown op %d", v->name, (int)io->op);
		defer(s, io, -EINVAL);
		return;
	}
	if (store_check_range(v, io->offset, io->length) < 0) {
		LOG_DEBUG("%s: io out of range (%llu+%llu)", v->name,
			  (unsigned long long)io->offset, (unsigned long long)io->length);
		defer(s, io, -EINVAL);
		return;
	}
	if (io->length == 0) {
		defer(s, io, 0);
		return;
	}
	if (v->direct && direct_prepare(s, v, io) < 0)
		return;
	if (v->direct && modifies(io->op) && !write_admit(v, io))
		return;
	queue_step(s, io);
}

bool store_error_is_shelf(int rc)
{
	return rc == -EIO || rc == -ENODEV || rc == -ENOENT || rc == -ENXIO || rc == -ESTALE ||
	       rc == -ENOTCONN || rc == -ECONNABORTED || rc == -EROFS;
}

uint64_t store_shelf_errors(const struct store *s)
{
	return s ? s->shelf_errors : 0;
}

void store_fail_all(struct store *s, int err)
{
	s->fail_err = err;
}

uint64_t store_io_stalled_ns(const struct store *s, uint64_t now_ns)
{
	if (!s || !s->inflight || now_ns < s->progress_ns)
		return 0;
	return now_ns - s->progress_ns;
}

void store_hang_all(struct store *s)
{
	s->hang = true;
}

/* Append an extent, merging it into the last one when of the same kind.
 * @return false when @p ext is full. */
static bool add_extent(struct store_extent *ext, unsigned *n, unsigned max, uint64_t len, bool hole)
{
	if (*n > 0 && ext[*n - 1].hole == hole) {
		ext[*n - 1].length += len;
		return true;
	}
	if (*n == max)
		return false;
	ext[*n].length = len;
	ext[*n].hole = hole;
	(*n)++;
	return true;
}

int store_block_status(struct store_volume *v, uint64_t offset, uint64_t length,
		       struct store_extent *ext, unsigned max)
{
	uint64_t pos = offset, end;
	unsigned n = 0;

	if (store_check_range(v, offset, length) < 0)
		return -EINVAL;
	if (length == 0)
		return 0;
	if (max == 0)
		return -EINVAL;
	end = offset + length;
	while (pos < end) {
		off_t data = lseek(v->fd, (off_t)pos, SEEK_DATA);
		uint64_t next;
		bool hole;

		if (data < 0 && errno != ENXIO) {
			int err = -errno;
			LOG_ERROR("%s: lseek(SEEK_DATA, %llu): %s", v->name,
				  (unsigned long long)pos, strerror(errno));
			return err;
		}
		if (data < 0 || (uint64_t)data > pos) {
			/* ENXIO: no data after pos, the rest is a hole. */
			hole = true;
			next = data < 0 ? end : MIN((uint64_t)data, end);
		} else {
			off_t h = lseek(v->fd, (off_t)pos, SEEK_HOLE);
			if (h < 0) {
				int err = -errno;
				LOG_ERROR("%s: lseek(SEEK_HOLE, %llu): %s", v->name,
					  (unsigned long long)pos, strerror(errno));
				return err;
			}
			hole = false;
			next = MIN((uint64_t)h, end);
			if (next <= pos) /* cannot happen; never loop forever */
				next = end;
		}
		if (!add_extent(ext, &n, max, next - pos, hole))
			break;
		pos = next;
	}
	return (int)n;
}
