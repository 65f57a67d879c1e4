/*
 * Pure parsing and checking of NBD wire data (option and request headers,
 * INFO/GO and META_CONTEXT data, request checks, error mapping, extent
 * encoding).
 *
 * The rule: no socket, no connection, no state, no allocation; every input
 * is untrusted bytes with an explicit length. That is what lets the unit
 * tests and the fuzzer call these directly, without a running server.
 */
#define LOG_MODULE "nbd"
#include "nbd/nbd_int.h"
#include "common/log.h"

#include <errno.h>
#include <string.h>

int nbd_parse_request(const uint8_t *p, struct nbd_request *r)
{
	if (get_be32(p) != NBD_REQUEST_MAGIC)
		return -EPROTO;
	r->flags = get_be16(p + 4);
	r->type = get_be16(p + 6);
	r->cookie = get_be64(p + 8);
	r->offset = get_be64(p + 16);
	r->length = get_be32(p + 24);
	return 0;
}

int nbd_parse_opt_hdr(const uint8_t *p, uint32_t *opt, uint32_t *len)
{
	if (get_be64(p) != NBD_IHAVEOPT)
		return -EPROTO;
	*opt = get_be32(p + 8);
	*len = get_be32(p + 12);
	return 0;
}

bool nbd_string_ok(const char *s, uint32_t len)
{
	return len <= NBD_STRING_MAX && memchr(s, '\0', len) == NULL;
}

int nbd_parse_opt_go(const uint8_t *d, uint32_t len, struct nbd_opt_go *out)
{
	uint32_t nl;
	uint16_t n;

	memset(out, 0, sizeof(*out));
	if (len < 6)
		return -EINVAL;
	nl = get_be32(d);
	if (nl > len - 6)
		return -EINVAL;
	n = get_be16(d + 4 + nl);
	if ((uint64_t)len != 6ull + nl + 2ull * n)
		return -EINVAL;
	out->name = (const char *)d + 4;
	out->name_len = nl;
	if (!nbd_string_ok(out->name, nl))
		return -EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		switch (get_be16(d + 6 + nl + 2 * i)) {
		case NBD_INFO_NAME:
			out->want_name = true;
			break;
		case NBD_INFO_DESCRIPTION:
			out->want_desc = true;
			break;
		case NBD_INFO_BLOCK_SIZE:
			out->want_block_size = true;
			break;
		default:
			break; /* the spec says: ignore what we don't know */
		}
	}
	return 0;
}

/* One query: "namespace:leaf". Only base:allocation exists here; "base:"
 * is a LIST wildcard. Unknown namespaces and leaves are ignored. */
static int meta_query(const char *q, uint32_t len, bool list, bool *alloc)
{
	static const char ns[] = "base:";
	static const char ctx[] = "base:allocation";
	const char *colon = memchr(q, ':', len);

	if (!colon || colon == q || !nbd_string_ok(q, len))
		return -EINVAL;
	if (len == sizeof(ctx) - 1 && memcmp(q, ctx, len) == 0)
		*alloc = true;
	else if (list && len == sizeof(ns) - 1 && memcmp(q, ns, len) == 0)
		*alloc = true;
	return 0;
}

int nbd_parse_opt_meta(const uint8_t *d, uint32_t len, bool list, struct nbd_opt_meta *out)
{
	uint32_t nl, pos;

	memset(out, 0, sizeof(*out));
	if (len < 8)
		return -EINVAL;
	nl = get_be32(d);
	if (nl > len - 8)
		return -EINVAL;
	out->name = (const char *)d + 4;
	out->name_len = nl;
	if (!nbd_string_ok(out->name, nl))
		return -EINVAL;
	pos = 4 + nl;
	out->n_queries = get_be32(d + pos);
	pos += 4;
	/* Each query takes at least 4 bytes: reject absurd counts early. */
	if (out->n_queries > (len - pos) / 4)
		return -EINVAL;
	for (uint32_t i = 0; i < out->n_queries; i++) {
		uint32_t ql;
		if (len - pos < 4)
			return -EINVAL;
		ql = get_be32(d + pos);
		pos += 4;
		if (ql > len - pos)
			return -EINVAL;
		if (meta_query((const char *)d + pos, ql, list, &out->match_alloc) < 0)
			return -EINVAL;
		pos += ql;
	}
	if (pos != len)
		return -EINVAL;
	if (list && out->n_queries == 0) {
		out->all = true;
		out->match_alloc = true;
	}
	return 0;
}

uint16_t nbd_tflags(const struct nbd_export_info *info, bool structured)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS;

	if (info->read_only)
		f |= NBD_FLAG_READ_ONLY;
	if (info->can_flush)
		f |= NBD_FLAG_SEND_FLUSH;
	if (info->can_fua)
		f |= NBD_FLAG_SEND_FUA;
	if (info->can_trim && !info->read_only)
		f |= NBD_FLAG_SEND_TRIM;
	if (info->can_zero && !info->read_only) {
		f |= NBD_FLAG_SEND_WRITE_ZEROES;
		if (info->can_fast_zero)
			f |= NBD_FLAG_SEND_FAST_ZERO;
	}
	if (structured)
		f |= NBD_FLAG_SEND_DF;
	if (info->can_multi_conn)
		f |= NBD_FLAG_CAN_MULTI_CONN;
	if (info->can_cache)
		f |= NBD_FLAG_SEND_CACHE;
	return f;
}

static bool is_write(uint16_t type)
{
	return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM || type == NBD_CMD_WRITE_ZEROES;
}

uint32_t nbd_check_request(const struct nbd_xmit_params *p, const struct nbd_request *r,
			   const char **msg, bool *fatal)
{
	uint16_t allowed = 0;
	uint16_t need = 0; /* transmission flag the command needs */
	bool ro = p->tflags & NBD_FLAG_READ_ONLY;

	*fatal = false;
	*msg = NULL;
	switch (r->type) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
		/* The client MUST NOT exceed it; for WRITE the payload that
		 * follows can't be trusted either, so both end the session. */
		if (r->length > p->max_payload) {
			*fatal = true;
			*msg = "length exceeds the maximum payload";
			return p->structured && r->type == NBD_CMD_READ ? NBD_EOVERFLOW
									: NBD_EINVAL;
		}
		if (r->type == NBD_CMD_READ && (p->tflags & NBD_FLAG_SEND_DF))
			allowed = NBD_CMD_FLAG_DF;
		break;
	case NBD_CMD_FLUSH:
		need = NBD_FLAG_SEND_FLUSH;
		break;
	case NBD_CMD_TRIM:
		need = NBD_FLAG_SEND_TRIM;
		break;
	case NBD_CMD_CACHE:
		break; /* a hint: served even when not advertised */
	case NBD_CMD_WRITE_ZEROES:
		need = NBD_FLAG_SEND_WRITE_ZEROES;
		allowed = NBD_CMD_FLAG_NO_HOLE;
		if (p->tflags & NBD_FLAG_SEND_FAST_ZERO)
			allowed |= NBD_CMD_FLAG_FAST_ZERO;
		break;
	case NBD_CMD_BLOCK_STATUS:
		allowed = NBD_CMD_FLAG_REQ_ONE;
		if (!p->meta_alloc || !p->structured) {
			*msg = "no metadata context was selected";
			return NBD_EINVAL;
		}
		break;
	default:
		*msg = "unknown command";
		return NBD_EINVAL;
	}
	if (p->tflags & NBD_FLAG_SEND_FUA)
		allowed |= NBD_CMD_FLAG_FUA;
	if (r->flags & ~allowed) {
		*msg = "flag not valid for this command";
		return NBD_EINVAL;
	}
	if (ro && is_write(r->type)) {
		*msg = "export is read-only";
		return NBD_EPERM;
	}
	if (need && !(p->tflags & need)) {
		*msg = "command not supported by this export";
		return NBD_EINVAL;
	}
	if (r->type == NBD_CMD_FLUSH) {
		if (r->offset || r->length) {
			*msg = "flush offset and length must be zero";
			return NBD_EINVAL;
		}
		return 0;
	}
	if (r->offset > p->size || r->length > p->size - r->offset) {
		*msg = "request beyond the end of the export";
		return r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES ? NBD_ENOSPC
										   : NBD_EINVAL;
	}
	if (p->min_block > 1 && r->type != NBD_CMD_CACHE && r->type != NBD_CMD_BLOCK_STATUS &&
	    ((r->offset | r->length) & (p->min_block - 1))) {
		*msg = "request not aligned to the minimum block size";
		return NBD_EINVAL;
	}
	if (r->type == NBD_CMD_BLOCK_STATUS && r->length == 0) {
		*msg = "block status of zero length";
		return NBD_EINVAL;
	}
	return 0;
}

uint32_t nbd_wire_error(int err, uint16_t type)
{
	switch (err) {
	case 0:
		return 0;
	case -EPERM:
	case -EROFS:
	case -EACCES:
		return NBD_EPERM;
	case -EIO:
		return NBD_EIO;
	case -ENOMEM:
		return NBD_ENOMEM;
	case -EINVAL:
		return NBD_EINVAL;
	case -ENOSPC:
	case -EDQUOT:
	case -EFBIG:
		return NBD_ENOSPC;
	case -EOVERFLOW:
		return NBD_EOVERFLOW;
	case -ENOTSUP:
		/* Only fast zero may answer ENOTSUP on the wire. */
		return type == NBD_CMD_WRITE_ZEROES ? NBD_ENOTSUP : NBD_EINVAL;
	case -ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default:
		return NBD_EIO;
	}
}

const char *nbd_error_text(uint32_t e)
{
	switch (e) {
	case NBD_EPERM:
		return "operation not permitted";
	case NBD_EIO:
		return "input/output error";
	case NBD_ENOMEM:
		return "out of memory";
	case NBD_EINVAL:
		return "invalid argument";
	case NBD_ENOSPC:
		return "no space left on device";
	case NBD_EOVERFLOW:
		return "value too large";
	case NBD_ENOTSUP:
		return "operation not supported";
	case NBD_ESHUTDOWN:
		return "server is shutting down";
	default:
		return "error";
	}
}

uint32_t nbd_encode_extents(struct nbd_extent *ext, uint32_t n, uint64_t offset, uint64_t req_len,
			    uint64_t size, bool req_one)
{
	uint8_t *wire = (uint8_t *)ext;
	uint64_t pos = offset;
	uint32_t out = 0, prev_flags = 0;
	uint64_t prev_len = 0;
	/* Largest descriptor: 4 GiB less 64 KiB keeps any legal min block. */
	const uint64_t max_len = 0xffff0000ull;

	for (uint32_t i = 0; i < n && pos < size; i++) {
		uint64_t len = ext[i].length, full = ext[i].length;
		uint32_t flags = ext[i].flags & (NBD_STATE_HOLE | NBD_STATE_ZERO);

		if (len == 0)
			break;
		if (len > size - pos)
			len = size - pos;
		if (req_one && len > req_len)
			len = req_len;
		if (out > 0 && flags == prev_flags && prev_len + len <= max_len) {
			prev_len += len;
			put_be32(wire + 8 * (out - 1), (uint32_t)prev_len);
		} else {
			if (len > max_len)
				len = max_len;
			put_be32(wire + 8 * out, (uint32_t)len);
			put_be32(wire + 8 * out + 4, flags);
			out++;
			prev_len = len;
			prev_flags = flags;
		}
		pos += len;
		/* A clipped extent no longer ends where the next one starts. */
		if (req_one || len < full || pos - offset >= req_len)
			break;
	}
	return out;
}
