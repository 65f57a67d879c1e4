/* The log file: create or load it, map it, write its header, reset it,
 * and recover it at boot (replay of its live records, or discard).
 *
 * Rule: the only file of the engine that maps, resizes or fdatasyncs the
 * log file itself (the syncer thread fdatasyncs it for the engine at run
 * time), and the only one that writes its header. It decides whether the
 * records it finds may be replayed at all (load(): a log written
 * with durability = memory is trusted only within the boot that wrote it).
 * It calls image.c and state.c, and the transport's attach hook when a
 * reset resizes the log. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* Write m->hdr (new generation) into the other slot, and to the partner
 * soon. Never while a header transfer is in flight: the transport may still
 * be reading a slot, and a torn header in the image would make the image
 * fall back to an older one. The write is then done when it lands. */
void mirror_header_update(struct mirror *m)
{
	if (m->hdr_inflight) {
		m->hdr_pending = true;
		return;
	}
	m->hdr_pending = false;
	m->hdr.gen++;
	if (m->hdr_valid)
		m->hdr.flags |= MIRROR_LOG_F_IMAGE_VALID;
	else
		m->hdr.flags &= ~MIRROR_LOG_F_IMAGE_VALID;
	if (m->o.durability == MIRROR_DURABILITY_LOCAL_SYNC)
		m->hdr.flags |= MIRROR_LOG_F_LOCAL_SYNC;
	else
		m->hdr.flags &= ~MIRROR_LOG_F_LOCAL_SYNC;
	memcpy(m->hdr.boot_id, m->boot_id, sizeof(m->hdr.boot_id));
	m->hdr_slot = mirror_log_header_write(m->base, &m->hdr, m->hdr_slot);
	m->written_cp = m->hdr.cp_seq;
	m->written_valid = m->hdr_valid;
	/* durability = memory never trusts the file after a reboot, so the
	 * header need not reach the disk (see load). */
	if (m->o.durability == MIRROR_DURABILITY_MEMORY && m->written_cp > m->cp_durable)
		m->cp_durable = m->written_cp;
	if (m->tup && (mirror_image_follows(m) || m->rs == RS_MARK))
		m->hdr_dirty = true;
	mirror_post(m);
}

static void init_header(struct mirror *m, uint64_t size)
{
	memset(&m->hdr, 0, sizeof(m->hdr));
	m->hdr.magic = MIRROR_LOG_MAGIC;
	m->hdr.major = MIRROR_LOG_VERSION_MAJOR;
	m->hdr.minor = MIRROR_LOG_VERSION_MINOR;
	m->hdr.hdr_size = MIRROR_LOG_HDR_SIZE;
	m->hdr.log_size = size;
	m->hdr.half_size = mirror_log_half_size_for(size);
	m->hdr.rec_align = MIRROR_REC_ALIGN;
	memcpy(m->hdr.node, m->node_id, strnlen(m->node_id, sizeof(m->hdr.node)));
	m->hdr_slot = 1; /* the first write goes to slot 0 */
}

static void geometry(struct mirror *m)
{
	uint64_t hs = m->hdr.half_size;
	uint64_t chunk = m->o.max_record ? m->o.max_record : (1u << 20);

	for (unsigned i = 0; i < 2; i++) {
		memset(&m->h[i], 0, sizeof(m->h[i]));
		m->h[i].base = mirror_log_half_off(&m->hdr, i);
	}
	if (chunk > hs / 4)
		chunk = hs / 4;
	chunk &= ~(uint64_t)4095;
	if (chunk < 4096)
		chunk = 4096;
	m->chunk_max = (uint32_t)chunk;
	m->max_xfer = m->o.max_xfer ? m->o.max_xfer : (4u << 20);
	if (m->max_xfer < mirror_rec_len(m->chunk_max))
		m->max_xfer = (uint32_t)mirror_rec_len(m->chunk_max);
	m->active = -1;
}

/* ---- opening ---- */

/* (Re)create the file at @p size, preallocated so a page fault on the
 * mapping never meets a full disk, and map it. */
static int map_fresh(struct mirror *m, uint64_t size)
{
	int rc;

	if (m->base) {
		munmap(m->base, m->size);
		m->base = NULL;
	}
	if (ftruncate(m->fd, 0) < 0 || ftruncate(m->fd, (off_t)size) < 0) {
		rc = -errno;
		LOG_ERROR("%s: truncate: %s", m->path, strerror(errno));
		return rc;
	}
	rc = posix_fallocate(m->fd, 0, (off_t)size);
	if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL) {
		LOG_ERROR("%s: fallocate %llu bytes: %s", m->path, (unsigned long long)size,
			  strerror(rc));
		return -rc;
	}
	m->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, m->fd, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		rc = -errno;
		LOG_ERROR("%s: mmap %llu bytes: %s", m->path, (unsigned long long)size,
			  strerror(errno));
		return rc;
	}
	m->size = size;
	init_header(m, size);
	geometry(m);
	return 0;
}

/* The kernel's boot id: pages of a file written with durability = memory
 * are only known to be whole within the boot that wrote them. */
void mirror_read_boot_id(uint8_t out[16])
{
	char buf[64] = "";
	struct mirror_vol_id id;
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	memset(out, 0, 16);
	if (!f)
		return;
	if (fgets(buf, sizeof(buf), f)) {
		buf[strcspn(buf, "\n")] = '\0';
		if (mirror_vol_id_from_uuid(buf, &id) == 0)
			memcpy(out, id.b, 16);
	}
	fclose(f);
}

/* Map an existing log as it is, or start a fresh one when there is none,
 * it has no valid header, or it is of another size and holds nothing
 * live. A log of another size with live records keeps its size until they
 * are replayed. */
static int load(struct mirror *m)
{
	struct mirror_replay_stats st;
	struct stat sb;
	int rc;

	if (fstat(m->fd, &sb) < 0) {
		rc = -errno;
		LOG_ERROR("%s: stat: %s", m->path, strerror(errno));
		return rc;
	}
	if (sb.st_size < (off_t)MIRROR_LOG_HDR_SIZE)
		return map_fresh(m, m->want_size);
	m->base = mmap(NULL, (size_t)sb.st_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
		       m->fd, 0);
	if (m->base == MAP_FAILED) {
		m->base = NULL;
		rc = -errno;
		LOG_ERROR("%s: mmap: %s", m->path, strerror(errno));
		return rc;
	}
	m->size = (uint64_t)sb.st_size;
	rc = mirror_log_header_read(m->base, m->size, &m->hdr, &m->hdr_slot);
	if (rc == -EPROTO) {
		LOG_ERROR("%s: written by an incompatible duet; move it away to start with an "
			  "empty log",
			  m->path);
		return rc;
	}
	if (rc == -EBADMSG) {
		/* A valid CRC over impossible fields: not a torn write but
		 * damage or a forgery; its records may still be wanted, so
		 * it is neither replayed nor overwritten. */
		LOG_ERROR("%s: the header is damaged (impossible geometry); refusing to use or "
			  "overwrite it: move it away to start with an empty log",
			  m->path);
		return rc;
	}
	if (rc < 0) {
		if (rc == -EINVAL)
			LOG_WARN("%s: no valid header; starting an empty log", m->path);
		return map_fresh(m, m->want_size);
	}
	m->written_cp = m->hdr.cp_seq;
	m->written_valid = m->hdr.flags & MIRROR_LOG_F_IMAGE_VALID;
	/* A log written with local-sync is durable as it stands. One written
	 * with durability = memory is whole only if the machine did not
	 * restart since: after a power loss its pages may be any mix of old
	 * and new, and replaying stale records could undo flushed writes.
	 * Acknowledged writes were in the volumes' page cache too, so within
	 * one boot the replay only completes writes that were in flight. */
	static const uint8_t zero[16];
	m->trusted = (m->hdr.flags & MIRROR_LOG_F_LOCAL_SYNC) ||
		     (memcmp(m->hdr.boot_id, m->boot_id, 16) == 0 && memcmp(m->boot_id, zero, 16));
	mirror_replay(m->base, m->size, 0, NULL, NULL, &st);
	m->live_at_open = st.records;
	m->max_seq_at_open = st.max_seq > m->hdr.cp_seq ? st.max_seq : m->hdr.cp_seq;
	if (m->hdr.log_size != m->size || (m->size != m->want_size && !st.records)) {
		uint64_t keep = m->max_seq_at_open;
		LOG_INFO("%s: recreating the log at %llu bytes", m->path,
			 (unsigned long long)m->want_size);
		rc = map_fresh(m, m->want_size);
		m->hdr.cp_seq = keep;
		m->max_seq_at_open = keep;
		return rc;
	}
	if (m->size != m->want_size)
		LOG_WARN("%s: keeping size %llu until its records are replayed (nvram_size is "
			 "%llu)",
			 m->path, (unsigned long long)m->size, (unsigned long long)m->want_size);
	geometry(m);
	return 0;
}

int mirror_log_open(struct mirror *m)
{
	int rc;

	mirror_read_boot_id(m->boot_id);
	m->fd = open(m->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (m->fd < 0) {
		rc = -errno;
		LOG_ERROR("%s: open: %s", m->path, strerror(errno));
		return rc;
	}
	rc = load(m);
	if (rc < 0) {
		close(m->fd);
		m->fd = -1;
	}
	return rc;
}

void mirror_log_close(struct mirror *m)
{
	if (m->base)
		munmap(m->base, m->size);
	m->base = NULL;
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
}

/* Reset to an empty log: both halves free, a new log id (so no record of
 * an earlier incarnation, here or in a stale image, can match), every old
 * record checkpointed. Synchronous: boot only. */
int mirror_log_reset(struct mirror *m)
{
	uint64_t id, seq = m->max_seq_at_open > m->placed_seq ? m->max_seq_at_open : m->placed_seq;
	int rc;

	if (m->size != m->want_size) {
		rc = map_fresh(m, m->want_size);
		if (rc < 0)
			return rc;
		if (m->tattached && m->tops->attach) {
			rc = m->tops->attach(m->tctx, m->base, m->size);
			if (rc < 0)
				return rc;
		}
	}
	if (util_random_bytes(&id, sizeof(id)) < 0)
		id = loop_now_ns() ^ ((uint64_t)getpid() << 32);
	if (id == m->hdr.log_id)
		id++;
	m->hdr.log_id = id;
	if (seq < m->hdr.cp_seq)
		seq = m->hdr.cp_seq;
	m->hdr.cp_seq = seq;
	m->hdr.created = (uint64_t)time(NULL);
	memset(m->hdr.node, 0, sizeof(m->hdr.node));
	memcpy(m->hdr.node, m->node_id, strnlen(m->node_id, sizeof(m->hdr.node)));
	m->next_seq = seq + 1;
	m->placed_seq = m->repl_seq = m->synced_seq = seq;
	m->cp_durable = m->cp_mirror = m->cp_want = m->cp_target = seq;
	geometry(m);
	m->h[0].state = H_ACTIVE;
	m->active = 0;
	/* With mirror = local there is no image: the log is all there is, and
	 * complete. Otherwise the image is complete only after a resync. */
	m->hdr_valid = m->o.mode != MIRROR_MODE_ON;
	mirror_header_update(m);
	if (fdatasync(m->fd) < 0) {
		rc = -errno;
		LOG_ERROR("%s: fdatasync: %s", m->path, strerror(errno));
		return rc;
	}
	m->recovered = true;
	return 0;
}

uint64_t mirror_live_records(const struct mirror *m)
{
	return m->live_at_open;
}

int mirror_recover(struct mirror *m, mirror_record_fn apply, void *arg,
		   struct mirror_replay_stats *st)
{
	struct mirror_replay_stats local;
	int rc;

	if (m->recovered)
		return -EALREADY;
	if (!st)
		st = &local;
	if (m->live_at_open && !m->trusted) {
		LOG_WARN("%s: not replaying %llu records written with durability = memory before "
			 "this machine restarted (their pages may be torn); acknowledged writes "
			 "since the last FLUSH may be lost",
			 m->path, (unsigned long long)m->live_at_open);
		memset(st, 0, sizeof(*st));
		return mirror_log_reset(m);
	}
	rc = mirror_replay(m->base, m->size, 0, apply, arg, st);
	if (rc == -ENODATA) {
		memset(st, 0, sizeof(*st));
		rc = 0;
	}
	if (rc < 0)
		return rc;
	if (st->records) {
		LOG_INFO("NVRAM replay: %llu records (seq %llu-%llu, %llu bytes), ended at: %s",
			 (unsigned long long)st->records, (unsigned long long)st->first_seq,
			 (unsigned long long)st->last_seq, (unsigned long long)st->bytes,
			 mirror_stop_name(st->stop));
		rc = apply ? apply(arg, NULL, NULL) : 0;
		if (rc < 0)
			return rc;
	}
	return mirror_log_reset(m);
}

bool mirror_log_replay_wanted(const struct mirror *m, const void **base, size_t *size)
{
	*base = m->base;
	*size = m->size;
	return !m->recovered && m->live_at_open && m->trusted;
}

int mirror_log_recovered(struct mirror *m)
{
	return m->recovered ? -EALREADY : mirror_log_reset(m);
}

int mirror_discard(struct mirror *m)
{
	if (m->recovered)
		return -EALREADY;
	if (m->live_at_open)
		LOG_WARN("discarding %llu NVRAM records without replay (this node was taken "
			 "over)",
			 (unsigned long long)m->live_at_open);
	return mirror_log_reset(m);
}
