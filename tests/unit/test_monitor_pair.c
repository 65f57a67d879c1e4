/* Two whole monitors (nodes a and b) on one reactor, with their shelves in
 * a temporary directory and heartbeats carried by a fake interconnect
 * (monitor_hb_receive) that the test can cut. Scenarios: a dies, b takes
 * over; a restarts taken over, waits, is given back and serves again; a
 * cut interconnect makes no takeover; status JSON. Default timings. And the
 * mailbox faults of issue 16: a partner with a longer lease is waited out,
 * a failing own write hides no mark, a mailbox without O_DIRECT refuses
 * takeover. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/loop.h"
#include "monitor/monitor_int.h"
#include "monitor_fixture.h"

#define GUARD_NS (20ull * 1000000000ull)

struct node {
	const char *id;
	struct monitor_fixture_opts opts;
	struct monitor *m;
	struct node *peer;
	bool booted;
	bool taken;
	uint32_t acts;	     /* actions asked for */
	uint64_t act_at[16]; /* monotonic ns of the first ask */
	uint64_t serve_partner_ns;
	uint64_t mark_ns; /* entered takeover/marking */
	bool synced;
	bool peer_leased_at_replay; /* the partner could still write its shelf */
	bool hold_drain;	    /* DRAIN_PARTNER completes when the test says */
};

static struct loop *L;
static char dir[128];
static struct node A = {.id = "a"}, B = {.id = "b"};
static bool cut;

static void on_boot(void *arg, bool taken, const struct monitor_mark *mark)
{
	struct node *n = arg;

	(void)mark;
	n->booted = true;
	n->taken = taken;
}

static void on_action(void *arg, enum ha_action act, uint64_t gen)
{
	struct node *n = arg;

	(void)gen;
	if (act == HA_ACT_REPLAY_PARTNER && n->peer->m && monitor_io_allowed(n->peer->m))
		n->peer_leased_at_replay = true;
	if (!(n->acts & act))
		n->act_at[monitor_fixture_bit_index(act)] = loop_now_ns();
	n->acts |= act;
	if (act == HA_ACT_DRAIN_PARTNER && n->hold_drain)
		return;
	monitor_action_done(n->m, act, 0); /* the node does it at once */
}

static int hb_send(void *arg, unsigned link, const void *rec, size_t len)
{
	struct node *n = arg;

	if (!cut && n->peer->m)
		monitor_hb_receive(n->peer->m, link, rec, len);
	return 0;
}

static void on_state(void *arg, const struct ha *h)
{
	struct node *n = arg;

	if (h->state == HA_TAKEOVER && h->phase == HA_PH_MARKING && !n->mark_ns)
		n->mark_ns = loop_now_ns();
}

static const struct monitor_ops ops = {
    .boot_checked = on_boot,
    .action = on_action,
    .hb_send = hb_send,
    .state_changed = on_state,
};

/* Two links, default timings but @p mailbox_deadline_ms (0: default). */
static void node_config(struct node *n, struct node *peer, uint64_t mailbox_deadline_ms)
{
	monitor_fixture_opts(&n->opts, dir, n->id, peer->id, 2);
	if (mailbox_deadline_ms)
		n->opts.o.mailbox_deadline_ms = mailbox_deadline_ms;
	n->opts.o.loop = L;
	n->opts.o.ops = &ops;
	n->opts.o.arg = n;
	n->opts.o.no_watchdog = true;
	n->peer = peer;
}

static void start(struct node *n)
{
	n->booted = false;
	n->acts = 0;
	n->mark_ns = 0;
	n->peer_leased_at_replay = false;
	n->hold_drain = false;
	assert_int_equal(monitor_create(&n->opts.o, &n->m), 0);
	assert_int_equal(monitor_start(n->m), 0);
}

static void stop(struct node *n)
{
	monitor_destroy(n->m);
	n->m = NULL;
}

typedef bool (*cond_fn)(void);

static void wait_for(cond_fn cond, const char *what)
{
	uint64_t end = loop_now_ns() + GUARD_NS;

	while (!cond()) {
		if (loop_now_ns() > end)
			fail_msg("timed out waiting for %s (a: %s; b: %s)", what,
				 A.m ? monitor_ha(A.m)->reason : "-",
				 B.m ? monitor_ha(B.m)->reason : "-");
		assert_true(loop_run_once(L, 5000000) >= 0);
	}
}

static void run_ms(uint64_t ms)
{
	uint64_t end = loop_now_ns() + ms * 1000000ull;

	while (loop_now_ns() < end)
		assert_true(loop_run_once(L, 5000000) >= 0);
}

static void on_synced(void *arg, int rc)
{
	struct node *n = arg;

	assert_int_equal(rc, 0);
	n->synced = true;
}

static bool both_booted(void)
{
	return A.booted && B.booted;
}

static bool both_synced(void)
{
	return A.synced && B.synced;
}

static bool both_alive(void)
{
	return monitor_ha(A.m)->partner == HA_PARTNER_ALIVE &&
	       monitor_ha(B.m)->partner == HA_PARTNER_ALIVE && monitor_ha(A.m)->takeover_possible &&
	       monitor_ha(B.m)->takeover_possible && monitor_io_allowed(A.m) &&
	       monitor_io_allowed(B.m);
}

static bool both_see_alive(void)
{
	return monitor_ha(A.m)->partner == HA_PARTNER_ALIVE &&
	       monitor_ha(B.m)->partner == HA_PARTNER_ALIVE;
}

/* Both up, in sync, seeing each other: with @p possible, each could take
 * the other over. */
static void bring_up_pair(bool possible)
{
	start(&A);
	start(&B);
	wait_for(both_booted, "boot checks");
	assert_false(A.taken);
	assert_false(B.taken);
	A.synced = B.synced = false;
	monitor_set_mirror(A.m, HA_MIRROR_IN_SYNC);
	monitor_set_mirror(B.m, HA_MIRROR_IN_SYNC);
	assert_int_equal(monitor_publish_mirror(A.m, HA_MIRROR_IN_SYNC, on_synced, &A), 0);
	assert_int_equal(monitor_publish_mirror(B.m, HA_MIRROR_IN_SYNC, on_synced, &B), 0);
	wait_for(both_synced, "mirror states durable");
	if (possible)
		wait_for(both_alive, "both alive and in sync");
	else
		wait_for(both_see_alive, "both alive");
}

static void bring_up(void)
{
	bring_up_pair(true);
}

static int setup_with(uint64_t mailbox_deadline_ms)
{
	cut = false;
	assert_int_equal(loop_create(&L), 0);
	assert_int_equal(monitor_fixture_mkdirs(dir, sizeof(dir), "pair"), 0);
	node_config(&A, &B, mailbox_deadline_ms);
	node_config(&B, &A, mailbox_deadline_ms);
	return 0;
}

/* The defaults of docs/FAILOVER.md. */
static int setup(void **state)
{
	(void)state;
	return setup_with(0);
}

/* A test that checks that nothing happens must not see a mailbox writer
 * starved for a moment as dead: this machine may be loaded. */
static int setup_patient(void **state)
{
	(void)state;
	return setup_with(2000);
}

static int teardown(void **state)
{
	(void)state;
	if (A.m)
		stop(&A);
	if (B.m)
		stop(&B);
	monitor_fixture_rmdirs(dir);
	loop_destroy(L);
	return 0;
}

static bool both_leased(void)
{
	return monitor_io_allowed(A.m) && monitor_io_allowed(B.m);
}

static bool b_serves_a(void)
{
	return B.acts & HA_ACT_SERVE_PARTNER;
}

static bool a_waiting(void)
{
	return monitor_ha(A.m)->state == HA_WAITING_FOR_GIVEBACK;
}

static bool a_serves_again(void)
{
	return monitor_ha(A.m)->state == HA_UP && (A.acts & HA_ACT_SERVE_OWN) &&
	       monitor_io_allowed(A.m);
}

static bool b_up(void)
{
	return monitor_ha(B.m)->state == HA_UP;
}

static bool a_booted(void)
{
	return A.booted;
}

static void read_mark(const char *shelf_id, struct monitor_mark *m)
{
	uint8_t buf[2 * MONITOR_SECTOR];
	char p[300];
	int fd;

	snprintf(p, sizeof(p), "%s/%s/mailbox", dir, shelf_id);
	fd = open(p, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	close(fd);
	assert_int_equal(monitor_mark_decode(buf + MONITOR_SECTOR, m), 0);
}

static int giveback_rc;
static char *giveback_err;
static size_t giveback_errlen;

static bool giveback_answered(void)
{
	giveback_rc = monitor_giveback(B.m, false, giveback_err, giveback_errlen);
	return giveback_rc != -EAGAIN;
}

static void give_back(char *err, size_t errlen)
{
	giveback_err = err;
	giveback_errlen = errlen;
	wait_for(giveback_answered, "b hearing that a waits");
	assert_int_equal(giveback_rc, 0);
}

static void test_kill_takeover_giveback(void **state)
{
	struct monitor_mark mark;
	uint64_t t0;
	char err[256];

	(void)state;
	bring_up();

	/* a dies. */
	t0 = loop_now_ns();
	stop(&A);
	wait_for(b_serves_a, "b serving a's volumes");
	assert_true(B.acts & HA_ACT_REPLAY_PARTNER);
	assert_true(B.act_at[monitor_fixture_bit_index(HA_ACT_REPLAY_PARTNER)] >=
		    B.mark_ns + 150000000ull);
	assert_false(B.peer_leased_at_replay);
	B.serve_partner_ns = B.act_at[monitor_fixture_bit_index(HA_ACT_SERVE_PARTNER)];
	print_message("kill -> takeover decided %llu ms, -> serving %llu ms (defaults)\n",
		      (unsigned long long)((B.mark_ns - t0) / 1000000),
		      (unsigned long long)((B.serve_partner_ns - t0) / 1000000));
	read_mark("a", &mark);
	assert_true(mark.set);
	assert_int_equal(mark.gen, 1);
	assert_string_equal(mark.taker, "b");
	assert_string_equal(mark.owner, "a");
	assert_int_equal(monitor_ha(B.m)->state, HA_TAKEOVER);

	/* a restarts: taken over, no lease, waits for giveback. */
	start(&A);
	wait_for(a_booted, "a's boot check");
	assert_true(A.taken);
	wait_for(a_waiting, "a waiting for giveback");
	assert_false(monitor_io_allowed(A.m));
	assert_false(A.acts & HA_ACT_SERVE_OWN);

	/* Giveback, once b has heard that a waits. */
	give_back(err, sizeof(err));
	assert_true(B.acts & HA_ACT_DRAIN_PARTNER);
	wait_for(a_serves_again, "a serving again");
	wait_for(b_up, "b done giving back"); /* a may read the cleared mark first */
	assert_true(A.act_at[monitor_fixture_bit_index(HA_ACT_START_OWN)] <=
		    A.act_at[monitor_fixture_bit_index(HA_ACT_SERVE_OWN)]);
	assert_int_equal(monitor_ha(A.m)->acked_gen, 1);
	read_mark("a", &mark);
	assert_false(mark.set);

	/* Its next start is a normal one. */
	stop(&A);
	start(&A);
	wait_for(a_booted, "a's boot check");
	assert_false(A.taken);
}

static bool both_cut_off(void)
{
	return monitor_ha(A.m)->partner == HA_PARTNER_CUT_OFF &&
	       monitor_ha(B.m)->partner == HA_PARTNER_CUT_OFF;
}

static void test_cut_interconnect(void **state)
{
	struct json_object *ha;
	const char *text;

	(void)state;
	bring_up();
	cut = true;
	wait_for(both_cut_off, "both cut off");
	/* Status as of that step (a late tick of our own would restart the
	 * heartbeat deadlines and say "suspect" for a while). */
	ha = json_object_new_object();
	monitor_status_json(B.m, ha);
	text = json_object_to_json_string(ha);
	if (!strstr(text, "cut interconnect"))
		fail_msg("status lacks the reason: %s", text);
	json_object_put(ha);
	run_ms(1000);
	assert_int_equal(monitor_ha(A.m)->state, HA_UP);
	assert_int_equal(monitor_ha(B.m)->state, HA_UP);
	assert_int_equal(A.acts | B.acts, 0); /* nobody fenced, nobody took over */
	/* A mailbox thread starved past the lease holds I/O for a moment;
	 * the lease comes back. */
	wait_for(both_leased, "both leases");

	cut = false;
	wait_for(both_alive, "both alive again");
}

static void test_status_json(void **state)
{
	struct json_object *ha, *v, *links;

	(void)state;
	bring_up();
	ha = json_object_new_object();
	monitor_status_json(A.m, ha);
	assert_true(json_object_object_get_ex(ha, "state", &v));
	assert_string_equal(json_object_get_string(v), "up");
	assert_true(json_object_object_get_ex(ha, "takeover_possible", &v));
	assert_true(json_object_get_boolean(v));
	assert_true(json_object_object_get_ex(ha, "reason", &v));
	assert_non_null(strstr(json_object_get_string(v), "planned takeover is possible"));
	assert_true(json_object_object_get_ex(ha, "heartbeats", &links));
	assert_int_equal(json_object_array_length(links), 2);
	v = json_object_array_get_idx(links, 1);
	assert_string_equal(json_object_get_string(json_object_object_get(v, "name")), "ic1");
	assert_true(json_object_get_int64(json_object_object_get(v, "hb_age_ms")) < 150);
	assert_true(json_object_object_get_ex(ha, "mailbox", &v));
	assert_string_equal(json_object_get_string(json_object_object_get(v, "partner")), "ok");
	assert_true(json_object_object_get_ex(ha, "io_allowed", &v));
	assert_true(json_object_get_boolean(v));
	json_object_put(ha);
}

static bool a_holds_b_fenced(void)
{
	const struct ha *h = monitor_ha(A.m);

	return h->state == HA_TAKEOVER && h->phase == HA_PH_FAILED && monitor_io_allowed(A.m);
}

static bool a_took_back(void)
{
	return a_holds_b_fenced() && (A.acts & HA_ACT_SERVE_OWN);
}

static bool b_waiting(void)
{
	return monitor_ha(B.m)->state == HA_WAITING_FOR_GIVEBACK;
}

static bool b_serves_again(void)
{
	return monitor_ha(B.m)->state == HA_UP && (B.acts & HA_ACT_SERVE_OWN) &&
	       monitor_io_allowed(B.m);
}

static bool a_giveback_answered(void)
{
	giveback_rc = monitor_giveback(A.m, false, giveback_err, giveback_errlen);
	return giveback_rc != -EAGAIN;
}

/* Issue 16, finding 5, with real mailboxes: a is taken over, restarts and
 * waits; b dies for good. a fences b (its mark, gen 2, in b's mailbox),
 * takes its own volumes back with a lease although b's mark (gen 1) stays
 * in a's mailbox (answered by acked_gen 1), and leaves b's volumes alone
 * (a's copy of b's log is not known complete). A restart of a boots
 * normally; b, back, boots fenced, is given back and does not resume its
 * old takeover. */
static void test_taker_dies_takeback(void **state)
{
	struct monitor_mark mark;
	char err[256];

	(void)state;
	bring_up();
	stop(&A);
	wait_for(b_serves_a, "b serving a's volumes");
	start(&A);
	wait_for(a_waiting, "a waiting for giveback");
	assert_false(monitor_io_allowed(A.m));

	stop(&B); /* for good */
	wait_for(a_took_back, "a taking its volumes back");
	assert_true(A.act_at[monitor_fixture_bit_index(HA_ACT_START_OWN)] >=
		    A.mark_ns + 150000000ull);
	assert_false(A.acts & HA_ACT_REPLAY_PARTNER);
	assert_false(A.acts & HA_ACT_STOP_OWN);
	assert_int_equal(monitor_ha(A.m)->acked_gen, 1);
	read_mark("b", &mark);
	assert_true(mark.set);
	assert_int_equal(mark.gen, 2);
	assert_string_equal(mark.taker, "a");
	read_mark("a", &mark); /* b's, answered */
	assert_true(mark.set);
	assert_int_equal(mark.gen, 1);
	run_ms(500);
	assert_true(a_took_back());

	/* a restarts: a normal boot, still holding b fenced. */
	stop(&A);
	start(&A);
	wait_for(a_booted, "a's boot check");
	assert_false(A.taken);
	wait_for(a_holds_b_fenced, "a serving, b fenced again");
	assert_false(A.acts & HA_ACT_STOP_OWN);

	/* b comes back: fenced by a's mark; given back, it serves its own
	 * volumes and leaves a's alone. */
	start(&B);
	wait_for(b_waiting, "b waiting for giveback");
	assert_true(B.taken);
	giveback_err = err;
	giveback_errlen = sizeof(err);
	wait_for(a_giveback_answered, "a hearing that b waits");
	assert_int_equal(giveback_rc, 0);
	wait_for(b_serves_again, "b serving again");
	run_ms(1000);
	assert_int_equal(monitor_ha(B.m)->state, HA_UP);
	assert_false(B.acts & HA_ACT_WRITE_MARK);
	assert_false(B.acts & HA_ACT_REPLAY_PARTNER);
	assert_int_equal(monitor_ha(A.m)->state, HA_UP);
	assert_true(monitor_io_allowed(A.m));
	assert_true(monitor_io_allowed(B.m));
}

static bool b_drain_abandoned(void)
{
	return strstr(monitor_ha(B.m)->reason, "died during the drain") != NULL;
}

static bool b_serves_a_again(void)
{
	const struct ha *h = monitor_ha(B.m);

	return h->state == HA_TAKEOVER && h->phase == HA_PH_SERVING;
}

/* Issue 16, finding 6: a dies while b drains its volumes for a giveback.
 * b does not clear the mark: it serves a's volumes again. */
static void test_owner_dies_during_drain(void **state)
{
	struct monitor_mark mark;
	char err[256];

	(void)state;
	bring_up();
	stop(&A);
	wait_for(b_serves_a, "b serving a's volumes");
	start(&A);
	wait_for(a_waiting, "a waiting for giveback");
	B.hold_drain = true;
	B.acts = 0;
	give_back(err, sizeof(err));
	assert_int_equal(monitor_ha(B.m)->phase, HA_PH_DRAINING);
	stop(&A);
	wait_for(b_drain_abandoned, "b seeing a die during the drain");
	monitor_action_done(B.m, HA_ACT_DRAIN_PARTNER, 0);
	wait_for(b_serves_a_again, "b serving a's volumes again");
	assert_true(B.acts & HA_ACT_SERVE_PARTNER);
	assert_false(B.acts & HA_ACT_WRITE_MARK);
	read_mark("a", &mark);
	assert_true(mark.set);
	assert_int_equal(mark.gen, 1);
	start(&A);
	wait_for(a_booted, "a's boot check");
	assert_true(A.taken);
	wait_for(a_waiting, "a waiting for giveback again");
}

/* A planned takeover on a live pair: the live owner obeys the mark. */
static void test_planned_takeover(void **state)
{
	char err[256];

	(void)state;
	bring_up();
	assert_int_equal(monitor_takeover(B.m, false, err, sizeof(err)), 0);
	wait_for(b_serves_a, "b serving a's volumes");
	/* The live owner's lease was gone before b touched its shelf. */
	assert_false(B.peer_leased_at_replay);
	wait_for(a_waiting, "a waiting for giveback");
	assert_true(A.acts & HA_ACT_STOP_OWN);
	assert_false(monitor_io_allowed(A.m));
	give_back(err, sizeof(err));
	wait_for(a_serves_again, "a serving again");
}

static bool a_stopped(void)
{
	return A.acts & HA_ACT_STOP_OWN;
}

/* Finding 3 of issue 16: a at lease_ms 1000, b at the default 100. The
 * interconnect is cut and a's mailbox write hangs (its thread reads
 * nothing either), so b sees a dead while a still holds the lease of its
 * last read. b must wait a's lease (published in a's mailbox record), not
 * its own: before, b replayed 151 ms after its mark, with a's lease still
 * good for most of a second. */
static void test_partner_longer_lease(void **state)
{
	struct json_object *ha, *mb;
	uint64_t replay_ns;

	(void)state;
	A.opts.o.lease_ms = 1000;
	bring_up();
	ha = json_object_new_object();
	monitor_status_json(B.m, ha);
	assert_true(json_object_object_get_ex(ha, "mailbox", &mb));
	assert_int_equal(json_object_get_int64(json_object_object_get(mb, "partner_lease_ms")),
			 1000);
	assert_int_equal(
	    json_object_get_int64(json_object_object_get(mb, "partner_fence_margin_ms")), 50);
	assert_int_equal(json_object_get_int64(json_object_object_get(mb, "fence_wait_ms")), 1050);
	json_object_put(ha);
	/* a waits its own, the larger. */
	ha = json_object_new_object();
	monitor_status_json(A.m, ha);
	assert_true(json_object_object_get_ex(ha, "mailbox", &mb));
	assert_int_equal(json_object_get_int64(json_object_object_get(mb, "partner_lease_ms")),
			 100);
	assert_int_equal(json_object_get_int64(json_object_object_get(mb, "fence_wait_ms")), 1050);
	json_object_put(ha);

	monitor_mbox_test_stall_writes(monitor_mbox_of(A.m), true);
	cut = true;
	wait_for(b_serves_a, "b serving a's volumes");
	replay_ns = B.act_at[monitor_fixture_bit_index(HA_ACT_REPLAY_PARTNER)];
	print_message("mark -> replay %llu ms (a's lease 1000 + margin 50)\n",
		      (unsigned long long)((replay_ns - B.mark_ns) / 1000000));
	assert_false(B.peer_leased_at_replay);
	assert_true(replay_ns >= B.mark_ns + 1050000000ull);
	monitor_mbox_test_stall_writes(monitor_mbox_of(A.m), false);
	wait_for(a_stopped, "a obeying the mark");
	assert_false(monitor_io_allowed(A.m));
}

static const char *own_mailbox_status(struct monitor *m, char *buf, size_t len)
{
	struct json_object *ha = json_object_new_object(), *mb;

	monitor_status_json(m, ha);
	assert_true(json_object_object_get_ex(ha, "mailbox", &mb));
	snprintf(buf, len, "%s", json_object_get_string(json_object_object_get(mb, "own")));
	json_object_put(ha);
	return buf;
}

static bool a_write_failing(void)
{
	char buf[100];

	return strcmp(own_mailbox_status(A.m, buf, sizeof(buf)),
		      "write_failed: Input/output error") == 0;
}

static bool a_starting(void)
{
	return A.acts & HA_ACT_START_OWN;
}

static bool a_ack_failed(void)
{
	return monitor_ha(A.m)->phase == HA_PH_FAILED;
}

/* Finding 7 of issue 16: a's own mailbox writes fail (EIO) through a
 * planned takeover and a giveback. Before, the write's status overwrote the
 * read's, so a never acted on the mark (it stayed up with I/O held) nor on
 * its clearing (it stayed taken over). Now it obeys both; what it cannot do
 * is record the giveback (the ack is a write), and it says so. */
static void test_own_write_fails(void **state)
{
	char err[256];

	(void)state;
	bring_up();
	monitor_mbox_test_fail_writes(monitor_mbox_of(A.m), -EIO);
	wait_for(a_write_failing, "a's status saying its writes fail");
	assert_int_equal(monitor_takeover(B.m, false, err, sizeof(err)), 0);
	wait_for(b_serves_a, "b serving a's volumes");
	assert_false(B.peer_leased_at_replay);
	wait_for(a_waiting, "a obeying the mark and waiting for giveback");
	assert_true(A.acts & HA_ACT_STOP_OWN);
	assert_false(monitor_io_allowed(A.m));

	give_back(err, sizeof(err));
	wait_for(a_starting, "a acting on the cleared mark");
	wait_for(a_ack_failed, "a failing to record the giveback");
	assert_non_null(strstr(monitor_ha(A.m)->reason, "cannot record the giveback"));
	assert_false(A.acts & HA_ACT_SERVE_OWN);
	monitor_mbox_test_fail_writes(monitor_mbox_of(A.m), 0);
}

static bool b_sees_a_dead(void)
{
	return monitor_ha(B.m)->partner == HA_PARTNER_DEAD;
}

/* Finding 8 of issue 16: a's shelf refuses O_DIRECT (the test shim; tmpfs
 * did before Linux 6.6). Its mailbox goes through each host's page cache,
 * so b refuses to take it over, automatically or by command, with one line
 * naming the mailbox; --force still does it. a, whose own mailbox it is,
 * refuses to take b over too. Before, the fallback was silent. */
static void test_no_direct_refuses_takeover(void **state)
{
	char err[256], path[300];
	struct json_object *ha, *mb;

	(void)state;
	snprintf(path, sizeof(path), "%s/a", dir);
	setenv("DUET_TEST_NO_O_DIRECT", path, 1);
	bring_up_pair(false);
	snprintf(path, sizeof(path), "%s/a/mailbox", dir);
	assert_false(monitor_ha(B.m)->takeover_possible);
	assert_non_null(strstr(monitor_ha(B.m)->why, path));
	assert_false(monitor_ha(A.m)->takeover_possible);
	assert_non_null(strstr(monitor_ha(A.m)->why, "O_DIRECT"));
	assert_int_equal(monitor_takeover(B.m, false, err, sizeof(err)), -EAGAIN);
	print_message("takeover refused: %s\n", err);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "O_DIRECT"));
	assert_non_null(strstr(err, "--force"));
	ha = json_object_new_object();
	monitor_status_json(B.m, ha);
	assert_true(json_object_object_get_ex(ha, "mailbox", &mb));
	assert_true(json_object_get_boolean(json_object_object_get(mb, "direct_io")));
	assert_false(json_object_get_boolean(json_object_object_get(mb, "partner_direct_io")));
	assert_non_null(json_object_object_get(mb, "partner_reads_direct"));
	assert_false(json_object_get_boolean(json_object_object_get(mb, "partner_reads_direct")));
	json_object_put(ha);

	/* a dies: no automatic takeover. */
	stop(&A);
	wait_for(b_sees_a_dead, "b seeing a dead");
	run_ms(500);
	assert_int_equal(B.acts, 0);
	assert_int_equal(monitor_ha(B.m)->state, HA_UP);
	/* The operator knows better. */
	assert_int_equal(monitor_takeover(B.m, true, err, sizeof(err)), 0);
	wait_for(b_serves_a, "b serving a's volumes (forced)");
	unsetenv("DUET_TEST_NO_O_DIRECT");
}

static bool a_marking(void)
{
	return A.mark_ns != 0;
}

static bool a_serves_b(void)
{
	return A.acts & HA_ACT_SERVE_PARTNER;
}

/* Cold boot of the pair on real mailboxes: both stop at once, a starts
 * alone with boot_grace_ms: it sees b dead but waits the grace before its
 * mark. Then b's record is older than a's own by much more than the
 * mailbox deadline (b died first, a ran on): no wait at a's next start. */
static void test_cold_boot(void **state)
{
	uint64_t t0;

	(void)state;
	bring_up();
	stop(&A);
	stop(&B);
	A.opts.o.boot_grace_ms = 1500;
	t0 = loop_now_ns();
	start(&A);
	wait_for(a_booted, "a's boot check");
	monitor_set_mirror(A.m, HA_MIRROR_IN_SYNC);
	run_ms(1000);
	assert_int_equal(monitor_ha(A.m)->partner, HA_PARTNER_DEAD);
	assert_int_equal(A.mark_ns, 0);
	assert_non_null(strstr(monitor_ha(A.m)->why, "boot_grace_ms"));
	wait_for(a_marking, "a's takeover after the grace");
	assert_true(A.mark_ns - t0 >= 1500ull * 1000000ull);
	wait_for(a_serves_b, "a serving b's volumes");

	/* a restarts: its mark stands in b's mailbox (it had taken b over):
	 * the takeover resumes at once, grace or not. */
	stop(&A);
	A.opts.o.boot_grace_ms = 30000;
	t0 = loop_now_ns();
	start(&A);
	wait_for(a_booted, "a's boot check");
	monitor_set_mirror(A.m, HA_MIRROR_IN_SYNC);
	wait_for(a_serves_b, "a resuming its takeover");
	assert_true(loop_now_ns() - t0 < 10000ull * 1000000ull);
}

/* b dies first and a runs on without taking it over (its copy of b's log
 * degraded), then a stops: b's last record is older than a's own by far
 * more than the mailbox deadline, so a's next start does not wait the
 * grace. */
static void test_cold_boot_partner_died_first(void **state)
{
	uint64_t t0;

	(void)state;
	bring_up();
	monitor_set_mirror(A.m, HA_MIRROR_DEGRADED);
	stop(&B);
	run_ms(800);
	assert_int_equal(monitor_ha(A.m)->partner, HA_PARTNER_DEAD);
	assert_int_equal(A.mark_ns, 0);
	stop(&A);
	A.opts.o.boot_grace_ms = 30000;
	t0 = loop_now_ns();
	start(&A);
	wait_for(a_booted, "a's boot check");
	monitor_set_mirror(A.m, HA_MIRROR_IN_SYNC);
	wait_for(a_marking, "a's takeover without the grace");
	assert_true(A.mark_ns - t0 < 10000ull * 1000000ull);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_kill_takeover_giveback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cut_interconnect, setup_patient, teardown),
	    cmocka_unit_test_setup_teardown(test_status_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_planned_takeover, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_partner_longer_lease, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_own_write_fails, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_direct_refuses_takeover, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_taker_dies_takeback, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_owner_dies_during_drain, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cold_boot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cold_boot_partner_died_first, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
