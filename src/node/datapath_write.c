/* The datapath's write paths (docs/MIRROR.md, "The write path"): a logged
 * write takes its range in the volume's lock, is appended to the NVRAM log
 * and written to the volume at once, and completes when both are done; a
 * write of a volume being moved without a log still takes its range and
 * reaches both copies. Consistency points sync the volumes written since
 * the last one. Apart from datapath.c because this is what the mirror
 * sees of the datapath, and datapath.c is what clients see. */
#define LOG_MODULE "datapath"
#include "node/datapath_int.h"

#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"

/* ---- the logged write path (docs/MIRROR.md, "The write path") ---- */

/* Both halves are in: the record is logged (and replicated, as the
 * settings ask) and the volume write is done. Unlock first, so a write
 * waiting on this range starts before the reply goes out. */
static void logged_write_end(struct dp_io *bio)
{
	if (--bio->pending)
		return;
	mirror_range_unlock(&bio->bv->rl, &bio->range);
	dp_bio_finish(bio, bio->store_rc ? bio->store_rc : bio->log_rc);
}

/* The copy's half of a write (move.c): a failure fails the move, never
 * the client's write (the source has it). */
static void sink_done(struct store_io *sio, int result)
{
	struct dp_io *bio = container_of(sio, struct dp_io, tio);
	struct node_move_sink *sink = sio->arg;

	sink->inflight--;
	if (result < 0 && !sink->err)
		sink->err = result;
	logged_write_end(bio);
}

/* A write of a volume being moved goes to its copy too, under the same
 * range lock as the source's (a copier's chunk of it waits, or it waits for
 * the chunk). Counted in bio->pending by the caller. */
static void sink_submit(struct dp_io *bio)
{
	struct node_move_sink *sink = bio->bv->sink;

	memset(&bio->tio, 0, sizeof(bio->tio));
	bio->tio.op = bio->sio.op;
	bio->tio.flags = bio->sio.flags & STORE_F_NO_HOLE; /* made durable at the cut-over */
	bio->tio.offset = bio->sio.offset;
	bio->tio.length = bio->sio.length;
	bio->tio.buf = bio->sio.buf;
	bio->tio.done = sink_done;
	bio->tio.arg = sink;
	sink->inflight++;
	sink->writes++;
	store_submit(sink->target, &bio->tio);
}

static void lw_logged(struct mirror_write *w, int result)
{
	struct dp_io *bio = container_of(w, struct dp_io, mw);

	bio->log_rc = result;
	logged_write_end(bio);
}

static void lw_stored(struct store_io *sio, int result)
{
	struct dp_io *bio = container_of(sio, struct dp_io, sio);

	bio->store_rc = dp_store_result(bio->b, result);
	mirror_applied(bio->b->m, &bio->mw);
	logged_write_end(bio);
}

/* A fast zero is tried on the volume first: if the file system cannot do
 * it quickly the client falls back to writing zeros, and a ZERO record in
 * the log would have zeroed the range on a replay for nothing. Only once
 * it is done is the record appended (and at once applied). */
static void lw_fast_zero_stored(struct store_io *sio, int result)
{
	struct dp_io *bio = container_of(sio, struct dp_io, sio);
	int rc;

	if (result < 0) {
		mirror_range_unlock(&bio->bv->rl, &bio->range);
		dp_bio_finish(bio, dp_store_result(bio->b, result));
		return;
	}
	bio->pending = 1;
	if (bio->bv->sink) {
		bio->pending++;
		sink_submit(bio);
	}
	rc = mirror_append(bio->b->m, &bio->mw);
	if (rc < 0) {
		bio->log_rc = rc;
		logged_write_end(bio);
		return;
	}
	mirror_applied(bio->b->m, &bio->mw);
}

/* The range is ours: append the record and write the volume at once, in
 * parallel (waiting for the log first could deadlock: a full log waits for
 * a consistency point, which waits for the volume writes). */
void dp_lw_start(struct dp_io *bio)
{
	struct node_datapath *b = bio->b;
	struct dp_vol *bv = bio->bv;
	int rc;

	/* Granted later than submitted (an overlapping write was ahead): the
	 * lease may have closed since, and nothing may reach the log (and the
	 * partner's image of it) or the volume without it. */
	if (!dp_io_allowed(b) || b->held_head) {
		bio->granted = true;
		dp_hold_bio(b, bio);
		return;
	}
	bv->dirty = true;
	if (bio->sio.flags & STORE_F_FAST_ZERO) {
		bio->sio.done = lw_fast_zero_stored;
		store_submit(bv->v, &bio->sio);
		return;
	}
	rc = mirror_append(b->m, &bio->mw);
	if (rc < 0) {
		LOG_ERROR("NVRAM log refused a write of %llu bytes: %s",
			  (unsigned long long)bio->mw.length, strerror(-rc));
		mirror_range_unlock(&bv->rl, &bio->range);
		dp_bio_finish(bio, -EIO);
		return;
	}
	if (bv->sink)
		bio->pending++;
	store_submit(bv->v, &bio->sio);
	if (bv->sink)
		sink_submit(bio);
}

static void lw_granted(struct mirror_range *r)
{
	dp_lw_start(r->arg);
}

void dp_logged_write(struct node_datapath *b, struct dp_io *bio)
{
	struct nbd_io *io = bio->nio;
	struct mirror_write *w = &bio->mw;

	w->vol = bio->bv->id;
	w->type = io->type == NBD_CMD_WRITE	     ? MIRROR_REC_WRITE
		  : io->type == NBD_CMD_WRITE_ZEROES ? MIRROR_REC_ZERO
						     : MIRROR_REC_TRIM;
	w->flags = 0;
	if (io->flags & NBD_CMD_FLAG_FUA)
		w->flags |= MIRROR_RF_FUA;
	if (w->type == MIRROR_REC_ZERO && (io->flags & NBD_CMD_FLAG_NO_HOLE))
		w->flags |= MIRROR_RF_NO_HOLE;
	w->offset = io->offset;
	w->length = io->length;
	w->data = w->type == MIRROR_REC_WRITE ? io->buf : NULL;
	w->logged = lw_logged;
	w->arg = bio;
	if (b->drop_fua)
		bio->sio.flags &= ~STORE_F_FUA;
	bio->sio.done = lw_stored;
	bio->pending = 2;
	bio->log_rc = bio->store_rc = 0;
	b->inflight++;
	bio->bv->inflight++;
	if (mirror_range_lock(&bio->bv->rl, &bio->range, io->offset, io->length, lw_granted, bio))
		dp_lw_start(bio);
}

/* Without a log, a write of a volume being moved still takes its range
 * (ordered against the copier) and goes to both copies. */
static void nl_stored(struct store_io *sio, int result)
{
	struct dp_io *bio = container_of(sio, struct dp_io, sio);

	bio->store_rc = result;
	/* A fast zero reaches the copy only once the source did it (refused,
	 * the range must stay as it was on both). */
	if ((sio->flags & STORE_F_FAST_ZERO) && result == 0 && bio->bv->sink) {
		bio->pending++;
		sink_submit(bio);
	}
	logged_write_end(bio);
}

static void nl_start(struct dp_io *bio)
{
	struct dp_vol *bv = bio->bv;
	bool both = bv->sink && !(bio->sio.flags & STORE_F_FAST_ZERO);

	bv->dirty = true;
	bio->pending = both ? 2 : 1;
	store_submit(bv->v, &bio->sio);
	if (both)
		sink_submit(bio);
}

static void nl_granted(struct mirror_range *r)
{
	nl_start(r->arg);
}

void dp_nl_write(struct node_datapath *b, struct dp_io *bio)
{
	struct nbd_io *io = bio->nio;

	bio->sio.done = nl_stored;
	bio->log_rc = bio->store_rc = 0;
	b->inflight++;
	bio->bv->inflight++;
	if (mirror_range_lock(&bio->bv->rl, &bio->range, io->offset, io->length, nl_granted, bio))
		nl_start(bio);
}

void dp_lw_flushed(struct mirror_flush *f, int result)
{
	struct dp_io *bio = container_of(f, struct dp_io, mf);

	dp_bio_finish(bio, dp_store_result(bio->b, result));
}

/* A consistency point: fdatasync every volume written since the last one
 * (the mirror calls this once every record it covers has reached its
 * volume, and never twice at once). */
static void cp_vol_done(struct store_io *sio, int result)
{
	struct dp_vol *bv = container_of(sio, struct dp_vol, cp_io);
	struct node_datapath *b = bv->b;

	if (result < 0) {
		LOG_ERROR("volume %s: fdatasync for a consistency point: %s",
			  store_volume_name(bv->v), strerror(-result));
		bv->dirty = true; /* the next one tries again */
		if (!b->cp_rc)
			b->cp_rc = result;
	}
	bv->inflight--;
	dp_vol_maybe_free(bv);
	if (--b->cp_pending == 0)
		b->cp_done(b->cp_arg, b->cp_rc);
}

void node_datapath_checkpoint(struct node_datapath *b, mirror_done_fn done, void *arg)
{
	b->cp_done = done;
	b->cp_arg = arg;
	b->cp_rc = 0;
	b->cp_pending = 1; /* held until every flush is submitted */
	for (struct dp_vol *bv = b->vols; bv; bv = bv->next) {
		if (!bv->dirty || bv->deleted)
			continue;
		bv->dirty = false;
		bv->inflight++;
		memset(&bv->cp_io, 0, sizeof(bv->cp_io));
		bv->cp_io.op = STORE_OP_FLUSH;
		bv->cp_io.done = cp_vol_done;
		b->cp_pending++;
		store_submit(bv->v, &bv->cp_io);
	}
	if (--b->cp_pending == 0)
		done(arg, 0);
}
