/*
 * NBD handshake: fixed newstyle greeting, client flags and option haggling
 * (EXPORT_NAME, ABORT, LIST, STARTTLS, INFO, GO, STRUCTURED_REPLY,
 * LIST_META_CONTEXT, SET_META_CONTEXT; anything else is answered
 * NBD_REP_ERR_UNSUP). Replies are appended to the connection's handshake
 * output buffer.
 *
 * Access rules kept here: with tls = require nothing but STARTTLS and
 * ABORT is answered before TLS (NBD_REP_ERR_TLS_REQD; EXPORT_NAME, which
 * cannot fail politely, closes), so no export is listed or opened in
 * clear; an export the backend's allowed() refuses to this client's TLS
 * identities is neither listed nor opened, as if it did not exist.
 */
#define LOG_MODULE "nbd"
#include "nbd/nbd_int.h"
#include "common/log.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

static const char meta_alloc_name[] = "base:allocation";

void nbd_hs_greeting(struct nbd_conn *c)
{
	uint8_t g[NBD_GREETING_LEN];

	put_be64(g, NBD_MAGIC);
	put_be64(g + 8, NBD_IHAVEOPT);
	put_be16(g + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (!nbd_buf_put(&c->hs_out, g, sizeof(g)))
		nbd_conn_close(c, "out of memory");
}

int nbd_hs_client_flags(struct nbd_conn *c, uint32_t flags)
{
	if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
		nbd_conn_protocol_error(c, "unknown client flags 0x%x", flags);
		return -EPROTO;
	}
	if (!(flags & NBD_FLAG_C_FIXED_NEWSTYLE)) {
		nbd_conn_protocol_error(c, "client does not speak fixed newstyle");
		return -EPROTO;
	}
	c->fixed = true;
	c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
	return 0;
}

/* One option reply: header then @p len bytes of @p d (and @p d2). On
 * failure (no memory) the connection is closed: return false. */
static bool rep2(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *d, uint32_t len,
		 const void *d2, uint32_t len2)
{
	uint8_t h[20];

	put_be64(h, NBD_REP_MAGIC);
	put_be32(h + 8, opt);
	put_be32(h + 12, type);
	put_be32(h + 16, len + len2);
	if (!nbd_buf_put(&c->hs_out, h, sizeof(h)) || !nbd_buf_put(&c->hs_out, d, len) ||
	    !nbd_buf_put(&c->hs_out, d2, len2)) {
		nbd_conn_close(c, "out of memory");
		return false;
	}
	return true;
}

static bool rep(struct nbd_conn *c, uint32_t opt, uint32_t type, const void *d, uint32_t len)
{
	return rep2(c, opt, type, d, len, NULL, 0);
}

/* An error reply carries a message for humans. */
static bool rep_err(struct nbd_conn *c, uint32_t opt, uint32_t type, const char *msg)
{
	return rep(c, opt, type, msg, (uint32_t)strlen(msg));
}

static uint32_t open_error(int rc)
{
	switch (rc) {
	case -EPERM:
	case -EACCES:
		return NBD_REP_ERR_POLICY;
	case -ESHUTDOWN:
		return NBD_REP_ERR_SHUTDOWN;
	default:
		return NBD_REP_ERR_UNKNOWN;
	}
}

static bool is_pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

/* Make the backend's block sizes legal: min a power of two <= 64 KiB,
 * preferred a power of two >= max(min, 512). */
static void sanitize_info(struct nbd_conn *c, struct nbd_export_info *info)
{
	if (info->min_block == 0)
		info->min_block = 1;
	if (!is_pow2(info->min_block) || info->min_block > 65536) {
		LOG_WARN("%s: backend min_block %u is not a power of two <= 64K, using 1",
			 c->srv->name, info->min_block);
		info->min_block = 1;
	}
	if (!is_pow2(info->pref_block))
		info->pref_block = 4096;
	if (info->pref_block < info->min_block)
		info->pref_block = info->min_block;
	if (info->pref_block < 512)
		info->pref_block = 512;
	info->description[sizeof(info->description) - 1] = '\0';
}

static uint32_t max_payload(const struct nbd_conn *c, const struct nbd_export_info *info)
{
	uint64_t m = c->srv->opts.max_payload;

	if (m < info->pref_block)
		m = info->pref_block;
	return (uint32_t)(m & ~(uint64_t)(info->min_block - 1));
}

static void enter_xmit(struct nbd_conn *c, void *handle, const struct nbd_export_info *info,
		       const char *name)
{
	struct nbd_xmit_params *p = &c->xp_params;

	c->handle = handle;
	snprintf(c->export_name, sizeof(c->export_name), "%s", name);
	c->info = *info;
	p->size = info->size;
	p->max_payload = max_payload(c, info);
	p->min_block = info->min_block;
	p->tflags = nbd_tflags(info, c->structured);
	p->structured = c->structured;
	p->meta_alloc = c->meta_set && c->meta_export && strcmp(c->meta_export, name) == 0;
	c->xmit = true;
	c->rx = NBD_RX_REQ;
	c->last_rx_ns = loop_now_ns();
	loop_timer_arm(c->srv->loop, &c->timer, c->srv->timeout_ns);
	LOG_DEBUG("%s: %s: export '%s': size %llu flags 0x%x%s%s", c->srv->name, c->peer, name,
		  (unsigned long long)info->size, p->tflags, c->structured ? " structured" : "",
		  p->meta_alloc ? " base:allocation" : "");
}

/* May this client see export @p name (the backend's per-export list)? */
static bool export_allowed(struct nbd_conn *c, const char *name)
{
	const struct nbd_backend_ops *ops = c->srv->ops;

	if (!ops->allowed || ops->allowed(c->srv->ctx, name, (const char *const *)c->ids, c->n_ids))
		return true;
	LOG_INFO("%s: %s: export '%s' refused to %s", c->srv->name, c->peer, name,
		 c->n_ids ? c->ids[0] : "a client without TLS identity");
	return false;
}

static void opt_export_name(struct nbd_conn *c, const uint8_t *d, uint32_t len)
{
	char name[NBD_STRING_MAX + 1];
	struct nbd_export_info info = {0};
	uint8_t r[10 + 124] = {0};
	void *handle = NULL;
	int rc;

	if (!nbd_string_ok((const char *)d, len)) {
		nbd_conn_protocol_error(c, "bad export name in NBD_OPT_EXPORT_NAME");
		return;
	}
	memcpy(name, d, len);
	name[len] = '\0';
	rc = export_allowed(c, name) ? c->srv->ops->open(c->srv->ctx, name, &handle, &info)
				     : -ENOENT;
	if (rc < 0) {
		/* EXPORT_NAME cannot fail politely: the spec says close. */
		nbd_conn_protocol_error(c, "export '%s' not available (%s)", name, strerror(-rc));
		return;
	}
	sanitize_info(c, &info);
	put_be64(r, info.size);
	put_be16(r + 8, nbd_tflags(&info, c->structured));
	if (!nbd_buf_put(&c->hs_out, r, c->no_zeroes ? 10 : sizeof(r))) {
		c->srv->ops->close(c->srv->ctx, handle);
		nbd_conn_close(c, "out of memory");
		return;
	}
	enter_xmit(c, handle, &info, name);
}

static void opt_info_go(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
	struct nbd_backend_ops const *ops = c->srv->ops;
	char name[NBD_STRING_MAX + 1];
	struct nbd_export_info info = {0};
	struct nbd_opt_go g;
	void *handle = NULL;
	uint8_t b[14];
	int rc;

	if (nbd_parse_opt_go(d, len, &g) < 0) {
		LOG_INFO("%s: %s: malformed %s option", c->srv->name, c->peer,
			 opt == NBD_OPT_GO ? "GO" : "INFO");
		rep_err(c, opt, NBD_REP_ERR_INVALID, "malformed request");
		return;
	}
	memcpy(name, g.name, g.name_len);
	name[g.name_len] = '\0';
	rc = export_allowed(c, name) ? ops->open(c->srv->ctx, name, &handle, &info) : -ENOENT;
	if (rc < 0) {
		LOG_INFO("%s: %s: export '%s' not available: %s", c->srv->name, c->peer, name,
			 strerror(-rc));
		rep_err(c, opt, open_error(rc), "export not available");
		return;
	}
	sanitize_info(c, &info);

	put_be16(b, NBD_INFO_EXPORT);
	put_be64(b + 2, info.size);
	put_be16(b + 10, nbd_tflags(&info, c->structured));
	if (!rep(c, opt, NBD_REP_INFO, b, 12))
		goto fail;
	/* Always sent: the server MAY volunteer it, and clients that did not
	 * ask ignore it. */
	put_be16(b, NBD_INFO_BLOCK_SIZE);
	put_be32(b + 2, info.min_block);
	put_be32(b + 6, info.pref_block);
	put_be32(b + 10, max_payload(c, &info));
	if (!rep(c, opt, NBD_REP_INFO, b, 14))
		goto fail;
	if (g.want_name) {
		put_be16(b, NBD_INFO_NAME);
		if (!rep2(c, opt, NBD_REP_INFO, b, 2, g.name, g.name_len))
			goto fail;
	}
	if (g.want_desc && info.description[0]) {
		put_be16(b, NBD_INFO_DESCRIPTION);
		if (!rep2(c, opt, NBD_REP_INFO, b, 2, info.description,
			  (uint32_t)strlen(info.description)))
			goto fail;
	}
	if (!rep(c, opt, NBD_REP_ACK, NULL, 0))
		goto fail;
	if (opt == NBD_OPT_GO)
		enter_xmit(c, handle, &info, name);
	else
		ops->close(c->srv->ctx, handle);
	return;
fail:
	ops->close(c->srv->ctx, handle);
}

struct list_ctx {
	struct nbd_conn *c;
	bool ok;
};

static void list_emit(void *arg, const char *name, const char *desc)
{
	struct list_ctx *lc = arg;
	const struct nbd_backend_ops *ops = lc->c->srv->ops;
	struct nbd_buf *b = &lc->c->hs_out;
	uint32_t nl, dl;
	uint8_t h[24];

	if (!lc->ok || !name)
		return;
	if (ops->allowed &&
	    !ops->allowed(lc->c->srv->ctx, name, (const char *const *)lc->c->ids, lc->c->n_ids))
		return; /* not this client's to see */
	nl = (uint32_t)strnlen(name, NBD_STRING_MAX + 1);
	dl = desc ? (uint32_t)strnlen(desc, NBD_STRING_MAX) : 0;
	if (nl > NBD_STRING_MAX)
		return; /* not a name a client could ask for */
	put_be64(h, NBD_REP_MAGIC);
	put_be32(h + 8, NBD_OPT_LIST);
	put_be32(h + 12, NBD_REP_SERVER);
	put_be32(h + 16, 4 + nl + dl);
	put_be32(h + 20, nl);
	if (!nbd_buf_put(b, h, sizeof(h)) || !nbd_buf_put(b, name, nl) ||
	    !nbd_buf_put(b, desc, dl)) {
		nbd_conn_close(lc->c, "out of memory");
		lc->ok = false;
	}
}

static void opt_list(struct nbd_conn *c, uint32_t len)
{
	struct list_ctx lc = {c, true};
	int rc = 0;

	if (len) {
		LOG_INFO("%s: %s: NBD_OPT_LIST with data", c->srv->name, c->peer);
		rep_err(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID, "LIST takes no data");
		return;
	}
	if (c->srv->ops->list)
		rc = c->srv->ops->list(c->srv->ctx, list_emit, &lc);
	if (!lc.ok)
		return;
	if (rc < 0)
		rep_err(c, NBD_OPT_LIST,
			rc == -ESHUTDOWN ? NBD_REP_ERR_SHUTDOWN : NBD_REP_ERR_POLICY,
			"cannot list exports");
	else
		rep(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0);
}

static void opt_meta(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
	bool list = opt == NBD_OPT_LIST_META_CONTEXT;
	struct nbd_opt_meta m;
	uint8_t id[4];

	if (!list) {
		/* SET replaces the previous selection, even when it fails. */
		c->meta_set = false;
		free(c->meta_export);
		c->meta_export = NULL;
		if (!c->structured) {
			LOG_INFO("%s: %s: SET_META_CONTEXT before STRUCTURED_REPLY", c->srv->name,
				 c->peer);
			rep_err(c, opt, NBD_REP_ERR_INVALID, "structured replies not negotiated");
			return;
		}
	}
	if (nbd_parse_opt_meta(d, len, list, &m) < 0) {
		LOG_INFO("%s: %s: malformed %s_META_CONTEXT option", c->srv->name, c->peer,
			 list ? "LIST" : "SET");
		rep_err(c, opt, NBD_REP_ERR_INVALID, "malformed request");
		return;
	}
	if (m.match_alloc) {
		put_be32(id, list ? 0 : NBD_META_ALLOC_ID);
		if (!rep2(c, opt, NBD_REP_META_CONTEXT, id, 4, meta_alloc_name,
			  sizeof(meta_alloc_name) - 1))
			return;
		if (!list) {
			c->meta_export = strndup(m.name, m.name_len);
			if (!c->meta_export) {
				nbd_conn_close(c, "out of memory");
				return;
			}
			c->meta_set = true;
		}
	}
	rep(c, opt, NBD_REP_ACK, NULL, 0);
}

/* STARTTLS: ACK, then nothing is parsed until server.c has run the TLS
 * handshake (NBD_RX_TLS). Nothing negotiated in clear carries over. */
static void opt_starttls(struct nbd_conn *c, uint32_t len)
{
	if (!c->srv->tls || c->fd < 0) {
		LOG_DEBUG("%s: %s: STARTTLS but tls = off", c->srv->name, c->peer);
		rep_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP, "option not supported");
		return;
	}
	if (len) {
		LOG_INFO("%s: %s: STARTTLS with data", c->srv->name, c->peer);
		rep_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "STARTTLS takes no data");
		return;
	}
	if (c->tls_up) {
		LOG_INFO("%s: %s: STARTTLS inside TLS", c->srv->name, c->peer);
		rep_err(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID, "TLS is already on");
		return;
	}
	if (!rep(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0))
		return;
	c->structured = false;
	c->meta_set = false;
	free(c->meta_export);
	c->meta_export = NULL;
	c->rx = NBD_RX_TLS;
}

/* tls = require and no TLS yet: only STARTTLS and ABORT get an answer. */
static bool tls_required(struct nbd_conn *c, uint32_t opt)
{
	if (c->srv->tls_mode != NBD_TLS_REQUIRE || c->tls_up || opt == NBD_OPT_STARTTLS ||
	    opt == NBD_OPT_ABORT)
		return false;
	if (opt == NBD_OPT_EXPORT_NAME) {
		nbd_conn_protocol_error(c, "NBD_OPT_EXPORT_NAME before STARTTLS (tls = require)");
		return true;
	}
	LOG_DEBUG("%s: %s: option %u before STARTTLS, TLS required", c->srv->name, c->peer, opt);
	rep_err(c, opt, NBD_REP_ERR_TLS_REQD, "TLS required: send NBD_OPT_STARTTLS first");
	return true;
}

void nbd_hs_option(struct nbd_conn *c, uint32_t opt, const uint8_t *d, uint32_t len)
{
	if (tls_required(c, opt))
		return;
	switch (opt) {
	case NBD_OPT_STARTTLS:
		opt_starttls(c, len);
		break;
	case NBD_OPT_EXPORT_NAME:
		opt_export_name(c, d, len);
		break;
	case NBD_OPT_ABORT:
		if (rep(c, opt, NBD_REP_ACK, NULL, 0))
			c->close_after_tx = true;
		break;
	case NBD_OPT_LIST:
		opt_list(c, len);
		break;
	case NBD_OPT_INFO:
	case NBD_OPT_GO:
		opt_info_go(c, opt, d, len);
		break;
	case NBD_OPT_STRUCTURED_REPLY:
		if (len) {
			LOG_INFO("%s: %s: STRUCTURED_REPLY with data", c->srv->name, c->peer);
			rep_err(c, opt, NBD_REP_ERR_INVALID, "STRUCTURED_REPLY takes no data");
			break;
		}
		c->structured = true;
		rep(c, opt, NBD_REP_ACK, NULL, 0);
		break;
	case NBD_OPT_LIST_META_CONTEXT:
	case NBD_OPT_SET_META_CONTEXT:
		opt_meta(c, opt, d, len);
		break;
	default:
		LOG_DEBUG("%s: %s: option %u not supported", c->srv->name, c->peer, opt);
		rep_err(c, opt, NBD_REP_ERR_UNSUP, "option not supported");
		break;
	}
}

void nbd_hs_option_skipped(struct nbd_conn *c, uint32_t opt)
{
	LOG_INFO("%s: %s: option %u with too much data, refused", c->srv->name, c->peer, opt);
	rep_err(c, opt, NBD_REP_ERR_TOO_BIG, "option data too large");
}
