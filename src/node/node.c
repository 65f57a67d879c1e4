/* duetd's boot and shutdown: the order in which the modules come up and go.
 *
 * Boot (DESIGN.md): the interconnect first (links, boot region, handshake in
 * the background), then the failover monitor and the boot check of the own
 * mailbox, then the shelf and the NVRAM log (replayed onto it), then the
 * listeners and the control socket. Shutdown is the reverse, and waits for
 * every I/O the store accepted.
 *
 * Rule kept: this file only sequences; what each part does lives in its
 * own file (datapath.c, mirror_host.c, failover.c, control.c) and module,
 * and every module is configured through src/config's options. */
#define LOG_MODULE "node"
#include "node/node_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "ccm/ccm.h"
#include "common/log.h"
#include "common/util.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"
#include "store/store.h"

static void signal_event(struct loop_io *io, uint32_t events)
{
	struct node *n = io->arg;
	struct signalfd_siginfo si;
	(void)events;

	while (read(n->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		LOG_INFO("signal %u: shutting down", si.ssi_signo);
		n->stopping = true;
		loop_stop(n->loop);
	}
}

static int setup_signals(struct node *n)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	n->sig_fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (n->sig_fd < 0) {
		int err = -errno;
		LOG_ERROR("signalfd: %s", strerror(errno));
		return err;
	}
	return loop_io_add(n->loop, &n->sig_io, n->sig_fd, EPOLLIN, signal_event, n);
}

/* The interconnect comes first: the partner can find our boot region and
 * run its half of the handshake while the rest of this node still loads. */
static int open_interconnect(struct node *n)
{
	struct ccm_opts o;
	int rc;

	if (n->cfg.ic.n_links == 0) {
		LOG_INFO("no interconnect links configured: running without a partner");
		return 0;
	}
	config_ccm_opts(&n->cfg, &o);
	rc = ccm_create(n->loop, &o, &n->ccm);
	if (rc < 0)
		return rc;
	return ccm_start(n->ccm);
}

static int open_storage(struct node *n)
{
	int rc = node_datapath_open_store(n, n->cfg.node.shelf, &n->store);

	if (rc == 0)
		node_failover_gate_store(n, n->store);
	if (rc == 0 && !n->taken_at_boot)
		node_lock_serve_own(n, true); /* taken over: the partner holds it */
	return rc;
}

/* A node taken over serves nothing of its own until the giveback: no
 * listener (clients go to the partner's proxy port) and the backend, which
 * also serves the partner's forwarded requests, refuses. */
static int open_listeners(struct node *n)
{
	int rc = node_datapath_create(n, n->store, n->mirror, "own", &n->dp);

	if (rc == 0)
		rc = node_reloc_create(n);
	if (rc == 0)
		rc = node_move_create(n);
	if (rc < 0)
		return rc;
	if (n->taken_at_boot) {
		node_datapath_set_serving(n->dp, false);
		LOG_WARN("not serving the own volumes: waiting for the partner's giveback");
		return 0;
	}
	node_move_boot(n); /* moves a crash interrupted: forward or back */
	/* The own mailbox was read clean: the address is ours to hold. */
	rc = node_addr_take_own(n);
	if (rc < 0)
		return rc;
	return node_datapath_listen(n);
}

/* The proxy port: the partner's volumes, forwarded over the interconnect;
 * and this node's volumes served to the partner's proxy port, through the
 * same backend as the NBD listener. */
static int open_proxy(struct node *n)
{
	struct proxy_opts po;
	struct nbd_server_opts o;
	int rc;

	config_proxy_opts(&n->cfg, &po);
	node_reloc_proxy_opts(n, &po);
	config_nbd_opts(&n->cfg, true, &o);
	o.max_clients = n->max_clients;
	o.budget = n->nbd_budget;

	if (!n->ccm) {
		if (n->cfg.nbd.proxy_listen[0])
			LOG_WARN("[nbd] proxy_listen ignored: no interconnect links configured");
		return 0;
	}
	rc = proxy_create(n->loop, n->ccm, &po, &n->proxy);
	if (rc < 0)
		return rc;
	if (n->taken_at_boot)
		proxy_set_serving(n->proxy, false); /* the partner serves our volumes */
	if (!n->cfg.nbd.proxy_listen[0])
		return 0; /* serve the partner's proxy port, open none here */
	return nbd_server_create(n->loop, &o, proxy_backend_ops(), n->proxy, &n->proxy_nbd);
}

/* Boot order follows DESIGN.md: the interconnect comes up first (so the
 * partner can reach us while storage loads), then the shelf and the NVRAM
 * log (replayed onto it), then the listeners and the control socket. */
int node_create(const struct duet_config *cfg, struct node **out)
{
	struct node *n = calloc(1, sizeof(*n));
	int rc;

	if (!n)
		return -ENOMEM;
	n->cfg = *cfg;
	n->sig_fd = -1;
	n->serve_lock_fd = n->pserve_lock_fd = -1;
	for (unsigned i = 0; i < ARRAY_SIZE(n->lock_fd); i++)
		n->lock_fd[i] = -1;
	n->started_ns = loop_now_ns();
	node_limits_raise();
	rc = node_control_check(n);
	if (rc < 0)
		goto err;
	/* Before anything of the shelf, the log or the image is read. */
	rc = node_lock_files(n);
	if (rc < 0)
		goto err;
	rc = loop_create(&n->loop);
	if (rc < 0)
		goto err;
	rc = setup_signals(n);
	if (rc < 0)
		goto err;
	/* Before anything else: an own service address an earlier run left. */
	rc = node_addr_boot(n);
	if (rc < 0)
		goto err;
	/* Before the monitor: its first state changes are events too. */
	rc = node_hooks_create(n, &n->hooks);
	if (rc < 0)
		goto err;
	rc = open_interconnect(n);
	if (rc < 0)
		goto err;
	rc = node_addr_register(n);
	if (rc < 0)
		goto err;
	/* The failover monitor reads the own mailbox before the shelf is
	 * touched: a takeover mark there means the partner serves it. */
	rc = node_failover_open(n);
	if (rc < 0)
		goto err;
	rc = open_storage(n);
	if (rc < 0)
		goto err;
	/* The NVRAM log is replayed onto the shelf before anything can read
	 * it, then mirroring starts (the CCM session may already be up). */
	rc = node_mirror_open(n);
	if (rc < 0)
		goto err;
	rc = node_mirror_connect(n);
	if (rc < 0)
		goto err;
	rc = node_lock_image(n); /* made just now on a first start */
	if (rc < 0)
		goto err;
	n->max_clients = node_limits_clients(n);
	rc = nbd_budget_create(n->cfg.nbd.buffer_limit, &n->nbd_budget);
	if (rc < 0)
		goto err;
	rc = open_listeners(n);
	if (rc < 0)
		goto err;
	rc = open_proxy(n);
	if (rc < 0)
		goto err;
	node_adopt_boot(n); /* volumes relocated here, partner down or not */
	rc = node_balance_create(n);
	if (rc < 0)
		goto err;
	rc = node_control_create(n, n->cfg.node.control, &n->control);
	if (rc < 0)
		goto err;
	if (n->cfg.metrics.listen[0]) {
		rc = node_metrics_http_create(n, n->cfg.metrics.listen, &n->metrics_http);
		if (rc < 0)
			goto err;
	}
	rc = monitor_start_watchdog(n->monitor);
	if (rc < 0)
		goto err;
	LOG_INFO("node %s ready (duet %s)", n->cfg.node.id, DUET_VERSION);
	*out = n;
	return 0;

err:
	node_destroy(n);
	return rc;
}

/* realtime = auto: until the reactor finds itself late the node runs at
 * normal priority, where a client on the same CPUs is not preempted on
 * every request it sends; from then on every thread runs at SCHED_RR. */
static void realtime_late(void *arg, uint64_t late_ns)
{
	struct node *n = arg;
	char msg[160];

	n->rt_late_ns = late_ns; /* above the watch's limit, so never 0 */
	util_go_realtime(msg, sizeof(msg));
	LOG_WARN("the reactor ran %llu ms late (busy neighbours?), realtime = auto: %s",
		 (unsigned long long)(late_ns / NS_PER_MS), msg);
}

static void realtime_watch(struct node *n)
{
	if (n->cfg.node.realtime == NODE_RT_AUTO)
		loop_watch_late(n->loop, config_realtime_late_ns(&n->cfg), realtime_late, n);
}

int node_run(struct node *n)
{
	node_service_ready(n);
	realtime_watch(n);
	return loop_run(n->loop);
}

static void goodbye_sent(void *arg)
{
	*(bool *)arg = true;
}

/* Close the doors first (control, NBD), then let the store finish what it
 * already accepted, so nothing is freed under an I/O in flight. */
void node_destroy(struct node *n)
{
	if (!n)
		return;
	node_service_stopping(n);
	node_metrics_http_destroy(n->metrics_http);
	node_balance_destroy(n); /* no relocation starts from here on */
	node_control_destroy(n->control);
	if (n->nbd)
		nbd_server_destroy(n->nbd);
	node_datapath_fail_held(n->dp, -ESHUTDOWN);
	if (n->proxy_nbd)
		nbd_server_destroy(n->proxy_nbd);
	/* The addresses go with the listeners, after them (their clients'
	 * connections end with a FIN from the address): a stopped node
	 * answers nothing. */
	node_addr_close(n, false);
	/* No more requests from the partner either (they share the backend). */
	proxy_stop(n->proxy);
	/* Writes held for an absent partner (mirror_down = suspend) fail now
	 * rather than at their deadline. */
	node_mirror_release_held(n);
	uint64_t deadline = loop_now_ns() + 30ull * 1000000000ull;
	node_move_stop(n);
	/* The partner's volumes during a takeover too: their requests came
	 * through the proxy's routes, whose state goes with proxy_destroy. */
	while ((node_datapath_inflight(n->dp) > 0 || node_reloc_inflight(n) > 0 ||
		node_datapath_inflight(n->partner_dp) > 0 || proxy_busy(n->proxy) ||
		node_move_busy(n)) &&
	       loop_now_ns() < deadline)
		loop_run_once(n->loop, 10000000);
	if (node_datapath_inflight(n->dp) == 0)
		node_mirror_close(n); /* a last consistency point, while the backend lives */
	proxy_destroy(n->proxy);
	node_move_destroy(n);
	node_reloc_destroy(n);
	/* After the proxy: it routed the partner's volumes to that shelf. */
	node_failover_stop(n);
	if (node_datapath_inflight(n->dp) > 0)
		LOG_ERROR("%llu I/O still in flight at exit",
			  (unsigned long long)node_datapath_inflight(n->dp));
	else
		store_close(n->store);
	node_datapath_destroy(n->dp);
	node_failover_close(n);
	/* Before the CCM goes: the hooks read its links. */
	node_hooks_destroy(n->hooks);
	n->hooks = NULL;
	if (n->ccm) {
		/* Say goodbye, so the partner ends the session now instead of
		 * waiting out its link deadline. */
		bool said = false;
		if (ccm_shutdown(n->ccm, goodbye_sent, &said) == 0) {
			while (!said)
				loop_run_once(n->loop, 10000000);
		}
		ccm_destroy(n->ccm);
	}
	/* After the CCM: mirror writes it still held completed in there. */
	node_mirror_ccm_destroy(n->mirror_ccm);
	node_failover_free(n);
	if (n->sig_fd >= 0) {
		loop_io_del(n->loop, &n->sig_io);
		close(n->sig_fd);
	}
	/* Tasks still posted free themselves (a closed mirror leaves one). */
	if (n->loop)
		loop_run_once(n->loop, 0);
	loop_destroy(n->loop);
	nbd_budget_put(n->nbd_budget); /* the servers still alive hold their own */
	node_unlock_files(n);
	free(n);
}
