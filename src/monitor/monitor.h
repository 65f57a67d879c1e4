/**
 * @file monitor.h
 * The failover monitor, as the node sees it: heartbeats, the mailbox
 * (split-brain guard), the watchdog, the I/O lease (fencing of a hung or
 * stopped node), and the HA state machine that decides takeover and
 * giveback, all behind one struct monitor on the node's reactor.
 *
 * The monitor takes only its own options (struct monitor_opts, defaults
 * from monitor_opts_init()); it never reads the configuration file. It
 * calls the node through struct monitor_ops, always on the loop thread,
 * and the node reports every action with monitor_action_done().
 * Heartbeats plug in through monitor_hb_region() (the memory the CCM
 * registers for the partner's one-sided writes) and monitor_ops.hb_send
 * (one write per link). docs/FAILOVER.md gives the design and every timing.
 *
 * The parts inside (records, mailbox thread, watchdog thread, the pure
 * state machine) and their test-only API are in monitor_int.h.
 */
#ifndef DUET_MONITOR_MONITOR_H
#define DUET_MONITOR_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/loop.h"

struct json_object;
struct ha; /* the state machine (monitor_int.h) */

#define MONITOR_ID_MAX	  16u /**< node id with its NUL, as stored in records */
#define MONITOR_MAX_LINKS 8u  /**< interconnect links watched */
#define MONITOR_REC_SIZE  64u /**< a heartbeat record, one slot per link */

/** Exit status of a process ended by its watchdog (MONITOR_WATCHDOG_EXIT). */
#define MONITOR_WATCHDOG_STATUS 86

/** State of a mirror: either this node's own writes into the partner
 * (published in records) or the partner's log held here (an HA input). */
enum ha_mirror {
	HA_MIRROR_OFF = 0,  /**< no mirror: nothing acknowledged is held by the partner */
	HA_MIRROR_IN_SYNC,  /**< every acknowledged write is in the partner's copy */
	HA_MIRROR_DEGRADED, /**< writes were acknowledged without the partner */
	HA_MIRROR_RESYNCING,
	HA_MIRROR_COUNT,
};

/** Actions the state machine asks for; the node performs the storage ones
 * (see monitor_ops.action) and reports each with monitor_action_done(). */
enum ha_action {
	HA_ACT_WRITE_MARK = 1u << 0, /**< write the takeover mark (gen) in the partner's mailbox */
	HA_ACT_REPLAY_PARTNER = 1u << 1, /**< replay the partner's mirror onto its shelf */
	HA_ACT_SERVE_PARTNER = 1u << 2,	 /**< serve the partner's volumes here */
	HA_ACT_DRAIN_PARTNER = 1u << 3,	 /**< drain, make durable, stop serving them */
	HA_ACT_CLEAR_MARK = 1u << 4,	 /**< clear our mark in the partner's mailbox */
	HA_ACT_STOP_OWN = 1u << 5,	 /**< fenced: stop serving every volume here at once */
	/** Given back: drop the own log (the partner replayed it at mark_gen)
	 * and open the own volumes, without serving them yet. Idempotent. */
	HA_ACT_START_OWN = 1u << 6,
	HA_ACT_PERSIST_ACK = 1u << 7, /**< record acked_gen = mark_gen durably (own mailbox) */
	HA_ACT_SERVE_OWN = 1u << 8,   /**< serve the own volumes again */
};

/** Whether the taker of a mark replayed the owner's log (its copy) at the
 * mark's generation: the owner's proof that it may drop its own log. */
enum monitor_mark_replay {
	/** Written by a taker that does not say (older): taken as replayed,
	 * the behaviour before the proof existed. */
	MONITOR_MARK_REPLAY_UNSAID = 0,
	MONITOR_MARK_REPLAY_PENDING = 1, /**< not (yet): the owner replays its own log */
	MONITOR_MARK_REPLAY_DONE = 2,	 /**< replayed, or nothing to replay: drop it */
};

/** A takeover mark, written into the partner's mailbox by the taker. */
struct monitor_mark {
	char taker[MONITOR_ID_MAX];
	char owner[MONITOR_ID_MAX];	 /**< whose mailbox it is */
	uint64_t gen;			 /**< takeover generation, +1 per takeover */
	uint64_t time_ns;		 /**< taker's CLOCK_REALTIME */
	bool set;			 /**< false: cleared at giveback (the record stays) */
	enum monitor_mark_replay replay; /**< kept when cleared */
};

/** What the watchdog does to a process whose reactor stalled. */
enum monitor_watchdog_action {
	MONITOR_WATCHDOG_EXIT = 0, /**< one log line, then _exit(MONITOR_WATCHDOG_STATUS) */
	MONITOR_WATCHDOG_ABORT,	   /**< one log line, then abort() (core dump) */
};

/** Done callback of an asynchronous request, on the loop thread. */
typedef void (*monitor_done_cb)(void *arg, int rc);

struct monitor;

/** Calls from the monitor to the node, all on the loop thread. */
struct monitor_ops {
	/** Boot check done: serve own volumes unless @p taken_over (then wait). */
	void (*boot_checked)(void *arg, bool taken_over, const struct monitor_mark *mark);
	/** A stall or stop of this process was seen: the I/O lease is dropped;
	 * hold new shelf I/O until io_resume or fenced. */
	void (*fence_check)(void *arg, uint64_t stall_ms);
	/** The lease holds again after a stall or after monitor_io_wait(). */
	void (*io_resume)(void *arg);
	/** Perform an action (REPLAY_PARTNER, SERVE_PARTNER, DRAIN_PARTNER,
	 * STOP_OWN, START_OWN, SERVE_OWN); report with monitor_action_done().
	 * STOP_OWN means a takeover mark is in our mailbox: close every client
	 * and fail held I/O, now. */
	void (*action)(void *arg, enum ha_action act, uint64_t gen);
	/** Send a heartbeat record on one link (the CCM writes it into the
	 * partner's slot @p link of its heartbeat region). NULL: none yet. */
	int (*hb_send)(void *arg, unsigned link, const void *rec, size_t len);
	/** The state or phase changed (may be NULL; fields in monitor_int.h). */
	void (*state_changed)(void *arg, const struct ha *h);
};

/**
 * Everything the monitor is told. Strings are copied by monitor_create().
 * The timings are those of docs/FAILOVER.md, "Settings", under the same
 * names; monitor_opts_init() sets their defaults.
 */
struct monitor_opts {
	struct loop *loop; /**< the node's reactor */
	const struct monitor_ops *ops;
	void *arg;		   /**< for @ref ops */
	const char *node_id;	   /**< this node (at most MONITOR_ID_MAX - 1 bytes) */
	const char *partner_id;	   /**< NULL or "": no partner */
	const char *shelf;	   /**< own shelf: SHELF/mailbox is created if missing */
	const char *partner_shelf; /**< where this node sees the partner's shelf; NULL or "" */
	unsigned n_links;	   /**< heartbeat links (at most MONITOR_MAX_LINKS) */
	const char *link_names[MONITOR_MAX_LINKS]; /**< for status */
	uint64_t heartbeat_ms;			   /**< heartbeat interval on every link */
	uint64_t deadline_ms;	      /**< no heartbeat on any link this long: suspect */
	uint64_t mailbox_ms;	      /**< mailbox write/read cycle */
	uint64_t mailbox_deadline_ms; /**< partner mailbox unchanged this long: silent */
	uint64_t lease_ms;	      /**< I/O allowed this long after a clean own-mark read */
	/** The taker waits lease_ms + this after its mark, or the partner's
	 * sum when its mailbox record publishes a larger one. */
	uint64_t fence_margin_ms;
	uint64_t watchdog_ms; /**< reactor stall that ends the process */
	bool auto_giveback;   /**< give back once the partner waits giveback_delay_ms */
	uint64_t giveback_delay_ms;
	/** A node that has not heard its partner since it started waits this
	 * long before any automatic takeover (cold boot of the pair); 0: none. */
	uint64_t boot_grace_ms;
	enum monitor_watchdog_action watchdog_action;
	bool no_watchdog;    /**< tests only */
	bool defer_watchdog; /**< monitor_start() leaves it to monitor_start_watchdog() */
};

/** Zero @p o and set the default timings (those of an empty [monitor]). */
void monitor_opts_init(struct monitor_opts *o);

/** Open the mailboxes; nothing runs yet. */
int monitor_create(const struct monitor_opts *o, struct monitor **out);
/** Start the watchdog, the mailbox thread (boot check, then boot_checked())
 * and the heartbeat tick. */
int monitor_start(struct monitor *m);
void monitor_destroy(struct monitor *m);
/**
 * Start the watchdog now (with defer_watchdog): a node whose boot work
 * blocks the reactor for long (a large NVRAM log being created and
 * mapped) starts it once it is ready to turn its loop.
 */
int monitor_start_watchdog(struct monitor *m);

/** The I/O gate: call before handing shelf I/O to the store. Lock-free. */
bool monitor_io_allowed(const struct monitor *m);
/** The gate was found closed: get io_resume() (or a fence) soon. */
void monitor_io_wait(struct monitor *m);

/** State of the partner's log held here (from the mirror module). */
void monitor_set_mirror(struct monitor *m, enum ha_mirror partner_copy);
/** The partner handed its own shelf over to us (docs/RELOCATION.md, "On a
 * failed path"): it drained its volumes and held its mirror while ours was
 * in sync, and our copy of its log was judged current (or it dropped its
 * log). Its published "degraded" is that hold: a takeover loses nothing. */
void monitor_set_partner_log_given(struct monitor *m, bool given);
/**
 * This node's own mirror state, published in heartbeats and the mailbox.
 * Going DEGRADED: call before acknowledging any write the partner lacks,
 * and wait for @p cb (the record is durable), so that the partner never
 * takes over automatically with a copy that misses an acknowledged write.
 */
int monitor_publish_mirror(struct monitor *m, enum ha_mirror own, monitor_done_cb cb, void *arg);

/** The heartbeat region: one MONITOR_REC_SIZE slot per link, 64-byte
 * aligned; the partner writes its heartbeat for link i at i * 64. */
void monitor_hb_region(struct monitor *m, void **base, size_t *len);
/** Or push a heartbeat received on @p link (copied into its slot). */
void monitor_hb_receive(struct monitor *m, unsigned link, const void *rec, size_t len);

/** An action of monitor_ops.action finished. */
void monitor_action_done(struct monitor *m, enum ha_action act, int rc);
/** The same for a failure (@p rc < 0) whose reason the node knows better
 * than strerror(@p rc): @p why goes into ha.reason ("replay of the
 * partner's mirror failed: WHY"). */
void monitor_action_failed(struct monitor *m, enum ha_action act, int rc, const char *why);
/**
 * REPLAY_PARTNER: the partner's log is replayed (or there was nothing to
 * replay) at the current takeover's generation: rewrite our mark in its
 * mailbox saying so; @p cb once durable (and read back). The node calls it
 * before it reports the action done and serves: the partner drops its own
 * log at giveback only on this proof. -EINVAL outside a takeover's replay.
 */
int monitor_mark_replayed(struct monitor *m, monitor_done_cb cb, void *arg);
/**
 * START_OWN: whether the partner replayed our log at the mark just
 * cleared (its mark says so, or says nothing: an older taker), so that
 * the log is dropped; false: it did not (its replay was refused or never
 * ran), and our log must be replayed onto our shelf before we serve.
 */
bool monitor_own_log_replayed(struct monitor *m);
/** Progress of the replay (takeover) or drain (giveback), for status. */
void monitor_progress(struct monitor *m, uint64_t done_bytes, uint64_t total_bytes);

/** Operator takeover (@p force skips the mirror and liveness checks);
 * 0 once started, or a negative errno with @p err set. */
int monitor_takeover(struct monitor *m, bool force, char *err, size_t errlen);
/** Operator giveback (@p force skips the partner-ready check); as above. */
int monitor_giveback(struct monitor *m, bool force, char *err, size_t errlen);

/** What a state change says, in the names of status and docs, for
 * monitor_ops.state_changed callers that see only this header. */
struct monitor_ha_view {
	const char *state;   /**< "takeover" */
	const char *phase;   /**< "fence_wait" */
	const char *reason;  /**< why the last change happened */
	const char *partner; /**< "dead" */
	uint64_t mark_gen;
};
void monitor_ha_describe(const struct ha *h, struct monitor_ha_view *v);

/** The HA view in numbers, for metrics and the service manager's status
 * line (names as in `duetctl status`). */
struct monitor_summary {
	const char *state;   /**< "up", "takeover", ... ("up" while booting) */
	const char *phase;   /**< "none", "marking", ... ("booting" while booting) */
	const char *partner; /**< "alive", "dead", ... */
	unsigned state_idx;  /**< index of @ref state in monitor_state_name() */
	bool partner_alive;  /**< heartbeats on at least one link */
	bool takeover_possible;
	uint64_t takeovers; /**< takeovers this node started (state entered takeover) */
	uint64_t givebacks; /**< givebacks this node completed (giving_back to up) */
	uint64_t mark_gen;
};
void monitor_get_summary(const struct monitor *m, struct monitor_summary *s);
/** Name of HA state @p i ("up", "takeover", ...), NULL past the last. */
const char *monitor_state_name(unsigned i);

/** Fill the "ha" object of `duetctl status --json`. */
void monitor_status_json(struct monitor *m, struct json_object *ha);

#endif
