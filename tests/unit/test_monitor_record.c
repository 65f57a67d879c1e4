/* Unit tests of the monitor's record formats (mailbox sectors, heartbeat
 * slots): round trips, the CRC, and how blank, torn, foreign and newer
 * records are told apart; and of the [monitor] config keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "common/log.h"
#include "common/crc32c.h"
#include "monitor/monitor_int.h"

static struct monitor_alive sample_alive(void)
{
	struct monitor_alive a = {
	    .boot_gen = 7,
	    .counter = 123456789012ull,
	    .time_ns = 1700000000123456789ull,
	    .acked_gen = 3,
	    .state = HA_WAITING_FOR_GIVEBACK,
	    .mirror = HA_MIRROR_DEGRADED,
	};
	strcpy(a.node, "node-a");
	return a;
}

static void test_crc32c(void **state)
{
	(void)state;
	/* The check value of CRC-32C (Castagnoli). */
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
	assert_int_equal(crc32c(0, "", 0), 0);
	/* Incremental use gives the same answer. */
	assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}

static void test_alive_round_trip(void **state)
{
	struct monitor_alive a = sample_alive(), b;
	uint8_t buf[MONITOR_REC_SIZE];

	(void)state;
	monitor_alive_encode(&a, MONITOR_REC_ALIVE, buf);
	memset(&b, 0, sizeof(b));
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_ALIVE, &b), 0);
	assert_string_equal(b.node, "node-a");
	assert_int_equal(b.boot_gen, 7);
	assert_int_equal(b.counter, 123456789012ull);
	assert_int_equal(b.time_ns, 1700000000123456789ull);
	assert_int_equal(b.acked_gen, 3);
	assert_int_equal(b.state, HA_WAITING_FOR_GIVEBACK);
	assert_int_equal(b.mirror, HA_MIRROR_DEGRADED);
	/* Little endian on the wire, whatever the host. */
	assert_int_equal(buf[0], 'D');
	assert_int_equal(buf[24], 7);
	/* The same body as a heartbeat is another kind. */
	monitor_alive_encode(&a, MONITOR_REC_HEARTBEAT, buf);
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_HEARTBEAT, &b), 0);
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_ALIVE, &b), -EINVAL);
}

static void test_mark_round_trip(void **state)
{
	struct monitor_mark m = {.gen = 42, .time_ns = 99, .set = true}, n;
	uint8_t buf[MONITOR_REC_SIZE];

	(void)state;
	strcpy(m.taker, "b");
	strcpy(m.owner, "a");
	monitor_mark_encode(&m, buf);
	assert_int_equal(monitor_mark_decode(buf, &n), 0);
	assert_string_equal(n.taker, "b");
	assert_string_equal(n.owner, "a");
	assert_int_equal(n.gen, 42);
	assert_int_equal(n.time_ns, 99);
	assert_true(n.set);
	m.set = false;
	monitor_mark_encode(&m, buf);
	assert_int_equal(monitor_mark_decode(buf, &n), 0);
	assert_false(n.set);
	assert_int_equal(n.gen, 42);
	/* A mark is not a liveness record and the other way round. */
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_ALIVE, &(struct monitor_alive){0}),
			 -EINVAL);
}

/* Issue 16, finding 4: the mark says whether the taker replayed the
 * owner's log (byte 57, a zero pad byte before: an older taker's mark
 * decodes as "not said", which the owner takes as replayed). */
static void test_mark_replay_byte(void **state)
{
	struct monitor_mark m = {.gen = 7, .set = true, .replay = MONITOR_MARK_REPLAY_PENDING}, n;
	uint8_t buf[MONITOR_REC_SIZE];

	(void)state;
	strcpy(m.taker, "b");
	strcpy(m.owner, "a");
	monitor_mark_encode(&m, buf);
	assert_int_equal(buf[57], 1);
	assert_int_equal(monitor_mark_decode(buf, &n), 0);
	assert_int_equal(n.replay, MONITOR_MARK_REPLAY_PENDING);
	/* Kept when cleared. */
	m.set = false;
	m.replay = MONITOR_MARK_REPLAY_DONE;
	monitor_mark_encode(&m, buf);
	assert_int_equal(monitor_mark_decode(buf, &n), 0);
	assert_false(n.set);
	assert_int_equal(n.replay, MONITOR_MARK_REPLAY_DONE);
	/* The previous layout: zero there. */
	m.replay = MONITOR_MARK_REPLAY_UNSAID;
	monitor_mark_encode(&m, buf);
	assert_int_equal(buf[57], 0);
	assert_int_equal(monitor_mark_decode(buf, &n), 0);
	assert_int_equal(n.replay, MONITOR_MARK_REPLAY_UNSAID);
	/* An unknown value is a bad field. */
	m.replay = (enum monitor_mark_replay)3;
	monitor_mark_encode(&m, buf);
	assert_int_equal(monitor_mark_decode(buf, &n), -EINVAL);
}

static void test_blank_and_torn(void **state)
{
	struct monitor_alive a = sample_alive(), b;
	uint8_t buf[MONITOR_REC_SIZE], old[MONITOR_REC_SIZE], mix[MONITOR_REC_SIZE];
	struct monitor_mark m;

	(void)state;
	memset(buf, 0, sizeof(buf));
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_ALIVE, &b), -ENODATA);
	assert_int_equal(monitor_mark_decode(buf, &m), -ENODATA);

	/* Any single flipped bit is caught. */
	monitor_alive_encode(&a, MONITOR_REC_ALIVE, buf);
	for (size_t i = 0; i < MONITOR_REC_SIZE; i++) {
		for (int bit = 0; bit < 8; bit++) {
			uint8_t t[MONITOR_REC_SIZE];
			memcpy(t, buf, sizeof(t));
			t[i] ^= (uint8_t)(1u << bit);
			int rc = monitor_alive_decode(t, MONITOR_REC_ALIVE, &b);
			if (rc != -EBADMSG)
				fail_msg("flip of byte %zu bit %d: rc %d", i, bit, rc);
		}
	}

	/* A write torn between two versions of the record: the first half is
	 * new, the second half old. */
	monitor_alive_encode(&a, MONITOR_REC_ALIVE, old);
	a.counter++;
	a.time_ns += 50000000;
	monitor_alive_encode(&a, MONITOR_REC_ALIVE, buf);
	for (size_t cut = 1; cut < MONITOR_REC_SIZE; cut++) {
		memcpy(mix, buf, cut);
		memcpy(mix + cut, old + cut, sizeof(mix) - cut);
		int rc = monitor_alive_decode(mix, MONITOR_REC_ALIVE, &b);
		if (memcmp(mix, buf, sizeof(mix)) != 0 && memcmp(mix, old, sizeof(mix)) != 0 &&
		    rc != -EBADMSG)
			fail_msg("torn at %zu: rc %d", cut, rc);
	}

	/* A torn write over a blank sector. */
	memset(mix, 0, sizeof(mix));
	memcpy(mix, buf, 20);
	assert_int_equal(monitor_alive_decode(mix, MONITOR_REC_ALIVE, &b), -EBADMSG);

	/* Garbage. */
	memset(mix, 0xa5, sizeof(mix));
	assert_int_equal(monitor_alive_decode(mix, MONITOR_REC_ALIVE, &b), -EBADMSG);
}

/* Re-seal a record after changing a byte, as a newer or hostile writer would. */
static void reseal(uint8_t *buf)
{
	uint32_t crc = crc32c(0, buf, 60);

	buf[60] = (uint8_t)crc;
	buf[61] = (uint8_t)(crc >> 8);
	buf[62] = (uint8_t)(crc >> 16);
	buf[63] = (uint8_t)(crc >> 24);
}

static void test_foreign(void **state)
{
	struct monitor_alive a = sample_alive(), b;
	struct monitor_mark m = {.gen = 1, .set = true}, n;
	uint8_t buf[MONITOR_REC_SIZE];

	(void)state;
	monitor_alive_encode(&a, MONITOR_REC_ALIVE, buf);
	buf[4] = 2; /* version 2 */
	reseal(buf);
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_ALIVE, &b), -EPROTO);

	monitor_alive_encode(&a, MONITOR_REC_ALIVE, buf);
	buf[56] = HA_STATE_COUNT; /* no such state */
	reseal(buf);
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_ALIVE, &b), -EINVAL);

	monitor_alive_encode(&a, MONITOR_REC_ALIVE, buf);
	memset(buf + 8, 'x', MONITOR_ID_MAX); /* id without its NUL */
	reseal(buf);
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_ALIVE, &b), -EINVAL);

	monitor_mark_encode(&m, buf);
	buf[56] = 3; /* neither set nor cleared */
	reseal(buf);
	assert_int_equal(monitor_mark_decode(buf, &n), -EINVAL);

	/* A node id of the maximum length survives. */
	memset(a.node, 'n', MONITOR_ID_MAX - 1);
	a.node[MONITOR_ID_MAX - 1] = 0;
	monitor_alive_encode(&a, MONITOR_REC_ALIVE, buf);
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_ALIVE, &b), 0);
	assert_string_equal(b.node, a.node);
}

/* The mailbox's liveness record: the liveness record and its lease record
 * (lease_ms, fence_margin_ms, O_DIRECT) come back together. */
static void test_alive_sector_round_trip(void **state)
{
	struct monitor_alive a = sample_alive(), b;
	uint8_t buf[MONITOR_ALIVE_SECTOR_SIZE];

	(void)state;
	a.lease_ms = 5000;
	a.fence_margin_ms = 50;
	a.mbox_direct = true;
	monitor_alive_sector_encode(&a, buf);
	memset(&b, 0, sizeof(b));
	assert_int_equal(monitor_alive_sector_decode(buf, &b), 0);
	assert_string_equal(b.node, "node-a");
	assert_int_equal(b.boot_gen, 7);
	assert_int_equal(b.counter, 123456789012ull);
	assert_int_equal(b.acked_gen, 3);
	assert_int_equal(b.state, HA_WAITING_FOR_GIVEBACK);
	assert_int_equal(b.mirror, HA_MIRROR_DEGRADED);
	assert_int_equal(b.lease_ms, 5000);
	assert_int_equal(b.fence_margin_ms, 50);
	assert_true(b.mbox_direct);
	a.mbox_direct = false;
	monitor_alive_sector_encode(&a, buf);
	assert_int_equal(monitor_alive_sector_decode(buf, &b), 0);
	assert_false(b.mbox_direct);
	/* A reader of the previous layout sees its 64-byte record unchanged:
	 * the lease record lies past what it reads. */
	assert_int_equal(monitor_alive_decode(buf, MONITOR_REC_ALIVE, &b), 0);
	assert_int_equal(b.counter, 123456789012ull);
	assert_int_equal(buf[4], 1); /* still version 1 */
	/* Little endian: lease_ms at 64 + 40. */
	assert_int_equal(buf[MONITOR_REC_SIZE + 40], 5000 & 0xff);
	assert_int_equal(buf[MONITOR_REC_SIZE + 41], 5000 >> 8);
}

/* A sector written by a node of the previous layout (the liveness record,
 * zeros after it) reads as "no lease published"; a lease record of
 * another write, or torn, makes the read prove nothing. */
static void test_alive_sector_old_and_torn(void **state)
{
	struct monitor_alive a = sample_alive(), b;
	uint8_t buf[MONITOR_ALIVE_SECTOR_SIZE], other[MONITOR_ALIVE_SECTOR_SIZE];

	(void)state;
	memset(buf, 0, sizeof(buf));
	monitor_alive_encode(&a, MONITOR_REC_ALIVE, buf);
	memset(&b, 0xff, sizeof(b));
	assert_int_equal(monitor_alive_sector_decode(buf, &b), 0);
	assert_int_equal(b.counter, 123456789012ull);
	assert_int_equal(b.lease_ms, 0);
	assert_int_equal(b.fence_margin_ms, 0);
	assert_false(b.mbox_direct);
	/* A blank sector is blank. */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(monitor_alive_sector_decode(buf, &b), -ENODATA);

	/* The lease record of the previous write next to a new liveness record. */
	a.lease_ms = 100;
	monitor_alive_sector_encode(&a, other);
	a.counter++;
	monitor_alive_sector_encode(&a, buf);
	memcpy(buf + MONITOR_REC_SIZE, other + MONITOR_REC_SIZE, MONITOR_REC_SIZE);
	assert_int_equal(monitor_alive_sector_decode(buf, &b), -EBADMSG);
	/* A lease record of another node or boot. */
	monitor_alive_sector_encode(&a, buf);
	strcpy(a.node, "node-b");
	monitor_alive_sector_encode(&a, other);
	memcpy(buf + MONITOR_REC_SIZE, other + MONITOR_REC_SIZE, MONITOR_REC_SIZE);
	assert_int_equal(monitor_alive_sector_decode(buf, &b), -EBADMSG);
	/* A flipped bit in it. */
	strcpy(a.node, "node-a");
	monitor_alive_sector_encode(&a, buf);
	buf[MONITOR_REC_SIZE + 41] ^= 1;
	assert_int_equal(monitor_alive_sector_decode(buf, &b), -EBADMSG);
	/* A newer version of it is refused as such. */
	monitor_alive_sector_encode(&a, buf);
	buf[MONITOR_REC_SIZE + 4] = 2;
	reseal(buf + MONITOR_REC_SIZE);
	assert_int_equal(monitor_alive_sector_decode(buf, &b), -EPROTO);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(monitor_ha_state_name(HA_UP), "up");
	assert_string_equal(monitor_ha_state_name(HA_TAKEOVER), "takeover");
	assert_string_equal(monitor_ha_state_name(HA_TAKEN_OVER), "taken_over");
	assert_string_equal(monitor_ha_state_name(HA_WAITING_FOR_GIVEBACK), "waiting_for_giveback");
	assert_string_equal(monitor_ha_state_name(HA_GIVING_BACK), "giving_back");
	assert_string_equal(monitor_ha_mirror_name(HA_MIRROR_IN_SYNC), "in_sync");
	assert_string_equal(monitor_ha_state_name((enum ha_state)99), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_crc32c),
	    cmocka_unit_test(test_alive_round_trip),
	    cmocka_unit_test(test_mark_round_trip),
	    cmocka_unit_test(test_mark_replay_byte),
	    cmocka_unit_test(test_blank_and_torn),
	    cmocka_unit_test(test_foreign),
	    cmocka_unit_test(test_names),
	    cmocka_unit_test(test_alive_sector_round_trip),
	    cmocka_unit_test(test_alive_sector_old_and_torn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
