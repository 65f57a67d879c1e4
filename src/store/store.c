/* The shelf: a directory holding a format marker and one data file plus one
 * JSON metadata file per volume (meta.c reads and writes those), and the
 * table of its volumes: open, create, delete, resize, look up. */
#define LOG_MODULE "store"
#include "common/log.h"
#include "common/util.h"
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VOLUMES_DIR "volumes"

void store_opts_init(struct store_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->engine = STORE_ENGINE_URING;
	o->depth = 256;
	o->workers = 4;
	o->direct_io = true;
}

const char *store_engine_name(enum store_engine e)
{
	return e == STORE_ENGINE_THREADS ? "threads" : "uring";
}

static unsigned vol_search(const struct store *s, const char *name, bool *found)
{
	unsigned lo = 0, hi = s->n_vols;

	*found = false;
	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = strcmp(s->vols[mid]->name, name);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int vol_insert(struct store *s, struct store_volume *v)
{
	bool found;
	unsigned i;

	if (s->n_vols == s->cap_vols) {
		unsigned cap = s->cap_vols ? 2 * s->cap_vols : 16;
		struct store_volume **a = realloc(s->vols, cap * sizeof(*a));
		if (!a)
			return -ENOMEM;
		s->vols = a;
		s->cap_vols = cap;
	}
	i = vol_search(s, v->name, &found);
	memmove(&s->vols[i + 1], &s->vols[i], (s->n_vols - i) * sizeof(*s->vols));
	s->vols[i] = v;
	s->n_vols++;
	s->ops->add_volume(s, v);
	return 0;
}

static void vol_free(struct store *s, struct store_volume *v)
{
	s->ops->del_volume(s, v);
	close(v->fd);
	free(v);
}

/* Switch the volume's descriptor to O_DIRECT (docs/STORE.md, "Direct
 * I/O"): its reads and writes then bypass this host's page cache, so
 * nothing it wrote can reach the shelf later through writeback, and nothing
 * it reads comes from a cache filled while the partner owned the volume.
 * F_SETFL rather than a second open: a FUSE daemon then keeps its own open
 * as it was. A file system that refuses O_DIRECT (tmpfs) keeps buffered
 * I/O, with one warning; so does a volume whose size is not a multiple of
 * the alignment (its last block could not be written directly). */
bool store_test_refuse_direct;

static void vol_direct(struct store *s, struct store_volume *v)
{
	struct statx sx;
	int fl;

	v->direct = false;
	v->align = STORE_DIO_ALIGN;
	if (!s->opts.direct_io)
		return;
	if (statx(v->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) == 0 &&
	    (sx.stx_mask & STATX_DIOALIGN) && sx.stx_dio_offset_align &&
	    !(sx.stx_dio_offset_align & (sx.stx_dio_offset_align - 1)) &&
	    !(sx.stx_dio_mem_align & (sx.stx_dio_mem_align - 1)))
		v->align = MAX(MAX(sx.stx_dio_offset_align, sx.stx_dio_mem_align), 512u);
	if (v->size % v->align) {
		LOG_WARN("volume %s: size %" PRIu64 " is not a multiple of %u: buffered I/O, "
			 "safe on one host only",
			 v->name, v->size, v->align);
		return;
	}
	fl = fcntl(v->fd, F_GETFL);
	if (store_test_refuse_direct) {
		fl = -1;
		errno = EINVAL;
	}
	if (fl < 0 || fcntl(v->fd, F_SETFL, fl | O_DIRECT) < 0) {
		LOG_WARN("volume %s: the file system refuses O_DIRECT (%s): buffered I/O, "
			 "safe on one host only",
			 v->name, strerror(errno));
		return;
	}
	v->direct = true;
}

/* Open the data file of a volume whose metadata was read; repair a file
 * shorter than the volume (its tail reads as zeros either way). */
static int vol_open_data(struct store *s, struct store_volume *v)
{
	char file[STORE_NAME_MAX + 8];
	struct stat st;

	snprintf(file, sizeof(file), "%s.img", v->name);
	v->fd = openat(s->voldirfd, file, O_RDWR | O_CLOEXEC);
	if (v->fd < 0) {
		int err = -errno;
		LOG_ERROR("volume %s: open %s: %s", v->name, file, strerror(errno));
		return err;
	}
	if (fstat(v->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		LOG_ERROR("volume %s: %s is not a regular file", v->name, file);
		close(v->fd);
		return -EINVAL;
	}
	if ((uint64_t)st.st_size < v->size) {
		LOG_WARN("volume %s: %s is %lld bytes, shorter than the volume; extending", v->name,
			 file, (long long)st.st_size);
		if (ftruncate(v->fd, (off_t)v->size) < 0) {
			int err = -errno;
			LOG_ERROR("volume %s: ftruncate: %s", v->name, strerror(errno));
			close(v->fd);
			return err;
		}
	} else if ((uint64_t)st.st_size > v->size) {
		LOG_WARN("volume %s: %s is %lld bytes, longer than the volume", v->name, file,
			 (long long)st.st_size);
	}
	vol_direct(s, v);
	return 0;
}

static bool has_suffix(const char *s, const char *suffix, size_t *stem)
{
	size_t n = strlen(s), m = strlen(suffix);

	if (n <= m || strcmp(s + n - m, suffix) != 0)
		return false;
	*stem = n - m;
	return true;
}

/* A delete committed (its metadata renamed to .NAME.meta.deleted) and
 * interrupted before its data file was gone: finish it. */
static void finish_delete(struct store *s, const char *marker, size_t stem)
{
	char img[STORE_NAME_MAX + 8];

	if (stem < 2 || stem - 1 >= STORE_NAME_MAX)
		return;
	snprintf(img, sizeof(img), "%.*s.img", (int)(stem - 1), marker + 1);
	if (unlinkat(s->voldirfd, img, 0) == 0)
		LOG_INFO("volumes/%s: its delete was interrupted: removed", img);
	snprintf(img, sizeof(img), "%.*s.owner", (int)(stem - 1), marker + 1);
	unlinkat(s->voldirfd, img, 0);
	if (unlinkat(s->voldirfd, marker, 0) == 0)
		fsync(s->voldirfd);
}

/* Load every volume of the shelf. A broken one is logged and skipped, so one
 * bad file cannot keep the others from being served. */
static int load_volumes(struct store *s, unsigned *skipped)
{
	int fd = dup(s->voldirfd);
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while ((e = readdir(d))) {
		char name[STORE_NAME_MAX];
		struct store_volume *v;
		size_t stem;

		if (e->d_name[0] == '.' && has_suffix(e->d_name, ".meta.deleted", &stem)) {
			finish_delete(s, e->d_name, stem);
			continue;
		}
		if (e->d_name[0] == '.') {
			/* An interrupted metadata write: the rename never happened. */
			if (has_suffix(e->d_name, ".tmp", &stem) &&
			    unlinkat(s->voldirfd, e->d_name, 0) == 0)
				LOG_INFO("removed stale %s", e->d_name);
			continue;
		}
		if (has_suffix(e->d_name, ".img", &stem)) {
			char meta[STORE_NAME_MAX + 8];
			struct stat st;
			if (stem < STORE_NAME_MAX) {
				snprintf(meta, sizeof(meta), "%.*s.meta", (int)stem, e->d_name);
				if (fstatat(s->voldirfd, meta, &st, 0) == 0)
					continue;
			}
			LOG_WARN("volumes/%s has no metadata; ignored", e->d_name);
			continue;
		}
		if (!has_suffix(e->d_name, ".meta", &stem))
			continue;
		if (stem >= STORE_NAME_MAX) {
			LOG_ERROR("volumes/%s: name too long", e->d_name);
			(*skipped)++;
			continue;
		}
		snprintf(name, sizeof(name), "%.*s", (int)stem, e->d_name);
		if (store_name_valid(name) < 0) {
			LOG_ERROR("volumes/%s: invalid volume name", e->d_name);
			(*skipped)++;
			continue;
		}
		v = calloc(1, sizeof(*v));
		if (!v) {
			rc = -ENOMEM;
			break;
		}
		v->s = s;
		v->slot = STORE_SLOT_NONE;
		store_io_init_volume(v);
		if (store_meta_read(s, name, v) < 0 || store_owner_load(v) < 0 ||
		    vol_open_data(s, v) < 0) {
			(*skipped)++; /* logged where found */
			free(v);
			continue;
		}
		rc = vol_insert(s, v);
		if (rc < 0) {
			close(v->fd);
			free(v);
			break;
		}
		LOG_INFO("volume %s: %" PRIu64 " bytes, owner %s", v->name, v->size, v->owner);
	}
	closedir(d);
	return rc;
}

/* Open (creating if needed) the directory @p path under @p at; a new one is
 * made durable in its parent. */
static int open_dir(int at, const char *path, int *out)
{
	if (mkdirat(at, path, 0755) == 0) {
		if (at != AT_FDCWD && fsync(at) < 0) {
			int err = -errno;
			LOG_ERROR("fsync of the parent of %s: %s", path, strerror(errno));
			return err;
		}
	} else if (errno != EEXIST) {
		int err = -errno;
		LOG_ERROR("mkdir %s: %s", path, strerror(errno));
		return err;
	}
	*out = openat(at, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*out < 0) {
		int err = -errno;
		LOG_ERROR("open %s: %s", path, strerror(errno));
		return err;
	}
	return 0;
}

int store_open(struct loop *loop, const char *dir, const struct store_opts *opts,
	       struct store **out)
{
	struct store *s = calloc(1, sizeof(*s));
	unsigned skipped = 0;
	int rc;

	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->dirfd = s->voldirfd = -1;
	if (opts)
		s->opts = *opts;
	else
		store_opts_init(&s->opts);
	if (!s->opts.depth)
		s->opts.depth = 256;
	if (!s->opts.workers)
		s->opts.workers = 4;
	s->max_io = s->opts.max_io_bytes ? s->opts.max_io_bytes : STORE_CHUNK_MAX;
	store_io_init(s);
	s->dir = strdup(dir);
	if (!s->dir) {
		rc = -ENOMEM;
		goto err;
	}
	rc = open_dir(AT_FDCWD, dir, &s->dirfd);
	if (rc < 0)
		goto err;
	rc = store_shelf_marker(s);
	if (rc < 0)
		goto err;
	rc = open_dir(s->dirfd, VOLUMES_DIR, &s->voldirfd);
	if (rc < 0)
		goto err;
	s->zeros = mmap(NULL, STORE_ZERO_BYTES, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->zeros == MAP_FAILED) {
		rc = -errno;
		s->zeros = NULL;
		LOG_ERROR("mmap: %s", strerror(errno));
		goto err;
	}
	s->ops = s->opts.engine == STORE_ENGINE_THREADS ? &store_threads_ops : &store_uring_ops;
	rc = s->ops->init(s);
	if (rc < 0 && s->ops == &store_uring_ops) {
		LOG_WARN("io_uring unavailable (%s): using the worker pool", strerror(-rc));
		s->opts.engine = STORE_ENGINE_THREADS;
		s->ops = &store_threads_ops;
		rc = s->ops->init(s);
	}
	if (rc < 0) {
		s->ops = NULL;
		goto err;
	}
	rc = load_volumes(s, &skipped);
	if (rc < 0)
		goto err;
	if (skipped)
		LOG_WARN("shelf %s: %u broken volume(s) skipped", dir, skipped);
	LOG_INFO("shelf %s: %u volume(s), engine %s, depth %u", dir, s->n_vols,
		 store_engine_name(s->opts.engine), s->opts.depth);
	*out = s;
	return 0;
err:
	store_close(s);
	return rc;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->inflight)
		LOG_ERROR("shelf %s closed with %u io(s) in flight", s->dir, s->inflight);
	for (unsigned i = 0; i < s->n_vols; i++)
		vol_free(s, s->vols[i]);
	while (s->removed) {
		struct store_volume *v = s->removed;
		s->removed = v->next_removed;
		vol_free(s, v);
	}
	free(s->vols);
	if (s->ops)
		s->ops->fini(s);
	if (s->zeros)
		munmap(s->zeros, STORE_ZERO_BYTES);
	if (s->voldirfd >= 0)
		close(s->voldirfd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->dir);
	free(s);
}

const char *store_dir(const struct store *s)
{
	return s->dir;
}

enum store_engine store_get_engine(const struct store *s)
{
	return s->opts.engine;
}

void store_get_stats(const struct store *s, struct store_stats *st)
{
	*st = s->st;
}

unsigned store_inflight(const struct store *s)
{
	return s->inflight;
}

int store_volume_create(struct store *s, const char *name, uint64_t size, const char *owner)
{
	return store_volume_create_allow(s, name, size, owner, NULL, 0);
}

const struct store_allow *store_volume_allow(const struct store_volume *v)
{
	return &v->allow;
}

bool store_volume_allows(const struct store_volume *v, const char *const *ids, unsigned n_ids)
{
	if (v->allow.n == 0)
		return true;
	for (unsigned i = 0; i < v->allow.n; i++)
		for (unsigned j = 0; j < n_ids; j++)
			if (strcmp(v->allow.id[i], ids[j]) == 0)
				return true;
	return false;
}

int store_volume_create_allow(struct store *s, const char *name, uint64_t size, const char *owner,
			      const char *const *ids, unsigned n_ids)
{
	char file[STORE_NAME_MAX + 8];
	struct stat st;
	struct store_volume *v;
	bool found;
	int rc;

	if (store_name_valid(name) < 0) {
		LOG_WARN("volume create: invalid name");
		return -EINVAL;
	}
	if (store_size_valid(size) < 0) {
		LOG_WARN("volume %s: invalid size %" PRIu64 " (must be a non-zero multiple of 512)",
			 name, size);
		return -EINVAL;
	}
	if (store_ident_valid(owner, STORE_OWNER_MAX) < 0) {
		LOG_WARN("volume %s: invalid owner", name);
		return -EINVAL;
	}
	if (n_ids > STORE_ALLOW_MAX) {
		LOG_WARN("volume %s: more than %d identities in the allow list", name,
			 STORE_ALLOW_MAX);
		return -EINVAL;
	}
	for (unsigned i = 0; i < n_ids; i++) {
		if (store_allow_id_valid(ids[i]) < 0) {
			LOG_WARN("volume %s: invalid identity in the allow list", name);
			return -EINVAL;
		}
	}
	vol_search(s, name, &found);
	if (found)
		return -EEXIST;
	snprintf(file, sizeof(file), "%s.meta", name);
	if (fstatat(s->voldirfd, file, &st, 0) == 0) {
		LOG_ERROR("volume %s: %s exists but was not loaded; not overwriting", name, file);
		return -EEXIST;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->s = s;
	v->slot = STORE_SLOT_NONE;
	store_io_init_volume(v);
	v->synced_gen = UINT64_MAX; /* never synced by us: the first FLUSH syncs */
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->owner, sizeof(v->owner), "%s", owner);
	for (unsigned i = 0; i < n_ids; i++)
		snprintf(v->allow.id[i], sizeof(v->allow.id[i]), "%s", ids[i]);
	v->allow.n = n_ids;
	v->size = size;
	v->created = (int64_t)time(NULL);
	rc = store_make_uuid(v->uuid);
	if (rc < 0)
		goto err_free;
	snprintf(file, sizeof(file), "%s.img", name);
	v->fd = openat(s->voldirfd, file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (v->fd < 0) {
		rc = -errno;
		if (errno == EEXIST)
			LOG_ERROR("volume %s: %s exists without metadata; not overwriting", name,
				  file);
		else
			LOG_ERROR("volume %s: create %s: %s", name, file, strerror(errno));
		goto err_free;
	}
	if (ftruncate(v->fd, (off_t)size) < 0 || fsync(v->fd) < 0) {
		rc = -errno;
		LOG_ERROR("volume %s: size %s: %s", name, file, strerror(errno));
		goto err_unlink;
	}
	vol_direct(s, v);
	/* The metadata rename is the commit point; its directory fsync also
	 * makes the data file's name durable. */
	rc = store_meta_write(s, v);
	if (rc < 0)
		goto err_unlink;
	rc = store_owner_load(v); /* the first owner record */
	if (rc < 0)
		goto err_unlink_meta;
	rc = vol_insert(s, v);
	if (rc < 0) {
		LOG_ERROR("volume %s: out of memory", name);
		goto err_unlink_meta;
	}
	LOG_INFO("volume %s created: %" PRIu64 " bytes, owner %s, uuid %s%s", name, size, owner,
		 v->uuid, n_ids ? ", with an allow list" : "");
	return 0;

err_unlink_meta:
	snprintf(file, sizeof(file), "%s.meta", name);
	unlinkat(s->voldirfd, file, 0);
	snprintf(file, sizeof(file), "%s.img", name);
err_unlink:
	unlinkat(s->voldirfd, file, 0);
	close(v->fd);
err_free:
	free(v);
	return rc;
}

int store_volume_delete(struct store *s, struct store_volume *v)
{
	char file[STORE_NAME_MAX + 8];
	bool found;
	unsigned i;
	int rc;

	i = vol_search(s, v->name, &found);
	if (!found || s->vols[i] != v)
		return -ENOENT;
	char marker[STORE_NAME_MAX + 24];

	snprintf(file, sizeof(file), "%s.meta", v->name);
	snprintf(marker, sizeof(marker), ".%s.meta.deleted", v->name);
	if (renameat(s->voldirfd, file, s->voldirfd, marker) < 0) {
		rc = -errno;
		LOG_ERROR("volume %s: rename %s: %s", v->name, file, strerror(errno));
		return rc;
	}
	if (fsync(s->voldirfd) < 0) {
		rc = -errno;
		LOG_ERROR("volume %s: fsync of the volumes directory: %s", v->name,
			  strerror(errno));
		return rc;
	}
	/* Committed: from here the volume is gone, whatever fails below. */
	memmove(&s->vols[i], &s->vols[i + 1], (s->n_vols - i - 1) * sizeof(*s->vols));
	s->n_vols--;
	v->removed = true;
	v->next_removed = s->removed;
	s->removed = v;
	snprintf(file, sizeof(file), "%s.img", v->name);
	if ((unlinkat(s->voldirfd, file, 0) < 0 && errno != ENOENT) || store_owner_remove(v) < 0 ||
	    unlinkat(s->voldirfd, marker, 0) < 0 || fsync(s->voldirfd) < 0)
		LOG_WARN("volume %s: removing %s: %s (finished at the next start)", v->name, file,
			 strerror(errno));
	LOG_INFO("volume %s deleted (uuid %s)", v->name, v->uuid);
	return 0;
}

void store_volume_release(struct store_volume *v)
{
	struct store *s = v->s;

	for (struct store_volume **pp = &s->removed; *pp; pp = &(*pp)->next_removed) {
		if (*pp == v) {
			*pp = v->next_removed;
			vol_free(s, v);
			return;
		}
	}
}

int store_volume_resize(struct store *s, struct store_volume *v, uint64_t size)
{
	uint64_t old = v->size;
	int rc;

	if (store_size_valid(size) < 0 || (v->direct && size % v->align)) {
		LOG_WARN("volume %s: invalid size %" PRIu64 " (a non-zero multiple of %u)", v->name,
			 size, v->direct ? v->align : 512u);
		return -EINVAL;
	}
	if (size == old)
		return 0;
	if (size > old && (ftruncate(v->fd, (off_t)size) < 0 || fsync(v->fd) < 0)) {
		rc = -errno;
		LOG_ERROR("volume %s: grow to %" PRIu64 ": %s", v->name, size, strerror(errno));
		if (ftruncate(v->fd, (off_t)old) < 0)
			LOG_WARN("volume %s: data file left longer than the volume", v->name);
		return rc;
	}
	v->size = size;
	rc = store_meta_write(s, v);
	if (rc < 0) {
		v->size = old;
		return rc;
	}
	if (size < old && (ftruncate(v->fd, (off_t)size) < 0 || fsync(v->fd) < 0))
		LOG_WARN("volume %s: shrinking the data file: %s (it stays longer than the "
			 "volume, harmless)",
			 v->name, strerror(errno));
	LOG_INFO("volume %s resized: %" PRIu64 " -> %" PRIu64 " bytes", v->name, old, size);
	return 0;
}

unsigned store_volume_count(const struct store *s)
{
	return s->n_vols;
}

struct store_volume *store_volume_at(struct store *s, unsigned i)
{
	return i < s->n_vols ? s->vols[i] : NULL;
}

struct store_volume *store_volume_find(struct store *s, const char *name)
{
	bool found;
	unsigned i;

	if (!name)
		return NULL;
	i = vol_search(s, name, &found);
	return found ? s->vols[i] : NULL;
}

void store_volume_get_info(const struct store_volume *v, struct store_volume_info *info)
{
	struct stat st;

	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", v->name);
	snprintf(info->uuid, sizeof(info->uuid), "%s", v->uuid);
	snprintf(info->owner, sizeof(info->owner), "%s", v->owner);
	info->size = v->size;
	if (fstat(v->fd, &st) == 0)
		info->allocated = (uint64_t)st.st_blocks * 512;
	info->direct_io = v->direct;
}

/* Relocation (issue 14): the owner record (owner.c) is the pair's word on
 * who serves the volume, read by a node that boots alone and by a takeover.
 * The metadata file follows for people and older tools; a failure there
 * after the record is written changes nothing but what they see. */
int store_volume_set_owner(struct store_volume *v, const char *owner)
{
	char old[STORE_OWNER_MAX];
	int rc;

	if (store_ident_valid(owner, STORE_OWNER_MAX) < 0)
		return -EINVAL;
	snprintf(old, sizeof(old), "%s", v->owner);
	snprintf(v->owner, sizeof(v->owner), "%s", owner);
	rc = store_owner_write(v);
	if (rc < 0) {
		snprintf(v->owner, sizeof(v->owner), "%s", old);
		return rc;
	}
	if (store_meta_write(v->s, v) < 0)
		LOG_WARN("volume %s: the owner in %s.meta still says %s (%s.owner says %s)",
			 v->name, v->name, old, v->name, owner);
	LOG_INFO("volume %s: owner %s (was %s)", v->name, owner, old);
	return 0;
}

/* The partner may have written the owner record (it relocated the volume):
 * read it past the page cache. */
int store_volume_reload_owner(struct store_volume *v)
{
	int rc = store_owner_load(v);

	if (rc == -ENOENT)
		LOG_ERROR("volume %s: %s.owner is gone", v->name, v->name);
	return rc;
}

const char *store_volume_name(const struct store_volume *v)
{
	return v->name;
}

uint64_t store_volume_size(const struct store_volume *v)
{
	return v->size;
}
