/* Unit tests of the reactor: fd events, timers in deadline order, tasks,
 * pollers, and deletion of a handle whose event is still in the batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include "common/loop.h"

static int order[8];
static int n_order;

static void timer_cb(struct loop_timer *t)
{
	order[n_order++] = (int)(intptr_t)t->arg;
}

static void test_timers_fire_in_order(void **state)
{
	struct loop *l;
	struct loop_timer t[3];

	(void)state;
	assert_int_equal(loop_create(&l), 0);
	n_order = 0;
	loop_timer_init(&t[0], timer_cb, (void *)1);
	loop_timer_init(&t[1], timer_cb, (void *)2);
	loop_timer_init(&t[2], timer_cb, (void *)3);
	loop_timer_arm(l, &t[0], 3000000);
	loop_timer_arm(l, &t[1], 1000000);
	loop_timer_arm(l, &t[2], 2000000);
	loop_timer_cancel(l, &t[2]);
	assert_false(loop_timer_armed(&t[2]));
	uint64_t start = loop_now_ns();
	while (n_order < 2 && loop_now_ns() - start < 1000000000ull)
		loop_run_once(l, 10000000);
	assert_int_equal(n_order, 2);
	assert_int_equal(order[0], 2);
	assert_int_equal(order[1], 1);
	loop_destroy(l);
}

struct pair {
	struct loop *l;
	struct loop_io a, b;
	int fa, fb;
	int a_calls, b_calls;
};

static void cb_b(struct loop_io *io, uint32_t ev)
{
	struct pair *p = io->arg;
	(void)ev;
	p->b_calls++;
}

/* a's callback removes b, whose event is in the same batch: b must not run. */
static void cb_a(struct loop_io *io, uint32_t ev)
{
	struct pair *p = io->arg;
	(void)ev;
	p->a_calls++;
	loop_io_del(p->l, &p->b);
	loop_io_del(p->l, &p->a);
}

static void test_del_in_batch(void **state)
{
	struct pair p = {0};
	uint64_t one = 1;

	(void)state;
	assert_int_equal(loop_create(&p.l), 0);
	p.fa = eventfd(0, EFD_NONBLOCK);
	p.fb = eventfd(0, EFD_NONBLOCK);
	assert_int_equal(write(p.fa, &one, 8), 8);
	assert_int_equal(write(p.fb, &one, 8), 8);
	assert_int_equal(loop_io_add(p.l, &p.a, p.fa, EPOLLIN, cb_a, &p), 0);
	assert_int_equal(loop_io_add(p.l, &p.b, p.fb, EPOLLIN, cb_b, &p), 0);
	loop_run_once(p.l, 0);
	/* Exactly one of them ran: whichever came first removed both. */
	assert_int_equal(p.a_calls + p.b_calls, 1);
	close(p.fa);
	close(p.fb);
	loop_destroy(p.l);
}

static int task_runs;
static void task_cb(void *arg)
{
	(void)arg;
	task_runs++;
}

static int poll_left;
static int poll_cb(void *arg)
{
	(void)arg;
	return poll_left-- > 0;
}

static void test_tasks_and_pollers(void **state)
{
	struct loop *l;
	struct loop_task t;
	struct loop_poller p = {0};

	(void)state;
	assert_int_equal(loop_create(&l), 0);
	loop_task_init(&t, task_cb, NULL);
	task_runs = 0;
	loop_post(l, &t);
	loop_post(l, &t); /* already queued: once */
	loop_run_once(l, 0);
	assert_int_equal(task_runs, 1);
	poll_left = 2;
	loop_poller_add(l, &p, poll_cb, NULL);
	assert_int_equal(loop_run_once(l, 0), 1);
	assert_int_equal(loop_run_once(l, 0), 1);
	assert_int_equal(loop_run_once(l, 0), 0);
	loop_poller_del(l, &p);
	loop_destroy(l);
}

static int spin_io_calls;
static void spin_io_cb(struct loop_io *io, uint32_t ev)
{
	uint64_t v;

	(void)ev;
	spin_io_calls++;
	assert_int_equal(read(io->fd, &v, 8), 8);
}

static int spin_cb(void *arg)
{
	(void)arg;
	return 1;
}

/* A spinning poller: turns skip epoll, yet a ready descriptor and a due
 * timer are still served within a few microseconds' worth of turns. */
static void test_spin_skips_epoll(void **state)
{
	struct loop *l;
	struct loop_io io;
	struct loop_timer t;
	struct loop_poller p = {0};
	uint64_t one = 1, start;
	int fd = eventfd(0, EFD_NONBLOCK);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(loop_create(&l), 0);
	assert_int_equal(loop_io_add(l, &io, fd, EPOLLIN, spin_io_cb, NULL), 0);
	loop_poller_add(l, &p, spin_cb, NULL);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(loop_run_once(l, 0), 1);
	assert_true(loop_io_skipped(l) > 0);
	spin_io_calls = 0;
	assert_int_equal(write(fd, &one, 8), 8);
	start = loop_now_ns();
	while (!spin_io_calls && loop_now_ns() - start < 1000000000ull)
		loop_run_once(l, 0);
	assert_int_equal(spin_io_calls, 1);
	n_order = 0;
	loop_timer_init(&t, timer_cb, (void *)7);
	loop_timer_arm(l, &t, 0);
	assert_int_equal(loop_run_once(l, 0), 1);
	assert_int_equal(n_order, 1);
	loop_poller_del(l, &p);
	loop_io_del(l, &io);
	close(fd);
	loop_destroy(l);
}

static int late_calls;
static uint64_t late_seen_ns;

static void late_cb(void *arg, uint64_t late_ns)
{
	(void)arg;
	late_calls++;
	late_seen_ns = late_ns;
}

/* Run @p l for @p ns, sleeping in it (as a node with nothing to do). */
static void run_for(struct loop *l, uint64_t ns)
{
	uint64_t start = loop_now_ns();

	while (loop_now_ns() - start < ns)
		loop_run_once(l, 5000000);
}

/* realtime = auto's trigger: a loop that runs when due is never late; one
 * whose thread did not run for longer than the limit (here: it slept, as a
 * thread waiting for a CPU does) reports it once, with how late it was, and
 * the watch ends. */
static void test_watch_late(void **state)
{
	struct loop *l;
	struct loop_timer before;

	(void)state;
	assert_int_equal(loop_create(&l), 0);
	late_calls = 0;
	loop_watch_late(l, 400000000ull, late_cb, NULL);
	run_for(l, 450000000ull); /* its own timer fired at 200 and 400 ms */
	assert_int_equal(late_calls, 0);

	loop_timer_init(&before, timer_cb, (void *)9);
	loop_timer_arm(l, &before, 0);
	usleep(40000); /* a start-up: due before the watch began, not late */
	loop_watch_late(l, 20000000ull, late_cb, NULL);
	loop_run_once(l, 0);
	assert_false(loop_timer_armed(&before));
	assert_int_equal(late_calls, 0);
	usleep(80000); /* the watch's timer was due at 10 ms */
	loop_run_once(l, 0);
	assert_int_equal(late_calls, 1);
	assert_true(late_seen_ns > 20000000ull);
	usleep(80000);
	run_for(l, 20000000ull);
	assert_int_equal(late_calls, 1); /* once: the watch ended */

	loop_watch_late(l, 20000000ull, late_cb, NULL);
	loop_watch_late(l, 0, late_cb, NULL); /* stopped before it was due */
	usleep(80000);
	run_for(l, 20000000ull);
	assert_int_equal(late_calls, 1);
	loop_destroy(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_timers_fire_in_order), cmocka_unit_test(test_del_in_batch),
	    cmocka_unit_test(test_tasks_and_pollers),	 cmocka_unit_test(test_spin_skips_epoll),
	    cmocka_unit_test(test_watch_late),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
