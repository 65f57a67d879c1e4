/* The reactor (see loop.h for the contract): one epoll set, a binary heap
 * of timers, a queue of posted tasks and a list of pollers, all owned by
 * one thread.
 *
 * Rule kept: the loop never allocates on behalf of a handle and never
 * touches one after its owner deleted it, even for events of the batch
 * being dispatched (a deleted handle's pending events are dropped by
 * clearing its slot in the batch); so an owner may free a handle at once. */
#define LOG_MODULE "loop"
#include "common/loop.h"
#include "common/log.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 128
/* While a poller spins, the loop's own epoll call (the sockets, eventfds
 * and wait fds) is made at most this often: the provider's progress inside
 * the poller already makes one per turn, and a second per turn lengthens
 * every spinning turn by a system call (issue 11). */
#define LOOP_SPIN_IO_NS 8000ull

struct loop {
	int epfd;
	bool stop;
	struct epoll_event events[LOOP_MAX_EVENTS];
	int ev_cur; /* index being dispatched */
	int ev_n;   /* events in the current batch */
	struct loop_timer **heap;
	int heap_n;
	int heap_cap;
	struct loop_task *tasks_head;
	struct loop_task *tasks_tail;
	struct loop_poller *pollers;
	uint64_t pollers_gen;  /* bumped by every add and del */
	bool spinning;	       /* a poller reported work last turn */
	uint64_t io_polled_ns; /* when epoll was last asked */
	uint64_t io_skipped;   /* spinning turns that did not ask it */
	_Atomic uint64_t last_turn_ns;
	uint64_t late_ns;   /* loop_watch_late(); 0: not watched */
	uint64_t late_from; /* when the watch began: deadlines before it do not count */
	loop_late_cb late_cb;
	void *late_arg;
	struct loop_timer late_timer;
};

static void late_tick(struct loop_timer *t);

uint64_t loop_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int loop_create(struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));

	if (!l)
		return -ENOMEM;
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0) {
		int err = -errno;
		LOG_ERROR("epoll_create1: %s", strerror(errno));
		free(l);
		return err;
	}
	atomic_store(&l->last_turn_ns, loop_now_ns());
	loop_timer_init(&l->late_timer, late_tick, l);
	*out = l;
	return 0;
}

void loop_destroy(struct loop *l)
{
	if (!l)
		return;
	close(l->epfd);
	free(l->heap);
	free(l);
}

int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb,
		void *arg)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	io->fd = fd;
	io->events = events;
	io->cb = cb;
	io->arg = arg;
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		int err = -errno;
		LOG_ERROR("epoll_ctl(ADD, fd %d): %s", fd, strerror(errno));
		return err;
	}
	io->added = true;
	return 0;
}

int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = {.events = events, .data.ptr = io};

	if (io->events == events)
		return 0;
	if (epoll_ctl(l->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0) {
		int err = -errno;
		LOG_ERROR("epoll_ctl(MOD, fd %d): %s", io->fd, strerror(errno));
		return err;
	}
	io->events = events;
	return 0;
}

void loop_io_pause(struct loop *l, struct loop_io *io, struct loop_timer *resume, uint64_t delay_ns)
{
	loop_io_mod(l, io, 0);
	loop_timer_arm(l, resume, delay_ns);
}

/* Besides removing the fd, forget any event of the current batch that still
 * points at @p io, so the owner may free it right away. */
void loop_io_del(struct loop *l, struct loop_io *io)
{
	if (!io->added)
		return;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->added = false;
	for (int i = l->ev_cur + 1; i < l->ev_n; i++) {
		if (l->events[i].data.ptr == io)
			l->events[i].data.ptr = NULL;
	}
}

/* ---- timers: a binary min-heap on deadline ---- */

static void heap_swap(struct loop *l, int a, int b)
{
	struct loop_timer *t = l->heap[a];

	l->heap[a] = l->heap[b];
	l->heap[b] = t;
	l->heap[a]->heap_idx = a;
	l->heap[b]->heap_idx = b;
}

static void heap_up(struct loop *l, int i)
{
	while (i > 0) {
		int p = (i - 1) / 2;
		if (l->heap[p]->deadline_ns <= l->heap[i]->deadline_ns)
			break;
		heap_swap(l, i, p);
		i = p;
	}
}

static void heap_down(struct loop *l, int i)
{
	for (;;) {
		int c = 2 * i + 1, m = i;
		if (c < l->heap_n && l->heap[c]->deadline_ns < l->heap[m]->deadline_ns)
			m = c;
		if (c + 1 < l->heap_n && l->heap[c + 1]->deadline_ns < l->heap[m]->deadline_ns)
			m = c + 1;
		if (m == i)
			break;
		heap_swap(l, i, m);
		i = m;
	}
}

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg)
{
	t->cb = cb;
	t->arg = arg;
	t->heap_idx = -1;
	t->deadline_ns = 0;
}

void loop_timer_cancel(struct loop *l, struct loop_timer *t)
{
	int i = t->heap_idx;

	if (i < 0)
		return;
	l->heap_n--;
	if (i != l->heap_n) {
		l->heap[i] = l->heap[l->heap_n];
		l->heap[i]->heap_idx = i;
		heap_down(l, i);
		heap_up(l, i);
	}
	t->heap_idx = -1;
}

void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t delay_ns)
{
	loop_timer_cancel(l, t);
	if (l->heap_n == l->heap_cap) {
		int cap = l->heap_cap ? 2 * l->heap_cap : 64;
		struct loop_timer **h = realloc(l->heap, (size_t)cap * sizeof(*h));
		if (!h) {
			/* Nothing sane to do without memory for a timer slot. */
			LOG_ERROR("out of memory for timers");
			abort();
		}
		l->heap = h;
		l->heap_cap = cap;
	}
	t->deadline_ns = loop_now_ns() + delay_ns;
	t->heap_idx = l->heap_n;
	l->heap[l->heap_n++] = t;
	heap_up(l, t->heap_idx);
}

/* The watch's own timer: a deadline always there to be late for, even on a
 * node with nothing else armed. */
static void late_tick(struct loop_timer *t)
{
	struct loop *l = t->arg;

	if (l->late_ns)
		loop_timer_arm(l, &l->late_timer, l->late_ns / 2);
}

void loop_watch_late(struct loop *l, uint64_t late_ns, loop_late_cb cb, void *arg)
{
	l->late_ns = late_ns;
	l->late_cb = cb;
	l->late_arg = arg;
	l->late_from = loop_now_ns();
	if (late_ns)
		loop_timer_arm(l, &l->late_timer, late_ns / 2);
	else
		loop_timer_cancel(l, &l->late_timer);
}

/* Any timer found more than late_ns past its deadline ends the watch: the
 * callback runs once (its remedy, a real-time policy, is one way). A timer
 * due before the watch began was due while its owner started up, not
 * while the loop ran. */
static void check_late(struct loop *l, const struct loop_timer *t, uint64_t now)
{
	uint64_t late = now - t->deadline_ns;

	if (!l->late_ns || late <= l->late_ns || t->deadline_ns < l->late_from)
		return;
	l->late_ns = 0;
	loop_timer_cancel(l, &l->late_timer);
	l->late_cb(l->late_arg, late);
}

static void run_timers(struct loop *l)
{
	uint64_t now = loop_now_ns();

	while (l->heap_n > 0 && l->heap[0]->deadline_ns <= now) {
		struct loop_timer *t = l->heap[0];
		loop_timer_cancel(l, t);
		check_late(l, t, now);
		t->cb(t);
	}
}

/* ---- tasks and pollers ---- */

void loop_task_init(struct loop_task *t, loop_task_cb cb, void *arg)
{
	t->next = NULL;
	t->cb = cb;
	t->arg = arg;
	t->queued = false;
}

void loop_post(struct loop *l, struct loop_task *t)
{
	if (t->queued)
		return;
	t->queued = true;
	t->next = NULL;
	if (l->tasks_tail)
		l->tasks_tail->next = t;
	else
		l->tasks_head = t;
	l->tasks_tail = t;
}

static bool run_tasks(struct loop *l)
{
	/* Only the tasks queued so far: one posted by a task runs next turn. */
	struct loop_task *t = l->tasks_head;
	bool ran = t != NULL;

	l->tasks_head = l->tasks_tail = NULL;
	while (t) {
		struct loop_task *next = t->next;
		t->queued = false;
		t->next = NULL;
		t->cb(t->arg);
		t = next;
	}
	return ran;
}

void loop_poller_add(struct loop *l, struct loop_poller *p, loop_poll_cb cb, void *arg)
{
	if (p->added)
		return;
	p->cb = cb;
	p->arg = arg;
	p->next = l->pollers;
	p->added = true;
	l->pollers = p;
	l->pollers_gen++;
}

void loop_poller_del(struct loop *l, struct loop_poller *p)
{
	for (struct loop_poller **pp = &l->pollers; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			p->added = false;
			l->pollers_gen++;
			return;
		}
	}
}

static bool run_pollers(struct loop *l)
{
	bool busy = false;
	struct loop_poller *p = l->pollers;

	uint64_t gen = l->pollers_gen;

	/* A callback that adds or removes a poller (closing a link, say) may
	 * free the next one: the rest waits for the next turn, which comes at
	 * once. */
	while (p) {
		struct loop_poller *next = p->next;
		if (p->cb(p->arg) > 0)
			busy = true;
		if (l->pollers_gen != gen)
			return true;
		p = next;
	}
	return busy;
}

/* ---- dispatch ---- */

/* epoll_pwait2 (nanosecond timeouts) is missing: fall back to epoll_wait. */
static bool no_pwait2;

/* Ask epoll for ready descriptors, waiting at most @p wait ns.
 * @return the number of events or a negative errno. */
static int wait_events(struct loop *l, uint64_t wait)
{
	struct timespec ts;
	int n = -1;

	ts.tv_sec = (time_t)(wait / 1000000000ull);
	ts.tv_nsec = (long)(wait % 1000000000ull);
	if (!no_pwait2) {
		n = epoll_pwait2(l->epfd, l->events, LOOP_MAX_EVENTS, &ts, NULL);
		if (n < 0 && errno == ENOSYS)
			no_pwait2 = true;
	}
	if (no_pwait2) { /* Linux < 5.11, or valgrind: milliseconds, rounded up */
		uint64_t ms = (wait + 999999) / 1000000;
		n = epoll_wait(l->epfd, l->events, LOOP_MAX_EVENTS,
			       ms > INT_MAX ? INT_MAX : (int)ms);
	}
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		int err = -errno;
		LOG_ERROR("epoll_pwait2: %s", strerror(errno));
		return err;
	}
	return n;
}

int loop_run_once(struct loop *l, uint64_t timeout_ns)
{
	uint64_t wait = timeout_ns;
	uint64_t now = loop_now_ns();
	int n = 0;

	atomic_store_explicit(&l->last_turn_ns, now, memory_order_relaxed);
	if (l->tasks_head)
		wait = 0;
	if (l->heap_n > 0 && wait > 0) {
		uint64_t d = l->heap[0]->deadline_ns;
		uint64_t until = d > now ? d - now : 0;
		if (until < wait)
			wait = until;
	}
	/* A spinning turn that does not sleep skips epoll unless it was asked
	 * LOOP_SPIN_IO_NS ago: descriptors wait at most that long, timers
	 * and tasks run on every turn regardless. */
	if (wait > 0 || !l->spinning || now - l->io_polled_ns >= LOOP_SPIN_IO_NS) {
		n = wait_events(l, wait);
		if (n < 0)
			return n;
		l->io_polled_ns = now;
	} else {
		l->io_skipped++;
	}
	l->ev_n = n;
	for (l->ev_cur = 0; l->ev_cur < n; l->ev_cur++) {
		struct loop_io *io = l->events[l->ev_cur].data.ptr;
		if (io)
			io->cb(io, l->events[l->ev_cur].events);
	}
	l->ev_n = 0;
	l->ev_cur = 0;
	run_timers(l);
	bool busy = run_pollers(l);
	l->spinning = busy;
	busy |= run_tasks(l);
	return busy ? 1 : 0;
}

int loop_run(struct loop *l)
{
	int busy = 0;

	l->stop = false;
	while (!l->stop) {
		int rc = loop_run_once(l, busy ? 0 : 1000000000ull);
		if (rc < 0)
			return rc;
		busy = rc;
	}
	return 0;
}

void loop_stop(struct loop *l)
{
	l->stop = true;
}

uint64_t loop_last_turn_ns(const struct loop *l)
{
	return atomic_load_explicit(&l->last_turn_ns, memory_order_relaxed);
}

uint64_t loop_io_skipped(const struct loop *l)
{
	return l->io_skipped;
}
