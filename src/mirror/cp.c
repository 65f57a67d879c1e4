/* Consistency points and FLUSH: once every record up to a target has
 * reached its volume, the host fdatasyncs the volumes and the header's
 * checkpoint moves on; the halves it covers can then be freed.
 *
 * Rule: a consistency point never covers a record whose volume write is
 * still in flight (the unapplied list), and a FLUSH completes only when
 * what it covers is durable: the synced log with durability = local-sync,
 * a checkpoint written to disk otherwise. Calls log.c (header) and state.c. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"

void mirror_request_cp(struct mirror *m, uint64_t target)
{
	if (target > m->cp_want)
		m->cp_want = target;
	mirror_post(m);
}

static void cp_host_done_fn(void *arg, int result)
{
	struct mirror *m = arg;

	m->cp_host_done = true;
	m->cp_host_result = result;
	mirror_post(m);
}

void mirror_cp_timer_fn(struct loop_timer *t)
{
	struct mirror *m = t->arg;

	if (m->recovered && m->placed_seq > m->hdr.cp_seq)
		mirror_request_cp(m, m->placed_seq);
	loop_timer_arm(m->loop, &m->cp_timer, m->o.cp_interval_ms * NS_PER_MS);
}

/* A consistency point to cp_target: wait until every record up to it has
 * reached its volume, have the node fdatasync the volumes, then write the
 * new checkpoint into the header (to disk and to the partner in the steps
 * after). Halves fully covered become free once both know. */
void mirror_cp_step(struct mirror *m)
{
	if (m->cp_host_done) {
		m->cp_host_done = false;
		m->cp_host_wait = false;
		m->cp_running = false;
		if (m->cp_host_result < 0) {
			LOG_ERROR("consistency point to seq %llu failed: %s; retrying",
				  (unsigned long long)m->cp_target, strerror(-m->cp_host_result));
			m->cp_error = m->cp_host_result;
			m->cp_backoff_until = loop_now_ns() + MIRROR_CP_RETRY_NS;
			loop_timer_arm(m->loop, &m->retry_timer, MIRROR_CP_RETRY_NS);
			return;
		}
		m->n_cps++;
		if (m->cp_target > m->hdr.cp_seq) {
			m->hdr.cp_seq = m->cp_target;
			mirror_header_update(m);
		}
	}
	if (!m->cp_running) {
		if (m->cp_want <= m->hdr.cp_seq || !m->recovered || m->reset_pending)
			return;
		if (m->cp_backoff_until && loop_now_ns() < m->cp_backoff_until)
			return;
		m->cp_backoff_until = 0;
		m->cp_running = true;
		m->cp_target = m->cp_want < m->placed_seq ? m->cp_want : m->placed_seq;
	}
	if (m->cp_host_wait)
		return;
	const struct mirror_write *oldest =
	    list_first_entry_or_null(&m->unapplied, struct mirror_write, a_node);
	if (oldest && oldest->first_seq <= m->cp_target)
		return; /* volume writes of the CP's records still in flight */
	m->cp_host_wait = true;
	m->host->checkpoint(m->host_ctx, cp_host_done_fn, m);
}

/* With local-sync every logged record is on disk and a restart replays it,
 * so a FLUSH only waits for the log sync; with memory it is a consistency
 * point (the volumes fdatasync'ed). */
static bool flush_covered(const struct mirror *m, const struct mirror_flush *f)
{
	if (m->o.durability == MIRROR_DURABILITY_LOCAL_SYNC && f->target <= m->synced_seq)
		return true;
	return f->target <= m->cp_durable;
}

void mirror_flush(struct mirror *m, struct mirror_flush *f)
{
	f->target = m->placed_seq;
	slist_push_tail(&m->flushes, &f->node);
	if (m->o.durability == MIRROR_DURABILITY_LOCAL_SYNC)
		mirror_post(m);
	else
		mirror_request_cp(m, f->target);
}

void mirror_flush_complete(struct mirror *m)
{
	int err = m->cp_error;
	struct mirror_flush *f;

	m->cp_error = 0;
	while (!slist_empty(&m->flushes)) {
		f = slist_entry(m->flushes.head, struct mirror_flush, node);
		if (!err && !flush_covered(m, f))
			break;
		slist_pop_head(&m->flushes);
		f->done(f, flush_covered(m, f) ? 0 : err);
	}
}
