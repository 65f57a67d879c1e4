/* Reliable, ordered message channels over several lanes (docs/CCM.md,
 * "Message channels").
 *
 * Every message carries a per-channel sequence number and a cumulative ack
 * of the reverse direction. The sender keeps each message until it is
 * acked and sends it again on another lane when its lane dies or after a
 * retransmission timeout; the receiver delivers in order, holds messages
 * that arrive early (another lane was faster) and drops duplicates.
 *
 * Layering: calls lane.c (to fail lanes) and lane_rules.c (to pick and account them) and crypto.c
 * (MACs); hands a delivered control message up through ccm_sess_on_ctl and
 * a write_notify acked by the partner through ccm_op_finish.
 */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W_MASK (CHAN_WINDOW - 1)
static_assert((CHAN_WINDOW & W_MASK) == 0, "window is a power of two");

static void tx_done(struct fab_op *op, int status);
static void ack_done(struct fab_op *op, int status);

void ccm_chan_init(struct ccm_chan *ch, struct ccm *ccm, struct ccm_port *port)
{
	memset(ch, 0, sizeof(*ch));
	ch->ccm = ccm;
	ch->port = port;
	ch->inst = port ? port->inst : 0;
	ch->tx_next = 1;
	ch->rx_next = 1;
	ch->gen = 1;
	for (unsigned i = 0; i < CHAN_WINDOW; i++) {
		ch->tx[i].ch = ch;
		ch->tx[i].fop.done = tx_done;
		ch->tx[i].fop.arg = &ch->tx[i];
	}
	ch->ack_fop.done = ack_done;
	ch->ack_fop.arg = ch;
	list_init(&ch->ack_node);
}

/* Forget every message of the old session (buffers are kept for reuse;
 * sends still in flight complete later and are ignored). */
void ccm_chan_reset(struct ccm_chan *ch)
{
	ch->gen++;
	for (unsigned i = 0; i < CHAN_WINDOW; i++) {
		struct tx_slot *s = &ch->tx[i];
		s->state = TX_FREE;
		s->acked = false;
		s->op = NULL;
		ch->rx[i].full = false;
	}
	ch->tx_next = 1;
	ch->tx_acked = 0;
	ch->rx_next = 1;
	ch->ack_due = false;
	ch->ack_sent = 0;
	ch->want_send_ready = false;
}

void ccm_chan_free(struct ccm_chan *ch)
{
	/* Off the list of channels waiting to send an ack. */
	list_del(&ch->ack_node);
	for (unsigned i = 0; i < CHAN_WINDOW; i++) {
		free(ch->tx[i].buf);
		ch->tx[i].buf = NULL;
		free(ch->rx[i].buf);
		ch->rx[i].buf = NULL;
	}
}

bool ccm_chan_busy(const struct ccm_chan *ch)
{
	if (ch->ack_busy)
		return true;
	for (unsigned i = 0; i < CHAN_WINDOW; i++)
		if (ch->tx[i].busy)
			return true;
	return false;
}

/* Fail the operations waiting for an ack (write_notify). */
void ccm_chan_fail_ops(struct ccm_chan *ch, int status)
{
	for (unsigned i = 0; i < CHAN_WINDOW; i++) {
		struct ccm_op *op = ch->tx[i].op;
		if (op) {
			ch->tx[i].op = NULL;
			ccm_op_finish(op, status);
		}
	}
}

static uint64_t chan_inflight(const struct ccm_chan *ch)
{
	return ch->tx_next - 1 - ch->tx_acked;
}

static bool chan_has_room(const struct ccm_chan *ch, bool reserved)
{
	uint64_t used = chan_inflight(ch) + (reserved ? 0 : ch->reserved);

	if (used >= CHAN_WINDOW)
		return false;
	return !ch->tx[ch->tx_next & W_MASK].busy;
}

/* Promise a window slot to a write_notify whose message follows its write. */
int ccm_chan_reserve(struct ccm_chan *ch)
{
	if (!chan_has_room(ch, false))
		return -EAGAIN;
	ch->reserved++;
	return 0;
}

/* An ack is owed. @p urgent: send it at the end of this loop turn (a
 * duplicate came, or the partner waits on it: a NOTIFY's operation).
 * Otherwise a port channel's ack waits up to CHAN_ACK_DELAY_NS for a
 * message to ride on, unless CHAN_ACK_EVERY delivered messages are
 * unacknowledged (the sender's window stays open). A request and its
 * reply then carry each other's acks: no standalone ack, no extra send and
 * receive completion on either node. The control channel acks at once. */
static void ack_mark(struct ccm_chan *ch, bool urgent)
{
	struct ccm *ccm = ch->ccm;

	ch->ack_due = true;
	if (!ch->port || ch->rx_next - 1 - ch->ack_sent >= CHAN_ACK_EVERY)
		urgent = true;
	if (!urgent) {
		if (!list_linked(&ch->ack_node)) {
			list_add_head(&ccm->acks_late, &ch->ack_node);
			ch->ack_late = true;
			if (!loop_timer_armed(&ccm->ack_timer))
				loop_timer_arm(ccm->loop, &ccm->ack_timer, CHAN_ACK_DELAY_NS);
		}
		return;
	}
	if (ch->ack_late) {
		list_del(&ch->ack_node);
		ch->ack_late = false;
	}
	if (!list_linked(&ch->ack_node))
		list_add_head(&ccm->acks, &ch->ack_node);
	ccm_schedule(ccm);
}

void ccm_chan_acks_late_fire(struct loop_timer *t)
{
	struct ccm *ccm = t->arg;

	while (!list_empty(&ccm->acks_late)) {
		struct ccm_chan *ch = list_entry(ccm->acks_late.next, struct ccm_chan, ack_node);
		list_del(&ch->ack_node);
		ch->ack_late = false;
		if (ch->ack_due)
			list_add_head(&ccm->acks, &ch->ack_node);
	}
	ccm_schedule(ccm);
}

int ccm_chan_send(struct ccm_chan *ch, uint16_t type, const void *payload, size_t len,
		  struct ccm_op *op)
{
	struct ccm *ccm = ch->ccm;
	struct tx_slot *s;
	struct wire_msg *h;
	size_t need = sizeof(*h) + len;

	if (len > CCM_MSG_MAX)
		return -EMSGSIZE;
	if (!chan_has_room(ch, op != NULL))
		return -EAGAIN;
	s = &ch->tx[ch->tx_next & W_MASK];
	if (s->cap < need) {
		size_t cap = (need + 255) & ~(size_t)255;
		uint8_t *b = realloc(s->buf, cap);
		if (!b)
			return -ENOMEM;
		s->buf = b;
		s->cap = (uint32_t)cap;
	}
	h = (struct wire_msg *)(void *)s->buf;
	memset(h, 0, sizeof(*h));
	put_le32(&h->magic, CCM_MSG_MAGIC);
	put_le16(&h->type, type);
	put_le32(&h->port, ch->peer_id);
	put_le32(&h->len, (uint32_t)len);
	put_le64(&h->session_id, ccm->session_id);
	put_le64(&h->seq, ch->tx_next);
	if (len)
		memcpy(s->buf + sizeof(*h), payload, len);
	s->seq = ch->tx_next;
	s->len = (uint32_t)need;
	s->state = TX_QUEUED;
	s->acked = false;
	s->op = op;
	ch->tx_next++;
	ccm_chan_kick(ch);
	return 0;
}

/* Seal (ack + MAC) and post one queued message; false when no lane took it. */
static bool tx_post(struct ccm_chan *ch, struct tx_slot *s)
{
	struct ccm *ccm = ch->ccm;
	struct wire_msg *h = (struct wire_msg *)(void *)s->buf;

	for (unsigned tries = 0; tries <= ccm->n_links; tries++) {
		struct ccm_link *l = ccm_lane_pick(ccm, ch->inst, s->len);
		int rc;
		if (!l)
			return false;
		put_le64(&h->ack, ch->rx_next - 1);
		ccm_msg_seal(ccm, h, s->buf + sizeof(*h), s->len - sizeof(*h));
		rc = fab_send(l->fl, s->buf, s->len, &s->fop);
		if (rc == 0) {
			s->state = TX_POSTED;
			s->busy = true;
			s->gen = ch->gen;
			s->link = (uint16_t)l->idx;
			s->sent_ns = loop_now_ns();
			l->inflight_ops++;
			l->inflight_bytes += s->len;
			ccm->inst[l->inst].ops_inflight++;
			ccm->inst[l->inst].bytes_inflight += s->len;
			ch->ack_sent = get_le64(&h->ack);
			if (ch->ack_due && (!ch->port || ch->port->up))
				ch->ack_due = false; /* piggybacked */
			return true;
		}
		if (rc == -EAGAIN)
			return false; /* the tick tries again */
		ccm_lane_fail(l, "cannot post a message", false);
	}
	return false;
}

/* Post the queued messages in order while lanes take them. */
void ccm_chan_kick(struct ccm_chan *ch)
{
	struct ccm *ccm = ch->ccm;

	if (ccm->state != ST_SETUP && ccm->state != ST_UP)
		return;
	for (uint64_t seq = ch->tx_acked + 1; seq < ch->tx_next; seq++) {
		struct tx_slot *s = &ch->tx[seq & W_MASK];
		if (s->state != TX_QUEUED || s->busy)
			continue;
		if (!tx_post(ch, s))
			return;
	}
}

static void tx_done(struct fab_op *op, int status)
{
	struct tx_slot *s = op->arg;
	struct ccm_chan *ch = s->ch;
	struct ccm *ccm = ch->ccm;
	struct ccm_link *l = &ccm->links[s->link];

	s->busy = false;
	ccm_lane_account(l, s->len, status);
	if (ccm->state == ST_STOPPING)
		return;
	if (s->gen != ch->gen) {
		if (ch->port && ch->port->client->dead)
			ccm->reap_pending = true, ccm_schedule(ccm);
		return;
	}
	if (status == 0) {
		ch->sent++;
		if (s->acked) {
			s->acked = false;
			s->state = TX_FREE;
		} else if (s->state == TX_POSTED) {
			s->state = TX_SENT;
		}
		return;
	}
	if (ccm_lane_error_is_link(status) && l->up) {
		char why[80];
		snprintf(why, sizeof(why), "message send failed (%s)", strerror(-status));
		ccm_lane_fail(l, why, false);
	}
	if (s->acked) {
		s->acked = false;
		s->state = TX_FREE;
		return;
	}
	s->state = TX_QUEUED;
	ccm->kick_pending = true;
	ccm_schedule(ccm);
}

void ccm_chan_on_link_down(struct ccm_chan *ch, unsigned link)
{
	for (unsigned i = 0; i < CHAN_WINDOW; i++) {
		struct tx_slot *s = &ch->tx[i];
		if (s->state == TX_SENT && s->link == link)
			s->state = TX_QUEUED;
	}
}

void ccm_chan_tick(struct ccm_chan *ch, uint64_t now, uint64_t rto_ns)
{
	bool queued = false;

	for (uint64_t seq = ch->tx_acked + 1; seq < ch->tx_next; seq++) {
		struct tx_slot *s = &ch->tx[seq & W_MASK];
		if (s->state == TX_SENT && now - s->sent_ns > rto_ns)
			s->state = TX_QUEUED;
		if (s->state == TX_QUEUED)
			queued = true;
	}
	if (queued)
		ccm_chan_kick(ch);
	if (ch->ack_due && !list_linked(&ch->ack_node))
		ack_mark(ch, true);
}

void ccm_chan_on_ack(struct ccm_chan *ch, uint64_t ack)
{
	struct ccm_op *done[CHAN_WINDOW];
	unsigned n = 0;

	if (ack <= ch->tx_acked || ack >= ch->tx_next)
		return; /* old, or acks what we never sent: ignore */
	for (uint64_t seq = ch->tx_acked + 1; seq <= ack; seq++) {
		struct tx_slot *s = &ch->tx[seq & W_MASK];
		if (s->op) {
			done[n++] = s->op;
			s->op = NULL;
		}
		if (s->busy) {
			s->acked = true;
		} else {
			s->state = TX_FREE;
		}
	}
	ch->tx_acked = ack;
	for (unsigned i = 0; i < n; i++)
		ccm_op_finish(done[i], 0);
	if (ch->want_send_ready && chan_has_room(ch, false)) {
		struct ccm_port *p = ch->port;
		ch->want_send_ready = false;
		if (p && p->up && !p->client->dead && p->client->ops.send_ready)
			p->client->ops.send_ready(p, p->client->arg);
	}
}

static bool deliverable(const struct ccm_chan *ch)
{
	const struct ccm *ccm = ch->ccm;

	if (ccm->state != ST_SETUP && ccm->state != ST_UP)
		return false;
	return !ch->port || (ch->port->up && !ch->port->client->dead);
}

static void dispatch(struct ccm_chan *ch, uint16_t type, const uint8_t *payload, size_t len)
{
	struct ccm_port *p = ch->port;
	struct ccm_client *c;

	if (!p) {
		ccm_sess_on_ctl(ch->ccm, type, payload, len);
		return;
	}
	c = p->client;
	ch->received++;
	switch (type) {
	case MSG_DATA:
		if (c->ops.message)
			c->ops.message(p, payload, len, c->arg);
		break;
	case MSG_NOTIFY:
		if (len == sizeof(struct wire_notify)) {
			struct wire_notify n;
			memcpy(&n, payload, sizeof(n));
			if (c->ops.notify)
				c->ops.notify(p, get_le64(&n.offset), get_le64(&n.len),
					      get_le64(&n.value), c->arg);
		}
		break;
	default:
		LOG_DEBUG("port %s/%u: message of unknown type %u dropped", c->name, p->idx, type);
		break;
	}
}

/* Deliver the held messages that are next in order. */
void ccm_chan_deliver(struct ccm_chan *ch)
{
	uint64_t gen = ch->gen;

	while (deliverable(ch) && ch->gen == gen) {
		struct rx_slot *r = &ch->rx[ch->rx_next & W_MASK];
		if (!r->full)
			break;
		r->full = false;
		ch->rx_next++;
		ack_mark(ch, r->type == MSG_NOTIFY);
		dispatch(ch, r->type, r->buf, r->len);
	}
}

void ccm_chan_on_data(struct ccm_chan *ch, const struct wire_msg *h, const void *payload)
{
	uint64_t seq = get_le64(&h->seq), ack = get_le64(&h->ack);
	uint16_t type = get_le16(&h->type);
	size_t len = get_le32(&h->len);
	struct rx_slot *r;
	uint64_t gen = ch->gen;

	if (ack)
		ccm_chan_on_ack(ch, ack);
	if (seq == 0 || ch->gen != gen)
		return;
	if (seq < ch->rx_next) {
		ack_mark(ch, true); /* a duplicate: our ack was lost or late */
		return;
	}
	if (seq - ch->rx_next >= CHAN_WINDOW)
		return; /* beyond the window: the sender will send it again */
	if (seq == ch->rx_next && deliverable(ch)) {
		ch->rx_next++;
		ack_mark(ch, type == MSG_NOTIFY);
		dispatch(ch, type, payload, len);
		if (ch->gen == gen)
			ccm_chan_deliver(ch);
		return;
	}
	r = &ch->rx[seq & W_MASK];
	if (r->full)
		return;
	if (r->cap < len) {
		size_t cap = (len + 255) & ~(size_t)255;
		uint8_t *b = realloc(r->buf, cap);
		if (!b)
			return; /* sent again later */
		r->buf = b;
		r->cap = (uint32_t)cap;
	}
	if (len)
		memcpy(r->buf, payload, len);
	r->len = (uint32_t)len;
	r->type = type;
	r->full = true;
	ccm_chan_deliver(ch);
}

static void ack_done(struct fab_op *op, int status)
{
	struct ccm_chan *ch = op->arg;
	struct ccm *ccm = ch->ccm;

	ch->ack_busy = false;
	if (ccm->state == ST_STOPPING)
		return;
	if (ch->ack_gen != ch->gen) {
		if (ch->port && ch->port->client->dead)
			ccm->reap_pending = true, ccm_schedule(ccm);
		return;
	}
	if (status < 0)
		ch->ack_due = true;
	if (ch->ack_due)
		ack_mark(ch, true);
}

/* Send one cumulative ack per channel that owes one (once per loop turn). */
void ccm_chan_send_acks(struct ccm *ccm)
{
	struct list all;

	/* Take the whole list: a channel marked again meanwhile waits for the next turn. */
	list_init(&all);
	while (!list_empty(&ccm->acks)) {
		struct list *n = ccm->acks.next;
		list_del(n);
		list_add_tail(&all, n);
	}
	while (!list_empty(&all)) {
		struct ccm_chan *ch = list_entry(all.next, struct ccm_chan, ack_node);
		struct wire_msg *h = (struct wire_msg *)(void *)ch->ack_buf;
		struct ccm_link *l;

		list_del(&ch->ack_node);
		if (!ch->ack_due || ch->ack_busy)
			continue;
		if (ccm->state != ST_SETUP && ccm->state != ST_UP)
			continue;
		if (ch->port && !ch->port->up)
			continue; /* no partner id yet; nothing delivered to ack */
		l = ccm_lane_pick(ccm, ch->inst, sizeof(*h));
		if (!l)
			continue; /* ccm_chan_tick marks it again */
		memset(h, 0, sizeof(*h));
		put_le32(&h->magic, CCM_MSG_MAGIC);
		put_le16(&h->type, MSG_ACK);
		put_le32(&h->port, ch->peer_id);
		put_le64(&h->session_id, ccm->session_id);
		put_le64(&h->ack, ch->rx_next - 1);
		ccm_msg_seal(ccm, h, NULL, 0);
		if (fab_send(l->fl, h, sizeof(*h), &ch->ack_fop) == 0) {
			ch->ack_sent = ch->rx_next - 1;
			ch->acks_sent++;
			ch->ack_busy = true;
			ch->ack_gen = ch->gen;
			ch->ack_due = false;
		}
	}
}
