/* Unit tests of the HA state machine over the scenarios of issue 6: kill,
 * stop and continue, cut interconnect, one link down, flapping links,
 * degraded mirror and --force, giveback (manual and automatic), a node that
 * boots taken over, a failed mark write, a taker that restarts.
 *
 * A simulated clock advances 10 ms per step; a simulated partner sends a
 * heartbeat on each live link every 20 ms and writes its mailbox every
 * 50 ms, and this node reads that mailbox every 50 ms, as the defaults do.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "monitor/monitor_int.h"
#include "monitor_fixture.h"

#define T0 100000 /* the simulated clock starts here (ms) */

struct sim {
	struct ha h;
	struct ha_inputs in;
	uint64_t now;
	unsigned n_links;
	bool hb_up[MONITOR_MAX_LINKS];
	uint64_t last_hb[MONITOR_MAX_LINKS];
	bool mbox_up;	    /* the partner writes its mailbox */
	bool mbox_readable; /* we can read it */
	uint64_t mbox_change;
	uint64_t mbox_read;
	struct monitor_alive partner; /* what its heartbeats and mailbox say */
	bool complete;		      /* complete every action at once */
	int mark_rc;		      /* result of WRITE_MARK */
	uint64_t first[16];	      /* time each action was first asked for */
	uint32_t acts;
	unsigned n_mark_writes;
	bool hb_never; /* no heartbeat received since this node started */
};

static void sim_inputs(struct sim *s)
{
	struct ha_inputs *in = &s->in;

	in->now_ms = s->now;
	in->n_links = s->n_links;
	for (unsigned i = 0; i < s->n_links; i++)
		in->hb_age_ms[i] = s->last_hb[i] == HA_NEVER ? HA_NEVER : s->now - s->last_hb[i];
	in->hb_valid = !s->hb_never;
	in->hb = s->partner;
	in->mbox_rc = s->mbox_readable ? 0 : -EIO;
	in->mbox_seen = true;
	in->mbox = s->partner;
	in->mbox_silent_ms = s->mbox_read > s->mbox_change ? s->mbox_read - s->mbox_change : 0;
	in->mbox_change_age_ms = s->now - s->mbox_change;
	in->mbox_read_ms = s->mbox_read;
}

static void sim_handle(struct sim *s, const struct ha_output *out);

static void sim_done(struct sim *s, enum ha_action act, int rc)
{
	struct ha_output out;

	sim_inputs(s);
	monitor_ha_done(&s->h, act, rc, &s->in, &out);
	sim_handle(s, &out);
}

static void sim_handle(struct sim *s, const struct ha_output *out)
{
	uint32_t acts = out->actions;

	for (uint32_t bit = 1; bit <= HA_ACT_SERVE_OWN; bit <<= 1) {
		if (!(acts & bit))
			continue;
		if (!(s->acts & bit))
			s->first[monitor_fixture_bit_index(bit)] = s->now;
		s->acts |= bit;
		if (bit == HA_ACT_WRITE_MARK) {
			s->n_mark_writes++;
			if (s->mark_rc == 0) {
				s->in.partner_mark_valid = true;
				s->in.partner_mark_set = true;
				s->in.partner_mark_gen = out->mark_gen;
			}
		}
		if (bit == HA_ACT_CLEAR_MARK)
			s->in.partner_mark_set = false;
		if (s->complete)
			sim_done(s, (enum ha_action)bit, bit == HA_ACT_WRITE_MARK ? s->mark_rc : 0);
	}
}

static bool asked(const struct sim *s, enum ha_action a)
{
	return (s->acts & a) != 0;
}

static uint64_t when(const struct sim *s, enum ha_action a)
{
	return s->first[monitor_fixture_bit_index(a)];
}

static void sim_step(struct sim *s)
{
	struct ha_output out;

	s->now += 10;
	for (unsigned i = 0; i < s->n_links; i++)
		if (s->hb_up[i] && s->now % 20 == 0)
			s->last_hb[i] = s->now;
	if (s->mbox_up && s->now % 50 == 0) {
		s->mbox_change = s->now;
		s->partner.counter++;
	}
	if (s->mbox_readable && s->now % 50 == 20)
		s->mbox_read = s->now;
	sim_inputs(s);
	monitor_ha_step(&s->h, &s->in, &out);
	sim_handle(s, &out);
}

static void run_for(struct sim *s, uint64_t ms)
{
	uint64_t end = s->now + ms;

	while (s->now < end)
		sim_step(s);
}

static void run_until(struct sim *s, enum ha_state st, enum ha_phase ph, uint64_t max_ms)
{
	uint64_t end = s->now + max_ms;

	while (!(s->h.state == st && s->h.phase == ph)) {
		if (s->now >= end)
			fail_msg("still %s/%s after %llu ms, want %s/%s (%s; %s)",
				 monitor_ha_state_name(s->h.state),
				 monitor_ha_phase_name(s->h.phase), (unsigned long long)max_ms,
				 monitor_ha_state_name(st), monitor_ha_phase_name(ph), s->h.reason,
				 s->h.why);
		sim_step(s);
	}
}

static void set_links(struct sim *s, bool up)
{
	for (unsigned i = 0; i < s->n_links; i++)
		s->hb_up[i] = up;
}

static const struct ha_config default_cfg = {
    .has_partner = true,
    .has_partner_mailbox = true,
    .deadline_ms = 150,
    .mailbox_deadline_ms = 150,
    .fence_wait_ms = 150,
    .auto_giveback = false,
    .giveback_delay_ms = 1000,
};

/* A healthy pair, in sync, steady for a second. */
static void sim_init(struct sim *s, const struct ha_config *c)
{
	memset(s, 0, sizeof(*s));
	s->now = T0;
	s->n_links = 2;
	for (unsigned i = 0; i < MONITOR_MAX_LINKS; i++)
		s->last_hb[i] = HA_NEVER;
	set_links(s, true);
	s->mbox_up = true;
	s->mbox_readable = true;
	s->mbox_change = s->mbox_read = T0;
	s->partner.state = HA_UP;
	s->partner.mirror = HA_MIRROR_IN_SYNC;
	s->partner.boot_gen = 1;
	strcpy(s->partner.node, "a");
	s->complete = true;
	s->in.mirror = HA_MIRROR_IN_SYNC;
	monitor_ha_init(&s->h, c ? c : &default_cfg, s->now, false, 0, 0);
	run_for(s, 1000);
	assert_int_equal(s->h.state, HA_UP);
	assert_int_equal(s->h.partner, HA_PARTNER_ALIVE);
	assert_true(s->h.takeover_possible == s->h.cfg.has_partner_mailbox);
	assert_int_equal(s->acts, 0);
}

static void kill_partner(struct sim *s)
{
	set_links(s, false);
	s->mbox_up = false;
}

/* SIGKILL of the partner: silent on every link and in its mailbox; the
 * takeover runs to serving, in the order mark, fence wait, replay, serve. */
static void test_kill(void **state)
{
	struct sim s;
	uint64_t kill;

	(void)state;
	sim_init(&s, NULL);
	kill = s.now;
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 2000);
	assert_true(asked(&s, HA_ACT_WRITE_MARK));
	/* Not before both deadlines could have passed, and soon after. */
	assert_true(when(&s, HA_ACT_WRITE_MARK) >= kill + 130);
	assert_true(when(&s, HA_ACT_WRITE_MARK) <= kill + 300);
	/* The partner's lease ran out before anything touched its shelf. */
	assert_true(when(&s, HA_ACT_REPLAY_PARTNER) >= when(&s, HA_ACT_WRITE_MARK) + 150);
	assert_true(when(&s, HA_ACT_SERVE_PARTNER) >= when(&s, HA_ACT_REPLAY_PARTNER));
	assert_true(when(&s, HA_ACT_SERVE_PARTNER) <= kill + 600);
	assert_int_equal(s.h.mark_gen, 1);
	assert_false(asked(&s, HA_ACT_STOP_OWN));
	print_message("kill -> mark %llu ms, -> serving %llu ms (simulated)\n",
		      (unsigned long long)(when(&s, HA_ACT_WRITE_MARK) - kill),
		      (unsigned long long)(when(&s, HA_ACT_SERVE_PARTNER) - kill));
	/* It stays so. */
	run_for(&s, 5000);
	assert_int_equal(s.h.state, HA_TAKEOVER);
	assert_int_equal(s.h.phase, HA_PH_SERVING);
	assert_int_equal(s.n_mark_writes, 1);
}

/* Cold boot of the pair: both nodes died together; this one starts first
 * (a new state machine, no heartbeat heard yet) and finds the partner's
 * mailbox silent, its last record as recent as our own. @p back_ms: the
 * partner starts that long after us (HA_NEVER: never). */
static void cold_boot(struct sim *s, uint64_t grace_ms, uint64_t back_ms, uint64_t own_ahead_ms)
{
	struct ha_config c = default_cfg;

	sim_init(s, NULL);
	kill_partner(s);
	s->partner.time_ns = 1000ull * NS_PER_MS;
	s->in.own_boot_time_ns = s->partner.time_ns + own_ahead_ms * NS_PER_MS;
	s->now += 5000; /* both were down for a while */
	s->hb_never = true;
	c.boot_grace_ms = grace_ms;
	monitor_ha_init(&s->h, &c, s->now, false, 0, 0);
	s->acts = 0;
	if (back_ms == HA_NEVER)
		return;
	run_for(s, back_ms);
	set_links(s, true);
	s->mbox_up = true;
	s->hb_never = false;
}

/* The partner comes back 1.5 s after us, within the grace: no takeover. */
static void test_cold_boot_both(void **state)
{
	struct sim s;

	(void)state;
	cold_boot(&s, 3000, 1500, 0);
	assert_int_equal(s.h.state, HA_UP);
	assert_false(asked(&s, HA_ACT_WRITE_MARK));
	run_for(&s, 5000);
	assert_int_equal(s.h.state, HA_UP);
	assert_int_equal(s.h.partner, HA_PARTNER_ALIVE);
	assert_false(asked(&s, HA_ACT_WRITE_MARK));
	assert_true(s.h.partner_seen);
}

/* The partner never comes back: takeover once the grace has passed. */
static void test_cold_boot_alone(void **state)
{
	struct sim s;
	uint64_t boot;

	(void)state;
	cold_boot(&s, 2000, HA_NEVER, 0);
	boot = s.now;
	run_for(&s, 1000);
	assert_int_equal(s.h.partner, HA_PARTNER_DEAD);
	assert_true(strstr(s.h.why, "boot_grace_ms") != NULL);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 4000);
	assert_true(when(&s, HA_ACT_WRITE_MARK) >= boot + 2000);
	assert_true(when(&s, HA_ACT_WRITE_MARK) <= boot + 2100);
}

/* The partner's mailbox went silent long before we stopped (it died
 * first; we ran alone): no wait at boot. With no grace, no wait either. */
static void test_cold_boot_partner_died_first(void **state)
{
	struct sim s;
	uint64_t boot;

	(void)state;
	cold_boot(&s, 30000, HA_NEVER, 10000);
	boot = s.now;
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 2000);
	assert_true(when(&s, HA_ACT_WRITE_MARK) <= boot + 300);
	cold_boot(&s, 0, HA_NEVER, 0);
	boot = s.now;
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 2000);
	assert_true(when(&s, HA_ACT_WRITE_MARK) <= boot + 300);
}

/* The partner stops (SIGSTOP) for less than the deadline: nothing happens.
 * For longer: takeover; when it continues, the takeover goes on (the mark
 * is written, the partner will obey it) and the partner, seeing the mark,
 * stops serving. */
static void test_stop_cont(void **state)
{
	struct sim s;
	struct ha owner;
	struct ha_inputs oin;
	struct ha_output out;

	(void)state;
	sim_init(&s, NULL);
	kill_partner(&s);
	run_for(&s, 100);
	set_links(&s, true);
	s.mbox_up = true;
	run_for(&s, 3000);
	assert_int_equal(s.h.state, HA_UP);
	assert_int_equal(s.acts, 0);

	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_FENCE_WAIT, 1000);
	set_links(&s, true); /* SIGCONT during the fence wait */
	s.mbox_up = true;
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	s.partner.state = HA_TAKEN_OVER; /* it read the mark */
	run_for(&s, 3000);
	assert_int_equal(s.h.state, HA_TAKEOVER);
	assert_int_equal(s.h.phase, HA_PH_SERVING);

	/* The stopped node's own machine: on waking it reads the mark. */
	memset(&oin, 0, sizeof(oin));
	monitor_ha_init(&owner, &default_cfg, 1000, false, 0, 0);
	oin.now_ms = 1000;
	oin.n_links = 1;
	oin.hb_age_ms[0] = 5000;
	oin.mirror = HA_MIRROR_IN_SYNC;
	monitor_ha_step(&owner, &oin, &out);
	assert_int_equal(owner.state, HA_UP);
	oin.own_mark = true;
	oin.own_mark_gen = s.h.mark_gen;
	monitor_ha_step(&owner, &oin, &out);
	assert_int_equal(owner.state, HA_TAKEN_OVER);
	assert_int_equal(owner.phase, HA_PH_STOPPING);
	assert_int_equal(out.actions, HA_ACT_STOP_OWN);
	assert_non_null(strstr(owner.reason, "takeover mark gen 1"));
	monitor_ha_done(&owner, HA_ACT_STOP_OWN, 0, &oin, &out);
	assert_int_equal(owner.phase, HA_PH_NONE);
	assert_false(owner.takeover_possible);
}

/* Cut interconnect, both alive: heartbeats stop on every link, mailboxes
 * go on. No takeover, ever; status says why. When the partner then
 * publishes a degraded mirror and later dies, there is still no automatic
 * takeover, and only --force does it. */
static void test_cut_interconnect(void **state)
{
	struct sim s;
	struct ha_output out;
	char err[256];

	(void)state;
	sim_init(&s, NULL);
	set_links(&s, false);
	run_for(&s, 200);
	assert_int_equal(s.h.partner, HA_PARTNER_SUSPECT);
	run_for(&s, 10000);
	assert_int_equal(s.h.state, HA_UP);
	assert_int_equal(s.acts, 0);
	assert_int_equal(s.h.partner, HA_PARTNER_CUT_OFF);
	assert_non_null(strstr(s.h.partner_why, "cut interconnect"));

	s.partner.mirror = HA_MIRROR_DEGRADED; /* published before its first lone ack */
	run_for(&s, 100);
	assert_false(s.h.takeover_possible);
	assert_non_null(strstr(s.h.why, "degraded"));
	s.mbox_up = false; /* now it dies */
	run_for(&s, 5000);
	assert_int_equal(s.h.partner, HA_PARTNER_DEAD);
	assert_int_equal(s.h.state, HA_UP);
	assert_int_equal(s.acts, 0);
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, false, &out, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "--force"));
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, true, &out, err, sizeof(err)), 0);
	assert_int_equal(out.actions, HA_ACT_WRITE_MARK);
	sim_handle(&s, &out);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
}

/* One link of two down, for good: the partner stays alive. */
static void test_one_link_down(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	s.hb_up[0] = false;
	run_for(&s, 10000);
	assert_int_equal(s.h.partner, HA_PARTNER_ALIVE);
	assert_int_equal(s.h.state, HA_UP);
	assert_int_equal(s.acts, 0);
	assert_true(s.h.takeover_possible);
}

/* Links that flap, each down more than up, and both down at once for
 * short spells, and once for longer while the mailbox advances: no
 * takeover. */
static void test_flapping(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	for (int round = 0; round < 50; round++) {
		s.hb_up[0] = false;
		s.hb_up[1] = true;
		run_for(&s, 130);
		s.hb_up[1] = false;
		run_for(&s, 60); /* both down */
		s.hb_up[0] = true;
		run_for(&s, 70);
		s.hb_up[0] = false;
		run_for(&s, 40);
	}
	assert_int_equal(s.acts, 0);
	set_links(&s, false);
	run_for(&s, 400);
	set_links(&s, true);
	run_for(&s, 100);
	assert_int_equal(s.acts, 0);
	assert_int_equal(s.h.partner, HA_PARTNER_ALIVE);
}

/* Our copy of the partner's log is degraded when it dies: no automatic
 * takeover, status says why; --force takes over and skips the check after
 * the fence. */
static void test_degraded_force(void **state)
{
	struct sim s;
	struct ha_output out;
	char err[256];

	(void)state;
	sim_init(&s, NULL);
	s.in.mirror = HA_MIRROR_DEGRADED;
	kill_partner(&s);
	run_for(&s, 3000);
	assert_int_equal(s.h.state, HA_UP);
	assert_int_equal(s.acts, 0);
	assert_int_equal(s.h.partner, HA_PARTNER_DEAD);
	assert_false(s.h.takeover_possible);
	assert_non_null(strstr(s.h.why, "degraded"));
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, false, &out, err, sizeof(err)), -EAGAIN);
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, true, &out, err, sizeof(err)), 0);
	assert_true(s.h.forced);
	sim_handle(&s, &out);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	assert_non_null(strstr(s.h.reason, "replayed"));
}

/* The partner handed its own shelf over (docs/RELOCATION.md, "On a failed
 * path") and died between GIVE and DROPPED: it publishes "degraded" (its
 * mirror held since GIVE) and our copy is retired by the handover's replay,
 * yet the node says the log was given (partner_log_given): the automatic
 * takeover runs, through the check after the fence too. */
static void test_partner_log_given(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	s.partner.mirror = HA_MIRROR_DEGRADED;
	s.in.mirror = HA_MIRROR_DEGRADED;
	s.in.partner_log_given = true;
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 3000);
	assert_false(s.h.forced);
	assert_non_null(strstr(s.h.reason, "replayed"));
}

/* The partner published "degraded" just before it was fenced (it had
 * acknowledged writes we lack): the takeover stops after the fence wait,
 * and goes on only when forced. */
static void test_degraded_after_mark(void **state)
{
	struct sim s;
	struct ha_output out;
	char err[256];

	(void)state;
	sim_init(&s, NULL);
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_FENCE_WAIT, 1000);
	s.partner.mirror = HA_MIRROR_DEGRADED; /* its final record */
	run_until(&s, HA_TAKEOVER, HA_PH_FAILED, 1000);
	assert_false(asked(&s, HA_ACT_REPLAY_PARTNER));
	assert_non_null(strstr(s.h.reason, "degraded"));
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, true, &out, err, sizeof(err)), 0);
	assert_int_equal(out.actions, HA_ACT_REPLAY_PARTNER);
	sim_handle(&s, &out);
	assert_int_equal(s.h.phase, HA_PH_SERVING);
}

/* The fence wait ends only with a read of the partner's mailbox that
 * started after it. */
static void test_fence_needs_fresh_read(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_FENCE_WAIT, 1000);
	s.mbox_readable = false;
	run_for(&s, 2000);
	assert_int_equal(s.h.phase, HA_PH_FENCE_WAIT);
	assert_false(asked(&s, HA_ACT_REPLAY_PARTNER));
	s.mbox_readable = true;
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 200);
}

/* Planned takeover on a live pair, then giveback: manual when the partner
 * waits, refused when it does not (unless forced), automatic after the
 * delay when configured. */
static void test_giveback(void **state)
{
	struct sim s;
	struct ha_config c = default_cfg;
	struct ha_output out;
	char err[256];
	uint64_t t;

	(void)state;
	sim_init(&s, NULL);
	assert_int_equal(monitor_ha_giveback(&s.h, &s.in, false, &out, err, sizeof(err)), -EINVAL);
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, false, &out, err, sizeof(err)), 0);
	assert_non_null(strstr(s.h.reason, "planned takeover"));
	sim_handle(&s, &out);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	s.partner.state = HA_TAKEN_OVER;
	run_for(&s, 200);
	assert_int_equal(monitor_ha_giveback(&s.h, &s.in, false, &out, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "not waiting"));
	s.partner.state = HA_WAITING_FOR_GIVEBACK;
	run_for(&s, 5000);
	assert_int_equal(s.h.phase, HA_PH_SERVING); /* auto_giveback is off */
	assert_int_equal(monitor_ha_giveback(&s.h, &s.in, false, &out, err, sizeof(err)), 0);
	assert_int_equal(out.actions, HA_ACT_DRAIN_PARTNER);
	sim_handle(&s, &out);
	assert_true(asked(&s, HA_ACT_CLEAR_MARK));
	assert_true(when(&s, HA_ACT_CLEAR_MARK) >= when(&s, HA_ACT_DRAIN_PARTNER));
	assert_int_equal(s.h.state, HA_UP);
	assert_false(s.in.partner_mark_set);
	s.partner.state = HA_UP;
	run_for(&s, 3000);
	assert_int_equal(s.h.state, HA_UP);
	assert_int_equal(s.n_mark_writes, 1);

	/* Forced giveback to a partner that does not wait. */
	sim_init(&s, NULL);
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	assert_int_equal(monitor_ha_giveback(&s.h, &s.in, false, &out, err, sizeof(err)), -EAGAIN);
	assert_int_equal(monitor_ha_giveback(&s.h, &s.in, true, &out, err, sizeof(err)), 0);
	sim_handle(&s, &out);
	assert_int_equal(s.h.state, HA_UP);

	/* Automatic, after the delay. */
	c.auto_giveback = true;
	sim_init(&s, &c);
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	run_for(&s, 2000);
	s.partner.state = HA_WAITING_FOR_GIVEBACK; /* it restarted and is ready */
	set_links(&s, true);
	s.mbox_up = true;
	t = s.now;
	run_until(&s, HA_UP, HA_PH_NONE, 3000);
	assert_true(when(&s, HA_ACT_DRAIN_PARTNER) >= t + 1000);
	assert_true(when(&s, HA_ACT_DRAIN_PARTNER) <= t + 1100);
	assert_non_null(strstr(s.h.reason, "gave back"));
}

/* The waiting must be continuous for the automatic giveback. */
static void test_auto_giveback_restarts(void **state)
{
	struct sim s;
	struct ha_config c = default_cfg;

	(void)state;
	c.auto_giveback = true;
	sim_init(&s, &c);
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	set_links(&s, true);
	s.mbox_up = true;
	for (int i = 0; i < 5; i++) {
		s.partner.state = HA_WAITING_FOR_GIVEBACK;
		run_for(&s, 800);
		s.partner.state = HA_TAKEN_OVER;
		run_for(&s, 100);
	}
	assert_false(asked(&s, HA_ACT_DRAIN_PARTNER));
}

/* The owner's side: boots with a mark, waits, is given back; the start
 * order is drop log, record acked_gen, serve. */
static void test_owner_given_back(void **state)
{
	struct ha h;
	struct ha_inputs in;
	struct ha_output out;
	char err[128];

	(void)state;
	memset(&in, 0, sizeof(in));
	monitor_ha_init(&h, &default_cfg, 1000, true, 5, 4);
	assert_int_equal(h.state, HA_TAKEN_OVER);
	in.now_ms = 1000;
	in.n_links = 2;
	in.hb_age_ms[0] = in.hb_age_ms[1] = HA_NEVER;
	in.own_mark = true;
	in.own_mark_gen = 5;
	monitor_ha_step(&h, &in, &out);
	assert_int_equal(h.state, HA_TAKEN_OVER);
	assert_int_equal(out.actions, 0);
	assert_false(h.takeover_possible);
	/* The taker is not provably dead: only --force takes our volumes back. */
	assert_int_equal(monitor_ha_takeover(&h, &in, false, &out, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "--force"));

	/* In touch with the partner, which serves our volumes. */
	in.hb_age_ms[1] = 5;
	in.hb_valid = true;
	in.hb.state = HA_TAKEOVER;
	monitor_ha_step(&h, &in, &out);
	assert_int_equal(h.state, HA_WAITING_FOR_GIVEBACK);
	assert_true(out.changed);
	in.hb_age_ms[1] = 500; /* lost again */
	monitor_ha_step(&h, &in, &out);
	assert_int_equal(h.state, HA_TAKEN_OVER);
	in.hb_age_ms[1] = 5;
	monitor_ha_step(&h, &in, &out);
	assert_int_equal(h.state, HA_WAITING_FOR_GIVEBACK);

	/* Cleared. */
	in.own_mark = false;
	monitor_ha_step(&h, &in, &out);
	assert_int_equal(h.phase, HA_PH_STARTING);
	assert_int_equal(out.actions, HA_ACT_START_OWN);
	assert_int_equal(out.mark_gen, 5);
	monitor_ha_step(&h, &in, &out);
	assert_int_equal(out.actions, 0); /* asked once */
	monitor_ha_done(&h, HA_ACT_START_OWN, 0, &in, &out);
	assert_int_equal(h.phase, HA_PH_ACKING);
	assert_int_equal(out.actions, HA_ACT_PERSIST_ACK);
	assert_int_equal(h.acked_gen, 5);
	monitor_ha_done(&h, HA_ACT_PERSIST_ACK, 0, &in, &out);
	assert_int_equal(h.state, HA_UP);
	assert_int_equal(out.actions, HA_ACT_SERVE_OWN);
	assert_non_null(strstr(h.reason, "given back"));
}

/* A node that was taken over and given back while it was down boots with
 * a cleared mark newer than its acked_gen: it drops its log first. */
static void test_owner_boot_cleared(void **state)
{
	struct ha h;
	struct ha_inputs in;
	struct ha_output out;

	(void)state;
	memset(&in, 0, sizeof(in));
	monitor_ha_init(&h, &default_cfg, 1000, true, 3, 2);
	in.now_ms = 1000;
	in.own_mark = false;
	in.own_mark_gen = 3;
	monitor_ha_step(&h, &in, &out);
	assert_int_equal(out.actions, HA_ACT_START_OWN);
	assert_int_equal(out.mark_gen, 3);
	monitor_ha_done(&h, HA_ACT_START_OWN, -EIO, &in, &out);
	assert_int_equal(h.phase, HA_PH_FAILED);
	assert_int_equal(out.actions, 0);
	assert_int_equal(h.acked_gen, 2);
}

/* A mark write that fails is retried after retry_ms, not in a tight loop. */
static void test_mark_write_fails(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	s.mark_rc = -EIO;
	kill_partner(&s);
	run_until(&s, HA_UP, HA_PH_FAILED, 1000);
	assert_int_equal(s.n_mark_writes, 1);
	assert_non_null(strstr(s.h.reason, "cannot write the takeover mark"));
	run_for(&s, 900);
	assert_int_equal(s.n_mark_writes, 1);
	run_for(&s, 200);
	assert_int_equal(s.n_mark_writes, 2);
	s.mark_rc = 0;
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 2000);
	assert_int_equal(s.n_mark_writes, 3);
	assert_int_equal(s.h.mark_gen, 3); /* a generation is never reused */
}

/* A taker that restarts finds its mark in the partner's mailbox and
 * resumes, waiting out the lease again. Generations only grow. */
static void test_resume_and_generations(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	s.in.partner_mark_valid = true;
	s.in.partner_mark_set = true;
	s.in.partner_mark_gen = 7;
	kill_partner(&s);
	run_for(&s, 10);
	assert_int_equal(s.h.state, HA_TAKEOVER);
	assert_int_equal(s.h.phase, HA_PH_FENCE_WAIT);
	assert_int_equal(s.h.mark_gen, 7);
	assert_false(asked(&s, HA_ACT_WRITE_MARK));
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);

	/* A cleared mark of gen 4 and a partner that acked 6: next is 7. */
	sim_init(&s, NULL);
	s.in.partner_mark_valid = true;
	s.in.partner_mark_set = false;
	s.in.partner_mark_gen = 4;
	s.partner.acked_gen = 6;
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	assert_int_equal(s.h.mark_gen, 7);
}

/* The taker restarts while serving a partner that is up again and waits
 * for giveback: the partner publishes "taken over" and its mirror "off"
 * (a fenced node mirrors nothing). The resumed takeover must not stop at
 * the post-fence mirror check: nobody else would serve the volumes. */
static void test_resume_partner_taken_over(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	s.in.partner_mark_valid = true;
	s.in.partner_mark_set = true;
	s.in.partner_mark_gen = 3;
	s.partner.state = HA_WAITING_FOR_GIVEBACK;
	s.partner.mirror = HA_MIRROR_OFF;
	run_for(&s, 10);
	assert_int_equal(s.h.state, HA_TAKEOVER);
	assert_int_equal(s.h.phase, HA_PH_FENCE_WAIT);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	assert_true(asked(&s, HA_ACT_REPLAY_PARTNER));
	assert_false(asked(&s, HA_ACT_WRITE_MARK));
}

/* Without evidence from the mailbox there is no automatic takeover. */
static void test_no_mailbox(void **state)
{
	struct sim s;
	struct ha_config c = default_cfg;
	struct ha_output out;
	char err[256];

	(void)state;
	sim_init(&s, NULL);
	s.mbox_readable = false;
	kill_partner(&s);
	run_for(&s, 3000);
	assert_int_equal(s.acts, 0);
	assert_int_equal(s.h.partner, HA_PARTNER_SUSPECT);
	assert_false(s.h.takeover_possible);
	assert_non_null(strstr(s.h.why, "unreadable"));
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, true, &out, err, sizeof(err)), -EIO);

	c.has_partner_mailbox = false;
	sim_init(&s, &c);
	kill_partner(&s);
	run_for(&s, 3000);
	assert_int_equal(s.acts, 0);
	assert_non_null(strstr(s.h.why, "partner_shelf"));
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, true, &out, err, sizeof(err)), -ENOTCONN);

	c = default_cfg;
	c.has_partner = false;
	monitor_ha_init(&s.h, &c, s.now, false, 0, 0);
	monitor_ha_step(&s.h, &s.in, &out);
	assert_int_equal(s.h.partner, HA_PARTNER_NONE);
	assert_string_equal(s.h.why, "no partner configured");
}

/* A partner that is taken over itself, or a corrupt mailbox record, is no
 * reason for a takeover. */
static void test_partner_not_serving(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	s.partner.state = HA_WAITING_FOR_GIVEBACK;
	kill_partner(&s);
	run_for(&s, 3000);
	assert_int_equal(s.acts, 0);
	assert_non_null(strstr(s.h.why, "serves nothing"));
}

/* A second writer in our own mailbox fences us like a mark. */
static void test_conflict(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	s.in.own_conflict = true;
	run_for(&s, 10);
	assert_int_equal(s.h.state, HA_TAKEN_OVER);
	assert_true(asked(&s, HA_ACT_STOP_OWN));
	assert_non_null(strstr(s.h.reason, "another writer"));
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(monitor_ha_phase_name(HA_PH_FENCE_WAIT), "fence_wait");
	assert_string_equal(monitor_ha_phase_name(HA_PH_FAILED), "failed");
	assert_string_equal(monitor_ha_partner_name(HA_PARTNER_CUT_OFF), "cut_off");
	assert_string_equal(monitor_ha_action_name(HA_ACT_PERSIST_ACK), "persist_ack");
}

/* ---- second failures (issue 16) ---- */

/* This node was taken over (gen 5) and waits for giveback from a partner
 * that serves our volumes and acknowledged writes without us (degraded). */
static void sim_init_taken(struct sim *s, uint64_t gen)
{
	sim_init(s, NULL);
	monitor_ha_init(&s->h, &default_cfg, s->now, true, gen, gen - 1);
	s->in.own_mark = true;
	s->in.own_mark_gen = gen;
	s->partner.state = HA_TAKEOVER;
	s->partner.mirror = HA_MIRROR_DEGRADED;
	s->in.mirror = HA_MIRROR_IN_SYNC; /* our copy's header; stale all the same */
	run_for(s, 1000);
	assert_int_equal(s->h.state, HA_WAITING_FOR_GIVEBACK);
	assert_int_equal(s->acts, 0);
}

/* Finding 5: the taker dies for good. The owner fences it exactly as a
 * takeover does (a newer mark, the fence wait), then starts its own
 * volumes as at a giveback (drop the own log, acked_gen = the taker's
 * mark, serve), and leaves the taker's volumes unserved: our copy of its
 * log misses what it acknowledged without us. */
static void test_takeback_taker_dies(void **state)
{
	struct sim s;
	uint64_t kill;

	(void)state;
	sim_init_taken(&s, 5);
	kill = s.now;
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_FAILED, 2000);
	assert_true(when(&s, HA_ACT_WRITE_MARK) >= kill + 130);
	assert_true(when(&s, HA_ACT_WRITE_MARK) <= kill + 300);
	assert_int_equal(s.in.partner_mark_gen, 6); /* newer than the taker's */
	assert_true(s.in.partner_mark_set);
	/* Nothing of ours before the taker's lease ran out. */
	assert_true(when(&s, HA_ACT_START_OWN) >= when(&s, HA_ACT_WRITE_MARK) + 150);
	assert_true(asked(&s, HA_ACT_PERSIST_ACK));
	assert_true(asked(&s, HA_ACT_SERVE_OWN));
	assert_int_equal(s.h.acked_gen, 5);
	assert_false(asked(&s, HA_ACT_STOP_OWN));
	assert_false(asked(&s, HA_ACT_REPLAY_PARTNER));
	assert_non_null(strstr(s.h.reason, "own volumes taken back (gen 5)"));
	assert_non_null(strstr(s.h.reason, "degraded"));
	/* The taker's mark stays in our mailbox, answered: no stop, no loop. */
	run_for(&s, 3000);
	assert_int_equal(s.h.state, HA_TAKEOVER);
	assert_int_equal(s.h.phase, HA_PH_FAILED);
	assert_int_equal(s.n_mark_writes, 1);
	assert_false(asked(&s, HA_ACT_STOP_OWN));

	/* A taker that acknowledged nothing without us (still in sync): its
	 * volumes are served from our copy too. */
	sim_init_taken(&s, 5);
	s.partner.mirror = HA_MIRROR_IN_SYNC;
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 2000);
	assert_true(asked(&s, HA_ACT_SERVE_OWN));
	assert_true(when(&s, HA_ACT_REPLAY_PARTNER) >= when(&s, HA_ACT_WRITE_MARK) + 150);
	assert_int_equal(s.h.acked_gen, 5);
}

/* No takeback from a taker that lives: in touch, or behind a cut
 * interconnect. `takeover` asks for --force; --force fences it. */
static void test_takeback_live_taker(void **state)
{
	struct sim s;
	struct ha_output out;
	char err[256];

	(void)state;
	sim_init_taken(&s, 5);
	set_links(&s, false); /* cut: its mailbox goes on */
	run_for(&s, 3000);
	assert_int_equal(s.acts, 0);
	assert_int_equal(s.h.partner, HA_PARTNER_CUT_OFF);
	assert_int_equal(s.h.state, HA_TAKEN_OVER);
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, false, &out, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "--force"));
	assert_non_null(strstr(s.h.why, "--force"));
	s.mbox_readable = false;
	run_for(&s, 100);
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, true, &out, err, sizeof(err)), -EIO);
	s.mbox_readable = true;
	run_for(&s, 100);
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, true, &out, err, sizeof(err)), 0);
	assert_int_equal(out.actions, HA_ACT_WRITE_MARK);
	assert_int_equal(out.mark_gen, 6);
	assert_non_null(strstr(s.h.reason, "takeback forced"));
	sim_handle(&s, &out);
	assert_int_equal(s.h.phase, HA_PH_FENCE_WAIT);
	run_until(&s, HA_TAKEOVER, HA_PH_FAILED, 1000);
	assert_true(when(&s, HA_ACT_START_OWN) >= when(&s, HA_ACT_WRITE_MARK) + 150);
	assert_true(asked(&s, HA_ACT_SERVE_OWN));
	assert_int_equal(s.h.acked_gen, 5);
}

/* A mailbox read through a page cache proves no silence: no automatic
 * takeback, and `takeover` needs --force. */
static void test_takeback_cached_mailbox(void **state)
{
	struct sim s;
	struct ha_output out;
	char err[256];

	(void)state;
	sim_init_taken(&s, 5);
	s.in.mbox_cached = "partner mailbox without O_DIRECT";
	kill_partner(&s);
	run_for(&s, 3000);
	assert_int_equal(s.acts, 0);
	assert_int_equal(s.h.partner, HA_PARTNER_DEAD);
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, false, &out, err, sizeof(err)), -EAGAIN);
	assert_non_null(strstr(err, "O_DIRECT"));
	assert_int_equal(monitor_ha_takeover(&s.h, &s.in, true, &out, err, sizeof(err)), 0);
	sim_handle(&s, &out);
	run_until(&s, HA_TAKEOVER, HA_PH_FAILED, 1000);
	assert_true(asked(&s, HA_ACT_SERVE_OWN));
}

/* A takeback mark that cannot be written: still fenced, tried again later. */
static void test_takeback_mark_fails(void **state)
{
	struct sim s;

	(void)state;
	sim_init_taken(&s, 5);
	s.mark_rc = -EIO;
	kill_partner(&s);
	run_for(&s, 400);
	assert_int_equal(s.n_mark_writes, 1);
	assert_int_equal(s.h.state, HA_TAKEN_OVER);
	assert_int_equal(s.h.mark_gen, 5);
	assert_non_null(strstr(s.h.reason, "takeback mark"));
	run_for(&s, 600);
	assert_int_equal(s.n_mark_writes, 1);
	run_for(&s, 400);
	assert_int_equal(s.n_mark_writes, 2);
	s.mark_rc = 0;
	run_until(&s, HA_TAKEOVER, HA_PH_FAILED, 2000);
	assert_true(asked(&s, HA_ACT_SERVE_OWN));
	assert_false(asked(&s, HA_ACT_STOP_OWN));
}

/* The owner restarts after a takeback: the taker's mark (gen 5) is at its
 * acked_gen, ours (6) stands in the taker's mailbox. It boots up, and the
 * resumed fence of the taker is not forced: its volumes are still served
 * only from a complete copy. */
static void test_takeback_restart(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	kill_partner(&s);
	s.partner.state = HA_TAKEOVER;
	s.partner.mirror = HA_MIRROR_DEGRADED;
	s.partner.acked_gen = 0;
	monitor_ha_init(&s.h, &default_cfg, s.now, false, 5, 5);
	s.in.own_mark = true;
	s.in.own_mark_gen = 5;
	s.in.partner_mark_valid = true;
	s.in.partner_mark_set = true;
	s.in.partner_mark_gen = 6;
	run_until(&s, HA_TAKEOVER, HA_PH_FAILED, 1000);
	assert_false(s.h.forced);
	assert_false(asked(&s, HA_ACT_STOP_OWN));
	assert_false(asked(&s, HA_ACT_REPLAY_PARTNER));
	assert_false(asked(&s, HA_ACT_WRITE_MARK));
	assert_non_null(strstr(s.h.reason, "degraded"));
}

/* The taker comes back after the owner took its volumes back: it boots
 * fenced by the owner's mark (6), is given back, and does not resume its
 * own old takeover (its mark 5, set, answered by the owner's acked_gen). */
static void test_takeback_taker_returns(void **state)
{
	struct sim s;

	(void)state;
	sim_init(&s, NULL);
	s.partner.state = HA_TAKEOVER; /* the owner holds us fenced */
	s.partner.acked_gen = 5;
	monitor_ha_init(&s.h, &default_cfg, s.now, true, 6, 0);
	s.in.own_mark = true;
	s.in.own_mark_gen = 6;
	s.in.partner_mark_valid = true;
	s.in.partner_mark_set = true;
	s.in.partner_mark_gen = 5;
	run_for(&s, 500);
	assert_int_equal(s.h.state, HA_WAITING_FOR_GIVEBACK);
	s.in.own_mark = false; /* given back */
	run_until(&s, HA_UP, HA_PH_NONE, 500);
	assert_int_equal(s.h.acked_gen, 6);
	s.partner.state = HA_UP;
	run_for(&s, 3000);
	assert_int_equal(s.h.state, HA_UP);
	assert_false(asked(&s, HA_ACT_WRITE_MARK));
	assert_false(asked(&s, HA_ACT_REPLAY_PARTNER));
	/* It may take the owner over later, with a newer generation. */
	kill_partner(&s);
	s.partner.mirror = HA_MIRROR_IN_SYNC;
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 2000);
	assert_int_equal(s.h.mark_gen, 7);
}

/* Serving the partner's volumes; it waits for giveback; a manual giveback
 * starts with the drain left to the test. */
static void sim_giveback_started(struct sim *s)
{
	struct ha_output out;
	char err[256];

	sim_init(s, NULL);
	kill_partner(s);
	run_until(s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	s->partner.state = HA_WAITING_FOR_GIVEBACK;
	s->partner.mirror = HA_MIRROR_OFF;
	set_links(s, true);
	s->mbox_up = true;
	run_for(s, 500);
	s->complete = false;
	s->acts = 0;
	assert_int_equal(monitor_ha_giveback(&s->h, &s->in, false, &out, err, sizeof(err)), 0);
	sim_handle(s, &out);
	assert_int_equal(s->h.phase, HA_PH_DRAINING);
	assert_true(asked(s, HA_ACT_DRAIN_PARTNER));
}

/* Finding 6: the owner dies during the giveback's drain. The mark never
 * left its mailbox, so the taker serves the volumes again (no new mark, no
 * clear) once the drain ends, whatever the drain's result. */
static void test_giveback_owner_dies_draining(void **state)
{
	struct sim s;

	(void)state;
	sim_giveback_started(&s);
	kill_partner(&s);
	run_for(&s, 400);
	assert_int_equal(s.h.partner, HA_PARTNER_DEAD);
	assert_int_equal(s.h.state, HA_GIVING_BACK);
	assert_int_equal(s.h.phase, HA_PH_DRAINING);
	assert_non_null(strstr(s.h.reason, "died during the drain"));
	s.complete = true;
	sim_done(&s, HA_ACT_DRAIN_PARTNER, 0);
	assert_int_equal(s.h.state, HA_TAKEOVER);
	assert_int_equal(s.h.phase, HA_PH_SERVING);
	assert_true(asked(&s, HA_ACT_REPLAY_PARTNER));
	assert_true(asked(&s, HA_ACT_SERVE_PARTNER));
	assert_false(asked(&s, HA_ACT_CLEAR_MARK));
	assert_true(s.in.partner_mark_set);
	assert_int_equal(s.n_mark_writes, 1);
	run_for(&s, 3000);
	assert_int_equal(s.h.phase, HA_PH_SERVING);

	/* The drain fails (requests still running) as the owner dies. */
	sim_giveback_started(&s);
	kill_partner(&s);
	run_for(&s, 400);
	s.complete = true;
	sim_done(&s, HA_ACT_DRAIN_PARTNER, -ETIMEDOUT);
	assert_int_equal(s.h.phase, HA_PH_SERVING);
	assert_false(asked(&s, HA_ACT_CLEAR_MARK));

	/* The drain failed first, then the owner died: served again too. */
	sim_giveback_started(&s);
	sim_done(&s, HA_ACT_DRAIN_PARTNER, -ETIMEDOUT);
	assert_int_equal(s.h.phase, HA_PH_FAILED);
	s.complete = true;
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	assert_false(asked(&s, HA_ACT_CLEAR_MARK));
	assert_int_equal(s.n_mark_writes, 1);
}

/* Finding 6: the owner dies while the mark is being cleared. The clear
 * lands; the owner's last record still waits and never acked: it never
 * started, so the taker marks it again (a newer generation: the owner may
 * have read the cleared mark and renewed its lease), waits out the lease,
 * and serves again. */
static void test_giveback_owner_dies_clearing(void **state)
{
	struct sim s;
	uint64_t t;

	(void)state;
	sim_giveback_started(&s);
	sim_done(&s, HA_ACT_DRAIN_PARTNER, 0);
	assert_int_equal(s.h.phase, HA_PH_CLEARING);
	assert_true(asked(&s, HA_ACT_CLEAR_MARK));
	kill_partner(&s);
	run_for(&s, 100);
	s.complete = true;
	sim_done(&s, HA_ACT_CLEAR_MARK, 0);
	assert_int_equal(s.h.state, HA_UP);
	t = s.now;
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	assert_int_equal(s.h.mark_gen, 2);
	assert_true(when(&s, HA_ACT_WRITE_MARK) >= t);
	assert_true(when(&s, HA_ACT_REPLAY_PARTNER) >= when(&s, HA_ACT_WRITE_MARK) + 150);
	assert_false(s.h.forced);

	/* The clear fails as the owner dies (it may have landed): the same. */
	sim_giveback_started(&s);
	sim_done(&s, HA_ACT_DRAIN_PARTNER, 0);
	kill_partner(&s);
	run_for(&s, 100);
	s.complete = true;
	sim_done(&s, HA_ACT_CLEAR_MARK, -EIO);
	assert_int_equal(s.h.state, HA_GIVING_BACK);
	assert_int_equal(s.h.phase, HA_PH_FAILED);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	assert_int_equal(s.h.mark_gen, 2);

	/* The owner acked the giveback before it died: it may have served and
	 * acknowledged writes we lack; no automatic takeover. */
	sim_giveback_started(&s);
	sim_done(&s, HA_ACT_DRAIN_PARTNER, 0);
	s.complete = true;
	sim_done(&s, HA_ACT_CLEAR_MARK, 0);
	s.partner.acked_gen = 1;
	s.partner.mirror = HA_MIRROR_DEGRADED;
	kill_partner(&s);
	run_for(&s, 3000);
	assert_int_equal(s.h.state, HA_UP);
	assert_false(asked(&s, HA_ACT_WRITE_MARK));

	/* It acks during our fence wait: its final record stops the takeover. */
	sim_giveback_started(&s);
	sim_done(&s, HA_ACT_DRAIN_PARTNER, 0);
	s.complete = true;
	sim_done(&s, HA_ACT_CLEAR_MARK, 0);
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_FENCE_WAIT, 1000);
	s.partner.acked_gen = 1;
	s.partner.state = HA_UP;
	run_until(&s, HA_TAKEOVER, HA_PH_FAILED, 1000);
	assert_false(asked(&s, HA_ACT_REPLAY_PARTNER));
	assert_non_null(strstr(s.h.reason, "may have started"));
}

/* Only a giveback from serving, to a partner that waited, is resumed: a
 * forced giveback to a dead partner stays given back, and one from a
 * failed takeover (our copy never replayed) never serves. */
static void test_giveback_not_resumed(void **state)
{
	struct sim s;
	struct ha_output out;
	char err[256];

	(void)state;
	sim_init(&s, NULL);
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_SERVING, 1000);
	s.partner.state = HA_WAITING_FOR_GIVEBACK; /* its last word, then it died */
	run_for(&s, 100);
	assert_int_equal(monitor_ha_giveback(&s.h, &s.in, true, &out, err, sizeof(err)), 0);
	sim_handle(&s, &out);
	assert_int_equal(s.h.state, HA_UP);
	run_for(&s, 3000);
	assert_int_equal(s.h.state, HA_UP);
	assert_int_equal(s.n_mark_writes, 1);

	/* From takeover/failed (the partner degraded after the mark). */
	sim_init(&s, NULL);
	kill_partner(&s);
	run_until(&s, HA_TAKEOVER, HA_PH_FENCE_WAIT, 1000);
	s.partner.mirror = HA_MIRROR_DEGRADED;
	run_until(&s, HA_TAKEOVER, HA_PH_FAILED, 1000);
	s.partner.state = HA_WAITING_FOR_GIVEBACK;
	set_links(&s, true);
	s.mbox_up = true;
	run_for(&s, 300);
	s.complete = false;
	assert_int_equal(monitor_ha_giveback(&s.h, &s.in, false, &out, err, sizeof(err)), 0);
	sim_handle(&s, &out);
	kill_partner(&s);
	run_for(&s, 400);
	s.complete = true;
	sim_done(&s, HA_ACT_DRAIN_PARTNER, 0);
	assert_int_equal(s.h.state, HA_UP);
	run_for(&s, 3000);
	assert_int_equal(s.h.state, HA_UP);
	assert_false(asked(&s, HA_ACT_REPLAY_PARTNER));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_kill),
	    cmocka_unit_test(test_stop_cont),
	    cmocka_unit_test(test_cut_interconnect),
	    cmocka_unit_test(test_one_link_down),
	    cmocka_unit_test(test_flapping),
	    cmocka_unit_test(test_degraded_force),
	    cmocka_unit_test(test_partner_log_given),
	    cmocka_unit_test(test_degraded_after_mark),
	    cmocka_unit_test(test_fence_needs_fresh_read),
	    cmocka_unit_test(test_giveback),
	    cmocka_unit_test(test_auto_giveback_restarts),
	    cmocka_unit_test(test_owner_given_back),
	    cmocka_unit_test(test_owner_boot_cleared),
	    cmocka_unit_test(test_mark_write_fails),
	    cmocka_unit_test(test_resume_and_generations),
	    cmocka_unit_test(test_resume_partner_taken_over),
	    cmocka_unit_test(test_no_mailbox),
	    cmocka_unit_test(test_partner_not_serving),
	    cmocka_unit_test(test_conflict),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_takeback_taker_dies),
	    cmocka_unit_test(test_takeback_live_taker),
	    cmocka_unit_test(test_takeback_mark_fails),
	    cmocka_unit_test(test_takeback_cached_mailbox),
	    cmocka_unit_test(test_takeback_restart),
	    cmocka_unit_test(test_takeback_taker_returns),
	    cmocka_unit_test(test_giveback_owner_dies_draining),
	    cmocka_unit_test(test_giveback_owner_dies_clearing),
	    cmocka_unit_test(test_giveback_not_resumed),
	    cmocka_unit_test(test_cold_boot_both),
	    cmocka_unit_test(test_cold_boot_alone),
	    cmocka_unit_test(test_cold_boot_partner_died_first),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
