/* Unit tests of the watchdog, each in a forked child whose end the parent
 * checks: a stalled reactor ends the process (_exit with its status, or
 * abort); an idle reactor, boot code that blocks before the loop runs, and
 * a process stopped with SIGSTOP and continued do not; the stop is
 * reported to the loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/loop.h"
#include "monitor/monitor_int.h"

enum mode {
	STALL_EXIT,
	STALL_ABORT,
	IDLE,
	BOOT_BLOCK,
	STOP_CONT,
};

struct child {
	struct loop *loop;
	enum mode mode;
	int out; /* pipe to the parent */
	struct loop_timer t;
	int turns;
};

static void say(int fd, const void *buf, size_t len)
{
	ssize_t n = write(fd, buf, len);

	(void)n;
}

static void on_timer(struct loop_timer *t)
{
	struct child *c = t->arg;

	switch (c->mode) {
	case STALL_EXIT:
	case STALL_ABORT: {
		uint64_t at = loop_now_ns();
		say(c->out, &at, sizeof(at));
		for (;;)
			pause(); /* the reactor hangs here */
	}
	case IDLE:
	case BOOT_BLOCK:
		loop_stop(c->loop);
		break;
	case STOP_CONT:
		if (++c->turns == 3)
			say(c->out, "R", 1); /* running, watchdog armed */
		loop_timer_arm(c->loop, &c->t, 10000000);
		break;
	}
}

static void on_jump(void *arg, uint64_t ms)
{
	struct child *c = arg;
	char msg[32];

	snprintf(msg, sizeof(msg), "J%llu\n", (unsigned long long)ms);
	say(c->out, msg, strlen(msg));
	loop_stop(c->loop);
}

static int child_main(enum mode mode, int out)
{
	struct child c = {.mode = mode, .out = out};
	struct monitor_watchdog_opts o = {
	    /* Runs that must survive get room for a loaded machine. */
	    .watchdog_ms = mode == STALL_EXIT || mode == STALL_ABORT ? 100 : 500,
	    .tick_ms = 5,
	    .jump_ms = 400, /* a loaded machine starves threads for tens of ms */
	    .action = mode == STALL_ABORT ? MONITOR_WATCHDOG_ABORT : MONITOR_WATCHDOG_EXIT,
	    .on_jump = on_jump,
	    .arg = &c,
	};
	struct monitor_watchdog *w;
	struct rlimit no_core = {0, 0};
	uint64_t delay_ms = 50;

	setrlimit(RLIMIT_CORE, &no_core);
	if (loop_create(&c.loop) < 0)
		return 2;
	o.loop = c.loop;
	if (monitor_watchdog_start(&o, &w) < 0)
		return 3;
	if (mode == BOOT_BLOCK) {
		struct timespec ts = {.tv_sec = 1, .tv_nsec = 0};
		nanosleep(&ts, NULL); /* blocking boot work before loop_run() */
		delay_ms = 300;
	}
	if (mode == IDLE)
		delay_ms = 2500; /* longer than two idle 1 s epoll waits */
	loop_timer_init(&c.t, on_timer, &c);
	loop_timer_arm(c.loop, &c.t, delay_ms * 1000000ull);
	if (loop_run(c.loop) < 0)
		return 4;
	monitor_watchdog_stop(w);
	loop_destroy(c.loop);
	return 0;
}

static pid_t spawn(enum mode mode, int *rfd)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		_exit(child_main(mode, p[1]));
	}
	close(p[1]);
	*rfd = p[0];
	return pid;
}

static int wait_child(pid_t pid)
{
	int st;

	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	return st;
}

static void test_stall_exits(void **state)
{
	int fd, st;
	uint64_t at, end;
	pid_t pid;

	(void)state;
	pid = spawn(STALL_EXIT, &fd);
	assert_int_equal(read(fd, &at, sizeof(at)), (ssize_t)sizeof(at));
	st = wait_child(pid);
	end = loop_now_ns();
	close(fd);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), MONITOR_WATCHDOG_STATUS);
	print_message("stalled reactor ended %llu ms after the stall (watchdog_ms 100)\n",
		      (unsigned long long)((end - at) / 1000000));
}

static void test_stall_aborts(void **state)
{
	int fd, st;
	uint64_t at;
	pid_t pid;

	(void)state;
	pid = spawn(STALL_ABORT, &fd);
	assert_int_equal(read(fd, &at, sizeof(at)), (ssize_t)sizeof(at));
	st = wait_child(pid);
	close(fd);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGABRT);
}

static void test_idle_survives(void **state)
{
	int fd, st;
	pid_t pid;

	(void)state;
	pid = spawn(IDLE, &fd);
	st = wait_child(pid);
	close(fd);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void test_boot_block_survives(void **state)
{
	int fd, st;
	pid_t pid;

	(void)state;
	pid = spawn(BOOT_BLOCK, &fd);
	st = wait_child(pid);
	close(fd);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* SIGSTOP for three times the watchdog deadline, then SIGCONT: the process
 * lives on and the loop hears of the stop. */
static void test_stop_cont(void **state)
{
	struct timespec ts = {.tv_sec = 1, .tv_nsec = 500000000};
	char buf[32] = {0}, c;
	size_t n = 0;
	unsigned long long ms;
	int fd, st;
	pid_t pid;

	(void)state;
	pid = spawn(STOP_CONT, &fd);
	assert_int_equal(read(fd, &c, 1), 1);
	assert_int_equal(c, 'R');
	assert_int_equal(kill(pid, SIGSTOP), 0);
	assert_int_equal(waitpid(pid, &st, WUNTRACED), pid);
	assert_true(WIFSTOPPED(st));
	nanosleep(&ts, NULL); /* the stop itself */
	assert_int_equal(kill(pid, SIGCONT), 0);
	while (n < sizeof(buf) - 1 && read(fd, &c, 1) == 1 && c != '\n')
		buf[n++] = c;
	assert_int_equal(buf[0], 'J');
	ms = strtoull(buf + 1, NULL, 10);
	assert_true(ms >= 1400);
	print_message("stop of 1500 ms reported as %llu ms\n", ms);
	st = wait_child(pid);
	close(fd);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stall_exits),	  cmocka_unit_test(test_stall_aborts),
	    cmocka_unit_test(test_idle_survives), cmocka_unit_test(test_boot_block_survives),
	    cmocka_unit_test(test_stop_cont),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
