/* The monitor on a reactor: a heartbeat tick (send on every link, read
 * every slot), the mailbox thread, the watchdog, and the HA state machine
 * fed with what they observe. Actions that touch storage are the node's
 * (monitor_ops.action); the mailbox actions (mark, clear, acked_gen) are
 * done here.
 *
 * The rule: this file decides nothing. Every decision is ha.c's; this file
 * samples the inputs (monitor_sample()), calls the state machine, and performs
 * its output (exec()), which is the only place actions start. Results of
 * the mailbox thread and of the node come back through finish().
 */
#define LOG_MODULE "monitor"
#include "monitor/monitor_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

static void step(struct monitor *m);
static void exec(struct monitor *m, const struct ha_output *out);

/* ---- inputs ---- */

/* The split-brain guard needs every mailbox of the pair read and written
 * past any page cache: the own one (else our reads may miss a mark the
 * partner wrote from its host), the partner's as we open it (else we may
 * read it stale and think it silent), and the partner's own, which it
 * publishes. NULL when all are O_DIRECT; else the first culprit, named,
 * for the state machine's reason and the refused command. */
static const char *mailbox_cached(struct monitor *m, const struct monitor_mbox_own_view *ov,
				  const struct monitor_mbox_partner_view *pv)
{
	const char *path = NULL;
	int err = 0;

	if (!ov->direct) {
		path = monitor_mbox_own_path(m->mb);
		err = ov->direct_err;
	} else if (pv->opened && !pv->direct) {
		path = monitor_mbox_partner_path(m->mb);
		err = pv->direct_err;
	}
	if (path) {
		snprintf(m->cached_why, sizeof(m->cached_why),
			 "mailbox %.80s refuses O_DIRECT (%s): another host would not see its "
			 "writes; no takeover without --force",
			 path, err ? strerror(-err) : "buffered");
		return m->cached_why;
	}
	if (pv->seen && pv->rec.lease_ms && !pv->rec.mbox_direct) {
		snprintf(m->cached_why, sizeof(m->cached_why),
			 "partner %.15s reads its own mailbox without O_DIRECT: it may miss our "
			 "mark; no takeover without --force",
			 pv->rec.node);
		return m->cached_why;
	}
	return NULL;
}

void monitor_sample(struct monitor *m, struct ha_inputs *in)
{
	uint64_t now = loop_now_ns();
	struct monitor_mbox_partner_view pv;
	struct monitor_mbox_own_view ov;

	memset(in, 0, sizeof(*in));
	in->now_ms = now / NS_PER_MS;
	in->n_links = m->n_links;
	for (unsigned i = 0; i < m->n_links; i++)
		in->hb_age_ms[i] =
		    m->links[i].have ? (now - m->links[i].change_ns) / NS_PER_MS : HA_NEVER;
	in->hb_valid = m->hb_valid;
	in->hb = m->hb;
	monitor_mbox_partner(m->mb, &pv);
	in->mbox_rc = m->has_partner_mailbox ? pv.rc : -ENOTCONN;
	in->mbox_seen = pv.seen;
	in->mbox = pv.rec;
	in->mbox_silent_ms = pv.silent_ns / NS_PER_MS;
	in->mbox_change_age_ms = pv.seen ? (now - pv.last_change_ns) / NS_PER_MS : HA_NEVER;
	in->mbox_read_ms = pv.last_read_ns / NS_PER_MS;
	in->partner_mark_valid = pv.mark_valid;
	in->partner_mark_set = pv.mark_valid && pv.mark.set;
	in->partner_mark_gen = pv.mark_valid ? pv.mark.gen : 0;
	in->mirror = m->partner_copy;
	in->partner_log_given = m->partner_log_given;
	in->own_mark = m->own_mark;
	in->own_mark_gen = m->own_mark_gen;
	in->own_conflict = m->own_conflict;
	monitor_mbox_own(m->mb, &ov);
	in->own_boot_time_ns = ov.boot_time_ns;
	in->mbox_cached = m->has_partner_mailbox ? mailbox_cached(m, &ov, &pv) : NULL;
}

/* ---- heartbeats ---- */

/* A heartbeat lands in our memory only while we drive progress, so after a
 * stall of our own the slots prove nothing: restart every link's clock. */
static void read_slots(struct monitor *m, uint64_t now)
{
	for (unsigned i = 0; i < m->n_links; i++) {
		struct link_obs *l = &m->links[i];
		uint8_t rec[MONITOR_REC_SIZE];
		struct monitor_alive a;

		memcpy(rec, m->region + (size_t)i * MONITOR_REC_SIZE, sizeof(rec));
		if (monitor_alive_decode(rec, MONITOR_REC_HEARTBEAT, &a) < 0)
			continue; /* blank, or torn by a write in flight */
		if (l->have && memcmp(l->last, rec, sizeof(rec)) == 0)
			continue;
		memcpy(l->last, rec, sizeof(rec));
		l->have = true;
		l->change_ns = now;
		if (!m->hb_valid || a.boot_gen > m->hb.boot_gen ||
		    (a.boot_gen == m->hb.boot_gen && a.counter > m->hb.counter)) {
			m->hb = a;
			m->hb_valid = true;
		}
	}
}

static void send_heartbeats(struct monitor *m)
{
	struct monitor_mbox_own_view ov;
	struct monitor_alive a = {
	    .counter = ++m->hb_counter,
	    .acked_gen = m->ha.acked_gen,
	    .state = m->ha.state,
	    .mirror = m->own_mirror,
	};

	if (!m->ops->hb_send || !m->n_links)
		return;
	monitor_mbox_own(m->mb, &ov);
	a.boot_gen = ov.boot_gen;
	snprintf(a.node, sizeof(a.node), "%s", m->node);
	monitor_alive_encode(&a, MONITOR_REC_HEARTBEAT, m->hb_out);
	for (unsigned i = 0; i < m->n_links; i++)
		m->ops->hb_send(m->arg, i, m->hb_out, sizeof(m->hb_out));
}

/* Our own stall (the tick comes back late) proves nothing against the
 * partner: restart every link's clock. Checked before any evaluation, not
 * only in the tick: after a stall the mailbox result or the wake timer may
 * run first and would judge with the stale clocks. */
static void check_late(struct monitor *m, uint64_t now)
{
	uint64_t late;

	if (!m->last_tick_ns || now - m->last_tick_ns <= m->deadline_ns / 2)
		return;
	late = now - m->last_tick_ns;
	if (late >= m->deadline_ns)
		LOG_WARN("heartbeat tick late by %llu ms: restarting the heartbeat deadlines",
			 (unsigned long long)(late / NS_PER_MS));
	else
		LOG_DEBUG("heartbeat tick late by %llu ms", (unsigned long long)(late / NS_PER_MS));
	for (unsigned i = 0; i < m->n_links; i++)
		if (m->links[i].have)
			m->links[i].change_ns = now;
	m->last_tick_ns = now;
}

static void on_tick(struct loop_timer *t)
{
	struct monitor *m = t->arg;
	uint64_t now = loop_now_ns();

	check_late(m, now);
	m->last_tick_ns = now;
	/* The slots are read four times per interval: a heartbeat's arrival
	 * is seen within a few ms, so the deadline counts from (nearly) when
	 * it landed, not from the next heartbeat tick. */
	read_slots(m, now);
	if (now - m->last_send_ns >= m->hb_ns - m->watch_ns / 2) {
		m->last_send_ns = now;
		send_heartbeats(m);
	}
	step(m);
	loop_timer_arm(m->loop, &m->tick, m->watch_ns);
}

/* ---- the state machine ---- */

static void on_wake(struct loop_timer *t)
{
	step(t->arg);
}

static void step(struct monitor *m)
{
	struct ha_inputs in;
	struct ha_output out;

	if (!m->booted)
		return;
	check_late(m, loop_now_ns());
	monitor_sample(m, &in);
	monitor_ha_step(&m->ha, &in, &out);
	exec(m, &out);
	/* The fence wait ends with a read of the partner's mailbox that starts
	 * after it: ask for one now rather than wait for the next cycle. */
	if (m->ha.state == HA_TAKEOVER && m->ha.phase == HA_PH_FENCE_WAIT &&
	    in.now_ms >= m->ha.phase_until_ms && !m->fresh_read_asked) {
		m->fresh_read_asked = true;
		monitor_mbox_check(m->mb, NULL, NULL);
	}
}

/* An action finished: tell the state machine (with the node's words for a
 * failure, if any), then do what it asks next. */
static void finish_why(struct monitor *m, enum ha_action act, int rc, const char *why)
{
	struct ha_inputs in;
	struct ha_output out;

	monitor_sample(m, &in);
	in.act_why = why;
	monitor_ha_done(&m->ha, act, rc, &in, &out);
	exec(m, &out);
}

static void finish(struct monitor *m, enum ha_action act, int rc)
{
	finish_why(m, act, rc, NULL);
}

/* What a mark of @p gen written now says about the replay: done if this
 * run wrote the proof, or the mark standing in the partner's mailbox says
 * so (a restart of ours since); a new takeover's mark says pending. */
static enum monitor_mark_replay mark_replay(struct monitor *m, uint64_t gen)
{
	struct monitor_mbox_partner_view pv;

	if (m->proof_gen == gen)
		return MONITOR_MARK_REPLAY_DONE;
	monitor_mbox_partner(m->mb, &pv);
	if (pv.mark_valid && pv.mark.gen == gen && pv.mark.replay != MONITOR_MARK_REPLAY_PENDING)
		return pv.mark.replay;
	return MONITOR_MARK_REPLAY_PENDING;
}

static void done_mark(void *arg, int rc)
{
	struct monitor *m = arg;

	if (rc < 0)
		LOG_ERROR("takeover mark gen %llu: %s", (unsigned long long)m->ha.mark_gen,
			  strerror(-rc));
	finish(m, HA_ACT_WRITE_MARK, rc);
}

static void done_clear(void *arg, int rc)
{
	struct monitor *m = arg;

	if (rc < 0)
		LOG_ERROR("clearing takeover mark gen %llu: %s", (unsigned long long)m->ha.mark_gen,
			  strerror(-rc));
	finish(m, HA_ACT_CLEAR_MARK, rc);
}

static void done_persist(void *arg, int rc)
{
	finish(arg, HA_ACT_PERSIST_ACK, rc);
}

static void publish(struct monitor *m)
{
	monitor_mbox_set_state(m->mb, m->ha.state, m->own_mirror, m->ha.acked_gen);
}

/* A takeover is counted when the state enters takeover from elsewhere than
 * a giveback (which returns there when the partner dies while draining),
 * a giveback when a giveback ends in up. */
static void count_change(struct monitor *m)
{
	enum ha_state prev = m->prev_state, now = m->ha.state;

	if (now == HA_TAKEOVER && prev != HA_TAKEOVER && prev != HA_GIVING_BACK)
		m->takeovers++;
	if (now == HA_UP && prev == HA_GIVING_BACK)
		m->givebacks++;
	m->prev_state = now;
}

static const enum ha_action node_actions[] = {
    HA_ACT_STOP_OWN,	  HA_ACT_REPLAY_PARTNER, HA_ACT_SERVE_PARTNER,
    HA_ACT_DRAIN_PARTNER, HA_ACT_START_OWN,	 HA_ACT_SERVE_OWN,
};

/* Perform what the state machine asked for. The output is a copy: a node
 * that completes an action inside its callback re-enters safely. */
static void exec(struct monitor *m, const struct ha_output *outp)
{
	struct ha_output out = *outp;
	int rc;

	if (out.changed) {
		LOG_INFO("ha: %s/%s: %s", monitor_ha_state_name(m->ha.state),
			 monitor_ha_phase_name(m->ha.phase), m->ha.reason);
		if (m->ha.phase != HA_PH_FENCE_WAIT)
			m->fresh_read_asked = false;
		if (m->ha.phase == HA_PH_REPLAYING || m->ha.phase == HA_PH_DRAINING)
			m->progress_done = m->progress_total = 0;
		publish(m);
		count_change(m);
		if (m->ops->state_changed)
			m->ops->state_changed(m->arg, &m->ha);
	}
	if (out.wake_ms != HA_NEVER) {
		uint64_t now = loop_now_ns() / NS_PER_MS;
		loop_timer_arm(m->loop, &m->wake,
			       out.wake_ms > now ? (out.wake_ms - now) * NS_PER_MS : 0);
	}
	if (out.actions & HA_ACT_WRITE_MARK) {
		LOG_WARN("writing takeover mark gen %llu into the partner's mailbox",
			 (unsigned long long)out.mark_gen);
		rc = monitor_mbox_write_mark(m->mb, out.mark_gen, true, MONITOR_MARK_REPLAY_PENDING,
					     done_mark, m);
		if (rc < 0)
			done_mark(m, rc);
	}
	if (out.actions & HA_ACT_CLEAR_MARK) {
		/* The clear keeps the proof: the owner reads it at START_OWN. */
		rc = monitor_mbox_write_mark(m->mb, out.mark_gen, false,
					     mark_replay(m, out.mark_gen), done_clear, m);
		if (rc < 0)
			done_clear(m, rc);
	}
	if (out.actions & HA_ACT_PERSIST_ACK) {
		publish(m);
		rc = monitor_mbox_sync(m->mb, done_persist, m);
		if (rc < 0)
			done_persist(m, rc);
	}
	for (size_t i = 0; i < ARRAY_SIZE(node_actions); i++) {
		if (!(out.actions & node_actions[i]))
			continue;
		LOG_INFO("ha action: %s (gen %llu)", monitor_ha_action_name(node_actions[i]),
			 (unsigned long long)out.mark_gen);
		if (m->ops->action)
			m->ops->action(m->arg, node_actions[i], out.mark_gen);
		else
			monitor_action_done(m, node_actions[i], 0);
	}
}

/* ---- mailbox and watchdog events ---- */

/* The partner's lease settings as its mailbox publishes them: said once
 * when first read (the session's start) and at every change, loudly when
 * they differ from ours (a takeover by either node then waits the larger;
 * see monitor_ha_fence_wait_ms()). */
static void note_partner_lease(struct monitor *m, const struct monitor_mbox_partner_view *pv)
{
	uint32_t l = pv->rec.lease_ms, f = pv->rec.fence_margin_ms;
	bool differed =
	    m->plog_have && (m->plog_lease != m->lease_ms || m->plog_margin != m->fence_margin_ms);

	if (!pv->seen || (m->plog_have && l == m->plog_lease && f == m->plog_margin))
		return;
	m->plog_have = true;
	m->plog_lease = l;
	m->plog_margin = f;
	if (!l)
		LOG_WARN("partner %s publishes no lease_ms (an older duet): a takeover waits "
			 "this node's lease_ms + fence_margin_ms (%u ms); both nodes must use "
			 "the same",
			 pv->rec.node, m->lease_ms + m->fence_margin_ms);
	else if (l != m->lease_ms || f != m->fence_margin_ms)
		LOG_WARN("partner %s has lease_ms %u, fence_margin_ms %u; this node %u, %u: the "
			 "settings differ, a takeover waits the larger (%llu ms)",
			 pv->rec.node, l, f, m->lease_ms, m->fence_margin_ms,
			 (unsigned long long)MAX((uint64_t)l + f,
						 (uint64_t)m->lease_ms + m->fence_margin_ms));
	else if (differed)
		LOG_INFO("partner %s: lease_ms and fence_margin_ms now match this node's",
			 pv->rec.node);
}

static void on_cycle(void *arg)
{
	struct monitor *m = arg;
	struct monitor_mbox_own_view ov;
	struct monitor_mbox_partner_view pv;

	monitor_mbox_partner(m->mb, &pv);
	note_partner_lease(m, &pv);
	monitor_mbox_own(m->mb, &ov);
	if (ov.rc == 0) {
		/* Only a good read changes what we believe about our own mark. */
		bool mark = ov.mark_valid && ov.mark.set;
		if (mark && !m->own_mark)
			LOG_ERROR("takeover mark gen %llu by %s in own mailbox",
				  (unsigned long long)ov.mark.gen, ov.mark.taker);
		m->own_mark = mark;
		if (ov.mark_valid) {
			m->own_mark_gen = ov.mark.gen;
			m->own_mark_read = true;
			m->own_mark_replay = ov.mark.replay;
		}
		m->own_conflict = ov.conflict;
	}
	if (m->io_waiting && monitor_mbox_io_allowed(m->mb)) {
		m->io_waiting = false;
		m->check_pending = false;
		if (m->ops->io_resume)
			m->ops->io_resume(m->arg);
	}
	step(m);
}

static void on_jump(void *arg, uint64_t stopped_ms)
{
	struct monitor *m = arg;

	monitor_mbox_lease_drop(m->mb);
	m->io_waiting = true;
	if (m->ops->fence_check)
		m->ops->fence_check(m->arg, stopped_ms);
	m->check_pending = true;
	monitor_mbox_check(m->mb, NULL, NULL);
}

static void boot_checked(void *arg, int rc, const struct monitor_mark *mark);

static void on_boot_retry(struct loop_timer *t)
{
	struct monitor *m = t->arg;

	if (monitor_mbox_check(m->mb, boot_checked, m) < 0)
		loop_timer_arm(m->loop, &m->boot_retry, 1000 * NS_PER_MS);
}

/* The first read of the own mailbox decides how this node starts: a mark
 * (set or cleared) newer than our last completed giveback or takeback means our
 * volumes were taken over and our log replayed: do not serve them. */
static void boot_checked(void *arg, int rc, const struct monitor_mark *mark)
{
	struct monitor *m = arg;
	struct monitor_mbox_own_view ov;
	bool taken;
	uint64_t acked;

	if (rc < 0) {
		LOG_ERROR("own mailbox unreadable at boot (%s): not serving; retrying",
			  strerror(-rc));
		loop_timer_arm(m->loop, &m->boot_retry, 1000 * NS_PER_MS);
		return;
	}
	monitor_mbox_own(m->mb, &ov);
	acked = ov.boot_acked_gen;
	/* A set mark at or below acked_gen is one we took back (ha.c). */
	taken = mark && mark->gen > acked;
	m->own_mark = mark && mark->set;
	m->own_mark_gen = mark ? mark->gen : 0;
	m->own_mark_read = mark != NULL;
	m->own_mark_replay = mark ? mark->replay : MONITOR_MARK_REPLAY_UNSAID;
	/* The start rounded up: the machine's clock is read in whole ms
	 * (monitor_sample), and rounded down boot_grace_ms could end up to
	 * 1 ms early. */
	monitor_ha_init(&m->ha, &m->hcfg, (loop_now_ns() + NS_PER_MS - 1) / NS_PER_MS, taken,
			mark ? mark->gen : 0, acked);
	m->booted = true;
	m->prev_state = m->ha.state;
	publish(m);
	if (taken)
		LOG_WARN("takeover mark gen %llu by %s (%s, %s) in own mailbox: not serving own "
			 "volumes",
			 (unsigned long long)mark->gen, mark->taker, mark->set ? "set" : "cleared",
			 mark->replay == MONITOR_MARK_REPLAY_PENDING ? "own log not replayed yet"
			 : mark->replay == MONITOR_MARK_REPLAY_DONE  ? "own log replayed"
								     : "replay not said");
	else
		LOG_INFO("boot check: no takeover mark (boot generation %llu)",
			 (unsigned long long)ov.boot_gen);
	if (m->ops->boot_checked)
		m->ops->boot_checked(m->arg, taken, mark);
	loop_timer_arm(m->loop, &m->tick, 0);
}

/* ---- public ---- */

/* The defaults are those of an empty [monitor] section (docs/FAILOVER.md,
 * "Settings"), so that a test and a node without settings agree. */
void monitor_opts_init(struct monitor_opts *o)
{
	*o = (struct monitor_opts){
	    .heartbeat_ms = 20,
	    .deadline_ms = 150,
	    .mailbox_ms = 25,
	    .mailbox_deadline_ms = 100,
	    .lease_ms = 100,
	    .fence_margin_ms = 50,
	    .watchdog_ms = 1000,
	    .auto_giveback = false,
	    .giveback_delay_ms = 5000,
	    .boot_grace_ms = 30000,
	    .watchdog_action = MONITOR_WATCHDOG_EXIT,
	};
}

static bool is_set(const char *s)
{
	return s && *s;
}

int monitor_create(const struct monitor_opts *o, struct monitor **out)
{
	struct monitor *m = calloc(1, sizeof(*m));
	struct monitor_mbox_opts mo;
	int rc;

	if (!m)
		return -ENOMEM;
	m->loop = o->loop;
	m->ops = o->ops;
	m->arg = o->arg;
	snprintf(m->node, sizeof(m->node), "%s", o->node_id);
	m->has_partner = is_set(o->partner_id);
	m->has_partner_mailbox = is_set(o->partner_shelf);
	m->hb_ns = o->heartbeat_ms * NS_PER_MS;
	m->watch_ns = MAX(m->hb_ns / 4, NS_PER_MS);
	m->deadline_ns = o->deadline_ms * NS_PER_MS;
	m->n_links = MIN(o->n_links, MONITOR_MAX_LINKS);
	for (unsigned i = 0; i < m->n_links; i++)
		snprintf(m->link_names[i], MONITOR_ID_MAX, "%s",
			 o->link_names[i] ? o->link_names[i] : "");
	m->watchdog_ms = (uint32_t)o->watchdog_ms;
	m->lease_ms = (uint32_t)o->lease_ms;
	m->fence_margin_ms = (uint32_t)o->fence_margin_ms;
	m->watchdog_action = o->watchdog_action;
	m->no_watchdog = o->no_watchdog;
	m->defer_watchdog = o->defer_watchdog;
	m->hcfg = (struct ha_config){
	    .has_partner = m->has_partner,
	    .has_partner_mailbox = m->has_partner_mailbox,
	    .deadline_ms = o->deadline_ms,
	    .mailbox_deadline_ms = o->mailbox_deadline_ms,
	    .fence_wait_ms = o->lease_ms + o->fence_margin_ms,
	    .auto_giveback = o->auto_giveback,
	    .giveback_delay_ms = o->giveback_delay_ms,
	    .boot_grace_ms = o->boot_grace_ms,
	};
	m->partner_copy = HA_MIRROR_OFF;
	m->own_mirror = HA_MIRROR_OFF;
	loop_timer_init(&m->tick, on_tick, m);
	loop_timer_init(&m->wake, on_wake, m);
	loop_timer_init(&m->boot_retry, on_boot_retry, m);
	if (posix_memalign((void **)&m->region, 64,
			   MAX(m->n_links, 1u) * (size_t)MONITOR_REC_SIZE)) {
		free(m);
		return -ENOMEM;
	}
	memset(m->region, 0, MAX(m->n_links, 1u) * (size_t)MONITOR_REC_SIZE);
	mo = (struct monitor_mbox_opts){
	    .loop = o->loop,
	    .node_id = o->node_id,
	    .shelf = o->shelf,
	    .partner_shelf = o->partner_shelf,
	    .mailbox_ms = (uint32_t)o->mailbox_ms,
	    .lease_ms = (uint32_t)o->lease_ms,
	    .fence_margin_ms = (uint32_t)o->fence_margin_ms,
	    .on_cycle = on_cycle,
	    .arg = m,
	};
	rc = monitor_mbox_open(&mo, &m->mb);
	if (rc < 0) {
		free(m->region);
		free(m);
		return rc;
	}
	if (m->has_partner && !m->has_partner_mailbox)
		LOG_WARN("[monitor] partner_shelf not set: no split-brain guard, no takeover");
	*out = m;
	return 0;
}

int monitor_start_watchdog(struct monitor *m)
{
	struct monitor_watchdog_opts wo = {
	    .loop = m->loop,
	    .watchdog_ms = m->watchdog_ms,
	    .jump_ms = MAX(m->lease_ms / 2, 10u),
	    .action = m->watchdog_action,
	    .on_jump = on_jump,
	    .arg = m,
	};

	if (m->no_watchdog || m->wd)
		return 0;
	return monitor_watchdog_start(&wo, &m->wd);
}

int monitor_start(struct monitor *m)
{
	int rc;

	if (!m->defer_watchdog) {
		rc = monitor_start_watchdog(m);
		if (rc < 0)
			return rc;
	}
	return monitor_mbox_start(m->mb, boot_checked, m);
}

void monitor_destroy(struct monitor *m)
{
	if (!m)
		return;
	monitor_watchdog_stop(m->wd);
	monitor_mbox_close(m->mb);
	loop_timer_cancel(m->loop, &m->tick);
	loop_timer_cancel(m->loop, &m->wake);
	loop_timer_cancel(m->loop, &m->boot_retry);
	free(m->region);
	free(m);
}

bool monitor_io_allowed(const struct monitor *m)
{
	return monitor_mbox_io_allowed(m->mb);
}

void monitor_io_wait(struct monitor *m)
{
	m->io_waiting = true;
	if (!m->check_pending) {
		m->check_pending = true;
		monitor_mbox_check(m->mb, NULL, NULL);
	}
}

void monitor_set_mirror(struct monitor *m, enum ha_mirror partner_copy)
{
	m->partner_copy = partner_copy;
}

void monitor_set_partner_log_given(struct monitor *m, bool given)
{
	m->partner_log_given = given;
}

int monitor_publish_mirror(struct monitor *m, enum ha_mirror own, monitor_done_cb cb, void *arg)
{
	m->own_mirror = own;
	publish(m);
	return monitor_mbox_sync(m->mb, cb, arg);
}

void monitor_hb_region(struct monitor *m, void **base, size_t *len)
{
	*base = m->region;
	*len = (size_t)m->n_links * MONITOR_REC_SIZE;
}

void monitor_hb_receive(struct monitor *m, unsigned link, const void *rec, size_t len)
{
	if (link >= m->n_links || len != MONITOR_REC_SIZE)
		return;
	memcpy(m->region + (size_t)link * MONITOR_REC_SIZE, rec, len);
}

void monitor_action_done(struct monitor *m, enum ha_action act, int rc)
{
	if (rc < 0)
		LOG_ERROR("ha action %s: %s", monitor_ha_action_name(act), strerror(-rc));
	finish(m, act, rc);
}

void monitor_action_failed(struct monitor *m, enum ha_action act, int rc, const char *why)
{
	LOG_ERROR("ha action %s: %s", monitor_ha_action_name(act), why ? why : strerror(-rc));
	finish_why(m, act, rc, why);
}

static void done_proof(void *arg, int rc)
{
	struct monitor *m = arg;
	monitor_done_cb cb = m->proof_cb;

	m->proof_cb = NULL;
	if (rc == 0)
		m->proof_gen = m->ha.mark_gen;
	else
		LOG_ERROR("takeover mark gen %llu: cannot record the replay: %s",
			  (unsigned long long)m->ha.mark_gen, strerror(-rc));
	cb(m->proof_arg, rc);
}

int monitor_mark_replayed(struct monitor *m, monitor_done_cb cb, void *arg)
{
	int rc;

	if (m->ha.state != HA_TAKEOVER || m->ha.phase != HA_PH_REPLAYING)
		return -EINVAL;
	if (m->proof_cb)
		return -EBUSY;
	m->proof_cb = cb;
	m->proof_arg = arg;
	rc = monitor_mbox_write_mark(m->mb, m->ha.mark_gen, true, MONITOR_MARK_REPLAY_DONE,
				     done_proof, m);
	if (rc < 0)
		m->proof_cb = NULL;
	return rc;
}

bool monitor_own_log_replayed(struct monitor *m)
{
	if (!m->own_mark_read)
		return true; /* no mark: nothing says otherwise (START_OWN is idempotent) */
	return m->own_mark_replay != MONITOR_MARK_REPLAY_PENDING;
}

void monitor_progress(struct monitor *m, uint64_t done_bytes, uint64_t total_bytes)
{
	m->progress_done = done_bytes;
	m->progress_total = total_bytes;
}

typedef int (*ha_command_fn)(struct ha *h, const struct ha_inputs *in, bool force,
			     struct ha_output *out, char *err, size_t errlen);

/* An operator command: refused while booting (the state machine starts
 * with the boot check), else decided by the state machine on fresh inputs. */
static int command(struct monitor *m, ha_command_fn fn, bool force, char *err, size_t errlen)
{
	struct ha_inputs in;
	struct ha_output out;
	int rc;

	if (!m->booted) {
		snprintf(err, errlen, "the monitor is still booting");
		return -EAGAIN;
	}
	monitor_sample(m, &in);
	rc = fn(&m->ha, &in, force, &out, err, errlen);
	if (rc == 0)
		exec(m, &out);
	return rc;
}

int monitor_takeover(struct monitor *m, bool force, char *err, size_t errlen)
{
	return command(m, monitor_ha_takeover, force, err, errlen);
}

int monitor_giveback(struct monitor *m, bool force, char *err, size_t errlen)
{
	return command(m, monitor_ha_giveback, force, err, errlen);
}

const struct ha *monitor_ha(const struct monitor *m)
{
	return &m->ha;
}

struct monitor_mbox *monitor_mbox_of(struct monitor *m)
{
	return m->mb;
}
