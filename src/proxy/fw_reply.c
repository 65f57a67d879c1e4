/* The forwarding side's replies: a reply is matched to its request by
 * sequence number, port and state (anything else is a late duplicate and
 * ignored), its payload checked against the request and delivered: READ
 * data copied into the NBD buffer, or, for a READ that is its command's
 * whole data, left in its slot for the NBD server to send from (hold_slot,
 * released by slot_release once the reply left).
 *
 * A reply -EAGAIN means the partner did not execute the request (it does
 * not serve now: fenced). The request gives back its sequence number and
 * slot and is parked; the retry timer puts the parked requests back at the
 * front of the wait queue, in submission order, and they are sent again as
 * new ones. Their command's deadline keeps running.
 *
 * Calls fw_send.c (to send what the reply made room for), fw_request.c,
 * port.c, pmem.c and wire.c. */
#define LOG_MODULE "proxy"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/proxy_int.h"

/* nbd_io.release of a READ sent from its slot: the reply has left (or
 * its connection closed), the slot is free for the next request. */
static void slot_release(struct nbd_io *nio)
{
	struct preq *r = nio->release_arg;
	struct pxport *p = r->port;
	struct proxy *px;

	if (!p) {
		/* The proxy is gone (proxy_fw_held_orphan): only its memory
		 * waited for this. */
		proxy_pmem_maps_put(r->maps);
		free(r);
		return;
	}
	px = p->px;
	list_del(&r->qnode);
	proxy_pmem_free(&p->fmem, r->slot, r->length);
	p->held -= proxy_pmem_units(r->length);
	r->port = NULL;
	r->slot = -1;
	proxy_fw_req_put(px, r);
	if (!list_empty(&px->waitq))
		proxy_fw_pump(px); /* it may have waited for a slot */
}

/* Answer @p r's READ from its slot, without a copy: the NBD server sends
 * it from there (nbd_io.reply_buf) and @p r, PR_HELD, keeps the slot until
 * the server's release. No other request can get that slot meanwhile
 * (nothing else frees it: not a port or session loss, not the partner's
 * restart), and held slots stay under half of a port's forwarder memory,
 * so that clients slow to read their replies cannot starve the others of
 * slots: beyond, the data is copied. @return whether it held. */
static bool hold_slot(struct preq *r)
{
	struct nbd_io *nio = r->cmd->nio;
	struct pxport *p = r->port;

	/* Only an io its NBD server sends itself (no completion hook), and
	 * only a command's whole data (a split one is gathered in its buffer). */
	if (nio->complete || r->slot < 0 || r->length != nio->length ||
	    !proxy_fw_hold_room(p, r->length))
		return false;
	p->held += proxy_pmem_units(r->length);
	r->state = PR_HELD;
	nio->reply_buf = p->mem + r->slot;
	nio->release = slot_release;
	nio->release_arg = r;
	return true;
}

/* Check a successful reply's payload against its request and deliver the
 * data; a reply that does not match fails the request with EIO. */
static int take_result(struct proxy *px, struct pxport *p, struct preq *r, const struct pxm_rep *m)
{
	struct nbd_io *nio = r->cmd->nio;

	switch (r->type) {
	case NBD_CMD_READ:
		if (m->length != r->length) {
			proxy_log_bad(px, true, "reply", "read length mismatch");
			return -EIO;
		}
		if (m->flags & PX_F_INLINE) {
			if (r->slot >= 0) {
				proxy_log_bad(px, true, "reply", "inline data for a slot");
				return -EIO;
			}
			memcpy((uint8_t *)nio->buf + r->buf_off, m->data, r->length);
		} else {
			if (r->slot < 0) {
				proxy_log_bad(px, true, "reply", "no data");
				return -EIO;
			}
			if (!hold_slot(r))
				memcpy((uint8_t *)nio->buf + r->buf_off, p->mem + r->slot,
				       r->length);
		}
		return 0;
	case NBD_CMD_BLOCK_STATUS: {
		uint64_t sum = 0;
		if (m->count == 0 || m->count > r->max_extents) {
			proxy_log_bad(px, true, "reply", "extent count out of range");
			return -EIO;
		}
		for (unsigned i = 0; i < m->count; i++) {
			uint64_t len;
			uint32_t fl;
			proxy_wire_ext_get(m, i, &len, &fl);
			/* The last extent may run past the request (the NBD
			 * server clips it at the end of the volume). */
			if (len == 0 || (fl & ~(uint32_t)(NBD_STATE_HOLE | NBD_STATE_ZERO)) ||
			    sum + len < sum) {
				proxy_log_bad(px, true, "reply", "bad extent");
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
			proxy_log_bad(px, true, "reply", "data on a command without any");
			return -EIO;
		}
		return 0;
	}
}

/* Put the parked requests back on the wait queue: merged by submission
 * order, so that they go ahead of newer ones and keep their own order. */
void proxy_fw_retry_fire(struct loop_timer *t)
{
	struct proxy *px = t->arg;
	struct list *w = px->waitq.next;
	struct preq *r;

	while ((r = proxy_fw_q_pop(&px->parked))) {
		while (w != &px->waitq && list_entry(w, struct preq, qnode)->order < r->order)
			w = w->next;
		r->state = PR_WAIT;
		list_add_tail(w, &r->qnode); /* just before w */
	}
	proxy_fw_pump(px);
}

/* Park @p r in submission order (refusals usually come in that order:
 * appending is the common case, the search the exception). */
static void park(struct proxy *px, struct preq *r)
{
	struct list *pos = px->parked.next;
	struct preq *last =
	    px->parked.prev != &px->parked ? list_entry(px->parked.prev, struct preq, qnode) : NULL;

	r->state = PR_PARKED;
	if (!last || last->order < r->order) {
		proxy_fw_q_append(&px->parked, r);
		return;
	}
	while (pos != &px->parked && list_entry(pos, struct preq, qnode)->order < r->order)
		pos = pos->next;
	list_add_tail(pos, &r->qnode); /* just before pos */
}

/* The partner refused @p r without executing it (not serving): it becomes
 * a request not yet sent again, parked until the retry timer. */
static void req_refused(struct proxy *px, struct preq *r)
{
	uint64_t now = loop_now_ns();

	px->st.refused++;
	if (!px->refused_logged_ns || now - px->refused_logged_ns >= NS_PER_S) {
		px->refused_logged_ns = now;
		LOG_INFO("partner %s does not serve its volumes now: requests wait and are sent "
			 "again (%llu refused so far)",
			 px->partner[0] ? px->partner : "?", (unsigned long long)px->st.refused);
	}
	if (!r->cmd) {
		proxy_fw_req_finish(px, r, 0); /* abandoned: not executed, nothing to do */
		return;
	}
	proxy_fw_req_release(px, r);
	r->sent_once = false;
	proxy_fw_park(px, r);
}

void proxy_fw_park(struct proxy *px, struct preq *r)
{
	park(px, r);
	if (!loop_timer_armed(&px->retry_timer))
		loop_timer_arm(px->loop, &px->retry_timer, PX_RETRY_NS);
}

/* The round trip of a small request sent once (a moving average over
 * about 8):
 * how long a batch may wait for company under load (port.c). */
static void note_rtt(struct proxy *px, const struct preq *r)
{
	uint64_t now = loop_last_turn_ns(px->loop);

	if (r->state != PR_SENT || !r->sent_ns || now < r->sent_ns || r->length > PX_INLINE_MAX)
		return;
	px->rtt_ns = px->rtt_ns - px->rtt_ns / 8 + (now - r->sent_ns) / 8;
}

void proxy_fw_on_rep(struct pxport *p, const void *msg, size_t len)
{
	struct proxy *px = p->px;
	struct pxm_rep m;
	const char *why;
	struct preq *r;
	int res;

	if (proxy_wire_decode_rep(msg, len, &m, &why) < 0) {
		proxy_log_bad(px, true, "reply", why);
		return;
	}
	if (m.session != px->session) {
		proxy_log_bad(px, true, "reply", "not of this session");
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
		proxy_fw_pump(px);
		return;
	}
	note_rtt(px, r);
	if (r->cmd && res == 0)
		res = take_result(px, p, r, &m);
	proxy_fw_req_finish(px, r, res);
	proxy_fw_pump(px);
}
