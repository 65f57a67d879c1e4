/* The forwarding side's sending: a request gets its port, sequence number
 * and slot when first sent and keeps them until answered, so that a
 * request sent again after a session loss is recognised by the partner.
 * WRITE data above PX_INLINE_MAX, and READ data above it or under load
 * (PX_READ_INLINE_LOAD), lives in the request's slot of this node's port
 * memory: the partner RDMA-reads WRITE data from it and RDMA-writes READ
 * data into it. Also the port and session events, which decide what is
 * sent again: a port says HELLO first each session, then what was in
 * flight there goes again, then new requests in submission order.
 *
 * Calls fw_request.c, port.c, pmem.c and wire.c; called by the files
 * above it and by proxy.c's dispatcher. */
#define LOG_MODULE "proxy"
#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/proxy_int.h"

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
	size_t len = proxy_wire_encode_hello(px->scratch, &h);
	int rc = proxy_port_send(p, px->scratch, len);

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
	len = proxy_wire_encode_req_hdr(px->scratch, &m);
	rc = proxy_port_send2(p, px->scratch, len, data, data ? r->length : 0);
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
	/* A resent request's reply says nothing of the round trip. */
	r->sent_ns = r->sent_once ? 0 : loop_last_turn_ns(px->loop);
	if (r->sent_once)
		px->st.retries++;
	r->sent_once = true;
	return 0;
}

/* The partner's table of results spans PX_TABLE sequence numbers: never
 * have two in flight further apart. */
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
			*slot = proxy_pmem_alloc(&p->fmem, r->length);
			if (*slot < 0)
				continue;
		}
		px->rr = p->idx;
		return p;
	}
	return NULL;
}

/* A WRITE whose data the NBD server received into a lent slot sends from
 * it when its port is ready (else from a slot of its own, copied as any). */
static struct pxport *lent_port(struct preq *r, int64_t *slot)
{
	struct pslot *s = r->lent;

	if (!s || !r->cmd || s->port->fstate != FP_READY || s->port->blocked)
		return NULL;
	s->users++;
	r->borrowed = true;
	*slot = s->off;
	return s->port;
}

void proxy_fw_pump(struct proxy *px)
{
	struct preq *r;

	/* Ports coming back: hello first, then what was in flight there. */
	for (unsigned i = 0; i < px->n_ports; i++) {
		struct pxport *p = &px->ports[i];
		if (p->up && px->session_up && p->hello_pending && !p->blocked)
			send_hello(p);
		if (p->fstate != FP_READY)
			continue;
		while (!p->blocked && (r = proxy_fw_q_pop(&p->rq))) {
			int rc = send_req(p, r);
			if (rc == -EAGAIN) {
				list_add_head(&p->rq, &r->qnode);
				break;
			}
			if (rc < 0)
				proxy_fw_req_finish(px, r, rc);
		}
	}
	/* New requests, in order of submission. */
	while ((r = list_first_entry_or_null(&px->waitq, struct preq, qnode))) {
		struct pxport *p;
		int64_t slot;
		int rc;

		if (r->cmd && !r->cmd->vol->id_valid) {
			/* The partner does not list it (now): relocated, the new
			 * owner lists it soon, or its deadline fails it. */
			list_del(&r->qnode);
			proxy_fw_park(px, r);
			continue;
		}
		if (!seq_room(px))
			break;
		p = lent_port(r, &slot);
		if (!p)
			p = pick_port(px, r, &slot);
		if (!p)
			break;
		list_del(&r->qnode);
		r->port = p;
		r->slot = slot;
		r->seq = px->next_seq++;
		px->outstanding[r->seq & PX_TABLE_MASK] = r;
		p->outstanding++;
		if (r->length <= PX_INLINE_MAX)
			px->small_outstanding++;
		r->state = PR_RESEND;
		if (r->type == NBD_CMD_WRITE && slot >= 0 && !r->borrowed)
			memcpy(p->mem + slot, (const uint8_t *)r->cmd->nio->buf + r->buf_off,
			       r->length);
		rc = send_req(p, r);
		if (rc == -EAGAIN)
			proxy_fw_q_append(&p->rq, r);
		else if (rc < 0)
			proxy_fw_req_finish(px, r, rc);
	}
}

/* ---- port and session events ---- */

void proxy_fw_port_up(struct pxport *p)
{
	p->fstate = FP_DOWN;
	p->hello_pending = false;
	if (p->px->session_up)
		send_hello(p);
}

/* Everything sent on the port is in doubt: send it again (same sequence
 * number, same slot) once the port is back. */
void proxy_fw_port_down(struct pxport *p)
{
	struct proxy *px = p->px;

	p->fstate = FP_DOWN;
	p->hello_pending = false;
	for (uint64_t s = px->oldest_seq; s < px->next_seq; s++) {
		struct preq *r = px->outstanding[s & PX_TABLE_MASK];
		if (r && r->port == p && r->state == PR_SENT) {
			r->state = PR_RESEND;
			proxy_fw_q_append(&p->rq, r);
		}
	}
}

void proxy_fw_partner_ready(struct proxy *px, uint64_t generation)
{
	if (px->partner_gen && generation != px->partner_gen) {
		/* A new partner process: it knows nothing of our abandoned
		 * requests and its port memory is new; drop them. The others
		 * are sent again and executed there. */
		unsigned dropped = 0;
		struct list *pos;
		for (uint64_t s = px->oldest_seq; s < px->next_seq; s++) {
			struct preq *r = px->outstanding[s & PX_TABLE_MASK];
			if (r && !r->cmd) {
				proxy_fw_req_finish(px, r, 0);
				dropped++;
			}
		}
		list_for_each(pos, &px->vols) list_entry(pos, struct pvol, node)->id_valid = false;
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
