/* One interconnect link over libfabric (see fabric.h for the contract):
 * its life from fab_link_open to fab_link_close, the public reset,
 * suspend, resume and abort, and its statistics.
 *
 * Internals in short (fabric_int.h gives the files and their layering):
 * - Every operation gets an internal slot from a per-link pool; the slot,
 *   not the caller's fab_op, is libfabric's context (ops.c).
 * - One timer does all deferred work (progress.c).
 * - The endpoint generation: the fabric, domain and regions live as long as
 *   the link; the endpoint with its address vector and completion queue is
 *   recreated by a reset, on a helper thread when the domain is thread
 *   safe (endpoint.c).
 *
 * Rule: resources are released in reverse order of creation, the endpoint
 * first: once it is closed no buffer of ours is touched any more, and only
 * then are operations called back. The link's memory is freed by the last
 * callback section to leave (fab_link_leave), so fab_link_close is safe
 * from any callback of the link.
 */
#define LOG_MODULE "fabric"
#include "fabric/fabric_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fi_errno.h>

#include "common/log.h"

/* ---- reset and close ---- */

void fab_link_reset(struct fab_link *link)
{
	if (!link || link->closing)
		return;
	fab_ep_reset(link, -ECANCELED);
}

void fab_link_suspend(struct fab_link *link)
{
	if (!link || link->closing)
		return;
	link->ep.suspended = true;
	fab_ep_reset(link, -ECANCELED);
}

void fab_link_resume(struct fab_link *link)
{
	if (!link || link->closing || !link->ep.suspended)
		return;
	link->ep.suspended = false;
	link->ep.retry_at = 0;
	fab_ep_start(link);
	fab_schedule(link, 0);
}

void fab_link_abort(struct fab_link *link)
{
	if (!link || link->closing)
		return;
	LOG_INFO("%s: aborted: operations failed with -ETIMEDOUT, endpoint reset", link->name);
	fab_ep_reset(link, -ETIMEDOUT);
}

/* Release libfabric resources in reverse order of creation. The endpoint
 * goes first: after it is closed no buffer of ours is touched any more. */
static void teardown(struct fab_link *link)
{
	struct fab_dom *d = &link->dom;

	loop_timer_cancel(link->loop, &link->timer);
	loop_poller_del(link->loop, &link->poller);
	if (link->helper.active)
		fab_ep_job_collect(link); /* waits for the helper, closes its endpoint */
	fab_ep_helper_close(link);
	if (link->ep.res.ep || link->ep.res.av || link->ep.res.cq)
		fab_ep_drop(link);
	fab_mr_detach_all(link);
	fab_msgs_close_regions(link);
	fab_close_fid(link->name, d->domain ? &d->domain->fid : NULL, "domain");
	fab_close_fid(link->name, d->fabric ? &d->fabric->fid : NULL, "fabric");
	d->domain = NULL;
	d->fabric = NULL;
	if (d->info)
		fi_freeinfo(d->info);
	d->info = NULL;
	fab_ops_free(link);
}

void fab_link_close(struct fab_link *link)
{
	struct fab_op *ops;

	if (!link || link->closing)
		return;
	link->closing = true;
	link->busy++;
	ops = fab_detach_all(link);
	/* Close the endpoint before calling back, so that the callers may free
	 * their buffers at once: nothing touches them any more. */
	teardown(link);
	fab_call_detached(ops, -ECANCELED);
	LOG_INFO("%s: closed", link->name);
	fab_link_leave(link);
}

const char *fab_link_name(const struct fab_link *link)
{
	return link ? link->name : "(none)";
}

void fab_link_get_stats(const struct fab_link *link, struct fab_link_stats *st)
{
	*st = link->st;
	st->oldest_ns = fab_oldest_accepted(link);
	st->backlog = link->ops.backlog.n;
	st->ep_ready = link->ep.ready;
	st->suspended = link->ep.suspended;
}

/* ---- open ---- */

static void set_env_default(const char *name, const char *value)
{
	if (!getenv(name))
		setenv(name, value, 0);
}

static struct fi_info *make_hints(const char *prov, int addr_format, uint64_t mr_mode)
{
	struct fi_info *h = fi_allocinfo();

	if (!h)
		return NULL;
	h->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_MSG |
		  FI_SEND | FI_RECV;
	h->mode = FI_CONTEXT | FI_CONTEXT2 | FI_RX_CQ_DATA;
	h->addr_format = (uint32_t)addr_format;
	h->ep_attr->type = FI_EP_RDM;
	h->domain_attr->mr_mode = (int)mr_mode;
	h->domain_attr->threading = FI_THREAD_DOMAIN;
	h->domain_attr->resource_mgmt = FI_RM_ENABLED;
	h->fabric_attr->prov_name = strdup(prov);
	if (!h->fabric_attr->prov_name) {
		fi_freeinfo(h);
		return NULL;
	}
	return h;
}

/* fi_getinfo found nothing: ask again with looser hints to tell the user
 * why (the provider needs an MR mode duet cannot serve, lacks a capability,
 * or cannot bind the address). */
static void explain_getinfo_failure(const char *name, const char *prov, const char *host,
				    const char *port, int addr_format, int rc)
{
	struct fi_info *h, *info = NULL;
	uint64_t all_mr = FI_MR_LOCAL | FI_MR_ALLOCATED | FI_MR_ENDPOINT | FI_MR_VIRT_ADDR |
			  FI_MR_PROV_KEY | FI_MR_RAW | FI_MR_MMU_NOTIFY | FI_MR_RMA_EVENT;

	h = make_hints(prov, addr_format, all_mr);
	if (h && fi_getinfo(FAB_FI_VERSION, host, port, FI_SOURCE, h, &info) == 0) {
		char modes[256];
		int mm = info->domain_attr->mr_mode & ~(int)FAB_SUPPORTED_MR_MODE;
		fi_tostr_r(modes, sizeof(modes), &mm, FI_TYPE_MR_MODE);
		LOG_ERROR("%s: provider %s needs memory registration modes [%s] which duet links "
			  "do not support (regions are addressed by offset under application "
			  "chosen keys)",
			  name, prov, modes);
		goto out;
	}
	if (h) {
		h->caps = 0;
		h->mode = ~0ull;
		if (fi_getinfo(FAB_FI_VERSION, host, port, FI_SOURCE, h, &info) == 0) {
			LOG_ERROR("%s: provider %s at %s:%s lacks what duet needs (FI_EP_RDM with "
				  "RMA read/write, remote CQ data and messages, or an accepted "
				  "mode bit)",
				  name, prov, host, port);
			goto out;
		}
	}
	LOG_ERROR("%s: no libfabric provider \"%s\" can bind %s:%s: %s", name, prov, host, port,
		  fi_strerror(-rc));
out:
	if (info)
		fi_freeinfo(info);
	if (h)
		fi_freeinfo(h);
}

/* libfabric before 1.18 completes an RMA read response twice when its tcp
 * or net connection fails while the response is half received (upstream
 * commit a74ea0fcd); rxm then dereferences a NULL context and the process
 * dies (docs/FABRIC.md). Nothing here can prevent it: say so, once. */
static void warn_known_crash(const char *name, const char *prov)
{
	static bool warned;
	uint32_t v = fi_version();

	if (warned || FI_MAJOR(v) > 1 || FI_MINOR(v) >= 18)
		return;
	if (!strstr(prov, "tcp") && !strstr(prov, "net"))
		return;
	warned = true;
	LOG_WARN("%s: libfabric %u.%u's %s crashes when a connection fails during an RMA read "
		 "response (fixed in 1.18): a link failure under read load may end this process",
		 name, FI_MAJOR(v), FI_MINOR(v), prov);
}

/* rxm's eager limit is its buffer size, FI_OFI_RXM_BUFFER_SIZE (read once,
 * at libfabric's first call: fab_link_open sets it first; 16 KiB when
 * unset). A message above it goes rendezvous or segmented, and such a send
 * is never completed when the peer closes the connection before answering
 * it. That happens only when the environment set a smaller size: say so,
 * once. */
static void warn_rendezvous(const struct fab_link *link)
{
	static bool warned;
	const char *e = getenv("FI_OFI_RXM_BUFFER_SIZE");
	size_t eager = e ? (size_t)strtoull(e, NULL, 0) : 16384;

	if (warned || !strstr(link->dom.prov, "rxm") || link->msg.max_msg <= eager)
		return;
	warned = true;
	LOG_WARN("%s: %s sends messages above %zu bytes by rendezvous (FI_OFI_RXM_BUFFER_SIZE): "
		 "such a send may never complete when a connection fails (the CCM then takes the "
		 "link out); set FI_OFI_RXM_BUFFER_SIZE to %d or more",
		 link->name, link->dom.prov, eager, FAB_MSG_MAX);
}

/* What lives as long as the link: fi_getinfo (the first call in a process
 * loads every provider: 100-170 ms), the fabric and the domain. */
static int open_domain(struct fab_link *link, int addr_format)
{
	struct fab_dom *d = &link->dom;
	struct fi_info *hints;
	int rc;

	hints = make_hints(d->prov, addr_format, FAB_SUPPORTED_MR_MODE);
	if (!hints)
		return -ENOMEM;
	struct fab_tstart t0;
	fab_tstart(&t0);
	rc = fi_getinfo(FAB_FI_VERSION, d->host, d->port, FI_SOURCE, hints, &d->info);
	fab_call_timed(link, "fi_getinfo", &t0);
	fi_freeinfo(hints);
	if (rc) {
		explain_getinfo_failure(link->name, d->prov, d->host, d->port, addr_format, rc);
		d->info = NULL;
		return rc == -FI_ENODATA ? -ENODATA : -EADDRNOTAVAIL;
	}
	struct fi_info *info = d->info;
	uint64_t mr_mode = (uint64_t)info->domain_attr->mr_mode;
	if (mr_mode & ~(uint64_t)FAB_SUPPORTED_MR_MODE) {
		LOG_ERROR("%s: provider %s returned unsupported mr_mode %#" PRIx64, link->name,
			  d->prov, mr_mode);
		return -ENODATA;
	}
	d->mr_local = (mr_mode & FI_MR_LOCAL) || (link->flags & FAB_LINK_FORCE_MR_LOCAL);
	d->max_rma = info->ep_attr->max_msg_size;
	d->cq_data_size = info->domain_attr->cq_data_size;
	d->key_max = info->domain_attr->mr_key_size >= 8
			 ? UINT64_MAX
			 : (1ull << (8 * info->domain_attr->mr_key_size)) - 1;
	if (d->key_max <= FAB_RESERVED_KEYS) {
		LOG_ERROR("%s: provider %s has %zu-byte keys: too few", link->name, d->prov,
			  info->domain_attr->mr_key_size);
		return -ENODATA;
	}
	link->reg.next_internal_key = d->key_max;
	if (link->msg.max_msg > info->ep_attr->max_msg_size) {
		LOG_ERROR("%s: max_msg %zu above provider %s's limit %zu", link->name,
			  link->msg.max_msg, d->prov, info->ep_attr->max_msg_size);
		return -EINVAL;
	}
	warn_rendezvous(link);
	rc = fi_fabric(info->fabric_attr, &d->fabric, NULL);
	if (rc) {
		LOG_ERROR("%s: fi_fabric(%s): %s", link->name, d->prov, fi_strerror(-rc));
		return fab_errno(rc);
	}
	rc = fi_domain(d->fabric, info, &d->domain, NULL);
	if (rc) {
		LOG_ERROR("%s: fi_domain(%s): %s", link->name, d->prov, fi_strerror(-rc));
		return fab_errno(rc);
	}
	warn_known_crash(link->name, d->prov);
	/* Endpoints may be created on a helper thread only if the domain
	 * allows concurrent calls (regions may be registered meanwhile). */
	d->async =
	    !(link->flags & FAB_LINK_SYNC_RESET) && info->domain_attr->threading == FI_THREAD_SAFE;
	return 0;
}

/* Read by libfabric once, at its first call in the process. */
static void set_env_defaults(void)
{
	char eager[24];

	set_env_default("FI_TCP_NODELAY", "1");
	/* rxm handles connection events only every 10 ms by default, and
	 * fi_trywait refuses meanwhile: handle them on every CQ read. */
	set_env_default("FI_OFI_RXM_CM_PROGRESS_INTERVAL", "0");
	/* rxm preposts 4096 receive buffers per endpoint (68 MB, 40-100 ms of
	 * page faults in fi_enable with 16 KiB buffers): 1024 are plenty for
	 * one peer (a provider short of receive buffers only delays). Its
	 * buffer size is its eager limit: messages above it go rendezvous,
	 * whose sends rxm never completes when the peer closes the connection
	 * before answering (a link flap: the CCM's message channel then
	 * stalls for good), so every message a link takes must fit. */
	set_env_default("FI_OFI_RXM_MSG_RX_SIZE", "1024");
	snprintf(eager, sizeof(eager), "%d", FAB_MSG_MAX);
	set_env_default("FI_OFI_RXM_BUFFER_SIZE", eager);
	set_env_default("IPATH_NO_BACKTRACE", "1");
	fab_timing_init();
}

/* Parse and copy the options into a new link; nothing is opened yet. */
static int link_new(struct loop *loop, const struct fab_link_opts *opts,
		    const struct fab_link_events *ev, struct sockaddr_storage *local_sa,
		    struct fab_link **out)
{
	const char *name = opts->name ? opts->name : "fab";
	socklen_t local_len;
	struct fab_link *link;

	if (opts->max_msg > FAB_MSG_MAX) {
		LOG_ERROR("%s: max_msg %zu above FAB_MSG_MAX (%d)", name, opts->max_msg,
			  FAB_MSG_MAX);
		return -EINVAL;
	}
	link = calloc(1, sizeof(*link));
	if (!link)
		return -ENOMEM;
	struct fab_dom *d = &link->dom;
	if (util_split_hostport(opts->local, d->host, sizeof(d->host), d->port, sizeof(d->port)) <
		0 ||
	    util_parse_hostport(opts->local, local_sa, &local_len) < 0) {
		LOG_ERROR("%s: bad local address \"%s\" (numeric host:port)", name, opts->local);
		free(link);
		return -EINVAL;
	}
	snprintf(link->name, sizeof(link->name), "%s", name);
	snprintf(d->prov, sizeof(d->prov), "%s",
		 opts->provider ? opts->provider : FAB_DEFAULT_PROVIDER);
	if (util_parse_hostport(opts->peer, &d->peer_sa, &d->peer_salen) < 0 ||
	    d->peer_sa.ss_family != local_sa->ss_family) {
		LOG_ERROR("%s: bad peer address \"%s\" (numeric host:port, same family as %s)",
			  name, opts->peer, opts->local);
		free(link);
		return -EINVAL;
	}
	if (ev)
		link->ev = *ev;
	link->loop = loop;
	link->flags = opts->flags;
	link->ep.res.wait_fd = -1;
	link->helper.fd = -1;
	link->ep.poll_mode = opts->flags & FAB_LINK_FORCE_POLL;
	list_init(&link->reg.mrs);
	fab_ops_init(link);
	link->msg.rx_depth = opts->rx_depth ? opts->rx_depth : 64;
	link->msg.max_msg = opts->max_msg ? opts->max_msg : 4096;
	link->msg.sbuf_stride = (sizeof(struct fab_sbuf) + link->msg.max_msg + 63) & ~(size_t)63;
	link->ops.retry_ns = FAB_RETRY_MIN_NS;
	link->ops.idle_poll_ns = FAB_IDLE_POLL_MIN_NS;
	link->ops.retry_max_ns =
	    (opts->retry_max_ms ? opts->retry_max_ms : FAB_DEFAULT_RETRY_MS) * 1000000ull;
	loop_timer_init(&link->timer, fab_progress_on_timer, link);
	link->ops.spin_ns = (uint64_t)opts->spin_us * 1000ull;
	*out = link;
	return 0;
}

int fab_link_open(struct loop *loop, const struct fab_link_opts *opts,
		  const struct fab_link_events *ev, struct fab_link **out)
{
	struct sockaddr_storage local_sa;
	struct fab_link *link;
	struct fab_ep_res r;
	const char *what = "";
	uint64_t t0;
	int rc;

	if (!loop || !opts || !out || !opts->local || !opts->peer)
		return -EINVAL;
	rc = link_new(loop, opts, ev, &local_sa, &link);
	if (rc)
		return rc;
	set_env_defaults();
	rc = open_domain(link, local_sa.ss_family == AF_INET6 ? FI_SOCKADDR_IN6 : FI_SOCKADDR_IN);
	if (rc)
		goto fail;
	rc = fab_msgs_open(link);
	if (rc)
		goto fail;
	/* The first endpoint on the loop: a bind error is the caller's. */
	t0 = loop_now_ns();
	rc = fab_ep_create(link, &r, &what);
	link->st.ep_open_ns = loop_now_ns() - t0;
	if (rc) {
		LOG_ERROR("%s: cannot open %s with %s (%s: %s)", link->name, opts->local,
			  link->dom.prov, what, strerror(-rc));
		goto fail;
	}
	fab_ep_install(link, &r);
	fab_ep_helper_open(link);
	if (link->ops.spin_ns)
		loop_poller_add(loop, &link->poller, fab_progress_poll, link);
	/* The statistics of calls count from here: opening blocks by design. */
	link->st.slow_calls = 0;
	link->st.max_call_ns = 0;
	link->st.max_call = NULL;
	LOG_INFO("%s: link %s -> %s over %s%s%s", link->name, opts->local, opts->peer,
		 link->dom.prov, link->dom.mr_local ? " (local regions)" : "",
		 link->ep.poll_mode ? " (polling)" : "");
	*out = link;
	return 0;
fail:
	link->closing = true;
	teardown(link);
	fab_link_free(link);
	return rc;
}
