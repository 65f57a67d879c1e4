/* Private to src/mirror (and its tests, tools and fuzzers): the on-disk
 * format of the NVRAM log, the engine's state, and every function one file
 * of the module offers another, grouped by the file that defines it.
 *
 * Names: the module is "mirror"; the node's own file is "the log" (the
 * NVRAM log, mirror_log_*); the partner's copy of it is "the partner image"
 * (same bytes, same format); a record is mirror_rec_*. An "image" without
 * more is either: the parser (image.c) reads both alike.
 *
 * Rule of the format: every offset is relative to the start of the file and
 * every field is little-endian, read and written only through
 * common/byteorder.h (mirror_log_header_encode/decode, mirror_rec_encode,
 * mirror_rec_header_decode), so the same bytes mean the same thing in the
 * log, in the partner image and on any machine. docs/MIRROR.md describes it.
 */
#ifndef DUET_MIRROR_MIRROR_INT_H
#define DUET_MIRROR_MIRROR_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/list.h"
#include "common/loop.h"
#include "mirror/mirror.h"

/* ------------------------------------------------------------------ */
/* The log format */

#define MIRROR_LOG_MAGIC	 0x48564e44u /* "DNVH" */
#define MIRROR_REC_MAGIC	 0x52564e44u /* "DNVR" */
#define MIRROR_LOG_VERSION_MAJOR 1
#define MIRROR_LOG_VERSION_MINOR 0
#define MIRROR_LOG_HDR_SIZE	 4096u /* header area; half 0 starts here */
#define MIRROR_LOG_SLOT_STRIDE	 512u  /* header slot 0 at 0, slot 1 at 512 */
#define MIRROR_LOG_SLOT_BYTES	 128u  /* bytes of a slot covered by its CRC */
#define MIRROR_REC_ALIGN	 64u
#define MIRROR_REC_HDR_SIZE	 64u
#define MIRROR_LOG_F_IMAGE_VALID 1u /* an image holding this header is complete */
#define MIRROR_LOG_F_LOCAL_SYNC	 2u /* written with durability = local-sync */

/* One header slot, decoded; the struct's layout is the slot's (offsets and
 * size asserted below). The valid slot with the higher gen is the header. */
struct mirror_log_header {
	uint32_t magic;
	uint32_t crc; /* CRC32C of the 128 slot bytes with this field 0 */
	uint16_t major;
	uint16_t minor;
	uint32_t hdr_size;  /* offset of half 0 */
	uint64_t gen;	    /* bumped on every header write */
	uint64_t log_size;  /* bytes of the file */
	uint64_t half_size; /* bytes of each half */
	uint64_t log_id;    /* random, new at creation and at every reset */
	uint64_t cp_seq;    /* records with seq <= cp_seq are in the volume files */
	uint32_t flags;	    /* MIRROR_LOG_F_* */
	uint32_t rec_align;
	char node[16];	     /* node id that writes this log, NUL padded */
	uint64_t created;    /* unix seconds of the last reset */
	uint8_t boot_id[16]; /* kernel boot id of the writer (memory-mode logs
				are only trusted within the same boot) */
	uint8_t reserved[24];
};

/* Record header, decoded (layout as on disk); data_len bytes of data
 * follow, then zero padding to 64. */
struct mirror_rec_header {
	uint32_t magic;
	uint32_t crc; /* CRC32C of this header with crc = 0, then of the data */
	uint64_t seq;
	uint64_t log_id;
	uint8_t vol[16];
	uint64_t offset; /* in the volume */
	uint64_t length; /* bytes of the volume the record covers */
	uint32_t data_len;
	uint16_t type;
	uint16_t flags;
};

_Static_assert(sizeof(struct mirror_log_header) == MIRROR_LOG_SLOT_BYTES, "header slot size");
_Static_assert(offsetof(struct mirror_log_header, created) == 80, "header layout");
_Static_assert(offsetof(struct mirror_log_header, reserved) == 104, "header layout");
_Static_assert(sizeof(struct mirror_rec_header) == MIRROR_REC_HDR_SIZE, "record header size");
_Static_assert(offsetof(struct mirror_rec_header, data_len) == 56, "record header layout");

static inline uint64_t mirror_rec_align(uint64_t v)
{
	return (v + MIRROR_REC_ALIGN - 1) & ~(uint64_t)(MIRROR_REC_ALIGN - 1);
}

/* Bytes a record with @p data_len bytes of data takes in the log. */
static inline uint64_t mirror_rec_len(uint32_t data_len)
{
	return mirror_rec_align((uint64_t)MIRROR_REC_HDR_SIZE + data_len);
}

static inline uint64_t mirror_log_half_off(const struct mirror_log_header *h, unsigned half)
{
	return h->hdr_size + (uint64_t)half * h->half_size;
}

/* Replay order over an image: live records (seq > cp_seq) in sequence
 * order, ending at the first torn, corrupt or missing one. */
struct mirror_log_iter {
	const uint8_t *img;
	size_t size;
	struct mirror_log_header h;
	unsigned half[2], n_halves, k; /* live halves, oldest first; current */
	uint64_t pos;		       /* in the current half */
	uint64_t half_last;	       /* seq of the previous record of the chain */
	uint64_t expect;	       /* next seq to apply; 0 before the first */
	bool done;
	uint64_t live_bytes, done_bytes; /* log bytes of live chains, applied so far */
	struct mirror_replay_stats *st;
};

/* ------------------------------------------------------------------ */
/* The engine's state (struct mirror), shared by its files */

#define MIRROR_MIN_LOG_SIZE (64u << 10)
#define MIRROR_CP_RETRY_NS  (1000ull * NS_PER_MS)

/* mirror_write.st bits */
#define W_QUEUED  (1u << 0) /* accepted (append returned >= 0) */
#define W_PLACED  (1u << 1) /* every record is in the log */
#define W_APPLIED (1u << 2) /* mirror_applied was called */
#define W_LINKED  (1u << 3) /* on the unapplied list */
#define W_LOGGED  (1u << 4) /* logged callback ran */

enum mirror_half_state { H_FREE = 0, H_ACTIVE, H_SEALED };

/* One half of the log, as the engine uses it. */
struct mirror_half {
	uint64_t base;		      /* file offset */
	uint64_t tail;		      /* bytes of records (relative) */
	uint64_t sent;		      /* bytes handed to the transport (relative) */
	uint64_t image;		      /* the partner image holds [0, image) of this use */
	uint64_t first_seq, last_seq; /* 0 when empty */
	enum mirror_half_state state;
	unsigned xfers; /* transport writes reading this half, any epoch */
};

enum mirror_xfer_kind { XF_RECORDS, XF_HEADER, XF_COPY };

/* A transport write in flight (a slot of the ring). */
struct mirror_xfer {
	struct mirror *m;
	enum mirror_xfer_kind kind;
	int half; /* -1 for the header */
	uint64_t off, len;
	uint64_t last_seq; /* records: all <= are in the image once this lands */
	uint64_t cp_seq;   /* header: the checkpoint it carries */
	bool valid;	   /* header: the image-valid flag it carries */
	uint32_t epoch;
	int result;
	bool done;
};

/* Resync: mark the image invalid, copy the live ranges, mark it valid. */
enum mirror_resync_stage {
	RS_NONE = 0,
	RS_MARK,   /* header with valid = 0 in flight */
	RS_PLAN,   /* it landed: choose the ranges to copy */
	RS_COPY,   /* copies being issued or in flight */
	RS_FINISH, /* header with valid = 1 in flight */
};

/* A FIFO of writes (mirror_write.q_node) with its length. */
struct mirror_wqueue {
	struct slist q;
	unsigned n;
};

/* The work task lives apart from struct mirror so a close with the task
 * still queued in the loop can leave it behind, disarmed. */
struct mirror_work {
	struct loop_task task;
	struct mirror *m;
};

struct mirror_syncer;
struct mirror_encoder;

struct mirror {
	struct loop *loop;
	struct mirror_opts o;
	char path[4096];
	char node_id[17];
	const struct mirror_host_ops *host;
	void *host_ctx;

	/* The log file (log.c). */
	int fd;
	uint8_t *base;
	uint64_t size;
	uint64_t want_size;
	struct mirror_log_header hdr; /* the header as it should be */
	unsigned hdr_slot;	      /* slot holding the newest written header */
	uint64_t written_cp;	      /* cp_seq in that slot */
	bool written_valid;
	bool hdr_valid;	  /* flag for the next header: the image is complete */
	bool hdr_pending; /* a header write waits for the transfer in flight */
	struct mirror_half h[2];
	int active; /* -1 when both halves wait for a checkpoint */
	uint32_t chunk_max;
	uint32_t max_xfer;
	bool recovered;
	bool trusted; /* the log's records may be replayed (see log.c, load) */
	uint8_t boot_id[16];
	uint64_t live_at_open;
	uint64_t max_seq_at_open;

	/* Appends (append.c). */
	uint64_t next_seq;
	uint64_t placed_seq;		  /* last seq placed */
	struct mirror_wqueue wait_space;  /* appends waiting for a free half */
	struct mirror_wqueue wait_logged; /* placed, logged callback pending, seq order */
	struct mirror_encoder *enc;	  /* seals records of >= o.encode_min data bytes */
	struct list unapplied;		  /* mirror_write.a_node: not yet applied, seq order */

	/* Durability watermarks. */
	uint64_t repl_seq;   /* records <= are in the partner image */
	uint64_t synced_seq; /* records <= are fdatasync'ed locally */
	uint64_t cp_durable; /* a header with this cp_seq is fdatasync'ed */
	uint64_t cp_mirror;  /* a header with this cp_seq is in the image */
	uint64_t sync_req_seq, sync_req_cp;
	uint64_t sync_ticket;
	bool sync_inflight;
	bool sync_failed;
	struct mirror_syncer *sync;

	/* Consistency points (cp.c). */
	bool cp_running;
	bool cp_host_wait; /* host->checkpoint called, done not yet */
	bool cp_host_done;
	int cp_host_result;
	int cp_error; /* to hand to the waiting flushes */
	uint64_t cp_target, cp_want;
	uint64_t cp_backoff_until;
	struct slist flushes; /* mirror_flush.node, in arrival order */
	struct loop_timer cp_timer;

	/* Transport and resync (replicate.c). */
	const struct mirror_transport_ops *tops;
	void *tctx;
	bool tattached;
	bool tup;
	uint32_t epoch;
	enum mirror_state state;
	char reason[160];
	struct mirror_xfer *ring;
	unsigned ring_n, ring_head, ring_count;
	unsigned rec_inflight; /* XF_RECORDS in the ring: group commit (replicate.c) */
	bool hdr_inflight;
	bool hdr_dirty;
	enum mirror_resync_stage rs;
	uint64_t rs_seq;    /* records <= are covered by the resync copies */
	unsigned rs_copies; /* copy writes not yet landed */
	int rs_half[2];	    /* halves to copy, oldest first */
	uint64_t rs_end[2]; /* bytes of each to copy */
	unsigned rs_n, rs_cur;
	uint64_t rs_off; /* copy cursor in rs_half[rs_cur] */
	uint64_t retry_at_ns;
	struct loop_timer retry_timer;

	/* Partner-outdated mark (host->partner_outdated, append.c). */
	bool out_want, out_have, out_inflight, out_sent;
	bool out_done_flag;
	int out_done_result;
	int out_last_err;	     /* of the last failed attempt (logged once), or 0 */
	struct loop_timer out_timer; /* the next attempt after a failure */

	struct loop_timer suspend_timer;
	int fail_held; /* mirror_fail_held: the error for held writes, or 0 */
	struct mirror_work *work;
	bool closing;
	bool reset_pending; /* mirror_reset: waiting for the transport to drain */
	mirror_done_fn reset_done;
	void *reset_arg;

	uint64_t n_records, n_record_bytes, n_xfers, n_xfer_bytes, n_cps, n_switches, n_space_waits,
	    n_resyncs, n_suspend_timeouts;
};

/* ------------------------------------------------------------------ */
/* Functions, by the file that defines them */

/* image.c: the stateless parser and encoder of the format */
/* Half size of a log of @p size bytes (rounded down to 4 KiB). */
uint64_t mirror_log_half_size_for(uint64_t size);
/* Encode @p h into the 128 bytes at @p dst, with its CRC filled in. */
void mirror_log_header_encode(void *dst, const struct mirror_log_header *h);
/* Decode the 128 slot bytes at @p src into @p h (no check). */
void mirror_log_header_decode(const void *src, struct mirror_log_header *h);
/* Whether @p h's layout fits in @p size bytes (checked arithmetic). */
bool mirror_log_geometry_ok(const struct mirror_log_header *h, size_t size);
/* Newest valid header slot: 0, -ENODATA (none), -EPROTO (major), -EINVAL
 * (no slot with a valid CRC), -EBADMSG (a valid slot, impossible geometry). */
int mirror_log_header_read(const void *img, size_t size, struct mirror_log_header *out,
			   unsigned *slot);
/* Write @p h into the slot other than @p cur_slot and return it (caller bumps gen). */
unsigned mirror_log_header_write(void *img, const struct mirror_log_header *h, unsigned cur_slot);
/* Encode a record at @p dst (header, data, zero padding, CRC); @return mirror_rec_len. */
uint64_t mirror_rec_encode(void *dst, uint64_t seq, uint64_t log_id,
			   const struct mirror_vol_id *vol, uint16_t type, uint16_t flags,
			   uint64_t offset, uint64_t length, const void *data, uint32_t data_len);
/* mirror_rec_encode in two steps: the header with a CRC of 0, then (maybe
 * on another thread: encoder.c) the data, the padding and the CRC. A record
 * between the two is torn to every reader. */
void mirror_rec_encode_header(void *dst, uint64_t seq, uint64_t log_id,
			      const struct mirror_vol_id *vol, uint16_t type, uint16_t flags,
			      uint64_t offset, uint64_t length, uint32_t data_len);
void mirror_rec_seal(void *dst, const void *data, uint32_t data_len);
/* Decode the record header at @p src into @p r (no check). */
void mirror_rec_header_decode(const void *src, struct mirror_rec_header *r);
/* Check the record at @p rec (@p room bytes to the end of its half) from
 * one copy of its header, returned in @p out when valid. */
enum mirror_stop mirror_rec_read(const void *rec, uint64_t room, uint64_t log_id,
				 uint64_t half_size, struct mirror_rec_header *out);
/* mirror_rec_read without the copy: NONE if whole and of @p log_id. */
enum mirror_stop mirror_rec_check(const void *rec, uint64_t room, uint64_t log_id,
				  uint64_t half_size);
/* Start a replay-order walk; @return 0 or an error as mirror_replay (st reset and filled). */
int mirror_log_iter_init(struct mirror_log_iter *it, const void *img, size_t size, unsigned flags,
			 struct mirror_replay_stats *st);
/* @return 1 with the next live record, or 0 at the end (st->stop says why). */
int mirror_log_iter_next(struct mirror_log_iter *it, struct mirror_record *rec, const void **data);
/* Count @p rec as applied in the walk's stats. */
void mirror_log_iter_account(struct mirror_log_iter *it, const struct mirror_record *rec);

/* state.c: the engine's work task trigger and its state */
/* Have the work task run soon (never inline; not once closing). */
void mirror_post(struct mirror *m);
/* Enter @p st with a reason (printf format); logs and tells the host on a change. */
void mirror_set_state(struct mirror *m, enum mirror_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The partner image takes record and header writes (in sync, or resync past the mark). */
bool mirror_image_follows(const struct mirror *m);

/* log.c: the log file: open, load, header writes, reset, recovery */
/* Create or load the log file at m->path (open, map, header); @return 0 or -errno. */
int mirror_log_open(struct mirror *m);
/* Unmap and close the log file. */
void mirror_log_close(struct mirror *m);
/* Write m->hdr (next gen) into the other slot, and to the partner image soon. */
void mirror_header_update(struct mirror *m);
/* Empty the log under a new log id, every old record checkpointed (synchronous). */
int mirror_log_reset(struct mirror *m);
/* The log needs replaying (live, trusted, not recovered): true with its mapping. */
bool mirror_log_replay_wanted(const struct mirror *m, const void **base, size_t *size);
/* The replay is applied and durable: reset the log (as mirror_recover). */
int mirror_log_recovered(struct mirror *m);

/* append.c: appends, halves, logged callbacks, the outdated mark, local syncs */
/* Free sealed halves that every side has checkpointed; activate one if none is. */
void mirror_free_halves(struct mirror *m);
/* Place the appends that waited for space, in order, while they fit. */
void mirror_place_waiters(struct mirror *m);
/* The last seq up to which every record is whole in the log (the one
 * before the oldest the encoder has not sealed; else the last placed). */
uint64_t mirror_encoded_seq(const struct mirror *m);
/* Call @c logged of the writes whose durability the settings ask for is reached. */
void mirror_complete_logged(struct mirror *m);
/* mirror_down = suspend: fail writes held past the timeout (or mirror_fail_held). */
void mirror_suspend_step(struct mirror *m);
/* Tell the host the partner image became outdated or current, one call at a time. */
void mirror_outdate_step(struct mirror *m);
/* Start one fdatasync of the log covering what waits for it (group commit). */
void mirror_sync_step(struct mirror *m);
/* The syncer's completion (on the loop). */
void mirror_sync_done(void *arg);

/* cp.c: consistency points and FLUSH */
/* Ask for a consistency point covering records up to @p target. */
void mirror_request_cp(struct mirror *m, uint64_t target);
/* Move the consistency point on: wait for volume writes, host checkpoint, header. */
void mirror_cp_step(struct mirror *m);
/* Complete the flushes the durable state now covers (or the CP error fails). */
void mirror_flush_complete(struct mirror *m);
/* cp_interval_ms timer. */
void mirror_cp_timer_fn(struct loop_timer *t);

/* replicate.c: transport writes into the partner image, and resync */
/* The partner image stops following the log: new epoch, degraded (as @p why). */
void mirror_lose_partner(struct mirror *m, const char *why);
/* Account for landed transport writes, in issue order. */
void mirror_ring_process(struct mirror *m);
/* Issue the header, resync copies and records the image lacks, as the window allows. */
void mirror_kick_sends(struct mirror *m);
/* Move a resync through its stages (start one when the partner is back). */
void mirror_resync_step(struct mirror *m);
/* Half @p hi is still to be copied by the resync in progress. */
bool mirror_in_copy_plan(const struct mirror *m, int hi);

/* thread.c: a worker thread of the log and its way back to the loop */
struct mirror_thread {
	struct loop *loop;
	int efd;
	struct loop_io io;
	void (*done)(void *arg);
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu; /* the owner's fields and stop */
	pthread_cond_t cv;  /* signalled on new work and on stop */
	bool stop;
};
/* Start @p fn(@p fn_arg) on a thread; @p done(@p arg) runs on @p loop after
 * each mirror_thread_wake_loop. @return 0 or -errno. */
int mirror_thread_start(struct mirror_thread *t, struct loop *loop, void *(*fn)(void *),
			void *fn_arg, void (*done)(void *arg), void *arg);
/* Set stop, signal the condition and join the thread. */
void mirror_thread_stop(struct mirror_thread *t);
/* From the thread: have done run on the loop (wake-ups coalesce). */
void mirror_thread_wake_loop(struct mirror_thread *t);

/* syncer.c: a thread that fdatasyncs the log so the loop never blocks on it */
/* Start it; @p done(@p arg) runs on the loop when a sync finished. */
int mirror_syncer_start(struct loop *loop, int fd, void (*done)(void *arg), void *arg,
			struct mirror_syncer **out);
/* Wait for the sync in progress, then stop the thread. */
void mirror_syncer_stop(struct mirror_syncer *s);
/* Ask for an fdatasync covering all written so far, reported back as @p ticket. */
void mirror_syncer_request(struct mirror_syncer *s, uint64_t ticket);
/* Highest ticket made durable, and the error of the last sync (0 or -errno). */
uint64_t mirror_syncer_result(struct mirror_syncer *s, int *err);

/* encoder.c: a thread that seals large records (data copy and CRC) off the loop */
/* A record placed whose data the encoder is still to copy and seal. */
struct mirror_enc_job {
	uint8_t *dst;	  /* the record in the log (its header written) */
	const void *data; /* the write's data, alive until the write is logged */
	uint32_t data_len;
	uint64_t seq;
	int half; /* where the record starts: half and offset in it */
	uint64_t off;
};
/* Start it; @p done(@p arg) runs on the loop when jobs were finished. */
int mirror_encoder_start(struct loop *loop, void (*done)(void *arg), void *arg,
			 struct mirror_encoder **out);
/* Finish the job in progress, drop the queued ones (their writes were never
 * logged, so their torn records end a replay before no acknowledged one),
 * and stop the thread. */
void mirror_encoder_stop(struct mirror_encoder *e);
/* Queue @p j (sealed in queue order); false when the queue is full. */
bool mirror_encoder_push(struct mirror_encoder *e, const struct mirror_enc_job *j);
/* The oldest job not yet sealed, in @p out if not NULL; false when none. */
bool mirror_encoder_oldest(struct mirror_encoder *e, struct mirror_enc_job *out);
/* For tests: hold the encoder before its next job (or let it go on). */
void mirror_encoder_pause(struct mirror_encoder *e, bool pause);

/* transport.c: the loopback transport, for tests (the partner image is a buffer) */
struct mirror_loopback;
/* A transport whose writes land in @p image (@p size bytes) when they complete. */
int mirror_loopback_create(struct loop *loop, void *image, uint64_t size,
			   struct mirror_loopback **out);
/* Free it (the loop must not hold its task). */
void mirror_loopback_destroy(struct mirror_loopback *lb);
/* Its ops, to attach with mirror_attach_transport(m, ops, lb). */
const struct mirror_transport_ops *mirror_loopback_ops(void);
/* Hold completions (they queue) instead of delivering them on the next turn. */
void mirror_loopback_hold(struct mirror_loopback *lb, bool hold);
/* Writes issued and not completed. */
unsigned mirror_loopback_pending(const struct mirror_loopback *lb);
/* Complete the @p i-th pending write (issue order): copy unless @p result < 0, then call back. */
void mirror_loopback_complete(struct mirror_loopback *lb, unsigned i, int result);
/* The next @p n writes fail with -EIO (nothing copied). */
void mirror_loopback_fail_next(struct mirror_loopback *lb, unsigned n);
/* Writes and bytes accepted so far. */
void mirror_loopback_counts(const struct mirror_loopback *lb, uint64_t *writes, uint64_t *bytes);

/* ---- log.c / image_file.c ---- */

/** The kernel's boot id (/proc/sys/kernel/random/boot_id); zeros when
 * unknown. */
void mirror_read_boot_id(uint8_t out[16]);
/** Write the boot note of the image @p map at @p image_path as if the
 * kernel's boot id were @p boot_id (mirror_image_boot_note; tests forge
 * another boot's note with it). */
int mirror_image_boot_note_as(const char *image_path, const struct mirror_image_map *map,
			      const uint8_t boot_id[16]);

#endif
