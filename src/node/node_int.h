/* Private to src/node: the node object and the pieces of duetd, grouped by
 * the file that defines them.
 *
 * Layering: node.c sequences boot and shutdown and calls every file below;
 * failover.c calls datapath.c and mirror_host.c; mirror_host.c calls
 * mirror_ccm.c and datapath.c (consistency points); control.c calls
 * commands.c, which reads the others' status; datapath.c and mirror_ccm.c
 * call no other file of the node. */
#ifndef DUET_NODE_INT_H
#define DUET_NODE_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "common/loop.h"
#include "node/node.h"

/* NBD clients per listener (own and proxy) at most; fewer when descriptors
 * are short (limits.c); beyond, connections are refused. */
#define NODE_MAX_CLIENTS 1024
/* Clients of the metrics port at once (metrics_http.c); limits.c keeps
 * descriptors for them. */
#define NODE_METRICS_MAX_CONNS 16

struct store;
struct nbd_server;
struct nbd_budget;
struct node_datapath;
struct control;
struct ccm;
struct proxy;
struct mirror;
struct node_mirror_ccm;
struct monitor;
struct failover;
struct node_addr;
struct json_object;
struct node_hooks;
struct node_move;
struct node_balance;

struct node {
	struct duet_config cfg;
	struct loop *loop;
	struct ccm *ccm; /* NULL without [ic] links */
	struct store *store;
	struct node_datapath
	    *dp; /* the own volumes: the NBD listener's and the partner's forwarded requests */
	struct nbd_server *nbd;
	struct mirror *mirror;		    /* the NVRAM log; NULL with [mirror] mirror = off */
	struct node_mirror_ccm *mirror_ccm; /* its transport to the partner; NULL without */
	char log_path[PATH_MAX];
	char partner_image_path[PATH_MAX];
	char partner_replay[320]; /* what the last takeover did with that image, for status */
	struct mirror_history {	  /* the last state changes, for status */
		uint8_t state;
		uint64_t at_ms; /* since the node started */
	} mirror_hist[16];
	unsigned mirror_hist_n;	      /* changes so far (the last 16 kept) */
	struct proxy *proxy;	      /* NULL without [nbd] proxy_listen or a CCM */
	struct nbd_server *proxy_nbd; /* the proxy listener */
	struct control *control;
	/* Failover (failover.c, docs/FAILOVER.md). */
	struct monitor *monitor;
	struct failover *fo;
	struct node_addr *addr;		  /* service addresses (addr.c) */
	bool boot_checked;		  /* the first read of the own mailbox is in */
	bool taken_at_boot;		  /* ... and found a takeover mark: serve nothing */
	bool fenced;			  /* a takeover mark stopped the own volumes */
	bool stopping;			  /* a signal asked to shut down */
	struct store *pstore;		  /* the partner's shelf, during a takeover */
	struct node_datapath *partner_dp; /* its volumes, served through the proxy port */
	struct node_reloc *reloc;	  /* routes and relocation (relocate.c) */
	struct node_move *move;		  /* volume move (move.c) */
	struct node_shelf *shelf_fail;	  /* the own shelf's health, handover (shelf_fail.c) */
	struct node_balance *balance;	  /* automatic balance (balance_host.c) */
	struct node_hooks *hooks;	  /* [hooks] dir; NULL without */
	char ev_state[24];		  /* the HA state the last event told (failover.c) */
	int sig_fd;
	struct loop_io sig_io;
	/* lock.c: the instance locks (shelf, log, partner image) and the
	 * serving locks of the own and the partner's shelf; -1 when not held. */
	int lock_fd[3];
	int serve_lock_fd, pserve_lock_fd;
	unsigned max_clients;	       /* per NBD listener (limits.c) */
	struct nbd_budget *nbd_budget; /* [nbd] buffer_limit, shared by both listeners */
	uint64_t started_ns;
	uint64_t rt_late_ns; /* realtime = auto: how late the reactor was when it switched */
	/* The service manager (service.c). */
	bool sd_ready;		       /* READY=1 sent */
	uint64_t sd_wd_ns;	       /* WATCHDOG=1 this often; 0: not asked */
	struct loop_timer sd_wd_timer; /* sends it, on the reactor */
	char sd_status[160];	       /* the last STATUS= line sent */
	/* Metrics (metrics.c, metrics_http.c). */
	struct node_metrics_http *metrics_http; /* NULL without [metrics] listen */
};

/* Request counters of one volume, by NBD command type (enum nbd_cmd_type,
 * DISC unused), and its request latency in fixed buckets: bucket i holds
 * requests of at most NODE_LAT_BASE_NS << (2 * i) ns (16 us, 64 us, ...,
 * 4.3 s), the last one the rest. Counted where each request completes. */
#define NODE_OPS	    8
#define NODE_LAT_BUCKETS    10
#define NODE_LAT_BASE_SHIFT 14 /* 16384 ns */
struct node_vol_stats {
	uint64_t requests[NODE_OPS];
	uint64_t bytes[NODE_OPS]; /* READ and WRITE payload of successful requests */
	uint64_t errors[NODE_OPS];
	uint64_t lat[NODE_LAT_BUCKETS + 1];
	uint64_t lat_sum_ns, lat_count;
};

/* datapath.c: NBD exports backed by a shelf: the node's own (writes logged
 * in the NVRAM log @p m), or the partner's during a takeover (m NULL). */
int node_datapath_create(struct node *n, struct store *s, struct mirror *m, const char *what,
			 struct node_datapath **out);
/** Fail what is held, free the pools; the store and mirror stay open. */
void node_datapath_destroy(struct node_datapath *b);
/** The ops every listener and the proxy's serving side call, ctx a datapath. */
const struct nbd_backend_ops *node_datapath_ops(void);
/** I/O handed to the store and not yet completed. */
uint64_t node_datapath_inflight(const struct node_datapath *b);
/** The I/O lease holds again: submit the requests held while it did not. */
void node_datapath_release_held(struct node_datapath *b);
/** Complete every held request with @p err (fenced, shutting down). */
void node_datapath_fail_held(struct node_datapath *b, int err);
/** Serve, or fail every request with ESHUTDOWN (a fenced node). */
void node_datapath_set_serving(struct node_datapath *b, bool serving);
/** Requests held for the lease now. */
uint64_t node_datapath_held(const struct node_datapath *b);
/** Call @p fn for every volume opened through @p b (NULL: none). */
void node_datapath_each_volume(const struct node_datapath *b,
			       void (*fn)(void *arg, const char *name,
					  const struct node_vol_stats *st),
			       void *arg);
/** The mirror's consistency point: fdatasync every volume written since the
 * last call, then @p done(@p arg, 0 or -errno). */
/** How a volume of the datapath is used, for `volume show`. */
struct node_volume_use {
	unsigned clients;  /* NBD clients on this node's listener (the partner's proxy
			      port counts its own) */
	uint64_t inflight; /* requests in flight */
	bool away;	   /* relocated to the partner (or on its way) */
	uint64_t requests, bytes_read, bytes_written, errors; /* since the node started */
};
/** Fill @p u for @p v (zeros for a volume never opened). */
void node_datapath_volume_use(struct node_datapath *b, const struct store_volume *v,
			      struct node_volume_use *u);
/** Delete @p v: refused (-EBUSY, @p err says why) while clients have it
 * open unless @p force, which disconnects those of the NBD listener; the
 * proxy's forwarded ones get errors from then on. The store volume is
 * released once no request is in flight on it. */
int node_datapath_volume_delete(struct node_datapath *b, struct store_volume *v, bool force,
				char *err, size_t errlen);
/** Start a consistency point of the log (no client waits for it): after
 * a shrink, the records past the new end leave the log, so that a later
 * grow never gets them back from a replay. */
void node_datapath_retire_log(struct node_datapath *b);
/** Open the shelf @p shelf with the node's [store] settings (the own one at
 * boot, the partner's at takeover). */
int node_datapath_open_store(struct node *n, const char *shelf, struct store **out);
/** Open the own NBD listener on n->dp (boot, and SERVE_OWN after a giveback). */
int node_datapath_listen(struct node *n);
void node_datapath_checkpoint(struct node_datapath *b, void (*done)(void *arg, int result),
			      void *arg);
/* Relocation (relocate.c). */
/** @p name is on this datapath's shelf, owned here and not leaving. */
bool node_datapath_vol_here(struct node_datapath *b, const char *name);
/** Set the volume's away (owned by the partner) and leaving (being
 * relocated) flags; -1 leaves one as it is. -ENOENT: not on this shelf. */
int node_datapath_vol_set(struct node_datapath *b, const char *name, int away, int leaving);
/** The volume's requests at the store (or the log) now. */
uint64_t node_datapath_vol_inflight(struct node_datapath *b, const char *name);
/** The store volume @p name of this datapath's shelf, or NULL. */
struct store_volume *node_datapath_vol_store(struct node_datapath *b, const char *name);
/** Every write FUA: for volumes of the partner's shelf that no log covers. */
void node_datapath_set_write_through(struct node_datapath *b);
/** What a failed store result of a request becomes (shelf_fail.c: -EXDEV,
 * "not executed", while the shelf is being handed over); NULL: itself. */
void node_datapath_set_error_hook(struct node_datapath *b, int (*hook)(void *arg, int result),
				  void *arg);
/** The log behind the datapath, or NULL. */
struct mirror *node_datapath_mirror(const struct node_datapath *b);

/* Volume move (move.c): the copy on the other shelf that every write of
 * the volume also reaches while the data is copied. */
struct mirror_range;
struct node_move_sink {
	struct store_volume *target;
	uint64_t inflight; /* writes to it in flight */
	uint64_t writes;   /* client writes copied to it */
	int err;	   /* the first that failed (the move fails) */
};
/** Attach (@p sink) or detach (NULL) the copy of volume @p name. */
int node_datapath_vol_sink(struct node_datapath *b, const char *name, struct node_move_sink *sink);
/** Take the range [@p offset, +@p length) of the volume's write lock for
 * a copier's chunk: 1 granted now, 0 queued (@p granted runs later),
 * -ENOENT. */
int node_datapath_vol_lock(struct node_datapath *b, const char *name, struct mirror_range *r,
			   uint64_t offset, uint64_t length,
			   void (*granted)(struct mirror_range *r), void *arg);
void node_datapath_vol_unlock(struct node_datapath *b, const char *name, struct mirror_range *r);
/** Writes of the volume at the store that took no range lock (no log, no
 * copy attached when they came): the copier waits for none. */
uint64_t node_datapath_vol_unordered(struct node_datapath *b, const char *name);
/** The volume left this datapath's shelf (moved): refused, not counted. */
void node_datapath_vol_forget(struct node_datapath *b, const char *name);

/* relocate.c: every volume of the pair on the own NBD listener, and
 * relocation of a volume's ownership to the partner. */
struct proxy_opts;
/** The own listener's backend, ctx the node: the volumes served here
 * (node_local_ops), every other through the proxy's forwarding side. */
const struct nbd_backend_ops *node_route_ops(void);
/** The volumes served here, ctx the node: the own shelf's (n->dp) and those
 * of the partner's shelf relocated here. The proxy's serving side uses it. */
const struct nbd_backend_ops *node_local_ops(void);
/** Before the listeners and the proxy. */
int node_reloc_create(struct node *n);
/** The proxy's local backend and its hook for the partner's list. */
void node_reloc_proxy_opts(struct node *n, struct proxy_opts *po);
/** Start relocating @p name to the partner (status says when it is done). */
int node_reloc_start(struct node *n, const char *name, char *err, size_t errlen);
/** node_reloc_start with @p cut as step 4 (a volume move's commit, which
 * leaves the volume away here) and @p ended called with the result. */
int node_reloc_start_cut(struct node *n, const char *name, int (*cut)(struct node *, const char *),
			 void (*ended)(struct node *, int), char *err, size_t errlen);
/** The partner's shelf, opened here for relocated volumes (NULL: cannot). */
struct store *node_reloc_rstore(struct node *n);
/** Volume @p name of the own shelf, just loaded, names this node: serve it
 * (commands parked in the forwarder run here) and tell the partner. */
bool node_reloc_adopt(struct node *n, const char *name);
/** The control command volume_relocate (name). */
int node_reloc_cmd(struct node *n, struct json_object *req, struct json_object *resp, char *err,
		   size_t errlen);
/** Fix owner, served_by and shelf of @p volumes (status) for relocations. */
void node_reloc_fix_volumes(struct node *n, struct json_object *volumes);
/** The member "relocation" of status. */
int node_reloc_status_json(struct node *n, struct json_object *root);
/** Requests at the relocated volumes' datapath. */
uint64_t node_reloc_inflight(const struct node *n);
/** Takeover (serving the partner's volumes): serve too the volumes of our
 * shelf relocated to the partner. */
int node_reloc_takeover(struct node *n);
/** Giveback: forward those again (drained with the partner's volumes). */
void node_reloc_giveback(struct node *n);
/** Their requests still here (the giveback drain waits for none). */
uint64_t node_reloc_drain_busy(const struct node *n);
/** @p name is a volume of the partner's shelf relocated here (not to be
 * given back with the partner's). */
/* Adopt the volumes of the partner's shelf whose owner record names this
 * node but which were not adopted yet (the partner died between its record
 * and its volume list): a takeover calls it before serving that shelf. */
void node_reloc_adopt_pending(struct node *n);
bool node_reloc_owned_here(struct node *n, const char *name);
/** The I/O lease holds again: release what the relocated volumes' datapaths
 * and the partner's shelf opened for them held. */
void node_reloc_release_held(struct node *n);
/** Fenced (false) or serving the own volumes again (true, and adopt what
 * the partner relocated here meanwhile). */
void node_reloc_set_serving(struct node *n, bool serving);
/** Fail what waits, close the partner's shelf opened for relocated volumes. */
void node_reloc_destroy(struct node *n);
/** The partner's shelf as opened for volumes relocated here (opened now if
 * need be), for the shelf handover. */
int node_reloc_partner_store(struct node *n, struct store **out);
/** Ownership changed (the handover set volumes leaving or away): routes
 * decide again, waiting commands are retried. */
void node_reloc_changed(struct node *n);
/** Adopt what names this node on either shelf now (as on a partner list). */
void node_reloc_adopt_all(struct node *n);

/** At boot (adopt.c): adopt the volumes of the partner's shelf whose owner
 * record names this node, without waiting for the partner's session. */
void node_adopt_boot(struct node *n);

/** Call @p fn for every volume of the partner's shelf opened here (served
 * here if node_reloc_owned_here). */
void node_reloc_each_volume(const struct node *n,
			    void (*fn)(void *arg, const char *name,
				       const struct node_vol_stats *st),
			    void *arg);
/** Relocations from here and adoptions here so far (@p moves); true while
 * one runs. */
bool node_reloc_activity(const struct node *n, uint64_t *moves);

/* shelf_fail.c: the own shelf failing under this node while the partner
 * reaches it: its volumes handed over to the partner, which replays this
 * node's log image onto it first (docs/RELOCATION.md, "On a failed path"). */
/** Start watching the own shelf (from node_reloc_create). */
int node_shelf_create(struct node *n);
void node_shelf_destroy(struct node *n);
/** The own shelf failed here: nothing of it is served or adopted again. */
bool node_shelf_failed(const struct node *n);
/** The partner's id for a volume of the own shelf handed over to it (its
 * owner field may be unreadable here), else NULL. */
const char *node_shelf_owner(const struct node *n, const char *name);
/** The partner said that its own shelf failed (it hands it over). */
bool node_shelf_partner_failed(const struct node *n);
/** A replay of the partner's log image for a handover runs (a takeover's
 * replay waits for it). */
bool node_shelf_replaying(const struct node *n);
/** The partner handed its shelf over (GIVE) and our copy of its log was
 * judged complete for it, not yet consumed (the handover done, a takeover,
 * or a new instance of the partner): a takeover of it loses nothing. */
bool node_shelf_partner_gave(const struct node *n);
/** The member "shelf_handover" of status. */
int node_shelf_status_json(struct node *n, struct json_object *root);

/* balance_host.c: automatic balance on load ([balance], src/balance). */
/** Measure the volumes' load each second and send it to the partner (a
 * CCM client "balance"); with auto = on, relocate as the policy says. */
int node_balance_create(struct node *n);
/** Stop the timer and leave the CCM (before ccm_destroy). */
void node_balance_destroy(struct node *n);
/** The member "balance" of status. */
void node_balance_status_json(struct node *n, struct json_object *root);
/** For metrics: the own and the partner's load (units/s, -1 unknown), and
 * the automatic moves from here. */
void node_balance_figures(struct node *n, double *own, double *partner, uint64_t *moves);

/* move.c: volume move between shelves (docs/RELOCATION.md). */
int node_move_create(struct node *n);
void node_move_destroy(struct node *n);
/** Shutdown: a move still copying rolls back. */
void node_move_stop(struct node *n);
/** Copies of a move still in flight (shutdown waits for none). */
bool node_move_busy(const struct node *n);
/** @p name is being moved from here (delete and resize refuse it). */
bool node_move_moving(const struct node *n, const char *name);
/** The control command volume_move (name, shelf, abort). */
int node_move_cmd(struct node *n, struct json_object *req, struct json_object *resp, char *err,
		  size_t errlen);
/** Add "move" to the entries of @p volumes being moved from here, and the
 * member "move" to @p root (when not NULL). */
void node_move_status_json(struct node *n, struct json_object *volumes, struct json_object *root);
/** Load volumes whose metadata appeared on the own shelf (moved here):
 * away until adopted (relocate.c), or adopted at once when @p adopt. */
void node_move_load_new(struct node *n, bool adopt);
/** Boot: settle the own shelf's interrupted moves (before serving). */
void node_move_boot(struct node *n);
/** Takeover: stop a move from here (rolled back) and settle the partner
 * shelf's interrupted moves before its volumes are served. */
void node_move_takeover(struct node *n);

/* mirror_host.c: the NVRAM log and its mirror, wired into the node. */
/** Open the log and replay it onto the shelf (before the listeners open);
 * a node taken over (n->taken_at_boot) leaves it unreplayed: its partner
 * replayed it, and the giveback drops it. */
int node_mirror_open(struct node *n);
/** Start mirroring to the partner through the CCM (after node_mirror_open); held
 * (see node_mirror_hold) on a node taken over. */
int node_mirror_connect(struct node *n);
/** Fenced (@p hold): stop writing into the partner's image of our log, which
 * it replays now; given back: mirror the new log again. */
void node_mirror_hold(struct node *n, bool hold, const char *why);
/** The state of this node's image of the partner's log, for the monitor. */
int node_mirror_partner_copy(struct node *n);
/** Resolve n->log_path and n->partner_image_path from the config (defaults
 * next to the shelf); nothing is opened. */
int node_mirror_paths(struct node *n);
/** Shutdown, once no request is in flight: a last consistency point, then close. */
void node_mirror_close(struct node *n);
/** Writes held for the partner (mirror_down = suspend) fail now: shutting down. */
void node_mirror_release_held(struct node *n);
/** The "mirror" member of `duetctl status --json`. */
struct json_object *node_mirror_status_json(struct node *n);

/* mirror_ccm.c: the mirror's transport, a client "mirror" of the CCM with
 * one port backed by the partner's image file. */
/**
 * Register with @p ccm and attach to @p m: the port's memory (the image of
 * the partner's log, @p image_size bytes) is the file @p image_path.
 */
int node_mirror_ccm_create(struct loop *loop, struct ccm *ccm, struct mirror *m,
			   const char *image_path, uint64_t image_size,
			   struct node_mirror_ccm **out);
/** Leave the CCM (no more callbacks into the mirror); call before mirror_close. */
void node_mirror_ccm_stop(struct node_mirror_ccm *mc);
/** Free; after ccm_destroy (writes still posted complete until then). */
void node_mirror_ccm_destroy(struct node_mirror_ccm *mc);
/** Hold (or release) the transport: while held it stays down, so nothing of
 * this node's log reaches the partner's image (fenced: the partner replays
 * it), and @p why is the transport's reason. */
void node_mirror_ccm_hold(struct node_mirror_ccm *mc, bool hold, const char *why);
/** How far the partner's image held here may be trusted
 * (mirror_image_judge against its header as found at create: a complete
 * flag of an earlier run is not believed, unless an earlier run saw it
 * current in this boot); @p scan as there. The first time in a run that
 * the image is current, its boot note is written (mirror_image_boot_note). */
enum mirror_image_trust node_mirror_ccm_partner_copy(struct node_mirror_ccm *mc, bool scan,
						     char *why, size_t len);
/** The transport's view, for status: "up", "down" or "refused", and why. */
const char *node_mirror_ccm_state(const struct node_mirror_ccm *mc, const char **reason);

/* failover.c: the failover monitor wired into the node. */
/** Create and start the monitor and its heartbeat client; run the loop
 * until the boot check of the own mailbox is in (n->taken_at_boot). */
int node_failover_open(struct node *n);
/** Put @p s behind the monitor's I/O lease (the fencing gate). */
void node_failover_gate_store(struct node *n, struct store *s);
/** Shutdown: wait for a replay in progress, close the partner's shelf. */
void node_failover_stop(struct node *n);
/** Leave the CCM and free the monitor (before ccm_destroy). */
void node_failover_close(struct node *n);
/** Free the rest, after ccm_destroy: heartbeat writes the CCM still held
 * complete into memory of it until then. */
void node_failover_free(struct node *n);

/* hooks.c: [hooks] dir, run on node events. */
/** Set up the hooks of [hooks] dir (@p out NULL without one). */
int node_hooks_create(struct node *n, struct node_hooks **out);
/** Forget the queue; running hooks finish on their own. NULL is fine. */
void node_hooks_destroy(struct node_hooks *h);
/**
 * The one event API: @p event ("ha-state", "volume-deleted", ...) with
 * its details as pairs of environment variable and value, NULL-ended:
 * node_event(n, "volume-deleted", "DUET_VOLUME", name, NULL). Every hook
 * runs with DUET_EVENT, DUET_NODE, DUET_PARTNER, DUET_TIME and these, in
 * the background; never blocks. Events and variables: docs/HOOKS.md.
 */
void node_event(struct node *n, const char *event, ...) __attribute__((sentinel));
/** The "hooks" member of status. */
void node_hooks_status_json(struct node_hooks *h, struct json_object *o);

/* addr.c: service addresses, the own and the partner's (docs/FAILOVER.md). */
/** First thing at boot: remove an address an earlier run left, point the
 * listeners at the own service address. */
int node_addr_boot(struct node *n);
/** After the CCM: a client "svcaddr" that tells the partner our address
 * and ports each session, and learns its. */
int node_addr_register(struct node *n);
/** Add the own address and announce it (boot check clean, SERVE_OWN). */
int node_addr_take_own(struct node *n);
/** Remove the own address (fenced, shutdown). */
void node_addr_drop_own(struct node *n, const char *why);
/** SERVE_PARTNER: add the partner's address, announce it, listen on its
 * ports (its NBD port through the proxy's routes, its proxy port on ours). */
int node_addr_take_partner(struct node *n);
/** DRAIN_PARTNER (first), shutdown: close those listeners, remove it. */
void node_addr_drop_partner(struct node *n, const char *why);
/** Shutdown; @p keep_own leaves the own address (never: a stopped node
 * does not serve). */
void node_addr_close(struct node *n, bool keep_own);
/** The "addresses" member of status. */
struct json_object *node_addr_status_json(struct node *n);

/* lock.c: one instance per set of files (docs/SECURITY.md). */
/** Before anything is read: flock the shelf, the log and the partner image
 * (if it exists); another holder: -NODE_EREFUSED, one line naming its pid. */
int node_lock_files(struct node *n);
/** The partner image, once the mirror made it (a first start): lock it too. */
int node_lock_image(struct node *n);
/** Take (@p serve) or release the serving lock of the own shelf: held while
 * this node may serve its volumes. Taking a lock held elsewhere warns. */
void node_lock_serve_own(struct node *n, bool serve);
/** The same for the partner's shelf, from takeover to giveback. */
void node_lock_serve_partner(struct node *n, bool serve);
/** Release every lock (exit). */
void node_unlock_files(struct node *n);

/* limits.c: descriptors (docs/SECURITY.md, "Resource limits"). */
/** Raise the soft RLIMIT_NOFILE to the hard limit (at start). */
void node_limits_raise(void);
/** NBD clients per listener: what the limit leaves past the descriptors in
 * use now and a reserve for the node's own work (logged). */
unsigned node_limits_clients(struct node *n);

/* control.c: the UNIX control socket that duetctl talks to. */
/** Before anything is opened: -NODE_EREFUSED (one line logged) if a file
 * that is not a socket sits at [node] control, or control_group is unknown. */
int node_control_check(struct node *n);
/** Listen on @p path, 0600 (0660 with control_group), whatever the umask; a
 * dead daemon's socket there is replaced, nothing else is. */
int node_control_create(struct node *n, const char *path, struct control **out);
/** Close the listener and every connection. */
void node_control_destroy(struct control *c);

/* control_req.c: the request parser (pure: also the fuzzer's). */
/** Parse one request line of @p len bytes: a JSON object with a string
 * "cmd" and nothing after it. @return 0 with *req (put it) and *cmd (in
 * it), or -EINVAL with one line in @p err. */
int node_control_parse(const char *line, size_t len, struct json_object **req, const char **cmd,
		       char *err, size_t errlen);
/** volume_create's arguments: a string name and a positive integer size. */
int node_control_volume_args(struct json_object *req, const char **name, uint64_t *size, char *err,
			     size_t errlen);
/** The optional boolean "force" (false unless it is true). */
bool node_control_force(struct json_object *req);

/* service.c: the service manager (sd_notify). */
/** READY=1, the first STATUS=, and the WATCHDOG=1 timer if systemd asks. */
int node_service_ready(struct node *n);
/** Send STATUS= again if the HA or mirror state changed. */
void node_service_status(struct node *n);
/** STOPPING=1; the watchdog timer stops. */
void node_service_stopping(struct node *n);

/* metrics.c: the metrics in Prometheus' text format. */
/** Render them into a new buffer (@p out, free() it) of @p len bytes. */
int node_metrics_render(struct node *n, char **out, size_t *len);

/* metrics_http.c: GET /metrics on [metrics] listen (libmicrohttpd on the loop). */
int node_metrics_http_create(struct node *n, const char *listen, struct node_metrics_http **out);
void node_metrics_http_destroy(struct node_metrics_http *h);

/* commands.c: the control commands. */
/** The handler of command @p name, or NULL for an unknown command. */
node_cmd_fn node_commands_find(const char *name);

#endif
