/* Clients, their ports, and port operations (docs/CCM.md, "Clients and
 * ports"). An operation keeps its parameters so that it can be posted
 * again on another lane when its lane dies; it reaches its owner once.
 *
 * Layering: calls chan.c, lane.c and inst.c; tells the session of a client
 * that comes or goes through ccm_sess_send_client_add/del (its up-calls).
 */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool valid_name(const char *s)
{
	size_t n = 0;

	for (; *s; s++, n++) {
		char ch = *s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return false;
	}
	return n > 0 && n < CCM_NAME_MAX;
}

struct ccm_client *ccm_client_by_name(struct ccm *ccm, const char *name)
{
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (c && !c->dead && strcmp(c->name, name) == 0)
			return c;
	}
	return NULL;
}

struct ccm_rclient *ccm_rclient_by_name(struct ccm *ccm, const char *name, bool create)
{
	struct ccm_rclient *free_rc = NULL;

	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_rclient *rc = &ccm->rclients[i];
		if (rc->used && strcmp(rc->name, name) == 0)
			return rc;
		if (!rc->used && !free_rc)
			free_rc = rc;
	}
	if (!create || !free_rc)
		return NULL;
	memset(free_rc, 0, sizeof(*free_rc));
	free_rc->used = true;
	snprintf(free_rc->name, sizeof(free_rc->name), "%s", name);
	return free_rc;
}

struct ccm_port *ccm_client_port_by_id(struct ccm *ccm, uint32_t id)
{
	unsigned n = (id & 0xffff) - 1, slot = n / CCM_MAX_PORTS, idx = n % CCM_MAX_PORTS;
	struct ccm_client *c;

	if ((id & 0xffff) == 0 || slot >= CCM_MAX_CLIENTS)
		return NULL;
	c = ccm->clients[slot];
	if (!c || c->dead || c->incarnation != (id >> 16) || idx >= c->n_ports)
		return NULL;
	return &c->ports[idx];
}

/* ---- port operations ---- */

static void pending_push(struct ccm *ccm, struct ccm_op *op)
{
	struct ccm_inst *in = &ccm->inst[op->port->inst < ccm->n_inst ? op->port->inst : 0];

	slist_push_tail(&in->pend, &op->qnode);
	ccm->pending_ops++;
}

/* Remove from the pending lists the operations @p match selects, and
 * finish them with @p status. */
static void pending_fail_if(struct ccm *ccm, const struct ccm_port *port,
			    const struct ccm_client *client, int status)
{
	for (unsigned i = 0; i < ccm->n_inst; i++) {
		struct ccm_inst *in = &ccm->inst[i];
		struct slist all, fail;
		struct slist_node *n;
		slist_init(&all);
		slist_init(&fail);
		slist_splice_tail(&all, &in->pend);
		/* The survivors go back before any callback runs. */
		while ((n = slist_pop_head(&all))) {
			struct ccm_op *op = slist_entry(n, struct ccm_op, qnode);
			bool hit = (!port && !client) || (port && op->port == port) ||
				   (client && op->port->client == client);
			if (hit) {
				slist_push_tail(&fail, n);
				ccm->pending_ops--;
			} else {
				slist_push_tail(&in->pend, n);
			}
		}
		while ((n = slist_pop_head(&fail)))
			ccm_op_finish(slist_entry(n, struct ccm_op, qnode), status);
	}
}

void ccm_op_fail_pending(struct ccm *ccm, int status)
{
	pending_fail_if(ccm, NULL, NULL, status);
}

void ccm_op_finish(struct ccm_op *op, int status)
{
	struct ccm_port *p = op->port;
	struct ccm *ccm = p->client->ccm;

	if (op->kind == OP_WRITE_NOTIFY && p->ch.reserved)
		p->ch.reserved--;
	op->kind = 0;
	if (p->inflight)
		p->inflight--;
	if (p->client->dead) {
		ccm->reap_pending = true;
		ccm_schedule(ccm);
	}
	op->done(op, status);
}

static void op_done(struct fab_op *fop, int status);

/* A write or read is done for good: complete it, or go on to the
 * notification of a write_notify. */
static void op_succeeded(struct ccm_op *op)
{
	struct ccm_port *p = op->port;

	if (op->kind == OP_WRITE_NOTIFY) {
		struct wire_notify n;
		int rc;
		put_le64(&n.offset, op->offset);
		put_le64(&n.len, op->len);
		put_le64(&n.value, op->value);
		if (p->ch.reserved)
			p->ch.reserved--;
		op->kind = OP_NOTIFY_WAIT;
		rc = ccm_chan_send(&p->ch, MSG_NOTIFY, &n, sizeof(n), op);
		if (rc < 0)
			ccm_op_finish(op, rc);
		return;
	}
	ccm_op_finish(op, 0);
}

/* Complete the held operations whose fence the partner acked (status 0),
 * or all of them with @p status (the session ended). */
void ccm_op_release_held(struct ccm *ccm, int status)
{
	struct slist all, release;
	struct slist_node *n;

	slist_init(&all);
	slist_init(&release);
	slist_splice_tail(&all, &ccm->held);
	while ((n = slist_pop_head(&all))) {
		struct ccm_op *op = slist_entry(n, struct ccm_op, qnode);
		if (status || op->fence <= ccm->fence_acked)
			slist_push_tail(&release, n);
		else
			slist_push_tail(&ccm->held, n);
	}
	while ((n = slist_pop_head(&release))) {
		struct ccm_op *done = slist_entry(n, struct ccm_op, qnode);
		if (status)
			ccm_op_finish(done, status);
		else if (done->port->client->dead)
			ccm_op_finish(done, -ECANCELED);
		else
			op_succeeded(done);
	}
}

static int op_post(struct ccm_link *l, struct ccm_op *op)
{
	struct ccm_port *p = op->port;

	op->fop.done = op_done;
	op->fop.arg = l->ccm;
	switch (op->kind) {
	case OP_WRITE:
		return fab_write(l->fl, op->buf, op->len, &p->remote, op->offset,
				 (op->flags & CCM_WRITE_DELIVERED) ? FAB_DELIVERY_COMPLETE : 0,
				 &op->fop);
	case OP_WRITE_NOTIFY:
		return fab_write(l->fl, op->buf, op->len, &p->remote, op->offset,
				 FAB_DELIVERY_COMPLETE, &op->fop);
	case OP_WRITE_LINK:
		return fab_write(l->fl, op->buf, op->len, &p->remote, op->offset, 0, &op->fop);
	case OP_READ:
		return fab_read(l->fl, op->buf, op->len, &p->remote, op->offset, &op->fop);
	default:
		return -EINVAL;
	}
}

static void op_posted(struct ccm_link *l, struct ccm_op *op)
{
	struct ccm_inst *in = &l->ccm->inst[l->inst];

	op->link = (uint16_t)l->idx;
	op->post_ns = loop_now_ns();
	l->inflight_ops++;
	l->inflight_bytes += op->len;
	in->ops_inflight++;
	in->bytes_inflight += op->len;
}

/* Post @p op on a lane of its port's instance, or park it until a lane
 * comes back. Never completes the operation from here. */
void ccm_op_issue(struct ccm *ccm, struct ccm_op *op)
{
	for (unsigned tries = 0; tries <= ccm->n_links; tries++) {
		struct ccm_link *l = ccm_lane_pick_op(ccm, op->port->inst, op->len);
		int rc;
		if (!l)
			break;
		rc = op_post(l, op);
		if (rc == 0) {
			op_posted(l, op);
			return;
		}
		if (rc == -EAGAIN)
			break; /* the lane is busy: retried on a completion or the tick */
		char why[80];
		snprintf(why, sizeof(why), "cannot post an operation (%s)", strerror(-rc));
		ccm_lane_fail(l, why, false);
	}
	pending_push(ccm, op);
}

void ccm_op_drain_pending(struct ccm *ccm)
{
	if (ccm->state != ST_SETUP && ccm->state != ST_UP)
		return;
	for (unsigned i = 0; i < ccm->n_inst; i++) {
		struct ccm_inst *in = &ccm->inst[i];
		struct slist all;
		struct slist_node *n;
		slist_init(&all);
		slist_splice_tail(&all, &in->pend);
		while ((n = slist_pop_head(&all))) {
			struct ccm_op *op = slist_entry(n, struct ccm_op, qnode);
			ccm->pending_ops--;
			if (op->port->client->dead)
				ccm_op_finish(op, -ECANCELED);
			else if (op->epoch != ccm->epoch || !op->port->up)
				ccm_op_finish(op, -ECONNRESET);
			else
				ccm_op_issue(ccm, op);
		}
	}
}

static void op_done(struct fab_op *fop, int status)
{
	struct ccm_op *op = container_of(fop, struct ccm_op, fop);
	struct ccm *ccm = fop->arg;
	struct ccm_link *l = &ccm->links[op->link];
	struct ccm_port *p = op->port;

	ccm_lane_account(l, op->len, status);
	if (ccm->pending_ops && ccm->state != ST_STOPPING) {
		ccm->drain_pending = true;
		ccm_schedule(ccm);
	}
	if (ccm->state == ST_STOPPING) {
		ccm_op_finish(op, -ESHUTDOWN);
		return;
	}
	if (p->client->dead) {
		ccm_op_finish(op, -ECANCELED);
		return;
	}
	if (op->epoch != ccm->epoch) {
		ccm_op_finish(op, -ECONNRESET);
		return;
	}
	if (op->kind == OP_WRITE_LINK) {
		/* Pinned: its link's fate is the answer, never another link. */
		if (status < 0 && ccm_lane_error_is_link(status)) {
			if (l->up) {
				char why[80];
				snprintf(why, sizeof(why), "operation failed (%s)",
					 strerror(-status));
				ccm_lane_fail(l, why, false);
			}
			status = -ENOLINK;
		}
		if (status == 0)
			p->bytes_total += op->len;
		ccm_op_finish(op, status);
		return;
	}
	if (status == 0) {
		/* Data came back, or reached the partner's memory: the link
		 * and the partner's progress are alive, whatever the probe's
		 * place in the queue. A local completion proves nothing. */
		if (l->up && (op->kind != OP_WRITE || (op->flags & CCM_WRITE_DELIVERED)))
			l->last_life_ns = loop_now_ns();
		p->bytes_total += op->len;
		if (op->kind != OP_READ && op->fence > ccm->fence_acked) {
			/* Its first try may still land from the lane that failed:
			 * complete it once the partner has closed that lane. */
			slist_push_tail(&ccm->held, &op->qnode);
			return;
		}
		op_succeeded(op);
		return;
	}
	if (!p->up) {
		ccm_op_finish(op, -ECONNRESET);
		return;
	}
	if (!ccm_lane_error_is_link(status)) {
		ccm_op_finish(op, status);
		return;
	}
	if (l->up) {
		/* The lane broke under it. An operation failed by our own abort
		 * or reset of a lane already declared dead costs no try. */
		char why[80];
		snprintf(why, sizeof(why), "operation failed (%s)", strerror(-status));
		ccm_lane_fail(l, why, false);
		/* Generous: on a loaded host a surviving lane can be declared
		 * dead for a moment behind bulk data, and a client must not see
		 * that as an error while the session lives. */
		if (++op->tries > 8 * ccm->n_links + 8) {
			ccm_op_finish(op, status);
			return;
		}
	}
	/* Its first try may still land through the failed lane: the re-issued
	 * copy completes once the partner has reset its end (the fence of this
	 * failure, or of the reset that failed it). */
	uint32_t f = l->close_fence > l->fail_fence ? l->close_fence : l->fail_fence;
	if (f > ccm->fence_acked && f > op->fence)
		op->fence = f;
	ccm_op_issue(ccm, op);
}

static int op_start(struct ccm_port *p, struct ccm_op *op, uint8_t kind, void *buf, size_t len,
		    uint64_t offset, unsigned flags, uint64_t value)
{
	struct ccm *ccm;

	if (!p || !op || !op->done || (!buf && len) || len == 0)
		return -EINVAL;
	ccm = p->client->ccm;
	if (!p->up || p->client->dead || ccm->state != ST_UP)
		return -ENOTCONN;
	if (offset > p->remote.size || len > p->remote.size - offset)
		return -ERANGE;
	op->port = p;
	op->kind = kind;
	op->buf = buf;
	op->len = len;
	op->offset = offset;
	op->flags = flags;
	op->value = value;
	op->epoch = ccm->epoch;
	op->tries = 0;
	op->fence = 0;
	op->qnode.next = NULL;
	p->inflight++;
	ccm_op_issue(ccm, op);
	return 0;
}

int ccm_port_write(struct ccm_port *p, struct ccm_op *op, const void *buf, size_t len,
		   uint64_t offset, unsigned flags)
{
	return op_start(p, op, OP_WRITE, (void *)buf, len, offset, flags, 0);
}

int ccm_port_write_link(struct ccm_port *p, unsigned link, struct ccm_op *op, const void *buf,
			size_t len, uint64_t offset)
{
	struct ccm *ccm;
	struct ccm_link *l;
	int rc;

	if (!p || !op || !op->done || !buf || len == 0)
		return -EINVAL;
	ccm = p->client->ccm;
	if (link >= ccm->n_links)
		return -EINVAL;
	if (!p->up || p->client->dead || ccm->state != ST_UP)
		return -ENOTCONN;
	if (offset > p->remote.size || len > p->remote.size - offset)
		return -ERANGE;
	l = &ccm->links[link];
	if (!l->up || !l->fl || l->fenced)
		return -ENOLINK;
	op->port = p;
	op->kind = OP_WRITE_LINK;
	op->buf = (void *)buf;
	op->len = len;
	op->offset = offset;
	op->flags = 0;
	op->value = 0;
	op->epoch = ccm->epoch;
	op->tries = 0;
	op->fence = 0;
	op->qnode.next = NULL;
	rc = op_post(l, op);
	if (rc < 0) {
		op->kind = 0;
		return rc == -EINVAL || rc == -EMSGSIZE ? rc : -ENOLINK;
	}
	p->inflight++;
	op_posted(l, op);
	return 0;
}

int ccm_port_read(struct ccm_port *p, struct ccm_op *op, void *buf, size_t len, uint64_t offset)
{
	return op_start(p, op, OP_READ, buf, len, offset, 0, 0);
}

int ccm_port_write_notify(struct ccm_port *p, struct ccm_op *op, const void *buf, size_t len,
			  uint64_t offset, uint64_t value)
{
	int rc;

	if (!p)
		return -EINVAL;
	if (p->up && ccm_chan_reserve(&p->ch) < 0) {
		p->ch.want_send_ready = true;
		return -EAGAIN;
	}
	rc = op_start(p, op, OP_WRITE_NOTIFY, (void *)buf, len, offset, CCM_WRITE_DELIVERED, value);
	if (rc < 0 && p->up && p->ch.reserved)
		p->ch.reserved--;
	return rc;
}

int ccm_port_send(struct ccm_port *p, const void *msg, size_t len)
{
	int rc;

	if (!p || (!msg && len))
		return -EINVAL;
	if (!p->up || p->client->dead || p->client->ccm->state != ST_UP)
		return -ENOTCONN;
	if (len > CCM_MSG_MAX)
		return -EMSGSIZE;
	rc = ccm_chan_send(&p->ch, MSG_DATA, msg, len, NULL);
	if (rc == -EAGAIN)
		p->ch.want_send_ready = true;
	return rc;
}

/* ---- registry ---- */

int ccm_client_register_mrs(struct ccm *ccm, struct ccm_client *c)
{
	for (unsigned i = 0; i < c->n_ports; i++) {
		struct ccm_port *p = &c->ports[i];
		int rc;
		if (p->registered)
			continue;
		if (p->size == 0) {
			p->key = 0;
			p->registered = true;
			continue;
		}
		rc = ccm_reg_all(ccm, p->mem, p->size, FAB_REMOTE_READ | FAB_REMOTE_WRITE, &p->key,
				 p->mr);
		if (rc < 0)
			return rc;
		p->registered = true;
	}
	return 0;
}

void ccm_client_unregister_mrs(struct ccm *ccm, struct ccm_client *c)
{
	for (unsigned i = 0; i < c->n_ports; i++) {
		struct ccm_port *p = &c->ports[i];
		for (unsigned j = 0; j < ccm->n_links; j++) {
			if (p->mr[j])
				fab_mr_close(p->mr[j]);
			p->mr[j] = NULL;
		}
		p->registered = false;
		p->key = 0;
	}
}

void ccm_client_ports_down(struct ccm *ccm, struct ccm_client *c, bool callbacks, int status)
{
	for (unsigned i = 0; i < c->n_ports; i++) {
		struct ccm_port *p = &c->ports[i];
		bool was_up = p->up;
		p->up = false;
		p->remote = (struct fab_remote){0, 0};
		pending_fail_if(ccm, p, NULL, status);
		ccm_chan_fail_ops(&p->ch, status);
		ccm_chan_reset(&p->ch);
		if (was_up) {
			LOG_DEBUG("port %s/%u down", c->name, i);
			if (callbacks && !c->dead && c->ops.port_down)
				c->ops.port_down(p, c->arg);
		}
	}
}

/* Bring up the ports that can be, take down those that cannot. */
void ccm_client_eval_ports(struct ccm *ccm, struct ccm_client *c)
{
	for (unsigned i = 0; i < c->n_ports; i++) {
		struct ccm_port *p = &c->ports[i];
		struct ccm_rclient *rc = ccm_rclient_by_name(ccm, c->name, false);
		bool should = ccm->state == ST_UP && !c->dead && rc && c->remote_acked &&
			      i < rc->n_ports && p->registered;

		if (c->dead)
			return;
		if (should && !p->up) {
			p->remote.key = rc->ports[i].key;
			p->remote.size = rc->ports[i].size;
			p->ch.peer_id = rc->ports[i].id;
			p->up = true;
			LOG_DEBUG("port %s/%u up: %zu bytes here, %llu at the partner", c->name, i,
				  p->size, (unsigned long long)p->remote.size);
			if (c->ops.port_up)
				c->ops.port_up(p, c->arg);
			if (c->dead || ccm->state != ST_UP)
				return;
			ccm_chan_deliver(&p->ch);
		} else if (!should && p->up) {
			p->up = false;
			p->remote = (struct fab_remote){0, 0};
			pending_fail_if(ccm, p, NULL, -ECONNRESET);
			ccm_chan_fail_ops(&p->ch, -ECONNRESET);
			ccm_chan_reset(&p->ch);
			if (c->ops.port_down)
				c->ops.port_down(p, c->arg);
		}
	}
}

void ccm_client_partner_info(struct ccm *ccm, const struct ccm_client *c,
			     struct ccm_partner_info *pi)
{
	const struct ccm_rclient *rc = ccm_rclient_by_name(ccm, c->name, false);

	memset(pi, 0, sizeof(*pi));
	snprintf(pi->node, sizeof(pi->node), "%s", ccm->partner.node);
	pi->major = ccm->partner.major;
	pi->minor = ccm->partner.minor;
	pi->generation = ccm->partner.gen;
	pi->client_present = rc != NULL;
	pi->ports = rc ? MIN(rc->n_ports, c->n_ports) : 0;
}

void ccm_client_deliver_ready(struct ccm *ccm)
{
	if (ccm->state != ST_UP)
		return;
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		struct ccm_partner_info pi;
		if (!c || c->dead || !c->ready_pending)
			continue;
		c->ready_pending = false;
		c->told_ready = true;
		ccm_client_partner_info(ccm, c, &pi);
		if (c->ops.partner_ready)
			c->ops.partner_ready(c, &pi, c->arg);
		if (ccm->state != ST_UP)
			return;
	}
}

void ccm_client_free(struct ccm *ccm, unsigned slot)
{
	struct ccm_client *c = ccm->clients[slot];

	for (unsigned j = 0; j < c->n_ports; j++) {
		ccm_chan_free(&c->ports[j].ch);
		if (c->ports[j].own_mem)
			free(c->ports[j].mem);
	}
	free(c->ports);
	free(c);
	ccm->clients[slot] = NULL;
}

/* Free the unregistered clients nothing refers to any more. */
void ccm_client_reap(struct ccm *ccm)
{
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		bool idle = true;
		if (!c || !c->dead)
			continue;
		for (unsigned j = 0; j < c->n_ports; j++)
			if (c->ports[j].inflight || ccm_chan_busy(&c->ports[j].ch))
				idle = false;
		if (!idle)
			continue;
		ccm_client_free(ccm, i);
	}
}

int ccm_client_register(struct ccm *ccm, const struct ccm_client_spec *spec,
			struct ccm_client **out)
{
	struct ccm_client *c;
	unsigned slot = CCM_MAX_CLIENTS;
	int rc;

	if (!ccm || !spec || !out || !spec->name || !valid_name(spec->name) || spec->n_ports == 0 ||
	    spec->n_ports > CCM_MAX_PORTS) {
		LOG_ERROR("client registration: want a name of [A-Za-z0-9_-] (< %d chars) and "
			  "1 to %d ports",
			  CCM_NAME_MAX, CCM_MAX_PORTS);
		return -EINVAL;
	}
	if (spec->port_buf)
		for (unsigned i = 0; i < spec->n_ports; i++)
			if (!spec->port_buf[i] && spec->port_mem)
				return -EINVAL;
	if (ccm_client_by_name(ccm, spec->name))
		return -EEXIST;
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++)
		if (!ccm->clients[i]) {
			slot = i;
			break;
		}
	if (slot == CCM_MAX_CLIENTS)
		return -ENOSPC;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->ports = calloc(spec->n_ports, sizeof(*c->ports));
	if (!c->ports) {
		free(c);
		return -ENOMEM;
	}
	c->ccm = ccm;
	c->slot = slot;
	if (ccm->next_incarnation == 0)
		ccm->next_incarnation = 1;
	c->incarnation = ccm->next_incarnation++;
	snprintf(c->name, sizeof(c->name), "%s", spec->name);
	c->n_ports = spec->n_ports;
	c->port_mem = spec->port_mem;
	c->flags = spec->flags;
	if (spec->ops)
		c->ops = *spec->ops;
	c->arg = spec->arg;
	for (unsigned i = 0; i < c->n_ports; i++) {
		struct ccm_port *p = &c->ports[i];
		p->idx = i;
		p->id = ((uint32_t)c->incarnation << 16) | (slot * CCM_MAX_PORTS + i + 1);
		p->size = spec->port_mem;
		if (spec->port_buf) {
			p->mem = spec->port_buf[i];
		} else if (spec->port_mem) {
			if (posix_memalign(&p->mem, 4096, spec->port_mem) != 0) {
				rc = -ENOMEM;
				goto fail;
			}
			memset(p->mem, 0, spec->port_mem);
			p->own_mem = true;
		}
		ccm->clients[slot] = c; /* ccm_inst_place looks at the other ports */
		p->inst = ccm->n_links ? ccm_inst_place(ccm, c, i) : 0;
		ccm->inst[p->inst].ports++;
		p->client = c; /* placed: counted in its instance */
		ccm_chan_init(&p->ch, ccm, p);
	}
	ccm->clients[slot] = c;
	if (ccm->state == ST_SETUP || ccm->state == ST_UP) {
		rc = ccm_client_register_mrs(ccm, c);
		if (rc < 0)
			goto fail;
		ccm_sess_send_client_add(ccm, c);
		if (ccm->state == ST_UP) {
			c->ready_pending = true;
			ccm_schedule(ccm);
		}
	}
	LOG_INFO("client %s registered: %u port%s of %zu bytes", c->name, c->n_ports,
		 c->n_ports == 1 ? "" : "s", c->port_mem);
	*out = c;
	return 0;
fail:
	ccm_client_unregister_mrs(ccm, c);
	for (unsigned i = 0; i < c->n_ports; i++) {
		if (c->ports[i].client)
			ccm->inst[c->ports[i].inst].ports--;
		if (c->ports[i].own_mem)
			free(c->ports[i].mem);
	}
	ccm->clients[slot] = NULL;
	free(c->ports);
	free(c);
	return rc;
}

void ccm_client_unregister(struct ccm_client *c)
{
	struct ccm *ccm;
	bool session;

	if (!c || c->dead)
		return;
	ccm = c->ccm;
	session = ccm->state == ST_SETUP || ccm->state == ST_UP;
	c->dead = true;
	ccm_client_ports_down(ccm, c, false, -ECANCELED);
	pending_fail_if(ccm, NULL, c, -ECANCELED);
	if (session)
		ccm_sess_send_client_del(ccm, c);
	ccm_client_unregister_mrs(ccm, c);
	for (unsigned i = 0; i < c->n_ports; i++)
		if (ccm->inst[c->ports[i].inst].ports)
			ccm->inst[c->ports[i].inst].ports--;
	LOG_INFO("client %s unregistered", c->name);
	ccm->reap_pending = true;
	ccm_schedule(ccm);
}

const char *ccm_client_name(const struct ccm_client *c)
{
	return c->name;
}

struct ccm_port *ccm_client_port(const struct ccm_client *c, unsigned idx)
{
	return idx < c->n_ports ? &c->ports[idx] : NULL;
}

unsigned ccm_port_index(const struct ccm_port *p)
{
	return p->idx;
}

struct ccm_client *ccm_port_client(const struct ccm_port *p)
{
	return p->client;
}

bool ccm_port_is_up(const struct ccm_port *p)
{
	return p->up;
}

void *ccm_port_mem(const struct ccm_port *p)
{
	return p->mem;
}

size_t ccm_port_mem_size(const struct ccm_port *p)
{
	return p->size;
}

uint64_t ccm_port_remote_size(const struct ccm_port *p)
{
	return p->up ? p->remote.size : 0;
}

unsigned ccm_test_port_instance(const struct ccm_port *p)
{
	return p->inst;
}
