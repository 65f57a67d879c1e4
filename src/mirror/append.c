/* Appends: placing records into the halves of the log, and calling each
 * write's @c logged once it is as durable as the settings ask (local log,
 * partner image or the partner-outdated mark, local sync).
 *
 * Rule: records are placed in sequence order and a write is reported
 * logged in that order too (the wait_logged queue); a half is reused only
 * once every side knows it is checkpointed (mirror_free_halves). The
 * partner-outdated mark and the local syncs live here because they are
 * what "logged" waits for. Calls cp.c (ask for a consistency point when a
 * half fills), replicate.c (is a half still to be copied) and state.c. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"

/* ---- queues ---- */

static void wq_push(struct mirror_wqueue *q, struct mirror_write *w)
{
	slist_push_tail(&q->q, &w->q_node);
	q->n++;
}

static struct mirror_write *wq_head(const struct mirror_wqueue *q)
{
	return q->q.head ? slist_entry(q->q.head, struct mirror_write, q_node) : NULL;
}

static struct mirror_write *wq_pop(struct mirror_wqueue *q)
{
	struct slist_node *n = slist_pop_head(&q->q);

	if (!n)
		return NULL;
	q->n--;
	return slist_entry(n, struct mirror_write, q_node);
}

/* ---- halves and appends ---- */

static bool half_reusable(const struct mirror *m, int hi)
{
	const struct mirror_half *h = &m->h[hi];

	if (h->state != H_SEALED || h->xfers)
		return false;
	if (mirror_encoded_seq(m) < h->last_seq)
		return false; /* the encoder still writes into it */
	if (m->cp_durable < h->last_seq)
		return false;
	/* The image must know the half is checkpointed before it is
	 * overwritten, else a takeover could replay a mix of two uses. */
	if (mirror_image_follows(m) && m->cp_mirror < h->last_seq)
		return false;
	if (mirror_in_copy_plan(m, hi))
		return false;
	return true;
}

static void activate(struct mirror *m, int i)
{
	struct mirror_half *h = &m->h[i];

	h->state = H_ACTIVE;
	h->tail = h->sent = h->image = 0;
	h->first_seq = h->last_seq = 0;
	m->active = i;
	m->n_switches++;
}

/* The active half cannot take the next record: seal it, move on. */
static void seal_active(struct mirror *m)
{
	struct mirror_half *h = &m->h[m->active];
	int other = m->active ^ 1;

	h->state = H_SEALED;
	mirror_request_cp(m, h->last_seq);
	m->active = -1;
	if (half_reusable(m, other))
		m->h[other].state = H_FREE;
	if (m->h[other].state == H_FREE)
		activate(m, other);
}

/* Place as many records of @p w as fit. @return true when all are placed. */
static bool place(struct mirror *m, struct mirror_write *w)
{
	const uint8_t *data = w->data;

	do {
		uint64_t left = w->length - w->placed;
		uint32_t dlen = 0;
		uint64_t vlen = left;
		struct mirror_half *h;

		if (w->type == MIRROR_REC_WRITE) {
			dlen = (uint32_t)(left < m->chunk_max ? left : m->chunk_max);
			vlen = dlen;
		}
		uint64_t need = mirror_rec_len(dlen);
		if (m->active < 0)
			return false;
		h = &m->h[m->active];
		if (h->tail + need > m->hdr.half_size) {
			seal_active(m);
			if (m->active < 0)
				return false;
			h = &m->h[m->active];
		}
		uint64_t seq = m->next_seq++;
		uint64_t off = h->base + h->tail;
		const uint8_t *src = dlen ? data + w->placed : NULL;
		mirror_rec_encode_header(m->base + off, seq, m->hdr.log_id, &w->vol, w->type,
					 w->flags, w->offset + w->placed, vlen, dlen);
		struct mirror_enc_job j = {.dst = m->base + off,
					   .data = src,
					   .data_len = dlen,
					   .seq = seq,
					   .half = m->active,
					   .off = h->tail};
		if (!(m->enc && dlen >= m->o.encode_min && mirror_encoder_push(m->enc, &j)))
			mirror_rec_seal(m->base + off, src, dlen);
		if (!h->first_seq)
			h->first_seq = seq;
		h->last_seq = seq;
		h->tail += need;
		if (!w->first_seq) {
			w->first_seq = seq;
			w->log_off = off;
			if (!(w->st & W_APPLIED)) {
				list_add_tail(&m->unapplied, &w->a_node);
				w->st |= W_LINKED;
			}
		}
		w->last_seq = seq;
		w->placed += vlen;
		m->placed_seq = seq;
		m->n_records++;
		m->n_record_bytes += need;
	} while (w->placed < w->length);
	w->st |= W_PLACED;
	wq_push(&m->wait_logged, w);
	return true;
}

int mirror_append(struct mirror *m, struct mirror_write *w)
{
	if (!m->recovered || m->reset_pending)
		return -EBUSY;
	if (w->length == 0 || w->type < MIRROR_REC_WRITE || w->type > MIRROR_REC_TRIM ||
	    (w->type == MIRROR_REC_WRITE && !w->data) || !w->logged ||
	    w->offset + w->length < w->offset)
		return -EINVAL;
	w->first_seq = w->last_seq = w->log_off = 0;
	w->placed = 0;
	w->st = W_QUEUED;
	w->q_node.next = NULL;
	list_init(&w->a_node);
	w->t_start = loop_now_ns();
	mirror_post(m);
	if (m->wait_space.n == 0 && place(m, w))
		return 0;
	if (m->wait_space.n == 0)
		m->n_space_waits++;
	wq_push(&m->wait_space, w);
	return 1;
}

void mirror_applied(struct mirror *m, struct mirror_write *w)
{
	if (w->st & W_APPLIED)
		return;
	w->st |= W_APPLIED;
	if (w->st & W_LINKED) {
		bool head = m->unapplied.next == &w->a_node;
		list_del(&w->a_node);
		w->st &= (uint8_t)~W_LINKED;
		if (head && m->cp_running)
			mirror_post(m);
	}
}

void mirror_place_waiters(struct mirror *m)
{
	struct mirror_write *w;

	/* Detach first: place() links a placed write into wait_logged. */
	while ((w = wq_pop(&m->wait_space))) {
		if (!place(m, w)) {
			slist_push_head(&m->wait_space.q, &w->q_node);
			m->wait_space.n++;
			return;
		}
	}
}

/* ---- logged callbacks ---- */

uint64_t mirror_encoded_seq(const struct mirror *m)
{
	struct mirror_enc_job j;

	if (m->enc && mirror_encoder_oldest(m->enc, &j))
		return j.seq - 1;
	return m->placed_seq;
}

static bool is_logged(const struct mirror *m, const struct mirror_write *w, uint64_t encoded)
{
	if (w->last_seq > encoded)
		return false; /* not whole in the log yet */
	if (m->o.durability == MIRROR_DURABILITY_LOCAL_SYNC && m->synced_seq < w->last_seq)
		return false;
	switch (m->state) {
	case MIRROR_STATE_OFF:
		return true;
	case MIRROR_STATE_IN_SYNC:
		return m->repl_seq >= w->last_seq;
	case MIRROR_STATE_DEGRADED:
		return m->o.down == MIRROR_DOWN_DEGRADE && m->out_have;
	case MIRROR_STATE_RESYNCING:
		if (m->o.down == MIRROR_DOWN_SUSPEND)
			return false; /* held until the image is complete again */
		/* Records after the copy plan stream to the image as in sync:
		 * acknowledged once there, so the state can turn in_sync the
		 * moment the valid mark lands without leaving one behind. */
		if (m->rs >= RS_COPY && w->last_seq > m->rs_seq)
			return m->repl_seq >= w->last_seq;
		return m->out_have;
	}
	return false;
}

void mirror_complete_logged(struct mirror *m)
{
	struct mirror_write *w;

	if (m->sync_failed && m->o.durability == MIRROR_DURABILITY_LOCAL_SYNC) {
		while ((w = wq_head(&m->wait_logged)) && w->last_seq <= m->sync_req_seq) {
			wq_pop(&m->wait_logged);
			w->st |= W_LOGGED;
			w->logged(w, -EIO);
		}
		return;
	}
	uint64_t encoded = mirror_encoded_seq(m);

	while ((w = wq_head(&m->wait_logged)) && is_logged(m, w, encoded)) {
		wq_pop(&m->wait_logged);
		w->st |= W_LOGGED;
		w->logged(w, 0);
	}
}

/* mirror_down = suspend: writes held longer than the timeout fail. */
void mirror_suspend_step(struct mirror *m)
{
	struct mirror_write *w = wq_head(&m->wait_logged);
	uint64_t limit = m->o.suspend_timeout_ms * NS_PER_MS;
	uint64_t now;

	if (m->o.down != MIRROR_DOWN_SUSPEND || m->state == MIRROR_STATE_IN_SYNC ||
	    m->state == MIRROR_STATE_OFF || !w) {
		loop_timer_cancel(m->loop, &m->suspend_timer);
		return;
	}
	now = loop_now_ns();
	while (m->fail_held && m->state == MIRROR_STATE_DEGRADED &&
	       (w = wq_head(&m->wait_logged))) {
		wq_pop(&m->wait_logged);
		w->st |= W_LOGGED;
		w->logged(w, m->fail_held);
	}
	while ((w = wq_head(&m->wait_logged)) && now - w->t_start >= limit) {
		wq_pop(&m->wait_logged);
		m->n_suspend_timeouts++;
		if (m->n_suspend_timeouts == 1 || m->n_suspend_timeouts % 1000 == 0)
			LOG_WARN("mirror_down = suspend: write held %llu ms without the partner; "
				 "failing it with EIO (%llu so far)",
				 (unsigned long long)m->o.suspend_timeout_ms,
				 (unsigned long long)m->n_suspend_timeouts);
		w->st |= W_LOGGED;
		w->logged(w, -EIO);
	}
	if (w)
		loop_timer_arm(m->loop, &m->suspend_timer, w->t_start + limit - now);
}

void mirror_fail_held(struct mirror *m, int err)
{
	m->fail_held = err < 0 ? err : -EIO;
	mirror_post(m);
}

/* ---- partner-outdated mark ---- */

#define MIRROR_OUT_RETRY_MS 100u

static void outdate_done(void *arg, int result)
{
	struct mirror *m = arg;

	m->out_done_flag = true;
	m->out_done_result = result;
	mirror_post(m);
}

void mirror_outdate_step(struct mirror *m)
{
	if (m->out_done_flag) {
		m->out_done_flag = false;
		m->out_inflight = false;
		if (m->out_done_result < 0) {
			/* Again in a while, not at once (a mailbox on a dead
			 * mount fails at once, every time), logged once. */
			if (m->out_done_result != m->out_last_err)
				LOG_ERROR("could not record that the partner's image is %s: %s "
					  "(trying again every %u ms)",
					  m->out_sent ? "outdated" : "current",
					  strerror(-m->out_done_result), MIRROR_OUT_RETRY_MS);
			m->out_last_err = m->out_done_result;
			loop_timer_arm(m->loop, &m->out_timer, MIRROR_OUT_RETRY_MS * NS_PER_MS);
		} else {
			m->out_last_err = 0;
			m->out_have = m->out_sent;
		}
	}
	if (m->out_inflight || loop_timer_armed(&m->out_timer) || m->out_want == m->out_have)
		return;
	if (!m->host->partner_outdated) {
		m->out_have = m->out_want;
		return;
	}
	m->out_inflight = true;
	m->out_sent = m->out_want;
	m->host->partner_outdated(m->host_ctx, m->out_sent, outdate_done, m);
}

void mirror_free_halves(struct mirror *m)
{
	for (int i = 0; i < 2; i++) {
		if (m->h[i].state == H_SEALED && half_reusable(m, i)) {
			m->h[i].state = H_FREE;
			if (m->active < 0)
				activate(m, i);
		}
	}
}

/* ---- local sync ---- */

/* The syncer finished an fdatasync: move the durable watermarks. */
void mirror_sync_done(void *arg)
{
	struct mirror *m = arg;
	int err = 0;

	mirror_syncer_result(m->sync, &err);
	m->sync_inflight = false;
	if (err < 0) {
		if (!m->sync_failed)
			LOG_ERROR("%s: fdatasync: %s", m->path, strerror(-err));
		m->sync_failed = true;
	} else {
		m->sync_failed = false;
		if (m->sync_req_seq > m->synced_seq)
			m->synced_seq = m->sync_req_seq;
		if (m->sync_req_cp > m->cp_durable)
			m->cp_durable = m->sync_req_cp;
	}
	mirror_post(m);
}

/* One fdatasync of the log at a time; the next covers all that came
 * meanwhile (group commit). */
void mirror_sync_step(struct mirror *m)
{
	uint64_t encoded = mirror_encoded_seq(m);
	bool want_records =
	    m->o.durability == MIRROR_DURABILITY_LOCAL_SYNC && encoded > m->synced_seq;
	bool want_header = m->written_cp > m->cp_durable;

	if (m->sync_inflight || (!want_records && !want_header))
		return;
	m->sync_req_seq = encoded;
	m->sync_req_cp = m->written_cp;
	m->sync_inflight = true;
	mirror_syncer_request(m->sync, ++m->sync_ticket);
}
