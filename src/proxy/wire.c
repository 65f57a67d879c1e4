/* Encoding and structural checks of the proxy's messages (wire.h). A
 * message from the partner is never trusted: the decoders read only within
 * the given length and refuse anything that does not add up. */
#define LOG_MODULE "proxy"
#include "proxy/wire.h"

#include <endian.h>
#include <errno.h>
#include <string.h>

#include "nbd/nbd.h"

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
	struct px_hdr h = {htole32(PX_MAGIC), htole16(type), htole16(flags)};

	memcpy(buf, &h, sizeof(h));
}

/* Check the header of @p msg against @p type and the allowed @p flags. */
static int get_hdr(const void *msg, size_t len, uint16_t type, uint16_t allowed, size_t min,
		   uint16_t *flags, const char **why)
{
	struct px_hdr h;

	if (len < sizeof(h) || len < min)
		return bad(why, "message too short");
	memcpy(&h, msg, sizeof(h));
	if (le32toh(h.magic) != PX_MAGIC)
		return bad(why, "bad magic");
	if (le16toh(h.type) != type)
		return bad(why, "unexpected type");
	*flags = le16toh(h.flags);
	if (*flags & ~allowed)
		return bad(why, "unknown flags");
	return 0;
}

unsigned px_msg_type(const void *msg, size_t len)
{
	struct px_hdr h;

	if (len < sizeof(h))
		return 0;
	memcpy(&h, msg, sizeof(h));
	if (le32toh(h.magic) != PX_MAGIC)
		return 0;
	return le16toh(h.type);
}

/* ---- BATCH ---- */

void px_batch_init(void *buf)
{
	memset(buf, 0, sizeof(struct px_batch));
	put_hdr(buf, PX_BATCH, 0);
}

size_t px_batch_add(void *buf, size_t off, const void *rec, size_t len)
{
	struct px_rec r = {htole32((uint32_t)len), 0};
	uint8_t *p = (uint8_t *)buf + off;
	size_t pad = PX_REC_SIZE(len) - sizeof(r) - len;

	memcpy(p, &r, sizeof(r));
	memcpy(p + sizeof(r), rec, len);
	memset(p + sizeof(r) + len, 0, pad);
	return off + PX_REC_SIZE(len);
}

void px_batch_finish(void *buf, uint32_t count)
{
	uint32_t c = htole32(count);

	memcpy((uint8_t *)buf + offsetof(struct px_batch, count), &c, sizeof(c));
}

int px_batch_walk(const void *msg, size_t len, void (*fn)(void *arg, const void *rec, size_t len),
		  void *arg, const char **why)
{
	const uint8_t *p = msg;
	struct px_batch b;
	uint16_t flags;
	size_t off = sizeof(b);
	int rc = get_hdr(msg, len, PX_BATCH, 0, sizeof(b), &flags, why);

	if (rc < 0)
		return rc;
	memcpy(&b, msg, sizeof(b));
	if (le32toh(b.count) == 0 || le32toh(b.count) > PX_BATCH_MAX)
		return bad(why, "batch count out of range");
	for (uint32_t i = 0; i < le32toh(b.count); i++) {
		struct px_rec r;
		size_t rl;
		if (len - off < sizeof(r))
			return bad(why, "batch truncated");
		memcpy(&r, p + off, sizeof(r));
		rl = le32toh(r.len);
		if (rl > len - off - sizeof(r) || PX_REC_SIZE(rl) > len - off)
			return bad(why, "batch record truncated");
		if (px_msg_type(p + off + sizeof(r), rl) == PX_BATCH)
			return bad(why, "batch in a batch");
		fn(arg, p + off + sizeof(r), rl);
		off += PX_REC_SIZE(rl);
	}
	if (off != len)
		return bad(why, "trailing bytes after the batch");
	return 0;
}

bool px_name_ok(const char *s, size_t max)
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

size_t px_encode_hello(void *buf, const struct pxm_hello *m)
{
	struct px_hello w;

	memset(&w, 0, sizeof(w));
	w.version = htole32(m->version);
	w.session = htole64(m->session);
	w.data_size = htole64(m->data_size);
	w.chunk = htole64(m->chunk);
	memcpy(buf, &w, sizeof(w));
	put_hdr(buf, PX_HELLO, 0);
	return sizeof(w);
}

int px_decode_hello(const void *msg, size_t len, struct pxm_hello *out, const char **why)
{
	struct px_hello w;
	uint16_t flags;
	int rc = get_hdr(msg, len, PX_HELLO, 0, sizeof(w), &flags, why);

	if (rc < 0)
		return rc;
	if (len != sizeof(w))
		return bad(why, "hello of the wrong size");
	memcpy(&w, msg, sizeof(w));
	out->version = le32toh(w.version);
	out->session = le64toh(w.session);
	out->data_size = le64toh(w.data_size);
	out->chunk = le64toh(w.chunk);
	if (out->version != PX_VERSION)
		return bad(why, "unsupported protocol version");
	if (out->session == 0)
		return bad(why, "session id 0");
	if (out->chunk == 0 || out->chunk > PX_CHUNK_MAX)
		return bad(why, "chunk size out of range");
	return 0;
}

/* ---- REQ ---- */

size_t px_encode_req(void *buf, const struct pxm_req *m, const void *data)
{
	struct px_req w;

	memset(&w, 0, sizeof(w));
	w.vol = htole32(m->vol);
	w.cmd = htole16(m->cmd);
	w.cflags = htole16(m->cflags);
	w.session = htole64(m->session);
	w.seq = htole64(m->seq);
	w.offset = htole64(m->offset);
	w.length = htole32(m->length);
	w.max_extents = htole32(m->max_extents);
	w.data_off = htole64(m->data_off);
	memcpy(buf, &w, sizeof(w));
	put_hdr(buf, PX_REQ, m->flags);
	if ((m->flags & PX_F_INLINE) && m->cmd == NBD_CMD_WRITE) {
		memcpy((uint8_t *)buf + sizeof(w), data, m->length);
		return sizeof(w) + m->length;
	}
	return sizeof(w);
}

int px_decode_req(const void *msg, size_t len, struct pxm_req *out, const char **why)
{
	struct px_req w;
	int rc = get_hdr(msg, len, PX_REQ, PX_F_RETRY | PX_F_NOEXEC | PX_F_INLINE, sizeof(w),
			 &out->flags, why);
	size_t data_len;

	if (rc < 0)
		return rc;
	memcpy(&w, msg, sizeof(w));
	out->vol = le32toh(w.vol);
	out->cmd = le16toh(w.cmd);
	out->cflags = le16toh(w.cflags);
	out->session = le64toh(w.session);
	out->seq = le64toh(w.seq);
	out->offset = le64toh(w.offset);
	out->length = le32toh(w.length);
	out->max_extents = le32toh(w.max_extents);
	out->data_off = le64toh(w.data_off);
	out->data = NULL;
	data_len = len - sizeof(w);
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
		out->data = (const uint8_t *)msg + sizeof(w);
	} else if (data_len != 0) {
		return bad(why, "trailing bytes");
	}
	return 0;
}

/* ---- REP ---- */

size_t px_encode_rep(void *buf, const struct pxm_rep *m)
{
	struct px_rep w;

	memset(&w, 0, sizeof(w));
	w.result = (int32_t)htole32((uint32_t)m->result);
	w.count = htole32(m->count);
	w.session = htole64(m->session);
	w.seq = htole64(m->seq);
	w.length = htole32(m->length);
	memcpy(buf, &w, sizeof(w));
	put_hdr(buf, PX_REP, m->flags);
	return sizeof(w);
}

void px_put_ext(void *buf, unsigned i, uint64_t length, uint32_t flags)
{
	struct px_ext e = {htole64(length), htole32(flags), 0};

	memcpy((uint8_t *)buf + sizeof(struct px_rep) + i * sizeof(e), &e, sizeof(e));
}

int px_decode_rep(const void *msg, size_t len, struct pxm_rep *out, const char **why)
{
	struct px_rep w;
	int rc = get_hdr(msg, len, PX_REP, PX_F_INLINE, sizeof(w), &out->flags, why);
	size_t data_len;

	if (rc < 0)
		return rc;
	memcpy(&w, msg, sizeof(w));
	out->result = (int32_t)le32toh((uint32_t)w.result);
	out->count = le32toh(w.count);
	out->session = le64toh(w.session);
	out->seq = le64toh(w.seq);
	out->length = le32toh(w.length);
	out->data = (const uint8_t *)msg + sizeof(w);
	data_len = len - sizeof(w);
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

void px_ext_get(const struct pxm_rep *r, unsigned i, uint64_t *length, uint32_t *flags)
{
	struct px_ext e;

	memcpy(&e, r->data + (size_t)i * sizeof(e), sizeof(e));
	*length = le64toh(e.length);
	*flags = le32toh(e.flags);
}

/* ---- VOLS ---- */

size_t px_encode_vols_hdr(void *buf, uint16_t flags, uint32_t count, uint64_t server_session)
{
	struct px_vols w;

	memset(&w, 0, sizeof(w));
	w.count = htole32(count);
	w.server_session = htole64(server_session);
	memcpy(buf, &w, sizeof(w));
	put_hdr(buf, PX_VOLS, flags);
	return sizeof(w) + (size_t)count * sizeof(struct px_vol);
}

void px_put_vol(void *buf, unsigned i, const struct px_vol *v)
{
	struct px_vol w;

	memset(&w, 0, sizeof(w));
	w.id = htole32(v->id);
	w.flags = htole32(v->flags);
	w.size = htole64(v->size);
	w.min_block = htole32(v->min_block);
	w.pref_block = htole32(v->pref_block);
	memcpy(w.name, v->name, strnlen(v->name, sizeof(w.name) - 1));
	memcpy((uint8_t *)buf + sizeof(struct px_vols) + (size_t)i * sizeof(w), &w, sizeof(w));
}

int px_decode_vols(const void *msg, size_t len, struct pxm_vols *out, const char **why)
{
	struct px_vols w;
	int rc = get_hdr(msg, len, PX_VOLS, PX_F_FIRST | PX_F_LAST, sizeof(w), &out->flags, why);

	if (rc < 0)
		return rc;
	memcpy(&w, msg, sizeof(w));
	out->count = le32toh(w.count);
	out->server_session = le64toh(w.server_session);
	out->vols = (const uint8_t *)msg + sizeof(w);
	if (out->server_session == 0)
		return bad(why, "session id 0");
	if (out->count > PX_VOLS_PER_MSG)
		return bad(why, "too many volumes in one message");
	if (len != sizeof(w) + (size_t)out->count * sizeof(struct px_vol))
		return bad(why, "length does not match the count");
	return 0;
}

static bool pow2(uint32_t v)
{
	return v && !(v & (v - 1));
}

int px_vol_get(const struct pxm_vols *v, unsigned i, struct px_vol *out, const char **why)
{
	struct px_vol w;

	if (i >= v->count)
		return bad(why, "volume index out of range");
	memcpy(&w, v->vols + (size_t)i * sizeof(w), sizeof(w));
	out->id = le32toh(w.id);
	out->flags = le32toh(w.flags);
	out->size = le64toh(w.size);
	out->min_block = le32toh(w.min_block);
	out->pref_block = le32toh(w.pref_block);
	memcpy(out->name, w.name, sizeof(out->name));
	if (!px_name_ok(out->name, sizeof(out->name)))
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
