/* Range lock: overlapping writes of a volume keep their arrival order.
 *
 * Every range, held or waiting, sits in one list in arrival order. A range
 * is granted when no earlier range in the list overlaps it. Cost is linear
 * in the ranges of the volume in flight (the NBD queue depth), with no
 * allocation. */
#include "mirror/mirror.h"

#include <stddef.h>

static bool overlaps(const struct mirror_range *a, const struct mirror_range *b)
{
	return a->start < b->end && b->start < a->end;
}

void mirror_rangelock_init(struct mirror_rangelock *rl)
{
	rl->head = rl->tail = NULL;
	rl->count = 0;
}

static bool blocked(const struct mirror_range *r)
{
	if (r->start == r->end)
		return false;
	for (const struct mirror_range *p = r->prev; p; p = p->prev)
		if (overlaps(p, r))
			return true;
	return false;
}

bool mirror_range_lock(struct mirror_rangelock *rl, struct mirror_range *r, uint64_t offset,
		       uint64_t length, void (*granted)(struct mirror_range *r), void *arg)
{
	r->start = offset;
	r->end = offset + length < offset ? UINT64_MAX : offset + length;
	r->granted = granted;
	r->arg = arg;
	r->next = r->grant_next = NULL;
	r->prev = rl->tail;
	if (rl->tail)
		rl->tail->next = r;
	else
		rl->head = r;
	rl->tail = r;
	rl->count++;
	r->held = !blocked(r);
	return r->held;
}

void mirror_range_unlock(struct mirror_rangelock *rl, struct mirror_range *r)
{
	struct mirror_range *grant = NULL, **gtail = &grant;
	struct mirror_range *p;

	if (r->prev)
		r->prev->next = r->next;
	else
		rl->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		rl->tail = r->prev;
	rl->count--;
	/* Only ranges after r that overlapped it can have been waiting on it. */
	for (p = r->next; p; p = p->next) {
		if (p->held || !overlaps(p, r) || blocked(p))
			continue;
		p->held = true;
		*gtail = p;
		gtail = &p->grant_next;
	}
	r->prev = r->next = NULL;
	r->held = false;
	/* Callbacks last, with the list consistent: they may lock and unlock. */
	while (grant) {
		p = grant;
		grant = p->grant_next;
		p->grant_next = NULL;
		p->granted(p);
	}
}
