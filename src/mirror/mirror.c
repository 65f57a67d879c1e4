/* The mirror engine: appends into the mapped log, replication through a
 * transport, local syncs, consistency points, states and resync.
 *
 * Every event from outside (transport completion, host checkpoint done,
 * sync done, timers) only records what happened and posts the work task;
 * the task then moves everything forward in one place. That keeps the
 * state machine free of reentrancy: callbacks into the node (logged, flush
 * done) run last, and what they call (mirror_append, mirror_applied) only
 * changes queues and posts the task again.
 */
#define LOG_MODULE "mirror"
#include "mirror/format.h"
#include "mirror/mirror_priv.h"
#include "mirror/syncer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"

#define MIN_LOG_SIZE (64u << 10)
#define CP_RETRY_NS  (1000ull * 1000000ull)

/* mirror_write.st bits */
#define W_QUEUED  (1u << 0) /* accepted (append returned >= 0) */
#define W_PLACED  (1u << 1) /* every record is in the log */
#define W_APPLIED (1u << 2) /* mirror_applied was called */
#define W_LINKED  (1u << 3) /* on the unapplied list */
#define W_LOGGED  (1u << 4) /* logged callback ran */

enum half_state { H_FREE = 0, H_ACTIVE, H_SEALED };

struct half {
	uint64_t base;		      /* file offset */
	uint64_t tail;		      /* bytes of records (relative) */
	uint64_t sent;		      /* bytes handed to the transport (relative) */
	uint64_t image;		      /* the partner holds [0, image) of this use */
	uint64_t first_seq, last_seq; /* 0 when empty */
	enum half_state state;
	unsigned xfers; /* transport writes reading this half, any epoch */
};

enum xfer_kind { XF_RECORDS, XF_HEADER, XF_COPY };

struct xfer {
	struct mirror *m;
	enum xfer_kind kind;
	int half; /* -1 for the header */
	uint64_t off, len;
	uint64_t last_seq; /* records: all <= are in the image once this lands */
	uint64_t cp_seq;   /* header: the checkpoint it carries */
	bool valid;	   /* header: the image-valid flag it carries */
	uint32_t epoch;
	int result;
	bool done;
};

/* Resync: mark the image invalid, copy the live ranges, mark it valid. */
enum resync_stage {
	RS_NONE = 0,
	RS_MARK,   /* header with valid = 0 in flight */
	RS_PLAN,   /* it landed: choose the ranges to copy */
	RS_COPY,   /* copies being issued or in flight */
	RS_FINISH, /* header with valid = 1 in flight */
};

struct wqueue {
	struct mirror_write *head, *tail;
	unsigned n;
};

/* The work task lives apart from struct mirror so a close with the task
 * still queued in the loop can leave it behind, disarmed. */
struct work {
	struct loop_task task;
	struct mirror *m;
};

struct mirror {
	struct loop *loop;
	struct mirror_opts o;
	char path[4096];
	char node_id[17];
	const struct mirror_host_ops *host;
	void *host_ctx;

	int fd;
	uint8_t *base;
	uint64_t size;
	uint64_t want_size;
	struct nvr_header hdr; /* the header as it should be */
	unsigned hdr_slot;     /* slot holding the newest written header */
	uint64_t written_cp;   /* cp_seq in that slot */
	bool written_valid;
	bool hdr_valid;	  /* flag for the next header: the image is complete */
	bool hdr_pending; /* a header write waits for the transfer in flight */
	struct half h[2];
	int active; /* -1 when both halves wait for a checkpoint */
	uint32_t chunk_max;
	uint32_t max_xfer;
	bool recovered;
	bool trusted; /* the log's records may be replayed (see load_log) */
	uint8_t boot_id[16];
	uint64_t live_at_open;
	uint64_t max_seq_at_open;

	uint64_t next_seq;
	uint64_t placed_seq; /* last seq placed */

	struct wqueue wait_space;		/* appends waiting for a free half */
	struct wqueue wait_logged;		/* placed, logged callback pending, seq order */
	struct mirror_write *ua_head, *ua_tail; /* not yet applied, seq order */

	/* Durability watermarks. */
	uint64_t repl_seq;   /* records <= are in the partner's image */
	uint64_t synced_seq; /* records <= are fdatasync'ed locally */
	uint64_t cp_durable; /* a header with this cp_seq is fdatasync'ed */
	uint64_t cp_mirror;  /* a header with this cp_seq is in the image */
	uint64_t sync_req_seq, sync_req_cp;
	uint64_t sync_ticket;
	bool sync_inflight;
	bool sync_failed;
	struct syncer *sync;

	/* Consistency points. */
	bool cp_running;
	bool cp_host_wait; /* host->checkpoint called, done not yet */
	bool cp_host_done;
	int cp_host_result;
	int cp_error; /* to hand to the waiting flushes */
	uint64_t cp_target, cp_want;
	uint64_t cp_backoff_until;
	struct mirror_flush *flush_head, *flush_tail;
	struct loop_timer cp_timer;

	/* Transport. */
	const struct mirror_transport_ops *tops;
	void *tctx;
	bool tattached;
	bool tup;
	uint32_t epoch;
	enum mirror_state state;
	char reason[160];
	struct xfer *ring;
	unsigned ring_n, ring_head, ring_count;
	bool hdr_inflight;
	bool hdr_dirty;
	enum resync_stage rs;
	uint64_t rs_seq;    /* records <= are covered by the resync copies */
	unsigned rs_copies; /* copy writes not yet landed */
	int rs_half[2];	    /* halves to copy, oldest first */
	uint64_t rs_end[2]; /* bytes of each to copy */
	unsigned rs_n, rs_cur;
	uint64_t rs_off; /* copy cursor in rs_half[rs_cur] */
	uint64_t retry_at_ns;
	struct loop_timer retry_timer;

	/* Partner-outdated mark (host->partner_outdated). */
	bool out_want, out_have, out_inflight, out_sent;
	bool out_done_flag;
	int out_done_result;

	struct loop_timer suspend_timer;
	int fail_held; /* mirror_fail_held: the error for held writes, or 0 */
	struct work *work;
	bool closing;
	bool reset_pending; /* mirror_reset: waiting for the transport to drain */
	mirror_done_fn reset_done;
	void *reset_arg;

	uint64_t n_records, n_record_bytes, n_xfers, n_xfer_bytes, n_cps, n_switches, n_space_waits,
	    n_resyncs, n_suspend_timeouts;
};

static void post(struct mirror *m)
{
	if (!m->closing)
		loop_post(m->loop, &m->work->task);
}

const char *mirror_state_name(enum mirror_state s)
{
	switch (s) {
	case MIRROR_STATE_OFF:
		return "off";
	case MIRROR_STATE_IN_SYNC:
		return "in_sync";
	case MIRROR_STATE_DEGRADED:
		return "degraded";
	case MIRROR_STATE_RESYNCING:
		return "resyncing";
	}
	return "?";
}

void mirror_opts_from_config(struct mirror_opts *o, const struct duet_config *cfg, const char *path)
{
	memset(o, 0, sizeof(*o));
	o->path = path;
	o->size = cfg->node.nvram_size;
	o->node_id = cfg->node.id;
	o->enabled = cfg->mirror.mode == MIRROR_MODE_ON;
	o->durability = cfg->mirror.durability;
	o->down = cfg->mirror.down;
	o->suspend_timeout_ms = cfg->mirror.suspend_timeout_ms;
	o->cp_interval_ms = cfg->mirror.cp_interval_ms;
}

/* ---- small lists ---- */

static void wq_push(struct wqueue *q, struct mirror_write *w)
{
	w->q_next = NULL;
	if (q->tail)
		q->tail->q_next = w;
	else
		q->head = w;
	q->tail = w;
	q->n++;
}

static struct mirror_write *wq_pop(struct wqueue *q)
{
	struct mirror_write *w = q->head;

	if (w) {
		q->head = w->q_next;
		if (!q->head)
			q->tail = NULL;
		w->q_next = NULL;
		q->n--;
	}
	return w;
}

static void ua_link(struct mirror *m, struct mirror_write *w)
{
	w->a_next = NULL;
	w->a_prev = m->ua_tail;
	if (m->ua_tail)
		m->ua_tail->a_next = w;
	else
		m->ua_head = w;
	m->ua_tail = w;
	w->st |= W_LINKED;
}

static void ua_unlink(struct mirror *m, struct mirror_write *w)
{
	if (w->a_prev)
		w->a_prev->a_next = w->a_next;
	else
		m->ua_head = w->a_next;
	if (w->a_next)
		w->a_next->a_prev = w->a_prev;
	else
		m->ua_tail = w->a_prev;
	w->a_prev = w->a_next = NULL;
	w->st &= (uint8_t)~W_LINKED;
}

/* ---- state ---- */

static void set_state(struct mirror *m, enum mirror_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_state(struct mirror *m, enum mirror_state st, const char *fmt, ...)
{
	va_list ap;
	bool changed = st != m->state;

	va_start(ap, fmt);
	vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
	va_end(ap);
	m->state = st;
	/* Outdated from the moment the image stops following the log until
	 * a resync ends. */
	m->out_want = st == MIRROR_STATE_DEGRADED || st == MIRROR_STATE_RESYNCING;
	post(m);
	if (!changed)
		return;
	if (st == MIRROR_STATE_DEGRADED)
		LOG_WARN("mirror %s: %s", mirror_state_name(st), m->reason);
	else
		LOG_INFO("mirror %s: %s", mirror_state_name(st), m->reason);
	if (m->host->state_changed)
		m->host->state_changed(m->host_ctx, st, m->reason);
}

/* The image takes record and header writes: in sync, or resyncing past the
 * invalid mark. */
static bool image_follows(const struct mirror *m)
{
	return m->tup && (m->state == MIRROR_STATE_IN_SYNC ||
			  (m->state == MIRROR_STATE_RESYNCING && m->rs >= RS_COPY));
}

/* ---- header ---- */

/* Write m->hdr (new generation) into the other slot, and to the partner
 * soon. Never while a header transfer is in flight: the transport may still
 * be reading a slot, and a torn header in the image would make the image
 * fall back to an older one. The write is then done when it lands. */
static void header_update(struct mirror *m)
{
	if (m->hdr_inflight) {
		m->hdr_pending = true;
		return;
	}
	m->hdr_pending = false;
	m->hdr.gen++;
	if (m->hdr_valid)
		m->hdr.flags |= NVR_FLAG_IMG_VALID;
	else
		m->hdr.flags &= ~NVR_FLAG_IMG_VALID;
	if (m->o.durability == DURABILITY_LOCAL_SYNC)
		m->hdr.flags |= NVR_FLAG_LOCAL_SYNC;
	else
		m->hdr.flags &= ~NVR_FLAG_LOCAL_SYNC;
	memcpy(m->hdr.boot_id, m->boot_id, sizeof(m->hdr.boot_id));
	m->hdr_slot = nvr_header_write(m->base, &m->hdr, m->hdr_slot);
	m->written_cp = m->hdr.cp_seq;
	m->written_valid = m->hdr_valid;
	/* durability = memory never trusts the file after a reboot, so the
	 * header need not reach the disk (see load_log). */
	if (m->o.durability == DURABILITY_MEMORY && m->written_cp > m->cp_durable)
		m->cp_durable = m->written_cp;
	if (m->tup && (image_follows(m) || m->rs == RS_MARK))
		m->hdr_dirty = true;
	post(m);
}

static void init_header(struct mirror *m, uint64_t size)
{
	memset(&m->hdr, 0, sizeof(m->hdr));
	m->hdr.magic = NVR_HDR_MAGIC;
	m->hdr.major = NVR_VERSION_MAJOR;
	m->hdr.minor = NVR_VERSION_MINOR;
	m->hdr.hdr_size = NVR_HDR_SIZE;
	m->hdr.log_size = size;
	m->hdr.half_size = nvr_half_size_for(size);
	m->hdr.rec_align = NVR_REC_ALIGN;
	memcpy(m->hdr.node, m->node_id, strnlen(m->node_id, sizeof(m->hdr.node)));
	m->hdr_slot = 1; /* the first write goes to slot 0 */
}

static void geometry(struct mirror *m)
{
	uint64_t hs = m->hdr.half_size;
	uint64_t chunk = m->o.max_record ? m->o.max_record : (1u << 20);

	for (unsigned i = 0; i < 2; i++) {
		memset(&m->h[i], 0, sizeof(m->h[i]));
		m->h[i].base = nvr_half_off(&m->hdr, i);
	}
	if (chunk > hs / 4)
		chunk = hs / 4;
	chunk &= ~(uint64_t)4095;
	if (chunk < 4096)
		chunk = 4096;
	m->chunk_max = (uint32_t)chunk;
	m->max_xfer = m->o.max_xfer ? m->o.max_xfer : (4u << 20);
	if (m->max_xfer < nvr_rec_len(m->chunk_max))
		m->max_xfer = (uint32_t)nvr_rec_len(m->chunk_max);
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
static void read_boot_id(uint8_t out[16])
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
static int load_log(struct mirror *m)
{
	struct mirror_replay_stats st;
	struct stat sb;
	int rc;

	if (fstat(m->fd, &sb) < 0) {
		rc = -errno;
		LOG_ERROR("%s: stat: %s", m->path, strerror(errno));
		return rc;
	}
	if (sb.st_size < (off_t)NVR_HDR_SIZE)
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
	rc = nvr_header_read(m->base, m->size, &m->hdr, &m->hdr_slot);
	if (rc == -EPROTO) {
		LOG_ERROR("%s: written by an incompatible duet; move it away to start with an "
			  "empty log",
			  m->path);
		return rc;
	}
	if (rc < 0) {
		if (rc == -EINVAL)
			LOG_WARN("%s: no valid header; starting an empty log", m->path);
		return map_fresh(m, m->want_size);
	}
	m->written_cp = m->hdr.cp_seq;
	m->written_valid = m->hdr.flags & NVR_FLAG_IMG_VALID;
	/* A log written with local-sync is durable as it stands. One written
	 * with durability = memory is whole only if the machine did not
	 * restart since: after a power loss its pages may be any mix of old
	 * and new, and replaying stale records could undo flushed writes.
	 * Acknowledged writes were in the volumes' page cache too, so within
	 * one boot the replay only completes writes that were in flight. */
	static const uint8_t zero[16];
	m->trusted = (m->hdr.flags & NVR_FLAG_LOCAL_SYNC) ||
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

/* Reset to an empty log: both halves free, a new log id (so no record of
 * an earlier incarnation, here or in a stale image, can match), every old
 * record checkpointed. Synchronous: boot only. */
static int log_reset(struct mirror *m)
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
	if (random_bytes(&id, sizeof(id)) < 0)
		id = now_ns() ^ ((uint64_t)getpid() << 32);
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
	m->hdr_valid = !m->o.enabled;
	header_update(m);
	if (fdatasync(m->fd) < 0) {
		rc = -errno;
		LOG_ERROR("%s: fdatasync: %s", m->path, strerror(errno));
		return rc;
	}
	m->recovered = true;
	return 0;
}

static void work_fn(void *arg);
static void cp_timer_fn(struct loop_timer *t);
static void wake_timer_fn(struct loop_timer *t);
static void sync_done_fn(void *arg);

int mirror_open(struct loop *loop, const struct mirror_opts *opts,
		const struct mirror_host_ops *host, void *host_ctx, struct mirror **out)
{
	struct mirror *m;
	int rc;

	if (!opts->path || !*opts->path || !host || !host->checkpoint)
		return -EINVAL;
	if (opts->size < MIN_LOG_SIZE) {
		LOG_ERROR("nvram_size %llu is below the minimum of %u bytes",
			  (unsigned long long)opts->size, MIN_LOG_SIZE);
		return -EINVAL;
	}
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->work = calloc(1, sizeof(*m->work));
	if (!m->work) {
		free(m);
		return -ENOMEM;
	}
	m->loop = loop;
	m->o = *opts;
	snprintf(m->path, sizeof(m->path), "%s", opts->path);
	snprintf(m->node_id, sizeof(m->node_id), "%s", opts->node_id ? opts->node_id : "");
	m->o.path = m->path;
	m->o.node_id = m->node_id;
	if (!m->o.xfer_window)
		m->o.xfer_window = 16;
	if (!m->o.resync_retry_ms)
		m->o.resync_retry_ms = 1000;
	m->want_size = opts->size & ~(uint64_t)4095;
	m->host = host;
	m->host_ctx = host_ctx;
	m->next_seq = 1;
	m->tops = mirror_null_transport();
	m->work->m = m;
	loop_task_init(&m->work->task, work_fn, m->work);
	loop_timer_init(&m->cp_timer, cp_timer_fn, m);
	loop_timer_init(&m->retry_timer, wake_timer_fn, m);
	loop_timer_init(&m->suspend_timer, wake_timer_fn, m);
	read_boot_id(m->boot_id);
	m->fd = open(m->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (m->fd < 0) {
		rc = -errno;
		LOG_ERROR("%s: open: %s", m->path, strerror(errno));
		goto err_free;
	}
	rc = load_log(m);
	if (rc < 0)
		goto err_close;
	m->ring_n = m->o.xfer_window;
	m->ring = calloc(m->ring_n, sizeof(*m->ring));
	if (!m->ring) {
		rc = -ENOMEM;
		goto err_unmap;
	}
	rc = syncer_start(loop, m->fd, sync_done_fn, m, &m->sync);
	if (rc < 0)
		goto err_ring;
	if (m->o.enabled)
		set_state(m, MIRROR_STATE_DEGRADED,
			  "no partner session: writes go on %s; a takeover of this node would "
			  "lose data",
			  m->o.down == MIRROR_DOWN_SUSPEND ? "being held (mirror_down = suspend)"
							   : "locally");
	else
		set_state(m, MIRROR_STATE_OFF,
			  "mirror = local: the local NVRAM log only, no partner image");
	if (m->o.cp_interval_ms)
		loop_timer_arm(loop, &m->cp_timer, m->o.cp_interval_ms * 1000000ull);
	LOG_INFO("NVRAM log %s: %llu bytes, halves of %llu, %llu live records", m->path,
		 (unsigned long long)m->size, (unsigned long long)m->hdr.half_size,
		 (unsigned long long)m->live_at_open);
	*out = m;
	return 0;
err_ring:
	free(m->ring);
err_unmap:
	if (m->base)
		munmap(m->base, m->size);
err_close:
	close(m->fd);
err_free:
	free(m->work);
	free(m);
	return rc;
}

static void noop_task(void *arg)
{
	free(arg);
}

void mirror_close(struct mirror *m)
{
	if (!m)
		return;
	m->closing = true;
	if (m->tattached && m->tops->detach)
		m->tops->detach(m->tctx);
	loop_timer_cancel(m->loop, &m->cp_timer);
	loop_timer_cancel(m->loop, &m->retry_timer);
	loop_timer_cancel(m->loop, &m->suspend_timer);
	syncer_stop(m->sync);
	if (m->ua_head || m->wait_logged.n || m->wait_space.n)
		LOG_WARN("mirror closed with writes in flight");
	if (m->work->task.queued) {
		/* The loop still holds the task: let it free itself. */
		m->work->task.cb = noop_task;
		m->work->task.arg = m->work;
	} else {
		free(m->work);
	}
	munmap(m->base, m->size);
	close(m->fd);
	free(m->ring);
	free(m);
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
		return log_reset(m);
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
	return log_reset(m);
}

bool mirror_priv_replay_wanted(const struct mirror *m, const void **base, size_t *size)
{
	*base = m->base;
	*size = m->size;
	return !m->recovered && m->live_at_open && m->trusted;
}

int mirror_priv_recovered(struct mirror *m)
{
	return m->recovered ? -EALREADY : log_reset(m);
}

int mirror_discard(struct mirror *m)
{
	if (m->recovered)
		return -EALREADY;
	if (m->live_at_open)
		LOG_WARN("discarding %llu NVRAM records without replay (this node was taken "
			 "over)",
			 (unsigned long long)m->live_at_open);
	return log_reset(m);
}

static void lose_partner(struct mirror *m, const char *why);

int mirror_reset(struct mirror *m, mirror_done_fn done, void *arg)
{
	if (m->reset_pending)
		return -EALREADY;
	if (!m->recovered) {
		int rc = mirror_discard(m);
		if (rc < 0)
			return rc;
	} else if (m->wait_space.n || m->wait_logged.n || m->ua_head) {
		return -EBUSY;
	} else if (m->state != MIRROR_STATE_OFF) {
		/* The image holds records the partner already replayed: it
		 * must not be used again until a resync. */
		lose_partner(m, "NVRAM log dropped");
	}
	m->reset_pending = true;
	m->reset_done = done;
	m->reset_arg = arg;
	post(m);
	return 0;
}

/* Finish mirror_reset once no transfer, sync or checkpoint still reads or
 * writes the log. */
static void reset_step(struct mirror *m)
{
	mirror_done_fn done = m->reset_done;
	int rc = 0;

	if (!m->reset_pending || m->ring_count || m->sync_inflight || m->cp_host_wait)
		return;
	rc = log_reset(m); /* new log id: nothing of the old one replays again */
	m->cp_running = false;
	m->reset_pending = false;
	if (done)
		done(m->reset_arg, rc);
}

/* ---- transport ---- */

int mirror_attach_transport(struct mirror *m, const struct mirror_transport_ops *ops, void *ctx)
{
	int rc;

	if (m->tup)
		return -EBUSY;
	if (m->tattached && m->tops->detach)
		m->tops->detach(m->tctx);
	m->tattached = false;
	m->tops = ops ? ops : mirror_null_transport();
	m->tctx = ctx;
	if (m->tops->attach) {
		rc = m->tops->attach(ctx, m->base, m->size);
		if (rc < 0) {
			m->tops = mirror_null_transport();
			m->tctx = NULL;
			return rc;
		}
	}
	m->tattached = true;
	return 0;
}

/* The image stops following the log (session lost, or a write failed). */
static void lose_partner(struct mirror *m, const char *why)
{
	m->epoch++;
	m->rs = RS_NONE;
	m->rs_n = m->rs_cur = 0;
	m->rs_copies = 0;
	m->hdr_dirty = false;
	m->hdr_valid = false;
	if (m->state != MIRROR_STATE_OFF)
		set_state(m, MIRROR_STATE_DEGRADED,
			  "%s: writes go on %s; a takeover of this node would lose data", why,
			  m->o.down == MIRROR_DOWN_SUSPEND ? "being held (mirror_down = suspend)"
							   : "locally");
}

void mirror_transport_up(struct mirror *m)
{
	if (m->state == MIRROR_STATE_OFF || m->tup)
		return;
	m->tup = true;
	m->retry_at_ns = 0;
	post(m);
}

void mirror_transport_down(struct mirror *m, const char *reason)
{
	if (!m->tup)
		return;
	m->tup = false;
	lose_partner(m, reason && *reason ? reason : "partner session down");
}

static void xfer_cb(void *arg, int result)
{
	struct xfer *x = arg;

	x->result = result;
	x->done = true;
	post(x->m);
}

/* Start a transport write. @return 1 if issued, 0 if the window is full
 * (nothing done), -1 if the transport refused it (it then completes as
 * failed on the next pass, which drops the partner). */
static int xfer_issue(struct mirror *m, enum xfer_kind kind, int half, uint64_t off, uint64_t len,
		      uint64_t last_seq)
{
	struct xfer *x;
	int rc;

	if (m->ring_count == m->ring_n)
		return 0;
	x = &m->ring[(m->ring_head + m->ring_count) % m->ring_n];
	m->ring_count++;
	*x = (struct xfer){.m = m,
			   .kind = kind,
			   .half = half,
			   .off = off,
			   .len = len,
			   .last_seq = last_seq,
			   .cp_seq = m->written_cp,
			   .valid = m->written_valid,
			   .epoch = m->epoch};
	if (half >= 0)
		m->h[half].xfers++;
	if (kind == XF_HEADER)
		m->hdr_inflight = true;
	m->n_xfers++;
	m->n_xfer_bytes += len;
	rc = m->tops->write(m->tctx, off, m->base + off, len, xfer_cb, x);
	if (rc < 0) {
		x->result = rc;
		x->done = true;
		post(m);
		return -1;
	}
	return 1;
}

/* Pop landed writes in issue order, so what the mirror believes the image
 * holds only ever grows as a prefix of what was sent. */
static void ring_process(struct mirror *m)
{
	while (m->ring_count) {
		struct xfer *x = &m->ring[m->ring_head];
		if (!x->done)
			break;
		m->ring_head = (m->ring_head + 1) % m->ring_n;
		m->ring_count--;
		if (x->half >= 0)
			m->h[x->half].xfers--;
		if (x->kind == XF_HEADER) {
			m->hdr_inflight = false;
			if (m->hdr_pending)
				header_update(m);
		}
		if (x->epoch != m->epoch)
			continue;
		if (x->result < 0) {
			LOG_WARN("mirror write of %llu bytes at %llu failed: %s",
				 (unsigned long long)x->len, (unsigned long long)x->off,
				 strerror(-x->result));
			lose_partner(m, "a write to the partner's image failed");
			m->retry_at_ns = now_ns() + m->o.resync_retry_ms * 1000000ull;
			loop_timer_arm(m->loop, &m->retry_timer, m->o.resync_retry_ms * 1000000ull);
			continue;
		}
		switch (x->kind) {
		case XF_RECORDS:
		case XF_COPY: {
			struct half *h = &m->h[x->half];
			if (x->off + x->len - h->base > h->image)
				h->image = x->off + x->len - h->base;
			if (x->kind == XF_COPY)
				m->rs_copies--;
			else if (x->last_seq > m->repl_seq)
				m->repl_seq = x->last_seq;
			break;
		}
		case XF_HEADER:
			if (x->cp_seq > m->cp_mirror)
				m->cp_mirror = x->cp_seq;
			if (m->rs == RS_MARK && !x->valid) {
				m->rs = RS_PLAN;
			} else if (m->rs == RS_FINISH && x->valid) {
				m->rs = RS_NONE;
				if (m->rs_seq > m->repl_seq)
					m->repl_seq = m->rs_seq;
				set_state(m, MIRROR_STATE_IN_SYNC,
					  "the partner's image holds every logged write");
			}
			break;
		}
	}
}

/* From @p from, the end of the last record that ends by *to (at least one
 * record, even if longer); returns its seq and moves *to to its end. */
static uint64_t last_whole_record(struct mirror *m, int hi, uint64_t from, uint64_t *to)
{
	struct half *h = &m->h[hi];
	uint64_t p = from, last = 0;

	while (p < h->tail) {
		const struct nvr_record *r = (const void *)(m->base + h->base + p);
		uint64_t len = nvr_rec_len(r->data_len);
		if (p + len > *to && p != from)
			break;
		last = r->seq;
		p += len;
		if (p >= *to)
			break;
	}
	*to = p;
	return last;
}

/* Halves holding records, the older first. */
static unsigned halves_in_order(const struct mirror *m, int order[2])
{
	unsigned n = 0;

	if (m->active < 0) {
		int first = m->h[0].first_seq <= m->h[1].first_seq ? 0 : 1;
		order[n++] = first;
		order[n++] = first ^ 1;
		return n;
	}
	if (m->h[m->active ^ 1].state == H_SEALED)
		order[n++] = m->active ^ 1;
	order[n++] = m->active;
	return n;
}

static void kick_sends(struct mirror *m)
{
	int order[2];
	unsigned n;

	if (!m->tup)
		return;
	if (m->rs == RS_MARK || image_follows(m)) {
		if (m->hdr_dirty && !m->hdr_inflight &&
		    xfer_issue(m, XF_HEADER, -1, (uint64_t)m->hdr_slot * NVR_SLOT_STRIDE,
			       NVR_SLOT_BYTES, 0) != 0)
			m->hdr_dirty = false;
	}
	if (!image_follows(m))
		return;
	/* Resync copies go first: in-order completion then vouches for them
	 * before any record sent after them. */
	while (m->rs == RS_COPY && m->rs_cur < m->rs_n) {
		int hi = m->rs_half[m->rs_cur];
		uint64_t end = m->rs_off + m->max_xfer;
		if (m->rs_off >= m->rs_end[m->rs_cur]) {
			m->rs_cur++;
			m->rs_off = 0;
			continue;
		}
		if (end > m->rs_end[m->rs_cur])
			end = m->rs_end[m->rs_cur];
		int rc = xfer_issue(m, XF_COPY, hi, m->h[hi].base + m->rs_off, end - m->rs_off, 0);
		if (rc == 0)
			return;
		m->rs_copies++;
		m->rs_off = end;
		if (rc < 0)
			return;
	}
	n = halves_in_order(m, order);
	for (unsigned k = 0; k < n; k++) {
		struct half *h = &m->h[order[k]];
		while (h->sent < h->tail) {
			uint64_t from = h->sent;
			uint64_t to = from + m->max_xfer;
			uint64_t last = last_whole_record(m, order[k], from, &to);
			int rc =
			    xfer_issue(m, XF_RECORDS, order[k], h->base + from, to - from, last);
			if (rc == 0)
				return; /* window full: sent again from here later */
			h->sent = to;
			if (rc < 0)
				return;
		}
	}
}

static bool in_copy_plan(const struct mirror *m, int hi)
{
	if (m->rs != RS_COPY)
		return false;
	for (unsigned i = m->rs_cur; i < m->rs_n; i++)
		if (m->rs_half[i] == hi)
			return true;
	return false;
}

/* Start a resync when the transport is up and the image is behind, and
 * move it through its stages. */
static void resync_step(struct mirror *m)
{
	if (m->state == MIRROR_STATE_OFF || !m->tup || !m->recovered || m->reset_pending)
		return;
	switch (m->rs) {
	case RS_NONE:
		if (m->state != MIRROR_STATE_DEGRADED)
			return;
		if (m->retry_at_ns && now_ns() < m->retry_at_ns)
			return;
		if (m->hdr_inflight)
			return; /* an earlier header write is still reading its slot */
		m->retry_at_ns = 0;
		m->n_resyncs++;
		m->rs = RS_MARK;
		set_state(m, MIRROR_STATE_RESYNCING,
			  "partner back: copying the live log to its image");
		/* First tell the image it is incomplete, then change it. */
		m->hdr_valid = false;
		header_update(m); /* not deferred: no header write in flight */
		return;
	case RS_PLAN: {
		int order[2];
		unsigned n = halves_in_order(m, order);
		m->rs_n = m->rs_cur = 0;
		m->rs_off = 0;
		for (unsigned i = 0; i < n; i++) {
			struct half *h = &m->h[order[i]];
			if (h->state == H_FREE || h->tail == 0)
				continue;
			/* Unsent records (of any earlier epoch) go with the copy. */
			h->sent = h->tail;
			h->image = 0;
			m->rs_half[m->rs_n] = order[i];
			m->rs_end[m->rs_n] = h->tail;
			m->rs_n++;
		}
		m->rs_seq = m->placed_seq;
		m->rs = RS_COPY;
		return;
	}
	case RS_COPY:
		if (m->rs_cur < m->rs_n || m->rs_copies)
			return;
		m->rs = RS_FINISH;
		m->hdr_valid = true;
		header_update(m); /* sent now, or once the header in flight lands */
		return;
	case RS_MARK:
	case RS_FINISH:
		return;
	}
}

static void wake_timer_fn(struct loop_timer *t)
{
	post(t->arg);
}

/* ---- local sync ---- */

static void sync_done_fn(void *arg)
{
	struct mirror *m = arg;
	int err = 0;

	syncer_result(m->sync, &err);
	m->sync_inflight = false;
	if (err < 0) {
		if (!m->sync_failed)
			LOG_ERROR("%s: fdatasync: %s", m->path, strerror(-err));
		m->sync_failed = true;
	} else {
		m->sync_failed = false;
		if (m->sync_req_seq > m->synced_seq)
			m->synced_seq = m->sync_req_seq;
		if (m->sync_req_cp > m->cp_durable)
			m->cp_durable = m->sync_req_cp;
	}
	post(m);
}

/* One fdatasync of the log at a time; the next covers all that came
 * meanwhile (group commit). */
static void sync_step(struct mirror *m)
{
	bool want_records =
	    m->o.durability == DURABILITY_LOCAL_SYNC && m->placed_seq > m->synced_seq;
	bool want_header = m->written_cp > m->cp_durable;

	if (m->sync_inflight || (!want_records && !want_header))
		return;
	m->sync_req_seq = m->placed_seq;
	m->sync_req_cp = m->written_cp;
	m->sync_inflight = true;
	syncer_request(m->sync, ++m->sync_ticket);
}

/* ---- appends ---- */

static bool half_reusable(const struct mirror *m, int hi)
{
	const struct half *h = &m->h[hi];

	if (h->state != H_SEALED || h->xfers)
		return false;
	if (m->cp_durable < h->last_seq)
		return false;
	/* The image must know the half is checkpointed before it is
	 * overwritten, else a takeover could replay a mix of two uses. */
	if (image_follows(m) && m->cp_mirror < h->last_seq)
		return false;
	if (in_copy_plan(m, hi))
		return false;
	return true;
}

static void activate(struct mirror *m, int i)
{
	struct half *h = &m->h[i];

	h->state = H_ACTIVE;
	h->tail = h->sent = h->image = 0;
	h->first_seq = h->last_seq = 0;
	m->active = i;
	m->n_switches++;
}

static void request_cp(struct mirror *m, uint64_t target)
{
	if (target > m->cp_want)
		m->cp_want = target;
	post(m);
}

/* The active half cannot take the next record: seal it, move on. */
static void seal_active(struct mirror *m)
{
	struct half *h = &m->h[m->active];
	int other = m->active ^ 1;

	h->state = H_SEALED;
	request_cp(m, h->last_seq);
	m->active = -1;
	if (half_reusable(m, other))
		m->h[other].state = H_FREE;
	if (m->h[other].state == H_FREE)
		activate(m, other);
}

/* Place as many records of @p w as fit. @return true when all are placed. */
static bool place(struct mirror *m, struct mirror_write *w)
{
	const uint8_t *data = w->data;

	do {
		uint64_t left = w->length - w->placed;
		uint32_t dlen = 0;
		uint64_t vlen = left;
		struct half *h;

		if (w->type == MIRROR_REC_WRITE) {
			dlen = (uint32_t)(left < m->chunk_max ? left : m->chunk_max);
			vlen = dlen;
		}
		uint64_t need = nvr_rec_len(dlen);
		if (m->active < 0)
			return false;
		h = &m->h[m->active];
		if (h->tail + need > m->hdr.half_size) {
			seal_active(m);
			if (m->active < 0)
				return false;
			h = &m->h[m->active];
		}
		uint64_t seq = m->next_seq++;
		uint64_t off = h->base + h->tail;
		nvr_record_encode(m->base + off, seq, m->hdr.log_id, &w->vol, w->type, w->flags,
				  w->offset + w->placed, vlen, dlen ? data + w->placed : NULL,
				  dlen);
		if (!h->first_seq)
			h->first_seq = seq;
		h->last_seq = seq;
		h->tail += need;
		if (!w->first_seq) {
			w->first_seq = seq;
			w->log_off = off;
			if (!(w->st & W_APPLIED))
				ua_link(m, w);
		}
		w->last_seq = seq;
		w->placed += vlen;
		m->placed_seq = seq;
		m->n_records++;
		m->n_record_bytes += need;
	} while (w->placed < w->length);
	w->st |= W_PLACED;
	wq_push(&m->wait_logged, w);
	return true;
}

int mirror_append(struct mirror *m, struct mirror_write *w)
{
	if (!m->recovered || m->reset_pending)
		return -EBUSY;
	if (w->length == 0 || w->type < MIRROR_REC_WRITE || w->type > MIRROR_REC_TRIM ||
	    (w->type == MIRROR_REC_WRITE && !w->data) || !w->logged ||
	    w->offset + w->length < w->offset)
		return -EINVAL;
	w->first_seq = w->last_seq = w->log_off = 0;
	w->placed = 0;
	w->st = W_QUEUED;
	w->q_next = w->a_prev = w->a_next = NULL;
	w->t_start = now_ns();
	post(m);
	if (m->wait_space.n == 0 && place(m, w))
		return 0;
	if (m->wait_space.n == 0)
		m->n_space_waits++;
	wq_push(&m->wait_space, w);
	return 1;
}

void mirror_applied(struct mirror *m, struct mirror_write *w)
{
	if (w->st & W_APPLIED)
		return;
	w->st |= W_APPLIED;
	if (w->st & W_LINKED) {
		bool head = m->ua_head == w;
		ua_unlink(m, w);
		if (head && m->cp_running)
			post(m);
	}
}

static void place_waiters(struct mirror *m)
{
	struct mirror_write *w;

	/* Detach first: place() links a placed write into wait_logged. */
	while ((w = wq_pop(&m->wait_space))) {
		if (!place(m, w)) {
			w->q_next = m->wait_space.head;
			m->wait_space.head = w;
			if (!m->wait_space.tail)
				m->wait_space.tail = w;
			m->wait_space.n++;
			return;
		}
	}
}

/* ---- logged callbacks ---- */

static bool is_logged(const struct mirror *m, const struct mirror_write *w)
{
	if (m->o.durability == DURABILITY_LOCAL_SYNC && m->synced_seq < w->last_seq)
		return false;
	switch (m->state) {
	case MIRROR_STATE_OFF:
		return true;
	case MIRROR_STATE_IN_SYNC:
		return m->repl_seq >= w->last_seq;
	case MIRROR_STATE_DEGRADED:
		return m->o.down == MIRROR_DOWN_DEGRADE && m->out_have;
	case MIRROR_STATE_RESYNCING:
		if (m->o.down == MIRROR_DOWN_SUSPEND)
			return false; /* held until the image is complete again */
		/* Records after the copy plan stream to the image as in sync:
		 * acknowledged once there, so the state can turn in_sync the
		 * moment the valid mark lands without leaving one behind. */
		if (m->rs >= RS_COPY && w->last_seq > m->rs_seq)
			return m->repl_seq >= w->last_seq;
		return m->out_have;
	}
	return false;
}

static void complete_logged(struct mirror *m)
{
	struct mirror_write *w;

	if (m->sync_failed && m->o.durability == DURABILITY_LOCAL_SYNC) {
		while ((w = m->wait_logged.head) && w->last_seq <= m->sync_req_seq) {
			wq_pop(&m->wait_logged);
			w->st |= W_LOGGED;
			w->logged(w, -EIO);
		}
		return;
	}
	while ((w = m->wait_logged.head) && is_logged(m, w)) {
		wq_pop(&m->wait_logged);
		w->st |= W_LOGGED;
		w->logged(w, 0);
	}
}

/* mirror_down = suspend: writes held longer than the timeout fail. */
static void suspend_step(struct mirror *m)
{
	struct mirror_write *w = m->wait_logged.head;
	uint64_t limit = m->o.suspend_timeout_ms * 1000000ull;
	uint64_t now;

	if (m->o.down != MIRROR_DOWN_SUSPEND || m->state == MIRROR_STATE_IN_SYNC ||
	    m->state == MIRROR_STATE_OFF || !w) {
		loop_timer_cancel(m->loop, &m->suspend_timer);
		return;
	}
	now = now_ns();
	while (m->fail_held && m->state == MIRROR_STATE_DEGRADED && (w = m->wait_logged.head)) {
		wq_pop(&m->wait_logged);
		w->st |= W_LOGGED;
		w->logged(w, m->fail_held);
	}
	while ((w = m->wait_logged.head) && now - w->t_start >= limit) {
		wq_pop(&m->wait_logged);
		m->n_suspend_timeouts++;
		if (m->n_suspend_timeouts == 1 || m->n_suspend_timeouts % 1000 == 0)
			LOG_WARN("mirror_down = suspend: write held %llu ms without the partner; "
				 "failing it with EIO (%llu so far)",
				 (unsigned long long)m->o.suspend_timeout_ms,
				 (unsigned long long)m->n_suspend_timeouts);
		w->st |= W_LOGGED;
		w->logged(w, -EIO);
	}
	if (w)
		loop_timer_arm(m->loop, &m->suspend_timer, w->t_start + limit - now);
}

void mirror_fail_held(struct mirror *m, int err)
{
	m->fail_held = err < 0 ? err : -EIO;
	post(m);
}

/* ---- partner-outdated mark ---- */

static void outdate_done(void *arg, int result)
{
	struct mirror *m = arg;

	m->out_done_flag = true;
	m->out_done_result = result;
	post(m);
}

static void outdate_step(struct mirror *m)
{
	if (m->out_done_flag) {
		m->out_done_flag = false;
		m->out_inflight = false;
		if (m->out_done_result < 0)
			LOG_ERROR("could not record that the partner's image is %s: %s",
				  m->out_sent ? "outdated" : "current",
				  strerror(-m->out_done_result));
		else
			m->out_have = m->out_sent;
	}
	if (m->out_inflight || m->out_want == m->out_have)
		return;
	if (!m->host->partner_outdated) {
		m->out_have = m->out_want;
		return;
	}
	m->out_inflight = true;
	m->out_sent = m->out_want;
	m->host->partner_outdated(m->host_ctx, m->out_sent, outdate_done, m);
}

/* ---- consistency points ---- */

static void cp_host_done_fn(void *arg, int result)
{
	struct mirror *m = arg;

	m->cp_host_done = true;
	m->cp_host_result = result;
	post(m);
}

static void cp_timer_fn(struct loop_timer *t)
{
	struct mirror *m = t->arg;

	if (m->recovered && m->placed_seq > m->hdr.cp_seq)
		request_cp(m, m->placed_seq);
	loop_timer_arm(m->loop, &m->cp_timer, m->o.cp_interval_ms * 1000000ull);
}

/* A consistency point to cp_target: wait until every record up to it has
 * reached its volume, have the node fdatasync the volumes, then write the
 * new checkpoint into the header (to disk and to the partner in the steps
 * after). Halves fully covered become free once both know. */
static void cp_step(struct mirror *m)
{
	if (m->cp_host_done) {
		m->cp_host_done = false;
		m->cp_host_wait = false;
		m->cp_running = false;
		if (m->cp_host_result < 0) {
			LOG_ERROR("consistency point to seq %llu failed: %s; retrying",
				  (unsigned long long)m->cp_target, strerror(-m->cp_host_result));
			m->cp_error = m->cp_host_result;
			m->cp_backoff_until = now_ns() + CP_RETRY_NS;
			loop_timer_arm(m->loop, &m->retry_timer, CP_RETRY_NS);
			return;
		}
		m->n_cps++;
		if (m->cp_target > m->hdr.cp_seq) {
			m->hdr.cp_seq = m->cp_target;
			header_update(m);
		}
	}
	if (!m->cp_running) {
		if (m->cp_want <= m->hdr.cp_seq || !m->recovered || m->reset_pending)
			return;
		if (m->cp_backoff_until && now_ns() < m->cp_backoff_until)
			return;
		m->cp_backoff_until = 0;
		m->cp_running = true;
		m->cp_target = m->cp_want < m->placed_seq ? m->cp_want : m->placed_seq;
	}
	if (m->cp_host_wait)
		return;
	if (m->ua_head && m->ua_head->first_seq <= m->cp_target)
		return; /* volume writes of the CP's records still in flight */
	m->cp_host_wait = true;
	m->host->checkpoint(m->host_ctx, cp_host_done_fn, m);
}

/* With local-sync every logged record is on disk and a restart replays it,
 * so a FLUSH only waits for the log sync; with memory it is a consistency
 * point (the volumes fdatasync'ed). */
static bool flush_covered(const struct mirror *m, const struct mirror_flush *f)
{
	if (m->o.durability == DURABILITY_LOCAL_SYNC && f->target <= m->synced_seq)
		return true;
	return f->target <= m->cp_durable;
}

void mirror_flush(struct mirror *m, struct mirror_flush *f)
{
	f->target = m->placed_seq;
	f->next = NULL;
	if (m->flush_tail)
		m->flush_tail->next = f;
	else
		m->flush_head = f;
	m->flush_tail = f;
	if (m->o.durability == DURABILITY_LOCAL_SYNC)
		post(m);
	else
		request_cp(m, f->target);
}

static void flush_complete(struct mirror *m)
{
	int err = m->cp_error;
	struct mirror_flush *f;

	m->cp_error = 0;
	while ((f = m->flush_head) && (err || flush_covered(m, f))) {
		m->flush_head = f->next;
		if (!m->flush_head)
			m->flush_tail = NULL;
		f->done(f, flush_covered(m, f) ? 0 : err);
	}
}

static void free_halves(struct mirror *m)
{
	for (int i = 0; i < 2; i++) {
		if (m->h[i].state == H_SEALED && half_reusable(m, i)) {
			m->h[i].state = H_FREE;
			if (m->active < 0)
				activate(m, i);
		}
	}
}

/* ---- the work task ---- */

static void work_fn(void *arg)
{
	struct work *wk = arg;
	struct mirror *m = wk->m;

	ring_process(m);
	outdate_step(m);
	reset_step(m);
	cp_step(m);
	free_halves(m);
	place_waiters(m);
	resync_step(m);
	kick_sends(m);
	resync_step(m);
	kick_sends(m);
	sync_step(m);
	/* Callbacks into the node last: they may append and apply. */
	complete_logged(m);
	suspend_step(m);
	flush_complete(m);
	cp_step(m);
}

/* ---- status ---- */

void mirror_get_status(const struct mirror *m, struct mirror_status *st)
{
	memset(st, 0, sizeof(*st));
	st->state = m->state;
	snprintf(st->reason, sizeof(st->reason), "%s", m->reason);
	st->takeover_safe = m->state == MIRROR_STATE_IN_SYNC;
	st->log_size = m->size;
	st->half_size = m->hdr.half_size;
	st->active_half = m->active;
	for (int i = 0; i < 2; i++) {
		const struct half *h = &m->h[i];
		if (h->state == H_FREE)
			continue;
		st->used_bytes += h->tail;
		/* Records the image lacks and a takeover would need. */
		if (m->state != MIRROR_STATE_OFF && h->last_seq > m->hdr.cp_seq)
			st->lag_bytes += h->tail - (h->image < h->tail ? h->image : h->tail);
	}
	st->last_seq = m->placed_seq;
	st->cp_seq = m->hdr.cp_seq;
	st->replicated_seq = m->repl_seq;
	st->records = m->n_records;
	st->record_bytes = m->n_record_bytes;
	st->xfers = m->n_xfers;
	st->xfer_bytes = m->n_xfer_bytes;
	st->checkpoints = m->n_cps;
	st->half_switches = m->n_switches;
	st->space_waits = m->n_space_waits;
	st->resyncs = m->n_resyncs;
	st->suspend_timeouts = m->n_suspend_timeouts;
	st->writes_waiting = m->wait_space.n;
	st->writes_unlogged = m->wait_logged.n;
	st->xfers_inflight = m->ring_count;
	st->cp_running = m->cp_running || m->cp_want > m->hdr.cp_seq;
	st->idle = !st->cp_running && !m->ring_count && !m->hdr_dirty && !m->hdr_pending &&
		   !m->sync_inflight && !m->wait_space.n && !m->wait_logged.n &&
		   (!image_follows(m) || m->h[0].state == H_FREE || m->h[0].sent == m->h[0].tail) &&
		   (!image_follows(m) || m->h[1].state == H_FREE || m->h[1].sent == m->h[1].tail);
}
