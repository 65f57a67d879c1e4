/* The fake CCM of the proxy's (and the mirror transport's) unit tests, see
 * test_proxy_ccm.h. It keeps the one promise of the real CCM they rely on:
 * within a session, messages and RDMA operations complete in the order
 * they were posted, and nothing posted in an ended session lands after it
 * (operations fail with -ECONNRESET instead). */
#include "test_proxy_ccm.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ccm/ccm.h"
#include "common/loop.h"

struct ccm_port {
	struct ccm_client *client;
	unsigned idx;
	void *mem;
	size_t size;
	bool up;
	unsigned in_transit;
	bool want_ready;
	bool own_mem;
};

struct ccm_client {
	struct ccm *ccm;
	char name[CCM_NAME_MAX];
	struct ccm_client_ops ops;
	void *arg;
	unsigned n_ports;
	struct ccm_port ports[CCM_MAX_PORTS];
};

struct ccm {
	struct loop *loop;
	char node[CCM_NODE_MAX];
	struct ccm *peer;
	struct ccm_client *client;
	bool up;
	uint64_t gen;
	fake_filter_fn filter;
	void *filter_arg;
	unsigned window;
	uint64_t msgs, ops;
};

enum ev_kind { EV_MSG, EV_READ, EV_WRITE };

struct event {
	struct event *next;
	enum ev_kind kind;
	uint64_t epoch;
	struct ccm *from;
	unsigned port;
	/* message */
	void *data;
	size_t len;
	bool counted;
	/* operation */
	struct ccm_op *op;
};

/* The session epoch of the (one) pair: bumped at every change. */
static uint64_t g_epoch = 1;
static struct event *q_head, *q_tail;
static unsigned q_len;
static struct loop_task task;
static struct loop *task_loop;

static void run_queue(void *arg);

static void post(struct ccm *c)
{
	if (task_loop != c->loop) {
		loop_task_init(&task, run_queue, NULL);
		task_loop = c->loop;
	}
	loop_post(c->loop, &task);
}

static void enqueue(struct ccm *c, struct event *e)
{
	e->next = NULL;
	if (q_tail)
		q_tail->next = e;
	else
		q_head = e;
	q_tail = e;
	q_len++;
	post(c);
}

void fake_reset(void)
{
	while (q_head) {
		struct event *e = q_head;
		q_head = e->next;
		free(e->data);
		free(e);
	}
	q_tail = NULL;
	q_len = 0;
	memset(&task, 0, sizeof(task));
	task_loop = NULL;
}

unsigned fake_in_transit(void)
{
	return q_len;
}

static void maybe_ready(struct ccm_port *p)
{
	struct ccm_client *cl = p->client;
	struct ccm *c = cl->ccm;

	if (p->want_ready && p->up && (!c->window || p->in_transit < c->window)) {
		p->want_ready = false;
		if (cl->ops.send_ready)
			cl->ops.send_ready(p, cl->arg);
	}
}

/* Deliver everything queued now (events queued meanwhile wait for the next
 * turn, so that a test can look between turns). */
static void run_queue(void *arg)
{
	unsigned n = q_len;

	(void)arg;
	while (n-- && q_head) {
		struct event *e = q_head;
		struct ccm *from = e->from;
		q_head = e->next;
		if (!q_head)
			q_tail = NULL;
		q_len--;
		if (e->kind == EV_MSG) {
			struct ccm *to = from->peer;
			struct ccm_port *sp = from->client ? &from->client->ports[e->port] : NULL;
			if (sp && e->counted && sp->in_transit)
				sp->in_transit--;
			if (e->epoch == g_epoch && to && to->up && to->client &&
			    e->port < to->client->n_ports && to->client->ports[e->port].up &&
			    to->client->ops.message)
				to->client->ops.message(&to->client->ports[e->port], e->data,
							e->len, to->client->arg);
			if (sp)
				maybe_ready(sp);
			free(e->data);
			free(e);
			continue;
		}
		/* An RDMA operation: lands only within its session. */
		struct ccm_op *op = e->op;
		int status = -ECONNRESET;
		if (e->epoch == g_epoch && from->up && from->peer && from->peer->client) {
			struct ccm_port *rp = &from->peer->client->ports[e->port];
			if (e->kind == EV_READ)
				memcpy(op->buf, (uint8_t *)rp->mem + op->offset, op->len);
			else
				memcpy((uint8_t *)rp->mem + op->offset, op->buf, op->len);
			status = 0;
		}
		free(e);
		op->done(op, status);
	}
	if (q_head)
		loop_post(task_loop, &task);
}

struct ccm *fake_ccm_create(struct loop *loop, const char *node)
{
	struct ccm *c = calloc(1, sizeof(*c));

	c->loop = loop;
	snprintf(c->node, sizeof(c->node), "%s", node);
	c->gen = 1;
	return c;
}

void fake_ccm_pair(struct ccm *a, struct ccm *b)
{
	a->peer = b;
	b->peer = a;
}

static void drop_events_of(struct ccm *c, int status)
{
	struct event **pp = &q_head, *e;

	q_tail = NULL;
	while ((e = *pp)) {
		if (e->from == c || (e->from->peer == c && e->kind == EV_MSG)) {
			*pp = e->next;
			q_len--;
			if (e->kind != EV_MSG && e->from == c)
				e->op->done(e->op, status);
			free(e->data);
			free(e);
			continue;
		}
		q_tail = e;
		pp = &e->next;
	}
}

void fake_ccm_destroy(struct ccm *c)
{
	drop_events_of(c, -ESHUTDOWN);
	if (c->peer)
		c->peer->peer = NULL;
	free(c);
}

bool fake_session_is_up(const struct ccm *a)
{
	return a->up;
}

void fake_new_generation(struct ccm *c)
{
	c->gen++;
}

static void side_up(struct ccm *c)
{
	struct ccm_client *cl = c->client;

	c->up = true;
	if (!cl)
		return;
	for (unsigned i = 0; i < cl->n_ports; i++) {
		if (c->peer->client && i < c->peer->client->n_ports) {
			cl->ports[i].up = true;
			cl->ports[i].in_transit = 0;
			if (cl->ops.port_up)
				cl->ops.port_up(&cl->ports[i], cl->arg);
		}
	}
}

static void side_ready(struct ccm *c)
{
	struct ccm_client *cl = c->client;
	struct ccm_partner_info pi;

	if (!cl || !cl->ops.partner_ready)
		return;
	memset(&pi, 0, sizeof(pi));
	snprintf(pi.node, sizeof(pi.node), "%s", c->peer->node);
	pi.major = CCM_PROTO_MAJOR;
	pi.generation = c->peer->gen;
	pi.client_present = c->peer->client != NULL;
	pi.ports = pi.client_present ? c->peer->client->n_ports : 0;
	cl->ops.partner_ready(cl, &pi, cl->arg);
}

void fake_session_up(struct ccm *a)
{
	struct ccm *b = a->peer;

	g_epoch++;
	side_up(a);
	side_up(b);
	side_ready(a);
	side_ready(b);
}

static void side_down(struct ccm *c)
{
	struct ccm_client *cl = c->client;

	if (!c->up)
		return;
	if (cl && cl->ops.terminating)
		cl->ops.terminating(cl, CCM_TERM_LINKS_LOST, cl->arg);
	c->up = false;
	if (!cl)
		return;
	for (unsigned i = 0; i < cl->n_ports; i++) {
		if (!cl->ports[i].up)
			continue;
		cl->ports[i].up = false;
		cl->ports[i].want_ready = false;
		if (cl->ops.port_down)
			cl->ops.port_down(&cl->ports[i], cl->arg);
	}
}

void fake_session_down(struct ccm *a)
{
	/* A new epoch first: what is in transit is lost, operations fail
	 * (later, from the queue, like a late completion). */
	g_epoch++;
	side_down(a);
	side_down(a->peer);
}

void fake_set_filter(struct ccm *c, fake_filter_fn fn, void *arg)
{
	c->filter = fn;
	c->filter_arg = arg;
}

void fake_set_window(struct ccm *c, unsigned window)
{
	c->window = window;
}

void fake_inject(struct ccm *to, unsigned port, const void *msg, size_t len)
{
	struct ccm_client *cl = to->client;

	if (cl && port < cl->n_ports && cl->ops.message)
		cl->ops.message(&cl->ports[port], msg, len, cl->arg);
}

uint64_t fake_msgs_sent(const struct ccm *c)
{
	return c->msgs;
}

uint64_t fake_ops(const struct ccm *c)
{
	return c->ops;
}

/* ---- the CCM client API ---- */

int ccm_client_register(struct ccm *ccm, const struct ccm_client_spec *spec,
			struct ccm_client **out)
{
	struct ccm_client *cl;

	if (ccm->client || spec->n_ports == 0 || spec->n_ports > CCM_MAX_PORTS)
		return -EINVAL;
	cl = calloc(1, sizeof(*cl));
	if (!cl)
		return -ENOMEM;
	cl->ccm = ccm;
	snprintf(cl->name, sizeof(cl->name), "%s", spec->name);
	cl->ops = *spec->ops;
	cl->arg = spec->arg;
	cl->n_ports = spec->n_ports;
	for (unsigned i = 0; i < cl->n_ports; i++) {
		struct ccm_port *p = &cl->ports[i];
		p->client = cl;
		p->idx = i;
		p->size = spec->port_mem;
		if (spec->port_buf) {
			p->mem = spec->port_buf[i];
			continue;
		}
		if (posix_memalign(&p->mem, 4096, spec->port_mem) != 0) {
			for (unsigned j = 0; j < i; j++)
				free(cl->ports[j].mem);
			free(cl);
			return -ENOMEM;
		}
		memset(p->mem, 0, spec->port_mem);
		p->own_mem = true;
	}
	ccm->client = cl;
	*out = cl;
	return 0;
}

void ccm_client_unregister(struct ccm_client *c)
{
	struct ccm *ccm = c->ccm;
	struct ccm *peer = ccm->peer;

	drop_events_of(ccm, -ECANCELED);
	ccm->client = NULL;
	/* The partner's ports of this client go down. */
	if (peer && peer->client) {
		struct ccm_client *pc = peer->client;
		for (unsigned i = 0; i < pc->n_ports; i++) {
			if (!pc->ports[i].up)
				continue;
			pc->ports[i].up = false;
			if (pc->ops.port_down)
				pc->ops.port_down(&pc->ports[i], pc->arg);
		}
	}
	for (unsigned i = 0; i < c->n_ports; i++)
		if (c->ports[i].own_mem)
			free(c->ports[i].mem);
	free(c);
}

const char *ccm_client_name(const struct ccm_client *c)
{
	return c->name;
}

struct ccm_port *ccm_client_port(const struct ccm_client *c, unsigned idx)
{
	return idx < c->n_ports ? (struct ccm_port *)&c->ports[idx] : NULL;
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
	struct ccm *c = p->client->ccm;

	if (!p->up || !c->peer || !c->peer->client)
		return 0;
	return c->peer->client->ports[p->idx].size;
}

/* An event from @p c's port @p p, of the current session epoch. */
static struct event *new_event(struct ccm *c, const struct ccm_port *p, enum ev_kind kind)
{
	struct event *e = calloc(1, sizeof(*e));

	if (e) {
		e->kind = kind;
		e->epoch = g_epoch;
		e->from = c;
		e->port = p->idx;
	}
	return e;
}

static int op_start(struct ccm_port *p, struct ccm_op *op, enum ev_kind kind, void *buf, size_t len,
		    uint64_t offset)
{
	struct ccm *c = p->client->ccm;
	struct event *e;
	uint64_t rsize = ccm_port_remote_size(p);

	if (!op || !op->done || !buf || len == 0)
		return -EINVAL;
	if (!p->up)
		return -ENOTCONN;
	if (offset > rsize || len > rsize - offset)
		return -ERANGE;
	e = new_event(c, p, kind);
	if (!e)
		return -ENOMEM;
	op->buf = buf;
	op->len = len;
	op->offset = offset;
	op->port = p;
	e->op = op;
	c->ops++;
	enqueue(c, e);
	return 0;
}

int ccm_port_write(struct ccm_port *p, struct ccm_op *op, const void *buf, size_t len,
		   uint64_t offset, unsigned flags)
{
	(void)flags;
	return op_start(p, op, EV_WRITE, (void *)buf, len, offset);
}

int ccm_port_read(struct ccm_port *p, struct ccm_op *op, void *buf, size_t len, uint64_t offset)
{
	return op_start(p, op, EV_READ, buf, len, offset);
}

static int queue_msg(struct ccm *c, struct ccm_port *p, const void *msg, size_t len, bool count)
{
	struct event *e = new_event(c, p, EV_MSG);

	if (!e)
		return -ENOMEM;
	e->data = malloc(len ? len : 1);
	if (!e->data) {
		free(e);
		return -ENOMEM;
	}
	memcpy(e->data, msg, len);
	e->len = len;
	e->counted = count;
	if (count)
		p->in_transit++;
	enqueue(c, e);
	return 0;
}

int ccm_port_send(struct ccm_port *p, const void *msg, size_t len)
{
	struct ccm *c = p->client->ccm;
	enum fake_verdict v = FAKE_DELIVER;
	int rc;

	if (!p->up || !c->up)
		return -ENOTCONN;
	if (len > CCM_MSG_MAX)
		return -EMSGSIZE;
	if (c->window && p->in_transit >= c->window) {
		p->want_ready = true;
		return -EAGAIN;
	}
	c->msgs++;
	if (c->filter)
		v = c->filter(c, p->idx, msg, len, c->filter_arg);
	if (v == FAKE_DROP)
		return 0;
	rc = queue_msg(c, p, msg, len, true);
	if (rc == 0 && v == FAKE_DUP)
		rc = queue_msg(c, p, msg, len, false);
	return rc;
}
