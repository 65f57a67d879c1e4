/*
 * NBD connection helpers: references, request buffers (nbd_xio), the reply
 * queue, flow-control resume and closing. These are what handshake.c and
 * transmission.c call back into; server.c uses them as well.
 *
 * The rule this file keeps: it is a leaf. It calls nothing else in the
 * module but tls.c's session free, so the phases never call "up" into
 * server.c. Its one way back up
 * is nbd_conn_schedule(), which posts the connection task server.c
 * installed at accept (flush, then read if resumed).
 *
 * A READ the backend answered from its own memory (nbd_io.reply_buf) gives
 * that memory back in nbd_xio_release(), which every xio passes through
 * exactly once: after its reply left, at close, or at a completion that
 * found the connection closed.
 *
 * Lifetime: a connection is reference counted: its open socket, every
 * request not yet released (including those at the backend), a queued
 * task and any callback on the stack hold a reference. Closing drops the
 * socket at once; the memory goes when the last reference does, and the
 * last connection of a destroyed server frees the server.
 */
#define LOG_MODULE "nbd"
#include "nbd/nbd_int.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FREE_XIO_MAX   64
#define FREE_BUF_MAX   (4u << 20)  /* largest buffer kept for reuse */
#define FREE_BYTES_MAX (16u << 20) /* buffer bytes kept per connection */

int nbd_budget_create(uint64_t limit, struct nbd_budget **out)
{
	struct nbd_budget *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->limit = limit;
	b->refs = 1;
	list_init(&b->waiters);
	*out = b;
	return 0;
}

void nbd_budget_put(struct nbd_budget *b)
{
	if (b && --b->refs == 0)
		free(b);
}

void nbd_budget_get(const struct nbd_budget *b, uint64_t *used, uint64_t *cached)
{
	*used = b->used;
	*cached = b->cached;
}

void nbd_server_put(struct nbd_server *srv)
{
	if (--srv->refs == 0) {
		nbd_budget_put(srv->opts.budget);
		free(srv);
	}
}

void nbd_conn_charge(struct nbd_conn *c, struct nbd_xio *x, uint64_t bytes)
{
	x->budget = bytes;
	c->budget_used += bytes;
	if (c->srv->opts.budget)
		c->srv->opts.budget->used += bytes;
}

void nbd_conn_budget_wait(struct nbd_conn *c)
{
	struct nbd_budget *b = c->srv->opts.budget;

	if (b && !list_linked(&c->budget_link) && b->used >= b->limit)
		list_add_tail(&b->waiters, &c->budget_link);
}

/* Requests released: every connection waiting on the shared budget tries
 * again (those that find it full again wait again). */
static void budget_release(struct nbd_budget *b, uint64_t bytes)
{
	b->used -= bytes;
	while (b->used < b->limit && !list_empty(&b->waiters)) {
		struct nbd_conn *w =
		    list_first_entry_or_null(&b->waiters, struct nbd_conn, budget_link);
		list_del(&w->budget_link);
		nbd_conn_maybe_resume(w);
	}
}

/* A buffer kept for reuse counts against the shared bound (a quarter of
 * it): idle connections must not hold the memory the limit promises. */
static void budget_cache(struct nbd_conn *c, int64_t bytes)
{
	if (c->srv->opts.budget)
		c->srv->opts.budget->cached += (uint64_t)bytes;
}

bool nbd_buf_put(struct nbd_buf *b, const void *p, size_t len)
{
	if (len == 0)
		return true;
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		uint8_t *n;
		while (cap < b->len + len)
			cap *= 2;
		n = realloc(b->p, cap);
		if (!n)
			return false;
		b->p = n;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, len);
	b->len += len;
	return true;
}

/* Level-triggered interest follows the state: read unless paused or done,
 * write only while the socket is full. */
void nbd_conn_update_events(struct nbd_conn *c)
{
	uint32_t ev = 0;

	if (!c->lio.added)
		return;
	if (c->rx == NBD_RX_TLS) {
		/* STARTTLS: the ACK goes out, then the TLS handshake leads. */
		if (c->tx_blocked || (c->tls && c->tls_want_out))
			ev |= EPOLLOUT;
		else if (c->tls)
			ev |= EPOLLIN;
	} else {
		if (!c->rx_paused && !c->draining && !c->close_after_tx)
			ev |= EPOLLIN;
		if (c->tx_blocked)
			ev |= EPOLLOUT;
	}
	loop_io_mod(c->srv->loop, &c->lio, ev);
}

void nbd_conn_get(struct nbd_conn *c)
{
	c->refs++;
}

static void conn_free(struct nbd_conn *c)
{
	struct nbd_server *srv = c->srv;

	struct slist_node *n;

	budget_cache(c, -(int64_t)c->free_bytes);
	while ((n = slist_pop_head(&c->free_xio))) {
		struct nbd_xio *x = slist_entry(n, struct nbd_xio, link);
		free(x->mem);
		free(x);
	}
	if (c->handle)
		srv->ops->close(srv->ctx, c->handle);
	free(c->meta_export);
	free(c);
	nbd_server_put(srv);
}

void nbd_conn_put(struct nbd_conn *c)
{
	if (--c->refs == 0)
		conn_free(c);
}

struct nbd_xio *nbd_xio_get(struct nbd_conn *c, size_t need)
{
	struct slist_node *n = slist_pop_head(&c->free_xio);
	struct nbd_xio *x;

	if (n) {
		x = slist_entry(n, struct nbd_xio, link);
		c->n_free--;
		c->free_bytes -= x->cap;
		budget_cache(c, -(int64_t)x->cap);
	} else {
		x = calloc(1, sizeof(*x));
		if (!x)
			return NULL;
	}
	if (need > x->cap) {
		size_t cap = (need + 4095) & ~(size_t)4095;
		void *m;
		free(x->mem);
		x->mem = NULL;
		x->cap = 0;
		if (posix_memalign(&m, 4096, cap) != 0) {
			free(x);
			return NULL;
		}
		x->mem = m;
		x->cap = cap;
	}
	memset(&x->io, 0, sizeof(x->io));
	x->io.priv = c;
	x->conn = c;
	x->state = NBD_XIO_RX;
	x->error = 0;
	x->msg = NULL;
	x->budget = 0;
	x->hdr_len = 0;
	x->data = NULL;
	x->data_len = 0;
	x->sent = 0;
	c->n_xio++;
	nbd_conn_get(c);
	return x;
}

bool nbd_conn_over_budget(const struct nbd_conn *c)
{
	const struct nbd_budget *b = c->srv->opts.budget;

	return c->budget_used >= c->srv->opts.conn_buffer || c->n_xio >= NBD_MAX_XIO ||
	       (b && b->used >= b->limit);
}

/* Resume reading once the budget and the handshake output allow it; the
 * bytes already buffered are parsed from the task. */
void nbd_conn_maybe_resume(struct nbd_conn *c)
{
	if (!c->rx_paused || c->closed)
		return;
	if (c->xmit && nbd_conn_over_budget(c)) {
		nbd_conn_budget_wait(c); /* if it is the shared budget that is full */
		return;
	}
	if (!c->xmit && c->hs_out.len - c->hs_out.off > NBD_HS_OUT_MAX / 2)
		return;
	c->rx_paused = false;
	c->want_rx = true;
	nbd_conn_update_events(c);
	nbd_conn_schedule(c);
}

void nbd_xio_release(struct nbd_conn *c, struct nbd_xio *x)
{
	struct nbd_budget *b = c->srv->opts.budget;
	uint64_t charged = x->budget; /* x may be freed below */

	/* Every xio, sent or not, ends here once: the one place where the
	 * backend gets its reply memory back (nbd_io.release). Cleared first:
	 * the hook may complete other ios of this connection. */
	if (x->io.release) {
		void (*release)(struct nbd_io *) = x->io.release;
		x->io.release = NULL;
		release(&x->io);
		x->io.reply_buf = NULL;
	}
	c->budget_used -= x->budget;
	c->n_xio--;
	x->state = NBD_XIO_FREE;
	if (c->closed || c->n_free >= FREE_XIO_MAX) {
		free(x->mem);
		free(x);
	} else {
		if (x->cap > FREE_BUF_MAX || c->free_bytes + x->cap > FREE_BYTES_MAX ||
		    (b && b->cached + x->cap > b->limit / 4)) {
			free(x->mem);
			x->mem = NULL;
			x->cap = 0;
		}
		slist_push_head(&c->free_xio, &x->link);
		c->n_free++;
		c->free_bytes += x->cap;
		budget_cache(c, (int64_t)x->cap);
		nbd_conn_maybe_resume(c);
	}
	if (b && charged)
		budget_release(b, charged);
	nbd_conn_put(c);
}

void nbd_xio_queue(struct nbd_conn *c, struct nbd_xio *x)
{
	x->state = NBD_XIO_TX;
	slist_push_tail(&c->txq, &x->link);
}

void nbd_conn_close(struct nbd_conn *c, const char *why)
{
	struct nbd_server *srv = c->srv;
	struct slist_node *n;

	if (c->closed)
		return;
	c->closed = true;
	if (why)
		LOG_DEBUG("%s: %s: closed: %s", srv->name, c->peer, why);
	loop_timer_cancel(srv->loop, &c->timer);
	if (c->lio.added)
		loop_io_del(srv->loop, &c->lio);
	nbd_tls_free(c); /* before the socket: it may say close_notify */
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	list_del(&c->link);
	if (list_linked(&c->budget_link))
		list_del(&c->budget_link);
	srv->st.connections--;
	if (c->rx_xio) {
		struct nbd_xio *x = c->rx_xio;
		c->rx_xio = NULL;
		nbd_xio_release(c, x);
	}
	while ((n = slist_pop_head(&c->txq)))
		nbd_xio_release(c, slist_entry(n, struct nbd_xio, link));
	free(c->rbuf);
	c->rbuf = NULL;
	free(c->hs_out.p);
	memset(&c->hs_out, 0, sizeof(c->hs_out));
	nbd_conn_put(c); /* the open socket's reference */
}

void nbd_conn_protocol_error(struct nbd_conn *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	LOG_WARN("%s: %s: %s, disconnecting", c->srv->name, c->peer, msg);
	c->srv->st.protocol_errors++;
	nbd_conn_close(c, NULL);
}

void nbd_conn_schedule(struct nbd_conn *c)
{
	if (c->task.queued || c->closed)
		return;
	nbd_conn_get(c);
	loop_post(c->srv->loop, &c->task);
}
