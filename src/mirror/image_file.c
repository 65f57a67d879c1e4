/* Image files: mapping a log or partner image file, retiring an image
 * after a takeover replay, and the boot note of a partner image (seen in
 * sync in this boot: see docs/MIRROR.md, "Which image is current").
 *
 * Rule: the file system side only; what the bytes mean is image.c's. A
 * partner image is preallocated when created so that a page fault on the
 * mapping never meets a full disk. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/byteorder.h"
#include "common/crc32c.h"
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
	/* The partner's writes land here (RDMA into the mapping): fault it in
	 * now. Left to the first writes, each fault of a fresh file range
	 * read ahead and zeroed large folios inside one reactor turn, 20-30
	 * ms of it, the turn that was to acknowledge the partner's writes
	 * (docs/BENCHMARKS.md, "realtime = auto"). A kernel without
	 * MADV_POPULATE_WRITE (before 5.14) faults on first use as before. */
	if (size && madvise(out->base, out->size, MADV_POPULATE_WRITE) < 0 && errno != EINVAL)
		LOG_WARN("%s: prefault: %s", path, strerror(errno));
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

/* ---- the boot note: an image seen in sync in this boot ---- */

#define NOTE_MAGIC 0x53564e44u /* "DNVS" read as little endian bytes */
#define NOTE_SIZE  64u
/* 0 magic u32, 4 crc u32 (CRC32C of the 64 bytes with it 0), 8 boot_id[16],
 * 24 st_dev u64, 32 st_ino u64 of the image file, 40..63 zero. */

static int note_path(char *out, size_t len, const char *image_path, const char *suffix)
{
	if ((size_t)snprintf(out, len, "%s%s%s", image_path, MIRROR_IMAGE_NOTE_SUFFIX, suffix) >=
	    len)
		return -ENAMETOOLONG;
	return 0;
}

static void note_encode(uint8_t *b, const uint8_t boot_id[16], const struct stat *sb)
{
	memset(b, 0, NOTE_SIZE);
	put_le32(b, NOTE_MAGIC);
	memcpy(b + 8, boot_id, 16);
	put_le64(b + 24, (uint64_t)sb->st_dev);
	put_le64(b + 32, (uint64_t)sb->st_ino);
	put_le32(b + 4, crc32c(0, b, NOTE_SIZE));
}

int mirror_image_boot_note_as(const char *image_path, const struct mirror_image_map *map,
			      const uint8_t boot_id[16])
{
	char path[PATH_MAX], tmp[PATH_MAX];
	uint8_t b[NOTE_SIZE];
	struct stat sb;
	int fd, rc;

	if (note_path(path, sizeof(path), image_path, "") < 0 ||
	    note_path(tmp, sizeof(tmp), image_path, ".tmp") < 0)
		return -ENAMETOOLONG;
	if (fstat(map->fd, &sb) < 0)
		return -errno;
	note_encode(b, boot_id, &sb);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = write(fd, b, sizeof(b)) == (ssize_t)sizeof(b) ? 0 : errno ? -errno : -EIO;
	close(fd);
	/* No fsync: the note speaks for this boot only, and a later boot
	 * believes no note (its boot id differs). The rename makes it whole. */
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0)
		unlink(tmp);
	return rc;
}

int mirror_image_boot_note(const char *image_path, const struct mirror_image_map *map)
{
	static const uint8_t zero[16];
	uint8_t id[16];

	mirror_read_boot_id(id);
	if (memcmp(id, zero, sizeof(id)) == 0)
		return -ENOENT; /* no boot id: nothing a restart could match */
	return mirror_image_boot_note_as(image_path, map, id);
}

bool mirror_image_boot_noted(const char *image_path, const struct mirror_image_map *map)
{
	static const uint8_t zero[16];
	uint8_t b[NOTE_SIZE], want[NOTE_SIZE], id[16];
	char path[PATH_MAX];
	struct stat sb;
	ssize_t n;
	int fd;

	mirror_read_boot_id(id);
	if (memcmp(id, zero, sizeof(id)) == 0 || fstat(map->fd, &sb) < 0 ||
	    note_path(path, sizeof(path), image_path, "") < 0)
		return false;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, b, sizeof(b));
	close(fd);
	note_encode(want, id, &sb);
	/* The same bytes: this boot, this file, and whole (magic, CRC). */
	return n == (ssize_t)sizeof(b) && memcmp(b, want, sizeof(b)) == 0;
}
