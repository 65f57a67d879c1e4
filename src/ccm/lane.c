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
 * This file holds the lane's mechanics; when a lane counts as alive
 * (deadlines, probes) and how much it may carry (the in-flight bound, the
 * choice of a lane) are lane_rules.c's.
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
