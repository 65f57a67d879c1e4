/* Every volume of the pair on every node's NBD port, and relocation: the
 * ownership of one volume moves to the partner without copying
 * (docs/RELOCATION.md).
 *
 * The own NBD listener's backend (the "route", route.c) sends each command
 * to the node serving its volume; this file changes which node that is.
 *
 * Relocation from this node (the owner) to the partner:
 *   1. leaving: the route forwards new commands (they park in the forwarder
 *      until the partner lists the volume); the local backend refuses new
 *      ones with PROXY_MOVED (the partner's forwarded requests are refused,
 *      not executed, and sent again later); a local proxy route (the volume
 *      came here by an earlier relocation) is turned back to forwarding;
 *   2. drain: wait until no request of the volume is at the backend;
 *   3. durable: a consistency point of the log (every record of the volume
 *      applied, the volume fdatasync'ed, and no record of it replayed by
 *      anyone after: records up to the CP are never replayed), or a store
 *      FLUSH where no log covers the volume;
 *   4. the owner field of the volume's metadata, on its shelf, names the
 *      partner (write, fsync, rename, fsync of the directory); the volume is
 *      away here; the own volume list goes to the partner.
 * The partner, on that list (partner_vols_changed): reads the owner field of
 * every volume it does not serve (its own shelf, and through [monitor]
 * partner_shelf the partner's) and adopts those that name it: served by its
 * backend, its proxy routes them locally (commands parked in its forwarder
 * run there once), and its list goes back, which releases the old owner's
 * parked commands to it.
 *
 * A volume of the partner's shelf served here has no log covering it (a
 * takeover replays logs onto their own node's shelf only): every write to
 * it is FUA (write-through), so an acknowledged write is on the shelf. */
#define LOG_MODULE "route"
#include "node/reloc_int.h"

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/list.h"
#include "common/log.h"
#include "common/util.h"
#include "mirror/mirror.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"
#include "store/store.h"

/* ---- adopting what the partner relocated here ---- */

static int open_rstore(struct node *n)
{
	struct node_reloc *r = n->reloc;
	int rc;

	if (r->rstore)
		return 0;
	if (!n->cfg.monitor.partner_shelf[0])
		return -ENOENT;
	rc = node_datapath_open_store(n, n->cfg.monitor.partner_shelf, &r->rstore);
	if (rc < 0) {
		LOG_ERROR("cannot open the partner's shelf %s for relocated volumes: %s",
			  n->cfg.monitor.partner_shelf, strerror(-rc));
		return rc;
	}
	node_failover_gate_store(n, r->rstore);
	rc = node_datapath_create(n, r->rstore, NULL, "relocated", &r->rdp);
	if (rc < 0) {
		store_close(r->rstore);
		r->rstore = NULL;
		return rc;
	}
	node_datapath_set_write_through(r->rdp);
	/* Nothing of it is served until adopted (adopt_one). */
	for (unsigned i = 0; i < store_volume_count(r->rstore); i++)
		node_datapath_vol_set(r->rdp, store_volume_name(store_volume_at(r->rstore, i)), 1,
				      0);
	return 0;
}

struct store *node_reloc_rstore(struct node *n)
{
	return n->reloc && open_rstore(n) == 0 ? n->reloc->rstore : NULL;
}

/* Volume @p name of @p dp's shelf names this node as its owner now: serve
 * it. @return true if it was adopted. */
static bool adopt_one(struct node *n, struct node_datapath *dp, const char *name)
{
	struct store_volume *v = node_datapath_vol_store(dp, name);
	struct store_volume_info vi;

	if (dp == n->dp && node_shelf_failed(n))
		return false; /* handed over: nothing goes back to a failed shelf */
	if (!v || node_datapath_vol_here(dp, name) || store_volume_reload_owner(v) < 0)
		return false;
	store_volume_get_info(v, &vi);
	if (strcmp(vi.owner, n->cfg.node.id) != 0)
		return false;
	node_datapath_vol_set(dp, name, 0, 0);
	n->reloc->gen++;
	n->reloc->adopted++;
	/* Commands of it parked in our forwarder run here, once. */
	if (n->proxy)
		proxy_route_local(n->proxy, name, node_local_ops(), n);
	LOG_INFO("volume %s (on %s's shelf): relocated here by the partner, serving it", name,
		 dp == n->dp ? n->cfg.node.id : n->cfg.ic.partner);
	return true;
}

bool node_reloc_adopt(struct node *n, const char *name)
{
	node_datapath_vol_set(n->dp, name, 1, 0);
	if (!adopt_one(n, n->dp, name))
		return false;
	proxy_local_volumes_changed(n->proxy);
	return true;
}

static bool adopt_from(struct node *n, struct node_datapath *dp, struct store *s)
{
	unsigned count = s ? store_volume_count(s) : 0;
	bool any = false;

	for (unsigned i = 0; i < count; i++)
		any |= adopt_one(n, dp, store_volume_name(store_volume_at(s, i)));
	return any;
}

/* Whether a volume of the partner's shelf names this node as its owner
 * (its owner record, read before the shelf is opened here: most pairs never
 * relocate). */
static bool partner_shelf_names_us(struct node *n)
{
	return store_shelf_names_owner(n->cfg.monitor.partner_shelf, n->cfg.node.id) == 1;
}

/* Volumes the partner created on its shelf since we opened it: loaded, not
 * served until adopted (a relocation of one names us in its record). */
static void rstore_load_new(struct node *n)
{
	struct node_reloc *r = n->reloc;
	char dir[PATH_MAX + 16];
	struct dirent *e;
	DIR *d;

	if (!r->rstore)
		return;
	snprintf(dir, sizeof(dir), "%s/volumes", n->cfg.monitor.partner_shelf);
	d = opendir(dir);
	if (!d)
		return;
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char name[NAME_MAX_LEN];
		struct store_volume *v;

		if (e->d_name[0] == '.' || len < 6 || len - 5 >= sizeof(name) ||
		    strcmp(e->d_name + len - 5, ".meta") != 0)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(len - 5), e->d_name);
		if (store_name_valid(name) < 0 || store_volume_find(r->rstore, name) ||
		    store_volume_load(r->rstore, name, &v) < 0)
			continue;
		node_datapath_vol_set(r->rdp, name, 1, 0);
	}
	closedir(d);
}

/* The partner's volume list changed: it may have relocated one here. */
static void partner_vols_changed(void *arg)
{
	struct node *n = arg;
	struct node_reloc *r = n->reloc;
	bool any;

	if (!r || n->fenced || n->taken_at_boot)
		return;
	node_move_load_new(n, false); /* volumes moved to our shelf */
	rstore_load_new(n);	      /* volumes the partner created since */
	any = adopt_from(n, n->dp, n->store);
	if ((r->rstore || (n->cfg.monitor.partner_shelf[0] && partner_shelf_names_us(n))) &&
	    open_rstore(n) == 0)
		any |= adopt_from(n, r->rdp, r->rstore);
	if (any)
		proxy_local_volumes_changed(n->proxy);
	/* Commands waiting for a route may have one now. */
	if (!list_empty(&r->pending))
		node_route_retry_fire(&r->retry);
}

/* Once a second: the owner fields of the volumes not served here, read
 * again, in case a list change was missed (a session that came back with
 * the same list, a slow partner): adoption never depends on one message. */
static void recheck_fire(struct loop_timer *t)
{
	struct node_reloc *r = t->arg;
	struct node *n = r->n;
	bool any = false;

	loop_timer_arm(n->loop, &r->recheck, RECHECK_NS);
	/* Test hook (relocate-kill.sh): adoption by the list and the takeover only. */
	if (getenv("DUET_TEST_RELOC_NO_RECHECK"))
		return;
	if (n->fenced || n->taken_at_boot || n->pstore || r->phase != RP_IDLE)
		return;
	node_move_load_new(n, false);
	any = adopt_from(n, n->dp, n->store);
	if (r->rstore)
		any |= adopt_from(n, r->rdp, r->rstore);
	if (any) {
		LOG_INFO("adopted on a periodic check (no list change seen)");
		proxy_local_volumes_changed(n->proxy);
	}
}

/* ---- relocating a volume to the partner ---- */

/* Test hook (tests/fault/relocate-kill.sh): env DUET_TEST_RELOC_STOP=POINT
 * stops this process (SIGSTOP) when a relocation from here reaches POINT:
 * "leaving" (new commands forwarded, none drained yet), "durable" (the
 * consistency point taken, the owner record not yet written) or "owner"
 * (the record names the partner, the volume list not yet sent), so that a
 * test can kill either node there. */
static void test_stop_at(const char *point)
{
	const char *at = getenv("DUET_TEST_RELOC_STOP");

	if (at && strcmp(at, point) == 0) {
		LOG_WARN("test: stopped at relocation point %s", point);
		raise(SIGSTOP);
	}
}

static void reloc_end(struct node_reloc *r, int rc)
{
	struct node *n = r->n;
	uint64_t ms = (loop_now_ns() - r->start_ns) / NS_PER_MS;

	loop_timer_cancel(n->loop, &r->poll);
	if (rc < 0) {
		/* Not moved: serve it here again, with the commands the route
		 * forwarded since it began (parked in our forwarder: the
		 * partner never listed it), once. */
		node_datapath_vol_set(r->from, r->name, -1, 0);
		if (n->proxy)
			proxy_route_local(n->proxy, r->name, node_local_ops(), n);
		snprintf(r->last, sizeof(r->last), "%s to %s failed after %llu ms: %s", r->name,
			 n->cfg.ic.partner, (unsigned long long)ms, strerror(-rc));
		LOG_ERROR("relocation of %s", r->last);
	} else {
		r->relocations++;
		snprintf(r->gone_name, sizeof(r->gone_name), "%s", r->name);
		r->gone_until_ns = loop_now_ns() + n->cfg.proxy.timeout_ms * NS_PER_MS;
		snprintf(r->last, sizeof(r->last), "%s to %s in %llu ms", r->name,
			 n->cfg.ic.partner, (unsigned long long)ms);
		LOG_INFO("relocated %s", r->last);
	}
	r->last_rc = rc;
	r->gen++;
	r->phase = RP_IDLE;
	if (r->ended) {
		void (*ended)(struct node *, int) = r->ended;
		r->cut = NULL;
		r->ended = NULL;
		ended(n, rc);
	}
	if (!list_empty(&r->pending))
		node_route_retry_fire(&r->retry);
}

/* The volume is durable and no record of it will be replayed: the
 * partner's name goes into its metadata, the volume is away. */
static void reloc_cut_over(struct node_reloc *r, int result)
{
	struct node *n = r->n;
	struct store_volume *v = node_datapath_vol_store(r->from, r->name);
	int rc = result;

	if (rc == 0) {
		test_stop_at("durable");
		/* The partner died and our takeover of it began meanwhile: it
		 * routed our shelf's volumes by the owners it read then, this
		 * one ours; keep it so (the relocation fails, we serve it). */
		if (n->pstore)
			rc = -ECONNABORTED;
		else if (r->cut) /* a volume move's commit (move.c) */
			rc = r->cut(n, r->name);
		else
			rc = v ? store_volume_set_owner(v, n->cfg.ic.partner) : -ENOENT;
	}
	if (rc < 0) {
		reloc_end(r, rc);
		return;
	}
	test_stop_at("owner");
	node_datapath_vol_set(r->from, r->name, 1, 0);
	proxy_local_volumes_changed(n->proxy);
	reloc_end(r, 0);
}

static void reloc_flushed(struct mirror_flush *f, int result)
{
	reloc_cut_over(container_of(f, struct node_reloc, mf), result);
}

static void reloc_store_flushed(struct store_io *io, int result)
{
	reloc_cut_over(io->arg, result);
}

static void reloc_poll(struct loop_timer *t)
{
	struct node_reloc *r = t->arg;
	struct node *n = r->n;
	struct mirror *m = node_datapath_mirror(r->from);
	struct store_volume *v;

	/* Requests held for the I/O lease (a stall) are not counted per
	 * volume: wait for the datapath to hold none, so that none reaches it
	 * after the cut-over (it would fail there instead of being forwarded). */
	if (node_datapath_vol_inflight(r->from, r->name) > 0 || node_datapath_held(r->from) > 0) {
		loop_timer_arm(n->loop, &r->poll, RELOC_POLL_NS);
		return;
	}
	/* Test hook (relocate-kill.sh): DUET_TEST_RELOC_HOLD_MS holds the
	 * drained relocation that long before its consistency point, for a
	 * takeover of the partner to begin meanwhile. */
	if (!r->held && getenv("DUET_TEST_RELOC_HOLD_MS")) {
		r->held = true;
		loop_timer_arm(n->loop, &r->poll,
			       strtoull(getenv("DUET_TEST_RELOC_HOLD_MS"), NULL, 10) * NS_PER_MS);
		return;
	}
	r->phase = RP_DURABLE;
	if (m) {
		/* A consistency point: every record applied and the volume
		 * fdatasync'ed; none up to it is replayed by anyone after. */
		r->mf.done = reloc_flushed;
		r->mf.arg = r;
		mirror_flush(m, &r->mf);
		return;
	}
	v = node_datapath_vol_store(r->from, r->name);
	if (!v) {
		reloc_end(r, -ENOENT);
		return;
	}
	memset(&r->fio, 0, sizeof(r->fio));
	r->fio.op = STORE_OP_FLUSH;
	r->fio.done = reloc_store_flushed;
	r->fio.arg = r;
	store_submit(v, &r->fio);
}

int node_reloc_start(struct node *n, const char *name, char *err, size_t errlen)
{
	if (node_move_moving(n, name)) {
		snprintf(err, errlen, "volume %s is being moved: abort the move first", name);
		return -EBUSY;
	}
	return node_reloc_start_cut(n, name, NULL, NULL, err, errlen);
}

int node_reloc_start_cut(struct node *n, const char *name, int (*cut)(struct node *, const char *),
			 void (*ended)(struct node *, int), char *err, size_t errlen)
{
	struct node_reloc *r = n->reloc;
	struct node_datapath *from;
	void *h;
	int rc;

	if (!r || !n->proxy) {
		snprintf(err, errlen, "no interconnect: nothing to relocate to");
		return -ENOTCONN;
	}
	if (r->phase != RP_IDLE) {
		snprintf(err, errlen, "a relocation (%s) is in progress", r->name);
		return -EBUSY;
	}
	if (n->fenced || n->taken_at_boot || n->pstore) {
		snprintf(err, errlen, "not while a takeover stands");
		return -EBUSY;
	}
	if (strlen(name) >= NAME_MAX_LEN || !(from = node_route_local_dp(n, name))) {
		snprintf(err, errlen, "volume %s is not served by this node", name);
		return -ENOENT;
	}
	if (from == r->rdp && node_shelf_partner_failed(n)) {
		snprintf(err, errlen, "%s's own shelf failed: it takes back none of its volumes",
			 n->cfg.ic.partner);
		return -EHOSTUNREACH;
	}
	if (!n->cfg.monitor.partner_shelf[0]) {
		/* The partner reaches our shelf as we reach its: a pair whose
		 * shelves are not shared cannot relocate. */
		snprintf(err, errlen, "no [monitor] partner_shelf: the shelves are not shared");
		return -EINVAL;
	}
	rc = node_datapath_ops()->open(from, name, &h, &r->gone_info);
	if (rc < 0) {
		snprintf(err, errlen, "volume %s: %s", name, strerror(-rc));
		return rc;
	}
	node_datapath_ops()->close(from, h);
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->cut = cut;
	r->ended = ended;
	r->from = from;
	r->held = false;
	r->start_ns = loop_now_ns();
	r->phase = RP_DRAIN;
	LOG_INFO("relocating %s to %s", name, n->cfg.ic.partner);
	/* New commands: forwarded (they park until the partner lists it); the
	 * partner's forwarded requests: refused. */
	node_datapath_vol_set(from, name, -1, 1);
	proxy_route_partner(n->proxy, name);
	r->gen++;
	test_stop_at("leaving");
	reloc_poll(&r->poll);
	return 0;
}

/* ---- status ---- */

/* The volume's owner on its shelf, and the datapath of that shelf here. */
static bool shelf_volume(struct node *n, const char *name, struct store_volume_info *vi,
			 const char **shelf)
{
	struct store_volume *v = n->store ? store_volume_find(n->store, name) : NULL;

	*shelf = n->cfg.node.id;
	if (!v && n->reloc && n->reloc->rstore) {
		v = store_volume_find(n->reloc->rstore, name);
		*shelf = n->cfg.ic.partner;
	}
	if (!v)
		return false;
	store_volume_get_info(v, vi);
	if (node_shelf_owner(n, name)) /* handed over: its shelf failed here */
		snprintf(vi->owner, sizeof(vi->owner), "%s", node_shelf_owner(n, name));
	return true;
}

void node_reloc_fix_volumes(struct node *n, struct json_object *volumes)
{
	size_t len = json_object_array_length(volumes);

	/* Backwards, so removing an entry keeps the indexes before it. */
	for (size_t i = len; i-- > 0;) {
		struct json_object *o = json_object_array_get_idx(volumes, i);
		struct json_object *jn, *jp;
		struct store_volume_info vi;
		const char *shelf, *name, *port;
		bool here;

		if (!json_object_object_get_ex(o, "name", &jn) ||
		    !json_object_object_get_ex(o, "port", &jp))
			continue;
		name = json_object_get_string(jn);
		port = json_object_get_string(jp);
		if (!shelf_volume(n, name, &vi, &shelf))
			continue;
		if (!strcmp(port, "proxy") && !strcmp(shelf, n->cfg.node.id)) {
			/* Ours, relocated to the partner: the direct entry says it. */
			json_object_array_del_idx(volumes, i, 1);
			continue;
		}
		here = node_route_local_dp(n, name) != NULL;
		json_object_object_add(o, "owner", json_object_new_string(vi.owner));
		json_object_object_add(o, "shelf", json_object_new_string(shelf));
		if (!strcmp(port, "direct") && !n->fenced && !n->taken_at_boot)
			json_object_object_add(
			    o, "served_by",
			    json_object_new_string(here || n->pstore ||
							   strcmp(vi.owner, n->cfg.ic.partner)
						       ? n->cfg.node.id
						       : n->cfg.ic.partner));
		if (!strcmp(port, "proxy") && here)
			json_object_object_add(o, "served_by",
					       json_object_new_string(n->cfg.node.id));
	}
}

int node_reloc_status_json(struct node *n, struct json_object *root)
{
	struct node_reloc *r = n->reloc;
	struct json_object *o = json_object_new_object();

	if (!o)
		return -ENOMEM;
	jobj_add_str(o, "state", !r || r->phase == RP_IDLE ? "idle" : "relocating");
	if (r && r->phase != RP_IDLE)
		jobj_add_str(o, "volume", r->name);
	jobj_add_u64(o, "relocated", r ? r->relocations : 0);
	jobj_add_u64(o, "adopted", r ? r->adopted : 0);
	jobj_add_str(o, "last", r ? r->last : "");
	json_object_object_add(root, "relocation", o);
	return node_shelf_status_json(n, root);
}

/* ---- life ---- */

int node_reloc_create(struct node *n)
{
	struct node_reloc *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->n = n;
	list_init(&r->pending);
	loop_timer_init(&r->retry, node_route_retry_fire, r);
	loop_timer_init(&r->poll, reloc_poll, r);
	loop_timer_init(&r->recheck, recheck_fire, r);
	loop_timer_arm(n->loop, &r->recheck, RECHECK_NS);
	n->reloc = r;
	return node_shelf_create(n);
}

/* ---- hooks of the shelf handover (shelf_fail.c) ---- */

int node_reloc_partner_store(struct node *n, struct store **out)
{
	int rc = n->reloc ? open_rstore(n) : -ENOENT;

	*out = rc == 0 ? n->reloc->rstore : NULL;
	return rc;
}

void node_reloc_changed(struct node *n)
{
	struct node_reloc *r = n->reloc;

	if (!r)
		return;
	r->gen++;
	if (!list_empty(&r->pending))
		node_route_retry_fire(&r->retry);
}

void node_reloc_adopt_all(struct node *n)
{
	partner_vols_changed(n);
}

void node_reloc_proxy_opts(struct node *n, struct proxy_opts *po)
{
	po->local_ops = node_local_ops();
	po->local_ctx = n;
	po->partner_vols_changed = partner_vols_changed;
	po->changed_arg = n;
}

uint64_t node_reloc_inflight(const struct node *n)
{
	return n->reloc
		   ? node_datapath_inflight(n->reloc->rdp) + node_datapath_inflight(n->reloc->tdp)
		   : 0;
}

uint64_t node_reloc_drain_busy(const struct node *n)
{
	return n->reloc ? node_datapath_inflight(n->reloc->tdp) + node_datapath_held(n->reloc->tdp)
			: 0;
}

void node_reloc_each_volume(const struct node *n,
			    void (*fn)(void *arg, const char *name,
				       const struct node_vol_stats *st),
			    void *arg)
{
	if (n->reloc)
		node_datapath_each_volume(n->reloc->rdp, fn, arg);
}

bool node_reloc_activity(const struct node *n, uint64_t *moves)
{
	struct node_reloc *r = n->reloc;

	*moves = r ? r->relocations + r->adopted : 0;
	return r && r->phase != RP_IDLE;
}

/* ---- takeover and giveback ---- */

void node_reloc_adopt_pending(struct node *n)
{
	struct node_reloc *r = n->reloc;

	if (!r || !n->cfg.monitor.partner_shelf[0])
		return;
	rstore_load_new(n);
	if ((r->rstore || partner_shelf_names_us(n)) && open_rstore(n) == 0 &&
	    adopt_from(n, r->rdp, r->rstore)) {
		LOG_WARN("adopted at the takeover: the partner relocated them here and died");
		proxy_local_volumes_changed(n->proxy);
	}
}

bool node_reloc_owned_here(struct node *n, const char *name)
{
	struct node_reloc *r = n->reloc;

	return r && r->rdp && node_datapath_vol_here(r->rdp, name);
}

int node_reloc_takeover(struct node *n)
{
	struct node_reloc *r = n->reloc;
	unsigned count = store_volume_count(n->store), routed = 0;
	int rc = 0;

	if (!r || !n->proxy)
		return 0;
	if (!r->tdp) {
		rc = node_datapath_create(n, n->store, NULL, "partner", &r->tdp);
		if (rc < 0)
			return rc;
		node_datapath_set_write_through(r->tdp);
	}
	node_datapath_set_serving(r->tdp, true);
	/* The partner's volumes on our shelf: what it acknowledged of them is
	 * on the shelf (written through), nothing to replay. */
	for (unsigned i = 0; i < count; i++) {
		struct store_volume *v = store_volume_at(n->store, i);
		const char *name = store_volume_name(v);
		struct store_volume_info vi;
		int x;
		if (store_volume_reload_owner(v) < 0)
			continue;
		store_volume_get_info(v, &vi);
		if (strcmp(vi.owner, n->cfg.ic.partner) != 0)
			continue;
		node_datapath_vol_set(r->tdp, name, 0, 0);
		x = proxy_route_local(n->proxy, name, node_datapath_ops(), r->tdp);
		if (x == 0 || x == -EEXIST)
			routed++;
		else if (!rc)
			rc = x;
	}
	if (routed)
		LOG_WARN("serving %u volume%s of our shelf relocated to the partner", routed,
			 routed == 1 ? "" : "s");
	r->gen++;
	return rc;
}

void node_reloc_giveback(struct node *n)
{
	struct node_reloc *r = n->reloc;
	unsigned count = store_volume_count(n->store);

	if (!r || !r->tdp)
		return;
	for (unsigned i = 0; i < count; i++) {
		const char *name = store_volume_name(store_volume_at(n->store, i));
		if (node_datapath_vol_here(r->tdp, name))
			proxy_route_partner(n->proxy, name);
	}
	r->gen++;
}

void node_reloc_release_held(struct node *n)
{
	struct node_reloc *r = n->reloc;

	if (!r)
		return;
	if (r->rstore)
		store_gate_release(r->rstore);
	node_datapath_release_held(r->rdp);
	node_datapath_release_held(r->tdp);
}

void node_reloc_set_serving(struct node *n, bool serving)
{
	struct node_reloc *r = n->reloc;

	if (!r)
		return;
	node_datapath_set_serving(r->rdp, serving);
	node_datapath_set_serving(r->tdp, serving);
	if (!serving) {
		if (r->rstore)
			store_gate_fail(r->rstore, -EIO);
		return;
	}
	/* Given back: take up again what the partner relocated here. */
	partner_vols_changed(n);
}

void node_reloc_destroy(struct node *n)
{
	struct node_reloc *r = n->reloc;

	if (!r)
		return;
	node_shelf_destroy(n);
	loop_timer_cancel(n->loop, &r->retry);
	loop_timer_cancel(n->loop, &r->poll);
	loop_timer_cancel(n->loop, &r->recheck);
	node_route_drop_waits(r, -ESHUTDOWN);
	node_datapath_destroy(r->rdp);
	node_datapath_destroy(r->tdp);
	if (r->rstore)
		store_close(r->rstore);
	free(r);
	n->reloc = NULL;
}

int node_reloc_cmd(struct node *n, struct json_object *req, struct json_object *resp, char *err,
		   size_t errlen)
{
	struct json_object *name;
	int rc;

	if (!json_object_object_get_ex(req, "name", &name) ||
	    !json_object_is_type(name, json_type_string)) {
		snprintf(err, errlen, "volume_relocate wants a name");
		return -EINVAL;
	}
	rc = node_reloc_start(n, json_object_get_string(name), err, errlen);
	if (rc < 0)
		return rc;
	jobj_add_str(resp, "volume", json_object_get_string(name));
	jobj_add_str(resp, "to", n->cfg.ic.partner);
	return 0;
}
