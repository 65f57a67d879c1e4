/* Internals of the proxy shared by its source files (and its unit tests).
 * Not part of the public API. */
#ifndef DUET_PROXY_PRIV_H
#define DUET_PROXY_PRIV_H

#include <stdbool.h>
#include <stdint.h>

#include "ccm/ccm.h"
#include "common/loop.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"
#include "proxy/wire.h"

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

/* ---- pmem.c: first-fit allocator of port memory units ---- */
struct pmem {
	uint64_t *map; /* bit set: unit in use */
	unsigned units;
	unsigned used;
};

int pmem_init(struct pmem *m, size_t bytes);
void pmem_fini(struct pmem *m);
/* @return the byte offset of @p bytes of free memory, or -1. */
int64_t pmem_alloc(struct pmem *m, size_t bytes);
void pmem_free(struct pmem *m, int64_t off, size_t bytes);

/* ---- forwarding side ---- */

/* A partner volume as the forwarder knows it (kept across sessions). */
struct pvol {
	struct pvol *next;
	struct proxy *px;
	char name[PX_NAME_MAX];
	uint32_t id;	 /* the partner's id for it ... */
	bool id_valid;	 /* ... valid for the partner instance we last heard */
	bool listed;	 /* in the partner's last list */
	bool new_listed; /* in the list being received */
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
struct lio;

struct pcmd {
	struct pcmd *prev, *next; /* px->cmds, in submission order */
	struct nbd_io *nio;
	struct pvol *vol;
	struct preq *reqs; /* its requests, linked by cnext */
	uint64_t start_ns;
	unsigned parts; /* requests not yet answered */
	int error;
};

enum preq_state {
	PR_FREE = 0,
	PR_WAIT,   /* on px->waitq: no port, no sequence number yet */
	PR_SENT,   /* sent on its port in this session */
	PR_RESEND, /* on its port's resend queue */
	PR_PARKED, /* refused by the partner (not serving): on px->parked until
		      the retry timer puts it back on px->waitq */
};

/* One forwarded request (a command, or a chunk of a big one). */
struct preq {
	struct pcmd *cmd; /* NULL once abandoned (its command failed) */
	struct preq *cnext;
	struct preq *qnext;
	struct pxport *port; /* bound at the first send, for good */
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
	bool queued; /* on a queue (waitq, parked or a resend queue) */
};

/* ---- serving side ---- */

/* A local volume served to the partner. */
struct svol {
	struct svol *next;
	uint32_t id;
	char name[PX_NAME_MAX];
	void *handle;
	struct nbd_export_info info;
	unsigned inflight;
	bool gone; /* no longer listed: closed once idle */
	bool mark; /* seen in the list being built */
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
	struct sop *next;
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
	/* Records of this loop turn, sent as one message at its end. */
	uint8_t *batch;
	size_t batch_len;
	unsigned batch_n;
	size_t first_len; /* of the first record (sent bare when alone) */
	/* forwarding */
	enum { FP_DOWN = 0, FP_HELLO, FP_READY } fstate;
	bool hello_pending;
	struct pmem fmem;
	struct preq *rq_head, *rq_tail;
	unsigned outstanding;
	/* serving */
	bool helloed;
	uint64_t fsession;
	uint64_t data_size; /* forwarder's data area, as it said and we can reach */
	uint64_t epoch;
	struct pmem smem;
	struct sop *bufq_head, *bufq_tail;
	struct sop *repq_head, *repq_tail;
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
	void **mem;		       /* the ports' memory, ours (it outlives the CCM client) */
	bool stopped;		       /* proxy_stop(): off the CCM */
	bool dead;		       /* destroyed with served requests in flight */

	/* forwarding */
	const struct nbd_backend_ops *self_ops;
	struct pvol *vols;
	uint64_t vols_server_session;
	bool vols_receiving;
	struct pcmd *cmds_head, *cmds_tail;
	struct preq *waitq_head, *waitq_tail;
	struct preq *parked_head, *parked_tail; /* refused, in submission order */
	struct loop_timer retry_timer;		/* puts parked requests back on waitq */
	uint64_t next_order;
	uint64_t next_seq, oldest_seq;
	struct preq *outstanding[PX_TABLE];
	struct loop_timer deadline;
	struct pcmd *free_cmds;
	struct preq *free_reqs;
	struct lio *free_lios;
	uint64_t expired_logged_ns;
	uint64_t refused_logged_ns;

	/* serving */
	const struct nbd_backend_ops *lops;
	void *lctx;
	struct svol *svols;
	uint32_t next_vol_id;
	uint64_t table_session;
	uint64_t epoch_ctr;
	struct sent table[PX_TABLE];
	struct sop *free_sops;
	void *free_bufs; /* PX_POOL_BUF buffers, linked through their first word */
	unsigned bufs_allocated;
	uint64_t bad_logged_ns;
	/* proxy_set_serving(): false while this node is fenced. fence_gen
	 * counts the times it went false: a request received under an older
	 * one was fenced while in progress. */
	bool serving;
	uint64_t fence_gen;

	struct proxy_stats st;
};

/* proxy.c */
/* Queue a message for the port: it leaves with the others of this loop
 * turn. @return 0, or -EAGAIN (no room now: send_ready follows). */
int px_send(struct pxport *p, const void *msg, size_t len);
void px_log_bad(struct proxy *px, bool from_server, const char *what, const char *why);

/* forward.c */
extern const struct nbd_backend_ops px_forward_ops;
void fw_init(struct proxy *px);
void fw_port_up(struct pxport *p);
void fw_port_down(struct pxport *p);
void fw_partner_ready(struct proxy *px, uint64_t generation);
void fw_on_vols(struct pxport *p, const void *msg, size_t len);
void fw_on_rep(struct pxport *p, const void *msg, size_t len);
void fw_pump(struct proxy *px);
void fw_fail_all(struct proxy *px, int err);
void fw_free(struct proxy *px);
int fw_route_local(struct proxy *px, const char *name, const struct nbd_backend_ops *ops,
		   void *ctx);
int fw_route_partner(struct proxy *px, const char *name);

/* serve.c */
int srv_init(struct proxy *px);
void srv_port_up(struct pxport *p);
void srv_port_down(struct pxport *p);
void srv_on_hello(struct pxport *p, const void *msg, size_t len);
void srv_on_req(struct pxport *p, const void *msg, size_t len);
void srv_flush(struct pxport *p);
void srv_refresh_vols(struct proxy *px, struct pxport *only);
void srv_set_serving(struct proxy *px, bool serving);
void srv_free(struct proxy *px);

#endif
