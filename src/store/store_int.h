/*
 * The one private header of the store module: the shelf (struct store), its
 * volumes, the io queues, the step an engine runs, and the engine interface.
 *
 * Files and who calls whom (no cycle):
 *   store.c   the shelf and its volumes (open, create, metadata); calls
 *             io.c only to set up io.c's part of a store or a volume
 *             (store_io_init, store_io_init_volume) and the engines only
 *             through their ops (init, fini, add/del_volume).
 *   io.c      the per-io state machine: store_submit() splits an io into
 *             steps and hands each to the engine through ops->queue; FLUSH
 *             bookkeeping, the fencing gate, block status. It never calls
 *             store.c.
 *   engine_uring.c, engine_threads.c   run one step each (io_uring or a
 *             worker pool) and report it with the one up-call
 *             store_step_done() (or store_gate_park() when fenced).
 * Every io queue is a struct slist of store_io linked through io->link;
 * each belongs to the loop thread, except the worker pool's shared queues
 * (under its locks).
 */
#ifndef DUET_STORE_STORE_INT_H
#define DUET_STORE_STORE_INT_H

#include "common/list.h"
#include "common/loop.h"
#include "store/store.h"

#include <errno.h>
#include <sys/uio.h>

#define STORE_OWNER_MAX	 16
#define STORE_ZERO_BYTES (1u << 20) /* zero buffer for writing zeros */
#define STORE_CHUNK_MAX	 (1u << 30) /* largest single system call */
#define STORE_SLOT_NONE	 (-1)
#define STORE_DIO_ALIGN	 4096u /* bounce buffers; alignment when statx cannot say */

struct store_volume {
	struct store *s;
	char name[STORE_NAME_MAX];
	char uuid[STORE_UUID_LEN];
	char owner[STORE_OWNER_MAX];
	uint64_t owner_gen; /* generation of NAME.owner read or written last */
	uint64_t size;
	int64_t created; /* unix seconds */
	struct store_allow allow;
	/* The move record (move.c): the node whose shelf a copy of this volume
	 * is being made on, "" when none. */
	char move_to[STORE_OWNER_MAX];
	int fd;
	int slot;	/* registered file index (io_uring) or STORE_SLOT_NONE */
	bool no_nowait; /* its file system refuses RWF_NOWAIT writes (tmpfs) */
	bool direct;	/* fd is O_DIRECT: every transfer aligned to align */
	uint32_t align; /* direct I/O alignment of offsets, lengths and buffers */
	bool removed;	/* deleted: off the index, freed by store_volume_release */
	struct store_volume *next_removed; /* in s->removed until released */

	/* Write ordering for read-modify-write (io.c): modifying ios running,
	 * whether an exclusive one runs, and those waiting, in order. */
	unsigned writes;
	bool excl_running;
	struct slist excl_wait;

	/* FLUSH bookkeeping (io.c). */
	uint64_t wgen;		  /* modifying ios completed */
	uint64_t synced_gen;	  /* wgen when the last successful sync began */
	struct store_io *sync_io; /* the FLUSH whose fdatasync runs, or NULL */
	uint64_t sync_gen;	  /* wgen when it began */
	struct slist sync_riders; /* FLUSHes covered by the running sync */
	struct slist sync_next;	  /* FLUSHes that need the next one */
};

/* Io queues are struct slist of store_io, linked through io->link. */
static inline void store_io_push(struct slist *q, struct store_io *io)
{
	slist_push_tail(q, &io->link);
}

/* The first io of @p q, removed, or NULL. */
static inline struct store_io *store_io_pop(struct slist *q)
{
	struct slist_node *n = slist_pop_head(q);

	return n ? slist_entry(n, struct store_io, link) : NULL;
}

/* Move every io of @p from into the new queue @p to (from ends empty). */
static inline void store_io_take_all(struct slist *to, struct slist *from)
{
	slist_init(to);
	slist_splice_tail(to, from);
}

/* What the engine must do for an io's current step: one system call. */
enum store_step_kind {
	STORE_STEP_READ,
	STORE_STEP_WRITE, /* dsync: RWF_DSYNC */
	STORE_STEP_SYNC,  /* fdatasync */
	STORE_STEP_FALLOC,
	STORE_STEP_FADVISE, /* WILLNEED */
};

struct store_step {
	enum store_step_kind kind;
	int fd;
	int slot; /* registered file, or STORE_SLOT_NONE */
	void *buf;
	uint64_t offset;
	uint64_t len;
	int mode; /* fallocate */
	bool dsync;
};

struct store_engine_ops {
	int (*init)(struct store *s);
	void (*fini)(struct store *s);
	/* Called when a volume opens / closes (register its file). */
	void (*add_volume)(struct store *s, struct store_volume *v);
	void (*del_volume)(struct store *s, struct store_volume *v);
	/* Start the current step of @p io; its result comes back later, on the
	 * loop thread, through store_step_done(). Never fails: queues when full.
	 * io.c calls it only when no step waits for the fencing gate. */
	void (*queue)(struct store *s, struct store_io *io);
};

struct store {
	struct loop *loop;
	char *dir;
	int dirfd;
	int voldirfd;
	struct store_opts opts;
	uint64_t max_io;
	char shelf_uuid[STORE_UUID_LEN];

	struct store_volume **vols; /* sorted by name */
	unsigned n_vols;
	unsigned cap_vols;
	struct store_volume *removed; /* deleted, not yet released (store_volume_delete) */

	void *zeros; /* STORE_ZERO_BYTES of read-only zeros */
	unsigned inflight;
	struct store_stats st;

	/* Ios completed without reaching an engine (invalid or empty). */
	struct slist deferred;
	struct loop_task deferred_task;

	const struct store_engine_ops *ops;
	void *engine;

	/* The fencing gate (store_set_gate) and the steps waiting for it. */
	bool (*gate_allowed)(void *arg);
	void (*gate_wait)(void *arg);
	void *gate_arg;
	struct slist gated;
	/* Bumped by store_gate_fail(): a step submitted before a fence never
	 * runs after it, even once the gate is open again (a giveback). Written
	 * on the loop thread, read by workers. */
	unsigned fence_gen;
	int fence_err;
	/* Ios that ended with a shelf error (store_shelf_errors), and the
	 * error every new io ends with (store_fail_all; 0: none). */
	uint64_t shelf_errors;
	int fail_err;
	/* Progress (store_io_stalled_ns): when an io last finished, or the
	 * first of a busy spell was submitted. Test hook store_hang_all: every
	 * new io is parked, never submitted nor finished (a hung shelf). */
	uint64_t progress_ns;
	bool hang;
	uint64_t hung;
};

/* A worker's result for a step it did not run: the gate was closed. */
#define STORE_GATED_RES (-ERESTART)

/* Whether a step may go to the disk now (any thread). */
static inline bool store_gate_open(const struct store *s)
{
	return !s->gate_allowed || s->gate_allowed(s->gate_arg);
}

/* Whether @p io was submitted before the last fence: it must never run. */
static inline bool store_io_fenced(const struct store *s, const struct store_io *io)
{
	return io->fence_gen != __atomic_load_n(&s->fence_gen, __ATOMIC_ACQUIRE);
}

/* The gate for one step (any thread): open, and no fence since it came. */
static inline bool store_gate_open_io(const struct store *s, const struct store_io *io)
{
	return !store_io_fenced(s, io) && store_gate_open(s);
}

/* ---- prototypes, by the file that defines them ---- */

/* store.c */
/** Put @p v in the shelf's index (and register it with the engine). */
int store_vol_insert(struct store *s, struct store_volume *v);
/** Switch @p v's descriptor to O_DIRECT when the shelf asks for it. */
void store_vol_direct(struct store *s, struct store_volume *v);
/** Read NAME.meta and open NAME.img into a new volume (not indexed). */
int store_vol_load(struct store *s, const char *name, struct store_volume **out);
/** Test hook: opening a volume O_DIRECT fails with EINVAL, as on a file
 * system without direct I/O (tmpfs before Linux 6.6). */
extern bool store_test_refuse_direct;

/* io.c */
/** Set up io.c's part of a new store: its queues and the deferred task. */
void store_io_init(struct store *s);
/** Set up io.c's part of a new volume: its FLUSH queues. */
void store_io_init_volume(struct store_volume *v);
/** Describe the current step of @p io. */
void store_step_get(const struct store_io *io, struct store_step *st);
/** The engines' up-call: account the result of the step just run; completes
 * the io (calling io->done) or queues its next step. Loop thread only. */
void store_step_done(struct store *s, struct store_io *io, int res);
/** Loop thread: keep @p io until the gate opens (or fails). */
void store_gate_park(struct store *s, struct store_io *io);
/** Run one step synchronously (the worker threads). @return >= 0 or -errno. */
int store_step_exec(const struct store_step *st);

/* engine_uring.c */
/** The io_uring engine. */
extern const struct store_engine_ops store_uring_ops;
/** Test hook: io_uring writes sent with RWF_NOWAIT come back -EOPNOTSUPP,
 * as on a file system that refuses it (FUSE, NFS). */
extern bool store_test_refuse_nowait;

/* engine_threads.c */
/** The worker-pool engine. */
extern const struct store_engine_ops store_threads_ops;
struct store_pool;
/** A worker pool of @p workers threads, at most @p cap steps handed over at
 * once; the threads engine is one, and the io_uring engine keeps one for the
 * steps that may block (each checks the gate right before its system call). */
int store_pool_new(struct store *s, unsigned workers, unsigned cap, struct store_pool **out);
void store_pool_free(struct store_pool *p);
/** Run the current step of @p io in the pool (loop thread). */
void store_pool_queue(struct store_pool *p, struct store_io *io);

/* ---- meta.c: the shelf marker and the volumes' metadata files ---- */

/** 0 when @p name is fewer than @p max characters of [A-Za-z0-9._-], at least
 * one, not starting with '.'; else -EINVAL. */
int store_ident_valid(const char *name, size_t max);
/** A fresh random (version 4) uuid, text form, into @p out; 0 or -errno. */
int store_make_uuid(char out[STORE_UUID_LEN]);
/** 0 for a volume size duet takes (a non-zero multiple of 512, up to
 * 2^62); else -EINVAL. */
int store_size_valid(uint64_t size);
/** Check the shelf's format marker, or write it on an empty shelf. */
int store_shelf_marker(struct store *s);
/** Replace the metadata file of @p v atomically. */
int store_meta_write(struct store *s, const struct store_volume *v);
/** Read and check the metadata file of volume @p name into @p v. */
int store_meta_read(struct store *s, const char *name, struct store_volume *v);

/* ---- owner.c: the owner record, NAME.owner (a sector past the cache) ---- */

/** Set v->owner from NAME.owner, creating the record from the metadata's
 *  owner where there is none. */
int store_owner_load(struct store_volume *v);
/** Write v->owner to NAME.owner, in place, durably. */
int store_owner_write(struct store_volume *v);
/** Remove NAME.owner (a deleted volume). */
int store_owner_remove(struct store_volume *v);

#endif
