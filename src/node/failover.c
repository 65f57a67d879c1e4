/* The failover monitor wired into the node (docs/FAILOVER.md, "In the node").
 *
 * The monitor (src/monitor) decides; this file does what it asks with the
 * node's parts:
 *
 *   heartbeats      a CCM client "monitor" whose port memory is the
 *                   monitor's heartbeat region; one pinned write per link
 *   boot check      the listeners open only once the own mailbox was read
 *                   and held no takeover mark (node.c waits for it)
 *   I/O gate        datapath.c holds requests while the lease is closed;
 *                   io_resume releases them
 *   STOP_OWN        fenced: close the own NBD listener and its clients,
 *                   refuse the partner's forwarded requests (it re-executes
 *                   them), stop mirroring into its image of our log
 *   REPLAY_PARTNER  open the partner's shelf, replay our copy of its log,
 *                   record the replay in our mark (the partner's proof)
 *   SERVE_PARTNER   route its volumes on our proxy port to that shelf
 *   DRAIN_PARTNER   route them back, wait for what runs, fdatasync, close;
 *                   a partner that dies meanwhile gets them served again
 *                   (REPLAY_PARTNER reopens the shelf; the image is retired)
 *   START_OWN       publish "degraded", replay the own log if the partner's
 *                   mark has no proof that it did (the taker served nothing),
 *                   drop it, mirror again (also at a takeback from a dead
 *                   taker that served: it wrote our volumes straight to our
 *                   shelf, and our old log would undo that)
 *   SERVE_OWN       serve the own volumes again
 */
#define LOG_MODULE "failover"
#include "node/node_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ccm/ccm.h"
#include "common/log.h"
#include "common/util.h"
#include "mirror/mirror.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"
#include "store/store.h"

#define RETRY_NS	 (10 * NS_PER_MS)
#define DRAIN_POLL_NS	 (2 * NS_PER_MS)
#define DRAIN_TIMEOUT_NS (60000 * NS_PER_MS)
#define PROGRESS_NS	 (100 * NS_PER_MS)

struct failover {
	/* Heartbeats: the CCM client and one pinned write per link. */
	struct ccm_client *hb_client;
	struct ccm_port *hb_port;
	void *hb_port_buf[1];
	struct ccm_op hb_op[MONITOR_MAX_LINKS];
	_Alignas(64) uint8_t hb_buf[MONITOR_MAX_LINKS][MONITOR_REC_SIZE];
	bool hb_busy[MONITOR_MAX_LINKS];
	/* Our copy of the partner's log, as the monitor's mirror input. */
	struct loop_timer copy_timer;
	uint64_t copy_ns;
	/* Takeover: the replay job and its progress reports. */
	struct mirror_replay_job *replay;
	struct loop_timer progress_timer;
	/* Giveback without the partner's proof: our own log's replay. */
	struct mirror_replay_job *own_replay;
	bool own_replayed;
	uint64_t replay_start_ns;
	/* Giveback, both sides. */
	struct loop_timer drain_timer;
	uint64_t drain_start_ns;
	uint64_t drain_hold_ns; /* test only: DUET_TEST_DRAIN_HOLD_MS */
	struct loop_timer close_timer;
	struct loop_timer reset_timer;
	/* Test only: DUET_TEST_REPLAY_DELAY_MS holds REPLAY_PARTNER this long
	 * before it looks at the image (a window to kill the taker in). */
	struct loop_timer delay_timer;
	bool delayed;
};

/* ---- heartbeats ---- */

static void hb_done(struct ccm_op *op, int status)
{
	struct failover *fo = op->arg;

	(void)status; /* a lost heartbeat is what the partner's monitor measures */
	fo->hb_busy[op - fo->hb_op] = false;
}

/* One heartbeat on link @p link only: a failed link must look dead, so the
 * write is never re-issued elsewhere, and a link whose last write has not
 * completed is skipped. */
static int hb_send(void *arg, unsigned link, const void *rec, size_t len)
{
	struct node *n = arg;
	struct failover *fo = n->fo;
	int rc;

	if (link >= MONITOR_MAX_LINKS || len != MONITOR_REC_SIZE)
		return -EINVAL;
	if (!fo->hb_port || !ccm_port_is_up(fo->hb_port))
		return -ENOTCONN;
	if (fo->hb_busy[link])
		return -EBUSY;
	memcpy(fo->hb_buf[link], rec, len);
	fo->hb_op[link].done = hb_done;
	fo->hb_op[link].arg = fo;
	rc = ccm_port_write_link(fo->hb_port, link, &fo->hb_op[link], fo->hb_buf[link], len,
				 (uint64_t)link * MONITOR_REC_SIZE);
	if (rc == 0)
		fo->hb_busy[link] = true;
	return rc;
}

static const struct ccm_client_ops hb_client_ops = {0};

static int hb_register(struct node *n)
{
	struct failover *fo = n->fo;
	struct ccm_client_spec spec;
	size_t len;
	int rc;

	if (!n->ccm)
		return 0;
	monitor_hb_region(n->monitor, &fo->hb_port_buf[0], &len);
	if (len == 0)
		return 0;
	spec = (struct ccm_client_spec){
	    .name = "monitor",
	    .n_ports = 1,
	    .port_mem = len,
	    .port_buf = fo->hb_port_buf,
	    .ops = &hb_client_ops,
	    .arg = fo,
	};
	rc = ccm_client_register(n->ccm, &spec, &fo->hb_client);
	if (rc < 0) {
		LOG_ERROR("cannot register the monitor with the CCM: %s", strerror(-rc));
		return rc;
	}
	fo->hb_port = ccm_client_port(fo->hb_client, 0);
	return 0;
}

/* The takeover decision needs to know whether our copy of the partner's
 * log is complete; its header says so, and it changes under RDMA writes. */
static void copy_tick(struct loop_timer *t)
{
	struct node *n = t->arg;

	monitor_set_mirror(n->monitor, (enum ha_mirror)node_mirror_partner_copy(n));
	monitor_set_partner_log_given(n->monitor, node_shelf_partner_gave(n));
	loop_timer_arm(n->loop, t, n->fo->copy_ns);
}

/* ---- the fencing gate of the stores ---- */

static bool gate_allowed(void *arg)
{
	struct node *n = arg;

	return !n->monitor || monitor_io_allowed(n->monitor);
}

static void gate_wait(void *arg)
{
	struct node *n = arg;

	if (n->monitor)
		monitor_io_wait(n->monitor);
}

void node_failover_gate_store(struct node *n, struct store *s)
{
	store_set_gate(s, gate_allowed, gate_wait, n);
}

/* ---- the own volumes ---- */

/* A takeover mark stands in our mailbox: the partner serves our volumes
 * (or is about to). Nothing of ours may touch the shelf from now on. */
static void stop_own(struct node *n)
{
	n->fenced = true;
	LOG_ERROR("fenced by a takeover mark: closing the clients of the own volumes");
	/* The listener and its clients, then at once the address, before
	 * anything else runs: the clients' connections end with a FIN from the
	 * address while it is here (without it they would wait for replies on
	 * a dead connection), and the partner adds the address only once
	 * nobody on the link answers for it (addr.c, the claim). */
	if (n->nbd) {
		nbd_server_destroy(n->nbd);
		n->nbd = NULL;
	}
	node_addr_drop_own(n, "fenced by the partner's takeover mark");
	proxy_set_serving(n->proxy, false);
	node_datapath_set_serving(n->dp, false);
	node_datapath_set_serving(n->partner_dp, false);
	node_reloc_set_serving(n, false);
	/* Steps the store held at the gate (a stop came between the check and
	 * the system call) never reach the disk. */
	store_gate_fail(n->store, -EIO);
	store_gate_fail(n->pstore, -EIO);
	node_mirror_hold(n, true, "fenced by the partner's takeover mark");
	node_lock_serve_own(n, false); /* the partner takes it */
	monitor_action_done(n->monitor, HA_ACT_STOP_OWN, 0);
}

static void reset_done(void *arg, int rc)
{
	struct node *n = arg;

	if (rc == 0) {
		if (n->fo->own_replayed)
			LOG_INFO("own NVRAM log replayed and dropped: mirroring anew");
		else
			LOG_INFO("own NVRAM log dropped (the partner replayed it): mirroring anew");
		node_mirror_hold(n, false, NULL);
	}
	monitor_action_done(n->monitor, HA_ACT_START_OWN, rc);
}

static void try_reset(struct node *n)
{
	int rc = mirror_reset(n->mirror, reset_done, n);

	if (rc == -EBUSY) { /* writes of before the fence still finishing */
		loop_timer_arm(n->loop, &n->fo->reset_timer, RETRY_NS);
		return;
	}
	if (rc < 0 && rc != -EALREADY)
		monitor_action_done(n->monitor, HA_ACT_START_OWN, rc);
}

static void reset_retry(struct loop_timer *t)
{
	try_reset(t->arg);
}

static void own_replay_done(void *arg, int rc, const struct mirror_replay_stats *st)
{
	struct node *n = arg;
	struct failover *fo = n->fo;

	if (rc < 0)
		LOG_ERROR("giveback: replay of the own NVRAM log failed: %s", strerror(-rc));
	else
		LOG_WARN("giveback: own NVRAM log replayed (the partner did not replay it): %llu "
			 "records (seq %llu-%llu), %llu bytes, ended at: %s",
			 (unsigned long long)st->records, (unsigned long long)st->first_seq,
			 (unsigned long long)st->last_seq, (unsigned long long)st->bytes,
			 mirror_stop_name(st->stop));
	mirror_replay_free(fo->own_replay); /* @p st lives in it */
	fo->own_replay = NULL;
	if (rc < 0) {
		monitor_action_done(n->monitor, HA_ACT_START_OWN, rc);
		return;
	}
	fo->own_replayed = true;
	try_reset(n);
}

static void start_published(void *arg, int rc)
{
	struct node *n = arg;
	struct failover *fo = n->fo;

	if (rc < 0) {
		monitor_action_done(n->monitor, HA_ACT_START_OWN, rc);
		return;
	}
	mirror_transport_down(n->mirror, "own NVRAM log dropped at giveback");
	fo->own_replayed = false;
	if (!monitor_own_log_replayed(n->monitor)) {
		/* The partner's mark has no proof that it replayed our log (its
		 * replay was refused or never ran, and it served nothing): the
		 * log holds acknowledged writes the shelf may lack. Replay it,
		 * durably, before it is dropped: a crash meanwhile replays it
		 * again at the next START_OWN. */
		LOG_WARN("giveback: the partner did not replay this node's NVRAM log: replaying "
			 "it onto the own shelf");
		rc = mirror_replay_own_start(n->mirror, n->loop, n->store, own_replay_done, n,
					     &fo->own_replay);
		if (rc == 0)
			return;
		if (rc != -ENODATA) {
			LOG_ERROR("giveback: cannot replay the own NVRAM log: %s", strerror(-rc));
			monitor_action_done(n->monitor, HA_ACT_START_OWN, rc);
			return;
		}
	}
	try_reset(n);
}

/* Given back: the partner replayed our log and wrote past it. Say durably
 * that our mirror is degraded (the new log is not in the partner's image
 * yet), drop the log, then mirror again. */
static void start_own(struct node *n)
{
	int rc;

	n->fenced = false;
	n->taken_at_boot = false;
	if (!n->mirror) {
		monitor_action_done(n->monitor, HA_ACT_START_OWN, 0);
		return;
	}
	if (n->cfg.mirror.mode != MIRROR_MODE_ON) {
		start_published(n, 0);
		return;
	}
	rc = monitor_publish_mirror(n->monitor, HA_MIRROR_DEGRADED, start_published, n);
	if (rc < 0)
		start_published(n, rc);
}

static void serve_own(struct node *n)
{
	int rc = 0;

	n->fenced = false;
	node_lock_serve_own(n, true);
	node_datapath_set_serving(n->dp, true);
	proxy_set_serving(n->proxy, true);
	/* The partner removed it before it gave back. */
	rc = node_addr_take_own(n);
	if (!n->nbd && rc == 0)
		rc = node_datapath_listen(n);
	if (rc == 0) {
		LOG_INFO("serving the own volumes");
		node_reloc_set_serving(n, true);
	}
	monitor_action_done(n->monitor, HA_ACT_SERVE_OWN, rc);
}

/* ---- the partner's volumes ---- */

static int open_partner_shelf(struct node *n)
{
	int rc;

	if (n->pstore)
		return 0;
	if (!n->cfg.monitor.partner_shelf[0])
		return -ENOENT;
	rc = node_datapath_open_store(n, n->cfg.monitor.partner_shelf, &n->pstore);
	if (rc < 0) {
		LOG_ERROR("cannot open the partner's shelf %s: %s", n->cfg.monitor.partner_shelf,
			  strerror(-rc));
		return rc;
	}
	node_failover_gate_store(n, n->pstore);
	rc = node_datapath_create(n, n->pstore, NULL, "partner", &n->partner_dp);
	if (rc < 0) {
		store_close(n->pstore);
		n->pstore = NULL;
		return rc;
	}
	node_lock_serve_partner(n, true);
	return 0;
}

static void close_partner_shelf(struct node *n)
{
	node_datapath_destroy(n->partner_dp);
	n->partner_dp = NULL;
	store_close(n->pstore);
	n->pstore = NULL;
	node_lock_serve_partner(n, false);
}

static void progress_tick(struct loop_timer *t)
{
	struct node *n = t->arg;
	uint64_t done, total;

	if (!n->fo->replay)
		return;
	mirror_replay_progress(n->fo->replay, &done, &total);
	monitor_progress(n->monitor, done, total);
	LOG_INFO("replaying the partner's log: %llu of %llu bytes", (unsigned long long)done,
		 (unsigned long long)total);
	loop_timer_arm(n->loop, t, PROGRESS_NS);
}

static void proof_done(void *arg, int rc)
{
	struct node *n = arg;

	monitor_action_done(n->monitor, HA_ACT_REPLAY_PARTNER, rc);
}

/* The partner's shelf holds what our copy of its log held (or it had
 * nothing to replay): say so in our mark, durably, before serving. The
 * partner drops its own log at giveback only on this proof; without it
 * (a replay refused or never run) it replays the log itself. */
static void replayed(struct node *n)
{
	int rc = monitor_mark_replayed(n->monitor, proof_done, n);

	if (rc < 0)
		proof_done(n, rc);
}

static void replay_done(void *arg, int rc, const struct mirror_replay_stats *st)
{
	struct node *n = arg;
	struct failover *fo = n->fo;
	uint64_t done = 0, total = 0;

	mirror_replay_progress(fo->replay, &done, &total);
	monitor_progress(n->monitor, total, total);
	loop_timer_cancel(n->loop, &fo->progress_timer);
	if (rc < 0)
		LOG_ERROR("replay of the partner's log failed: %s", strerror(-rc));
	else
		LOG_INFO("partner's log replayed in %llu ms: %llu records (seq %llu-%llu), %llu "
			 "bytes, %llu skipped, ended at: %s",
			 (unsigned long long)((loop_now_ns() - fo->replay_start_ns) / NS_PER_MS),
			 (unsigned long long)st->records, (unsigned long long)st->first_seq,
			 (unsigned long long)st->last_seq, (unsigned long long)st->bytes,
			 (unsigned long long)st->skipped, mirror_stop_name(st->stop));
	mirror_replay_free(fo->replay); /* @p st lives in it */
	fo->replay = NULL;
	if (rc < 0)
		monitor_action_done(n->monitor, HA_ACT_REPLAY_PARTNER, rc);
	else
		replayed(n);
}

/* The partner is fenced: bring its shelf up to date from our copy of its
 * log, if that copy is known current (marked in sync in this run: see
 * mirror_image_judge); a copy with nothing to replay is fine too. The copy
 * is retired afterwards, so a second replay (a restart of ours during the
 * takeover) does not undo writes served since. */
static void replay_partner(struct node *n)
{
	struct failover *fo = n->fo;
	const char *delay = getenv("DUET_TEST_REPLAY_DELAY_MS");
	enum mirror_image_trust t;
	char why[256], why2[160];
	int rc;

	if (delay && atoi(delay) > 0 && !fo->delayed) {
		LOG_WARN("test: the replay waits %d ms (DUET_TEST_REPLAY_DELAY_MS)", atoi(delay));
		fo->delayed = true;
		loop_timer_arm(n->loop, &fo->delay_timer, (uint64_t)atoi(delay) * NS_PER_MS);
		return;
	}
	fo->delayed = false;
	if (node_shelf_replaying(n)) {
		/* A handover's replay of the same image (shelf_fail.c): after it. */
		loop_timer_arm(n->loop, &fo->delay_timer, RETRY_NS);
		fo->delayed = true;
		return;
	}
	rc = open_partner_shelf(n);

	if (rc < 0)
		goto done;
	if (n->cfg.mirror.mode != MIRROR_MODE_ON || !n->partner_image_path[0]) {
		LOG_WARN("no copy of the partner's log here ([mirror] mirror is not on): serving "
			 "its shelf as it is");
		goto done;
	}
	t = node_mirror_ccm_partner_copy(n->mirror_ccm, true, why, sizeof(why));
	if (t == MIRROR_IMAGE_NOTHING) {
		snprintf(n->partner_replay, sizeof(n->partner_replay), "not replayed: %s", why);
		LOG_WARN("our copy of the partner's log %s: %s: serving its shelf as it is",
			 n->partner_image_path, why);
		goto done;
	}
	if (t != MIRROR_IMAGE_CURRENT) {
		/* Never replayed, not even forced: a stale or incomplete copy
		 * holds older records, and applying them would undo writes the
		 * partner made durable since. Its own log has them all. */
		snprintf(n->partner_replay, sizeof(n->partner_replay), "refused: %s", why);
		LOG_ERROR("takeover refused: our copy of the partner's log %s is %s; it is never "
			  "replayed (it could undo the partner's durable writes): the partner "
			  "replays its own log once it is back and given back",
			  n->partner_image_path, why);
		rc = t == MIRROR_IMAGE_BAD ? -EINVAL : -ESTALE;
		/* The reason for ha.reason (200 bytes with its prefix); the
		 * log line and mirror.partner_copy have the whole story. */
		snprintf(why2, sizeof(why2),
			 "our copy of its log is %s (never replayed); after giveback the partner "
			 "replays its own log",
			 mirror_image_trust_name(t));
		monitor_action_failed(n->monitor, HA_ACT_REPLAY_PARTNER, rc, why2);
		return;
	}
	snprintf(n->partner_replay, sizeof(n->partner_replay), "replayed: %s", why);
	fo->replay_start_ns = loop_now_ns();
	rc = mirror_replay_start(n->partner_image_path, n->loop, n->pstore,
				 MIRROR_REPLAY_REQUIRE_VALID | MIRROR_REPLAY_RETIRE, replay_done, n,
				 &fo->replay);
	if (rc == 0) {
		loop_timer_arm(n->loop, &fo->progress_timer, PROGRESS_NS);
		return;
	}
	if (rc == -ENODATA) {
		LOG_INFO("our copy of the partner's log is empty: nothing to replay");
		rc = 0;
	} else {
		LOG_ERROR("cannot replay %s: %s", n->partner_image_path, strerror(-rc));
	}
done:
	if (rc < 0)
		monitor_action_done(n->monitor, HA_ACT_REPLAY_PARTNER, rc);
	else
		replayed(n);
}

static void replay_delayed(struct loop_timer *t)
{
	replay_partner(t->arg);
}

static void serve_partner(struct node *n)
{
	unsigned count, routed = 0;
	int rc = 0;

	if (!n->proxy || !n->pstore) {
		LOG_ERROR("cannot serve the partner's volumes: %s",
			  n->proxy ? "its shelf is not open" : "no proxy port (no interconnect)");
		monitor_action_done(n->monitor, HA_ACT_SERVE_PARTNER, -ENOTCONN);
		return;
	}
	node_datapath_set_serving(n->partner_dp, true);
	node_move_takeover(n); /* interrupted moves: forward or back */
	node_reloc_adopt_pending(n);
	count = store_volume_count(n->pstore);
	for (unsigned i = 0; i < count; i++) {
		const char *name = store_volume_name(store_volume_at(n->pstore, i));
		int r = node_reloc_owned_here(n, name)
			    ? -EEXIST /* relocated here: served already */
			    : proxy_route_local(n->proxy, name, node_datapath_ops(), n->partner_dp);
		if (r == 0 || r == -EEXIST)
			routed++;
		else if (!rc)
			rc = r;
	}
	LOG_WARN("serving %u volume%s of the partner on the proxy port", routed,
		 routed == 1 ? "" : "s");
	if (node_reloc_takeover(n) < 0 && !rc)
		rc = -EIO;
	/* After the fence (this action follows it): the partner's address and
	 * ports, for its own clients. A failure leaves the proxy port. */
	node_addr_take_partner(n);
	monitor_action_done(n->monitor, HA_ACT_SERVE_PARTNER, rc);
}

/* From a timer, not from the completion: the store is closed here. */
static void drain_close(struct loop_timer *t)
{
	struct node *n = t->arg;

	LOG_INFO("giveback: the partner's volumes are durable (drained in %llu ms)",
		 (unsigned long long)((loop_now_ns() - n->fo->drain_start_ns) / NS_PER_MS));
	close_partner_shelf(n);
	monitor_action_done(n->monitor, HA_ACT_DRAIN_PARTNER, 0);
}

static void drain_cp_done(void *arg, int rc)
{
	struct node *n = arg;

	if (rc < 0) {
		LOG_ERROR("giveback: fdatasync of the partner's volumes failed: %s", strerror(-rc));
		monitor_action_done(n->monitor, HA_ACT_DRAIN_PARTNER, rc);
		return;
	}
	loop_timer_arm(n->loop, &n->fo->close_timer, 0);
}

static void drain_poll(struct loop_timer *t)
{
	struct node *n = t->arg;
	struct failover *fo = n->fo;
	uint64_t busy = node_datapath_inflight(n->partner_dp) + node_datapath_held(n->partner_dp) +
			node_reloc_drain_busy(n);

	monitor_progress(n->monitor, 0, busy);
	if (!busy && loop_now_ns() - fo->drain_start_ns < fo->drain_hold_ns) {
		loop_timer_arm(n->loop, t, DRAIN_POLL_NS); /* a fault test's window */
		return;
	}
	if (busy) {
		if (loop_now_ns() - fo->drain_start_ns > DRAIN_TIMEOUT_NS) {
			LOG_ERROR("giveback: %llu requests of the partner's volumes still running",
				  (unsigned long long)busy);
			monitor_action_done(n->monitor, HA_ACT_DRAIN_PARTNER, -ETIMEDOUT);
			return;
		}
		loop_timer_arm(n->loop, t, DRAIN_POLL_NS);
		return;
	}
	node_datapath_checkpoint(n->partner_dp, drain_cp_done, n);
}

/* Giveback: new commands for the partner's volumes go back to forwarding
 * (the partner answers them once it serves again; until then it refuses
 * them and the forwarder asks again), what runs here finishes, then the
 * volumes are made durable before the mark is cleared. */
static void drain_partner(struct node *n)
{
	struct failover *fo = n->fo;

	/* First: the partner adds it back only after this drain. */
	node_addr_drop_partner(n, "giveback");
	if (!n->pstore) {
		monitor_action_done(n->monitor, HA_ACT_DRAIN_PARTNER, 0);
		return;
	}
	for (unsigned i = 0, count = store_volume_count(n->pstore); i < count; i++) {
		const char *name = store_volume_name(store_volume_at(n->pstore, i));
		if (!node_reloc_owned_here(n, name)) /* relocated here: ours */
			proxy_route_partner(n->proxy, name);
	}
	node_reloc_giveback(n);
	fo->drain_start_ns = loop_now_ns();
	drain_poll(&fo->drain_timer);
}

/* ---- monitor ops ---- */

static void m_boot_checked(void *arg, bool taken_over, const struct monitor_mark *mark)
{
	struct node *n = arg;

	(void)mark; /* the monitor logged it */
	n->boot_checked = true;
	n->taken_at_boot = taken_over;
	snprintf(n->ev_state, sizeof(n->ev_state), "%s", taken_over ? "taken_over" : "up");
}

static void m_fence_check(void *arg, uint64_t stall_ms)
{
	(void)arg;
	LOG_WARN("this process stalled or was stopped for %llu ms: shelf I/O waits for a read of "
		 "the own mailbox",
		 (unsigned long long)stall_ms);
}

static void m_io_resume(void *arg)
{
	struct node *n = arg;

	store_gate_release(n->store);
	store_gate_release(n->pstore);
	node_datapath_release_held(n->dp);
	node_datapath_release_held(n->partner_dp);
	node_reloc_release_held(n);
}

static void m_action(void *arg, enum ha_action act, uint64_t gen)
{
	struct node *n = arg;

	(void)gen;
	switch (act) {
	case HA_ACT_STOP_OWN:
		stop_own(n);
		break;
	case HA_ACT_START_OWN:
		start_own(n);
		break;
	case HA_ACT_SERVE_OWN:
		serve_own(n);
		break;
	case HA_ACT_REPLAY_PARTNER:
		replay_partner(n);
		break;
	case HA_ACT_SERVE_PARTNER:
		serve_partner(n);
		break;
	case HA_ACT_DRAIN_PARTNER:
		drain_partner(n);
		break;
	default:
		monitor_action_done(n->monitor, act, 0);
		break;
	}
}

/* Every HA change is an event for the hooks: "ha-state" when the state
 * changes, else a step of a takeover or giveback ("takeover-step",
 * "giveback-step"; the owner's start after a giveback is one too). */
static void m_state_changed(void *arg, const struct ha *h)
{
	struct node *n = arg;
	struct monitor_ha_view v;
	char gen[24];
	const char *ev;

	monitor_ha_describe(h, &v);
	snprintf(gen, sizeof(gen), "%llu", (unsigned long long)v.mark_gen);
	if (strcmp(v.state, n->ev_state) != 0)
		ev = "ha-state";
	else if (strcmp(v.state, "takeover") == 0)
		ev = "takeover-step";
	else if (strcmp(v.state, "giving_back") == 0 || strcmp(v.phase, "starting") == 0 ||
		 strcmp(v.phase, "acking") == 0)
		ev = "giveback-step";
	else
		ev = "ha-state";
	node_event(n, ev, "DUET_STATE", v.state, "DUET_PREV_STATE", n->ev_state, "DUET_PHASE",
		   v.phase, "DUET_REASON", v.reason, "DUET_PARTNER_STATE", v.partner,
		   "DUET_MARK_GEN", gen, NULL);
	snprintf(n->ev_state, sizeof(n->ev_state), "%s", v.state);
	node_service_status(n);
}

static const struct monitor_ops mon_ops = {
    .boot_checked = m_boot_checked,
    .fence_check = m_fence_check,
    .io_resume = m_io_resume,
    .action = m_action,
    .hb_send = hb_send,
    .state_changed = m_state_changed,
};

/* ---- life cycle ---- */

int node_failover_open(struct node *n)
{
	struct monitor_opts mo;
	struct failover *fo = calloc(1, sizeof(*fo));
	int rc;

	if (!fo)
		return -ENOMEM;
	n->fo = fo;
	config_monitor_opts(&n->cfg, &mo);
	mo.loop = n->loop;
	mo.ops = &mon_ops;
	mo.arg = n;
	mo.watchdog_action = MONITOR_WATCHDOG_EXIT;
	/* Started once the node is ready: creating and mapping a large NVRAM
	 * log blocks the reactor for a while at boot. */
	mo.defer_watchdog = true;
	loop_timer_init(&fo->copy_timer, copy_tick, n);
	loop_timer_init(&fo->progress_timer, progress_tick, n);
	loop_timer_init(&fo->drain_timer, drain_poll, n);
	loop_timer_init(&fo->reset_timer, reset_retry, n);
	loop_timer_init(&fo->close_timer, drain_close, n);
	loop_timer_init(&fo->delay_timer, replay_delayed, n);
	fo->copy_ns = n->cfg.monitor.heartbeat_ms * NS_PER_MS;
	/* Test only: a drain that lasts this long, so that a fault test can
	 * kill the owner during it (tests/fault/failover-second-giveback-dies.sh). */
	if (getenv("DUET_TEST_DRAIN_HOLD_MS")) {
		fo->drain_hold_ns =
		    strtoull(getenv("DUET_TEST_DRAIN_HOLD_MS"), NULL, 10) * NS_PER_MS;
		LOG_WARN("DUET_TEST_DRAIN_HOLD_MS: every giveback drain lasts %llu ms at least",
			 (unsigned long long)(fo->drain_hold_ns / NS_PER_MS));
	}
	/* The mailbox lives in the shelf, which the store would create later. */
	if (mkdir(n->cfg.node.shelf, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		LOG_ERROR("shelf %s: %s", n->cfg.node.shelf, strerror(errno));
		return rc;
	}
	rc = monitor_create(&mo, &n->monitor);
	if (rc < 0) {
		LOG_ERROR("cannot start the failover monitor: %s", strerror(-rc));
		return rc;
	}
	rc = hb_register(n);
	if (rc < 0)
		return rc;
	rc = monitor_start(n->monitor);
	if (rc < 0) {
		LOG_ERROR("cannot start the failover monitor: %s", strerror(-rc));
		return rc;
	}
	/* Nothing touches the shelf before the own mailbox said whether the
	 * partner took our volumes over. */
	while (!n->boot_checked && !n->stopping)
		loop_run_once(n->loop, 100 * NS_PER_MS);
	if (!n->boot_checked)
		return -EINTR;
	loop_timer_arm(n->loop, &fo->copy_timer, 0);
	return 0;
}

void node_failover_stop(struct node *n)
{
	struct failover *fo = n->fo;
	uint64_t deadline = loop_now_ns() + 30000 * NS_PER_MS;

	if (!fo)
		return;
	loop_timer_cancel(n->loop, &fo->drain_timer);
	loop_timer_cancel(n->loop, &fo->reset_timer);
	loop_timer_cancel(n->loop, &fo->close_timer);
	while ((fo->replay || fo->own_replay) && loop_now_ns() < deadline)
		loop_run_once(n->loop, 10 * NS_PER_MS);
	if (fo->own_replay)
		LOG_ERROR("the replay of the own NVRAM log is still running at exit");
	if (fo->replay) {
		LOG_ERROR("the replay of the partner's log is still running at exit");
		return; /* its I/O points into the partner's store: keep it */
	}
	if (!n->partner_dp)
		return;
	node_datapath_fail_held(n->partner_dp, -ESHUTDOWN);
	while (node_datapath_inflight(n->partner_dp) > 0 && loop_now_ns() < deadline)
		loop_run_once(n->loop, 10 * NS_PER_MS);
	if (node_datapath_inflight(n->partner_dp) > 0) {
		LOG_ERROR("%llu I/O of the partner's volumes still in flight at exit",
			  (unsigned long long)node_datapath_inflight(n->partner_dp));
		return;
	}
	close_partner_shelf(n);
}

void node_failover_close(struct node *n)
{
	struct failover *fo = n->fo;

	if (!fo)
		return;
	loop_timer_cancel(n->loop, &fo->copy_timer);
	loop_timer_cancel(n->loop, &fo->progress_timer);
	loop_timer_cancel(n->loop, &fo->delay_timer);
	loop_timer_cancel(n->loop, &fo->drain_timer);
	loop_timer_cancel(n->loop, &fo->reset_timer);
	loop_timer_cancel(n->loop, &fo->close_timer);
	/* The heartbeat region belongs to the monitor: leave the CCM first. */
	if (fo->hb_client)
		ccm_client_unregister(fo->hb_client);
	fo->hb_client = NULL;
	fo->hb_port = NULL;
	monitor_destroy(n->monitor);
	n->monitor = NULL;
}

void node_failover_free(struct node *n)
{
	free(n->fo);
	n->fo = NULL;
}
