/* The own NBD listener's backend, the "route" (docs/RELOCATION.md, "Every
 * volume on every port"): each command of a volume this node serves goes to
 * the local backend (the own shelf's datapath, or the one of the partner's
 * shelf for volumes relocated here), every other to the proxy's forwarding
 * side (exactly-once over the interconnect). The decision is taken again at
 * each command whenever ownership changed (the relocation generation), so
 * a client stays connected to either node through any relocation. A
 * command with nowhere to go yet waits here, retried every 5 ms, and fails
 * with EIO only after the proxy's timeout_ms. Relocation itself, which
 * changes where volumes are served, is relocate.c. */
#define LOG_MODULE "route"
#include "node/reloc_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"

#define ROUTE_RETRY_NS (5 * NS_PER_MS) /* commands with nowhere to go yet */

/* A handle of a local backend (dp or rdp): the datapath and its handle. */
struct local_vol {
	struct node_datapath *dp;
	void *handle;
};

/* The export handle of the own listener. */
struct route_vol {
	struct node *n;
	char name[NAME_MAX_LEN];
	uint64_t gen;	      /* when `local` was decided */
	bool local;	      /* served here (at gen) */
	struct local_vol *lv; /* opened on first local use */
	void *ph;	      /* the proxy's handle, opened on first forwarded use */
	struct nbd_export_info info;
};

/* A command of the route with nowhere to go yet. */
struct route_wait {
	struct list node;
	struct nbd_io *io;
	uint64_t since_ns;
};

/* ---- the local backend: the own shelf's volumes and those relocated here ---- */

struct node_datapath *node_route_local_dp(struct node *n, const char *name)
{
	if (node_datapath_vol_here(n->dp, name))
		return n->dp;
	if (n->reloc && n->reloc->rdp && node_datapath_vol_here(n->reloc->rdp, name))
		return n->reloc->rdp;
	return NULL;
}

static int local_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
		      void *arg)
{
	struct node *n = ctx;
	int rc = node_datapath_ops()->list(n->dp, emit, arg);

	if (rc == 0 && n->reloc && n->reloc->rdp)
		rc = node_datapath_ops()->list(n->reloc->rdp, emit, arg);
	return rc;
}

static int local_open(void *ctx, const char *name, void **handle, struct nbd_export_info *info)
{
	struct node *n = ctx;
	struct node_datapath *dp = node_route_local_dp(n, name);
	struct local_vol *lv;
	int rc;

	if (!dp)
		return -ENOENT;
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return -ENOMEM;
	lv->dp = dp;
	rc = node_datapath_ops()->open(dp, name, &lv->handle, info);
	if (rc < 0) {
		free(lv);
		return rc;
	}
	*handle = lv;
	return 0;
}

static void local_close(void *ctx, void *handle)
{
	struct local_vol *lv = handle;

	(void)ctx;
	node_datapath_ops()->close(lv->dp, lv->handle);
	free(lv);
}

static void local_submit(void *ctx, struct nbd_io *io)
{
	struct local_vol *lv = io->export_handle;

	(void)ctx;
	io->export_handle = lv->handle;
	node_datapath_ops()->submit(lv->dp, io);
}

/* The datapath of the shelf that holds @p name, whoever serves it now. */
static struct node_datapath *shelf_dp_of(struct node *n, const char *name)
{
	if (node_datapath_vol_store(n->dp, name))
		return n->dp;
	if (n->reloc && node_datapath_vol_store(n->reloc->rdp, name))
		return n->reloc->rdp;
	return NULL;
}

/* Per-volume allow lists: the list is in the metadata on the shelf. */
static bool local_allowed(void *ctx, const char *name, const char *const *ids, unsigned n_ids)
{
	struct node_datapath *dp = shelf_dp_of(ctx, name);
	const struct nbd_backend_ops *ops = node_datapath_ops();

	return !dp || !ops->allowed || ops->allowed(dp, name, ids, n_ids);
}

static const struct nbd_backend_ops local_ops = {
    .list = local_list,
    .open = local_open,
    .close = local_close,
    .submit = local_submit,
    .allowed = local_allowed,
};

const struct nbd_backend_ops *node_local_ops(void)
{
	return &local_ops;
}

/* ---- the own listener: every volume of the pair ---- */

struct route_list {
	void (*emit)(void *arg, const char *name, const char *desc);
	void *arg;
	const char *owner;
};

static void route_emit(void *arg, const char *name, const char *desc)
{
	struct route_list *l = arg;
	char d[64];

	(void)desc;
	snprintf(d, sizeof(d), "duet volume, owner %s", l->owner);
	l->emit(l->arg, name, d);
}

static int route_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
		      void *arg)
{
	struct node *n = ctx;
	struct route_list l = {emit, arg, n->cfg.node.id};
	int rc;

	rc = local_list(n, route_emit, &l);
	if (rc < 0 || !n->proxy)
		return rc;
	l.owner = n->cfg.ic.partner;
	return proxy_backend_ops()->list(n->proxy, route_emit, &l);
}

/* The volume is on a shelf this node sees but moving, or just relocated
 * and not yet listed by the partner: its size and features, for a client
 * that connects in the middle of a relocation (its commands wait). */
static int moving_info(struct node *n, const char *name, struct nbd_export_info *info)
{
	struct node_reloc *r = n->reloc;
	void *h;
	int rc;

	if (r && r->gone_until_ns > loop_now_ns() && !strcmp(r->gone_name, name)) {
		*info = r->gone_info;
		return 0;
	}
	if (!r || r->phase == RP_IDLE || strcmp(r->name, name) || !r->from)
		return -ENOENT;
	rc = node_datapath_ops()->open(r->from, name, &h, info); /* leaving, not away */
	if (rc == 0)
		node_datapath_ops()->close(r->from, h);
	return rc;
}

static int route_open(void *ctx, const char *name, void **handle, struct nbd_export_info *info)
{
	struct node *n = ctx;
	struct route_vol *rv;
	const char *owner = n->cfg.node.id;
	int rc;

	if (strlen(name) >= NAME_MAX_LEN)
		return -ENOENT;
	rv = calloc(1, sizeof(*rv));
	if (!rv)
		return -ENOMEM;
	rv->n = n;
	snprintf(rv->name, sizeof(rv->name), "%s", name);
	rv->gen = n->reloc ? n->reloc->gen : 0;
	rc = local_open(n, name, (void **)&rv->lv, info);
	rv->local = rc == 0;
	if (rc == -ENOENT && n->proxy) {
		owner = n->cfg.ic.partner;
		rc = proxy_backend_ops()->open(n->proxy, name, &rv->ph, info);
	}
	if (rc == -ENOENT)
		rc = moving_info(n, name, info);
	if (rc < 0) {
		free(rv);
		return rc;
	}
	snprintf(info->description, sizeof(info->description), "duet volume, owner %s", owner);
	rv->info = *info;
	*handle = rv;
	return 0;
}

static void route_close(void *ctx, void *handle)
{
	struct route_vol *rv = handle;
	struct node *n = ctx;

	if (rv->lv)
		local_close(n, rv->lv);
	if (rv->ph && n->proxy)
		proxy_backend_ops()->close(n->proxy, rv->ph);
	free(rv);
}

static void route_wait(struct node *n, struct nbd_io *io)
{
	struct node_reloc *r = n->reloc;
	struct route_wait *w = malloc(sizeof(*w));

	if (!w || !r) {
		free(w);
		nbd_io_done(io, -ENOMEM);
		return;
	}
	w->io = io;
	w->since_ns = loop_now_ns();
	list_add_tail(&r->pending, &w->node);
	if (!loop_timer_armed(&r->retry))
		loop_timer_arm(n->loop, &r->retry, ROUTE_RETRY_NS);
}

/* A command of the own listener back from the local backend: "not
 * executed" (PROXY_MOVED: its shelf is being handed over, shelf_fail.c)
 * waits for the route to decide again; any other result goes to the client. */
static void route_local_done(struct nbd_io *io, int result)
{
	struct route_vol *rv = io->complete_arg;

	io->complete = NULL;
	io->complete_arg = NULL;
	if (result != PROXY_MOVED) {
		nbd_io_done(io, result);
		return;
	}
	io->export_handle = rv;
	rv->gen--; /* decide again */
	route_wait(rv->n, io);
}

/* Where the command goes: the local backend while the volume is served
 * here, else the forwarder; nowhere yet: it waits. */
static void route_submit(void *ctx, struct nbd_io *io)
{
	struct node *n = ctx;
	struct route_vol *rv = io->export_handle;
	uint64_t gen = n->reloc ? n->reloc->gen : 0;
	struct nbd_export_info info;

	if (rv->gen != gen) {
		rv->gen = gen;
		rv->local = node_route_local_dp(n, rv->name) != NULL;
		if (rv->lv && rv->lv->dp != node_route_local_dp(n, rv->name)) {
			local_close(n, rv->lv); /* moved between shelves (move.c) */
			rv->lv = NULL;
		}
	}
	if (rv->local) {
		if (!rv->lv && local_open(n, rv->name, (void **)&rv->lv, &info) < 0) {
			rv->gen = gen - 1; /* decide again */
			route_wait(n, io);
			return;
		}
		io->export_handle = rv->lv;
		io->complete = route_local_done; /* "not executed": routed again */
		io->complete_arg = rv;
		local_submit(n, io);
		return;
	}
	if (!rv->ph &&
	    (!n->proxy || proxy_backend_ops()->open(n->proxy, rv->name, &rv->ph, &info) < 0)) {
		rv->ph = NULL;
		route_wait(n, io);
		return;
	}
	io->export_handle = rv->ph;
	proxy_backend_ops()->submit(n->proxy, io);
}

void node_route_retry_fire(struct loop_timer *t)
{
	struct node_reloc *r = t->arg;
	struct node *n = r->n;
	uint64_t now = loop_now_ns();
	uint64_t limit = n->cfg.proxy.timeout_ms * NS_PER_MS;
	struct list todo;
	struct route_wait *w;

	list_init(&todo);
	while ((w = list_first_entry_or_null(&r->pending, struct route_wait, node))) {
		list_del(&w->node);
		list_add_tail(&todo, &w->node);
	}
	while ((w = list_first_entry_or_null(&todo, struct route_wait, node))) {
		struct nbd_io *io = w->io;
		bool expired = now - w->since_ns >= limit;
		list_del(&w->node);
		free(w);
		if (expired) {
			LOG_WARN("a command waited %llu ms for a node serving its volume: EIO",
				 (unsigned long long)(limit / NS_PER_MS));
			nbd_io_done(io, -EIO);
		} else {
			route_submit(n, io);
		}
	}
}

/* A volume on a shelf this node sees: its list from the metadata; else
 * the proxy's answer (a partner volume with a list: refused, fail closed). */
static bool route_allowed(void *ctx, const char *name, const char *const *ids, unsigned n_ids)
{
	struct node *n = ctx;
	const struct nbd_backend_ops *pops = proxy_backend_ops();

	if (shelf_dp_of(n, name) || !n->proxy)
		return local_allowed(n, name, ids, n_ids);
	return !pops->allowed || pops->allowed(n->proxy, name, ids, n_ids);
}

static const struct nbd_backend_ops route_ops = {
    .list = route_list,
    .open = route_open,
    .close = route_close,
    .submit = route_submit,
    .allowed = route_allowed,
};

const struct nbd_backend_ops *node_route_ops(void)
{
	return &route_ops;
}

/* Commands still waiting for a node to serve their volume, at the end. */
void node_route_drop_waits(struct node_reloc *r, int err)
{
	struct route_wait *w;

	while ((w = list_first_entry_or_null(&r->pending, struct route_wait, node))) {
		list_del(&w->node);
		nbd_io_done(w->io, err);
		free(w);
	}
}
