/* Unit tests of the mailbox on real files and a real reactor: two nodes'
 * mailboxes in a temporary directory, each watching the other's; records
 * advance, marks are set and cleared, the I/O lease follows the own mark
 * and the reactor's liveness, a reboot sees the mark and counts its
 * generation, silence is measured, torn records prove nothing, a second
 * writer is caught; each record publishes the writer's lease; a failing own
 * write hides nothing a read finds and grants no first lease; a shelf
 * that refuses O_DIRECT (tmpfs) says so. Run with O_DIRECT and buffered
 * (O_DSYNC only). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/loop.h"
#include "monitor/monitor_int.h"

#define GUARD_NS (20ull * 1000000000ull) /* a test that hangs fails after this */

struct node {
	struct monitor_mbox *mb;
	char shelf[256];
	char partner[256];
	const char *id;
	bool booted;
	int boot_rc;
	bool boot_mark;
	struct monitor_mark mark;
	unsigned cycles;
};

struct fix {
	struct loop *loop;
	char dir[128];
	struct node a, b;
	bool done;
	int rc;
	bool check_done;
	int check_rc;
	bool check_mark;
	struct monitor_mark check;
	bool buffered;
};

static struct fix *F;

static void on_cycle(void *arg)
{
	((struct node *)arg)->cycles++;
}

static void on_boot(void *arg, int rc, const struct monitor_mark *mark)
{
	struct node *n = arg;

	n->booted = true;
	n->boot_rc = rc;
	n->boot_mark = mark != NULL;
	if (mark)
		n->mark = *mark;
}

static void on_done(void *arg, int rc)
{
	struct fix *f = arg;

	f->done = true;
	f->rc = rc;
}

static void on_check(void *arg, int rc, const struct monitor_mark *mark)
{
	struct fix *f = arg;

	f->check_done = true;
	f->check_rc = rc;
	f->check_mark = mark != NULL;
	if (mark)
		f->check = *mark;
}

typedef bool (*cond_fn)(void);

static void wait_for(cond_fn cond, const char *what)
{
	uint64_t end = loop_now_ns() + GUARD_NS;

	while (!cond()) {
		if (loop_now_ns() > end)
			fail_msg("timed out waiting for %s", what);
		assert_true(loop_run_once(F->loop, 5000000) >= 0);
	}
}

static void run_cycles(struct node *n, unsigned k)
{
	unsigned target = n->cycles + k;
	uint64_t end = loop_now_ns() + GUARD_NS;

	while (n->cycles < target) {
		if (loop_now_ns() > end)
			fail_msg("node %s: no mailbox cycle", n->id);
		assert_true(loop_run_once(F->loop, 5000000) >= 0);
	}
}

/* Open without starting: a test may set a fault first. */
static int open_only(struct node *n)
{
	struct monitor_mbox_opts o = {
	    .loop = F->loop,
	    .node_id = n->id,
	    .shelf = n->shelf,
	    .partner_shelf = n->partner,
	    .mailbox_ms = 20,
	    .lease_ms = 100,
	    .fence_margin_ms = 50,
	    .buffered = F->buffered,
	    .on_cycle = on_cycle,
	    .arg = n,
	};

	n->booted = false;
	n->cycles = 0;
	return monitor_mbox_open(&o, &n->mb);
}

static int open_node(struct node *n)
{
	int rc = open_only(n);

	if (rc < 0)
		return rc;
	return monitor_mbox_start(n->mb, on_boot, n);
}

static void close_node(struct node *n)
{
	monitor_mbox_close(n->mb);
	n->mb = NULL;
}

static int setup_in(void **state, const char *base)
{
	struct fix *f = calloc(1, sizeof(*f));
	struct stat st;

	if (stat(base, &st) < 0 || !S_ISDIR(st.st_mode)) {
		free(f);
		return -1;
	}
	F = f;
	assert_int_equal(loop_create(&f->loop), 0);
	snprintf(f->dir, sizeof(f->dir), "%s/duet-mbox-XXXXXX", base);
	assert_non_null(mkdtemp(f->dir));
	f->a.id = "a";
	f->b.id = "b";
	snprintf(f->a.shelf, sizeof(f->a.shelf), "%s/a", f->dir);
	snprintf(f->b.shelf, sizeof(f->b.shelf), "%s/b", f->dir);
	snprintf(f->a.partner, sizeof(f->a.partner), "%s", f->b.shelf);
	snprintf(f->b.partner, sizeof(f->b.partner), "%s", f->a.shelf);
	assert_int_equal(mkdir(f->a.shelf, 0755), 0);
	assert_int_equal(mkdir(f->b.shelf, 0755), 0);
	*state = f;
	return 0;
}

static int setup_disk(void **state)
{
	const char *tmp = getenv("TMPDIR");

	return setup_in(state, tmp && *tmp ? tmp : "/tmp");
}

/* A shelf where the mailbox goes through the page cache: tmpfs refused
 * O_DIRECT before Linux 6.6; where it takes it, the test shim refuses it
 * (DUET_TEST_NO_O_DIRECT, mbox.c) for the whole temporary directory. */
static int setup_no_direct(void **state)
{
	char p[300];
	int fd;

	if (setup_in(state, "/dev/shm") < 0 && setup_disk(state) < 0)
		return -1;
	snprintf(p, sizeof(p), "%s/probe", F->dir);
	fd = open(p, O_RDWR | O_CREAT | O_DIRECT, 0644);
	if (fd >= 0)
		close(fd);
	unlink(p);
	if (fd >= 0)
		setenv("DUET_TEST_NO_O_DIRECT", F->dir, 1);
	return 0;
}

static int teardown(void **state);

static int teardown_no_direct(void **state)
{
	unsetenv("DUET_TEST_NO_O_DIRECT");
	return teardown(state);
}

static int setup_buffered(void **state)
{
	int rc = setup_disk(state);

	F->buffered = true;
	return rc;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	char p[300];

	if (f->a.mb)
		close_node(&f->a);
	if (f->b.mb)
		close_node(&f->b);
	snprintf(p, sizeof(p), "%s/mailbox", f->a.shelf);
	unlink(p);
	snprintf(p, sizeof(p), "%s/mailbox", f->b.shelf);
	unlink(p);
	rmdir(f->a.shelf);
	rmdir(f->b.shelf);
	rmdir(f->dir);
	loop_destroy(f->loop);
	free(f);
	return 0;
}

/* ---- conditions ---- */

static bool both_booted(void)
{
	return F->a.booted && F->b.booted;
}

static bool both_leased(void)
{
	return monitor_mbox_io_allowed(F->a.mb) && monitor_mbox_io_allowed(F->b.mb);
}

static bool a_sees_b_advance(void)
{
	struct monitor_mbox_partner_view v;

	monitor_mbox_partner(F->a.mb, &v);
	return v.rc == 0 && v.seen && v.rec.counter >= 3;
}

static bool done(void)
{
	return F->done;
}

static bool checked(void)
{
	return F->check_done;
}

static bool a_fenced(void)
{
	return !monitor_mbox_io_allowed(F->a.mb);
}

static bool a_leased(void)
{
	return monitor_mbox_io_allowed(F->a.mb);
}

static bool b_leased(void)
{
	return monitor_mbox_io_allowed(F->b.mb);
}

static bool a_booted(void)
{
	return F->a.booted;
}

static void do_mark(struct node *n, uint64_t gen, bool set, int want)
{
	F->done = false;
	assert_int_equal(
	    monitor_mbox_write_mark(n->mb, gen, set, MONITOR_MARK_REPLAY_PENDING, on_done, F), 0);
	wait_for(done, "mark written");
	assert_int_equal(F->rc, want);
}

static void do_check(struct node *n)
{
	F->check_done = false;
	assert_int_equal(monitor_mbox_check(n->mb, on_check, F), 0);
	wait_for(checked, "mark check");
	assert_int_equal(F->check_rc, 0);
}

/* ---- tests ---- */

static void test_publish_mark_clear(void **state)
{
	struct fix *f = *state;
	struct monitor_mbox_partner_view pv;
	struct monitor_mbox_own_view ov;
	uint8_t raw[MONITOR_REC_SIZE];
	struct monitor_alive rec;
	char p[300];
	int fd;

	assert_int_equal(open_node(&f->a), 0);
	assert_int_equal(open_node(&f->b), 0);
	print_message("%s: %s\n", f->dir,
		      monitor_mbox_direct(f->a.mb) ? "O_DIRECT" : "O_DSYNC only");
	if (f->buffered)
		assert_false(monitor_mbox_direct(f->a.mb));
	wait_for(both_booted, "boot checks");
	assert_int_equal(f->a.boot_rc, 0);
	assert_false(f->a.boot_mark);
	wait_for(both_leased, "leases");
	wait_for(a_sees_b_advance, "b's record advancing");
	monitor_mbox_partner(f->a.mb, &pv);
	assert_string_equal(pv.rec.node, "b");
	assert_int_equal(pv.rec.boot_gen, 1);
	assert_int_equal(pv.rec.state, HA_UP);
	assert_false(pv.mark_valid);
	monitor_mbox_own(f->a.mb, &ov);
	assert_int_equal(ov.rc, 0);
	assert_int_equal(ov.boot_gen, 1);
	assert_true(ov.counter >= 1);
	assert_true(ov.last_write_ns > 0);
	assert_false(ov.conflict);
	assert_int_equal(ov.write_rc, 0);
	/* Each record publishes the writer's lease settings, and whether it
	 * reads its own mailbox past the page cache. */
	assert_int_equal(pv.rec.lease_ms, 100);
	assert_int_equal(pv.rec.fence_margin_ms, 50);
	assert_int_equal(pv.rec.mbox_direct, monitor_mbox_direct(f->b.mb));
	assert_true(pv.opened);
	assert_int_equal(pv.direct, !f->buffered && monitor_mbox_direct(f->a.mb));

	/* b marks a: a's lease drops at its next read, and a check sees it. */
	do_mark(&f->b, 1, true, 0);
	wait_for(a_fenced, "a's lease dropped");
	do_check(&f->a);
	assert_true(f->check_mark);
	assert_true(f->check.set);
	assert_int_equal(f->check.gen, 1);
	assert_string_equal(f->check.taker, "b");
	assert_string_equal(f->check.owner, "a");
	run_cycles(&f->a, 5);
	assert_false(monitor_mbox_io_allowed(f->a.mb)); /* stays dropped */
	/* The taker is not affected (its lease may lapse for a moment on a
	 * starved machine, and comes back by itself). */
	wait_for(b_leased, "b's lease");
	monitor_mbox_partner(f->b.mb, &pv);
	assert_true(pv.mark_valid && pv.mark.set && pv.mark.gen == 1);

	/* Cleared at giveback: the lease comes back. */
	do_mark(&f->b, 1, false, 0);
	do_check(&f->a);
	assert_true(f->check_mark);
	assert_false(f->check.set);
	wait_for(a_leased, "a's lease back");

	/* A durable state change, read back from the file itself. */
	monitor_mbox_set_state(f->a.mb, HA_UP, HA_MIRROR_DEGRADED, 0);
	f->done = false;
	assert_int_equal(monitor_mbox_sync(f->a.mb, on_done, f), 0);
	wait_for(done, "sync");
	assert_int_equal(f->rc, 0);
	snprintf(p, sizeof(p), "%s/mailbox", f->a.shelf);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, raw, sizeof(raw), 0), (ssize_t)sizeof(raw));
	close(fd);
	assert_int_equal(monitor_alive_decode(raw, MONITOR_REC_ALIVE, &rec), 0);
	assert_int_equal(rec.mirror, HA_MIRROR_DEGRADED);
	assert_string_equal(rec.node, "a");
}

/* A node that restarts with a mark in its mailbox learns it before it
 * writes anything, counts a new boot generation, and gets no lease. */
static void test_reboot_with_mark(void **state)
{
	struct fix *f = *state;
	struct monitor_mbox_own_view ov;
	struct monitor_mbox_partner_view pv;

	assert_int_equal(open_node(&f->a), 0);
	assert_int_equal(open_node(&f->b), 0);
	wait_for(both_leased, "leases");
	wait_for(a_sees_b_advance, "b advancing");
	do_mark(&f->b, 2, true, 0);
	close_node(&f->a);

	assert_int_equal(open_node(&f->a), 0);
	wait_for(a_booted, "a's boot check");
	assert_int_equal(f->a.boot_rc, 0);
	assert_true(f->a.boot_mark);
	assert_true(f->a.mark.set);
	assert_int_equal(f->a.mark.gen, 2);
	run_cycles(&f->a, 5);
	assert_false(monitor_mbox_io_allowed(f->a.mb));
	monitor_mbox_own(f->a.mb, &ov);
	assert_int_equal(ov.boot_gen, 2);
	assert_true(ov.counter >= 1); /* it still says it lives */
	run_cycles(&f->b, 3);
	monitor_mbox_partner(f->b.mb, &pv);
	assert_int_equal(pv.rec.boot_gen, 2);
	assert_int_equal(pv.rec.state, HA_TAKEN_OVER); /* published from the boot read */

	do_mark(&f->b, 2, false, 0);
	wait_for(a_leased, "a's lease after the clear");
}

static bool a_sees_b_silent(void)
{
	struct monitor_mbox_partner_view v;

	monitor_mbox_partner(F->a.mb, &v);
	return v.rc == 0 && v.silent_ns >= 200000000ull;
}

static bool a_sees_b_torn(void)
{
	struct monitor_mbox_partner_view v;

	monitor_mbox_partner(F->a.mb, &v);
	return v.rc == -EBADMSG;
}

/* A stopped partner's record stops: the silence grows with every read.
 * A torn record then proves nothing: the silence stops growing. */
static void test_silence_and_torn(void **state)
{
	struct fix *f = *state;
	struct monitor_mbox_partner_view v1, v2;
	struct monitor_alive a = {.boot_gen = 9, .counter = 1};
	uint8_t sector[MONITOR_SECTOR];
	char p[300];
	int fd;

	assert_int_equal(open_node(&f->a), 0);
	assert_int_equal(open_node(&f->b), 0);
	wait_for(a_sees_b_advance, "b advancing");
	monitor_mbox_partner(f->a.mb, &v1);
	assert_true(v1.silent_ns < 200000000ull);
	close_node(&f->b);
	wait_for(a_sees_b_silent, "b silent");

	memset(sector, 0, sizeof(sector));
	strcpy(a.node, "b");
	monitor_alive_encode(&a, MONITOR_REC_ALIVE, sector);
	sector[30] ^= 0x40; /* torn */
	snprintf(p, sizeof(p), "%s/mailbox", f->b.shelf);
	fd = open(p, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, sector, sizeof(sector), 0), (ssize_t)sizeof(sector));
	close(fd);
	wait_for(a_sees_b_torn, "torn record seen");
	monitor_mbox_partner(f->a.mb, &v1);
	run_cycles(&f->a, 5);
	monitor_mbox_partner(f->a.mb, &v2);
	assert_int_equal(v2.rc, -EBADMSG);
	assert_int_equal(v2.silent_ns, v1.silent_ns);
	assert_int_equal(v2.last_read_ns, v1.last_read_ns);
	assert_string_equal(v2.rec.node, "b"); /* the last good record is kept */
}

/* A reactor that does not turn gets no record written and no lease: a hung
 * node looks dead to its partner and cannot write its shelf. */
static void test_stalled_loop(void **state)
{
	struct fix *f = *state;
	struct monitor_mbox_own_view before, after;
	struct timespec ts = {.tv_sec = 0, .tv_nsec = 600000000};

	assert_int_equal(open_node(&f->a), 0);
	wait_for(a_booted, "boot");
	wait_for(a_leased, "lease");
	run_cycles(&f->a, 3);
	monitor_mbox_own(f->a.mb, &before);
	nanosleep(&ts, NULL); /* the stall itself: nothing runs the loop */
	assert_false(monitor_mbox_io_allowed(f->a.mb));
	monitor_mbox_own(f->a.mb, &after);
	/* Writes go on only while the last turn is younger than the lease
	 * (100 ms at a 20 ms interval), not for the whole 600 ms. */
	assert_true(after.counter - before.counter <= 8);
	print_message("records written during a 600 ms stall: %llu\n",
		      (unsigned long long)(after.counter - before.counter));
	wait_for(a_leased, "lease after the stall");

	/* A dropped lease stays dropped until a read that starts later. */
	monitor_mbox_lease_drop(f->a.mb);
	assert_false(monitor_mbox_io_allowed(f->a.mb));
	wait_for(a_leased, "lease after a drop");
}

static bool a_conflict(void)
{
	struct monitor_mbox_own_view v;

	monitor_mbox_own(F->a.mb, &v);
	return v.conflict;
}

/* Two processes (here two mailboxes) writing the same node's sector. */
static void test_second_writer(void **state)
{
	struct fix *f = *state;

	assert_int_equal(open_node(&f->a), 0);
	wait_for(a_leased, "lease");
	f->b.id = "x";
	snprintf(f->b.shelf, sizeof(f->b.shelf), "%s", f->a.shelf);
	f->b.partner[0] = 0;
	assert_int_equal(open_node(&f->b), 0);
	wait_for(a_conflict, "conflict seen");
	wait_for(a_fenced, "lease dropped on conflict");
	close_node(&f->b);
	snprintf(f->b.shelf, sizeof(f->b.shelf), "%s/b", f->dir);
}

static bool a_write_failed(void)
{
	struct monitor_mbox_own_view v;

	monitor_mbox_own(F->a.mb, &v);
	return v.write_rc == -EIO;
}

static bool a_writes_again(void)
{
	struct monitor_mbox_own_view v;

	monitor_mbox_own(F->a.mb, &v);
	return v.write_rc == 0 && v.rc == 0;
}

/* Finding 7 of issue 16: a failing own write hid the own read's result (a
 * mark set or cleared), since the write's status overwrote the read's. It
 * is reported apart now: the read's answer stands, the mark is acted on. */
static void test_own_write_fails(void **state)
{
	struct fix *f = *state;
	struct monitor_mbox_own_view ov;

	assert_int_equal(open_node(&f->a), 0);
	assert_int_equal(open_node(&f->b), 0);
	wait_for(both_leased, "leases");
	wait_for(a_sees_b_advance, "b advancing");
	monitor_mbox_test_fail_writes(f->a.mb, -EIO);
	wait_for(a_write_failed, "a's write failing");
	monitor_mbox_own(f->a.mb, &ov);
	assert_int_equal(ov.rc, 0); /* the read is fine */

	do_mark(&f->b, 1, true, 0);
	wait_for(a_fenced, "a's lease dropped");
	do_check(&f->a); /* asserts rc 0: before, the write's -EIO */
	assert_true(f->check_mark);
	assert_true(f->check.set);
	monitor_mbox_own(f->a.mb, &ov);
	assert_int_equal(ov.rc, 0);
	assert_int_equal(ov.write_rc, -EIO);
	assert_true(ov.mark_valid && ov.mark.set);
	run_cycles(&f->a, 3);
	assert_false(monitor_mbox_io_allowed(f->a.mb));

	/* Cleared while the writes still fail: the read says so. */
	do_mark(&f->b, 1, false, 0);
	do_check(&f->a);
	assert_true(f->check_mark);
	assert_false(f->check.set);
	wait_for(a_leased, "a's lease back (it published its lease before)");

	monitor_mbox_test_fail_writes(f->a.mb, 0);
	wait_for(a_writes_again, "a writing again");
}

/* The first lease of a boot waits for a durable record of that boot (the
 * partner's fence wait is computed from the lease_ms it publishes): a node
 * whose every write fails gets none, however clean its reads. */
static void test_no_lease_before_a_record(void **state)
{
	struct fix *f = *state;
	struct monitor_mbox_own_view ov;

	assert_int_equal(open_only(&f->a), 0);
	monitor_mbox_test_fail_writes(f->a.mb, -EIO);
	assert_int_equal(monitor_mbox_start(f->a.mb, on_boot, &f->a), 0);
	wait_for(a_booted, "boot");
	run_cycles(&f->a, 6);
	monitor_mbox_own(f->a.mb, &ov);
	assert_int_equal(ov.rc, 0);
	assert_int_equal(ov.write_rc, -EIO);
	assert_int_equal(ov.counter, 0);
	assert_false(monitor_mbox_io_allowed(f->a.mb));
	monitor_mbox_test_fail_writes(f->a.mb, 0);
	wait_for(a_leased, "lease after the first record");
}

/* Finding 8 of issue 16, the mailbox's part: on tmpfs O_DIRECT is refused;
 * both mailboxes say so (and why), and the record says so to the partner. */
static void test_no_direct(void **state)
{
	struct fix *f = *state;
	struct monitor_mbox_own_view ov;
	struct monitor_mbox_partner_view pv;

	print_message("%s: %s\n", f->dir,
		      getenv("DUET_TEST_NO_O_DIRECT") ? "O_DIRECT refused by the test shim"
						      : "O_DIRECT refused by the filesystem");
	assert_int_equal(open_node(&f->a), 0);
	assert_int_equal(open_node(&f->b), 0);
	wait_for(both_leased, "leases");
	wait_for(a_sees_b_advance, "b advancing");
	assert_false(monitor_mbox_direct(f->a.mb));
	monitor_mbox_own(f->a.mb, &ov);
	assert_false(ov.direct);
	assert_int_equal(ov.direct_err, -EINVAL);
	monitor_mbox_partner(f->a.mb, &pv);
	assert_true(pv.opened);
	assert_false(pv.direct);
	assert_int_equal(pv.direct_err, -EINVAL);
	assert_false(pv.rec.mbox_direct);
	assert_int_equal(pv.rec.lease_ms, 100);
}

/* No partner mailbox there: reads say so, marks fail cleanly. */
static void test_partner_missing(void **state)
{
	struct fix *f = *state;
	struct monitor_mbox_partner_view v;

	assert_int_equal(open_node(&f->a), 0);
	wait_for(a_leased, "lease");
	run_cycles(&f->a, 2);
	monitor_mbox_partner(f->a.mb, &v);
	assert_int_equal(v.rc, -ENOENT);
	assert_false(v.seen);
	do_mark(&f->a, 1, true, -ENOENT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_publish_mark_clear, setup_disk, teardown),
	    cmocka_unit_test_setup_teardown(test_publish_mark_clear, setup_buffered, teardown),
	    cmocka_unit_test_setup_teardown(test_reboot_with_mark, setup_disk, teardown),
	    cmocka_unit_test_setup_teardown(test_silence_and_torn, setup_disk, teardown),
	    cmocka_unit_test_setup_teardown(test_stalled_loop, setup_disk, teardown),
	    cmocka_unit_test_setup_teardown(test_second_writer, setup_disk, teardown),
	    cmocka_unit_test_setup_teardown(test_partner_missing, setup_disk, teardown),
	    cmocka_unit_test_setup_teardown(test_own_write_fails, setup_disk, teardown),
	    cmocka_unit_test_setup_teardown(test_no_lease_before_a_record, setup_disk, teardown),
	    cmocka_unit_test_setup_teardown(test_no_direct, setup_no_direct, teardown_no_direct),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
