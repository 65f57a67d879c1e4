/* The lanes' rules (docs/CCM.md, "Lanes"): when a lane counts as alive and
 * how much it may carry. Liveness: the deadline timer, the probes (a read
 * of the partner's session region every probe_ms) and what a completed or
 * failed probe proves, the last lane kept while stale, an operation the
 * provider lost. The in-flight bound: each lane's measured rate, its bound
 * on port bytes in flight, the accounting of completions, and the choice
 * of a lane (round-robin or least outstanding bytes).
 *
 * Apart from lane.c, which holds the lane's mechanics (open, close, fail,
 * reset, fence, reopen, session begin and end): these rules decide when
 * to take a lane out or which lane to use, and only call into lane.c's
 * mechanics (ccm_lane_fail, ccm_lane_send_fences) to act; they are tuned
 * (docs/BENCHMARKS.md) without touching the fencing.
 *
 * Layering: calls lane.c (ccm_lane_fail, ccm_lane_send_fences), which
 * calls back only ccm_lane_up_count; the fabric; its only up-call is
 * ccm_schedule.
 */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void arm_deadline(struct ccm_link *l, uint64_t in_ns)
{
	l->deadline_due = loop_now_ns() + in_ns;
	loop_timer_arm(l->ccm->loop, &l->deadline, in_ns);
}

/*
 * A lane's deadline passed with no probe completed. Liveness does not
 * depend on the probe's place in the link's queue: a read or a delivered
 * write that completed meanwhile proves the link and the partner's
 * progress as well (a full link delays its probe behind the data, problem
 * 1 of docs/BENCHMARKS.md). Nor is the last lane up taken out on a missed
 * deadline: that would move its traffic nowhere and only start a fence
 * over a lane that is not there; it is kept ("stale") until another lane
 * returns or the session deadline runs out (docs/CCM.md, "Lanes").
 */
static void deadline_cb(struct loop_timer *t)
{
	struct ccm_link *l = t->arg;
	char why[96];

	struct ccm *ccm = l->ccm;
	uint64_t now = loop_now_ns();

	if (ccm->state != ST_SETUP && ccm->state != ST_UP)
		return;
	if (l->up && now - l->last_life_ns < ccm->link_deadline_ns) {
		arm_deadline(l, l->last_life_ns + ccm->link_deadline_ns - now);
		return;
	}
	if (!l->grace &&
	    ((now > l->deadline_due && now - l->deadline_due > ccm->link_deadline_ns / 4) ||
	     (ccm->stall_seen_ns && now - ccm->stall_seen_ns < ccm->link_deadline_ns))) {
		/* The timer itself is late, or the reactor stalled lately (a
		 * blocking connect, a reopen, an overloaded host): the missing
		 * probes say little about the link. Look again shortly. */
		LOG_DEBUG("link %s: deadline timer %llu ms late; giving it more time", l->name,
			  (unsigned long long)((now - l->deadline_due) / NS_PER_MS));
		l->grace = true;
		arm_deadline(l, ccm->link_deadline_ns / 2);
		return;
	}
	if (l->up && ccm_lane_up_count(ccm) == 1 &&
	    now - l->last_life_ns < ccm->link_deadline_ns + ccm->session_deadline_ns) {
		if (!l->stale)
			LOG_INFO(
			    "link %s: no sign of life for %llu ms, but it is the last link up: "
			    "kept until another returns or the session deadline",
			    l->name, (unsigned long long)((now - l->last_life_ns) / NS_PER_MS));
		l->stale = true;
		arm_deadline(l, ccm->probe_ns);
		return;
	}
	snprintf(why, sizeof(why), "no sign of life for %llu ms",
		 (unsigned long long)((now - l->last_life_ns) / NS_PER_MS));
	bool last = l->stale;
	ccm_lane_fail(l, why, true);
	if (last) /* the session deadline has run since it went stale */
		ccm->all_down_since_ns = l->last_life_ns + ccm->link_deadline_ns;
}

static void probe_done(struct fab_op *op, int status);

void ccm_lane_init(struct ccm *ccm)
{
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		loop_timer_init(&l->deadline, deadline_cb, l);
		l->probe_op.done = probe_done;
		l->probe_op.arg = l;
	}
}

unsigned ccm_lane_up_count(const struct ccm *ccm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ccm->n_links; i++)
		n += ccm->links[i].up;
	return n;
}

bool ccm_lane_any_stale(const struct ccm *ccm)
{
	for (unsigned i = 0; i < ccm->n_links; i++)
		if (ccm->links[i].up && ccm->links[i].stale)
			return true;
	return false;
}

/* An error that says something about the path, not about the operation. */
bool ccm_lane_error_is_link(int status)
{
	switch (-status) {
	case EINVAL:
	case ERANGE:
	case EMSGSIZE:
	case EFAULT:
	case EPERM:
		return false;
	default:
		return true;
	}
}

void ccm_lane_account(struct ccm_link *l, size_t len, int status)
{
	struct ccm_inst *in = &l->ccm->inst[l->inst];

	if (l->inflight_ops)
		l->inflight_ops--;
	l->inflight_bytes = l->inflight_bytes > len ? l->inflight_bytes - len : 0;
	if (in->ops_inflight)
		in->ops_inflight--;
	in->bytes_inflight = in->bytes_inflight > len ? in->bytes_inflight - len : 0;
	if (status == 0) {
		l->ops++;
		l->bytes += len;
		in->bytes_total += len;
	} else {
		l->errors++;
	}
}

/* Whether @p len more bytes fit lane @p l's bound on bytes in flight. */
static bool fits(const struct ccm_link *l, size_t len)
{
	uint64_t cap = l->inflight_cap ? l->inflight_cap : CCM_LANE_MIN_CAP;

	return !l->inflight_bytes || l->inflight_bytes + len <= cap;
}

static struct ccm_link *pick_among(struct ccm *ccm, const unsigned *idx, unsigned n, unsigned *rr,
				   size_t len, bool bounded)
{
	struct ccm_link *best = NULL;

	if (ccm->opts.balance == CCM_BALANCE_ROUND_ROBIN) {
		for (unsigned k = 0; k < n; k++) {
			struct ccm_link *l = &ccm->links[idx[(*rr + k) % n]];
			if (l->up && l->fl && (!bounded || fits(l, len))) {
				*rr = (*rr + k + 1) % n;
				return l;
			}
		}
		return NULL;
	}
	/* Least outstanding bytes; ties go round so that idle lanes share. */
	for (unsigned k = 0; k < n; k++) {
		struct ccm_link *l = &ccm->links[idx[(*rr + k) % n]];
		if (!l->up || !l->fl || (bounded && !fits(l, len)))
			continue;
		if (!best || l->inflight_bytes < best->inflight_bytes ||
		    (l->inflight_bytes == best->inflight_bytes &&
		     l->inflight_ops < best->inflight_ops))
			best = l;
	}
	if (best)
		*rr = (*rr + 1) % n;
	return best;
}

static struct ccm_link *pick(struct ccm *ccm, unsigned inst, size_t len, bool bounded)
{
	struct ccm_inst *in = &ccm->inst[inst < ccm->n_inst ? inst : 0];
	unsigned all[CCM_MAX_LINKS];
	struct ccm_link *l;

	l = pick_among(ccm, in->links, in->n_links, &in->rr, len, bounded);
	if (l)
		return l;
	for (unsigned i = 0; i < ccm->n_links; i++)
		all[i] = i;
	return pick_among(ccm, all, ccm->n_links, &ccm->all_rr, len, bounded);
}

/* A lane for a message of @p len bytes of a channel placed on @p inst. */
struct ccm_link *ccm_lane_pick(struct ccm *ccm, unsigned inst, size_t len)
{
	return pick(ccm, inst, len, false);
}

/*
 * A lane for a port operation of @p len bytes. Bytes queued on a link
 * delay everything behind them, the partner's probe answers included (a
 * probe of the partner's reads data from us over our own egress): each
 * lane takes at most about a quarter of a link deadline of its measured
 * rate in flight (at least CCM_LANE_MIN_CAP), so that a full link never
 * looks dead to either side.
 */
struct ccm_link *ccm_lane_pick_op(struct ccm *ccm, unsigned inst, size_t len)
{
	return pick(ccm, inst, len, true);
}

/* Every tick: each lane's rate (a peak decaying by 1/16 per tick, or what
 * completed when the lane has a standing queue) and its bound on bytes in
 * flight. */
static void lane_update_caps(struct ccm *ccm)
{
	uint64_t now = loop_now_ns();

	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		uint64_t dt = now - l->rate_prev_ns;
		if (!l->rate_prev_ns || dt == 0) {
			l->rate_prev_ns = now;
			l->rate_bytes_prev = l->bytes;
			continue;
		}
		if (dt < ccm->probe_ns / 2)
			continue;
		uint64_t r = (l->bytes - l->rate_bytes_prev) * 1000000000ull / dt;
		struct fab_link_stats fs = {0};
		if (l->fl)
			fab_link_get_stats(l->fl, &fs);
		/* A standing queue (the oldest operation waits longer than
		 * an eighth of a deadline): what completed is the link's
		 * rate, however much lower than before. */
		if (fs.oldest_ns && now - fs.oldest_ns > ccm->link_deadline_ns / 8)
			l->peak_rate = r;
		else
			l->peak_rate = r > l->peak_rate ? r : l->peak_rate - l->peak_rate / 16;
		l->rate_prev_ns = now;
		l->rate_bytes_prev = l->bytes;
		uint64_t cap = l->peak_rate * (ccm->link_deadline_ns / 4) / 1000000000ull;
		l->inflight_cap = cap > CCM_LANE_MIN_CAP ? cap : CCM_LANE_MIN_CAP;
	}
}

void ccm_lane_ok(struct ccm_link *l)
{
	struct ccm *ccm = l->ccm;
	uint64_t now = loop_now_ns();

	l->last_ok_ns = now;
	l->last_life_ns = now;
	l->grace = false;
	if (l->stale) {
		l->stale = false;
		LOG_INFO("link %s: alive again", l->name);
	}
	arm_deadline(l, ccm->link_deadline_ns);
	if (l->up)
		return;
	l->up = true;
	l->last_change_ns = now;
	ccm->all_down_since_ns = 0;
	LOG_INFO("link %s up (rtt %llu us)", l->name, (unsigned long long)(l->rtt_ns / 1000));
	/* A last lane kept while it showed no life goes out now that its
	 * traffic has somewhere to go. */
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *o = &ccm->links[i];
		if (o != l && o->up && o->stale) {
			char why[96];
			snprintf(why, sizeof(why), "no sign of life for %llu ms (kept while last)",
				 (unsigned long long)((now - o->last_life_ns) / NS_PER_MS));
			ccm_lane_fail(o, why, true);
		}
	}
	ccm_lane_send_fences(ccm);
	ccm->drain_pending = true;
	ccm->kick_pending = true;
	ccm_schedule(ccm);
}

/*
 * Whether the link holds an operation it will never complete. A link
 * completes in order what it accepted (one connection, first in, first
 * out), so an operation accepted well before a probe that has just
 * completed, and still in flight, was lost by the provider: rxm does that
 * to a rendezvous or segmented send whose connection the peer closes
 * before answering (docs/FABRIC.md). Nothing else would ever complete it:
 * a message stuck so blocks its channel, a port operation its client, and
 * the link keeps proving alive. Only a reset completes it (then it is
 * re-issued). The margin (2 x link_deadline_ms) covers completions of one
 * batch handled out of order and providers that complete a little out of
 * order.
 */
static bool lane_op_lost(struct ccm_link *l)
{
	struct fab_link_stats fs;
	uint64_t margin = 2 * l->ccm->link_deadline_ns;

	fab_link_get_stats(l->fl, &fs);
	return fs.oldest_ns && l->probe_post_ns > fs.oldest_ns + margin;
}

static void probe_done(struct fab_op *op, int status)
{
	struct ccm_link *l = op->arg;
	struct ccm *ccm = l->ccm;
	struct wire_sess s;
	char why[96];

	l->probe_busy = false;
	if (l->probe_epoch != ccm->epoch || (ccm->state != ST_SETUP && ccm->state != ST_UP))
		return;
	if (status < 0) {
		if (!l->up) {
			uint64_t b =
			    l->probe_backoff_ns ? l->probe_backoff_ns : ccm->link_deadline_ns;
			l->next_probe_ns = loop_now_ns() + b;
			l->probe_backoff_ns = b * 2 > 1000 * NS_PER_MS ? 1000 * NS_PER_MS : b * 2;
		}
		if (status != -EAGAIN && status != -ETIMEDOUT)
			l->errors++;
		snprintf(why, sizeof(why), "probe failed (%s)", strerror(-status));
		ccm_lane_fail(l, why, false);
		return;
	}
	s = l->probe_buf;
	if (s.seq_head != s.seq_tail || get_le64(&s.magic) != CCM_SESS_MAGIC) {
		/* Torn by a concurrent update: neither proof of life nor death. */
		return;
	}
	if (get_le64(&s.generation) != ccm->partner.gen ||
	    get_le64(&s.session_id) != ccm->session_id) {
		ccm_lane_fail(l, "the partner's session region belongs to another session", false);
		return;
	}
	if (l->up && lane_op_lost(l)) {
		ccm_lane_fail(l, "an operation is lost: probes posted long after it complete",
			      false);
		return;
	}
	uint64_t rtt = loop_now_ns() - l->probe_post_ns;
	l->rtt_ns = l->rtt_ns ? (l->rtt_ns * 7 + rtt) / 8 : rtt;
	unsigned n = get_le32(&s.n_instances);
	for (unsigned i = 0; i < ccm->n_inst && i < n && i < 8; i++) {
		struct wire_inst_load *w = &s.inst[i];
		ccm->inst[i].partner.bytes_per_sec = get_le64(&w->bytes_per_sec);
		ccm->inst[i].partner.ops_inflight = get_le64(&w->ops_inflight);
		ccm->inst[i].partner.bytes_inflight = get_le64(&w->bytes_inflight);
		ccm->inst[i].partner.ports = get_le32(&w->ports);
		ccm->inst[i].partner.links_up = get_le32(&w->links_up);
	}
	ccm_lane_ok(l);
}

/* Post a probe (a read of the partner's session region) on every lane that
 * has none in flight; a dead lane only when its backoff has passed. */
void ccm_lane_post_probes(struct ccm *ccm)
{
	uint64_t now = loop_now_ns();

	if (!ccm->partner_sess.key)
		return;
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		int rc;
		if (!l->fl || l->fenced)
			continue;
		if (l->probe_busy)
			continue; /* on a dead lane it waits for the link to return */
		if (!l->up && now < l->next_probe_ns)
			continue;
		rc = fab_read(l->fl, &l->probe_buf, sizeof(l->probe_buf), &ccm->partner_sess, 0,
			      &l->probe_op);
		if (rc == 0) {
			l->probe_busy = true;
			l->probe_post_ns = now;
			l->probe_epoch = ccm->epoch;
		} else if (rc != -EAGAIN && l->up) {
			char why[96];
			snprintf(why, sizeof(why), "probe not posted (%s)", strerror(-rc));
			ccm_lane_fail(l, why, false);
		}
	}
}

void ccm_lane_tick(struct ccm *ccm)
{
	lane_update_caps(ccm);
	ccm_lane_post_probes(ccm);
}
