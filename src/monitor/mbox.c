/* The mailbox: SHELF/mailbox, one 4 KiB sector per writer, driven by a
 * thread with its own timer so that no O_DSYNC write ever blocks the
 * reactor. Every cycle the thread
 *   1. writes this node's liveness record (only while the reactor turns:
 *      a hung reactor must look dead, not alive),
 *   2. reads its own mailbox: a takeover mark there drops the I/O lease at
 *      once, a clean read renews it until (read start + lease_ms),
 *   3. reads the partner's mailbox and keeps the evidence of its silence.
 * Requests from the loop (sync, check, mark) wake it at once; their answers
 * and the fresh views go back through an eventfd.
 *
 * Threads: requests, answers and the views live under mu; the I/O lease is
 * an atomic that any thread reads without a lock; the file descriptors and
 * buffers are the thread's alone once it runs.
 */
#define LOG_MODULE "mbox"
#include "monitor/monitor_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/list.h"
#include "common/log.h"
#include "common/util.h"

enum req_kind {
	REQ_BOOT,
	REQ_SYNC,
	REQ_CHECK,
	REQ_MARK,
};

struct req {
	struct slist_node node; /* in pending, then done */
	enum req_kind kind;
	uint64_t gen;
	bool set;
	enum monitor_mark_replay replay;
	monitor_done_cb done;
	monitor_mark_cb mark_cb;
	void *arg;
	int rc;
	struct monitor_mark mark;
};

struct monitor_mbox {
	struct loop *loop;
	char node[MONITOR_ID_MAX];
	char own_path[PATH_MAX];
	char partner_path[PATH_MAX];
	bool has_partner;
	bool buffered;
	uint64_t interval_ns;
	uint64_t lease_ns;
	uint32_t lease_ms;	  /* published in the lease record */
	uint32_t fence_margin_ms; /* published in the lease record */
	void (*on_cycle)(void *arg);
	void *cycle_arg;

	int own_fd;
	int partner_fd;
	bool own_direct;
	int own_direct_err; /* why O_DIRECT was refused: negative errno, or 0 */
	uint8_t *wbuf;	    /* one sector, aligned */
	uint8_t *rbuf;	    /* two sectors, aligned */

	pthread_t thread;
	bool running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* Under mu. */
	bool stop;
	struct slist pending; /* struct req, from the loop to the thread */
	struct slist done;    /* struct req, answered, back to the loop */
	enum ha_state state;
	enum ha_mirror mirror;
	uint64_t acked_gen;
	struct monitor_mbox_own_view own;
	struct monitor_mbox_partner_view partner;

	/* Thread only. */
	bool booted;
	uint64_t boot_gen;
	uint64_t counter;
	bool wrote; /* a record (with our lease) is durable this boot */
	int last_wrc;
	uint8_t last_written[MONITOR_REC_SIZE];
	uint64_t durable_acked; /* acked_gen of the last record on disk */
	bool partner_have;
	uint8_t partner_last[MONITOR_REC_SIZE];

	_Atomic uint64_t lease_until; /* boottime ns */
	_Atomic uint64_t drop_at;     /* boottime ns of the last monitor_mbox_lease_drop() */
	_Atomic int fail_writes;      /* test shim: own writes fail with this (negative) */
	_Atomic bool stall_writes;    /* test shim: own writes block while set */

	int efd;
	struct loop_io eio;
};

uint64_t monitor_boottime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Test shim: DUET_TEST_NO_O_DIRECT=PREFIX makes every mailbox whose path
 * starts with PREFIX refuse O_DIRECT with EINVAL, as tmpfs did before Linux
 * 6.6 and as some network filesystems do (today's tmpfs accepts it). It
 * can only take the split-brain guard's O_DIRECT away, never grant it. */
static int open_direct(const char *path, int flags)
{
	const char *no = getenv("DUET_TEST_NO_O_DIRECT");

	if (no && *no && strncmp(path, no, strlen(no)) == 0) {
		errno = EINVAL;
		return -1;
	}
	return open(path, flags, 0644);
}

/* O_DIRECT keeps two hosts that share a shelf coherent. A filesystem that
 * refuses it (tmpfs) still gets O_DSYNC writes through the page cache, so
 * one host works; but a second host with a cache of its own would not see
 * them, so the fallback is said once, loudly, and takeover is refused
 * (monitor.c). @p direct_err gets why O_DIRECT was refused (0: not tried). */
static int open_mailbox(const char *path, bool create, bool buffered, bool *direct, int *direct_err)
{
	int flags = O_RDWR | O_CLOEXEC | O_DSYNC | (create ? O_CREAT : 0);
	int fd = buffered ? -1 : open_direct(path, flags | O_DIRECT);

	*direct = fd >= 0;
	*direct_err = fd < 0 && !buffered ? -errno : 0;
	if (fd < 0 && (buffered || errno == EINVAL))
		fd = open(path, flags, 0644);
	if (fd < 0)
		return -errno;
	if (!*direct && !buffered)
		LOG_WARN("mailbox %s: O_DIRECT refused (%s): its I/O goes through this host's "
			 "page cache, which another host sharing the shelf does not see; takeover "
			 "is refused (takeover --force risks split brain)",
			 path, strerror(-*direct_err));
	return fd;
}

/* A new mailbox appears at its full size or not at all: made under a
 * temporary name, sized, then linked into place. A partner that opened it
 * empty (between a create and a truncate) could keep that size cached for
 * good on a filesystem with an attribute cache of its own (FUSE, NFS) and
 * read nothing from it. */
static int mailbox_make(const char *path)
{
	char tmp[PATH_MAX];
	int fd, rc = 0;

	if (access(path, F_OK) == 0)
		return 0;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.new.%ld", path, (long)getpid()) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, MONITOR_MBOX_SIZE) < 0 || fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && link(tmp, path) < 0 && errno != EEXIST)
		rc = -errno;
	unlink(tmp);
	return rc;
}

/* Read the two first sectors; a short file reads as zeros past its end. */
static int read_sectors(int fd, uint8_t *buf)
{
	size_t len = 2 * MONITOR_SECTOR;
	ssize_t n;

	do
		n = pread(fd, buf, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	memset(buf + n, 0, len - (size_t)n);
	return 0;
}

static int write_sector(struct monitor_mbox *mb, int fd, const uint8_t *buf, unsigned sector)
{
	int fault = fd == mb->own_fd ? atomic_load(&mb->fail_writes) : 0;
	ssize_t n;

	if (fault < 0)
		return fault;
	while (fd == mb->own_fd && atomic_load(&mb->stall_writes))
		nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
	do
		n = pwrite(fd, buf, MONITOR_SECTOR, (off_t)sector * MONITOR_SECTOR);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n == (ssize_t)MONITOR_SECTOR ? 0 : -EIO;
}

static void post_loop(struct monitor_mbox *mb)
{
	uint64_t one = 1;
	ssize_t n = write(mb->efd, &one, sizeof(one));

	(void)n; /* the counter saturating is harmless: one wake-up is enough */
}

/* ---- the thread ---- */

static bool loop_alive(const struct monitor_mbox *mb)
{
	uint64_t last = loop_last_turn_ns(mb->loop), now = loop_now_ns();

	return now < last || now - last < mb->lease_ns;
}

static int cycle_write(struct monitor_mbox *mb, enum ha_state state, enum ha_mirror mirror,
		       uint64_t acked_gen)
{
	struct monitor_alive a = {
	    .boot_gen = mb->boot_gen,
	    .counter = mb->counter + 1,
	    .acked_gen = acked_gen,
	    .state = state,
	    .mirror = mirror,
	    .lease_ms = mb->lease_ms,
	    .fence_margin_ms = mb->fence_margin_ms,
	    .mbox_direct = mb->own_direct,
	};
	struct timespec ts;
	int rc;

	clock_gettime(CLOCK_REALTIME, &ts);
	a.time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	snprintf(a.node, sizeof(a.node), "%s", mb->node);
	memset(mb->wbuf, 0, MONITOR_SECTOR);
	monitor_alive_sector_encode(&a, mb->wbuf);
	rc = write_sector(mb, mb->own_fd, mb->wbuf, MONITOR_SECT_ALIVE);
	if (rc < 0)
		return rc;
	mb->counter++;
	mb->wrote = true;
	memcpy(mb->last_written, mb->wbuf, MONITOR_REC_SIZE);
	return 0;
}

/* Another process's record in our liveness sector (mb->rbuf, just read):
 * a second writer of this node's mailbox. */
static void check_foreign(struct monitor_mbox *mb, struct monitor_mbox_own_view *own)
{
	struct monitor_alive a;

	if (mb->wrote && memcmp(mb->rbuf, mb->last_written, MONITOR_REC_SIZE) != 0 &&
	    monitor_alive_decode(mb->rbuf, MONITOR_REC_ALIVE, &a) == 0 &&
	    (a.boot_gen != mb->boot_gen || strcmp(a.node, mb->node) != 0)) {
		if (!own->conflict)
			LOG_ERROR(
			    "%s: another writer (node %s, boot %llu) uses this node's mailbox",
			    mb->own_path, a.node, (unsigned long long)a.boot_gen);
		own->conflict = true;
	}
}

/* Read the own mailbox: renew or drop the lease, note a mark or a second
 * writer. @p own is filled for publication. The first lease of a boot
 * waits for a durable record of this boot: the partner's fence wait uses
 * the lease_ms it read there, so no lease is granted that it has not been
 * told of. */
static void cycle_read_own(struct monitor_mbox *mb, struct monitor_mbox_own_view *own)
{
	uint64_t t0 = monitor_boottime_ns();
	int rc = read_sectors(mb->own_fd, mb->rbuf);

	own->rc = rc;
	if (rc < 0)
		return;
	own->mark_valid = monitor_mark_decode(mb->rbuf + MONITOR_SECTOR, &own->mark) == 0;
	check_foreign(mb, own);
	/* A set mark at or below our durable acked_gen is one we took back
	 * from a dead taker (ha.c, "takeback"): answered, it fences no more. */
	if ((own->mark_valid && own->mark.set && own->mark.gen > mb->durable_acked) ||
	    own->conflict) {
		atomic_store(&mb->lease_until, 0);
		return;
	}
	if (mb->wrote && t0 > atomic_load(&mb->drop_at) && loop_alive(mb)) {
		uint64_t until = t0 + mb->lease_ns;
		uint64_t cur = atomic_load(&mb->lease_until);
		while (cur < until && !atomic_compare_exchange_weak(&mb->lease_until, &cur, until))
			;
	}
}

/* Read the partner's mailbox. Its records carry a counter, so the same
 * bytes read at t1 and t2 prove no write landed in between: that interval
 * is the evidence of silence. A failed or torn read proves nothing. */
static void cycle_read_partner(struct monitor_mbox *mb, struct monitor_mbox_partner_view *p)
{
	uint64_t t0, t1;
	int rc;

	if (mb->partner_fd < 0) {
		bool direct;
		int derr;
		int fd = open_mailbox(mb->partner_path, false, mb->buffered, &direct, &derr);
		if (fd < 0) {
			if (p->rc != fd)
				LOG_WARN("partner mailbox %s: %s", mb->partner_path, strerror(-fd));
			p->rc = fd;
			return;
		}
		mb->partner_fd = fd;
		p->opened = true;
		p->direct = direct;
		p->direct_err = derr;
		if (direct || mb->buffered) /* else open_mailbox() warned */
			LOG_INFO("partner mailbox %s open%s", mb->partner_path,
				 direct ? " (O_DIRECT)" : " (O_DSYNC, no O_DIRECT)");
	}
	t0 = loop_now_ns();
	rc = read_sectors(mb->partner_fd, mb->rbuf);
	t1 = loop_now_ns();
	if (rc == 0) {
		struct monitor_alive a;
		rc = monitor_alive_sector_decode(mb->rbuf, &a);
		p->mark_valid = monitor_mark_decode(mb->rbuf + MONITOR_SECTOR, &p->mark) == 0;
		if (rc == 0) {
			if (!mb->partner_have ||
			    memcmp(mb->partner_last, mb->rbuf, MONITOR_REC_SIZE) != 0) {
				memcpy(mb->partner_last, mb->rbuf, MONITOR_REC_SIZE);
				mb->partner_have = true;
				p->last_change_ns = t1;
			}
			p->seen = true;
			p->rec = a;
			p->last_read_ns = t0;
			p->silent_ns = t0 > p->last_change_ns ? t0 - p->last_change_ns : 0;
		}
	}
	if (rc < 0 && rc != p->rc)
		LOG_WARN("partner mailbox %s: %s", mb->partner_path, strerror(-rc));
	p->rc = rc;
}

static int mark_write(struct monitor_mbox *mb, uint64_t gen, bool set,
		      enum monitor_mark_replay replay)
{
	struct monitor_mark m = {.gen = gen, .set = set, .replay = replay};
	struct timespec ts;

	if (mb->partner_fd < 0)
		return mb->has_partner ? -ENOENT : -ENOTCONN;
	clock_gettime(CLOCK_REALTIME, &ts);
	m.time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	snprintf(m.taker, sizeof(m.taker), "%s", mb->node);
	/* The owner's id as its own record names it; empty if never seen. */
	pthread_mutex_lock(&mb->mu);
	snprintf(m.owner, sizeof(m.owner), "%s", mb->partner.seen ? mb->partner.rec.node : "");
	pthread_mutex_unlock(&mb->mu);
	memset(mb->wbuf, 0, MONITOR_SECTOR);
	monitor_mark_encode(&m, mb->wbuf);
	return write_sector(mb, mb->partner_fd, mb->wbuf, MONITOR_SECT_MARK);
}

/* First cycle: learn the boot generation and whether we were taken over,
 * before anything is written. Until it succeeds nothing is written and no
 * lease is granted. */
static void cycle_boot(struct monitor_mbox *mb, struct monitor_mbox_own_view *own)
{
	struct monitor_alive a;
	int rc = read_sectors(mb->own_fd, mb->rbuf);

	own->rc = rc;
	if (rc < 0) {
		LOG_ERROR("%s: boot read: %s", mb->own_path, strerror(-rc));
		return;
	}
	rc = monitor_alive_decode(mb->rbuf, MONITOR_REC_ALIVE, &a);
	if (rc == 0) {
		mb->boot_gen = a.boot_gen + 1;
		own->boot_acked_gen = a.acked_gen;
		own->boot_time_ns = a.time_ns;
	} else if (rc != -ENODATA) {
		LOG_WARN("%s: own record unreadable (%s); boot generation restarts", mb->own_path,
			 strerror(-rc));
	}
	if (mb->boot_gen == 0)
		mb->boot_gen = 1;
	own->boot_gen = mb->boot_gen;
	own->mark_valid = monitor_mark_decode(mb->rbuf + MONITOR_SECTOR, &own->mark) == 0;
	/* Until the monitor says otherwise, records keep what we found. */
	pthread_mutex_lock(&mb->mu);
	mb->acked_gen = MAX(mb->acked_gen, own->boot_acked_gen);
	mb->durable_acked = own->boot_acked_gen;
	if (own->mark_valid && own->mark.set && own->mark.gen > own->boot_acked_gen)
		mb->state = HA_TAKEN_OVER;
	pthread_mutex_unlock(&mb->mu);
	mb->booted = true;
}

/* A failing own write is logged when it starts and when it ends, not at
 * every cycle; status shows it meanwhile (own.write_rc). */
static void note_write(struct monitor_mbox *mb, int wrc)
{
	if (wrc == mb->last_wrc)
		return;
	if (wrc < 0)
		LOG_ERROR("%s: write failed: %s (the partner sees this node's record stop)",
			  mb->own_path, strerror(-wrc));
	else
		LOG_INFO("%s: writes again", mb->own_path);
	mb->last_wrc = wrc;
}

static struct req *req_at(struct slist_node *n)
{
	return n ? slist_entry(n, struct req, node) : NULL;
}

/* Iterate over a struct slist of struct req; the body must not unlink. */
#define req_for_each(r, q) for ((r) = req_at((q)->head); (r); (r) = req_at((r)->node.next))

static void answer(struct monitor_mbox *mb, const struct slist *reqs,
		   const struct monitor_mbox_own_view *own,
		   const struct monitor_mbox_partner_view *partner, int wrc)
{
	struct req *r;

	req_for_each(r, reqs)
	{
		switch (r->kind) {
		case REQ_BOOT:
		case REQ_CHECK:
			r->rc = own->rc;
			if (own->rc == 0 && own->mark_valid)
				r->mark = own->mark;
			break;
		case REQ_SYNC:
			r->rc = mb->booted ? wrc : own->rc;
			break;
		case REQ_MARK:
			if (!mb->booted) {
				r->rc = own->rc;
			} else if (r->rc == 0) {
				/* Read back: the mark must be there as written. */
				if (partner->rc < 0)
					r->rc = partner->rc;
				else if (!partner->mark_valid || partner->mark.gen != r->gen ||
					 partner->mark.set != r->set ||
					 partner->mark.replay != r->replay)
					r->rc = -EIO;
			}
			break;
		}
	}
}

static void *thread_main(void *arg)
{
	struct monitor_mbox *mb = arg;
	uint64_t next = loop_now_ns();

	pthread_mutex_lock(&mb->mu);
	while (!mb->stop) {
		struct slist reqs = SLIST_INIT(reqs);
		struct req *r;
		struct monitor_mbox_own_view own;
		struct monitor_mbox_partner_view partner;
		enum ha_state state;
		enum ha_mirror mirror;
		uint64_t acked;
		bool due, sync = false;
		int wrc = 0;

		if (slist_empty(&mb->pending)) {
			struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
					      .tv_nsec = (long)(next % 1000000000ull)};
			pthread_cond_timedwait(&mb->cv, &mb->mu, &ts);
			if (mb->stop)
				break;
		}
		slist_splice_tail(&reqs, &mb->pending);
		own = mb->own;
		partner = mb->partner;
		pthread_mutex_unlock(&mb->mu);

		due = loop_now_ns() >= next;
		if (due) {
			next += mb->interval_ns;
			if (next < loop_now_ns())
				next = loop_now_ns() + mb->interval_ns; /* we were late: no burst */
		}
		if (!mb->booted)
			cycle_boot(mb, &own);
		if (mb->booted) {
			pthread_mutex_lock(&mb->mu);
			state = mb->state;
			mirror = mb->mirror;
			acked = mb->acked_gen;
			pthread_mutex_unlock(&mb->mu);
			req_for_each(r, &reqs)
			{
				sync |= r->kind == REQ_SYNC;
			}
			if ((due && loop_alive(mb)) || sync) {
				/* The read after our write sees a second writer
				 * only if its write lands in between: two writers
				 * of one interval can keep that phase for good.
				 * Before our write, the read sees any of its
				 * writes since our last. */
				if (mb->wrote && !own.conflict &&
				    read_sectors(mb->own_fd, mb->rbuf) == 0)
					check_foreign(mb, &own);
				wrc = cycle_write(mb, state, mirror, acked);
				note_write(mb, wrc);
				if (wrc == 0)
					own.last_write_ns = loop_now_ns();
				if (wrc == 0)
					mb->durable_acked = acked;
				own.write_rc = wrc;
				own.counter = mb->counter;
			}
			/* A failed write is reported apart: it must never hide
			 * what this read finds (a mark set or cleared). */
			cycle_read_own(mb, &own);
			req_for_each(r, &reqs)
			{
				if (r->kind == REQ_MARK)
					r->rc = mark_write(mb, r->gen, r->set, r->replay);
			}
			if (mb->has_partner)
				cycle_read_partner(mb, &partner);
		}
		answer(mb, &reqs, &own, &partner, wrc);

		pthread_mutex_lock(&mb->mu);
		mb->own = own;
		mb->partner = partner;
		slist_splice_tail(&mb->done, &reqs);
		post_loop(mb);
	}
	pthread_mutex_unlock(&mb->mu);
	return NULL;
}

/* ---- the loop side ---- */

static void deliver(struct loop_io *io, uint32_t events)
{
	struct monitor_mbox *mb = io->arg;
	struct slist q = SLIST_INIT(q);
	struct slist_node *qn;
	uint64_t v;
	ssize_t n = read(mb->efd, &v, sizeof(v));

	(void)n;
	(void)events;
	pthread_mutex_lock(&mb->mu);
	slist_splice_tail(&q, &mb->done);
	pthread_mutex_unlock(&mb->mu);
	while ((qn = slist_pop_head(&q))) {
		struct req *r = req_at(qn);

		if (r->kind == REQ_BOOT || r->kind == REQ_CHECK) {
			if (r->mark_cb)
				r->mark_cb(r->arg, r->rc, r->mark.gen ? &r->mark : NULL);
		} else if (r->done) {
			r->done(r->arg, r->rc);
		}
		free(r);
	}
	if (mb->on_cycle)
		mb->on_cycle(mb->cycle_arg);
}

static int submit(struct monitor_mbox *mb, struct req *r)
{
	pthread_mutex_lock(&mb->mu);
	if (mb->stop) {
		pthread_mutex_unlock(&mb->mu);
		free(r);
		return -ESHUTDOWN;
	}
	slist_push_tail(&mb->pending, &r->node);
	pthread_cond_signal(&mb->cv);
	pthread_mutex_unlock(&mb->mu);
	return 0;
}

static struct req *new_req(enum req_kind kind)
{
	struct req *r = calloc(1, sizeof(*r));

	if (r)
		r->kind = kind;
	return r;
}

int monitor_mbox_open(const struct monitor_mbox_opts *o, struct monitor_mbox **out)
{
	struct monitor_mbox *mb = calloc(1, sizeof(*mb));
	pthread_condattr_t ca;
	struct stat st;
	int rc;

	if (!mb)
		return -ENOMEM;
	mb->own_fd = mb->partner_fd = mb->efd = -1;
	mb->loop = o->loop;
	snprintf(mb->node, sizeof(mb->node), "%s", o->node_id);
	if ((size_t)snprintf(mb->own_path, sizeof(mb->own_path), "%s/%s", o->shelf,
			     MONITOR_MBOX_NAME) >= sizeof(mb->own_path)) {
		free(mb);
		return -ENAMETOOLONG;
	}
	mb->has_partner = o->partner_shelf && *o->partner_shelf;
	mb->buffered = o->buffered;
	if (mb->has_partner)
		snprintf(mb->partner_path, sizeof(mb->partner_path), "%.*s/%s", PATH_MAX - 16,
			 o->partner_shelf, MONITOR_MBOX_NAME);
	mb->interval_ns = (uint64_t)(o->mailbox_ms ? o->mailbox_ms : 50) * 1000000ull;
	mb->lease_ms = o->lease_ms ? o->lease_ms : 100;
	mb->lease_ns = (uint64_t)mb->lease_ms * 1000000ull;
	mb->fence_margin_ms = o->fence_margin_ms;
	mb->on_cycle = o->on_cycle;
	mb->cycle_arg = o->arg;
	slist_init(&mb->pending);
	slist_init(&mb->done);
	mb->state = HA_UP;
	mb->partner.rc = -ENODATA;
	pthread_mutex_init(&mb->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&mb->cv, &ca);
	pthread_condattr_destroy(&ca);

	if (posix_memalign((void **)&mb->wbuf, MONITOR_SECTOR, MONITOR_SECTOR) ||
	    posix_memalign((void **)&mb->rbuf, MONITOR_SECTOR, 2 * MONITOR_SECTOR)) {
		rc = -ENOMEM;
		goto err;
	}
	rc = mailbox_make(mb->own_path);
	if (rc == 0)
		rc = open_mailbox(mb->own_path, true, mb->buffered, &mb->own_direct,
				  &mb->own_direct_err);
	if (rc < 0) {
		LOG_ERROR("%s: %s", mb->own_path, strerror(-rc));
		goto err;
	}
	mb->own_fd = rc;
	mb->own.direct = mb->own_direct;
	mb->own.direct_err = mb->own_direct_err;
	if (fstat(mb->own_fd, &st) < 0 || (st.st_size < (off_t)MONITOR_MBOX_SIZE &&
					   ftruncate(mb->own_fd, MONITOR_MBOX_SIZE) < 0)) {
		rc = -errno;
		LOG_ERROR("%s: cannot size the mailbox: %s", mb->own_path, strerror(errno));
		goto err;
	}
	mb->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (mb->efd < 0) {
		rc = -errno;
		LOG_ERROR("eventfd: %s", strerror(errno));
		goto err;
	}
	rc = loop_io_add(mb->loop, &mb->eio, mb->efd, EPOLLIN, deliver, mb);
	if (rc < 0)
		goto err;
	if (mb->own_direct || mb->buffered) /* else open_mailbox() warned */
		LOG_INFO("mailbox %s open%s", mb->own_path,
			 mb->own_direct ? " (O_DIRECT)" : " (O_DSYNC, no O_DIRECT)");
	*out = mb;
	return 0;

err:
	monitor_mbox_close(mb);
	return rc;
}

/* Threads of the monitor take no signals: the node handles them. */
static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int rc;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(t, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc == 0)
		util_thread_realtime(*t);
	return -rc;
}

int monitor_mbox_start(struct monitor_mbox *mb, monitor_mark_cb boot_cb, void *arg)
{
	struct req *boot = new_req(REQ_BOOT);
	int rc;

	if (!boot)
		return -ENOMEM;
	boot->mark_cb = boot_cb;
	boot->arg = arg;
	slist_push_tail(&mb->pending, &boot->node);
	rc = start_thread(&mb->thread, thread_main, mb);
	if (rc < 0) {
		LOG_ERROR("mailbox thread: %s", strerror(-rc));
		return rc;
	}
	mb->running = true;
	return 0;
}

void monitor_mbox_close(struct monitor_mbox *mb)
{
	struct slist_node *n;

	if (!mb)
		return;
	if (mb->running) {
		atomic_store(&mb->stall_writes, false);
		pthread_mutex_lock(&mb->mu);
		mb->stop = true;
		pthread_cond_signal(&mb->cv);
		pthread_mutex_unlock(&mb->mu);
		pthread_join(mb->thread, NULL);
	}
	/* Requests never answered are dropped with the mailbox. */
	while ((n = slist_pop_head(&mb->pending)))
		free(req_at(n));
	while ((n = slist_pop_head(&mb->done)))
		free(req_at(n));
	if (mb->efd >= 0) {
		loop_io_del(mb->loop, &mb->eio);
		close(mb->efd);
	}
	if (mb->own_fd >= 0)
		close(mb->own_fd);
	if (mb->partner_fd >= 0)
		close(mb->partner_fd);
	free(mb->wbuf);
	free(mb->rbuf);
	pthread_cond_destroy(&mb->cv);
	pthread_mutex_destroy(&mb->mu);
	free(mb);
}

void monitor_mbox_set_state(struct monitor_mbox *mb, enum ha_state state, enum ha_mirror mirror,
			    uint64_t acked_gen)
{
	pthread_mutex_lock(&mb->mu);
	mb->state = state;
	mb->mirror = mirror;
	mb->acked_gen = acked_gen;
	pthread_mutex_unlock(&mb->mu);
}

int monitor_mbox_sync(struct monitor_mbox *mb, monitor_done_cb cb, void *arg)
{
	struct req *r = new_req(REQ_SYNC);

	if (!r)
		return -ENOMEM;
	r->done = cb;
	r->arg = arg;
	return submit(mb, r);
}

int monitor_mbox_check(struct monitor_mbox *mb, monitor_mark_cb cb, void *arg)
{
	struct req *r = new_req(REQ_CHECK);

	if (!r)
		return -ENOMEM;
	r->mark_cb = cb;
	r->arg = arg;
	return submit(mb, r);
}

int monitor_mbox_write_mark(struct monitor_mbox *mb, uint64_t gen, bool set,
			    enum monitor_mark_replay replay, monitor_done_cb cb, void *arg)
{
	struct req *r;

	if (!mb->has_partner)
		return -ENOTCONN;
	r = new_req(REQ_MARK);
	if (!r)
		return -ENOMEM;
	r->gen = gen;
	r->set = set;
	r->replay = replay;
	r->done = cb;
	r->arg = arg;
	return submit(mb, r);
}

void monitor_mbox_own(struct monitor_mbox *mb, struct monitor_mbox_own_view *v)
{
	pthread_mutex_lock(&mb->mu);
	*v = mb->own;
	pthread_mutex_unlock(&mb->mu);
}

void monitor_mbox_partner(struct monitor_mbox *mb, struct monitor_mbox_partner_view *v)
{
	pthread_mutex_lock(&mb->mu);
	*v = mb->partner;
	pthread_mutex_unlock(&mb->mu);
}

bool monitor_mbox_io_allowed(const struct monitor_mbox *mb)
{
	return monitor_boottime_ns() < atomic_load_explicit(&mb->lease_until, memory_order_acquire);
}

void monitor_mbox_lease_drop(struct monitor_mbox *mb)
{
	atomic_store(&mb->drop_at, monitor_boottime_ns());
	atomic_store(&mb->lease_until, 0);
}

bool monitor_mbox_direct(const struct monitor_mbox *mb)
{
	return mb->own_direct;
}

const char *monitor_mbox_own_path(const struct monitor_mbox *mb)
{
	return mb->own_path;
}

const char *monitor_mbox_partner_path(const struct monitor_mbox *mb)
{
	return mb->partner_path;
}

void monitor_mbox_test_fail_writes(struct monitor_mbox *mb, int err)
{
	atomic_store(&mb->fail_writes, err);
}

void monitor_mbox_test_stall_writes(struct monitor_mbox *mb, bool stall)
{
	atomic_store(&mb->stall_writes, stall);
}
