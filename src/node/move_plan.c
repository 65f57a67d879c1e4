/* The volume move's copier plan: pure decisions (move_plan.h). The rule
 * kept: a chunk is handed out once, in order; done never passes a chunk
 * still in flight; the copier takes at most a third of the time while
 * clients are busy. */
#include "node/move_plan.h"

#include <string.h>

void move_plan_init(struct move_plan *p, uint64_t total, uint64_t chunk, uint64_t delay_ns)
{
	memset(p, 0, sizeof(*p));
	p->total = total;
	p->chunk = chunk ? chunk : 1;
	p->delay_ns = delay_ns;
}

uint64_t move_plan_wait(const struct move_plan *p, bool clients, uint64_t now)
{
	uint64_t since, took, want = 0;

	if (p->n_busy || p->cursor >= p->total || !p->end_ns || now < p->end_ns)
		return 0;
	since = now - p->end_ns;
	took = p->end_ns > p->start_ns ? p->end_ns - p->start_ns : 0;
	if (clients && MOVE_PLAN_IDLE_FACTOR * took > want)
		want = MOVE_PLAN_IDLE_FACTOR * took;
	if (p->delay_ns > want)
		want = p->delay_ns;
	return since < want ? want - since : 0;
}

unsigned move_plan_limit(const struct move_plan *p, bool clients)
{
	return clients || p->delay_ns ? 1 : MOVE_PLAN_SLOTS;
}

int move_plan_next(struct move_plan *p, unsigned limit, uint64_t *off, uint64_t *len)
{
	if (p->cursor >= p->total || p->n_busy >= limit)
		return -1;
	for (int i = 0; i < MOVE_PLAN_SLOTS; i++) {
		if (p->busy[i])
			continue;
		p->busy[i] = true;
		p->n_busy++;
		p->off[i] = p->cursor;
		*off = p->cursor;
		*len = p->total - p->cursor < p->chunk ? p->total - p->cursor : p->chunk;
		p->cursor += *len;
		return i;
	}
	return -1;
}

void move_plan_started(struct move_plan *p, uint64_t now)
{
	p->start_ns = now;
}

uint64_t move_plan_end(struct move_plan *p, int slot, uint64_t now)
{
	uint64_t done = p->cursor;

	if (slot >= 0 && slot < MOVE_PLAN_SLOTS && p->busy[slot]) {
		p->busy[slot] = false;
		p->n_busy--;
	}
	p->end_ns = now;
	for (int i = 0; i < MOVE_PLAN_SLOTS; i++)
		if (p->busy[i] && p->off[i] < done)
			done = p->off[i];
	return done;
}

bool move_plan_complete(const struct move_plan *p)
{
	return p->cursor >= p->total && !p->n_busy;
}

/* ---- pacing on the clients' figures ---- */

void move_pace_init(struct move_pace *p, uint64_t count, uint64_t sum_ns, uint64_t now)
{
	memset(p, 0, sizeof(*p));
	p->count = count;
	p->sum_ns = sum_ns;
	p->at_ns = now;
	/* Nothing copies yet, but the start itself (the record and the copy's
	 * file, fsync'ed on the loop) stalled the clients: a window to settle,
	 * then the probe. */
	p->phase = MP_DRAIN;
}

/* Fold @p v into the EWMA @p avg (a quarter of the new figure). */
static uint64_t ewma(uint64_t avg, uint64_t v, bool first)
{
	return first ? v : (3 * avg + v) / 4;
}

void move_pace_sample(struct move_pace *p, uint64_t count, uint64_t sum_ns, uint64_t now)
{
	uint64_t n = count - p->count, dt = now - p->at_ns;
	uint64_t lat = n ? (sum_ns - p->sum_ns) / n : 0;
	uint64_t rate = dt ? n * 1000000000ull / dt : 0;

	p->count = count;
	p->sum_ns = sum_ns;
	p->at_ns = now;
	switch (p->phase) {
	case MP_DRAIN: /* the copier's last chunks ended in this one */
		p->phase = MP_PROBE;
		return;
	case MP_PROBE:
		p->probes++;
		if (n >= MOVE_PACE_MIN_REQS) {
			p->base_lat_ns = ewma(p->base_lat_ns, lat, !p->have_base);
			p->base_rate = ewma(p->base_rate, rate, !p->have_base);
			p->have_base = true;
		} else {
			p->have_base = false; /* no clients (now): nothing to spare */
		}
		p->hurt = false;
		p->throttled = false;
		p->phase = MP_COPY;
		p->next_probe_ns = now + MOVE_PACE_PROBE_EVERY_NS;
		return;
	case MP_COPY:
		break;
	}
	p->windows++;
	p->lat_ns = lat;
	p->rate = rate;
	p->hurt = p->have_base && 100 * rate < MOVE_PACE_RATE_PCT * p->base_rate &&
		  (n < MOVE_PACE_MIN_REQS || 100 * lat > MOVE_PACE_LAT_PCT * p->base_lat_ns);
	p->hurt_windows += p->hurt;
	p->throttled |= p->hurt;
	/* With clients, a probe every MOVE_PACE_PROBE_EVERY_NS; without, one
	 * as soon as some show up (a quarter of that after the last). */
	if (p->have_base ? now >= p->next_probe_ns
			 : n >= MOVE_PACE_MIN_REQS &&
			       now + 3 * MOVE_PACE_PROBE_EVERY_NS / 4 >= p->next_probe_ns)
		p->phase = MP_DRAIN;
}

bool move_pace_idle(const struct move_pace *p)
{
	return p->phase != MP_COPY;
}

bool move_pace_hurt(const struct move_pace *p)
{
	return p->hurt;
}

bool move_pace_throttled(const struct move_pace *p)
{
	return p->throttled;
}
