/* Private to the datapath's files: datapath.c (export handles, the request
 * path, the fencing gate and held requests), datapath_write.c (the logged
 * and unlogged write paths and consistency points) and datapath_vol.c (the
 * per-volume hooks of relocation and volume move). */
#ifndef DUET_NODE_DATAPATH_INT_H
#define DUET_NODE_DATAPATH_INT_H

#include "node/node_int.h"

#include "mirror/mirror.h"
#include "nbd/nbd.h"
#include "store/store.h"

/* A volume as the datapath serves it: the export handle. One per volume,
 * shared by every connection (and the proxy's serving side), kept until
 * the datapath goes: the range lock orders overlapping writes across all of
 * them. */
struct dp_vol {
	struct store_volume *v;
	struct node_datapath *b;
	struct dp_vol *next;
	struct mirror_vol_id id; /* the volume's uuid, as records name it */
	struct mirror_rangelock rl;
	bool dirty;	       /* written since the last consistency point */
	struct store_io cp_io; /* its fdatasync for a consistency point */
	struct node_vol_stats st;
	unsigned opens; /* export handles open (clients, forwarded ones included) */
	bool deleted;	/* its store volume is deleted: freed once unused */
	/* Relocation (relocate.c): owned by the partner now (not listed, not
	 * opened, requests refused with -EXDEV), or on its way there (requests
	 * refused), and this volume's requests at the store (and its
	 * consistency point's fdatasync). */
	bool away, leaving;
	uint64_t inflight;
	/* Volume move (move.c): the copy every write also goes to; gone: the
	 * volume left this shelf (refused like away, not counted). */
	struct node_move_sink *sink;
	bool gone;
	uint64_t unordered; /* writes at the store without the range lock (no log) */
};

/* One NBD command on its way through the store. Recycled on a free list so
 * the hot path does not allocate. A logged write (WRITE, WRITE_ZEROES,
 * TRIM with the NVRAM log on) also carries its record, its range in the
 * volume's lock and two halves of a completion: logged and stored. */
struct dp_io {
	struct store_io sio;
	struct nbd_io *nio;
	struct node_datapath *b;
	struct dp_io *next_free;
	struct dp_vol *bv;
	struct mirror_write mw;
	struct mirror_range range;
	struct mirror_flush mf;
	struct store_io tio; /* its copy's half during a volume move (move.c) */
	unsigned pending;    /* of logged, stored (and copied) */
	int log_rc, store_rc;
	bool granted;	   /* held after its range was granted (lw_start) */
	bool unordered;	   /* counted in its volume's unordered */
	uint64_t start_ns; /* when the store got it, for the latency histogram */
};

struct node_datapath {
	struct node *node;
	struct store *store;
	const char *what; /* "own" or "partner", for logs */
	struct mirror *m; /* NULL with [mirror] mirror = off, and for the partner's shelf */
	bool serving;	  /* false: every request fails with ESHUTDOWN (fenced) */
	/* Requests that found the I/O lease closed, in arrival order (linked
	 * through a pooled dp_io each), until io_resume or a fence. */
	struct dp_io *held_head, *held_tail;
	uint64_t n_held;
	bool drop_fua;	    /* durability = local-sync: the synced log stands for FUA */
	bool write_through; /* every write FUA (no log covers this shelf's volumes) */
	/* What a failed store result becomes (node_datapath_set_error_hook). */
	int (*err_hook)(void *arg, int result);
	void *err_arg;
	struct dp_io *free_list;
	struct dp_vol *vols;
	uint64_t inflight;
	uint64_t allocated;
	/* The consistency point in progress (node_datapath_checkpoint). */
	mirror_done_fn cp_done;
	void *cp_arg;
	unsigned cp_pending;
	int cp_rc;
};

/* datapath.c */
struct dp_vol *dp_vol_get(struct node_datapath *b, struct store_volume *v,
			  const struct store_volume_info *vi);
void dp_vol_maybe_free(struct dp_vol *bv);
void dp_bio_finish(struct dp_io *bio, int result);
int dp_store_result(struct node_datapath *b, int result);
bool dp_io_allowed(struct node_datapath *b);
void dp_hold_bio(struct node_datapath *b, struct dp_io *bio);

/* datapath_write.c */
void dp_logged_write(struct node_datapath *b, struct dp_io *bio);
void dp_nl_write(struct node_datapath *b, struct dp_io *bio);
void dp_lw_start(struct dp_io *bio);
void dp_lw_flushed(struct mirror_flush *f, int result);

#endif
