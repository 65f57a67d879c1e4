/* The log format (mirror_int.h) and everything that reads an image:
 * header, record checks, half scans and replay.
 *
 * Rule: no state, no I/O, no allocation, and no trust in the bytes: the
 * same code reads the node's own log, the partner image, a file handed to
 * tools/duet-nvram and a fuzzer's input. Every field goes through
 * common/byteorder.h, and every length is checked against the room left
 * before anything is read past it. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/crc32c.h"
#include "common/log.h"

/* ---- volume ids ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int mirror_vol_id_from_uuid(const char *uuid, struct mirror_vol_id *out)
{
	unsigned n = 0;

	if (!uuid || strlen(uuid) != 36)
		return -EINVAL;
	for (unsigned i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (uuid[i] != '-')
				return -EINVAL;
			i++;
			continue;
		}
		int hi = hexval(uuid[i]), lo = hexval(uuid[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out->b[n++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return 0;
}

const char *mirror_vol_id_format(const struct mirror_vol_id *id, char *buf)
{
	const uint8_t *b = id->b;

	snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
	return buf;
}

const char *mirror_stop_name(enum mirror_stop s)
{
	static const char *const names[] = {
	    [MIRROR_STOP_NONE] = "none",	  [MIRROR_STOP_END] = "end of half",
	    [MIRROR_STOP_EMPTY] = "empty",	  [MIRROR_STOP_INVALID] = "invalid header",
	    [MIRROR_STOP_CRC] = "crc mismatch",	  [MIRROR_STOP_OTHER_LOG] = "older log",
	    [MIRROR_STOP_SEQ] = "sequence break", [MIRROR_STOP_GAP] = "missing sequence",
	    [MIRROR_STOP_APPLY] = "apply failed",
	};
	return (unsigned)s < sizeof(names) / sizeof(names[0]) && names[s] ? names[s] : "?";
}

/* ---- header ---- */

uint64_t mirror_log_half_size_for(uint64_t size)
{
	if (size < MIRROR_LOG_HDR_SIZE)
		return 0;
	return ((size - MIRROR_LOG_HDR_SIZE) / 2) & ~(uint64_t)4095;
}

#define HO(f) offsetof(struct mirror_log_header, f)

void mirror_log_header_encode(void *dst, const struct mirror_log_header *h)
{
	uint8_t b[MIRROR_LOG_SLOT_BYTES];

	put_le32(b + HO(magic), h->magic);
	put_le32(b + HO(crc), 0);
	put_le16(b + HO(major), h->major);
	put_le16(b + HO(minor), h->minor);
	put_le32(b + HO(hdr_size), h->hdr_size);
	put_le64(b + HO(gen), h->gen);
	put_le64(b + HO(log_size), h->log_size);
	put_le64(b + HO(half_size), h->half_size);
	put_le64(b + HO(log_id), h->log_id);
	put_le64(b + HO(cp_seq), h->cp_seq);
	put_le32(b + HO(flags), h->flags);
	put_le32(b + HO(rec_align), h->rec_align);
	memcpy(b + HO(node), h->node, sizeof(h->node));
	put_le64(b + HO(created), h->created);
	memcpy(b + HO(boot_id), h->boot_id, sizeof(h->boot_id));
	memcpy(b + HO(reserved), h->reserved, sizeof(h->reserved));
	put_le32(b + HO(crc), crc32c(0, b, sizeof(b)));
	/* One copy into the slot, as before the encoder existed. */
	memcpy(dst, b, sizeof(b));
}

void mirror_log_header_decode(const void *src, struct mirror_log_header *h)
{
	const uint8_t *b = src;

	h->magic = get_le32(b + HO(magic));
	h->crc = get_le32(b + HO(crc));
	h->major = get_le16(b + HO(major));
	h->minor = get_le16(b + HO(minor));
	h->hdr_size = get_le32(b + HO(hdr_size));
	h->gen = get_le64(b + HO(gen));
	h->log_size = get_le64(b + HO(log_size));
	h->half_size = get_le64(b + HO(half_size));
	h->log_id = get_le64(b + HO(log_id));
	h->cp_seq = get_le64(b + HO(cp_seq));
	h->flags = get_le32(b + HO(flags));
	h->rec_align = get_le32(b + HO(rec_align));
	memcpy(h->node, b + HO(node), sizeof(h->node));
	h->created = get_le64(b + HO(created));
	memcpy(h->boot_id, b + HO(boot_id), sizeof(h->boot_id));
	memcpy(h->reserved, b + HO(reserved), sizeof(h->reserved));
}

/* Whether a header (CRC already checked) describes a layout that fits in
 * @p size bytes: the partner writes the whole image, header included, so
 * its fields are hostile. Checked arithmetic: half_size = 2^63 must not wrap
 * hdr_size + 2 * half_size back into range. */
bool mirror_log_geometry_ok(const struct mirror_log_header *h, size_t size)
{
	uint64_t halves, end;

	if (h->hdr_size != MIRROR_LOG_HDR_SIZE || h->rec_align != MIRROR_REC_ALIGN ||
	    h->half_size < 4096 || h->half_size % 4096 || h->log_size > size)
		return false;
	if (__builtin_mul_overflow(h->half_size, (uint64_t)2, &halves) ||
	    __builtin_add_overflow((uint64_t)h->hdr_size, halves, &end))
		return false;
	return end <= h->log_size;
}

/* Check the slot at @p src and decode it into @p h. */
static int slot_check(const uint8_t *src, struct mirror_log_header *h)
{
	uint8_t tmp[MIRROR_LOG_SLOT_BYTES];

	mirror_log_header_decode(src, h);
	if (h->magic != MIRROR_LOG_MAGIC)
		return -ENODATA;
	if (h->major != MIRROR_LOG_VERSION_MAJOR)
		return -EPROTO;
	memcpy(tmp, src, sizeof(tmp));
	put_le32(tmp + HO(crc), 0);
	if (crc32c(0, tmp, sizeof(tmp)) != h->crc)
		return -EINVAL;
	return 0;
}

int mirror_log_header_read(const void *img, size_t size, struct mirror_log_header *out,
			   unsigned *slot)
{
	struct mirror_log_header h[2];
	int rc[2];
	int best = -1;

	if (size < MIRROR_LOG_HDR_SIZE)
		return -EINVAL;
	for (unsigned i = 0; i < 2; i++) {
		rc[i] = slot_check((const uint8_t *)img + i * MIRROR_LOG_SLOT_STRIDE, &h[i]);
		if (rc[i] == 0 && (best < 0 || h[i].gen > h[best].gen))
			best = (int)i;
	}
	if (best < 0) {
		if (rc[0] == -EPROTO || rc[1] == -EPROTO) {
			unsigned v = rc[0] == -EPROTO ? h[0].major : h[1].major;
			LOG_ERROR("NVRAM log format version %u is not supported (this is %u.%u)", v,
				  MIRROR_LOG_VERSION_MAJOR, MIRROR_LOG_VERSION_MINOR);
			return -EPROTO;
		}
		return rc[0] == -ENODATA && rc[1] == -ENODATA ? -ENODATA : -EINVAL;
	}
	const struct mirror_log_header *b = &h[best];
	if (!mirror_log_geometry_ok(b, size))
		return -EBADMSG; /* no log line: polled (takeover checks); callers say it */
	*out = *b;
	if (slot)
		*slot = (unsigned)best;
	return 0;
}

unsigned mirror_log_header_write(void *img, const struct mirror_log_header *h, unsigned cur_slot)
{
	unsigned slot = cur_slot ^ 1u;

	mirror_log_header_encode((uint8_t *)img + slot * MIRROR_LOG_SLOT_STRIDE, h);
	return slot;
}

int mirror_image_info(const void *img, size_t size, struct mirror_image_info *info)
{
	struct mirror_log_header h;
	unsigned slot;
	int rc = mirror_log_header_read(img, size, &h, &slot);

	if (rc < 0)
		return rc;
	memset(info, 0, sizeof(*info));
	info->version_major = h.major;
	info->version_minor = h.minor;
	info->slot = slot;
	info->gen = h.gen;
	info->log_size = h.log_size;
	info->half_size = h.half_size;
	info->half_off[0] = mirror_log_half_off(&h, 0);
	info->half_off[1] = mirror_log_half_off(&h, 1);
	info->log_id = h.log_id;
	info->cp_seq = h.cp_seq;
	info->image_valid = h.flags & MIRROR_LOG_F_IMAGE_VALID;
	info->local_sync = h.flags & MIRROR_LOG_F_LOCAL_SYNC;
	memcpy(info->boot_id.b, h.boot_id, sizeof(h.boot_id));
	memcpy(info->node, h.node, sizeof(h.node));
	info->node[16] = '\0';
	info->created = h.created;
	return 0;
}

/* ---- records ---- */

#define RO(f) offsetof(struct mirror_rec_header, f)

void mirror_rec_encode_header(void *dst, uint64_t seq, uint64_t log_id,
			      const struct mirror_vol_id *vol, uint16_t type, uint16_t flags,
			      uint64_t offset, uint64_t length, uint32_t data_len)
{
	uint8_t *b = dst;

	put_le32(b + RO(magic), MIRROR_REC_MAGIC);
	put_le32(b + RO(crc), 0);
	put_le64(b + RO(seq), seq);
	put_le64(b + RO(log_id), log_id);
	memcpy(b + RO(vol), vol->b, sizeof(vol->b));
	put_le64(b + RO(offset), offset);
	put_le64(b + RO(length), length);
	put_le32(b + RO(data_len), data_len);
	put_le16(b + RO(type), type);
	put_le16(b + RO(flags), flags);
}

void mirror_rec_seal(void *dst, const void *data, uint32_t data_len)
{
	uint8_t *b = dst;
	uint64_t len = mirror_rec_len(data_len);
	uint32_t crc;

	if (data_len)
		memcpy(b + MIRROR_REC_HDR_SIZE, data, data_len);
	if (len > MIRROR_REC_HDR_SIZE + (uint64_t)data_len)
		memset(b + MIRROR_REC_HDR_SIZE + data_len, 0, len - MIRROR_REC_HDR_SIZE - data_len);
	crc = crc32c(0, b, MIRROR_REC_HDR_SIZE);
	crc = crc32c(crc, data, data_len); /* the source: hot in cache */
	put_le32(b + RO(crc), crc);
}

uint64_t mirror_rec_encode(void *dst, uint64_t seq, uint64_t log_id,
			   const struct mirror_vol_id *vol, uint16_t type, uint16_t flags,
			   uint64_t offset, uint64_t length, const void *data, uint32_t data_len)
{
	mirror_rec_encode_header(dst, seq, log_id, vol, type, flags, offset, length, data_len);
	mirror_rec_seal(dst, data, data_len);
	return mirror_rec_len(data_len);
}

void mirror_rec_header_decode(const void *src, struct mirror_rec_header *r)
{
	const uint8_t *b = src;

	r->magic = get_le32(b + RO(magic));
	r->crc = get_le32(b + RO(crc));
	r->seq = get_le64(b + RO(seq));
	r->log_id = get_le64(b + RO(log_id));
	memcpy(r->vol, b + RO(vol), sizeof(r->vol));
	r->offset = get_le64(b + RO(offset));
	r->length = get_le64(b + RO(length));
	r->data_len = get_le32(b + RO(data_len));
	r->type = get_le16(b + RO(type));
	r->flags = get_le16(b + RO(flags));
}

/* Rule: the header is read out of the image exactly once, into @p out;
 * every check and every later use (advance, lengths, where to write) is of
 * that copy, never of the image again, which the partner may be writing. */
enum mirror_stop mirror_rec_read(const void *rec, uint64_t room, uint64_t log_id,
				 uint64_t half_size, struct mirror_rec_header *out)
{
	uint8_t tmp[MIRROR_REC_HDR_SIZE];
	struct mirror_rec_header r;
	uint64_t end;
	uint32_t crc;

	if (room < MIRROR_REC_HDR_SIZE)
		return MIRROR_STOP_END;
	memcpy(tmp, rec, sizeof(tmp));
	mirror_rec_header_decode(tmp, &r);
	if (r.magic != MIRROR_REC_MAGIC)
		return MIRROR_STOP_EMPTY;
	if (r.type < MIRROR_REC_WRITE || r.type > MIRROR_REC_TRIM || r.length == 0 ||
	    __builtin_add_overflow(r.offset, r.length, &end) || r.data_len > half_size ||
	    (r.type == MIRROR_REC_WRITE ? r.data_len != r.length : r.data_len != 0) ||
	    mirror_rec_len(r.data_len) > room || r.seq == 0)
		return MIRROR_STOP_INVALID;
	put_le32(tmp + RO(crc), 0);
	crc = crc32c(0, tmp, sizeof(tmp));
	crc = crc32c(crc, (const uint8_t *)rec + MIRROR_REC_HDR_SIZE, r.data_len);
	if (crc != r.crc)
		return MIRROR_STOP_CRC;
	if (r.log_id != log_id)
		return MIRROR_STOP_OTHER_LOG;
	*out = r;
	return MIRROR_STOP_NONE;
}

enum mirror_stop mirror_rec_check(const void *rec, uint64_t room, uint64_t log_id,
				  uint64_t half_size)
{
	struct mirror_rec_header r;

	return mirror_rec_read(rec, room, log_id, half_size, &r);
}

/* The checked copy @p r of a record header as replay and dump see it. */
static void record_decode(const struct mirror_rec_header *r, unsigned half, uint64_t log_off,
			  struct mirror_record *out)
{
	out->seq = r->seq;
	memcpy(out->vol.b, r->vol, sizeof(out->vol.b));
	out->offset = r->offset;
	out->length = r->length;
	out->data_len = r->data_len;
	out->type = r->type;
	out->flags = r->flags;
	out->half = half;
	out->log_off = log_off;
	out->rec_len = mirror_rec_len(r->data_len);
}

/* The chain of a half: valid records from its start with consecutive
 * sequence numbers. What follows the chain is a stale record of an older
 * use of the half, zeros, or a torn record. */
static int scan_half(const uint8_t *img, const struct mirror_log_header *h, unsigned half,
		     mirror_record_fn fn, void *arg, struct mirror_half_scan *scan)
{
	uint64_t base = mirror_log_half_off(h, half);
	uint64_t p = 0;

	memset(scan, 0, sizeof(*scan));
	for (;;) {
		const uint8_t *r = img + base + p;
		struct mirror_rec_header rh;
		enum mirror_stop stop =
		    mirror_rec_read(r, h->half_size - p, h->log_id, h->half_size, &rh);
		struct mirror_record rec;

		if (stop == MIRROR_STOP_NONE) {
			record_decode(&rh, half, base + p, &rec);
			if (scan->records && rec.seq != scan->last_seq + 1)
				stop = MIRROR_STOP_SEQ;
		}
		if (stop != MIRROR_STOP_NONE) {
			scan->stop = stop;
			scan->stop_off = base + p;
			return 0;
		}
		if (fn) {
			int rc = fn(arg, &rec, rec.data_len ? r + MIRROR_REC_HDR_SIZE : NULL);
			if (rc < 0) {
				scan->stop = MIRROR_STOP_APPLY;
				scan->stop_off = base + p;
				return rc;
			}
		}
		if (!scan->records)
			scan->first_seq = rec.seq;
		scan->records++;
		scan->last_seq = rec.seq;
		p += rec.rec_len;
		scan->used = p;
	}
}

int mirror_image_scan(const void *img, size_t size, unsigned half, mirror_record_fn fn, void *arg,
		      struct mirror_half_scan *scan)
{
	struct mirror_log_header h;
	int rc = mirror_log_header_read(img, size, &h, NULL);

	if (rc < 0)
		return rc;
	if (half > 1)
		return -EINVAL;
	return scan_half(img, &h, half, fn, arg, scan);
}

/* ---- replay ---- */

int mirror_log_iter_init(struct mirror_log_iter *it, const void *img, size_t size, unsigned flags,
			 struct mirror_replay_stats *st)
{
	struct mirror_half_scan sc[2];
	int rc;

	memset(it, 0, sizeof(*it));
	memset(st, 0, sizeof(*st));
	it->img = img;
	it->size = size;
	it->st = st;
	rc = mirror_log_header_read(img, size, &it->h, NULL);
	if (rc < 0)
		return rc;
	st->cp_seq = it->h.cp_seq;
	st->image_valid = it->h.flags & MIRROR_LOG_F_IMAGE_VALID;
	if ((flags & MIRROR_REPLAY_REQUIRE_VALID) && !st->image_valid)
		return -ESTALE;
	for (unsigned i = 0; i < 2; i++) {
		scan_half(img, &it->h, i, NULL, NULL, &sc[i]);
		if (sc[i].records && sc[i].last_seq > st->max_seq)
			st->max_seq = sc[i].last_seq;
	}
	/* Live halves, the one whose chain starts first (older) first. */
	unsigned first = sc[1].records && (!sc[0].records || sc[1].first_seq < sc[0].first_seq);
	for (unsigned k = 0; k < 2; k++) {
		unsigned i = k ? first ^ 1 : first;
		if (sc[i].records && sc[i].last_seq > it->h.cp_seq) {
			it->half[it->n_halves] = i;
			it->live_bytes += sc[i].used;
			it->n_halves++;
		}
	}
	st->stop = MIRROR_STOP_END;
	return 0;
}

int mirror_log_iter_next(struct mirror_log_iter *it, struct mirror_record *rec, const void **data)
{
	struct mirror_replay_stats *st = it->st;

	while (!it->done && it->k < it->n_halves) {
		unsigned half = it->half[it->k];
		uint64_t base = mirror_log_half_off(&it->h, half);
		const uint8_t *r = it->img + base + it->pos;
		struct mirror_rec_header rh;
		enum mirror_stop stop = mirror_rec_read(r, it->h.half_size - it->pos, it->h.log_id,
							it->h.half_size, &rh);

		/* The chain of a half: consecutive sequence numbers from its
		 * first record; what follows is stale, empty or torn. */
		if (stop == MIRROR_STOP_NONE) {
			record_decode(&rh, half, base + it->pos, rec);
			if (it->pos && rec->seq != it->half_last + 1)
				stop = MIRROR_STOP_SEQ;
		}
		if (stop != MIRROR_STOP_NONE) {
			st->stop = stop;
			st->stop_off = base + it->pos;
			it->k++;
			it->pos = 0;
			continue;
		}
		it->pos += rec->rec_len;
		it->half_last = rec->seq;
		if (rec->seq <= it->h.cp_seq)
			continue;
		if (it->expect == 0) {
			if (rec->seq != it->h.cp_seq + 1)
				st->gap_at_start = true;
		} else if (rec->seq != it->expect) {
			/* The previous half's chain ended early (torn) or this
			 * half does not follow it: stop at the first hole. */
			if (st->stop != MIRROR_STOP_CRC && st->stop != MIRROR_STOP_INVALID) {
				st->stop = MIRROR_STOP_GAP;
				st->stop_off = rec->log_off;
			}
			it->done = true;
			break;
		}
		it->expect = rec->seq + 1;
		*data = rec->data_len ? r + MIRROR_REC_HDR_SIZE : NULL;
		return 1;
	}
	it->done = true;
	return 0;
}

void mirror_log_iter_account(struct mirror_log_iter *it, const struct mirror_record *rec)
{
	struct mirror_replay_stats *st = it->st;

	if (!st->records)
		st->first_seq = rec->seq;
	st->records++;
	st->bytes += rec->data_len;
	st->last_seq = rec->seq;
}

int mirror_replay(const void *img, size_t size, unsigned flags, mirror_record_fn apply, void *arg,
		  struct mirror_replay_stats *st)
{
	struct mirror_replay_stats local;
	struct mirror_log_iter it;
	struct mirror_record rec;
	const void *data;
	int rc;

	if (!st)
		st = &local;
	rc = mirror_log_iter_init(&it, img, size, flags, st);
	if (rc < 0)
		return rc;
	while (mirror_log_iter_next(&it, &rec, &data) > 0) {
		rc = apply ? apply(arg, &rec, data) : 0;
		if (rc < 0) {
			st->stop = MIRROR_STOP_APPLY;
			st->stop_off = rec.log_off;
			return rc;
		}
		mirror_log_iter_account(&it, &rec);
		it.done_bytes += rec.rec_len;
	}
	if (st->gap_at_start)
		LOG_WARN("NVRAM replay: the first live record is %llu, expected %llu",
			 (unsigned long long)st->first_seq, (unsigned long long)st->cp_seq + 1);
	return 0;
}

/* ---- which image is current ---- */

void mirror_image_stamp_take(const void *img, size_t size, struct mirror_image_stamp *out)
{
	struct mirror_log_header h;

	memset(out, 0, sizeof(*out));
	if (mirror_log_header_read(img, size, &h, NULL) < 0)
		return;
	out->present = true;
	out->log_id = h.log_id;
	out->gen = h.gen;
}

const char *mirror_image_trust_name(enum mirror_image_trust t)
{
	static const char *const names[] = {
	    [MIRROR_IMAGE_CURRENT] = "current",	      [MIRROR_IMAGE_NOTHING] = "nothing to replay",
	    [MIRROR_IMAGE_INCOMPLETE] = "incomplete", [MIRROR_IMAGE_STALE] = "stale",
	    [MIRROR_IMAGE_BAD] = "unreadable",
	};
	return (unsigned)t < sizeof(names) / sizeof(names[0]) ? names[t] : "?";
}

enum mirror_image_trust mirror_image_judge(const void *img, size_t size,
					   const struct mirror_image_stamp *at_open, bool scan,
					   char *why, size_t len)
{
	struct mirror_replay_stats st;
	struct mirror_log_header h;
	char scratch[8];
	int rc = mirror_log_header_read(img, size, &h, NULL);
	bool valid, same;

	if (!why) {
		why = scratch;
		len = sizeof(scratch);
	}
	if (rc == -ENODATA) {
		snprintf(why, len, "no header: the partner never wrote into this image");
		return MIRROR_IMAGE_NOTHING;
	}
	if (rc == -EBADMSG) {
		snprintf(why, len,
			 "damaged: impossible geometry in its header (corrupt or forged)");
		return MIRROR_IMAGE_BAD;
	}
	if (rc < 0) {
		snprintf(why, len, "header unreadable: %s", strerror(-rc));
		return MIRROR_IMAGE_BAD;
	}
	valid = h.flags & MIRROR_LOG_F_IMAGE_VALID;
	same = at_open && at_open->present && at_open->log_id == h.log_id && at_open->gen == h.gen;
	if (valid && same && at_open->this_boot) {
		/* An earlier run saw it current in this boot: the page cache
		 * kept every byte it held, a power loss would have changed
		 * the boot. */
		snprintf(why, len,
			 "complete: log %016llx gen %llu, marked in sync before this process "
			 "started, in this boot (the page cache kept it)",
			 (unsigned long long)h.log_id, (unsigned long long)h.gen);
		return MIRROR_IMAGE_CURRENT;
	}
	if (valid && !same) {
		snprintf(why, len, "complete: log %016llx gen %llu, marked in sync in this run",
			 (unsigned long long)h.log_id, (unsigned long long)h.gen);
		return MIRROR_IMAGE_CURRENT;
	}
	memset(&st, 0, sizeof(st));
	rc = scan ? mirror_replay(img, size, 0, NULL, NULL, &st) : 0;
	if (rc < 0) {
		snprintf(why, len, "unreadable: %s", strerror(-rc));
		return MIRROR_IMAGE_BAD;
	}
	if (scan && st.records == 0) {
		snprintf(why, len,
			 "no record past checkpoint %llu (log %016llx): nothing to replay",
			 (unsigned long long)h.cp_seq, (unsigned long long)h.log_id);
		return MIRROR_IMAGE_NOTHING;
	}
	if (!valid) {
		snprintf(why, len, "incomplete: log %016llx gen %llu is not marked in sync",
			 (unsigned long long)h.log_id, (unsigned long long)h.gen);
		return MIRROR_IMAGE_INCOMPLETE;
	}
	snprintf(why, len,
		 "stale: log %016llx gen %llu was marked in sync by an earlier run of this node, "
		 "not since it started, and not seen in sync since this host booted",
		 (unsigned long long)h.log_id, (unsigned long long)h.gen);
	return MIRROR_IMAGE_STALE;
}
