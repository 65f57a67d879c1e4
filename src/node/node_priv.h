/* Private to src/node: the node object and the pieces of duetd. */
#ifndef DUET_NODE_PRIV_H
#define DUET_NODE_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/loop.h"
#include "node/node.h"

struct store;
struct nbd_server;
struct backend;
struct control;
struct ccm;

struct node {
	struct duet_config cfg;
	struct loop *loop;
	struct ccm *ccm; /* NULL without [ic] links */
	struct store *store;
	struct backend *backend;
	struct nbd_server *nbd;
	struct control *control;
	int sig_fd;
	struct loop_io sig_io;
	uint64_t started_ns;
};

/* backend.c: NBD exports backed by the node's own shelf. */
int backend_create(struct node *n, struct backend **out);
void backend_destroy(struct backend *b);
const struct nbd_backend_ops *backend_ops(void);
/** I/O handed to the store and not yet completed. */
uint64_t backend_inflight(const struct backend *b);

/* control.c: the UNIX control socket that duetctl talks to. */
int control_create(struct node *n, const char *path, struct control **out);
void control_destroy(struct control *c);

/* commands.c: the control commands. */
node_cmd_fn commands_find(const char *name);

#endif
