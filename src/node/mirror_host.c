/* The NVRAM log and its mirror, wired into the node (docs/MIRROR.md).
 *
 * Boot: open the log, replay it onto the shelf, then (with a CCM) attach
 * the transport that copies it into the partner's image; all before the
 * NBD listeners open. The datapath appends every write to the log
 * (datapath.c); the mirror calls back here for consistency points.
 * Shutdown: once no request is in flight, a last consistency point, then
 * close. */
#define LOG_MODULE "mirror"
#include "node/node_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "mirror/mirror.h"
#include "monitor/monitor.h"

#define CLOSE_DEADLINE_NS (10ull * 1000000000ull)

static void host_checkpoint(void *ctx, mirror_done_fn done, void *arg)
{
	struct node *n = ctx;

	if (!n->dp) {
		done(arg, 0); /* nothing was written yet */
		return;
	}
	node_datapath_checkpoint(n->dp, done, arg);
}

/* The partner's image is (or is again not) missing writes: publish it in
 * the own mailbox, durably, before any write is acknowledged without the
 * partner, so that the partner never takes over from an outdated copy. A
 * fenced node acknowledges nothing more: what it would publish could only
 * stop the partner's takeover. */
static void host_partner_outdated(void *ctx, bool outdated, mirror_done_fn done, void *arg)
{
	struct node *n = ctx;
	int rc;

	if (!n->monitor || n->fenced || n->taken_at_boot) {
		done(arg, 0);
		return;
	}
	rc = monitor_publish_mirror(n->monitor, outdated ? HA_MIRROR_DEGRADED : HA_MIRROR_IN_SYNC,
				    done, arg);
	if (rc < 0)
		done(arg, rc);
}

static void host_state_changed(void *ctx, enum mirror_state state, const char *reason)
{
	struct node *n = ctx;
	struct mirror_history *h = &n->mirror_hist[n->mirror_hist_n % ARRAY_SIZE(n->mirror_hist)];

	h->state = (uint8_t)state;
	h->at_ms = (loop_now_ns() - n->started_ns) / 1000000;
	n->mirror_hist_n++;
	node_event(n, "mirror-state", "DUET_STATE", mirror_state_name(state), "DUET_REASON",
		   reason ? reason : "", NULL);
	node_service_status(n);
}

static const struct mirror_host_ops host_ops = {
    .checkpoint = host_checkpoint,
    .partner_outdated = host_partner_outdated,
    .state_changed = host_state_changed,
};

/* The recommended default: a file next to the shelf directory, never in it
 * (the shelf moves to the partner at takeover; the log stays here). */
static int default_path(char *out, size_t len, const char *shelf, const char *suffix)
{
	size_t l = strlen(shelf);

	while (l > 1 && shelf[l - 1] == '/')
		l--;
	if ((size_t)snprintf(out, len, "%.*s%s", (int)l, shelf, suffix) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* @return true if @p path would be inside directory @p dir. */
static bool inside(const char *path, const char *dir)
{
	char pcopy[PATH_MAX], rdir[PATH_MAX], rparent[PATH_MAX];
	size_t l;

	if (!realpath(dir, rdir))
		return false;
	snprintf(pcopy, sizeof(pcopy), "%s", path);
	if (!realpath(dirname(pcopy), rparent))
		return false;
	l = strlen(rdir);
	return strncmp(rparent, rdir, l) == 0 && (rparent[l] == '\0' || rparent[l] == '/');
}

static int resolve_path(char *out, size_t len, const char *set, const char *shelf,
			const char *suffix, const char *key)
{
	int rc = 0;

	if (set[0])
		snprintf(out, len, "%s", set);
	else
		rc = default_path(out, len, shelf, suffix);
	if (rc < 0) {
		LOG_ERROR("%s: the default path next to the shelf is too long", key);
		return rc;
	}
	if (inside(out, shelf)) {
		LOG_ERROR("%s = %s is inside the shelf %s: it must not move with the shelf at "
			  "takeover",
			  key, out, shelf);
		return -EINVAL;
	}
	return 0;
}

int node_mirror_paths(struct node *n)
{
	const struct duet_config *cfg = &n->cfg;
	int rc;

	if (cfg->mirror.mode == MIRROR_MODE_OFF)
		return 0;
	rc = resolve_path(n->log_path, sizeof(n->log_path), cfg->mirror.log, cfg->node.shelf,
			  ".nvram", "[mirror] log");
	if (rc < 0)
		return rc;
	if (cfg->mirror.mode == MIRROR_MODE_ON) {
		rc = resolve_path(n->partner_image_path, sizeof(n->partner_image_path),
				  cfg->mirror.partner_image, cfg->node.shelf, ".partner",
				  "[mirror] partner_image");
		if (rc < 0)
			return rc;
		if (strcmp(n->partner_image_path, n->log_path) == 0) {
			LOG_ERROR("[mirror] log and [mirror] partner_image are the same file %s",
				  n->log_path);
			return -EINVAL;
		}
	}
	return 0;
}

int node_mirror_open(struct node *n)
{
	const struct duet_config *cfg = &n->cfg;
	struct mirror_replay_stats st;
	struct mirror_opts o;
	int rc;

	if (cfg->mirror.mode == MIRROR_MODE_OFF) {
		LOG_INFO("[mirror] mirror = off: no NVRAM log; writes go to the volumes directly "
			 "and only FLUSH makes them durable");
		return 0;
	}
	rc = node_mirror_paths(n);
	if (rc < 0)
		return rc;
	config_mirror_opts(cfg, n->log_path, &o);
	rc = mirror_open(n->loop, &o, &host_ops, n, &n->mirror);
	if (rc < 0)
		return rc;
	if (n->taken_at_boot) {
		LOG_WARN("NVRAM log %s not replayed: the partner took this node's volumes over; "
			 "kept until the giveback, then dropped if the partner's mark says it "
			 "replayed its copy, else replayed",
			 n->log_path);
		return 0;
	}
	/* Before any listener opens: what the log holds reaches the volumes
	 * before anyone can read them. */
	rc = mirror_recover_to_store(n->mirror, n->loop, n->store, &st);
	if (rc < 0) {
		LOG_ERROR("replay of the NVRAM log %s failed: %s", n->log_path, strerror(-rc));
		return rc;
	}
	if (st.records || st.skipped)
		LOG_INFO("NVRAM log replayed: %llu records (seq %llu-%llu, %llu bytes), %llu "
			 "skipped, ended at: %s",
			 (unsigned long long)st.records, (unsigned long long)st.first_seq,
			 (unsigned long long)st.last_seq, (unsigned long long)st.bytes,
			 (unsigned long long)st.skipped, mirror_stop_name(st.stop));
	return 0;
}

int node_mirror_connect(struct node *n)
{
	struct mirror_status st;
	int rc;

	if (!n->mirror || n->cfg.mirror.mode != MIRROR_MODE_ON)
		return 0;
	if (!n->ccm) {
		LOG_WARN("[mirror] mirror = on without interconnect links: writes are logged "
			 "locally only");
		return 0;
	}
	mirror_get_status(n->mirror, &st);
	rc = node_mirror_ccm_create(n->loop, n->ccm, n->mirror, n->partner_image_path, st.log_size,
				    &n->mirror_ccm);
	if (rc == 0 && n->taken_at_boot)
		node_mirror_ccm_hold(n->mirror_ccm, true, "taken over by the partner");
	return rc;
}

void node_mirror_hold(struct node *n, bool hold, const char *why)
{
	if (n->mirror_ccm)
		node_mirror_ccm_hold(n->mirror_ccm, hold, why);
}

int node_mirror_partner_copy(struct node *n)
{
	if (!n->mirror || n->cfg.mirror.mode != MIRROR_MODE_ON)
		return HA_MIRROR_OFF;
	/* In sync only if the partner marked it so in this run: a takeover
	 * never starts on a complete flag an earlier run left in the file. */
	return node_mirror_ccm_partner_copy(n->mirror_ccm, false, NULL, 0) == MIRROR_IMAGE_CURRENT
		   ? HA_MIRROR_IN_SYNC
		   : HA_MIRROR_DEGRADED;
}

void node_mirror_release_held(struct node *n)
{
	if (n->mirror)
		mirror_fail_held(n->mirror, -EIO);
}

struct close_wait {
	bool done;
	int rc;
};

static void close_flush_done(struct mirror_flush *f, int result)
{
	struct close_wait *w = f->arg;

	w->done = true;
	w->rc = result;
}

void node_mirror_close(struct node *n)
{
	struct mirror_flush f = {.done = close_flush_done};
	struct close_wait w = {0};
	struct mirror_status st;
	uint64_t deadline = loop_now_ns() + CLOSE_DEADLINE_NS;

	if (!n->mirror)
		return;
	/* A last consistency point: the volumes are durable, and the log (and
	 * the partner's image, if in sync) say that nothing needs replaying. */
	f.arg = &w;
	mirror_flush(n->mirror, &f);
	while (!w.done && loop_now_ns() < deadline)
		loop_run_once(n->loop, 10000000);
	if (!w.done || w.rc < 0)
		LOG_WARN("no final consistency point (%s): the next start replays the log",
			 w.done ? strerror(-w.rc) : "timed out");
	for (;;) {
		mirror_get_status(n->mirror, &st);
		if (st.idle || loop_now_ns() >= deadline)
			break;
		loop_run_once(n->loop, 10000000);
	}
	/* A flush still pending dies with the mirror, uncalled. */
	mirror_close(n->mirror);
	n->mirror = NULL;
}

struct json_object *node_mirror_status_json(struct node *n)
{
	struct json_object *o = json_object_new_object();
	struct json_object *tr, *hist;
	struct mirror_status st;
	static const char *const modes[] = {"off", "on", "local"};
	const char *treason = "";
	unsigned first;

	if (!o)
		return NULL;
	jobj_add_str(o, "mode", modes[n->cfg.mirror.mode]);
	if (!n->mirror) {
		jobj_add_str(o, "state", "off");
		jobj_add_str(
		    o, "reason",
		    "mirror = off: no NVRAM log; acknowledged writes are in the volume files' "
		    "page cache only until a FLUSH");
		jobj_add_u64(o, "lag_bytes", 0);
		jobj_add_bool(o, "takeover_safe", false);
		return o;
	}
	mirror_get_status(n->mirror, &st);
	jobj_add_str(o, "state", mirror_state_name(st.state));
	jobj_add_str(o, "reason", st.reason);
	jobj_add_u64(o, "lag_bytes", st.lag_bytes);
	jobj_add_bool(o, "takeover_safe", st.takeover_safe);
	jobj_add_str(o, "durability",
		     n->cfg.mirror.durability == MIRROR_DURABILITY_LOCAL_SYNC ? "local-sync"
									      : "memory");
	jobj_add_str(o, "mirror_down",
		     n->cfg.mirror.down == MIRROR_DOWN_SUSPEND ? "suspend" : "degrade");
	jobj_add_str(o, "log", n->log_path);
	jobj_add_u64(o, "log_size", st.log_size);
	jobj_add_u64(o, "half_size", st.half_size);
	json_object_object_add(o, "active_half", json_object_new_int(st.active_half));
	jobj_add_u64(o, "used_bytes", st.used_bytes);
	jobj_add_u64(o, "last_seq", st.last_seq);
	jobj_add_u64(o, "cp_seq", st.cp_seq);
	jobj_add_u64(o, "replicated_seq", st.replicated_seq);
	jobj_add_u64(o, "records", st.records);
	jobj_add_u64(o, "record_bytes", st.record_bytes);
	jobj_add_u64(o, "xfers", st.xfers);
	jobj_add_u64(o, "xfer_bytes", st.xfer_bytes);
	jobj_add_u64(o, "checkpoints", st.checkpoints);
	jobj_add_u64(o, "half_switches", st.half_switches);
	jobj_add_u64(o, "space_waits", st.space_waits);
	jobj_add_u64(o, "resyncs", st.resyncs);
	jobj_add_u64(o, "suspend_timeouts", st.suspend_timeouts);
	jobj_add_u64(o, "writes_waiting", st.writes_waiting);
	jobj_add_u64(o, "writes_unlogged", st.writes_unlogged);
	jobj_add_u64(o, "xfers_inflight", st.xfers_inflight);
	jobj_add_bool(o, "cp_running", st.cp_running);
	jobj_add_bool(o, "idle", st.idle);
	if (n->cfg.mirror.mode == MIRROR_MODE_ON) {
		struct json_object *pc = json_object_new_object();
		char why[192];
		enum mirror_image_trust t =
		    node_mirror_ccm_partner_copy(n->mirror_ccm, false, why, sizeof(why));

		/* What a takeover would do with the image (cheap check: the
		 * replay also counts its live records). */
		jobj_add_str(pc, "state", mirror_image_trust_name(t));
		jobj_add_str(pc, "reason", why);
		jobj_add_str(pc, "last_takeover", n->partner_replay);
		json_object_object_add(o, "partner_copy", pc);
		tr = json_object_new_object();
		jobj_add_str(o, "partner_image", n->partner_image_path);
		if (n->mirror_ccm) {
			jobj_add_str(tr, "state", node_mirror_ccm_state(n->mirror_ccm, &treason));
			jobj_add_str(tr, "reason", treason);
		} else {
			jobj_add_str(tr, "state", "down");
			jobj_add_str(tr, "reason", "no interconnect links configured");
		}
		json_object_object_add(o, "transport", tr);
	}
	/* The state changes, oldest first: a resync can be over between two
	 * polls, its trace stays here. */
	hist = json_object_new_array();
	first = n->mirror_hist_n > ARRAY_SIZE(n->mirror_hist)
		    ? n->mirror_hist_n - (unsigned)ARRAY_SIZE(n->mirror_hist)
		    : 0;
	for (unsigned i = first; i < n->mirror_hist_n; i++) {
		const struct mirror_history *h = &n->mirror_hist[i % ARRAY_SIZE(n->mirror_hist)];
		struct json_object *e = json_object_new_object();
		jobj_add_str(e, "state", mirror_state_name((enum mirror_state)h->state));
		jobj_add_u64(e, "at_ms", h->at_ms);
		json_object_array_add(hist, e);
	}
	jobj_add_u64(o, "state_changes", n->mirror_hist_n);
	json_object_object_add(o, "history", hist);
	return o;
}
