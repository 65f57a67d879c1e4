/**
 * @file list.h
 * The intrusive lists every module uses: a node is embedded in its owner,
 * the list never allocates, and container_of() gets the owner back.
 *
 * Two kinds, one each:
 * - struct slist: a singly-linked FIFO (head and tail), for queues and free
 *   lists whose entries leave from the front;
 * - struct list: a circular doubly-linked list, for entries that leave from
 *   anywhere in O(1).
 * Neither is thread-safe: each list belongs to one thread (or one lock).
 */
#ifndef DUET_COMMON_LIST_H
#define DUET_COMMON_LIST_H

#include <stdbool.h>
#include <stddef.h>

#include "common/util.h"

/* ---- singly-linked FIFO ---- */

struct slist_node {
	struct slist_node *next;
};

struct slist {
	struct slist_node *head;
	struct slist_node **tail; /* &head when empty */
};

#define SLIST_INIT(q)           \
	{                       \
		NULL, &(q).head \
	}

static inline void slist_init(struct slist *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

static inline bool slist_empty(const struct slist *q)
{
	return q->head == NULL;
}

static inline void slist_push_tail(struct slist *q, struct slist_node *n)
{
	n->next = NULL;
	*q->tail = n;
	q->tail = &n->next;
}

static inline void slist_push_head(struct slist *q, struct slist_node *n)
{
	n->next = q->head;
	if (!q->head)
		q->tail = &n->next;
	q->head = n;
}

/** Remove and return the first node, or NULL. */
static inline struct slist_node *slist_pop_head(struct slist *q)
{
	struct slist_node *n = q->head;

	if (n) {
		q->head = n->next;
		if (!q->head)
			q->tail = &q->head;
		n->next = NULL;
	}
	return n;
}

/** Move every node of @p from to the tail of @p to; @p from ends empty. */
static inline void slist_splice_tail(struct slist *to, struct slist *from)
{
	if (!from->head)
		return;
	*to->tail = from->head;
	to->tail = from->tail;
	slist_init(from);
}

#define slist_entry(ptr, type, member) container_of(ptr, type, member)

/** Iterate; the body must not remove @p pos (pop from the head instead). */
#define slist_for_each(pos, q) for ((pos) = (q)->head; (pos); (pos) = (pos)->next)

/* ---- circular doubly-linked list ---- */

struct list {
	struct list *prev, *next;
};

#define LIST_INIT(l)       \
	{                  \
		&(l), &(l) \
	}

static inline void list_init(struct list *l)
{
	l->prev = l->next = l;
}

static inline bool list_empty(const struct list *l)
{
	return l->next == l;
}

/** A node that was list_init()ed or list_del()ed is in no list. */
static inline bool list_linked(const struct list *n)
{
	return n->next != n;
}

static inline void list_insert_(struct list *n, struct list *prev, struct list *next)
{
	n->prev = prev;
	n->next = next;
	prev->next = n;
	next->prev = n;
}

static inline void list_add_tail(struct list *head, struct list *n)
{
	list_insert_(n, head->prev, head);
}

static inline void list_add_head(struct list *head, struct list *n)
{
	list_insert_(n, head, head->next);
}

/** Unlink @p n and leave it as an empty list, so a second del is harmless. */
static inline void list_del(struct list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	list_init(n);
}

#define list_entry(ptr, type, member) container_of(ptr, type, member)

/** First entry, or NULL when empty. */
#define list_first_entry_or_null(head, type, member) \
	(list_empty(head) ? NULL : list_entry((head)->next, type, member))

/** Iterate; @p tmp lets the body remove @p pos. */
#define list_for_each_safe(pos, tmp, head)                               \
	for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head); \
	     (pos) = (tmp), (tmp) = (pos)->next)

#define list_for_each(pos, head) for ((pos) = (head)->next; (pos) != (head); (pos) = (pos)->next)

#endif
