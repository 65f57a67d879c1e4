/* Unit tests of the mirror's CCM transport (src/node/mirror_ccm.c) with two
 * real mirror engines on one loop, joined by the fake CCM of the proxy's
 * tests: each node's image of its partner's log is a mapped file, written
 * through the fake's "RDMA". Covered: in sync and image equal to the log,
 * session loss under writes (degraded, writes go on) and return (resync,
 * image complete), a partner whose image is too small (refused, degraded),
 * a partner without a mirror, close with writes in flight (no callback
 * after detach), and an image left by an earlier run of the holder
 * (current if that run saw it current in this boot, else not until the
 * partner resyncs into the new run). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ccm/ccm.h"
#include "common/log.h"
#include "common/loop.h"
#include "mirror/mirror.h"
#include "mirror/mirror_int.h"
#include "node/node_int.h"
#include "test_proxy_ccm.h"

#define LOG_SIZE (1u << 20)
#define NWRITES	 64

static const struct mirror_vol_id VOL = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}};

struct side {
	struct ccm *ccm;
	struct mirror *m;
	struct node_mirror_ccm *mc;
	char log[256], image[256];
};

struct env {
	struct loop *loop;
	char dir[128];
	struct side a, b;
	struct mirror_write w[NWRITES];
	uint8_t data[NWRITES][4096];
	unsigned logged, failed;
};

/* Not in the fake CCM. */
const char *ccm_term_reason_str(enum ccm_term_reason why)
{
	return why == CCM_TERM_LINKS_LOST ? "links lost" : "other";
}

static void host_cp(void *ctx, mirror_done_fn done, void *arg)
{
	(void)ctx;
	done(arg, 0);
}

static const struct mirror_host_ops host = {.checkpoint = host_cp};

static int side_open(struct env *e, struct side *s, const char *name, uint64_t image_size,
		     bool mirror)
{
	struct mirror_opts o;
	struct mirror_replay_stats st;
	int rc;

	snprintf(s->log, sizeof(s->log), "%s/%s.nvram", e->dir, name);
	snprintf(s->image, sizeof(s->image), "%s/%s.partner", e->dir, name);
	s->ccm = fake_ccm_create(e->loop, name);
	mirror_opts_init(&o);
	o.path = s->log;
	o.size = LOG_SIZE;
	o.node_id = name;
	o.cp_interval_ms = 0;
	rc = mirror_open(e->loop, &o, &host, NULL, &s->m);
	if (rc < 0)
		return rc;
	rc = mirror_recover(s->m, NULL, NULL, &st);
	if (rc < 0)
		return rc;
	if (!mirror)
		return 0;
	return node_mirror_ccm_create(e->loop, s->ccm, s->m, s->image, image_size, &s->mc);
}

static struct env *env_new(uint64_t b_image, bool b_mirror)
{
	struct env *e = calloc(1, sizeof(*e));
	const char *t = getenv("TMPDIR");

	assert_non_null(e);
	snprintf(e->dir, sizeof(e->dir), "%s/test_mirror_ccm.XXXXXX", t && *t ? t : "/tmp");
	assert_non_null(mkdtemp(e->dir));
	assert_int_equal(loop_create(&e->loop), 0);
	assert_int_equal(side_open(e, &e->a, "a", LOG_SIZE, true), 0);
	assert_int_equal(side_open(e, &e->b, "b", b_image, b_mirror), 0);
	fake_ccm_pair(e->a.ccm, e->b.ccm);
	return e;
}

static void unlink_note(struct side *s)
{
	char p[300];

	snprintf(p, sizeof(p), "%s%s", s->image, MIRROR_IMAGE_NOTE_SUFFIX);
	unlink(p);
}

static void side_close(struct side *s)
{
	mirror_close(s->m); /* detaches: unregisters */
	fake_ccm_destroy(s->ccm);
	node_mirror_ccm_destroy(s->mc);
	unlink(s->log);
	unlink(s->image);
	unlink_note(s);
}

/* After both sides are closed. */
static void env_destroy(struct env *e)
{
	loop_run_once(e->loop, 0); /* a closed mirror's task frees itself */
	fake_reset();
	loop_destroy(e->loop);
	rmdir(e->dir);
	free(e);
}

static void env_free(struct env *e)
{
	side_close(&e->a);
	side_close(&e->b);
	env_destroy(e);
}

static void run_until(struct env *e, bool (*cond)(struct env *e))
{
	for (int i = 0; i < 5000 && !cond(e); i++)
		loop_run_once(e->loop, 1000000);
	assert_true(cond(e));
}

static enum mirror_state state_of(struct mirror *m)
{
	struct mirror_status st;

	mirror_get_status(m, &st);
	return st.state;
}

static bool a_in_sync(struct env *e)
{
	return state_of(e->a.m) == MIRROR_STATE_IN_SYNC;
}

static bool a_degraded(struct env *e)
{
	return state_of(e->a.m) == MIRROR_STATE_DEGRADED;
}

static bool a_idle(struct env *e)
{
	struct mirror_status st;

	mirror_get_status(e->a.m, &st);
	return st.idle && e->logged + e->failed == NWRITES;
}

static void on_logged(struct mirror_write *w, int result)
{
	struct env *e = w->arg;

	if (result == 0)
		e->logged++;
	else
		e->failed++;
}

/* NWRITES appends of 4 KiB, each applied at once (no volume here). */
static void write_all(struct env *e, unsigned seed)
{
	e->logged = e->failed = 0;
	for (unsigned i = 0; i < NWRITES; i++) {
		struct mirror_write *w = &e->w[i];
		memset(e->data[i], (int)(seed + i), sizeof(e->data[i]));
		memset(w, 0, sizeof(*w));
		w->vol = VOL;
		w->type = MIRROR_REC_WRITE;
		w->offset = (uint64_t)i * 4096;
		w->length = 4096;
		w->data = e->data[i];
		w->logged = on_logged;
		w->arg = e;
		assert_true(mirror_append(e->a.m, w) >= 0);
		mirror_applied(e->a.m, w);
	}
}

struct collect {
	uint64_t n, last_seq;
	uint8_t first_byte[NWRITES];
};

static int collect_rec(void *arg, const struct mirror_record *r, const void *data)
{
	struct collect *c = arg;

	if (!r)
		return 0;
	c->n++;
	c->last_seq = r->seq;
	if (data && r->offset / 4096 < NWRITES)
		c->first_byte[r->offset / 4096] = *(const uint8_t *)data;
	return 0;
}

/* b's image of a's log replays to what a's log replays to. */
static void check_image(struct env *e, bool want_valid)
{
	struct mirror_image_map img, log;
	struct mirror_replay_stats s1, s2;
	struct collect c1 = {0}, c2 = {0};

	assert_int_equal(mirror_image_map(e->b.image, 0, false, &img), 0);
	assert_int_equal(mirror_image_map(e->a.log, 0, false, &log), 0);
	assert_int_equal(mirror_replay(log.base, log.size, 0, collect_rec, &c1, &s1), 0);
	assert_int_equal(mirror_replay(img.base, LOG_SIZE, 0, collect_rec, &c2, &s2), 0);
	assert_int_equal(s2.image_valid, want_valid);
	assert_int_equal(c1.n, c2.n);
	assert_int_equal(c1.last_seq, c2.last_seq);
	assert_memory_equal(c1.first_byte, c2.first_byte, sizeof(c1.first_byte));
	/* The same header; the records byte for byte. */
	struct mirror_image_info i1, i2;
	assert_int_equal(mirror_image_info(log.base, log.size, &i1), 0);
	assert_int_equal(mirror_image_info(img.base, LOG_SIZE, &i2), 0);
	assert_true(i1.log_id == i2.log_id && i1.cp_seq == i2.cp_seq && i1.gen == i2.gen);
	assert_memory_equal((uint8_t *)img.base + 4096, (uint8_t *)log.base + 4096, 64 * 4160);
	mirror_image_unmap(&img);
	mirror_image_unmap(&log);
}

static void test_in_sync(void **state)
{
	struct env *e = env_new(LOG_SIZE, true);
	const char *why;

	(void)state;
	assert_true(a_degraded(e));
	assert_string_equal(node_mirror_ccm_state(e->a.mc, &why), "down");
	fake_session_up(e->a.ccm);
	run_until(e, a_in_sync);
	assert_string_equal(node_mirror_ccm_state(e->a.mc, &why), "up");
	write_all(e, 1);
	run_until(e, a_idle);
	assert_int_equal(e->logged, NWRITES);
	check_image(e, true);
	env_free(e);
}

static void test_session_lost_and_back(void **state)
{
	struct env *e = env_new(LOG_SIZE, true);
	struct mirror_status st;

	(void)state;
	fake_session_up(e->a.ccm);
	run_until(e, a_in_sync);
	/* Writes in flight when the session ends: they complete (degrade),
	 * the transport's operations fail quietly into an old epoch. */
	write_all(e, 10);
	fake_session_down(e->a.ccm);
	run_until(e, a_degraded);
	run_until(e, a_idle);
	assert_int_equal(e->logged, NWRITES);
	mirror_get_status(e->a.m, &st);
	assert_false(st.takeover_safe);
	/* Back: resync, then in sync, the image complete. */
	fake_session_up(e->a.ccm);
	run_until(e, a_in_sync);
	write_all(e, 100);
	run_until(e, a_idle);
	check_image(e, true);
	mirror_get_status(e->a.m, &st);
	assert_true(st.resyncs >= 2);
	assert_int_equal(st.lag_bytes, 0);
	env_free(e);
}

static bool b_copy_current(struct env *e)
{
	return node_mirror_ccm_partner_copy(e->b.mc, false, NULL, 0) == MIRROR_IMAGE_CURRENT;
}

/* b's process ends (its image file stays) and starts again; a goes on
 * alone meanwhile. */
static void restart_b(struct env *e)
{
	fake_session_down(e->a.ccm);
	run_until(e, a_degraded);
	mirror_close(e->b.m);
	fake_ccm_destroy(e->b.ccm);
	node_mirror_ccm_destroy(e->b.mc);
	e->b.mc = NULL;
	assert_int_equal(side_open(e, &e->b, "b", LOG_SIZE, true), 0);
	fake_ccm_pair(e->a.ccm, e->b.ccm);
}

/* Issue 16, finding 4: b's image of a's log, complete when b's process
 * ends, is believed by b's next process only if the host did not restart
 * in between (a crash keeps the pages of the MAP_SHARED file; after a power
 * loss the file may hold an older image that still says complete): the
 * boot note b wrote when it first saw the image current says which boot.
 * Another boot's note (forged here) or none: stale until a resyncs into
 * the new process. */
static void test_image_of_earlier_run(void **state)
{
	static const uint8_t other_boot[16] = {0xde, 0xad, 0xbe, 0xef};
	struct env *e = env_new(LOG_SIZE, true);
	struct mirror_image_map map;
	char why[256];

	(void)state;
	/* Nothing written yet: nothing to replay, and not current. */
	assert_int_equal(node_mirror_ccm_partner_copy(e->b.mc, true, why, sizeof(why)),
			 MIRROR_IMAGE_NOTHING);
	fake_session_up(e->a.ccm);
	run_until(e, a_in_sync);
	write_all(e, 5);
	run_until(e, a_idle);
	check_image(e, true);
	assert_true(b_copy_current(e)); /* and noted for this boot */

	/* A crash of b's process: the same boot, the image is believed. */
	restart_b(e);
	assert_int_equal(node_mirror_ccm_partner_copy(e->b.mc, true, why, sizeof(why)),
			 MIRROR_IMAGE_CURRENT);
	assert_non_null(strstr(why, "in this boot"));

	/* The note of another boot (a power loss came between): stale, with
	 * or without the scan of its records (a's writes are live in it). */
	assert_int_equal(mirror_image_map(e->b.image, 0, false, &map), 0);
	assert_int_equal(mirror_image_boot_note_as(e->b.image, &map, other_boot), 0);
	mirror_image_unmap(&map);
	restart_b(e);
	assert_int_equal(node_mirror_ccm_partner_copy(e->b.mc, false, why, sizeof(why)),
			 MIRROR_IMAGE_STALE);
	assert_int_equal(node_mirror_ccm_partner_copy(e->b.mc, true, why, sizeof(why)),
			 MIRROR_IMAGE_STALE);
	assert_non_null(strstr(why, "earlier run"));
	/* No note at all: the same. */
	unlink_note(&e->b);
	restart_b(e);
	assert_int_equal(node_mirror_ccm_partner_copy(e->b.mc, true, why, sizeof(why)),
			 MIRROR_IMAGE_STALE);

	/* a resyncs into b's new process: current again, and complete. */
	fake_session_up(e->a.ccm);
	run_until(e, a_in_sync);
	run_until(e, b_copy_current);
	write_all(e, 50);
	run_until(e, a_idle);
	check_image(e, true);
	assert_true(b_copy_current(e));
	env_free(e);
}

/* The session comes up (@p turns loop turns) but a's mirror stays
 * degraded, its CCM transport in @p ccm_state for a reason naming @p why. */
static void expect_a_refused(struct env *e, int turns, const char *ccm_state, const char *why)
{
	const char *reason;

	fake_session_up(e->a.ccm);
	for (int i = 0; i < turns; i++)
		loop_run_once(e->loop, 1000000);
	assert_true(a_degraded(e));
	assert_string_equal(node_mirror_ccm_state(e->a.mc, &reason), ccm_state);
	assert_non_null(strstr(reason, why));
}

static void test_image_too_small(void **state)
{
	struct env *e = env_new(LOG_SIZE / 2, true);

	(void)state;
	expect_a_refused(e, 50, "refused", "log_size");
	/* b mirrors into a's larger image. */
	assert_int_equal(state_of(e->b.m), MIRROR_STATE_IN_SYNC);
	/* Writes go on (degrade). */
	write_all(e, 3);
	run_until(e, a_idle);
	assert_int_equal(e->logged, NWRITES);
	env_free(e);
}

static void test_partner_without_mirror(void **state)
{
	struct env *e = env_new(LOG_SIZE, false);

	(void)state;
	expect_a_refused(e, 20, "down", "has no mirror");
	env_free(e);
}

static void test_close_with_transfers_in_flight(void **state)
{
	struct env *e = env_new(LOG_SIZE, true);

	(void)state;
	fake_session_up(e->a.ccm);
	run_until(e, a_in_sync);
	write_all(e, 7);
	/* One turn: transfers are issued, none has landed. */
	loop_run_once(e->loop, 0);
	assert_true(fake_in_transit() > 0);
	/* Detach drops them without calling into the (freed) mirror. */
	side_close(&e->a);
	for (int i = 0; i < 20; i++)
		loop_run_once(e->loop, 1000000);
	side_close(&e->b);
	env_destroy(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_in_sync),
	    cmocka_unit_test(test_session_lost_and_back),
	    cmocka_unit_test(test_image_of_earlier_run),
	    cmocka_unit_test(test_image_too_small),
	    cmocka_unit_test(test_partner_without_mirror),
	    cmocka_unit_test(test_close_with_transfers_in_flight),
	};

	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
