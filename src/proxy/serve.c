/* The serving side: the partner's forwarded requests, executed through the
 * local backend exactly as a command from this node's own NBD port.
 *
 * Exactly-once: the table of recent results (px->table, indexed by
 * seq % PX_TABLE) remembers, for the partner's current forwarder session,
 * every request still executing and the result of the recent ones. The
 * forwarder never has two requests PX_TABLE apart in flight, so an entry
 * is only replaced once the forwarder holds its answer. A request seen
 * again: still executing -> its one reply goes out when done; done and
 * already answered in this port session -> dropped; done otherwise -> the
 * stored result is sent (a read, which changes nothing, runs again to get
 * its data back); older than the table -> dropped. A request never reaches
 * the backend twice.
 *
 * Data: small WRITE data comes in the message and small READ data goes
 * back in the reply; bigger WRITE data is RDMA-read from the forwarder's
 * slot into this node's port memory and bigger READ data RDMA-written from
 * there into the slot, before the reply.
 *
 * Not serving (proxy_set_serving(false): this node is fenced): a request is
 * answered -EAGAIN at once and leaves no trace in the table; one that was
 * in progress when serving went false (its fence_gen is older) is answered
 * -EAGAIN where it stands: before execution it is dropped, after it the
 * result is replaced and its entry cleared. The forwarder sends it again
 * later under a new sequence number.
 *
 * Calls only port.c, pmem.c and wire.c of the proxy (never the forwarding
 * side), and the local backend; proxy.c calls it. */
#define LOG_MODULE "proxy"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/proxy_int.h"

static void sop_start(struct sop *s);
static void kick_bufq(struct pxport *p);
static void send_reply(struct sop *s);
static void reply_now(struct pxport *p, uint64_t session, uint64_t seq, int result);

/* ---- buffers and objects ---- */

/* A free buffer holds its own list node at its start. */
static void *buf_get(struct proxy *px)
{
	void *b = slist_pop_head(&px->free_bufs);

	if (b)
		return b;
	if (posix_memalign(&b, 4096, PX_POOL_BUF) != 0)
		return NULL;
	px->bufs_allocated++;
	return b;
}

static void buf_put(struct proxy *px, void *b)
{
	slist_push_head(&px->free_bufs, b);
}

static struct sop *sop_get(struct proxy *px)
{
	struct slist_node *n = slist_pop_head(&px->free_sops);
	struct sop *s = n ? slist_entry(n, struct sop, qnode) : malloc(sizeof(*s));

	if (s) {
		memset(s, 0, sizeof(*s));
		s->px = px;
		s->smem = -1;
	}
	return s;
}

static uint32_t sop_buf_len(const struct sop *s)
{
	if (s->cmd == NBD_CMD_BLOCK_STATUS)
		return s->io.max_extents * (uint32_t)sizeof(struct nbd_extent);
	return (uint32_t)s->io.length;
}

static void sop_release_buf(struct sop *s)
{
	if (!s->buf)
		return;
	if (s->smem >= 0)
		proxy_pmem_free(&s->port->smem, s->smem, sop_buf_len(s));
	else
		buf_put(s->px, s->buf);
	s->buf = NULL;
	s->smem = -1;
}

static void svol_release_if_idle(struct proxy *px, struct svol *v);

static void sop_free(struct sop *s)
{
	struct proxy *px = s->px;
	struct pxport *p = s->port;
	struct svol *v = s->vol;
	bool had_smem = s->smem >= 0;

	sop_release_buf(s);
	if (v) {
		s->vol = NULL;
		v->inflight--;
		svol_release_if_idle(px, v);
	}
	slist_push_head(&px->free_sops, &s->qnode);
	if (had_smem)
		kick_bufq(p);
}

static struct sent *entry_of(struct sop *s)
{
	struct sent *e = &s->px->table[s->seq & PX_TABLE_MASK];

	return (!s->orphan && e->seq == s->seq && e->sop == s && e->state == SE_EXEC) ? e : NULL;
}

/* Forget a request that did not execute, so that it can run when sent again. */
static void sop_drop(struct sop *s)
{
	struct sent *e = entry_of(s);

	if (e)
		memset(e, 0, sizeof(*e));
	sop_free(s);
}

static bool mutating(uint16_t cmd)
{
	return cmd == NBD_CMD_WRITE || cmd == NBD_CMD_TRIM || cmd == NBD_CMD_WRITE_ZEROES ||
	       cmd == NBD_CMD_FLUSH;
}

/* The port still talks to the forwarder session the request came from. */
static bool port_current(const struct pxport *p, uint64_t session)
{
	return p->up && p->helloed && p->fsession == session;
}

/* Serving went false since the request arrived (or is false now). */
static bool fenced(const struct sop *s)
{
	return !s->px->serving || s->fence_gen != s->px->fence_gen;
}

/* A request not yet executed when serving went false: answer "not
 * executed" and forget it. */
static void sop_refuse(struct sop *s)
{
	struct pxport *p = s->port;

	s->px->st.served_refused++;
	if (!s->orphan && port_current(p, s->session))
		reply_now(p, s->session, s->seq, -EAGAIN);
	sop_drop(s);
}

/* ---- volumes ---- */

static struct svol *svol_by_id(struct proxy *px, uint32_t id)
{
	struct list *pos;

	list_for_each(pos, &px->svols)
	{
		struct svol *v = list_entry(pos, struct svol, node);
		if (v->id == id && !v->gone)
			return v;
	}
	return NULL;
}

static void svol_release_if_idle(struct proxy *px, struct svol *v)
{
	if (!v->gone || v->inflight)
		return;
	list_del(&v->node);
	px->lops->close(px->lctx, v->handle);
	free(v);
}

struct list_ctx {
	struct proxy *px;
	unsigned n;
};

static void list_emit(void *arg, const char *name, const char *desc)
{
	struct list_ctx *lc = arg;
	struct proxy *px = lc->px;
	struct nbd_export_info info;
	struct svol *v = NULL;
	struct list *pos;
	void *h;

	(void)desc;
	if (!proxy_wire_name_ok(name, PX_NAME_MAX) || lc->n >= PX_MAX_VOLS)
		return;
	list_for_each(pos, &px->svols)
	{
		struct svol *w = list_entry(pos, struct svol, node);
		if (!w->gone && strcmp(w->name, name) == 0) {
			v = w;
			break;
		}
	}
	if (px->lops->open(px->lctx, name, &h, &info) < 0)
		return;
	if (v) {
		/* Known: refresh what may have changed (size). */
		v->info = info;
		px->lops->close(px->lctx, h);
	} else {
		v = calloc(1, sizeof(*v));
		if (!v) {
			px->lops->close(px->lctx, h);
			return;
		}
		v->id = px->next_vol_id++;
		snprintf(v->name, sizeof(v->name), "%s", name);
		v->handle = h;
		v->info = info;
		list_add_head(&px->svols, &v->node);
	}
	/* A volume that refuses a client without identity has an allow list. */
	v->restricted = px->lops->allowed && !px->lops->allowed(px->lctx, name, NULL, 0);
	v->mark = true;
	lc->n++;
}

static uint32_t vol_flags(const struct nbd_export_info *i)
{
	return (i->read_only ? PXV_READ_ONLY : 0) | (i->can_trim ? PXV_CAN_TRIM : 0) |
	       (i->can_zero ? PXV_CAN_ZERO : 0) | (i->can_fast_zero ? PXV_CAN_FAST_ZERO : 0) |
	       (i->can_cache ? PXV_CAN_CACHE : 0) | (i->can_flush ? PXV_CAN_FLUSH : 0) |
	       (i->can_fua ? PXV_CAN_FUA : 0) | (i->can_multi_conn ? PXV_CAN_MULTI_CONN : 0) |
	       (i->can_block_status ? PXV_CAN_BLOCK_STATUS : 0);
}

static bool pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* Send the whole list on @p p (several messages if long); false if the
 * channel had no room (sent again on send_ready). */
static bool send_vols(struct pxport *p)
{
	struct proxy *px = p->px;
	unsigned total = 0, sent = 0;
	struct list *pos;

	list_for_each(pos, &px->svols) total += !list_entry(pos, struct svol, node)->gone;
	do {
		unsigned n = 0;
		uint16_t flags = (uint16_t)((px->shelf << PX_F_SHELF_SHIFT) & PX_F_SHELF_MASK);
		size_t len;
		unsigned skip = sent;

		for (pos = px->svols.next; pos != &px->svols && skip; pos = pos->next)
			skip -= !list_entry(pos, struct svol, node)->gone;
		for (; pos != &px->svols && n < PX_VOLS_PER_MSG; pos = pos->next) {
			struct svol *v = list_entry(pos, struct svol, node);
			struct px_vol w;
			if (v->gone)
				continue;
			memset(&w, 0, sizeof(w));
			w.id = v->id;
			w.flags = vol_flags(&v->info) | (v->restricted ? PXV_RESTRICTED : 0);
			w.size = v->info.size;
			w.min_block = pow2(v->info.min_block) ? v->info.min_block : 1;
			w.pref_block = pow2(v->info.pref_block) && v->info.pref_block >= w.min_block
					   ? v->info.pref_block
					   : MAX(4096u, w.min_block);
			snprintf(w.name, sizeof(w.name), "%s", v->name);
			proxy_wire_put_vol(px->scratch, n++, &w);
		}
		if (sent == 0)
			flags |= PX_F_FIRST;
		if (sent + n == total)
			flags |= PX_F_LAST;
		len = proxy_wire_encode_vols_hdr(px->scratch, flags, n, px->vols_gen, px->session);
		if (proxy_port_send(p, px->scratch, len) < 0) {
			p->vols_pending = true;
			return false;
		}
		sent += n;
	} while (sent < total);
	p->vols_pending = false;
	return true;
}

/* Re-read the local volume list; tell the partner on @p only, or on the
 * first port it says hello on when NULL. Each reading takes a new
 * generation (never 0), so the forwarder can tell which of the lists it
 * got over different ports is the newest. */
void proxy_srv_refresh_vols(struct proxy *px, struct pxport *only)
{
	struct list_ctx lc = {px, 0};
	struct list *pos, *tmp;

	list_for_each(pos, &px->svols) list_entry(pos, struct svol, node)->mark = false;
	if (px->lops->list(px->lctx, list_emit, &lc) < 0)
		return;
	if (++px->vols_gen == 0)
		px->vols_gen = 1;
	list_for_each_safe(pos, tmp, &px->svols)
	{
		struct svol *v = list_entry(pos, struct svol, node);
		if (!v->mark && !v->gone) {
			v->gone = true;
			svol_release_if_idle(px, v);
		}
	}
	if (only) {
		send_vols(only);
		return;
	}
	for (unsigned i = 0; i < px->n_ports; i++) {
		struct pxport *p = &px->ports[i];
		if (p->helloed) {
			send_vols(p);
			break;
		}
	}
}

int proxy_srv_init(struct proxy *px)
{
	list_init(&px->svols);
	slist_init(&px->free_sops);
	slist_init(&px->free_bufs);
	px->next_vol_id = 1;
	px->serving = true;
	return 0;
}

void proxy_srv_set_serving(struct proxy *px, bool serving)
{
	struct slist_node *n;

	if (px->serving == serving)
		return;
	px->serving = serving;
	if (serving) {
		LOG_INFO("serving %s's forwarded requests again",
			 px->partner[0] ? px->partner : "the partner");
		return;
	}
	px->fence_gen++;
	LOG_INFO("not serving %s's forwarded requests (fenced): they are refused until served "
		 "again",
		 px->partner[0] ? px->partner : "the partner");
	/* Waiting for port memory: never started, refused now. Those reading
	 * their data or executing are refused when that completes. */
	for (unsigned i = 0; i < px->n_ports; i++) {
		struct pxport *p = &px->ports[i];
		while ((n = slist_pop_head(&p->bufq)))
			sop_refuse(slist_entry(n, struct sop, qnode));
	}
}

/* ---- execution ---- */

static void sop_io_done(struct nbd_io *io, int result);
static void sop_op_done(struct ccm_op *op, int status);

static void exec(struct sop *s)
{
	struct proxy *px = s->px;

	s->stage = SO_EXEC;
	px->st.served_inflight++;
	px->lops->submit(px->lctx, &s->io);
}

/* The partner's port session changed under a transfer: do it again in the
 * new one if it is the same forwarder session. */
static bool redrive(struct sop *s)
{
	struct pxport *p = s->port;

	if (s->orphan || !port_current(p, s->session) || p->epoch == s->epoch)
		return false;
	s->epoch = p->epoch;
	return true;
}

static void sop_start(struct sop *s)
{
	struct pxport *p = s->port;
	int rc;

	if (fenced(s)) {
		sop_refuse(s);
		return;
	}
	if (s->cmd == NBD_CMD_WRITE && s->smem >= 0) {
		s->stage = SO_RDMA_IN;
		rc = ccm_port_read(p->cp, &s->op, s->buf, s->io.length, s->data_off);
		if (rc < 0) {
			LOG_DEBUG("cannot read write data from the partner: %s", strerror(-rc));
			sop_drop(s);
		}
		return;
	}
	exec(s);
}

static void kick_bufq(struct pxport *p)
{
	if (p->in_kick)
		return;
	p->in_kick = true;
	while (!slist_empty(&p->bufq)) {
		struct sop *s = slist_entry(p->bufq.head, struct sop, qnode);
		int64_t off = proxy_pmem_alloc(&p->smem, sop_buf_len(s));
		if (off < 0)
			break;
		slist_pop_head(&p->bufq);
		s->smem = off;
		s->buf = p->mem + p->half + off;
		s->io.buf = s->buf;
		sop_start(s);
	}
	p->in_kick = false;
}

/* Answer without executing (a stored result, or an error), in order with
 * the other replies of the port. */
static void reply_now(struct pxport *p, uint64_t session, uint64_t seq, int result)
{
	struct sop *s = sop_get(p->px);

	if (!s)
		return; /* the forwarder gives up at its deadline */
	s->port = p;
	s->session = session;
	s->seq = seq;
	s->result = result;
	s->cmd = NBD_CMD_FLUSH; /* no data either way */
	send_reply(s);
}

static void respond(struct sop *s)
{
	struct pxport *p = s->port;
	int rc;

	if (s->orphan || !port_current(p, s->session)) {
		sop_free(s);
		return;
	}
	if (s->cmd == NBD_CMD_READ && s->result == 0 && !s->reply_inline) {
		s->stage = SO_RDMA_OUT;
		s->epoch = p->epoch;
		rc = ccm_port_write(p->cp, &s->op, s->buf, s->io.length, s->data_off,
				    CCM_WRITE_DELIVERED);
		if (rc < 0) {
			LOG_DEBUG("cannot write read data to the partner: %s", strerror(-rc));
			sop_free(s);
		}
		return;
	}
	send_reply(s);
}

static void send_reply(struct sop *s)
{
	struct proxy *px = s->px;
	struct pxport *p = s->port;
	struct pxm_rep m;
	size_t len, extra = 0;
	int rc;

	memset(&m, 0, sizeof(m));
	m.result = s->result;
	m.session = s->session;
	m.seq = s->seq;
	if (s->result == 0 && s->cmd == NBD_CMD_READ) {
		m.length = (uint32_t)s->io.length;
		if (s->reply_inline) {
			m.flags = PX_F_INLINE;
			extra = s->io.length;
		}
	} else if (s->result == 0 && s->cmd == NBD_CMD_BLOCK_STATUS) {
		m.count = MIN(s->io.n_extents, s->io.max_extents);
		extra = m.count * sizeof(struct px_ext);
	}
	len = proxy_wire_encode_rep(px->scratch, &m);
	if (m.flags & PX_F_INLINE) {
		rc = proxy_port_send2(p, px->scratch, len, s->buf, extra);
	} else {
		const struct nbd_extent *e = (const struct nbd_extent *)(void *)s->buf;
		for (unsigned i = 0; i < m.count; i++)
			proxy_wire_put_ext(px->scratch, i, e[i].length, e[i].flags);
		rc = proxy_port_send(p, px->scratch, len + extra);
	}
	if (rc == -EAGAIN) {
		s->stage = SO_REPLYWAIT;
		slist_push_tail(&p->repq, &s->qnode);
		return;
	}
	if (rc == 0) {
		struct sent *e = &px->table[s->seq & PX_TABLE_MASK];
		if (!s->orphan && e->seq == s->seq && e->state == SE_DONE)
			e->replied_epoch = p->epoch;
	}
	sop_free(s);
}

static void sop_io_done(struct nbd_io *io, int result)
{
	struct sop *s = container_of(io, struct sop, io);
	struct proxy *px = s->px;
	struct sent *e;

	px->st.served_inflight--;
	if (px->dead) {
		sop_release_buf(s);
		free(s);
		return;
	}
	/* -EAGAIN on the wire means "not executed": never the backend's. */
	if (result > 0 || result == -EAGAIN)
		result = -EIO;
	px->st.served++;
	if (fenced(s) || result == PROXY_MOVED) {
		/* Relocated to us (PROXY_MOVED): never executed, the partner
		 * serves it now and runs it there. */
		/* Fenced while it ran: whatever it did, the partner does it
		 * again (locally after a takeover, or here once given back). */
		e = entry_of(s);
		if (e)
			memset(e, 0, sizeof(*e));
		s->result = -EAGAIN;
		px->st.served_refused++;
		respond(s);
		return;
	}
	if (result == 0 && s->cmd == NBD_CMD_BLOCK_STATUS &&
	    (io->n_extents == 0 || io->n_extents > io->max_extents))
		result = -EIO;
	s->result = result;
	if (result == 0 && (s->cmd == NBD_CMD_READ || s->cmd == NBD_CMD_WRITE))
		px->st.served_bytes += io->length;
	e = entry_of(s);
	if (e) {
		e->state = SE_DONE;
		e->result = result;
		e->sop = NULL;
		e->mutating = mutating(s->cmd);
	}
	respond(s);
}

static void sop_op_done(struct ccm_op *op, int status)
{
	struct sop *s = op->arg;

	if (s->px->dead) {
		sop_release_buf(s);
		free(s);
		return;
	}
	if (s->stage == SO_RDMA_IN) {
		if (fenced(s)) {
			sop_refuse(s);
		} else if (status == 0) {
			exec(s);
		} else if (redrive(s)) {
			int rc =
			    ccm_port_read(s->port->cp, &s->op, s->buf, s->io.length, s->data_off);
			if (rc < 0)
				sop_drop(s);
		} else {
			LOG_DEBUG("reading write data from the partner failed: %s",
				  strerror(-status));
			if (status != -ECONNRESET && status != -ECANCELED && status != -ESHUTDOWN &&
			    port_current(s->port, s->session)) {
				/* Not a session loss: tell the forwarder now. */
				reply_now(s->port, s->session, s->seq, -EIO);
			}
			sop_drop(s);
		}
		return;
	}
	/* SO_RDMA_OUT: executed before any fence, its result stands; but once
	 * fenced, a transfer cut by a session loss is not done again (the
	 * request, sent again, is refused and its slot freed). */
	if (status == 0) {
		send_reply(s);
	} else if (!fenced(s) && redrive(s)) {
		if (ccm_port_write(s->port->cp, &s->op, s->buf, s->io.length, s->data_off,
				   CCM_WRITE_DELIVERED) < 0)
			sop_free(s);
	} else {
		LOG_DEBUG("writing read data to the partner failed: %s", strerror(-status));
		if (status != -ECONNRESET && status != -ECANCELED && status != -ESHUTDOWN &&
		    port_current(s->port, s->session))
			reply_now(s->port, s->session, s->seq, -EIO);
		sop_free(s);
	}
}

/* ---- requests ---- */

/* Check what the decoder cannot: the session, the volume, the range and
 * where the data is. @return 0 or the errno to answer with. */
static int check_req(struct pxport *p, const struct pxm_req *m, struct svol **vp)
{
	struct proxy *px = p->px;
	struct svol *v = svol_by_id(px, m->vol);

	if (!v && m->vol && m->vol < px->next_vol_id)
		return -EAGAIN; /* listed before, not now (relocated): not executed */
	if (!v) {
		proxy_log_bad(px, false, "request", "unknown volume");
		return -ENXIO;
	}
	*vp = v;
	if (m->cmd != NBD_CMD_FLUSH && m->offset + m->length > v->info.size) {
		proxy_log_bad(px, false, "request", "range beyond the volume");
		return -EINVAL;
	}
	if (m->cmd == NBD_CMD_WRITE && v->info.read_only)
		return -EPERM;
	if (m->cmd == NBD_CMD_BLOCK_STATUS && !v->info.can_block_status) {
		proxy_log_bad(px, false, "request", "block status not offered");
		return -EINVAL;
	}
	if ((m->cmd == NBD_CMD_READ || m->cmd == NBD_CMD_WRITE) && !(m->flags & PX_F_INLINE)) {
		if (m->length > p->smem.units * (uint64_t)PX_UNIT) {
			proxy_log_bad(px, false, "request", "longer than the serving memory");
			return -EINVAL;
		}
		if (m->data_off > p->data_size || m->length > p->data_size - m->data_off) {
			proxy_log_bad(px, false, "request", "data outside the forwarder's memory");
			return -EINVAL;
		}
	}
	return 0;
}

void proxy_srv_on_req(struct pxport *p, const void *msg, size_t len)
{
	struct proxy *px = p->px;
	struct pxm_req m;
	const char *why;
	struct sent *e;
	struct svol *v = NULL;
	struct sop *s;
	int rc;

	if (proxy_wire_decode_req(msg, len, &m, &why) < 0) {
		proxy_log_bad(px, false, "request", why);
		return;
	}
	if (!p->helloed || m.session != p->fsession || m.session != px->table_session) {
		proxy_log_bad(px, false, "request", "not of the port's session");
		return;
	}
	e = &px->table[m.seq & PX_TABLE_MASK];
	if (!px->serving && !(m.flags & PX_F_NOEXEC)) {
		if (e->state != SE_EMPTY && e->seq == m.seq) {
			if (e->state == SE_EXEC || e->replied_epoch == p->epoch) {
				/* Its one reply (-EAGAIN if it was still in
				 * progress) is out or goes out when done. */
				px->st.duplicates++;
				return;
			}
			/* Done before: forgotten, it runs when sent again. */
			memset(e, 0, sizeof(*e));
		}
		px->st.served_refused++;
		reply_now(p, m.session, m.seq, -EAGAIN);
		return;
	}
	if (e->state != SE_EMPTY) {
		if (e->seq == m.seq) {
			px->st.duplicates++;
			if (e->state == SE_EXEC)
				return; /* its reply goes out when it is done */
			if (e->replied_epoch == p->epoch)
				return; /* answered in this session already */
			if (e->mutating || (m.flags & PX_F_NOEXEC)) {
				reply_now(p, m.session, m.seq, e->result);
				return;
			}
			/* A read (or the like) whose data is gone: run it again. */
		} else if (e->seq > m.seq) {
			px->st.duplicates++;
			LOG_DEBUG("request %llu is older than the table: dropped",
				  (unsigned long long)m.seq);
			return;
		} else if (e->state == SE_EXEC) {
			proxy_log_bad(px, false, "request", "sequence number too far ahead");
			return;
		}
	}
	if (m.flags & PX_F_NOEXEC) {
		/* Abandoned by the forwarder and never seen here: it never runs. */
		memset(e, 0, sizeof(*e));
		e->seq = m.seq;
		e->state = SE_DONE;
		e->result = -ECANCELED;
		e->mutating = true;
		reply_now(p, m.session, m.seq, -ECANCELED);
		return;
	}
	rc = check_req(p, &m, &v);
	if (rc == -EAGAIN)
		px->st.served_refused++;
	if (rc < 0) {
		reply_now(p, m.session, m.seq, rc);
		return;
	}
	s = sop_get(px);
	if (!s) {
		reply_now(p, m.session, m.seq, -ENOMEM);
		return;
	}
	s->port = p;
	s->vol = v;
	v->inflight++;
	s->session = m.session;
	s->seq = m.seq;
	s->data_off = m.data_off;
	s->epoch = p->epoch;
	s->fence_gen = px->fence_gen;
	s->cmd = m.cmd;
	s->io.type = m.cmd;
	s->io.flags = m.cflags;
	s->io.offset = m.offset;
	s->io.length = m.length;
	s->io.export_handle = v->handle;
	s->io.complete = sop_io_done;
	s->io.complete_arg = s;
	s->op.done = sop_op_done;
	s->op.arg = s;
	if (m.cmd == NBD_CMD_BLOCK_STATUS)
		s->io.max_extents = m.max_extents;
	memset(e, 0, sizeof(*e));
	e->seq = m.seq;
	e->state = SE_EXEC;
	e->sop = s;
	e->mutating = mutating(m.cmd);

	if (m.cmd == NBD_CMD_BLOCK_STATUS ||
	    ((m.cmd == NBD_CMD_READ || m.cmd == NBD_CMD_WRITE) && (m.flags & PX_F_INLINE))) {
		s->buf = buf_get(px);
		if (!s->buf) {
			sop_drop(s);
			reply_now(p, m.session, m.seq, -ENOMEM);
			return;
		}
		s->reply_inline = m.cmd == NBD_CMD_READ;
		if (m.cmd == NBD_CMD_WRITE)
			memcpy(s->buf, m.data, m.length);
		if (m.cmd == NBD_CMD_BLOCK_STATUS)
			s->io.extents = (struct nbd_extent *)s->buf;
		else
			s->io.buf = s->buf;
	} else if (m.cmd == NBD_CMD_READ || m.cmd == NBD_CMD_WRITE) {
		/* Port memory, in order: wait behind earlier requests. */
		s->stage = SO_BUFWAIT;
		slist_push_tail(&p->bufq, &s->qnode);
		kick_bufq(p);
		return;
	}
	sop_start(s);
}

void proxy_srv_on_hello(struct pxport *p, const void *msg, size_t len)
{
	struct proxy *px = p->px;
	struct pxm_hello h;
	const char *why;

	if (proxy_wire_decode_hello(msg, len, &h, &why) < 0) {
		proxy_log_bad(px, false, "hello", why);
		return;
	}
	if (h.session != px->table_session) {
		/* A new forwarder (the partner restarted): what ran for the old
		 * one is no one's business any more. */
		for (unsigned i = 0; i < PX_TABLE; i++) {
			struct sent *e = &px->table[i];
			if (e->state == SE_EXEC)
				e->sop->orphan = true;
		}
		memset(px->table, 0, sizeof(px->table));
		px->table_session = h.session;
	}
	p->fsession = h.session;
	p->data_size = MIN(h.data_size, ccm_port_remote_size(p->cp));
	p->helloed = true;
	p->epoch = ++px->epoch_ctr;
	if (h.chunk > p->smem.units * (uint64_t)PX_UNIT)
		LOG_WARN(
		    "partner %s forwards requests of %llu bytes; this node serves at most %llu "
		    "(raise [proxy] port_mem)",
		    px->partner, (unsigned long long)h.chunk,
		    (unsigned long long)(p->smem.units * (uint64_t)PX_UNIT));
	proxy_srv_refresh_vols(px, p);
}

/* ---- port events ---- */

void proxy_srv_port_up(struct pxport *p)
{
	p->helloed = false;
	p->vols_pending = false;
}

void proxy_srv_port_down(struct pxport *p)
{
	struct slist_node *n;

	p->helloed = false;
	p->vols_pending = false;
	/* Not started: forget them (they run when sent again). */
	while ((n = slist_pop_head(&p->bufq)))
		sop_drop(slist_entry(n, struct sop, qnode));
	/* Done, reply lost: the table keeps the result for the resend. */
	while ((n = slist_pop_head(&p->repq)))
		sop_free(slist_entry(n, struct sop, qnode));
}

void proxy_srv_flush(struct pxport *p)
{
	struct slist_node *n;

	if (p->vols_pending && !send_vols(p))
		return;
	while (!p->blocked && (n = slist_pop_head(&p->repq)))
		send_reply(slist_entry(n, struct sop, qnode)); /* may queue it again */
}

void proxy_srv_free(struct proxy *px)
{
	struct slist_node *n;
	struct svol *v;

	while ((n = slist_pop_head(&px->free_sops)))
		free(slist_entry(n, struct sop, qnode));
	while ((n = slist_pop_head(&px->free_bufs)))
		free(n);
	while ((v = list_first_entry_or_null(&px->svols, struct svol, node))) {
		list_del(&v->node);
		px->lops->close(px->lctx, v->handle);
		free(v);
	}
}
