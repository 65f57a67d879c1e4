/* The HA state machine's view: names, the classification of the partner
 * from heartbeats and mailbox, and what is possible now and why (the
 * evidence checks the transitions and operator commands share).
 *
 * Apart from ha.c, which holds the transitions: everything here only reads
 * the state machine and its inputs (classify and eval_possible fill in the
 * partner and "why" fields) and never changes state or phase, so a change
 * to how the partner is judged is reviewed without the transitions, and
 * the reverse. Pure like ha.c: no I/O, time is an input.
 */
#define LOG_MODULE "ha"
#include "monitor/monitor_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

static const char *const phase_names[] = {
    "none",	"marking", "fence_wait", "replaying", "serving", "stopping",
    "starting", "acking",  "draining",	 "clearing",  "failed",
};

static const char *const partner_names[] = {
    "none", "unknown", "alive", "cut_off", "suspect", "dead",
};

const char *monitor_ha_phase_name(enum ha_phase p)
{
	return (unsigned)p < sizeof(phase_names) / sizeof(phase_names[0]) ? phase_names[p] : "?";
}

const char *monitor_ha_partner_name(enum ha_partner p)
{
	return (unsigned)p < sizeof(partner_names) / sizeof(partner_names[0]) ? partner_names[p]
									      : "?";
}

const char *monitor_ha_action_name(enum ha_action a)
{
	switch (a) {
	case HA_ACT_WRITE_MARK:
		return "write_mark";
	case HA_ACT_REPLAY_PARTNER:
		return "replay_partner";
	case HA_ACT_SERVE_PARTNER:
		return "serve_partner";
	case HA_ACT_DRAIN_PARTNER:
		return "drain_partner";
	case HA_ACT_CLEAR_MARK:
		return "clear_mark";
	case HA_ACT_STOP_OWN:
		return "stop_own";
	case HA_ACT_START_OWN:
		return "start_own";
	case HA_ACT_PERSIST_ACK:
		return "persist_ack";
	case HA_ACT_SERVE_OWN:
		return "serve_own";
	}
	return "?";
}

/* A reason or "why" field: every one is HA_REASON_MAX long, truncated. */
void ha_fmt(char *dst, const char *f, ...)
{
	va_list ap;

	va_start(ap, f);
	vsnprintf(dst, HA_REASON_MAX, f, ap);
	va_end(ap);
}
static uint64_t hb_age(const struct ha_inputs *in)
{
	uint64_t age = HA_NEVER;

	for (unsigned i = 0; i < in->n_links && i < MONITOR_MAX_LINKS; i++)
		age = MIN(age, in->hb_age_ms[i]);
	return age;
}

bool ha_hb_alive(const struct ha *h, const struct ha_inputs *in)
{
	return hb_age(in) < h->cfg.deadline_ms;
}

/* The partner's last mailbox record is older than our own last record
 * before this boot by more than the mailbox deadline: it went silent while
 * we still ran, so it was dead before we stopped (DRBD's degraded
 * wait-for-connection case), and waiting for it at boot is pointless. */
static bool partner_died_first(const struct ha *h, const struct ha_inputs *in)
{
	uint64_t margin = h->cfg.mailbox_deadline_ms * NS_PER_MS;

	return in->own_boot_time_ns && in->mbox_rc == 0 && in->mbox_seen && in->mbox.time_ns &&
	       in->mbox.time_ns + margin < in->own_boot_time_ns;
}

/* Cold boot of the pair: until the partner is heard once since we started,
 * or boot_grace_ms pass, no automatic takeover or takeback; both nodes
 * that come up within the grace serve their own volumes. A partner that
 * died before we stopped is not waited for. The time left, or 0. */
uint64_t ha_boot_grace_left(const struct ha *h, const struct ha_inputs *in)
{
	uint64_t end = h->boot_ms + h->cfg.boot_grace_ms;

	if (h->partner_seen || in->now_ms >= end || partner_died_first(h, in))
		return 0;
	return end - in->now_ms;
}

/* A mark in our mailbox that still fences us: not one we took back (at or
 * below acked_gen) nor the one a takeback in progress answers. */
bool ha_own_marked(const struct ha *h, const struct ha_inputs *in)
{
	if (!in->own_mark || in->own_mark_gen <= h->acked_gen)
		return false;
	return !(h->takeback && in->own_mark_gen <= h->takeback_gen);
}

bool ha_waits_for_us(enum ha_state s)
{
	return s == HA_TAKEN_OVER || s == HA_WAITING_FOR_GIVEBACK;
}

bool ha_serves_own(enum ha_state s)
{
	return s == HA_UP || s == HA_TAKEOVER || s == HA_GIVING_BACK;
}

static const char *age_str(uint64_t ms, char *buf, size_t len)
{
	if (ms == HA_NEVER)
		snprintf(buf, len, "never");
	else
		snprintf(buf, len, "%llu ms ago", (unsigned long long)ms);
	return buf;
}

/* Classify the partner from heartbeats and mailbox. A partner is dead only
 * when both channels prove silence; a mailbox that advances long after the
 * heartbeats stopped is a partner behind a cut interconnect. */
void ha_classify(struct ha *h, const struct ha_inputs *in)
{
	uint64_t age = hb_age(in);
	char a[32], b[32];

	if (!h->cfg.has_partner) {
		h->partner = HA_PARTNER_NONE;
		ha_fmt(h->partner_why, "no partner configured");
		return;
	}
	if (age < h->cfg.deadline_ms) {
		h->partner = HA_PARTNER_ALIVE;
		ha_fmt(h->partner_why, "heartbeat %s", age_str(age, a, sizeof(a)));
		return;
	}
	if (!h->cfg.has_partner_mailbox) {
		h->partner = age == HA_NEVER ? HA_PARTNER_UNKNOWN : HA_PARTNER_SUSPECT;
		ha_fmt(h->partner_why, "no heartbeat (last %s) and no partner_shelf to ask",
		       age_str(age, a, sizeof(a)));
		return;
	}
	if (in->mbox_rc < 0 || !in->mbox_seen) {
		h->partner = age == HA_NEVER ? HA_PARTNER_UNKNOWN : HA_PARTNER_SUSPECT;
		ha_fmt(h->partner_why, "no heartbeat (last %s); partner mailbox %s",
		       age_str(age, a, sizeof(a)),
		       in->mbox_rc < 0 ? strerror(-in->mbox_rc) : "never written");
		return;
	}
	if (in->mbox_silent_ms >= h->cfg.mailbox_deadline_ms) {
		h->partner = HA_PARTNER_DEAD;
		ha_fmt(h->partner_why,
		       "no heartbeat on any link (last %s), mailbox silent for %llu ms",
		       age_str(age, a, sizeof(a)), (unsigned long long)in->mbox_silent_ms);
		return;
	}
	if (age != HA_NEVER && age < h->cfg.deadline_ms + h->cfg.mailbox_deadline_ms) {
		h->partner = HA_PARTNER_SUSPECT;
		ha_fmt(h->partner_why,
		       "no heartbeat on any link for %llu ms; mailbox still advancing",
		       (unsigned long long)age);
		return;
	}
	h->partner = HA_PARTNER_CUT_OFF;
	ha_fmt(h->partner_why,
	       "alive behind a cut interconnect: no heartbeat on any link (last %s), mailbox "
	       "advanced %s",
	       age_str(age, a, sizeof(a)), age_str(in->mbox_change_age_ms, b, sizeof(b)));
}

/* What the partner last published durably: its mailbox record. A fresher
 * heartbeat saying "degraded" also counts, never one saying "in sync". */
static enum ha_mirror partner_mirror(const struct ha_inputs *in)
{
	if (in->hb_valid && in->hb.mirror == HA_MIRROR_DEGRADED)
		return HA_MIRROR_DEGRADED;
	return in->mbox_seen ? in->mbox.mirror : HA_MIRROR_OFF;
}

/* Would a takeover lose an acknowledged write? NULL when it would not. */
const char *ha_mirror_problem(const struct ha_inputs *in, char *buf, size_t len)
{
	if (in->partner_log_given)
		return NULL; /* a shelf handover's hold, our copy complete */
	if (in->mirror != HA_MIRROR_IN_SYNC) {
		snprintf(buf, len, "our copy of the partner's log is %s",
			 monitor_ha_mirror_name(in->mirror));
		return buf;
	}
	if (partner_mirror(in) != HA_MIRROR_IN_SYNC) {
		snprintf(buf, len, "the partner reported its mirror %s",
			 monitor_ha_mirror_name(partner_mirror(in)));
		return buf;
	}
	return NULL;
}

/* Can the partner's mailbox take a mark at all (even forced)? */
bool ha_mailbox_writable(const struct ha_inputs *in)
{
	return in->mbox_rc == 0 || in->mbox_rc == -EBADMSG || in->mbox_rc == -ENODATA ||
	       in->mbox_rc == -EPROTO || in->mbox_rc == -EINVAL;
}

void ha_eval_possible(struct ha *h, const struct ha_inputs *in)
{
	char buf[HA_REASON_MAX];
	const char *p;

	h->takeover_possible = false;
	switch (h->state) {
	case HA_UP:
		break;
	case HA_TAKEOVER:
		ha_fmt(h->why, "already taking over the partner (%s)",
		       monitor_ha_phase_name(h->phase));
		return;
	case HA_GIVING_BACK:
		ha_fmt(h->why, "giving back the partner's volumes (%s)",
		       monitor_ha_phase_name(h->phase));
		return;
	case HA_TAKEN_OVER:
	case HA_WAITING_FOR_GIVEBACK:
		if (h->partner == HA_PARTNER_DEAD)
			ha_fmt(
			    h->why,
			    "the partner holds our volumes but is dead: taking them back (%.120s)",
			    h->partner_why);
		else
			ha_fmt(
			    h->why,
			    "taken over by the partner (gen %llu): waiting for giveback; takeover "
			    "--force takes our volumes back and fences it",
			    (unsigned long long)h->mark_gen);
		return;
	default:
		return;
	}
	if (!h->cfg.has_partner) {
		ha_fmt(h->why, "no partner configured");
		return;
	}
	if (!h->cfg.has_partner_mailbox) {
		ha_fmt(h->why, "no [monitor] partner_shelf: no mailbox to fence the partner with");
		return;
	}
	if (in->mbox_rc < 0) {
		ha_fmt(h->why, "partner mailbox unreadable: %s", strerror(-in->mbox_rc));
		return;
	}
	if (in->mbox_cached) {
		ha_fmt(h->why, "%.190s", in->mbox_cached);
		return;
	}
	if (in->mbox_seen && !ha_serves_own(in->mbox.state)) {
		ha_fmt(h->why, "the partner serves nothing (%s)",
		       monitor_ha_state_name(in->mbox.state));
		return;
	}
	p = ha_mirror_problem(in, buf, sizeof(buf));
	if (p) {
		ha_fmt(h->why, "%.120s: takeover --force would lose acknowledged writes", p);
		return;
	}
	h->takeover_possible = true;
	switch (h->partner) {
	case HA_PARTNER_ALIVE:
		ha_fmt(h->why, "partner alive, mirror in sync: a planned takeover is possible");
		break;
	case HA_PARTNER_CUT_OFF:
		ha_fmt(h->why, "partner %.150s: no automatic takeover", h->partner_why);
		break;
	case HA_PARTNER_DEAD:
		if (ha_boot_grace_left(h, in))
			ha_fmt(
			    h->why,
			    "partner dead, mirror in sync; not heard since boot: waiting %llu ms "
			    "more (boot_grace_ms) before an automatic takeover",
			    (unsigned long long)ha_boot_grace_left(h, in));
		else
			ha_fmt(h->why, "partner dead, mirror in sync");
		break;
	default:
		ha_fmt(h->why, "partner %s: %.150s", monitor_ha_partner_name(h->partner),
		       h->partner_why);
		break;
	}
}

/* What fencing the partner needs, for takeover and takeback alike: its
 * mailbox configured and writable. 0, or -errno with @p err set. */
int ha_can_fence(const struct ha *h, const struct ha_inputs *in, char *err, size_t errlen)
{
	if (!h->cfg.has_partner_mailbox) {
		snprintf(err, errlen,
			 "no [monitor] partner_shelf: no mailbox to fence the partner");
		return -ENOTCONN;
	}
	if (!ha_mailbox_writable(in)) {
		snprintf(err, errlen, "partner mailbox unreachable: %s", strerror(-in->mbox_rc));
		return -EIO;
	}
	return 0;
}
