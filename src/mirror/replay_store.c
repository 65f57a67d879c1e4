/* Replay of an image onto a shelf: the part of the mirror that touches the
 * store.
 *
 * Rule: a replay job walks an image in sequence order and keeps up to BATCH
 * records in flight as store I/O, never two overlapping ones of a volume at
 * once (so order is kept where it matters), driven by the store's
 * completions: it never blocks and never runs the loop itself, so the node
 * can start one from a callback at takeover while it serves. Then it
 * fdatasyncs every volume it wrote and, if asked, retires the image. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "store/store.h"

#define BATCH	  64
#define MAX_WARNS 16

struct vol_ent {
	struct mirror_vol_id id;
	struct store_volume *v;
	bool dirty; /* written by this job, not yet flushed */
};

struct apply_slot {
	struct store_io io;
	struct mirror_replay_job *job;
	unsigned vol;
	uint64_t start, end;
	uint64_t rec_len;
	bool busy;
};

enum job_stage { J_APPLY, J_FLUSH, J_DONE };

struct mirror_replay_job {
	struct loop *loop;
	struct store *s;
	unsigned flags;
	struct mirror_image_map map; /* when the job opened the file */
	bool own_map;
	struct mirror_log_iter it;
	struct mirror_replay_stats st;
	bool have_next; /* next record waits for an overlapping one to finish */
	struct mirror_record next;
	const void *next_data;
	struct vol_ent *vols;
	unsigned n_vols;
	struct mirror_vol_id warned[MAX_WARNS];
	unsigned n_warned;
	struct apply_slot slots[BATCH];
	unsigned inflight;
	int err;
	enum job_stage stage;
	struct loop_task task;
	void (*done)(void *arg, int rc, const struct mirror_replay_stats *st);
	void *arg;
	struct mirror *own_log; /* mirror_replay_own_start: the node's own log */
	bool finished;		/* done called (or about to be) */
	bool sync_done;
	int sync_rc;
};

static void job_pump(struct mirror_replay_job *j);

static void slot_done(struct store_io *io, int result)
{
	struct apply_slot *sl = container_of(io, struct apply_slot, io);
	struct mirror_replay_job *j = sl->job;

	if (result < 0 && !j->err) {
		LOG_ERROR("replay: %s at %llu+%llu failed: %s",
			  io->op == STORE_OP_FLUSH ? "flush" : "write",
			  (unsigned long long)io->offset, (unsigned long long)io->length,
			  strerror(-result));
		j->err = result;
	}
	if (io->op != STORE_OP_FLUSH)
		j->it.done_bytes += sl->rec_len;
	sl->busy = false;
	j->inflight--;
	job_pump(j);
}

static void skip(struct mirror_replay_job *j, const struct mirror_record *rec, const char *why)
{
	char id[37];

	j->st.skipped++;
	for (unsigned i = 0; i < j->n_warned; i++)
		if (!memcmp(&j->warned[i], &rec->vol, sizeof(rec->vol)))
			return;
	if (j->n_warned < MAX_WARNS)
		j->warned[j->n_warned++] = rec->vol;
	LOG_WARN("replay: skipping records of volume %s: %s", mirror_vol_id_format(&rec->vol, id),
		 why);
}

static struct apply_slot *free_slot(struct mirror_replay_job *j)
{
	for (unsigned i = 0; i < BATCH; i++)
		if (!j->slots[i].busy)
			return &j->slots[i];
	return NULL;
}

/* @return true if @p rec may start now (no overlapping record in flight). */
static bool may_start(struct mirror_replay_job *j, unsigned vi, const struct mirror_record *rec)
{
	for (unsigned i = 0; i < BATCH; i++) {
		const struct apply_slot *o = &j->slots[i];
		if (o->busy && o->vol == vi && o->start < rec->offset + rec->length &&
		    rec->offset < o->end)
			return false;
	}
	return true;
}

static void submit_record(struct mirror_replay_job *j, struct apply_slot *sl, unsigned vi,
			  const struct mirror_record *rec, const void *data)
{
	memset(&sl->io, 0, sizeof(sl->io));
	switch (rec->type) {
	case MIRROR_REC_WRITE:
		sl->io.op = STORE_OP_WRITE;
		sl->io.buf = (void *)(uintptr_t)data;
		break;
	case MIRROR_REC_ZERO:
		sl->io.op = STORE_OP_WRITE_ZEROES;
		if (rec->flags & MIRROR_RF_NO_HOLE)
			sl->io.flags |= STORE_F_NO_HOLE;
		break;
	default:
		sl->io.op = STORE_OP_TRIM;
		break;
	}
	sl->io.offset = rec->offset;
	sl->io.length = rec->length;
	sl->io.done = slot_done;
	sl->vol = vi;
	sl->start = rec->offset;
	sl->end = rec->offset + rec->length;
	sl->rec_len = rec->rec_len;
	sl->busy = true;
	j->inflight++;
	j->vols[vi].dirty = true;
	store_submit(j->vols[vi].v, &sl->io);
}

static void finish_task(void *arg)
{
	struct mirror_replay_job *j = arg;
	int rc = j->err;

	if (rc == 0 && (j->flags & MIRROR_REPLAY_RETIRE) && j->own_map)
		rc = mirror_image_retire(&j->map);
	/* Applied and durable: a log not yet recovered is now (as at boot). */
	if (rc == 0 && j->own_log && !j->own_log->recovered)
		rc = mirror_log_recovered(j->own_log);
	if (j->st.gap_at_start)
		LOG_WARN("replay: the first live record is %llu, expected %llu",
			 (unsigned long long)j->st.first_seq, (unsigned long long)j->st.cp_seq + 1);
	LOG_INFO("replay: %llu records (seq %llu-%llu, %llu data bytes, %llu skipped), ended at: "
		 "%s%s",
		 (unsigned long long)j->st.records, (unsigned long long)j->st.first_seq,
		 (unsigned long long)j->st.last_seq, (unsigned long long)j->st.bytes,
		 (unsigned long long)j->st.skipped, mirror_stop_name(j->st.stop),
		 rc ? " (failed)" : "");
	j->stage = J_DONE;
	j->done(j->arg, rc, &j->st);
}

/* Move the job on: start records while slots are free and order allows,
 * then flush the volumes written, then report (from a posted task, so
 * done never runs inside mirror_replay_start). */
static void job_pump(struct mirror_replay_job *j)
{
	if (j->stage == J_APPLY) {
		while (!j->err) {
			struct mirror_record rec;
			const void *data;
			unsigned vi;

			if (j->have_next) {
				rec = j->next;
				data = j->next_data;
			} else if (mirror_log_iter_next(&j->it, &rec, &data) <= 0) {
				break;
			}
			j->have_next = false;
			for (vi = 0; vi < j->n_vols; vi++)
				if (!memcmp(&j->vols[vi].id, &rec.vol, sizeof(rec.vol)))
					break;
			const char *why = NULL;
			if (vi == j->n_vols)
				why = "not on this shelf";
			else if (store_check_range(j->vols[vi].v, rec.offset, rec.length) < 0)
				why = "record beyond the end of the volume";
			if (why) {
				skip(j, &rec, why);
				mirror_log_iter_account(&j->it, &rec);
				j->it.done_bytes += rec.rec_len;
				continue;
			}
			struct apply_slot *sl = may_start(j, vi, &rec) ? free_slot(j) : NULL;
			if (!sl) {
				j->next = rec;
				j->next_data = data;
				j->have_next = true;
				return; /* a completion pumps again */
			}
			mirror_log_iter_account(&j->it, &rec);
			submit_record(j, sl, vi, &rec, data);
		}
		if (j->inflight)
			return;
		j->stage = J_FLUSH;
	}
	/* Make what was written durable, a slot's worth of volumes at a time. */
	for (unsigned i = 0; j->stage == J_FLUSH && !j->err && i < j->n_vols; i++) {
		struct apply_slot *sl;
		if (!j->vols[i].dirty)
			continue;
		sl = free_slot(j);
		if (!sl)
			return;
		memset(&sl->io, 0, sizeof(sl->io));
		sl->io.op = STORE_OP_FLUSH;
		sl->io.done = slot_done;
		sl->busy = true;
		j->inflight++;
		j->vols[i].dirty = false;
		store_submit(j->vols[i].v, &sl->io);
	}
	if (j->stage == J_FLUSH && !j->inflight && !j->finished) {
		j->finished = true;
		loop_post(j->loop, &j->task);
	}
}

static int job_new(struct loop *loop, struct store *s, unsigned flags,
		   struct mirror_replay_job **out)
{
	struct mirror_replay_job *j = calloc(1, sizeof(*j));
	unsigned n = store_volume_count(s);

	if (!j)
		return -ENOMEM;
	j->vols = calloc(n ? n : 1, sizeof(*j->vols));
	if (!j->vols) {
		free(j);
		return -ENOMEM;
	}
	j->loop = loop;
	j->s = s;
	j->flags = flags;
	j->map.fd = -1;
	for (unsigned i = 0; i < n; i++) {
		struct store_volume_info info;
		struct store_volume *v = store_volume_at(s, i);
		store_volume_get_info(v, &info);
		if (mirror_vol_id_from_uuid(info.uuid, &j->vols[j->n_vols].id) < 0) {
			LOG_WARN("replay: volume %s has no usable uuid '%s'", info.name, info.uuid);
			continue;
		}
		j->vols[j->n_vols++].v = v;
	}
	for (unsigned i = 0; i < BATCH; i++)
		j->slots[i].job = j;
	loop_task_init(&j->task, finish_task, j);
	*out = j;
	return 0;
}

void mirror_replay_free(struct mirror_replay_job *j)
{
	if (!j)
		return;
	if (j->own_map)
		mirror_image_unmap(&j->map);
	free(j->vols);
	free(j);
}

static int job_start(struct mirror_replay_job *j, const void *img, size_t size)
{
	int rc = mirror_log_iter_init(&j->it, img, size, j->flags, &j->st);

	if (rc < 0)
		return rc;
	j->stage = J_APPLY;
	job_pump(j);
	return 0;
}

int mirror_replay_start(const char *path, struct loop *loop, struct store *s, unsigned flags,
			void (*done)(void *arg, int rc, const struct mirror_replay_stats *st),
			void *arg, struct mirror_replay_job **out)
{
	struct mirror_replay_job *j;
	int rc;

	rc = job_new(loop, s, flags, &j);
	if (rc < 0)
		return rc;
	j->done = done;
	j->arg = arg;
	rc = mirror_image_map(path, 0, flags & MIRROR_REPLAY_RETIRE, &j->map);
	if (rc < 0)
		goto err;
	j->own_map = true;
	rc = job_start(j, j->map.base, j->map.size);
	if (rc < 0)
		goto err;
	*out = j;
	return 0;
err:
	mirror_replay_free(j);
	return rc;
}

int mirror_replay_own_start(struct mirror *m, struct loop *loop, struct store *s,
			    void (*done)(void *arg, int rc, const struct mirror_replay_stats *st),
			    void *arg, struct mirror_replay_job **out)
{
	struct mirror_replay_job *j;
	const void *base = m->base;
	size_t size = m->size;
	int rc;

	/* Not recovered yet (taken over at boot): what a boot would replay;
	 * recovered: the records since the last consistency point. */
	if (!m->recovered && !mirror_log_replay_wanted(m, &base, &size))
		return -ENODATA;
	rc = job_new(loop, s, 0, &j);
	if (rc < 0)
		return rc;
	j->done = done;
	j->arg = arg;
	j->own_log = m;
	rc = job_start(j, base, size);
	if (rc < 0) {
		mirror_replay_free(j);
		return rc;
	}
	*out = j;
	return 0;
}

void mirror_replay_progress(const struct mirror_replay_job *j, uint64_t *done, uint64_t *total)
{
	*done = j->it.done_bytes;
	*total = j->it.live_bytes;
}

/* ---- synchronous wrappers (boot and tools: not from a loop callback) ---- */

struct sync_wait {
	bool done;
	int rc;
	struct mirror_replay_stats st;
};

static void sync_done(void *arg, int rc, const struct mirror_replay_stats *st)
{
	struct sync_wait *w = arg;

	w->done = true;
	w->rc = rc;
	w->st = *st;
}

static int run_job(struct mirror_replay_job *j, struct sync_wait *w)
{
	while (!w->done) {
		int rc = loop_run_once(j->loop, 1000000000ull);
		if (rc < 0)
			return rc;
	}
	return w->rc;
}

int mirror_replay_file_to_store(const char *path, struct loop *loop, struct store *s,
				unsigned flags, struct mirror_replay_stats *st)
{
	struct sync_wait w = {0};
	struct mirror_replay_job *j = NULL;
	int rc;

	rc = mirror_replay_start(path, loop, s, flags, sync_done, &w, &j);
	if (rc == 0)
		rc = run_job(j, &w);
	if (st)
		*st = w.st;
	mirror_replay_free(j);
	return rc;
}

int mirror_recover_to_store(struct mirror *m, struct loop *loop, struct store *s,
			    struct mirror_replay_stats *st)
{
	struct mirror_replay_stats local;
	struct sync_wait w = {0};
	struct mirror_replay_job *j;
	const void *base;
	size_t size;
	int rc;

	if (!st)
		st = &local;
	if (!mirror_log_replay_wanted(m, &base, &size))
		return mirror_recover(m, NULL, NULL, st); /* nothing to apply: reset */
	rc = job_new(loop, s, 0, &j);
	if (rc < 0)
		return rc;
	j->done = sync_done;
	j->arg = &w;
	rc = job_start(j, base, size);
	if (rc == 0)
		rc = run_job(j, &w);
	mirror_replay_free(j);
	if (rc < 0 && rc != -ENODATA)
		return rc;
	*st = w.st;
	return mirror_log_recovered(m);
}
