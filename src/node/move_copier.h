/* The volume move's copier threads (move_copier.c): the bulk copy of a
 * move's chunks off the reactor. move.c takes a chunk's range lock on the
 * reactor, hands the chunk here, and gets it back on the reactor (done)
 * once the data is on the copy; the threads touch only the two files
 * (store_move_copy). */
#ifndef DUET_NODE_MOVE_COPIER_H
#define DUET_NODE_MOVE_COPIER_H

#include <stddef.h>
#include <stdint.h>

struct loop;
struct store_volume;
struct move_copier;

#define MOVE_COPIER_THREADS 2 /* chunks copied at once at most */

struct move_copy_job {
	/* In: set by the caller, untouched until done runs. */
	struct store_volume *src, *dst;
	uint64_t offset, length;
	void *buf;
	size_t buflen;
	void (*done)(struct move_copy_job *job);
	/* Out. */
	int result;    /* 0 or -errno */
	uint64_t data; /* data bytes copied (holes skipped) */
	struct move_copy_job *next;
};

/** Start the threads; their completions run on @p loop. */
int move_copier_create(struct loop *loop, struct move_copier **out);
/** Stop and join the threads (no job may be queued or running). */
void move_copier_destroy(struct move_copier *c);
/** Copy @p job on a thread; @p job->done runs on the loop afterwards. */
void move_copier_submit(struct move_copier *c, struct move_copy_job *job);

#endif
