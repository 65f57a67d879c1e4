/* Record formats of the mailbox and of heartbeats: 64 bytes, little
 * endian, CRC32C over the first 60. Layout (offsets in bytes):
 *
 *   0 magic u32   4 version u16   6 kind u16
 *   alive/heartbeat:  8 node[16]  24 boot_gen  32 counter  40 time_ns
 *                     48 acked_gen  56 state u8  57 mirror u8  58 flags u16
 *   mark:             8 taker[16]  24 owner[16]  40 gen  48 time_ns
 *                     56 set u8  57 replay u8  58 flags u16
 *   lease:            8 node[16]  24 boot_gen  32 counter  40 lease_ms u32
 *                     44 fence_margin_ms u32  48 flags u16  50..59 zero
 *  60 crc32c u32
 *
 * The mailbox's liveness sector holds two records: the liveness record at
 * 0 and, at 64, its lease record (the writer's lease_ms, fence_margin_ms
 * and whether it reads its own mailbox with O_DIRECT), written in the same
 * sector write and tied to it by node, boot_gen and counter. The liveness
 * record's 60 bytes were full; a second record keeps version 1 readable
 * both ways: a node of the previous layout ignores bytes past 64 (and
 * zeroes them when it writes), and its sector reads here as a liveness
 * record with no lease published (lease_ms 0).
 *
 * The mark's replay byte (the taker replayed the owner's log at gen: the
 * owner's proof that it may drop its own) was a zero pad byte: a taker of
 * the previous layout writes 0 (MONITOR_MARK_REPLAY_UNSAID, taken as
 * replayed, as before), and a reader of it ignores the byte.
 *
 * The rule: a decoder trusts nothing it reads (another host, a torn
 * write): magic, CRC, version, kind and every enum and id are checked
 * before a field is used. Any change of a record's layout bumps
 * MONITOR_REC_VERSION; a new record in a byte range no reader looked at
 * does not.
 */
#define LOG_MODULE "monitor"
#include "monitor/monitor_int.h"

#include <errno.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/crc32c.h"

#define REC_MAGIC  0x4d425544u /* "DUBM" read as little endian bytes */
#define REC_CRC_AT 60u

#define LEASE_FLAG_DIRECT 0x1u /* the writer reads its own mailbox with O_DIRECT */

static void put_id(uint8_t *p, const char *id)
{
	size_t n = strnlen(id, MONITOR_ID_MAX - 1);

	memset(p, 0, MONITOR_ID_MAX);
	memcpy(p, id, n);
}

/* An id is stored NUL-padded; one that fills all 16 bytes is foreign. */
static int get_id(const uint8_t *p, char *id)
{
	if (memchr(p, 0, MONITOR_ID_MAX) == NULL)
		return -EINVAL;
	memcpy(id, p, MONITOR_ID_MAX);
	return 0;
}

/* Every record starts blank with an id at offset 8; seal() ends it. */
static uint8_t *begin(void *buf, const char *id)
{
	uint8_t *b = buf;

	memset(b, 0, MONITOR_REC_SIZE);
	put_id(b + 8, id);
	return b;
}

static void seal(uint8_t *b, uint16_t kind)
{
	put_le32(b, REC_MAGIC);
	put_le16(b + 4, MONITOR_REC_VERSION);
	put_le16(b + 6, kind);
	put_le32(b + REC_CRC_AT, crc32c(0, b, REC_CRC_AT));
}

/* Common checks of a record header; the order tells a blank sector from a
 * torn one from a newer format. */
static int check(const uint8_t *b, uint16_t kind)
{
	static const uint8_t zero[MONITOR_REC_SIZE];

	if (memcmp(b, zero, sizeof(zero)) == 0)
		return -ENODATA;
	if (get_le32(b) != REC_MAGIC)
		return -EBADMSG;
	if (get_le32(b + REC_CRC_AT) != crc32c(0, b, REC_CRC_AT))
		return -EBADMSG;
	if (get_le16(b + 4) != MONITOR_REC_VERSION)
		return -EPROTO;
	if (get_le16(b + 6) != kind)
		return -EINVAL;
	return 0;
}

void monitor_alive_encode(const struct monitor_alive *a, enum monitor_rec_kind kind, void *buf)
{
	uint8_t *b = begin(buf, a->node);

	put_le64(b + 24, a->boot_gen);
	put_le64(b + 32, a->counter);
	put_le64(b + 40, a->time_ns);
	put_le64(b + 48, a->acked_gen);
	b[56] = (uint8_t)a->state;
	b[57] = (uint8_t)a->mirror;
	seal(b, (uint16_t)kind);
}

int monitor_alive_decode(const void *buf, enum monitor_rec_kind kind, struct monitor_alive *a)
{
	const uint8_t *b = buf;
	int rc = check(b, (uint16_t)kind);

	if (rc < 0)
		return rc;
	if (b[56] >= HA_STATE_COUNT || b[57] >= HA_MIRROR_COUNT)
		return -EINVAL;
	if (get_id(b + 8, a->node) < 0)
		return -EINVAL;
	a->boot_gen = get_le64(b + 24);
	a->counter = get_le64(b + 32);
	a->time_ns = get_le64(b + 40);
	a->acked_gen = get_le64(b + 48);
	a->state = (enum ha_state)b[56];
	a->mirror = (enum ha_mirror)b[57];
	return 0;
}

void monitor_alive_sector_encode(const struct monitor_alive *a, void *buf)
{
	uint8_t *b;

	monitor_alive_encode(a, MONITOR_REC_ALIVE, buf);
	b = begin((uint8_t *)buf + MONITOR_REC_SIZE, a->node);
	put_le64(b + 24, a->boot_gen);
	put_le64(b + 32, a->counter);
	put_le32(b + 40, a->lease_ms);
	put_le32(b + 44, a->fence_margin_ms);
	put_le16(b + 48, a->mbox_direct ? LEASE_FLAG_DIRECT : 0);
	seal(b, MONITOR_REC_LEASE);
}

/* The lease record must belong to the same write as the liveness record:
 * one that does not (torn, or stale bytes of another writer) makes the
 * whole read prove nothing, like a torn record. A blank one is a writer
 * of the previous layout: no lease published. */
int monitor_alive_sector_decode(const void *buf, struct monitor_alive *a)
{
	const uint8_t *b = (const uint8_t *)buf + MONITOR_REC_SIZE;
	char node[MONITOR_ID_MAX];
	int rc = monitor_alive_decode(buf, MONITOR_REC_ALIVE, a);

	if (rc < 0)
		return rc;
	a->lease_ms = a->fence_margin_ms = 0;
	a->mbox_direct = false;
	rc = check(b, MONITOR_REC_LEASE);
	if (rc == -ENODATA)
		return 0;
	if (rc < 0)
		return rc == -EPROTO ? rc : -EBADMSG;
	if (get_id(b + 8, node) < 0 || strcmp(node, a->node) != 0 ||
	    get_le64(b + 24) != a->boot_gen || get_le64(b + 32) != a->counter)
		return -EBADMSG;
	a->lease_ms = get_le32(b + 40);
	a->fence_margin_ms = get_le32(b + 44);
	a->mbox_direct = (get_le16(b + 48) & LEASE_FLAG_DIRECT) != 0;
	return 0;
}

void monitor_mark_encode(const struct monitor_mark *m, void *buf)
{
	uint8_t *b = begin(buf, m->taker);

	put_id(b + 24, m->owner);
	put_le64(b + 40, m->gen);
	put_le64(b + 48, m->time_ns);
	b[56] = m->set ? 1 : 2;
	b[57] = (uint8_t)m->replay;
	seal(b, MONITOR_REC_MARK);
}

int monitor_mark_decode(const void *buf, struct monitor_mark *m)
{
	const uint8_t *b = buf;
	int rc = check(b, MONITOR_REC_MARK);

	if (rc < 0)
		return rc;
	if ((b[56] != 1 && b[56] != 2) || b[57] > MONITOR_MARK_REPLAY_DONE)
		return -EINVAL;
	if (get_id(b + 8, m->taker) < 0 || get_id(b + 24, m->owner) < 0)
		return -EINVAL;
	m->gen = get_le64(b + 40);
	m->time_ns = get_le64(b + 48);
	m->set = b[56] == 1;
	m->replay = (enum monitor_mark_replay)b[57];
	return 0;
}

static const char *const state_names[HA_STATE_COUNT] = {
    "up", "takeover", "taken_over", "waiting_for_giveback", "giving_back",
};

static const char *const mirror_names[HA_MIRROR_COUNT] = {
    "off",
    "in_sync",
    "degraded",
    "resyncing",
};

const char *monitor_ha_state_name(enum ha_state s)
{
	return (unsigned)s < HA_STATE_COUNT ? state_names[s] : "?";
}

const char *monitor_ha_mirror_name(enum ha_mirror m)
{
	return (unsigned)m < HA_MIRROR_COUNT ? mirror_names[m] : "?";
}
