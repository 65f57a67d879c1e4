/* Unit tests of the volume move's copier plan (src/node/move_plan.c):
 * chunks handed out once and in order, the in-flight limit with and
 * without clients, done never past a chunk still in flight, the idle time
 * while clients are busy and the test pause. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "node/move_plan.h"

#define MiB (1024ull * 1024ull)
#define MS  1000000ull

/* Idle clients: every slot, offsets in order, then none. */
static void test_slots(void **state)
{
	struct move_plan p;
	uint64_t off, len;

	(void)state;
	move_plan_init(&p, 10 * MiB, MiB, 0);
	assert_int_equal(move_plan_limit(&p, false), MOVE_PLAN_SLOTS);
	for (unsigned i = 0; i < MOVE_PLAN_SLOTS; i++) {
		assert_int_equal(move_plan_next(&p, MOVE_PLAN_SLOTS, &off, &len), (int)i);
		assert_int_equal(off, i * MiB);
		assert_int_equal(len, MiB);
	}
	assert_int_equal(move_plan_next(&p, MOVE_PLAN_SLOTS, &off, &len), -1);
	assert_false(move_plan_complete(&p));
}

/* Chunks end in any order: done stops at the first still in flight. */
static void test_done_order(void **state)
{
	struct move_plan p;
	uint64_t off, len;

	(void)state;
	move_plan_init(&p, 4 * MiB, MiB, 0);
	for (unsigned i = 0; i < 4; i++)
		move_plan_next(&p, 4, &off, &len);
	assert_int_equal(move_plan_end(&p, 2, 1), 0);
	assert_int_equal(move_plan_end(&p, 1, 2), 0);
	assert_int_equal(move_plan_end(&p, 0, 3), 3 * MiB);
	assert_false(move_plan_complete(&p));
	assert_int_equal(move_plan_end(&p, 3, 4), 4 * MiB);
	assert_true(move_plan_complete(&p));
	/* A slot freed is reused; none left to hand out. */
	assert_int_equal(move_plan_next(&p, 4, &off, &len), -1);
}

/* The last chunk is the rest; an empty volume is complete at once. */
static void test_tail(void **state)
{
	struct move_plan p;
	uint64_t off, len;

	(void)state;
	move_plan_init(&p, MiB + 4096, MiB, 0);
	assert_int_equal(move_plan_next(&p, 4, &off, &len), 0);
	assert_int_equal(move_plan_next(&p, 4, &off, &len), 1);
	assert_int_equal(off, MiB);
	assert_int_equal(len, 4096);
	assert_int_equal(move_plan_next(&p, 4, &off, &len), -1);
	move_plan_init(&p, 0, MiB, 0);
	assert_true(move_plan_complete(&p));
}

/* Clients busy: one chunk at a time, and an idle time twice as long as the
 * last chunk took (counted from its end); none without clients. */
static void test_clients_pace(void **state)
{
	struct move_plan p;
	uint64_t off, len;
	int s;

	(void)state;
	move_plan_init(&p, 8 * MiB, MiB, 0);
	assert_int_equal(move_plan_limit(&p, true), 1);
	assert_int_equal(move_plan_wait(&p, true, 100 * MS), 0); /* nothing ran yet */
	s = move_plan_next(&p, 1, &off, &len);
	assert_int_equal(move_plan_next(&p, 1, &off, &len), -1); /* the limit */
	move_plan_started(&p, 100 * MS);
	assert_int_equal(move_plan_wait(&p, true, 101 * MS), 0); /* one in flight */
	move_plan_end(&p, s, 103 * MS);				 /* took 3 ms */
	assert_int_equal(move_plan_wait(&p, true, 104 * MS), 5 * MS);
	assert_int_equal(move_plan_wait(&p, true, 109 * MS), 0);
	assert_int_equal(move_plan_wait(&p, false, 104 * MS), 0);
	/* A clock before the end (never): no wait. */
	assert_int_equal(move_plan_wait(&p, true, 102 * MS), 0);
}

/* The test pause: one at a time, and at least the pause after each chunk,
 * clients or not; the longer of the two with clients. */
static void test_delay(void **state)
{
	struct move_plan p;
	uint64_t off, len;
	int s;

	(void)state;
	move_plan_init(&p, 8 * MiB, MiB, 25 * MS);
	assert_int_equal(move_plan_limit(&p, false), 1);
	s = move_plan_next(&p, 1, &off, &len);
	move_plan_started(&p, 10 * MS);
	move_plan_end(&p, s, 10 * MS); /* a hole: no time */
	assert_int_equal(move_plan_wait(&p, false, 15 * MS), 20 * MS);
	assert_int_equal(move_plan_wait(&p, false, 35 * MS), 0);
	s = move_plan_next(&p, 1, &off, &len);
	move_plan_started(&p, 40 * MS);
	move_plan_end(&p, s, 80 * MS); /* took 40 ms */
	assert_int_equal(move_plan_wait(&p, true, 80 * MS), 80 * MS);
	assert_int_equal(move_plan_wait(&p, false, 80 * MS), 25 * MS);
}

/* Nothing left: no wait even right after a chunk. */
static void test_no_wait_at_end(void **state)
{
	struct move_plan p;
	uint64_t off, len;
	int s;

	(void)state;
	move_plan_init(&p, MiB, MiB, 25 * MS);
	s = move_plan_next(&p, 1, &off, &len);
	move_plan_started(&p, 0);
	move_plan_end(&p, s, 5 * MS);
	assert_int_equal(move_plan_wait(&p, true, 5 * MS), 0);
	assert_true(move_plan_complete(&p));
}

/* Pacing: a probe first (idle), then copying; a window where clients
 * complete fewer requests and wait longer than in the probe hurts; one
 * where they keep their rate (a client at a fixed rate) does not, however
 * long they wait; a probe (a window to drain, one measured) every period. */
static void test_pace(void **state)
{
	struct move_pace p;
	uint64_t now = 0, count = 1000, sum = 0;
	const uint64_t w = MOVE_PACE_WINDOW_NS;

	(void)state;
	move_pace_init(&p, count, sum, now);
	assert_true(move_pace_idle(&p));
	/* The window to settle after the start: not measured. */
	count += 10, sum += 10 * 50 * MS, now += w;
	move_pace_sample(&p, count, sum, now);
	assert_true(move_pace_idle(&p));
	/* The probe: 100 requests of 1 ms in a window. */
	count += 100, sum += 100 * MS, now += w;
	move_pace_sample(&p, count, sum, now);
	assert_false(move_pace_idle(&p));
	assert_false(move_pace_hurt(&p));
	/* Copying: half the rate, twice the latency: hurt. */
	count += 50, sum += 50 * 2 * MS, now += w;
	move_pace_sample(&p, count, sum, now);
	assert_true(move_pace_hurt(&p));
	assert_true(move_pace_throttled(&p));
	/* The same rate, three times the latency: not hurt, but paced until
	 * the next probe. */
	count += 100, sum += 100 * 3 * MS, now += w;
	move_pace_sample(&p, count, sum, now);
	assert_false(move_pace_hurt(&p));
	assert_true(move_pace_throttled(&p));
	/* Half the rate at the same latency (fewer requests sent): not hurt. */
	count += 50, sum += 50 * MS, now += w;
	move_pace_sample(&p, count, sum, now);
	assert_false(move_pace_hurt(&p));
	/* Nothing completes at all: hurt. */
	now += w;
	move_pace_sample(&p, count, sum, now);
	assert_true(move_pace_hurt(&p));
	/* The next probe, after the period: drain, measure, copy again. */
	now += MOVE_PACE_PROBE_EVERY_NS;
	count += 100, sum += 100 * MS;
	move_pace_sample(&p, count, sum, now);
	assert_true(move_pace_idle(&p));
	count += 100, sum += 100 * MS, now += w;
	move_pace_sample(&p, count, sum, now);
	assert_true(move_pace_idle(&p));
	count += 100, sum += 100 * MS, now += w;
	move_pace_sample(&p, count, sum, now);
	assert_false(move_pace_idle(&p));
	assert_false(move_pace_hurt(&p));
	assert_false(move_pace_throttled(&p));
	assert_int_equal(p.probes, 2);
}

/* No clients in the probe: never hurt, no probe while none come; once
 * some do, a probe a quarter period after the last. */
static void test_pace_no_clients(void **state)
{
	struct move_pace p;
	uint64_t now = 0, count = 0;
	const uint64_t w = MOVE_PACE_WINDOW_NS;

	(void)state;
	move_pace_init(&p, 0, 0, 0);
	for (int i = 0; i < 2; i++) {
		assert_true(move_pace_idle(&p));
		now += w;
		move_pace_sample(&p, 0, 0, now);
	}
	assert_false(move_pace_idle(&p));
	for (int i = 0; i < 100; i++) {
		now += w;
		move_pace_sample(&p, 0, 0, now);
		assert_false(move_pace_idle(&p));
		assert_false(move_pace_hurt(&p));
	}
	count += 100, now += w;
	move_pace_sample(&p, count, count * MS, now);
	assert_false(move_pace_hurt(&p));
	assert_true(move_pace_idle(&p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_slots), cmocka_unit_test(test_done_order),
	    cmocka_unit_test(test_tail),  cmocka_unit_test(test_clients_pace),
	    cmocka_unit_test(test_delay), cmocka_unit_test(test_no_wait_at_end),
	    cmocka_unit_test(test_pace),  cmocka_unit_test(test_pace_no_clients),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
