/* Internals of the CCM shared by its source files (and its unit tests).
 * Not part of the public API. */
#ifndef DUET_CCM_PRIV_H
#define DUET_CCM_PRIV_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "ccm/ccm.h"
#include "ccm/wire.h"
#include "config/config.h"
#include "common/loop.h"
#include "common/util.h"

#define CHAN_WINDOW	 64 /* unacknowledged messages per channel, power of two */
#define CCM_LINK_MAX_MSG (CCM_MSG_MAX + sizeof(struct wire_msg))
#define CCM_RX_DEPTH	 128

struct evp_mac_ctx_st;

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
	bool in_list; /* on ccm->ack_list */
	struct ccm_chan *ack_next;
	uint64_t sent, received;
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
	uint64_t last_ok_ns;
	uint64_t last_change_ns;
	struct loop_timer deadline;
	uint64_t deadline_due; /* when the deadline timer should fire */
	bool grace;	       /* one more chance given after a reactor stall */
	/* heartbeat: a read of the partner's session region */
	struct fab_op hb_op;
	bool hb_busy;
	uint64_t hb_post_ns;
	uint64_t hb_epoch;
	uint64_t next_probe_ns; /* a dead lane is probed with backoff */
	uint64_t probe_backoff_ns;
	struct wire_sess hb_buf;
	uint64_t rtt_ns;
	/* first read of the handshake, posted on every link at once */
	struct fab_op hs_op;
	bool hs_busy;
	uint64_t hs_epoch;
	struct wire_boot hs_buf;
	/* accounting */
	uint64_t inflight_ops, inflight_bytes;
	uint64_t ops, bytes, errors;
	uint64_t resets;
};

struct ccm_inst {
	unsigned idx;
	unsigned n_links;
	unsigned links[CCM_MAX_LINKS];
	unsigned rr;
	/* Port operations waiting for a lane of this instance. */
	struct ccm_op *pend_head, *pend_tail;
	uint64_t bytes_total, bytes_prev, rate;
	uint64_t ops_inflight, bytes_inflight;
	unsigned ports;
	uint64_t test_load; /* unit tests: added to rate */
	struct wire_inst_load partner;
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
	/* config */
	char node[CCM_NODE_MAX];
	char partner_cfg[CCM_NODE_MAX];
	char cluster[CCM_CLUSTER_MAX];
	char provider[64];
	char secret_file[4096];
	enum config_balance balance;
	uint64_t hb_ns, link_deadline_ns, session_deadline_ns;
	uint64_t inst_max_load;
	uint16_t major, minor;
	unsigned n_links, n_inst;
	struct config_link link_cfg[CCM_MAX_LINKS];
	struct ccm_link links[CCM_MAX_LINKS];
	struct ccm_inst inst[CCM_MAX_INSTANCES];
	unsigned all_rr;

	enum ccm_state state;
	uint64_t epoch; /* bumped at every session end; stale completions are ignored */
	uint64_t gen;
	uint8_t nonce[CCM_NONCE_LEN];
	uint8_t secret[1024];
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
	uint64_t session_id;
	struct evp_mac_ctx_st *mac;
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
	uint64_t hb_counter;
	unsigned tick_count;
	char error[256];

	/* Boot probe during a session: has the partner rebooted or reset? */
	struct fab_op probe_op;
	bool probe_busy;
	uint64_t probe_epoch;
	uint64_t probe_post_ns;
	uint64_t last_probe_ns;
	unsigned probe_link;
	struct wire_boot probe_buf;

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
	struct ccm_chan *ack_list;
	bool in_terminate;
	bool in_work;
	/* Fences: writes re-issued from a failed lane complete only once the
	 * partner has closed its end of that lane. */
	uint32_t fence_next, fence_acked;
	uint64_t fence_sent_ns;
	struct ccm_op *held_head, *held_tail;
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

/* ccm.c */
void ccm_schedule(struct ccm *ccm);
void ccm_request_terminate(struct ccm *ccm, enum ccm_term_reason why);
const char *ccm_hex64(uint64_t v, char buf[17]);

/* crypto.c */
uint64_t ccm_random_key(void);
int ccm_load_secret(struct ccm *ccm);
void ccm_proof(const struct ccm *ccm, const char *label, const char *w_node, uint64_t w_gen,
	       const uint8_t *w_nonce, const char *t_node, uint64_t t_gen, const uint8_t *t_nonce,
	       uint8_t out[CCM_PROOF_LEN]);
int ccm_session_keys(struct ccm *ccm);
void ccm_mac_free(struct ccm *ccm);
void ccm_msg_mac(struct ccm *ccm, const struct wire_msg *h, const void *payload, size_t len,
		 uint8_t out[CCM_MAC_LEN]);
bool ccm_msg_mac_ok(struct ccm *ccm, const struct wire_msg *h, const void *payload, size_t len);
bool ccm_ct_equal(const void *a, const void *b, size_t len);

/* handshake.c */
void hs_init(struct ccm *ccm);
void hs_publish_boot(struct ccm *ccm, uint32_t state);
void hs_start_epoch(struct ccm *ccm, uint64_t delay_ns);
void hs_slot_check(struct ccm *ccm);
void hs_tick(struct ccm *ccm);
void hs_on_doorbell(struct ccm *ccm, uint64_t imm);
bool hs_boot_snapshot(const struct wire_boot *in, struct wire_boot *out);
void hs_probe(struct ccm *ccm);

/* session.c */
void sess_begin(struct ccm *ccm);
void sess_end(struct ccm *ccm, enum ccm_term_reason why);
void sess_on_msg(struct ccm *ccm, const void *msg, size_t len);
void sess_on_ctl(struct ccm *ccm, uint16_t type, const uint8_t *payload, size_t len);
void sess_tick(struct ccm *ccm);
void sess_send_client_add(struct ccm *ccm, struct ccm_client *c);
void sess_send_client_del(struct ccm *ccm, struct ccm_client *c);
int sess_send_terminate(struct ccm *ccm, enum ccm_term_reason why);
void sess_publish_load(struct ccm *ccm);

/* chan.c */
void chan_init(struct ccm_chan *ch, struct ccm *ccm, struct ccm_port *port);
void chan_reset(struct ccm_chan *ch);
void chan_free(struct ccm_chan *ch);
bool chan_busy(const struct ccm_chan *ch);
int chan_send(struct ccm_chan *ch, uint16_t type, const void *payload, size_t len,
	      struct ccm_op *op);
void chan_kick(struct ccm_chan *ch);
int chan_reserve(struct ccm_chan *ch);
void chan_on_link_down(struct ccm_chan *ch, unsigned link);
void chan_tick(struct ccm_chan *ch, uint64_t now, uint64_t rto_ns);
void chan_on_ack(struct ccm_chan *ch, uint64_t ack);
void chan_on_data(struct ccm_chan *ch, const struct wire_msg *h, const void *payload);
void chan_deliver(struct ccm_chan *ch);
void chan_send_acks(struct ccm *ccm);
void chan_fail_ops(struct ccm_chan *ch, int status);

/* lane.c */
void lane_init(struct ccm *ccm);
int lane_open_all(struct ccm *ccm);
void lane_close_all(struct ccm *ccm);
struct ccm_link *lane_pick(struct ccm *ccm, unsigned inst, size_t len);
void lane_ok(struct ccm_link *l);
/*
 * Take a lane out (an error or a missed deadline); its operations are
 * re-issued on the others by their owners. See docs/CCM.md, "Lanes": the
 * link is closed (our buffers are safe), and during a session fenced: the
 * partner closes its end too (nothing still in flight can land any more)
 * before re-issued writes complete and before the lane reopens.
 */
void lane_fail(struct ccm_link *l, const char *why, bool hang);
void lane_fence_acked(struct ccm *ccm, uint64_t seq);
void lane_fence_request(struct ccm *ccm, unsigned lane, uint64_t seq);
void lane_send_fences(struct ccm *ccm);
void lane_abort_down(struct ccm *ccm);
void lane_session_begin(struct ccm *ccm, unsigned hs_link);
void lane_session_end(struct ccm *ccm);
void lane_tick(struct ccm *ccm);
void lane_do_aborts(struct ccm *ccm);
unsigned lane_up_count(const struct ccm *ccm);
bool lane_error_is_link(int status);
void lane_account(struct ccm_link *l, size_t len, int status);
void lane_start_hb(struct ccm *ccm);
/* Register @p buf on every link under one fresh random key (stored in
 * *key); the regions go to @p mrs (indexed by link) or to each link's
 * sess_mr when @p mrs is NULL. */
int ccm_reg_all(struct ccm *ccm, void *buf, size_t len, unsigned access, uint64_t *key,
		struct fab_mr **mrs);
void inst_update_rates(struct ccm *ccm);
unsigned inst_place(struct ccm *ccm, const struct ccm_client *c, unsigned idx);
void inst_rebalance(struct ccm *ccm);

/* client.c */
void op_issue(struct ccm *ccm, struct ccm_op *op);
void op_drain_pending(struct ccm *ccm);
void op_fail_pending(struct ccm *ccm, int status);
void op_finish(struct ccm_op *op, int status);
void op_release_held(struct ccm *ccm, int status);
int client_register_mrs(struct ccm *ccm, struct ccm_client *c);
void client_unregister_mrs(struct ccm *ccm, struct ccm_client *c);
void client_eval_ports(struct ccm *ccm, struct ccm_client *c);
void client_ports_down(struct ccm *ccm, struct ccm_client *c, bool callbacks, int status);
struct ccm_port *client_port_by_id(struct ccm *ccm, uint32_t id);
struct ccm_client *client_by_name(struct ccm *ccm, const char *name);
struct ccm_rclient *rclient_by_name(struct ccm *ccm, const char *name, bool create);
void client_reap(struct ccm *ccm);
void client_deliver_ready(struct ccm *ccm);

/* Test hooks (unit tests only). */
void ccm_test_set_version(struct ccm *ccm, uint16_t major, uint16_t minor);
void ccm_test_set_load(struct ccm *ccm, unsigned inst, uint64_t bytes_per_sec);
unsigned ccm_test_port_instance(const struct ccm_port *p);
/* Drop everything without telling the partner: a SIGKILL. */
void ccm_test_crash(struct ccm *ccm);
enum hs_step ccm_test_hs_step(const struct ccm *ccm);
uint64_t ccm_test_generation(const struct ccm *ccm);

#endif
