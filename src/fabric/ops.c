/* Operations of a link: the slots that carry them, the send and receive
 * buffers of messages, their posting and the backlog, and the public
 * fab_read / fab_write / fab_writedata / fab_send.
 *
 * Rule: every accepted operation has one slot, and the slot, not the
 * caller's fab_op, is libfabric's context. A slot lives on exactly one
 * list: free, backlog (not posted yet, -FI_EAGAIN), posted, or failed
 * (post error, completed from the timer); each list keeps the order of
 * acceptance, and the backlog is posted from its head only, so the order
 * of posting is the order of acceptance. Pools grow in chunks and never
 * shrink: no allocation on the steady path.
 */
#define LOG_MODULE "fabric"
#include "fabric/fabric_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "common/log.h"

/* ---- slot lists and pools ---- */

static void slot_list_push(struct fab_slot_list *l, struct fab_slot *s)
{
	list_add_tail(&l->head, &s->node);
	l->n++;
}

static void slot_list_del(struct fab_slot_list *l, struct fab_slot *s)
{
	list_del(&s->node);
	l->n--;
}

struct fab_slot *fab_slot_list_first(const struct fab_slot_list *l)
{
	return list_first_entry_or_null(&l->head, struct fab_slot, node);
}

static void slot_list_init(struct fab_slot_list *l)
{
	list_init(&l->head);
	l->n = 0;
}

static struct fab_slot_list *list_of(struct fab_link *link, struct fab_slot *s)
{
	switch (s->state) {
	case FAB_ST_FREE:
		return &link->ops.free;
	case FAB_ST_BACKLOG:
		return &link->ops.backlog;
	case FAB_ST_POSTED:
		return &link->ops.posted;
	default:
		return &link->ops.failed;
	}
}

static void slot_move(struct fab_link *link, struct fab_slot *s, enum fab_slot_state to)
{
	slot_list_del(list_of(link, s), s);
	s->state = (uint8_t)to;
	slot_list_push(list_of(link, s), s);
}

static int slot_pool_grow(struct fab_link *link)
{
	struct fab_slot_chunk *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	slist_push_head(&link->ops.chunks, &c->node);
	for (int i = 0; i < FAB_SLOTS_PER_CHUNK; i++) {
		c->slots[i].h.kind = FAB_KIND_TX;
		c->slots[i].state = FAB_ST_FREE;
		slot_list_push(&link->ops.free, &c->slots[i]);
	}
	return 0;
}

static struct fab_slot *slot_get(struct fab_link *link)
{
	struct fab_slot *s;

	if (!link->ops.free.n && slot_pool_grow(link) < 0)
		return NULL;
	s = fab_slot_list_first(&link->ops.free);
	slot_list_del(&link->ops.free, s);
	s->gen = ++link->ops.gen;
	s->status = 0;
	s->sbuf = NULL;
	s->desc = NULL;
	return s;
}

static void sbuf_put(struct fab_link *link, struct fab_sbuf *b)
{
	slist_push_head(&link->msg.sbuf_free, &b->node);
}

static void slot_put(struct fab_link *link, struct fab_slot *s)
{
	slot_list_del(list_of(link, s), s);
	if (s->sbuf) {
		sbuf_put(link, s->sbuf);
		s->sbuf = NULL;
	}
	s->op = NULL;
	s->state = FAB_ST_FREE;
	slot_list_push(&link->ops.free, s);
}

static int sbuf_pool_grow(struct fab_link *link)
{
	size_t bytes = link->msg.sbuf_stride * FAB_SBUFS_PER_CHUNK;
	struct fab_sbuf_chunk *c = aligned_alloc(64, (sizeof(*c) + bytes + 63) & ~(size_t)63);
	int rc;

	if (!c)
		return -ENOMEM;
	rc = fab_mr_reg_internal(link, c->mem, bytes, &c->mr);
	if (rc) {
		free(c);
		return rc;
	}
	slist_push_head(&link->msg.sbuf_chunks, &c->node);
	for (int i = 0; i < FAB_SBUFS_PER_CHUNK; i++) {
		struct fab_sbuf *b =
		    (struct fab_sbuf *)(c->mem + (size_t)i * link->msg.sbuf_stride);
		b->desc = c->mr ? fi_mr_desc(c->mr) : NULL;
		sbuf_put(link, b);
	}
	return 0;
}

void fab_ops_init(struct fab_link *link)
{
	slist_init(&link->ops.chunks);
	slot_list_init(&link->ops.free);
	slot_list_init(&link->ops.backlog);
	slot_list_init(&link->ops.posted);
	slot_list_init(&link->ops.failed);
	slist_init(&link->msg.sbuf_free);
	slist_init(&link->msg.sbuf_chunks);
}

int fab_msgs_open(struct fab_link *link)
{
	struct fab_msgs *m = &link->msg;
	int rc;

	m->rx = calloc(m->rx_depth, sizeof(*m->rx));
	m->rx_mem = aligned_alloc(4096, (m->max_msg * m->rx_depth + 4095) & ~4095ul);
	if (!m->rx || !m->rx_mem)
		return -ENOMEM;
	rc = fab_mr_reg_internal(link, m->rx_mem, m->max_msg * m->rx_depth, &m->rx_mr);
	if (rc)
		return rc;
	for (unsigned i = 0; i < m->rx_depth; i++) {
		m->rx[i].h.kind = FAB_KIND_RX;
		m->rx[i].buf = m->rx_mem + (size_t)i * m->max_msg;
		m->rx[i].pending = true; /* posted when the endpoint is installed */
	}
	m->rx_pending = m->rx_depth;
	return 0;
}

void fab_msgs_close_regions(struct fab_link *link)
{
	struct slist_node *n;

	fab_close_fid(link->name, link->msg.rx_mr ? &link->msg.rx_mr->fid : NULL, "receive region");
	link->msg.rx_mr = NULL;
	while ((n = slist_pop_head(&link->msg.sbuf_chunks))) {
		struct fab_sbuf_chunk *c = slist_entry(n, struct fab_sbuf_chunk, node);
		fab_close_fid(link->name, c->mr ? &c->mr->fid : NULL, "send region");
		free(c);
	}
	slist_init(&link->msg.sbuf_free);
}

void fab_ops_free(struct fab_link *link)
{
	struct slist_node *n;

	while ((n = slist_pop_head(&link->ops.chunks)))
		free(slist_entry(n, struct fab_slot_chunk, node));
	slot_list_init(&link->ops.free);
	free(link->msg.rx);
	link->msg.rx = NULL;
	link->msg.rx_depth = 0;
	free(link->msg.rx_mem);
	link->msg.rx_mem = NULL;
}

/* ---- posting ---- */

static ssize_t post_now(struct fab_link *link, struct fab_slot *s, const char **what)
{
	struct fab_ep_res *r = &link->ep.res;
	struct iovec iov;
	struct fi_rma_iov riov;
	struct fi_msg_rma msg;
	uint64_t fl;

	switch (s->type) {
	case FAB_OP_READ:
		*what = "fi_read";
		return fi_read(r->ep, s->local, s->len, s->desc, r->peer, s->raddr, s->key,
			       &s->h.fictx);
	case FAB_OP_SEND:
		*what = "fi_send";
		return fi_send(r->ep, s->sbuf->data, s->len, s->sbuf->desc, r->peer, &s->h.fictx);
	case FAB_OP_WRITE:
		if (!(s->flags & FAB_DELIVERY_COMPLETE)) {
			*what = "fi_write";
			return fi_write(r->ep, s->local, s->len, s->desc, r->peer, s->raddr, s->key,
					&s->h.fictx);
		}
		break;
	default:
		break;
	}
	*what = "fi_writemsg";
	iov.iov_base = s->local;
	iov.iov_len = s->len;
	riov.addr = s->raddr;
	riov.len = s->len;
	riov.key = s->key;
	msg.msg_iov = &iov;
	msg.desc = &s->desc;
	msg.iov_count = 1;
	msg.addr = r->peer;
	msg.rma_iov = &riov;
	msg.rma_iov_count = 1;
	msg.context = &s->h.fictx;
	msg.data = s->imm;
	fl = FI_COMPLETION;
	if (s->flags & FAB_DELIVERY_COMPLETE)
		fl |= FI_DELIVERY_COMPLETE;
	if (s->type == FAB_OP_WRITEDATA)
		fl |= FI_REMOTE_CQ_DATA;
	return fi_writemsg(r->ep, &msg, fl);
}

/* Post one operation, timing the call (a post may connect: rxm opens the
 * peer's connection from inside the first post). */
static ssize_t post(struct fab_link *link, struct fab_slot *s)
{
	const char *what = "post";
	struct fab_tstart t0;
	ssize_t rc;

	fab_tstart(&t0);
	rc = post_now(link, s, &what);
	fab_call_timed(link, what, &t0);
	return rc;
}

/* Errors of a post that leave the provider's connection state sound: the
 * connect attempt failed cleanly (rxm retries it at the next post), or the
 * request itself was refused. Anything else may have left a dead
 * connection behind: reset. */
static bool post_error_needs_reset(ssize_t rc)
{
	switch ((int)-rc) {
	case ENETUNREACH:
	case EHOSTUNREACH:
	case EINVAL:
	case EMSGSIZE:
	case ENOMEM:
		return false;
	default:
		return true;
	}
}

static void post_failed(struct fab_link *link, struct fab_slot *s, ssize_t rc)
{
	bool reset = post_error_needs_reset(rc);

	if (fab_log_allowed(&link->rl_err))
		LOG_WARN("%s: posting an operation: %s%s", link->name, fi_strerror((int)-rc),
			 reset ? ": resetting the endpoint" : "");
	s->status = fab_errno((int)rc);
	slot_move(link, s, FAB_ST_FAILED);
	if (reset)
		link->ep.reset_pending = true;
	fab_schedule(link, 0);
}

bool fab_flush_backlog(struct fab_link *link)
{
	struct fab_slot *s;

	while ((s = fab_slot_list_first(&link->ops.backlog)) && link->ep.ready &&
	       !link->ep.reset_pending && !link->closing) {
		ssize_t rc = post(link, s);

		if (rc == -FI_EAGAIN)
			return false;
		link->ops.need_progress = true;
		if (rc == 0)
			slot_move(link, s, FAB_ST_POSTED);
		else
			post_failed(link, s, rc);
	}
	return !link->ops.backlog.n;
}

static void rx_mark_pending(struct fab_link *link, struct fab_rx_slot *r)
{
	if (!r->pending) {
		r->pending = true;
		link->msg.rx_pending++;
	}
}

void fab_repost_rx(struct fab_link *link, struct fab_rx_slot *r)
{
	struct fab_tstart t0;
	ssize_t rc;

	if (link->closing)
		return;
	if (!link->ep.ready) {
		rx_mark_pending(link, r);
		return; /* posted when the next endpoint is installed */
	}
	fab_tstart(&t0);
	rc = fi_recv(link->ep.res.ep, r->buf, link->msg.max_msg,
		     link->msg.rx_mr ? fi_mr_desc(link->msg.rx_mr) : NULL, FI_ADDR_UNSPEC,
		     &r->h.fictx);
	fab_call_timed(link, "fi_recv", &t0);
	if (rc == 0) {
		if (r->pending) {
			r->pending = false;
			link->msg.rx_pending--;
		}
		return;
	}
	if (rc != -FI_EAGAIN && fab_log_allowed(&link->rl_err))
		LOG_ERROR("%s: posting a receive buffer: %s", link->name, fi_strerror((int)-rc));
	rx_mark_pending(link, r);
	fab_schedule(link, link->ops.retry_ns);
}

/* ---- accepting operations ---- */

/* Accept an operation filled in @p s. It joins the backlog and is posted at
 * once when it is the head: the backlog keeps the order of posting. */
static void submit(struct fab_link *link, struct fab_slot *s, struct fab_op *op)
{
	s->op = op;
	s->accepted_ns = loop_now_ns();
	op->link = link;
	op->gen = s->gen;
	op->next = NULL;
	link->st.inflight++;
	link->st.inflight_bytes += s->len;
	s->state = FAB_ST_BACKLOG;
	slot_list_push(&link->ops.backlog, s);
	if (s != fab_slot_list_first(&link->ops.backlog) || !link->ep.ready ||
	    link->ep.reset_pending)
		return; /* the timer is already retrying, or an endpoint is coming */
	bool was = link->ops.need_progress;
	if (fab_flush_backlog(link) && link->ep.res.wait_fd >= 0 && !link->ep.poll_mode) {
		/* Posted: the provider sent what it could, and the CQ's wait
		 * fd wakes the loop for the rest and for the completion. No
		 * extra loop turn for progress (issue 11: a turn per post). */
		link->ops.need_progress = was;
		if (was)
			fab_schedule(link, 0);
		return;
	}
	link->ops.need_progress = true; /* completions may free credits */
	fab_schedule(link, 0);
}

/* Common checks of an RMA: the remote range [offset, offset+len) must lie
 * in rem->size without overflow, and FI_MR_LOCAL needs a local region. */
static int check_rma(struct fab_link *link, const void *local, size_t len,
		     const struct fab_remote *rem, uint64_t offset, void **desc)
{
	*desc = NULL;
	if (!link || !rem || (!local && len))
		return -EINVAL;
	if (link->closing)
		return -ESHUTDOWN;
	if (offset > rem->size || len > rem->size - offset) {
		LOG_DEBUG("%s: remote range %" PRIu64 "+%zu outside region of %" PRIu64 " bytes",
			  link->name, offset, len, rem->size);
		return -EINVAL;
	}
	if (len > link->dom.max_rma)
		return -EMSGSIZE;
	if (link->dom.mr_local && len)
		return fab_mr_find_local(link, local, len, desc);
	return 0;
}

static int rma(struct fab_link *link, enum fab_op_type type, void *local, size_t len,
	       const struct fab_remote *rem, uint64_t offset, uint64_t imm, unsigned flags,
	       struct fab_op *op)
{
	void *desc;
	struct fab_slot *s;
	int rc;

	if (!op || !op->done)
		return -EINVAL;
	rc = check_rma(link, local, len, rem, offset, &desc);
	if (rc)
		return rc;
	s = slot_get(link);
	if (!s)
		return -ENOMEM;
	s->type = (uint8_t)type;
	s->flags = flags;
	s->local = local;
	s->len = len;
	s->desc = desc;
	s->raddr = offset;
	s->key = rem->key;
	s->imm = imm;
	submit(link, s, op);
	return 0;
}

int fab_read(struct fab_link *link, void *local, size_t len, const struct fab_remote *rem,
	     uint64_t offset, struct fab_op *op)
{
	return rma(link, FAB_OP_READ, local, len, rem, offset, 0, 0, op);
}

int fab_write(struct fab_link *link, const void *local, size_t len, const struct fab_remote *rem,
	      uint64_t offset, unsigned flags, struct fab_op *op)
{
	return rma(link, FAB_OP_WRITE, (void *)local, len, rem, offset, 0, flags, op);
}

int fab_writedata(struct fab_link *link, const void *local, size_t len,
		  const struct fab_remote *rem, uint64_t offset, uint64_t imm, unsigned flags,
		  struct fab_op *op)
{
	if (link && link->dom.cq_data_size < 8 && (imm >> (8 * link->dom.cq_data_size)) != 0)
		return -EOPNOTSUPP;
	return rma(link, FAB_OP_WRITEDATA, (void *)local, len, rem, offset, imm, flags, op);
}

int fab_send(struct fab_link *link, const void *msg, size_t len, struct fab_op *op)
{
	struct fab_slot *s;
	struct fab_sbuf *b;

	if (!link || !op || !op->done || (!msg && len))
		return -EINVAL;
	if (link->closing)
		return -ESHUTDOWN;
	if (len > link->msg.max_msg)
		return -EMSGSIZE;
	if (slist_empty(&link->msg.sbuf_free) && sbuf_pool_grow(link) < 0)
		return -ENOMEM;
	s = slot_get(link);
	if (!s)
		return -ENOMEM;
	b = slist_entry(slist_pop_head(&link->msg.sbuf_free), struct fab_sbuf, node);
	if (len)
		memcpy(b->data, msg, len);
	s->type = FAB_OP_SEND;
	s->flags = 0;
	s->sbuf = b;
	s->local = b->data;
	s->len = len;
	submit(link, s, op);
	return 0;
}

/* ---- completing operations ---- */

static void stats_done(struct fab_link *link, struct fab_slot *s, int status)
{
	link->st.inflight--;
	link->st.inflight_bytes -= s->len;
	if (status == 0) {
		link->st.ops++;
		link->st.bytes += s->len;
	} else {
		link->st.errors++;
	}
}

void fab_slot_complete(struct fab_link *link, struct fab_slot *s, int status)
{
	struct fab_op *op;

	link->ops.reaped++;
	op = s->op;
	stats_done(link, s, status);
	if (op && op->gen != s->gen) {
		/* The caller reused an op still in flight: never call it twice. */
		LOG_ERROR("%s: operation reused while in flight; completion dropped", link->name);
		op = NULL;
	}
	slot_put(link, s);
	if (op)
		op->done(op, status);
}

struct fab_op *fab_detach_all(struct fab_link *link)
{
	struct fab_op *head = NULL, **tail = &head;
	struct fab_slot_list *lists[] = {&link->ops.posted, &link->ops.failed, &link->ops.backlog};

	for (size_t i = 0; i < ARRAY_SIZE(lists); i++) {
		struct fab_slot *s;

		while ((s = fab_slot_list_first(lists[i]))) {
			struct fab_op *op = s->op;

			link->st.inflight--;
			link->st.inflight_bytes -= s->len;
			link->st.errors++;
			if (op && op->gen == s->gen) {
				op->next = NULL;
				*tail = op;
				tail = &op->next;
			}
			slot_put(link, s);
		}
	}
	return head;
}

void fab_call_detached(struct fab_op *op, int status)
{
	while (op) {
		struct fab_op *next = op->next;
		op->next = NULL;
		op->done(op, status);
		op = next;
	}
}

/* Each list holds its slots in the order they were accepted (the backlog
 * is posted in order, and failed posts leave it in order): the oldest is
 * at one of the heads. */
uint64_t fab_oldest_accepted(const struct fab_link *link)
{
	const struct fab_slot *heads[] = {fab_slot_list_first(&link->ops.posted),
					  fab_slot_list_first(&link->ops.backlog),
					  fab_slot_list_first(&link->ops.failed)};
	uint64_t t = 0;

	for (size_t i = 0; i < ARRAY_SIZE(heads); i++)
		if (heads[i] && (!t || heads[i]->accepted_ns < t))
			t = heads[i]->accepted_ns;
	return t;
}
