/* A volume's names on a shelf as the shelf has them, through this host's
 * cache of another host's changes (docs/RELOCATION.md, "Volume move", "On
 * two hosts").
 *
 * A host that reaches a shelf through a file system with its own cache
 * (NFS, FUSE; tests/lib.sh's own mounts) may keep a name it looked up, or
 * saw in a listing, for as long as its entry timeout says, after the other
 * host removed or replaced the file: a lookup then answers with the old
 * file, which may live on unlinked. A listing of a directory opened anew is
 * asked of the file server, and (FUSE's READDIRPLUS) re-links every name it
 * returns to the inode it has now. So: list, then trust a name only when
 * it resolves to the inode the listing gave; never look a volume's files up
 * by name alone where another host makes or removes them. */
#define LOG_MODULE "store"
#include "common/log.h"
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* List @p dirfd afresh; the inode of each of @p names[0..n) it holds into
 * @p ino (0: not listed). */
static int list_fresh(int dirfd, const char *const *names, unsigned n, ino_t *ino)
{
	struct dirent *e;
	DIR *d;
	int fd;

	for (unsigned i = 0; i < n; i++)
		ino[i] = 0;
	/* A new open: a cached listing is dropped at the file server's open. */
	fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	errno = 0;
	while ((e = readdir(d)))
		for (unsigned i = 0; i < n; i++)
			if (!strcmp(e->d_name, names[i]))
				ino[i] = e->d_ino ? e->d_ino : 1;
	if (errno) {
		int rc = -errno;
		closedir(d);
		return rc;
	}
	closedir(d);
	return 0;
}

/* Whether this host resolves @p name in @p dirfd to inode @p ino. */
static int resolves_to(int dirfd, const char *name, ino_t ino)
{
	struct stat st;

	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	return ino == 1 || st.st_ino == ino ? 0 : -ESTALE;
}

/* @p name is not on the shelf: a name this host still resolves to a file
 * whose last link went (another host removed it) is dropped, by an unlink
 * that the file server answers ENOENT. Only for names that no other host
 * makes meanwhile. */
static void forget(int dirfd, const char *name)
{
	struct statx sx;

	if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_STATX_FORCE_SYNC, STATX_NLINK, &sx) < 0)
		return;
	if (sx.stx_nlink == 0 && unlinkat(dirfd, name, 0) == 0)
		LOG_WARN("%s: made while its stale name was dropped: removed (made again "
			 "from the metadata)",
			 name);
}

int store_fresh_exists(int dirfd, const char *name)
{
	ino_t ino;
	int rc = list_fresh(dirfd, &name, 1, &ino);

	if (rc < 0)
		return rc;
	return ino ? 1 : 0;
}

int store_fresh_open(int dirfd, const char *name, int flags)
{
	struct stat st;
	ino_t ino;
	int fd, rc = list_fresh(dirfd, &name, 1, &ino);

	if (rc < 0)
		return rc;
	if (!ino)
		return -ENOENT;
	fd = openat(dirfd, name, flags | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		rc = -errno;
	else if (ino != 1 && st.st_ino != ino)
		rc = -ESTALE;
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}

int store_fresh_volume(int dirfd, const char *name, bool clean)
{
	char file[4][STORE_NAME_MAX + 16];
	const char *names[4] = {file[0], file[1], file[2], file[3]};
	ino_t ino[4];
	int rc;

	snprintf(file[0], sizeof(file[0]), "%s.meta", name);
	snprintf(file[1], sizeof(file[1]), "%s.img", name);
	snprintf(file[2], sizeof(file[2]), "%s.owner", name);
	snprintf(file[3], sizeof(file[3]), ".%s.meta.tmp", name);
	rc = list_fresh(dirfd, names, 4, ino);
	if (rc < 0)
		return rc;
	if (clean) {
		if (ino[0])
			return -EEXIST;
		/* A copy is to be made under these names: none stays bound
		 * to a file of an earlier volume of that name (the unlink of
		 * a name the shelf lacks drops it from the cache). */
		for (unsigned i = 1; i < 4; i++)
			if (!ino[i] && unlinkat(dirfd, names[i], 0) == 0)
				LOG_WARN("%s: made while the shelf was listed, removed", names[i]);
		return 0;
	}
	if (!ino[0] || !ino[1])
		return -ENOENT;
	if (!ino[2])
		forget(dirfd, names[2]);
	for (unsigned i = 0; i < 3; i++) {
		if (!ino[i])
			continue;
		rc = resolves_to(dirfd, names[i], ino[i]);
		if (rc < 0) {
			LOG_WARN("%s: this host's cache of the shelf names another file than the "
				 "shelf (%s): not loaded now",
				 names[i], strerror(-rc));
			return rc;
		}
	}
	return 0;
}
