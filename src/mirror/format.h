/* Private to src/mirror: the on-disk layout of an NVRAM log (docs/MIRROR.md).
 *
 * The same bytes are the partner's mirror image, so everything here is
 * position-independent: offsets are relative to the start of the file. */
#ifndef DUET_MIRROR_FORMAT_H
#define DUET_MIRROR_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mirror/mirror.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the NVRAM log format is little-endian; add byte swapping for this target"
#endif

#define NVR_HDR_MAGIC	    0x48564e44u /* "DNVH" */
#define NVR_REC_MAGIC	    0x52564e44u /* "DNVR" */
#define NVR_VERSION_MAJOR   1
#define NVR_VERSION_MINOR   0
#define NVR_HDR_SIZE	    4096u /* header area; half 0 starts here */
#define NVR_SLOT_STRIDE	    512u  /* header slot 0 at 0, slot 1 at 512 */
#define NVR_SLOT_BYTES	    128u  /* bytes of a slot covered by its CRC */
#define NVR_REC_ALIGN	    64u
#define NVR_REC_HDR	    64u
#define NVR_FLAG_IMG_VALID  1u /* an image holding this header is complete */
#define NVR_FLAG_LOCAL_SYNC 2u /* written with durability = local-sync */

/* One header slot. The valid slot with the higher gen is the header. */
struct nvr_header {
	uint32_t magic;
	uint32_t crc; /* CRC32C of the 128 slot bytes with this field 0 */
	uint16_t major;
	uint16_t minor;
	uint32_t hdr_size;  /* offset of half 0 */
	uint64_t gen;	    /* bumped on every header write */
	uint64_t log_size;  /* bytes of the file */
	uint64_t half_size; /* bytes of each half */
	uint64_t log_id;    /* random, new at creation and at every reset */
	uint64_t cp_seq;    /* records with seq <= cp_seq are in the volume files */
	uint32_t flags;	    /* NVR_FLAG_* */
	uint32_t rec_align;
	char node[16];	     /* node id that writes this log, NUL padded */
	uint64_t created;    /* unix seconds of the last reset */
	uint8_t boot_id[16]; /* kernel boot id of the writer (memory-mode logs
				are only trusted within the same boot) */
	uint8_t reserved[24];
};

/* Record header; data_len bytes of data follow, then padding to 64. */
struct nvr_record {
	uint32_t magic;
	uint32_t crc; /* CRC32C of this header with crc = 0, then of the data */
	uint64_t seq;
	uint64_t log_id;
	uint8_t vol[16];
	uint64_t offset; /* in the volume */
	uint64_t length; /* bytes of the volume the record covers */
	uint32_t data_len;
	uint16_t type;
	uint16_t flags;
};

_Static_assert(sizeof(struct nvr_header) == NVR_SLOT_BYTES, "header slot size");
_Static_assert(sizeof(struct nvr_record) == NVR_REC_HDR, "record header size");

static inline uint64_t nvr_align(uint64_t v)
{
	return (v + NVR_REC_ALIGN - 1) & ~(uint64_t)(NVR_REC_ALIGN - 1);
}

static inline uint64_t nvr_rec_len(uint32_t data_len)
{
	return nvr_align((uint64_t)NVR_REC_HDR + data_len);
}

static inline uint64_t nvr_half_off(const struct nvr_header *h, unsigned half)
{
	return h->hdr_size + (uint64_t)half * h->half_size;
}

/* Geometry for a log of @p size bytes: half size, rounded to 4 KiB. */
uint64_t nvr_half_size_for(uint64_t size);

/* Fill the CRC of @p h (in place). */
void nvr_header_seal(struct nvr_header *h);

/* Pick the newest valid header slot of an image. @return 0, -ENODATA (no
 * header at all), -EPROTO (unsupported major version) or -EINVAL (a header
 * whose geometry does not fit @p size). */
int nvr_header_read(const void *img, size_t size, struct nvr_header *out, unsigned *slot);

/* Write @p h into the image slot that does not hold the current header and
 * return that slot; the caller bumps h->gen first. */
unsigned nvr_header_write(void *img, const struct nvr_header *h, unsigned cur_slot);

/* Encode a record at @p dst: header, @p data (data_len bytes), zero
 * padding; computes the CRC. @return bytes written (nvr_rec_len). */
uint64_t nvr_record_encode(void *dst, uint64_t seq, uint64_t log_id,
			   const struct mirror_vol_id *vol, uint16_t type, uint16_t flags,
			   uint64_t offset, uint64_t length, const void *data, uint32_t data_len);

/* Check the record at @p rec, which has @p room bytes before its half ends.
 * @return MIRROR_STOP_NONE if it is whole and belongs to @p log_id. */
enum mirror_stop nvr_record_check(const void *rec, uint64_t room, uint64_t log_id,
				  uint64_t half_size);

/* Replay order over an image: live records (seq > cp_seq) in sequence
 * order, ending at the first torn, corrupt or missing one. */
struct nvr_iter {
	const uint8_t *img;
	size_t size;
	struct nvr_header h;
	unsigned half[2], n_halves, k; /* live halves, oldest first; current */
	uint64_t pos;		       /* in the current half */
	uint64_t half_last;	       /* seq of the previous record of the chain */
	uint64_t expect;	       /* next seq to apply; 0 before the first */
	bool done;
	uint64_t live_bytes, done_bytes; /* log bytes of live chains, applied so far */
	struct mirror_replay_stats *st;
};

/* @return 0, or an error as mirror_replay (st is reset and filled). */
int nvr_iter_init(struct nvr_iter *it, const void *img, size_t size, unsigned flags,
		  struct mirror_replay_stats *st);
/* @return 1 with the next record, or 0 at the end (st->stop says why). */
int nvr_iter_next(struct nvr_iter *it, struct mirror_record *rec, const void **data);
/* Count @p rec as applied in the stats. */
void nvr_iter_account(struct nvr_iter *it, const struct mirror_record *rec);

#endif
