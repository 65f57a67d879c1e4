/* Unit tests of the store: shelf and volume metadata (create, list, find,
 * persistence, bad input, corruption), and block I/O through a real loop,
 * every I/O test run once per engine (io_uring, worker pool). */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "store/store.h"
#include "store/store_int.h" /* store_test_refuse_nowait */

#define KiB	     1024ull
#define MiB	     (1024ull * 1024ull)
#define TMPFS_MAGIC_ 0x01021994

static enum store_engine g_engine;

struct ctx {
	struct loop *l;
	struct store *s;
	struct store_opts opts;
	char dir[256];
};

/* One test io with its completion recorded. */
struct tio {
	struct store_io io;
	int result;
	bool done;
	int *pending;
};

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_rf(const char *dir)
{
	nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static void ctx_open_in(struct ctx *c, const char *base)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "%s/duet-store-XXXXXX", base);
	assert_non_null(mkdtemp(c->dir));
	assert_int_equal(loop_create(&c->l), 0);
	store_opts_init(&c->opts);
	c->opts.engine = g_engine;
	assert_int_equal(store_open(c->l, c->dir, &c->opts, &c->s), 0);
	assert_int_equal(store_get_engine(c->s), g_engine);
}

static const char *tmp_base(void)
{
	const char *t = getenv("TMPDIR");
	return t && *t ? t : "/tmp";
}

static void ctx_open(struct ctx *c)
{
	ctx_open_in(c, tmp_base());
}

static void ctx_reopen(struct ctx *c)
{
	store_close(c->s);
	c->s = NULL;
	assert_int_equal(store_open(c->l, c->dir, &c->opts, &c->s), 0);
}

static void ctx_close(struct ctx *c)
{
	if (c->s) {
		assert_int_equal(store_inflight(c->s), 0);
		store_close(c->s);
	}
	loop_destroy(c->l);
	rm_rf(c->dir);
}

/* The usual set-up of an I/O test: volume @p name created on the open shelf. */
static struct store_volume *ctx_volume(struct ctx *c, const char *name, uint64_t size,
				       const char *owner)
{
	struct store_volume *v;

	assert_int_equal(store_volume_create(c->s, name, size, owner), 0);
	v = store_volume_find(c->s, name);
	assert_non_null(v);
	return v;
}

static void tio_done(struct store_io *io, int result)
{
	struct tio *t = (struct tio *)io;

	assert_false(t->done);
	t->done = true;
	t->result = result;
	(*t->pending)--;
}

static void tio_prep(struct tio *t, int *pending, enum store_op op, uint32_t flags, uint64_t offset,
		     uint64_t length, void *buf)
{
	memset(t, 0, sizeof(*t));
	t->io.op = op;
	t->io.flags = flags;
	t->io.offset = offset;
	t->io.length = length;
	t->io.buf = buf;
	t->io.done = tio_done;
	t->pending = pending;
}

/* Run the loop until every io is done; a generous cap only guards against a
 * hang, no test depends on how long things take. */
static void run_until_done(struct ctx *c, int *pending)
{
	uint64_t start = loop_now_ns();

	while (*pending > 0) {
		assert_true(loop_run_once(c->l, 100000000ull) >= 0);
		if (loop_now_ns() - start > 120ull * 1000000000ull)
			fail_msg("ios still pending after 120 s: %d", *pending);
	}
}

/* Submit one io, check it is not completed inline, run it, return its result. */
static int do_io(struct ctx *c, struct store_volume *v, enum store_op op, uint32_t flags,
		 uint64_t offset, uint64_t length, void *buf)
{
	struct tio t;
	int pending = 1;

	tio_prep(&t, &pending, op, flags, offset, length, buf);
	store_submit(v, &t.io);
	assert_false(t.done);
	run_until_done(c, &pending);
	return t.result;
}

static uint64_t allocated(struct store_volume *v)
{
	struct store_volume_info info;

	store_volume_get_info(v, &info);
	return info.allocated;
}

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[i] = (uint8_t)x;
	}
}

static bool all_zero(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

/* ---- metadata ---- */

static void test_create_list_find_reopen(void **state)
{
	struct ctx c;
	struct store_volume_info info, info2;
	const char *order[] = {"a", "b", "c.1_x-y"};

	(void)state;
	ctx_open(&c);
	assert_int_equal(store_volume_count(c.s), 0);
	assert_int_equal(store_volume_create(c.s, "b", 4 * MiB, "node-b"), 0);
	assert_int_equal(store_volume_create(c.s, "c.1_x-y", 512, "a"), 0);
	assert_int_equal(store_volume_create(c.s, "a", 1ull << 40, "a"), 0);
	assert_int_equal(store_volume_count(c.s), 3);
	for (unsigned i = 0; i < 3; i++)
		assert_string_equal(store_volume_name(store_volume_at(c.s, i)), order[i]);
	assert_null(store_volume_at(c.s, 3));
	assert_null(store_volume_find(c.s, "nope"));
	assert_non_null(store_volume_find(c.s, "b"));
	store_volume_get_info(store_volume_find(c.s, "a"), &info);
	assert_string_equal(info.name, "a");
	assert_string_equal(info.owner, "a");
	assert_int_equal(info.size, 1ull << 40);
	assert_int_equal(strlen(info.uuid), 36);
	assert_true(info.allocated < 1 * MiB); /* sparse */
	assert_int_equal(store_volume_size(store_volume_find(c.s, "b")), 4 * MiB);

	ctx_reopen(&c);
	assert_int_equal(store_volume_count(c.s), 3);
	for (unsigned i = 0; i < 3; i++)
		assert_string_equal(store_volume_name(store_volume_at(c.s, i)), order[i]);
	store_volume_get_info(store_volume_find(c.s, "a"), &info2);
	assert_memory_equal(&info, &info2, offsetof(struct store_volume_info, allocated));
	store_volume_get_info(store_volume_find(c.s, "b"), &info2);
	assert_string_equal(info2.owner, "node-b");
	assert_string_not_equal(info2.uuid, info.uuid);
	ctx_close(&c);
}

/* Delete and resize, each a commit by rename or unlink of the metadata:
 * what a reopen finds, also after a crash between the two file steps
 * (simulated: the data file of a deleted volume left behind). */
static void test_delete_resize(void **state)
{
	struct ctx c;
	struct store_volume *v;
	char path[PATH_MAX + 64];
	struct stat st;
	char uuid[STORE_UUID_LEN];
	struct store_volume_info info;

	(void)state;
	ctx_open(&c);
	v = ctx_volume(&c, "x", 4 * MiB, "a");
	ctx_volume(&c, "y", 4 * MiB, "a");
	assert_int_equal(store_volume_resize(c.s, v, 8 * MiB), 0);
	assert_int_equal(store_volume_size(v), 8 * MiB);
	assert_int_equal(store_volume_resize(c.s, v, 1000), -EINVAL);
	assert_int_equal(store_volume_resize(c.s, v, 0), -EINVAL);
	ctx_reopen(&c);
	v = store_volume_find(c.s, "x");
	assert_int_equal(store_volume_size(v), 8 * MiB);
	assert_int_equal(store_volume_resize(c.s, v, 2 * MiB), 0);
	snprintf(path, sizeof(path), "%s/volumes/x.img", c.dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 2 * MiB);
	ctx_reopen(&c);
	v = store_volume_find(c.s, "x");
	assert_int_equal(store_volume_size(v), 2 * MiB);

	/* Delete: gone from the index at once, the struct until released. */
	store_volume_get_info(v, &info);
	snprintf(uuid, sizeof(uuid), "%s", info.uuid);
	assert_int_equal(store_volume_delete(c.s, v), 0);
	assert_null(store_volume_find(c.s, "x"));
	assert_int_equal(store_volume_count(c.s), 1);
	assert_int_equal(store_volume_size(v), 2 * MiB); /* still valid */
	assert_int_equal(stat(path, &st), -1);
	store_volume_release(v);
	/* The name is free again, with a new uuid. */
	v = ctx_volume(&c, "x", 4 * MiB, "a");
	store_volume_get_info(v, &info);
	assert_string_not_equal(info.uuid, uuid);
	/* Deleted and never released: store_close frees it. */
	assert_int_equal(store_volume_delete(c.s, v), 0);
	ctx_reopen(&c);
	assert_null(store_volume_find(c.s, "x"));

	/* A crash after the commit (the metadata renamed to the marker),
	 * before the data file went: the reopen finishes the delete, and the
	 * name can be used again. */
	snprintf(path, sizeof(path), "%s/volumes/z.img", c.dir);
	int fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(path, sizeof(path), "%s/volumes/.z.meta.deleted", c.dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	ctx_reopen(&c);
	assert_int_equal(stat(path, &st), -1);
	snprintf(path, sizeof(path), "%s/volumes/z.img", c.dir);
	assert_int_equal(stat(path, &st), -1);
	ctx_volume(&c, "z", 4 * MiB, "a");
	assert_int_equal(store_volume_count(c.s), 2);
	ctx_close(&c);
}

static void test_bad_names_and_sizes(void **state)
{
	struct ctx c;
	char long_name[80];

	(void)state;
	ctx_open(&c);
	assert_int_equal(store_volume_create(c.s, "", MiB, "a"), -EINVAL);
	assert_int_equal(store_volume_create(c.s, NULL, MiB, "a"), -EINVAL);
	assert_int_equal(store_volume_create(c.s, ".hidden", MiB, "a"), -EINVAL);
	assert_int_equal(store_volume_create(c.s, "a/b", MiB, "a"), -EINVAL);
	assert_int_equal(store_volume_create(c.s, "..", MiB, "a"), -EINVAL);
	assert_int_equal(store_volume_create(c.s, "sp ace", MiB, "a"), -EINVAL);
	assert_int_equal(store_volume_create(c.s, "caf\xc3\xa9", MiB, "a"), -EINVAL);
	memset(long_name, 'x', 64);
	long_name[64] = 0;
	assert_int_equal(store_volume_create(c.s, long_name, MiB, "a"), -EINVAL);
	long_name[63] = 0; /* 63 bytes: the longest allowed */
	assert_int_equal(store_volume_create(c.s, long_name, MiB, "a"), 0);
	assert_int_equal(store_volume_create(c.s, "v", 0, "a"), -EINVAL);
	assert_int_equal(store_volume_create(c.s, "v", 1000, "a"), -EINVAL);
	assert_int_equal(store_volume_create(c.s, "v", MiB, ""), -EINVAL);
	assert_int_equal(store_volume_create(c.s, "v", MiB, "much-too-long-owner"), -EINVAL);
	assert_int_equal(store_volume_create(c.s, "v", MiB, "a"), 0);
	assert_int_equal(store_volume_create(c.s, "v", 2 * MiB, "b"), -EEXIST);
	assert_int_equal(store_volume_count(c.s), 2);
	assert_int_equal(store_name_valid("ok-1.2_3"), 0);
	assert_int_equal(store_name_valid("-x"), 0);
	assert_int_equal(store_name_valid(".x"), -EINVAL);
	ctx_close(&c);
}

static void write_file(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/volumes/%s", dir, name);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static bool file_exists(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/volumes/%s", dir, name);
	return access(path, F_OK) == 0;
}

/* Per-volume allow lists: kept in the metadata across a reopen, empty by
 * default, checked against a client's identities; a bad list in the file
 * makes the volume unavailable (never open to all). */
static void test_allow_lists(void **state)
{
	const char *two[] = {"alice", "CN=carol,O=duet"};
	const char *bad[] = {"ok", "tab\tinside"};
	const char *alice[] = {"bob", "alice"}, *bob[] = {"bob"};
	const char *many[STORE_ALLOW_MAX + 1];
	struct store_volume *v;
	struct ctx c;

	(void)state;
	ctx_open(&c);
	assert_int_equal(store_volume_create_allow(c.s, "open", MiB, "a", NULL, 0), 0);
	assert_int_equal(store_volume_create_allow(c.s, "closed", MiB, "a", two, 2), 0);
	assert_int_equal(store_volume_create_allow(c.s, "bad", MiB, "a", bad, 2), -EINVAL);
	for (int i = 0; i <= STORE_ALLOW_MAX; i++)
		many[i] = "x";
	assert_int_equal(
	    store_volume_create_allow(c.s, "many", MiB, "a", many, STORE_ALLOW_MAX + 1), -EINVAL);
	assert_null(store_volume_find(c.s, "bad"));
	ctx_reopen(&c);
	v = store_volume_find(c.s, "open");
	assert_int_equal(store_volume_allow(v)->n, 0);
	assert_true(store_volume_allows(v, NULL, 0));
	v = store_volume_find(c.s, "closed");
	assert_int_equal(store_volume_allow(v)->n, 2);
	assert_string_equal(store_volume_allow(v)->id[1], "CN=carol,O=duet");
	assert_false(store_volume_allows(v, NULL, 0));
	assert_false(store_volume_allows(v, bob, 1));
	assert_true(store_volume_allows(v, alice, 2));
	store_close(c.s);
	c.s = NULL;
	write_file(c.dir, "closed.meta",
		   "{\"format\": 2, \"name\": \"closed\", \"size\": 1048576, \"uuid\": "
		   "\"0f0e0d0c-0b0a-4908-8706-050403020100\", \"owner\": \"a\", \"allow\": [1]}");
	assert_int_equal(store_open(c.l, c.dir, &c.opts, &c.s), 0);
	assert_null(store_volume_find(c.s, "closed"));
	assert_non_null(store_volume_find(c.s, "open"));
	ctx_close(&c);
}

static void test_metadata_corruption_tolerated(void **state)
{
	struct ctx c;
	char path[512];

	(void)state;
	ctx_open(&c);
	assert_int_equal(store_volume_create(c.s, "good", MiB, "a"), 0);
	assert_int_equal(store_volume_create(c.s, "garbage", MiB, "a"), 0);
	assert_int_equal(store_volume_create(c.s, "renamed", MiB, "a"), 0);
	assert_int_equal(store_volume_create(c.s, "badsize", MiB, "a"), 0);
	assert_int_equal(store_volume_create(c.s, "nodata", MiB, "a"), 0);
	store_close(c.s);
	c.s = NULL;
	write_file(c.dir, "garbage.meta", "{\"name\": \"garbage\", ");
	write_file(c.dir, "renamed.meta",
		   "{\"format\": 1, \"name\": \"other\", \"size\": 1048576, \"uuid\": "
		   "\"0f0e0d0c-0b0a-4908-8706-050403020100\", \"owner\": \"a\"}");
	write_file(c.dir, "badsize.meta",
		   "{\"format\": 1, \"name\": \"badsize\", \"size\": 1000, \"uuid\": "
		   "\"0f0e0d0c-0b0a-4908-8706-050403020100\", \"owner\": \"a\"}");
	snprintf(path, sizeof(path), "%s/volumes/nodata.img", c.dir);
	assert_int_equal(unlink(path), 0);
	write_file(c.dir, "orphan.img", "");
	write_file(c.dir, ".stale.meta.tmp", "{");
	write_file(c.dir, "README", "not a volume");
	assert_int_equal(store_open(c.l, c.dir, &c.opts, &c.s), 0);
	assert_int_equal(store_volume_count(c.s), 1);
	assert_string_equal(store_volume_name(store_volume_at(c.s, 0)), "good");
	assert_false(file_exists(c.dir, ".stale.meta.tmp"));
	/* Broken volumes keep their files; their names stay taken. */
	assert_int_equal(store_volume_create(c.s, "garbage", MiB, "a"), -EEXIST);
	assert_int_equal(store_volume_create(c.s, "orphan", MiB, "a"), -EEXIST);
	assert_true(file_exists(c.dir, "garbage.img"));
	ctx_close(&c);

	/* A broken shelf marker is an error, not a crash. */
	ctx_open(&c);
	store_close(c.s);
	c.s = NULL;
	snprintf(path, sizeof(path), "%s/shelf.json", c.dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("[1, 2", f);
	fclose(f);
	assert_int_equal(store_open(c.l, c.dir, &c.opts, &c.s), -EINVAL);
	c.s = NULL;
	ctx_close(&c);
}

/* The owner record (owner.c): written at create, rewritten in place by a
 * relocation and read back past the cache by another store of the same
 * shelf; a volume from before records gets one from its metadata; a record
 * that is not one makes the volume unavailable; one of an earlier volume of
 * the same name is replaced; a delete removes it. */
static void test_owner_record(void **state)
{
	struct store_volume *v, *w;
	struct store_volume_info info;
	struct store *other;
	struct ctx c;
	char path[512];

	(void)state;
	ctx_open(&c);
	v = ctx_volume(&c, "vol", MiB, "a");
	assert_true(file_exists(c.dir, "vol.owner"));
	assert_int_equal(store_open(c.l, c.dir, &c.opts, &other), 0);
	w = store_volume_find(other, "vol");
	assert_non_null(w);
	assert_int_equal(store_volume_set_owner(v, "b"), 0);
	assert_int_equal(store_volume_reload_owner(w), 0);
	store_volume_get_info(w, &info);
	assert_string_equal(info.owner, "b");
	assert_int_equal(store_shelf_names_owner(c.dir, "b"), 1);
	assert_int_equal(store_shelf_names_owner(c.dir, "c"), 0);
	assert_int_equal(store_volume_set_owner(w, "a"), 0);
	assert_int_equal(store_shelf_names_owner(c.dir, "b"), 0);
	assert_int_equal(store_volume_reload_owner(v), 0);
	store_volume_get_info(v, &info);
	assert_string_equal(info.owner, "a");
	store_close(other);

	/* From before records: the metadata's owner, recorded at the load. */
	snprintf(path, sizeof(path), "%s/volumes/vol.owner", c.dir);
	assert_int_equal(unlink(path), 0);
	ctx_reopen(&c);
	assert_true(file_exists(c.dir, "vol.owner"));
	store_volume_get_info(store_volume_find(c.s, "vol"), &info);
	assert_string_equal(info.owner, "a");

	/* Garbage: the volume is not served (its files stay). */
	write_file(c.dir, "vol.owner", "not a record");
	ctx_reopen(&c);
	assert_null(store_volume_find(c.s, "vol"));
	assert_int_equal(unlink(path), 0);
	ctx_reopen(&c);
	v = store_volume_find(c.s, "vol");
	assert_non_null(v);

	/* A record of an earlier volume of that name is replaced. */
	assert_int_equal(store_volume_set_owner(v, "b"), 0);
	snprintf(path, sizeof(path), "%s/volumes/vol.owner", c.dir);
	char keep[512];
	snprintf(keep, sizeof(keep), "%s/volumes/keep", c.dir);
	assert_int_equal(link(path, keep), 0);
	assert_int_equal(store_volume_delete(c.s, v), 0);
	store_volume_release(v);
	assert_false(file_exists(c.dir, "vol.owner"));
	v = ctx_volume(&c, "vol", MiB, "a");
	assert_int_equal(rename(keep, path), 0);
	ctx_reopen(&c);
	store_volume_get_info(store_volume_find(c.s, "vol"), &info);
	assert_string_equal(info.owner, "a");
	ctx_close(&c);
}

/* ---- I/O ---- */

#define N_IOS 300

static void test_rw_many_inflight(void **state)
{
	struct ctx c;
	struct store_volume *v;
	static struct tio t[N_IOS];
	uint8_t *wbuf, *rbuf;
	uint64_t off[N_IOS], len[N_IOS], total = 0;
	int pending = 0;

	(void)state;
	memset(&c, 0, sizeof(c));
	ctx_open(&c);
	/* A small depth so most ios wait in the overflow list. */
	c.opts.depth = 8;
	c.opts.workers = 3;
	ctx_reopen(&c);
	v = ctx_volume(&c, "v", 64 * MiB, "a");
	for (int i = 0; i < N_IOS; i++) {
		len[i] = (uint64_t)(1 + (i * 7919) % 32) * 4 * KiB - (i % 3) * 512;
		off[i] = total + (uint64_t)(i % 5) * 512; /* some unaligned gaps */
		total = off[i] + len[i];
	}
	assert_true(total <= 64 * MiB);
	wbuf = malloc(total);
	rbuf = calloc(1, total);
	assert_non_null(wbuf);
	assert_non_null(rbuf);
	fill(wbuf, total, 42);
	for (int i = 0; i < N_IOS; i++) {
		tio_prep(&t[i], &pending, STORE_OP_WRITE, 0, off[i], len[i], wbuf + off[i]);
		pending++;
		store_submit(v, &t[i].io);
	}
	assert_int_equal(pending, N_IOS); /* nothing completed inline */
	assert_int_equal(store_inflight(c.s), N_IOS);
	run_until_done(&c, &pending);
	for (int i = 0; i < N_IOS; i++)
		assert_int_equal(t[i].result, 0);
	ctx_reopen(&c); /* persistence of data, too */
	v = store_volume_find(c.s, "v");
	for (int i = N_IOS - 1; i >= 0; i--) {
		tio_prep(&t[i], &pending, STORE_OP_READ, 0, off[i], len[i], rbuf + off[i]);
		pending++;
		store_submit(v, &t[i].io);
	}
	run_until_done(&c, &pending);
	for (int i = 0; i < N_IOS; i++) {
		assert_int_equal(t[i].result, 0);
		assert_memory_equal(rbuf + off[i], wbuf + off[i], len[i]);
	}
	free(wbuf);
	free(rbuf);
	ctx_close(&c);
}

static void test_short_io(void **state)
{
	struct ctx c;
	struct store_volume *v;
	size_t n = MiB + 3 * 512;
	uint8_t *w = malloc(n), *r = calloc(1, n);
	char path[512];

	(void)state;
	assert_non_null(w);
	assert_non_null(r);
	ctx_open(&c);
	/* Every transfer system call moves at most 4 KiB: each io goes through
	 * the continue-after-short-transfer path hundreds of times. */
	c.opts.max_io_bytes = 4096;
	ctx_reopen(&c);
	v = ctx_volume(&c, "v", 4 * MiB, "a");
	fill(w, n, 7);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, STORE_F_FUA, 512, n, w), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 512, n, r), 0);
	assert_memory_equal(w, r, n);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE_ZEROES, 0, 512, 8192, NULL), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 512, 8192, r), 0);
	assert_true(all_zero(r, 8192));

	/* A real short read: the data file is cut (by someone else) in the
	 * middle of a request. The first read returns part, the next hits end
	 * of file: -EIO, never garbage or a hang. */
	snprintf(path, sizeof(path), "%s/volumes/v.img", c.dir);
	assert_int_equal(truncate(path, 2 * MiB + 100), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 2 * MiB, 8192, r), -EIO);
	c.opts.max_io_bytes = 0;
	ctx_reopen(&c); /* and reopening repairs the length */
	v = store_volume_find(c.s, "v");
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 2 * MiB, 8192, r), 0);
	free(w);
	free(r);
	ctx_close(&c);
}

static struct store_stats sstats(struct ctx *c);

static void test_fua_and_flush(void **state)
{
	struct ctx c;
	struct store_volume *v;
	uint8_t w[8192], r[8192];

	(void)state;
	ctx_open(&c);
	v = ctx_volume(&c, "v", MiB, "a");
	fill(w, sizeof(w), 3);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, STORE_F_FUA, 4096, sizeof(w), w), 0);
	/* Made durable by the write itself (io_uring: a NOWAIT write, then an
	 * fdatasync; the worker pool: RWF_DSYNC). */
	assert_true(sstats(&c).fua_syncs >= 1);
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 4096, sizeof(r), r), 0);
	assert_memory_equal(w, r, sizeof(w));
	assert_int_equal(do_io(&c, v, STORE_OP_TRIM, STORE_F_FUA, 4096, 4096, NULL), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE_ZEROES, STORE_F_FUA, 8192, 4096, NULL), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 4096, sizeof(r), r), 0);
	assert_true(all_zero(r, sizeof(r)));
	ctx_close(&c);
}

static struct store_stats sstats(struct ctx *c)
{
	struct store_stats st;
	store_get_stats(c->s, &st);
	return st;
}

/* A FLUSH with nothing written since the last sync began needs no sync, but
 * still completes later, never inline; FLUSHes that arrive together share
 * one sync; a write completed after a sync began is not covered by it. */
static void test_flush_skip_and_share(void **state)
{
	struct ctx c;
	struct store_volume *v, *v2;
	struct tio t[4];
	uint8_t w[4096], r[4096];
	struct store_stats st;
	int pending;

	(void)state;
	ctx_open(&c);
	v = ctx_volume(&c, "v", MiB, "a");
	v2 = ctx_volume(&c, "v2", MiB, "a");
	fill(w, sizeof(w), 5);

	/* The first FLUSH of a volume always syncs (pages may be dirty from
	 * before the store opened); a second one with nothing new does not. */
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	st = sstats(&c);
	assert_int_equal(st.syncs, 1);
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	st = sstats(&c);
	assert_int_equal(st.syncs, 1);
	assert_int_equal(st.flushes_clean, 1);

	/* Reads and cache hints do not dirty; writes, trims and zeroes do. */
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, sizeof(r), r), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_CACHE, 0, 0, 4096, NULL), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(sstats(&c).syncs, 1);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 0, sizeof(w), w), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(sstats(&c).syncs, 2);
	assert_int_equal(do_io(&c, v, STORE_OP_TRIM, 0, 0, 4096, NULL), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(sstats(&c).syncs, 3);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE_ZEROES, 0, 0, 4096, NULL), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(sstats(&c).syncs, 4);

	/* Another volume has its own state: its first FLUSH syncs. */
	assert_int_equal(do_io(&c, v2, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(sstats(&c).syncs, 5);

	/* A write, then three FLUSHes in one turn: one sync for all. */
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 4096, sizeof(w), w), 0);
	pending = 3;
	for (int i = 0; i < 3; i++) {
		tio_prep(&t[i], &pending, STORE_OP_FLUSH, 0, 0, 0, NULL);
		store_submit(v, &t[i].io);
		assert_false(t[i].done);
	}
	run_until_done(&c, &pending);
	for (int i = 0; i < 3; i++)
		assert_int_equal(t[i].result, 0);
	st = sstats(&c);
	assert_int_equal(st.syncs, 6);
	assert_int_equal(st.flushes_shared, 2);

	/* A FLUSH need not cover a write still in flight when it arrives; the
	 * next FLUSH after that write completed must sync. */
	pending = 2;
	tio_prep(&t[0], &pending, STORE_OP_WRITE, 0, 8192, sizeof(w), w);
	tio_prep(&t[1], &pending, STORE_OP_FLUSH, 0, 0, 0, NULL);
	store_submit(v, &t[0].io);
	store_submit(v, &t[1].io);
	run_until_done(&c, &pending);
	assert_int_equal(t[0].result, 0);
	assert_int_equal(t[1].result, 0);
	assert_int_equal(sstats(&c).syncs, 6);
	assert_int_equal(sstats(&c).flushes_clean, 3);
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	assert_int_equal(sstats(&c).syncs, 7);

	/* A sync runs when a write completes; a FLUSH sent after that must not
	 * ride on it: it waits for the next sync (or starts one if the first
	 * is over by then). */
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 0, sizeof(w), w), 0);
	pending = 2;
	tio_prep(&t[0], &pending, STORE_OP_FLUSH, 0, 0, 0, NULL);
	tio_prep(&t[1], &pending, STORE_OP_WRITE, 0, 12288, sizeof(w), w);
	store_submit(v, &t[0].io);
	store_submit(v, &t[1].io);
	while (!t[1].done)
		assert_true(loop_run_once(c.l, 100000000ull) >= 0);
	pending++;
	tio_prep(&t[3], &pending, STORE_OP_FLUSH, 0, 0, 0, NULL);
	store_submit(v, &t[3].io);
	run_until_done(&c, &pending);
	assert_int_equal(t[0].result, 0);
	assert_int_equal(t[3].result, 0);
	st = sstats(&c);
	assert_int_equal(st.syncs, 9);
	assert_int_equal(st.flushes, 14);
	assert_int_equal(st.flushes, st.syncs + st.flushes_clean + st.flushes_shared);
	ctx_close(&c);
}

static void test_trim_and_block_status(void **state)
{
	struct ctx c;
	struct store_volume *v;
	struct store_extent e[8];
	uint8_t *w = malloc(MiB), *r = malloc(256 * KiB);

	(void)state;
	assert_non_null(w);
	assert_non_null(r);
	ctx_open(&c);
	v = ctx_volume(&c, "v", 4 * MiB, "a");
	assert_int_equal(store_block_status(v, 0, 4 * MiB, e, 8), 1);
	assert_true(e[0].hole);
	assert_int_equal(e[0].length, 4 * MiB);
	fill(w, MiB, 5);
	/* Written in 16 pieces, reported as one merged extent. */
	for (int i = 0; i < 16; i++)
		assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, (uint64_t)i * 64 * KiB, 64 * KiB,
				       w + i * 64 * KiB),
				 0);
	assert_int_equal(store_block_status(v, 0, 2 * MiB, e, 8), 2);
	assert_false(e[0].hole);
	assert_int_equal(e[0].length, MiB);
	assert_true(e[1].hole);
	assert_int_equal(e[1].length, MiB);

	assert_int_equal(do_io(&c, v, STORE_OP_TRIM, 0, 256 * KiB, 256 * KiB, NULL), 0);
	assert_int_equal(store_block_status(v, 0, 4 * MiB, e, 8), 4);
	assert_false(e[0].hole);
	assert_int_equal(e[0].length, 256 * KiB);
	assert_true(e[1].hole);
	assert_int_equal(e[1].length, 256 * KiB);
	assert_false(e[2].hole);
	assert_int_equal(e[2].length, 512 * KiB);
	assert_true(e[3].hole);
	assert_int_equal(e[3].length, 3 * MiB);
	/* Bounded by max, and by length from an offset inside an extent. */
	assert_int_equal(store_block_status(v, 0, 4 * MiB, e, 2), 2);
	assert_int_equal(e[1].length, 256 * KiB);
	assert_int_equal(store_block_status(v, 300 * KiB, 300 * KiB, e, 8), 2);
	assert_true(e[0].hole);
	assert_int_equal(e[0].length, 212 * KiB);
	assert_false(e[1].hole);
	assert_int_equal(e[1].length, 88 * KiB);
	assert_int_equal(store_block_status(v, 0, 0, e, 8), 0);
	assert_int_equal(store_block_status(v, 4 * MiB, 1, e, 8), -EINVAL);

	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 256 * KiB, 256 * KiB, r), 0);
	assert_true(all_zero(r, 256 * KiB));
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 512 * KiB, 256 * KiB, r), 0);
	assert_memory_equal(r, w + 512 * KiB, 256 * KiB);
	free(w);
	free(r);
	ctx_close(&c);
}

/* Write zeroes on the filesystem of @p base: a hole by default, an
 * allocated range with NO_HOLE, -ENOTSUP for FAST_ZERO where the filesystem
 * cannot zero in place (tmpfs), and zeros read back in every case. */
static void write_zeroes_on(const char *base)
{
	struct ctx c;
	struct store_volume *v;
	struct store_extent e[8];
	struct statfs sf;
	uint8_t *w = malloc(MiB), *r = malloc(256 * KiB);
	uint64_t before, after;
	bool tmpfs;
	int rc;

	assert_non_null(w);
	assert_non_null(r);
	ctx_open_in(&c, base);
	assert_int_equal(statfs(c.dir, &sf), 0);
	tmpfs = sf.f_type == TMPFS_MAGIC_;
	v = ctx_volume(&c, "v", 2 * MiB, "a");
	fill(w, MiB, 9);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 0, MiB, w), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);

	/* Default: punched. */
	before = allocated(v);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE_ZEROES, 0, 0, 256 * KiB, NULL), 0);
	after = allocated(v);
	assert_true(after <= before - 256 * KiB);
	assert_int_equal(store_block_status(v, 0, 256 * KiB, e, 8), 1);
	assert_true(e[0].hole);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, 256 * KiB, r), 0);
	assert_true(all_zero(r, 256 * KiB));

	/* NO_HOLE: zeros, space stays allocated. */
	before = allocated(v);
	assert_int_equal(
	    do_io(&c, v, STORE_OP_WRITE_ZEROES, STORE_F_NO_HOLE, 256 * KiB, 256 * KiB, NULL), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_FLUSH, 0, 0, 0, NULL), 0);
	after = allocated(v);
	assert_true(after >= before);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 256 * KiB, 256 * KiB, r), 0);
	assert_true(all_zero(r, 256 * KiB));

	/* NO_HOLE | FAST_ZERO: done in place, or refused where it would mean
	 * writing zeros (tmpfs has no FALLOC_FL_ZERO_RANGE). */
	rc = do_io(&c, v, STORE_OP_WRITE_ZEROES, STORE_F_NO_HOLE | STORE_F_FAST_ZERO, 512 * KiB,
		   256 * KiB, NULL);
	if (tmpfs)
		assert_int_equal(rc, -ENOTSUP);
	if (rc == -ENOTSUP) {
		assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 512 * KiB, 256 * KiB, r), 0);
		assert_memory_equal(r, w + 512 * KiB, 256 * KiB); /* untouched */
	} else {
		/* ext4, xfs: ZERO_RANGE */
		assert_int_equal(rc, 0);
		assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 512 * KiB, 256 * KiB, r), 0);
		assert_true(all_zero(r, 256 * KiB));
	}
	/* FAST_ZERO alone punches, which every filesystem here does fast. */
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE_ZEROES, STORE_F_FAST_ZERO | STORE_F_FUA,
			       768 * KiB, 1000, NULL),
			 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 768 * KiB, 4096, r), 0);
	assert_true(all_zero(r, 1000));
	assert_memory_equal(r + 1000, w + 768 * KiB + 1000, 4096 - 1000);
	free(w);
	free(r);
	ctx_close(&c);
}

static void test_write_zeroes(void **state)
{
	(void)state;
	write_zeroes_on(tmp_base());
}

static void test_write_zeroes_tmpfs(void **state)
{
	struct statfs sf;

	(void)state;
	if (statfs("/dev/shm", &sf) != 0 || sf.f_type != TMPFS_MAGIC_ || access("/dev/shm", W_OK))
		skip();
	write_zeroes_on("/dev/shm");
}

static void test_cache(void **state)
{
	struct ctx c;
	struct store_volume *v;
	uint8_t w[4096];

	(void)state;
	ctx_open(&c);
	v = ctx_volume(&c, "v", 8 * MiB, "a");
	fill(w, sizeof(w), 1);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 0, sizeof(w), w), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_CACHE, 0, 0, 8 * MiB, NULL), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_CACHE, 0, 4096, 512, NULL), 0);
	ctx_close(&c);
}

static void test_invalid_ios_complete_later(void **state)
{
	struct ctx c;
	struct store_volume *v;
	uint8_t b[512];

	(void)state;
	ctx_open(&c);
	v = ctx_volume(&c, "v", MiB, "a");
	assert_int_equal(store_check_range(v, 0, MiB), 0);
	assert_int_equal(store_check_range(v, MiB, 0), 0);
	assert_int_equal(store_check_range(v, MiB - 512, 1024), -EINVAL);
	assert_int_equal(store_check_range(v, UINT64_MAX, 2), -EINVAL);
	/* do_io checks that none of these completes inline. */
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, MiB, 512, b), -EINVAL);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, UINT64_MAX - 10, 512, b), -EINVAL);
	assert_int_equal(do_io(&c, v, STORE_OP_TRIM, 0, MiB - 512, 1024, NULL), -EINVAL);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, 512, NULL), -EINVAL);
	assert_int_equal(do_io(&c, v, (enum store_op)99, 0, 0, 512, b), -EINVAL);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, 0, b), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE_ZEROES, 0, 512, 0, NULL), 0);
	ctx_close(&c);
}

/* Two shelves in one process, as after a takeover: independent. */
static void test_two_shelves(void **state)
{
	struct ctx a, b;
	struct store_volume *va, *vb;
	uint8_t w[4096], r[4096];

	(void)state;
	ctx_open(&a);
	ctx_open(&b);
	va = ctx_volume(&a, "vol", MiB, "a");
	vb = ctx_volume(&b, "vol", MiB, "b");
	fill(w, sizeof(w), 11);
	assert_int_equal(do_io(&a, va, STORE_OP_WRITE, 0, 0, sizeof(w), w), 0);
	assert_int_equal(do_io(&b, vb, STORE_OP_READ, 0, 0, sizeof(r), r), 0);
	assert_true(all_zero(r, sizeof(r)));
	assert_int_equal(do_io(&a, va, STORE_OP_READ, 0, 0, sizeof(r), r), 0);
	assert_memory_equal(w, r, sizeof(w));
	ctx_close(&b);
	ctx_close(&a);
}

/* The fencing gate: a scripted lease. While closed, a step never reaches
 * the file; released it goes on, failed it ends with the error. */
static int g_gate_true_calls; /* answer "open" this many more times first */
static bool g_gate_open;
static int g_gate_waits;

static bool t_gate(void *arg)
{
	(void)arg;
	if (g_gate_true_calls > 0) {
		g_gate_true_calls--;
		return true;
	}
	return g_gate_open;
}

static void t_gate_wait(void *arg)
{
	(void)arg;
	g_gate_waits++;
}

static void turns(struct ctx *c, int n)
{
	for (int i = 0; i < n; i++)
		loop_run_once(c->l, 1000000);
}

static void test_fencing_gate(void **state)
{
	struct ctx c;
	struct store_volume *v;
	uint8_t w[4096], w2[4096], r[4096];
	struct tio t;
	int pending;

	(void)state;
	ctx_open(&c);
	v = ctx_volume(&c, "v", MiB, "a");
	fill(w, sizeof(w), 21);
	fill(w2, sizeof(w2), 22);
	store_set_gate(c.s, t_gate, t_gate_wait, NULL);
	g_gate_open = false;
	g_gate_true_calls = 0;
	g_gate_waits = 0;

	/* Closed: the write waits in the store, and says so. */
	pending = 1;
	tio_prep(&t, &pending, STORE_OP_WRITE, 0, 0, sizeof(w), w);
	store_submit(v, &t.io);
	turns(&c, 20);
	assert_false(t.done);
	assert_true(g_gate_waits >= 1);
	store_gate_release(c.s); /* still closed: nothing moves */
	turns(&c, 5);
	assert_false(t.done);
	g_gate_open = true;
	store_gate_release(c.s);
	run_until_done(&c, &pending);
	assert_int_equal(t.result, 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, sizeof(r), r), 0);
	assert_memory_equal(r, w, sizeof(w));

	/* Fenced: a held write fails and never reaches the file. */
	g_gate_open = false;
	pending = 1;
	tio_prep(&t, &pending, STORE_OP_WRITE, 0, 0, sizeof(w2), w2);
	store_submit(v, &t.io);
	turns(&c, 20);
	assert_false(t.done);
	store_gate_fail(c.s, -EIO);
	run_until_done(&c, &pending);
	assert_int_equal(t.result, -EIO);

	if (g_engine == STORE_ENGINE_THREADS) {
		/* The gate closes between the loop's check and the worker's
		 * system call (a stop there): the worker does not write. */
		int waits = g_gate_waits;
		g_gate_true_calls = 1;
		pending = 1;
		tio_prep(&t, &pending, STORE_OP_WRITE, 0, 0, sizeof(w2), w2);
		store_submit(v, &t.io);
		for (int i = 0; i < 1000 && g_gate_waits == waits; i++)
			loop_run_once(c.l, 100000000);
		assert_true(g_gate_waits > waits);
		assert_false(t.done);
		store_gate_fail(c.s, -EIO);
		run_until_done(&c, &pending);
		assert_int_equal(t.result, -EIO);
	}
	g_gate_open = true;
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, sizeof(r), r), 0);
	assert_memory_equal(r, w, sizeof(w));
	store_set_gate(c.s, NULL, NULL, NULL);
	ctx_close(&c);
}

/* A step accepted before a fence never runs after it, even when the gate
 * is open again by the time the engine gets to it (a giveback): here it is
 * still in the engine's queue, not yet parked, when the fence comes. Before
 * the fence generation it ran then, over the taker's writes (issue 16,
 * failover-planned and failover-stop on own mounts). */
static void test_fence_before_queue(void **state)
{
	struct ctx c;
	struct store_volume *v;
	uint8_t w[4096], w2[4096], r[4096];
	struct tio t;
	int pending;

	(void)state;
	ctx_open(&c);
	v = ctx_volume(&c, "v", MiB, "a");
	fill(w, sizeof(w), 31);
	fill(w2, sizeof(w2), 32);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 0, sizeof(w), w), 0);
	store_set_gate(c.s, t_gate, t_gate_wait, NULL);
	g_gate_true_calls = 0;
	g_gate_open = false;
	pending = 1;
	tio_prep(&t, &pending, STORE_OP_WRITE, 0, 0, sizeof(w2), w2);
	store_submit(v, &t.io); /* queued for the engine; the loop has not turned */
	store_gate_fail(c.s, -EIO);
	g_gate_open = true; /* given back: the lease holds again */
	store_gate_release(c.s);
	run_until_done(&c, &pending);
	assert_int_equal(t.result, -EIO);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, sizeof(r), r), 0);
	assert_memory_equal(r, w, sizeof(w));
	/* New I/O after the fence goes through. */
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 0, sizeof(w2), w2), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, sizeof(r), r), 0);
	assert_memory_equal(r, w2, sizeof(w2));
	store_set_gate(c.s, NULL, NULL, NULL);
	ctx_close(&c);
}

/* ---- direct I/O and the gate at the system call (issue 16) ---- */

static bool vol_direct(struct store_volume *v)
{
	struct store_volume_info info;

	store_volume_get_info(v, &info);
	return info.direct_io;
}

/* Pages of the volume's file in this host's page cache (mincore over a
 * mapping of it): what a second host sharing the shelf would not see, and
 * what writeback could still carry to the shelf. */
static size_t cached_pages(struct ctx *c, const char *name, uint64_t size)
{
	char path[512];
	long pg = sysconf(_SC_PAGESIZE);
	size_t n = (size + (uint64_t)pg - 1) / (uint64_t)pg, resident = 0;
	unsigned char *vec = calloc(n, 1);
	void *m;
	int fd;

	assert_non_null(vec);
	snprintf(path, sizeof(path), "%s/volumes/%s.img", c->dir, name);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(mincore(m, size, vec), 0);
	for (size_t i = 0; i < n; i++)
		resident += vec[i] & 1;
	munmap(m, size);
	close(fd);
	free(vec);
	return resident;
}

/* Read the volume's file behind the store's back (a buffered pread: on one
 * host it sees what reached the file). */
static void file_read(struct ctx *c, const char *name, uint64_t off, void *buf, size_t len)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/volumes/%s.img", c->dir, name);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

/* Finding 1: with direct_io on (the default) nothing a volume's I/O moves
 * stays in the page cache: no dirty page for writeback to carry to the
 * shelf later, no clean page to serve a read from. Off, it does (the check
 * can see a cache). */
static void test_direct_io_no_page_cache(void **state)
{
	struct ctx c;
	struct store_volume *v;
	size_t n = MiB;
	uint8_t *w, *r;

	(void)state;
	assert_int_equal(posix_memalign((void **)&w, 4096, n), 0);
	assert_int_equal(posix_memalign((void **)&r, 4096, n), 0);
	fill(w, n, 31);
	ctx_open(&c);
	v = ctx_volume(&c, "d", 4 * MiB, "a");
	assert_true(vol_direct(v));
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 0, n, w), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, STORE_F_FUA, 2 * MiB, n, w), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, n, r), 0);
	assert_memory_equal(w, r, n);
	assert_int_equal(do_io(&c, v, STORE_OP_CACHE, 0, 0, 4 * MiB, NULL), 0);
	assert_int_equal(cached_pages(&c, "d", 4 * MiB), 0);
	/* Reopened (a takeover opens the partner's shelf): direct again. */
	ctx_reopen(&c);
	v = store_volume_find(c.s, "d");
	assert_true(vol_direct(v));
	memset(r, 0, n);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 2 * MiB, n, r), 0);
	assert_memory_equal(w, r, n);
	assert_int_equal(cached_pages(&c, "d", 4 * MiB), 0);

	/* direct_io = off: today's buffered I/O. */
	c.opts.direct_io = false;
	ctx_reopen(&c);
	v = ctx_volume(&c, "b", 4 * MiB, "a");
	assert_false(vol_direct(v));
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 0, n, w), 0);
	assert_true(cached_pages(&c, "b", 4 * MiB) > 0);
	ctx_close(&c);
	free(w);
	free(r);
}

/* One shelf on tmpfs (/dev/shm): a write and a read, unaligned, through
 * whatever I/O the volume got; @return whether it is direct. */
static bool tmpfs_round_trip(void)
{
	struct ctx c;
	struct store_volume *v;
	uint8_t w[8192], r[8192];
	bool direct;

	ctx_open_in(&c, "/dev/shm");
	v = ctx_volume(&c, "t", MiB, "a");
	direct = vol_direct(v);
	fill(w, sizeof(w), 32);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE, STORE_F_FUA, 100, sizeof(w), w), 0);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 100, sizeof(r), r), 0);
	assert_memory_equal(w, r, sizeof(w));
	ctx_reopen(&c);
	v = store_volume_find(c.s, "t");
	assert_int_equal(vol_direct(v), direct);
	memset(r, 0, sizeof(r));
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 100, sizeof(r), r), 0);
	assert_memory_equal(w, r, sizeof(w));
	ctx_close(&c);
	return direct;
}

/* Finding 1: on tmpfs, direct where the kernel has it (Linux >= 6.6);
 * where O_DIRECT is refused (tmpfs before 6.6, made here by the test hook
 * with EINVAL as such a kernel gives) the volume keeps buffered I/O, says
 * so in its info (direct_io: false), and works. */
static void test_direct_io_tmpfs_fallback(void **state)
{
	struct statfs sf;

	(void)state;
	if (statfs("/dev/shm", &sf) != 0 || sf.f_type != TMPFS_MAGIC_ || access("/dev/shm", W_OK))
		skip();
	tmpfs_round_trip();
	store_test_refuse_direct = true;
	assert_false(tmpfs_round_trip());
	store_test_refuse_direct = false;
}

/* Finding 1: ios that O_DIRECT cannot take as they are (unaligned offset,
 * length or buffer) go through a bounce buffer; unaligned writes are
 * read-modify-writes that hold the volume's other writes off, so two of
 * them in one block both land, and overlapping writes land in the order
 * submitted. Checked against a model of the volume, small pieces too. */
static void test_direct_io_unaligned(void **state)
{
	struct ctx c;
	struct store_volume *v;
	const uint64_t size = 256 * KiB;
	uint8_t *model = calloc(1, size), *r = malloc(size + 1), *src = malloc(size + 1);
	struct tio t[8];
	int pending;
	static const struct {
		uint64_t off, len;
	} cases[] = {{1, 1},	   {511, 2},	   {4095, 4098}, {100, 200},	 {8192, 4096},
		     {12288, 513}, {65535, 70000}, {0, 4095},	 {200000, 56143}};

	(void)state;
	assert_non_null(model);
	assert_non_null(r);
	assert_non_null(src);
	ctx_open(&c);
	c.opts.max_io_bytes = 4096 + 512; /* pieces: rounded down to the block */
	ctx_reopen(&c);
	v = ctx_volume(&c, "u", size, "a");
	assert_true(vol_direct(v));
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t off = cases[i].off, len = cases[i].len;
		uint32_t fua = i % 2 ? STORE_F_FUA : 0;
		/* src + 1: a buffer no O_DIRECT would take. */
		fill(src + 1, len, 40 + i);
		assert_int_equal(do_io(&c, v, STORE_OP_WRITE, fua, off, len, src + 1), 0);
		memcpy(model + off, src + 1, len);
		assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, off, len, r + 1), 0);
		assert_memory_equal(r + 1, model + off, len);
	}
	/* Unaligned write zeroes, with and without a hole. */
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE_ZEROES, 0, 4097, 5000, NULL), 0);
	memset(model + 4097, 0, 5000);
	assert_int_equal(do_io(&c, v, STORE_OP_WRITE_ZEROES, STORE_F_NO_HOLE, 70001, 3, NULL), 0);
	memset(model + 70001, 0, 3);

	/* All at once: two unaligned writes in one block, an aligned write
	 * under an unaligned one, and an aligned one over both. */
	pending = 5;
	fill(src, 5 * 4096, 60);
	tio_prep(&t[0], &pending, STORE_OP_WRITE, 0, 16384, 8192, src);
	tio_prep(&t[1], &pending, STORE_OP_WRITE, 0, 16384 + 10, 10, src + 8192);
	tio_prep(&t[2], &pending, STORE_OP_WRITE, 0, 16384 + 30, 10, src + 12288);
	tio_prep(&t[3], &pending, STORE_OP_WRITE, 0, 16384 + 4096, 4096, src + 16384);
	tio_prep(&t[4], &pending, STORE_OP_WRITE, 0, 16384 + 4000, 200, src + 20000);
	for (int i = 0; i < 5; i++)
		store_submit(v, &t[i].io);
	run_until_done(&c, &pending);
	for (int i = 0; i < 5; i++) {
		assert_int_equal(t[i].result, 0);
		memcpy(model + t[i].io.offset, t[i].io.buf, t[i].io.length);
	}
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, size, r), 0);
	assert_memory_equal(r, model, size);
	/* And reopened: it is all in the file. */
	c.opts.max_io_bytes = 0;
	ctx_reopen(&c);
	v = store_volume_find(c.s, "u");
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, size, r), 0);
	assert_memory_equal(r, model, size);
	assert_int_equal(cached_pages(&c, "u", size), 0);
	ctx_close(&c);
	free(model);
	free(r);
	free(src);
}

/* Finding 2: a file system that refuses RWF_NOWAIT (FUSE, NFS: -EOPNOTSUPP;
 * here the test hook). Many writes in flight when the first refusal comes
 * back must all land (before: the later ones failed with -EOPNOTSUPP, and a
 * takeover's replay with them); after it, writes still never run past the
 * gate: one whose gate check at the system call fails waits. */
static void test_nowait_refused(void **state)
{
	struct ctx c;
	struct store_volume *v;
	enum { N = 32 };
	struct tio t[N];
	uint8_t *w, *r;
	int pending = N, waits;
	struct store_stats st;

	(void)state;
	if (g_engine != STORE_ENGINE_URING)
		skip();
	assert_int_equal(posix_memalign((void **)&w, 4096, N * 4096), 0);
	assert_int_equal(posix_memalign((void **)&r, 4096, N * 4096), 0);
	fill(w, N * 4096, 70);
	ctx_open(&c);
	v = ctx_volume(&c, "n", MiB, "a");
	store_test_refuse_nowait = true;
	for (int i = 0; i < N; i++) {
		tio_prep(&t[i], &pending, STORE_OP_WRITE, i % 4 ? 0 : STORE_F_FUA,
			 (uint64_t)i * 4096, 4096, w + i * 4096);
		store_submit(v, &t[i].io);
	}
	run_until_done(&c, &pending);
	for (int i = 0; i < N; i++)
		assert_int_equal(t[i].result, 0);
	st = sstats(&c);
	assert_int_equal(st.fua_syncs, N / 4);
	assert_int_equal(do_io(&c, v, STORE_OP_READ, 0, 0, N * 4096, r), 0);
	assert_memory_equal(r, w, N * 4096);

	/* The gate closes after the loop's check, before the system call. */
	store_set_gate(c.s, t_gate, t_gate_wait, NULL);
	g_gate_open = false;
	g_gate_true_calls = 1;
	waits = g_gate_waits;
	pending = 1;
	tio_prep(&t[0], &pending, STORE_OP_WRITE, 0, 0, 4096, w + 4096);
	store_submit(v, &t[0].io);
	for (int i = 0; i < 1000 && g_gate_waits == waits; i++)
		loop_run_once(c.l, 100000000);
	assert_true(g_gate_waits > waits);
	assert_false(t[0].done);
	file_read(&c, "n", 0, r, 4096);
	assert_memory_equal(r, w, 4096);
	g_gate_open = true;
	store_gate_release(c.s);
	run_until_done(&c, &pending);
	assert_int_equal(t[0].result, 0);
	file_read(&c, "n", 0, r, 4096);
	assert_memory_equal(r, w + 4096, 4096);
	store_test_refuse_nowait = false;
	store_set_gate(c.s, NULL, NULL, NULL);
	ctx_close(&c);
	free(w);
	free(r);
}

/* Finding 9: every step that changes the shelf is bounded by the gate at
 * its system call: the gate closes after the loop's check (a SIGSTOP
 * there), and the write, TRIM, WRITE_ZEROES, FLUSH or a FUA write's sync
 * does not run until it opens (before: io_uring ran them in the kernel). */
static void test_gate_at_the_system_call(void **state)
{
	static const struct {
		enum store_op op;
		uint32_t flags;
		int true_calls;
	} cases[] = {
	    {STORE_OP_WRITE, 0, 1}, /* io_uring: a batch prepared, then a stop */
	    {STORE_OP_TRIM, 0, 1},  /* fallocate */
	    {STORE_OP_WRITE_ZEROES, STORE_F_NO_HOLE, 1}, /* fallocate */
	    {STORE_OP_FLUSH, 0, 1},			 /* fdatasync */
	    {STORE_OP_WRITE, STORE_F_FUA, 3},		 /* io_uring: the fdatasync after */
	};
	struct ctx c;
	struct store_volume *v;
	uint8_t *w, *w2, *r;
	struct tio t;
	int pending, waits;

	(void)state;
	assert_int_equal(posix_memalign((void **)&w, 4096, 64 * KiB), 0);
	assert_int_equal(posix_memalign((void **)&w2, 4096, 64 * KiB), 0);
	assert_int_equal(posix_memalign((void **)&r, 4096, 64 * KiB), 0);
	fill(w, 64 * KiB, 80);
	fill(w2, 64 * KiB, 81);
	ctx_open(&c);
	v = ctx_volume(&c, "g", MiB, "a");
	store_set_gate(c.s, t_gate, t_gate_wait, NULL);
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct store_stats before;
		bool fua_sync = cases[i].flags & STORE_F_FUA;
		if (fua_sync && g_engine != STORE_ENGINE_URING)
			continue; /* one RWF_DSYNC write: the first case */
		g_gate_open = true;
		g_gate_true_calls = 0;
		assert_int_equal(do_io(&c, v, STORE_OP_WRITE, 0, 0, 64 * KiB, w), 0);
		before = sstats(&c);
		g_gate_open = false;
		g_gate_true_calls = cases[i].true_calls;
		waits = g_gate_waits;
		pending = 1;
		tio_prep(&t, &pending, cases[i].op, cases[i].flags, 0, 64 * KiB, w2);
		store_submit(v, &t.io);
		for (int k = 0; k < 1000 && g_gate_waits == waits; k++)
			loop_run_once(c.l, 100000000);
		assert_true(g_gate_waits > waits);
		turns(&c, 5);
		assert_false(t.done);
		if (!fua_sync) {
			file_read(&c, "g", 0, r, 64 * KiB);
			assert_memory_equal(r, w, 64 * KiB);
		}
		assert_int_equal(sstats(&c).syncs, before.syncs);
		assert_int_equal(sstats(&c).fua_syncs, before.fua_syncs);
		g_gate_open = true;
		store_gate_release(c.s);
		run_until_done(&c, &pending);
		assert_int_equal(t.result, 0);
		file_read(&c, "g", 0, r, 64 * KiB);
		switch (cases[i].op) {
		case STORE_OP_WRITE:
			assert_memory_equal(r, w2, 64 * KiB);
			break;
		case STORE_OP_FLUSH:
			assert_int_equal(sstats(&c).syncs, before.syncs + 1);
			break;
		default:
			assert_true(all_zero(r, 64 * KiB));
			break;
		}
		if (fua_sync)
			assert_int_equal(sstats(&c).fua_syncs, before.fua_syncs + 1);
	}
	store_set_gate(c.s, NULL, NULL, NULL);
	ctx_close(&c);
	free(w);
	free(w2);
	free(r);
}

static int setup_uring(void **state)
{
	(void)state;
	g_engine = STORE_ENGINE_URING;
	return 0;
}

static int setup_threads(void **state)
{
	(void)state;
	g_engine = STORE_ENGINE_THREADS;
	return 0;
}

int main(void)
{
	const struct CMUnitTest meta_tests[] = {
	    cmocka_unit_test(test_create_list_find_reopen),
	    cmocka_unit_test(test_bad_names_and_sizes),
	    cmocka_unit_test(test_delete_resize),
	    cmocka_unit_test(test_metadata_corruption_tolerated),
	    cmocka_unit_test(test_allow_lists),
	    cmocka_unit_test(test_owner_record),
	};
	const struct CMUnitTest io_tests[] = {
	    cmocka_unit_test(test_rw_many_inflight),
	    cmocka_unit_test(test_short_io),
	    cmocka_unit_test(test_fua_and_flush),
	    cmocka_unit_test(test_flush_skip_and_share),
	    cmocka_unit_test(test_trim_and_block_status),
	    cmocka_unit_test(test_write_zeroes),
	    cmocka_unit_test(test_write_zeroes_tmpfs),
	    cmocka_unit_test(test_cache),
	    cmocka_unit_test(test_invalid_ios_complete_later),
	    cmocka_unit_test(test_two_shelves),
	    cmocka_unit_test(test_fencing_gate),
	    cmocka_unit_test(test_fence_before_queue),
	    cmocka_unit_test(test_direct_io_no_page_cache),
	    cmocka_unit_test(test_direct_io_tmpfs_fallback),
	    cmocka_unit_test(test_direct_io_unaligned),
	    cmocka_unit_test(test_nowait_refused),
	    cmocka_unit_test(test_gate_at_the_system_call),
	};
	int fails = 0;

	log_set_level(LOG_LEVEL_ERROR);
	g_engine = STORE_ENGINE_URING;
	fails += cmocka_run_group_tests_name("store metadata", meta_tests, NULL, NULL);
	fails += cmocka_run_group_tests_name("store io (io_uring)", io_tests, setup_uring, NULL);
	fails += cmocka_run_group_tests_name("store io (threads)", io_tests, setup_threads, NULL);
	return fails;
}
