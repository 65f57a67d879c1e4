/* Volume move between shelves (docs/RELOCATION.md, "Volume move"): the
 * volume's data is copied to the partner's shelf while clients keep reading
 * and writing it, then it is relocated there: afterwards it is one of the
 * partner's own volumes (on its shelf, owned by it, under its log).
 *
 * On the owner (this node), one move at a time:
 *   1. record: the source's metadata gets {"move": {"to": PARTNER}}
 *      (durable) before anything exists on the other shelf;
 *   2. copy: the copy .NAME.move.img is made on the partner's shelf (the
 *      shelf this node opens for relocated volumes); from then on every
 *      write of the volume also goes to the copy, under the same range lock
 *      as the source's write (datapath.c, sink); a copier goes through the
 *      volume in chunks, each under the range lock of its bytes, reading the
 *      source and writing the copy, holes skipped, fewer chunks in flight
 *      while clients have requests at the datapath;
 *   3. cut-over: a relocation (relocate.c) whose step 4 is the commit:
 *      after leaving, drain and the consistency point, the copy is
 *      fdatasync'ed, renamed NAME.img and given NAME.meta naming the partner
 *      (the commit point, store/move.c), then the source is deleted. The
 *      partner loads the new volume at its next look at its shelf and
 *      adopts it as it adopts a relocated one.
 * --abort, an error, or a takeover before the commit: the copy is removed
 * and the record cleared (rolled back). After a crash the shelves decide
 * (store_move_settle): the node that opens the source shelf next (this one
 * at boot, or the partner at takeover) rolls forward (deletes the source)
 * when the target shelf holds the committed NAME.meta, else rolls back.
 * It logs which. Never two live copies: the source is never served once a
 * committed copy exists, and the copy is never loaded before its commit. */
#define LOG_MODULE "move"
#include "node/node_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "ccm/ccm.h"
#include "mirror/mirror.h"
#include "nbd/nbd.h"
#include "node/move_copier.h"
#include "node/move_plan.h"
#include "proxy/proxy.h"
#include "store/store.h"

#define MOVE_CHUNK   (1u << 20)
#define MOVE_SLOTS   MOVE_PLAN_SLOTS
#define MOVE_POLL_NS (1 * NS_PER_MS) /* waiting for in-flight copies to end */
#define NAME_LEN     64

enum move_state { MS_IDLE, MS_COPYING, MS_CUTOVER, MS_STOPPING };

static const char *const state_names[] = {"idle", "copying", "cutover", "stopping"};

struct move_chunk {
	struct node_move *m;
	struct mirror_range range;
	struct move_copy_job job; /* on a copier thread while locked */
	void *buf;
	bool locked; /* holds its range of the volume's write lock */
};

struct names {
	char (*name)[NAME_LEN];
	unsigned n, cap;
};

struct node_move {
	struct node *n;
	enum move_state state;
	char name[NAME_LEN];
	char to[16];
	struct store_volume *src;   /* on the own shelf */
	struct store *rstore;	    /* the partner's shelf */
	struct node_move_sink sink; /* the copy, written by the datapath too */
	struct move_plan plan;	    /* the copier's decisions */
	struct move_pace pace;	    /* ... on the clients' figures */
	struct move_copier *copier; /* its threads (made at the first move) */
	struct loop_timer pace_timer;
	uint64_t total;
	uint64_t done, copied; /* done: below it all copied; copied: data bytes */
	struct move_chunk chunk[MOVE_SLOTS];
	struct loop_timer timer;
	int err;      /* why it stops (0: --abort) */
	char why[96]; /* the stop's reason, for the log */
	uint64_t start_ns, cut_ns;
	bool pumping;	      /* in pump(): chunks ending inline do not recurse */
	bool waiting;	      /* copied, the partner's session down */
	uint64_t moved;	      /* completed from here */
	struct names partner; /* the partner's volume list at the last look */
	char last[320];
};

static void pump(struct node_move *m);

/* ---- the end of a move ---- */

static void finish(struct node_move *m, int rc, const char *what)
{
	uint64_t ms = (loop_now_ns() - m->start_ns) / NS_PER_MS;

	snprintf(m->last, sizeof(m->last),
		 "%s to %s's shelf: %s after %llu ms (%llu of %llu bytes)", m->name, m->to, what,
		 (unsigned long long)ms, (unsigned long long)m->done, (unsigned long long)m->total);
	if (rc < 0)
		LOG_WARN("move of %s", m->last);
	else
		LOG_INFO("move of %s", m->last);
	loop_timer_cancel(m->n->loop, &m->pace_timer);
	m->state = MS_IDLE;
	m->src = NULL;
	m->sink.target = NULL;
}

/* Nothing of the copy is in flight any more: remove it and the record (a
 * fenced node touches no shelf: the taker settles it). */
static void rollback(struct node_move *m)
{
	struct node *n = m->n;
	struct store_volume *v = store_volume_find(n->store, m->name);
	char what[200];

	store_move_target_drop(m->rstore, m->sink.target);
	if (!n->fenced && v == m->src && v && store_volume_set_move(v, NULL) < 0)
		LOG_ERROR("move of %s: the record stays in its metadata (settled at the next "
			  "start)",
			  m->name);
	snprintf(what, sizeof(what), "rolled back (%s), the volume stays on %s's shelf", m->why,
		 n->cfg.node.id);
	finish(m, m->err ? m->err : -ECANCELED, what);
}

static void stop_poll(struct loop_timer *t)
{
	struct node_move *m = t->arg;

	if (m->plan.n_busy || m->sink.inflight) {
		loop_timer_arm(m->n->loop, &m->timer, MOVE_POLL_NS);
		return;
	}
	rollback(m);
}

/* Stop copying: detach the copy, wait for what is in flight, roll back. */
static void stop(struct node_move *m, int err, const char *why)
{
	if (m->state != MS_COPYING)
		return;
	m->state = MS_STOPPING;
	m->err = err;
	snprintf(m->why, sizeof(m->why), "%s", why);
	node_datapath_vol_sink(m->n->dp, m->name, NULL);
	loop_timer_cancel(m->n->loop, &m->timer);
	loop_timer_cancel(m->n->loop, &m->pace_timer);
	stop_poll(&m->timer);
}

/* ---- the cut-over (a relocation whose step 4 is the commit) ---- */

/* Test hook: die right after step @p point ("commit": before the source's
 * delete; "delete": before the partner hears of it) when the file
 * DUET_TEST_MOVE_CRASH_FILE exists and holds that word. */
static void test_crash(const char *point)
{
	const char *path = getenv("DUET_TEST_MOVE_CRASH_FILE");
	char buf[16] = "";
	FILE *f = path ? fopen(path, "r") : NULL;

	if (!f)
		return;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	if (!strncmp(buf, point, strlen(point)))
		raise(SIGKILL);
}

static int cut(struct node *n, const char *name)
{
	struct node_move *m = n->move;
	struct store_volume *v;
	int rc;

	if (!m || !m->sink.target)
		return -ESHUTDOWN; /* shutting down */
	if (m->sink.err || m->sink.inflight)
		return m->sink.err ? m->sink.err : -EBUSY;
	if (n->pstore || n->fenced)
		return -EBUSY; /* a takeover began: not now */
	rc = store_move_target_commit(m->rstore, m->sink.target, m->to);
	if (rc < 0)
		return rc;
	/* Committed: the copy is the volume. The source goes. */
	m->sink.target = NULL;
	node_datapath_vol_sink(n->dp, name, NULL);
	node_datapath_vol_forget(n->dp, name);
	test_crash("commit");
	v = store_volume_find(n->store, name);
	if (v && store_volume_delete(n->store, v) < 0)
		LOG_ERROR("move of %s: the source could not be deleted (removed at the next "
			  "start: the committed copy wins)",
			  name);
	test_crash("delete");
	return 0;
}

static void cut_ended(struct node *n, int rc)
{
	struct node_move *m = n->move;
	char what[200];

	if (!m)
		return; /* shutting down */
	if (rc < 0 && m->sink.target) {
		/* Not committed: the relocation serves it here again; the copy
		 * and the record go. */
		m->state = MS_COPYING;
		stop(m, rc, strerror(-rc));
		return;
	}
	m->moved++;
	snprintf(what, sizeof(what),
		 "done, cut-over %llu ms, %llu data bytes copied, %llu probes, clients hurt in "
		 "%llu of %llu windows",
		 (unsigned long long)((loop_now_ns() - m->cut_ns) / NS_PER_MS),
		 (unsigned long long)m->copied, (unsigned long long)m->pace.probes,
		 (unsigned long long)m->pace.hurt_windows, (unsigned long long)m->pace.windows);
	finish(m, 0, what);
}

/* Whether the partner can adopt the volume now: its session is up. */
static bool partner_up(struct node *n)
{
	struct ccm_status st;

	if (!n->ccm)
		return false;
	ccm_get_status(n->ccm, &st);
	return st.state == CCM_SESSION_UP;
}

static void cut_over(struct node_move *m)
{
	char err[160];
	int rc;

	if (m->sink.err) {
		stop(m, m->sink.err, "a write to the copy failed");
		return;
	}
	if (!partner_up(m->n)) {
		/* Copied, and every write still reaches both copies: wait for
		 * the partner (or a takeover, which rolls back; or --abort). */
		if (!m->waiting)
			LOG_WARN("move of %s: copied; waiting for %s's session to cut over",
				 m->name, m->to);
		m->waiting = true;
		loop_timer_arm(m->n->loop, &m->timer, 100 * MOVE_POLL_NS);
		return;
	}
	m->waiting = false;
	m->state = MS_CUTOVER;
	m->cut_ns = loop_now_ns();
	LOG_INFO("move of %s: copied (%llu data bytes), cutting over to %s", m->name,
		 (unsigned long long)m->copied, m->to);
	rc = node_reloc_start_cut(m->n, m->name, cut, cut_ended, err, sizeof(err));
	if (rc == -EBUSY) {
		/* A relocation (or a takeover, which stops the move) runs:
		 * try again shortly. */
		m->state = MS_COPYING;
		loop_timer_arm(m->n->loop, &m->timer, 10 * MOVE_POLL_NS);
	} else if (rc < 0) {
		m->state = MS_COPYING;
		LOG_ERROR("move of %s: cannot cut over: %s", m->name, err);
		stop(m, rc, "the cut-over was refused");
	}
}

/* ---- the copier (its decisions in move_plan.c) ---- */

static void chunk_end(struct move_chunk *c, int result)
{
	struct node_move *m = c->m;
	uint64_t done;

	if (c->locked)
		node_datapath_vol_unlock(m->n->dp, m->name, &c->range);
	c->locked = false;
	done = move_plan_end(&m->plan, (int)(c - m->chunk), loop_now_ns());
	if (result < 0 && m->state == MS_COPYING) {
		LOG_ERROR("move of %s: copying at %llu: %s", m->name,
			  (unsigned long long)c->job.offset,
			  result == -EAGAIN ? "the fencing gate closed" : strerror(-result));
		stop(m, result, "a copy failed");
		return;
	}
	if (m->state != MS_COPYING)
		return;
	m->done = done;
	if (!m->pumping)
		pump(m);
}

/* Back from a copier thread, on the reactor: the chunk's data (holes
 * skipped) is on the copy; its range opens to client writes again. */
static void chunk_copied(struct move_copy_job *job)
{
	struct move_chunk *c = container_of(job, struct move_chunk, job);

	if (job->result == 0)
		c->m->copied += job->data;
	chunk_end(c, job->result);
}

/* The chunk's range is ours: no client write of it runs until it is
 * copied, and every one before it reached both copies. The copy itself
 * runs on a copier thread. */
static void chunk_granted(struct mirror_range *r)
{
	struct move_chunk *c = r->arg;
	struct node_move *m = c->m;

	c->locked = true;
	if (m->state != MS_COPYING || !m->sink.target) {
		chunk_end(c, 0);
		return;
	}
	move_plan_started(&m->plan, loop_now_ns());
	c->job.src = m->src;
	c->job.dst = m->sink.target;
	c->job.buf = c->buf;
	c->job.buflen = MOVE_CHUNK;
	c->job.done = chunk_copied;
	move_copier_submit(m->copier, &c->job);
}

/* Test hook: a pause after each chunk, so that a test can act while a
 * move copies. */
static uint64_t test_delay_ns(void)
{
	const char *d = getenv("DUET_TEST_MOVE_CHUNK_DELAY_MS");

	return d ? strtoull(d, NULL, 10) * NS_PER_MS : 0;
}

/* Hand out chunks as the plan allows: one per copier thread while the copy
 * does not hurt the clients (the pace); while it does, one at a time,
 * idling twice as long as the last one took; none during a probe. */
static void pump(struct node_move *m)
{
	struct node *n = m->n;
	bool clients = move_pace_throttled(&m->pace);
	unsigned limit;
	uint64_t wait, off, len;
	int slot;

	if (m->state != MS_COPYING)
		return;
	if (n->fenced) {
		stop(m, -ESHUTDOWN, "fenced");
		return;
	}
	if (m->sink.err) {
		stop(m, m->sink.err, "a client write to the copy failed");
		return;
	}
	if (node_datapath_vol_unordered(n->dp, m->name)) {
		/* Writes from before the copy was attached, outside the lock. */
		loop_timer_arm(n->loop, &m->timer, MOVE_POLL_NS);
		return;
	}
	if (move_pace_idle(&m->pace) && !move_plan_complete(&m->plan))
		return; /* a probe: the pace timer pumps after it */
	wait = move_plan_wait(&m->plan, clients, loop_now_ns());
	if (wait) {
		loop_timer_arm(n->loop, &m->timer, wait);
		return;
	}
	limit = MIN(move_plan_limit(&m->plan, clients), (unsigned)MOVE_COPIER_THREADS);
	m->pumping = true;
	while (m->state == MS_COPYING &&
	       (slot = move_plan_next(&m->plan, limit, &off, &len)) >= 0) {
		struct move_chunk *c = &m->chunk[slot];
		int rc;
		memset(&c->job, 0, sizeof(c->job));
		c->job.offset = off;
		c->job.length = len;
		rc = node_datapath_vol_lock(n->dp, m->name, &c->range, off, len, chunk_granted, c);
		if (rc == 1)
			chunk_granted(&c->range);
		else if (rc < 0)
			chunk_end(c, rc);
		if (m->plan.delay_ns) {
			/* One at a time: a hole ended inline waits for its pause. */
			wait = move_plan_wait(&m->plan, clients, loop_now_ns());
			if (wait)
				loop_timer_arm(n->loop, &m->timer, wait);
			break;
		}
	}
	m->pumping = false;
	if (m->state == MS_COPYING && move_plan_complete(&m->plan)) {
		m->done = m->total;
		loop_timer_cancel(n->loop, &m->pace_timer);
		cut_over(m);
	}
}

static void timer_fire(struct loop_timer *t)
{
	struct node_move *m = t->arg;

	if (m->state == MS_STOPPING)
		stop_poll(t);
	else if (m->state == MS_COPYING)
		pump(m);
}

/* ---- pacing (its decisions in move_plan.c) ---- */

struct figures {
	const char *name;
	uint64_t count, sum_ns;
};

static void figures_of(void *arg, const char *name, const struct node_vol_stats *st)
{
	struct figures *f = arg;

	if (!strcmp(name, f->name)) {
		f->count += st->lat_count;
		f->sum_ns += st->lat_sum_ns;
	}
}

/* The volume's client requests completed so far and their latency sum
 * (every port's: the partner's forwarded ones come through here too). */
static void read_figures(struct node_move *m, uint64_t *count, uint64_t *sum_ns)
{
	struct figures f = {.name = m->name};

	node_datapath_each_volume(m->n->dp, figures_of, &f);
	*count = f.count;
	*sum_ns = f.sum_ns;
}

/* Every pacing window while copying: feed the pace, and pump when it
 * changed its mind (a probe ended, and with it any throttling). */
static void pace_fire(struct loop_timer *t)
{
	struct node_move *m = t->arg;
	bool idle = move_pace_idle(&m->pace), hurt = move_pace_throttled(&m->pace);
	uint64_t count, sum;

	if (m->state != MS_COPYING)
		return;
	read_figures(m, &count, &sum);
	move_pace_sample(&m->pace, count, sum, loop_now_ns());
	loop_timer_arm(m->n->loop, &m->pace_timer, MOVE_PACE_WINDOW_NS);
	if ((idle && !move_pace_idle(&m->pace)) || (hurt && !move_pace_throttled(&m->pace)))
		pump(m);
}

/* ---- starting ---- */

static int start(struct node *n, const char *name, const char *shelf, char *err, size_t errlen)
{
	struct node_move *m = n->move;
	struct store_volume *v;
	int rc;

	if (m->state != MS_IDLE) {
		snprintf(err, errlen, "a move (%s) is in progress", m->name);
		return -EBUSY;
	}
	if (!strcmp(shelf, n->cfg.node.id)) {
		if (strlen(name) < NAME_LEN && store_volume_find(n->store, name))
			snprintf(err, errlen, "volume %s is on %s's shelf already", name, shelf);
		else
			snprintf(err, errlen,
				 "volume %s is not on %s's shelf: a move runs on the node whose "
				 "shelf holds the data (relocate it back there first)",
				 name, shelf);
		return -EINVAL;
	}
	if (!n->proxy || strcmp(shelf, n->cfg.ic.partner)) {
		snprintf(err, errlen, "no shelf %s: the pair's shelves are %s and %s", shelf,
			 n->cfg.node.id, n->proxy ? n->cfg.ic.partner : "(no partner)");
		return -EINVAL;
	}
	if (n->fenced || n->taken_at_boot || n->pstore) {
		snprintf(err, errlen, "not while a takeover stands");
		return -EBUSY;
	}
	v = strlen(name) < NAME_LEN ? store_volume_find(n->store, name) : NULL;
	if (!v || !node_datapath_vol_here(n->dp, name)) {
		snprintf(err, errlen,
			 "volume %s is not on this node's shelf and served here: run the move on "
			 "the node that owns it",
			 name);
		return -ENOENT;
	}
	if (!m->copier && (rc = move_copier_create(n->loop, &m->copier)) < 0) {
		snprintf(err, errlen, "cannot start the copier: %s", strerror(-rc));
		return rc;
	}
	if (!n->cfg.monitor.partner_shelf[0] || !(m->rstore = node_reloc_rstore(n))) {
		snprintf(err, errlen,
			 "the partner's shelf is not reachable ([monitor] "
			 "partner_shelf)");
		return -EINVAL;
	}
	/* The record first: a crash from here on is settled from it. */
	rc = store_volume_set_move(v, shelf);
	if (rc < 0) {
		snprintf(err, errlen, "cannot write the move record: %s", strerror(-rc));
		return rc;
	}
	rc = store_move_target_create(m->rstore, v, &m->sink.target);
	if (rc < 0) {
		store_volume_set_move(v, NULL);
		snprintf(err, errlen, "cannot create the copy on %s's shelf: %s", shelf,
			 rc == -EEXIST ? "it has a volume of that name" : strerror(-rc));
		return rc;
	}
	snprintf(m->name, sizeof(m->name), "%s", name);
	snprintf(m->to, sizeof(m->to), "%s", shelf);
	m->src = v;
	m->total = store_volume_size(v);
	move_plan_init(&m->plan, m->total, MOVE_CHUNK, test_delay_ns());
	m->done = m->copied = 0;
	m->sink.inflight = m->sink.writes = 0;
	m->sink.err = 0;
	m->err = 0;
	m->waiting = false;
	m->start_ns = loop_now_ns();
	m->state = MS_COPYING;
	{
		uint64_t count, sum;
		read_figures(m, &count, &sum);
		move_pace_init(&m->pace, count, sum, m->start_ns);
	}
	loop_timer_arm(n->loop, &m->pace_timer, MOVE_PACE_WINDOW_NS);
	/* From here every write reaches both copies; chunks are copied under
	 * the range lock, after any write of their bytes in flight now. */
	node_datapath_vol_sink(n->dp, name, &m->sink);
	LOG_INFO("moving %s (%llu bytes) to %s's shelf", name, (unsigned long long)m->total, shelf);
	pump(m);
	return 0;
}

int node_move_cmd(struct node *n, struct json_object *req, struct json_object *resp, char *err,
		  size_t errlen)
{
	struct json_object *jn, *js, *ja;
	struct node_move *m = n->move;
	const char *name;
	int rc;

	if (!json_object_object_get_ex(req, "name", &jn) ||
	    !json_object_is_type(jn, json_type_string)) {
		snprintf(err, errlen, "volume_move wants a name");
		return -EINVAL;
	}
	name = json_object_get_string(jn);
	if (json_object_object_get_ex(req, "abort", &ja) && json_object_get_boolean(ja)) {
		if (m->state == MS_IDLE || strcmp(m->name, name)) {
			snprintf(err, errlen, "no move of %s in progress here", name);
			return -ENOENT;
		}
		if (m->state != MS_COPYING) {
			snprintf(err, errlen, "the move of %s is %s: too late to abort", name,
				 state_names[m->state]);
			return -EBUSY;
		}
		stop(m, 0, "aborted");
		jobj_add_str(resp, "volume", name);
		jobj_add_str(resp, "state", "aborted");
		return 0;
	}
	if (!json_object_object_get_ex(req, "shelf", &js) ||
	    !json_object_is_type(js, json_type_string)) {
		snprintf(err, errlen, "volume_move wants a shelf (a node name)");
		return -EINVAL;
	}
	rc = start(n, name, json_object_get_string(js), err, errlen);
	if (rc < 0)
		return rc;
	jobj_add_str(resp, "volume", name);
	jobj_add_str(resp, "to", m->to);
	jobj_add_u64(resp, "total_bytes", m->total);
	return 0;
}

/* ---- status ---- */

static struct json_object *progress_json(struct node_move *m)
{
	struct json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	jobj_add_str(o, "state", state_names[m->state]);
	jobj_add_str(o, "to", m->to);
	jobj_add_u64(o, "done_bytes", m->done);
	jobj_add_u64(o, "total_bytes", m->total);
	return o;
}

void node_move_status_json(struct node *n, struct json_object *volumes, struct json_object *root)
{
	struct node_move *m = n->move;
	size_t len = volumes ? json_object_array_length(volumes) : 0;

	if (!m)
		return;
	for (size_t i = 0; m->state != MS_IDLE && i < len; i++) {
		struct json_object *o = json_object_array_get_idx(volumes, i), *jn, *jp;
		if (!json_object_object_get_ex(o, "name", &jn) ||
		    strcmp(json_object_get_string(jn), m->name) ||
		    (json_object_object_get_ex(o, "port", &jp) &&
		     strcmp(json_object_get_string(jp), "direct")))
			continue;
		json_object_object_add(o, "move", progress_json(m));
	}
	if (root) {
		struct json_object *o = progress_json(m);
		if (!o)
			return;
		if (m->state != MS_IDLE)
			jobj_add_str(o, "volume", m->name);
		jobj_add_u64(o, "client_writes_copied", m->sink.writes);
		jobj_add_u64(o, "moved", m->moved);
		jobj_add_str(o, "last", m->last);
		json_object_object_add(root, "move", o);
	}
}

/* ---- after a crash, and takeover ---- */

/* Settle the interrupted moves of shelf @p s, whose copies were made on
 * the shelf whose volumes directory is @p tfd: roll forward (the source
 * deleted) or back (the copy removed, the record cleared), logged. Names
 * of volumes rolled forward onto the own shelf are adopted here when
 * @p adopt. */
static void settle(struct node *n, struct store *s, int tfd, bool adopt)
{
	for (unsigned i = store_volume_count(s); i-- > 0;) {
		struct store_volume *v = store_volume_at(s, i);
		char name[NAME_LEN], to[16];
		int rc;
		if (!store_volume_move_to(v)[0])
			continue;
		snprintf(name, sizeof(name), "%s", store_volume_name(v));
		snprintf(to, sizeof(to), "%s", store_volume_move_to(v));
		rc = tfd < 0 ? -ENOENT : store_move_settle(v, tfd);
		if (rc < 0) {
			LOG_ERROR("interrupted move of %s to %s's shelf: cannot tell whether it "
				  "committed (%s): the source stays, not settled",
				  name, to, strerror(-rc));
		} else if (rc == 1) {
			if (store_volume_delete(s, v) == 0)
				store_volume_release(v);
			LOG_WARN("interrupted move of %s to %s's shelf had committed: rolled "
				 "forward (the source removed; the volume is on %s's shelf)",
				 name, to, to);
			if (adopt) {
				struct store_volume *nv;
				int x = store_volume_load(n->store, name, &nv);
				if (x == 0 ||
				    (x == -EEXIST && !node_datapath_vol_here(n->dp, name)))
					node_reloc_adopt(n, name);
			}
		} else {
			store_volume_set_move(v, NULL);
			LOG_WARN("interrupted move of %s to %s's shelf had not committed: rolled "
				 "back (the copy removed; the volume stays where it was)",
				 name, to);
		}
	}
}

void node_move_boot(struct node *n)
{
	char dir[PATH_MAX + 16];
	bool any = false;
	int fd;

	for (unsigned i = 0; i < store_volume_count(n->store); i++)
		any |= store_volume_move_to(store_volume_at(n->store, i))[0] != '\0';
	if (!any)
		return;
	snprintf(dir, sizeof(dir), "%s/volumes", n->cfg.monitor.partner_shelf);
	fd = n->cfg.monitor.partner_shelf[0] ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	settle(n, n->store, fd, false);
	if (fd >= 0)
		close(fd);
}

void node_move_takeover(struct node *n)
{
	struct node_move *m = n->move;

	if (m && m->state == MS_COPYING)
		stop(m, -ECONNRESET, "the partner is taken over");
	if (n->pstore)
		settle(n, n->pstore, store_voldirfd(n->store), true);
	/* A move the partner committed and finished just before it died,
	 * before this node adopted the volume: serve it now. */
	node_move_load_new(n, true);
}

/* Load volume @p name if its metadata is on the own shelf and this node's
 * table lacks it: away until adopted (relocate.c), or adopted at once. */
static void try_load(struct node *n, const char *name, bool adopt)
{
	char meta[NAME_LEN + 8];
	struct store_volume *v;
	struct stat st;

	if (store_name_valid(name) < 0 || store_volume_find(n->store, name))
		return;
	snprintf(meta, sizeof(meta), "%s.meta", name);
	if (fstatat(store_voldirfd(n->store), meta, &st, 0) < 0 ||
	    store_volume_load(n->store, name, &v) < 0)
		return;
	if (adopt)
		node_reloc_adopt(n, name);
	else
		node_datapath_vol_set(n->dp, name, 1, 0);
}

static void names_add(void *arg, const char *name, const char *desc)
{
	struct names *l = arg;

	(void)desc;
	if (l->n == l->cap) {
		unsigned cap = l->cap ? 2 * l->cap : 16;
		void *p = realloc(l->name, cap * sizeof(*l->name));
		if (!p)
			return;
		l->name = p;
		l->cap = cap;
	}
	snprintf(l->name[l->n++], NAME_LEN, "%s", name);
}

static bool names_has(const struct names *l, const char *name)
{
	for (unsigned i = 0; i < l->n; i++)
		if (!strcmp(l->name[i], name))
			return true;
	return false;
}

void node_move_load_new(struct node *n, bool adopt)
{
	struct node_move *m = n->move;
	struct names now = {0};
	/* Opened anew: a second host's cache answers a re-read of an open
	 * directory with its old listing. */
	int fd = openat(store_voldirfd(n->store), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *e;
	DIR *d;

	/* The partner's volumes that left its list since the last look: a
	 * move here ends so. Looked up by name, which a second host's cache
	 * of the shelf answers even when its cached listing is old. */
	if (m && n->proxy && proxy_backend_ops()->list(n->proxy, names_add, &now) == 0) {
		for (unsigned i = 0; i < m->partner.n; i++)
			if (!names_has(&now, m->partner.name[i]))
				try_load(n, m->partner.name[i], adopt);
		free(m->partner.name);
		m->partner = now;
	} else {
		free(now.name);
	}
	if (fd < 0)
		return;
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char name[NAME_LEN];
		if (e->d_name[0] == '.' || len < 6 || len - 5 >= NAME_LEN ||
		    strcmp(e->d_name + len - 5, ".meta"))
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(len - 5), e->d_name);
		try_load(n, name, adopt);
	}
	closedir(d);
}

/* ---- life ---- */

void node_move_stop(struct node *n)
{
	if (n->move)
		stop(n->move, -ESHUTDOWN, "shutting down");
}

bool node_move_busy(const struct node *n)
{
	const struct node_move *m = n->move;

	return m && (m->plan.n_busy || m->sink.inflight || m->state == MS_STOPPING);
}

bool node_move_moving(const struct node *n, const char *name)
{
	const struct node_move *m = n->move;

	return m && m->state != MS_IDLE && !strcmp(m->name, name);
}

int node_move_create(struct node *n)
{
	struct node_move *m = calloc(1, sizeof(*m));

	if (!m)
		return -ENOMEM;
	m->n = n;
	for (unsigned i = 0; i < MOVE_SLOTS; i++) {
		m->chunk[i].m = m;
		if (posix_memalign(&m->chunk[i].buf, 4096, MOVE_CHUNK)) {
			while (i-- > 0)
				free(m->chunk[i].buf);
			free(m);
			return -ENOMEM;
		}
	}
	loop_timer_init(&m->timer, timer_fire, m);
	loop_timer_init(&m->pace_timer, pace_fire, m);
	n->move = m;
	return 0;
}

void node_move_destroy(struct node *n)
{
	struct node_move *m = n->move;

	if (!m)
		return;
	loop_timer_cancel(n->loop, &m->timer);
	loop_timer_cancel(n->loop, &m->pace_timer);
	move_copier_destroy(m->copier);
	for (unsigned i = 0; i < MOVE_SLOTS; i++)
		free(m->chunk[i].buf);
	free(m->partner.name);
	free(m);
	n->move = NULL;
}
