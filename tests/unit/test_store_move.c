/* Unit tests of the store's part of a volume move (src/store/move.c): the
 * move record survives a reopen; the copy is invisible until its commit;
 * after a crash at each point the decision (store_move_settle) says which
 * copy is the volume and removes the other's files; a committed copy is
 * loaded by a shelf opened before it (store_volume_load) and holds what was
 * written to it; a stale index entry of a volume moved away does not block
 * a move back. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/loop.h"
#include "store/store.h"

#define MiB (1024ull * 1024ull)

/* Two shelves (a's and b's) on one loop, as a node with [monitor]
 * partner_shelf sees them. */
struct two {
	struct loop *l;
	struct store *a, *b;
	struct store_opts opts;
	char base[256], da[300], db[300];
};

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void two_open(struct two *t)
{
	const char *tmp = getenv("TMPDIR");

	memset(t, 0, sizeof(*t));
	snprintf(t->base, sizeof(t->base), "%s/duet-move-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(t->base));
	snprintf(t->da, sizeof(t->da), "%s/a", t->base);
	snprintf(t->db, sizeof(t->db), "%s/b", t->base);
	assert_int_equal(loop_create(&t->l), 0);
	store_opts_init(&t->opts);
	t->opts.engine = STORE_ENGINE_THREADS;
	assert_int_equal(store_open(t->l, t->da, &t->opts, &t->a), 0);
	assert_int_equal(store_open(t->l, t->db, &t->opts, &t->b), 0);
}

static void two_reopen(struct two *t)
{
	store_close(t->a);
	store_close(t->b);
	assert_int_equal(store_open(t->l, t->da, &t->opts, &t->a), 0);
	assert_int_equal(store_open(t->l, t->db, &t->opts, &t->b), 0);
}

static void two_close(struct two *t)
{
	store_close(t->a);
	store_close(t->b);
	loop_destroy(t->l);
	nftw(t->base, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static bool exists(const char *dir, const char *file)
{
	char p[700];
	struct stat st;

	snprintf(p, sizeof(p), "%s/volumes/%s", dir, file);
	return stat(p, &st) == 0;
}

struct done {
	int pending, result;
};

static void io_done(struct store_io *io, int result)
{
	struct done *d = io->arg;

	if (result < 0)
		d->result = result;
	d->pending--;
}

/* One io, run to its end on the loop. */
static int run_io(struct two *t, struct store_volume *v, enum store_op op, uint64_t off,
		  uint64_t len, void *buf)
{
	struct store_io io;
	struct done d = {1, 0};
	uint64_t start = loop_now_ns();

	memset(&io, 0, sizeof(io));
	io.op = op;
	io.offset = off;
	io.length = len;
	io.buf = buf;
	io.done = io_done;
	io.arg = &d;
	store_submit(v, &io);
	while (d.pending && loop_now_ns() - start < 10ull * 1000000000ull)
		loop_run_once(t->l, 10000000);
	assert_int_equal(d.pending, 0);
	return d.result;
}

/* The record: written durably, read back, cleared. */
static void test_record(void **state)
{
	struct two t;
	struct store_volume *v;

	(void)state;
	two_open(&t);
	assert_int_equal(store_volume_create(t.a, "v", MiB, "a"), 0);
	v = store_volume_find(t.a, "v");
	assert_string_equal(store_volume_move_to(v), "");
	assert_int_equal(store_volume_set_move(v, "b"), 0);
	assert_int_equal(store_volume_set_move(v, "bad name"), -EINVAL);
	assert_string_equal(store_volume_move_to(v), "b");
	two_reopen(&t);
	v = store_volume_find(t.a, "v");
	assert_non_null(v);
	assert_string_equal(store_volume_move_to(v), "b");
	assert_int_equal(store_volume_set_move(v, NULL), 0);
	two_reopen(&t);
	assert_string_equal(store_volume_move_to(store_volume_find(t.a, "v")), "");
	two_close(&t);
}

/* A crash while copying: the copy is a dot file nobody loads; the decision
 * is "not committed" and removes it. */
static void test_crash_copying(void **state)
{
	struct two t;
	struct store_volume *v, *c;

	(void)state;
	two_open(&t);
	assert_int_equal(store_volume_create(t.a, "v", MiB, "a"), 0);
	v = store_volume_find(t.a, "v");
	assert_int_equal(store_volume_set_move(v, "b"), 0);
	assert_int_equal(store_move_target_create(t.b, v, &c), 0);
	assert_null(store_volume_find(t.b, "v"));
	assert_true(exists(t.db, ".v.move.img"));
	/* "crash": the copy's descriptor goes with the process. */
	store_move_target_drop(t.b, c);
	assert_false(exists(t.db, ".v.move.img"));
	assert_int_equal(store_move_target_create(t.b, v, &c), 0);
	/* A crash here: a shelf opened now does not load the copy, and the
	 * next to open a's shelf decides "not committed". */
	{
		struct store *b2;
		assert_int_equal(store_open(t.l, t.db, &t.opts, &b2), 0);
		assert_null(store_volume_find(b2, "v"));
		store_close(b2);
	}
	assert_int_equal(store_move_settle(v, store_voldirfd(t.b)), 0);
	assert_false(exists(t.db, ".v.move.img"));
	assert_false(exists(t.db, "v.img"));
	assert_true(exists(t.da, "v.img"));
	store_move_target_drop(t.b, c); /* the dead process's descriptor */
	two_close(&t);
}

/* The commit: the copy becomes the volume on b's shelf; the decision for
 * the source is "committed" (it is dead), and a shelf opened before the
 * commit loads the volume with what was written to the copy. */
static void test_commit(void **state)
{
	struct two t;
	struct store_volume *v, *c, *nv;
	struct store *b2;
	void *buf, *back;

	(void)state;
	two_open(&t);
	assert_int_equal(posix_memalign(&buf, 4096, 4096), 0);
	assert_int_equal(posix_memalign(&back, 4096, 4096), 0);
	memset(buf, 0x5a, 4096);
	assert_int_equal(store_volume_create(t.a, "v", MiB, "a"), 0);
	v = store_volume_find(t.a, "v");
	/* Another view of b's shelf, opened before (b's own node). */
	assert_int_equal(store_open(t.l, t.db, &t.opts, &b2), 0);
	assert_int_equal(store_volume_set_move(v, "b"), 0);
	assert_int_equal(store_move_target_create(t.b, v, &c), 0);
	assert_int_equal(run_io(&t, c, STORE_OP_WRITE, 8192, 4096, buf), 0);
	assert_int_equal(store_move_target_commit(t.b, c, "b"), 0);
	assert_false(exists(t.db, ".v.move.img"));
	assert_true(exists(t.db, "v.img"));
	assert_non_null(store_volume_find(t.b, "v"));
	/* The crash between the commit and the source's delete. */
	assert_int_equal(store_move_settle(v, store_voldirfd(t.b)), 1);
	assert_int_equal(store_volume_delete(t.a, v), 0);
	store_volume_release(v);
	/* b's own view loads it, owned by b, with the copy's data. */
	assert_null(store_volume_find(b2, "v"));
	assert_int_equal(store_volume_load(b2, "v", &nv), 0);
	assert_int_equal(store_volume_load(b2, "v", &nv), -EEXIST);
	{
		struct store_volume_info vi;
		store_volume_get_info(nv, &vi);
		assert_string_equal(vi.owner, "b");
	}
	assert_string_equal(store_volume_move_to(nv), "");
	assert_int_equal(run_io(&t, nv, STORE_OP_READ, 8192, 4096, back), 0);
	assert_memory_equal(buf, back, 4096);
	store_close(b2);
	free(buf);
	free(back);
	two_close(&t);
}

/* The copier's copy (store_move_copy): the source's data reaches the copy,
 * its holes are skipped (counted out of the data bytes and left holes), a
 * range past the end is refused, and a byte outside the range is untouched. */
static void test_copy(void **state)
{
	struct two t;
	struct store_volume *v, *c;
	struct store_extent ext[8];
	void *buf, *back, *cbuf;
	uint64_t data;
	int n;

	(void)state;
	two_open(&t);
	assert_int_equal(posix_memalign(&buf, 4096, 4096), 0);
	assert_int_equal(posix_memalign(&back, 4096, 4096), 0);
	assert_int_equal(posix_memalign(&cbuf, 4096, 64 * 1024), 0);
	assert_int_equal(store_volume_create(t.a, "v", 4 * MiB, "a"), 0);
	v = store_volume_find(t.a, "v");
	memset(buf, 0x11, 4096);
	assert_int_equal(run_io(&t, v, STORE_OP_WRITE, 0, 4096, buf), 0);
	memset(buf, 0x22, 4096);
	assert_int_equal(run_io(&t, v, STORE_OP_WRITE, MiB + 65536, 4096, buf), 0);
	memset(buf, 0x33, 4096);
	assert_int_equal(run_io(&t, v, STORE_OP_WRITE, 3 * MiB, 4096, buf), 0);
	assert_int_equal(store_move_target_create(t.b, v, &c), 0);
	/* The first two MiB: two data blocks of 4 KiB (a file system may
	 * allocate more around them, never the whole range). */
	assert_int_equal(store_move_copy(v, c, 0, 2 * MiB, cbuf, 64 * 1024, &data), 0);
	assert_true(data >= 8192 && data < 2 * MiB);
	assert_int_equal(run_io(&t, c, STORE_OP_READ, 0, 4096, back), 0);
	memset(buf, 0x11, 4096);
	assert_memory_equal(buf, back, 4096);
	assert_int_equal(run_io(&t, c, STORE_OP_READ, MiB + 65536, 4096, back), 0);
	memset(buf, 0x22, 4096);
	assert_memory_equal(buf, back, 4096);
	/* Outside the range: still a hole on the copy. */
	n = store_block_status(c, 3 * MiB, MiB, ext, 8);
	assert_int_equal(n, 1);
	assert_true(ext[0].hole);
	assert_int_equal(store_move_copy(v, c, 2 * MiB, 2 * MiB, cbuf, 64 * 1024, &data), 0);
	assert_int_equal(run_io(&t, c, STORE_OP_READ, 3 * MiB, 4096, back), 0);
	memset(buf, 0x33, 4096);
	assert_memory_equal(buf, back, 4096);
	assert_int_equal(store_move_copy(v, c, 3 * MiB, 2 * MiB, cbuf, 64 * 1024, &data), -EINVAL);
	store_move_target_drop(t.b, c);
	free(buf);
	free(back);
	free(cbuf);
	two_close(&t);
}

/* The copy renamed for the commit but no NAME.meta yet: not committed, the
 * renamed file is removed; a different volume of that name on the target
 * (another uuid) is never touched. */
static void test_crash_renamed(void **state)
{
	struct two t;
	struct store_volume *v, *w;
	char from[700];
	FILE *f;

	(void)state;
	two_open(&t);
	assert_int_equal(store_volume_create(t.a, "v", MiB, "a"), 0);
	v = store_volume_find(t.a, "v");
	assert_int_equal(store_volume_set_move(v, "b"), 0);
	snprintf(from, sizeof(from), "%s/volumes/v.img", t.db);
	f = fopen(from, "w");
	assert_non_null(f);
	fclose(f);
	assert_int_equal(store_move_settle(v, store_voldirfd(t.b)), 0);
	assert_false(exists(t.db, "v.img"));
	/* Another volume "w" on b, and a's "w" with a stale record naming b. */
	assert_int_equal(store_volume_create(t.b, "w", MiB, "b"), 0);
	assert_int_equal(store_volume_create(t.a, "w", MiB, "a"), 0);
	w = store_volume_find(t.a, "w");
	assert_int_equal(store_volume_set_move(w, "b"), 0);
	assert_int_equal(store_move_settle(w, store_voldirfd(t.b)), 0);
	assert_true(exists(t.db, "w.img"));
	assert_true(exists(t.db, "w.meta"));
	two_close(&t);
}

/* A target shelf that has the name refuses the copy; one whose index only
 * remembers a volume moved away since does not. */
static void test_target_exists(void **state)
{
	struct two t;
	struct store_volume *v, *c, *stale;

	(void)state;
	two_open(&t);
	assert_int_equal(store_volume_create(t.a, "v", MiB, "a"), 0);
	assert_int_equal(store_volume_create(t.b, "v", MiB, "b"), 0);
	v = store_volume_find(t.a, "v");
	assert_int_equal(store_move_target_create(t.b, v, &c), -EEXIST);
	/* b's "v" goes away behind this view's back (its node moved it). */
	stale = store_volume_find(t.b, "v");
	{
		struct store *b2;
		assert_int_equal(store_open(t.l, t.db, &t.opts, &b2), 0);
		assert_int_equal(store_volume_delete(b2, store_volume_find(b2, "v")), 0);
		store_close(b2);
	}
	assert_ptr_equal(store_volume_find(t.b, "v"), stale);
	assert_int_equal(store_move_target_create(t.b, v, &c), 0);
	assert_null(store_volume_find(t.b, "v"));
	store_move_target_drop(t.b, c);
	two_close(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_record),	  cmocka_unit_test(test_crash_copying),
	    cmocka_unit_test(test_commit),	  cmocka_unit_test(test_crash_renamed),
	    cmocka_unit_test(test_target_exists), cmocka_unit_test(test_copy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
