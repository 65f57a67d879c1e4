/* Volume move between shelves, the store's part (docs/RELOCATION.md,
 * "Volume move"): the move record in the source's metadata, the copy's
 * data file on the target shelf, its commit, and the decision after a
 * crash.
 *
 * The rule kept: at every instant the shelves say which copy is live.
 *   - copying: the source's metadata carries {"move": {"to": NODE}}; the
 *     copy is .NAME.move.img on NODE's shelf (a dot file: no node loads
 *     it as a volume). The source is live.
 *   - commit: the copy is renamed NAME.img, fdatasync'ed, and NAME.meta is
 *     written on the target shelf (write-then-rename): from that rename on
 *     the copy is live, and a source whose record names a shelf that holds
 *     NAME.meta of the same uuid is dead (removed by whoever sees it).
 *   - without that NAME.meta, the copy's files are removed and the record
 *     cleared: the source always had every write. */
#define LOG_MODULE "store"
#include "common/log.h"
#include "common/util.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_MAX (STORE_NAME_MAX + 16)

const char *store_volume_move_to(const struct store_volume *v)
{
	return v->move_to;
}

int store_volume_set_move(struct store_volume *v, const char *to)
{
	char old[STORE_OWNER_MAX];
	int rc;

	if (to && store_ident_valid(to, STORE_OWNER_MAX) < 0)
		return -EINVAL;
	snprintf(old, sizeof(old), "%s", v->move_to);
	snprintf(v->move_to, sizeof(v->move_to), "%s", to ? to : "");
	rc = store_meta_write(v->s, v);
	if (rc < 0)
		snprintf(v->move_to, sizeof(v->move_to), "%s", old);
	return rc;
}

static void copy_name(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, ".%s.move.img", name);
}

/* A volume of this index whose metadata is gone from the shelf (another
 * node moved or deleted it since): off the index, kept on the removed list
 * (a datapath may still point at it) until store_close. */
static void unindex_stale(struct store *s, const char *name)
{
	for (unsigned i = 0; i < s->n_vols; i++) {
		struct store_volume *v = s->vols[i];
		if (strcmp(v->name, name))
			continue;
		memmove(&s->vols[i], &s->vols[i + 1], (s->n_vols - i - 1) * sizeof(*s->vols));
		s->n_vols--;
		v->removed = true;
		v->next_removed = s->removed;
		s->removed = v;
		LOG_INFO("volume %s: gone from shelf %s (moved or deleted by the partner)", name,
			 s->dir);
		return;
	}
}

int store_move_target_create(struct store *s, const struct store_volume *src,
			     struct store_volume **out)
{
	char file[FILE_MAX], meta[FILE_MAX];
	struct store_volume *v;
	struct stat st;
	int rc;

	snprintf(meta, sizeof(meta), "%s.meta", src->name);
	if (fstatat(s->voldirfd, meta, &st, 0) < 0)
		unindex_stale(s, src->name);
	if (store_volume_find(s, src->name) || fstatat(s->voldirfd, meta, &st, 0) == 0) {
		LOG_ERROR("move of %s: the target shelf has a volume of that name", src->name);
		return -EEXIST;
	}
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	*v = *src;
	v->s = s;
	v->slot = STORE_SLOT_NONE;
	v->removed = false;
	v->next_removed = NULL;
	v->move_to[0] = '\0';
	v->owner_gen = 0;
	v->writes = 0;
	v->excl_running = false;
	v->wgen = v->sync_gen = 0;
	v->sync_io = NULL;
	store_io_init_volume(v);
	v->synced_gen = UINT64_MAX;
	copy_name(file, sizeof(file), src->name);
	unlinkat(s->voldirfd, file, 0); /* a copy of an earlier attempt */
	v->fd = openat(s->voldirfd, file, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (v->fd < 0) {
		rc = -errno;
		LOG_ERROR("move of %s: create %s: %s", src->name, file, strerror(errno));
		free(v);
		return rc;
	}
	if (ftruncate(v->fd, (off_t)v->size) < 0 || fsync(v->fd) < 0 || fsync(s->voldirfd) < 0) {
		rc = -errno;
		LOG_ERROR("move of %s: size %s: %s", src->name, file, strerror(errno));
		close(v->fd);
		unlinkat(s->voldirfd, file, 0);
		free(v);
		return rc;
	}
	store_vol_direct(s, v);
	s->ops->add_volume(s, v);
	*out = v;
	return 0;
}

void store_move_target_drop(struct store *s, struct store_volume *t)
{
	char file[FILE_MAX];

	copy_name(file, sizeof(file), t->name);
	s->ops->del_volume(s, t);
	close(t->fd);
	if (unlinkat(s->voldirfd, file, 0) == 0)
		fsync(s->voldirfd);
	free(t);
}

/* rename @p from to @p to unless @p to exists. A file system without
 * RENAME_NOREPLACE (FUSE): a check first, enough here since only the mover
 * makes NAME.img of a volume its target shelf does not have. */
static int rename_noreplace(int dirfd, const char *from, const char *to)
{
	struct stat st;

	if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (fstatat(dirfd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		errno = EEXIST;
		return -1;
	}
	return renameat(dirfd, from, dirfd, to);
}

int store_move_target_commit(struct store *s, struct store_volume *t, const char *owner)
{
	char file[FILE_MAX], img[FILE_MAX];
	int rc;

	copy_name(file, sizeof(file), t->name);
	snprintf(img, sizeof(img), "%s.img", t->name);
	if (store_ident_valid(owner, STORE_OWNER_MAX) < 0)
		return -EINVAL;
	if (fdatasync(t->fd) < 0) {
		rc = -errno;
		LOG_ERROR("move of %s: fdatasync of the copy: %s", t->name, strerror(errno));
		return rc;
	}
	if (rename_noreplace(s->voldirfd, file, img) < 0 || fsync(s->voldirfd) < 0) {
		rc = -errno;
		LOG_ERROR("move of %s: rename %s to %s: %s", t->name, file, img, strerror(errno));
		return rc;
	}
	snprintf(t->owner, sizeof(t->owner), "%s", owner);
	/* The commit point: from this rename on the copy is the volume. */
	rc = store_meta_write(s, t);
	if (rc < 0) {
		if (renameat(s->voldirfd, img, s->voldirfd, file) == 0)
			fsync(s->voldirfd);
		return rc;
	}
	/* Its owner record (made from the metadata at any later load, were
	 * this one not to happen). */
	if (store_owner_load(t) < 0)
		LOG_WARN("volume %s: no owner record yet (made at its next load)", t->name);
	rc = store_vol_insert(s, t);
	if (rc < 0) {
		/* Committed on the shelf; only this process's index lacks it. */
		s->ops->del_volume(s, t);
		close(t->fd);
		free(t);
		return 0;
	}
	LOG_INFO("volume %s: the copy on this shelf is the volume now (owner %s)", t->name, owner);
	return 0;
}

/* The uuid in DIR/volumes/NAME.meta, if that file exists and parses. */
static int target_uuid(int voldirfd, const char *name, char uuid[STORE_UUID_LEN])
{
	char meta[FILE_MAX];
	json_object *o, *ju;
	int fd, rc = -ENOENT;

	snprintf(meta, sizeof(meta), "%s.meta", name);
	fd = openat(voldirfd, meta, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	o = json_object_from_fd(fd);
	close(fd);
	if (!o)
		return -EINVAL;
	if (json_object_object_get_ex(o, "uuid", &ju) &&
	    json_object_is_type(ju, json_type_string)) {
		snprintf(uuid, STORE_UUID_LEN, "%s", json_object_get_string(ju));
		rc = 0;
	}
	json_object_put(o);
	return rc;
}

int store_move_settle(const struct store_volume *v, int target_voldirfd)
{
	char uuid[STORE_UUID_LEN], file[FILE_MAX], img[FILE_MAX];
	int rc;

	rc = target_uuid(target_voldirfd, v->name, uuid);
	if (rc == 0 && strcmp(uuid, v->uuid) == 0)
		return 1; /* committed: the copy is the volume */
	if (rc != -ENOENT && rc != 0) {
		LOG_ERROR("move of %s: the target's metadata cannot be read: %s", v->name,
			  strerror(-rc));
		return rc;
	}
	/* Not committed: the copy's files go (NAME.img only when renamed for
	 * the commit and no NAME.meta followed: never another volume's). */
	copy_name(file, sizeof(file), v->name);
	snprintf(img, sizeof(img), "%s.img", v->name);
	unlinkat(target_voldirfd, file, 0);
	if (rc == -ENOENT)
		unlinkat(target_voldirfd, img, 0);
	fsync(target_voldirfd);
	return 0;
}

int store_volume_load(struct store *s, const char *name, struct store_volume **out)
{
	struct store_volume *v;
	int rc;

	if (store_volume_find(s, name))
		return -EEXIST;
	rc = store_vol_load(s, name, &v);
	if (rc < 0)
		return rc;
	rc = store_vol_insert(s, v);
	if (rc < 0) {
		close(v->fd);
		free(v);
		return rc;
	}
	LOG_INFO("volume %s: %" PRIu64 " bytes, owner %s (appeared on the shelf)", v->name, v->size,
		 v->owner);
	*out = v;
	return 0;
}

/* Whether shelf @p s lets steps reach its disk now (any thread). */
static bool gate_open(const struct store *s)
{
	return !s->gate_allowed || s->gate_allowed(s->gate_arg);
}

/* Copy the data extent [@p pos, @p end) (aligned for direct I/O). */
static int copy_extent(struct store_volume *src, struct store_volume *dst, uint64_t pos,
		       uint64_t end, void *buf, size_t buflen)
{
	while (pos < end) {
		size_t n = end - pos < buflen ? (size_t)(end - pos) : buflen;
		ssize_t r;
		if (!gate_open(src->s) || !gate_open(dst->s))
			return -EAGAIN;
		r = pread(src->fd, buf, n, (off_t)pos);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO; /* the source is shorter than its size */
		for (ssize_t w = 0; w < r;) {
			ssize_t x =
			    pwrite(dst->fd, (char *)buf + w, (size_t)(r - w), (off_t)pos + w);
			if (x < 0 && errno == EINTR)
				continue;
			if (x < 0)
				return -errno;
			w += x;
		}
		pos += (uint64_t)r;
	}
	return 0;
}

int store_move_copy(struct store_volume *src, struct store_volume *dst, uint64_t offset,
		    uint64_t length, void *buf, size_t buflen, uint64_t *data)
{
	uint64_t align = MAX(src->direct ? src->align : 1u, dst->direct ? dst->align : 1u);
	uint64_t pos = offset, end = offset + length;
	int rc;

	*data = 0;
	if (end > src->size || end > dst->size || end < offset)
		return -EINVAL;
	buflen -= buflen % align;
	if (!buflen)
		return -EINVAL;
	while (pos < end) {
		off_t d = lseek(src->fd, (off_t)pos, SEEK_DATA), h;
		uint64_t from, to;
		if (d < 0 && errno == ENXIO)
			break; /* a hole to the end of the file */
		if (d < 0)
			return -errno;
		if ((uint64_t)d >= end)
			break;
		h = lseek(src->fd, d, SEEK_HOLE);
		if (h < 0)
			return -errno;
		/* Rounded out to the alignment, inside the range (whose ends
		 * are aligned: chunk boundaries, and a direct volume's size). */
		from = (uint64_t)d - (uint64_t)d % align;
		to = (uint64_t)h < end ? (uint64_t)h : end;
		if (to % align)
			to = MIN(to + align - to % align, end);
		if (from < pos)
			from = pos;
		rc = copy_extent(src, dst, from, to, buf, buflen);
		if (rc < 0)
			return rc;
		*data += to - from;
		pos = to;
	}
	return 0;
}
