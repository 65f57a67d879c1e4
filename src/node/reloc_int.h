/* Private to relocate.c (relocation, adoption, takeover hooks) and route.c
 * (the own listener's backend that sends each command to where its volume
 * is served): the relocation state both read. */
#ifndef DUET_NODE_RELOC_INT_H
#define DUET_NODE_RELOC_INT_H

#include "node/node_int.h"

#include "common/list.h"
#include "common/loop.h"
#include "mirror/mirror.h"
#include "nbd/nbd.h"
#include "store/store.h"

#define RELOC_POLL_NS (1 * NS_PER_MS) /* drain poll */
#define RECHECK_NS    (1 * NS_PER_S)  /* owner fields of volumes not served here */
#define NAME_MAX_LEN  64

enum reloc_phase { RP_IDLE, RP_DRAIN, RP_DURABLE, RP_DONE };

struct node_reloc {
	struct node *n;
	struct store *rstore;	   /* the partner's shelf, for volumes relocated here */
	struct node_datapath *rdp; /* their datapath (no log: write-through) */
	/* During a takeover: the own shelf's volumes relocated to the partner
	 * (the partner's now, served here while it is down), write-through. */
	struct node_datapath *tdp;
	uint64_t gen;	     /* ownership changes so far */
	struct list pending; /* struct route_wait */
	struct loop_timer retry;
	struct loop_timer recheck; /* adoption, also without a list change */
	/* The relocation in progress (one at a time). */
	enum reloc_phase phase;
	char name[NAME_MAX_LEN];
	struct node_datapath *from;
	struct loop_timer poll;
	struct mirror_flush mf;
	struct store_io fio;
	uint64_t start_ns;
	bool held; /* the test hold (DUET_TEST_RELOC_HOLD_MS) was taken */
	/* A volume move's cut-over (move.c): its step 4 instead of the owner
	 * field, and its end. */
	int (*cut)(struct node *n, const char *name);
	void (*ended)(struct node *n, int rc);
	/* The last volume relocated from here, until the partner lists it
	 * (at most the proxy's timeout): a client opening it meanwhile gets
	 * its size, and its commands wait for the partner, not "no export". */
	char gone_name[NAME_MAX_LEN];
	struct nbd_export_info gone_info;
	uint64_t gone_until_ns;
	uint64_t relocations; /* done from here */
	uint64_t adopted;     /* taken from the partner */
	int last_rc;
	char last[160];
};

/* route.c */
struct node_datapath *node_route_local_dp(struct node *n, const char *name);
void node_route_retry_fire(struct loop_timer *t);
void node_route_drop_waits(struct node_reloc *r, int err);

#endif
