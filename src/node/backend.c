#define LOG_MODULE "backend"
#include "node/node_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "nbd/nbd.h"
#include "store/store.h"

/* One NBD command on its way through the store. Recycled on a free list so
 * the hot path does not allocate. */
struct backend_io {
	struct store_io sio;
	struct nbd_io *nio;
	struct backend *b;
	struct backend_io *next_free;
};

struct backend {
	struct node *node;
	struct backend_io *free_list;
	uint64_t inflight;
	uint64_t allocated;
};

int backend_create(struct node *n, struct backend **out)
{
	struct backend *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->node = n;
	*out = b;
	return 0;
}

void backend_destroy(struct backend *b)
{
	if (!b)
		return;
	while (b->free_list) {
		struct backend_io *bio = b->free_list;
		b->free_list = bio->next_free;
		free(bio);
	}
	free(b);
}

uint64_t backend_inflight(const struct backend *b)
{
	return b ? b->inflight : 0;
}

static int be_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
		   void *arg)
{
	struct backend *b = ctx;
	struct store *s = b->node->store;
	unsigned count = store_volume_count(s);

	for (unsigned i = 0; i < count; i++) {
		struct store_volume_info info;
		store_volume_get_info(store_volume_at(s, i), &info);
		emit(arg, info.name, "duet volume");
	}
	return 0;
}

static int be_open(void *ctx, const char *name, void **handle, struct nbd_export_info *info)
{
	struct backend *b = ctx;
	struct store_volume *v = store_volume_find(b->node->store, name);
	struct store_volume_info vi;

	if (!v)
		return -ENOENT;
	store_volume_get_info(v, &vi);
	memset(info, 0, sizeof(*info));
	info->size = vi.size;
	info->can_trim = true;
	info->can_zero = true;
	info->can_fast_zero = true;
	info->can_cache = true;
	info->can_flush = true;
	info->can_fua = true;
	/* Every connection reaches the same file through the same page cache,
	 * and FLUSH is an fdatasync of that file, so a flush on one connection
	 * covers writes completed on all of them. */
	info->can_multi_conn = true;
	info->can_block_status = true;
	info->min_block = 1;
	info->pref_block = 4096;
	snprintf(info->description, sizeof(info->description), "duet volume owned by %s", vi.owner);
	*handle = v;
	return 0;
}

static void be_close(void *ctx, void *handle)
{
	(void)ctx;
	(void)handle;
}

static void be_io_done(struct store_io *sio, int result)
{
	struct backend_io *bio = container_of(sio, struct backend_io, sio);
	struct backend *b = bio->b;
	struct nbd_io *nio = bio->nio;

	b->inflight--;
	bio->next_free = b->free_list;
	b->free_list = bio;
	nbd_io_done(nio, result);
}

static int be_block_status(struct store_volume *v, struct nbd_io *io)
{
	struct store_extent ext[64];
	unsigned max = MIN(io->max_extents, (uint32_t)ARRAY_SIZE(ext));
	int n = store_block_status(v, io->offset, io->length, ext, max);

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		io->extents[i].length = ext[i].length;
		io->extents[i].flags = ext[i].hole ? (NBD_STATE_HOLE | NBD_STATE_ZERO) : 0;
	}
	io->n_extents = (uint32_t)n;
	return 0;
}

static void be_submit(void *ctx, struct nbd_io *io)
{
	static const enum store_op ops[] = {
	    [NBD_CMD_READ] = STORE_OP_READ,   [NBD_CMD_WRITE] = STORE_OP_WRITE,
	    [NBD_CMD_FLUSH] = STORE_OP_FLUSH, [NBD_CMD_TRIM] = STORE_OP_TRIM,
	    [NBD_CMD_CACHE] = STORE_OP_CACHE, [NBD_CMD_WRITE_ZEROES] = STORE_OP_WRITE_ZEROES,
	};
	struct backend *b = ctx;
	struct store_volume *v = io->export_handle;
	struct backend_io *bio;
	int rc;

	if (io->type != NBD_CMD_FLUSH) {
		rc = store_check_range(v, io->offset, io->length);
		if (rc < 0) {
			nbd_io_done(io, io->type == NBD_CMD_WRITE ? -ENOSPC : rc);
			return;
		}
	}
	if (io->type == NBD_CMD_BLOCK_STATUS) {
		nbd_io_done(io, be_block_status(v, io));
		return;
	}
	if (io->type >= ARRAY_SIZE(ops) || io->type == NBD_CMD_DISC) {
		nbd_io_done(io, -EINVAL);
		return;
	}
	bio = b->free_list;
	if (bio) {
		b->free_list = bio->next_free;
	} else {
		bio = malloc(sizeof(*bio));
		if (!bio) {
			nbd_io_done(io, -ENOMEM);
			return;
		}
		b->allocated++;
	}
	memset(&bio->sio, 0, sizeof(bio->sio));
	bio->b = b;
	bio->nio = io;
	bio->sio.op = ops[io->type];
	bio->sio.offset = io->offset;
	bio->sio.length = io->length;
	bio->sio.buf = io->buf;
	bio->sio.done = be_io_done;
	if (io->flags & NBD_CMD_FLAG_FUA)
		bio->sio.flags |= STORE_F_FUA;
	if (io->flags & NBD_CMD_FLAG_NO_HOLE)
		bio->sio.flags |= STORE_F_NO_HOLE;
	if (io->flags & NBD_CMD_FLAG_FAST_ZERO)
		bio->sio.flags |= STORE_F_FAST_ZERO;
	b->inflight++;
	store_submit(v, &bio->sio);
}

static const struct nbd_backend_ops ops = {
    .list = be_list,
    .open = be_open,
    .close = be_close,
    .submit = be_submit,
};

const struct nbd_backend_ops *backend_ops(void)
{
	return &ops;
}
