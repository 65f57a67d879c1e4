/* The forwarding side's top: the backend of the proxy listener (list,
 * open, close, submit, and write_buf: a one-chunk WRITE's payload received
 * straight into a lent slot), the command deadline, and the side's set-up
 * and teardown. Each command becomes one or more requests (chunks of at most
 * px->chunk bytes) queued in submission order; fw_send.c sends them,
 * fw_reply.c takes their answers. A command whose deadline passes fails
 * with EIO; its requests already sent stay behind, abandoned, holding
 * their slot and sequence number until the partner answers them (they are
 * sent again with PX_F_NOEXEC after a session loss) or restarts.
 *
 * Calls the other forwarding files (fw_volumes.c, fw_send.c,
 * fw_request.c); nothing of the proxy calls it but proxy.c. */
#define LOG_MODULE "proxy"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/proxy_int.h"

static void deadline_fire(struct loop_timer *t)
{
	struct proxy *px = t->arg;
	uint64_t now = loop_now_ns();
	unsigned n = 0;
	struct pcmd *c;

	while ((c = list_first_entry_or_null(&px->cmds, struct pcmd, node)) &&
	       c->start_ns + px->timeout_ns <= now) {
		px->st.timeouts++;
		n++;
		proxy_fw_cmd_fail(px, c, -EIO);
	}
	if (n && (!px->expired_logged_ns || now - px->expired_logged_ns >= NS_PER_S)) {
		bool ready = false;
		for (unsigned i = 0; i < px->n_ports; i++)
			ready |= px->ports[i].fstate == FP_READY;
		px->expired_logged_ns = now;
		LOG_WARN("%u command%s for %s's volumes failed with EIO after %llu ms: partner %s "
			 "(%llu timeouts so far)",
			 n, n == 1 ? "" : "s", px->partner[0] ? px->partner : "the partner",
			 (unsigned long long)(px->timeout_ns / NS_PER_MS),
			 ready ? "not answering" : "unreachable",
			 (unsigned long long)px->st.timeouts);
	}
	proxy_fw_arm_deadline(px);
	proxy_fw_pump(px); /* sequence numbers may have been freed */
}

/* ---- the backend of the proxy listener ---- */

/* nbd_io.release of a WRITE whose payload came into a lent slot: the NBD
 * server is done with it (its reply left, or its connection closed). */
static void lent_release(struct nbd_io *nio)
{
	struct pslot *s = nio->release_arg;
	struct proxy *px = s->port ? s->port->px : NULL;

	proxy_fw_lent_return(s);
	if (px && !list_empty(&px->waitq))
		proxy_fw_pump(px); /* it may have waited for a slot */
}

/* write_buf: a WRITE's payload straight into a slot, saving the copy from
 * the NBD buffer. Only a one-chunk WRITE that would take a slot anyway,
 * on a port ready now, and only while the slots held this way and for
 * replies (p->held) stay under half of the port's forwarder memory: a
 * client that sends a header and never its payload holds its slot until
 * its connection times out, and must not starve the others meanwhile.
 * Else the server's own buffer, as before. */
static void *fw_write_buf(void *ctx, struct nbd_io *nio)
{
	struct proxy *px = ctx;
	struct pvol *v = nio->export_handle;
	unsigned units = proxy_pmem_units(nio->length);
	struct pslot *s;

	if (v->local || nio->complete || nio->length <= PX_INLINE_MAX || nio->length > px->chunk)
		return NULL;
	for (unsigned k = 0; k < px->n_ports; k++) {
		struct pxport *p = &px->ports[(px->rr + k) % px->n_ports];
		int64_t off;
		if (p->fstate != FP_READY || p->blocked || !proxy_fw_hold_room(p, nio->length))
			continue;
		off = proxy_pmem_alloc(&p->fmem, nio->length);
		if (off < 0)
			continue;
		s = calloc(1, sizeof(*s));
		if (!s) {
			proxy_pmem_free(&p->fmem, off, nio->length);
			return NULL;
		}
		s->port = p;
		s->off = off;
		s->length = (uint32_t)nio->length;
		s->lent = true;
		p->held += units;
		list_add_tail(&px->lent, &s->node);
		nio->release = lent_release;
		nio->release_arg = s;
		return p->mem + off;
	}
	return NULL;
}

static void fw_submit(void *ctx, struct nbd_io *nio)
{
	struct proxy *px = ctx;
	struct pvol *v = nio->export_handle;
	struct list *pos;
	struct pcmd *c;
	uint64_t step, off = 0;
	unsigned n = 0;

	px->st.commands++;
	if (v->local) {
		proxy_fw_local_submit(px, v, nio);
		return;
	}
	c = proxy_fw_cmd_get(px);
	if (!c)
		goto nomem;
	c->nio = nio;
	c->vol = v;
	c->start_ns = loop_now_ns();
	step = (nio->type == NBD_CMD_READ || nio->type == NBD_CMD_WRITE) ? px->chunk : UINT32_MAX;
	do {
		struct preq *r = proxy_fw_req_get(px);
		if (!r)
			goto nomem_reqs;
		r->cmd = c;
		r->order = ++px->next_order;
		r->offset = nio->offset + off;
		r->length = (uint32_t)MIN(step, nio->length - off);
		r->buf_off = (uint32_t)off;
		r->type = nio->type;
		r->cflags = nio->flags;
		if (nio->release == lent_release)
			r->lent = nio->release_arg; /* one chunk: fw_write_buf */
		if (nio->type == NBD_CMD_BLOCK_STATUS)
			r->max_extents = MIN(nio->max_extents, PX_MAX_EXTENTS);
		r->state = PR_WAIT;
		list_add_tail(&c->reqs, &r->cnode);
		n++;
		off += r->length;
	} while (off < nio->length);
	/* Queued only once all exist, in offset order. */
	list_for_each(pos, &c->reqs)
	    proxy_fw_q_append(&px->waitq, list_entry(pos, struct preq, cnode));
	c->parts = n;
	px->st.requests += n;
	px->st.inflight++;
	list_add_tail(&px->cmds, &c->node);
	if (!loop_timer_armed(&px->deadline))
		proxy_fw_arm_deadline(px);
	proxy_fw_pump(px);
	return;

nomem_reqs:
	while (!list_empty(&c->reqs)) {
		struct preq *r = list_entry(c->reqs.next, struct preq, cnode);
		list_del(&r->cnode);
		proxy_fw_req_put(px, r);
	}
	proxy_fw_cmd_put(px, c);
nomem:
	px->st.errors++;
	nbd_io_done(nio, -ENOMEM);
}

static int fw_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
		   void *arg)
{
	struct proxy *px = ctx;
	struct list *pos;

	list_for_each(pos, &px->vols)
	{
		struct pvol *v = list_entry(pos, struct pvol, node);
		if (v->listed || v->local)
			emit(arg, v->name,
			     v->local ? "partner volume, served locally"
				      : "partner volume via the proxy port");
	}
	return 0;
}

static int fw_open(void *ctx, const char *name, void **handle, struct nbd_export_info *info)
{
	struct proxy *px = ctx;
	struct pvol *v = proxy_fw_vol_find(px, name);

	if (!v || (!v->listed && !v->local))
		return -ENOENT;
	*info = v->local ? v->linfo : v->info;
	v->opens++;
	*handle = v;
	return 0;
}

static void fw_close(void *ctx, void *handle)
{
	struct pvol *v = handle;

	(void)ctx;
	if (v->opens)
		v->opens--;
}

/* Per-volume allow lists on the proxy port: a volume served here by a
 * local backend (takeover route) asks that backend, which has the list;
 * a partner volume with a list is refused (its identities stay on the
 * partner: fail closed). */
static bool fw_allowed(void *ctx, const char *name, const char *const *ids, unsigned n_ids)
{
	struct pvol *v = proxy_fw_vol_find(ctx, name);

	if (!v)
		return true;
	if (v->local)
		return !v->lops->allowed || v->lops->allowed(v->lctx, name, ids, n_ids);
	return !v->restricted;
}

const struct nbd_backend_ops proxy_fw_ops = {
    .list = fw_list,
    .open = fw_open,
    .close = fw_close,
    .submit = fw_submit,
    .allowed = fw_allowed,
    .write_buf = fw_write_buf,
};

/* ---- set-up and teardown ---- */

void proxy_fw_init(struct proxy *px)
{
	list_init(&px->vols);
	list_init(&px->cmds);
	list_init(&px->waitq);
	list_init(&px->parked);
	list_init(&px->held);
	list_init(&px->lent);
	slist_init(&px->free_cmds);
	slist_init(&px->free_reqs);
	slist_init(&px->free_lios);
	loop_timer_init(&px->deadline, deadline_fire, px);
	loop_timer_init(&px->retry_timer, proxy_fw_retry_fire, px);
}

void proxy_fw_fail_all(struct proxy *px, int err)
{
	struct pcmd *c;

	while ((c = list_first_entry_or_null(&px->cmds, struct pcmd, node)))
		proxy_fw_cmd_fail(px, c, err);
	loop_timer_cancel(px->loop, &px->deadline);
	loop_timer_cancel(px->loop, &px->retry_timer);
}

void proxy_fw_free(struct proxy *px)
{
	proxy_fw_fail_all(px, -ESHUTDOWN);
	for (uint64_t s = px->oldest_seq; s < px->next_seq; s++) {
		struct preq *r = px->outstanding[s & PX_TABLE_MASK];
		if (r) {
			px->outstanding[s & PX_TABLE_MASK] = NULL;
			free(r);
		}
	}
	/* Replies still sent from slots: they keep the port memory alive. */
	proxy_fw_held_orphan(px);
	while (!slist_empty(&px->free_reqs))
		free(slist_entry(slist_pop_head(&px->free_reqs), struct preq, fnode));
	while (!slist_empty(&px->free_cmds))
		free(slist_entry(slist_pop_head(&px->free_cmds), struct pcmd, fnode));
	proxy_fw_vols_free(px);
}
