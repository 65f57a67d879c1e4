/**
 * @file proxy.h
 * The proxy port: a node serves its partner's volumes by forwarding each
 * NBD command over the interconnect (docs/PROXY.md).
 *
 * One struct proxy per node plays two roles over the same CCM client
 * ("proxy"):
 *
 * - Forwarding: proxy_backend_ops() is a struct nbd_backend_ops for a
 *   second nbd_server (the proxy listener, [nbd] proxy_listen). It lists
 *   and opens the partner's volumes (the partner pushes their list, with
 *   size and flags) and turns every command into one or more forwarded
 *   requests, each carrying (forwarder session, sequence number). Small
 *   data rides in the messages; large data is placed by RDMA in this
 *   node's port memory, where the partner reads write data and writes read
 *   data. Replies complete in any order. A request waits while the
 *   partner is unreachable, is sent again when the session returns, and
 *   fails with EIO once it is older than the timeout.
 *
 * - Serving: requests from the partner's forwarder execute through the
 *   local backend given at creation (the node's own volume path), with
 *   exactly-once semantics: a request seen again (same session and
 *   sequence) gets the result already known, or waits for its execution,
 *   and is never executed twice. While this node is fenced
 *   (proxy_set_serving()) requests are refused, not executed; the
 *   partner's forwarder sends them again later.
 *
 * Everything runs on the loop's thread; nothing here blocks. Every field of
 * every message from the partner is checked; a bad one is dropped (or fails
 * the request it names with EIO) and logged.
 */
#ifndef DUET_PROXY_PROXY_H
#define DUET_PROXY_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>

struct loop;
struct ccm;
struct nbd_backend_ops;
struct json_object;
struct proxy;

/** Defaults of struct proxy_opts (also the [proxy] config defaults). */
#define PROXY_DEFAULT_TIMEOUT_MS 30000u
#define PROXY_DEFAULT_PORTS	 4u
#define PROXY_DEFAULT_PORT_MEM	 (16u << 20)
#define PROXY_DEFAULT_CHUNK	 (1u << 20)

struct proxy_opts {
	const char *node;    /**< this node's id (status) */
	unsigned n_ports;    /**< CCM ports, 1..16; 0: PROXY_DEFAULT_PORTS */
	size_t port_mem;     /**< bytes per port, >= 1 MiB; 0: PROXY_DEFAULT_PORT_MEM.
				  Half holds this node's forwarded data in flight,
				  half the partner's requests being served. */
	uint64_t chunk;	     /**< largest forwarded request (bigger READ/WRITE are
				  split), <= port_mem / 2; 0: min(1 MiB, port_mem/2) */
	uint64_t timeout_ms; /**< command deadline; 0: PROXY_DEFAULT_TIMEOUT_MS */
	/** The node's own volumes: what the partner's forwarded requests
	 * execute on (list, open, submit with nbd_io.complete set). */
	const struct nbd_backend_ops *local_ops;
	void *local_ctx;
	/** Called (may be NULL) each time a new volume list of the partner
	 * took effect and differs from the last: a volume relocated. */
	void (*partner_vols_changed)(void *arg);
	void *changed_arg;
};

/** What a local backend answers (nbd_io_done) for a volume it no longer
 * serves because it was relocated to the partner: not executed. The serving
 * side refuses such a request (the partner asks again later); a command
 * routed locally (proxy_route_local) goes back to forwarding. */
#define PROXY_MOVED (-EXDEV)

/**
 * Create the proxy and register its CCM client. The session may come up at
 * any time after; until the partner's volume list arrives the forwarding
 * side lists nothing.
 * @return 0, -EINVAL (bad options), -ENOMEM, or the CCM's error.
 */
int proxy_create(struct loop *loop, struct ccm *ccm, const struct proxy_opts *opts,
		 struct proxy **out);

/**
 * Leave the CCM: fail every waiting forwarded command with -ESHUTDOWN and
 * take no more requests from the partner. Requests being served finish at
 * the local backend (their replies are dropped); wait for them with
 * proxy_busy() before proxy_destroy(). Destroy the proxy listener first.
 */
void proxy_stop(struct proxy *px);

/**
 * proxy_stop(), then free. Requests still at the local backend point into
 * the proxy's memory: if there are any, it is kept (leaked) rather than
 * freed under them.
 */
void proxy_destroy(struct proxy *px);

/** True while served requests are at the local backend. */
bool proxy_busy(const struct proxy *px);

/** The forwarding side: the backend of the proxy listener, ctx = the proxy. */
const struct nbd_backend_ops *proxy_backend_ops(void);

/** The local volume set changed (created, removed, resized): push the new
 * list to the partner. */
void proxy_local_volumes_changed(struct proxy *px);

/** Shelf handover states (docs/RELOCATION.md, "On a failed path"), sent
 * with each volume list: GIVE (from a node whose own shelf failed: its
 * volumes there are drained and its log image on the partner is final:
 * replay it and take them), REPLAYED (from the partner: that image is on
 * the shelf, durably, and retired), DROPPED (from the first: its own log is
 * dropped; the partner may serve the volumes now). */
#define PROXY_SHELF_GIVE     1u
#define PROXY_SHELF_REPLAYED 2u
#define PROXY_SHELF_DROPPED  4u
/** Set the state sent with our list (pushed at once if it changed). */
void proxy_set_shelf_state(struct proxy *px, unsigned state);
/** The state of the partner's last list (0 before one). */
unsigned proxy_partner_shelf_state(const struct proxy *px);
/** The partner's last list names @p volume (a forwarded command has a
 * place to go). */
bool proxy_partner_lists(struct proxy *px, const char *volume);

/**
 * Takeover hook: serve the partner volume @p volume locally from now on.
 * Commands waiting for the partner and new ones go to @p ops / @p ctx (its
 * open() is called once for @p volume); requests already forwarded are
 * executed locally again (they were never acknowledged to the client).
 * @return 0, -ENOENT (open refused), -EEXIST (already local), -ENOMEM.
 */
int proxy_route_local(struct proxy *px, const char *volume, const struct nbd_backend_ops *ops,
		      void *ctx);

/**
 * Giveback hook: forward @p volume to the partner again. Commands still at
 * the local backend finish there.
 * @return 0 or -ENOENT (not routed locally).
 */
int proxy_route_partner(struct proxy *px, const char *volume);

/**
 * Fencing hook (serving side): whether this node executes its partner's
 * forwarded requests. True at creation. While false (this node was taken
 * over by its partner, or is waiting for giveback) every request from the
 * partner is answered at once with -EAGAIN, "not executed, ask again
 * later", and is not recorded as done: the same request runs normally
 * once serving again. Requests already at the local backend when it turns
 * false are answered -EAGAIN too when they complete, whatever their
 * result, and those not yet started are dropped the same way; replies of
 * requests already executed before are sent as they are. The volume list
 * is still pushed. A request the partner gave up on (deadline) is handled
 * as before. The partner's forwarder keeps a refused request waiting and
 * sends it again (its command deadline still runs).
 */
void proxy_set_serving(struct proxy *px, bool serving);

struct proxy_stats {
	/* forwarding */
	uint64_t commands;	/**< NBD commands taken from the proxy listener */
	uint64_t requests;	/**< forwarded requests (a split command makes several) */
	uint64_t bytes_read;	/**< READ bytes returned to clients */
	uint64_t bytes_written; /**< WRITE bytes forwarded and acknowledged */
	uint64_t errors;	/**< commands completed with an error */
	uint64_t retries;	/**< requests sent again after a session loss */
	uint64_t refused;	/**< requests the partner refused (not serving) */
	uint64_t timeouts;	/**< commands failed by the deadline */
	uint64_t local;		/**< commands served locally (takeover route) */
	uint64_t inflight;	/**< commands waiting now */
	uint64_t bad_replies;	/**< partner messages refused */
	/* serving */
	uint64_t served;	  /**< partner requests executed */
	uint64_t served_bytes;	  /**< their READ + WRITE bytes */
	uint64_t duplicates;	  /**< partner requests recognised as seen before */
	uint64_t bad_requests;	  /**< partner messages refused */
	uint64_t served_inflight; /**< at the local backend now */
	uint64_t served_refused;  /**< partner requests answered -EAGAIN (not serving) */
};

void proxy_get_stats(const struct proxy *px, struct proxy_stats *st);

/** Add the member "proxy" (state, partner, ports, counters) to @p root.
 * @return 0 or -ENOMEM. */
int proxy_status_to_json(const struct proxy *px, struct json_object *root);

/**
 * Append to the JSON array @p volumes one entry per partner volume the
 * proxy listener serves: name, owner, served_by, port ("proxy"), size.
 * @return 0 or -ENOMEM.
 */
int proxy_volumes_to_json(const struct proxy *px, struct json_object *volumes);

#endif
