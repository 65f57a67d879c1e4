/* Image files: mapping a log or partner image file, and retiring an image
 * after a takeover replay.
 *
 * Rule: the file system side only; what the bytes mean is image.c's. A
 * partner image is preallocated when created so that a page fault on the
 * mapping never meets a full disk. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"

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
	struct mirror_log_header h;
	unsigned slot;
	int rc = mirror_log_header_read(map->base, map->size, &h, &slot);

	if (rc < 0)
		return rc;
	rc = mirror_replay(map->base, map->size, 0, NULL, NULL, &st);
	if (rc < 0)
		return rc;
	if (st.max_seq <= h.cp_seq)
		return 0;
	h.cp_seq = st.max_seq;
	h.gen++;
	mirror_log_header_write(map->base, &h, slot);
	if (fdatasync(map->fd) < 0) {
		rc = -errno;
		LOG_ERROR("NVRAM image: fdatasync: %s", strerror(errno));
		return rc;
	}
	return 0;
}
