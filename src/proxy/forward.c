/* The forwarding side: the backend of the proxy listener. Each command
 * becomes one or more requests (chunks of at most px->chunk bytes); a
 * request gets its port and sequence number when first sent and keeps them
 * until answered, so that a request sent again after a session loss is
 * recognised by the partner. WRITE data above PX_INLINE_MAX, and READ data
 * above it or under load (PX_READ_INLINE_LOAD in wire.h), lives in the
 * request's slot of this node's port memory: the partner RDMA-reads WRITE
 * data from it and RDMA-writes READ data into it. A command whose deadline
 * passes fails with EIO; its requests already sent stay behind, abandoned,
 * holding their slot and sequence number until the partner answers them
 * (they are sent again with PX_F_NOEXEC after a session loss) or restarts.
 *
 * A reply -EAGAIN means the partner did not execute the request (it does
 * not serve now: fenced). The request gives back its sequence number and
 * slot and is parked; the retry timer puts the parked requests back at the
 * front of the wait queue, in submission order, and they are sent again as
 * new ones. Their command's deadline keeps running. */
#define LOG_MODULE "proxy"
#include "proxy/proxy_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

static void arm_deadline(struct proxy *px);

/* ---- object pools (no allocation per command once warm) ---- */

static struct pcmd *cmd_get(struct proxy *px)
{
	struct pcmd *c = px->free_cmds;

	if (c)
		px->free_cmds = c->next;
	else
		c = malloc(sizeof(*c));
	if (c)
		memset(c, 0, sizeof(*c));
	return c;
}

static void cmd_put(struct proxy *px, struct pcmd *c)
{
	c->next = px->free_cmds;
	px->free_cmds = c;
}

static struct preq *req_get(struct proxy *px)
{
	struct preq *r = px->free_reqs;

	if (r)
		px->free_reqs = r->qnext;
	else
		r = malloc(sizeof(*r));
	if (r) {
		memset(r, 0, sizeof(*r));
		r->slot = -1;
	}
	return r;
}

static void req_put(struct proxy *px, struct preq *r)
{
	r->state = PR_FREE;
	r->qnext = px->free_reqs;
	px->free_reqs = r;
}

/* ---- queues ---- */

static void q_append(struct preq **head, struct preq **tail, struct preq *r)
{
	r->qnext = NULL;
	if (*tail)
		(*tail)->qnext = r;
	else
		*head = r;
	*tail = r;
	r->queued = true;
}

static void q_prepend(struct preq **head, struct preq **tail, struct preq *r)
{
	r->qnext = *head;
	*head = r;
	if (!*tail)
		*tail = r;
	r->queued = true;
}

static struct preq *q_pop(struct preq **head, struct preq **tail)
{
	struct preq *r = *head;

	if (r) {
		*head = r->qnext;
		if (!*head)
			*tail = NULL;
		r->qnext = NULL;
		r->queued = false;
	}
	return r;
}

/* Unlink @p r from a queue (rare: abandoned or answered out of turn). */
static void q_remove(struct preq **head, struct preq **tail, struct preq *r)
{
	struct preq *prev = NULL;

	for (struct preq *q = *head; q; prev = q, q = q->qnext) {
		if (q != r)
			continue;
		if (prev)
			prev->qnext = r->qnext;
		else
			*head = r->qnext;
		if (*tail == r)
			*tail = prev;
		r->qnext = NULL;
		r->queued = false;
		return;
	}
}

static void cmd_unlink(struct proxy *px, struct pcmd *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		px->cmds_head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		px->cmds_tail = c->prev;
	c->prev = c->next = NULL;
}

/* Remove @p r from its command's list of requests. */
static void cmd_drop_req(struct pcmd *c, struct preq *r)
{
	for (struct preq **pp = &c->reqs; *pp; pp = &(*pp)->cnext) {
		if (*pp == r) {
			*pp = r->cnext;
			r->cnext = NULL;
			return;
		}
	}
}

/* ---- volumes ---- */

static struct pvol *pvol_find(struct proxy *px, const char *name)
{
	for (struct pvol *v = px->vols; v; v = v->next)
		if (strcmp(v->name, name) == 0)
			return v;
	return NULL;
}

static struct pvol *pvol_add(struct proxy *px, const char *name)
{
	struct pvol *v;
	unsigned n = 0;

	for (v = px->vols; v; v = v->next)
		n++;
	if (n >= PX_MAX_VOLS)
		return NULL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return NULL;
	snprintf(v->name, sizeof(v->name), "%s", name);
	v->px = px;
	v->next = px->vols;
	px->vols = v;
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

/* ---- sending ---- */

static bool needs_slot(const struct proxy *px, const struct preq *r)
{
	unsigned busy = 0;

	if (r->type == NBD_CMD_WRITE)
		return r->length > PX_INLINE_MAX;
	if (r->type != NBD_CMD_READ)
		return false;
	if (r->length > PX_INLINE_MAX)
		return true;
	for (unsigned i = 0; i < px->n_ports; i++)
		busy += px->ports[i].outstanding;
	return busy >= PX_READ_INLINE_LOAD;
}

static int send_hello(struct pxport *p)
{
	struct proxy *px = p->px;
	struct pxm_hello h = {
	    .version = PX_VERSION,
	    .session = px->session,
	    .data_size = p->half,
	    .chunk = px->chunk,
	};
	size_t len = px_encode_hello(px->scratch, &h);
	int rc = px_send(p, px->scratch, len);

	if (rc == -EAGAIN || rc == -ENOTCONN) {
		p->hello_pending = true;
		return -EAGAIN;
	}
	p->hello_pending = false;
	if (rc == 0)
		p->fstate = FP_HELLO;
	return rc;
}

/* @return 0 (sent), -EAGAIN (try later), or -EIO (cannot ever be sent). */
static int send_req(struct pxport *p, struct preq *r)
{
	struct proxy *px = p->px;
	struct pcmd *c = r->cmd;
	struct pxm_req m;
	const void *data = NULL;
	size_t len;
	int rc;

	memset(&m, 0, sizeof(m));
	if (r->sent_once)
		m.flags |= PX_F_RETRY;
	if (!c) {
		m.flags |= PX_F_NOEXEC;
	} else {
		if (!c->vol->id_valid)
			return -EIO; /* the partner no longer lists it */
		r->vol_id = c->vol->id;
		if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) && r->slot < 0) {
			m.flags |= PX_F_INLINE;
			if (r->type == NBD_CMD_WRITE)
				data = (const uint8_t *)c->nio->buf + r->buf_off;
		}
	}
	m.vol = r->vol_id;
	m.cmd = r->type;
	m.cflags = r->cflags;
	m.session = px->session;
	m.seq = r->seq;
	m.offset = r->offset;
	m.length = r->length;
	m.max_extents = r->max_extents;
	m.data_off = r->slot >= 0 ? (uint64_t)r->slot : 0;
	len = px_encode_req(px->scratch, &m, data);
	rc = px_send(p, px->scratch, len);
	if (rc == -ENOTCONN) {
		p->blocked = true; /* port_down follows */
		rc = -EAGAIN;
	}
	if (rc == -EAGAIN)
		return rc;
	if (rc < 0) {
		LOG_ERROR("cannot send a request to %s: %s", px->partner, strerror(-rc));
		return -EIO;
	}
	r->state = PR_SENT;
	if (r->sent_once)
		px->st.retries++;
	r->sent_once = true;
	return 0;
}

static bool seq_room(struct proxy *px)
{
	while (px->oldest_seq < px->next_seq && !px->outstanding[px->oldest_seq & PX_TABLE_MASK])
		px->oldest_seq++;
	return px->next_seq - px->oldest_seq < PX_TABLE;
}

/* A ready port for @p r, with a slot when it needs one: the port used last
 * while it takes more (requests of one loop turn share a message), else
 * the next one. */
static struct pxport *pick_port(struct proxy *px, const struct preq *r, int64_t *slot)
{
	bool slot_needed = needs_slot(px, r);

	for (unsigned k = 0; k < px->n_ports; k++) {
		struct pxport *p = &px->ports[(px->rr + k) % px->n_ports];
		if (p->fstate != FP_READY || p->blocked)
			continue;
		*slot = -1;
		if (slot_needed) {
			*slot = pmem_alloc(&p->fmem, r->length);
			if (*slot < 0)
				continue;
		}
		px->rr = p->idx;
		return p;
	}
	return NULL;
}

static void cmd_done(struct proxy *px, struct pcmd *c);

/* A request is over: answered (@p res), or given up. */
static void req_finish(struct proxy *px, struct preq *r, int res)
{
	struct pxport *p = r->port;
	struct pcmd *c = r->cmd;

	if (r->queued) {
		if (r->state == PR_WAIT)
			q_remove(&px->waitq_head, &px->waitq_tail, r);
		else if (r->state == PR_PARKED)
			q_remove(&px->parked_head, &px->parked_tail, r);
		else if (p)
			q_remove(&p->rq_head, &p->rq_tail, r);
	}
	if (r->seq) {
		px->outstanding[r->seq & PX_TABLE_MASK] = NULL;
		if (p->outstanding)
			p->outstanding--;
	}
	if (r->slot >= 0)
		pmem_free(&p->fmem, r->slot, r->length);
	if (c) {
		cmd_drop_req(c, r);
		if (res < 0 && !c->error)
			c->error = res;
		if (--c->parts == 0)
			cmd_done(px, c);
	}
	req_put(px, r);
}

void fw_pump(struct proxy *px)
{
	struct preq *r;

	/* Ports coming back: hello first, then what was in flight there. */
	for (unsigned i = 0; i < px->n_ports; i++) {
		struct pxport *p = &px->ports[i];
		if (p->up && px->session_up && p->hello_pending && !p->blocked)
			send_hello(p);
		if (p->fstate != FP_READY)
			continue;
		while (!p->blocked && (r = q_pop(&p->rq_head, &p->rq_tail))) {
			int rc = send_req(p, r);
			if (rc == -EAGAIN) {
				q_prepend(&p->rq_head, &p->rq_tail, r);
				break;
			}
			if (rc < 0)
				req_finish(px, r, rc);
		}
	}
	/* New requests, in order of submission. */
	while ((r = px->waitq_head)) {
		struct pxport *p;
		int64_t slot;
		int rc;

		if (!seq_room(px))
			break;
		p = pick_port(px, r, &slot);
		if (!p)
			break;
		q_pop(&px->waitq_head, &px->waitq_tail);
		r->port = p;
		r->slot = slot;
		r->seq = px->next_seq++;
		px->outstanding[r->seq & PX_TABLE_MASK] = r;
		p->outstanding++;
		r->state = PR_RESEND;
		if (r->type == NBD_CMD_WRITE && slot >= 0)
			memcpy(p->mem + slot, (const uint8_t *)r->cmd->nio->buf + r->buf_off,
			       r->length);
		rc = send_req(p, r);
		if (rc == -EAGAIN)
			q_append(&p->rq_head, &p->rq_tail, r);
		else if (rc < 0)
			req_finish(px, r, rc);
	}
}

/* ---- commands ---- */

static void cmd_done(struct proxy *px, struct pcmd *c)
{
	struct nbd_io *nio = c->nio;
	int err = c->error;

	cmd_unlink(px, c);
	px->st.inflight--;
	if (err) {
		px->st.errors++;
	} else if (nio->type == NBD_CMD_READ) {
		px->st.bytes_read += nio->length;
	} else if (nio->type == NBD_CMD_WRITE) {
		px->st.bytes_written += nio->length;
	}
	cmd_put(px, c);
	arm_deadline(px);
	nbd_io_done(nio, err);
}

/* Take the command off the wire: requests not yet sent are dropped, those
 * sent stay behind abandoned until the partner answers them. The caller
 * completes or re-routes the client's io. */
static void cmd_detach(struct proxy *px, struct pcmd *c)
{
	struct preq *r = c->reqs;

	while (r) {
		struct preq *next = r->cnext;
		r->cnext = NULL;
		if (r->state == PR_WAIT || r->state == PR_PARKED) {
			if (r->state == PR_WAIT)
				q_remove(&px->waitq_head, &px->waitq_tail, r);
			else
				q_remove(&px->parked_head, &px->parked_tail, r);
			req_put(px, r);
		} else {
			r->cmd = NULL;
		}
		r = next;
	}
	c->reqs = NULL;
	cmd_unlink(px, c);
	px->st.inflight--;
}

static void cmd_fail(struct proxy *px, struct pcmd *c, int err)
{
	struct nbd_io *nio = c->nio;

	cmd_detach(px, c);
	px->st.errors++;
	cmd_put(px, c);
	nbd_io_done(nio, err);
}

static void deadline_fire(struct loop_timer *t)
{
	struct proxy *px = t->arg;
	uint64_t now = now_ns();
	unsigned n = 0;
	struct pcmd *c;

	while ((c = px->cmds_head) && c->start_ns + px->timeout_ns <= now) {
		px->st.timeouts++;
		n++;
		cmd_fail(px, c, -EIO);
	}
	if (n && (!px->expired_logged_ns || now - px->expired_logged_ns >= 1000000000ull)) {
		bool ready = false;
		for (unsigned i = 0; i < px->n_ports; i++)
			ready |= px->ports[i].fstate == FP_READY;
		px->expired_logged_ns = now;
		LOG_WARN("%u command%s for %s's volumes failed with EIO after %llu ms: partner %s "
			 "(%llu timeouts so far)",
			 n, n == 1 ? "" : "s", px->partner[0] ? px->partner : "the partner",
			 (unsigned long long)(px->timeout_ns / 1000000),
			 ready ? "not answering" : "unreachable",
			 (unsigned long long)px->st.timeouts);
	}
	arm_deadline(px);
	fw_pump(px); /* sequence numbers may have been freed */
}

static void arm_deadline(struct proxy *px)
{
	struct pcmd *c = px->cmds_head;
	uint64_t now, due;

	if (!c) {
		loop_timer_cancel(px->loop, &px->deadline);
		return;
	}
	due = c->start_ns + px->timeout_ns;
	now = now_ns();
	loop_timer_arm(px->loop, &px->deadline, due > now ? due - now : 0);
}

/* A command for a volume routed to a local backend (takeover) goes there
 * as an io of our own over the same buffers, so that the client's io is
 * left as its server made it. */
struct lio {
	struct nbd_io io;
	struct nbd_io *orig;
	struct pvol *vol;
	struct lio *next;
};

static void local_done(struct nbd_io *io, int result)
{
	struct lio *l = container_of(io, struct lio, io);
	struct pvol *v = l->vol;
	struct proxy *px = v->px;
	struct nbd_io *orig = l->orig;

	orig->n_extents = io->n_extents;
	v->local_inflight--;
	if (result < 0)
		px->st.errors++;
	l->next = px->free_lios;
	px->free_lios = l;
	if (!v->local && v->local_inflight == 0 && v->lhandle) {
		v->lops->close(v->lctx, v->lhandle);
		v->lhandle = NULL;
	}
	nbd_io_done(orig, result);
}

static void local_submit(struct proxy *px, struct pvol *v, struct nbd_io *nio)
{
	struct lio *l = px->free_lios;

	if (l)
		px->free_lios = l->next;
	else
		l = malloc(sizeof(*l));
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

static void fw_submit(void *ctx, struct nbd_io *nio)
{
	struct proxy *px = ctx;
	struct pvol *v = nio->export_handle;
	struct pcmd *c;
	uint64_t step, off = 0;
	unsigned n = 0;

	px->st.commands++;
	if (v->local) {
		local_submit(px, v, nio);
		return;
	}
	c = cmd_get(px);
	if (!c)
		goto nomem;
	c->nio = nio;
	c->vol = v;
	c->start_ns = now_ns();
	step = (nio->type == NBD_CMD_READ || nio->type == NBD_CMD_WRITE) ? px->chunk : UINT32_MAX;
	do {
		struct preq *r = req_get(px);
		if (!r)
			goto nomem_reqs;
		r->cmd = c;
		r->order = ++px->next_order;
		r->offset = nio->offset + off;
		r->length = (uint32_t)MIN(step, nio->length - off);
		r->buf_off = (uint32_t)off;
		r->type = nio->type;
		r->cflags = nio->flags;
		if (nio->type == NBD_CMD_BLOCK_STATUS)
			r->max_extents = MIN(nio->max_extents, PX_MAX_EXTENTS);
		r->state = PR_WAIT;
		r->cnext = c->reqs;
		c->reqs = r;
		n++;
		off += r->length;
	} while (off < nio->length);
	/* Queue in offset order (the list was built in reverse). */
	{
		struct preq *rev = NULL, *r = c->reqs;
		while (r) {
			struct preq *next = r->cnext;
			r->cnext = rev;
			rev = r;
			r = next;
		}
		c->reqs = rev;
		for (r = rev; r; r = r->cnext)
			q_append(&px->waitq_head, &px->waitq_tail, r);
	}
	c->parts = n;
	px->st.requests += n;
	px->st.inflight++;
	c->prev = px->cmds_tail;
	if (px->cmds_tail)
		px->cmds_tail->next = c;
	else
		px->cmds_head = c;
	px->cmds_tail = c;
	if (!loop_timer_armed(&px->deadline))
		arm_deadline(px);
	fw_pump(px);
	return;

nomem_reqs:
	while (c->reqs) {
		struct preq *r = c->reqs;
		c->reqs = r->cnext;
		req_put(px, r);
	}
	cmd_put(px, c);
nomem:
	px->st.errors++;
	nbd_io_done(nio, -ENOMEM);
}

static int fw_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
		   void *arg)
{
	struct proxy *px = ctx;

	for (struct pvol *v = px->vols; v; v = v->next)
		if (v->listed || v->local)
			emit(arg, v->name,
			     v->local ? "partner volume, served locally"
				      : "partner volume via the proxy port");
	return 0;
}

static int fw_open(void *ctx, const char *name, void **handle, struct nbd_export_info *info)
{
	struct proxy *px = ctx;
	struct pvol *v = pvol_find(px, name);

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

const struct nbd_backend_ops px_forward_ops = {
    .list = fw_list,
    .open = fw_open,
    .close = fw_close,
    .submit = fw_submit,
};

/* ---- replies ---- */

/* Check a successful reply's payload against its request and deliver the
 * data; a reply that does not match fails the request with EIO. */
static int take_result(struct proxy *px, struct pxport *p, struct preq *r, const struct pxm_rep *m)
{
	struct nbd_io *nio = r->cmd->nio;

	switch (r->type) {
	case NBD_CMD_READ:
		if (m->length != r->length) {
			px_log_bad(px, true, "reply", "read length mismatch");
			return -EIO;
		}
		if (m->flags & PX_F_INLINE) {
			if (r->slot >= 0) {
				px_log_bad(px, true, "reply", "inline data for a slot");
				return -EIO;
			}
			memcpy((uint8_t *)nio->buf + r->buf_off, m->data, r->length);
		} else {
			if (r->slot < 0) {
				px_log_bad(px, true, "reply", "no data");
				return -EIO;
			}
			memcpy((uint8_t *)nio->buf + r->buf_off, p->mem + r->slot, r->length);
		}
		return 0;
	case NBD_CMD_BLOCK_STATUS: {
		uint64_t sum = 0;
		if (m->count == 0 || m->count > r->max_extents) {
			px_log_bad(px, true, "reply", "extent count out of range");
			return -EIO;
		}
		for (unsigned i = 0; i < m->count; i++) {
			uint64_t len;
			uint32_t fl;
			px_ext_get(m, i, &len, &fl);
			/* The last extent may run past the request (the NBD
			 * server clips it at the end of the volume). */
			if (len == 0 || (fl & ~(uint32_t)(NBD_STATE_HOLE | NBD_STATE_ZERO)) ||
			    sum + len < sum) {
				px_log_bad(px, true, "reply", "bad extent");
				return -EIO;
			}
			sum += len;
			nio->extents[i].length = len;
			nio->extents[i].flags = fl;
		}
		nio->n_extents = m->count;
		return 0;
	}
	default:
		if (m->length || m->count || (m->flags & PX_F_INLINE)) {
			px_log_bad(px, true, "reply", "data on a command without any");
			return -EIO;
		}
		return 0;
	}
}

/* Put the parked requests back on the wait queue: merged by submission
 * order, so that they go ahead of newer ones and keep their own order. */
static void retry_fire(struct loop_timer *t)
{
	struct proxy *px = t->arg;
	struct preq *r, *prev = NULL, *w = px->waitq_head;

	while ((r = q_pop(&px->parked_head, &px->parked_tail))) {
		while (w && w->order < r->order) {
			prev = w;
			w = w->qnext;
		}
		r->state = PR_WAIT;
		r->queued = true;
		r->qnext = w;
		if (prev)
			prev->qnext = r;
		else
			px->waitq_head = r;
		if (!w)
			px->waitq_tail = r;
		prev = r;
	}
	fw_pump(px);
}

/* Park @p r in submission order (refusals usually come in that order). */
static void park(struct proxy *px, struct preq *r)
{
	struct preq *prev = NULL, *q;

	r->state = PR_PARKED;
	if (!px->parked_tail || px->parked_tail->order < r->order) {
		q_append(&px->parked_head, &px->parked_tail, r);
		return;
	}
	for (q = px->parked_head; q && q->order < r->order; q = q->qnext)
		prev = q;
	if (!prev) {
		q_prepend(&px->parked_head, &px->parked_tail, r);
		return;
	}
	r->qnext = q;
	prev->qnext = r;
	r->queued = true;
}

/* The partner refused @p r without executing it (not serving): it becomes
 * a request not yet sent again, parked until the retry timer. */
static void req_refused(struct proxy *px, struct preq *r)
{
	struct pxport *p = r->port;
	uint64_t now = now_ns();

	px->st.refused++;
	if (!px->refused_logged_ns || now - px->refused_logged_ns >= 1000000000ull) {
		px->refused_logged_ns = now;
		LOG_INFO("partner %s does not serve its volumes now: requests wait and are sent "
			 "again (%llu refused so far)",
			 px->partner[0] ? px->partner : "?", (unsigned long long)px->st.refused);
	}
	if (!r->cmd) {
		req_finish(px, r, 0); /* abandoned: not executed, nothing to do */
		return;
	}
	if (r->queued)
		q_remove(&p->rq_head, &p->rq_tail, r);
	px->outstanding[r->seq & PX_TABLE_MASK] = NULL;
	if (p->outstanding)
		p->outstanding--;
	if (r->slot >= 0)
		pmem_free(&p->fmem, r->slot, r->length);
	r->port = NULL;
	r->seq = 0;
	r->slot = -1;
	r->sent_once = false;
	park(px, r);
	if (!loop_timer_armed(&px->retry_timer))
		loop_timer_arm(px->loop, &px->retry_timer, PX_RETRY_NS);
}

void fw_on_rep(struct pxport *p, const void *msg, size_t len)
{
	struct proxy *px = p->px;
	struct pxm_rep m;
	const char *why;
	struct preq *r;
	int res;

	if (px_decode_rep(msg, len, &m, &why) < 0) {
		px_log_bad(px, true, "reply", why);
		return;
	}
	if (m.session != px->session) {
		px_log_bad(px, true, "reply", "not of this session");
		return;
	}
	r = px->outstanding[m.seq & PX_TABLE_MASK];
	if (!r || r->seq != m.seq || r->port != p ||
	    (r->state != PR_SENT && r->state != PR_RESEND)) {
		/* Answered already (a reply sent before a session loss and
		 * again after it), or never asked. */
		LOG_DEBUG("reply for request %llu not in flight: ignored",
			  (unsigned long long)m.seq);
		return;
	}
	res = m.result;
	if (res == -EAGAIN) {
		req_refused(px, r);
		fw_pump(px);
		return;
	}
	if (r->cmd && res == 0)
		res = take_result(px, p, r, &m);
	req_finish(px, r, res);
	fw_pump(px);
}

/* ---- the partner's volume list ---- */

void fw_on_vols(struct pxport *p, const void *msg, size_t len)
{
	struct proxy *px = p->px;
	struct pxm_vols m;
	const char *why;
	bool changed = false;
	unsigned listed = 0;

	if (px_decode_vols(msg, len, &m, &why) < 0) {
		px_log_bad(px, true, "volume list", why);
		return;
	}
	if (m.flags & PX_F_FIRST) {
		if (m.server_session != px->vols_server_session) {
			/* A new partner instance: its ids mean something else. */
			for (struct pvol *v = px->vols; v; v = v->next)
				v->id_valid = false;
			px->vols_server_session = m.server_session;
		}
		for (struct pvol *v = px->vols; v; v = v->next)
			v->new_listed = false;
		px->vols_receiving = true;
	} else if (!px->vols_receiving || m.server_session != px->vols_server_session) {
		px_log_bad(px, true, "volume list", "continuation out of order");
		return;
	}
	for (unsigned i = 0; i < m.count; i++) {
		struct px_vol w;
		struct pvol *v;
		if (px_vol_get(&m, i, &w, &why) < 0) {
			px_log_bad(px, true, "volume list", why);
			px->vols_receiving = false;
			return;
		}
		v = pvol_find(px, w.name);
		if (!v) {
			v = pvol_add(px, w.name);
			if (!v) {
				LOG_ERROR("too many partner volumes; %s ignored", w.name);
				continue;
			}
		}
		if (v->new_listed) {
			px_log_bad(px, true, "volume list", "a name twice");
			px->vols_receiving = false;
			return;
		}
		if (v->id != w.id || v->info.size != w.size)
			changed = true;
		v->id = w.id;
		info_from_wire(px, &v->info, &w);
		v->new_listed = true;
	}
	if (!(m.flags & PX_F_LAST))
		return;
	px->vols_receiving = false;
	for (struct pvol *v = px->vols; v; v = v->next) {
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
	fw_pump(px);
}

/* ---- session events ---- */

void fw_port_up(struct pxport *p)
{
	p->fstate = FP_DOWN;
	p->hello_pending = false;
	if (p->px->session_up)
		send_hello(p);
}

/* Everything sent on the port is in doubt: send it again (same sequence
 * number, same slot) once the port is back. */
void fw_port_down(struct pxport *p)
{
	struct proxy *px = p->px;

	p->fstate = FP_DOWN;
	p->hello_pending = false;
	for (uint64_t s = px->oldest_seq; s < px->next_seq; s++) {
		struct preq *r = px->outstanding[s & PX_TABLE_MASK];
		if (r && r->port == p && r->state == PR_SENT) {
			r->state = PR_RESEND;
			q_append(&p->rq_head, &p->rq_tail, r);
		}
	}
}

void fw_partner_ready(struct proxy *px, uint64_t generation)
{
	if (px->partner_gen && generation != px->partner_gen) {
		/* A new partner process: it knows nothing of our abandoned
		 * requests and its port memory is new; drop them. The others
		 * are sent again and executed there. */
		unsigned dropped = 0;
		for (uint64_t s = px->oldest_seq; s < px->next_seq; s++) {
			struct preq *r = px->outstanding[s & PX_TABLE_MASK];
			if (r && !r->cmd) {
				req_finish(px, r, 0);
				dropped++;
			}
		}
		for (struct pvol *v = px->vols; v; v = v->next)
			v->id_valid = false;
		LOG_INFO("partner %s restarted: requests in flight are sent again%s", px->partner,
			 dropped ? " (abandoned ones dropped)" : "");
	}
	px->partner_gen = generation;
	for (unsigned i = 0; i < px->n_ports; i++) {
		struct pxport *p = &px->ports[i];
		if (p->up && p->fstate == FP_DOWN)
			send_hello(p);
	}
}

/* ---- takeover routes ---- */

int fw_route_local(struct proxy *px, const char *name, const struct nbd_backend_ops *ops, void *ctx)
{
	struct pvol *v = pvol_find(px, name);
	struct nbd_export_info info;
	struct pcmd *c, *next;
	void *h;
	int rc;

	if (!ops || !px_name_ok(name, PX_NAME_MAX))
		return -EINVAL;
	if (v && (v->local || v->lhandle))
		return -EEXIST;
	rc = ops->open(ctx, name, &h, &info);
	if (rc < 0) {
		LOG_ERROR("volume %s: cannot serve it locally: %s", name, strerror(-rc));
		return rc;
	}
	if (!v) {
		v = pvol_add(px, name);
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
	for (c = px->cmds_head; c; c = next) {
		struct nbd_io *nio;
		next = c->next;
		if (c->vol != v)
			continue;
		nio = c->nio;
		cmd_detach(px, c);
		cmd_put(px, c);
		local_submit(px, v, nio);
	}
	arm_deadline(px);
	fw_pump(px);
	return 0;
}

int fw_route_partner(struct proxy *px, const char *name)
{
	struct pvol *v = pvol_find(px, name);

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

/* ---- teardown ---- */

void fw_fail_all(struct proxy *px, int err)
{
	while (px->cmds_head)
		cmd_fail(px, px->cmds_head, err);
	loop_timer_cancel(px->loop, &px->deadline);
	loop_timer_cancel(px->loop, &px->retry_timer);
}

void fw_init(struct proxy *px)
{
	loop_timer_init(&px->deadline, deadline_fire, px);
	loop_timer_init(&px->retry_timer, retry_fire, px);
}

void fw_free(struct proxy *px)
{
	struct preq *r;
	struct pcmd *c;

	fw_fail_all(px, -ESHUTDOWN);
	for (uint64_t s = px->oldest_seq; s < px->next_seq; s++) {
		r = px->outstanding[s & PX_TABLE_MASK];
		if (r) {
			px->outstanding[s & PX_TABLE_MASK] = NULL;
			free(r);
		}
	}
	while ((r = px->free_reqs)) {
		px->free_reqs = r->qnext;
		free(r);
	}
	while ((c = px->free_cmds)) {
		px->free_cmds = c->next;
		free(c);
	}
	while (px->free_lios) {
		struct lio *l = px->free_lios;
		px->free_lios = l->next;
		free(l);
	}
	while (px->vols) {
		struct pvol *v = px->vols;
		px->vols = v->next;
		if (v->lhandle && v->local_inflight == 0)
			v->lops->close(v->lctx, v->lhandle);
		free(v);
	}
}
