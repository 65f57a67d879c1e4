/*
 * libFuzzer target for the NVRAM log format (src/mirror/image.c): the input
 * is an image (a node's own log, or the partner image the partner writes
 * over RDMA), read by everything that reads one: the header, the half
 * scans, mirror_image_info, mirror_image_judge and a replay into a fake
 * store that checks every record it is handed against the volume's bounds.
 *
 * Byte 0 (control), the rest is the image:
 *   bit 0  recompute the CRC of both header slots (so the fuzzer gets past
 *          the CRC to the geometry checks)
 *   bit 1  recompute the CRC of every record along each half's chain (so
 *          it gets to sequence and replay logic)
 *   bit 2  the image is padded with zeros to 64 KiB (room for two halves)
 * The fix-ups walk the input with their own bounds checks: they trust
 * nothing the parser is being tested on.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "mirror/mirror_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define VOL_BYTES (1u << 20)

struct fake_store {
	uint64_t records, bytes;
};

/* The fake store: a record must fit its volume and carry what it says. */
static int apply(void *arg, const struct mirror_record *r, const void *d)
{
	struct fake_store *fs = arg;
	volatile uint8_t sink = 0;

	if (!r)
		return 0;
	if (r->offset + r->length < r->offset)
		abort(); /* the parser let a wrapping range through */
	if (r->type == MIRROR_REC_WRITE) {
		if (!d || r->data_len != r->length)
			abort();
		/* Touch every byte handed over: ASan checks they are in the image. */
		for (uint32_t i = 0; i < r->data_len; i += 61)
			sink ^= ((const uint8_t *)d)[i];
		sink ^= ((const uint8_t *)d)[r->data_len - 1];
	} else if (d) {
		abort();
	}
	(void)sink;
	if (r->offset >= VOL_BYTES || r->length > VOL_BYTES - r->offset)
		return 0; /* the store would skip it: beyond the volume */
	fs->records++;
	fs->bytes += r->data_len;
	return 0;
}

static void fix_header(uint8_t *img, size_t size)
{
	for (unsigned i = 0; i < 2; i++) {
		size_t off = (size_t)i * MIRROR_LOG_SLOT_STRIDE;
		if (off + MIRROR_LOG_SLOT_BYTES > size)
			return;
		put_le32(img + off + 4, 0);
		put_le32(img + off + 4, crc32c(0, img + off, MIRROR_LOG_SLOT_BYTES));
	}
}

static void fix_records(uint8_t *img, size_t size)
{
	struct mirror_log_header h;

	if (mirror_log_header_read(img, size, &h, NULL) < 0)
		return;
	for (unsigned half = 0; half < 2; half++) {
		uint64_t base = mirror_log_half_off(&h, half), p = 0;
		while (p + MIRROR_REC_HDR_SIZE <= h.half_size) {
			uint8_t *r = img + base + p;
			uint32_t dl = get_le32(r + 56);
			uint64_t len = mirror_rec_len(dl);
			if (get_le32(r) != MIRROR_REC_MAGIC || len > h.half_size - p)
				break;
			put_le32(r + 4, 0);
			uint32_t crc = crc32c(0, r, MIRROR_REC_HDR_SIZE);
			put_le32(r + 4, crc32c(crc, r + MIRROR_REC_HDR_SIZE, dl));
			p += len;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool quiet;
	struct mirror_replay_stats st;
	struct mirror_image_info info;
	struct mirror_half_scan sc;
	struct mirror_image_stamp stamp;
	struct fake_store fs = {0};
	char why[256];

	if (!quiet) {
		log_set_level(LOG_LEVEL_ERROR);
		quiet = true;
	}
	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	size_t n = size - 1;
	size_t cap = (ctl & 4) && n < 65536 ? 65536 : n;
	/* Exactly the image's bytes: ASan sees a read one past its end. */
	uint8_t *img = malloc(cap ? cap : 1);
	if (!img)
		return 0;
	memcpy(img, data + 1, n);
	memset(img + n, 0, cap - n);
	if (ctl & 1)
		fix_header(img, cap);
	if (ctl & 2)
		fix_records(img, cap);

	mirror_image_info(img, cap, &info);
	for (unsigned half = 0; half < 3; half++)
		mirror_image_scan(img, cap, half, NULL, NULL, &sc);
	mirror_image_stamp_take(img, cap, &stamp);
	stamp.this_boot = ctl & 8;
	mirror_image_judge(img, cap, &stamp, true, why, sizeof(why));
	mirror_image_judge(img, cap, NULL, ctl & 16, why, sizeof(why));
	mirror_replay(img, cap, 0, apply, &fs, &st);
	mirror_replay(img, cap, MIRROR_REPLAY_REQUIRE_VALID, apply, &fs, &st);

	/* The engine's own walk too, record by record. */
	struct mirror_log_iter it;
	struct mirror_record rec;
	const void *d;
	if (mirror_log_iter_init(&it, img, cap, 0, &st) == 0)
		while (mirror_log_iter_next(&it, &rec, &d) > 0) {
			apply(&fs, &rec, d);
			mirror_log_iter_account(&it, &rec);
		}
	free(img);
	return 0;
}
