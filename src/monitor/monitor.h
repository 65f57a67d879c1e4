/**
 * @file monitor.h
 * The failover monitor: heartbeats, the mailbox (split-brain guard), the
 * watchdog, the I/O lease (fencing of a hung or stopped node), and the HA
 * state machine that decides takeover and giveback.
 *
 * Four layers, each usable alone (docs/FAILOVER.md gives the design and
 * every timing):
 *
 *  - records: the on-disk and on-wire formats (mailbox sectors, heartbeat
 *    slots), each with a CRC32C so a torn write is seen, never trusted.
 *  - mbox: the mailbox file in each shelf, driven by a small thread with
 *    its own timer (an O_DSYNC write may take milliseconds; the reactor
 *    never waits on it). It publishes this node's liveness record, watches
 *    the partner's, writes and clears takeover marks, and grants the I/O
 *    lease: shelf I/O is allowed only until lease_ms after the start of the
 *    last read of the own mailbox that found no takeover mark.
 *  - watchdog: a thread that ends the process when the reactor stalls past
 *    watchdog_ms, and that tells a stalled loop from a stopped process.
 *  - ha: the state machine, pure logic with time as an input.
 *
 * struct monitor wires them to a reactor and to the node through
 * struct monitor_ops. Heartbeats plug in through monitor_hb_region() (the
 * memory the CCM registers for the partner's one-sided writes) and
 * monitor_ops.hb_send (one write per link).
 */
#ifndef DUET_MONITOR_MONITOR_H
#define DUET_MONITOR_MONITOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "common/loop.h"

struct json_object;

/* ------------------------------------------------------------------------ */
/** @name HA and mirror states (shared by records, the state machine, status) */
/**@{*/

/** HA state of a node, as shown by `duetctl status`. */
enum ha_state {
	HA_UP = 0,		 /**< serving its own volumes */
	HA_TAKEOVER,		 /**< taking over or serving the partner's volumes too */
	HA_TAKEN_OVER,		 /**< fenced by the partner's takeover mark; serves nothing */
	HA_WAITING_FOR_GIVEBACK, /**< taken over, back in touch with the partner, ready */
	HA_GIVING_BACK,		 /**< draining the partner's volumes to hand them back */
	HA_STATE_COUNT,
};

/** State of a mirror: either this node's own writes into the partner
 * (published in records) or the partner's log held here (an HA input). */
enum ha_mirror {
	HA_MIRROR_OFF = 0,  /**< no mirror: nothing acknowledged is held by the partner */
	HA_MIRROR_IN_SYNC,  /**< every acknowledged write is in the partner's copy */
	HA_MIRROR_DEGRADED, /**< writes were acknowledged without the partner */
	HA_MIRROR_RESYNCING,
	HA_MIRROR_COUNT,
};

const char *monitor_ha_state_name(enum ha_state s);
const char *monitor_ha_mirror_name(enum ha_mirror m);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Records: mailbox sectors and heartbeat slots */
/**@{*/

#define MONITOR_REC_SIZE    64u	  /**< encoded size of every record */
#define MONITOR_SECTOR	    4096u /**< one writer per sector */
#define MONITOR_MBOX_SIZE   (4u * MONITOR_SECTOR)
#define MONITOR_MBOX_NAME   "mailbox" /**< SHELF/mailbox */
#define MONITOR_SECT_ALIVE  0u	      /**< written by the owner only */
#define MONITOR_SECT_MARK   1u	      /**< written by the partner only */
#define MONITOR_MAX_LINKS   CONFIG_MAX_LINKS
#define MONITOR_REC_VERSION 1u

/** Liveness of one node: its mailbox record, and the body of a heartbeat. */
struct monitor_alive {
	char node[CONFIG_ID_MAX];
	uint64_t boot_gen;  /**< +1 at every start of the node */
	uint64_t counter;   /**< +1 at every record written in this boot */
	uint64_t time_ns;   /**< writer's CLOCK_REALTIME, for operators only */
	uint64_t acked_gen; /**< last takeover generation whose giveback this node completed */
	enum ha_state state;
	enum ha_mirror mirror; /**< the writer's own mirror (in_sync: every ack is mirrored) */
};

/** A takeover mark, written into the partner's mailbox by the taker. */
struct monitor_mark {
	char taker[CONFIG_ID_MAX];
	char owner[CONFIG_ID_MAX]; /**< whose mailbox it is */
	uint64_t gen;		   /**< takeover generation, +1 per takeover */
	uint64_t time_ns;	   /**< taker's CLOCK_REALTIME */
	bool set;		   /**< false: cleared at giveback (the record stays) */
};

enum monitor_rec_kind {
	MONITOR_REC_ALIVE = 1,
	MONITOR_REC_MARK = 2,
	MONITOR_REC_HEARTBEAT = 3,
};

/** Encode @p a as @p kind (ALIVE or HEARTBEAT) into MONITOR_REC_SIZE bytes. */
void monitor_alive_encode(const struct monitor_alive *a, enum monitor_rec_kind kind, void *buf);
/**
 * Decode a record of @p kind.
 * @return 0; -ENODATA for an all-zero (never written) record; -EBADMSG for a
 * bad magic or CRC (torn or foreign); -EPROTO for an unknown version;
 * -EINVAL for another kind or an out-of-range field.
 */
int monitor_alive_decode(const void *buf, enum monitor_rec_kind kind, struct monitor_alive *a);
void monitor_mark_encode(const struct monitor_mark *m, void *buf);
int monitor_mark_decode(const void *buf, struct monitor_mark *m);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Mailbox */
/**@{*/

struct monitor_mbox;

/** Done callback of an asynchronous mailbox request, on the loop thread. */
typedef void (*monitor_done_cb)(void *arg, int rc);
/** Answer of a mark check: @p rc < 0 when the own mailbox could not be read. */
typedef void (*monitor_mark_cb)(void *arg, int rc, const struct monitor_mark *mark);

struct monitor_mbox_opts {
	struct loop *loop;	   /**< results come back on it; its turns gate liveness */
	const char *node_id;	   /**< this node */
	const char *shelf;	   /**< own shelf: SHELF/mailbox is created if missing */
	const char *partner_shelf; /**< NULL or "": no partner mailbox */
	uint32_t interval_ms;	   /**< cycle: write own record, read own mark, read partner */
	uint32_t lease_ms;	   /**< I/O lease after a clean own read; loop liveness gate */
	bool buffered;		   /**< never O_DIRECT (one host only; tests) */
	/** Called on the loop after every cycle whose view changed (may be NULL). */
	void (*on_cycle)(void *arg);
	void *arg;
};

/** What this node knows of its own mailbox. */
struct monitor_mbox_own_view {
	int rc;			  /**< last own read: 0 or a negative errno */
	uint64_t boot_gen;	  /**< this boot's generation (old + 1) */
	uint64_t boot_acked_gen;  /**< acked_gen of the record found at boot */
	uint64_t counter;	  /**< records written */
	uint64_t last_write_ns;	  /**< monotonic end of the last good write; 0 none */
	bool mark_valid;	  /**< a mark record (set or cleared) is there */
	struct monitor_mark mark; /**< the last mark read */
	bool conflict;		  /**< someone else writes our liveness sector */
};

/** What this node knows of the partner's mailbox. */
struct monitor_mbox_partner_view {
	int rc;			  /**< last read: 0, or why it failed (-ENOENT, -EBADMSG, ...) */
	bool seen;		  /**< a valid liveness record was read at least once */
	struct monitor_alive rec; /**< the last valid one */
	uint64_t last_change_ns;  /**< monotonic: first read that showed the current record */
	uint64_t silent_ns;	  /**< evidence of silence: unchanged across reads this long */
	uint64_t last_read_ns;	  /**< monotonic start of the last successful read */
	bool mark_valid;	  /**< our mark record in the partner's mailbox */
	struct monitor_mark mark;
};

/** Open (create) the own mailbox and the partner's; no I/O thread yet. */
int monitor_mbox_open(const struct monitor_mbox_opts *o, struct monitor_mbox **out);
/**
 * Start the thread. Its first cycle reads the own mailbox before writing:
 * @p boot_cb gets the mark found there (boot check) and the boot generation
 * is the old one + 1. Publishing starts after that.
 */
int monitor_mbox_start(struct monitor_mbox *mb, monitor_mark_cb boot_cb, void *arg);
/** Stop the thread (waits for the cycle in progress) and close the files. */
void monitor_mbox_close(struct monitor_mbox *mb);

/** Set what the next records say. */
void monitor_mbox_set_state(struct monitor_mbox *mb, enum ha_state state, enum ha_mirror mirror,
			    uint64_t acked_gen);
/** @p cb once a record carrying the state set so far is durable. */
int monitor_mbox_sync(struct monitor_mbox *mb, monitor_done_cb cb, void *arg);
/** @p cb with a mark read by a read that starts after this call. */
int monitor_mbox_check(struct monitor_mbox *mb, monitor_mark_cb cb, void *arg);
/** Write (or clear: @p set false) a mark in the partner's mailbox; @p cb once durable. */
int monitor_mbox_write_mark(struct monitor_mbox *mb, uint64_t gen, bool set, monitor_done_cb cb,
			    void *arg);

void monitor_mbox_own(struct monitor_mbox *mb, struct monitor_mbox_own_view *v);
void monitor_mbox_partner(struct monitor_mbox *mb, struct monitor_mbox_partner_view *v);

/** True while the I/O lease holds. Lock-free, any thread. */
bool monitor_mbox_io_allowed(const struct monitor_mbox *mb);
/** Drop the lease now (a stall was seen): the next clean read renews it. */
void monitor_mbox_lease_drop(struct monitor_mbox *mb);
/** Whether the mailbox is opened with O_DIRECT (else O_DSYNC through the cache). */
bool monitor_mbox_direct(const struct monitor_mbox *mb);

/** CLOCK_BOOTTIME in ns: counts a stopped process and a suspended host. */
uint64_t monitor_boottime_ns(void);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name Watchdog */
/**@{*/

/** Exit status of a process ended by its watchdog (MONITOR_WATCHDOG_EXIT). */
#define MONITOR_WATCHDOG_STATUS 86

enum monitor_watchdog_action {
	MONITOR_WATCHDOG_EXIT = 0, /**< one log line, then _exit(MONITOR_WATCHDOG_STATUS) */
	MONITOR_WATCHDOG_ABORT,	   /**< one log line, then abort() (core dump) */
};

struct monitor_watchdog;

struct monitor_watchdog_opts {
	struct loop *loop;   /**< the reactor watched */
	uint32_t timeout_ms; /**< loop stall that ends the process */
	uint32_t tick_ms;    /**< check period; 0: 5 ms */
	uint32_t jump_ms;    /**< own tick this late: the process was stopped; 0: 50 ms */
	enum monitor_watchdog_action action;
	/** Called on the loop after the process was stopped or starved (may be NULL). */
	void (*on_jump)(void *arg, uint64_t stopped_ms);
	void *arg;
};

/**
 * Start the watchdog thread. Call on the loop's thread: it also arms a
 * timer that keeps an idle loop turning at least every timeout_ms / 10
 * (the loop stamps a turn before it sleeps), so a stall of 0.9 x
 * timeout_ms or more ends the process. It arms itself at the first loop
 * turn after this call: boot work that blocks before loop_run() is safe.
 */
int monitor_watchdog_start(const struct monitor_watchdog_opts *o, struct monitor_watchdog **out);
void monitor_watchdog_stop(struct monitor_watchdog *w);
/** Stops (jumps) seen so far. */
uint64_t monitor_watchdog_jumps(const struct monitor_watchdog *w);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name HA state machine (pure: no I/O, time is an input) */
/**@{*/

/** Actions the state machine asks for; the owner performs them and reports
 * each with monitor_ha_done(). */
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

const char *monitor_ha_action_name(enum ha_action a);

/** Phases inside a state. */
enum ha_phase {
	HA_PH_NONE = 0,
	HA_PH_MARKING,	  /**< takeover: writing the mark */
	HA_PH_FENCE_WAIT, /**< takeover: waiting out the partner's lease */
	HA_PH_REPLAYING,  /**< takeover: replaying the partner's mirror */
	HA_PH_SERVING,	  /**< takeover: serving the partner's volumes */
	HA_PH_STOPPING,	  /**< taken over: own volumes being stopped */
	HA_PH_STARTING,	  /**< given back: own log dropped, volumes opened */
	HA_PH_ACKING,	  /**< given back: acked_gen being made durable */
	HA_PH_DRAINING,	  /**< giving back: draining the partner's volumes */
	HA_PH_CLEARING,	  /**< giving back: clearing the mark */
	HA_PH_FAILED,	  /**< an action failed; the operator decides */
};

const char *monitor_ha_phase_name(enum ha_phase p);

/** How this node sees its partner. */
enum ha_partner {
	HA_PARTNER_NONE = 0, /**< no partner configured */
	HA_PARTNER_UNKNOWN,  /**< no evidence yet */
	HA_PARTNER_ALIVE,    /**< heartbeats on at least one link */
	HA_PARTNER_CUT_OFF,  /**< no heartbeat, but its mailbox advances */
	HA_PARTNER_SUSPECT,  /**< no heartbeat; mailbox not yet silent long enough */
	HA_PARTNER_DEAD,     /**< silent on every link and in its mailbox */
};

const char *monitor_ha_partner_name(enum ha_partner p);

struct ha_config {
	bool has_partner;	  /**< [ic] partner set */
	bool has_partner_mailbox; /**< [monitor] partner_shelf set */
	uint64_t deadline_ms;	  /**< heartbeat silence on every link: suspect */
	uint64_t mailbox_deadline_ms;
	uint64_t fence_wait_ms; /**< after the mark: partner's lease_ms + fence_margin_ms */
	bool auto_giveback;
	uint64_t giveback_delay_ms;
	uint64_t retry_ms; /**< after a failed mark write; 0: 1000 */
};

#define HA_NEVER UINT64_MAX

/** Everything the state machine looks at, sampled by its owner. */
struct ha_inputs {
	uint64_t now_ms;
	unsigned n_links;
	uint64_t hb_age_ms[MONITOR_MAX_LINKS]; /**< since a new heartbeat on each link; HA_NEVER */
	bool hb_valid;			       /**< a heartbeat record was received this boot */
	struct monitor_alive hb;	       /**< the newest one */
	int mbox_rc;			       /**< partner mailbox: 0 or why unreadable */
	bool mbox_seen;			       /**< its record was valid at least once */
	uint64_t mbox_silent_ms;	       /**< evidence of silence */
	uint64_t mbox_change_age_ms;	       /**< since it last advanced; HA_NEVER */
	uint64_t mbox_read_ms;		       /**< start of the last good read (now_ms clock) */
	struct monitor_alive mbox;	       /**< the partner's last mailbox record */
	bool partner_mark_valid;	       /**< a mark of ours exists in its mailbox */
	bool partner_mark_set;		       /**< ... and is set (not cleared) */
	uint64_t partner_mark_gen;
	/** The partner's log held here, as the receiving side knows it: IN_SYNC
	 * once a resync completed and no record was missed since. Losing the
	 * session does not make it DEGRADED (the copy only stops growing); the
	 * partner publishes DEGRADED itself before acknowledging without us. */
	enum ha_mirror mirror;
	bool own_mark;	       /**< a takeover mark is set in our mailbox */
	uint64_t own_mark_gen; /**< its generation (also when cleared) */
	bool own_conflict;     /**< another writer in our liveness sector */
};

struct ha_output {
	uint32_t actions;  /**< enum ha_action bits to perform now */
	uint64_t mark_gen; /**< for WRITE_MARK / CLEAR_MARK / START_OWN */
	uint64_t wake_ms;  /**< step again at this time at the latest; HA_NEVER */
	bool changed;	   /**< state or phase changed (log, publish) */
};

#define HA_REASON_MAX 200

/** The state machine. Fields are read-only for its owner. */
struct ha {
	struct ha_config cfg;
	enum ha_state state;
	enum ha_phase phase;
	enum ha_partner partner;
	uint64_t since_ms;	   /**< time of the last state or phase change */
	uint64_t phase_until_ms;   /**< fence wait end, retry time */
	uint64_t mark_gen;	   /**< generation of the current takeover */
	uint64_t acked_gen;	   /**< own: last giveback completed */
	uint64_t waiting_since_ms; /**< partner waiting for giveback since; HA_NEVER */
	bool forced;		   /**< the current takeover was forced */
	bool takeover_possible;
	char reason[HA_REASON_MAX];	 /**< why the last change happened */
	char why[HA_REASON_MAX];	 /**< why takeover is (not) possible now */
	char partner_why[HA_REASON_MAX]; /**< how the partner is seen, in words */
};

/** Start in HA_UP, or in HA_TAKEN_OVER when the boot check found a mark. */
void monitor_ha_init(struct ha *h, const struct ha_config *c, uint64_t now_ms, bool taken_over,
		     uint64_t mark_gen, uint64_t acked_gen);
/** Re-evaluate with fresh inputs. */
void monitor_ha_step(struct ha *h, const struct ha_inputs *in, struct ha_output *out);
/**
 * Operator command: takeover (@p force skips the mirror and liveness
 * checks), or giveback (@p force skips the partner-ready check).
 * @return 0 or a negative errno with @p err set.
 */
int monitor_ha_takeover(struct ha *h, const struct ha_inputs *in, bool force, struct ha_output *out,
			char *err, size_t errlen);
int monitor_ha_giveback(struct ha *h, const struct ha_inputs *in, bool force, struct ha_output *out,
			char *err, size_t errlen);
/** An action asked for earlier finished with @p rc. */
void monitor_ha_done(struct ha *h, enum ha_action act, int rc, const struct ha_inputs *in,
		     struct ha_output *out);

/**@}*/
/* ------------------------------------------------------------------------ */
/** @name The monitor: everything above, on a reactor */
/**@{*/

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
	/** The state or phase changed (may be NULL). */
	void (*state_changed)(void *arg, const struct ha *h);
};

struct monitor_opts {
	struct loop *loop;
	const struct duet_config *cfg; /**< [node] id, shelf; [ic] partner, links; [monitor] */
	const struct monitor_ops *ops;
	void *arg;
	enum monitor_watchdog_action watchdog_action;
	bool no_watchdog;    /**< tests only */
	bool defer_watchdog; /**< monitor_start() leaves it to monitor_start_watchdog() */
};

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
/** Progress of the replay (takeover) or drain (giveback), for status. */
void monitor_progress(struct monitor *m, uint64_t done_bytes, uint64_t total_bytes);

int monitor_takeover(struct monitor *m, bool force, char *err, size_t errlen);
int monitor_giveback(struct monitor *m, bool force, char *err, size_t errlen);

const struct ha *monitor_ha(const struct monitor *m);
/** Fill the "ha" object of `duetctl status --json`. */
void monitor_status_json(struct monitor *m, struct json_object *ha);

/**@}*/

#endif
