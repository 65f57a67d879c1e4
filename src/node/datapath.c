/* The node's datapath: the struct nbd_backend_ops behind the NBD listener
 * and the proxy's serving side, tying nbd, store, mirror and monitor.
 *
 * A READ goes to the store; a WRITE, WRITE_ZEROES or TRIM with the NVRAM
 * log on takes its range in the volume's range lock, is appended to the log
 * (mirrored into the partner's image by the mirror) and submitted to the
 * store in parallel; the reply waits for both. FLUSH is a consistency point.
 *
 * Rules kept: no request reaches the log or the store while the I/O lease is
 * closed (it is held, in order, until io_resume or failed on a fence); a
 * reply never precedes the record's "logged" callback; overlapping writes
 * complete in arrival order; the hot path does not allocate (pooled dp_io).
 *
 * This file: export handles, the request path, the fencing gate and held
 * requests. The write paths and consistency points are in datapath_write.c,
 * the hooks of relocation and volume move in datapath_vol.c. */
#define LOG_MODULE "datapath"
#include "node/datapath_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "mirror/mirror.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "store/store.h"

int node_datapath_create(struct node *n, struct store *s, struct mirror *m, const char *what,
			 struct node_datapath **out)
{
	struct node_datapath *b = calloc(1, sizeof(*b));

	if (!b)
		return -ENOMEM;
	b->node = n;
	b->store = s;
	b->what = what;
	b->m = m;
	b->serving = true;
	b->drop_fua = m && n->cfg.mirror.durability == MIRROR_DURABILITY_LOCAL_SYNC;
	*out = b;
	return 0;
}

void node_datapath_destroy(struct node_datapath *b)
{
	if (!b)
		return;
	node_datapath_fail_held(b, -ESHUTDOWN);
	while (b->free_list) {
		struct dp_io *bio = b->free_list;
		b->free_list = bio->next_free;
		free(bio);
	}
	while (b->vols) {
		struct dp_vol *bv = b->vols;
		b->vols = bv->next;
		free(bv);
	}
	free(b);
}

uint64_t node_datapath_inflight(const struct node_datapath *b)
{
	return b ? b->inflight : 0;
}

static int be_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
		   void *arg)
{
	struct node_datapath *b = ctx;
	struct store *s = b->store;
	unsigned count = store_volume_count(s);

	for (unsigned i = 0; i < count; i++) {
		struct store_volume_info info;
		store_volume_get_info(store_volume_at(s, i), &info);
		if (!node_datapath_vol_here(b, info.name))
			continue;
		emit(arg, info.name, "duet volume");
	}
	return 0;
}

/* The volume's datapath state, made on its first open. */
struct dp_vol *dp_vol_get(struct node_datapath *b, struct store_volume *v,
			  const struct store_volume_info *vi)
{
	struct dp_vol *bv;

	for (bv = b->vols; bv; bv = bv->next)
		if (bv->v == v)
			return bv;
	bv = calloc(1, sizeof(*bv));
	if (!bv)
		return NULL;
	if (mirror_vol_id_from_uuid(vi->uuid, &bv->id) < 0) {
		/* Records must name the volume the same way on both nodes. */
		LOG_ERROR("volume %s: bad uuid '%s' in its metadata", vi->name, vi->uuid);
		free(bv);
		return NULL;
	}
	bv->v = v;
	bv->b = b;
	/* Owned by the other node of the pair than the one this datapath
	 * serves for (relocated): not served here. */
	{
		const struct duet_config *c = &b->node->cfg;
		const char *serves = strcmp(b->what, "partner") ? c->node.id : c->ic.partner;
		bv->away = c->ic.partner[0] && strcmp(vi->owner, serves) &&
			   (!strcmp(vi->owner, c->node.id) || !strcmp(vi->owner, c->ic.partner));
	}
	mirror_rangelock_init(&bv->rl);
	bv->next = b->vols;
	b->vols = bv;
	return bv;
}

static int be_open(void *ctx, const char *name, void **handle, struct nbd_export_info *info)
{
	struct node_datapath *b = ctx;
	struct store_volume *v = store_volume_find(b->store, name);
	struct store_volume_info vi;
	struct dp_vol *bv;

	if (!v)
		return -ENOENT;
	store_volume_get_info(v, &vi);
	bv = dp_vol_get(b, v, &vi);
	if (!bv)
		return -ENOMEM;
	if (bv->away)
		return -ENOENT;
	bv->opens++;
	memset(info, 0, sizeof(*info));
	info->size = vi.size;
	info->can_trim = true;
	info->can_zero = true;
	info->can_fast_zero = true;
	info->can_cache = true;
	info->can_flush = true;
	info->can_fua = true;
	/* Every connection reaches the same file through the same descriptor
	 * (O_DIRECT, or one page cache), and FLUSH is an fdatasync of that
	 * file, so a flush on one connection covers writes completed on all of
	 * them. */
	info->can_multi_conn = true;
	info->can_block_status = true;
	info->min_block = 1;
	info->pref_block = 4096;
	snprintf(info->description, sizeof(info->description), "duet volume owned by %s", vi.owner);
	*handle = bv;
	return 0;
}

/* A deleted volume's datapath state and store volume go once nothing
 * uses them: no handle open, nothing in flight. */
void dp_vol_maybe_free(struct dp_vol *bv)
{
	struct node_datapath *b = bv->b;

	if (!bv->deleted || bv->opens || bv->inflight)
		return;
	for (struct dp_vol **pp = &b->vols; *pp; pp = &(*pp)->next) {
		if (*pp == bv) {
			*pp = bv->next;
			break;
		}
	}
	store_volume_release(bv->v);
	free(bv);
}

static void be_close(void *ctx, void *handle)
{
	struct dp_vol *bv = handle;

	(void)ctx;
	bv->opens--;
	dp_vol_maybe_free(bv);
}

/* The bucket of a latency: the smallest i with ns <= 16384 << 2i, found
 * with one count of leading zeros (the fast path pays two clock reads). */
static unsigned lat_bucket(uint64_t ns)
{
	uint64_t v = ns ? (ns - 1) >> NODE_LAT_BASE_SHIFT : 0;
	unsigned i = v ? (unsigned)(64 - __builtin_clzll(v) + 1) / 2 : 0;

	return i < NODE_LAT_BUCKETS ? i : NODE_LAT_BUCKETS;
}

/* Every request of the datapath completes here: counted on its volume
 * (the export handle), with its latency when @p start_ns is known. */
static void io_done(struct nbd_io *io, int result, uint64_t start_ns)
{
	struct dp_vol *bv = io->export_handle;

	if (bv && io->type < NODE_OPS) {
		struct node_vol_stats *st = &bv->st;
		st->requests[io->type]++;
		if (result < 0)
			st->errors[io->type]++;
		else if (io->type == NBD_CMD_READ || io->type == NBD_CMD_WRITE)
			st->bytes[io->type] += io->length;
		if (start_ns) {
			uint64_t ns = loop_now_ns() - start_ns;
			st->lat[lat_bucket(ns)]++;
			st->lat_sum_ns += ns;
			st->lat_count++;
		}
	}
	nbd_io_done(io, result);
}

void dp_bio_finish(struct dp_io *bio, int result)
{
	struct node_datapath *b = bio->b;
	struct nbd_io *nio = bio->nio;
	struct dp_vol *bv = bio->bv;

	b->inflight--;
	bv->inflight--;
	if (bio->unordered) {
		bio->unordered = false;
		bv->unordered--;
	}
	bio->next_free = b->free_list;
	b->free_list = bio;
	/* With a handle open, its close (which may come from inside
	 * nbd_io_done) frees a deleted volume; without, it goes after. */
	bool no_handle = !bv->opens;
	io_done(nio, result, bio->start_ns);
	if (no_handle)
		dp_vol_maybe_free(bv);
}

void node_datapath_each_volume(const struct node_datapath *b,
			       void (*fn)(void *arg, const char *name,
					  const struct node_vol_stats *st),
			       void *arg)
{
	for (const struct dp_vol *bv = b ? b->vols : NULL; bv; bv = bv->next) {
		struct store_volume_info vi;
		if (bv->deleted || bv->gone)
			continue;
		store_volume_get_info(bv->v, &vi);
		fn(arg, vi.name, &bv->st);
	}
}

/* A store (or consistency point) error, as the hook would have it. */
int dp_store_result(struct node_datapath *b, int result)
{
	return result < 0 && b->err_hook ? b->err_hook(b->err_arg, result) : result;
}

static void be_io_done(struct store_io *sio, int result)
{
	struct dp_io *bio = container_of(sio, struct dp_io, sio);

	dp_bio_finish(bio, dp_store_result(bio->b, result));
}

static struct dp_io *bio_get(struct node_datapath *b)
{
	struct dp_io *bio = b->free_list;

	if (bio) {
		b->free_list = bio->next_free;
		return bio;
	}
	bio = malloc(sizeof(*bio));
	if (bio)
		b->allocated++;
	return bio;
}

/* The fencing gate (docs/FAILOVER.md, "Fencing"): shelf I/O only while
 * this node holds its I/O lease. Checked per request, right before it
 * goes to the mirror or the store. */
bool dp_io_allowed(struct node_datapath *b)
{
	struct monitor *mon = b->node->monitor;

	return !mon || monitor_io_allowed(mon);
}

/* The lease is closed (a stall, a stop): keep the request, in order, until
 * the monitor has read the own mailbox again (node_datapath_release_held) or
 * found a takeover mark there (node_datapath_fail_held). */
static void hold(struct node_datapath *b, struct nbd_io *io)
{
	struct dp_io *bio = bio_get(b);

	if (!bio) {
		io_done(io, -ENOMEM, 0);
		return;
	}
	bio->nio = io;
	bio->granted = false;
	dp_hold_bio(b, bio);
}

void dp_hold_bio(struct node_datapath *b, struct dp_io *bio)
{
	if (!b->held_head)
		LOG_WARN("%s volumes: I/O lease closed: holding requests until the own mailbox "
			 "is read again",
			 b->what);
	bio->next_free = NULL;
	if (b->held_tail)
		b->held_tail->next_free = bio;
	else
		b->held_head = bio;
	b->held_tail = bio;
	b->n_held++;
	if (b->node->monitor)
		monitor_io_wait(b->node->monitor);
}

static void submit_io(struct node_datapath *b, struct nbd_io *io, bool fresh);

/* Take the held list off the datapath and hand each request on: @p err 0
 * submits it again (a write whose range was granted goes on from there),
 * else it ends with @p err. */
static void held_drain(struct node_datapath *b, int err)
{
	struct dp_io *bio = b->held_head;
	uint64_t n = b->n_held;

	b->held_head = b->held_tail = NULL;
	b->n_held = 0;
	while (bio) {
		struct dp_io *next = bio->next_free;
		struct nbd_io *io = bio->nio;
		if (bio->granted) {
			/* Counted in flight and holding its range since logged_write. */
			if (!err) {
				dp_lw_start(bio);
			} else {
				mirror_range_unlock(&bio->bv->rl, &bio->range);
				dp_bio_finish(bio, err);
			}
		} else {
			bio->next_free = b->free_list;
			b->free_list = bio;
			if (!err)
				submit_io(b, io, false); /* accepted before: no relocation check */
			else
				io_done(io, err, 0);
		}
		bio = next;
	}
	if (n)
		LOG_INFO("%s volumes: %llu held request%s %s", b->what, (unsigned long long)n,
			 n == 1 ? "" : "s", err ? "failed" : "released");
}

void node_datapath_release_held(struct node_datapath *b)
{
	if (b && b->held_head && dp_io_allowed(b))
		held_drain(b, 0);
}

void node_datapath_fail_held(struct node_datapath *b, int err)
{
	if (b && b->held_head)
		held_drain(b, err);
}

void node_datapath_set_serving(struct node_datapath *b, bool serving)
{
	if (!b)
		return;
	b->serving = serving;
	if (!serving)
		node_datapath_fail_held(b, -ESHUTDOWN);
	else
		node_datapath_release_held(b);
}

uint64_t node_datapath_held(const struct node_datapath *b)
{
	return b ? b->n_held : 0;
}

static int be_block_status(struct store_volume *v, struct nbd_io *io)
{
	struct store_extent ext[64];
	unsigned max = MIN(io->max_extents, (uint32_t)ARRAY_SIZE(ext));
	int n = store_block_status(v, io->offset, io->length, ext, max);

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		io->extents[i].length = ext[i].length;
		io->extents[i].flags = ext[i].hole ? (NBD_STATE_HOLE | NBD_STATE_ZERO) : 0;
	}
	io->n_extents = (uint32_t)n;
	return 0;
}

/* @p fresh: a new request (not one held for the lease, accepted before a
 * relocation began: a relocation's drain waits for those). */
static void submit_io(struct node_datapath *b, struct nbd_io *io, bool fresh)
{
	static const enum store_op ops[] = {
	    [NBD_CMD_READ] = STORE_OP_READ,   [NBD_CMD_WRITE] = STORE_OP_WRITE,
	    [NBD_CMD_FLUSH] = STORE_OP_FLUSH, [NBD_CMD_TRIM] = STORE_OP_TRIM,
	    [NBD_CMD_CACHE] = STORE_OP_CACHE, [NBD_CMD_WRITE_ZEROES] = STORE_OP_WRITE_ZEROES,
	};
	struct dp_vol *bv = io->export_handle;
	struct store_volume *v = bv->v;
	struct dp_io *bio;
	int rc;

	if (bv->deleted) {
		nbd_io_done(io, -ESHUTDOWN);
		return;
	}
	if (!b->serving) {
		io_done(io, -ESHUTDOWN, 0);
		return;
	}
	if (fresh && (bv->away || bv->leaving || bv->gone)) {
		io_done(io, -EXDEV, 0); /* relocated: not executed (relocate.c) */
		return;
	}
	if (b->held_head || !dp_io_allowed(b)) {
		hold(b, io);
		return;
	}
	if (io->type != NBD_CMD_FLUSH) {
		rc = store_check_range(v, io->offset, io->length);
		if (rc < 0) {
			io_done(io, io->type == NBD_CMD_WRITE ? -ENOSPC : rc, 0);
			return;
		}
	}
	if (io->type == NBD_CMD_BLOCK_STATUS) {
		io_done(io, be_block_status(v, io), 0);
		return;
	}
	if (io->type >= ARRAY_SIZE(ops) || io->type == NBD_CMD_DISC) {
		io_done(io, -EINVAL, 0);
		return;
	}
	bio = bio_get(b);
	if (!bio) {
		io_done(io, -ENOMEM, 0);
		return;
	}
	memset(&bio->sio, 0, sizeof(bio->sio));
	bio->b = b;
	bio->nio = io;
	bio->unordered = false;
	bio->start_ns = loop_now_ns();
	bio->sio.op = ops[io->type];
	bio->sio.offset = io->offset;
	bio->sio.length = io->length;
	bio->sio.buf = io->buf;
	bio->sio.done = be_io_done;
	if ((io->flags & NBD_CMD_FLAG_FUA) ||
	    (b->write_through && (io->type == NBD_CMD_WRITE || io->type == NBD_CMD_WRITE_ZEROES ||
				  io->type == NBD_CMD_TRIM)))
		bio->sio.flags |= STORE_F_FUA;
	if (io->flags & NBD_CMD_FLAG_NO_HOLE)
		bio->sio.flags |= STORE_F_NO_HOLE;
	if (io->flags & NBD_CMD_FLAG_FAST_ZERO)
		bio->sio.flags |= STORE_F_FAST_ZERO;
	bio->bv = bv;
	if (b->m) {
		switch (io->type) {
		case NBD_CMD_WRITE:
		case NBD_CMD_WRITE_ZEROES:
		case NBD_CMD_TRIM:
			dp_logged_write(b, bio);
			return;
		case NBD_CMD_FLUSH:
			/* A consistency point (or, with local-sync, the log's
			 * sync): it covers every volume, as FLUSH did. */
			bio->mf.done = dp_lw_flushed;
			b->inflight++;
			bv->inflight++;
			mirror_flush(b->m, &bio->mf);
			return;
		default:
			break;
		}
	}
	if (io->type == NBD_CMD_WRITE || io->type == NBD_CMD_WRITE_ZEROES ||
	    io->type == NBD_CMD_TRIM) {
		if (bv->sink) {
			dp_nl_write(b, bio);
			return;
		}
		bv->dirty = true; /* for node_datapath_checkpoint (giveback drain) */
		bio->unordered = true;
		bv->unordered++;
	}
	b->inflight++;
	bv->inflight++;
	store_submit(v, &bio->sio);
}

static struct dp_vol *vol_of(struct node_datapath *b, const struct store_volume *v)
{
	for (struct dp_vol *bv = b->vols; bv; bv = bv->next)
		if (bv->v == v)
			return bv;
	return NULL;
}

/* Clients of volume @p name on this node's listeners (the own NBD port and
 * the proxy port both serve every volume of the pair). */
static unsigned node_datapath_clients(struct node *n, const char *name)
{
	return nbd_server_export_clients(n->nbd, name) +
	       nbd_server_export_clients(n->proxy_nbd, name);
}

void node_datapath_volume_use(struct node_datapath *b, const struct store_volume *v,
			      struct node_volume_use *u)
{
	struct dp_vol *bv = b ? vol_of(b, v) : NULL;

	memset(u, 0, sizeof(*u));
	if (!bv)
		return;
	u->clients = node_datapath_clients(b->node, store_volume_name(v));
	u->away = bv->away || bv->leaving;
	u->inflight = bv->inflight;
	for (unsigned i = 0; i < NODE_OPS; i++) {
		u->requests += bv->st.requests[i];
		u->errors += bv->st.errors[i];
	}
	u->bytes_read = bv->st.bytes[NBD_CMD_READ];
	u->bytes_written = bv->st.bytes[NBD_CMD_WRITE];
}

int node_datapath_volume_delete(struct node_datapath *b, struct store_volume *v, bool force,
				char *err, size_t errlen)
{
	struct dp_vol *bv = vol_of(b, v);
	const char *name = store_volume_name(v);
	unsigned closed;
	int rc;

	unsigned clients = node_datapath_clients(b->node, name);

	if (bv && (bv->away || bv->leaving)) {
		snprintf(err, errlen, "volume '%s' is relocated to the partner: delete it there",
			 name);
		return -EXDEV;
	}
	if (clients && !force) {
		snprintf(err, errlen,
			 "volume '%s' has %u client%s connected: --force disconnects them", name,
			 clients, clients == 1 ? "" : "s");
		return -EBUSY;
	}
	rc = store_volume_delete(b->store, v);
	if (rc < 0) {
		snprintf(err, errlen, "cannot delete volume '%s': %s", name, strerror(-rc));
		return rc;
	}
	if (!bv) {
		store_volume_release(v);
		return 0;
	}
	/* From here every request on it fails and no client can open it; the
	 * struct goes with the last handle and the last request. */
	bv->deleted = true;
	closed = nbd_server_close_export(b->node->nbd, name, "volume deleted") +
		 nbd_server_close_export(b->node->proxy_nbd, name, "volume deleted");
	if (closed)
		LOG_WARN("volume %s deleted: %u client%s disconnected", store_volume_name(v),
			 closed, closed == 1 ? "" : "s");
	dp_vol_maybe_free(bv);
	return 0;
}

/* A consistency point asked by the node itself (not by a client's FLUSH):
 * counted in flight like a request, so shutdown waits for it. */
struct dp_retire {
	struct mirror_flush mf;
	struct node_datapath *b;
};

static void retire_done(struct mirror_flush *f, int result)
{
	struct dp_retire *r = container_of(f, struct dp_retire, mf);

	if (result < 0)
		LOG_WARN("consistency point after a volume change: %s", strerror(-result));
	r->b->inflight--;
	free(r);
}

void node_datapath_retire_log(struct node_datapath *b)
{
	struct dp_retire *r;

	if (!b || !b->m)
		return;
	r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->b = b;
	r->mf.done = retire_done;
	b->inflight++;
	mirror_flush(b->m, &r->mf);
}

/* A volume's allow list (duetctl volume create --allow) against the
 * client's TLS identities; a name we do not have is left to open. */
static bool be_allowed(void *ctx, const char *name, const char *const *ids, unsigned n_ids)
{
	struct node_datapath *b = ctx;
	struct store_volume *v = store_volume_find(b->store, name);

	return !v || store_volume_allows(v, ids, n_ids);
}

static void be_submit(void *ctx, struct nbd_io *io)
{
	submit_io(ctx, io, true);
}

static const struct nbd_backend_ops ops = {
    .list = be_list,
    .open = be_open,
    .close = be_close,
    .submit = be_submit,
    .allowed = be_allowed,
};

const struct nbd_backend_ops *node_datapath_ops(void)
{
	return &ops;
}

int node_datapath_open_store(struct node *n, const char *shelf, struct store **out)
{
	struct store_opts so;

	config_store_opts(&n->cfg, &so);
	/* Any other shelf is the partner's, which may be running. */
	so.foreign = strcmp(shelf, n->cfg.node.shelf) != 0;
	return store_open(n->loop, shelf, &so, out);
}

int node_datapath_listen(struct node *n)
{
	struct nbd_server_opts o;

	config_nbd_opts(&n->cfg, false, &o);
	o.max_clients = n->max_clients;
	o.budget = n->nbd_budget;
	/* Every volume of the pair: the own ones here, the partner's forwarded. */
	return nbd_server_create(n->loop, &o, node_route_ops(), n, &n->nbd);
}
