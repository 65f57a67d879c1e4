/*
 * The owner record of a volume: SHELF/volumes/NAME.owner, one 4 KiB sector
 * written in place with O_DIRECT | O_DSYNC and read with O_DIRECT.
 *
 * Why not the owner field of NAME.meta: on two hosts each keeps its own page
 * cache of the shelf, and a file replaced by rename on one host can still be
 * read in its old version through the other host's cache (the two-host
 * stand-in of tests/lib.sh shows it). The owner decides which node serves a
 * volume after a relocation, a takeover or a boot alone, so it is kept the
 * way the monitor keeps its mailbox: one sector that bypasses the cache. The
 * file is created full-size under a temporary name and linked into place, so
 * that no host ever caches it with a shorter size. The metadata file keeps
 * the creator's owner; a volume without a record (made before records
 * existed) is owned by the metadata's owner, and gets a record at its next
 * load.
 */
#define LOG_MODULE "store"
#include "store/store_int.h"

#include "common/crc32c.h"
#include "common/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OWNER_MAGIC   "DUETOWN1"
#define OWNER_VERSION 1u
#define OWNER_SECTOR  4096u

/* On the shelf, little-endian (x86-64 and arm64 both are). */
struct owner_rec {
	char magic[8];
	uint32_t version;
	uint32_t crc; /* crc32c of the record with this field 0 */
	uint64_t gen; /* +1 at every rewrite */
	char uuid[40];
	char owner[STORE_OWNER_MAX];
	uint8_t reserved[48];
};
_Static_assert(sizeof(struct owner_rec) == 128, "owner record layout");

static uint32_t rec_crc(const struct owner_rec *r)
{
	struct owner_rec c = *r;

	c.crc = 0;
	return crc32c(0, &c, sizeof(c));
}

int store_owner_parse(const void *buf, size_t len, const char *uuid, char owner[STORE_OWNER_MAX],
		      uint64_t *gen)
{
	struct owner_rec r;

	if (len < sizeof(r))
		return -EBADMSG;
	memcpy(&r, buf, sizeof(r));
	if (memcmp(r.magic, OWNER_MAGIC, sizeof(r.magic)) != 0 || r.version != OWNER_VERSION ||
	    r.crc != rec_crc(&r))
		return -EBADMSG;
	if (memchr(r.uuid, 0, sizeof(r.uuid)) == NULL ||
	    memchr(r.owner, 0, sizeof(r.owner)) == NULL)
		return -EBADMSG;
	if (store_ident_valid(r.owner, STORE_OWNER_MAX) < 0)
		return -EBADMSG;
	if (uuid && strcmp(r.uuid, uuid) != 0)
		return -ESTALE;
	memcpy(owner, r.owner, STORE_OWNER_MAX);
	if (gen)
		*gen = r.gen;
	return 0;
}

/* O_DIRECT where the file system takes it (tmpfs did not before 6.6), else
 * through the cache with O_DSYNC: one host's tmpfs has no second cache. */
static int open_sector(int dirfd, const char *file, int flags)
{
	int fd = openat(dirfd, file, flags | O_DIRECT | O_CLOEXEC, 0644);

	if (fd < 0 && errno == EINVAL)
		fd = openat(dirfd, file, flags | O_CLOEXEC, 0644);
	return fd < 0 ? -errno : fd;
}

static void *sector_alloc(void)
{
	void *p = NULL;

	if (posix_memalign(&p, OWNER_SECTOR, OWNER_SECTOR) != 0)
		return NULL;
	memset(p, 0, OWNER_SECTOR);
	return p;
}

static void fill(void *sec, const struct store_volume *v, uint64_t gen)
{
	struct owner_rec r;

	memset(&r, 0, sizeof(r));
	memcpy(r.magic, OWNER_MAGIC, sizeof(r.magic));
	r.version = OWNER_VERSION;
	r.gen = gen;
	snprintf(r.uuid, sizeof(r.uuid), "%s", v->uuid);
	snprintf(r.owner, sizeof(r.owner), "%s", v->owner);
	r.crc = rec_crc(&r);
	memcpy(sec, &r, sizeof(r));
}

static int write_sector(int fd, const void *sec, const char *file)
{
	ssize_t n = pwrite(fd, sec, OWNER_SECTOR, 0);

	if (n != (ssize_t)OWNER_SECTOR) {
		int rc = n < 0 ? -errno : -EIO;
		LOG_ERROR("write %s: %s", file, strerror(-rc));
		return rc;
	}
	return 0;
}

/* First record of a volume: a full sector under a temporary name, linked to
 * NAME.owner. -EEXIST when another node linked one first (it wins). */
static int owner_create(struct store_volume *v, const void *sec)
{
	struct store *s = v->s;
	char file[STORE_NAME_MAX + 8], tmp[STORE_NAME_MAX + 48];
	int fd, rc;

	snprintf(file, sizeof(file), "%s.owner", v->name);
	snprintf(tmp, sizeof(tmp), ".%s.owner.%ld.tmp", v->name, (long)getpid());
	fd = open_sector(s->voldirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_DSYNC);
	if (fd < 0) {
		LOG_ERROR("volume %s: create %s: %s", v->name, tmp, strerror(-fd));
		return fd;
	}
	rc = write_sector(fd, sec, tmp);
	if (rc == 0 && fsync(fd) < 0) {
		rc = -errno;
		LOG_ERROR("fsync %s: %s", tmp, strerror(errno));
	}
	close(fd);
	if (rc == 0 && linkat(s->voldirfd, tmp, s->voldirfd, file, 0) < 0) {
		rc = -errno;
		if (rc != -EEXIST)
			LOG_ERROR("volume %s: link %s: %s", v->name, file, strerror(errno));
	}
	unlinkat(s->voldirfd, tmp, 0);
	if (rc == 0 && fsync(s->voldirfd) < 0) {
		rc = -errno;
		LOG_ERROR("volume %s: fsync of the volumes directory: %s", v->name,
			  strerror(errno));
	}
	return rc;
}

/* Read NAME.owner: 0 with @p owner and @p gen, -ENOENT when there is none,
 * -EBADMSG when it is not a record, -ESTALE when it names another uuid (a
 * volume of the same name deleted and made again before the record went). */
static int owner_read(struct store_volume *v, char owner[STORE_OWNER_MAX], uint64_t *gen)
{
	char file[STORE_NAME_MAX + 8];
	void *sec = sector_alloc();
	ssize_t n;
	int fd, rc;

	if (!sec)
		return -ENOMEM;
	snprintf(file, sizeof(file), "%s.owner", v->name);
	fd = open_sector(v->s->voldirfd, file, O_RDONLY);
	if (fd < 0) {
		rc = fd;
		goto out;
	}
	n = pread(fd, sec, OWNER_SECTOR, 0);
	rc = n < 0 ? -errno : store_owner_parse(sec, (size_t)n, v->uuid, owner, gen);
	close(fd);
out:
	free(sec);
	return rc;
}

int store_owner_load(struct store_volume *v)
{
	char owner[STORE_OWNER_MAX];
	uint64_t gen = 0;
	void *sec;
	int rc = owner_read(v, owner, &gen);

	if (rc == 0) {
		snprintf(v->owner, sizeof(v->owner), "%s", owner);
		v->owner_gen = gen;
		return 0;
	}
	if (rc == -EBADMSG) {
		LOG_ERROR("volume %s: %s.owner is not an owner record", v->name, v->name);
		return rc;
	}
	if (rc != -ENOENT && rc != -ESTALE) {
		LOG_ERROR("volume %s: read %s.owner: %s", v->name, v->name, strerror(-rc));
		return rc;
	}
	if (rc == -ESTALE) {
		char file[STORE_NAME_MAX + 8];

		LOG_WARN("volume %s: %s.owner belongs to an earlier volume of that name: replaced",
			 v->name, v->name);
		snprintf(file, sizeof(file), "%s.owner", v->name);
		unlinkat(v->s->voldirfd, file, 0);
	}
	/* No record yet: the metadata's owner, recorded now. */
	sec = sector_alloc();
	if (!sec)
		return -ENOMEM;
	fill(sec, v, 1);
	rc = owner_create(v, sec);
	free(sec);
	if (rc == -EEXIST) { /* the partner linked its record first: read it */
		rc = owner_read(v, owner, &gen);
		if (rc < 0) {
			LOG_ERROR("volume %s: read %s.owner: %s", v->name, v->name, strerror(-rc));
			return rc;
		}
		snprintf(v->owner, sizeof(v->owner), "%s", owner);
		v->owner_gen = gen;
		return 0;
	}
	if (rc == 0)
		v->owner_gen = 1;
	return rc;
}

int store_owner_write(struct store_volume *v)
{
	char file[STORE_NAME_MAX + 8];
	void *sec = sector_alloc();
	int fd, rc;

	if (!sec)
		return -ENOMEM;
	fill(sec, v, v->owner_gen + 1);
	snprintf(file, sizeof(file), "%s.owner", v->name);
	fd = open_sector(v->s->voldirfd, file, O_RDWR | O_DSYNC);
	if (fd == -ENOENT) {
		rc = owner_create(v, sec);
		if (rc == -EEXIST) /* linked meanwhile: write over it */
			fd = open_sector(v->s->voldirfd, file, O_RDWR | O_DSYNC);
		else
			goto out;
	}
	if (fd < 0) {
		rc = fd;
		LOG_ERROR("volume %s: open %s: %s", v->name, file, strerror(-fd));
		goto out;
	}
	rc = write_sector(fd, sec, file);
	close(fd);
out:
	if (rc == 0)
		v->owner_gen++;
	free(sec);
	return rc;
}

int store_owner_remove(struct store_volume *v)
{
	char file[STORE_NAME_MAX + 8];

	snprintf(file, sizeof(file), "%s.owner", v->name);
	if (unlinkat(v->s->voldirfd, file, 0) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int store_shelf_names_owner(const char *shelf, const char *owner)
{
	char dir[4096];
	struct dirent *d;
	void *sec;
	DIR *dp;
	int found = 0;

	snprintf(dir, sizeof(dir), "%s/volumes", shelf);
	dp = opendir(dir);
	if (!dp)
		return -errno;
	sec = sector_alloc();
	if (!sec) {
		closedir(dp);
		return -ENOMEM;
	}
	while (!found && (d = readdir(dp))) {
		size_t len = strlen(d->d_name);
		char rec[STORE_OWNER_MAX];
		ssize_t n;
		int fd;

		if (d->d_name[0] == '.' || len < 7 || strcmp(d->d_name + len - 6, ".owner") != 0)
			continue;
		fd = open_sector(dirfd(dp), d->d_name, O_RDONLY);
		if (fd < 0)
			continue;
		n = pread(fd, sec, OWNER_SECTOR, 0);
		close(fd);
		if (n > 0 && store_owner_parse(sec, (size_t)n, NULL, rec, NULL) == 0 &&
		    strcmp(rec, owner) == 0)
			found = 1;
	}
	free(sec);
	closedir(dp);
	return found;
}
