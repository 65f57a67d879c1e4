/* The mirror's transport over the CCM: one client "mirror" with one port.
 *
 * This node's port memory is its image of the partner's log (a MAP_SHARED
 * file, so a crash of this process does not lose what the partner wrote
 * there); the partner's port memory is its image of ours. A transport
 * write copies [off, off + len) of the local log to the same offsets of the
 * partner's memory with one RDMA write that completes once delivered.
 *
 * Operations are pooled (the mirror keeps at most its window of writes,
 * header writes included, in flight). The CCM completes every accepted
 * write exactly once and never from inside ccm_port_write(), so the
 * mirror's callback runs from the loop, never inline; writes posted before
 * a session ended complete with -ECONNRESET, which the mirror ignores
 * (they belong to an older epoch). */
#define LOG_MODULE "mirror"
#include "node/node_int.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ccm/ccm.h"
#include "common/log.h"
#include "common/util.h"
#include "mirror/mirror.h"

#define MC_OPS 32 /* >= the mirror's window (16) plus its header write */

struct mc_op {
	struct ccm_op op;
	struct node_mirror_ccm *mc;
	mirror_xfer_cb cb;
	void *cb_arg;
	struct mc_op *next_free;
};

enum mc_state { MC_DOWN = 0, MC_UP, MC_REFUSED };

struct node_mirror_ccm {
	struct loop *loop;
	struct ccm *ccm;
	struct mirror *m;
	struct ccm_client *client;
	struct ccm_port *port;
	struct mirror_image_map image;	   /* the partner's log, as it writes it here */
	struct mirror_image_stamp at_open; /* its header as an earlier run left it */
	char image_path[PATH_MAX];
	bool noted; /* the boot note says this run saw the image current */
	void *port_buf[1];
	uint64_t log_size; /* of this node's log: the partner's memory must hold it */
	bool attached;	   /* callbacks go to the mirror */
	bool held;	   /* node_mirror_ccm_hold: stay down */
	enum mc_state st;
	char reason[192];
	struct mc_op ops[MC_OPS];
	struct mc_op *free_ops;
	unsigned inflight;
};

static void set_reason(struct node_mirror_ccm *mc, enum mc_state st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_reason(struct node_mirror_ccm *mc, enum mc_state st, const char *fmt, ...)
{
	va_list ap;

	mc->st = st;
	va_start(ap, fmt);
	vsnprintf(mc->reason, sizeof(mc->reason), fmt, ap);
	va_end(ap);
}

/* Mirror while the port is up and the partner's memory can hold the whole
 * log; refuse (and stay degraded) when it cannot. */
static void mc_eval(struct node_mirror_ccm *mc)
{
	uint64_t remote;

	if (!mc->attached || mc->held || mc->st != MC_DOWN || !mc->port ||
	    !ccm_port_is_up(mc->port))
		return;
	remote = ccm_port_remote_size(mc->port);
	if (remote < mc->log_size) {
		set_reason(mc, MC_REFUSED,
			   "the partner's image of this node's log is %llu bytes, smaller than "
			   "the log (%llu): set the same [mirror] log_size on both nodes",
			   (unsigned long long)remote, (unsigned long long)mc->log_size);
		LOG_ERROR("not mirroring: %s", mc->reason);
		return;
	}
	set_reason(mc, MC_UP, "mirroring into the partner's image");
	mirror_transport_up(mc->m);
}

static void mc_down(struct node_mirror_ccm *mc, const char *why)
{
	bool was_up = mc->st == MC_UP;

	set_reason(mc, MC_DOWN, "%s", why);
	if (was_up && mc->attached)
		mirror_transport_down(mc->m, why);
}

static void cb_partner_ready(struct ccm_client *c, const struct ccm_partner_info *pi, void *arg)
{
	struct node_mirror_ccm *mc = arg;

	(void)c;
	if (!pi->client_present || pi->ports < 1) {
		/* Its mirror registers once its log is replayed: port_up then. */
		set_reason(mc, MC_DOWN,
			   "partner %s has no mirror: still starting, or its [mirror] mirror is "
			   "off or local",
			   pi->node);
		LOG_INFO("%s", mc->reason);
		return;
	}
	mc_eval(mc);
}

static void cb_terminating(struct ccm_client *c, enum ccm_term_reason why, void *arg)
{
	struct node_mirror_ccm *mc = arg;
	char buf[96];

	(void)c;
	snprintf(buf, sizeof(buf), "partner session ended (%s)", ccm_term_reason_str(why));
	mc_down(mc, buf);
}

static void cb_port_up(struct ccm_port *p, void *arg)
{
	struct node_mirror_ccm *mc = arg;

	(void)p;
	/* Also when the partner's mirror registers during a session (it
	 * starts after its log is replayed): no partner_ready follows then. */
	if (mc->st == MC_REFUSED)
		mc->st = MC_DOWN;
	mc_eval(mc);
}

static void cb_port_down(struct ccm_port *p, void *arg)
{
	struct node_mirror_ccm *mc = arg;

	(void)p;
	mc_down(mc, "the partner's mirror port went down");
}

static const struct ccm_client_ops client_ops = {
    .partner_ready = cb_partner_ready,
    .terminating = cb_terminating,
    .port_up = cb_port_up,
    .port_down = cb_port_down,
};

/* ---- transport ops ---- */

static int tr_attach(void *ctx, void *base, uint64_t size)
{
	struct node_mirror_ccm *mc = ctx;

	(void)base; /* writes name their source */
	mc->log_size = size;
	mc->attached = true;
	return 0;
}

static void tr_detach(void *ctx)
{
	node_mirror_ccm_stop(ctx);
}

static void op_done(struct ccm_op *op, int status)
{
	struct mc_op *o = container_of(op, struct mc_op, op);
	struct node_mirror_ccm *mc = o->mc;
	mirror_xfer_cb cb = o->cb;
	void *cb_arg = o->cb_arg;

	o->next_free = mc->free_ops;
	mc->free_ops = o;
	mc->inflight--;
	if (mc->attached)
		cb(cb_arg, status);
}

static int tr_write(void *ctx, uint64_t off, const void *src, uint64_t len, mirror_xfer_cb cb,
		    void *cb_arg)
{
	struct node_mirror_ccm *mc = ctx;
	struct mc_op *o = mc->free_ops;
	int rc;

	if (mc->st != MC_UP)
		return -ENOTCONN;
	if (!o) {
		LOG_ERROR("more than %d mirror writes in flight", MC_OPS);
		return -ENOBUFS;
	}
	mc->free_ops = o->next_free;
	o->op.done = op_done;
	o->op.arg = o;
	o->cb = cb;
	o->cb_arg = cb_arg;
	rc = ccm_port_write(mc->port, &o->op, src, (size_t)len, off, CCM_WRITE_DELIVERED);
	if (rc < 0) {
		o->next_free = mc->free_ops;
		mc->free_ops = o;
		return rc;
	}
	mc->inflight++;
	return 0;
}

static const struct mirror_transport_ops transport_ops = {
    .name = "ccm",
    .attach = tr_attach,
    .detach = tr_detach,
    .write = tr_write,
};

/* ---- life cycle ---- */

int node_mirror_ccm_create(struct loop *loop, struct ccm *ccm, struct mirror *m,
			   const char *image_path, uint64_t image_size,
			   struct node_mirror_ccm **out)
{
	struct node_mirror_ccm *mc = calloc(1, sizeof(*mc));
	struct ccm_client_spec spec;
	int rc;

	if (!mc)
		return -ENOMEM;
	mc->loop = loop;
	mc->ccm = ccm;
	mc->m = m;
	mc->image.fd = -1;
	set_reason(mc, MC_DOWN, "no partner session");
	for (unsigned i = 0; i < MC_OPS; i++) {
		mc->ops[i].mc = mc;
		mc->ops[i].next_free = mc->free_ops;
		mc->free_ops = &mc->ops[i];
	}
	/* The file keeps what the partner wrote across a crash of this
	 * process: a takeover replays it. */
	rc = mirror_image_map(image_path, image_size, true, &mc->image);
	if (rc < 0)
		goto err;
	/* Before the port exists, so before the partner can write: a complete
	 * flag in this header is an earlier run's, never believed. */
	mirror_image_stamp_take(mc->image.base, mc->image.size, &mc->at_open);
	snprintf(mc->image_path, sizeof(mc->image_path), "%s", image_path);
	/* Unless an earlier run saw it current in this boot: a crash of the
	 * process keeps the pages (a takeover resumed after a restart of
	 * ours replays them); a power loss changes the boot id. */
	mc->at_open.this_boot =
	    mc->at_open.present && mirror_image_boot_noted(image_path, &mc->image);
	if (mc->at_open.this_boot)
		LOG_INFO("mirror: %s holds log %016llx gen %llu, seen in sync by an earlier run "
			 "in this boot: believed as it is",
			 image_path, (unsigned long long)mc->at_open.log_id,
			 (unsigned long long)mc->at_open.gen);
	else if (mc->at_open.present)
		LOG_INFO("mirror: %s holds log %016llx gen %llu of an earlier run: not replayed "
			 "unless the partner marks it in sync again",
			 image_path, (unsigned long long)mc->at_open.log_id,
			 (unsigned long long)mc->at_open.gen);
	mc->port_buf[0] = mc->image.base;
	rc = mirror_attach_transport(m, &transport_ops, mc);
	if (rc < 0) {
		LOG_ERROR("cannot attach the CCM transport: %s", strerror(-rc));
		goto err;
	}
	spec = (struct ccm_client_spec){
	    .name = "mirror",
	    .n_ports = 1,
	    .port_mem = (size_t)image_size,
	    .port_buf = mc->port_buf,
	    .flags = CCM_CLIENT_HEAVY,
	    .ops = &client_ops,
	    .arg = mc,
	};
	rc = ccm_client_register(ccm, &spec, &mc->client);
	if (rc < 0) {
		LOG_ERROR("cannot register the mirror with the CCM: %s", strerror(-rc));
		mirror_attach_transport(m, NULL, NULL);
		goto err;
	}
	mc->port = ccm_client_port(mc->client, 0);
	LOG_INFO("mirror: image of the partner's log in %s (%llu bytes)", image_path,
		 (unsigned long long)image_size);
	*out = mc;
	return 0;
err:
	mc->attached = false;
	if (mc->image.base)
		mirror_image_unmap(&mc->image);
	free(mc);
	return rc;
}

void node_mirror_ccm_stop(struct node_mirror_ccm *mc)
{
	if (!mc)
		return;
	/* Writes failed from inside the unregister, or still posted and
	 * completing later, find the mirror detached. */
	mc->attached = false;
	if (mc->client) {
		ccm_client_unregister(mc->client);
		mc->client = NULL;
		mc->port = NULL;
	}
	if (mc->st == MC_UP)
		set_reason(mc, MC_DOWN, "stopped");
}

void node_mirror_ccm_destroy(struct node_mirror_ccm *mc)
{
	if (!mc)
		return;
	node_mirror_ccm_stop(mc);
	if (mc->inflight) {
		/* The CCM still holds some of our operations: leave them their
		 * memory rather than free it under them. */
		LOG_ERROR("%u mirror writes still in flight at exit", mc->inflight);
		return;
	}
	mirror_image_unmap(&mc->image);
	free(mc);
}

void node_mirror_ccm_hold(struct node_mirror_ccm *mc, bool hold, const char *why)
{
	if (mc->held == hold)
		return;
	mc->held = hold;
	if (hold) {
		mc_down(mc, why);
		LOG_INFO("not mirroring: %s", why);
		return;
	}
	if (mc->st == MC_REFUSED)
		mc->st = MC_DOWN;
	mc_eval(mc);
}

enum mirror_image_trust node_mirror_ccm_partner_copy(struct node_mirror_ccm *mc, bool scan,
						     char *why, size_t len)
{
	enum mirror_image_trust t;
	int rc;

	if (!mc || !mc->image.base) {
		if (why)
			snprintf(why, len, "no image of the partner's log is mapped");
		return MIRROR_IMAGE_NOTHING;
	}
	t = mirror_image_judge(mc->image.base, mc->image.size, &mc->at_open, scan, why, len);
	if (t == MIRROR_IMAGE_CURRENT && !mc->noted) {
		/* Once per run, the first time: the next process believes the
		 * image if the host has not restarted since. */
		mc->noted = true;
		rc = mirror_image_boot_note(mc->image_path, &mc->image);
		if (rc < 0)
			LOG_WARN("mirror: cannot note %s%s (%s): after a restart of this process "
				 "the image counts as stale until the partner resyncs",
				 mc->image_path, MIRROR_IMAGE_NOTE_SUFFIX, strerror(-rc));
	}
	return t;
}

const char *node_mirror_ccm_state(const struct node_mirror_ccm *mc, const char **reason)
{
	*reason = mc->reason;
	switch (mc->st) {
	case MC_UP:
		return "up";
	case MC_REFUSED:
		return "refused";
	case MC_DOWN:
		break;
	}
	return "down";
}
