/**
 * @file monitor_int.h
 * Inside the failover monitor: the parts struct monitor (monitor.c) wires
 * together, each usable alone and unit-tested alone. For the module and
 * its tests only; the node includes monitor.h. struct monitor itself is
 * here only so that monitor_status.c (what the monitor reports) can read it.
 *
 * Four parts, grouped below by the file that defines them:
 *
 *  - record.c: the on-disk and on-wire formats (mailbox sectors, heartbeat
 *    slots), each with a CRC32C so a torn write is seen, never trusted.
 *  - mbox.c: the mailbox file in each shelf, driven by a small thread with
 *    its own timer (an O_DSYNC write may take milliseconds; the reactor
 *    never waits on it). It publishes this node's liveness record, watches
 *    the partner's, writes and clears takeover marks, and grants the I/O
 *    lease: shelf I/O is allowed only until lease_ms after the start of the
 *    last read of the own mailbox that found no takeover mark.
 *  - watchdog.c: a thread that ends the process when the reactor stalls
 *    past watchdog_ms, and that tells a stalled loop from a stopped process.
 *  - ha.c: the state machine, pure logic with time as an input; its view
 *    (names, the partner's classification, what is possible and why) is
 *    in ha_view.c.
 *
 * Layering: monitor.c calls ha.c, mbox.c, watchdog.c and record.c;
 * monitor_status.c reads what monitor.c, ha.c and mbox.c hold; mbox.c
 * calls record.c; ha.c calls ha_view.c, which calls only record.c's
 * state and mirror names;
 * watchdog.c calls only monitor_boottime_ns() (mbox.c); record.c calls
 * nothing. Results come back up only through the callbacks in the options
 * structs (on_cycle, on_jump, the done and mark callbacks).
 */
#ifndef DUET_MONITOR_MONITOR_INT_H
#define DUET_MONITOR_MONITOR_INT_H

#include "monitor/monitor.h"

/* ---- record.c: mailbox sectors and heartbeat slots ---- */

/** HA state of a node, in records and in `duetctl status`. */
enum ha_state {
	HA_UP = 0,		 /**< serving its own volumes */
	HA_TAKEOVER,		 /**< taking over or serving the partner's volumes too */
	HA_TAKEN_OVER,		 /**< fenced by the partner's takeover mark; serves nothing */
	HA_WAITING_FOR_GIVEBACK, /**< taken over, back in touch with the partner, ready */
	HA_GIVING_BACK,		 /**< draining the partner's volumes to hand them back */
	HA_STATE_COUNT,
};

#define MONITOR_SECTOR	    4096u /**< one writer per sector */
#define MONITOR_MBOX_SIZE   (4u * MONITOR_SECTOR)
#define MONITOR_MBOX_NAME   "mailbox" /**< SHELF/mailbox */
#define MONITOR_SECT_ALIVE  0u	      /**< written by the owner only */
#define MONITOR_SECT_MARK   1u	      /**< written by the partner only */
#define MONITOR_REC_VERSION 1u

/** Liveness of one node: its mailbox record, and the body of a heartbeat. */
struct monitor_alive {
	char node[MONITOR_ID_MAX];
	uint64_t boot_gen;  /**< +1 at every start of the node */
	uint64_t counter;   /**< +1 at every record written in this boot */
	uint64_t time_ns;   /**< writer's CLOCK_REALTIME, for operators only */
	uint64_t acked_gen; /**< last takeover generation whose giveback this node completed */
	enum ha_state state;
	enum ha_mirror mirror; /**< the writer's own mirror (in_sync: every ack is mirrored) */
	/* Mailbox only (the lease record next to the liveness record): */
	uint32_t lease_ms;	  /**< the writer's lease_ms; 0: not published (older layout) */
	uint32_t fence_margin_ms; /**< the writer's fence_margin_ms */
	bool mbox_direct;	  /**< the writer reads its own mailbox with O_DIRECT */
};

enum monitor_rec_kind {
	MONITOR_REC_ALIVE = 1,
	MONITOR_REC_MARK = 2,
	MONITOR_REC_HEARTBEAT = 3,
	MONITOR_REC_LEASE = 4, /**< follows the liveness record in the mailbox */
};

/** Bytes of the mailbox's liveness record: the liveness record, then its
 * lease record (record.c). */
#define MONITOR_ALIVE_SECTOR_SIZE (2u * MONITOR_REC_SIZE)

/** Encode @p a as @p kind (ALIVE or HEARTBEAT) into MONITOR_REC_SIZE bytes. */
void monitor_alive_encode(const struct monitor_alive *a, enum monitor_rec_kind kind, void *buf);
/** Decode a record of @p kind: 0; -ENODATA blank; -EBADMSG torn or foreign
 * (magic, CRC); -EPROTO unknown version; -EINVAL other kind or bad field. */
int monitor_alive_decode(const void *buf, enum monitor_rec_kind kind, struct monitor_alive *a);
/** Encode the mailbox's liveness record of @p a (with its lease record)
 * into MONITOR_ALIVE_SECTOR_SIZE bytes. */
void monitor_alive_sector_encode(const struct monitor_alive *a, void *buf);
/** Decode what monitor_alive_sector_encode() wrote; a sector of the older
 * layout (no lease record) decodes with lease_ms 0. Errors as
 * monitor_alive_decode(); a lease record of another write is -EBADMSG. */
int monitor_alive_sector_decode(const void *buf, struct monitor_alive *a);
/** Encode a takeover mark into MONITOR_REC_SIZE bytes. */
void monitor_mark_encode(const struct monitor_mark *m, void *buf);
/** Decode a takeover mark; errors as monitor_alive_decode(). */
int monitor_mark_decode(const void *buf, struct monitor_mark *m);
/** Name of @p s as in status and docs ("taken_over"). */
const char *monitor_ha_state_name(enum ha_state s);
/** Name of @p m as in status and docs ("in_sync"). */
const char *monitor_ha_mirror_name(enum ha_mirror m);

/* ---- mbox.c: the mailbox thread and the I/O lease ---- */

struct monitor_mbox;

/** Answer of a mark check: @p rc < 0 when the own mailbox could not be read. */
typedef void (*monitor_mark_cb)(void *arg, int rc, const struct monitor_mark *mark);

struct monitor_mbox_opts {
	struct loop *loop;	   /**< results come back on it; its turns gate liveness */
	const char *node_id;	   /**< this node */
	const char *shelf;	   /**< own shelf: SHELF/mailbox is created if missing */
	const char *partner_shelf; /**< NULL or "": no partner mailbox */
	uint32_t mailbox_ms;	   /**< cycle: write own record, read own mark, read partner */
	uint32_t lease_ms;	   /**< I/O lease after a clean own read; loop liveness gate */
	uint32_t fence_margin_ms;  /**< published with lease_ms for the partner's fence wait */
	bool buffered;		   /**< never O_DIRECT (one host only; tests) */
	/** Called on the loop after every cycle whose view changed (may be NULL). */
	void (*on_cycle)(void *arg);
	void *arg;
};

/** What this node knows of its own mailbox. */
struct monitor_mbox_own_view {
	int rc;			  /**< last own read: 0 or a negative errno */
	int write_rc;		  /**< last own write: 0 or a negative errno (apart from rc) */
	bool direct;		  /**< opened with O_DIRECT */
	int direct_err;		  /**< else why O_DIRECT was refused (0: buffered by option) */
	uint64_t boot_gen;	  /**< this boot's generation (old + 1) */
	uint64_t boot_acked_gen;  /**< acked_gen of the record found at boot */
	uint64_t boot_time_ns;	  /**< time_ns of the record found at boot; 0 none */
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
	bool opened;	/**< the partner's mailbox file is open */
	bool direct;	/**< ... with O_DIRECT */
	int direct_err; /**< else why O_DIRECT was refused (0: buffered by option) */
};

/** Open (create) the own mailbox and the partner's; no I/O thread yet. */
int monitor_mbox_open(const struct monitor_mbox_opts *o, struct monitor_mbox **out);
/** Start the thread; its first cycle reads the own mailbox before any
 * write and gives @p boot_cb the mark found there (the boot check). */
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
/** Write (or clear: @p set false) a mark in the partner's mailbox, saying
 * @p replay; @p cb once durable and read back as written. */
int monitor_mbox_write_mark(struct monitor_mbox *mb, uint64_t gen, bool set,
			    enum monitor_mark_replay replay, monitor_done_cb cb, void *arg);
/** Copy out the view of the own mailbox as of the last cycle. */
void monitor_mbox_own(struct monitor_mbox *mb, struct monitor_mbox_own_view *v);
/** Copy out the view of the partner's mailbox as of the last cycle. */
void monitor_mbox_partner(struct monitor_mbox *mb, struct monitor_mbox_partner_view *v);
/** True while the I/O lease holds. Lock-free, any thread. */
bool monitor_mbox_io_allowed(const struct monitor_mbox *mb);
/** Drop the lease now (a stall was seen): the next clean read renews it. */
void monitor_mbox_lease_drop(struct monitor_mbox *mb);
/** Whether the mailbox is opened with O_DIRECT (else O_DSYNC through the cache). */
bool monitor_mbox_direct(const struct monitor_mbox *mb);
/** SHELF/mailbox of this node, as opened (for messages). */
const char *monitor_mbox_own_path(const struct monitor_mbox *mb);
/** The partner's mailbox path, "" without one (for messages). */
const char *monitor_mbox_partner_path(const struct monitor_mbox *mb);
/** Test shim: every own-mailbox write fails with @p err (a negative errno)
 * until called with 0; reads and mark writes are untouched. */
void monitor_mbox_test_fail_writes(struct monitor_mbox *mb, int err);
/** Test shim: the next own-mailbox write blocks (as on a hung device, so
 * the thread reads nothing either) until called with false or closed. */
void monitor_mbox_test_stall_writes(struct monitor_mbox *mb, bool stall);
/** CLOCK_BOOTTIME in ns: counts a stopped process and a suspended host. */
uint64_t monitor_boottime_ns(void);

/* ---- watchdog.c: the reactor watchdog ---- */

struct monitor_watchdog;

struct monitor_watchdog_opts {
	struct loop *loop;    /**< the reactor watched */
	uint32_t watchdog_ms; /**< loop stall that ends the process */
	uint32_t tick_ms;     /**< check period; 0: 5 ms */
	uint32_t jump_ms;     /**< own tick this late: the process was stopped; 0: 50 ms */
	enum monitor_watchdog_action action;
	/** Called on the loop after the process was stopped or starved (may be NULL). */
	void (*on_jump)(void *arg, uint64_t stopped_ms);
	void *arg;
};

/** Start the thread, on the loop's thread; it arms at the next loop turn
 * and keeps an idle loop turning every watchdog_ms / 10 (see watchdog.c). */
int monitor_watchdog_start(const struct monitor_watchdog_opts *o, struct monitor_watchdog **out);
/** Stop the thread and free @p w (NULL is fine). */
void monitor_watchdog_stop(struct monitor_watchdog *w);
/** Stops (jumps) seen so far. */
uint64_t monitor_watchdog_jumps(const struct monitor_watchdog *w);

/* ---- ha.c: the state machine (pure: no I/O, time is an input) ---- */

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

/** How this node sees its partner. */
enum ha_partner {
	HA_PARTNER_NONE = 0, /**< no partner configured */
	HA_PARTNER_UNKNOWN,  /**< no evidence yet */
	HA_PARTNER_ALIVE,    /**< heartbeats on at least one link */
	HA_PARTNER_CUT_OFF,  /**< no heartbeat, but its mailbox advances */
	HA_PARTNER_SUSPECT,  /**< no heartbeat; mailbox not yet silent long enough */
	HA_PARTNER_DEAD,     /**< silent on every link and in its mailbox */
};

struct ha_config {
	bool has_partner;	  /**< a partner id is set */
	bool has_partner_mailbox; /**< a partner shelf is set */
	uint64_t deadline_ms;	  /**< heartbeat silence on every link: suspect */
	uint64_t mailbox_deadline_ms;
	uint64_t fence_wait_ms; /**< after the mark: own lease_ms + fence_margin_ms; the
				   partner's when it publishes more (monitor_ha_fence_wait_ms) */
	bool auto_giveback;
	uint64_t giveback_delay_ms;
	uint64_t retry_ms; /**< after a failed mark write; 0: 1000 */
	/** A node that has not heard its partner since it started waits this
	 * long before any automatic takeover or takeback (cold boot of the
	 * pair); 0: no wait. */
	uint64_t boot_grace_ms;
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
	/** NULL, or why a mailbox of the pair goes through a page cache (not
	 * O_DIRECT), naming it: no takeover unless forced. */
	const char *mbox_cached;
	bool partner_mark_valid; /**< a mark of ours exists in its mailbox */
	bool partner_mark_set;	 /**< ... and is set (not cleared) */
	uint64_t partner_mark_gen;
	/** The partner's log held here, as the receiving side knows it: IN_SYNC
	 * once a resync completed and no record was missed since. Losing the
	 * session does not make it DEGRADED (the copy only stops growing); the
	 * partner publishes DEGRADED itself before acknowledging without us. */
	enum ha_mirror mirror;
	/** monitor_set_partner_log_given: the mirror states do not stop a
	 * takeover (the partner handed its shelf and its log over). */
	bool partner_log_given;
	bool own_mark;	       /**< a takeover mark is set in our mailbox */
	uint64_t own_mark_gen; /**< its generation (also when cleared) */
	bool own_conflict;     /**< another writer in our liveness sector */
	/** CLOCK_REALTIME (ns) of our own liveness record found at boot: when
	 * this node last wrote before it started; 0: none found. */
	uint64_t own_boot_time_ns;
	/** NULL, or why the action being reported failed, in words (the node
	 * knows better than strerror): failed() puts it in the reason. */
	const char *act_why;
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
	/** Takeback: taking our own volumes back from a taker that died (or,
	 * forced, that is fenced knowingly): our mark fences it first. */
	bool takeback;
	uint64_t takeback_gen; /**< the taker's mark in our mailbox being taken back */
	/** Resume: our giveback was interrupted by the partner's death before it
	 * started its volumes: we re-take them (no replay: our image is retired). */
	bool resume;
	uint64_t resume_gen; /**< gen of a giveback from serving to a waiting partner; 0 none */
	bool gb_abandon;     /**< partner died while draining: serve again, do not clear */
	bool clear_sent;     /**< this giveback asked to clear the mark (it may have landed) */
	bool takeover_possible;
	uint64_t boot_ms;		 /**< when the state machine started (monitor_ha_init) */
	bool partner_seen;		 /**< a heartbeat of the partner arrived since then */
	char reason[HA_REASON_MAX];	 /**< why the last change happened */
	char why[HA_REASON_MAX];	 /**< why takeover is (not) possible now */
	char partner_why[HA_REASON_MAX]; /**< how the partner is seen, in words */
};

/** Name of @p a as in logs ("replay_partner"). */
const char *monitor_ha_action_name(enum ha_action a);
/** Name of @p p as in status ("fence_wait"). */
const char *monitor_ha_phase_name(enum ha_phase p);
/** Name of @p p as in status ("cut_off"). */
const char *monitor_ha_partner_name(enum ha_partner p);
/** How long a taker waits after its mark: the larger of its own lease_ms +
 * fence_margin_ms and the partner's, as its last mailbox record published
 * them (its own alone when the partner never published any). */
uint64_t monitor_ha_fence_wait_ms(const struct ha *h, const struct ha_inputs *in);
/** Start in HA_UP, or in HA_TAKEN_OVER when the boot check found a mark. */
void monitor_ha_init(struct ha *h, const struct ha_config *c, uint64_t now_ms, bool taken_over,
		     uint64_t mark_gen, uint64_t acked_gen);
/** Re-evaluate with fresh inputs. */
void monitor_ha_step(struct ha *h, const struct ha_inputs *in, struct ha_output *out);
/** Operator takeover (@p force skips the mirror and liveness checks): 0 or
 * a negative errno with @p err set. */
int monitor_ha_takeover(struct ha *h, const struct ha_inputs *in, bool force, struct ha_output *out,
			char *err, size_t errlen);
/** Operator giveback (@p force skips the partner-ready check): as above. */
int monitor_ha_giveback(struct ha *h, const struct ha_inputs *in, bool force, struct ha_output *out,
			char *err, size_t errlen);
/** An action asked for earlier finished with @p rc. */
void monitor_ha_done(struct ha *h, enum ha_action act, int rc, const struct ha_inputs *in,
		     struct ha_output *out);

/* ---- ha_view.c: the view shared by ha.c's transitions (private) ---- */

/** Format into a reason field of struct ha (HA_REASON_MAX, truncated). */
void ha_fmt(char *dst, const char *f, ...) __attribute__((format(printf, 2, 3)));
/** A heartbeat on some link within the deadline. */
bool ha_hb_alive(const struct ha *h, const struct ha_inputs *in);
/** Cold-boot grace still to wait before an automatic takeover or takeback, or 0. */
uint64_t ha_boot_grace_left(const struct ha *h, const struct ha_inputs *in);
/** A mark in our own mailbox that still fences us. */
bool ha_own_marked(const struct ha *h, const struct ha_inputs *in);
/** @p s is a node whose volumes the partner holds. */
bool ha_waits_for_us(enum ha_state s);
/** @p s is a node that serves its own volumes. */
bool ha_serves_own(enum ha_state s);
/** Set h->partner and h->partner_why from heartbeats and mailbox. */
void ha_classify(struct ha *h, const struct ha_inputs *in);
/** Why a takeover would lose an acknowledged write (in @p buf), or NULL. */
const char *ha_mirror_problem(const struct ha_inputs *in, char *buf, size_t len);
/** The partner's mailbox can take a mark at all (even forced). */
bool ha_mailbox_writable(const struct ha_inputs *in);
/** Set h->takeover_possible and h->why for the current state. */
void ha_eval_possible(struct ha *h, const struct ha_inputs *in);
/** Fencing the partner is possible: 0, or -errno with @p err set. */
int ha_can_fence(const struct ha *h, const struct ha_inputs *in, char *err, size_t errlen);

/* ---- monitor.c: the monitor, shared with monitor_status.c ---- */

struct link_obs {
	bool have;
	uint8_t last[MONITOR_REC_SIZE];
	uint64_t change_ns; /* monotonic: tick that first saw the current record */
};

struct monitor {
	struct loop *loop;
	const struct monitor_ops *ops;
	void *arg;
	char node[MONITOR_ID_MAX];
	bool has_partner;
	bool has_partner_mailbox;
	uint64_t hb_ns;	   /* heartbeat interval */
	uint64_t watch_ns; /* slots read this often (a quarter of it) */
	uint64_t last_send_ns;
	uint64_t deadline_ns;
	unsigned n_links;
	char link_names[MONITOR_MAX_LINKS][MONITOR_ID_MAX];
	uint32_t watchdog_ms;
	uint32_t lease_ms;
	uint32_t fence_margin_ms;
	enum monitor_watchdog_action watchdog_action;
	bool no_watchdog;
	bool defer_watchdog;
	struct ha_config hcfg;

	struct monitor_mbox *mb;
	struct monitor_watchdog *wd;
	struct ha ha;
	bool booted;

	uint8_t *region; /* n_links slots the partner writes into */
	struct link_obs links[MONITOR_MAX_LINKS];
	bool hb_valid;
	struct monitor_alive hb; /* newest heartbeat seen */
	uint64_t hb_counter;
	uint8_t hb_out[MONITOR_REC_SIZE];
	uint64_t last_tick_ns;

	enum ha_mirror partner_copy;
	bool partner_log_given;
	enum ha_mirror own_mirror;
	bool own_mark;
	uint64_t own_mark_gen;
	bool own_conflict;
	/* The replay proof: of the mark last read in our mailbox (owner), and
	 * the generation whose proof this run wrote (taker). */
	bool own_mark_read;
	enum monitor_mark_replay own_mark_replay;
	uint64_t proof_gen;
	monitor_done_cb proof_cb;
	void *proof_arg;
	bool io_waiting;
	bool check_pending;
	bool fresh_read_asked;
	uint64_t progress_done;
	uint64_t progress_total;
	char cached_why[HA_REASON_MAX]; /* monitor_sample(): a mailbox not O_DIRECT */
	bool plog_have;			/* the partner's lease settings last logged */
	uint32_t plog_lease, plog_margin;

	struct loop_timer tick;
	struct loop_timer wake;
	struct loop_timer boot_retry;

	/* For monitor_get_summary(): counted at state changes in exec(). */
	enum ha_state prev_state;
	uint64_t takeovers, givebacks;
};

/** Sample what the state machine looks at, now (monitor.c). */
void monitor_sample(struct monitor *m, struct ha_inputs *in);

/* ---- monitor.c: test-only access ---- */

/** The state machine of @p m, read-only (tests look at state and reasons). */
const struct ha *monitor_ha(const struct monitor *m);
/** The mailbox of @p m (tests set its fault shims). */
struct monitor_mbox *monitor_mbox_of(struct monitor *m);

#endif
