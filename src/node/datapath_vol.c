/* The datapath's per-volume hooks for relocation (relocate.c: a volume
 * away, leaving, its requests in flight) and volume move (move.c: the copy
 * every write also reaches, the range lock the copier takes). */
#define LOG_MODULE "datapath"
#include "node/datapath_int.h"

#include <errno.h>

/* ---- relocation (relocate.c) ---- */

/* The datapath state of volume @p name, made if need be; NULL: not here. */
static struct dp_vol *vol_named(struct node_datapath *b, const char *name)
{
	struct store_volume *v = b ? store_volume_find(b->store, name) : NULL;
	struct store_volume_info vi;

	if (!v)
		return NULL;
	store_volume_get_info(v, &vi);
	return dp_vol_get(b, v, &vi);
}

bool node_datapath_vol_here(struct node_datapath *b, const char *name)
{
	struct dp_vol *bv = vol_named(b, name);

	return bv && !bv->away && !bv->leaving;
}

int node_datapath_vol_set(struct node_datapath *b, const char *name, int away, int leaving)
{
	struct dp_vol *bv = vol_named(b, name);

	if (!bv)
		return -ENOENT;
	if (away >= 0)
		bv->away = away;
	if (away == 1)
		bv->dirty = false; /* not ours to sync (its data is durable, or replayed) */
	if (leaving >= 0)
		bv->leaving = leaving;
	return 0;
}

uint64_t node_datapath_vol_inflight(struct node_datapath *b, const char *name)
{
	struct dp_vol *bv = vol_named(b, name);

	return bv ? bv->inflight : 0;
}

struct store_volume *node_datapath_vol_store(struct node_datapath *b, const char *name)
{
	return b ? store_volume_find(b->store, name) : NULL;
}

void node_datapath_set_write_through(struct node_datapath *b)
{
	b->write_through = true;
}

void node_datapath_set_error_hook(struct node_datapath *b, int (*hook)(void *arg, int result),
				  void *arg)
{
	b->err_hook = hook;
	b->err_arg = arg;
}

struct mirror *node_datapath_mirror(const struct node_datapath *b)
{
	return b ? b->m : NULL;
}

/* ---- volume move (move.c) ---- */

int node_datapath_vol_sink(struct node_datapath *b, const char *name, struct node_move_sink *sink)
{
	struct dp_vol *bv = vol_named(b, name);

	if (!bv)
		return -ENOENT;
	bv->sink = sink;
	return 0;
}

int node_datapath_vol_lock(struct node_datapath *b, const char *name, struct mirror_range *r,
			   uint64_t offset, uint64_t length,
			   void (*granted)(struct mirror_range *r), void *arg)
{
	struct dp_vol *bv = vol_named(b, name);

	if (!bv)
		return -ENOENT;
	return mirror_range_lock(&bv->rl, r, offset, length, granted, arg) ? 1 : 0;
}

void node_datapath_vol_unlock(struct node_datapath *b, const char *name, struct mirror_range *r)
{
	struct dp_vol *bv = vol_named(b, name);

	if (bv)
		mirror_range_unlock(&bv->rl, r);
}

uint64_t node_datapath_vol_unordered(struct node_datapath *b, const char *name)
{
	struct dp_vol *bv = vol_named(b, name);

	return bv ? bv->unordered : 0;
}

void node_datapath_vol_forget(struct node_datapath *b, const char *name)
{
	struct dp_vol *bv = vol_named(b, name);

	if (bv) {
		bv->gone = true;
		bv->sink = NULL;
	}
}
