/* In-memory fake of src/fabric/fabric.h (see fake_fabric.h).
 *
 * Semantics follow src/fabric/fabric.h: a post to an address nobody is bound
 * at waits (the fabric's backlog) until somebody binds there; a post to a
 * peer that goes away fails with -ECANCELED; a wrong key, access or offset makes the operation fail
 * with -ECANCELED at the target; a dead link accepts posts that then hang;
 * abort fails the link's operations with -ETIMEDOUT; reset and close fail
 * them with -ECANCELED. Reset, abort and suspend close the link's end as the
 * real endpoint reset does: it is bound anew (operations of the peer in
 * flight towards the old end fail, and their late copies never land), and
 * a suspended link is not bound at all until resumed. Completions and
 * target effects happen in a loop poller. */
#define LOG_MODULE "fakefab"
#include "fake_fabric.h"
#include "common/log.h"
#include "common/loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADDR_MAX 128

struct fab_mr {
	struct fab_link *link;
	void *buf;
	size_t len;
	uint64_t key;
	unsigned access;
	struct fab_mr *next;
};

struct fab_link {
	char name[32];
	char local[ADDR_MAX];
	char peer[ADDR_MAX];
	struct loop *loop;
	struct fab_link_events ev;
	size_t max_msg;
	struct fab_mr *mrs;
	struct fab_link_stats st;
	uint64_t bind_id;
	bool suspended; /* not bound: the peer's posts wait, ours too */
	struct fab_link *next;
};

enum { K_READ = 1, K_WRITE, K_WRITEDATA, K_SEND };

struct ffop {
	int kind;
	struct fab_link *src; /* NULL for a zombie whose link is gone */
	char srcaddr[ADDR_MAX];
	char dst[ADDR_MAX];
	struct fab_op *op; /* NULL: a zombie (aborted write that may still land) */
	void *local;
	size_t len;
	uint64_t key, off, imm;
	uint8_t *msg;
	uint64_t due;
	uint64_t posted_ns;
	bool hang;
	uint64_t bind_id; /* the target's when posted; 0: it was not there */
	int force;	  /* complete with this error, no effect */
	struct ffop *next;
};

static struct fab_link *links;
static struct ffop *queue;
static struct loop_poller poller;
static struct loop *poller_loop;
static uint64_t delay_ns, late_delay_ns;
static bool late_effects, no_doorbells, paused;
static struct ff_stats stats;
static uint64_t next_bind_id = 1;

struct fault {
	char addr[ADDR_MAX];
	bool dead;
	bool stalled;	  /* operations *from* it wait; the other way works */
	uint64_t slow_ns; /* operations from it take this much longer */
	unsigned fail_n;
	int fail_err;
	unsigned drop_n;
	unsigned lose_sends; /* sends accepted and never completed nor delivered */
};
static struct fault faults[32];

static struct fault *fault_get(const char *addr, bool create)
{
	for (unsigned i = 0; i < 32; i++)
		if (faults[i].addr[0] && strcmp(faults[i].addr, addr) == 0)
			return &faults[i];
	if (!create)
		return NULL;
	for (unsigned i = 0; i < 32; i++)
		if (!faults[i].addr[0]) {
			snprintf(faults[i].addr, ADDR_MAX, "%s", addr);
			return &faults[i];
		}
	abort();
}

static bool addr_dead(const char *addr)
{
	struct fault *f = fault_get(addr, false);

	return f && f->dead;
}

void ff_reset(void)
{
	memset(faults, 0, sizeof(faults));
	delay_ns = 0;
	late_delay_ns = 0;
	late_effects = false;
	no_doorbells = false;
	paused = false;
	memset(&stats, 0, sizeof(stats));
}

void ff_set_delay_ns(uint64_t ns)
{
	delay_ns = ns;
}

void ff_set_dead(const char *addr, bool dead)
{
	fault_get(addr, true)->dead = dead;
}

void ff_set_stalled(const char *addr, bool stalled)
{
	fault_get(addr, true)->stalled = stalled;
}

void ff_set_slow(const char *addr, uint64_t ns)
{
	fault_get(addr, true)->slow_ns = ns;
}

void ff_fail_next(const char *addr, unsigned n, int err)
{
	struct fault *f = fault_get(addr, true);

	f->fail_n = n;
	f->fail_err = err;
}

void ff_drop_next(const char *addr, unsigned n)
{
	fault_get(addr, true)->drop_n = n;
}

void ff_lose_next_sends(const char *addr, unsigned n)
{
	fault_get(addr, true)->lose_sends = n;
}

void ff_set_late_effects(bool on)
{
	late_effects = on;
}

void ff_set_late_delay_ns(uint64_t ns)
{
	late_delay_ns = ns;
}

void ff_set_doorbells(bool on)
{
	no_doorbells = !on;
}

void ff_pause(bool on)
{
	paused = on;
}

void ff_get_stats(struct ff_stats *st)
{
	*st = stats;
}

unsigned ff_queued(void)
{
	unsigned n = 0;

	for (struct ffop *o = queue; o; o = o->next)
		n++;
	return n;
}

static struct fab_link *find_bound(const char *addr)
{
	for (struct fab_link *l = links; l; l = l->next)
		if (!l->suspended && strcmp(l->local, addr) == 0)
			return l;
	return NULL;
}

static struct fab_link *find_link(const char *addr)
{
	for (struct fab_link *l = links; l; l = l->next)
		if (strcmp(l->local, addr) == 0)
			return l;
	return NULL;
}

static void unlink_op(struct ffop *op)
{
	for (struct ffop **pp = &queue; *pp; pp = &(*pp)->next)
		if (*pp == op) {
			*pp = op->next;
			op->next = NULL;
			return;
		}
}

static void free_op(struct ffop *op)
{
	free(op->msg);
	free(op);
}

static void complete(struct ffop *o, int status)
{
	struct fab_op *op = o->op;
	struct fab_link *l = o->src;

	if (!op || !l)
		return;
	l->st.inflight--;
	l->st.inflight_bytes -= o->len;
	if (status == 0) {
		l->st.ops++;
		l->st.bytes += o->len;
	} else {
		l->st.errors++;
	}
	op->done(op, status);
}

/* Carry out one operation at its target, then complete it. */
static void execute(struct ffop *o)
{
	struct fab_link *tgt = find_bound(o->dst);
	int status = 0;

	stats.executed++;
	if (o->force) {
		status = o->force;
	} else if (!tgt || (o->bind_id && tgt->bind_id != o->bind_id)) {
		/* The peer went away (or restarted) under the connection. */
		status = -ECANCELED;
	} else if (o->kind == K_SEND) {
		stats.msgs++;
		if (tgt->ev.on_msg)
			tgt->ev.on_msg(tgt->ev.arg, o->msg, o->len);
	} else {
		struct fab_mr *mr = tgt->mrs;
		unsigned need = o->kind == K_READ ? FAB_REMOTE_READ : FAB_REMOTE_WRITE;
		while (mr && mr->key != o->key)
			mr = mr->next;
		if (!mr || !(mr->access & need) || o->off > mr->len || o->len > mr->len - o->off) {
			stats.rejected++;
			status = -ECANCELED;
		} else if (o->kind == K_READ) {
			memcpy(o->local, (uint8_t *)mr->buf + o->off, o->len);
		} else {
			memcpy((uint8_t *)mr->buf + o->off, o->msg ? o->msg : o->local, o->len);
			if (!o->op)
				stats.late++; /* a zombie landed */
			if (o->kind == K_WRITEDATA && !no_doorbells && tgt->ev.on_doorbell) {
				stats.doorbells++;
				tgt->ev.on_doorbell(tgt->ev.arg, o->imm);
			}
		}
	}
	complete(o, status);
}

static bool runnable(const struct ffop *o, uint64_t now)
{
	if (o->hang || o->due > now)
		return false;
	if (o->src && o->src->suspended)
		return false;
	if (!o->bind_id && !find_bound(o->dst))
		return false; /* waits in the "backlog" until the peer is there */
	if (addr_dead(o->srcaddr) || addr_dead(o->dst))
		return false;
	struct fault *f = fault_get(o->srcaddr, false);
	if (f && f->stalled)
		return false;
	return true;
}

static int poll_cb(void *arg)
{
	unsigned n = ff_queued(), done = 0;
	uint64_t now = loop_now_ns();

	(void)arg;
	if (paused)
		return 0;
	while (done < n) {
		struct ffop *o = queue;
		while (o && !runnable(o, now))
			o = o->next;
		if (!o)
			break;
		unlink_op(o);
		execute(o);
		free_op(o);
		done++;
	}
	return done > 0;
}

int fab_link_open(struct loop *loop, const struct fab_link_opts *opts,
		  const struct fab_link_events *ev, struct fab_link **out)
{
	struct fab_link *l;

	if (find_link(opts->local))
		return -EADDRINUSE;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	snprintf(l->name, sizeof(l->name), "%s", opts->name ? opts->name : "link");
	snprintf(l->local, sizeof(l->local), "%s", opts->local);
	snprintf(l->peer, sizeof(l->peer), "%s", opts->peer);
	l->loop = loop;
	l->bind_id = next_bind_id++;
	if (ev)
		l->ev = *ev;
	l->max_msg = opts->max_msg ? opts->max_msg : 4096;
	l->next = links;
	links = l;
	if (!poller_loop) {
		poller_loop = loop;
		loop_poller_add(loop, &poller, poll_cb, NULL);
	}
	*out = l;
	return 0;
}

/*
 * Fail the operations of link @p l with @p status. With late effects on,
 * the bytes of its writes are "on the wire" already: a copy stays queued
 * and still lands later, unless the target's end has been closed (rebound)
 * meanwhile, as with TCP.
 */
static void cancel_ops_of(struct fab_link *l, int status)
{
	struct ffop *mine = NULL, **tail = &mine;

	for (struct ffop **pp = &queue; *pp;) {
		struct ffop *o = *pp;
		if (o->src == l && o->op) {
			if (late_effects && (o->kind == K_WRITE || o->kind == K_WRITEDATA) &&
			    !o->force && o->bind_id) {
				struct ffop *z = calloc(1, sizeof(*z));
				*z = *o;
				z->op = NULL;
				z->src = NULL;
				if (z->due < loop_now_ns() + late_delay_ns)
					z->due = loop_now_ns() + late_delay_ns;
				z->msg = malloc(o->len ? o->len : 1);
				memcpy(z->msg, o->msg ? o->msg : o->local, o->len);
				z->next = o->next;
				*pp = z;
				pp = &z->next;
			} else {
				*pp = o->next;
			}
			o->next = NULL;
			*tail = o;
			tail = &o->next;
			continue;
		}
		if (o->src == l && !o->op)
			o->src = NULL; /* an older zombie: its link goes away */
		pp = &(*pp)->next;
	}
	while (mine) {
		struct ffop *next = mine->next;
		stats.aborted++;
		complete(mine, status);
		free_op(mine);
		mine = next;
	}
}

void fab_link_close(struct fab_link *l)
{
	if (!l)
		return;
	cancel_ops_of(l, -ECANCELED);
	for (struct fab_link **pp = &links; *pp; pp = &(*pp)->next)
		if (*pp == l) {
			*pp = l->next;
			break;
		}
	/* As the real one: regions are deregistered, fab_mr_close frees them. */
	while (l->mrs) {
		struct fab_mr *m = l->mrs;
		l->mrs = m->next;
		m->link = NULL;
		m->next = NULL;
	}
	if (!links && poller_loop) {
		loop_poller_del(poller_loop, &poller);
		poller_loop = NULL;
		while (queue) {
			struct ffop *o = queue;
			queue = o->next;
			free_op(o);
		}
	}
	free(l);
}

const char *fab_link_name(const struct fab_link *l)
{
	return l->name;
}

int fab_mr_reg(struct fab_link *l, void *buf, size_t len, uint64_t key, unsigned access,
	       struct fab_mr **out)
{
	struct fab_mr *m;

	for (m = l->mrs; m; m = m->next)
		if (m->key == key)
			return -EEXIST;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->link = l;
	m->buf = buf;
	m->len = len;
	m->key = key;
	m->access = access;
	m->next = l->mrs;
	l->mrs = m;
	*out = m;
	return 0;
}

void fab_mr_close(struct fab_mr *m)
{
	if (!m)
		return;
	if (m->link)
		for (struct fab_mr **pp = &m->link->mrs; *pp; pp = &(*pp)->next)
			if (*pp == m) {
				*pp = m->next;
				break;
			}
	free(m);
}

static int post(struct fab_link *l, int kind, void *local, size_t len, const struct fab_remote *rem,
		uint64_t off, uint64_t imm, const void *msg, struct fab_op *op)
{
	struct fault *f = fault_get(l->local, false);
	struct ffop *o;

	if (!op || !op->done)
		return -EINVAL;
	if (rem && (off > rem->size || len > rem->size - off))
		return -EINVAL;
	if (kind == K_SEND && len > l->max_msg)
		return -EMSGSIZE;
	for (struct ffop *q = queue; q; q = q->next)
		if (q->op == op) {
			/* The caller broke the contract: one post per operation. */
			LOG_ERROR("fab_op %p posted twice", (void *)op);
			abort();
		}
	o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->kind = kind;
	o->src = l;
	snprintf(o->srcaddr, sizeof(o->srcaddr), "%s", l->local);
	snprintf(o->dst, sizeof(o->dst), "%s", l->peer);
	o->op = op;
	o->local = local;
	o->len = len;
	o->key = rem ? rem->key : 0;
	o->off = off;
	o->imm = imm;
	o->posted_ns = loop_now_ns();
	o->due = o->posted_ns + delay_ns + (f ? f->slow_ns : 0);
	if (find_bound(l->peer))
		o->bind_id = find_bound(l->peer)->bind_id;
	if (msg) {
		o->msg = malloc(len ? len : 1);
		memcpy(o->msg, msg, len);
	}
	if (f && f->fail_n) {
		f->fail_n--;
		o->force = f->fail_err;
	} else if (f && f->drop_n) {
		f->drop_n--;
		o->hang = true;
	} else if (f && f->lose_sends && kind == K_SEND) {
		f->lose_sends--;
		o->hang = true;
	}
	op->link = l;
	l->st.inflight++;
	l->st.inflight_bytes += len;
	/* Append: operations of a link run in order. */
	struct ffop **pp = &queue;
	while (*pp)
		pp = &(*pp)->next;
	*pp = o;
	return 0;
}

int fab_read(struct fab_link *l, void *local, size_t len, const struct fab_remote *rem,
	     uint64_t offset, struct fab_op *op)
{
	return post(l, K_READ, local, len, rem, offset, 0, NULL, op);
}

int fab_write(struct fab_link *l, const void *local, size_t len, const struct fab_remote *rem,
	      uint64_t offset, unsigned flags, struct fab_op *op)
{
	(void)flags;
	return post(l, K_WRITE, (void *)local, len, rem, offset, 0, NULL, op);
}

int fab_writedata(struct fab_link *l, const void *local, size_t len, const struct fab_remote *rem,
		  uint64_t offset, uint64_t imm, unsigned flags, struct fab_op *op)
{
	(void)flags;
	return post(l, K_WRITEDATA, (void *)local, len, rem, offset, imm, NULL, op);
}

int fab_send(struct fab_link *l, const void *msg, size_t len, struct fab_op *op)
{
	return post(l, K_SEND, NULL, len, NULL, 0, 0, msg, op);
}

/* Close our end and bind anew (or not at all while suspended). */
static void rebind(struct fab_link *l, int status, bool suspend)
{
	l->st.resets++;
	l->suspended = suspend;
	l->bind_id = next_bind_id++;
	cancel_ops_of(l, status);
}

void fab_link_abort(struct fab_link *l)
{
	rebind(l, -ETIMEDOUT, false);
}

void fab_link_reset(struct fab_link *l)
{
	rebind(l, -ECANCELED, false);
}

void fab_link_suspend(struct fab_link *l)
{
	rebind(l, -ECANCELED, true);
}

void fab_link_resume(struct fab_link *l)
{
	if (!l->suspended)
		return;
	l->suspended = false;
	l->bind_id = next_bind_id++;
}

void fab_link_get_stats(const struct fab_link *l, struct fab_link_stats *st)
{
	*st = l->st;
	st->oldest_ns = 0;
	for (const struct ffop *o = queue; o; o = o->next)
		if (o->src == l && o->op && (!st->oldest_ns || o->posted_ns < st->oldest_ns))
			st->oldest_ns = o->posted_ns;
	st->ep_ready = !l->suspended;
	st->suspended = l->suspended;
}
