/* Fencing across processes: node a runs in a forked child (with its real
 * watchdog), node b in the test process; heartbeats go over a socketpair.
 * a simulates shelf I/O every 2 ms, each gated by monitor_io_allowed().
 * The test stops a with SIGSTOP, lets b take over, continues a, and checks
 * the promise of docs/FAILOVER.md: every I/O that a's gate let through
 * started before b replayed a's mirror onto a's shelf, and a, on waking,
 * found the mark and stopped serving. Default timings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/loop.h"
#include "monitor/monitor_int.h"
#include "monitor_fixture.h"

#define GUARD_NS (30ull * 1000000000ull)

struct side {
	const char *id;
	struct monitor_fixture_opts opts;
	struct loop *loop;
	struct monitor *m;
	int hb_fd;
	struct loop_io hb_io;
	int pipe_fd; /* child: to the parent; parent: from the child */
	bool booted;
	bool synced;
	bool ready_sent;
	bool fenced;
	uint32_t acts;
	uint64_t replay_boot_ns; /* b: boottime when a's shelf was first touched */
	uint64_t last_io_ns;	 /* a: boottime before the last allowed check */
	uint64_t n_io;
	uint64_t n_held;
	struct loop_timer io_timer;
};

static char dir[128];
static struct side A = {.id = "a"}, B = {.id = "b"};
static pid_t child = -1;

static void say(int fd, const char *s)
{
	ssize_t n = write(fd, s, strlen(s));

	(void)n;
}

static void on_boot(void *arg, bool taken, const struct monitor_mark *mark)
{
	struct side *s = arg;

	(void)taken;
	(void)mark;
	s->booted = true;
}

static void on_action(void *arg, enum ha_action act, uint64_t gen)
{
	struct side *s = arg;
	char msg[128];

	(void)gen;
	s->acts |= act;
	if (act == HA_ACT_REPLAY_PARTNER && !s->replay_boot_ns)
		s->replay_boot_ns = monitor_boottime_ns();
	if (act == HA_ACT_STOP_OWN && !s->fenced) {
		s->fenced = true;
		snprintf(msg, sizeof(msg), "F %llu %llu %llu\n", (unsigned long long)s->last_io_ns,
			 (unsigned long long)s->n_io, (unsigned long long)s->n_held);
		say(s->pipe_fd, msg);
	}
	monitor_action_done(s->m, act, 0);
}

static int hb_send(void *arg, unsigned link, const void *rec, size_t len)
{
	struct side *s = arg;
	uint8_t msg[1 + MONITOR_REC_SIZE];

	if (len != MONITOR_REC_SIZE)
		return -EINVAL;
	msg[0] = (uint8_t)link;
	memcpy(msg + 1, rec, len);
	if (send(s->hb_fd, msg, sizeof(msg), MSG_DONTWAIT) < 0)
		return -errno; /* a stopped partner fills the socket: drop */
	return 0;
}

static void hb_recv(struct loop_io *io, uint32_t events)
{
	struct side *s = io->arg;
	uint8_t msg[1 + MONITOR_REC_SIZE];

	ssize_t n;

	(void)events;
	while ((n = recv(s->hb_fd, msg, sizeof(msg), MSG_DONTWAIT)) == (ssize_t)sizeof(msg))
		monitor_hb_receive(s->m, msg[0], msg + 1, MONITOR_REC_SIZE);
	if (n == 0)
		loop_io_del(s->loop, &s->hb_io); /* the other side is gone */
}

static void on_resume(void *arg)
{
	(void)arg;
}

static const struct monitor_ops ops = {
    .boot_checked = on_boot,
    .action = on_action,
    .hb_send = hb_send,
    .io_resume = on_resume,
};

static void on_synced(void *arg, int rc)
{
	struct side *s = arg;

	if (rc == 0)
		s->synced = true;
}

/* One link, default timings. */
static void configure(struct side *s, const char *peer)
{
	monitor_fixture_opts(&s->opts, dir, s->id, peer, 1);
	s->opts.o.ops = &ops;
	s->opts.o.arg = s;
}

static int start(struct side *s, bool watchdog)
{
	struct monitor_opts o = s->opts.o;

	o.loop = s->loop;
	o.no_watchdog = !watchdog;
	int rc = monitor_create(&o, &s->m);

	if (rc < 0)
		return rc;
	rc = loop_io_add(s->loop, &s->hb_io, s->hb_fd, EPOLLIN, hb_recv, s);
	if (rc < 0)
		return rc;
	return monitor_start(s->m);
}

/* ---- node a, in the child ---- */

/* Shelf I/O as the node would do it: stamp the time, then ask the gate.
 * The stamp precedes the gate's own clock read, so a stamp that passed is
 * earlier than the lease's end. */
static void io_tick(struct loop_timer *t)
{
	struct side *s = t->arg;
	uint64_t now = monitor_boottime_ns();

	if (monitor_io_allowed(s->m)) {
		s->last_io_ns = now;
		s->n_io++;
	} else if (!s->fenced) {
		s->n_held++;
		monitor_io_wait(s->m);
	}
	if (!s->ready_sent && s->synced && monitor_ha(s->m)->partner == HA_PARTNER_ALIVE &&
	    monitor_ha(s->m)->takeover_possible && s->n_io > 10) {
		s->ready_sent = true;
		say(s->pipe_fd, "R\n");
	}
	if (s->fenced && monitor_ha(s->m)->state == HA_TAKEN_OVER &&
	    monitor_ha(s->m)->phase == HA_PH_NONE) {
		loop_stop(s->loop);
		return;
	}
	loop_timer_arm(s->loop, t, 2000000);
}

static int child_main(void)
{
	if (loop_create(&A.loop) < 0 || start(&A, true) < 0)
		return 2;
	while (!A.booted)
		if (loop_run_once(A.loop, 10000000) < 0)
			return 3;
	monitor_set_mirror(A.m, HA_MIRROR_IN_SYNC);
	if (monitor_publish_mirror(A.m, HA_MIRROR_IN_SYNC, on_synced, &A) < 0)
		return 4;
	loop_timer_init(&A.io_timer, io_tick, &A);
	loop_timer_arm(A.loop, &A.io_timer, 0);
	if (loop_run(A.loop) < 0)
		return 5;
	if (monitor_io_allowed(A.m))
		return 6;
	loop_io_del(A.loop, &A.hb_io);
	monitor_destroy(A.m);
	return 0;
}

/* ---- node b, the test ---- */

static char line[256];
static size_t line_len;

static bool got_line(void)
{
	char c;

	while (read(B.pipe_fd, &c, 1) == 1) {
		if (c == '\n') {
			line[line_len] = 0;
			line_len = 0;
			return true;
		}
		if (line_len < sizeof(line) - 1)
			line[line_len++] = c;
	}
	return false;
}

static bool b_ready(void)
{
	return B.synced && monitor_ha(B.m)->partner == HA_PARTNER_ALIVE &&
	       monitor_ha(B.m)->takeover_possible;
}

static bool b_serves_a(void)
{
	return B.acts & HA_ACT_SERVE_PARTNER;
}

typedef bool (*cond_fn)(void);

static void wait_for(cond_fn cond, const char *what)
{
	uint64_t end = loop_now_ns() + GUARD_NS;

	while (!cond()) {
		if (loop_now_ns() > end)
			fail_msg("timed out waiting for %s (b: %s)", what, monitor_ha(B.m)->reason);
		assert_true(loop_run_once(B.loop, 5000000) >= 0);
	}
}

static void test_sigstop_fenced(void **state)
{
	int hb[2], p[2], st;
	unsigned long long last_io, n_io, n_held;
	uint64_t stop_at;
	pid_t pid;

	(void)state;
	assert_int_equal(monitor_fixture_mkdirs(dir, sizeof(dir), "fence"), 0);
	configure(&A, "b");
	configure(&B, "a");
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, hb), 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);

	pid = child = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(hb[1]);
		close(p[0]);
		A.hb_fd = hb[0];
		A.pipe_fd = p[1];
		_exit(child_main());
	}
	close(hb[0]);
	close(p[1]);
	B.hb_fd = hb[1];
	B.pipe_fd = p[0];
	assert_int_equal(fcntl(B.pipe_fd, F_SETFL, O_NONBLOCK), 0);
	assert_int_equal(loop_create(&B.loop), 0);
	assert_int_equal(start(&B, false), 0);
	monitor_set_mirror(B.m, HA_MIRROR_IN_SYNC);
	assert_int_equal(monitor_publish_mirror(B.m, HA_MIRROR_IN_SYNC, on_synced, &B), 0);
	wait_for(got_line, "a ready");
	assert_string_equal(line, "R");
	wait_for(b_ready, "b seeing a alive and in sync");

	/* Stop a, in whatever it was doing. */
	assert_int_equal(kill(pid, SIGSTOP), 0);
	assert_int_equal(waitpid(pid, &st, WUNTRACED), pid);
	assert_true(WIFSTOPPED(st));
	stop_at = monitor_boottime_ns();
	wait_for(b_serves_a, "b serving a's volumes");
	print_message("SIGSTOP -> b replaying a's mirror: %llu ms\n",
		      (unsigned long long)((B.replay_boot_ns - stop_at) / 1000000));

	/* Wake a: it must find the mark before any further I/O. */
	assert_int_equal(kill(pid, SIGCONT), 0);
	wait_for(got_line, "a's report");
	assert_int_equal(sscanf(line, "F %llu %llu %llu", &last_io, &n_io, &n_held), 3);
	print_message("a: %llu I/O allowed, %llu held; last allowed %lld ms before b's replay\n",
		      n_io, n_held,
		      (long long)((int64_t)B.replay_boot_ns - (int64_t)last_io) / 1000000);
	assert_true(n_io > 10);
	assert_true(last_io < B.replay_boot_ns);
	while (waitpid(pid, &st, 0) < 0)
		assert_int_equal(errno, EINTR);
	child = -1;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(monitor_ha(B.m)->state, HA_TAKEOVER);

	loop_io_del(B.loop, &B.hb_io);
	monitor_destroy(B.m);
	loop_destroy(B.loop);
	close(B.hb_fd);
	close(B.pipe_fd);
	monitor_fixture_rmdirs(dir);
}

/* A failed test leaves no child behind. */
static int teardown(void **state)
{
	(void)state;
	if (child > 0) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		child = -1;
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_sigstop_fenced, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
