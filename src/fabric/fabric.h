/**
 * @file fabric.h
 * One interconnect link: a libfabric fabric + domain + endpoint bound at a
 * predefined local address, talking to one peer address, with one-sided
 * RMA, write-with-immediate doorbells and two-sided messages.
 *
 * Completions are driven from the node's reactor: the link registers its
 * completion queue's wait descriptor with the loop. Nothing here knows of
 * storage or of the cluster protocol. A link never trusts the peer: every
 * remote access is checked against the peer region's advertised size before
 * it is posted, and an operation that fails with the peer's connection
 * broken is reported, after which the link re-arms its address so that a
 * later operation can connect again.
 */
#ifndef DUET_FABRIC_FABRIC_H
#define DUET_FABRIC_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct fab_link;
struct fab_mr;

struct fab_link_opts {
	const char *name;     /* "ic0", for logs */
	const char *provider; /* "tcp;ofi_rxm" */
	const char *local;    /* "host:port" this link binds */
	const char *peer;     /* "host:port" of the partner's link */
	unsigned rx_depth;    /* receive buffers posted for messages */
	size_t max_msg;	      /* largest two-sided message */
};

/** A region the peer advertised: its key and size (offsets are relative). */
struct fab_remote {
	uint64_t key;
	uint64_t size;
};

struct fab_op;
typedef void (*fab_op_cb)(struct fab_op *op, int status);

/** An operation in flight, embedded in the caller's object. status: 0 or -errno. */
struct fab_op {
	fab_op_cb done;
	void *arg;
	/* Private to the fabric. */
	struct fab_link *link;
	uint64_t gen;
	struct fab_op *next;
};

/** Events the link raises on the reactor thread. */
struct fab_link_events {
	/** A two-sided message arrived (valid only during the call). */
	void (*on_msg)(void *arg, const void *msg, size_t len);
	/** The peer wrote into one of our regions with immediate data. */
	void (*on_doorbell)(void *arg, uint64_t imm);
	void *arg;
};

int fab_link_open(struct loop *loop, const struct fab_link_opts *opts,
		  const struct fab_link_events *ev, struct fab_link **out);
/** Close the link; in-flight operations complete with -ECANCELED first. */
void fab_link_close(struct fab_link *link);
const char *fab_link_name(const struct fab_link *link);

/** Register @p len bytes at @p buf for remote read and/or write under @p key. */
#define FAB_REMOTE_READ	 (1u << 0)
#define FAB_REMOTE_WRITE (1u << 1)
int fab_mr_reg(struct fab_link *link, void *buf, size_t len, uint64_t key, unsigned access,
	       struct fab_mr **out);
void fab_mr_close(struct fab_mr *mr);

/** Flags for writes. */
#define FAB_DELIVERY_COMPLETE (1u << 0) /* done only once in the peer's memory */

int fab_read(struct fab_link *link, void *local, size_t len, const struct fab_remote *rem,
	     uint64_t offset, struct fab_op *op);
int fab_write(struct fab_link *link, const void *local, size_t len, const struct fab_remote *rem,
	      uint64_t offset, unsigned flags, struct fab_op *op);
/** Write with 64 bits of immediate data, raised as on_doorbell at the peer. */
int fab_writedata(struct fab_link *link, const void *local, size_t len,
		  const struct fab_remote *rem, uint64_t offset, uint64_t imm, unsigned flags,
		  struct fab_op *op);
/** Send a two-sided message of at most opts.max_msg bytes (copied). */
int fab_send(struct fab_link *link, const void *msg, size_t len, struct fab_op *op);

/**
 * Fail every operation in flight on @p link with -ETIMEDOUT now (the caller
 * decided the link is dead); their late completions, if any, are ignored.
 */
void fab_link_abort(struct fab_link *link);

struct fab_link_stats {
	uint64_t ops;
	uint64_t bytes;
	uint64_t errors;
	uint64_t inflight;
	uint64_t inflight_bytes;
};
void fab_link_get_stats(const struct fab_link *link, struct fab_link_stats *st);

#endif
