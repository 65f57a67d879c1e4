/**
 * @file balance.h
 * Automatic balance of volume ownership on load (issue 14 part 4,
 * docs/RELOCATION.md "Automatic balance"): the load meter, the policy and
 * the report each node sends its partner.
 *
 * Pure: no I/O, no clock of its own, no allocation. The node
 * (src/node/balance_host.c) feeds it the datapath's counters once a tick,
 * sends and receives the reports over the interconnect, and relocates what
 * the policy picks. Every function runs on the caller's thread; nothing
 * keeps a pointer to its arguments.
 *
 * Load: one figure per volume and per node, in "load units" per second:
 * one per request plus one per BALANCE_BYTES_PER_UNIT bytes moved (so that
 * a 4 KiB request costs about one unit and a 1 MiB one seventeen).
 */
#ifndef DUET_BALANCE_BALANCE_H
#define DUET_BALANCE_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BALANCE_NAME_MAX       64   /**< a volume name, with its NUL (STORE_NAME_MAX) */
#define BALANCE_MAX_VOLS       1024 /**< volumes measured on one node */
#define BALANCE_TICK_MS	       1000 /**< one sample of the counters this often */
#define BALANCE_BYTES_PER_UNIT 65536.0
/** Below this many load units per second a node is never "over": an idle
 * pair does not move volumes for a few stray requests. */
#define BALANCE_MIN_LOAD 10.0
/** The EWMA's weight of the newest tick (time constant about 1.5 ticks). */
#define BALANCE_ALPHA 0.5

/** Settings ([balance] in duet.conf(5)). */
struct balance_opts {
	bool enabled;		  /**< auto = on */
	uint64_t imbalance_milli; /**< imbalance x 1000 (2.0: 2000); more than 1000 */
	uint64_t window_s;	  /**< over the threshold this long, continuously */
	uint64_t min_interval_s;  /**< at least this long between two moves of the pair */
};
/** Defaults: off, 2.0, 30 s, 300 s. */
void balance_opts_init(struct balance_opts *o);

/** A load: requests and bytes (read + written) per second. */
struct balance_load {
	double req_s;
	double bytes_s;
};
/** Its load units per second. */
double balance_units(const struct balance_load *l);

/* ---- the meter: per-volume EWMA of the counters, one sample a tick ---- */

struct balance_vol {
	char name[BALANCE_NAME_MAX];
	uint64_t last_req, last_bytes; /* the counters at the last sample */
	uint64_t d_req, d_bytes;       /* their growth in this tick */
	struct balance_load rate;
	bool movable;  /* owned and served here, not on its way elsewhere */
	bool seen;     /* sampled this tick */
	bool primed;   /* sampled in an earlier tick too: d_* are a tick's growth */
	bool has_rate; /* rate holds a measure (the first full tick sets it) */
};

struct balance_meter {
	struct balance_vol v[BALANCE_MAX_VOLS];
	unsigned n;
	unsigned cursor;	   /* where the next sample's volume probably is */
	struct balance_load total; /* of the volumes sampled in the last tick */
};

/** Start a tick. */
void balance_meter_begin(struct balance_meter *m);
/**
 * One volume served here now, with its counters since it was opened here
 * (requests completed, bytes read and written). A volume seen for the
 * first time counts from the next tick; counters that went back (the
 * volume was opened again) start again from them.
 * @return 0, -EINVAL (bad name), -EEXIST (sampled twice this tick, the
 * second ignored) or -ENOSPC (BALANCE_MAX_VOLS reached).
 */
int balance_meter_sample(struct balance_meter *m, const char *name, uint64_t requests,
			 uint64_t bytes, bool movable);
/** End the tick, @p dt_ms after the last one: the rates and the total;
 * volumes not sampled in it are forgotten (no longer served here). */
void balance_meter_end(struct balance_meter *m, uint64_t dt_ms);

/* ---- the policy ---- */

struct balance_state {
	bool over; /* own > imbalance x partner's, since over_since_ms */
	uint64_t over_since_ms;
	bool moved; /* a volume moved (either way, by anyone), at last_move_ms */
	uint64_t last_move_ms;
};

enum balance_verdict {
	BALANCE_OFF,	       /**< auto = off */
	BALANCE_NO_PARTNER,    /**< the partner's load is not known (no fresh report) */
	BALANCE_EVEN,	       /**< not over the threshold */
	BALANCE_WAIT_WINDOW,   /**< over, for less than window_s */
	BALANCE_WAIT_INTERVAL, /**< over for window_s, but a move was too recent */
	BALANCE_NO_CANDIDATE,  /**< no volume whose move would not overshoot */
	BALANCE_MOVE,	       /**< move choice.index */
};
const char *balance_verdict_name(enum balance_verdict v);

/** A volume of the node's as the policy sees it. */
struct balance_cand {
	double load; /* units/s */
	bool movable;
};

struct balance_choice {
	int index;			 /* the candidate to move (BALANCE_MOVE), else -1 */
	double own, partner;		 /* units/s: the figures decided on */
	double own_after, partner_after; /* what the move would leave (BALANCE_MOVE) */
	uint64_t over_ms;		 /* how long own has been over the threshold */
};

/**
 * One decision at @p now_ms (any monotonic clock, in ms), on this node's
 * load @p own and the partner's @p partner (NULL: unknown), both in
 * units/s. Only the more loaded node ever moves anything: when own >
 * imbalance x partner (and at least BALANCE_MIN_LOAD) for window_s
 * continuously, and no move in the last min_interval_s, it picks among the
 * movable candidates the one that leaves the two closest, but only among
 * those that leave the partner at most halfway from even to the threshold
 * (partner_after <= (1 + imbalance) / 2 x own_after): hysteresis, so the
 * partner is never over the threshold the other way because of the move,
 * and the volume does not come back. Updates @p st (the window).
 */
enum balance_verdict balance_decide(struct balance_state *st, const struct balance_opts *o,
				    uint64_t now_ms, double own, const double *partner,
				    const struct balance_cand *c, unsigned n,
				    struct balance_choice *out);
/** A volume moved (from here or to here, automatically or not) at @p now_ms:
 * the interval starts and the window starts again. */
void balance_note_move(struct balance_state *st, uint64_t now_ms);

/* ---- the report to the partner (one CCM message a tick) ----
 * Little-endian: header (32 bytes) = magic "DBL1", u16 version 1, u16
 * flags, u16 n, u16 0, u32 0, u64 the node's requests/s x 1000, u64 its
 * bytes/s; then n entries of 80 bytes: the volume name NUL-padded to 64,
 * u64 requests/s x 1000, u64 bytes/s. The busiest BALANCE_WIRE_VOLS
 * volumes are listed; the totals cover every volume. */
#define BALANCE_MAGIC	   0x314c4244u /* "DBL1" */
#define BALANCE_VERSION	   1u
#define BALANCE_F_AUTO	   (1u << 0) /* the sender's auto = on */
#define BALANCE_WIRE_HDR   32u
#define BALANCE_WIRE_ENTRY 80u
#define BALANCE_WIRE_VOLS  128u
#define BALANCE_WIRE_MAX   (BALANCE_WIRE_HDR + BALANCE_WIRE_VOLS * BALANCE_WIRE_ENTRY)
/** Largest figure a report may carry (requests/s x 1000 or bytes/s): 2^50. */
#define BALANCE_WIRE_LIMIT (UINT64_C(1) << 50)

struct balance_report {
	bool auto_on;
	struct balance_load total;
	unsigned n;
	struct {
		char name[BALANCE_NAME_MAX];
		struct balance_load load;
	} v[BALANCE_WIRE_VOLS];
};

/** The report of meter @p m: its total and its busiest volumes. */
void balance_report_from_meter(const struct balance_meter *m, bool auto_on,
			       struct balance_report *r);
/** Encode @p r into @p buf (at least BALANCE_WIRE_MAX bytes). @return its length. */
size_t balance_report_encode(const struct balance_report *r, uint8_t *buf);
/** Decode @p len bytes from the partner (never trusted: magic, version,
 * flags, sizes, names and figures are checked). @return 0 or -EINVAL /
 * -EPROTO (another version). */
int balance_report_decode(const void *buf, size_t len, struct balance_report *r);

#endif
