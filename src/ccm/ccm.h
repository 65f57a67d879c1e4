/**
 * @file ccm.h
 * The cluster connection manager: the only way a module talks to the
 * partner node.
 *
 * The CCM opens the interconnect links, publishes this node's boot region
 * and runs a one-sided RDMA handshake (read, write, read, write) with the
 * partner, authenticated by a shared cluster secret. It then exchanges peer
 * information (protocol version, node ids, cluster id, boot generations)
 * and the information of its clients, creates each client's ports on both
 * sides, and alerts the clients once the partner is ready. It watches every
 * link with probes (reads of the partner's session region), spreads the
 * ports' traffic over the live links and re-issues the operations of a link
 * that died on the others. When the session ends (partner reboot, all links
 * lost, reset) it alerts its clients and starts a new handshake.
 *
 * A client (failover monitor, NVRAM mirror, proxy) registers with a name,
 * a number of ports and the memory it wants per port. A port is a memory
 * region on each side that the other side may read and write, plus an
 * ordered, reliable, authenticated message channel. A port exists across
 * sessions: it goes down when a session ends and up again in the next one
 * if the partner has the same client.
 *
 * Everything runs on the reactor thread of the loop given to ccm_create();
 * no function here blocks, and every callback is called on that thread.
 * The design and the wire formats are in docs/CCM.md.
 */
#ifndef DUET_CCM_CCM_H
#define DUET_CCM_CCM_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/list.h"
#include "fabric/fabric.h"

struct loop;
struct json_object;

struct ccm;
struct ccm_client;
struct ccm_port;
struct ccm_op;

#define CCM_PROTO_MAJOR 2
#define CCM_PROTO_MINOR 0

#define CCM_NAME_MAX	  32	/**< client name, with its NUL */
#define CCM_MAX_CLIENTS	  16	/**< clients per node */
#define CCM_MAX_PORTS	  16	/**< ports per client */
#define CCM_MSG_MAX	  16384 /**< largest message payload of ccm_port_send() */
#define CCM_MAX_LINKS	  8
#define CCM_MAX_INSTANCES 8
#define CCM_NODE_MAX	  16
#define CCM_CLUSTER_MAX	  64  /**< cluster id, with its NUL */
#define CCM_LINK_NAME_MAX 16  /**< link name, with its NUL */
#define CCM_ADDR_MAX	  128 /**< HOST:PORT of a link end, with its NUL */

/* ---------------------------------------------------------------------- */
/** @name Node integration */
/** @{ */

/** How port operations are spread over the up links of an instance. */
enum ccm_balance {
	CCM_BALANCE_ROUND_ROBIN = 0,   /**< each link in turn */
	CCM_BALANCE_LEAST_OUTSTANDING, /**< the link with the fewest bytes in flight */
};

/** One interconnect link; both nodes list their links in the same order. */
struct ccm_link_opts {
	char name[CCM_LINK_NAME_MAX]; /**< "ic0" */
	char local[CCM_ADDR_MAX];     /**< this node's HOST:PORT */
	char peer[CCM_ADDR_MAX];      /**< the partner's HOST:PORT */
};

/** What the CCM needs to know (the node fills it from the [ic] section). */
struct ccm_opts {
	char node[CCM_NODE_MAX];	  /**< this node's id */
	char partner[CCM_NODE_MAX];	  /**< the partner's id; "" accepts any */
	char cluster_id[CCM_CLUSTER_MAX]; /**< both nodes must agree */
	char provider[64];		  /**< libfabric provider ("tcp;ofi_rxm") */
	char secret_file[PATH_MAX];	  /**< the cluster secret; required with links */
	struct ccm_link_opts links[CCM_MAX_LINKS];
	unsigned n_links;   /**< 0: no partner, the CCM stays down */
	unsigned instances; /**< CCM instances the links are spread over (0: 1) */
	enum ccm_balance balance;
	uint64_t probe_ms;	      /**< probe (and tick) interval: each link reads the partner */
	uint64_t link_deadline_ms;    /**< a link with no probe completed this long is down */
	uint64_t session_deadline_ms; /**< every link down this long ends the session */
	uint64_t instance_max_load;   /**< bytes/s past which ports move; 0: least loaded only */
	unsigned
	    spin_us; /**< busy-poll each link's CQ this long with operations in flight; 0: never */
};

#define CCM_SECRET_MAX	     1024u		    /**< bytes of a secret file, at most */
#define CCM_SECRET_SETTLE_NS (2000ull * 1000000ull) /**< a changed secret file is taken after */

/**
 * Check the secret file @p path as the CCM will read it: a regular file
 * owned by this process's user, no access for group or others, 16 to
 * CCM_SECRET_MAX bytes (trailing blanks dropped). For duetd's start (exit 2).
 * @return 0, or a negative errno with one line in @p err.
 */
int ccm_secret_check(const char *path, char *err, size_t len);

/** Defaults of every option (those of docs/CONFIG.md); no links, no node id. */
void ccm_opts_init(struct ccm_opts *o);

/**
 * Create the CCM for @p opts (copied); nothing is opened yet. Options with
 * no links give a CCM that stays down (a node with no partner still boots).
 * With links, secret_file must name a readable file of at least 16 bytes.
 * @return 0 or a negative errno (-EINVAL with one logged error).
 */
int ccm_create(struct loop *loop, const struct ccm_opts *opts, struct ccm **out);

/**
 * Open every link at its predefined local address, publish the boot region
 * and start the handshake. duetd calls this before it loads anything else;
 * the session comes up in the background.
 */
int ccm_start(struct ccm *ccm);

/**
 * Orderly stop: end the session (clients are alerted, the partner is told)
 * and call @p done from the loop once the goodbye has left, or after 200 ms
 * at most. No new session forms afterwards. Then call ccm_destroy().
 */
int ccm_shutdown(struct ccm *ccm, void (*done)(void *arg), void *arg);

/**
 * Tell the partner the session ends (best effort: ccm_shutdown() first makes
 * sure it is sent), alert the clients, close the links and free everything. Clients should have
 * unregistered; operations still in flight complete with -ESHUTDOWN.
 */
void ccm_destroy(struct ccm *ccm);

/**
 * Operator reset (`duetctl ic reset`): end the current session the same
 * way a partner reboot would (clients are alerted, ports close), re-read
 * the secret file and run a new handshake. The partner follows.
 */
int ccm_reset(struct ccm *ccm);

/** @} */

/* ---------------------------------------------------------------------- */
/** @name Status */
/** @{ */

enum ccm_session_state {
	CCM_SESSION_DOWN = 0,	 /**< not started, or no links configured */
	CCM_SESSION_HANDSHAKING, /**< looking for / authenticating / setting up */
	CCM_SESSION_UP,		 /**< partner ready, ports up */
};

/** Why a session ended (given to clients and logged). */
enum ccm_term_reason {
	CCM_TERM_PARTNER_REBOOT = 1, /**< the partner has a new boot generation */
	CCM_TERM_PARTNER_RESET,	     /**< the partner ended the session (reset, shutdown) */
	CCM_TERM_LINKS_LOST,	     /**< every link dead past ic.session_deadline_ms */
	CCM_TERM_LOCAL_RESET,	     /**< ccm_reset() on this node */
	CCM_TERM_PROTOCOL,	     /**< version change or a protocol violation */
	CCM_TERM_SETUP_TIMEOUT,	     /**< session setup did not finish in time */
	CCM_TERM_SHUTDOWN,	     /**< ccm_destroy() on this node */
};
const char *ccm_term_reason_str(enum ccm_term_reason why);
const char *ccm_session_state_str(enum ccm_session_state st);

struct ccm_link_status {
	char name[16];
	bool up;
	bool stale; /**< up, the last link, but no sign of life for a deadline (kept) */
	unsigned instance;
	uint64_t rtt_us;	 /**< smoothed probe round trip */
	uint64_t ops;		 /**< operations completed */
	uint64_t bytes;		 /**< bytes moved by completed operations */
	uint64_t errors;	 /**< operations that failed on this link */
	uint64_t inflight;	 /**< operations in flight now */
	uint64_t inflight_bytes; /**< their bytes */
	uint64_t inflight_cap;	 /**< bound on port bytes in flight (rate x deadline / 4) */
	uint64_t last_change_ms; /**< milliseconds since the link changed state */
	uint64_t resets;	 /**< endpoint resets after failures (and fences) */
	uint64_t slow_calls;	 /**< libfabric calls that held the reactor over 5 ms */
	uint64_t max_call_us;	 /**< the longest libfabric call on the reactor */
	char max_call[24];	 /**< which call that was ("fi_cq_read"), "" if none */
};

struct ccm_instance_status {
	unsigned id;
	unsigned links; /**< links it owns */
	unsigned links_up;
	unsigned ports;		/**< ports placed on it */
	uint64_t bytes_per_sec; /**< this node's traffic, smoothed */
	uint64_t ops_inflight;
	uint64_t partner_bytes_per_sec; /**< read by RDMA from the partner */
	uint64_t partner_ops_inflight;
};

struct ccm_client_status {
	char name[CCM_NAME_MAX];
	unsigned ports;	   /**< ports it asked for */
	unsigned ports_up; /**< of those, up now */
	uint64_t port_mem; /**< bytes per port on this side */
	bool on_partner;   /**< the partner has a client of the same name */
	unsigned partner_ports;
	uint64_t msgs_sent, msgs_received;
	uint64_t acks_sent; /**< standalone acks (the others ride on messages) */
};

struct ccm_status {
	enum ccm_session_state state;
	char node[CCM_NODE_MAX];
	char partner[CCM_NODE_MAX]; /**< "" until the partner is known */
	uint16_t partner_major, partner_minor;
	uint64_t generation;	     /**< this node's boot generation */
	uint64_t partner_generation; /**< 0 until known */
	uint64_t handshake_us;	     /**< first partner read to session up, last session */
	uint64_t up_ms;		     /**< milliseconds the session has been up */
	uint64_t sessions;	     /**< sessions formed since start */
	uint64_t bad_msgs;	     /**< messages dropped: malformed or another session */
	uint64_t bad_macs;	     /**< messages dropped: MAC wrong (forged or corrupt) */
	uint64_t unverified;	     /**< messages dropped unverified: MAC failures over budget */
	char error[256];	     /**< last handshake problem, "" when none */
	unsigned n_links;
	struct ccm_link_status links[CCM_MAX_LINKS];
	unsigned n_instances;
	struct ccm_instance_status instances[CCM_MAX_INSTANCES];
	unsigned n_clients;
	struct ccm_client_status clients[CCM_MAX_CLIENTS];
	unsigned n_partner_only; /**< partner clients with no local client */
	char partner_only[CCM_MAX_CLIENTS][CCM_NAME_MAX];
};

void ccm_get_status(const struct ccm *ccm, struct ccm_status *st);

/**
 * Add the members "session", "links", "ccm_instances" and "ccm_clients"
 * (see docs/CCM.md) to the JSON object @p root.
 * @return 0 or -ENOMEM.
 */
int ccm_status_to_json(const struct ccm_status *st, struct json_object *root);

/** @} */

/* ---------------------------------------------------------------------- */
/** @name Clients and ports */
/** @{ */

/** What the partner looks like, given to partner_ready. */
struct ccm_partner_info {
	char node[CCM_NODE_MAX];
	uint16_t major, minor;
	uint64_t generation;
	bool client_present; /**< the partner has this client too */
	unsigned ports;	     /**< ports paired (min of both sides) */
};

/**
 * Client callbacks; any may be NULL. They run on the reactor thread and may
 * call any ccm function, including ccm_client_unregister() of their client.
 */
struct ccm_client_ops {
	/** Session up: the partner is ready; the paired ports are already up. */
	void (*partner_ready)(struct ccm_client *c, const struct ccm_partner_info *pi, void *arg);
	/**
	 * The session is about to end: stop using the ports (they go down right
	 * after; operations in flight then complete with -ECONNRESET).
	 */
	void (*terminating)(struct ccm_client *c, enum ccm_term_reason why, void *arg);
	/** The port can be used (the partner has it and knows our memory). */
	void (*port_up)(struct ccm_port *p, void *arg);
	void (*port_down)(struct ccm_port *p, void *arg);
	/** A message from the partner's port (valid during the call only). */
	void (*message)(struct ccm_port *p, const void *msg, size_t len, void *arg);
	/**
	 * The partner's ccm_port_write_notify(): @p len bytes at @p offset of
	 * this port's memory are in place; @p value is the caller's.
	 */
	void (*notify)(struct ccm_port *p, uint64_t offset, uint64_t len, uint64_t value,
		       void *arg);
	/** ccm_port_send() returned -EAGAIN earlier and has room again. */
	void (*send_ready)(struct ccm_port *p, void *arg);
};

/** This client moves a lot of data: give its ports an instance of their own. */
#define CCM_CLIENT_HEAVY (1u << 0)

struct ccm_client_spec {
	const char *name;      /**< [A-Za-z0-9_-], unique on this node */
	unsigned n_ports;      /**< 1..CCM_MAX_PORTS */
	size_t port_mem;       /**< bytes of memory per port the partner may access */
	void *const *port_buf; /**< NULL, or n_ports caller-owned buffers of port_mem
				    bytes (e.g. an mmap'd file) that outlive the client */
	unsigned flags;	       /**< CCM_CLIENT_* */
	const struct ccm_client_ops *ops;
	void *arg; /**< passed to every callback */
};

/**
 * Register a client. Allowed before ccm_start() and at any time after; if a
 * session is up, the partner learns of it at once and partner_ready follows
 * (from the loop, never from inside this call).
 * @return 0, -EINVAL (bad spec), -EEXIST (name taken), -ENOSPC, -ENOMEM.
 */
int ccm_client_register(struct ccm *ccm, const struct ccm_client_spec *spec,
			struct ccm_client **out);

/**
 * Remove a client: its ports go down (no callback), the partner is told,
 * operations in flight complete with -ECANCELED first.
 */
void ccm_client_unregister(struct ccm_client *c);

const char *ccm_client_name(const struct ccm_client *c);
struct ccm_port *ccm_client_port(const struct ccm_client *c, unsigned idx);

unsigned ccm_port_index(const struct ccm_port *p);
struct ccm_client *ccm_port_client(const struct ccm_port *p);
bool ccm_port_is_up(const struct ccm_port *p);
/** This side's memory of the port (what the partner reads and writes). */
void *ccm_port_mem(const struct ccm_port *p);
size_t ccm_port_mem_size(const struct ccm_port *p);
/** Size of the partner's memory of this port; 0 while the port is down. */
uint64_t ccm_port_remote_size(const struct ccm_port *p);

/** Completion of a port operation: 0, or a negative errno. */
typedef void (*ccm_op_cb)(struct ccm_op *op, int status);

/**
 * A port operation, embedded in the caller's object and untouched by the
 * caller between the call that starts it and its done callback. The CCM
 * keeps the parameters in it so that it can re-issue the operation on
 * another link; the client sees one completion.
 */
struct ccm_op {
	ccm_op_cb done;
	void *arg;
	/* Private to the CCM. */
	struct fab_op fop;
	struct ccm_port *port;
	struct slist_node qnode; /* on an instance's pending list or the held list */
	void *buf;
	size_t len;
	uint64_t offset;
	uint64_t value;
	uint64_t epoch;
	uint64_t post_ns;
	unsigned flags;
	uint16_t link;
	uint8_t kind;
	uint8_t tries;
	uint32_t fence; /* completion held until the partner fenced this lane failure */
};

/** Flag of ccm_port_write(): complete only once the data is in the partner's memory. */
#define CCM_WRITE_DELIVERED (1u << 0)

/**
 * RDMA-write @p len bytes at @p buf into the partner's port memory at
 * @p offset. Returns at once; @p op->done follows. Errors returned here
 * (no callback): -ENOTCONN (port down), -ERANGE (outside the partner's
 * memory), -EINVAL. Errors through done: -ECONNRESET (the session ended
 * first), -ECANCELED (unregistered); a failing link is not an error: the
 * write is re-issued on another link (so writes must be idempotent, which a
 * write to a fixed offset is).
 */
int ccm_port_write(struct ccm_port *p, struct ccm_op *op, const void *buf, size_t len,
		   uint64_t offset, unsigned flags);

/**
 * RDMA-write over link @p link only: never re-issued on another link,
 * failed when that link fails. For the failover monitor's heartbeats, which
 * must prove each link by itself. done says the local buffer may be reused
 * (no delivery confirmation). Returns at once with -EINVAL (bad arguments or
 * link index), -ENOTCONN (port down), -ERANGE (outside the partner's
 * memory) or -ENOLINK (the link is down now: no operation was started).
 * Through done: 0, -ENOLINK (the link failed under it), -ECONNRESET (the
 * session ended first), -ECANCELED (unregistered), -ESHUTDOWN (destroyed).
 * Keep one in flight per link: a write stuck on a link that died completes
 * once the CCM takes the link out (ic.link_deadline_ms after its last
 * probe completed), or, when the session ended first, once the link returns or
 * is taken out in a later session.
 *
 * Link indexes are the order of the [ic] link lines, which both nodes
 * list alike: our link i is joined to the partner's link i (the
 * partner's heartbeat for link i lands at i x 64 of the monitor's port).
 *
 * The monitor's hb_send(arg, i, rec, len), in the node, is then: when
 * link i's previous write has not completed, skip (-EBUSY); else copy rec
 * into the per-link buffer and ccm_port_write_link(port, i, &op[i], buf[i],
 * len, i * 64).
 */
int ccm_port_write_link(struct ccm_port *p, unsigned link, struct ccm_op *op, const void *buf,
			size_t len, uint64_t offset);

/** Number of interconnect links (ccm_port_write_link's indexes). */
unsigned ccm_link_count(const struct ccm *ccm);
/** Name of link @p link ("ic0"), or NULL past the last. */
const char *ccm_link_name(const struct ccm *ccm, unsigned link);
/** Whether the CCM sees link @p link up now (its probes complete). */
bool ccm_link_is_up(const struct ccm *ccm, unsigned link);

/** RDMA-read @p len bytes of the partner's port memory at @p offset into @p buf. */
int ccm_port_read(struct ccm_port *p, struct ccm_op *op, void *buf, size_t len, uint64_t offset);

/**
 * Write (always delivered), then raise notify(offset, len, value) at the
 * partner, exactly once and in order with the port's messages. done follows
 * the partner's acknowledgement of the notification.
 */
int ccm_port_write_notify(struct ccm_port *p, struct ccm_op *op, const void *buf, size_t len,
			  uint64_t offset, uint64_t value);

/**
 * Send a message of at most CCM_MSG_MAX bytes (copied) on the port's
 * channel: delivered once, in order, while the session lives.
 * @return 0, -ENOTCONN (port down), -EMSGSIZE, or -EAGAIN when the window of
 * unacknowledged messages is full (send_ready follows).
 */
int ccm_port_send(struct ccm_port *p, const void *msg, size_t len);

/** @} */

#endif
