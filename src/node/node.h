/**
 * @file node.h
 * duetd: one storage node. Owns the reactor and wires the modules together
 * in boot order: interconnect first, then storage, then the NBD listeners
 * and the control socket.
 */
#ifndef DUET_NODE_NODE_H
#define DUET_NODE_NODE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct node;
struct json_object;

/**
 * node_create's error (negated) for a start refused by what it found: the
 * node's files locked by another instance, a file that is not a live
 * daemon's socket at the control path, an unknown control group. One line
 * says why; duetd exits 2 (like a configuration error).
 */
#define NODE_EREFUSED ENOTUNIQ

/** Boot the node described by @p cfg (everything up to serving); 0, a
 * negative errno, or -NODE_EREFUSED. */
int node_create(const struct duet_config *cfg, struct node **out);
/** Serve until SIGINT/SIGTERM; @return 0 or a negative errno. */
int node_run(struct node *n);
/** Stop serving, drain in-flight I/O, close everything. */
void node_destroy(struct node *n);

/**
 * A control command handler: @p req is the request object, @p resp the
 * "result" object to fill. Return 0, or a negative errno with @p err set
 * to a message for the operator.
 */
typedef int (*node_cmd_fn)(struct node *n, struct json_object *req, struct json_object *resp,
			   char *err, size_t errlen);

#endif
