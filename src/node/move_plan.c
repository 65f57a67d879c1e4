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
