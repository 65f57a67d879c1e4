/* The volume move's copier plan (move_plan.c): which chunk goes next, how
 * many may be in flight, how long to idle first, and how far the copy is.
 * Pure: no I/O, no clock (times are given), no allocation; move.c does the
 * I/O around it and tests/unit/test_move_plan.c every case. */
#ifndef DUET_NODE_MOVE_PLAN_H
#define DUET_NODE_MOVE_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#define MOVE_PLAN_SLOTS	      4 /* chunks in flight at most (clients idle) */
#define MOVE_PLAN_IDLE_FACTOR 2 /* clients busy: idle twice as long as a chunk took */

struct move_plan {
	uint64_t total;	   /* bytes to copy */
	uint64_t chunk;	   /* bytes per chunk */
	uint64_t delay_ns; /* test hook: idle after each chunk, one at a time */
	/* State. */
	uint64_t cursor; /* chunks handed out below it */
	uint64_t off[MOVE_PLAN_SLOTS];
	bool busy[MOVE_PLAN_SLOTS];
	unsigned n_busy;
	uint64_t start_ns, end_ns; /* the last chunk: started (its range granted), ended */
};

/** A plan for @p total bytes in chunks of @p chunk. */
void move_plan_init(struct move_plan *p, uint64_t total, uint64_t chunk, uint64_t delay_ns);
/**
 * How long to idle before the next chunk at @p now (0: go on). While
 * clients have requests in flight (@p clients) the copier idles twice as
 * long as its last chunk took (a third of the shelf's time at most); the test delay
 * adds a pause after every chunk.
 */
uint64_t move_plan_wait(const struct move_plan *p, bool clients, uint64_t now);
/** Chunks that may be in flight at once: all slots, one with @p clients or
 * the test delay. */
unsigned move_plan_limit(const struct move_plan *p, bool clients);
/** Hand out the next chunk (at most @p limit in flight): @return its slot
 * with @p off and @p len, or -1 (none left, or the limit reached). */
int move_plan_next(struct move_plan *p, unsigned limit, uint64_t *off, uint64_t *len);
/** The chunk in @p slot got its range (its copy starts) at @p now. */
void move_plan_started(struct move_plan *p, uint64_t now);
/** The chunk in @p slot ended at @p now. @return the bytes below which
 * every chunk is copied (chunks end in any order). */
uint64_t move_plan_end(struct move_plan *p, int slot, uint64_t now);
/** Every chunk handed out and ended. */
bool move_plan_complete(const struct move_plan *p);

#endif
