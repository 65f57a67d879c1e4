/* Progress of a link on the reactor: reading the completion queue and the
 * deferred work, both driven from the CQ's wait fd and the link's timer.
 *
 * Rule: one timer does all deferred work (drive the CQ while posts wait in
 * the backlog; a post the provider took needs no turn of its own: the CQ's
 * wait fd wakes the loop for its completion), complete failed posts, reset
 * the endpoint, create the next one, retry the backlog with backoff,
 * repost receives), and every wake-up reads the
 * CQ until fi_trywait allows sleeping again: on tcp;ofi_rxm the target
 * must drive progress or the peer's RMA never completes. After every
 * callback the batch is dropped if the callback closed the link or reset
 * its endpoint (the rest of it then names freed slots).
 */
#define LOG_MODULE "fabric"
#include "fabric/fabric_int.h"

#include <string.h>

#include <rdma/fi_errno.h>

#include "common/log.h"

static bool is_conn_error(int err)
{
	/* Anything but a local truncation may have broken the connection;
	 * a reset costs one reconnect, a dead connection costs the link. */
	return err != FI_ETRUNC;
}

static void doorbell(struct fab_link *link, uint64_t imm)
{
	link->st.doorbells_in++;
	if (link->ev.on_doorbell)
		link->ev.on_doorbell(link->ev.arg, imm);
}

static void handle_rx_done(struct fab_link *link, struct fab_rx_slot *r,
			   const struct fi_cq_data_entry *e)
{
	if ((e->flags & FI_REMOTE_CQ_DATA) && (e->flags & FI_RMA)) {
		/* A doorbell that consumed a receive (FI_RX_CQ_DATA providers). */
		doorbell(link, e->data);
	} else {
		link->st.msgs_in++;
		if (link->ev.on_msg)
			link->ev.on_msg(link->ev.arg, r->buf, e->len);
	}
	fab_repost_rx(link, r);
}

static void handle_entry(struct fab_link *link, const struct fi_cq_data_entry *e)
{
	struct fab_ctx_head *h = e->op_context;

	if (!h) {
		if (e->flags & FI_REMOTE_CQ_DATA)
			doorbell(link, e->data);
		return;
	}
	if (h->kind == FAB_KIND_RX) {
		handle_rx_done(link, (struct fab_rx_slot *)h, e);
		return;
	}
	fab_slot_complete(link, (struct fab_slot *)h, 0);
}

static void handle_error(struct fab_link *link)
{
	struct fid_cq *cq = link->ep.res.cq;
	struct fi_cq_err_entry err;
	char pbuf[128];
	ssize_t rc;
	struct fab_ctx_head *h;
	struct fab_tstart t0;

	fab_tstart(&t0);
	memset(&err, 0, sizeof(err));
	rc = fi_cq_readerr(cq, &err, 0);
	fab_call_timed(link, "fi_cq_readerr", &t0);
	if (rc < 0) {
		if (rc != -FI_EAGAIN && fab_log_allowed(&link->rl_err))
			LOG_ERROR("%s: fi_cq_readerr: %s", link->name, fi_strerror((int)-rc));
		return;
	}
	h = err.op_context;
	if (!h || h->kind == FAB_KIND_RX) {
		if (fab_log_allowed(&link->rl_err))
			LOG_WARN(
			    "%s: %s error: %s (%s)", link->name, h ? "receive" : "remote",
			    fi_strerror(err.err),
			    fi_cq_strerror(cq, err.prov_errno, err.err_data, pbuf, sizeof(pbuf)));
		if (h)
			fab_repost_rx(link, (struct fab_rx_slot *)h);
		return;
	}
	struct fab_slot *s = (struct fab_slot *)h;
	bool reset = is_conn_error(err.err);
	if (fab_log_allowed(&link->rl_err))
		LOG_WARN("%s: operation failed: %s (%s)%s", link->name, fi_strerror(err.err),
			 fi_cq_strerror(cq, err.prov_errno, err.err_data, pbuf, sizeof(pbuf)),
			 reset ? ": resetting the endpoint" : "");
	if (reset)
		link->ep.reset_pending = true;
	fab_slot_complete(link, s, fab_errno(err.err));
}

/* After a callback: was the link closed, or its endpoint reset (the rest
 * of the batch then belongs to a dead CQ and names freed slots)? */
static bool stale(const struct fab_link *link, uint64_t ep_gen)
{
	return link->closing || link->ep.gen != ep_gen;
}

/* Read the CQ until it is empty and the wait fd may be slept on again
 * (fi_trywait). Bounded: a busy CQ yields to the loop and continues from
 * the timer. fi_trywait may keep refusing with nothing to read (rxm does
 * until its periodic connection progress consumes an event): then poll
 * again after a short, growing delay instead of spinning.
 * @return false when a callback closed the link or reset its endpoint. */
static bool progress(struct fab_link *link)
{
	struct fi_cq_data_entry ents[FAB_CQ_BATCH];
	uint64_t g = link->ep.gen;
	unsigned got = 0;

	link->ops.need_progress = false;
	if (!link->ep.ready)
		return true;
	struct fid *fids[1] = {&link->ep.res.cq->fid};
	for (int round = 0; round < FAB_CQ_ROUNDS; round++) {
		struct fab_tstart t0;
		ssize_t n;

		fab_tstart(&t0);
		n = fi_cq_read(link->ep.res.cq, ents, FAB_CQ_BATCH);
		fab_call_timed(link, "fi_cq_read", &t0);
		if (n > 0) {
			got += (unsigned)n;
			for (ssize_t i = 0; i < n; i++) {
				handle_entry(link, &ents[i]);
				if (stale(link, g))
					return false;
			}
			if (n == FAB_CQ_BATCH)
				continue;
			/* A short batch emptied the CQ: fi_trywait tells whether
			 * more came meanwhile, without another fi_cq_read (each
			 * costs the provider's progress: an epoll_wait). */
		} else if (n == -FI_EAVAIL) {
			got++;
			handle_error(link);
			if (stale(link, g))
				return false;
			continue;
		} else if (n != -FI_EAGAIN) {
			if (fab_log_allowed(&link->rl_err))
				LOG_ERROR("%s: fi_cq_read: %s", link->name, fi_strerror((int)-n));
			fab_schedule(link, link->ops.retry_max_ns);
			return true;
		}
		if (link->ep.res.wait_fd < 0)
			return true;
		fab_tstart(&t0);
		n = fi_trywait(link->dom.fabric, fids, 1);
		fab_call_timed(link, "fi_trywait", &t0);
		if (n == 0) {
			link->ops.idle_poll_ns = FAB_IDLE_POLL_MIN_NS;
			return true;
		}
		if (n != -FI_EAGAIN) {
			if (fab_log_allowed(&link->rl_err))
				LOG_ERROR("%s: fi_trywait: %s", link->name, fi_strerror((int)-n));
			fab_schedule(link, link->ops.retry_max_ns);
			return true;
		}
		if (!got && round >= 2)
			break; /* refusing with nothing to read: do not spin */
	}
	if (got) {
		link->ops.need_progress = true;
		fab_schedule(link, 0);
	} else {
		fab_schedule(link, link->ops.idle_poll_ns);
		link->ops.idle_poll_ns = MIN(link->ops.idle_poll_ns * 2, FAB_IDLE_POLL_MAX_NS);
	}
	return true;
}

/* Create the endpoint when it is due (none while suspended).
 * @return true when one is ready. */
static bool ep_due(struct fab_link *link, uint64_t now)
{
	if (link->ep.ready)
		return true;
	if (link->ep.suspended)
		return false;
	if (!link->helper.active && now >= link->ep.retry_at)
		fab_ep_start(link);
	else if (!link->helper.active)
		fab_schedule(link, link->ep.retry_at - now);
	return link->ep.ready;
}

/* Retry the backlog when completions freed credits or the backoff
 * expired, never merely because the fd woke us: on rxm a refused connect
 * signals the fd, and retrying then would connect again at once, a busy
 * loop for as long as the peer is absent. */
static void retry_backlog(struct fab_link *link, uint64_t now)
{
	struct fab_ops *o = &link->ops;

	if (o->backlog.n && (o->reaped || now >= o->retry_at)) {
		if (fab_flush_backlog(link)) {
			o->retry_ns = FAB_RETRY_MIN_NS;
		} else {
			o->retry_at = now + o->retry_ns;
			fab_schedule(link, o->retry_ns);
			if (!o->reaped)
				o->retry_ns = MIN(o->retry_ns * 2, o->retry_max_ns);
		}
	} else if (o->backlog.n) {
		fab_schedule(link, o->retry_at - now);
	}
	o->reaped = 0;
}

/* The deferred work after progress: failed posts, a reset, the endpoint's
 * creation, the backlog, receives.
 * @return false when a callback closed the link or reset its endpoint. */
static bool after_progress(struct fab_link *link)
{
	uint64_t g = link->ep.gen;
	struct fab_slot *s;
	uint64_t now;

	while ((s = fab_slot_list_first(&link->ops.failed))) {
		fab_slot_complete(link, s, s->status);
		if (stale(link, g))
			return false;
	}
	if (link->ep.reset_pending) {
		LOG_INFO("%s: connection to the peer broken: endpoint reset", link->name);
		fab_ep_reset(link, -ECANCELED);
		return false;
	}
	now = loop_now_ns();
	if (!ep_due(link, now))
		return !link->closing;
	retry_backlog(link, now);
	if (link->msg.rx_pending) {
		for (unsigned i = 0; i < link->msg.rx_depth && !link->closing; i++)
			if (link->msg.rx[i].pending)
				fab_repost_rx(link, &link->msg.rx[i]);
	}
	if (link->ep.reset_pending || link->ops.failed.n)
		fab_schedule(link, 0);
	if (link->ops.need_progress)
		fab_schedule(link, 0);
	return !link->closing;
}

static void run(struct fab_link *link)
{
	link->busy++;
	if (link->helper.active && atomic_load(&link->helper.job.finished))
		fab_ep_job_collect(link);
	if (!link->closing && progress(link) && after_progress(link) && link->ep.poll_mode &&
	    link->ep.ready) {
		/* Poll mode: keep polling while anything is outstanding. */
		fab_schedule(link, link->ops.posted.n ? 0 : FAB_POLL_IDLE_NS);
	}
	fab_link_leave(link);
}

/* With a spin budget the fd only starts (or extends) a spin: the poller,
 * which runs later in this same loop turn, reads the CQ. */
void fab_progress_on_cq_fd(struct loop_io *io, uint32_t events)
{
	struct fab_link *link = io->arg;

	(void)events;
	if (link->ops.spin_ns && link->ep.ready && !link->closing)
		link->ops.spin_since = loop_now_ns();
	else
		run(link);
}

/* The poller of a link with a spin budget. Once the wait fd fired or with
 * operations in flight it reads the CQ on every loop turn directly (no
 * fi_trywait: what a raw libfabric loop pays for a completion, and the
 * progress a target must make for its peer's RMA), and keeps the loop from
 * sleeping until spin_ns passed with no completion and no wake-up; then one
 * full progress, whose fi_trywait makes the wait fd safe to sleep on again.
 * Idle, it costs one test. */
int fab_progress_poll(void *arg)
{
	struct fab_link *link = arg;
	struct fi_cq_data_entry ents[FAB_CQ_BATCH];
	uint64_t g, now;
	ssize_t n;
	int busy = 1;

	if (link->closing || !link->ep.ready || link->ep.poll_mode ||
	    (!link->ops.spin_since && !link->ops.posted.n))
		return 0;
	now = loop_now_ns();
	if (!link->ops.spin_since)
		link->ops.spin_since = now;
	link->busy++;
	g = link->ep.gen;
	n = fi_cq_read(link->ep.res.cq, ents, FAB_CQ_BATCH);
	if (n > 0) {
		link->ops.spin_since = now;
		link->st.spin_reaped += (uint64_t)n;
		for (ssize_t i = 0; i < n; i++) {
			handle_entry(link, &ents[i]);
			if (stale(link, g))
				goto out;
		}
		after_progress(link);
	} else if (n == -FI_EAVAIL) {
		handle_error(link);
		if (!stale(link, g))
			after_progress(link);
	} else if (n != -FI_EAGAIN || now - link->ops.spin_since >= link->ops.spin_ns) {
		/* An error, or the budget spent: the usual path, then sleep. */
		link->ops.spin_since = 0;
		link->st.spin_sleeps++;
		if (progress(link))
			after_progress(link);
		busy = 0;
	}
out:
	fab_link_leave(link);
	return busy;
}

void fab_progress_on_timer(struct loop_timer *t)
{
	run(t->arg);
}
