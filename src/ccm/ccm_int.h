/* Internals of the CCM shared by its source files, its unit tests and its
 * fuzzers; not part of the public API (that is ccm.h).
 *
 * It holds, in this order: the wire formats (every struct laid out without
 * padding, checked by static asserts, its integers little-endian and read
 * and written only through common/byteorder.h), the objects of the CCM, and
 * the functions its files share, grouped by the file that defines them.
 *
 * Layering (lowest first): crypto.c and inst.c; lane.c and lane_rules.c; chan.c; client.c;
 * handshake.c; session.c; ccm.c and status.c. A file calls the files
 * below it freely. It calls a file above it only through the up-calls,
 * which are marked "Up-call" below: the deferred work of ccm.c
 * (ccm_schedule, ccm_request_terminate), and the few entry points by which
 * a lower layer hands an event to the layer that owns it. The names of
 * states and reasons in status.c (ccm_term_reason_str) are pure functions
 * any file may use. */
#ifndef DUET_CCM_CCM_INT_H
#define DUET_CCM_CCM_INT_H

#include <assert.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ccm/ccm.h"
#include "common/byteorder.h"
#include "common/list.h"
#include "common/loop.h"
#include "common/util.h"

/* ====================================================================== */
/* Wire formats (docs/CCM.md) */

/* Predefined keys of the two public regions, the same on every link. */
#define CCM_BOOT_KEY 0x3130304254455544ull /* "DUETB001" */
#define CCM_SLOT_KEY 0x3130305354455544ull /* "DUETS001" */

#define CCM_BOOT_MAGIC 0x544f4f4254455544ull /* "DUETBOOT" */
#define CCM_SLOT_MAGIC 0x544f4c5354455544ull /* "DUETSLOT" */
#define CCM_SESS_MAGIC 0x5353455354455544ull /* "DUETSESS" */
#define CCM_MSG_MAGIC  0x324d4344u	     /* "DCM2" */

/* Immediate data of the slot doorbell: "look at your slot". */
#define CCM_IMM_SLOT 0x534c4f54u

/* MAC failures allowed in a burst, refilled every CCM_MAC_REFILL_NS: at
 * most ~640 failing GMACs of up to 16 KiB a second (under 1 ms of CPU),
 * whatever a sender without the key sends; one note per CCM_BAD_WARN_NS. */
#define CCM_MAC_BURST	  64u
#define CCM_MAC_REFILL_NS (100 * NS_PER_MS)
#define CCM_BAD_WARN_NS	  (10 * NS_PER_S)

#define CCM_NONCE_LEN 32
#define CCM_PROOF_LEN 32
#define CCM_MAC_LEN   16

/* Boot region state. */
enum {
	BOOT_INIT = 0,
	BOOT_HANDSHAKING = 1,
	BOOT_SESSION = 2,
};

/* Slot state (what the writer says). */
enum {
	SLOT_HELLO = 1,
	SLOT_READY = 2,
};

/*
 * The boot region: read-only for the partner, at key CCM_BOOT_KEY,
 * offset 0, on every link. seq_head == seq_tail when consistent.
 */
struct wire_boot {
	uint64_t seq_head;
	uint64_t magic;
	uint16_t major;
	uint16_t minor;
	uint32_t state;
	uint64_t generation;
	char node[16];
	char cluster[CCM_CLUSTER_MAX];
	uint8_t nonce[CCM_NONCE_LEN];
	uint64_t session_id; /* always 0: the id is kept out of this public region */
	/* The partner whose hello we accepted, and our proof of the secret. */
	uint64_t ack_gen;
	uint8_t ack_nonce[CCM_NONCE_LEN];
	uint8_t ack_proof[CCM_PROOF_LEN];
	uint32_t n_links;
	uint32_t flags;
	uint8_t pad[16];
	uint64_t seq_tail;
};
static_assert(sizeof(struct wire_boot) == 256, "boot region layout");

/* The slot: write-only for the partner, at key CCM_SLOT_KEY, offset 0. */
struct wire_slot {
	uint64_t seq_head;
	uint64_t magic;
	uint16_t major;
	uint16_t minor;
	uint32_t state;
	uint64_t generation; /* the writer's */
	char node[16];
	char cluster[CCM_CLUSTER_MAX];
	uint8_t nonce[CCM_NONCE_LEN];
	uint64_t target_gen; /* the reader's, as the writer last read it */
	uint8_t target_nonce[CCM_NONCE_LEN];
	uint8_t proof[CCM_PROOF_LEN];
	uint8_t pad[32];
	uint64_t seq_tail;
};
static_assert(sizeof(struct wire_slot) == 256, "slot layout");

/* Load of one CCM instance, published for the partner. */
struct wire_inst_load {
	uint64_t bytes_per_sec;
	uint64_t ops_inflight;
	uint64_t bytes_inflight;
	uint32_t ports;
	uint32_t links_up;
};
static_assert(sizeof(struct wire_inst_load) == 32, "instance load layout");

/* The session region: read-only for the partner, under a random key known
 * only to it; read by every probe on every link. */
struct wire_sess {
	uint64_t seq_head;
	uint64_t magic;
	uint64_t generation;
	uint64_t session_id;
	uint64_t sess_ticks; /* ticks in sessions (one every probe_ms) */
	uint32_t n_instances;
	uint32_t flags;
	struct wire_inst_load inst[8];
	uint64_t seq_tail;
};
static_assert(sizeof(struct wire_sess) == 312, "session region layout");

/* Message types. */
enum {
	MSG_ACK = 1,	    /* unsequenced: cumulative ack only */
	MSG_PEER_INFO = 2,  /* control */
	MSG_CLIENT_ADD = 3, /* control */
	MSG_CLIENT_ACK = 4, /* control */
	MSG_CLIENT_DEL = 5, /* control */
	MSG_SETUP_DONE = 6, /* control */
	MSG_READY = 7,	    /* control */
	MSG_TERMINATE = 8,  /* control */
	MSG_FENCE = 9,	    /* control: close your end of a lane I took out */
	MSG_FENCE_ACK = 10, /* control: done */
	MSG_DATA = 16,	    /* port: client message */
	MSG_NOTIFY = 17,    /* port: write_notify */
};

/* Header of every message; mac = GMAC (AES-256-GCM without plaintext) under
 * the session key of the header with mac zeroed || payload, with the IV
 * (sender's direction, nonce): nonce counts the sender's MACs in the session
 * and never repeats, a retransmission included. port is the receiver's port id. */
struct wire_msg {
	uint32_t magic;
	uint16_t type;
	uint16_t flags;
	uint32_t port;
	uint32_t len;
	uint64_t session_id;
	uint64_t seq;
	uint64_t ack;
	uint64_t nonce;
	uint8_t mac[CCM_MAC_LEN];
};
static_assert(sizeof(struct wire_msg) == 64, "message header layout");

#define CCM_CAP_NOTIFY (1u << 0)
#define CCM_CAPS       CCM_CAP_NOTIFY

struct wire_peer_info {
	uint16_t major;
	uint16_t minor;
	uint32_t caps;
	uint64_t generation;
	char node[16];
	char cluster[CCM_CLUSTER_MAX];
	uint32_t n_links;
	uint32_t n_instances;
	uint64_t sess_key;
	uint64_t sess_size;
	uint32_t max_msg;
	uint32_t rsvd;
	char links[8][16];
};
static_assert(sizeof(struct wire_peer_info) == 256, "peer info layout");

struct wire_port_info {
	uint32_t id;
	uint32_t rsvd;
	uint64_t key;
	uint64_t size;
};

struct wire_client_add {
	char name[32];
	uint32_t n_ports;
	uint32_t flags;
	struct wire_port_info ports[]; /* n_ports */
};

struct wire_client_ref {
	char name[32];
	uint32_t first_port_id; /* identifies the incarnation acked */
	uint32_t rsvd;
};

struct wire_terminate {
	uint32_t reason;
	uint32_t rsvd;
};

struct wire_fence {
	uint32_t lane;
	uint32_t rsvd;
	uint64_t seq;
};

struct wire_notify {
	uint64_t offset;
	uint64_t len;
	uint64_t value;
};

/* ====================================================================== */
/* Objects of the CCM */

#define CHAN_WINDOW 64 /* unacknowledged messages per channel, power of two */
/* A port channel's ack waits this long for a message to ride on (the reply
 * to a request, the next request after a reply), or until CHAN_ACK_EVERY
 * delivered messages are unacknowledged: a standalone ack is a send and a
 * receive, with their completions, on both nodes. */
#define CHAN_ACK_DELAY_NS 4000000ull
#define CHAN_ACK_EVERY	  (CHAN_WINDOW / 4)
#define CCM_LINK_MAX_MSG  (CCM_MSG_MAX + sizeof(struct wire_msg))
/* Least bound on a lane's port bytes in flight (lane_rules.c, ccm_lane_pick_op):
 * 10 ms of a 200 Mbit/s link; nothing on a fast link. */
#define CCM_LANE_MIN_CAP (256u << 10)
#define CCM_RX_DEPTH	 128

struct evp_cipher_ctx_st;

/* Session state machine. */
enum ccm_state {
	ST_IDLE = 0,  /* created, not started */
	ST_HANDSHAKE, /* one-sided boot handshake */
	ST_SETUP,     /* authenticated: exchanging peer and client info */
	ST_UP,	      /* partner ready */
	ST_STOPPING,  /* being destroyed */
};

/* Active side of the handshake. */
enum hs_step {
	HS_READ1 = 0,	/* read the partner's boot region */
	HS_WRITE_HELLO, /* write our hello + proof into its slot */
	HS_READ2,	/* read its boot region again: our ack? */
	HS_WRITE_READY, /* write ready into its slot */
	HS_WAIT,	/* wait for its ready in our slot; re-check its boot region */
};

/* What the handshake last complained about (logged once per change). */
enum hs_cond {
	HC_NONE = 0,
	HC_NO_ANSWER,
	HC_FOUND,
	HC_VERSION,
	HC_CLUSTER,
	HC_SELF,
	HC_WRONG_NODE,
	HC_BAD_SECRET,
	HC_BAD_ACK,
	HC_RESTARTED,
};

/* Kinds of port operation (ccm_op.kind). */
enum {
	OP_WRITE = 1,
	OP_READ,
	OP_WRITE_NOTIFY, /* write stage; then a NOTIFY message */
	OP_NOTIFY_WAIT,	 /* NOTIFY sent, waiting for its ack */
	OP_WRITE_LINK,	 /* pinned to one link: never re-issued */
};

/* States of a transmit slot. */
enum {
	TX_FREE = 0,
	TX_QUEUED, /* waiting for a lane */
	TX_POSTED, /* send in flight */
	TX_SENT,   /* sent, waiting for the ack */
};

struct ccm;
struct ccm_chan;

struct tx_slot {
	struct fab_op fop;
	struct ccm_chan *ch;
	uint8_t *buf; /* header + payload */
	uint32_t cap;
	uint32_t len;
	uint64_t seq;
	uint64_t sent_ns;
	uint64_t gen;	   /* channel generation of the post in flight */
	struct ccm_op *op; /* write_notify completed by the ack */
	uint16_t link;
	uint8_t state;
	bool busy;  /* fop in flight */
	bool acked; /* acked while in flight: free at completion */
};

struct rx_slot {
	uint8_t *buf; /* payload copy */
	uint32_t cap;
	uint32_t len;
	uint16_t type;
	bool full;
};

/* A reliable, ordered message channel: the control channel or a port's. */
struct ccm_chan {
	struct ccm *ccm;
	struct ccm_port *port; /* NULL for the control channel */
	uint32_t peer_id;      /* the partner's id of this channel */
	unsigned inst;	       /* preferred instance for its lanes */
	uint64_t gen;	       /* bumped at every reset: stale completions are ignored */
	unsigned reserved;     /* slots promised to write_notify operations */
	uint64_t tx_next;      /* next sequence number to assign (from 1) */
	uint64_t tx_acked;     /* highest acknowledged */
	struct tx_slot tx[CHAN_WINDOW];
	uint64_t rx_next; /* next sequence number expected */
	struct rx_slot rx[CHAN_WINDOW];
	bool ack_due;
	bool ack_busy;
	uint64_t ack_gen;
	struct fab_op ack_fop;
	uint8_t ack_buf[sizeof(struct wire_msg)];
	bool want_send_ready;
	bool ack_late;	      /* ack_node is on ccm->acks_late, not ccm->acks */
	uint64_t ack_sent;    /* the last ack we sent (standalone or piggybacked) */
	struct list ack_node; /* on ccm->acks (or acks_late) while an ack is due */
	uint64_t sent, received;
	uint64_t acks_sent; /* standalone acks */
};

struct ccm_link {
	struct ccm *ccm;
	unsigned idx;
	unsigned inst;
	char name[16];
	struct fab_link *fl;
	struct fab_mr *boot_mr, *slot_mr, *sess_mr;
	bool up;
	bool abort_pending;  /* fail its operations (after an error), outside callbacks */
	bool reset_pending;  /* close it (and fence it), outside callbacks */
	bool reopen_pending; /* reopen it at the next chance */
	bool fenced;	     /* closed until the partner acks fence_seq */
	bool fence_unsent;   /* FENCE for fence_seq still to send (no lane was up) */
	uint32_t fence_seq;  /* our fence of its last failure */
	bool ack_fence;	     /* the partner asked us to close it: ack after closing */
	uint64_t ack_fence_seq;
	uint32_t close_fence; /* fence owed by operations failed by the current close */
	uint32_t fail_fence;  /* fence of the lane's last failure in a session */
	/* Its own fence carried by itself (no other lane was up): the
	 * partner's reset answering it breaks this very connection, which
	 * that fence covers already (no new one: lane.c, self_fenced). */
	uint32_t self_fence;	    /* that fence's number, 0 if none */
	uint64_t self_fence_resets; /* the link's endpoint resets when it was sent */
	bool fence_reused;	    /* the last failure reuses the fence in flight */
	uint64_t last_ok_ns;
	uint64_t last_life_ns; /* last proof of life: a probe, a read, a delivered write */
	bool stale;	       /* the last lane up, past its deadline: kept, not taken out */
	uint64_t last_change_ns;
	struct loop_timer deadline;
	uint64_t deadline_due; /* when the deadline timer should fire */
	bool grace;	       /* one more chance given after a reactor stall */
	/* probe: a read of the partner's session region every probe_ms */
	struct fab_op probe_op;
	bool probe_busy;
	uint64_t probe_post_ns;
	uint64_t probe_epoch;
	uint64_t next_probe_ns; /* a dead lane is probed with backoff */
	uint64_t probe_backoff_ns;
	struct wire_sess probe_buf;
	uint64_t rtt_ns;
	/* first read of the handshake, posted on every link at once */
	struct fab_op hs_op;
	bool hs_busy;
	uint64_t hs_epoch;
	struct wire_boot hs_buf;
	/* accounting */
	uint64_t inflight_ops, inflight_bytes;
	uint64_t ops, bytes, errors;
	/* bound on port bytes in flight: rate x link_deadline / 4 (lane_rules.c) */
	uint64_t rate_bytes_prev, rate_prev_ns, peak_rate; /* bytes/s, decaying peak */
	uint64_t inflight_cap;
	uint64_t resets;
};

struct ccm_inst {
	unsigned idx;
	unsigned n_links;
	unsigned links[CCM_MAX_LINKS];
	unsigned rr;
	/* Port operations waiting for a lane of this instance. */
	struct slist pend; /* of ccm_op.qnode */
	uint64_t bytes_total, bytes_prev, rate;
	uint64_t ops_inflight, bytes_inflight;
	unsigned ports;
	uint64_t test_load; /* unit tests: added to rate */
	struct wire_inst_load partner;
	uint64_t live_since_ns; /* a link of it up since (0: none up): ccm_inst_failover */
	uint64_t live_session;	/* the session (ccm->sessions) it last had a link up in */
};

struct ccm_port {
	struct ccm_client *client;
	unsigned idx;
	uint32_t id; /* (incarnation << 16) | (slot * CCM_MAX_PORTS + idx + 1) */
	void *mem;
	size_t size;
	bool own_mem;
	uint64_t key;
	struct fab_mr *mr[CCM_MAX_LINKS];
	bool registered;
	struct fab_remote remote;
	bool up;
	unsigned inst;
	unsigned home; /* moved off instance home - 1 by ccm_inst_failover (0: not moved) */
	struct ccm_chan ch;
	uint64_t bytes_total, bytes_prev, rate;
	unsigned inflight; /* ops referencing this port */
};

/* What the partner said about one of its clients. */
struct ccm_rclient {
	bool used;
	char name[CCM_NAME_MAX];
	unsigned n_ports;
	uint32_t flags;
	struct wire_port_info ports[CCM_MAX_PORTS];
};

struct ccm_client {
	struct ccm *ccm;
	unsigned slot;
	uint16_t incarnation;
	char name[CCM_NAME_MAX];
	unsigned n_ports;
	size_t port_mem;
	unsigned flags;
	struct ccm_client_ops ops;
	void *arg;
	struct ccm_port *ports;
	bool dead;	    /* unregistered; freed once idle */
	bool remote_acked;  /* the partner acked our CLIENT_ADD this session */
	bool told_ready;    /* partner_ready delivered this session */
	bool ready_pending; /* partner_ready to deliver from the work task */
};

struct ccm_view {
	bool valid;
	uint64_t gen;
	uint8_t nonce[CCM_NONCE_LEN];
	char node[CCM_NODE_MAX];
	uint16_t major, minor;
};

struct ccm {
	struct loop *loop;
	bool started;
	struct ccm_opts opts; /* as given to ccm_create() */
	/* Derived from opts: the intervals in ns, the links and instances in use. */
	uint64_t probe_ns, link_deadline_ns, session_deadline_ns;
	unsigned n_links, n_inst;
	uint16_t major, minor; /* the protocol version we publish (tests change it) */
	struct ccm_link links[CCM_MAX_LINKS];
	struct ccm_inst inst[CCM_MAX_INSTANCES];
	unsigned all_rr;

	enum ccm_state state;
	uint64_t epoch; /* bumped at every session end; stale completions are ignored */
	uint64_t gen;
	uint8_t nonce[CCM_NONCE_LEN];
	uint8_t secret[CCM_SECRET_MAX];
	size_t secret_len;

	/* Public regions (page-aligned, shared by every link). */
	struct wire_boot *boot;
	struct wire_slot *slot;
	uint64_t boot_seq;

	/* Handshake. */
	enum hs_step step;
	struct ccm_view view;
	uint64_t view_ver;
	bool peer_acked_us;
	bool wrote_ready;
	bool peer_ready;
	uint64_t ready_gen;
	uint8_t ready_nonce[CCM_NONCE_LEN];
	struct fab_op hs_op;
	bool hs_busy;
	uint64_t hs_epoch, hs_view_ver;
	uint64_t hs_post_ns;
	unsigned hs_link;
	unsigned hs_retries;
	uint64_t hs_backoff_ns;
	struct wire_boot hs_rbuf;
	struct wire_slot hs_wbuf;
	struct loop_timer hs_timer;
	uint8_t slot_last[sizeof(struct wire_slot)];
	enum hs_cond cond;
	uint64_t hs_t0_ns;
	uint64_t epoch_start_ns;
	uint64_t read1_backoff_ns;
	bool reread;

	/* Session. */
	uint8_t skey[32];
	uint64_t session_id; /* secret: derived from the session key, never published */
	/* Messages refused before their payload counted (session.c): a bucket
	 * of MAC failures bounds the MAC work a sender without the key can
	 * cause; empty, messages are dropped unverified until it refills. */
	uint64_t bad_msgs, bad_macs, unverified;
	uint64_t mac_tokens, mac_refill_ns;
	uint64_t bad_warn_ns, bad_at_warn;
	struct evp_cipher_ctx_st *mac; /* AES-256-GCM under skey, for GMAC */
	uint64_t mac_nonce;	       /* the last nonce we sealed a message with */
	bool mac_first;		       /* our direction: our node id sorts first */
	struct wire_sess *sess;
	uint64_t sess_key;
	struct fab_remote partner_sess;
	struct ccm_view partner; /* frozen view of the session's partner */
	uint32_t partner_caps;
	unsigned partner_n_links;
	struct ccm_chan ctl;
	bool got_peer_info, got_setup_done, sent_ready, got_ready;
	uint64_t setup_deadline_ns;
	uint64_t all_down_since_ns;
	uint64_t up_since_ns;
	uint64_t handshake_us;
	uint64_t sessions;
	uint64_t sess_ticks; /* ticks in sessions, published in the session region */
	unsigned tick_count;
	char error[256];

	/* Boot probe during a session (a read of the partner's boot region, not
	 * a lane's probe): has the partner rebooted or reset? */
	struct fab_op boot_probe_op;
	bool boot_probe_busy;
	uint64_t boot_probe_epoch;
	uint64_t boot_probe_post_ns;
	uint64_t last_boot_probe_ns;
	unsigned boot_probe_link;
	struct wire_boot boot_probe_buf;

	/* Clients. */
	struct ccm_client *clients[CCM_MAX_CLIENTS];
	uint16_t next_incarnation;
	struct ccm_rclient rclients[CCM_MAX_CLIENTS];

	/* Deferred work (a zero-delay timer: unlike a task, it can be cancelled). */
	struct loop_timer tick;
	uint64_t tick_due_ns;
	uint64_t stall_seen_ns; /* last time the reactor was found stalled */
	struct loop_timer work;
	enum ccm_term_reason term_pending;
	bool drain_pending;
	bool kick_pending;
	bool reap_pending;
	unsigned pending_ops;
	struct list acks;	     /* channels owing an ack (ccm_chan.ack_node), newest first */
	struct list acks_late;	     /* channels whose ack waits for a message to ride on */
	struct loop_timer ack_timer; /* sends those acks after CHAN_ACK_DELAY_NS */
	bool in_terminate;
	bool in_work;
	/* Fences: writes re-issued from a failed lane complete only once the
	 * partner has closed its end of that lane. */
	uint32_t fence_next, fence_acked;
	uint64_t fence_sent_ns;
	struct slist held; /* of ccm_op.qnode */
	/* ccm_shutdown */
	struct loop_timer shutdown_timer;
	void (*shutdown_cb)(void *arg);
	void *shutdown_arg;
	uint64_t shutdown_deadline_ns;
};

/* Copy a NUL-terminated string into a fixed wire field of @p size bytes,
 * zero-padded, always terminated. */
static inline void ccm_put_str(char *dst, const char *src, size_t size)
{
	size_t n = strnlen(src, size - 1);

	memset(dst, 0, size);
	memcpy(dst, src, n);
}

/* Lower-case hex of a 64-bit value (generations, keys) for the log. */
static inline const char *ccm_hex64(uint64_t v, char buf[17])
{
	snprintf(buf, 17, "%016" PRIx64, v);
	return buf;
}

/* ====================================================================== */
/* Functions shared between the files, grouped by the file defining them. */

/* crypto.c: the bottom layer; calls no other file of the CCM. */
/** A random region key, never 0 nor one of the two predefined keys. */
uint64_t ccm_random_key(void);
/** Read [ic] secret_file into ccm->secret (at least 16 bytes, trailing
 * blanks dropped); a changed secret on a reload only once the file has been
 * still for CCM_SECRET_SETTLE_NS (-EAGAIN before: the current one stays). */
int ccm_load_secret(struct ccm *ccm);
/** HMAC proof binding @p label, the cluster and both identities (writer, target). */
void ccm_proof(const struct ccm *ccm, const char *label, const char *w_node, uint64_t w_gen,
	       const uint8_t *w_nonce, const char *t_node, uint64_t t_gen, const uint8_t *t_nonce,
	       uint8_t out[CCM_PROOF_LEN]);
/** Wipe the secret and the session key (OPENSSL_cleanse: not optimised out). */
void ccm_wipe_keys(struct ccm *ccm);
/** Derive the session key and id from the secret and both identities. */
int ccm_session_keys(struct ccm *ccm);
/** Free the message MAC context of the session key (safe when there is none). */
void ccm_mac_free(struct ccm *ccm);
/** Seal a message for sending: a fresh nonce and the MAC of the header
 * (mac zeroed) and the payload. Every (re)transmission is sealed again. */
void ccm_msg_seal(struct ccm *ccm, struct wire_msg *h, const void *payload, size_t len);
/** Whether the partner's message carries the right MAC (constant time). */
bool ccm_msg_mac_ok(struct ccm *ccm, const struct wire_msg *h, const void *payload, size_t len);
/** Constant-time comparison of @p len bytes. */
bool ccm_ct_equal(const void *a, const void *b, size_t len);

/* lane.c and lane_rules.c: links as lanes, probes and fences (lane.c: the
 * mechanics; lane_rules.c: liveness, the in-flight bound, lane choice); calls crypto.c
 * and the fabric, and up-calls ccm_sess_on_msg, ccm_hs_on_doorbell,
 * ccm_chan_on_link_down, ccm_chan_send (fences) and ccm_op_release_held. */
/** Set up the lanes' embedded operations; once, at creation. */
void ccm_lane_init(struct ccm *ccm);
/** Open every link and register the public regions on it (ccm_start). */
int ccm_lane_open_all(struct ccm *ccm);
/** Close every link; their operations in flight complete inside. */
void ccm_lane_close_all(struct ccm *ccm);
/** An up lane of instance @p inst for @p len bytes (any instance if it has none), or NULL. */
struct ccm_link *ccm_lane_pick(struct ccm *ccm, unsigned inst, size_t len);
/** ccm_lane_pick for a port operation: only a lane whose bytes in flight stay
 * within its bound (rate x link_deadline / 4; one operation always fits an
 * empty lane), or NULL: the operation waits for a completion. */
struct ccm_link *ccm_lane_pick_op(struct ccm *ccm, unsigned inst, size_t len);
/** An operation completed on @p l: the lane is alive (resets its deadline). */
void ccm_lane_ok(struct ccm_link *l);
/** Take a lane out after an error or a missed deadline (see docs/CCM.md, "Lanes"). */
void ccm_lane_fail(struct ccm_link *l, const char *why, bool hang);
/** The partner acked our fences up to @p seq: reopen those lanes, release held writes. */
void ccm_lane_fence_acked(struct ccm *ccm, uint64_t seq);
/** The partner fenced lane @p lane (fence @p seq): close our end, then ack. */
void ccm_lane_fence_request(struct ccm *ccm, unsigned lane, uint64_t seq);
/** Send the fences decided but not sent yet, in order of their numbers. */
void ccm_lane_send_fences(struct ccm *ccm);
/** At session end: complete the operations left on dead lanes. */
void ccm_lane_abort_down(struct ccm *ccm);
/** A session starts: the handshake's lane @p hs_link is up, probes begin. */
void ccm_lane_session_begin(struct ccm *ccm, unsigned hs_link);
/** A session ended: lanes go down, fences and session regions are dropped. */
void ccm_lane_session_end(struct ccm *ccm);
/** Every tick (probe_ms): post probes on up lanes and, after backoff, dead ones. */
void ccm_lane_tick(struct ccm *ccm);
/** Outside any fabric callback: reset failed lanes, fence them, reopen what may be. */
void ccm_lane_do_aborts(struct ccm *ccm);
/** Number of lanes up now. */
unsigned ccm_lane_up_count(const struct ccm *ccm);
/** Whether the last lane up is kept with no sign of life (docs/CCM.md, "Lanes"). */
bool ccm_lane_any_stale(const struct ccm *ccm);
/** Whether @p status says the path failed (not the operation itself). */
bool ccm_lane_error_is_link(int status);
/** Count a completed operation of @p len bytes on @p l (and its instance). */
void ccm_lane_account(struct ccm_link *l, size_t len, int status);
/** Post a probe on every lane that has none in flight (dead lanes after backoff). */
void ccm_lane_post_probes(struct ccm *ccm);
/** Register @p buf on every link under one fresh random key (into @p mrs, or each sess_mr). */
int ccm_reg_all(struct ccm *ccm, void *buf, size_t len, unsigned access, uint64_t *key,
		struct fab_mr **mrs);

/* inst.c: instance load, port placement and rebalancing; calls no other file. */
/** Once per tick: the smoothed traffic rate of every instance. */
void ccm_inst_update_rates(struct ccm *ccm);
/** The instance for port @p idx of client @p c (least loaded, heavy clients apart). */
unsigned ccm_inst_place(struct ccm *ccm, const struct ccm_client *c, unsigned idx);
/** Once a second: move the heaviest port off an instance past instance_max_load. */
void ccm_inst_rebalance(struct ccm *ccm);
/** Every tick: ports of an instance with no link up move to one with a
 * link up, and back once their instance has had one up for a second. */
void ccm_inst_failover(struct ccm *ccm);

/* chan.c: reliable ordered channels over the lanes; calls lane.c and
 * crypto.c, and up-calls ccm_sess_on_ctl and ccm_op_finish. */
/** Set up channel @p ch of @p port (NULL: the control channel). */
void ccm_chan_init(struct ccm_chan *ch, struct ccm *ccm, struct ccm_port *port);
/** Forget every message of the old session (buffers kept, late completions ignored). */
void ccm_chan_reset(struct ccm_chan *ch);
/** Free the channel's buffers. */
void ccm_chan_free(struct ccm_chan *ch);
/** Whether the channel still has messages in flight or unacknowledged. */
bool ccm_chan_busy(const struct ccm_chan *ch);
/** Queue a message (copied); @p op completes at its ack. Up-call of lane.c for fences. */
int ccm_chan_send(struct ccm_chan *ch, uint16_t type, const void *payload, size_t len,
		  struct ccm_op *op);
/** Post the queued messages in order while lanes take them. */
void ccm_chan_kick(struct ccm_chan *ch);
/** Promise a window slot to a write_notify whose message follows its write. */
int ccm_chan_reserve(struct ccm_chan *ch);
/** Up-call from lane.c: @p link went down, re-send its messages on others. */
void ccm_chan_on_link_down(struct ccm_chan *ch, unsigned link);
/** Retransmit the messages unacknowledged for @p rto_ns. */
void ccm_chan_tick(struct ccm_chan *ch, uint64_t now, uint64_t rto_ns);
/** A cumulative ack up to @p ack from the partner. */
void ccm_chan_on_ack(struct ccm_chan *ch, uint64_t ack);
/** A sequenced message (already authenticated) for this channel. */
void ccm_chan_on_data(struct ccm_chan *ch, const struct wire_msg *h, const void *payload);
/** Deliver the held messages that are next in order. */
void ccm_chan_deliver(struct ccm_chan *ch);
/** Send one cumulative ack per channel that owes one (once per loop turn). */
void ccm_chan_send_acks(struct ccm *ccm);
/** ccm->ack_timer's callback: the delayed acks are due now. */
void ccm_chan_acks_late_fire(struct loop_timer *t);
/** Fail the operations waiting for an ack (write_notify) with @p status. */
void ccm_chan_fail_ops(struct ccm_chan *ch, int status);

/* client.c: clients, ports and port operations; calls chan.c, lane.c and inst.c,
 * and up-calls ccm_sess_send_client_add and ccm_sess_send_client_del. */
/** Post @p op on a lane of its port's instance, or park it; never completes it here. */
void ccm_op_issue(struct ccm *ccm, struct ccm_op *op);
/** Re-issue the parked operations now that lanes may be up. */
void ccm_op_drain_pending(struct ccm *ccm);
/** Complete every parked operation with @p status. */
void ccm_op_fail_pending(struct ccm *ccm, int status);
/** Up-call from chan.c: complete @p op towards its owner (once). */
void ccm_op_finish(struct ccm_op *op, int status);
/** Up-call from lane.c: complete held writes whose fence was acked (0), or all with @p status. */
void ccm_op_release_held(struct ccm *ccm, int status);
/** Register every port of @p c on every link (a session starts or it registers). */
int ccm_client_register_mrs(struct ccm *ccm, struct ccm_client *c);
/** Deregister every port of @p c from every link. */
void ccm_client_unregister_mrs(struct ccm *ccm, struct ccm_client *c);
/** Bring up the ports that can be, take down those that cannot. */
void ccm_client_eval_ports(struct ccm *ccm, struct ccm_client *c);
/** Take every port of @p c down (with port_down if @p callbacks), ops fail with @p status. */
void ccm_client_ports_down(struct ccm *ccm, struct ccm_client *c, bool callbacks, int status);
/** Our port of id @p id (as the partner addresses it), or NULL. */
struct ccm_port *ccm_client_port_by_id(struct ccm *ccm, uint32_t id);
/** Our live client called @p name, or NULL. */
struct ccm_client *ccm_client_by_name(struct ccm *ccm, const char *name);
/** The partner's client called @p name (a free entry if @p create), or NULL. */
struct ccm_rclient *ccm_rclient_by_name(struct ccm *ccm, const char *name, bool create);
/** Free client slot @p slot, its ports and channels (nothing may refer to it). */
void ccm_client_free(struct ccm *ccm, unsigned slot);
/** Free the unregistered clients nothing refers to any more. */
void ccm_client_reap(struct ccm *ccm);
/** What partner_ready tells client @p c about the session's partner. */
void ccm_client_partner_info(struct ccm *ccm, const struct ccm_client *c,
			     struct ccm_partner_info *pi);
/** Deliver the pending partner_ready callbacks (from the work task). */
void ccm_client_deliver_ready(struct ccm *ccm);

/* handshake.c: the one-sided boot handshake and the boot probe; calls
 * crypto.c and the fabric, and up-calls ccm_sess_begin. */
/** Set up the handshake's embedded operations and timer; once, at creation. */
void ccm_hs_init(struct ccm *ccm);
/** Rewrite the boot region (seqlock) with state @p state (BOOT_*). */
void ccm_hs_publish_boot(struct ccm *ccm, uint32_t state);
/** Start a new handshake attempt (fresh nonce) after @p delay_ns. */
void ccm_hs_start_epoch(struct ccm *ccm, uint64_t delay_ns);
/** Look at what the partner wrote into our slot (only valid, current hellos count). */
void ccm_hs_slot_check(struct ccm *ccm);
/** Every tick (probe_ms): handshake retries and timeouts. */
void ccm_hs_tick(struct ccm *ccm);
/** Up-call from lane.c: a doorbell with immediate data @p imm arrived. */
void ccm_hs_on_doorbell(struct ccm *ccm, uint64_t imm);
/** Copy a consistent boot region from @p in; false when torn or not a boot region. */
bool ccm_hs_boot_snapshot(const struct wire_boot *in, struct wire_boot *out);
/** During a session: read the partner's boot region (has it rebooted or left?). */
void ccm_hs_boot_probe(struct ccm *ccm);

/* session.c: the session after the handshake; calls every file below. */
/** Up-call from handshake.c: both sides proved the secret, set the session up. */
void ccm_sess_begin(struct ccm *ccm);
/** End the session: alert clients, close ports, and (unless stopping) re-handshake. */
void ccm_sess_end(struct ccm *ccm, enum ccm_term_reason why);
/** Up-call from lane.c: a message from any link (checked, then dispatched). */
void ccm_sess_on_msg(struct ccm *ccm, const void *msg, size_t len);
/** Up-call from chan.c: a control message delivered in order. */
void ccm_sess_on_ctl(struct ccm *ccm, uint16_t type, const uint8_t *payload, size_t len);
/** Every tick during a session: setup deadline, links lost, boot probe, load. */
void ccm_sess_tick(struct ccm *ccm);
/** Up-call from client.c: tell the partner about client @p c. */
void ccm_sess_send_client_add(struct ccm *ccm, struct ccm_client *c);
/** Up-call from client.c: tell the partner client @p c is gone. */
void ccm_sess_send_client_del(struct ccm *ccm, struct ccm_client *c);
/** Send TERMINATE(@p why) on the control channel. */
int ccm_sess_send_terminate(struct ccm *ccm, enum ccm_term_reason why);
/** Publish our instances' load in the session region. */
void ccm_sess_publish_load(struct ccm *ccm);

/* ccm.c: the CCM object and its deferred work; calls every file. */
/** Up-call from every file: run the deferred work once the callback chain unwinds. */
void ccm_schedule(struct ccm *ccm);
/** Up-call from every file: end the session (from the work task) for @p why. */
void ccm_request_terminate(struct ccm *ccm, enum ccm_term_reason why);

/* Test hooks (unit tests only; defined in ccm.c and client.c). */
/** Publish protocol version @p major.@p minor instead of ours. */
void ccm_test_set_version(struct ccm *ccm, uint16_t major, uint16_t minor);
/** Add @p bytes_per_sec to the load of instance @p inst. */
void ccm_test_set_load(struct ccm *ccm, unsigned inst, uint64_t bytes_per_sec);
/** The instance port @p p is placed on. */
unsigned ccm_test_port_instance(const struct ccm_port *p);
/** Drop everything without telling the partner: a SIGKILL. */
void ccm_test_crash(struct ccm *ccm);
/** The active side's handshake step now. */
enum hs_step ccm_test_hs_step(const struct ccm *ccm);
/** This node's boot generation. */
uint64_t ccm_test_generation(const struct ccm *ccm);

#endif
