/* Internals of the store module: the shelf, its volumes, the per-io state
 * machine shared by both engines, and the engine interface. */
#ifndef DUET_STORE_STORE_PRIV_H
#define DUET_STORE_STORE_PRIV_H

#include "common/loop.h"
#include "store/store.h"

#include <errno.h>
#include <sys/uio.h>

#define STORE_OWNER_MAX	 16
#define STORE_ZERO_BYTES (1u << 20) /* zero buffer for writing zeros */
#define STORE_CHUNK_MAX	 (1u << 30) /* largest single system call */
#define STORE_SLOT_NONE	 (-1)

/* One io queue: singly linked through io->next. */
struct io_list {
	struct store_io *head;
	struct store_io *tail;
};

struct store_volume {
	struct store *s;
	char name[STORE_NAME_MAX];
	char uuid[STORE_UUID_LEN];
	char owner[STORE_OWNER_MAX];
	uint64_t size;
	int64_t created; /* unix seconds */
	int fd;
	int slot;	/* registered file index (io_uring) or STORE_SLOT_NONE */
	bool no_nowait; /* its file system refuses RWF_NOWAIT writes (tmpfs) */

	/* FLUSH bookkeeping (io.c). */
	uint64_t wgen;		    /* modifying ios completed */
	uint64_t synced_gen;	    /* wgen when the last successful sync began */
	struct store_io *sync_io;   /* the FLUSH whose fdatasync runs, or NULL */
	uint64_t sync_gen;	    /* wgen when it began */
	struct io_list sync_riders; /* FLUSHes covered by the running sync */
	struct io_list sync_next;   /* FLUSHes that need the next one */
};

static inline void io_list_push(struct io_list *l, struct store_io *io)
{
	io->next = NULL;
	if (l->tail)
		l->tail->next = io;
	else
		l->head = io;
	l->tail = io;
}

static inline struct store_io *io_list_pop(struct io_list *l)
{
	struct store_io *io = l->head;

	if (io) {
		l->head = io->next;
		if (!l->head)
			l->tail = NULL;
		io->next = NULL;
	}
	return io;
}

/* What the engine must do for an io's current step: one system call. */
enum step_kind {
	STEP_READ,
	STEP_WRITE, /* dsync: RWF_DSYNC */
	STEP_SYNC,  /* fdatasync */
	STEP_FALLOC,
	STEP_FADVISE, /* WILLNEED */
};

struct store_step {
	enum step_kind kind;
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
	 * loop thread, through store_step_done(). Never fails: queues when full. */
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

	void *zeros; /* STORE_ZERO_BYTES of read-only zeros */
	unsigned inflight;
	struct store_stats st;

	/* Ios completed without reaching an engine (invalid or empty). */
	struct io_list deferred;
	struct loop_task deferred_task;

	const struct store_engine_ops *ops;
	void *engine;

	/* The fencing gate (store_set_gate) and the steps waiting for it. */
	bool (*gate_allowed)(void *arg);
	void (*gate_wait)(void *arg);
	void *gate_arg;
	struct io_list gated;
};

/* A worker's result for a step it did not run: the gate was closed. */
#define STORE_GATED_RES (-ERESTART)

/* Whether a step may go to the disk now (any thread). */
static inline bool store_gate_open(const struct store *s)
{
	return !s->gate_allowed || s->gate_allowed(s->gate_arg);
}

/* Loop thread: keep @p io until the gate opens (or fails). */
void store_gate_park(struct store *s, struct store_io *io);

extern const struct store_engine_ops store_uring_ops;
extern const struct store_engine_ops store_threads_ops;

/* Describe the current step of @p io. */
void store_step_get(const struct store_io *io, struct store_step *st);
/* Account the result of the step just run: completes the io (calling
 * io->done) or queues its next step. Loop thread only. */
void store_step_done(struct store *s, struct store_io *io, int res);

/* Set up the task completing ios that never reach an engine. */
void store_io_init_deferred(struct store *s);

/* Run one step synchronously (the worker threads). @return >= 0 or -errno. */
int store_step_exec(const struct store_step *st);

#endif
