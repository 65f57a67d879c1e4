/* The own shelf failing under this node while the partner still reaches
 * it: the volumes go to the partner instead of failing client I/O
 * (docs/RELOCATION.md, "On a failed path").
 *
 * The rule this file keeps: a record of this node's NVRAM log is on the
 * shelf before anyone serves its volume elsewhere, and no log ever replays
 * it again after someone wrote past it. The node whose shelf failed cannot
 * apply its log; the partner holds the image of that log (the mirror), so
 * the partner replays it, as a takeover does, while this node keeps
 * running and serving every volume on its NBD port by forwarding.
 *
 * Detection: the store counts the I/O errors that say the shelf is failing
 * (store_shelf_errors); SF_ERRORS of them within SF_WINDOW_NS, or the shelf's
 * volumes directory failing a stat, is a failed shelf. Meanwhile every
 * request of the own shelf that fails so is answered "not executed"
 * (PROXY_MOVED) instead of the error: the route (relocate.c) and the
 * partner's forwarder send it again, so it runs once the volumes have a
 * home; it is an absolute write, and it was never acknowledged.
 *
 * The handover, this node (the giver) and the partner (the taker), each
 * step on the session (the volume list carries PROXY_SHELF_* bits):
 *   giver  DRAIN     every own volume leaving (the route forwards new
 *                    commands: they park until the partner lists them),
 *                    until none is at the datapath; then the mirror is held
 *                    (nothing more reaches the partner's image) and GIVE
 *                    is sent. Refused unless the log is in sync (else the
 *                    image lacks acknowledged writes) or there is no log.
 *   taker  REPLAY    opens the shelf (as for relocated volumes), replays
 *                    the image onto it, fdatasyncs, retires the image
 *                    (mirror_replay_start, as REPLAY_PARTNER does), sends
 *                    REPLAYED.
 *   giver  DROP      drops its log (mirror_reset: its records are on the
 *                    shelf), mirrors the empty log again, sends DROPPED.
 *   taker  ADOPT     writes itself as the owner of each volume the giver
 *                    owned, adopts them (they are written through: no log
 *                    covers that shelf here) and pushes its list.
 *   giver  DONE      once the partner lists every volume: away here.
 * Either node dying at any step loses nothing: before DROPPED the giver's
 * log holds every record (replaying it again is harmless: nobody served
 * the volumes since), after it the shelf does, durably; a takeover of the
 * giver replays the image only after a handover's replay ended
 * (node_shelf_replaying), and finds it retired. A giver that dies between
 * GIVE and DROPPED is taken over by the taker although it publishes its
 * mirror degraded (held): the taker's copy was judged complete for the
 * handover (node_shelf_partner_gave, read by the takeover decision), and
 * the taker's mark carries the proof that lets the giver drop its log at
 * the giveback instead of replaying it over the taker's writes.
 *
 * A hung shelf (I/O in flight, none finishing for SF_HUNG_NS) is not handed
 * over (the drain would never end): the node ends itself as its watchdog
 * would, and the partner takes it over (check_hung). */
#define LOG_MODULE "shelf"
#include "node/node_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "mirror/mirror.h"
#include "monitor/monitor.h"
#include "proxy/proxy.h"
#include "store/store.h"

#define SF_ERRORS     8u
#define SF_WINDOW_NS  (2 * NS_PER_S)
#define SF_TICK_NS    (100 * NS_PER_MS) /* health checks */
#define SF_BUSY_NS    (5 * NS_PER_MS)	/* a handover's steps */
#define SF_RETRY_NS   (1 * NS_PER_S)	/* a refused handover, again */
#define SF_HUNG_NS    (30 * NS_PER_S)	/* no io of the own shelf finished: hung */
#define SF_PAUSE_NS   (1 * NS_PER_S)	/* a tick this late: the process was stopped */
#define SF_NAME_LEN   64
#define SF_REASON_LEN 200

enum give_state { G_OK, G_DRAIN, G_GIVEN, G_DROPPING, G_DROPPED, G_DONE, G_REFUSED };
enum take_state { T_IDLE, T_REPLAY, T_REPLAYED, T_DONE, T_FAILED };

static const char *const give_names[] = {"ok",	    "draining", "given",  "dropping_log",
					 "dropped", "done",	"refused"};
static const char *const take_names[] = {"idle", "replaying", "replayed", "done", "failed"};

struct node_shelf {
	struct node *n;
	struct loop_timer tick;
	/* Detection. */
	uint64_t window_ns, window_errors; /* the window's start and the count then */
	bool failed;
	char why[SF_REASON_LEN];
	char test_node[32], test_path[256]; /* DUET_TEST_SHELF_EIO=NODE:PATH */
	bool test_on;
	char hang_path[256]; /* DUET_TEST_SHELF_HANG=NODE:PATH */
	bool hang_on;
	uint64_t hung_ns;		   /* SF_HUNG_NS, or DUET_TEST_SHELF_HUNG_MS */
	uint64_t last_check_ns, resume_ns; /* a stop of the process is no hang */
	bool kicked;			   /* an error asked for an early tick */
	/* Test only (DUET_TEST_SHELF_HOLD=NODE:MS): the taker waits this long
	 * between its replay and REPLAYED, the giver between REPLAYED and
	 * dropping its log: windows for a fault test to kill either. */
	uint64_t hold_ns, hold_until;
	/* Giving the own shelf. */
	enum give_state give;
	char (*names)[SF_NAME_LEN];
	unsigned n_names;
	uint64_t give_start_ns, refused_ns;
	int drop_err; /* the last failure of mirror_reset, logged once */
	char give_last[SF_REASON_LEN];
	/* Taking the partner's. */
	enum take_state take;
	struct mirror_replay_job *replay;
	uint64_t take_start_ns, take_failed_ns;
	unsigned taken;
	char take_last[SF_REASON_LEN];
	/* The partner gave (GIVE) and our copy of its log was judged complete
	 * for it at take_start: should it die before DROPPED, a takeover loses
	 * nothing (node_shelf_partner_gave). Cleared when consumed. */
	bool gave;
};

/* No handover can help (refused, or no partner to give to). */
static bool hopeless(const struct node *n)
{
	const struct node_shelf *sh = n->shelf_fail;

	return sh->give == G_REFUSED || !n->proxy || !n->cfg.monitor.partner_shelf[0] ||
	       n->fenced || n->taken_at_boot;
}

/* The datapath's error hook for the own shelf: a request that failed on
 * it runs again later elsewhere instead of failing its client, while a
 * handover may still give it a home. */
static int own_error(void *arg, int result)
{
	struct node *n = arg;
	struct node_shelf *sh = n->shelf_fail;

	if (!store_error_is_shelf(result) || hopeless(n))
		return result;
	if (!sh->kicked) { /* look soon, once: the errors may go on */
		sh->kicked = true;
		loop_timer_arm(n->loop, &sh->tick, SF_BUSY_NS);
	}
	return PROXY_MOVED;
}

/* ---- detection ---- */

/* DUET_TEST_SHELF_EIO: the trigger file makes the own shelf fail in this
 * process only (the partner, another process, still reaches it). */
static void test_hook(struct node_shelf *sh)
{
	struct stat st;

	if (sh->test_on || !sh->test_path[0] || stat(sh->test_path, &st) < 0)
		return;
	LOG_WARN("test: DUET_TEST_SHELF_EIO: every I/O of the own shelf fails with EIO now");
	store_fail_all(sh->n->store, -EIO);
	sh->test_on = true;
}

/* DUET_TEST_SHELF_HANG: the trigger file makes every new io of the own
 * shelf park for good in this process (a shelf whose I/O never returns). */
static void test_hang_hook(struct node_shelf *sh)
{
	struct stat st;

	if (sh->hang_on || !sh->hang_path[0] || stat(sh->hang_path, &st) < 0)
		return;
	LOG_WARN("test: DUET_TEST_SHELF_HANG: every I/O of the own shelf hangs now");
	store_hang_all(sh->n->store);
	sh->hang_on = true;
}

/* A hung shelf: ios of it in flight and none finished for hung_ns. No
 * handover can help (it drains first, and the hung requests never end;
 * handing over without the drain would let them land after the partner
 * wrote past them), so the node gets out of the way as its watchdog does
 * for a hung reactor: it ends the process, and the partner takes it over
 * (replaying its log image) once its heartbeats and mailbox stop. What
 * stays in the kernel of an I/O that never returned is not fenced by this
 * (docs/RELOCATION.md, "A hung shelf"). */
static void check_hung(struct node_shelf *sh)
{
	struct node *n = sh->n;
	uint64_t now = loop_now_ns(), stalled = store_io_stalled_ns(n->store, now);

	/* The process stopped (SIGSTOP, a paused VM): measured from the resume. */
	if (sh->last_check_ns && now - sh->last_check_ns > SF_PAUSE_NS)
		sh->resume_ns = now;
	sh->last_check_ns = now;
	if (sh->resume_ns && now - sh->resume_ns < stalled)
		stalled = now - sh->resume_ns;
	if (stalled < sh->hung_ns)
		return;
	LOG_ERROR("the own shelf %s is hung: %u I/O(s) in flight, none finished for %llu ms: "
		  "ending the process (status %d) so that %s takes its volumes over",
		  n->cfg.node.shelf, store_inflight(n->store),
		  (unsigned long long)(stalled / NS_PER_MS), MONITOR_WATCHDOG_STATUS,
		  n->cfg.ic.partner[0] ? n->cfg.ic.partner : "a partner");
	_exit(MONITOR_WATCHDOG_STATUS);
}

/* Failed: SF_ERRORS shelf errors within a window of SF_WINDOW_NS, or the
 * volumes directory failing a stat (the mount gone). Once failed, always:
 * a shelf comes back with a restart. */
static void check_health(struct node_shelf *sh)
{
	struct node *n = sh->n;
	uint64_t now = loop_now_ns(), errors = store_shelf_errors(n->store);
	char dir[PATH_MAX + 16];
	struct stat st;

	if (sh->failed)
		return;
	snprintf(dir, sizeof(dir), "%s/volumes", n->cfg.node.shelf);
	if (stat(dir, &st) < 0 && errno != EINTR) {
		snprintf(sh->why, sizeof(sh->why), "%.120s: %.60s", dir, strerror(errno));
		sh->failed = true;
	} else if (errors - sh->window_errors >= SF_ERRORS) {
		snprintf(sh->why, sizeof(sh->why), "%llu I/O errors on the shelf within %llu ms",
			 (unsigned long long)(errors - sh->window_errors),
			 (unsigned long long)((now - sh->window_ns) / NS_PER_MS));
		sh->failed = true;
	} else if (now - sh->window_ns >= SF_WINDOW_NS) {
		sh->window_ns = now;
		sh->window_errors = errors;
	}
	if (!sh->failed)
		return;
	LOG_ERROR("the own shelf %s failed: %s", n->cfg.node.shelf, sh->why);
	/* Nothing more goes to it: what would hang there (a consistency
	 * point's fdatasync on a dead mount) would hold the log's drop up. */
	store_fail_all(n->store, -EIO);
}

/* ---- giving the own shelf ---- */

/* Not now: the clients get their errors; tried again every SF_RETRY_NS
 * (a mirror resyncing, a partner restarting: it may become possible). */
static void give_refuse(struct node_shelf *sh, const char *why)
{
	char last[SF_REASON_LEN];

	snprintf(last, sizeof(last), "refused: %.180s", why);
	if (strcmp(last, sh->give_last) != 0) /* logged once per reason */
		LOG_ERROR("the own shelf failed and cannot be handed over (%s): I/O of its volumes "
			  "fails; trying again every %llu ms",
			  why, (unsigned long long)(SF_RETRY_NS / NS_PER_MS));
	memcpy(sh->give_last, last, sizeof(last));
	sh->give = G_REFUSED;
	sh->refused_ns = loop_now_ns();
}

/* Whether the partner's image of our log holds every record we logged. */
static bool log_handable(struct node *n, char *why, size_t len)
{
	struct mirror_status ms;

	if (!n->mirror)
		return true;
	if (n->cfg.mirror.mode != MIRROR_MODE_ON) {
		snprintf(why, len, "[mirror] mirror = local: the partner has no copy of the log");
		return false;
	}
	mirror_get_status(n->mirror, &ms);
	if (ms.state != MIRROR_STATE_IN_SYNC) {
		snprintf(why, len, "the log's mirror is %s: the partner's copy lacks records",
			 mirror_state_name(ms.state));
		return false;
	}
	return true;
}

/* The shelf failed: every own volume served here leaves (DRAIN). */
static void give_start(struct node_shelf *sh)
{
	struct node *n = sh->n;
	unsigned count = store_volume_count(n->store);
	uint64_t moves;
	char why[160];

	if (hopeless(n) || n->pstore) {
		give_refuse(sh, n->pstore ? "a takeover of the partner stands"
					  : "no partner reaching this shelf");
		return;
	}
	if (node_reloc_activity(n, &moves))
		return; /* it ends soon (its durable step fails): then */
	if (!log_handable(n, why, sizeof(why))) {
		give_refuse(sh, why);
		return;
	}
	free(sh->names);
	sh->n_names = 0;
	sh->names = calloc(count ? count : 1, sizeof(*sh->names));
	if (!sh->names) {
		give_refuse(sh, "out of memory");
		return;
	}
	for (unsigned i = 0; i < count; i++) {
		const char *name = store_volume_name(store_volume_at(n->store, i));
		if (strlen(name) >= SF_NAME_LEN || !node_datapath_vol_here(n->dp, name))
			continue;
		snprintf(sh->names[sh->n_names++], SF_NAME_LEN, "%s", name);
		node_datapath_vol_set(n->dp, name, -1, 1);
		proxy_route_partner(n->proxy, name); /* a local takeover route */
	}
	sh->give = G_DRAIN;
	sh->give_start_ns = loop_now_ns();
	LOG_WARN("handing the own shelf over to %s: %u volume%s leaving, draining",
		 n->cfg.ic.partner, sh->n_names, sh->n_names == 1 ? "" : "s");
	node_reloc_changed(n);
	proxy_local_volumes_changed(n->proxy);
}

/* No request of the leaving volumes at the datapath, none held. */
static bool drained(struct node_shelf *sh)
{
	struct node *n = sh->n;

	if (node_datapath_held(n->dp) > 0)
		return false;
	for (unsigned i = 0; i < sh->n_names; i++)
		if (node_datapath_vol_inflight(n->dp, sh->names[i]) > 0)
			return false;
	return true;
}

/* DRAIN: once nothing of the leaving volumes runs, hold the mirror and
 * say GIVE. */
static void give_drain(struct node_shelf *sh)
{
	struct node *n = sh->n;
	char why[160];

	if (!drained(sh))
		return;
	/* Every request of these volumes ended, so each record they appended
	 * is logged, in the partner's image if in sync: check again now. */
	if (!log_handable(n, why, sizeof(why))) {
		give_refuse(sh, why);
		return;
	}
	node_mirror_hold(n, true, "the own shelf failed: handed over to the partner");
	sh->give = G_GIVEN;
	LOG_WARN("own shelf drained in %llu ms: %s replays our log onto it",
		 (unsigned long long)((loop_now_ns() - sh->give_start_ns) / NS_PER_MS),
		 n->cfg.ic.partner);
	proxy_set_shelf_state(n->proxy, PROXY_SHELF_GIVE);
}

/* Refused a while ago: again, from where it stopped. */
static void give_retry(struct node_shelf *sh)
{
	if (loop_now_ns() - sh->refused_ns < SF_RETRY_NS)
		return;
	if (sh->names) {
		sh->give = G_DRAIN;
		give_drain(sh);
	} else {
		sh->give = G_OK;
		give_start(sh);
	}
}

/* The own log is dropped (or could not be): DROPPED, and mirror again. */
static void dropped(void *arg, int rc)
{
	struct node_shelf *sh = arg;
	struct node *n = sh->n;

	if (rc < 0) {
		/* The log stays: its records are on the shelf, replaying them
		 * again is harmless until someone writes past them, which waits
		 * for DROPPED. */
		if (rc != sh->drop_err)
			LOG_ERROR("cannot drop the own log after the handover: %s (trying again "
				  "every %llu ms)",
				  strerror(-rc), (unsigned long long)(SF_RETRY_NS / NS_PER_MS));
		sh->drop_err = rc;
		sh->hold_until = loop_now_ns() + SF_RETRY_NS;
		sh->give = G_GIVEN;
		return;
	}
	LOG_INFO("own log dropped (%s replayed it onto the shelf): mirroring anew",
		 n->cfg.ic.partner);
	node_mirror_hold(n, false, NULL);
	sh->give = G_DROPPED;
	proxy_set_shelf_state(n->proxy, PROXY_SHELF_GIVE | PROXY_SHELF_DROPPED);
}

/* GIVEN: the partner says REPLAYED: drop the own log (mirror_reset). */
static void give_drop(struct node_shelf *sh)
{
	struct node *n = sh->n;
	int rc;

	if (!(proxy_partner_shelf_state(n->proxy) & PROXY_SHELF_REPLAYED))
		return;
	if (!sh->hold_until)
		sh->hold_until = loop_now_ns() + sh->hold_ns;
	if (loop_now_ns() < sh->hold_until)
		return;
	sh->give = G_DROPPING;
	if (!n->mirror) {
		dropped(sh, 0);
		return;
	}
	rc = mirror_reset(n->mirror, dropped, sh);
	if (rc == -EBUSY)
		sh->give = G_GIVEN; /* writes still finishing: next tick */
	else if (rc < 0 && rc != -EALREADY)
		dropped(sh, rc);
}

/* DROPPED: done once the partner lists every volume given (our parked
 * commands go to it): away here. */
static void give_finish(struct node_shelf *sh)
{
	struct node *n = sh->n;

	for (unsigned i = 0; i < sh->n_names; i++)
		if (!proxy_partner_lists(n->proxy, sh->names[i]))
			return;
	for (unsigned i = 0; i < sh->n_names; i++)
		node_datapath_vol_set(n->dp, sh->names[i], 1, 0);
	sh->give = G_DONE;
	snprintf(sh->give_last, sizeof(sh->give_last), "%u volume%s to %s in %llu ms", sh->n_names,
		 sh->n_names == 1 ? "" : "s", n->cfg.ic.partner,
		 (unsigned long long)((loop_now_ns() - sh->give_start_ns) / NS_PER_MS));
	LOG_WARN("own shelf handed over: %s", sh->give_last);
	node_reloc_changed(n);
}

static void give_step(struct node_shelf *sh)
{
	switch (sh->give) {
	case G_OK:
		if (sh->failed)
			give_start(sh);
		break;
	case G_DRAIN:
		give_drain(sh);
		break;
	case G_GIVEN:
		give_drop(sh);
		break;
	case G_DROPPED:
		give_finish(sh);
		break;
	case G_REFUSED:
		give_retry(sh);
		break;
	default:
		break;
	}
}

/* ---- taking the partner's ---- */

/* Not now: tried again every SF_RETRY_NS while the partner gives (its
 * volumes wait meanwhile), logged once per reason. */
static void take_fail(struct node_shelf *sh, int rc, const char *why)
{
	char last[SF_REASON_LEN];

	snprintf(last, sizeof(last), "failed: %.180s", why);
	if (strcmp(last, sh->take_last) != 0)
		LOG_ERROR("%s's shelf failed under it, and this node cannot take it: %s (%s); "
			  "trying again every %llu ms",
			  sh->n->cfg.ic.partner, why, strerror(-rc),
			  (unsigned long long)(SF_RETRY_NS / NS_PER_MS));
	memcpy(sh->take_last, last, sizeof(last));
	sh->take = T_FAILED;
	sh->take_failed_ns = loop_now_ns();
}

/* The replay ended (durable, image retired): REPLAYED after the test
 * hold, if any (take_replayed). */
static void replay_done(void *arg, int rc, const struct mirror_replay_stats *st)
{
	struct node_shelf *sh = arg;
	struct node *n = sh->n;

	if (rc == 0)
		LOG_WARN("%s's log replayed onto its shelf in %llu ms: %llu records (seq "
			 "%llu-%llu), %llu bytes, ended at: %s",
			 n->cfg.ic.partner,
			 (unsigned long long)((loop_now_ns() - sh->take_start_ns) / NS_PER_MS),
			 (unsigned long long)st->records, (unsigned long long)st->first_seq,
			 (unsigned long long)st->last_seq, (unsigned long long)st->bytes,
			 mirror_stop_name(st->stop));
	mirror_replay_free(sh->replay); /* @p st lives in it */
	sh->replay = NULL;
	if (rc < 0) {
		take_fail(sh, rc, "the replay of its log failed");
		return;
	}
	sh->hold_until = loop_now_ns() + sh->hold_ns; /* T_REPLAY until then */
}

/* The replay is durable and the image retired: say so. */
static void take_replayed(struct node_shelf *sh)
{
	if (sh->replay || loop_now_ns() < sh->hold_until)
		return;
	sh->take = T_REPLAYED;
	proxy_set_shelf_state(sh->n->proxy, PROXY_SHELF_REPLAYED);
}

/* The partner's image of its log onto its shelf (@p s), as a takeover's
 * REPLAY_PARTNER does, and retired after. */
static void take_start(struct node_shelf *sh)
{
	struct node *n = sh->n;
	enum mirror_image_trust t;
	struct store *s;
	char why[256];
	int rc;

	if (n->fenced || n->taken_at_boot || n->pstore)
		return; /* a takeover covers it */
	sh->take_start_ns = loop_now_ns();
	LOG_WARN("%s's own shelf failed under it: taking it over (it keeps running)",
		 n->cfg.ic.partner);
	rc = node_reloc_partner_store(n, &s);
	if (rc < 0) {
		take_fail(sh, rc, "its shelf cannot be opened here");
		return;
	}
	sh->take = T_REPLAY;
	sh->hold_until = UINT64_MAX; /* replay_done sets it */
	sh->gave = true;	     /* unless the image is refused below */
	if (proxy_partner_shelf_state(n->proxy) & PROXY_SHELF_DROPPED) {
		/* Its log is dropped: an earlier run of ours replayed it (it
		 * drops it only on our REPLAYED) and died before owning them. */
		LOG_INFO("%s dropped its log already: nothing to replay", n->cfg.ic.partner);
		replay_done(sh, 0, &(struct mirror_replay_stats){0});
		return;
	}
	if (!n->mirror || n->cfg.mirror.mode != MIRROR_MODE_ON || !n->partner_image_path[0]) {
		replay_done(sh, 0, &(struct mirror_replay_stats){0});
		return;
	}
	if (!n->mirror_ccm) {
		sh->gave = false;
		take_fail(sh, -ENOTCONN, "no mirror transport: its log image is not here");
		return;
	}
	t = node_mirror_ccm_partner_copy(n->mirror_ccm, true, why, sizeof(why));
	if (t == MIRROR_IMAGE_NOTHING) {
		LOG_INFO("no copy of %s's log here (%s): nothing to replay", n->cfg.ic.partner,
			 why);
		replay_done(sh, 0, &(struct mirror_replay_stats){0});
		return;
	}
	if (t != MIRROR_IMAGE_CURRENT) {
		sh->gave = false;
		take_fail(sh, -ESTALE, why);
		return;
	}
	rc = mirror_replay_start(n->partner_image_path, n->loop, s,
				 MIRROR_REPLAY_REQUIRE_VALID | MIRROR_REPLAY_RETIRE, replay_done,
				 sh, &sh->replay);
	if (rc == -ENODATA)
		replay_done(sh, 0, &(struct mirror_replay_stats){0});
	else if (rc < 0)
		take_fail(sh, rc, "its log image cannot be replayed");
}

/* The giver dropped its log: the volumes it owned there are ours now. */
static void take_adopt(struct node_shelf *sh)
{
	struct node *n = sh->n;
	struct store *s;
	unsigned count;

	if (node_reloc_partner_store(n, &s) < 0) {
		take_fail(sh, -EIO, "its shelf was closed");
		return;
	}
	count = store_volume_count(s);
	for (unsigned i = 0; i < count; i++) {
		struct store_volume *v = store_volume_at(s, i);
		struct store_volume_info vi;
		int rc;
		if (store_volume_reload_owner(v) < 0)
			continue;
		store_volume_get_info(v, &vi);
		if (strcmp(vi.owner, n->cfg.ic.partner) != 0)
			continue;
		rc = store_volume_set_owner(v, n->cfg.node.id);
		if (rc < 0) {
			LOG_ERROR("volume %s: cannot write this node as its owner: %s", vi.name,
				  strerror(-rc));
			continue;
		}
		sh->taken++;
	}
	sh->take = T_DONE;
	sh->gave = false;
	snprintf(sh->take_last, sizeof(sh->take_last), "%u volume%s of %s's shelf in %llu ms",
		 sh->taken, sh->taken == 1 ? "" : "s", n->cfg.ic.partner,
		 (unsigned long long)((loop_now_ns() - sh->take_start_ns) / NS_PER_MS));
	LOG_WARN("took %s", sh->take_last);
	proxy_set_shelf_state(n->proxy, 0);
	node_reloc_adopt_all(n);
}

/* The taker's side, driven by the partner's state bits. */
static void take_step(struct node_shelf *sh)
{
	struct node *n = sh->n;
	unsigned ps = proxy_partner_shelf_state(n->proxy);

	if (n->pstore)
		sh->gave = false; /* a takeover of the partner consumed it */
	if (!(ps & PROXY_SHELF_GIVE)) {
		/* Not (or no longer: a new instance of the partner) giving. */
		sh->gave = false;
		if (sh->take != T_REPLAY && sh->take != T_IDLE) {
			sh->take = T_IDLE;
			proxy_set_shelf_state(n->proxy, 0);
		}
		return;
	}
	if (sh->take == T_FAILED && loop_now_ns() - sh->take_failed_ns >= SF_RETRY_NS)
		sh->take = T_IDLE;
	if (sh->take == T_IDLE)
		take_start(sh);
	else if (sh->take == T_REPLAY)
		take_replayed(sh);
	else if (sh->take == T_REPLAYED && (ps & PROXY_SHELF_DROPPED) && !n->pstore)
		take_adopt(sh); /* after a takeover's giveback, if one came between */
}

/* ---- the timer ---- */

/* Health, then each side's next step: every SF_BUSY_NS while a handover
 * runs (either side), else every SF_TICK_NS. */
static void tick(struct loop_timer *t)
{
	struct node_shelf *sh = t->arg;
	struct node *n = sh->n;
	bool busy;

	sh->kicked = false;
	test_hook(sh);
	test_hang_hook(sh);
	check_hung(sh);
	check_health(sh);
	give_step(sh);
	take_step(sh);
	busy = (sh->give != G_OK && sh->give != G_DONE && sh->give != G_REFUSED) ||
	       (sh->take != T_IDLE && sh->take != T_DONE && sh->take != T_FAILED) ||
	       (proxy_partner_shelf_state(n->proxy) & PROXY_SHELF_GIVE && sh->take == T_IDLE);
	loop_timer_arm(n->loop, t, busy ? SF_BUSY_NS : SF_TICK_NS);
}

/* A test variable NODE:VALUE names this node. */
static bool for_me(const struct node *n, const char *var, const char *colon)
{
	size_t len = (size_t)(colon - var);

	return len == strlen(n->cfg.node.id) && !strncmp(var, n->cfg.node.id, len);
}

int node_shelf_create(struct node *n)
{
	struct node_shelf *sh = calloc(1, sizeof(*sh));
	const char *test = getenv("DUET_TEST_SHELF_EIO");
	const char *colon = test ? strchr(test, ':') : NULL;

	if (!sh)
		return -ENOMEM;
	sh->n = n;
	sh->window_ns = loop_now_ns();
	sh->window_errors = store_shelf_errors(n->store);
	if (colon && for_me(n, test, colon)) {
		snprintf(sh->test_path, sizeof(sh->test_path), "%s", colon + 1);
		LOG_WARN("test: DUET_TEST_SHELF_EIO: the own shelf fails once %s exists",
			 sh->test_path);
	}
	test = getenv("DUET_TEST_SHELF_HANG");
	colon = test ? strchr(test, ':') : NULL;
	if (colon && for_me(n, test, colon)) {
		snprintf(sh->hang_path, sizeof(sh->hang_path), "%s", colon + 1);
		LOG_WARN("test: DUET_TEST_SHELF_HANG: the own shelf hangs once %s exists",
			 sh->hang_path);
	}
	sh->hung_ns = SF_HUNG_NS;
	test = getenv("DUET_TEST_SHELF_HUNG_MS");
	if (test && strtoull(test, NULL, 10) > 0) {
		sh->hung_ns = strtoull(test, NULL, 10) * NS_PER_MS;
		LOG_WARN(
		    "test: DUET_TEST_SHELF_HUNG_MS: the own shelf counts as hung after %llu ms",
		    (unsigned long long)(sh->hung_ns / NS_PER_MS));
	}
	/* NODE:MS[,NODE:MS] */
	for (test = getenv("DUET_TEST_SHELF_HOLD"); test && (colon = strchr(test, ':'));
	     test = strchr(colon, ',') ? strchr(colon, ',') + 1 : NULL) {
		if (!for_me(n, test, colon))
			continue;
		sh->hold_ns = strtoull(colon + 1, NULL, 10) * NS_PER_MS;
		LOG_WARN("test: DUET_TEST_SHELF_HOLD: a handover holds %llu ms after the replay",
			 (unsigned long long)(sh->hold_ns / NS_PER_MS));
	}
	loop_timer_init(&sh->tick, tick, sh);
	loop_timer_arm(n->loop, &sh->tick, SF_TICK_NS);
	n->shelf_fail = sh;
	node_datapath_set_error_hook(n->dp, own_error, n);
	return 0;
}

void node_shelf_destroy(struct node *n)
{
	struct node_shelf *sh = n->shelf_fail;

	if (!sh)
		return;
	loop_timer_cancel(n->loop, &sh->tick);
	node_datapath_set_error_hook(n->dp, NULL, NULL);
	if (sh->replay) {
		/* Its I/O points into the partner's store: leave it be. */
		LOG_ERROR("the replay of %s's log for a handover is still running at exit",
			  n->cfg.ic.partner);
		n->shelf_fail = NULL;
		return;
	}
	free(sh->names);
	free(sh);
	n->shelf_fail = NULL;
}

bool node_shelf_failed(const struct node *n)
{
	return n->shelf_fail && n->shelf_fail->give != G_OK;
}

const char *node_shelf_owner(const struct node *n, const char *name)
{
	const struct node_shelf *sh = n->shelf_fail;

	if (!sh || sh->give != G_DONE)
		return NULL;
	for (unsigned i = 0; i < sh->n_names; i++)
		if (!strcmp(sh->names[i], name))
			return n->cfg.ic.partner;
	return NULL;
}

bool node_shelf_partner_failed(const struct node *n)
{
	return n->proxy && (proxy_partner_shelf_state(n->proxy) & PROXY_SHELF_GIVE);
}

bool node_shelf_replaying(const struct node *n)
{
	return n->shelf_fail && n->shelf_fail->replay;
}

/* Read by the takeover decision (failover.c, each heartbeat): the partner
 * that gave its shelf held its mirror, so it publishes "degraded", yet
 * every record it logged is in our copy (it drained and checked the mirror
 * in sync before GIVE, and its volumes logged nothing since). Dying before
 * DROPPED it leaves its volumes to a takeover, which replays that copy (or
 * finds it retired by our handover replay: nothing to replay, the proof
 * says done, and the partner drops its log at the giveback). */
bool node_shelf_partner_gave(const struct node *n)
{
	return n->shelf_fail && n->shelf_fail->gave && !n->pstore && !n->fenced &&
	       !n->taken_at_boot;
}

int node_shelf_status_json(struct node *n, struct json_object *root)
{
	struct node_shelf *sh = n->shelf_fail;
	struct json_object *o = json_object_new_object();

	if (!o)
		return -ENOMEM;
	jobj_add_str(o, "own", sh && sh->failed ? "failed" : "ok");
	if (sh && sh->failed)
		jobj_add_str(o, "why", sh->why);
	jobj_add_u64(o, "errors", store_shelf_errors(n->store));
	jobj_add_str(o, "give", give_names[sh ? sh->give : G_OK]);
	jobj_add_str(o, "give_last", sh ? sh->give_last : "");
	jobj_add_str(o, "take", take_names[sh ? sh->take : T_IDLE]);
	jobj_add_str(o, "take_last", sh ? sh->take_last : "");
	json_object_object_add(root, "shelf_handover", o);
	return 0;
}
