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

/*
 * Pacing on the clients' figures (move_pace_*): whether the copier hurts
 * the volume's clients, for move_plan_wait/limit's @p clients. Fed every
 * MOVE_PACE_WINDOW_NS with the volume's cumulative request count and
 * latency sum. Every MOVE_PACE_PROBE_EVERY_NS of copying the copier stays
 * idle for a probe (one window to drain, one measured): the clients'
 * latency and rate without the copy (the sink's second write included,
 * which the copier cannot help), an EWMA. A copying window hurts when the
 * clients complete fewer requests than MOVE_PACE_RATE_PCT % of the probe's
 * rate and their latency is over MOVE_PACE_LAT_PCT % of the probe's: a
 * client that waits for its replies (IOPS = depth / latency) loses IOPS
 * then, while a client writing at a fixed rate below what the volume does
 * keeps its rate, and the copy goes on at full speed for it.
 */
#define MOVE_PACE_WINDOW_NS	 (50ull * 1000 * 1000)
#define MOVE_PACE_PROBE_EVERY_NS (2000ull * 1000 * 1000)
#define MOVE_PACE_MIN_REQS	 8   /* a window with fewer says nothing of latency */
#define MOVE_PACE_RATE_PCT	 85  /* hurt below this share of the probe's rate */
#define MOVE_PACE_LAT_PCT	 115 /* ... with a latency over this share */

enum move_pace_phase { MP_COPY, MP_DRAIN, MP_PROBE };

struct move_pace {
	enum move_pace_phase phase;
	uint64_t count, sum_ns, at_ns; /* the figures at the last sample */
	uint64_t next_probe_ns;
	bool have_base;			 /* a probe saw clients */
	uint64_t base_lat_ns, base_rate; /* the probes' EWMA: ns a request, per second */
	uint64_t lat_ns, rate;		 /* the last copying window */
	bool hurt;			 /* the last copying window hurt the clients */
	bool throttled; /* a window since the last probe did: paced till the next */
	uint64_t probes, hurt_windows, windows; /* for the log */
};

/** Start pacing at @p now with the volume's figures: a probe first (after
 * a window to settle). */
void move_pace_init(struct move_pace *p, uint64_t count, uint64_t sum_ns, uint64_t now);
/** A window ended at @p now with the volume's cumulative figures. */
void move_pace_sample(struct move_pace *p, uint64_t count, uint64_t sum_ns, uint64_t now);
/** The copier must stay idle (a probe). */
bool move_pace_idle(const struct move_pace *p);
/** The last copying window hurt the clients. */
bool move_pace_hurt(const struct move_pace *p);
/** A copying window since the last probe hurt the clients: one chunk at a
 * time, with idle time, until the next probe. Sticky, because a paced
 * copier lets the clients recover, and going back to full speed at the
 * next good window hurts them again (half the windows hurt, measured). */
bool move_pace_throttled(const struct move_pace *p);

#endif
