/* Replication: transport writes from the log into the partner image, the
 * ring that accounts for them, and resync.
 *
 * Rule: what the engine believes the partner image holds only grows as a
 * prefix of what was sent: completions may come in any order, but the
 * ring is consumed in issue order, and a write of an older epoch (before
 * the partner was lost) never counts. A resync first marks the image
 * invalid, then copies the live ranges, then marks it valid; only then is
 * the state in_sync. Calls log.c (header writes) and state.c. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"

int mirror_attach_transport(struct mirror *m, const struct mirror_transport_ops *ops, void *ctx)
{
	int rc;

	if (m->tup)
		return -EBUSY;
	if (m->tattached && m->tops->detach)
		m->tops->detach(m->tctx);
	m->tattached = false;
	m->tops = ops ? ops : mirror_null_transport();
	m->tctx = ctx;
	if (m->tops->attach) {
		rc = m->tops->attach(ctx, m->base, m->size);
		if (rc < 0) {
			m->tops = mirror_null_transport();
			m->tctx = NULL;
			return rc;
		}
	}
	m->tattached = true;
	return 0;
}

/* The image stops following the log (session lost, or a write failed). */
void mirror_lose_partner(struct mirror *m, const char *why)
{
	m->epoch++;
	m->rs = RS_NONE;
	m->rs_n = m->rs_cur = 0;
	m->rs_copies = 0;
	m->hdr_dirty = false;
	m->hdr_valid = false;
	if (m->state != MIRROR_STATE_OFF)
		mirror_set_state(
		    m, MIRROR_STATE_DEGRADED,
		    "%s: writes go on %s; a takeover of this node would lose data", why,
		    m->o.down == MIRROR_DOWN_SUSPEND ? "being held (mirror_down = suspend)"
						     : "locally");
}

void mirror_transport_up(struct mirror *m)
{
	if (m->state == MIRROR_STATE_OFF || m->tup)
		return;
	m->tup = true;
	m->retry_at_ns = 0;
	mirror_post(m);
}

void mirror_transport_down(struct mirror *m, const char *reason)
{
	if (!m->tup)
		return;
	m->tup = false;
	mirror_lose_partner(m, reason && *reason ? reason : "partner session down");
}

static void xfer_cb(void *arg, int result)
{
	struct mirror_xfer *x = arg;

	x->result = result;
	x->done = true;
	mirror_post(x->m);
}

/* Start a transport write. @return 1 if issued, 0 if the window is full
 * (nothing done), -1 if the transport refused it (it then completes as
 * failed on the next pass, which drops the partner). */
static int xfer_issue(struct mirror *m, enum mirror_xfer_kind kind, int half, uint64_t off,
		      uint64_t len, uint64_t last_seq)
{
	struct mirror_xfer *x;
	int rc;

	if (m->ring_count == m->ring_n)
		return 0;
	x = &m->ring[(m->ring_head + m->ring_count) % m->ring_n];
	m->ring_count++;
	*x = (struct mirror_xfer){.m = m,
				  .kind = kind,
				  .half = half,
				  .off = off,
				  .len = len,
				  .last_seq = last_seq,
				  .cp_seq = m->written_cp,
				  .valid = m->written_valid,
				  .epoch = m->epoch};
	if (half >= 0)
		m->h[half].xfers++;
	if (kind == XF_RECORDS)
		m->rec_inflight++;
	if (kind == XF_HEADER)
		m->hdr_inflight = true;
	m->n_xfers++;
	m->n_xfer_bytes += len;
	rc = m->tops->write(m->tctx, off, m->base + off, len, xfer_cb, x);
	if (rc < 0) {
		x->result = rc;
		x->done = true;
		mirror_post(m);
		return -1;
	}
	return 1;
}

/* Pop landed writes in issue order, so what the mirror believes the image
 * holds only ever grows as a prefix of what was sent. */
void mirror_ring_process(struct mirror *m)
{
	while (m->ring_count) {
		struct mirror_xfer *x = &m->ring[m->ring_head];
		if (!x->done)
			break;
		m->ring_head = (m->ring_head + 1) % m->ring_n;
		m->ring_count--;
		if (x->half >= 0)
			m->h[x->half].xfers--;
		if (x->kind == XF_RECORDS)
			m->rec_inflight--;
		if (x->kind == XF_HEADER) {
			m->hdr_inflight = false;
			if (m->hdr_pending)
				mirror_header_update(m);
		}
		if (x->epoch != m->epoch)
			continue;
		if (x->result < 0) {
			LOG_WARN("mirror write of %llu bytes at %llu failed: %s",
				 (unsigned long long)x->len, (unsigned long long)x->off,
				 strerror(-x->result));
			mirror_lose_partner(m, "a write to the partner's image failed");
			m->retry_at_ns = loop_now_ns() + m->o.resync_retry_ms * NS_PER_MS;
			loop_timer_arm(m->loop, &m->retry_timer, m->o.resync_retry_ms * NS_PER_MS);
			continue;
		}
		switch (x->kind) {
		case XF_RECORDS:
		case XF_COPY: {
			struct mirror_half *h = &m->h[x->half];
			if (x->off + x->len - h->base > h->image)
				h->image = x->off + x->len - h->base;
			if (x->kind == XF_COPY)
				m->rs_copies--;
			else if (x->last_seq > m->repl_seq)
				m->repl_seq = x->last_seq;
			break;
		}
		case XF_HEADER:
			if (x->cp_seq > m->cp_mirror)
				m->cp_mirror = x->cp_seq;
			if (m->rs == RS_MARK && !x->valid) {
				m->rs = RS_PLAN;
			} else if (m->rs == RS_FINISH && x->valid) {
				m->rs = RS_NONE;
				if (m->rs_seq > m->repl_seq)
					m->repl_seq = m->rs_seq;
				mirror_set_state(m, MIRROR_STATE_IN_SYNC,
						 "the partner's image holds every logged write");
			}
			break;
		}
	}
}

/* From @p from, the end of the last record before @p end that ends by *to
 * (at least one record, even if longer); returns its seq and moves *to to
 * its end. */
static uint64_t last_whole_record(struct mirror *m, int hi, uint64_t from, uint64_t end,
				  uint64_t *to)
{
	struct mirror_half *h = &m->h[hi];
	uint64_t p = from, last = 0;

	while (p < end) {
		struct mirror_rec_header r;
		mirror_rec_header_decode(m->base + h->base + p, &r);
		uint64_t len = mirror_rec_len(r.data_len);
		if (p + len > *to && p != from)
			break;
		last = r.seq;
		p += len;
		if (p >= *to)
			break;
	}
	*to = p;
	return last;
}

/* Halves holding records, the older first. */
static unsigned halves_in_order(const struct mirror *m, int order[2])
{
	unsigned n = 0;

	if (m->active < 0) {
		int first = m->h[0].first_seq <= m->h[1].first_seq ? 0 : 1;
		order[n++] = first;
		order[n++] = first ^ 1;
		return n;
	}
	if (m->h[m->active ^ 1].state == H_SEALED)
		order[n++] = m->active ^ 1;
	order[n++] = m->active;
	return n;
}

/* Group commit: concurrent writes' records are contiguous in the log, so
 * while a few record writes are in flight the new ones wait and leave
 * together as one transport write when the next lands (each write costs
 * the transport a send and a completion on both nodes, whatever its size).
 * A lone write never waits (nothing in flight), and a backlog of
 * group_bytes goes at once, so streams still fill the window. */
static bool records_go(const struct mirror *m, const struct mirror_half *h, uint64_t end)
{
	return m->rec_inflight < m->o.group_window || end - h->sent >= m->o.group_bytes;
}

void mirror_kick_sends(struct mirror *m)
{
	int order[2];
	unsigned n;

	if (!m->tup)
		return;
	if (m->rs == RS_MARK || mirror_image_follows(m)) {
		if (m->hdr_dirty && !m->hdr_inflight &&
		    xfer_issue(m, XF_HEADER, -1, (uint64_t)m->hdr_slot * MIRROR_LOG_SLOT_STRIDE,
			       MIRROR_LOG_SLOT_BYTES, 0) != 0)
			m->hdr_dirty = false;
	}
	if (!mirror_image_follows(m))
		return;
	/* Resync copies go first: in-order completion then vouches for them
	 * before any record sent after them. */
	while (m->rs == RS_COPY && m->rs_cur < m->rs_n) {
		int hi = m->rs_half[m->rs_cur];
		uint64_t end = m->rs_off + m->max_xfer;
		if (m->rs_off >= m->rs_end[m->rs_cur]) {
			m->rs_cur++;
			m->rs_off = 0;
			continue;
		}
		if (end > m->rs_end[m->rs_cur])
			end = m->rs_end[m->rs_cur];
		int rc = xfer_issue(m, XF_COPY, hi, m->h[hi].base + m->rs_off, end - m->rs_off, 0);
		if (rc == 0)
			return;
		m->rs_copies++;
		m->rs_off = end;
		if (rc < 0)
			return;
	}
	/* Records go whole: up to the oldest one the encoder still seals. */
	struct mirror_enc_job pend;
	bool sealing = m->enc && mirror_encoder_oldest(m->enc, &pend);
	n = halves_in_order(m, order);
	for (unsigned k = 0; k < n; k++) {
		struct mirror_half *h = &m->h[order[k]];
		bool stop = sealing && pend.half == order[k];
		uint64_t end = stop ? pend.off : h->tail;
		while (h->sent < end) {
			if (!records_go(m, h, end))
				return;
			uint64_t from = h->sent;
			uint64_t to = from + m->max_xfer;
			uint64_t last = last_whole_record(m, order[k], from, end, &to);
			int rc =
			    xfer_issue(m, XF_RECORDS, order[k], h->base + from, to - from, last);
			if (rc == 0)
				return; /* window full: sent again from here later */
			h->sent = to;
			if (rc < 0)
				return;
		}
		if (stop)
			return;
	}
}

bool mirror_in_copy_plan(const struct mirror *m, int hi)
{
	if (m->rs != RS_COPY)
		return false;
	for (unsigned i = m->rs_cur; i < m->rs_n; i++)
		if (m->rs_half[i] == hi)
			return true;
	return false;
}

/* Start a resync when the transport is up and the image is behind, and
 * move it through its stages. */
void mirror_resync_step(struct mirror *m)
{
	if (m->state == MIRROR_STATE_OFF || !m->tup || !m->recovered || m->reset_pending)
		return;
	switch (m->rs) {
	case RS_NONE:
		if (m->state != MIRROR_STATE_DEGRADED)
			return;
		if (m->retry_at_ns && loop_now_ns() < m->retry_at_ns)
			return;
		if (m->hdr_inflight)
			return; /* an earlier header write is still reading its slot */
		m->retry_at_ns = 0;
		m->n_resyncs++;
		m->rs = RS_MARK;
		mirror_set_state(m, MIRROR_STATE_RESYNCING,
				 "partner back: copying the live log to its image");
		/* First tell the image it is incomplete, then change it. */
		m->hdr_valid = false;
		mirror_header_update(m); /* not deferred: no header write in flight */
		return;
	case RS_PLAN: {
		int order[2];
		unsigned n;
		if (mirror_encoded_seq(m) != m->placed_seq)
			return; /* the copies take whole records: after the encoder's */
		n = halves_in_order(m, order);
		m->rs_n = m->rs_cur = 0;
		m->rs_off = 0;
		for (unsigned i = 0; i < n; i++) {
			struct mirror_half *h = &m->h[order[i]];
			if (h->state == H_FREE || h->tail == 0)
				continue;
			/* Unsent records (of any earlier epoch) go with the copy. */
			h->sent = h->tail;
			h->image = 0;
			m->rs_half[m->rs_n] = order[i];
			m->rs_end[m->rs_n] = h->tail;
			m->rs_n++;
		}
		m->rs_seq = m->placed_seq;
		m->rs = RS_COPY;
		return;
	}
	case RS_COPY:
		if (m->rs_cur < m->rs_n || m->rs_copies)
			return;
		m->rs = RS_FINISH;
		m->hdr_valid = true;
		mirror_header_update(m); /* sent now, or once the header in flight lands */
		return;
	case RS_MARK:
	case RS_FINISH:
		return;
	}
}
