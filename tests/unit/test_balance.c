/* Unit tests of src/balance: the load meter (EWMA over ticks), the policy
 * (threshold, window, interval, the pick and its hysteresis) and the
 * partner's report (round trip and refusal of damaged ones). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance/balance.h"
#include "common/byteorder.h"

static struct balance_opts opts(unsigned window_s, unsigned interval_s)
{
	struct balance_opts o;

	balance_opts_init(&o);
	o.enabled = true;
	o.window_s = window_s;
	o.min_interval_s = interval_s;
	return o;
}

static void test_units(void **state)
{
	struct balance_load l = {.req_s = 100, .bytes_s = 100 * 65536.0};

	(void)state;
	assert_true(fabs(balance_units(&l) - 200) < 1e-9);
}

static void test_meter(void **state)
{
	struct balance_meter *m = calloc(1, sizeof(*m));

	(void)state;
	assert_non_null(m);
	/* First sight: no rate yet. */
	balance_meter_begin(m);
	assert_int_equal(balance_meter_sample(m, "v1", 1000, 4096000, true), 0);
	assert_int_equal(balance_meter_sample(m, "v2", 50, 0, false), 0);
	assert_int_equal(balance_meter_sample(m, "v1", 1000, 0, true), -EEXIST);
	assert_int_equal(balance_meter_sample(m, ".x", 0, 0, true), -EINVAL);
	assert_int_equal(balance_meter_sample(m, "a/b", 0, 0, true), -EINVAL);
	assert_int_equal(balance_meter_sample(m, "", 0, 0, true), -EINVAL);
	balance_meter_end(m, 1000);
	assert_int_equal(m->n, 2);
	assert_true(m->total.req_s == 0);
	/* 100 requests a second: the first full tick sets the rate. */
	for (int t = 1; t <= 20; t++) {
		balance_meter_begin(m);
		assert_int_equal(balance_meter_sample(m, "v1", 1000 + 100 * (uint64_t)t,
						      4096000 + 409600 * (uint64_t)t, true),
				 0);
		assert_int_equal(balance_meter_sample(m, "v2", 50, 0, false), 0);
		/* v3: first seen at 10, then 200 requests, then 100; gone at 13. */
		if (t >= 10 && t <= 12)
			assert_int_equal(balance_meter_sample(m, "v3",
							      t == 10	? 0
							      : t == 11 ? 200
									: 300,
							      0, true),
					 0);
		balance_meter_end(m, 1000);
		if (t == 1)
			assert_true(fabs(m->v[0].rate.req_s - 100) < 1e-9);
		if (t == 10)
			assert_true(m->v[2].rate.req_s == 0);
		if (t == 11) /* its first full tick, whole */
			assert_true(fabs(m->v[2].rate.req_s - 200) < 1e-9);
		if (t == 12) /* then the EWMA: halfway to 100 */
			assert_true(fabs(m->v[2].rate.req_s - 150) < 1e-9);
		if (t == 13)
			assert_int_equal(m->n, 2);
	}
	assert_true(fabs(m->v[0].rate.req_s - 100) < 0.01);
	assert_true(fabs(m->v[0].rate.bytes_s - 409600) < 1);
	assert_true(m->v[1].rate.req_s == 0);
	assert_true(fabs(m->total.req_s - 100) < 0.01);
	/* A 500 ms tick: twice the rate for the same growth. */
	balance_meter_begin(m);
	balance_meter_sample(m, "v1", 1000 + 2100, 0, true); /* bytes went back: reopened */
	balance_meter_sample(m, "v2", 50, 0, false);
	balance_meter_end(m, 500);
	assert_true(fabs(m->v[0].rate.req_s - 100) < 0.01); /* that tick counted nothing */
	balance_meter_begin(m);
	balance_meter_sample(m, "v1", 1000 + 2200, 0, true);
	balance_meter_sample(m, "v2", 50, 0, false);
	balance_meter_end(m, 500);
	assert_true(fabs(m->v[0].rate.req_s - 150) < 0.01);
	/* v1 no longer served here: forgotten; the total is v2's. */
	balance_meter_begin(m);
	balance_meter_sample(m, "v2", 60, 0, false);
	balance_meter_end(m, 1000);
	assert_int_equal(m->n, 1);
	assert_string_equal(m->v[0].name, "v2");
	assert_true(fabs(m->total.req_s - 5) < 1e-9);
	/* Full. */
	balance_meter_begin(m);
	for (unsigned i = 0; i < BALANCE_MAX_VOLS + 1; i++) {
		char name[16];
		snprintf(name, sizeof(name), "n%u", i);
		assert_int_equal(balance_meter_sample(m, name, 0, 0, true),
				 i < BALANCE_MAX_VOLS - 1 ? 0 : -ENOSPC);
	}
	free(m);
}

/* Run decide each second from @p t0 to @p t1 on fixed loads; the verdicts. */
static enum balance_verdict run(struct balance_state *st, const struct balance_opts *o, uint64_t t0,
				uint64_t t1, double own, double partner,
				const struct balance_cand *c, unsigned n, struct balance_choice *ch)
{
	enum balance_verdict v = BALANCE_EVEN;

	for (uint64_t t = t0; t <= t1; t += 1000)
		v = balance_decide(st, o, t, own, &partner, c, n, ch);
	return v;
}

static void test_window_and_interval(void **state)
{
	struct balance_opts o = opts(30, 300);
	struct balance_state st = {0};
	struct balance_choice ch;
	struct balance_cand c[2] = {{500, true}, {500, true}};
	double p = 0;

	(void)state;
	/* Off, or no partner: nothing. */
	o.enabled = false;
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, c, 2, &ch), BALANCE_OFF);
	o.enabled = true;
	assert_int_equal(balance_decide(&st, &o, 0, 1000, NULL, c, 2, &ch), BALANCE_NO_PARTNER);
	/* Over from t = 1 s: waits for the window. */
	assert_int_equal(run(&st, &o, 1000, 30000, 1000, 0, c, 2, &ch), BALANCE_WAIT_WINDOW);
	assert_int_equal(ch.over_ms, 29000);
	assert_int_equal(run(&st, &o, 31000, 31000, 1000, 0, c, 2, &ch), BALANCE_MOVE);
	assert_int_equal(ch.index, 0);
	assert_true(ch.own_after == 500 && ch.partner_after == 500);
	/* A dip under the threshold restarts the window. */
	st = (struct balance_state){0};
	assert_int_equal(run(&st, &o, 0, 20000, 1000, 0, c, 2, &ch), BALANCE_WAIT_WINDOW);
	assert_int_equal(run(&st, &o, 21000, 21000, 1000, 500, c, 2, &ch), BALANCE_EVEN);
	assert_int_equal(run(&st, &o, 22000, 51000, 1000, 0, c, 2, &ch), BALANCE_WAIT_WINDOW);
	assert_int_equal(run(&st, &o, 52000, 52000, 1000, 0, c, 2, &ch), BALANCE_MOVE);
	/* After a move: the window starts again, then the interval holds. */
	balance_note_move(&st, 52000);
	assert_int_equal(run(&st, &o, 53000, 82000, 1000, 0, c, 2, &ch), BALANCE_WAIT_WINDOW);
	assert_int_equal(run(&st, &o, 83000, 351000, 1000, 0, c, 2, &ch), BALANCE_WAIT_INTERVAL);
	assert_int_equal(run(&st, &o, 352000, 352000, 1000, 0, c, 2, &ch), BALANCE_MOVE);
	/* Tiny loads never count as over. */
	st = (struct balance_state){0};
	struct balance_cand tiny[2] = {{4, true}, {4, true}};
	assert_int_equal(run(&st, &o, 0, 100000, 8, 0, tiny, 2, &ch), BALANCE_EVEN);
	/* Exactly imbalance x: not over. */
	assert_int_equal(run(&st, &o, 0, 100000, 1000, 500, c, 2, &ch), BALANCE_EVEN);
	/* Garbage figures: treated as unknown. */
	p = NAN;
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, c, 2, &ch), BALANCE_NO_PARTNER);
	p = -1;
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, c, 2, &ch), BALANCE_NO_PARTNER);
}

static void test_pick(void **state)
{
	struct balance_opts o = opts(0, 0);
	struct balance_state st = {0};
	struct balance_choice ch;
	double p = 100;

	(void)state;
	/* 1000 vs 100: moving 450 evens them best (550 / 550). */
	struct balance_cand c[] = {{300, true}, {450, true}, {200, true}, {50, true}};
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, c, 4, &ch), BALANCE_MOVE);
	assert_int_equal(ch.index, 1);
	/* Not movable (leaving, away): skipped. */
	c[1].movable = false;
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, c, 4, &ch), BALANCE_MOVE);
	assert_int_equal(ch.index, 0);
	/* One hot volume and nothing else: moving it only flips the load. */
	struct balance_cand hot[] = {{1000, true}};
	p = 0;
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, hot, 1, &ch), BALANCE_NO_CANDIDATE);
	/* 900 + 100 vs 0: 900 overshoots (partner 900 vs 100), 100 helps. */
	struct balance_cand two[] = {{900, true}, {100, true}};
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, two, 2, &ch), BALANCE_MOVE);
	assert_int_equal(ch.index, 1);
	/* Overshoot allowed only up to halfway to the threshold: 1000 vs 0 with
	 * 580 (partner 580 vs 420: 1.38 x, under 1.5 x) taken over 420 (420
	 * vs 580, just as even). */
	struct balance_cand c2[] = {{420, true}, {580, true}};
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, c2, 2, &ch), BALANCE_MOVE);
	assert_int_equal(ch.index, 0); /* the first of two equally even */
	struct balance_cand c3[] = {{610, true}, {390, true}};
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, c3, 2, &ch), BALANCE_MOVE);
	assert_int_equal(ch.index, 1);
	struct balance_cand c4[] = {{610, true}};
	p = 0;
	/* 610 of 1000 leaves 390 vs 610: 1.56 x, past 1.5 x. */
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, c4, 1, &ch), BALANCE_NO_CANDIDATE);
	/* Zero, negative, NaN candidates are never picked. */
	struct balance_cand odd[] = {{0, true}, {-5, true}, {NAN, true}, {INFINITY, true}};
	assert_int_equal(balance_decide(&st, &o, 0, 1000, &p, odd, 4, &ch), BALANCE_NO_CANDIDATE);
}

/* The pair as a whole: two nodes deciding on each other's figures never
 * move a volume back, whatever the imbalance setting. */
static void test_no_flapping(void **state)
{
	static const unsigned imb[] = {1100, 1500, 2000, 4000};

	(void)state;
	srand(1);
	for (size_t k = 0; k < sizeof(imb) / sizeof(imb[0]); k++) {
		for (int trial = 0; trial < 200; trial++) {
			struct balance_opts o = opts(0, 0);
			struct balance_state sa = {0}, sb = {0};
			double load[8];
			int where[8], moves = 0, last_from = -1;
			unsigned nv = 1 + (unsigned)(rand() % 8);

			o.imbalance_milli = imb[k];
			for (unsigned i = 0; i < nv; i++) {
				load[i] = 1 + rand() % 1000;
				where[i] = rand() % 4 ? 0 : 1;
			}
			for (int step = 0; step < 50; step++) {
				double tot[2] = {0, 0};
				for (unsigned i = 0; i < nv; i++)
					tot[where[i]] += load[i];
				for (int node = 0; node < 2; node++) {
					struct balance_cand c[8];
					struct balance_choice ch;
					for (unsigned i = 0; i < nv; i++) {
						c[i].load = where[i] == node ? load[i] : 0;
						c[i].movable = where[i] == node;
					}
					if (balance_decide(node ? &sb : &sa, &o, 0, tot[node],
							   &tot[1 - node], c, nv,
							   &ch) != BALANCE_MOVE)
						continue;
					/* Never from the node that just received. */
					assert_true(last_from < 0 || last_from == node);
					last_from = node;
					where[ch.index] = 1 - node;
					moves++;
					break;
				}
			}
			assert_true(moves <= (int)nv);
		}
	}
}

static void test_report(void **state)
{
	struct balance_meter *m = calloc(1, sizeof(*m));
	struct balance_report *r = calloc(1, sizeof(*r)), *d = calloc(1, sizeof(*d));
	uint8_t *buf = calloc(1, BALANCE_WIRE_MAX + 16);
	size_t len;

	(void)state;
	assert_non_null(m);
	assert_non_null(r);
	assert_non_null(d);
	assert_non_null(buf);
	/* 200 volumes, loads rising: the report lists the 128 busiest. */
	for (int t = 0; t < 2; t++) {
		balance_meter_begin(m);
		for (unsigned i = 0; i < 200; i++) {
			char name[16];
			snprintf(name, sizeof(name), "vol-%u", i);
			balance_meter_sample(m, name, (uint64_t)t * i * 2, (uint64_t)t * i * 4096,
					     true);
		}
		balance_meter_end(m, 1000);
	}
	balance_report_from_meter(m, true, r);
	assert_int_equal(r->n, BALANCE_WIRE_VOLS);
	assert_string_equal(r->v[0].name, "vol-199");
	len = balance_report_encode(r, buf);
	assert_int_equal(len, BALANCE_WIRE_MAX);
	assert_int_equal(balance_report_decode(buf, len, d), 0);
	assert_true(d->auto_on);
	assert_int_equal(d->n, BALANCE_WIRE_VOLS);
	assert_string_equal(d->v[127].name, "vol-72");
	assert_true(fabs(d->v[0].load.req_s - 398) < 0.001);
	assert_true(fabs(d->total.req_s - m->total.req_s) < 0.001);
	assert_true(fabs(d->total.bytes_s - m->total.bytes_s) < 1);

	/* Damaged reports: each refused whole. */
	assert_int_equal(balance_report_decode(buf, len - 1, d), -EINVAL);
	assert_int_equal(balance_report_decode(buf, len + 16, d), -EINVAL);
	assert_int_equal(balance_report_decode(buf, 31, d), -EINVAL);
	buf[0] ^= 1;
	assert_int_equal(balance_report_decode(buf, len, d), -EINVAL);
	buf[0] ^= 1;
	put_le16(buf + 4, 2);
	assert_int_equal(balance_report_decode(buf, len, d), -EPROTO);
	put_le16(buf + 4, 1);
	put_le16(buf + 6, 2); /* unknown flag */
	assert_int_equal(balance_report_decode(buf, len, d), -EINVAL);
	put_le16(buf + 6, 1);
	put_le16(buf + 8, 129);
	assert_int_equal(balance_report_decode(buf, BALANCE_WIRE_MAX + 80, d), -EINVAL);
	put_le16(buf + 8, 128);
	put_le64(buf + 16, BALANCE_WIRE_LIMIT + 1);
	assert_int_equal(balance_report_decode(buf, len, d), -EINVAL);
	put_le64(buf + 16, 5);
	uint8_t *e = buf + BALANCE_WIRE_HDR + 5 * BALANCE_WIRE_ENTRY;
	e[3] = '/';
	assert_int_equal(balance_report_decode(buf, len, d), -EINVAL);
	assert_int_equal(d->n, 0);
	e[3] = 0;
	e[10] = 'x'; /* not NUL after the name */
	assert_int_equal(balance_report_decode(buf, len, d), -EINVAL);
	e[10] = 0;
	memset(e, 'a', 64); /* no NUL */
	assert_int_equal(balance_report_decode(buf, len, d), -EINVAL);
	memset(e, 0, 64);
	assert_int_equal(balance_report_decode(buf, len, d), -EINVAL);
	e[0] = 'v';
	assert_int_equal(balance_report_decode(buf, len, d), 0);
	assert_string_equal(d->v[5].name, "v");
	put_le64(e + 72, BALANCE_WIRE_LIMIT + 1);
	assert_int_equal(balance_report_decode(buf, len, d), -EINVAL);
	/* Figures past the limit are clipped on the way out. */
	r->total.req_s = 1e300;
	r->total.bytes_s = NAN;
	r->n = 0;
	len = balance_report_encode(r, buf);
	assert_int_equal(len, BALANCE_WIRE_HDR);
	assert_int_equal(balance_report_decode(buf, len, d), 0);
	assert_true(d->total.bytes_s == 0);
	assert_int_equal(d->n, 0);
	free(buf);
	free(d);
	free(r);
	free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_units),
	    cmocka_unit_test(test_meter),
	    cmocka_unit_test(test_window_and_interval),
	    cmocka_unit_test(test_pick),
	    cmocka_unit_test(test_no_flapping),
	    cmocka_unit_test(test_report),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
