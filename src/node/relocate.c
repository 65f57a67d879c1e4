/* Every volume of the pair on every node's NBD port: the backend of the own
 * NBD listener lists and opens the volumes this node serves itself (its
 * datapath) and, behind them, the partner's (the proxy's forwarding side,
 * exactly-once over the interconnect, and served locally after a takeover
 * through proxy_route_local). A client may connect to either node for any
 * volume; the export description names the owner.
 *
 * Rule kept: a handle of this backend is a small wrapper around the handle of
 * the backend that opened the volume; every command goes to that backend
 * with the inner handle, and close goes there once. Nothing here queues or
 * executes I/O itself. */
#define LOG_MODULE "route"
#include "node/node_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"

/* The export handle of the own listener: which backend holds the volume. */
struct route_vol {
	const struct nbd_backend_ops *ops;
	void *ctx;
	void *handle;
};

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

	rc = node_datapath_ops()->list(n->dp, route_emit, &l);
	if (rc < 0 || !n->proxy)
		return rc;
	l.owner = n->cfg.ic.partner;
	return proxy_backend_ops()->list(n->proxy, route_emit, &l);
}

/* The own datapath first: a name on both sides is the own volume. */
static int route_open(void *ctx, const char *name, void **handle, struct nbd_export_info *info)
{
	struct node *n = ctx;
	struct route_vol *rv = calloc(1, sizeof(*rv));
	const char *owner = n->cfg.node.id;
	int rc;

	if (!rv)
		return -ENOMEM;
	rv->ops = node_datapath_ops();
	rv->ctx = n->dp;
	rc = rv->ops->open(rv->ctx, name, &rv->handle, info);
	if (rc == -ENOENT && n->proxy) {
		rv->ops = proxy_backend_ops();
		rv->ctx = n->proxy;
		owner = n->cfg.ic.partner;
		rc = rv->ops->open(rv->ctx, name, &rv->handle, info);
	}
	if (rc < 0) {
		free(rv);
		return rc;
	}
	snprintf(info->description, sizeof(info->description), "duet volume, owner %s", owner);
	*handle = rv;
	return 0;
}

static void route_close(void *ctx, void *handle)
{
	struct route_vol *rv = handle;

	(void)ctx;
	rv->ops->close(rv->ctx, rv->handle);
	free(rv);
}

static void route_submit(void *ctx, struct nbd_io *io)
{
	struct route_vol *rv = io->export_handle;

	(void)ctx;
	io->export_handle = rv->handle;
	rv->ops->submit(rv->ctx, io);
}

static const struct nbd_backend_ops route_ops = {
    .list = route_list,
    .open = route_open,
    .close = route_close,
    .submit = route_submit,
};

const struct nbd_backend_ops *node_route_ops(void)
{
	return &route_ops;
}
