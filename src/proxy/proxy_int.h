/* The proxy's one private header: its wire format (the message structs with
 * their layout checks), the state shared by its source files, and every
 * internal prototype, grouped by the file that defines it. Not part of the
 * public API (proxy.h); the unit tests include it.
 *
 * Layering (nothing below calls anything above it):
 *   proxy.c              CCM client callbacks, life cycle, status: the
 *                        dispatcher; calls the forwarding and serving sides
 *   forward.c            the proxy listener's backend (forwarding side)
 *   fw_volumes.c         partner volume list, takeover routes, local ios
 *   fw_reply.c           replies and refusals from the partner
 *   fw_send.c            sending requests; port and session events
 *   fw_request.c         commands and requests: pools, queues, completion
 *   serve.c              the serving side (exactly-once)
 *   port.c               what both sides send through: a port's batch,
 *                        and the log of refused partner messages
 *   pmem.c, wire.c       leaves: port memory allocator, message codec
 * fw_volumes.c and fw_reply.c do not call each other. The forwarding
 * files (forward.c, fw_*.c) and serve.c never call each other nor proxy.c:
 * what they share is port.c, pmem.c and wire.c. Up-calls leave the proxy
 * only through the NBD io's completion and the loop's timers. */
#ifndef DUET_PROXY_PROXY_INT_H
#define DUET_PROXY_PROXY_INT_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ccm/ccm.h"
#include "common/list.h"
#include "common/loop.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"

/* ==== Wire format of the proxy's messages on its CCM ports (docs/PROXY.md) ====
 * Every integer is little-endian; the structs have no padding (checked
 * below) and only give the layout: wire.c reads and writes each field at
 * its offset with common/byteorder.h. The decoders check structure only
 * (magic, sizes, flags, command types, names); what depends on state
 * (sessions, volume ids, bounds) is checked by the side that owns that
 * state. */

#define PX_MAGIC   0x31585044u /* "DPX1" */
#define PX_VERSION 1u

/* WRITE data up to this size rides in the request message; bigger goes by
 * RDMA (the server reads it from the forwarder's slot). */
#define PX_INLINE_MAX 8192u
/* READ data up to PX_INLINE_MAX comes back in the reply (the forwarder sets
 * PX_F_INLINE on the request) while fewer than this many requests are in
 * flight: one interconnect round trip less than an RDMA write that must be
 * delivered before the reply. Beyond, it goes by RDMA (up to three inline
 * 4 KiB replies fit a message, and the channel's window bounds them). The
 * CCM MACs every message byte (GMAC since CCM protocol 2, 0.45 us per
 * 4 KiB at each end; SHA-256 before, 2.5 us), yet measured per request at
 * queue depth 32 with SHA-256 (bench/proxy-ops.sh, issue 11) inline data
 * cost fewer system calls (an RDMA write on tcp;ofi_rxm is a send, a
 * delivery ack and their completions) and no more CPU time than the RDMA
 * write; 4, the value before, was chosen by callgrind, which counts neither
 * the kernel nor the SHA extensions (valgrind does not run them). */
#define PX_READ_INLINE_LOAD 64u
/* Forwarding under load (at least PX_COALESCE_LOAD requests of at most
 * PX_INLINE_MAX bytes in flight): a port's batch of requests waits for
 * more (instead of going at the end of the loop turn) for as long as a
 * small request's recent round trip to the partner (a moving average), at
 * most PX_COALESCE_MAX_NS. A CCM message's fixed cost (a fabric send and
 * its completion on both nodes, the wake-ups of both reactors, the MAC) is
 * most of a small request's; more requests per message mean fewer of
 * them, and the server, executing a batch together, answers in fewer
 * messages too. The requests already in flight keep the pipe full
 * meanwhile. At low depth, and for big requests, nothing waits. Measured
 * at queue depth 32 (issue 11): 17.5 -> 11.8 system calls per proxied
 * 4 KiB read on the forwarder, 15.9 -> 10.0 on the server; 30 us waits
 * saved nothing (requests arrive further apart). */
#define PX_COALESCE_LOAD   4u
#define PX_COALESCE_MAX_NS 200000ull
/* Extents of a BLOCK_STATUS reply (one message). */
#define PX_MAX_EXTENTS 1000u
/* Volumes in one PX_VOLS message, and in all. */
#define PX_VOLS_PER_MSG 185u
#define PX_MAX_VOLS	1024u
#define PX_NAME_MAX	64u
/* Largest request length the server takes (chunks are smaller). */
#define PX_CHUNK_MAX (64u << 20)

enum px_type {
	PX_HELLO = 1, /* forwarder -> server: first message of a port, each session */
	PX_VOLS = 2,  /* server -> forwarder: volume list (after HELLO, on change) */
	PX_REQ = 3,   /* forwarder -> server: one forwarded request */
	PX_REP = 4,   /* server -> forwarder: its result */
	PX_BATCH = 5, /* several of the above in one CCM message */
};

/* Header flags. */
#define PX_F_RETRY  (1u << 0) /* REQ: sent before, in an earlier session */
#define PX_F_NOEXEC (1u << 1) /* REQ: only report; never execute (abandoned request) */
#define PX_F_INLINE (1u << 2) /* REQ WRITE / REP READ: data follows; REQ READ: reply inline */
#define PX_F_FIRST  (1u << 3) /* VOLS: first message of a list */
#define PX_F_LAST   (1u << 4) /* VOLS: last message of a list */
/* VOLS: the sender's shelf handover state (PROXY_SHELF_*, 3 bits), carried
 * on every message of a list and taken at its last. */
#define PX_F_SHELF_SHIFT 5u
#define PX_F_SHELF_MASK	 (7u << PX_F_SHELF_SHIFT)

struct px_hdr {
	uint32_t magic;
	uint16_t type;
	uint16_t flags;
};
static_assert(sizeof(struct px_hdr) == 8, "header layout");

struct px_hello {
	struct px_hdr h;
	uint32_t version;
	uint32_t rsvd;
	uint64_t session;   /* the forwarder's session id (random, per process) */
	uint64_t data_size; /* bytes at the start of its port memory holding data */
	uint64_t chunk;	    /* largest request it sends */
};
static_assert(sizeof(struct px_hello) == 40, "hello layout");

/* Volume flags. */
#define PXV_READ_ONLY	     (1u << 0)
#define PXV_CAN_TRIM	     (1u << 1)
#define PXV_CAN_ZERO	     (1u << 2)
#define PXV_CAN_FAST_ZERO    (1u << 3)
#define PXV_CAN_CACHE	     (1u << 4)
#define PXV_CAN_FLUSH	     (1u << 5)
#define PXV_CAN_FUA	     (1u << 6)
#define PXV_CAN_MULTI_CONN   (1u << 7)
#define PXV_CAN_BLOCK_STATUS (1u << 8)
/* The volume has an allow list of TLS identities (docs/SECURITY.md): the
 * forwarding side does not know them and refuses the volume on its proxy
 * port (fail closed); its owner's own NBD port serves it. */
#define PXV_RESTRICTED (1u << 9)
#define PXV_ALL	       0x3ffu

/* Also the decoded form of an entry (host order). */
struct px_vol {
	uint32_t id;
	uint32_t flags; /* PXV_* */
	uint64_t size;
	uint32_t min_block;
	uint32_t pref_block;
	char name[PX_NAME_MAX]; /* NUL-terminated, zero-padded */
};
static_assert(sizeof(struct px_vol) == 88, "volume layout");

struct px_vols {
	struct px_hdr h;
	uint32_t count;
	uint32_t gen;		 /* the list's generation, see proxy_fw_on_vols(); 0: none */
	uint64_t server_session; /* the server's session id: ids are valid within it */
				 /* count x struct px_vol */
};
static_assert(sizeof(struct px_vols) == 24, "volume list layout");

struct px_req {
	struct px_hdr h;
	uint32_t vol;
	uint16_t cmd;	 /* enum nbd_cmd_type */
	uint16_t cflags; /* NBD_CMD_FLAG_* */
	uint64_t session;
	uint64_t seq;
	uint64_t offset;
	uint32_t length;
	uint32_t max_extents; /* BLOCK_STATUS */
	uint64_t data_off;    /* READ/WRITE not inline: where in the forwarder's port memory */
			      /* WRITE with PX_F_INLINE: length bytes of data */
};
static_assert(sizeof(struct px_req) == 56, "request layout");

struct px_rep {
	struct px_hdr h;
	int32_t result; /* 0 or a negative errno */
	uint32_t count; /* BLOCK_STATUS extents that follow */
	uint64_t session;
	uint64_t seq;
	uint32_t length; /* READ: bytes of data (inline, or placed in the slot) */
	uint32_t rsvd;
	/* READ with PX_F_INLINE: length bytes; BLOCK_STATUS: count x px_ext */
};
static_assert(sizeof(struct px_rep) == 40, "reply layout");

struct px_ext {
	uint64_t length;
	uint32_t flags; /* NBD_STATE_* */
	uint32_t rsvd;
};
static_assert(sizeof(struct px_ext) == 16, "extent layout");

static_assert(sizeof(struct px_req) + PX_INLINE_MAX <= 16384, "inline write fits a message");
static_assert(sizeof(struct px_rep) + PX_MAX_EXTENTS * sizeof(struct px_ext) <= 16384,
	      "extents fit a message");
static_assert(sizeof(struct px_vols) + PX_VOLS_PER_MSG * sizeof(struct px_vol) <= 16384,
	      "volume list fits a message");

/* A batch: the records of one loop turn to the same port, each a whole
 * message of the types above, in order. */
struct px_batch {
	struct px_hdr h;
	uint32_t count;
	uint32_t rsvd;
	/* count x (struct px_rec, len bytes, zero padding to 8) */
};
static_assert(sizeof(struct px_batch) == 16, "batch layout");

struct px_rec {
	uint32_t len;
	uint32_t rsvd;
};
static_assert(sizeof(struct px_rec) == 8, "record layout");

#define PX_MSG_MAX	 16384u /* CCM_MSG_MAX */
#define PX_BATCH_MAX	 2048u	/* records in one batch */
#define PX_REC_SIZE(len) (sizeof(struct px_rec) + (((size_t)(len) + 7) & ~(size_t)7))
/* Every record fits a batch on its own. */
static_assert(sizeof(struct px_batch) +
		      PX_REC_SIZE(sizeof(struct px_rep) + PX_MAX_EXTENTS * sizeof(struct px_ext)) <=
		  PX_MSG_MAX,
	      "a reply fits a batch");
static_assert(sizeof(struct px_batch) + PX_REC_SIZE(sizeof(struct px_vols) +
						    PX_VOLS_PER_MSG * sizeof(struct px_vol)) <=
		  PX_MSG_MAX,
	      "a volume list fits a batch");
static_assert(sizeof(struct px_batch) + PX_REC_SIZE(sizeof(struct px_req) + PX_INLINE_MAX) <=
		  PX_MSG_MAX,
	      "a request fits a batch");

/* Decoded messages, in host order. */
struct pxm_hello {
	uint32_t version;
	uint64_t session, data_size, chunk;
};

struct pxm_req {
	uint16_t flags;
	uint32_t vol;
	uint16_t cmd, cflags;
	uint64_t session, seq, offset;
	uint32_t length, max_extents;
	uint64_t data_off;
	const uint8_t *data; /* inline WRITE data (in the message) */
};

struct pxm_rep {
	uint16_t flags;
	int32_t result;
	uint32_t count;
	uint64_t session, seq;
	uint32_t length;
	const uint8_t *data; /* inline READ data, or count px_ext */
};

struct pxm_vols {
	uint16_t flags;
	uint32_t count;
	uint32_t gen;
	uint64_t server_session;
	const uint8_t *vols; /* count x struct px_vol, read with proxy_wire_vol_get() */
};

/* ==== State ==== */

/* Span of sequence numbers in flight, and the size of the server's table of
 * recent results (both rings are indexed by seq % PX_TABLE). */
#define PX_TABLE      4096u
#define PX_TABLE_MASK (PX_TABLE - 1)
/* Port memory is handed out in units of this size. */
#define PX_UNIT_SHIFT 14u
#define PX_UNIT	      (1u << PX_UNIT_SHIFT)
/* Serving side buffers for data that rides in messages, and for extents. */
#define PX_POOL_BUF 16384u
/* A request the partner refused (not serving: -EAGAIN) is sent again after
 * this delay. */
#define PX_RETRY_NS 5000000ull

/* The ports' memory: one anonymous map per port, the proxy's own rather
 * than the CCM's (it outlives the CCM client while the local backend may
 * still use it), reference counted so that it also outlives the proxy
 * while an NBD reply is still sent from a forwarder slot (pmem.c). */
struct pmaps {
	unsigned refs; /* the proxy's, and one per slot held past proxy_destroy */
	unsigned n;
	size_t size; /* of each map */
	void *map[]; /* n maps (the CCM's port_buf) */
};

/* First-fit allocator of port memory units (pmem.c). */
struct pmem {
	uint64_t *map; /* bit set: unit in use */
	unsigned units;
	unsigned used;
};

/* ---- forwarding side ---- */

/* A partner volume as the forwarder knows it (kept across sessions). */
struct pvol {
	struct list node; /* px->vols */
	struct proxy *px;
	char name[PX_NAME_MAX];
	uint32_t id;	 /* the partner's id for it ... */
	bool id_valid;	 /* ... valid for the partner instance we last heard */
	bool listed;	 /* in the partner's last list */
	bool new_listed; /* in the list being received */
	bool restricted; /* PXV_RESTRICTED: not served on the proxy port */
	struct nbd_export_info info;
	unsigned opens; /* handles held by the proxy listener */
	/* Takeover route: served by a local backend instead. */
	bool local;
	const struct nbd_backend_ops *lops;
	void *lctx;
	void *lhandle;
	struct nbd_export_info linfo;
	unsigned local_inflight;
};

/* One NBD command from the proxy listener. */
struct pcmd {
	struct list node;	 /* px->cmds, in submission order */
	struct slist_node fnode; /* px->free_cmds */
	struct nbd_io *nio;
	struct pvol *vol;
	struct list reqs; /* its requests (preq.cnode), in offset order */
	uint64_t start_ns;
	unsigned parts; /* requests not yet answered */
	int error;
};

/* A command for a volume routed to a local backend (takeover) goes there
 * as an io of our own over the same buffers, so that the client's io is
 * left as its server made it. */
struct lio {
	struct nbd_io io;
	struct nbd_io *orig;
	struct pvol *vol;
	struct slist_node fnode; /* px->free_lios */
};

enum preq_state {
	PR_FREE = 0,
	PR_WAIT,   /* on px->waitq: no port, no sequence number yet */
	PR_SENT,   /* sent on its port in this session */
	PR_RESEND, /* on its port's resend queue */
	PR_PARKED, /* refused by the partner (not serving): on px->parked until
		      the retry timer puts it back on px->waitq */
	PR_HELD,   /* answered, its READ data sent to the client from its slot:
		      on px->held, keeping port and slot until the NBD server's
		      release (nbd_io.release) */
};

/* A slot lent to the NBD server for a WRITE's payload (write_buf of
 * proxy_fw_ops): the request of that WRITE sends from it (no copy). Freed
 * once the server released it and no request sends from it any more (an
 * abandoned one may still be in flight: the partner may still read it). */
struct pslot {
	struct list node;    /* px->lent */
	struct pxport *port; /* NULL past proxy_destroy */
	struct pmaps *maps;  /* then: the memory it keeps mapped */
	int64_t off;
	uint32_t length;
	unsigned users; /* requests whose slot it is (preq.borrowed) */
	bool lent;	/* the NBD server has not released it yet */
};

/* One forwarded request (a command, or a chunk of a big one). */
struct preq {
	struct pcmd *cmd;	 /* NULL once abandoned (its command failed) */
	struct list cnode;	 /* cmd->reqs */
	struct list qnode;	 /* on a queue (waitq, parked or a resend queue) when linked */
	struct slist_node fnode; /* px->free_reqs */
	struct pxport *port;	 /* bound at the first send, for good */
	uint64_t seq;
	uint64_t order; /* submission order (px->waitq and px->parked keep it) */
	uint64_t offset;
	uint32_t length;
	uint32_t buf_off; /* of the data in cmd->nio->buf */
	int64_t slot;	  /* offset in the port memory, -1: none */
	uint32_t max_extents;
	uint32_t vol_id; /* id at the last send */
	uint16_t type, cflags;
	uint8_t state;
	bool sent_once;
	uint64_t sent_ns;   /* loop turn of its first send (round trip sample) */
	struct pmaps *maps; /* PR_HELD past proxy_destroy (port NULL): its memory */
	struct pslot *lent; /* WRITE: its data is in this lent slot */
	bool borrowed;	    /* its slot is lent's (not its own to free) */
};

/* ---- serving side ---- */

/* A local volume served to the partner. */
struct svol {
	struct list node; /* px->svols */
	uint32_t id;
	char name[PX_NAME_MAX];
	void *handle;
	struct nbd_export_info info;
	unsigned inflight;
	bool gone;	 /* no longer listed: closed once idle */
	bool mark;	 /* seen in the list being built */
	bool restricted; /* has an allow list (PXV_RESTRICTED) */
};

enum sop_stage {
	SO_BUFWAIT = 1, /* waiting for port memory */
	SO_RDMA_IN,	/* reading the WRITE data from the forwarder */
	SO_EXEC,	/* at the local backend */
	SO_RDMA_OUT,	/* writing the READ data to the forwarder */
	SO_REPLYWAIT,	/* reply waiting for room on the channel */
};

/* A partner request being served. */
struct sop {
	struct nbd_io io; /* what the local backend sees */
	struct proxy *px;
	struct slist_node qnode; /* port->bufq, port->repq or px->free_sops */
	struct pxport *port;
	struct svol *vol;
	struct ccm_op op;
	uint64_t session, seq;
	uint64_t data_off;
	uint64_t epoch;	    /* port epoch it was received (or last re-driven) in */
	uint64_t fence_gen; /* px->fence_gen when received */
	uint8_t *buf;
	int64_t smem; /* offset in the port memory, -1: pool buffer */
	int result;
	uint16_t cmd;
	uint8_t stage;
	bool reply_inline;
	bool orphan; /* its forwarder session ended: no reply, no table */
};

enum sent_state { SE_EMPTY = 0, SE_EXEC, SE_DONE };

/* One entry of the table of recent results (exactly-once). */
struct sent {
	uint64_t seq;
	struct sop *sop; /* SE_EXEC */
	uint64_t replied_epoch;
	int32_t result;
	uint8_t state;
	bool mutating;
};

/* One CCM port, in both roles. */
struct pxport {
	struct proxy *px;
	struct ccm_port *cp;
	unsigned idx;
	uint8_t *mem;
	size_t half; /* [0, half): forwarder data; [half, mem size): serving buffers */
	bool up;
	bool blocked; /* the channel said -EAGAIN: wait for send_ready */
	/* Records of this loop turn, sent as one message at its end (port.c). */
	uint8_t *batch;
	size_t batch_len;
	unsigned batch_n;
	size_t first_len; /* of the first record (sent bare when alone) */
	/* forwarding */
	enum { FP_DOWN = 0, FP_HELLO, FP_READY } fstate;
	bool hello_pending;
	struct pmem fmem;
	struct list rq; /* requests to send again (preq.qnode), in order */
	unsigned outstanding;
	unsigned held; /* units of fmem held by PR_HELD requests and lent slots */
	/* serving */
	bool helloed;
	uint64_t fsession;
	uint64_t data_size; /* forwarder's data area, as it said and we can reach */
	uint64_t epoch;
	struct pmem smem;
	struct slist bufq; /* sops waiting for port memory, in arrival order */
	struct slist repq; /* sops whose reply waits for room on the channel */
	bool vols_pending; /* the volume list is owed on this port */
	bool in_kick;
};

struct proxy {
	struct loop *loop;
	struct ccm *ccm;
	struct ccm_client *client;
	char node[CCM_NODE_MAX];
	char partner[CCM_NODE_MAX];
	uint64_t partner_gen;
	bool session_up;    /* partner_ready seen, not yet terminating */
	bool ready_seen;    /* partner_ready without a partner proxy: it may register later */
	uint64_t ready_gen; /* the partner's generation then */
	uint64_t session;   /* this instance's id, in both roles */
	unsigned n_ports;
	size_t port_mem;
	uint64_t chunk;
	uint64_t timeout_ns;
	struct pxport *ports;
	unsigned rr;
	uint8_t *scratch;	       /* one message being built */
	struct loop_timer flush_timer; /* zero delay: unlike a task, it can be cancelled */
	struct pmaps *maps;	       /* the ports' memory (p->mem is maps->map[i]) */
	bool stopped;		       /* proxy_stop(): off the CCM */
	bool dead;		       /* destroyed with served requests in flight */

	/* forwarding */
	struct list vols; /* struct pvol */
	uint64_t vols_server_session;
	bool vols_receiving;
	uint32_t vols_recv_gen;	       /* of the list being received */
	unsigned vols_recv_port;       /* the port it comes on */
	uint32_t vols_applied_gen;     /* of the last list taken (0: none yet) */
	unsigned partner_shelf;	       /* PROXY_SHELF_* of the partner's last list */
	struct list cmds;	       /* struct pcmd, in submission order */
	struct list waitq;	       /* struct preq not yet sent, in submission order */
	struct list parked;	       /* refused, in submission order */
	struct list held;	       /* PR_HELD, until their NBD replies left */
	struct list lent;	       /* struct pslot */
	struct loop_timer retry_timer; /* puts parked requests back on waitq */
	uint64_t next_order;
	uint64_t next_seq, oldest_seq;
	struct preq *outstanding[PX_TABLE];
	struct loop_timer deadline;
	struct slist free_cmds;
	struct slist free_reqs;
	struct slist free_lios;
	uint64_t expired_logged_ns;
	uint64_t refused_logged_ns;
	uint64_t rtt_ns;	    /* moving average of a small request's round trip */
	unsigned small_outstanding; /* requests up to PX_INLINE_MAX in flight, all ports */

	/* serving */
	const struct nbd_backend_ops *lops;
	void *lctx;
	void (*vols_changed)(void *arg); /* the partner's list changed */
	void *vols_changed_arg;
	struct list svols; /* struct svol */
	unsigned shelf;	   /* PROXY_SHELF_* sent with our list */
	uint32_t next_vol_id;
	uint32_t vols_gen; /* of our last list: each refresh takes a new one */
	uint64_t table_session;
	uint64_t epoch_ctr;
	struct sent table[PX_TABLE];
	struct slist free_sops;
	unsigned sops_busy;	/* partner requests taken and not yet answered */
	struct slist free_bufs; /* PX_POOL_BUF buffers, each its own slist_node */
	unsigned bufs_allocated;
	uint64_t bad_logged_ns;
	/* proxy_set_serving(): false while this node is fenced. fence_gen
	 * counts the times it went false: a request received under an older
	 * one was fenced while in progress. */
	bool serving;
	uint64_t fence_gen;

	struct proxy_stats st;
};

/* ==== Prototypes, by defining file ==== */

/* wire.c: message codec; decoders return 0 or -EBADMSG with *why set */
/** Type of a message (0 when not even a header), without checking further. */
unsigned proxy_wire_msg_type(const void *msg, size_t len);
/** Call @p fn on each record of a batch, in order; -EBADMSG at the first bad one. */
int proxy_wire_batch_walk(const void *msg, size_t len,
			  void (*fn)(void *arg, const void *rec, size_t len), void *arg,
			  const char **why);
/** Write an empty batch header into @p buf (records follow at sizeof(struct px_batch)). */
void proxy_wire_batch_init(void *buf);
/** Append one record at @p off of a batch; @return the offset after it. */
size_t proxy_wire_batch_add(void *buf, size_t off, const void *rec, size_t len);
/** Append one record made of @p rec and then @p dlen bytes at @p data (no copy in between). */
size_t proxy_wire_batch_add2(void *buf, size_t off, const void *rec, size_t len, const void *data,
			     size_t dlen);
/** Store the record count of a finished batch. */
void proxy_wire_batch_finish(void *buf, uint32_t count);
/** Decode and check a HELLO. */
int proxy_wire_decode_hello(const void *msg, size_t len, struct pxm_hello *out, const char **why);
/** Decode and check a REQ (out->data points into @p msg). */
int proxy_wire_decode_req(const void *msg, size_t len, struct pxm_req *out, const char **why);
/** Decode and check a REP (out->data points into @p msg). */
int proxy_wire_decode_rep(const void *msg, size_t len, struct pxm_rep *out, const char **why);
/** Decode and check a VOLS header; its entries are read with proxy_wire_vol_get(). */
int proxy_wire_decode_vols(const void *msg, size_t len, struct pxm_vols *out, const char **why);
/** Entry @p i of a decoded list, checked (name, flags, blocks). */
int proxy_wire_vol_get(const struct pxm_vols *v, unsigned i, struct px_vol *out, const char **why);
/** Extent @p i of a decoded BLOCK_STATUS reply. */
void proxy_wire_ext_get(const struct pxm_rep *r, unsigned i, uint64_t *length, uint32_t *flags);
/** Encode a HELLO into @p buf; @return its length. */
size_t proxy_wire_encode_hello(void *buf, const struct pxm_hello *m);
/** Encode a REQ (and its inline WRITE @p data) into @p buf; @return its length. */
size_t proxy_wire_encode_req(void *buf, const struct pxm_req *m, const void *data);
/** Encode the fixed part of a REQ only (inline WRITE data, if any, follows it). */
size_t proxy_wire_encode_req_hdr(void *buf, const struct pxm_req *m);
/** Encode a REP header; the caller appends length data bytes or count extents. */
size_t proxy_wire_encode_rep(void *buf, const struct pxm_rep *m);
/** Write extent @p i after a REP header in @p buf. */
void proxy_wire_put_ext(void *buf, unsigned i, uint64_t length, uint32_t flags);
/** Encode a VOLS header for @p count entries; @return the whole message length. */
size_t proxy_wire_encode_vols_hdr(void *buf, uint16_t flags, uint32_t count, uint32_t gen,
				  uint64_t server_session);
/** Write entry @p i after a VOLS header in @p buf. */
void proxy_wire_put_vol(void *buf, unsigned i, const struct px_vol *v);
/** A volume name we accept: [A-Za-z0-9._-], 1..max-1 chars. */
bool proxy_wire_name_ok(const char *s, size_t max);

/* pmem.c: first-fit allocator of port memory units */
/** Manage @p bytes of port memory; 0 or -ENOMEM. */
int proxy_pmem_init(struct pmem *m, size_t bytes);
/** Free the allocator's map. */
void proxy_pmem_fini(struct pmem *m);
/** @return the byte offset of @p bytes of free memory, or -1. */
int64_t proxy_pmem_alloc(struct pmem *m, size_t bytes);
/** Give back what proxy_pmem_alloc(@p bytes) returned at @p off. */
void proxy_pmem_free(struct pmem *m, int64_t off, size_t bytes);
/** Units proxy_pmem_alloc(@p bytes) takes. */
unsigned proxy_pmem_units(size_t bytes);
/** Map @p n ports of @p size bytes (one reference); 0 or -errno. */
int proxy_pmem_maps_create(unsigned n, size_t size, struct pmaps **out);
/** Drop a reference; the last one unmaps. */
void proxy_pmem_maps_put(struct pmaps *m);

/* port.c: the one way out to the partner, shared by both sides */
/** Queue a message on @p p for the end of this loop turn; 0, or -EAGAIN (send_ready follows). */
int proxy_port_send(struct pxport *p, const void *msg, size_t len);
/** proxy_port_send() of @p msg followed by @p dlen bytes of @p data, copied once. */
int proxy_port_send2(struct pxport *p, const void *msg, size_t len, const void *data, size_t dlen);
/** Send what @p p has batched now; 0, -EAGAIN (port blocked) or the CCM's error. */
int proxy_port_flush(struct pxport *p);
/** Forget what @p p has batched (its session ended). */
void proxy_port_drop_batch(struct pxport *p);
/** px->flush_timer's callback: flush every port with records. */
void proxy_port_flush_all(struct loop_timer *t);
/** Count a refused partner message and log it (one line a second at most). */
void proxy_log_bad(struct proxy *px, bool from_server, const char *what, const char *why);

/* fw_request.c: commands and requests (pools, queues, completion) */
/** A zeroed command from the pool, or NULL. */
struct pcmd *proxy_fw_cmd_get(struct proxy *px);
/** Give a command back to the pool. */
void proxy_fw_cmd_put(struct proxy *px, struct pcmd *c);
/** A zeroed request (no slot) from the pool, or NULL. */
struct preq *proxy_fw_req_get(struct proxy *px);
/** Give a request back to the pool. */
void proxy_fw_req_put(struct proxy *px, struct preq *r);
/** Append @p r to queue @p q. */
void proxy_fw_q_append(struct list *q, struct preq *r);
/** First request of queue @p q, taken off it, or NULL. */
struct preq *proxy_fw_q_pop(struct list *q);
/** Give back @p r's queue place, sequence number and slot (it is unsent again). */
void proxy_fw_req_release(struct proxy *px, struct preq *r);
/** Request @p r is over (answered with @p res, or given up): frees all it
 * holds, but for a PR_HELD one's port and slot (until the release). */
void proxy_fw_req_finish(struct proxy *px, struct preq *r, int res);
/** Teardown: requests still PR_HELD and slots still lent keep only the
 * memory (px->maps). */
void proxy_fw_held_orphan(struct proxy *px);
/** Whether @p bytes more may be held or lent on @p p: held and lent slots
 * stay under half of a port's forwarder memory (the rest for requests in
 * flight, whatever clients slow to read or to send do). */
bool proxy_fw_hold_room(const struct pxport *p, size_t bytes);
/** A request no longer sends from lent slot @p s: freed if the NBD server
 * released it too. */
void proxy_fw_lent_put(struct pslot *s);
/** The NBD server released lent slot @p s: freed if no request sends from it. */
void proxy_fw_lent_return(struct pslot *s);
/** Take command @p c off the wire (unsent requests dropped, sent ones abandoned). */
void proxy_fw_cmd_detach(struct proxy *px, struct pcmd *c);
/** Fail command @p c with @p err now. */
void proxy_fw_cmd_fail(struct proxy *px, struct pcmd *c, int err);
/** Arm the deadline timer for the oldest command (or cancel it). */
void proxy_fw_arm_deadline(struct proxy *px);

/* fw_send.c: sending requests; port and session events */
/** Send what can be sent: resends on ports back up, then new requests in order. */
void proxy_fw_pump(struct proxy *px);
/** A port came up: say hello if the session is. */
void proxy_fw_port_up(struct pxport *p);
/** A port went down: what was sent on it is queued to be sent again. */
void proxy_fw_port_down(struct pxport *p);
/** The partner's proxy is there (@p generation: its boot); hello on ports up. */
void proxy_fw_partner_ready(struct proxy *px, uint64_t generation);

/* fw_reply.c: the partner's replies */
/** Handle a REP message. */
void proxy_fw_on_rep(struct pxport *p, const void *msg, size_t len);
/** px->retry_timer's callback: parked requests back on the wait queue. */
void proxy_fw_retry_fire(struct loop_timer *t);
/** Park @p r (not sent, no sequence number) until the retry timer. */
void proxy_fw_park(struct proxy *px, struct preq *r);

/* fw_volumes.c: the partner's volumes, takeover routes, local ios */
/** The partner volume named @p name, or NULL. */
struct pvol *proxy_fw_vol_find(struct proxy *px, const char *name);
/** Handle a VOLS message. */
void proxy_fw_on_vols(struct pxport *p, const void *msg, size_t len);
/** Submit @p nio to the local backend of a volume routed locally. */
void proxy_fw_local_submit(struct proxy *px, struct pvol *v, struct nbd_io *nio);
/** Takeover: serve @p name locally through @p ops (proxy_route_local()). */
int proxy_fw_route_local(struct proxy *px, const char *name, const struct nbd_backend_ops *ops,
			 void *ctx);
/** Giveback: forward @p name to the partner again (proxy_route_partner()). */
int proxy_fw_route_partner(struct proxy *px, const char *name);
/** Free every partner volume (teardown). */
void proxy_fw_vols_free(struct proxy *px);

/* forward.c: the proxy listener's backend */
/** The backend ops of the proxy listener (ctx: the proxy). */
extern const struct nbd_backend_ops proxy_fw_ops;
/** Set up the forwarding side's lists and timers. */
void proxy_fw_init(struct proxy *px);
/** Fail every command with @p err and stop the timers. */
void proxy_fw_fail_all(struct proxy *px, int err);
/** Free the forwarding side (after proxy_fw_fail_all()). */
void proxy_fw_free(struct proxy *px);

/* serve.c: the serving side */
/** Set up the serving side (serving, lists). */
int proxy_srv_init(struct proxy *px);
/** A port came up: no hello from the forwarder yet. */
void proxy_srv_port_up(struct pxport *p);
/** A port went down: unstarted requests forgotten, pending replies dropped. */
void proxy_srv_port_down(struct pxport *p);
/** Handle a HELLO message (a forwarder session begins on the port). */
void proxy_srv_on_hello(struct pxport *p, const void *msg, size_t len);
/** Handle a REQ message. */
void proxy_srv_on_req(struct pxport *p, const void *msg, size_t len);
/** The channel has room again: send what was owed on @p p. */
void proxy_srv_flush(struct pxport *p);
/** Re-read the local volumes; send the list on @p only, or the first helloed port (NULL). */
void proxy_srv_refresh_vols(struct proxy *px, struct pxport *only);
/** proxy_set_serving(). */
void proxy_srv_set_serving(struct proxy *px, bool serving);
/** Free the serving side. */
void proxy_srv_free(struct proxy *px);

#endif
