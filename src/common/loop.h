/**
 * @file loop.h
 * The reactor: one epoll loop per thread for sockets, eventfds, completion
 * queue descriptors and timers.
 *
 * Nothing in a callback may block. Handles (struct loop_io, loop_timer,
 * loop_task) are embedded in their owner's objects; the loop never
 * allocates on their behalf. After loop_io_del() returns, the loop will not
 * touch the handle again, even for events of the batch being dispatched, so
 * the owner may free it at once.
 */
#ifndef DUET_COMMON_LOOP_H
#define DUET_COMMON_LOOP_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/epoll.h>

struct loop;
struct loop_io;
struct loop_timer;

typedef void (*loop_io_cb)(struct loop_io *io, uint32_t events);
typedef void (*loop_timer_cb)(struct loop_timer *t);
typedef void (*loop_task_cb)(void *arg);
/** A poller returns > 0 when it did work, so the loop polls again at once. */
typedef int (*loop_poll_cb)(void *arg);
typedef void (*loop_late_cb)(void *arg, uint64_t late_ns);

struct loop_io {
	int fd;
	uint32_t events;
	loop_io_cb cb;
	void *arg;
	bool added;
};

struct loop_timer {
	uint64_t deadline_ns;
	loop_timer_cb cb;
	void *arg;
	int heap_idx; /* -1 when not armed */
};

struct loop_task {
	struct loop_task *next;
	loop_task_cb cb;
	void *arg;
	bool queued;
};

struct loop_poller {
	struct loop_poller *next;
	loop_poll_cb cb;
	void *arg;
	bool added;
};

/** Monotonic clock in nanoseconds. */
uint64_t loop_now_ns(void);

int loop_create(struct loop **out);
void loop_destroy(struct loop *l);

/** Watch @p fd for EPOLLIN/EPOLLOUT/...; level-triggered unless EPOLLET. */
int loop_io_add(struct loop *l, struct loop_io *io, int fd, uint32_t events, loop_io_cb cb,
		void *arg);
int loop_io_mod(struct loop *l, struct loop_io *io, uint32_t events);
void loop_io_del(struct loop *l, struct loop_io *io);
/**
 * Stop watching @p io for @p delay_ns: a listener out of descriptors
 * (accept fails with EMFILE/ENFILE) stays readable, and level-triggered it
 * would wake the loop at once, forever. @p resume (initialised by the
 * owner) fires after the delay; its callback watches again with
 * loop_io_mod(). Pausing while paused only re-arms.
 */
void loop_io_pause(struct loop *l, struct loop_io *io, struct loop_timer *resume,
		   uint64_t delay_ns);

void loop_timer_init(struct loop_timer *t, loop_timer_cb cb, void *arg);
/** (Re)arm @p t to fire once, @p delay_ns from now. */
void loop_timer_arm(struct loop *l, struct loop_timer *t, uint64_t delay_ns);
void loop_timer_cancel(struct loop *l, struct loop_timer *t);
static inline bool loop_timer_armed(const struct loop_timer *t)
{
	return t->heap_idx >= 0;
}

/** Run @p cb(@p arg) once, after the current batch of events and before the
 * loop sleeps again. Posting a queued task again is a no-op. */
void loop_task_init(struct loop_task *t, loop_task_cb cb, void *arg);
void loop_post(struct loop *l, struct loop_task *t);

/** Called on every turn of the loop (busy polling while it reports work).
 * While one reports work, turns run its callbacks, the timers and the tasks
 * every time but ask epoll for the descriptors only every few
 * microseconds. */
void loop_poller_add(struct loop *l, struct loop_poller *p, loop_poll_cb cb, void *arg);
void loop_poller_del(struct loop *l, struct loop_poller *p);

/** Dispatch until loop_stop(). @return 0 or a negative errno. */
int loop_run(struct loop *l);
/** Dispatch one turn, waiting at most @p timeout_ns (0: do not sleep). */
int loop_run_once(struct loop *l, uint64_t timeout_ns);
void loop_stop(struct loop *l);

/** Turns that skipped the loop's epoll call because a poller was spinning
 * (it is asked at most every few microseconds then). */
uint64_t loop_io_skipped(const struct loop *l);

/**
 * Call @p cb(@p arg, lateness) once, the first time a timer of @p l fires
 * more than @p late_ns after its deadline: the thread did not get a CPU in
 * time (busy neighbours), or a turn ran that long. A timer of its own, every
 * @p late_ns / 2, gives a deadline to be late for on an idle loop; a stall
 * of 1.5 x @p late_ns is always seen, when it ends. The watch then stops.
 * Timers due before the call do not count (a start-up that kept the loop
 * from running is not a stall).
 * @p late_ns 0 stops it without a call.
 */
void loop_watch_late(struct loop *l, uint64_t late_ns, loop_late_cb cb, void *arg);

/** Time at which the loop last started a turn (for a watchdog thread). */
uint64_t loop_last_turn_ns(const struct loop *l);

#endif
