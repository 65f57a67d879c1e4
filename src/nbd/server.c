/*
 * NBD server: the listener and the connections it owns, their receive and
 * send paths and their timers. The protocol itself is in two phases that
 * this file calls: handshake.c (options) and transmission.c (commands);
 * they call back only into the connection helpers of conn.c, never here.
 *
 * Receive: bytes are read in big chunks into a per-connection buffer and
 * parsed from there; a WRITE payload goes straight from the socket into
 * its io buffer (readv into [payload, receive buffer]). Send: replies are
 * queued and written with one sendmsg per batch, at the end of the event
 * that produced them or from a posted task for completions that arrive
 * later. Flow control: once the payload bytes (or requests) in flight on
 * a connection exceed its budget, it stops reading until some complete.
 * Lifetimes (reference counts) are in conn.c.
 */
#define LOG_MODULE "nbd"
#include "nbd/nbd_int.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define IOV_BATCH	  64
#define RX_ROUNDS	  8
#define ACCEPT_BATCH	  64
#define ACCEPT_BACKOFF_NS 100000000ull
#define REFUSED_LOG_NS	  1000000000ull

static void conn_rx(struct nbd_conn *c);
static void conn_flush(struct nbd_conn *c);
static void conn_tls_step(struct nbd_conn *c);

/* ---- the transport (socket, TLS or memory: struct nbd_xport) ---- */

static ssize_t conn_readv(struct nbd_conn *c, const struct iovec *iov, int n)
{
	return c->xp->readv(c->xp_arg, iov, n);
}

static ssize_t conn_writev(struct nbd_conn *c, struct iovec *iov, int n, bool more)
{
	return c->xp->writev(c->xp_arg, iov, n, more);
}

/* Output the transport accepted but still holds (TLS records): 0 when it
 * is all out, -EAGAIN, or -errno. */
static int conn_xport_flush(struct nbd_conn *c)
{
	return c->xp->flush ? c->xp->flush(c->xp_arg) : 0;
}

static bool conn_xport_pending(struct nbd_conn *c)
{
	return c->xp->pending && c->xp->pending(c->xp_arg);
}

/* ---- send path ---- */

/* Account @p w bytes written: handshake output first, then replies. */
static void tx_consume(struct nbd_conn *c, size_t w)
{
	struct nbd_buf *b = &c->hs_out;
	size_t take = MIN(w, b->len - b->off);

	b->off += take;
	w -= take;
	if (b->off == b->len) {
		b->off = b->len = 0;
		if (c->xmit && b->p) {
			free(b->p);
			memset(b, 0, sizeof(*b));
		}
	}
	while (w > 0) {
		struct nbd_xio *x = slist_entry(c->txq.head, struct nbd_xio, link);
		size_t left = x->hdr_len + x->data_len - x->sent;
		if (w < left) {
			x->sent += w;
			break;
		}
		w -= left;
		slist_pop_head(&c->txq);
		nbd_xio_release(c, x);
	}
}

static void conn_flush(struct nbd_conn *c)
{
	struct iovec iov[IOV_BATCH];

	while (!c->closed) {
		struct nbd_buf *b = &c->hs_out;
		struct slist_node *q;
		size_t total = 0;
		ssize_t w;
		int n = 0;

		if (b->off < b->len)
			iov[n++] = (struct iovec){b->p + b->off, b->len - b->off};
		for (q = c->txq.head; q && n <= IOV_BATCH - 2; q = q->next) {
			struct nbd_xio *x = slist_entry(q, struct nbd_xio, link);
			size_t s = x->sent;
			if (s < x->hdr_len) {
				iov[n++] = (struct iovec){x->hdr + s, x->hdr_len - s};
				s = 0;
			} else {
				s -= x->hdr_len;
			}
			if (x->data_len > s)
				iov[n++] = (struct iovec){(uint8_t *)x->data + s, x->data_len - s};
		}
		if (n == 0) {
			w = conn_xport_flush(c);
			if (w == -EAGAIN) {
				if (!c->tx_blocked) {
					c->tx_blocked = true;
					nbd_conn_update_events(c);
				}
				return;
			}
			if (w < 0) {
				nbd_conn_close(c, "send failed");
				return;
			}
			break;
		}
		for (int i = 0; i < n; i++)
			total += iov[i].iov_len;
		/* More replies beyond this batch: let TCP coalesce them. */
		w = conn_writev(c, iov, n, q != NULL);
		if (w == -EAGAIN)
			w = 0;
		if (w < 0) {
			LOG_DEBUG("%s: %s: send: %s", c->srv->name, c->peer, strerror((int)-w));
			nbd_conn_close(c, "send failed");
			return;
		}
		if (w > 0) {
			c->last_tx_ns = loop_now_ns();
			tx_consume(c, (size_t)w);
		}
		if ((size_t)w < total) {
			if (!c->tx_blocked) {
				c->tx_blocked = true;
				nbd_conn_update_events(c);
			}
			return;
		}
	}
	if (c->closed)
		return;
	if (c->tx_blocked) {
		c->tx_blocked = false;
		nbd_conn_update_events(c);
	}
	if (c->close_after_tx)
		nbd_conn_close(c, "closed after error reply");
	else if (c->draining && c->n_xio == 0)
		nbd_conn_close(c, "client disconnected");
	else if (c->rx == NBD_RX_TLS && !c->tls)
		conn_tls_step(c); /* the STARTTLS ACK is out */
	else
		nbd_conn_maybe_resume(c);
}

/* STARTTLS was answered and the ACK sent: start or go on with the TLS
 * handshake, on each readiness event; once it is done, options are read
 * again, through TLS (handshake.c checks who may see what). */
static void conn_tls_step(struct nbd_conn *c)
{
	int rc = c->tls ? 0 : nbd_tls_start(c);

	if (rc == 0)
		rc = nbd_tls_handshake(c);
	if (rc == -EAGAIN) {
		nbd_conn_update_events(c);
		return;
	}
	if (rc < 0) {
		c->srv->st.protocol_errors++;
		nbd_conn_close(c, NULL);
		return;
	}
	c->rx = NBD_RX_OPT;
	nbd_conn_update_events(c);
	conn_rx(c); /* the client's next options may be decoded already */
}

/* The connection task, installed here and posted by nbd_conn_schedule()
 * (conn.c): the one way the phases and conn.c get back to the send and
 * receive paths. Flush, then read if reading was resumed. */
static void conn_task(void *arg)
{
	struct nbd_conn *c = arg;

	if (!c->closed) {
		conn_flush(c);
		if (!c->closed && c->want_rx) {
			c->want_rx = false;
			conn_rx(c);
		}
	}
	nbd_conn_put(c); /* the queued task's reference */
}

/* ---- receive path ---- */

static void conn_pause(struct nbd_conn *c)
{
	c->rx_paused = true;
	nbd_conn_update_events(c);
}

static bool rx_mid_message(const struct nbd_conn *c)
{
	return c->rx == NBD_RX_PAYLOAD || c->rx == NBD_RX_DISCARD || c->rlen > c->rpos;
}

/* Parse what the receive buffer holds, as far as the state allows. */
static void conn_rx_process(struct nbd_conn *c)
{
	while (!c->closed && !c->rx_paused && !c->draining && !c->close_after_tx) {
		size_t avail = c->rlen - c->rpos;
		const uint8_t *p = c->rbuf + c->rpos;
		uint32_t opt, len;
		struct nbd_request req;
		size_t n;

		switch (c->rx) {
		case NBD_RX_CFLAGS:
			if (avail < 4)
				return;
			c->rpos += 4;
			if (nbd_hs_client_flags(c, get_be32(p)) < 0)
				return;
			c->rx = NBD_RX_OPT;
			break;
		case NBD_RX_OPT:
			if (c->hs_out.len - c->hs_out.off > NBD_HS_OUT_MAX) {
				conn_pause(c);
				return;
			}
			if (avail < NBD_OPT_HDR_LEN)
				return;
			if (nbd_parse_opt_hdr(p, &opt, &len) < 0) {
				nbd_conn_protocol_error(c, "bad option magic");
				return;
			}
			if (len > NBD_OPT_DATA_MAX) {
				if (opt == NBD_OPT_EXPORT_NAME || len > NBD_OPT_SKIP_MAX) {
					nbd_conn_protocol_error(
					    c, "option %u with %u bytes of data", opt, len);
					return;
				}
				c->rpos += NBD_OPT_HDR_LEN;
				c->rx = NBD_RX_DISCARD;
				c->rx_left = len;
				c->skip_opt = opt;
				break;
			}
			if (avail < NBD_OPT_HDR_LEN + len)
				return;
			c->rpos += NBD_OPT_HDR_LEN + len;
			nbd_hs_option(c, opt, p + NBD_OPT_HDR_LEN, len);
			break;
		case NBD_RX_REQ:
			if (nbd_conn_over_budget(c)) {
				conn_pause(c);
				nbd_conn_budget_wait(c);
				return;
			}
			if (avail < NBD_REQ_LEN)
				return;
			if (nbd_parse_request(p, &req) < 0) {
				nbd_conn_protocol_error(c, "bad request magic 0x%08x", get_be32(p));
				return;
			}
			c->rpos += NBD_REQ_LEN;
			nbd_xmit_request(c, &req);
			break;
		case NBD_RX_PAYLOAD:
			if (avail == 0)
				return;
			n = (size_t)MIN((uint64_t)avail, c->rx_left);
			memcpy(c->rx_dst, p, n);
			c->rx_dst += n;
			c->rx_left -= n;
			c->rpos += n;
			if (c->rx_left == 0)
				nbd_xmit_payload_done(c);
			break;
		case NBD_RX_TLS:
			return;
		case NBD_RX_DISCARD:
			if (avail == 0)
				return;
			n = (size_t)MIN((uint64_t)avail, c->rx_left);
			c->rx_left -= n;
			c->rpos += n;
			if (c->rx_left == 0) {
				if (c->xmit) {
					c->rx = NBD_RX_REQ;
				} else {
					c->rx = NBD_RX_OPT;
					nbd_hs_option_skipped(c, c->skip_opt);
				}
			}
			break;
		}
	}
}

/* One read: a WRITE payload straight into its buffer (and what follows
 * into the receive buffer), else into the receive buffer.
 * @return bytes read, 0 at EOF, or -errno; @p full when the read filled
 * all the space offered (the socket may hold more). */
static ssize_t conn_read(struct nbd_conn *c, bool *full)
{
	struct iovec iov[2];
	size_t want;
	ssize_t n;

	if (c->rpos == c->rlen) {
		c->rpos = c->rlen = 0;
	} else if (c->rpos > 0 && NBD_RBUF_SIZE - c->rlen < NBD_OPT_DATA_MAX + NBD_OPT_HDR_LEN) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	if (c->rx == NBD_RX_PAYLOAD && c->rlen == 0) {
		iov[0] = (struct iovec){c->rx_dst, c->rx_left};
		iov[1] = (struct iovec){c->rbuf, NBD_RBUF_SIZE};
		want = c->rx_left + NBD_RBUF_SIZE;
		n = conn_readv(c, iov, 2);
		if (n > 0) {
			size_t d = (size_t)MIN((uint64_t)n, c->rx_left);
			c->rx_dst += d;
			c->rx_left -= d;
			c->rlen = (size_t)n - d;
			if (c->rx_left == 0)
				nbd_xmit_payload_done(c);
		}
	} else {
		want = NBD_RBUF_SIZE - c->rlen;
		if (want == 0)
			return -EAGAIN; /* cannot happen: the parser always drains */
		iov[0] = (struct iovec){c->rbuf + c->rlen, want};
		n = conn_readv(c, iov, 1);
		if (n > 0)
			c->rlen += (size_t)n;
	}
	*full = n > 0 && (size_t)n == want;
	return n;
}

static void conn_eof(struct nbd_conn *c)
{
	if (rx_mid_message(c)) {
		LOG_INFO("%s: %s: client closed the connection mid-%s", c->srv->name, c->peer,
			 c->xmit ? "request" : "option");
		nbd_conn_close(c, NULL);
	} else if (!c->xmit) {
		nbd_conn_close(c, "client left during the handshake");
	} else {
		/* Like NBD_CMD_DISC: finish what is in flight, then close. */
		c->draining = true;
		nbd_conn_update_events(c);
	}
}

static void conn_rx(struct nbd_conn *c)
{
	nbd_conn_get(c);
	c->in_rx = true;
	conn_rx_process(c);
	for (int round = 0; round < RX_ROUNDS; round++) {
		bool full = false;
		ssize_t n;

		if (c->closed || c->rx_paused || c->draining || c->close_after_tx ||
		    c->rx == NBD_RX_TLS)
			break;
		n = conn_read(c, &full);
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			LOG_DEBUG("%s: %s: receive: %s", c->srv->name, c->peer, strerror((int)-n));
			nbd_conn_close(c, "receive failed");
			break;
		}
		if (n == 0) {
			conn_eof(c);
			break;
		}
		c->last_rx_ns = loop_now_ns();
		conn_rx_process(c);
		if (!full)
			break;
	}
	c->in_rx = false;
	/* Input decoded above the socket (TLS) raises no event: come back. */
	if (!c->closed && !c->rx_paused && !c->draining && c->rx != NBD_RX_TLS &&
	    conn_xport_pending(c)) {
		c->want_rx = true;
		nbd_conn_schedule(c);
	}
	if (!c->closed)
		conn_flush(c);
	nbd_conn_put(c);
}

static void conn_on_io(struct loop_io *lio, uint32_t events)
{
	struct nbd_conn *c = lio->arg;

	nbd_conn_get(c);
	if (events & EPOLLERR) {
		nbd_conn_close(c, "socket error");
	} else if (c->rx == NBD_RX_TLS) {
		if (c->tls)
			conn_tls_step(c);
		else if (events & EPOLLOUT)
			conn_flush(c); /* the STARTTLS ACK */
		if (!c->closed && c->rx == NBD_RX_TLS && (events & EPOLLHUP))
			nbd_conn_close(c, "hung up during STARTTLS");
	} else {
		if (events & EPOLLOUT)
			conn_flush(c);
		if (!c->closed && (events & (EPOLLIN | EPOLLHUP)))
			conn_rx(c);
		/* Both directions are gone: nothing more can be said. */
		if (!c->closed && (events & EPOLLHUP))
			nbd_conn_close(c, "hung up");
	}
	nbd_conn_put(c);
}

/* Handshake deadline; in transmission, a request or a reply stalled for a
 * whole timeout (the client stopped sending or reading mid-message). */
static void conn_timer(struct loop_timer *t)
{
	struct nbd_conn *c = t->arg;
	struct nbd_server *srv = c->srv;
	uint64_t now = loop_now_ns(), to = srv->timeout_ns;

	nbd_conn_get(c);
	if (!c->xmit) {
		if (now - c->start_ns >= to) {
			LOG_WARN("%s: %s: handshake not done after %u ms, disconnecting", srv->name,
				 c->peer, srv->opts.timeout_ms);
			srv->st.protocol_errors++;
			nbd_conn_close(c, NULL);
		} else {
			loop_timer_arm(srv->loop, t, c->start_ns + to - now);
		}
	} else if (!c->rx_paused && rx_mid_message(c) && now - c->last_rx_ns >= to) {
		LOG_WARN("%s: %s: request stalled for %u ms, disconnecting", srv->name, c->peer,
			 srv->opts.timeout_ms);
		srv->st.protocol_errors++;
		nbd_conn_close(c, NULL);
	} else if (c->tx_blocked && now - c->last_tx_ns >= to) {
		LOG_WARN("%s: %s: client read no reply for %u ms, disconnecting", srv->name,
			 c->peer, srv->opts.timeout_ms);
		srv->st.protocol_errors++;
		nbd_conn_close(c, NULL);
	} else {
		loop_timer_arm(srv->loop, t, to);
	}
	nbd_conn_put(c);
}

/* ---- connections ---- */

static int conn_create(struct nbd_server *srv, int fd, const struct nbd_xport *xp, void *arg)
{
	struct nbd_conn *c;
	int rc;

	if (srv->st.connections >= srv->opts.max_clients) {
		uint64_t now = loop_now_ns();
		/* One line per 10 s: a flood of clients must not flood the log. */
		srv->full_refused++;
		if (now - srv->full_logged_ns >= 10 * NS_PER_S) {
			LOG_WARN("%s: %u clients already, refused %llu since the last report",
				 srv->name, srv->opts.max_clients,
				 (unsigned long long)srv->full_refused);
			srv->full_logged_ns = now;
			srv->full_refused = 0;
		}
		if (fd >= 0)
			close(fd);
		return -EMFILE;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->rbuf = malloc(NBD_RBUF_SIZE))) {
		LOG_ERROR("%s: out of memory for a connection", srv->name);
		free(c);
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	c->srv = srv;
	c->fd = fd;
	c->xp = xp ? xp : &nbd_xport_socket;
	c->xp_arg = xp ? arg : c;
	c->refs = 1;
	slist_init(&c->txq);
	slist_init(&c->free_xio);
	list_init(&c->link);
	list_init(&c->budget_link);
	c->rx = NBD_RX_CFLAGS;
	c->start_ns = c->last_rx_ns = c->last_tx_ns = loop_now_ns();
	snprintf(c->peer, sizeof(c->peer), "memory");
	if (fd >= 0) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int one = 1;
		if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
			util_format_sockaddr((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
		if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		rc = util_set_nonblock(fd, true);
		if (rc == 0)
			rc = loop_io_add(srv->loop, &c->lio, fd, EPOLLIN, conn_on_io, c);
		if (rc < 0) {
			close(fd);
			free(c->rbuf);
			free(c);
			return rc;
		}
	}
	srv->refs++;
	loop_timer_init(&c->timer, conn_timer, c);
	loop_task_init(&c->task, conn_task, c);
	loop_timer_arm(srv->loop, &c->timer, srv->timeout_ns);
	list_add_head(&srv->conns, &c->link);
	srv->st.connections++;
	srv->st.accepted++;
	LOG_DEBUG("%s: %s: connected", srv->name, c->peer);
	nbd_conn_get(c);
	nbd_hs_greeting(c);
	conn_flush(c);
	nbd_conn_put(c);
	return 0;
}

/* [nbd] allow: a client from elsewhere is closed at once; one line per
 * second at most says so (with the count of those not logged). */
static bool srv_allowed(struct nbd_server *srv, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char peer[64] = "?";
	uint64_t now;

	if (srv->allow.n == 0)
		return true;
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    nbd_allow_match(&srv->allow, (struct sockaddr *)&ss))
		return true;
	close(fd);
	srv->st.refused++;
	now = loop_now_ns();
	if (srv->refused_log_ns && now - srv->refused_log_ns < REFUSED_LOG_NS) {
		srv->refused_quiet++;
		return false;
	}
	util_format_sockaddr((struct sockaddr *)&ss, peer, sizeof(peer));
	if (srv->refused_quiet)
		LOG_WARN("%s: %s: not in [nbd] allow, refused (and %llu more since the last line)",
			 srv->name, peer, (unsigned long long)srv->refused_quiet);
	else
		LOG_WARN("%s: %s: not in [nbd] allow, refused", srv->name, peer);
	srv->refused_log_ns = now;
	srv->refused_quiet = 0;
	return false;
}

static void srv_on_accept(struct loop_io *lio, uint32_t events)
{
	struct nbd_server *srv = lio->arg;

	(void)events;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			/* Out of descriptors or memory: pause accepting a while
			 * rather than spin on a listener that stays readable. */
			LOG_WARN("%s: accept: %s", srv->name, strerror(errno));
			loop_io_mod(srv->loop, &srv->lio, 0);
			loop_timer_arm(srv->loop, &srv->accept_timer, ACCEPT_BACKOFF_NS);
			return;
		}
		if (srv_allowed(srv, fd))
			conn_create(srv, fd, NULL, NULL);
	}
}

static void srv_accept_again(struct loop_timer *t)
{
	struct nbd_server *srv = t->arg;

	loop_io_mod(srv->loop, &srv->lio, EPOLLIN);
}

int nbd_server_add_fd(struct nbd_server *srv, int fd)
{
	return conn_create(srv, fd, NULL, NULL);
}

int nbd_server_add_xport(struct nbd_server *srv, const struct nbd_xport *xp, void *arg)
{
	return conn_create(srv, -1, xp, arg);
}

void nbd_server_kick(struct nbd_server *srv)
{
	struct list *pos, *tmp;

	list_for_each_safe(pos, tmp, &srv->conns)
	{
		struct nbd_conn *c = list_entry(pos, struct nbd_conn, link);
		if (c->fd < 0) {
			nbd_conn_get(c);
			if (c->tx_blocked)
				conn_flush(c); /* as on EPOLLOUT */
			if (!c->closed)
				conn_rx(c);
			nbd_conn_put(c);
		}
	}
}

unsigned nbd_server_close_export(struct nbd_server *srv, const char *name, const char *why)
{
	struct list *pos, *tmp;
	unsigned n = 0;

	if (!srv)
		return 0;
	list_for_each_safe(pos, tmp, &srv->conns)
	{
		struct nbd_conn *c = list_entry(pos, struct nbd_conn, link);
		if (c->xmit && !c->closed && strcmp(c->export_name, name) == 0) {
			nbd_conn_close(c, why);
			n++;
		}
	}
	return n;
}

unsigned nbd_server_export_clients(const struct nbd_server *srv, const char *name)
{
	const struct list *pos;
	unsigned n = 0;

	if (!srv)
		return 0;
	list_for_each(pos, &srv->conns)
	{
		const struct nbd_conn *c = list_entry(pos, struct nbd_conn, link);
		if (c->xmit && !c->closed && strcmp(c->export_name, name) == 0)
			n++;
	}
	return n;
}

/* ---- server ---- */

int nbd_server_create(struct loop *loop, const struct nbd_server_opts *opts,
		      const struct nbd_backend_ops *ops, void *ctx, struct nbd_server **out)
{
	struct nbd_server *srv;
	char err[128];
	int rc;

	if (!ops || !ops->open || !ops->close || !ops->submit) {
		LOG_ERROR("nbd: backend lacks open, close or submit");
		return -EINVAL;
	}
	srv = calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	srv->loop = loop;
	srv->opts = *opts;
	srv->opts.listen = NULL; /* the caller's string: not kept */
	srv->opts.name = NULL;
	snprintf(srv->name, sizeof(srv->name), "%s", opts->name ? opts->name : "nbd");
	if (!srv->opts.max_payload)
		srv->opts.max_payload = 32u << 20;
	if (!srv->opts.conn_buffer)
		srv->opts.conn_buffer = 64u << 20;
	if (!srv->opts.max_clients)
		srv->opts.max_clients = 1024;
	if (!srv->opts.timeout_ms)
		srv->opts.timeout_ms = 30000;
	if (srv->opts.max_payload < 4096 || srv->opts.max_payload > (1u << 30)) {
		LOG_ERROR("%s: max_payload %llu out of range (4 KiB..1 GiB)", srv->name,
			  (unsigned long long)srv->opts.max_payload);
		free(srv);
		return -EINVAL;
	}
	srv->opts.tls_certificates = srv->opts.tls_psk = srv->opts.allow = NULL;
	rc = nbd_allow_parse(opts->allow, &srv->allow, err, sizeof(err));
	if (rc < 0) {
		LOG_ERROR("%s: allow: %s", srv->name, err);
		free(srv);
		return rc;
	}
	srv->tls_mode = opts->tls;
	if (opts->tls != NBD_TLS_OFF) {
		rc = nbd_tls_create(opts, srv->name, &srv->tls);
		if (rc < 0) {
			free(srv);
			return rc;
		}
	}
	srv->timeout_ns = (uint64_t)srv->opts.timeout_ms * 1000000ull;
	if (srv->opts.budget)
		srv->opts.budget->refs++; /* dropped with the server's memory */
	srv->ops = ops;
	srv->ctx = ctx;
	srv->refs = 1;
	srv->lfd = -1;
	list_init(&srv->conns);
	loop_timer_init(&srv->accept_timer, srv_accept_again, srv);
	if (opts->listen) {
		srv->lfd = util_tcp_listen_flags(opts->listen, 128,
						 opts->freebind ? UTIL_LISTEN_FREEBIND : 0);
		if (srv->lfd < 0) {
			rc = srv->lfd;
			nbd_tls_destroy(srv->tls);
			nbd_server_put(srv);
			return rc;
		}
		rc = loop_io_add(loop, &srv->lio, srv->lfd, EPOLLIN, srv_on_accept, srv);
		if (rc < 0) {
			close(srv->lfd);
			nbd_tls_destroy(srv->tls);
			nbd_server_put(srv);
			return rc;
		}
		LOG_INFO("%s: listening on %s", srv->name, opts->listen);
	}
	*out = srv;
	return 0;
}

void nbd_server_destroy(struct nbd_server *srv)
{
	if (!srv)
		return;
	srv->destroyed = true;
	loop_timer_cancel(srv->loop, &srv->accept_timer);
	if (srv->lfd >= 0) {
		loop_io_del(srv->loop, &srv->lio);
		close(srv->lfd);
		srv->lfd = -1;
	}
	while (!list_empty(&srv->conns))
		nbd_conn_close(list_first_entry_or_null(&srv->conns, struct nbd_conn, link),
			       "server shutting down");
	/* Every session went with its connection: the credentials can go. */
	nbd_tls_destroy(srv->tls);
	srv->tls = NULL;
	nbd_server_put(srv);
}

void nbd_server_get_stats(const struct nbd_server *srv, struct nbd_server_stats *st)
{
	*st = srv->st;
}
