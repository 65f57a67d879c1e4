/* The forwarding side's volumes: the partner's volume list (pushed by the
 * partner after each HELLO and on every change; a volume id is valid only
 * for the partner instance that sent it), and the takeover routes that
 * serve a partner volume from a local backend instead (proxy_route_local()
 * and proxy_route_partner()), with the local ios that carry its commands
 * there.
 *
 * A partner volume (struct pvol) is kept across sessions and routes: the
 * proxy listener's handles point at it. Calls fw_send.c, fw_request.c,
 * port.c and wire.c. */
#define LOG_MODULE "proxy"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/proxy_int.h"

struct pvol *proxy_fw_vol_find(struct proxy *px, const char *name)
{
	struct list *pos;

	list_for_each(pos, &px->vols)
	{
		struct pvol *v = list_entry(pos, struct pvol, node);
		if (strcmp(v->name, name) == 0)
			return v;
	}
	return NULL;
}

static struct pvol *vol_add(struct proxy *px, const char *name)
{
	struct list *pos;
	struct pvol *v;
	unsigned n = 0;

	list_for_each(pos, &px->vols) n++;
	if (n >= PX_MAX_VOLS)
		return NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->px = px;
	list_add_head(&px->vols, &v->node);
	return v;
}

static void info_from_wire(struct proxy *px, struct nbd_export_info *i, const struct px_vol *w)
{
	memset(i, 0, sizeof(*i));
	i->size = w->size;
	i->read_only = w->flags & PXV_READ_ONLY;
	i->can_trim = w->flags & PXV_CAN_TRIM;
	i->can_zero = w->flags & PXV_CAN_ZERO;
	i->can_fast_zero = w->flags & PXV_CAN_FAST_ZERO;
	i->can_cache = w->flags & PXV_CAN_CACHE;
	i->can_flush = w->flags & PXV_CAN_FLUSH;
	i->can_fua = w->flags & PXV_CAN_FUA;
	i->can_multi_conn = w->flags & PXV_CAN_MULTI_CONN;
	i->can_block_status = w->flags & PXV_CAN_BLOCK_STATUS;
	i->min_block = w->min_block;
	i->pref_block = w->pref_block;
	snprintf(i->description, sizeof(i->description), "duet volume of %s via the proxy port",
		 px->partner);
}

/* ---- the partner's volume list ---- */

/* Serial-number order of list generations (they wrap). */
static bool gen_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

/* A list of generation @p gen is older than the one taken last, or than
 * the one being received. */
static bool list_stale(const struct proxy *px, uint32_t gen)
{
	if (!gen)
		return false;
	if (px->vols_applied_gen && !gen_before(px->vols_applied_gen, gen))
		return true;
	return px->vols_receiving && gen_before(gen, px->vols_recv_gen);
}

/* A list may span several messages (PX_F_FIRST ... PX_F_LAST), all on one
 * port; it takes effect at the last one, and a bad entry abandons the list
 * being received (the one before stays).
 *
 * The server tells a change on one port and answers each HELLO on its own,
 * so lists reach us over several ports, and a list sent on one may arrive
 * after a newer one sent on another (each port is a separate channel and
 * batch). Each list carries the generation the server took when it read
 * its volumes; one older than a list already taken, or than the one being
 * received, is stale and skipped. Generation 0 (a server that does not
 * number its lists) is always taken. */
void proxy_fw_on_vols(struct pxport *p, const void *msg, size_t len)
{
	struct proxy *px = p->px;
	struct pxm_vols m;
	const char *why;
	bool changed = false, same;
	unsigned listed = 0;
	struct list *pos;

	if (proxy_wire_decode_vols(msg, len, &m, &why) < 0) {
		proxy_log_bad(px, true, "volume list", why);
		return;
	}
	same = m.server_session == px->vols_server_session;
	if (m.flags & PX_F_FIRST) {
		if (!same) {
			/* A new partner instance: its ids mean something else. */
			list_for_each(pos, &px->vols) list_entry(pos, struct pvol, node)->id_valid =
			    false;
			px->vols_server_session = m.server_session;
			px->vols_applied_gen = 0;
		} else if (list_stale(px, m.gen)) {
			goto stale;
		}
		list_for_each(pos, &px->vols) list_entry(pos, struct pvol, node)->new_listed =
		    false;
		px->vols_receiving = true;
		px->vols_recv_gen = m.gen;
		px->vols_recv_port = p->idx;
	} else if (px->vols_receiving && same && m.gen == px->vols_recv_gen &&
		   p->idx == px->vols_recv_port) {
		/* the next part of the list being received */
	} else if (same && m.gen) {
		goto stale; /* part of a list overtaken by a newer one */
	} else {
		proxy_log_bad(px, true, "volume list", "continuation out of order");
		return;
	}
	for (unsigned i = 0; i < m.count; i++) {
		struct px_vol w;
		struct pvol *v;
		if (proxy_wire_vol_get(&m, i, &w, &why) < 0) {
			proxy_log_bad(px, true, "volume list", why);
			px->vols_receiving = false;
			return;
		}
		v = proxy_fw_vol_find(px, w.name);
		if (!v) {
			v = vol_add(px, w.name);
			if (!v) {
				LOG_ERROR("too many partner volumes; %s ignored", w.name);
				continue;
			}
		}
		if (v->new_listed) {
			proxy_log_bad(px, true, "volume list", "a name twice");
			px->vols_receiving = false;
			return;
		}
		if (v->id != w.id || v->info.size != w.size)
			changed = true;
		if (v->restricted != !!(w.flags & PXV_RESTRICTED))
			changed = true;
		v->id = w.id;
		v->restricted = w.flags & PXV_RESTRICTED;
		info_from_wire(px, &v->info, &w);
		v->new_listed = true;
	}
	if (!(m.flags & PX_F_LAST))
		return;
	px->vols_receiving = false;
	px->vols_applied_gen = m.gen;
	if (px->partner_shelf != (m.flags & PX_F_SHELF_MASK) >> PX_F_SHELF_SHIFT) {
		px->partner_shelf = (m.flags & PX_F_SHELF_MASK) >> PX_F_SHELF_SHIFT;
		changed = true;
	}
	list_for_each(pos, &px->vols)
	{
		struct pvol *v = list_entry(pos, struct pvol, node);
		if (v->listed != v->new_listed)
			changed = true;
		v->listed = v->new_listed;
		v->id_valid = v->listed;
		listed += v->listed;
	}
	if (changed)
		LOG_INFO("partner %s serves %u volume%s through the proxy port", px->partner,
			 listed, listed == 1 ? "" : "s");
	if (p->fstate == FP_HELLO)
		p->fstate = FP_READY;
	if (changed && px->vols_changed)
		px->vols_changed(px->vols_changed_arg);
	proxy_fw_pump(px);
	return;

stale:
	/* Our list is newer and from the same instance: the port has what it
	 * waited for. */
	LOG_DEBUG("partner %s: a volume list of generation %u skipped (have %u)", px->partner,
		  m.gen, px->vols_applied_gen);
	if ((m.flags & PX_F_LAST) && p->fstate == FP_HELLO) {
		p->fstate = FP_READY;
		proxy_fw_pump(px);
	}
}

/* ---- local ios (takeover route) ---- */

static void local_done(struct nbd_io *io, int result)
{
	struct lio *l = container_of(io, struct lio, io);
	struct pvol *v = l->vol;
	struct proxy *px = v->px;
	struct nbd_io *orig = l->orig;

	orig->n_extents = io->n_extents;
	v->local_inflight--;
	slist_push_head(&px->free_lios, &l->fnode);
	if (result == PROXY_MOVED && !v->local) {
		/* Relocated away from here meanwhile: not executed; forward it
		 * (proxy_route_partner came first) or run it locally again. */
		if (!v->local && v->local_inflight == 0 && v->lhandle) {
			v->lops->close(v->lctx, v->lhandle);
			v->lhandle = NULL;
		}
		px->st.commands--; /* counted again */
		proxy_fw_ops.submit(px, orig);
		return;
	}
	if (result == PROXY_MOVED)
		result = -EIO; /* still routed here: the route is wrong */
	if (result < 0)
		px->st.errors++;
	/* Given back while this ran: the last one closes the local handle. */
	if (!v->local && v->local_inflight == 0 && v->lhandle) {
		v->lops->close(v->lctx, v->lhandle);
		v->lhandle = NULL;
	}
	nbd_io_done(orig, result);
}

void proxy_fw_local_submit(struct proxy *px, struct pvol *v, struct nbd_io *nio)
{
	struct slist_node *n = slist_pop_head(&px->free_lios);
	struct lio *l = n ? slist_entry(n, struct lio, fnode) : malloc(sizeof(*l));

	if (!l) {
		px->st.errors++;
		nbd_io_done(nio, -ENOMEM);
		return;
	}
	memset(l, 0, sizeof(*l));
	l->orig = nio;
	l->vol = v;
	l->io.type = nio->type;
	l->io.flags = nio->flags;
	l->io.offset = nio->offset;
	l->io.length = nio->length;
	l->io.buf = nio->buf;
	l->io.extents = nio->extents;
	l->io.max_extents = nio->max_extents;
	l->io.export_handle = v->lhandle;
	l->io.complete = local_done;
	l->io.complete_arg = l;
	v->local_inflight++;
	px->st.local++;
	v->lops->submit(v->lctx, &l->io);
}

/* ---- takeover routes ---- */

int proxy_fw_route_local(struct proxy *px, const char *name, const struct nbd_backend_ops *ops,
			 void *ctx)
{
	struct pvol *v = proxy_fw_vol_find(px, name);
	struct nbd_export_info info;
	struct list *pos, *tmp;
	void *h;
	int rc;

	if (!ops || !proxy_wire_name_ok(name, PX_NAME_MAX))
		return -EINVAL;
	if (v && (v->local || v->lhandle))
		return -EEXIST;
	rc = ops->open(ctx, name, &h, &info);
	if (rc < 0) {
		LOG_ERROR("volume %s: cannot serve it locally: %s", name, strerror(-rc));
		return rc;
	}
	if (!v) {
		v = vol_add(px, name);
		if (!v) {
			ops->close(ctx, h);
			return -ENOMEM;
		}
	}
	v->lops = ops;
	v->lctx = ctx;
	v->lhandle = h;
	v->linfo = info;
	v->local = true;
	LOG_INFO("volume %s: proxy port serves it locally now", name);
	/* Commands waiting for the partner go local; what was forwarded is
	 * done again here (never acknowledged, so doing it again is safe). */
	list_for_each_safe(pos, tmp, &px->cmds)
	{
		struct pcmd *c = list_entry(pos, struct pcmd, node);
		struct nbd_io *nio;
		if (c->vol != v)
			continue;
		nio = c->nio;
		proxy_fw_cmd_detach(px, c);
		proxy_fw_cmd_put(px, c);
		proxy_fw_local_submit(px, v, nio);
	}
	proxy_fw_arm_deadline(px);
	proxy_fw_pump(px);
	return 0;
}

int proxy_fw_route_partner(struct proxy *px, const char *name)
{
	struct pvol *v = proxy_fw_vol_find(px, name);

	if (!v || !v->local)
		return -ENOENT;
	v->local = false;
	if (v->local_inflight == 0 && v->lhandle) {
		v->lops->close(v->lctx, v->lhandle);
		v->lhandle = NULL;
	}
	LOG_INFO("volume %s: proxy port forwards it to %s again", name, px->partner);
	return 0;
}

void proxy_fw_vols_free(struct proxy *px)
{
	struct pvol *v;

	while ((v = list_first_entry_or_null(&px->vols, struct pvol, node))) {
		list_del(&v->node);
		if (v->lhandle && v->local_inflight == 0)
			v->lops->close(v->lctx, v->lhandle);
		free(v);
	}
	while (!slist_empty(&px->free_lios))
		free(slist_entry(slist_pop_head(&px->free_lios), struct lio, fnode));
}
