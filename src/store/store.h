/**
 * @file store.h
 * A shelf (a directory) and its volumes (sparse files plus metadata), with
 * asynchronous block I/O that never blocks the reactor.
 *
 * I/O is submitted as a struct store_io embedded in the caller's request and
 * completed through io->done on the reactor thread (never inline from
 * store_submit). Two engines: io_uring (default) and a worker pool.
 *
 * On-disk layout of a shelf DIR (see docs/STORE.md):
 *   DIR/shelf.json            format version and shelf uuid
 *   DIR/volumes/NAME.img      the volume's data, a sparse file of its size
 *   DIR/volumes/NAME.meta     JSON: name, size, uuid, creator's owner (atomic rewrite)
 *   DIR/volumes/NAME.owner    the owner record: one 4 KiB sector, written in
 *                             place and read past the page cache (owner.c)
 * Names beginning with a dot are the store's temporary files; other files in
 * DIR (a future mailbox, say) are left alone.
 *
 * Threading: every function is called on the loop's thread. A process may
 * open several shelves (its own and, on takeover, its partner's), each a
 * struct store of its own.
 */
#ifndef DUET_STORE_STORE_H
#define DUET_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/list.h"

struct loop;
struct store;
struct store_volume;

#define STORE_NAME_MAX 64 /* including the NUL */
#define STORE_UUID_LEN 37 /* "xxxxxxxx-xxxx-...", with the NUL */

enum store_engine {
	STORE_ENGINE_URING = 0,
	STORE_ENGINE_THREADS,
};

struct store_opts {
	enum store_engine engine;
	unsigned depth;	  /* io_uring entries / queue bound (0: 256) */
	unsigned workers; /* threads of the worker-pool engine (0: 4) */
	/* Largest single read/write system call in bytes (0: 1 GiB). Longer
	 * requests are issued in pieces like a short transfer; tests set it
	 * small to exercise that path. */
	unsigned max_io_bytes;
	/* Volume files opened O_DIRECT (docs/STORE.md, "Direct I/O"): nothing
	 * stays in this host's page cache, so two hosts sharing a shelf see
	 * one another's writes and none lands late. Off: buffered, one host. */
	bool direct_io;
	/* The shelf is another live node's (the partner's, opened for volumes
	 * relocated here or for a takeover): its temporary files and unfinished
	 * deletes are its own business, left alone. */
	bool foreign;
};

/** The defaults: io_uring, depth 256, 4 workers, direct I/O on. */
void store_opts_init(struct store_opts *o);
/** "uring" or "threads". */
const char *store_engine_name(enum store_engine e);

struct store_volume_info {
	char name[STORE_NAME_MAX];
	char uuid[STORE_UUID_LEN];
	char owner[16];
	uint64_t size;
	uint64_t allocated; /* bytes on disk */
	bool direct_io;	    /* opened O_DIRECT (false: asked off, or refused) */
};

enum store_op {
	STORE_OP_READ = 0,
	STORE_OP_WRITE,
	STORE_OP_FLUSH,	       /* fdatasync of the volume */
	STORE_OP_TRIM,	       /* punch a hole */
	STORE_OP_WRITE_ZEROES, /* punch (or, with STORE_F_NO_HOLE, allocate) zeros */
	STORE_OP_CACHE,	       /* read ahead into the page cache */
};

#define STORE_F_FUA	  (1u << 0) /* WRITE/WRITE_ZEROES durable before done */
#define STORE_F_NO_HOLE	  (1u << 1) /* WRITE_ZEROES: keep the range allocated */
#define STORE_F_FAST_ZERO (1u << 2) /* WRITE_ZEROES: -ENOTSUP unless it is fast */

struct store_io;
typedef void (*store_io_cb)(struct store_io *io, int result);

struct store_io {
	enum store_op op;
	uint32_t flags;
	uint64_t offset;
	uint64_t length;
	void *buf;
	store_io_cb done; /* result: 0 or a negative errno */
	void *arg;
	/* Private to the store. */
	struct store_volume *vol;
	uint64_t done_bytes;
	struct slist_node link; /* in one of the store's queues */
	int result;		/* of the last step */
	uint8_t stage;		/* where a multi-step op is */
	uint8_t eng_sync;	/* io_uring: the FUA write is in, its fdatasync pending */
	uint8_t eng_nowait;	/* io_uring: the step went in with RWF_NOWAIT */
	uint8_t eng_nop;	/* io_uring: gate closed after prep, sent as a NOP */
	uint8_t excl;		/* holds its volume's writes off (read-modify-write) */
	unsigned fence_gen;	/* the store's fence generation when it was submitted */
	int eng_bytes;		/* io_uring: the FUA write's byte count */
	void *bounce;		/* direct I/O: aligned copy of [boff, boff + blen) */
	uint64_t boff, blen;
};

/** Open (creating if needed) the shelf directory @p dir on @p loop. */
int store_open(struct loop *loop, const char *dir, const struct store_opts *opts,
	       struct store **out);
/** Close the shelf; every submitted io must have completed. */
void store_close(struct store *s);
/** The shelf directory as given to store_open. */
const char *store_dir(const struct store *s);
/** The engine in use (io_uring falls back to threads if the kernel refuses it). */
enum store_engine store_get_engine(const struct store *s);
/** Ios submitted and not yet completed. */
unsigned store_inflight(const struct store *s);

/** Whether @p rc (a negative errno) says the shelf itself is failing: EIO,
 * ENODEV, ENOENT, ENXIO, ESTALE, ENOTCONN, ECONNABORTED (a FUSE server
 * gone), EROFS (a file system remounted read-only on errors). */
bool store_error_is_shelf(int rc);
/** Ios that ended with such an error since store_open: what a node watches
 * to hand its shelf over (docs/RELOCATION.md, "On a failed path"). */
uint64_t store_shelf_errors(const struct store *s);
/** Every io submitted from now on ends with @p err (0: off): a shelf
 * declared failed (nothing more waits on it, a consistency point included),
 * and the test hook DUET_TEST_SHELF_EIO. */
void store_fail_all(struct store *s, int err);
/** How long ios have been in flight with none finishing (0: none in
 * flight), at @p now_ns (loop_now_ns): a hung shelf (docs/RELOCATION.md,
 * "A hung shelf"). */
uint64_t store_io_stalled_ns(const struct store *s, uint64_t now_ns);
/** Test hook (DUET_TEST_SHELF_HANG): every io submitted from now on is
 * parked and never finishes, as on a shelf whose I/O never returns. */
void store_hang_all(struct store *s);

/** FLUSH accounting since store_open. */
struct store_stats {
	uint64_t flushes;	 /* FLUSH ios completed */
	uint64_t syncs;		 /* fdatasyncs they ran (the rest needed none or shared one) */
	uint64_t flushes_clean;	 /* completed without a sync: nothing written since the last */
	uint64_t flushes_shared; /* completed by a sync another FLUSH ran */
	uint64_t fua_syncs;	 /* FUA write steps made durable (RWF_DSYNC or fdatasync) */
};
void store_get_stats(const struct store *s, struct store_stats *st);

/** Rewrite the volume's owner durably: its owner record NAME.owner, one
 *  sector written in place past the page cache (then the metadata file). */
int store_volume_set_owner(struct store_volume *v, const char *owner);
/** Read the owner again from its record (the partner may have rewritten it). */
int store_volume_reload_owner(struct store_volume *v);
/**
 * Whether an owner record of the shelf at directory @p shelf names @p owner,
 * read past the page cache, without opening the shelf (most pairs never
 * relocate, and the partner's shelf is opened only when one names us).
 * @return 1, 0, or a negative errno (the volumes directory unreadable).
 */
int store_shelf_names_owner(const char *shelf, const char *owner);
/**
 * Check an owner record (the first bytes of NAME.owner): its magic, version,
 * checksum and fields. @p uuid: the volume's (NULL: any).
 * @return 0 with @p owner (and @p gen if not NULL), -EBADMSG when it is not
 * a record, -ESTALE when it names another uuid. For the fuzz target.
 */
int store_owner_parse(const void *buf, size_t len, const char *uuid, char owner[16], uint64_t *gen);
/** Create a volume of @p size bytes owned by node @p owner. -EEXIST if it exists. */
int store_volume_create(struct store *s, const char *name, uint64_t size, const char *owner);
/**
 * Delete @p v: its metadata file is renamed to .NAME.meta.deleted (the
 * commit point), then the data file and that marker go; an open that finds
 * the marker (a crash in between) finishes the delete. It leaves the index at once (find, list
 * and at() no longer see it, a new volume may take its name); the struct
 * stays valid, for ios still in flight on it, until store_volume_release().
 * A volume with ios in flight is the caller's to drain before the release.
 */
int store_volume_delete(struct store *s, struct store_volume *v);
/** Free a deleted volume (no io in flight on it); store_close() frees
 * those never released. */
void store_volume_release(struct store_volume *v);
/**
 * Set the size of @p v to @p size (a multiple of 512, and of the direct
 * I/O alignment when the volume uses it). Growing: the data file first,
 * then the metadata (the commit point); shrinking: the metadata first. A
 * crash in between leaves a data file longer than the volume, harmless.
 * The caller makes sure no io runs past the new end when shrinking.
 */
int store_volume_resize(struct store *s, struct store_volume *v, uint64_t size);

/* ---- volume move between shelves (move.c, docs/RELOCATION.md) ---- */

/** The move record of @p v: the node whose shelf a copy is being made on,
 * "" when none. */
const char *store_volume_move_to(const struct store_volume *v);
/** Write (@p to a node name) or clear (@p to NULL) the move record, durably. */
int store_volume_set_move(struct store_volume *v, const char *to);
/**
 * The copy of @p src on shelf @p s: a data file of the same size named so
 * that no node loads it (.NAME.move.img), in a volume with @p src's uuid
 * that is not in @p s's index. -EEXIST if @p s has a volume of that name.
 */
int store_move_target_create(struct store *s, const struct store_volume *src,
			     struct store_volume **out);
/** The copy is complete: fdatasync, rename to NAME.img, NAME.meta naming
 * @p owner (the commit point); then it is in @p s's index. On an error
 * nothing is committed and @p t is still the caller's. */
int store_move_target_commit(struct store *s, struct store_volume *t, const char *owner);
/** Give up the copy: close it, remove its file, free @p t (no io in flight). */
void store_move_target_drop(struct store *s, struct store_volume *t);
/**
 * After a crash, for a volume @p v with a move record: 1 if the copy
 * committed (the volumes directory @p target_voldirfd holds NAME.meta with
 * @p v's uuid: @p v is dead), 0 if not (the copy's files are removed there:
 * @p v is the volume), or -errno when it cannot be told.
 */
int store_move_settle(const struct store_volume *v, int target_voldirfd);
/**
 * Copy [@p offset, +@p length) of @p src to the same bytes of the move's
 * copy @p dst with blocking system calls, the source's holes skipped
 * (SEEK_DATA/SEEK_HOLE), through @p buf (@p buflen bytes, aligned to 4096).
 * For a copier thread (node/move_copier.c): it touches only the two
 * descriptors, and the caller keeps both volumes alive and holds the range
 * against client writes. Refused (-EAGAIN) while either shelf's fencing
 * gate is closed. @p data gets the data bytes copied. @return 0 or -errno.
 */
int store_move_copy(struct store_volume *src, struct store_volume *dst, uint64_t offset,
		    uint64_t length, void *buf, size_t buflen, uint64_t *data);
/** The descriptor of @p s's volumes directory (for store_move_settle). */
int store_voldirfd(const struct store *s);
/** Load volume @p name, whose metadata appeared on the shelf since it was
 * opened (another node committed a move here). -EEXIST if indexed. */
int store_volume_load(struct store *s, const char *name, struct store_volume **out);

#define STORE_ALLOW_MAX	   16  /* identities in a volume's allow list */
#define STORE_ALLOW_ID_LEN 256 /* longest identity, with the NUL */

/** Who may see a volume over NBD: TLS identities (PSK usernames, or
 * certificate DN, CN or SAN names); n == 0: anyone who may connect. */
struct store_allow {
	unsigned n;
	char id[STORE_ALLOW_MAX][STORE_ALLOW_ID_LEN];
};

/** store_volume_create with an allow list, written in the same metadata
 * commit (a crash never leaves the volume without its list). */
int store_volume_create_allow(struct store *s, const char *name, uint64_t size, const char *owner,
			      const char *const *ids, unsigned n_ids);
/** @return 0 if @p id may stand in an allow list (1-255 bytes, no control
 * characters), else -EINVAL. */
int store_allow_id_valid(const char *id);
/** The volume's allow list (n == 0: open to all). */
const struct store_allow *store_volume_allow(const struct store_volume *v);
/** True when the list is empty or holds one of @p ids. */
bool store_volume_allows(const struct store_volume *v, const char *const *ids, unsigned n_ids);
/** Volumes in name order; @p i from 0 to store_volume_count() - 1. */
unsigned store_volume_count(const struct store *s);
struct store_volume *store_volume_at(struct store *s, unsigned i);
struct store_volume *store_volume_find(struct store *s, const char *name);
/** Fill @p info; allocated comes from fstat (a system call). */
void store_volume_get_info(const struct store_volume *v, struct store_volume_info *info);
/** Cheap accessors for hot paths. */
const char *store_volume_name(const struct store_volume *v);
uint64_t store_volume_size(const struct store_volume *v);
/** @return 0 if @p name is a valid volume name (1-63 bytes of [A-Za-z0-9._-], no leading dot),
 * else -EINVAL. */
int store_name_valid(const char *name);

/**
 * Queue @p io on @p v. Bounds are the caller's to check (see
 * store_check_range); an io out of range still completes with -EINVAL rather
 * than growing the file. READ/WRITE need buf; FLUSH ignores offset/length.
 * A FLUSH when no WRITE, TRIM
 * or WRITE_ZEROES completed on @p v since the last successful one began
 * succeeds without a system call, and FLUSHes that arrive while one is
 * running share the next one (see docs/STORE.md).
 * STORE_F_FUA is honoured on WRITE, WRITE_ZEROES and TRIM. A TRIM the
 * filesystem cannot do completes with 0 (it is advisory). The io and its buf
 * belong to the store until done runs.
 */
void store_submit(struct store_volume *v, struct store_io *io);
/** @return 0, or -EINVAL if [offset, offset+length) is not inside the volume. */
int store_check_range(const struct store_volume *v, uint64_t offset, uint64_t length);

/**
 * The fencing gate (docs/FAILOVER.md, "Fencing"): while @p allowed returns
 * false no step reaches the disk. The io_uring engine checks it right
 * before each submission batch, the worker pool in each worker right
 * before its system call (so @p allowed must be callable from any thread
 * and cheap). Steps that find it closed wait in the store, in order, and
 * @p wait(@p arg) is called on the loop thread; store_gate_release() sends
 * them on, store_gate_fail() ends them with an error.
 */
void store_set_gate(struct store *s, bool (*allowed)(void *arg), void (*wait)(void *arg),
		    void *arg);
/** The gate is open again: steps waiting for it go to the engine. */
void store_gate_release(struct store *s);
/** Fenced: every step waiting for the gate ends its io with @p err. */
void store_gate_fail(struct store *s, int err);

/**
 * Allocation map from @p offset for at most @p length bytes: up to @p max
 * extents of (length, hole/zero flags), contiguous, adjacent ones of a kind
 * merged. Synchronous (lseek SEEK_DATA/SEEK_HOLE: metadata only). A range
 * the filesystem keeps allocated but unwritten (FALLOC_FL_ZERO_RANGE on ext4)
 * may be reported as a hole: it reads as zeros. @return number of extents or
 * -errno; 0 when @p length is 0.
 */
struct store_extent {
	uint64_t length;
	bool hole; /* reads as zeros and takes no space */
};
int store_block_status(struct store_volume *v, uint64_t offset, uint64_t length,
		       struct store_extent *ext, unsigned max);

#endif
