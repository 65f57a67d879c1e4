/* One instance per set of files (docs/SECURITY.md, "One instance per set
 * of files").
 *
 * Rule kept: before anything of the shelf, the log or the partner image is
 * read or written, this process holds an exclusive flock on each of them
 * (the shelf's directory, the log file, the partner image if it exists);
 * a second duetd on any of them exits 2 with one line naming the holder's
 * pid, found in /proc/locks (nothing is written to hold it: no pid file to
 * go stale), having opened nothing else.
 *
 * Those instance locks are the node's for its whole life, taken over or
 * not. Serving a shelf's volumes is a second lock, on the shelf's volumes
 * directory: the owner holds it while it may serve them (released when
 * fenced, taken again at the giveback); the survivor takes the partner's
 * at takeover and releases it at giveback. A survivor whose partner hangs
 * with it held takes over anyway (the takeover mark and the lease fence
 * the partner, not this lock) and says so. */
#define LOG_MODULE "node"
#include "node/node_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* The store's directory of volume files, inside a shelf (src/store). */
#define SERVE_LOCK_DIR "volumes"

/* The pid holding a flock on the file open as @p fd, from /proc/locks, or
 * 0 if none is seen (another pid namespace, or released meanwhile). */
static long lock_holder(int fd)
{
	char line[256], type[16], adv[16], mode[16];
	unsigned maj, min;
	unsigned long long ino;
	struct stat st;
	long pid, found = 0;
	FILE *f;

	if (fstat(fd, &st) < 0)
		return 0;
	f = fopen("/proc/locks", "re");
	if (!f)
		return 0;
	while (!found && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*d: %15s %15s %15s %ld %x:%x:%llu", type, adv, mode, &pid, &maj,
			   &min, &ino) != 7)
			continue; /* "-> FLOCK ..." lines are waiters */
		if (strcmp(type, "FLOCK") == 0 && maj == major(st.st_dev) &&
		    min == minor(st.st_dev) && ino == (unsigned long long)st.st_ino)
			found = pid;
	}
	fclose(f);
	return found;
}

/* Open @p path (@p flags) and flock it exclusively without waiting.
 * @return the descriptor, -ENOENT when it does not exist and @p flags has
 * no O_CREAT, -EWOULDBLOCK with *@p holder when another holds it. */
static int lock_path(const char *path, int flags, long *holder)
{
	int fd = open(path, flags | O_CLOEXEC, 0600), err;

	*holder = 0;
	if (fd < 0) {
		err = -errno;
		if (err != -ENOENT || (flags & O_CREAT))
			LOG_ERROR("%s: open: %s", path, strerror(errno));
		return err;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		err = -errno;
		if (err == -EWOULDBLOCK)
			*holder = lock_holder(fd);
		else
			LOG_ERROR("%s: flock: %s", path, strerror(errno));
		close(fd);
		return err;
	}
	return fd;
}

/* One instance lock; a file held by another process refuses the start. */
static int lock_one(const char *path, const char *what, int flags, bool optional, int *out)
{
	long holder;
	int fd = lock_path(path, flags, &holder);

	if (fd == -ENOENT && optional)
		return 0;
	if (fd == -EWOULDBLOCK) {
		if (holder > 0)
			LOG_ERROR("%s %s is locked by pid %ld: another duetd runs on these files",
				  what, path, holder);
		else
			LOG_ERROR("%s %s is locked by another process: another duetd runs on these "
				  "files",
				  what, path);
		return -NODE_EREFUSED;
	}
	if (fd < 0)
		return fd;
	*out = fd;
	return 0;
}

int node_lock_files(struct node *n)
{
	int rc = node_mirror_paths(n);

	if (rc < 0)
		return rc;
	/* The shelf is the directory itself (made now if new, as the
	 * monitor's mailbox would make it). */
	if (mkdir(n->cfg.node.shelf, 0755) < 0 && errno != EEXIST) {
		rc = -errno;
		LOG_ERROR("shelf %s: %s", n->cfg.node.shelf, strerror(errno));
		return rc;
	}
	rc = lock_one(n->cfg.node.shelf, "shelf", O_RDONLY | O_DIRECTORY, false, &n->lock_fd[0]);
	if (rc == 0 && n->log_path[0])
		rc = lock_one(n->log_path, "NVRAM log", O_RDWR | O_CREAT, false, &n->lock_fd[1]);
	if (rc == 0 && n->partner_image_path[0])
		rc = lock_one(n->partner_image_path, "partner image", O_RDWR, true, &n->lock_fd[2]);
	return rc;
}

int node_lock_image(struct node *n)
{
	if (n->lock_fd[2] >= 0 || !n->partner_image_path[0])
		return 0;
	return lock_one(n->partner_image_path, "partner image", O_RDWR, true, &n->lock_fd[2]);
}

/* The serving lock of @p shelf into *@p fd, if free; else say who has it. */
static void serve_lock(const char *shelf, const char *whose, int *fd)
{
	char path[PATH_MAX];
	long holder;
	int rc;

	if (*fd >= 0)
		return;
	if (snprintf(path, sizeof(path), "%s/%s", shelf, SERVE_LOCK_DIR) >= (int)sizeof(path))
		return;
	rc = lock_path(path, O_RDONLY | O_DIRECTORY, &holder);
	if (rc >= 0) {
		*fd = rc;
		return;
	}
	if (rc == -EWOULDBLOCK)
		LOG_WARN("%s shelf %s is still locked for serving by pid %ld: going on (the "
			 "takeover mark fences it, not this lock)",
			 whose, shelf, holder);
}

static void serve_unlock(int *fd)
{
	if (*fd < 0)
		return;
	close(*fd); /* the only descriptor of that open file: the flock goes */
	*fd = -1;
}

void node_lock_serve_own(struct node *n, bool serve)
{
	if (serve)
		serve_lock(n->cfg.node.shelf, "the own", &n->serve_lock_fd);
	else
		serve_unlock(&n->serve_lock_fd);
}

void node_lock_serve_partner(struct node *n, bool serve)
{
	if (serve)
		serve_lock(n->cfg.monitor.partner_shelf, "the partner's", &n->pserve_lock_fd);
	else
		serve_unlock(&n->pserve_lock_fd);
}

void node_unlock_files(struct node *n)
{
	serve_unlock(&n->serve_lock_fd);
	serve_unlock(&n->pserve_lock_fd);
	for (unsigned i = 0; i < ARRAY_SIZE(n->lock_fd); i++)
		serve_unlock(&n->lock_fd[i]);
}
