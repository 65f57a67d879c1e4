/* Private to src/node: the node object and the pieces of duetd. */
#ifndef DUET_NODE_PRIV_H
#define DUET_NODE_PRIV_H

#include <limits.h>
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
struct proxy;
struct mirror;
struct mirror_ccm;
struct json_object;

struct node {
	struct duet_config cfg;
	struct loop *loop;
	struct ccm *ccm; /* NULL without [ic] links */
	struct store *store;
	struct backend *backend;
	struct nbd_server *nbd;
	struct mirror *mirror;	       /* the NVRAM log; NULL with [mirror] mirror = off */
	struct mirror_ccm *mirror_ccm; /* its transport to the partner; NULL without */
	char nvram_path[PATH_MAX];
	char partner_image_path[PATH_MAX];
	struct mirror_history { /* the last state changes, for status */
		uint8_t state;
		uint64_t at_ms; /* since the node started */
	} mirror_hist[16];
	unsigned mirror_hist_n;	      /* changes so far (the last 16 kept) */
	struct proxy *proxy;	      /* NULL without [nbd] proxy_listen or a CCM */
	struct nbd_server *proxy_nbd; /* the proxy listener */
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
/** The mirror's consistency point: fdatasync every volume written since the
 * last call, then @p done(@p arg, 0 or -errno). */
void backend_checkpoint(struct backend *b, void (*done)(void *arg, int result), void *arg);

/* nvram.c: the NVRAM log and its mirror, wired into the node. */
/** Open the log and replay it onto the shelf (before the listeners open). */
int nvram_open(struct node *n);
/** Start mirroring to the partner through the CCM (after nvram_open). */
int nvram_connect(struct node *n);
/** Shutdown, once no request is in flight: a last consistency point, then close. */
void nvram_close(struct node *n);
/** Writes held for the partner (mirror_down = suspend) fail now: shutting down. */
void nvram_release_held(struct node *n);
/** The "mirror" member of `duetctl status --json`. */
struct json_object *nvram_status_json(struct node *n);

/* mirror_ccm.c: the mirror's transport, a client "mirror" of the CCM with
 * one port backed by the partner's image file. */
/**
 * Register with @p ccm and attach to @p m: the port's memory (the image of
 * the partner's log, @p image_size bytes) is the file @p image_path.
 */
int mirror_ccm_create(struct loop *loop, struct ccm *ccm, struct mirror *m, const char *image_path,
		      uint64_t image_size, struct mirror_ccm **out);
/** Leave the CCM (no more callbacks into the mirror); call before mirror_close. */
void mirror_ccm_stop(struct mirror_ccm *mc);
/** Free; after ccm_destroy (writes still posted complete until then). */
void mirror_ccm_destroy(struct mirror_ccm *mc);
/** The transport's view, for status: "up", "down" or "refused", and why. */
const char *mirror_ccm_state(const struct mirror_ccm *mc, const char **reason);

/* control.c: the UNIX control socket that duetctl talks to. */
int control_create(struct node *n, const char *path, struct control **out);
void control_destroy(struct control *c);

/* commands.c: the control commands. */
node_cmd_fn commands_find(const char *name);

#endif
