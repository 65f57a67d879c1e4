/* RAM-backed NBD backend with a hole map: see ramdisk.h. */
#define LOG_MODULE "ramdisk"
#include "ramdisk.h"
#include "common/log.h"
#include "common/loop.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EXPORTS 16

struct rd_export {
	char name[256];
	struct nbd_export_info info;
	uint8_t *data;
	uint8_t *alloc; /* one byte per block: 1 allocated, 0 hole (reads zero) */
	uint64_t nblocks;
};

struct ramdisk {
	struct loop *loop;
	struct rd_export ex[MAX_EXPORTS];
	unsigned n_ex;
	enum ramdisk_mode mode;
	int fail_err;
	unsigned fail_count;
	struct nbd_io **held;
	unsigned n_held, cap_held;
	struct loop_task task;
	struct ramdisk_stats st;
};

static struct rd_export *find(struct ramdisk *rd, const char *name)
{
	for (unsigned i = 0; i < rd->n_ex; i++)
		if (strcmp(rd->ex[i].name, name) == 0)
			return &rd->ex[i];
	return NULL;
}

static void release_task(void *arg)
{
	ramdisk_release(arg, true);
}

int ramdisk_create(struct loop *loop, struct ramdisk **out)
{
	struct ramdisk *rd = calloc(1, sizeof(*rd));

	if (!rd)
		return -ENOMEM;
	rd->loop = loop;
	loop_task_init(&rd->task, release_task, rd);
	*out = rd;
	return 0;
}

void ramdisk_destroy(struct ramdisk *rd)
{
	if (!rd)
		return;
	for (unsigned i = 0; i < rd->n_ex; i++) {
		free(rd->ex[i].data);
		free(rd->ex[i].alloc);
	}
	free(rd->held);
	free(rd);
}

int ramdisk_add(struct ramdisk *rd, const char *name, uint64_t size, bool read_only,
		const char *desc)
{
	struct rd_export *e;

	if (rd->n_ex == MAX_EXPORTS || strlen(name) >= sizeof(e->name))
		return -EINVAL;
	e = &rd->ex[rd->n_ex];
	memset(e, 0, sizeof(*e));
	strcpy(e->name, name);
	e->nblocks = (size + RAMDISK_BLOCK - 1) / RAMDISK_BLOCK;
	e->data = calloc(1, size ? size : 1);
	e->alloc = calloc(1, e->nblocks ? e->nblocks : 1);
	if (!e->data || !e->alloc) {
		free(e->data);
		free(e->alloc);
		return -ENOMEM;
	}
	e->info = (struct nbd_export_info){
	    .size = size,
	    .read_only = read_only,
	    .can_trim = true,
	    .can_zero = true,
	    .can_fast_zero = true,
	    .can_cache = true,
	    .can_flush = true,
	    .can_fua = true,
	    .can_multi_conn = true,
	    .can_block_status = true,
	    .min_block = 1,
	    .pref_block = 4096,
	};
	if (desc)
		snprintf(e->info.description, sizeof(e->info.description), "%s", desc);
	rd->n_ex++;
	return 0;
}

struct nbd_export_info *ramdisk_info(struct ramdisk *rd, const char *name)
{
	struct rd_export *e = find(rd, name);

	return e ? &e->info : NULL;
}

uint8_t *ramdisk_data(struct ramdisk *rd, const char *name)
{
	struct rd_export *e = find(rd, name);

	return e ? e->data : NULL;
}

void ramdisk_set_mode(struct ramdisk *rd, enum ramdisk_mode mode)
{
	rd->mode = mode;
}

void ramdisk_fail_next(struct ramdisk *rd, int err, unsigned count)
{
	rd->fail_err = err;
	rd->fail_count = count;
}

unsigned ramdisk_held(const struct ramdisk *rd)
{
	return rd->n_held;
}

void ramdisk_get_stats(const struct ramdisk *rd, struct ramdisk_stats *st)
{
	*st = rd->st;
}

/* ---- backend ops ---- */

static int rd_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
		   void *arg)
{
	struct ramdisk *rd = ctx;

	for (unsigned i = 0; i < rd->n_ex; i++)
		emit(arg, rd->ex[i].name, rd->ex[i].info.description);
	return 0;
}

static int rd_open(void *ctx, const char *name, void **handle, struct nbd_export_info *info)
{
	struct ramdisk *rd = ctx;
	struct rd_export *e = find(rd, name);

	/* The default export "" is the first one. */
	if (!e && name[0] == '\0' && rd->n_ex)
		e = &rd->ex[0];
	if (!e)
		return -ENOENT;
	*handle = e;
	*info = e->info;
	rd->st.opens++;
	return 0;
}

static void rd_close(void *ctx, void *handle)
{
	struct ramdisk *rd = ctx;

	(void)handle;
	rd->st.closes++;
}

/* Mark blocks [first, last] of a byte range allocated or not; a hole
 * only where a whole block is covered. */
static void mark(struct rd_export *e, uint64_t off, uint64_t len, bool alloc)
{
	uint64_t b0, b1;

	if (len == 0)
		return;
	if (alloc) {
		b0 = off / RAMDISK_BLOCK;
		b1 = (off + len - 1) / RAMDISK_BLOCK;
		memset(e->alloc + b0, 1, b1 - b0 + 1);
		return;
	}
	b0 = (off + RAMDISK_BLOCK - 1) / RAMDISK_BLOCK;
	b1 = (off + len) / RAMDISK_BLOCK;
	if ((off + len) == e->info.size)
		b1 = e->nblocks; /* the partial last block */
	if (b1 > b0)
		memset(e->alloc + b0, 0, b1 - b0);
}

static int block_status(struct rd_export *e, struct nbd_io *io)
{
	uint64_t pos = io->offset, end = io->offset + io->length;
	uint32_t n = 0;

	while (pos < e->info.size && n < io->max_extents && pos < end) {
		uint64_t b = pos / RAMDISK_BLOCK;
		uint8_t a = e->alloc[b];
		uint64_t stop = b + 1;
		while (stop < e->nblocks && e->alloc[stop] == a)
			stop++;
		uint64_t stop_byte = stop * RAMDISK_BLOCK;
		if (stop_byte > e->info.size)
			stop_byte = e->info.size;
		io->extents[n].length = stop_byte - pos;
		io->extents[n].flags = a ? 0 : (NBD_STATE_HOLE | NBD_STATE_ZERO);
		n++;
		pos = stop_byte;
	}
	io->n_extents = n;
	return 0;
}

static int execute(struct ramdisk *rd, struct nbd_io *io)
{
	struct rd_export *e = io->export_handle;

	if (rd->fail_count) {
		rd->fail_count--;
		return rd->fail_err;
	}
	switch (io->type) {
	case NBD_CMD_READ:
		memcpy(io->buf, e->data + io->offset, io->length);
		return 0;
	case NBD_CMD_WRITE:
		memcpy(e->data + io->offset, io->buf, io->length);
		mark(e, io->offset, io->length, true);
		return 0;
	case NBD_CMD_TRIM:
		/* Only whole blocks become holes (and read back zero). */
		for (uint64_t b = (io->offset + RAMDISK_BLOCK - 1) / RAMDISK_BLOCK;
		     (b + 1) * RAMDISK_BLOCK <= io->offset + io->length; b++)
			memset(e->data + b * RAMDISK_BLOCK, 0, RAMDISK_BLOCK);
		mark(e, io->offset, io->length, false);
		return 0;
	case NBD_CMD_WRITE_ZEROES:
		memset(e->data + io->offset, 0, io->length);
		if (io->flags & NBD_CMD_FLAG_NO_HOLE) {
			mark(e, io->offset, io->length, true);
		} else {
			mark(e, io->offset, io->length, true);
			mark(e, io->offset, io->length, false);
		}
		return 0;
	case NBD_CMD_BLOCK_STATUS:
		return block_status(e, io);
	case NBD_CMD_FLUSH:
	case NBD_CMD_CACHE:
		return 0;
	default:
		return -EINVAL;
	}
}

static void rd_submit(void *ctx, struct nbd_io *io)
{
	struct ramdisk *rd = ctx;

	rd->st.ops[io->type & 7]++;
	rd->st.last_flags[io->type & 7] = io->flags;
	if (rd->mode == RAMDISK_INLINE) {
		nbd_io_done(io, execute(rd, io));
		return;
	}
	if (rd->n_held == rd->cap_held) {
		unsigned cap = rd->cap_held ? 2 * rd->cap_held : 64;
		struct nbd_io **h = realloc(rd->held, cap * sizeof(*h));
		if (!h) {
			nbd_io_done(io, -ENOMEM);
			return;
		}
		rd->held = h;
		rd->cap_held = cap;
	}
	rd->held[rd->n_held++] = io;
	if (rd->mode == RAMDISK_DEFER)
		loop_post(rd->loop, &rd->task);
}

void ramdisk_release(struct ramdisk *rd, bool reverse)
{
	unsigned n = rd->n_held;
	struct nbd_io **list;

	if (n == 0)
		return;
	/* Take the list: completions may submit more (not re-entered here). */
	list = rd->held;
	rd->held = NULL;
	rd->n_held = rd->cap_held = 0;
	for (unsigned i = 0; i < n; i++) {
		struct nbd_io *io = list[reverse ? n - 1 - i : i];
		nbd_io_done(io, execute(rd, io));
	}
	free(list);
}

const struct nbd_backend_ops ramdisk_ops = {
    .list = rd_list,
    .open = rd_open,
    .close = rd_close,
    .submit = rd_submit,
};
