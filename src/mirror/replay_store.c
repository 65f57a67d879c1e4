/* Replay onto a shelf, and image files: the parts of the mirror that touch
 * the store and the file system outside the log itself. */
#define LOG_MODULE "mirror"
#include "mirror/format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "store/store.h"

#define BATCH 64

struct vol_ent {
	struct mirror_vol_id id;
	struct store_volume *v;
	bool dirty; /* written since the last flush */
};

struct apply_slot {
	struct store_io io;
	struct applier *a;
	unsigned vol;
	uint64_t start, end;
	bool busy;
};

/* Applies records to a shelf: up to BATCH at a time, never two
 * overlapping ones of a volume at once, so order is kept where it matters. */
struct applier {
	struct loop *loop;
	struct store *s;
	struct vol_ent *vols;
	unsigned n_vols;
	struct mirror_vol_id *unknown; /* ids warned about */
	unsigned n_unknown;
	struct apply_slot slots[BATCH];
	unsigned inflight;
	int err;
	uint64_t skipped;
};

static void slot_done(struct store_io *io, int result)
{
	struct apply_slot *sl = container_of(io, struct apply_slot, io);
	struct applier *a = sl->a;

	if (result < 0 && !a->err) {
		LOG_ERROR("replay: %s at %llu+%llu failed: %s",
			  io->op == STORE_OP_FLUSH ? "flush" : "write",
			  (unsigned long long)io->offset, (unsigned long long)io->length,
			  strerror(-result));
		a->err = result;
	}
	sl->busy = false;
	a->inflight--;
}

static int drain(struct applier *a)
{
	while (a->inflight) {
		int rc = loop_run_once(a->loop, 1000000000ull);
		if (rc < 0)
			return rc;
	}
	return a->err;
}

static int applier_init(struct applier *a, struct loop *loop, struct store *s)
{
	unsigned n = store_volume_count(s);

	memset(a, 0, sizeof(*a));
	a->loop = loop;
	a->s = s;
	a->vols = calloc(n ? n : 1, sizeof(*a->vols));
	a->unknown = calloc(16, sizeof(*a->unknown));
	if (!a->vols || !a->unknown) {
		free(a->vols);
		free(a->unknown);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		struct store_volume_info info;
		struct store_volume *v = store_volume_at(s, i);
		store_volume_get_info(v, &info);
		if (mirror_vol_id_from_uuid(info.uuid, &a->vols[a->n_vols].id) < 0) {
			LOG_WARN("replay: volume %s has no usable uuid '%s'", info.name, info.uuid);
			continue;
		}
		a->vols[a->n_vols++].v = v;
	}
	for (unsigned i = 0; i < BATCH; i++)
		a->slots[i].a = a;
	return 0;
}

static void applier_fini(struct applier *a)
{
	free(a->vols);
	free(a->unknown);
}

static void skip(struct applier *a, const struct mirror_record *rec, const char *why)
{
	char id[37];

	a->skipped++;
	for (unsigned i = 0; i < a->n_unknown; i++)
		if (!memcmp(&a->unknown[i], &rec->vol, sizeof(rec->vol)))
			return;
	if (a->n_unknown < 16)
		a->unknown[a->n_unknown++] = rec->vol;
	LOG_WARN("replay: skipping records of volume %s: %s", mirror_vol_id_format(&rec->vol, id),
		 why);
}

static int flush_all(struct applier *a)
{
	int rc = drain(a);

	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < a->n_vols; i++) {
		struct apply_slot *sl = &a->slots[0];
		if (!a->vols[i].dirty)
			continue;
		memset(&sl->io, 0, sizeof(sl->io));
		sl->io.op = STORE_OP_FLUSH;
		sl->io.done = slot_done;
		sl->busy = true;
		a->inflight++;
		store_submit(a->vols[i].v, &sl->io);
		rc = drain(a);
		if (rc < 0)
			return rc;
		a->vols[i].dirty = false;
	}
	return 0;
}

/* mirror_record_fn onto the shelf; a NULL record makes it all durable. */
static int apply_store(void *arg, const struct mirror_record *rec, const void *data)
{
	struct applier *a = arg;
	struct apply_slot *sl = NULL;
	unsigned vi;
	int rc;

	if (!rec)
		return flush_all(a);
	for (vi = 0; vi < a->n_vols; vi++)
		if (!memcmp(&a->vols[vi].id, &rec->vol, sizeof(rec->vol)))
			break;
	if (vi == a->n_vols) {
		skip(a, rec, "not on this shelf");
		return 0;
	}
	if (store_check_range(a->vols[vi].v, rec->offset, rec->length) < 0) {
		skip(a, rec, "record beyond the end of the volume");
		return 0;
	}
	/* Wait for an overlapping write of the batch, or for a free slot. */
	for (unsigned i = 0; i < BATCH; i++) {
		struct apply_slot *o = &a->slots[i];
		if (o->busy && o->vol == vi && o->start < rec->offset + rec->length &&
		    rec->offset < o->end) {
			rc = drain(a);
			if (rc < 0)
				return rc;
			break;
		}
	}
	if (a->inflight == BATCH) {
		rc = drain(a);
		if (rc < 0)
			return rc;
	}
	for (unsigned i = 0; i < BATCH && !sl; i++)
		if (!a->slots[i].busy)
			sl = &a->slots[i];
	memset(&sl->io, 0, sizeof(sl->io));
	switch (rec->type) {
	case MIRROR_REC_WRITE:
		sl->io.op = STORE_OP_WRITE;
		sl->io.buf = (void *)(uintptr_t)data;
		break;
	case MIRROR_REC_ZERO:
		sl->io.op = STORE_OP_WRITE_ZEROES;
		if (rec->flags & MIRROR_RF_NO_HOLE)
			sl->io.flags |= STORE_F_NO_HOLE;
		break;
	default:
		sl->io.op = STORE_OP_TRIM;
		break;
	}
	sl->io.offset = rec->offset;
	sl->io.length = rec->length;
	sl->io.done = slot_done;
	sl->vol = vi;
	sl->start = rec->offset;
	sl->end = rec->offset + rec->length;
	sl->busy = true;
	a->inflight++;
	a->vols[vi].dirty = true;
	store_submit(a->vols[vi].v, &sl->io);
	return a->err;
}

int mirror_recover_to_store(struct mirror *m, struct loop *loop, struct store *s,
			    struct mirror_replay_stats *st)
{
	struct mirror_replay_stats local;
	struct applier a;
	int rc, rc2;

	if (!st)
		st = &local;
	rc = applier_init(&a, loop, s);
	if (rc < 0)
		return rc;
	rc = mirror_recover(m, apply_store, &a, st);
	rc2 = drain(&a);
	if (rc == 0)
		rc = rc2;
	st->skipped = a.skipped;
	applier_fini(&a);
	return rc;
}

/* ---- image files ---- */

int mirror_image_map(const char *path, uint64_t size, bool writable, struct mirror_image_map *out)
{
	int flags = size ? O_RDWR | O_CREAT : writable ? O_RDWR : O_RDONLY;
	struct stat sb;
	int rc;

	memset(out, 0, sizeof(*out));
	out->fd = open(path, flags | O_CLOEXEC, 0600);
	if (out->fd < 0) {
		rc = -errno;
		LOG_ERROR("%s: open: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(out->fd, &sb) < 0) {
		rc = -errno;
		LOG_ERROR("%s: stat: %s", path, strerror(errno));
		goto err;
	}
	if (size && (uint64_t)sb.st_size != size) {
		if (ftruncate(out->fd, (off_t)size) < 0) {
			rc = -errno;
			LOG_ERROR("%s: truncate to %llu: %s", path, (unsigned long long)size,
				  strerror(errno));
			goto err;
		}
		rc = posix_fallocate(out->fd, 0, (off_t)size);
		if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) {
			LOG_ERROR("%s: fallocate: %s", path, strerror(rc));
			rc = -rc;
			goto err;
		}
		sb.st_size = (off_t)size;
	}
	if (sb.st_size <= 0) {
		LOG_ERROR("%s: empty file", path);
		rc = -ENODATA;
		goto err;
	}
	out->size = (size_t)sb.st_size;
	out->base = mmap(NULL, out->size, PROT_READ | (flags & O_RDWR ? PROT_WRITE : 0), MAP_SHARED,
			 out->fd, 0);
	if (out->base == MAP_FAILED) {
		rc = -errno;
		LOG_ERROR("%s: mmap: %s", path, strerror(errno));
		out->base = NULL;
		goto err;
	}
	return 0;
err:
	close(out->fd);
	out->fd = -1;
	return rc;
}

void mirror_image_unmap(struct mirror_image_map *map)
{
	if (map->base)
		munmap(map->base, map->size);
	if (map->fd >= 0)
		close(map->fd);
	map->base = NULL;
	map->fd = -1;
}

int mirror_image_retire(struct mirror_image_map *map)
{
	struct mirror_replay_stats st;
	struct nvr_header h;
	unsigned slot;
	int rc = nvr_header_read(map->base, map->size, &h, &slot);

	if (rc < 0)
		return rc;
	rc = mirror_replay(map->base, map->size, 0, NULL, NULL, &st);
	if (rc < 0)
		return rc;
	if (st.max_seq <= h.cp_seq)
		return 0;
	h.cp_seq = st.max_seq;
	h.gen++;
	nvr_header_write(map->base, &h, slot);
	if (fdatasync(map->fd) < 0) {
		rc = -errno;
		LOG_ERROR("NVRAM image: fdatasync: %s", strerror(errno));
		return rc;
	}
	return 0;
}

int mirror_replay_file_to_store(const char *path, struct loop *loop, struct store *s,
				unsigned flags, struct mirror_replay_stats *st)
{
	struct mirror_replay_stats local;
	struct mirror_image_map map;
	struct applier a;
	int rc, rc2;

	if (!st)
		st = &local;
	rc = mirror_image_map(path, 0, flags & MIRROR_REPLAY_RETIRE, &map);
	if (rc < 0)
		return rc;
	rc = applier_init(&a, loop, s);
	if (rc < 0)
		goto out_unmap;
	rc = mirror_replay(map.base, map.size, flags, apply_store, &a, st);
	if (rc == 0)
		rc = flush_all(&a);
	rc2 = drain(&a);
	if (rc == 0)
		rc = rc2;
	st->skipped = a.skipped;
	applier_fini(&a);
	if (rc == 0 && (flags & MIRROR_REPLAY_RETIRE))
		rc = mirror_image_retire(&map);
out_unmap:
	mirror_image_unmap(&map);
	return rc;
}
