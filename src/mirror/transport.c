/* The transports that need no interconnect: null (mirror = local, or no
 * partner yet) and loopback (tests: the partner image is a buffer).
 *
 * Rule: as every transport, completions are never called inline from
 * write(), and none follows detach(). The loopback copies a write's bytes
 * only when it completes, as a one-sided RDMA write lands, so a test can
 * hold, reorder or fail completions (mirror_int.h, "transport.c"). The CCM
 * transport lives in src/node/mirror_ccm.c. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/loop.h"

static int null_write(void *ctx, uint64_t off, const void *src, uint64_t len, mirror_xfer_cb cb,
		      void *cb_arg)
{
	(void)ctx;
	(void)off;
	(void)src;
	(void)len;
	(void)cb;
	(void)cb_arg;
	return -ENOTCONN;
}

static const struct mirror_transport_ops null_ops = {
    .name = "null",
    .write = null_write,
};

const struct mirror_transport_ops *mirror_null_transport(void)
{
	return &null_ops;
}

struct lb_op {
	uint64_t off, len;
	const void *src;
	mirror_xfer_cb cb;
	void *cb_arg;
	int result;
};

struct mirror_loopback {
	struct loop *loop;
	uint8_t *image;
	uint64_t size;
	struct lb_op *ops; /* pending, in issue order */
	unsigned n, cap;
	bool hold;
	unsigned fail_next;
	bool attached;
	struct loop_task task;
	uint64_t writes, bytes;
};

static void lb_deliver_all(void *arg);

int mirror_loopback_create(struct loop *loop, void *image, uint64_t size,
			   struct mirror_loopback **out)
{
	struct mirror_loopback *lb = calloc(1, sizeof(*lb));

	if (!lb)
		return -ENOMEM;
	lb->loop = loop;
	lb->image = image;
	lb->size = size;
	loop_task_init(&lb->task, lb_deliver_all, lb);
	*out = lb;
	return 0;
}

void mirror_loopback_destroy(struct mirror_loopback *lb)
{
	if (!lb)
		return;
	/* A queued task would run on freed memory: run the loop first. */
	if (lb->task.queued)
		LOG_ERROR("loopback destroyed with its task queued");
	free(lb->ops);
	free(lb);
}

static int lb_attach(void *ctx, void *base, uint64_t size)
{
	struct mirror_loopback *lb = ctx;

	(void)base;
	if (size > lb->size)
		return -EINVAL;
	lb->attached = true;
	return 0;
}

static void lb_detach(void *ctx)
{
	struct mirror_loopback *lb = ctx;

	lb->n = 0; /* dropped: no callback after detach */
	lb->attached = false;
}

static int lb_write(void *ctx, uint64_t off, const void *src, uint64_t len, mirror_xfer_cb cb,
		    void *cb_arg)
{
	struct mirror_loopback *lb = ctx;

	if (off + len > lb->size || off + len < off)
		return -EINVAL;
	if (lb->n == lb->cap) {
		unsigned cap = lb->cap ? lb->cap * 2 : 64;
		struct lb_op *ops = realloc(lb->ops, cap * sizeof(*ops));
		if (!ops)
			return -ENOMEM;
		lb->ops = ops;
		lb->cap = cap;
	}
	lb->ops[lb->n++] = (struct lb_op){.off = off,
					  .len = len,
					  .src = src,
					  .cb = cb,
					  .cb_arg = cb_arg,
					  .result = lb->fail_next ? -EIO : 0};
	if (lb->fail_next)
		lb->fail_next--;
	lb->writes++;
	lb->bytes += len;
	if (!lb->hold)
		loop_post(lb->loop, &lb->task);
	return 0;
}

void mirror_loopback_complete(struct mirror_loopback *lb, unsigned i, int result)
{
	struct lb_op op;

	if (i >= lb->n)
		return;
	op = lb->ops[i];
	memmove(&lb->ops[i], &lb->ops[i + 1], (lb->n - i - 1) * sizeof(*lb->ops));
	lb->n--;
	if (result == 0)
		result = op.result;
	/* The bytes land when the write completes, as with RDMA: a write
	 * still pending has not changed the image. */
	if (result == 0)
		memcpy(lb->image + op.off, op.src, op.len);
	op.cb(op.cb_arg, result);
}

static void lb_deliver_all(void *arg)
{
	struct mirror_loopback *lb = arg;

	while (lb->n && !lb->hold)
		mirror_loopback_complete(lb, 0, 0);
}

void mirror_loopback_hold(struct mirror_loopback *lb, bool hold)
{
	lb->hold = hold;
	if (!hold && lb->n)
		loop_post(lb->loop, &lb->task);
}

unsigned mirror_loopback_pending(const struct mirror_loopback *lb)
{
	return lb->n;
}

void mirror_loopback_fail_next(struct mirror_loopback *lb, unsigned n)
{
	lb->fail_next = n;
}

void mirror_loopback_counts(const struct mirror_loopback *lb, uint64_t *writes, uint64_t *bytes)
{
	if (writes)
		*writes = lb->writes;
	if (bytes)
		*bytes = lb->bytes;
}

static const struct mirror_transport_ops lb_ops = {
    .name = "loopback",
    .attach = lb_attach,
    .detach = lb_detach,
    .write = lb_write,
};

const struct mirror_transport_ops *mirror_loopback_ops(void)
{
	return &lb_ops;
}
