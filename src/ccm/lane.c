/* Links as lanes (docs/CCM.md, "Lanes"); instances are in inst.c.
 *
 * Each link is a lane. During a session every lane probes: it reads the
 * partner's session region every probe_ms; a lane is up while those probes
 * keep completing within link_deadline_ms. (Not the failover monitor's
 * heartbeats: those are the monitor's writes, see ccm_port_write_link.)
 * Traffic goes to the up lanes of the port's instance (round-robin or least
 * outstanding bytes), or to any up lane when its instance has none. A lane
 * that dies has its endpoint reset (its operations fail and are re-issued
 * by their owners; regions stay registered), and during a session it is
 * fenced: suspended (no endpoint at all) until the partner has reset its
 * end too.
 *
 * Layering: this file calls crypto.c and the fabric. It hands events up
 * only through the up-calls named in ccm_int.h: received messages to
 * ccm_sess_on_msg, doorbells to ccm_hs_on_doorbell, a lane taken out to
 * ccm_chan_on_link_down, fences to the control channel (ccm_chan_send),
 * acked fences to ccm_op_release_held. */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static_assert(CCM_LINK_MAX_MSG <= FAB_MSG_MAX, "a CCM message must fit a link's eager limit");

static void lane_on_msg(void *arg, const void *msg, size_t len)
{
	struct ccm_link *l = arg;

	ccm_sess_on_msg(l->ccm, msg, len);
}

static void lane_on_doorbell(void *arg, uint64_t imm)
{
	struct ccm_link *l = arg;

	ccm_hs_on_doorbell(l->ccm, imm);
}

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

/* Open link @p i and register on it everything the partner may access:
 * the boot region and the slot, and during a session the session region
 * and every port, under the keys they already have. */
static int lane_open_one(struct ccm *ccm, unsigned i)
{
	struct ccm_link *l = &ccm->links[i];
	struct fab_link_opts o = {
	    .name = l->name,
	    .provider = ccm->opts.provider,
	    .local = ccm->opts.links[i].local,
	    .peer = ccm->opts.links[i].peer,
	    .rx_depth = CCM_RX_DEPTH,
	    .max_msg = CCM_LINK_MAX_MSG,
	    .spin_us = ccm->opts.spin_us,
	};
	struct fab_link_events ev = {
	    .on_msg = lane_on_msg,
	    .on_doorbell = lane_on_doorbell,
	    .arg = l,
	};
	struct fab_link *fl;
	int rc;

	rc = fab_link_open(ccm->loop, &o, &ev, &fl);
	if (rc < 0)
		return rc;
	rc = fab_mr_reg(fl, ccm->boot, sizeof(*ccm->boot), CCM_BOOT_KEY, FAB_REMOTE_READ,
			&l->boot_mr);
	if (rc == 0)
		rc = fab_mr_reg(fl, ccm->slot, sizeof(*ccm->slot), CCM_SLOT_KEY, FAB_REMOTE_WRITE,
				&l->slot_mr);
	if (rc == 0 && ccm->sess_key && (ccm->state == ST_SETUP || ccm->state == ST_UP))
		rc = fab_mr_reg(fl, ccm->sess, sizeof(*ccm->sess), ccm->sess_key, FAB_REMOTE_READ,
				&l->sess_mr);
	for (unsigned c = 0; rc == 0 && c < CCM_MAX_CLIENTS; c++) {
		struct ccm_client *cl = ccm->clients[c];
		if (!cl || cl->dead)
			continue;
		for (unsigned p = 0; rc == 0 && p < cl->n_ports; p++) {
			struct ccm_port *pt = &cl->ports[p];
			if (pt->registered && pt->size)
				rc = fab_mr_reg(fl, pt->mem, pt->size, pt->key,
						FAB_REMOTE_READ | FAB_REMOTE_WRITE, &pt->mr[i]);
		}
	}
	l->fl = fl;
	if (rc < 0) {
		LOG_ERROR("cannot register the regions of link %s: %s", l->name, strerror(-rc));
		return rc;
	}
	return 0;
}

/* Close link @p i (its operations complete with -ECANCELED from inside) and
 * free its regions, which fab_link_close deregistered. Only at the end, or
 * when opening it failed: failures reset the endpoint instead. */
static void lane_close_one(struct ccm *ccm, unsigned i)
{
	struct ccm_link *l = &ccm->links[i];
	struct fab_link *fl = l->fl;

	l->fl = NULL;
	l->probe_busy = false; /* completes with -ECANCELED right now */
	if (fl)
		fab_link_close(fl);
	fab_mr_close(l->sess_mr);
	fab_mr_close(l->slot_mr);
	fab_mr_close(l->boot_mr);
	l->sess_mr = l->slot_mr = l->boot_mr = NULL;
	for (unsigned c = 0; c < CCM_MAX_CLIENTS; c++) {
		struct ccm_client *cl = ccm->clients[c];
		if (!cl)
			continue;
		for (unsigned p = 0; p < cl->n_ports; p++) {
			fab_mr_close(cl->ports[p].mr[i]);
			cl->ports[p].mr[i] = NULL;
		}
	}
}

int ccm_lane_open_all(struct ccm *ccm)
{
	unsigned i;
	int rc = 0;

	for (i = 0; i < ccm->n_links; i++) {
		rc = lane_open_one(ccm, i);
		if (rc < 0)
			break;
	}
	if (rc == 0)
		return 0;
	LOG_ERROR("cannot open interconnect link %s (%s -> %s): %s", ccm->opts.links[i].name,
		  ccm->opts.links[i].local, ccm->opts.links[i].peer, strerror(-rc));
	ccm_lane_close_all(ccm);
	return rc;
}

void ccm_lane_close_all(struct ccm *ccm)
{
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		loop_timer_cancel(ccm->loop, &l->deadline);
		lane_close_one(ccm, i);
		l->up = false;
	}
}

unsigned ccm_lane_up_count(const struct ccm *ccm)
{
	unsigned n = 0;

	for (unsigned i = 0; i < ccm->n_links; i++)
		n += ccm->links[i].up;
	return n;
}

/* An error that says something about the path, not about the operation. */
bool ccm_lane_any_stale(const struct ccm *ccm)
{
	for (unsigned i = 0; i < ccm->n_links; i++)
		if (ccm->links[i].up && ccm->links[i].stale)
			return true;
	return false;
}

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

static bool in_session(const struct ccm *ccm)
{
	return ccm->state == ST_SETUP || ccm->state == ST_UP;
}

/*
 * Whether lane @p l fails on the very connection that carried its own
 * fence, still unanswered. The partner answers a fence by resetting its
 * end of the lane, which breaks the connection the fence came over when no
 * other lane was up to carry it: that failure is the fence at work, not a
 * new one. Everything of this connection that the partner applied, it
 * applied before that reset, and it acks after it, so writes re-issued now
 * wait for the same fence safely; a new fence would be carried by the next
 * connection and break it again, for ever (docs/BENCHMARKS.md, "Problems
 * found" 2). The endpoint may have been reset once since, by the fabric
 * itself when the connection broke.
 */
static bool self_fenced(const struct ccm_link *l)
{
	struct fab_link_stats fs = {0};

	if (!l->self_fence || l->self_fence != l->fence_seq ||
	    l->fence_seq <= l->ccm->fence_acked || !l->fl)
		return false;
	fab_link_get_stats(l->fl, &fs);
	return fs.resets <= l->self_fence_resets + 1;
}

void ccm_lane_fail(struct ccm_link *l, const char *why, bool hang)
{
	struct ccm *ccm = l->ccm;
	uint64_t now = loop_now_ns();

	if (!l->up)
		return;
	l->up = false;
	l->stale = false;
	l->last_change_ns = now;
	loop_timer_cancel(ccm->loop, &l->deadline);
	/* Hung or failed alike: its endpoint is reset and, in a session, the
	 * failure fenced. An error may come from a reset the fabric already
	 * made (the connection broke): the writes it failed are re-issued at
	 * once, so the fence's number is taken now for them to wait on. */
	(void)hang;
	l->reset_pending = true;
	l->fence_reused = false;
	if (in_session(ccm) && self_fenced(l)) {
		l->fail_fence = l->fence_seq;
		l->fence_reused = true;
	} else if (in_session(ccm)) {
		l->fail_fence = ++ccm->fence_next;
		ccm->fence_sent_ns = now; /* its answer is due from now */
	}
	l->self_fence = 0;
	/* Probe the dead lane again after a deadline, then less and less often. */
	l->probe_backoff_ns = ccm->link_deadline_ns;
	l->next_probe_ns = now + l->probe_backoff_ns;
	if (ccm_lane_up_count(ccm) == 0) {
		ccm->all_down_since_ns = now;
		LOG_WARN("link %s down: %s; no link left, the session ends in %llu ms unless "
			 "one returns",
			 l->name, why, (unsigned long long)(ccm->session_deadline_ns / NS_PER_MS));
	} else {
		ccm->last_boot_probe_ns = 0; /* has the partner rebooted? look soon */
		LOG_WARN("link %s down: %s; its traffic moves to the other links", l->name, why);
	}
	ccm_schedule(ccm);
}

static void requeue_msgs(struct ccm *ccm, unsigned i)
{
	ccm_chan_on_link_down(&ccm->ctl, i);
	for (unsigned c = 0; c < CCM_MAX_CLIENTS; c++) {
		struct ccm_client *cl = ccm->clients[c];
		if (!cl || cl->dead)
			continue;
		for (unsigned p = 0; p < cl->n_ports; p++)
			ccm_chan_on_link_down(&cl->ports[p].ch, i);
	}
	ccm->kick_pending = true;
	ccm->drain_pending = true;
}

static void send_fence(struct ccm *ccm, struct ccm_link *l)
{
	struct wire_fence f = {0};

	put_le32(&f.lane, l->idx);
	put_le64(&f.seq, l->fence_seq);

	if (ccm_chan_send(&ccm->ctl, MSG_FENCE, &f, sizeof(f), NULL) == 0) {
		l->fence_unsent = false;
		ccm->fence_sent_ns = loop_now_ns();
		if (l->up && ccm_lane_up_count(ccm) == 1) {
			struct fab_link_stats fs = {0};
			if (l->fl)
				fab_link_get_stats(l->fl, &fs);
			l->self_fence = l->fence_seq;
			l->self_fence_resets = fs.resets;
		}
	} else {
		l->fence_unsent = true;
	}
}

/* Fences not sent yet (just decided, or no lane was up), in the order of
 * their numbers: the partner's acknowledgements are cumulative. */
void ccm_lane_send_fences(struct ccm *ccm)
{
	if (!in_session(ccm) || ccm_lane_up_count(ccm) == 0)
		return;
	for (;;) {
		struct ccm_link *next = NULL;
		for (unsigned i = 0; i < ccm->n_links; i++) {
			struct ccm_link *l = &ccm->links[i];
			if (l->fence_unsent && (!next || l->fence_seq < next->fence_seq))
				next = l;
		}
		if (!next)
			return;
		send_fence(ccm, next);
		if (next->fence_unsent)
			return; /* the channel is full: the tick tries again */
	}
}

/*
 * Reset link @p i's endpoint: its operations complete from inside (with
 * -ECANCELED: their owners re-issue them) after the endpoint was closed, so
 * none of their buffers is touched any more and nothing the partner sent
 * on the old connections lands. The regions stay registered under their
 * keys. With @p suspend no new endpoint comes before lane_resume(). Cheap
 * on the loop (0.1-5 ms; the new endpoint is created on a helper thread);
 * a slow one counts as a reactor stall.
 */
static void lane_reset(struct ccm *ccm, unsigned i, bool suspend)
{
	struct ccm_link *l = &ccm->links[i];
	uint64_t t0 = loop_now_ns();

	if (!l->fl)
		return;
	l->resets++;
	if (suspend)
		fab_link_suspend(l->fl);
	else
		fab_link_reset(l->fl);
	if (loop_now_ns() - t0 > ccm->probe_ns)
		ccm->stall_seen_ns = loop_now_ns(); /* we blocked the reactor ourselves */
	LOG_DEBUG("link %s %s in %.2f ms", l->name, suspend ? "suspended" : "reset",
		  (double)(loop_now_ns() - t0) / 1e6);
}

/* Bring a suspended lane's endpoint back, or open a lane whose open
 * failed. @return whether the lane has a link. */
static bool reopen(struct ccm *ccm, unsigned i)
{
	struct ccm_link *l = &ccm->links[i];
	uint64_t t0 = loop_now_ns();
	int rc;

	if (l->fl) {
		fab_link_resume(l->fl);
		l->reopen_pending = false;
		return true;
	}
	rc = lane_open_one(ccm, i);
	if (rc < 0) {
		if (!l->reopen_pending)
			LOG_ERROR("cannot reopen link %s: %s; retrying", l->name, strerror(-rc));
		lane_close_one(ccm, i);
		l->reopen_pending = true;
		return false;
	}
	l->reopen_pending = false;
	if (loop_now_ns() - t0 > ccm->probe_ns)
		ccm->stall_seen_ns = loop_now_ns(); /* we blocked the reactor ourselves */
	LOG_DEBUG("link %s reopened in %llu ms", l->name,
		  (unsigned long long)((loop_now_ns() - t0) / NS_PER_MS));
	return true;
}

/*
 * Outside of any fabric callback: reset the lanes that failed (their
 * operations fail and are re-issued elsewhere by their owners) and fence
 * them with the partner (suspended until it acks), reset those the partner
 * fences and acknowledge, resume or reopen what may be. A reset costs the
 * reactor 0.1-5 ms (the endpoint is recreated on a helper thread).
 */
void ccm_lane_do_aborts(struct ccm *ccm)
{
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];

		if (l->abort_pending) {
			l->abort_pending = false;
			if (l->fl)
				fab_link_abort(l->fl);
		}
		if (l->reset_pending) {
			l->reset_pending = false;
			if (in_session(ccm)) {
				/* Writes failed by this reset complete only once
				 * the partner has reset its end (fence acked). */
				l->fence_seq = l->fail_fence > ccm->fence_acked ? l->fail_fence
										: ++ccm->fence_next;
				l->close_fence = l->fence_seq;
			} else {
				l->close_fence = 0;
			}
			/* During a session with another lane to fence over, the
			 * lane stays without an endpoint until the partner has
			 * reset its end: nothing of its old connection can land
			 * in our memory meanwhile, nor can its new operations
			 * reach us before it processed the fence. */
			bool fence = in_session(ccm) && ccm_lane_up_count(ccm) > 0;
			lane_reset(ccm, i, fence);
			l->close_fence = 0;
			if (in_session(ccm)) {
				requeue_msgs(ccm, i);
				/* sent below, in order; a reused fence is on
				 * its way already (the control channel) */
				l->fence_unsent = !l->fence_reused;
				if (fence && ccm_lane_up_count(ccm) > 0) {
					l->fenced = true; /* suspended until the ack */
				} else {
					/* No lane to fence over: back now, fence as
					 * soon as any lane is back. */
					l->reopen_pending = true;
				}
			} else if (!l->fl) {
				l->reopen_pending = true;
			}
		}
		if (l->ack_fence) {
			struct wire_fence f = {0};
			put_le32(&f.lane, i);
			put_le64(&f.seq, l->ack_fence_seq);
			l->ack_fence = false;
			if (!l->fenced)
				lane_reset(ccm, i,
					   false); /* nothing of the old connection lands now */
			if (in_session(ccm)) {
				requeue_msgs(ccm, i);
				ccm_chan_send(&ccm->ctl, MSG_FENCE_ACK, &f, sizeof(f), NULL);
			}
		}
		if (l->reopen_pending && !l->fenced)
			reopen(ccm, i);
	}
	ccm_lane_send_fences(ccm);
}

void ccm_lane_fence_request(struct ccm *ccm, unsigned lane, uint64_t seq)
{
	struct ccm_link *l;

	if (lane >= ccm->n_links)
		return;
	l = &ccm->links[lane];
	if (l->up) {
		l->up = false;
		l->stale = false;
		l->last_change_ns = loop_now_ns();
		loop_timer_cancel(ccm->loop, &l->deadline);
		l->probe_backoff_ns = ccm->link_deadline_ns;
		l->next_probe_ns = loop_now_ns() + l->probe_backoff_ns;
		if (ccm_lane_up_count(ccm) == 0)
			ccm->all_down_since_ns = loop_now_ns();
		LOG_WARN("link %s down: the partner took it out", l->name);
	}
	l->ack_fence = true;
	l->ack_fence_seq = seq;
	ccm_schedule(ccm);
}

void ccm_lane_fence_acked(struct ccm *ccm, uint64_t seq)
{
	if (seq > ccm->fence_next)
		return; /* acks what we never asked */
	if (seq > ccm->fence_acked)
		ccm->fence_acked = (uint32_t)seq;
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		if (l->fenced && l->fence_seq <= ccm->fence_acked) {
			l->fenced = false;
			l->reopen_pending = true;
		}
	}
	ccm_op_release_held(ccm, 0);
	ccm_schedule(ccm);
}

/* At the end of a session: operations left on dead lanes (probes into our
 * own buffers, waiting for a partner that is gone) complete now. */
void ccm_lane_abort_down(struct ccm *ccm)
{
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		if (!l->up && l->fl && (l->inflight_ops || l->probe_busy || l->hs_busy))
			l->abort_pending = true;
	}
	ccm_lane_do_aborts(ccm);
}

void ccm_lane_session_begin(struct ccm *ccm, unsigned hs_link)
{
	uint64_t now = loop_now_ns();

	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		l->up = false;
		l->stale = false;
		l->last_change_ns = now;
		loop_timer_cancel(ccm->loop, &l->deadline);
	}
	ccm->all_down_since_ns = 0;
	/* The handshake just worked on this one: traffic can start on it. */
	if (hs_link < ccm->n_links) {
		struct ccm_link *l = &ccm->links[hs_link];
		uint64_t d = ccm->link_deadline_ns > ccm->session_deadline_ns
				 ? ccm->link_deadline_ns
				 : ccm->session_deadline_ns;
		l->up = true;
		l->last_ok_ns = now;
		l->last_life_ns = now;
		l->grace = false;
		l->deadline_due = now + d;
		loop_timer_arm(ccm->loop, &l->deadline, d);
	}
}

void ccm_lane_session_end(struct ccm *ccm)
{
	uint64_t now = loop_now_ns();

	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		loop_timer_cancel(ccm->loop, &l->deadline);
		if (l->up)
			l->last_change_ns = now;
		l->up = false;
		l->stale = false;
		if (l->sess_mr) {
			fab_mr_close(l->sess_mr);
			l->sess_mr = NULL;
		}
		if (l->fenced || !l->fl)
			l->reopen_pending = true; /* resume a suspended lane */
		l->fenced = l->fence_unsent = l->ack_fence = l->fence_reused = false;
		l->self_fence = 0;
	}
	ccm->fence_acked = ccm->fence_next;
	ccm->all_down_since_ns = 0;
	ccm_lane_do_aborts(ccm);
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

int ccm_reg_all(struct ccm *ccm, void *buf, size_t len, unsigned access, uint64_t *key,
		struct fab_mr **mrs)
{
	int rc = -ENOKEY;

	/* A random key can collide with one already registered: draw again. */
	for (unsigned attempt = 0; attempt < 8 && (rc == -ENOKEY || rc == -EEXIST); attempt++) {
		unsigned i;
		*key = ccm_random_key();
		rc = 0;
		for (i = 0; i < ccm->n_links; i++) {
			struct fab_mr **slot = mrs ? &mrs[i] : &ccm->links[i].sess_mr;
			if (!ccm->links[i].fl) {
				*slot = NULL;
				continue;
			}
			rc = fab_mr_reg(ccm->links[i].fl, buf, len, *key, access, slot);
			if (rc < 0)
				break;
		}
		if (rc < 0) {
			for (unsigned j = 0; j < i; j++) {
				struct fab_mr **slot = mrs ? &mrs[j] : &ccm->links[j].sess_mr;
				if (*slot)
					fab_mr_close(*slot);
				*slot = NULL;
			}
		}
	}
	if (rc < 0)
		LOG_ERROR("cannot register %zu bytes for the partner: %s", len, strerror(-rc));
	return rc;
}
