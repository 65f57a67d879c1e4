/* The forwarding side's bottom layer: commands (struct pcmd) and their
 * requests (struct preq), from their pools to their completion. A request
 * is on at most one queue at a time (px->waitq, px->parked, its port's
 * resend queue or px->held, through preq.qnode) and holds its sequence
 * number and slot until proxy_fw_req_finish(); a command completes when
 * its last request does. Nothing allocates per command once the pools are
 * warm.
 *
 * A request fw_reply.c made PR_HELD (its READ data is sent to the client
 * straight from its slot) leaves proxy_fw_req_finish() for px->held with
 * its port and slot, until the NBD server's release; at teardown
 * (proxy_fw_held_orphan) it keeps a reference to the port memory instead.
 * A WRITE whose payload the NBD server received into a lent slot (struct
 * pslot, forward.c) sends from it, *borrowed*: the slot is freed when
 * both the server and every request using it gave it back
 * (proxy_fw_lent_put).
 *
 * Calls only down (pmem.c) and out (the NBD io's completion, the loop's
 * timers); the files above it (fw_send.c, fw_reply.c, fw_volumes.c,
 * forward.c) decide when. */
#define LOG_MODULE "proxy"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "proxy/proxy_int.h"

/* ---- object pools ---- */

struct pcmd *proxy_fw_cmd_get(struct proxy *px)
{
	struct slist_node *n = slist_pop_head(&px->free_cmds);
	struct pcmd *c = n ? slist_entry(n, struct pcmd, fnode) : malloc(sizeof(*c));

	if (c) {
		memset(c, 0, sizeof(*c));
		list_init(&c->node);
		list_init(&c->reqs);
	}
	return c;
}

void proxy_fw_cmd_put(struct proxy *px, struct pcmd *c)
{
	slist_push_head(&px->free_cmds, &c->fnode);
}

struct preq *proxy_fw_req_get(struct proxy *px)
{
	struct slist_node *n = slist_pop_head(&px->free_reqs);
	struct preq *r = n ? slist_entry(n, struct preq, fnode) : malloc(sizeof(*r));

	if (r) {
		memset(r, 0, sizeof(*r));
		list_init(&r->cnode);
		list_init(&r->qnode);
		r->slot = -1;
	}
	return r;
}

void proxy_fw_req_put(struct proxy *px, struct preq *r)
{
	r->state = PR_FREE;
	slist_push_head(&px->free_reqs, &r->fnode);
}

/* ---- queues ---- */

void proxy_fw_q_append(struct list *q, struct preq *r)
{
	list_add_tail(q, &r->qnode);
}

struct preq *proxy_fw_q_pop(struct list *q)
{
	struct preq *r = list_first_entry_or_null(q, struct preq, qnode);

	if (r)
		list_del(&r->qnode);
	return r;
}

/* ---- completion ---- */

static void cmd_done(struct proxy *px, struct pcmd *c)
{
	struct nbd_io *nio = c->nio;
	int err = c->error;

	list_del(&c->node);
	px->st.inflight--;
	if (err) {
		px->st.errors++;
	} else if (nio->type == NBD_CMD_READ) {
		px->st.bytes_read += nio->length;
	} else if (nio->type == NBD_CMD_WRITE) {
		px->st.bytes_written += nio->length;
	}
	proxy_fw_cmd_put(px, c);
	proxy_fw_arm_deadline(px);
	nbd_io_done(nio, err);
}

void proxy_fw_req_release(struct proxy *px, struct preq *r)
{
	struct pxport *p = r->port;

	list_del(&r->qnode);
	if (r->seq) {
		px->outstanding[r->seq & PX_TABLE_MASK] = NULL;
		if (p->outstanding)
			p->outstanding--;
		if (r->length <= PX_INLINE_MAX && px->small_outstanding)
			px->small_outstanding--;
	}
	r->seq = 0;
	if (r->state == PR_HELD)
		return; /* port and slot: until slot_release() */
	if (r->borrowed)
		proxy_fw_lent_put(r->lent);
	else if (r->slot >= 0)
		proxy_pmem_free(&p->fmem, r->slot, r->length);
	r->borrowed = false;
	r->port = NULL;
	r->slot = -1;
}

void proxy_fw_req_finish(struct proxy *px, struct preq *r, int res)
{
	struct pcmd *c = r->cmd;

	proxy_fw_req_release(px, r);
	/* Settled before the command completes: the NBD server may release a
	 * held slot inside nbd_io_done() (its connection closed). */
	if (r->state == PR_HELD) {
		r->cmd = NULL;
		list_add_tail(&px->held, &r->qnode);
	} else {
		proxy_fw_req_put(px, r);
	}
	if (c) {
		list_del(&r->cnode);
		if (res < 0 && !c->error)
			c->error = res;
		if (--c->parts == 0)
			cmd_done(px, c);
	}
}

bool proxy_fw_hold_room(const struct pxport *p, size_t bytes)
{
	return p->held + proxy_pmem_units(bytes) <= p->fmem.units / 2;
}

/* Free @p s once neither the NBD server nor a request holds it. */
static void lent_free_idle(struct pslot *s)
{
	if (s->users || s->lent)
		return;
	if (s->port) {
		proxy_pmem_free(&s->port->fmem, s->off, s->length);
		s->port->held -= proxy_pmem_units(s->length);
	} else {
		proxy_pmem_maps_put(s->maps);
	}
	list_del(&s->node);
	free(s);
}

void proxy_fw_lent_put(struct pslot *s)
{
	s->users--;
	lent_free_idle(s);
}

void proxy_fw_lent_return(struct pslot *s)
{
	s->lent = false;
	lent_free_idle(s);
}

void proxy_fw_held_orphan(struct proxy *px)
{
	struct list *pos, *tmp;
	struct preq *r;

	while ((r = proxy_fw_q_pop(&px->held))) {
		r->port = NULL;
		r->maps = px->maps;
		px->maps->refs++;
	}
	/* The requests go with the proxy: only the server's hold is left. */
	list_for_each_safe(pos, tmp, &px->lent)
	{
		struct pslot *s = list_entry(pos, struct pslot, node);
		list_del(&s->node);
		s->users = 0;
		if (!s->lent) {
			free(s);
			continue;
		}
		s->port = NULL;
		s->maps = px->maps;
		px->maps->refs++;
	}
}

/* Requests not yet sent are dropped; those sent stay behind abandoned
 * (cmd NULL) until the partner answers them, holding their sequence number
 * so that it is never reused for something else while in doubt. The caller
 * completes or re-routes the client's io. */
void proxy_fw_cmd_detach(struct proxy *px, struct pcmd *c)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &c->reqs)
	{
		struct preq *r = list_entry(pos, struct preq, cnode);
		list_del(&r->cnode);
		if (r->state == PR_WAIT || r->state == PR_PARKED) {
			list_del(&r->qnode);
			proxy_fw_req_put(px, r);
		} else {
			r->cmd = NULL;
			if (!r->borrowed)
				r->lent = NULL; /* the server may release it now */
		}
	}
	list_del(&c->node);
	px->st.inflight--;
}

void proxy_fw_cmd_fail(struct proxy *px, struct pcmd *c, int err)
{
	struct nbd_io *nio = c->nio;

	proxy_fw_cmd_detach(px, c);
	px->st.errors++;
	proxy_fw_cmd_put(px, c);
	nbd_io_done(nio, err);
}

/* Commands are in submission order, so the oldest one's deadline is the
 * next to pass: one timer for all. */
void proxy_fw_arm_deadline(struct proxy *px)
{
	struct pcmd *c = list_first_entry_or_null(&px->cmds, struct pcmd, node);
	uint64_t now, due;

	if (!c) {
		loop_timer_cancel(px->loop, &px->deadline);
		return;
	}
	due = c->start_ns + px->timeout_ns;
	now = loop_now_ns();
	loop_timer_arm(px->loop, &px->deadline, due > now ? due - now : 0);
}
