/* Encoding and structural checks of the proxy's messages (the wire format
 * in proxy_int.h). A message from the partner is never trusted: the
 * decoders read only within the given length and refuse anything that does
 * not add up. Every field is read and written at its offset in the wire
 * struct, little-endian, through common/byteorder.h; an encoder zeroes its
 * whole fixed part first, so reserved fields and padding go out as zeros.
 * No state: the fuzzers and unit tests call it directly. */
#define LOG_MODULE "proxy"
#include <errno.h>
#include <string.h>

#include "common/byteorder.h"
#include "nbd/nbd.h"
#include "proxy/proxy_int.h"

/* Address of @p field of wire struct @p type at @p base. */
#define AT(base, type, field)  ((uint8_t *)(base) + offsetof(struct type, field))
#define CAT(base, type, field) ((const uint8_t *)(base) + offsetof(struct type, field))

#define CMD_FLAGS_ALL                                                                       \
	(NBD_CMD_FLAG_FUA | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_DF | NBD_CMD_FLAG_REQ_ONE | \
	 NBD_CMD_FLAG_FAST_ZERO)

static int bad(const char **why, const char *what)
{
	*why = what;
	return -EBADMSG;
}

static void put_hdr(void *buf, uint16_t type, uint16_t flags)
{
	put_le32(AT(buf, px_hdr, magic), PX_MAGIC);
	put_le16(AT(buf, px_hdr, type), type);
	put_le16(AT(buf, px_hdr, flags), flags);
}

/* Check the header of @p msg against @p type and the allowed @p flags. */
static int get_hdr(const void *msg, size_t len, uint16_t type, uint16_t allowed, size_t min,
		   uint16_t *flags, const char **why)
{
	if (len < sizeof(struct px_hdr) || len < min)
		return bad(why, "message too short");
	if (get_le32(CAT(msg, px_hdr, magic)) != PX_MAGIC)
		return bad(why, "bad magic");
	if (get_le16(CAT(msg, px_hdr, type)) != type)
		return bad(why, "unexpected type");
	*flags = get_le16(CAT(msg, px_hdr, flags));
	if (*flags & ~allowed)
		return bad(why, "unknown flags");
	return 0;
}

unsigned proxy_wire_msg_type(const void *msg, size_t len)
{
	if (len < sizeof(struct px_hdr))
		return 0;
	if (get_le32(CAT(msg, px_hdr, magic)) != PX_MAGIC)
		return 0;
	return get_le16(CAT(msg, px_hdr, type));
}

/* ---- BATCH ---- */

void proxy_wire_batch_init(void *buf)
{
	memset(buf, 0, sizeof(struct px_batch));
	put_hdr(buf, PX_BATCH, 0);
}

size_t proxy_wire_batch_add2(void *buf, size_t off, const void *rec, size_t len, const void *data,
			     size_t dlen)
{
	uint8_t *p = (uint8_t *)buf + off;
	size_t pad = PX_REC_SIZE(len + dlen) - sizeof(struct px_rec) - len - dlen;

	put_le32(AT(p, px_rec, len), (uint32_t)(len + dlen));
	put_le32(AT(p, px_rec, rsvd), 0);
	memcpy(p + sizeof(struct px_rec), rec, len);
	if (dlen)
		memcpy(p + sizeof(struct px_rec) + len, data, dlen);
	memset(p + sizeof(struct px_rec) + len + dlen, 0, pad);
	return off + PX_REC_SIZE(len + dlen);
}

size_t proxy_wire_batch_add(void *buf, size_t off, const void *rec, size_t len)
{
	return proxy_wire_batch_add2(buf, off, rec, len, NULL, 0);
}

void proxy_wire_batch_finish(void *buf, uint32_t count)
{
	put_le32(AT(buf, px_batch, count), count);
}

int proxy_wire_batch_walk(const void *msg, size_t len,
			  void (*fn)(void *arg, const void *rec, size_t len), void *arg,
			  const char **why)
{
	const uint8_t *p = msg;
	uint16_t flags;
	uint32_t count;
	size_t off = sizeof(struct px_batch);
	int rc = get_hdr(msg, len, PX_BATCH, 0, sizeof(struct px_batch), &flags, why);

	if (rc < 0)
		return rc;
	count = get_le32(CAT(msg, px_batch, count));
	if (count == 0 || count > PX_BATCH_MAX)
		return bad(why, "batch count out of range");
	for (uint32_t i = 0; i < count; i++) {
		size_t rl;
		if (len - off < sizeof(struct px_rec))
			return bad(why, "batch truncated");
		rl = get_le32(CAT(p + off, px_rec, len));
		if (rl > len - off - sizeof(struct px_rec) || PX_REC_SIZE(rl) > len - off)
			return bad(why, "batch record truncated");
		if (proxy_wire_msg_type(p + off + sizeof(struct px_rec), rl) == PX_BATCH)
			return bad(why, "batch in a batch");
		fn(arg, p + off + sizeof(struct px_rec), rl);
		off += PX_REC_SIZE(rl);
	}
	if (off != len)
		return bad(why, "trailing bytes after the batch");
	return 0;
}

bool proxy_wire_name_ok(const char *s, size_t max)
{
	size_t n = strnlen(s, max);

	if (n == 0 || n >= max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* ---- HELLO ---- */

size_t proxy_wire_encode_hello(void *buf, const struct pxm_hello *m)
{
	memset(buf, 0, sizeof(struct px_hello));
	put_hdr(buf, PX_HELLO, 0);
	put_le32(AT(buf, px_hello, version), m->version);
	put_le64(AT(buf, px_hello, session), m->session);
	put_le64(AT(buf, px_hello, data_size), m->data_size);
	put_le64(AT(buf, px_hello, chunk), m->chunk);
	return sizeof(struct px_hello);
}

int proxy_wire_decode_hello(const void *msg, size_t len, struct pxm_hello *out, const char **why)
{
	uint16_t flags;
	int rc = get_hdr(msg, len, PX_HELLO, 0, sizeof(struct px_hello), &flags, why);

	if (rc < 0)
		return rc;
	if (len != sizeof(struct px_hello))
		return bad(why, "hello of the wrong size");
	out->version = get_le32(CAT(msg, px_hello, version));
	out->session = get_le64(CAT(msg, px_hello, session));
	out->data_size = get_le64(CAT(msg, px_hello, data_size));
	out->chunk = get_le64(CAT(msg, px_hello, chunk));
	if (out->version != PX_VERSION)
		return bad(why, "unsupported protocol version");
	if (out->session == 0)
		return bad(why, "session id 0");
	if (out->chunk == 0 || out->chunk > PX_CHUNK_MAX)
		return bad(why, "chunk size out of range");
	return 0;
}

/* ---- REQ ---- */

size_t proxy_wire_encode_req(void *buf, const struct pxm_req *m, const void *data)
{
	size_t len = proxy_wire_encode_req_hdr(buf, m);

	if ((m->flags & PX_F_INLINE) && m->cmd == NBD_CMD_WRITE) {
		memcpy((uint8_t *)buf + len, data, m->length);
		return len + m->length;
	}
	return len;
}

size_t proxy_wire_encode_req_hdr(void *buf, const struct pxm_req *m)
{
	memset(buf, 0, sizeof(struct px_req));
	put_hdr(buf, PX_REQ, m->flags);
	put_le32(AT(buf, px_req, vol), m->vol);
	put_le16(AT(buf, px_req, cmd), m->cmd);
	put_le16(AT(buf, px_req, cflags), m->cflags);
	put_le64(AT(buf, px_req, session), m->session);
	put_le64(AT(buf, px_req, seq), m->seq);
	put_le64(AT(buf, px_req, offset), m->offset);
	put_le32(AT(buf, px_req, length), m->length);
	put_le32(AT(buf, px_req, max_extents), m->max_extents);
	put_le64(AT(buf, px_req, data_off), m->data_off);
	return sizeof(struct px_req);
}

int proxy_wire_decode_req(const void *msg, size_t len, struct pxm_req *out, const char **why)
{
	int rc = get_hdr(msg, len, PX_REQ, PX_F_RETRY | PX_F_NOEXEC | PX_F_INLINE,
			 sizeof(struct px_req), &out->flags, why);
	size_t data_len;

	if (rc < 0)
		return rc;
	out->vol = get_le32(CAT(msg, px_req, vol));
	out->cmd = get_le16(CAT(msg, px_req, cmd));
	out->cflags = get_le16(CAT(msg, px_req, cflags));
	out->session = get_le64(CAT(msg, px_req, session));
	out->seq = get_le64(CAT(msg, px_req, seq));
	out->offset = get_le64(CAT(msg, px_req, offset));
	out->length = get_le32(CAT(msg, px_req, length));
	out->max_extents = get_le32(CAT(msg, px_req, max_extents));
	out->data_off = get_le64(CAT(msg, px_req, data_off));
	out->data = NULL;
	data_len = len - sizeof(struct px_req);
	if (out->seq == 0)
		return bad(why, "sequence number 0");
	if (out->cflags & ~CMD_FLAGS_ALL)
		return bad(why, "unknown command flags");
	switch (out->cmd) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
		if (out->length == 0 || out->length > PX_CHUNK_MAX)
			return bad(why, "data length out of range");
		if ((out->flags & PX_F_INLINE) && out->length > PX_INLINE_MAX)
			return bad(why, "inline data too long");
		break;
	case NBD_CMD_FLUSH:
		if (out->offset || out->length)
			return bad(why, "flush with a range");
		break;
	case NBD_CMD_TRIM:
	case NBD_CMD_CACHE:
	case NBD_CMD_WRITE_ZEROES:
		if (out->length == 0)
			return bad(why, "empty range");
		break;
	case NBD_CMD_BLOCK_STATUS:
		if (out->length == 0)
			return bad(why, "empty range");
		if (out->max_extents == 0 || out->max_extents > PX_MAX_EXTENTS)
			return bad(why, "extent count out of range");
		break;
	default:
		return bad(why, "unknown command");
	}
	if (out->cmd != NBD_CMD_READ && out->cmd != NBD_CMD_WRITE && (out->flags & PX_F_INLINE))
		return bad(why, "inline flag on a command without data");
	if (out->offset > UINT64_MAX - out->length)
		return bad(why, "range wraps");
	if (out->cmd == NBD_CMD_WRITE && (out->flags & PX_F_INLINE)) {
		if (data_len != out->length)
			return bad(why, "inline data length mismatch");
		out->data = (const uint8_t *)msg + sizeof(struct px_req);
	} else if (data_len != 0) {
		return bad(why, "trailing bytes");
	}
	return 0;
}

/* ---- REP ---- */

size_t proxy_wire_encode_rep(void *buf, const struct pxm_rep *m)
{
	memset(buf, 0, sizeof(struct px_rep));
	put_hdr(buf, PX_REP, m->flags);
	put_le32(AT(buf, px_rep, result), (uint32_t)m->result);
	put_le32(AT(buf, px_rep, count), m->count);
	put_le64(AT(buf, px_rep, session), m->session);
	put_le64(AT(buf, px_rep, seq), m->seq);
	put_le32(AT(buf, px_rep, length), m->length);
	return sizeof(struct px_rep);
}

void proxy_wire_put_ext(void *buf, unsigned i, uint64_t length, uint32_t flags)
{
	uint8_t *e = (uint8_t *)buf + sizeof(struct px_rep) + (size_t)i * sizeof(struct px_ext);

	put_le64(AT(e, px_ext, length), length);
	put_le32(AT(e, px_ext, flags), flags);
	put_le32(AT(e, px_ext, rsvd), 0);
}

int proxy_wire_decode_rep(const void *msg, size_t len, struct pxm_rep *out, const char **why)
{
	int rc = get_hdr(msg, len, PX_REP, PX_F_INLINE, sizeof(struct px_rep), &out->flags, why);
	size_t data_len;

	if (rc < 0)
		return rc;
	out->result = (int32_t)get_le32(CAT(msg, px_rep, result));
	out->count = get_le32(CAT(msg, px_rep, count));
	out->session = get_le64(CAT(msg, px_rep, session));
	out->seq = get_le64(CAT(msg, px_rep, seq));
	out->length = get_le32(CAT(msg, px_rep, length));
	out->data = (const uint8_t *)msg + sizeof(struct px_rep);
	data_len = len - sizeof(struct px_rep);
	if (out->result > 0 || out->result < -4095)
		return bad(why, "result out of range");
	if (out->count > PX_MAX_EXTENTS)
		return bad(why, "too many extents");
	if ((out->flags & PX_F_INLINE) && out->count)
		return bad(why, "inline data and extents");
	if (out->flags & PX_F_INLINE) {
		if (out->length > PX_INLINE_MAX || data_len != out->length)
			return bad(why, "inline data length mismatch");
	} else if (data_len != (size_t)out->count * sizeof(struct px_ext)) {
		return bad(why, "length does not match the extents");
	}
	if (out->result < 0 && (out->count || out->length))
		return bad(why, "data with an error");
	return 0;
}

void proxy_wire_ext_get(const struct pxm_rep *r, unsigned i, uint64_t *length, uint32_t *flags)
{
	const uint8_t *e = r->data + (size_t)i * sizeof(struct px_ext);

	*length = get_le64(CAT(e, px_ext, length));
	*flags = get_le32(CAT(e, px_ext, flags));
}

/* ---- VOLS ---- */

size_t proxy_wire_encode_vols_hdr(void *buf, uint16_t flags, uint32_t count, uint32_t gen,
				  uint64_t server_session)
{
	memset(buf, 0, sizeof(struct px_vols));
	put_hdr(buf, PX_VOLS, flags);
	put_le32(AT(buf, px_vols, count), count);
	put_le32(AT(buf, px_vols, gen), gen);
	put_le64(AT(buf, px_vols, server_session), server_session);
	return sizeof(struct px_vols) + (size_t)count * sizeof(struct px_vol);
}

void proxy_wire_put_vol(void *buf, unsigned i, const struct px_vol *v)
{
	uint8_t *w = (uint8_t *)buf + sizeof(struct px_vols) + (size_t)i * sizeof(struct px_vol);

	memset(w, 0, sizeof(struct px_vol));
	put_le32(AT(w, px_vol, id), v->id);
	put_le32(AT(w, px_vol, flags), v->flags);
	put_le64(AT(w, px_vol, size), v->size);
	put_le32(AT(w, px_vol, min_block), v->min_block);
	put_le32(AT(w, px_vol, pref_block), v->pref_block);
	memcpy(AT(w, px_vol, name), v->name, strnlen(v->name, PX_NAME_MAX - 1));
}

int proxy_wire_decode_vols(const void *msg, size_t len, struct pxm_vols *out, const char **why)
{
	int rc = get_hdr(msg, len, PX_VOLS, PX_F_FIRST | PX_F_LAST | PX_F_SHELF_MASK,
			 sizeof(struct px_vols), &out->flags, why);

	if (rc < 0)
		return rc;
	out->count = get_le32(CAT(msg, px_vols, count));
	out->gen = get_le32(CAT(msg, px_vols, gen));
	out->server_session = get_le64(CAT(msg, px_vols, server_session));
	out->vols = (const uint8_t *)msg + sizeof(struct px_vols);
	if (out->server_session == 0)
		return bad(why, "session id 0");
	if (out->count > PX_VOLS_PER_MSG)
		return bad(why, "too many volumes in one message");
	if (len != sizeof(struct px_vols) + (size_t)out->count * sizeof(struct px_vol))
		return bad(why, "length does not match the count");
	return 0;
}

static bool pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int proxy_wire_vol_get(const struct pxm_vols *v, unsigned i, struct px_vol *out, const char **why)
{
	const uint8_t *w;

	if (i >= v->count)
		return bad(why, "volume index out of range");
	w = v->vols + (size_t)i * sizeof(struct px_vol);
	out->id = get_le32(CAT(w, px_vol, id));
	out->flags = get_le32(CAT(w, px_vol, flags));
	out->size = get_le64(CAT(w, px_vol, size));
	out->min_block = get_le32(CAT(w, px_vol, min_block));
	out->pref_block = get_le32(CAT(w, px_vol, pref_block));
	memcpy(out->name, CAT(w, px_vol, name), sizeof(out->name));
	if (!proxy_wire_name_ok(out->name, sizeof(out->name)))
		return bad(why, "bad volume name");
	/* Zero padding after the name: no hidden bytes. */
	for (size_t k = strlen(out->name); k < sizeof(out->name); k++)
		if (out->name[k])
			return bad(why, "volume name not zero-padded");
	if (out->flags & ~PXV_ALL)
		return bad(why, "unknown volume flags");
	if (out->size > INT64_MAX)
		return bad(why, "volume size out of range");
	if (!pow2(out->min_block) || out->min_block > 65536 || !pow2(out->pref_block) ||
	    out->pref_block < out->min_block || out->pref_block > (32u << 20))
		return bad(why, "bad block sizes");
	if (out->size % out->min_block)
		return bad(why, "size not a multiple of the block size");
	return 0;
}
