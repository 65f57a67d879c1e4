/* The HA state machine: pure logic over sampled inputs, no I/O and no
 * clock of its own, so every scenario of docs/FAILOVER.md is a unit test.
 *
 *   up --(partner dead, mirror in sync | takeover [--force])--> takeover
 *      takeover: marking -> fence_wait -> replaying -> serving
 *   takeover/serving --(giveback | partner waiting, auto)--> giving_back
 *      giving_back: draining -> clearing -> up
 *   any --(mark in own mailbox)--> taken_over (stop own volumes)
 *   taken_over --(heartbeats, partner serving us)--> waiting_for_giveback
 *   taken_over | waiting_for_giveback --(mark cleared)--> starting -> acking -> up
 *   taken_over | waiting_for_giveback --(taker dead | takeover --force)--> takeback:
 *      takeover: marking -> fence_wait -> starting -> acking -> (own volumes
 *      served) and the taker's volumes decided as after any fence wait
 *   giving_back --(partner dies before it started)--> takeover again:
 *      draining: replaying -> serving (the mark never left)
 *      clearing, then up: marking -> fence_wait -> replaying -> serving
 *
 * Takeback: the taker wrote our volumes straight into our shelf, with no
 * NVRAM log (its datapath for them has none), and replayed our log before
 * that. So nothing is replayed for our volumes: our own log is dropped as
 * at a giveback (replaying it would undo the taker's writes). The taker's
 * mark stays in our mailbox (its sector is the taker's); our acked_gen at
 * or above its generation says it is answered.
 *
 * Given-back volumes start in this order so that a crash anywhere in it is
 * safe: drop the own log (replayed by the partner), record acked_gen, then
 * serve. A restart before acked_gen is durable drops the log again, which
 * is empty; a restart after it never drops a log holding new writes.
 *
 * The view (names, how the partner is classified, what is possible and
 * why) is in ha_view.c; this file holds the transitions.
 */
#define LOG_MODULE "ha"
#include "monitor/monitor_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

static void out_init(const struct ha *h, struct ha_output *out)
{
	memset(out, 0, sizeof(*out));
	out->wake_ms = HA_NEVER;
	out->mark_gen = h->mark_gen;
}

/* Every change of state or phase goes through here, with its reason. */
static void enter(struct ha *h, const struct ha_inputs *in, struct ha_output *out, enum ha_state st,
		  enum ha_phase ph)
{
	h->state = st;
	h->phase = ph;
	h->since_ms = in->now_ms;
	out->changed = true;
}

/* An action of the current state failed: the state stays, the phase is
 * FAILED, and the operator decides. False when @p rc is not an error. */
static bool failed(struct ha *h, const struct ha_inputs *in, struct ha_output *out, int rc,
		   const char *what)
{
	if (rc >= 0)
		return false;
	ha_fmt(h->reason, "%s: %s", what, in->act_why ? in->act_why : strerror(-rc));
	enter(h, in, out, h->state, HA_PH_FAILED);
	return true;
}

static uint64_t next_gen(const struct ha *h, const struct ha_inputs *in)
{
	uint64_t g = h->mark_gen;

	if (in->partner_mark_valid)
		g = MAX(g, in->partner_mark_gen);
	if (in->mbox_seen)
		g = MAX(g, in->mbox.acked_gen);
	return g + 1;
}

void monitor_ha_init(struct ha *h, const struct ha_config *c, uint64_t now_ms, bool taken_over,
		     uint64_t mark_gen, uint64_t acked_gen)
{
	memset(h, 0, sizeof(*h));
	h->cfg = *c;
	if (!h->cfg.retry_ms)
		h->cfg.retry_ms = 1000;
	h->state = taken_over ? HA_TAKEN_OVER : HA_UP;
	h->phase = HA_PH_NONE;
	h->partner = c->has_partner ? HA_PARTNER_UNKNOWN : HA_PARTNER_NONE;
	h->since_ms = now_ms;
	h->mark_gen = mark_gen;
	h->acked_gen = acked_gen;
	h->waiting_since_ms = HA_NEVER;
	h->boot_ms = now_ms;
	if (taken_over)
		ha_fmt(h->reason, "takeover mark gen %llu found at boot: waiting for giveback",
		       (unsigned long long)mark_gen);
	else
		ha_fmt(h->reason, "started");
	ha_fmt(h->why, "starting");
	ha_fmt(h->partner_why, "no evidence yet");
}

uint64_t monitor_ha_fence_wait_ms(const struct ha *h, const struct ha_inputs *in)
{
	uint64_t partner = 0;

	if (in->mbox_seen && in->mbox.lease_ms)
		partner = (uint64_t)in->mbox.lease_ms + in->mbox.fence_margin_ms;
	return MAX(h->cfg.fence_wait_ms, partner);
}

static void start_takeover(struct ha *h, const struct ha_inputs *in, struct ha_output *out,
			   bool forced)
{
	h->mark_gen = next_gen(h, in);
	h->forced = forced;
	h->resume = false;
	h->takeback = false;
	enter(h, in, out, HA_TAKEOVER, HA_PH_MARKING);
	out->actions |= HA_ACT_WRITE_MARK;
	out->mark_gen = h->mark_gen;
}

/* Take our own volumes back from the partner that holds them: fence it with
 * our mark first, exactly as a takeover does; after the fence wait our
 * volumes start as at a giveback, then the partner's are decided as after
 * any fence wait (served only if our copy of its log is complete). */
static void start_takeback(struct ha *h, const struct ha_inputs *in, struct ha_output *out,
			   bool forced)
{
	uint64_t taken = MAX(h->mark_gen, in->own_mark ? in->own_mark_gen : 0);

	h->mark_gen = taken; /* ours must be newer */
	start_takeover(h, in, out, forced);
	h->takeback = true;
	h->takeback_gen = taken;
}

/* A mark in our own mailbox: the partner has taken us over. Stop at once. */
static bool check_fenced(struct ha *h, const struct ha_inputs *in, struct ha_output *out)
{
	if (h->state == HA_TAKEN_OVER || h->state == HA_WAITING_FOR_GIVEBACK)
		return false;
	if (!ha_own_marked(h, in) && !in->own_conflict)
		return false;
	h->takeback = false;
	h->resume = false;
	h->resume_gen = 0;
	if (in->own_conflict)
		ha_fmt(h->reason, "another writer uses this node's mailbox: stopped serving");
	else
		ha_fmt(h->reason, "takeover mark gen %llu found in own mailbox: stopped serving",
		       (unsigned long long)in->own_mark_gen);
	h->mark_gen = in->own_mark_gen;
	enter(h, in, out, HA_TAKEN_OVER, HA_PH_STOPPING);
	out->actions |= HA_ACT_STOP_OWN;
	return true;
}

/* Our giveback of gen resume_gen (from serving, to a partner that waited)
 * cleared the mark, and the partner's last record says it never acked it:
 * it never started its volumes, so nothing newer than what we served
 * exists and taking them again loses nothing. */
static bool gave_back_unstarted(const struct ha *h, const struct ha_inputs *in)
{
	return h->resume_gen && h->resume_gen == h->mark_gen && in->mbox_rc == 0 &&
	       !in->mbox_cached && in->mbox_seen && ha_waits_for_us(in->mbox.state) &&
	       in->mbox.acked_gen < h->resume_gen && in->partner_mark_valid &&
	       in->partner_mark_gen == h->resume_gen;
}

static void step_up(struct ha *h, const struct ha_inputs *in, struct ha_output *out)
{
	char buf[HA_REASON_MAX];

	if (h->phase == HA_PH_FAILED && in->now_ms < h->phase_until_ms) {
		out->wake_ms = h->phase_until_ms;
		return;
	}
	if (in->partner_mark_valid && in->partner_mark_set &&
	    !(in->mbox_seen && in->mbox.acked_gen >= in->partner_mark_gen)) {
		/* Our mark stands in the partner's mailbox (we restarted during a
		 * takeover, or a write was reported failed yet landed): the
		 * partner is fenced or will be. Wait out its lease again, then go
		 * on; replay is idempotent. */
		h->mark_gen = MAX(h->mark_gen, in->partner_mark_gen);
		/* The takeover was decided (its checks passed, or it was forced)
		 * before we restarted; the fenced partner no longer publishes a
		 * mirror state worth checking, and nobody else will serve. */
		/* Not so after a takeback (the taker's mark answered in our
		 * mailbox): ours only fenced the taker, whose volumes are served
		 * only if the checks after the fence wait pass. */
		h->forced = !(in->own_mark && in->own_mark_gen <= h->acked_gen);
		h->takeback = false;
		h->resume = false;
		ha_fmt(h->reason,
		       "our takeover mark gen %llu stands in the partner's mailbox: resuming",
		       (unsigned long long)h->mark_gen);
		enter(h, in, out, HA_TAKEOVER, HA_PH_FENCE_WAIT);
		h->phase_until_ms = in->now_ms + monitor_ha_fence_wait_ms(h, in) + 1;
		out->wake_ms = h->phase_until_ms;
		return;
	}
	if (h->partner == HA_PARTNER_DEAD && gave_back_unstarted(h, in)) {
		uint64_t g = h->mark_gen;

		ha_fmt(h->reason,
		       "the partner died after our giveback (gen %llu) before it started its "
		       "volumes: taking them over again",
		       (unsigned long long)g);
		start_takeover(h, in, out, false);
		h->resume = true;
		h->resume_gen = g;
		return;
	}
	if (h->partner != HA_PARTNER_DEAD || !h->takeover_possible)
		return;
	if (ha_mirror_problem(in, buf, sizeof(buf)))
		return;
	if (ha_boot_grace_left(h, in)) {
		out->wake_ms = in->now_ms + ha_boot_grace_left(h, in);
		return;
	}
	ha_fmt(h->reason, "automatic takeover: %.180s", h->partner_why);
	start_takeover(h, in, out, false);
}

/* The partner is fenced: serve its volumes, or say why not. @p pre starts
 * the reason (a takeback has served our own volumes already). */
static void after_fence(struct ha *h, const struct ha_inputs *in, struct ha_output *out,
			const char *pre)
{
	char buf[HA_REASON_MAX];
	const char *p = NULL;

	if (h->resume) {
		/* Its final record: still waiting, never acked our giveback. */
		if (in->mbox_rc < 0 || !in->mbox_seen || !ha_waits_for_us(in->mbox.state) ||
		    in->mbox.acked_gen >= h->resume_gen) {
			snprintf(buf, sizeof(buf),
				 "the partner may have started its volumes after our giveback");
			p = buf;
		}
	} else if (!h->forced) {
		if (in->mbox_rc < 0) {
			snprintf(buf, sizeof(buf), "the partner's mailbox is unreadable (%s)",
				 strerror(-in->mbox_rc));
			p = buf;
		} else {
			p = ha_mirror_problem(in, buf, sizeof(buf));
		}
	}
	h->resume = false;
	h->resume_gen = 0;
	if (p) {
		ha_fmt(h->reason,
		       "%stakeover stopped after fencing: %.100s; giveback returns the partner's "
		       "volumes, takeover --force serves our copy",
		       pre, p);
		enter(h, in, out, HA_TAKEOVER, HA_PH_FAILED);
		return;
	}
	ha_fmt(h->reason, "%spartner fenced (gen %llu): replaying its mirror", pre,
	       (unsigned long long)h->mark_gen);
	enter(h, in, out, HA_TAKEOVER, HA_PH_REPLAYING);
	out->actions |= HA_ACT_REPLAY_PARTNER;
}

/* After the partner's lease has run out, read its final record: a partner
 * that published "degraded" before it was fenced acknowledged writes we
 * lack, so its volumes are not served from our copy unless forced. */
static void step_fence_wait(struct ha *h, const struct ha_inputs *in, struct ha_output *out)
{
	if (in->now_ms < h->phase_until_ms) {
		out->wake_ms = h->phase_until_ms;
		return;
	}
	if (!h->forced && (in->mbox_rc < 0 || in->mbox_read_ms < h->phase_until_ms))
		return; /* the owner reads the partner's mailbox again, then steps */
	if (h->takeback) {
		ha_fmt(h->reason,
		       "taker fenced (gen %llu): starting own volumes (taking back gen %llu)",
		       (unsigned long long)h->mark_gen, (unsigned long long)h->takeback_gen);
		enter(h, in, out, HA_TAKEOVER, HA_PH_STARTING);
		out->actions |= HA_ACT_START_OWN;
		out->mark_gen = h->takeback_gen;
		return;
	}
	after_fence(h, in, out, "");
}

/* A giveback starts. Only one from serving, to a partner that waits, is
 * resumed if the partner dies before it starts: a forced one to a dead
 * partner is what the operator asked for, and from a failed takeover we
 * never served (our copy of the partner's log was not replayed). */
static void start_giveback(struct ha *h, bool partner_waits)
{
	h->resume_gen = partner_waits && h->phase == HA_PH_SERVING ? h->mark_gen : 0;
	h->gb_abandon = false;
	h->clear_sent = false;
}

/* The partner died while we gave its volumes back, before the mark was
 * cleared: it never had a lease since our takeover, so we serve them
 * again at once (the replay finds our copy retired: nothing to redo). */
static void resume_serving(struct ha *h, const struct ha_inputs *in, struct ha_output *out)
{
	ha_fmt(h->reason,
	       "the partner died during our giveback (gen %llu, mark still set): serving its "
	       "volumes again",
	       (unsigned long long)h->mark_gen);
	h->resume_gen = 0;
	h->gb_abandon = false;
	enter(h, in, out, HA_TAKEOVER, HA_PH_REPLAYING);
	out->actions |= HA_ACT_REPLAY_PARTNER;
}

/* Giving back: a partner that dies before it started its volumes gets
 * them taken again instead of left unserved. */
static void step_giving_back(struct ha *h, const struct ha_inputs *in, struct ha_output *out)
{
	if (h->partner != HA_PARTNER_DEAD || !h->resume_gen || h->resume_gen != h->mark_gen)
		return;
	if (h->phase == HA_PH_DRAINING && !h->gb_abandon) {
		h->gb_abandon = true;
		ha_fmt(h->reason,
		       "the partner died during the drain (%.120s): serving its volumes again once "
		       "the drain ends",
		       h->partner_why);
		out->changed = true;
	} else if (h->phase == HA_PH_FAILED && !h->clear_sent) {
		resume_serving(h, in, out);
	} else if (h->phase == HA_PH_FAILED) {
		/* The clear may have landed: fence again, as after a clear. */
		uint64_t g = h->mark_gen;

		ha_fmt(h->reason,
		       "the partner died during our giveback (gen %llu) after the clear was sent: "
		       "taking its volumes over again",
		       (unsigned long long)g);
		start_takeover(h, in, out, false);
		h->resume = true;
		h->resume_gen = g;
	}
}

static void step_serving(struct ha *h, const struct ha_inputs *in, struct ha_output *out)
{
	bool waiting =
	    ha_hb_alive(h, in) && in->hb_valid && in->hb.state == HA_WAITING_FOR_GIVEBACK;

	if (!waiting) {
		h->waiting_since_ms = HA_NEVER;
		return;
	}
	if (h->waiting_since_ms == HA_NEVER)
		h->waiting_since_ms = in->now_ms;
	if (!h->cfg.auto_giveback)
		return;
	if (in->now_ms - h->waiting_since_ms < h->cfg.giveback_delay_ms) {
		out->wake_ms = h->waiting_since_ms + h->cfg.giveback_delay_ms;
		return;
	}
	ha_fmt(h->reason, "automatic giveback: partner waiting for %llu ms",
	       (unsigned long long)(in->now_ms - h->waiting_since_ms));
	start_giveback(h, true);
	enter(h, in, out, HA_GIVING_BACK, HA_PH_DRAINING);
	out->actions |= HA_ACT_DRAIN_PARTNER;
}

static void step_taken_over(struct ha *h, const struct ha_inputs *in, struct ha_output *out)
{
	if (h->phase == HA_PH_STOPPING || h->phase == HA_PH_STARTING || h->phase == HA_PH_ACKING ||
	    h->phase == HA_PH_FAILED)
		return;
	if (!ha_own_marked(h, in) && !in->own_conflict) {
		/* The mark is cleared: our log was replayed by the partner at
		 * this generation, and our volumes are durable on our shelf. */
		h->mark_gen = MAX(h->mark_gen, in->own_mark_gen);
		ha_fmt(h->reason, "takeover mark gen %llu cleared: starting own volumes",
		       (unsigned long long)h->mark_gen);
		enter(h, in, out, h->state, HA_PH_STARTING);
		out->actions |= HA_ACT_START_OWN;
		out->mark_gen = h->mark_gen;
		return;
	}
	if (in->own_mark)
		h->mark_gen = MAX(h->mark_gen, in->own_mark_gen);
	/* A mailbox read through a page cache proves no silence (main's rule
	 * for takeover): then only takeover --force takes our volumes back. */
	if (h->partner == HA_PARTNER_DEAD && !in->own_conflict && !in->mbox_cached &&
	    ha_mailbox_writable(in) && in->now_ms >= h->phase_until_ms &&
	    ha_boot_grace_left(h, in)) {
		out->wake_ms = in->now_ms + ha_boot_grace_left(h, in);
	} else if (h->partner == HA_PARTNER_DEAD && !in->own_conflict && !in->mbox_cached &&
		   ha_mailbox_writable(in) && in->now_ms >= h->phase_until_ms) {
		ha_fmt(h->reason,
		       "automatic takeback: the partner holds our volumes but is dead: %.140s",
		       h->partner_why);
		start_takeback(h, in, out, false);
		return;
	}
	/* A partner giving back is still in touch and still holds our volumes. */
	bool ready = ha_hb_alive(h, in) && in->hb_valid &&
		     (in->hb.state == HA_TAKEOVER || in->hb.state == HA_GIVING_BACK);
	if (h->state == HA_TAKEN_OVER && ready) {
		ha_fmt(h->reason, "in touch with the partner, which serves our volumes");
		enter(h, in, out, HA_WAITING_FOR_GIVEBACK, HA_PH_NONE);
	} else if (h->state == HA_WAITING_FOR_GIVEBACK && !ready) {
		ha_fmt(h->reason, "lost touch with the partner (%.150s)", h->partner_why);
		enter(h, in, out, HA_TAKEN_OVER, HA_PH_NONE);
	}
}

void monitor_ha_step(struct ha *h, const struct ha_inputs *in, struct ha_output *out)
{
	out_init(h, out);
	if (in->hb_valid && ha_hb_alive(h, in))
		h->partner_seen = true;
	ha_classify(h, in);
	if (!check_fenced(h, in, out)) {
		switch (h->state) {
		case HA_UP:
			ha_eval_possible(h, in);
			step_up(h, in, out);
			break;
		case HA_TAKEOVER:
			if (h->phase == HA_PH_FENCE_WAIT)
				step_fence_wait(h, in, out);
			else if (h->phase == HA_PH_SERVING)
				step_serving(h, in, out);
			break;
		case HA_TAKEN_OVER:
		case HA_WAITING_FOR_GIVEBACK:
			step_taken_over(h, in, out);
			break;
		case HA_GIVING_BACK:
			step_giving_back(h, in, out);
			break;
		default:
			break;
		}
	}
	ha_eval_possible(h, in);
}

/* `takeover` on a taken-over node takes our volumes back. Without --force
 * only from a dead taker; --force fences a live one too, which stops all
 * its volumes (ours it served, and its own, which are then served only if
 * our copy of its log is complete). */
static int takeback_command(struct ha *h, const struct ha_inputs *in, bool force,
			    struct ha_output *out, char *err, size_t errlen)
{
	int rc;

	if (!ha_own_marked(h, in)) {
		snprintf(err, errlen, "the takeover mark is cleared: our volumes are starting");
		return -EBUSY;
	}
	rc = ha_can_fence(h, in, err, errlen);
	if (rc < 0)
		return rc;
	if (!force && in->mbox_cached) {
		snprintf(err, errlen, "%.150s: takeover --force takes our volumes back",
			 in->mbox_cached);
		return -EAGAIN;
	}
	if (!force && h->partner != HA_PARTNER_DEAD) {
		snprintf(err, errlen,
			 "the partner holds our volumes and is %s (%.100s): takeover --force "
			 "takes them back and fences it, stopping all its volumes",
			 monitor_ha_partner_name(h->partner), h->partner_why);
		return -EAGAIN;
	}
	ha_fmt(h->reason, "takeback %s by the operator (partner %s)", force ? "forced" : "asked",
	       monitor_ha_partner_name(h->partner));
	start_takeback(h, in, out, force);
	ha_eval_possible(h, in);
	return 0;
}

int monitor_ha_takeover(struct ha *h, const struct ha_inputs *in, bool force, struct ha_output *out,
			char *err, size_t errlen)
{
	char buf[HA_REASON_MAX];
	const char *p;
	int rc;

	out_init(h, out);
	ha_classify(h, in);
	if (h->state == HA_TAKEOVER && force &&
	    (h->phase == HA_PH_FENCE_WAIT || h->phase == HA_PH_FAILED)) {
		/* The partner is fenced already; serve what our copy has. */
		h->forced = true;
		ha_fmt(h->reason, "takeover forced by the operator");
		if (h->phase == HA_PH_FAILED) {
			enter(h, in, out, HA_TAKEOVER, HA_PH_REPLAYING);
			out->actions |= HA_ACT_REPLAY_PARTNER;
		}
		return 0;
	}
	if (ha_waits_for_us(h->state) && h->phase == HA_PH_NONE)
		return takeback_command(h, in, force, out, err, errlen);
	if (h->state != HA_UP) {
		snprintf(err, errlen, "cannot take over while %s (%s)",
			 monitor_ha_state_name(h->state), monitor_ha_phase_name(h->phase));
		return -EBUSY;
	}
	if (!h->cfg.has_partner) {
		snprintf(err, errlen, "no partner configured");
		return -ENOTCONN;
	}
	rc = ha_can_fence(h, in, err, errlen);
	if (rc < 0)
		return rc;
	if (!force) {
		if (in->mbox_rc < 0) {
			snprintf(err, errlen, "partner mailbox unreadable (%s): use --force",
				 strerror(-in->mbox_rc));
			return -EAGAIN;
		}
		if (in->mbox_seen && !ha_serves_own(in->mbox.state)) {
			snprintf(err, errlen, "the partner serves nothing (%s)",
				 monitor_ha_state_name(in->mbox.state));
			return -EAGAIN;
		}
		if (in->mbox_cached) {
			snprintf(err, errlen, "%s", in->mbox_cached);
			return -EAGAIN;
		}
		p = ha_mirror_problem(in, buf, sizeof(buf));
		if (p) {
			snprintf(err, errlen,
				 "%s: a takeover would lose acknowledged writes; --force does it "
				 "anyway",
				 p);
			return -EAGAIN;
		}
	}
	ha_fmt(h->reason, "%s by the operator (partner %s)",
	       force ? "takeover forced" : "planned takeover", monitor_ha_partner_name(h->partner));
	start_takeover(h, in, out, force);
	ha_eval_possible(h, in);
	return 0;
}

int monitor_ha_giveback(struct ha *h, const struct ha_inputs *in, bool force, struct ha_output *out,
			char *err, size_t errlen)
{
	out_init(h, out);
	ha_classify(h, in);
	if (h->state == HA_GIVING_BACK && h->phase == HA_PH_FAILED) {
		h->gb_abandon = false;
		ha_fmt(h->reason, "giveback retried by the operator");
		enter(h, in, out, HA_GIVING_BACK, HA_PH_DRAINING);
		out->actions |= HA_ACT_DRAIN_PARTNER;
		return 0;
	}
	if (h->state != HA_TAKEOVER || (h->phase != HA_PH_SERVING && h->phase != HA_PH_FAILED &&
					h->phase != HA_PH_FENCE_WAIT)) {
		snprintf(err, errlen, "nothing to give back (%s, %s)",
			 monitor_ha_state_name(h->state), monitor_ha_phase_name(h->phase));
		return -EINVAL;
	}
	bool ready = ha_hb_alive(h, in) && in->hb_valid && in->hb.state == HA_WAITING_FOR_GIVEBACK;
	if (!ready && !force && h->phase == HA_PH_SERVING) {
		snprintf(err, errlen,
			 "the partner is not waiting for giveback (%s); --force gives back anyway",
			 h->partner_why);
		return -EAGAIN;
	}
	ha_fmt(h->reason, "giveback by the operator");
	start_giveback(h, ready);
	enter(h, in, out, HA_GIVING_BACK, HA_PH_DRAINING);
	out->actions |= HA_ACT_DRAIN_PARTNER;
	ha_eval_possible(h, in);
	return 0;
}

void monitor_ha_done(struct ha *h, enum ha_action act, int rc, const struct ha_inputs *in,
		     struct ha_output *out)
{
	out_init(h, out);
	ha_classify(h, in);
	switch (act) {
	case HA_ACT_WRITE_MARK:
		if (h->state != HA_TAKEOVER || h->phase != HA_PH_MARKING)
			break;
		if (rc < 0 && h->takeback) {
			/* Nothing changed: we are still fenced; try again later. */
			ha_fmt(h->reason, "cannot write the takeback mark: %s", strerror(-rc));
			h->takeback = false;
			h->mark_gen = h->takeback_gen;
			enter(h, in, out, HA_TAKEN_OVER, HA_PH_NONE);
			h->phase_until_ms = in->now_ms + h->cfg.retry_ms;
			out->wake_ms = h->phase_until_ms;
			break;
		}
		if (rc < 0) {
			ha_fmt(h->reason, "cannot write the takeover mark: %s", strerror(-rc));
			enter(h, in, out, HA_UP, HA_PH_FAILED);
			h->phase_until_ms = in->now_ms + h->cfg.retry_ms;
			out->wake_ms = h->phase_until_ms;
			break;
		}
		ha_fmt(h->reason,
		       "takeover mark gen %llu written: waiting %llu ms for the partner's "
		       "lease to run out",
		       (unsigned long long)h->mark_gen,
		       (unsigned long long)monitor_ha_fence_wait_ms(h, in));
		enter(h, in, out, HA_TAKEOVER, HA_PH_FENCE_WAIT);
		/* +1: times are whole milliseconds, the wait must be full. */
		h->phase_until_ms = in->now_ms + monitor_ha_fence_wait_ms(h, in) + 1;
		out->wake_ms = h->phase_until_ms;
		break;
	case HA_ACT_REPLAY_PARTNER:
		if (h->state != HA_TAKEOVER || h->phase != HA_PH_REPLAYING)
			break;
		if (failed(h, in, out, rc, "replay of the partner's mirror failed"))
			break;
		ha_fmt(h->reason, "partner's mirror replayed: serving its volumes");
		enter(h, in, out, HA_TAKEOVER, HA_PH_SERVING);
		out->actions |= HA_ACT_SERVE_PARTNER;
		h->waiting_since_ms = HA_NEVER;
		break;
	case HA_ACT_SERVE_PARTNER:
		if (h->state == HA_TAKEOVER)
			failed(h, in, out, rc, "cannot serve the partner's volumes");
		break;
	case HA_ACT_DRAIN_PARTNER:
		if (h->state != HA_GIVING_BACK || h->phase != HA_PH_DRAINING)
			break;
		if (h->gb_abandon || (h->partner == HA_PARTNER_DEAD && h->resume_gen &&
				      h->resume_gen == h->mark_gen)) {
			resume_serving(h, in, out);
			break;
		}
		if (failed(h, in, out, rc, "drain of the partner's volumes failed"))
			break;
		ha_fmt(h->reason, "partner's volumes durable: clearing the mark");
		enter(h, in, out, HA_GIVING_BACK, HA_PH_CLEARING);
		out->actions |= HA_ACT_CLEAR_MARK;
		h->clear_sent = true;
		break;
	case HA_ACT_CLEAR_MARK:
		if (h->state != HA_GIVING_BACK || h->phase != HA_PH_CLEARING)
			break;
		if (failed(h, in, out, rc, "cannot clear the takeover mark"))
			break;
		ha_fmt(h->reason, "gave back the partner's volumes (gen %llu)",
		       (unsigned long long)h->mark_gen);
		enter(h, in, out, HA_UP, HA_PH_NONE);
		break;
	case HA_ACT_STOP_OWN:
		if (h->phase == HA_PH_STOPPING)
			enter(h, in, out, h->state, HA_PH_NONE);
		break;
	case HA_ACT_START_OWN:
		if (h->phase != HA_PH_STARTING)
			break;
		if (failed(h, in, out, rc, "cannot start own volumes"))
			break;
		h->acked_gen = h->takeback ? h->takeback_gen : h->mark_gen;
		enter(h, in, out, h->state, HA_PH_ACKING);
		out->actions |= HA_ACT_PERSIST_ACK;
		out->mark_gen = h->acked_gen;
		break;
	case HA_ACT_PERSIST_ACK:
		if (h->phase != HA_PH_ACKING)
			break;
		if (failed(h, in, out, rc, "cannot record the giveback in the own mailbox"))
			break;
		if (h->takeback) {
			char pre[HA_REASON_MAX];

			snprintf(pre, sizeof(pre), "own volumes taken back (gen %llu); ",
				 (unsigned long long)h->takeback_gen);
			h->takeback = false;
			h->forced = false; /* forced was about our volumes, not its */
			out->actions |= HA_ACT_SERVE_OWN;
			after_fence(h, in, out, pre);
			break;
		}
		ha_fmt(h->reason, "own volumes given back (gen %llu)",
		       (unsigned long long)h->mark_gen);
		enter(h, in, out, HA_UP, HA_PH_NONE);
		out->actions |= HA_ACT_SERVE_OWN;
		break;
	case HA_ACT_SERVE_OWN:
		if (rc < 0)
			ha_fmt(h->reason, "cannot serve own volumes: %s", strerror(-rc));
		break;
	}
	ha_classify(h, in);
	ha_eval_possible(h, in);
}
