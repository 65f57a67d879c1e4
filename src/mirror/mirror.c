/* The mirror engine's top: open and close, the work task that moves
 * everything forward, run-time reset, options and status.
 *
 * Rule: every event from outside (transport completion, host checkpoint done,
 * sync done, timers) only records what happened and posts the work task;
 * the task then moves everything forward in one place. That keeps the
 * state machine free of reentrancy: callbacks into the node (logged, flush
 * done) run last, and what they call (mirror_append, mirror_applied) only
 * changes queues and posts the task again.
 */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"

static void work_fn(void *arg);
static void wake_timer_fn(struct loop_timer *t);

static void encoder_done(void *arg)
{
	mirror_post(arg);
}

void mirror_opts_init(struct mirror_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->mode = MIRROR_MODE_ON;
	o->durability = MIRROR_DURABILITY_MEMORY;
	o->down = MIRROR_DOWN_DEGRADE;
	o->suspend_timeout_ms = 30000;
	o->cp_interval_ms = 1000;
	o->group_window = 2;
}

int mirror_open(struct loop *loop, const struct mirror_opts *opts,
		const struct mirror_host_ops *host, void *host_ctx, struct mirror **out)
{
	struct mirror *m;
	int rc;

	if (!opts->path || !*opts->path || !host || !host->checkpoint ||
	    opts->mode == MIRROR_MODE_OFF)
		return -EINVAL;
	if (opts->size < MIRROR_MIN_LOG_SIZE) {
		LOG_ERROR("nvram_size %llu is below the minimum of %u bytes",
			  (unsigned long long)opts->size, MIRROR_MIN_LOG_SIZE);
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->work = calloc(1, sizeof(*m->work));
	if (!m->work) {
		free(m);
		return -ENOMEM;
	}
	m->loop = loop;
	m->o = *opts;
	snprintf(m->path, sizeof(m->path), "%s", opts->path);
	snprintf(m->node_id, sizeof(m->node_id), "%s", opts->node_id ? opts->node_id : "");
	m->o.path = m->path;
	m->o.node_id = m->node_id;
	if (!m->o.xfer_window)
		m->o.xfer_window = 16;
	if (!m->o.group_window)
		m->o.group_window = 2;
	if (!m->o.group_bytes)
		m->o.group_bytes = 256 * 1024;
	if (!m->o.resync_retry_ms)
		m->o.resync_retry_ms = 1000;
	if (!m->o.encode_min)
		m->o.encode_min = 256 * 1024;
	m->want_size = opts->size & ~(uint64_t)4095;
	m->host = host;
	m->host_ctx = host_ctx;
	m->next_seq = 1;
	m->tops = mirror_null_transport();
	m->work->m = m;
	loop_task_init(&m->work->task, work_fn, m->work);
	loop_timer_init(&m->cp_timer, mirror_cp_timer_fn, m);
	loop_timer_init(&m->retry_timer, wake_timer_fn, m);
	loop_timer_init(&m->suspend_timer, wake_timer_fn, m);
	loop_timer_init(&m->out_timer, wake_timer_fn, m);
	slist_init(&m->wait_space.q);
	slist_init(&m->wait_logged.q);
	list_init(&m->unapplied);
	slist_init(&m->flushes);
	rc = mirror_log_open(m);
	if (rc < 0)
		goto err_free;
	m->ring_n = m->o.xfer_window;
	m->ring = calloc(m->ring_n, sizeof(*m->ring));
	if (!m->ring) {
		rc = -ENOMEM;
		goto err_log;
	}
	rc = mirror_syncer_start(loop, m->fd, mirror_sync_done, m, &m->sync);
	if (rc < 0)
		goto err_ring;
	if (m->o.encode_min != UINT32_MAX) {
		rc = mirror_encoder_start(loop, encoder_done, m, &m->enc);
		if (rc < 0)
			goto err_sync;
	}
	if (m->o.mode == MIRROR_MODE_ON)
		mirror_set_state(
		    m, MIRROR_STATE_DEGRADED,
		    "no partner session: writes go on %s; a takeover of this node would "
		    "lose data",
		    m->o.down == MIRROR_DOWN_SUSPEND ? "being held (mirror_down = suspend)"
						     : "locally");
	else
		mirror_set_state(m, MIRROR_STATE_OFF,
				 "mirror = local: the local NVRAM log only, no partner image");
	if (m->o.cp_interval_ms)
		loop_timer_arm(loop, &m->cp_timer, m->o.cp_interval_ms * NS_PER_MS);
	LOG_INFO("NVRAM log %s: %llu bytes, halves of %llu, %llu live records", m->path,
		 (unsigned long long)m->size, (unsigned long long)m->hdr.half_size,
		 (unsigned long long)m->live_at_open);
	*out = m;
	return 0;
err_sync:
	mirror_syncer_stop(m->sync);
err_ring:
	free(m->ring);
err_log:
	mirror_log_close(m);
err_free:
	free(m->work);
	free(m);
	return rc;
}

static void noop_task(void *arg)
{
	free(arg);
}

void mirror_close(struct mirror *m)
{
	if (!m)
		return;
	m->closing = true;
	if (m->tattached && m->tops->detach)
		m->tops->detach(m->tctx);
	loop_timer_cancel(m->loop, &m->cp_timer);
	loop_timer_cancel(m->loop, &m->retry_timer);
	loop_timer_cancel(m->loop, &m->suspend_timer);
	loop_timer_cancel(m->loop, &m->out_timer);
	mirror_encoder_stop(m->enc); /* before the log is unmapped */
	mirror_syncer_stop(m->sync);
	if (!list_empty(&m->unapplied) || m->wait_logged.n || m->wait_space.n)
		LOG_WARN("mirror closed with writes in flight");
	if (m->work->task.queued) {
		/* The loop still holds the task: let it free itself. */
		m->work->task.cb = noop_task;
		m->work->task.arg = m->work;
	} else {
		free(m->work);
	}
	mirror_log_close(m);
	free(m->ring);
	free(m);
}

int mirror_reset(struct mirror *m, mirror_done_fn done, void *arg)
{
	if (m->reset_pending)
		return -EALREADY;
	if (!m->recovered) {
		int rc = mirror_discard(m);
		if (rc < 0)
			return rc;
	} else if (m->wait_space.n || m->wait_logged.n || !list_empty(&m->unapplied)) {
		return -EBUSY;
	} else if (m->state != MIRROR_STATE_OFF) {
		/* The image holds records the partner already replayed: it
		 * must not be used again until a resync. */
		mirror_lose_partner(m, "NVRAM log dropped");
	}
	m->reset_pending = true;
	m->reset_done = done;
	m->reset_arg = arg;
	mirror_post(m);
	return 0;
}

/* Finish mirror_reset once no transfer, sync or checkpoint still reads or
 * writes the log. */
static void reset_step(struct mirror *m)
{
	mirror_done_fn done = m->reset_done;
	int rc = 0;

	if (!m->reset_pending || m->ring_count || m->sync_inflight || m->cp_host_wait ||
	    mirror_encoded_seq(m) != m->placed_seq)
		return;
	rc = mirror_log_reset(m); /* new log id: nothing of the old one replays again */
	m->cp_running = false;
	m->reset_pending = false;
	if (done)
		done(m->reset_arg, rc);
}

static void wake_timer_fn(struct loop_timer *t)
{
	mirror_post(t->arg);
}

/* ---- the work task ---- */

static void work_fn(void *arg)
{
	struct mirror_work *wk = arg;
	struct mirror *m = wk->m;

	mirror_ring_process(m);
	mirror_outdate_step(m);
	reset_step(m);
	mirror_cp_step(m);
	mirror_free_halves(m);
	mirror_place_waiters(m);
	mirror_resync_step(m);
	mirror_kick_sends(m);
	mirror_resync_step(m);
	mirror_kick_sends(m);
	mirror_sync_step(m);
	/* Callbacks into the node last: they may append and apply. */
	mirror_complete_logged(m);
	mirror_suspend_step(m);
	mirror_flush_complete(m);
	mirror_cp_step(m);
}

/* ---- status ---- */

void mirror_get_status(const struct mirror *m, struct mirror_status *st)
{
	memset(st, 0, sizeof(*st));
	st->state = m->state;
	snprintf(st->reason, sizeof(st->reason), "%s", m->reason);
	st->takeover_safe = m->state == MIRROR_STATE_IN_SYNC;
	st->log_size = m->size;
	st->half_size = m->hdr.half_size;
	st->active_half = m->active;
	for (int i = 0; i < 2; i++) {
		const struct mirror_half *h = &m->h[i];
		if (h->state == H_FREE)
			continue;
		st->used_bytes += h->tail;
		/* Records the image lacks and a takeover would need. */
		if (m->state != MIRROR_STATE_OFF && h->last_seq > m->hdr.cp_seq)
			st->lag_bytes += h->tail - (h->image < h->tail ? h->image : h->tail);
	}
	st->last_seq = m->placed_seq;
	st->cp_seq = m->hdr.cp_seq;
	st->replicated_seq = m->repl_seq;
	st->records = m->n_records;
	st->record_bytes = m->n_record_bytes;
	st->xfers = m->n_xfers;
	st->xfer_bytes = m->n_xfer_bytes;
	st->checkpoints = m->n_cps;
	st->half_switches = m->n_switches;
	st->space_waits = m->n_space_waits;
	st->resyncs = m->n_resyncs;
	st->suspend_timeouts = m->n_suspend_timeouts;
	st->writes_waiting = m->wait_space.n;
	st->writes_unlogged = m->wait_logged.n;
	st->xfers_inflight = m->ring_count;
	st->cp_running = m->cp_running || m->cp_want > m->hdr.cp_seq;
	st->idle =
	    !st->cp_running && !m->ring_count && !m->hdr_dirty && !m->hdr_pending &&
	    !m->sync_inflight && !m->wait_space.n && !m->wait_logged.n &&
	    (!mirror_image_follows(m) || m->h[0].state == H_FREE || m->h[0].sent == m->h[0].tail) &&
	    (!mirror_image_follows(m) || m->h[1].state == H_FREE || m->h[1].sent == m->h[1].tail);
}
