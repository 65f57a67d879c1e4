/* Range lock: overlapping writes of a volume keep their arrival order.
 *
 * Rule: every range, held or waiting, sits in one list in arrival order,
 * and a range is granted when no earlier range in the list overlaps it.
 * Cost is linear in the ranges of the volume in flight (the NBD queue
 * depth), with no allocation. Grant callbacks run last, with the list
 * consistent, so they may lock and unlock. */
#include "mirror/mirror.h"

#include <stddef.h>

static bool overlaps(const struct mirror_range *a, const struct mirror_range *b)
{
	return a->start < b->end && b->start < a->end;
}

void mirror_rangelock_init(struct mirror_rangelock *rl)
{
	list_init(&rl->all);
	rl->count = 0;
}

/* Some range that arrived before @p r overlaps it. */
static bool blocked(const struct mirror_rangelock *rl, const struct mirror_range *r)
{
	if (r->start == r->end)
		return false;
	for (const struct list *p = r->node.prev; p != &rl->all; p = p->prev)
		if (overlaps(list_entry(p, struct mirror_range, node), r))
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
	r->grant_node.next = NULL;
	list_add_tail(&rl->all, &r->node);
	rl->count++;
	r->held = !blocked(rl, r);
	return r->held;
}

void mirror_range_unlock(struct mirror_rangelock *rl, struct mirror_range *r)
{
	struct slist grant = SLIST_INIT(grant);
	struct list *next = r->node.next, *p;
	struct slist_node *g;

	list_del(&r->node);
	rl->count--;
	/* Only ranges after r that overlapped it can have been waiting on it. */
	for (p = next; p != &rl->all; p = p->next) {
		struct mirror_range *o = list_entry(p, struct mirror_range, node);
		if (o->held || !overlaps(o, r) || blocked(rl, o))
			continue;
		o->held = true;
		slist_push_tail(&grant, &o->grant_node);
	}
	r->held = false;
	/* Callbacks last, with the list consistent: they may lock and unlock. */
	while ((g = slist_pop_head(&grant))) {
		struct mirror_range *o = slist_entry(g, struct mirror_range, grant_node);
		o->granted(o);
	}
}
