/**
 * @file mirror.h
 * The NVRAM log, its mirror in the partner, consistency points and replay.
 *
 * Every write the node accepts is appended as a record to a memory-mapped
 * log file (the node's "NVRAM"), replicated byte for byte to the same offset
 * of the partner's image of that log through a transport (RDMA through the
 * CCM; in-process for tests), and written to the volume file by the node.
 * The write is acknowledged once the record is logged (here: local copy,
 * replica, local sync as the durability setting asks) and the volume write
 * is done. The log has two halves: while one is being checkpointed (volumes
 * fdatasync'ed, then the half freed on both sides) the other takes appends.
 * docs/MIRROR.md describes the file layout and what survives what.
 *
 * Threading: everything runs on the loop's thread. Callbacks (logged,
 * flush done, transport completions into the mirror) are never called
 * inline from the call that started them.
 *
 * Write path (see also docs/MIRROR.md, "The write path"):
 *   1. the node takes a range lock on the volume range (mirror_range_lock)
 *      so overlapping writes reach the log and the volume in order;
 *   2. mirror_append() copies the record into the log (the caller's buffer
 *      may be reused once @c logged ran) and schedules replication;
 *   3. in parallel the node submits the volume write and, when it is done,
 *      calls mirror_applied() (never wait for @c logged before submitting:
 *      a full log waits for a consistency point, which waits for the
 *      volume writes);
 *   4. the NBD reply goes out when both @c logged and the volume write are
 *      done; then the range lock is released.
 */
#ifndef DUET_MIRROR_MIRROR_H
#define DUET_MIRROR_MIRROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/list.h"

struct loop;
struct store;
struct mirror;

/* ------------------------------------------------------------------ */
/** @name Records and volume ids */
/**@{*/

/** A volume's id in the log: the 16 bytes of its uuid (store metadata),
 * the same on both nodes since both open the same shelf metadata. */
struct mirror_vol_id {
	uint8_t b[16];
};

/** Parse "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" (hex, any case). @return 0 or -EINVAL. */
int mirror_vol_id_from_uuid(const char *uuid, struct mirror_vol_id *out);
/** Format as a lowercase uuid into @p buf (37 bytes). @return buf. */
const char *mirror_vol_id_format(const struct mirror_vol_id *id, char *buf);

/** What a record does to its volume range. */
enum mirror_rec_type {
	MIRROR_REC_WRITE = 1, /**< data follows the header */
	MIRROR_REC_ZERO = 2,  /**< write zeroes (no data) */
	MIRROR_REC_TRIM = 3,  /**< discard (no data; replay punches a hole) */
};

#define MIRROR_RF_FUA	  (1u << 0) /**< the client asked for FUA */
#define MIRROR_RF_NO_HOLE (1u << 1) /**< ZERO: keep the range allocated */

/** A record as replay and dump see it. */
struct mirror_record {
	uint64_t seq;
	struct mirror_vol_id vol;
	uint64_t offset;   /**< in the volume */
	uint64_t length;   /**< bytes of the volume covered */
	uint32_t data_len; /**< bytes of data (== length for WRITE, else 0) */
	uint16_t type;	   /**< enum mirror_rec_type */
	uint16_t flags;	   /**< MIRROR_RF_* */
	unsigned half;	   /**< 0 or 1 */
	uint64_t log_off;  /**< of the record header in the log */
	uint64_t rec_len;  /**< header + data + padding */
};

/**@}*/
/* ------------------------------------------------------------------ */
/** @name Reading an image (a log file or the partner's mirror of one) */
/**@{*/

/** Why the scan of a half, or a replay, ended. */
enum mirror_stop {
	MIRROR_STOP_NONE = 0,  /**< (not stopped) */
	MIRROR_STOP_END,       /**< no room for another record before the half ends */
	MIRROR_STOP_EMPTY,     /**< no record magic: never written, or stale zeros */
	MIRROR_STOP_INVALID,   /**< impossible header fields */
	MIRROR_STOP_CRC,       /**< CRC mismatch: torn or corrupt record */
	MIRROR_STOP_OTHER_LOG, /**< record of an earlier incarnation of the log */
	MIRROR_STOP_SEQ,       /**< sequence break: a stale record of an older use */
	MIRROR_STOP_GAP,       /**< replay: the next sequence number is missing */
	MIRROR_STOP_APPLY,     /**< replay: the apply callback failed */
};
const char *mirror_stop_name(enum mirror_stop s);

/** The header of an image. */
struct mirror_image_info {
	unsigned version_major, version_minor;
	unsigned slot; /**< header slot in use (0 or 1) */
	uint64_t gen;
	uint64_t log_size, half_size, half_off[2];
	uint64_t log_id;
	uint64_t cp_seq;
	bool image_valid; /**< an image with this header is complete (see MIRROR.md) */
	bool local_sync;  /**< written with durability = local-sync */
	char node[17];
	uint64_t created;
	struct mirror_vol_id boot_id; /**< kernel boot id of the writer */
};

/**
 * Read the header of an image of @p size bytes.
 * @return 0; -ENODATA if the image has no header (never written);
 * -EPROTO for an unsupported major version; -EINVAL if it is malformed.
 */
int mirror_image_info(const void *img, size_t size, struct mirror_image_info *info);

/** The identity of an image's header (its log_id and gen) as a node found it
 * when it mapped its image of the partner's log: what an earlier run of the
 * node (or of the partner) left there. */
struct mirror_image_stamp {
	bool present; /**< a readable header was there */
	uint64_t log_id, gen;
	/** An earlier run of the node saw this image current in this boot
	 * (mirror_image_boot_noted): the page cache kept what it held, so
	 * the header found is believed as it is. */
	bool this_boot;
};

/** Take the stamp of @p img (not present: no header, or a malformed one). */
void mirror_image_stamp_take(const void *img, size_t size, struct mirror_image_stamp *out);

/** How far an image of the partner's log may be trusted (docs/MIRROR.md,
 * "Which image is current"). */
enum mirror_image_trust {
	MIRROR_IMAGE_CURRENT = 0, /**< marked complete by a header that landed in this run */
	MIRROR_IMAGE_NOTHING,	  /**< no header, or no record newer than its checkpoint */
	MIRROR_IMAGE_INCOMPLETE,  /**< live records, the header says not complete */
	MIRROR_IMAGE_STALE,	  /**< live records, marked complete by an earlier run only */
	MIRROR_IMAGE_BAD,	  /**< malformed, or an unsupported version */
};
const char *mirror_image_trust_name(enum mirror_image_trust t);

/**
 * Judge the partner's image @p img held here. It is current only when its
 * header says complete and is not the header found when this run mapped
 * the image (@p at_open): the partner writes a header marked complete only
 * at the end of a resync into this run's memory, so a complete-flag an
 * earlier run left in the file (perhaps older than what that run held in
 * memory, after a power loss) is not believed, unless @p at_open says an
 * earlier run saw the image current in this boot (this_boot: the process
 * crashed, the page cache kept the image). With @p scan, an image
 * that is not current but has no live record is NOTHING (nothing to replay,
 * whatever its age); that reads every record, so without @p scan (a cheap
 * check, each heartbeat) such an image is INCOMPLETE or STALE. @p why (may
 * be NULL, @p len bytes) gets one line for logs and status.
 */
enum mirror_image_trust mirror_image_judge(const void *img, size_t size,
					   const struct mirror_image_stamp *at_open, bool scan,
					   char *why, size_t len);

/** Called per record; @p data is the record's data (NULL if none).
 * @return 0 to go on, or a negative errno to stop. */
typedef int (*mirror_record_fn)(void *arg, const struct mirror_record *rec, const void *data);

/** How the scan of one half ended. */
struct mirror_half_scan {
	uint64_t records; /**< valid records from the start of the half */
	uint64_t first_seq, last_seq;
	uint64_t used;	       /**< bytes of those records */
	enum mirror_stop stop; /**< what came after them */
	uint64_t stop_off;     /**< log offset where the scan stopped */
};

/**
 * Walk the valid records of @p half in log order, including those already
 * checkpointed (seq <= cp_seq), calling @p fn (may be NULL) for each.
 * @return 0, the callback's error, or an image error as mirror_image_info.
 */
int mirror_image_scan(const void *img, size_t size, unsigned half, mirror_record_fn fn, void *arg,
		      struct mirror_half_scan *scan);

/** What a replay did. */
struct mirror_replay_stats {
	uint64_t cp_seq;	      /**< of the header */
	uint64_t first_seq, last_seq; /**< applied (0, 0 when none) */
	uint64_t records, bytes;      /**< applied records and data bytes */
	uint64_t skipped;	      /**< store replay: unknown volume or out of range */
	uint64_t max_seq;	      /**< largest valid seq seen anywhere in the image */
	enum mirror_stop stop;	      /**< why it ended: END/EMPTY... = clean end */
	uint64_t stop_off;	      /**< log offset of the stop, if at a record */
	bool gap_at_start;	      /**< first live record was not cp_seq + 1 */
	bool image_valid;	      /**< header flag (see MIRROR.md) */
};

#define MIRROR_REPLAY_REQUIRE_VALID (1u << 0) /**< -ESTALE if the image is not marked complete */
#define MIRROR_REPLAY_RETIRE	    (1u << 1) /**< file replay: mark records as applied after */

/**
 * Replay an image: every record newer than the header's checkpoint, in
 * sequence order, stopping cleanly at the first torn, corrupt or missing
 * record. Replaying twice gives the same result (records are absolute
 * writes applied in order). @p apply returning an error stops the replay
 * with that error.
 * @return 0, -ENODATA (no header: nothing to do), -EPROTO, -EINVAL,
 * -ESTALE (REQUIRE_VALID and not valid) or the callback's error.
 */
int mirror_replay(const void *img, size_t size, unsigned flags, mirror_record_fn apply, void *arg,
		  struct mirror_replay_stats *st);

/**
 * Replay the image in file @p path onto the shelf @p s (opened on @p loop,
 * which this call runs until every volume write and flush is done; call it
 * before the listeners open). Records of volumes the shelf does not have,
 * or beyond a volume's end, are skipped and counted. With
 * MIRROR_REPLAY_RETIRE the image's checkpoint is then moved past every
 * record (after the volumes were made durable), so a second takeover does
 * not replay them over newer writes.
 */
int mirror_replay_file_to_store(const char *path, struct loop *loop, struct store *s,
				unsigned flags, struct mirror_replay_stats *st);

/**
 * The same, asynchronously: a job that never blocks and never runs the
 * loop, for a node that is serving (takeover). Up to 64 records are in
 * flight as store I/O, never two overlapping ones of a volume at once; the
 * volumes written are then fdatasync'ed, the image retired if asked, and
 * @p done(@p arg, rc, stats) called on the loop (never inline). Free the
 * job with mirror_replay_free() after done (it may be from inside done).
 * @return 0, or an error as mirror_replay (then no callback).
 */
struct mirror_replay_job;
int mirror_replay_start(const char *path, struct loop *loop, struct store *s, unsigned flags,
			void (*done)(void *arg, int rc, const struct mirror_replay_stats *st),
			void *arg, struct mirror_replay_job **out);
/**
 * Replay the node's own log @p m onto its shelf @p s like a takeover replay
 * (asynchronous, from a loop callback): at giveback, when the partner did
 * not replay it (its takeover mark has no proof: docs/MIRROR.md, "Giveback
 * without a replay"). A log not yet recovered (taken over at boot) is then
 * reset as mirror_recover_to_store does; a recovered one is left to
 * mirror_reset. No write may be in flight. @return 0 (@p done follows),
 * -ENODATA (nothing to replay, or a memory-mode log of an earlier boot,
 * which mirror_reset drops), or a negative errno.
 */
int mirror_replay_own_start(struct mirror *m, struct loop *loop, struct store *s,
			    void (*done)(void *arg, int rc, const struct mirror_replay_stats *st),
			    void *arg, struct mirror_replay_job **out);
/** Log bytes of live records applied so far, of @p total (for status). */
void mirror_replay_progress(const struct mirror_replay_job *j, uint64_t *done, uint64_t *total);
void mirror_replay_free(struct mirror_replay_job *j);

/** A memory-mapped image file. */
struct mirror_image_map {
	void *base;
	size_t size;
	int fd;
};

/**
 * Map image file @p path read-write (MAP_SHARED), creating it or resizing
 * it to @p size bytes (preallocated) when @p size is not 0 and differs. This
 * is how a node backs the partner's image (the CCM port's memory): a crash
 * of the process does not lose it. With @p size 0 the file is mapped as it
 * is, read-only unless @p writable.
 */
int mirror_image_map(const char *path, uint64_t size, bool writable, struct mirror_image_map *out);
void mirror_image_unmap(struct mirror_image_map *map);

/** Suffix of the boot note next to a partner image file (PATH.insync). */
#define MIRROR_IMAGE_NOTE_SUFFIX ".insync"

/**
 * Note, next to the image file @p image_path (mapped as @p map), that this
 * node saw the image current in this boot (kernel boot id, and the file's
 * device and inode). A node does this the first time in a run that it
 * finds the image current, so that its next process, if the host has not
 * restarted since, believes the image it finds (a crash of the process
 * keeps a MAP_SHARED file's pages in the page cache; a power loss does
 * not, and changes the boot id). Not synced: it speaks for this boot only.
 * @return 0 or a negative errno (-ENOENT: the boot id is unknown).
 */
int mirror_image_boot_note(const char *image_path, const struct mirror_image_map *map);
/** Whether the boot note of @p image_path is of this boot and this file. */
bool mirror_image_boot_noted(const char *image_path, const struct mirror_image_map *map);

/** Mark every record of a mapped image as applied (checkpoint = largest
 * seq) and fdatasync it: after a takeover replay, once the volumes are
 * durable. */
int mirror_image_retire(struct mirror_image_map *map);

/**@}*/
/* ------------------------------------------------------------------ */
/** @name Transport: how the log's bytes reach the partner's image */
/**@{*/

/** Completion of a transport write: @p result 0 once the bytes are in the
 * partner's image (delivery complete), else a negative errno. */
typedef void (*mirror_xfer_cb)(void *cb_arg, int result);

/**
 * A transport copies ranges of the local log to the same offsets of the
 * partner's image. The CCM-based transport implements it with one-sided
 * RDMA writes (delivery complete) from the registered log mapping into the
 * partner's port memory, over any lane; completions may come in any order.
 */
struct mirror_transport_ops {
	const char *name;
	/** The log is @p base (@p size bytes): register it as the source of
	 * writes. Optional. */
	int (*attach)(void *ctx, void *base, uint64_t size);
	/** Stop: complete or drop every write in flight; no callback may
	 * follow this call. Optional. */
	void (*detach)(void *ctx);
	/**
	 * Copy [off, off + len) of the log (@p src == base + off) to the same
	 * range of the partner's image and call @p cb(@p cb_arg, result) once,
	 * on the loop thread, never inline. Every accepted write completes,
	 * with an error if the session ends. @return 0 if accepted, or a
	 * negative errno (the mirror then treats the partner as lost).
	 */
	int (*write)(void *ctx, uint64_t off, const void *src, uint64_t len, mirror_xfer_cb cb,
		     void *cb_arg);
};

/** A transport that never connects (mirror off or no partner). */
const struct mirror_transport_ops *mirror_null_transport(void);

/**@}*/
/* ------------------------------------------------------------------ */
/** @name The mirror engine (one per node, on the node's loop) */
/**@{*/

/** Mirror states, as `duetctl status` shows them. */
enum mirror_state {
	MIRROR_STATE_OFF = 0,	/**< mirror = local: local log only (or no log: mirror = off) */
	MIRROR_STATE_IN_SYNC,	/**< the partner's image holds every logged record */
	MIRROR_STATE_DEGRADED,	/**< no partner session: a takeover would lose data */
	MIRROR_STATE_RESYNCING, /**< partner back: image being brought up to date */
};
const char *mirror_state_name(enum mirror_state s);

/** [mirror] mirror: where a write is logged before it is acknowledged. */
enum mirror_mode {
	MIRROR_MODE_OFF = 0, /**< no NVRAM log (the node does not open a mirror) */
	MIRROR_MODE_ON,	     /**< the local log and the partner image of it */
	MIRROR_MODE_LOCAL,   /**< the local log only (single node: restart replay) */
};

/** [mirror] durability: which syncs stand behind an acknowledged write. */
enum mirror_durability {
	MIRROR_DURABILITY_MEMORY = 0, /**< the log and the partner image, in memory */
	MIRROR_DURABILITY_LOCAL_SYNC, /**< also fdatasync of the log before the ack */
};

/** [mirror] mirror_down: what writes do while the partner image is not in sync. */
enum mirror_down_policy {
	MIRROR_DOWN_DEGRADE = 0, /**< go on locally; the status says takeover would lose data */
	MIRROR_DOWN_SUSPEND,	 /**< hold acks until in sync again, EIO after the timeout */
};

/** Settings of the mirror; mirror_opts_init() gives the defaults, the
 * node fills the rest from its config. */
struct mirror_opts {
	const char *path;      /**< the log file */
	uint64_t size;	       /**< its size (rounded down to 4 KiB, >= 64 KiB) */
	const char *node_id;   /**< written in the header, for dumps */
	enum mirror_mode mode; /**< ON or LOCAL (OFF: do not open a mirror) */
	enum mirror_durability durability;
	enum mirror_down_policy down;
	uint64_t suspend_timeout_ms; /**< mirror_down = suspend: hold a write this long */
	uint64_t cp_interval_ms;     /**< 0: no timer checkpoints */
	uint32_t max_record;	     /**< data bytes per record (0: 1 MiB); larger writes split */
	uint32_t max_xfer;	     /**< bytes per transport write (0: 4 MiB) */
	unsigned xfer_window;	     /**< transport writes in flight (0: 16) */
	unsigned group_window;	     /**< record writes in flight before new records wait to be
					  grouped: group commit (0: 2; 16: none) */
	uint32_t group_bytes;	     /**< unsent record bytes that go out anyway (0: 256 KiB) */
	uint64_t resync_retry_ms;    /**< after a transport error (0: 1000) */
	uint32_t encode_min;	     /**< records of at least this many data bytes are copied into
					  the log and sealed by the encoder thread, off the loop
					  (0: 256 KiB; UINT32_MAX: never) */
};

/** Defaults: mode on, durability memory, mirror_down degrade, suspend
 * timeout 30 s, a consistency point every second (as the config's); no
 * path or size (the caller sets them). */
void mirror_opts_init(struct mirror_opts *o);

typedef void (*mirror_done_fn)(void *arg, int result);

/** What the mirror needs from the node. */
struct mirror_host_ops {
	/** Make every volume write completed so far durable (fdatasync of each
	 * volume written since the last call), then call @p done(@p arg, 0 or
	 * -errno). Required. */
	void (*checkpoint)(void *ctx, mirror_done_fn done, void *arg);
	/** The partner's image is (@p outdated) or is again not (!outdated) a
	 * complete copy: record it where a takeover looks (the mailbox) and
	 * call done. No write is acknowledged without the partner's copy
	 * before done(0) of outdated = true. Optional. */
	void (*partner_outdated)(void *ctx, bool outdated, mirror_done_fn done, void *arg);
	/** State changed (for logs and status). Optional. */
	void (*state_changed)(void *ctx, enum mirror_state state, const char *reason);
};

/**
 * Open (creating if needed) the log and start in state DEGRADED (or OFF):
 * attach a transport and call mirror_transport_up() to start mirroring.
 * Before the first append the node must call mirror_recover_to_store(),
 * mirror_recover() or mirror_discard() exactly once.
 * @return 0, -EINVAL (no path, no checkpoint hook, mode off, or a size
 * below the minimum), -EPROTO (a log of an unsupported version: a clear
 * error is logged), or a negative errno from the file system.
 */
int mirror_open(struct loop *loop, const struct mirror_opts *opts,
		const struct mirror_host_ops *host, void *host_ctx, struct mirror **out);
/** Close; every write must have completed (drain, then mirror_flush for a
 * clean restart). Detaches the transport. */
void mirror_close(struct mirror *m);

/** Records at open newer than the log's checkpoint (what a recovery replays). */
uint64_t mirror_live_records(const struct mirror *m);

/** Replay the log's live records with @p apply (in sequence order), then
 * call @p apply(@p arg, NULL, NULL) which must make them durable, then
 * reset the log (new log id, every record checkpointed). */
int mirror_recover(struct mirror *m, mirror_record_fn apply, void *arg,
		   struct mirror_replay_stats *st);
/** mirror_recover onto a shelf (runs @p loop until done; before listeners open). */
int mirror_recover_to_store(struct mirror *m, struct loop *loop, struct store *s,
			    struct mirror_replay_stats *st);
/** Reset the log without replaying it: a node that was taken over must
 * not replay records its partner already replayed and wrote past. */
int mirror_discard(struct mirror *m);

/**
 * Drop every record at run time (giveback: the partner replayed this log
 * when it took over and wrote past it since): like mirror_discard, once no
 * write is in flight; the partner's image needs a resync after it. Before
 * recovery it is mirror_discard. @p done(@p arg, rc) follows on the loop.
 * @return 0, -EBUSY (writes in flight) or -EALREADY (a reset is pending).
 */
int mirror_reset(struct mirror *m, mirror_done_fn done, void *arg);

/** Use transport @p ops/@p ctx (replacing the current one, which must be
 * down). The transport stays down until mirror_transport_up(). */
int mirror_attach_transport(struct mirror *m, const struct mirror_transport_ops *ops, void *ctx);
/** The partner's image is reachable (session up): resync, then in sync. */
void mirror_transport_up(struct mirror *m);
/** The session ended: degraded (or writes held, mirror_down = suspend). */
void mirror_transport_down(struct mirror *m, const char *reason);

/** A write (or zero/trim) on its way into the log; embed it in the request. */
struct mirror_write {
	/* Set by the caller. */
	struct mirror_vol_id vol;
	uint16_t type;	  /**< enum mirror_rec_type */
	uint16_t flags;	  /**< MIRROR_RF_* */
	uint64_t offset;  /**< in the volume */
	uint64_t length;  /**< bytes (> 0) */
	const void *data; /**< WRITE: @c length bytes, valid until @c logged */
	/** The record is logged (local log, and the partner's image or the
	 * outdate mark, and the local sync, as the settings ask): result 0;
	 * or -EIO (mirror_down = suspend and the partner stayed away for
	 * mirror_suspend_timeout_ms, or the local log failed). */
	void (*logged)(struct mirror_write *w, int result);
	void *arg;
	/* Set by the mirror. */
	uint64_t first_seq, last_seq; /**< a large write becomes several records */
	uint64_t log_off;	      /**< of the first record in the log */
	/* Private to the mirror. */
	struct slist_node q_node; /* wait-for-space or wait-for-logged queue */
	struct list a_node;	  /* not yet applied, in seq order */
	uint64_t placed;	  /* data bytes placed so far */
	uint64_t t_start;	  /* for the suspend deadline */
	uint8_t st;		  /* private state bits */
};

/**
 * Append @p w to the log: the records are copied into the log now, or once a
 * checkpoint frees space (both halves full). @c logged follows, never
 * inline. @return 0 if placed now, 1 if waiting for space, or -EINVAL /
 * -EBUSY (log not recovered yet) / -ENOSPC (record cannot fit) with no
 * callback.
 */
int mirror_append(struct mirror *m, struct mirror_write *w);
/** The volume write of @p w is done (with any result): a checkpoint may
 * now cover it. Call it exactly once per accepted append, at any time. */
void mirror_applied(struct mirror *m, struct mirror_write *w);

/** NBD FLUSH: every write logged so far becomes durable. With durability =
 * memory that is a consistency point (volumes fdatasync'ed); with
 * local-sync the synced log already is (a restart replays it). */
struct mirror_flush {
	void (*done)(struct mirror_flush *f, int result);
	void *arg;
	/* Private. */
	uint64_t target;
	struct slist_node node;
};
/** Start @p f; f->done follows, never inline. */
void mirror_flush(struct mirror *m, struct mirror_flush *f);

/**
 * Shutting down: from now on, writes held for the partner (mirror_down =
 * suspend) while it is away fail with @p err at once instead of at their
 * deadline. Writes already logged, and those of a resync in progress, are
 * not affected.
 */
void mirror_fail_held(struct mirror *m, int err);

/** Status for `duetctl status` and tests. */
struct mirror_status {
	enum mirror_state state;
	char reason[160];
	uint64_t lag_bytes; /**< logged bytes the partner's image lacks */
	bool takeover_safe; /**< state == IN_SYNC */
	uint64_t log_size, half_size;
	int active_half;     /**< -1 while both halves wait for a checkpoint */
	uint64_t used_bytes; /**< in halves not free */
	uint64_t last_seq, cp_seq, replicated_seq;
	uint64_t records, record_bytes; /**< appended since open */
	uint64_t xfers, xfer_bytes;	/**< transport writes issued */
	uint64_t checkpoints, half_switches, space_waits, resyncs, suspend_timeouts;
	unsigned writes_waiting;  /**< for space */
	unsigned writes_unlogged; /**< placed, not yet logged */
	unsigned xfers_inflight;  /**< transport writes not yet completed */
	bool cp_running;	  /**< a consistency point is in progress */
	/** Nothing in progress: no consistency point, transport write, header
	 * write or log sync (a clean point to close, or to compare images). */
	bool idle;
};
void mirror_get_status(const struct mirror *m, struct mirror_status *st);

/**@}*/
/* ------------------------------------------------------------------ */
/** @name Range lock: overlapping writes keep their order */
/**@{*/

/**
 * The node keeps one lock per volume. A write takes its range before
 * mirror_append and releases it after the reply: a later write overlapping
 * a range that is held or waiting waits (FIFO among overlapping ranges), so
 * two overlapping writes reach the log (sequence numbers) and the volume
 * file in arrival order. Non-overlapping writes never wait.
 */
struct mirror_range {
	uint64_t start, end; /**< [start, end) */
	void (*granted)(struct mirror_range *r);
	void *arg;
	/* Private. */
	struct list node;	      /* in mirror_rangelock.all */
	struct slist_node grant_node; /* granted by the unlock in progress */
	bool held;
};

struct mirror_rangelock {
	struct list all; /* every range, held or waiting, in arrival order */
	unsigned count;
};

void mirror_rangelock_init(struct mirror_rangelock *rl);
/** @return true if granted at once (@p granted is not called); false if
 * queued: @p granted(@p r) runs from a later mirror_range_unlock. */
bool mirror_range_lock(struct mirror_rangelock *rl, struct mirror_range *r, uint64_t offset,
		       uint64_t length, void (*granted)(struct mirror_range *r), void *arg);
/** Release (or cancel, if still waiting) @p r; grants the ranges it held up. */
void mirror_range_unlock(struct mirror_rangelock *rl, struct mirror_range *r);

/**@}*/

#endif
