/*
 * NBD transmission phase: check each request, hand it to the backend as a
 * struct nbd_io, and turn its completion into a simple reply or a
 * structured reply chunk (one chunk per reply, always flagged DONE: a
 * single OFFSET_DATA chunk for reads, which honours NBD_CMD_FLAG_DF).
 */
#define LOG_MODULE "nbd"
#include "nbd/nbd_int.h"
#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <string.h>

static const char *cmd_name(uint16_t type)
{
	static const char *const names[] = {"READ", "WRITE", "DISC",	     "FLUSH",
					    "TRIM", "CACHE", "WRITE_ZEROES", "BLOCK_STATUS"};

	return type < ARRAY_SIZE(names) ? names[type] : "UNKNOWN";
}

static void chunk_hdr(uint8_t *h, uint16_t type, uint64_t cookie, uint32_t len)
{
	put_be32(h, NBD_STRUCTURED_REPLY_MAGIC);
	put_be16(h + 4, NBD_REPLY_FLAG_DONE);
	put_be16(h + 6, type);
	put_be64(h + 8, cookie);
	put_be32(h + 16, len);
}

static void simple_hdr(struct nbd_xio *x)
{
	put_be32(x->hdr, NBD_SIMPLE_REPLY_MAGIC);
	put_be32(x->hdr + 4, x->error);
	put_be64(x->hdr + 8, x->io.cookie);
	x->hdr_len = NBD_SIMPLE_LEN;
}

/* A READ's data: where the backend left it (nbd_io.reply_buf, released
 * with the xio once sent), else the request's own buffer. */
static const void *read_data(const struct nbd_xio *x)
{
	return x->io.reply_buf ? x->io.reply_buf : x->mem;
}

/* Build the reply of a finished request and queue it. For BLOCK_STATUS,
 * x->data_len already holds the encoded descriptors' size. */
static void xio_finish(struct nbd_conn *c, struct nbd_xio *x)
{
	struct nbd_server *srv = c->srv;
	struct nbd_io *io = &x->io;
	uint8_t *h = x->hdr;

	if (x->error) {
		srv->st.errors++;
	} else if (io->type == NBD_CMD_READ) {
		srv->st.bytes_read += io->length;
	} else if (io->type == NBD_CMD_WRITE) {
		srv->st.bytes_written += io->length;
	}

	if (!c->structured) {
		simple_hdr(x);
		if (!x->error && io->type == NBD_CMD_READ && io->length) {
			x->data = read_data(x);
			x->data_len = (uint32_t)io->length;
		} else {
			x->data_len = 0;
		}
	} else if (x->error) {
		const char *msg = x->msg ? x->msg : nbd_error_text(x->error);
		uint32_t ml = (uint32_t)strlen(msg);
		chunk_hdr(h, NBD_REPLY_TYPE_ERROR, io->cookie, 6 + ml);
		put_be32(h + 20, x->error);
		put_be16(h + 24, (uint16_t)ml);
		x->hdr_len = NBD_CHUNK_LEN + 6;
		x->data = msg;
		x->data_len = ml;
	} else if (io->type == NBD_CMD_READ && io->length) {
		chunk_hdr(h, NBD_REPLY_TYPE_OFFSET_DATA, io->cookie, 8 + (uint32_t)io->length);
		put_be64(h + 20, io->offset);
		x->hdr_len = NBD_CHUNK_LEN + 8;
		x->data = read_data(x);
		x->data_len = (uint32_t)io->length;
	} else if (io->type == NBD_CMD_READ) {
		chunk_hdr(h, NBD_REPLY_TYPE_NONE, io->cookie, 0);
		x->hdr_len = NBD_CHUNK_LEN;
		x->data_len = 0;
	} else if (io->type == NBD_CMD_BLOCK_STATUS) {
		chunk_hdr(h, NBD_REPLY_TYPE_BLOCK_STATUS, io->cookie, 4 + x->data_len);
		put_be32(h + 20, NBD_META_ALLOC_ID);
		x->hdr_len = NBD_CHUNK_LEN + 4;
		x->data = x->mem;
	} else {
		/* No payload: a simple reply is allowed and shorter. */
		simple_hdr(x);
		x->data_len = 0;
	}
	nbd_xio_queue(c, x);
}

static void xio_submit(struct nbd_conn *c, struct nbd_xio *x)
{
	x->state = NBD_XIO_BACKEND;
	c->n_backend++;
	c->srv->ops->submit(c->srv->ctx, &x->io);
	/* Queue the flush task behind whatever the backend posted to run this
	 * request (the store submits its batch from a task and reaps the
	 * page-cache hits at once): their replies then leave in this same turn
	 * of the loop instead of the next one. */
	if (c->in_rx && c->n_backend > 0)
		nbd_conn_schedule(c);
}

/* BLOCK_STATUS on an export whose backend cannot tell: all allocated. */
static void block_status_default(struct nbd_conn *c, struct nbd_xio *x)
{
	struct nbd_extent *e = x->mem;

	e->length = MIN(x->io.length, c->xp_params.size - x->io.offset);
	e->flags = 0;
	x->data_len =
	    8 * nbd_encode_extents(e, 1, x->io.offset, x->io.length, c->xp_params.size, true);
	xio_finish(c, x);
}

void nbd_xmit_request(struct nbd_conn *c, const struct nbd_request *r)
{
	struct nbd_server *srv = c->srv;
	const char *msg;
	bool fatal;
	uint32_t err;
	size_t need = 0;
	struct nbd_xio *x;

	srv->st.requests++;
	if (r->type == NBD_CMD_DISC) {
		LOG_DEBUG("%s: %s: NBD_CMD_DISC", srv->name, c->peer);
		c->draining = true;
		return;
	}
	err = nbd_check_request(&c->xp_params, r, &msg, &fatal);
	if (!err) {
		if (r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE)
			need = r->length;
		else if (r->type == NBD_CMD_BLOCK_STATUS)
			need = (r->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_MAX_EXTENTS) *
			       sizeof(struct nbd_extent);
	}
	x = nbd_xio_get(c, need);
	if (!x && need) {
		x = nbd_xio_get(c, 0);
		err = NBD_ENOMEM;
		msg = "out of memory";
		LOG_ERROR("%s: %s: no memory for a %u-byte buffer", srv->name, c->peer, r->length);
	}
	if (!x) {
		LOG_ERROR("%s: %s: out of memory", srv->name, c->peer);
		nbd_conn_close(c, NULL);
		return;
	}
	x->io.type = r->type;
	x->io.flags = r->flags;
	x->io.offset = r->offset;
	x->io.length = r->length;
	x->io.cookie = r->cookie;
	x->io.export_handle = c->handle;

	if (err) {
		if (fatal) {
			LOG_WARN("%s: %s: %s offset %llu length %u: %s, disconnecting", srv->name,
				 c->peer, cmd_name(r->type), (unsigned long long)r->offset,
				 r->length, msg);
			srv->st.protocol_errors++;
			c->close_after_tx = true;
		} else {
			LOG_INFO("%s: %s: %s flags 0x%x offset %llu length %u: %s", srv->name,
				 c->peer, cmd_name(r->type), r->flags,
				 (unsigned long long)r->offset, r->length, msg);
			if (r->type == NBD_CMD_WRITE && r->length) {
				/* Keep the stream in sync: skip the payload. */
				c->rx = NBD_RX_DISCARD;
				c->rx_left = r->length;
			}
		}
		x->error = err;
		x->msg = msg;
		xio_finish(c, x);
		return;
	}

	/* FUA matters only to commands that write. */
	if (r->type != NBD_CMD_WRITE && r->type != NBD_CMD_TRIM && r->type != NBD_CMD_WRITE_ZEROES)
		x->io.flags &= (uint16_t)~NBD_CMD_FLAG_FUA;
	switch (r->type) {
	case NBD_CMD_WRITE:
		nbd_conn_charge(c, x, r->length);
		if (r->length == 0)
			break;
		x->io.buf = x->mem;
		if (srv->ops->write_buf) {
			/* The payload straight into the backend's memory (the
			 * proxy's slot): one copy less. */
			void *b = srv->ops->write_buf(srv->ctx, &x->io);
			if (b)
				x->io.buf = b;
		}
		x->state = NBD_XIO_RX;
		c->rx_xio = x;
		c->rx_dst = x->io.buf;
		c->rx_left = r->length;
		c->rx = NBD_RX_PAYLOAD;
		return;
	case NBD_CMD_READ:
		nbd_conn_charge(c, x, r->length);
		x->io.buf = x->mem;
		if (r->length == 0)
			break;
		xio_submit(c, x);
		return;
	case NBD_CMD_BLOCK_STATUS:
		if (!c->info.can_block_status) {
			block_status_default(c, x);
			return;
		}
		x->io.extents = x->mem;
		x->io.max_extents = r->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : NBD_MAX_EXTENTS;
		xio_submit(c, x);
		return;
	case NBD_CMD_FLUSH:
		xio_submit(c, x);
		return;
	case NBD_CMD_CACHE:
		/* A hint: one the backend did not ask for succeeds at once. */
		if (r->length == 0 || !c->info.can_cache)
			break;
		xio_submit(c, x);
		return;
	default: /* TRIM, WRITE_ZEROES */
		if (r->length == 0)
			break;
		xio_submit(c, x);
		return;
	}
	/* Nothing to do: succeed at once. */
	xio_finish(c, x);
}

void nbd_xmit_payload_done(struct nbd_conn *c)
{
	struct nbd_xio *x = c->rx_xio;

	c->rx_xio = NULL;
	c->rx = NBD_RX_REQ;
	xio_submit(c, x);
}

void nbd_io_done(struct nbd_io *io, int result)
{
	struct nbd_xio *x;
	struct nbd_conn *c;

	if (io->complete) {
		io->complete(io, result);
		return;
	}
	x = container_of(io, struct nbd_xio, io);
	c = x->conn;
	if (x->state != NBD_XIO_BACKEND) {
		LOG_ERROR("nbd_io_done on an io that is not in flight (type %u)", io->type);
		return;
	}
	nbd_conn_get(c);
	c->n_backend--;
	if (c->closed) {
		nbd_xio_release(c, x);
		nbd_conn_put(c);
		return;
	}
	if (result > 0) {
		LOG_ERROR("%s: backend completed %s with %d", c->srv->name, cmd_name(io->type),
			  result);
		result = -EIO;
	}
	x->error = nbd_wire_error(result, io->type);
	if (!x->error && io->type == NBD_CMD_BLOCK_STATUS) {
		uint32_t n = nbd_encode_extents(io->extents, MIN(io->n_extents, io->max_extents),
						io->offset, io->length, c->xp_params.size,
						io->flags & NBD_CMD_FLAG_REQ_ONE);
		if (n == 0) {
			LOG_ERROR("%s: backend gave no extent for offset %llu", c->srv->name,
				  (unsigned long long)io->offset);
			x->error = NBD_EIO;
		}
		x->data_len = 8 * n;
	}
	xio_finish(c, x);
	if (!c->in_rx)
		nbd_conn_schedule(c);
	nbd_conn_put(c);
}
