/* Endpoint generations of a link: create (on the loop or on a short-lived
 * helper thread), install, drop, and the reset that replaces one.
 *
 * Rule: the fabric, domain and regions live as long as the link; the
 * endpoint with its address vector and completion queue is what a reset
 * recreates. A reset takes every operation away from the link, closes the
 * endpoint (libfabric is then done with their buffers), closes the CQ (no
 * stale completion can name a reused slot) and only then calls the
 * operations back. The helper thread reads only the link's immutable
 * parts (fab_dom, name, flags) and hands its endpoint to the loop through
 * an eventfd; until then operations wait in the backlog. Recovery from a
 * broken connection is such a reset, never fi_av_remove: libfabric 1.17's
 * rxm crashes in fi_av_remove (FI_AV_REMOVE_CLEANUP) on a peer whose
 * connect failed (docs/FABRIC.md).
 */
#define LOG_MODULE "fabric"
#include "fabric/fabric_int.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <rdma/fi_errno.h>

#include "common/log.h"

static void ep_res_close(const char *name, struct fab_ep_res *r)
{
	/* The endpoint first: once it is closed no buffer of ours is touched. */
	fab_close_fid(name, r->ep ? &r->ep->fid : NULL, "endpoint");
	fab_close_fid(name, r->av ? &r->av->fid : NULL, "address vector");
	fab_close_fid(name, r->cq ? &r->cq->fid : NULL, "completion queue");
	r->ep = NULL;
	r->av = NULL;
	r->cq = NULL;
	r->wait_fd = -1;
}

/*
 * An AV holding the peer, a CQ (with a wait fd unless polling), and the
 * endpoint bound to both and enabled (it then listens at the link's local
 * address). Runs on the loop or on a helper thread, so it reads only what
 * stays fixed for the link's life and logs nothing.
 */
int fab_ep_create(const struct fab_link *link, struct fab_ep_res *r, const char **what)
{
	const struct fab_dom *d = &link->dom;
	struct fi_cq_attr cq_attr;
	struct fi_av_attr av_attr;
	int rc;

	memset(r, 0, sizeof(*r));
	r->wait_fd = -1;
	memset(&av_attr, 0, sizeof(av_attr));
	av_attr.type = FI_AV_TABLE;
	av_attr.count = 4;
	*what = "fi_av_open";
	rc = fi_av_open(d->domain, &av_attr, &r->av, NULL);
	if (rc)
		goto fail;
	*what = "fi_av_insert";
	rc = fi_av_insert(r->av, &d->peer_sa, 1, &r->peer, 0, NULL);
	if (rc != 1) {
		rc = rc < 0 ? rc : -FI_EADDRNOTAVAIL;
		goto fail;
	}
	memset(&cq_attr, 0, sizeof(cq_attr));
	cq_attr.format = FI_CQ_FORMAT_DATA;
	cq_attr.size = d->info->tx_attr->size + d->info->rx_attr->size;
	cq_attr.wait_obj = link->ep.poll_mode ? FI_WAIT_NONE : FI_WAIT_FD;
	*what = "fi_cq_open";
	rc = fi_cq_open(d->domain, &cq_attr, &r->cq, NULL);
	if (rc && cq_attr.wait_obj == FI_WAIT_FD) {
		r->no_wait_fd = true;
		cq_attr.wait_obj = FI_WAIT_NONE;
		rc = fi_cq_open(d->domain, &cq_attr, &r->cq, NULL);
	}
	if (rc)
		goto fail;
	if (cq_attr.wait_obj == FI_WAIT_FD &&
	    fi_control(&r->cq->fid, FI_GETWAIT, &r->wait_fd) != 0) {
		r->no_wait_fd = true;
		r->wait_fd = -1;
	}
	*what = "fi_endpoint";
	rc = fi_endpoint(d->domain, d->info, &r->ep, NULL);
	if (rc)
		goto fail;
	*what = "fi_ep_bind";
	rc = fi_ep_bind(r->ep, &r->av->fid, 0);
	if (!rc)
		rc = fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV);
	if (rc)
		goto fail;
	*what = "fi_enable";
	rc = fi_enable(r->ep);
	if (rc)
		goto fail;
	return 0;
fail:
	ep_res_close(link->name, r);
	if (rc == -FI_EADDRINUSE)
		return -EADDRINUSE;
	return fab_errno(rc);
}

/* Watch the new endpoint's wait fd, post the receive buffers, and let the
 * backlog go. */
void fab_ep_install(struct fab_link *link, struct fab_ep_res *r)
{
	link->ep.res = *r;
	if (r->no_wait_fd && !link->ep.poll_mode) {
		LOG_WARN("%s: provider %s gives no wait fd for its completion queue: polling",
			 link->name, link->dom.prov);
		link->ep.poll_mode = true;
	}
	if (link->ep.res.wait_fd >= 0) {
		/* Edge-triggered: wake on every new event behind the wait fd, not
		 * on readiness the provider leaves standing (a signal byte or a
		 * listening socket it has not served yet), which would spin. */
		int rc = loop_io_add(link->loop, &link->ep.io, link->ep.res.wait_fd,
				     EPOLLIN | EPOLLET, fab_progress_on_cq_fd, link);
		if (rc) {
			LOG_WARN("%s: cannot watch the completion queue (%s): polling", link->name,
				 strerror(-rc));
			link->ep.res.wait_fd = -1;
			link->ep.poll_mode = true;
		}
	}
	link->ep.ready = true;
	link->ep.retry_ns = 0;
	link->ops.retry_ns = FAB_RETRY_MIN_NS;
	link->ops.retry_at = 0;
	link->ops.idle_poll_ns = FAB_IDLE_POLL_MIN_NS;
	for (unsigned i = 0; i < link->msg.rx_depth; i++)
		fab_repost_rx(link, &link->msg.rx[i]);
	link->ops.need_progress = true;
	fab_schedule(link, 0);
}

/* The caller has taken every operation away from the link; their contexts
 * die with the CQ. */
void fab_ep_drop(struct fab_link *link)
{
	struct fab_tstart t0;

	fab_tstart(&t0);
	if (link->ep.io.added)
		loop_io_del(link->loop, &link->ep.io);
	ep_res_close(link->name, &link->ep.res);
	fab_call_timed(link, "fi_close(endpoint)", &t0);
	link->ep.ready = false;
	for (unsigned i = 0; link->msg.rx && i < link->msg.rx_depth; i++) {
		if (!link->msg.rx[i].pending)
			link->msg.rx_pending++;
		link->msg.rx[i].pending = true;
	}
}

/* An endpoint creation ended (on the loop or the helper thread). */
static void ep_created(struct fab_link *link, struct fab_ep_res *r, int rc, const char *what)
{
	if (rc == 0) {
		fab_ep_install(link, r);
		return;
	}
	link->ep.retry_ns = link->ep.retry_ns ? MIN(link->ep.retry_ns * 2, FAB_EP_RETRY_MAX_NS)
					      : FAB_EP_RETRY_MIN_NS;
	link->ep.retry_at = loop_now_ns() + link->ep.retry_ns;
	if (fab_log_allowed(&link->rl_ep))
		LOG_ERROR("%s: cannot create the endpoint at %s:%s over %s (%s: %s); retrying",
			  link->name, link->dom.host, link->dom.port, link->dom.prov, what,
			  strerror(-rc));
	fab_schedule(link, link->ep.retry_ns);
}

/* ---- the helper thread ---- */

static void *job_main(void *arg)
{
	struct fab_ep_job *j = arg;
	uint64_t t0 = loop_now_ns(), one = 1;
	const char *what = "";

	j->rc = fab_ep_create(j->link, &j->res, &what);
	j->ns = loop_now_ns() - t0;
	j->what = what;
	atomic_store(&j->finished, true);
	/* Wake the loop; should this fail, its next timer run collects us. */
	if (write(j->link->helper.fd, &one, sizeof(one)) < 0)
		return NULL;
	return NULL;
}

/* Create the next endpoint on a helper thread (all signals blocked in it).
 * @return 0, or a negative errno when no thread could be started. */
static int job_start(struct fab_link *link)
{
	struct fab_ep_helper *h = &link->helper;
	sigset_t all, old;
	int rc;

	if (h->fd < 0)
		return -ENOSYS;
	h->job.link = link;
	h->job.rc = 0;
	h->job.what = "";
	atomic_store(&h->job.finished, false);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&h->job.thread, NULL, job_main, &h->job);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		if (fab_log_allowed(&link->rl_ep))
			LOG_WARN("%s: no helper thread (%s): creating the endpoint on the loop",
				 link->name, strerror(rc));
		return -rc;
	}
	h->active = true;
	return 0;
}

/* At once when the helper has finished; in fab_link_close it may still be
 * working, and this waits for it. */
void fab_ep_job_collect(struct fab_link *link)
{
	struct fab_ep_job *j = &link->helper.job;

	if (!link->helper.active)
		return;
	pthread_join(j->thread, NULL);
	link->helper.active = false;
	link->st.ep_open_ns = j->ns;
	if (link->closing || link->ep.suspended) {
		/* Suspended meanwhile: connections it may have accepted die. */
		if (j->rc == 0)
			ep_res_close(link->name, &j->res);
		return;
	}
	ep_created(link, &j->res, j->rc, j->what);
}

/* On a helper thread when the domain is thread safe (its buffer pools cost
 * 4-50 ms on rxm), else here. */
void fab_ep_start(struct fab_link *link)
{
	struct fab_ep_res r;
	const char *what = "";
	struct fab_tstart t0;
	int rc;

	if (link->closing || link->ep.ready || link->helper.active || link->ep.suspended)
		return;
	if (link->dom.async && job_start(link) == 0)
		return;
	fab_tstart(&t0);
	rc = fab_ep_create(link, &r, &what);
	link->st.ep_open_ns = loop_now_ns() - t0.wall;
	fab_call_timed(link, "endpoint creation", &t0);
	ep_created(link, &r, rc, what);
}

static void on_helper_fd(struct loop_io *io, uint32_t events)
{
	struct fab_link *link = io->arg;
	uint64_t v;

	(void)events;
	if (read(link->helper.fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		LOG_DEBUG("%s: reading the helper's eventfd: %s", link->name, strerror(errno));
	if (link->helper.active && atomic_load(&link->helper.job.finished)) {
		link->busy++;
		fab_ep_job_collect(link);
		fab_link_leave(link);
	}
}

/* The helper thread's wake-up: an eventfd in the loop. Without one,
 * endpoints are created on the loop. */
void fab_ep_helper_open(struct fab_link *link)
{
	struct fab_ep_helper *h = &link->helper;
	int rc;

	if (!link->dom.async)
		return;
	h->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (h->fd >= 0) {
		rc = loop_io_add(link->loop, &h->io, h->fd, EPOLLIN, on_helper_fd, link);
		if (rc == 0)
			return;
		close(h->fd);
		h->fd = -1;
	}
	LOG_WARN("%s: no eventfd for a helper thread: endpoints are recreated on the loop",
		 link->name);
	link->dom.async = false;
}

void fab_ep_helper_close(struct fab_link *link)
{
	if (link->helper.io.added)
		loop_io_del(link->loop, &link->helper.io);
	if (link->helper.fd >= 0)
		close(link->helper.fd);
	link->helper.fd = -1;
}

/* ---- reset ---- */

/* While an endpoint is being created there is nothing to close: only the
 * backlog fails. */
void fab_ep_reset(struct fab_link *link, int status)
{
	uint64_t t0 = loop_now_ns();
	struct fab_op *ops;

	link->ep.reset_pending = false;
	ops = fab_detach_all(link);
	link->ep.gen++;
	if (link->ep.ready) {
		fab_ep_drop(link);
		link->st.resets++;
	}
	fab_ep_start(link);
	link->ops.retry_ns = FAB_RETRY_MIN_NS;
	link->ops.retry_at = 0;
	link->st.reset_ns = loop_now_ns() - t0;
	LOG_DEBUG("%s: endpoint reset in %.2f ms on the loop", link->name,
		  (double)link->st.reset_ns / 1e6);
	link->busy++;
	fab_call_detached(ops, status);
	if (!link->closing)
		fab_schedule(link, 0);
	fab_link_leave(link);
}
