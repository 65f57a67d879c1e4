/* The watchdog: a thread that wakes every few milliseconds and ends the
 * process when the reactor has not started a turn for watchdog_ms. A hung
 * node thus gets out of its partner's way and restarts.
 *
 * A stopped process (SIGSTOP, a frozen cgroup, a paused VM, a suspended
 * host) must not be mistaken for a hung reactor: when the watchdog's own
 * tick comes back much later than asked (on CLOCK_MONOTONIC or
 * CLOCK_BOOTTIME), every thread was stopped, so the reactor's staleness is
 * not its fault. The watchdog then restarts its measure from the resume and
 * reports the stop to the loop (on_jump), where the monitor drops the I/O
 * lease and reads the own mailbox before any further shelf I/O.
 *
 * The watchdog arms itself at the first loop turn after monitor_watchdog_start(),
 * so boot code that blocks before loop_run() is not shot.
 */
#define LOG_MODULE "watchdog"
#include "monitor/monitor_int.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

struct monitor_watchdog {
	struct loop *loop;
	uint64_t timeout_ns;
	uint64_t tick_ns;
	uint64_t jump_ns;
	enum monitor_watchdog_action action;
	void (*on_jump)(void *arg, uint64_t stopped_ms);
	void *arg;

	pthread_t thread;
	bool running;
	_Atomic bool stop;
	_Atomic uint64_t jumps;
	_Atomic uint64_t pending_ms; /* longest stop not yet reported to the loop */
	uint64_t start_ns;

	int efd;
	struct loop_io eio;
	struct loop_timer keepalive;
};

static void fire(struct monitor_watchdog *w, uint64_t stall_ns)
{
	LOG_ERROR("reactor stalled for %llu ms (watchdog_ms %llu): ending the process",
		  (unsigned long long)(stall_ns / 1000000),
		  (unsigned long long)(w->timeout_ns / 1000000));
	if (w->action == MONITOR_WATCHDOG_ABORT)
		abort();
	_exit(MONITOR_WATCHDOG_STATUS);
}

static void *thread_main(void *arg)
{
	struct monitor_watchdog *w = arg;
	struct timespec tick = {.tv_sec = (time_t)(w->tick_ns / 1000000000ull),
				.tv_nsec = (long)(w->tick_ns % 1000000000ull)};
	uint64_t prev_mono = loop_now_ns(), prev_boot = monitor_boottime_ns();
	uint64_t resume = prev_mono;
	bool armed = false;

	while (!atomic_load(&w->stop)) {
		uint64_t mono, boot, late, last, ref;

		clock_nanosleep(CLOCK_MONOTONIC, 0, &tick, NULL);
		mono = loop_now_ns();
		boot = monitor_boottime_ns();
		late = MAX(mono - prev_mono, boot - prev_boot);
		late = late > w->tick_ns ? late - w->tick_ns : 0;
		prev_mono = mono;
		prev_boot = boot;
		/* Judge a stop before the loop: after a stop the loop is stale too. */
		if (late > w->jump_ns) {
			uint64_t ms = late / 1000000, cur = atomic_load(&w->pending_ms);
			atomic_fetch_add(&w->jumps, 1);
			while (cur < ms && !atomic_compare_exchange_weak(&w->pending_ms, &cur, ms))
				;
			resume = mono;
			uint64_t one = 1;
			ssize_t n = write(w->efd, &one, sizeof(one));
			(void)n;
		}
		last = loop_last_turn_ns(w->loop);
		if (!armed) {
			armed = last > w->start_ns;
			continue;
		}
		ref = MAX(last, resume);
		if (mono > ref && mono - ref > w->timeout_ns)
			fire(w, mono - ref);
	}
	return NULL;
}

static void jumped(struct loop_io *io, uint32_t events)
{
	struct monitor_watchdog *w = io->arg;
	uint64_t v, ms;
	ssize_t n = read(w->efd, &v, sizeof(v));

	(void)n;
	(void)events;
	ms = atomic_exchange(&w->pending_ms, 0);
	if (!ms)
		return;
	if (ms >= 1000)
		LOG_WARN("process was stopped or starved for %llu ms", (unsigned long long)ms);
	else
		LOG_INFO("process was stopped or starved for %llu ms", (unsigned long long)ms);
	if (w->on_jump)
		w->on_jump(w->arg, ms);
}

/* An idle loop sleeps up to a second in epoll, and the loop stamps a turn
 * before it sleeps, so the sleep counts as stall time: keep every sleep
 * within a tenth of the timeout. The watchdog then ends the process after a
 * stall of at least 0.9 x watchdog_ms (at most watchdog_ms plus a tick). */
static void keepalive(struct loop_timer *t)
{
	struct monitor_watchdog *w = t->arg;

	loop_timer_arm(w->loop, &w->keepalive, w->timeout_ns / 10);
}

int monitor_watchdog_start(const struct monitor_watchdog_opts *o, struct monitor_watchdog **out)
{
	struct monitor_watchdog *w = calloc(1, sizeof(*w));
	sigset_t all, old;
	int rc;

	if (!w)
		return -ENOMEM;
	w->loop = o->loop;
	w->timeout_ns = (uint64_t)o->watchdog_ms * 1000000ull;
	w->tick_ns = (uint64_t)(o->tick_ms ? o->tick_ms : 5) * 1000000ull;
	w->jump_ns = (uint64_t)(o->jump_ms ? o->jump_ms : 50) * 1000000ull;
	w->action = o->action;
	w->on_jump = o->on_jump;
	w->arg = o->arg;
	w->start_ns = loop_now_ns();
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->efd < 0) {
		rc = -errno;
		LOG_ERROR("eventfd: %s", strerror(errno));
		free(w);
		return rc;
	}
	rc = loop_io_add(w->loop, &w->eio, w->efd, EPOLLIN, jumped, w);
	if (rc < 0) {
		close(w->efd);
		free(w);
		return rc;
	}
	loop_timer_init(&w->keepalive, keepalive, w);
	loop_timer_arm(w->loop, &w->keepalive, w->timeout_ns / 10);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&w->thread, NULL, thread_main, w);
	if (rc == 0)
		util_thread_realtime(w->thread);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		LOG_ERROR("watchdog thread: %s", strerror(-rc));
		monitor_watchdog_stop(w);
		return rc;
	}
	w->running = true;
	LOG_INFO("watchdog: %llu ms", (unsigned long long)(w->timeout_ns / 1000000));
	*out = w;
	return 0;
}

void monitor_watchdog_stop(struct monitor_watchdog *w)
{
	if (!w)
		return;
	if (w->running) {
		atomic_store(&w->stop, true);
		pthread_join(w->thread, NULL);
	}
	loop_timer_cancel(w->loop, &w->keepalive);
	loop_io_del(w->loop, &w->eio);
	close(w->efd);
	free(w);
}

uint64_t monitor_watchdog_jumps(const struct monitor_watchdog *w)
{
	return atomic_load(&w->jumps);
}
