/* Unit tests of the NBD server: a real nbd_server on the loop, a RAM disk
 * backend, and a hand-written client on the other end of a socketpair
 * (one test over loopback TCP). Every wait pumps the loop until a
 * condition holds, with a generous deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "nbd/nbd.h"
#include "nbd/nbd_int.h"
#include "ramdisk.h"

#define DEADLINE_NS 10000000000ull
#define DISK_SIZE   (1u << 20)

static struct loop *L;
static struct ramdisk *RD;
static struct nbd_server *SRV;
static int CFD = -1;

/* ---- fixture ---- */

static void start_opts(struct nbd_server_opts *o)
{
	int sv[2];

	assert_int_equal(loop_create(&L), 0);
	assert_int_equal(ramdisk_create(L, &RD), 0);
	assert_int_equal(ramdisk_add(RD, "disk", DISK_SIZE, false, "test disk"), 0);
	assert_int_equal(ramdisk_add(RD, "ro", 65536, true, NULL), 0);
	assert_int_equal(ramdisk_add(RD, "aligned", 65536, false, NULL), 0);
	ramdisk_info(RD, "aligned")->min_block = 512;
	assert_int_equal(nbd_server_create(L, o, &ramdisk_ops, RD, &SRV), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(nbd_server_add_fd(SRV, sv[0]), 0);
	CFD = sv[1];
}

static void start(void)
{
	struct nbd_server_opts o = {.name = "test"};
	start_opts(&o);
}

static void stop(void)
{
	if (CFD >= 0)
		close(CFD);
	CFD = -1;
	nbd_server_destroy(SRV);
	ramdisk_release(RD, false);
	loop_run_once(L, 0);
	loop_run_once(L, 0);
	ramdisk_destroy(RD);
	loop_destroy(L);
}

/* The fixture of most tests: start() before, stop() after. */
static int server_setup(void **state)
{
	(void)state;
	start();
	return 0;
}

static int server_teardown(void **state)
{
	(void)state;
	stop();
	return 0;
}

#define server_test(f) cmocka_unit_test_setup_teardown(f, server_setup, server_teardown)

static struct nbd_server_stats stats(void)
{
	struct nbd_server_stats st;
	nbd_server_get_stats(SRV, &st);
	return st;
}

static void pump(void)
{
	loop_run_once(L, 1000000);
}

/* ---- client I/O ---- */

static void cl_write_fd(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t end = loop_now_ns() + DEADLINE_NS;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		assert_true(n < 0 && errno == EAGAIN);
		pump();
		assert_true(loop_now_ns() < end);
	}
}

static void cl_write(const void *buf, size_t len)
{
	cl_write_fd(CFD, buf, len);
}

/* @return 0, or -1 at EOF. */
static int cl_read_fd(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;
	uint64_t end = loop_now_ns() + DEADLINE_NS;

	while (len) {
		ssize_t n = read(fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -1;
		assert_true(errno == EAGAIN);
		pump();
		assert_true(loop_now_ns() < end);
	}
	return 0;
}

static void cl_read(void *buf, size_t len)
{
	assert_int_equal(cl_read_fd(CFD, buf, len), 0);
}

/* Wait for the server to close, discarding what it still sends. */
static void expect_closed_fd(int fd)
{
	uint8_t junk[4096];
	uint64_t end = loop_now_ns() + DEADLINE_NS;

	for (;;) {
		ssize_t n = read(fd, junk, sizeof(junk));
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return;
		if (n < 0) {
			assert_true(errno == EAGAIN);
			pump();
		}
		assert_true(loop_now_ns() < end);
	}
}

static void expect_closed(void)
{
	expect_closed_fd(CFD);
}

/* Nothing more arrives while the loop runs a few turns. */
static void expect_silence(void)
{
	uint8_t b;
	for (int i = 0; i < 20; i++)
		loop_run_once(L, 0);
	assert_int_equal(read(CFD, &b, 1), -1);
	assert_int_equal(errno, EAGAIN);
}

static void wait_connections(uint64_t n)
{
	uint64_t end = loop_now_ns() + DEADLINE_NS;
	while (stats().connections != n) {
		pump();
		assert_true(loop_now_ns() < end);
	}
}

/* The client hangs up; the server has closed its side. */
static void client_close(void)
{
	close(CFD);
	CFD = -1;
	wait_connections(0);
}

/* ---- handshake helpers ---- */

static void greet_fd(int fd, uint32_t cflags)
{
	uint8_t g[18], f[4];

	assert_int_equal(cl_read_fd(fd, g, sizeof(g)), 0);
	assert_true(get_be64(g) == NBD_MAGIC);
	assert_true(get_be64(g + 8) == NBD_IHAVEOPT);
	assert_int_equal(get_be16(g + 16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	put_be32(f, cflags);
	cl_write_fd(fd, f, 4);
}

static void greet(void)
{
	greet_fd(CFD, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
}

static void send_opt_fd(int fd, uint32_t opt, const void *data, uint32_t len)
{
	uint8_t h[16];

	put_be64(h, NBD_IHAVEOPT);
	put_be32(h + 8, opt);
	put_be32(h + 12, len);
	cl_write_fd(fd, h, 16);
	if (len)
		cl_write_fd(fd, data, len);
}

static void send_opt(uint32_t opt, const void *data, uint32_t len)
{
	send_opt_fd(CFD, opt, data, len);
}

struct orep {
	uint32_t opt, type, len;
	uint8_t data[8192];
};

static void read_orep_fd(int fd, struct orep *r)
{
	uint8_t h[20];

	assert_int_equal(cl_read_fd(fd, h, 20), 0);
	assert_true(get_be64(h) == NBD_REP_MAGIC);
	r->opt = get_be32(h + 8);
	r->type = get_be32(h + 12);
	r->len = get_be32(h + 16);
	assert_true(r->len <= sizeof(r->data));
	assert_int_equal(cl_read_fd(fd, r->data, r->len), 0);
}

static void read_orep(struct orep *r)
{
	read_orep_fd(CFD, r);
}

static void expect_orep(uint32_t opt, uint32_t type)
{
	struct orep r;
	read_orep(&r);
	assert_int_equal(r.opt, opt);
	assert_int_equal(r.type, type);
}

/* INFO/GO payload for @p name with the given info requests. */
static uint32_t go_data(uint8_t *d, const char *name, const uint16_t *reqs, uint16_t n)
{
	uint32_t nl = (uint32_t)strlen(name);

	put_be32(d, nl);
	memcpy(d + 4, name, nl);
	put_be16(d + 4 + nl, n);
	for (uint16_t i = 0; i < n; i++)
		put_be16(d + 6 + nl + 2 * i, reqs[i]);
	return 6 + nl + 2u * n;
}

/* META payload: export name and queries. */
static uint32_t meta_data(uint8_t *d, const char *name, const char *const *q, uint32_t n)
{
	uint32_t nl = (uint32_t)strlen(name), pos;

	put_be32(d, nl);
	memcpy(d + 4, name, nl);
	put_be32(d + 4 + nl, n);
	pos = 8 + nl;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t ql = (uint32_t)strlen(q[i]);
		put_be32(d + pos, ql);
		memcpy(d + pos + 4, q[i], ql);
		pos += 4 + ql;
	}
	return pos;
}

/* GO to @p name; returns the transmission flags. */
static uint16_t go_fd(int fd, const char *name)
{
	uint8_t d[512];
	uint16_t tflags = 0;
	struct orep r;

	send_opt_fd(fd, NBD_OPT_GO, d, go_data(d, name, NULL, 0));
	for (;;) {
		read_orep_fd(fd, &r);
		assert_int_equal(r.opt, NBD_OPT_GO);
		if (r.type == NBD_REP_ACK)
			break;
		assert_int_equal(r.type, NBD_REP_INFO);
		if (get_be16(r.data) == NBD_INFO_EXPORT)
			tflags = get_be16(r.data + 10);
	}
	assert_true(tflags & NBD_FLAG_HAS_FLAGS);
	return tflags;
}

static uint16_t go(const char *name)
{
	return go_fd(CFD, name);
}

static void structured(void)
{
	send_opt(NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	expect_orep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
}

static void set_meta(const char *name)
{
	const char *q[] = {"base:allocation"};
	uint8_t d[256];
	struct orep r;

	send_opt(NBD_OPT_SET_META_CONTEXT, d, meta_data(d, name, q, 1));
	read_orep(&r);
	assert_int_equal(r.type, NBD_REP_META_CONTEXT);
	assert_int_equal(get_be32(r.data), NBD_META_ALLOC_ID);
	expect_orep(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK);
}

/* Full handshake: optionally structured (+ base:allocation), GO. */
static uint16_t connect_to(const char *name, bool sr, bool meta)
{
	greet();
	if (sr)
		structured();
	if (meta)
		set_meta(name);
	return go(name);
}

/* ---- transmission helpers ---- */

static void send_req_fd(int fd, uint16_t flags, uint16_t type, uint64_t cookie, uint64_t off,
			uint32_t len)
{
	uint8_t h[28];

	put_be32(h, NBD_REQUEST_MAGIC);
	put_be16(h + 4, flags);
	put_be16(h + 6, type);
	put_be64(h + 8, cookie);
	put_be64(h + 16, off);
	put_be32(h + 24, len);
	cl_write_fd(fd, h, 28);
}

static void send_req(uint16_t flags, uint16_t type, uint64_t cookie, uint64_t off, uint32_t len)
{
	send_req_fd(CFD, flags, type, cookie, off, len);
}

/* A simple reply; @return its error. Data (for reads) is left unread. */
static uint32_t read_simple(uint64_t cookie)
{
	uint8_t h[16];

	cl_read(h, 16);
	assert_int_equal(get_be32(h), NBD_SIMPLE_REPLY_MAGIC);
	assert_true(get_be64(h + 8) == cookie);
	return get_be32(h + 4);
}

struct chunk {
	uint16_t flags, type;
	uint64_t cookie;
	uint32_t len;
	uint8_t *data; /* malloc'd, len bytes */
};

static void read_chunk(struct chunk *c)
{
	uint8_t h[20];

	cl_read(h, 20);
	assert_int_equal(get_be32(h), NBD_STRUCTURED_REPLY_MAGIC);
	c->flags = get_be16(h + 4);
	c->type = get_be16(h + 6);
	c->cookie = get_be64(h + 8);
	c->len = get_be32(h + 16);
	c->data = malloc(c->len ? c->len : 1);
	assert_non_null(c->data);
	cl_read(c->data, c->len);
}

/* Any reply on a structured connection: 0 or the error. */
static uint32_t read_any(uint64_t cookie)
{
	uint8_t m[4];
	uint32_t err = 0;

	/* peek the magic */
	uint64_t end = loop_now_ns() + DEADLINE_NS;
	while (recv(CFD, m, 4, MSG_PEEK) < 4) {
		pump();
		assert_true(loop_now_ns() < end);
	}
	if (get_be32(m) == NBD_SIMPLE_REPLY_MAGIC)
		return read_simple(cookie);
	struct chunk c;
	read_chunk(&c);
	assert_true(c.cookie == cookie);
	assert_true(c.flags & NBD_REPLY_FLAG_DONE);
	if (c.type & 0x8000)
		err = get_be32(c.data);
	free(c.data);
	return err;
}

/* ---- tests: handshake ---- */

static void test_greeting_and_export_name(void **state)
{
	uint8_t r[134];

	(void)state;
	greet_fd(CFD, NBD_FLAG_C_FIXED_NEWSTYLE);
	send_opt(NBD_OPT_EXPORT_NAME, "disk", 4);
	cl_read(r, sizeof(r)); /* with the 124 zeroes */
	assert_true(get_be64(r) == DISK_SIZE);
	assert_true(get_be16(r + 8) & NBD_FLAG_SEND_FLUSH);
	assert_false(get_be16(r + 8) & NBD_FLAG_SEND_DF);
	for (int i = 10; i < 134; i++)
		assert_int_equal(r[i], 0);
	send_req(0, NBD_CMD_FLUSH, 1, 0, 0);
	assert_int_equal(read_simple(1), 0);
}

static void test_export_name_no_zeroes(void **state)
{
	uint8_t r[10];

	(void)state;
	greet();
	send_opt(NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	expect_orep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK);
	send_opt(NBD_OPT_EXPORT_NAME, "ro", 2);
	cl_read(r, sizeof(r));
	assert_true(get_be64(r) == 65536);
	assert_true(get_be16(r + 8) & NBD_FLAG_READ_ONLY);
	assert_true(get_be16(r + 8) & NBD_FLAG_SEND_DF);
	/* No zeroes: the next bytes are the reply to a request. */
	send_req(0, NBD_CMD_READ, 7, 0, 512);
	struct chunk c;
	read_chunk(&c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_OFFSET_DATA);
	assert_true(c.cookie == 7);
	free(c.data);
}

static void test_export_name_unknown(void **state)
{
	(void)state;
	greet();
	send_opt(NBD_OPT_EXPORT_NAME, "nope", 4);
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
}

static void test_reject_not_fixed(void **state)
{
	(void)state;
	greet_fd(CFD, 0);
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
	assert_int_equal(stats().connections, 0);
}

static void test_reject_unknown_client_flags(void **state)
{
	(void)state;
	greet_fd(CFD, NBD_FLAG_C_FIXED_NEWSTYLE | 0x80);
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
}

static void test_abort(void **state)
{
	(void)state;
	greet();
	send_opt(NBD_OPT_ABORT, NULL, 0);
	expect_orep(NBD_OPT_ABORT, NBD_REP_ACK);
	expect_closed();
	assert_int_equal(stats().protocol_errors, 0);
}

static void test_list(void **state)
{
	struct orep r;
	const char *names[] = {"disk", "ro", "aligned"};

	(void)state;
	greet();
	send_opt(NBD_OPT_LIST, NULL, 0);
	for (int i = 0; i < 3; i++) {
		read_orep(&r);
		assert_int_equal(r.type, NBD_REP_SERVER);
		uint32_t nl = get_be32(r.data);
		assert_int_equal(nl, strlen(names[i]));
		assert_memory_equal(r.data + 4, names[i], nl);
		if (i == 0) {
			assert_int_equal(r.len, 4 + nl + strlen("test disk"));
			assert_memory_equal(r.data + 4 + nl, "test disk", 9);
		}
	}
	expect_orep(NBD_OPT_LIST, NBD_REP_ACK);
	send_opt(NBD_OPT_LIST, "x", 1);
	expect_orep(NBD_OPT_LIST, NBD_REP_ERR_INVALID);
	go("disk");
}

static void test_info_all(void **state)
{
	uint16_t reqs[] = {NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE, 999};
	uint8_t d[256];
	bool seen[4] = {0};
	struct orep r;

	(void)state;
	greet();
	send_opt(NBD_OPT_INFO, d, go_data(d, "disk", reqs, 4));
	for (;;) {
		read_orep(&r);
		assert_int_equal(r.opt, NBD_OPT_INFO);
		if (r.type == NBD_REP_ACK)
			break;
		assert_int_equal(r.type, NBD_REP_INFO);
		uint16_t t = get_be16(r.data);
		assert_true(t < 4);
		seen[t] = true;
		switch (t) {
		case NBD_INFO_EXPORT:
			assert_int_equal(r.len, 12);
			assert_true(get_be64(r.data + 2) == DISK_SIZE);
			break;
		case NBD_INFO_NAME:
			assert_int_equal(r.len, 6);
			assert_memory_equal(r.data + 2, "disk", 4);
			break;
		case NBD_INFO_DESCRIPTION:
			assert_memory_equal(r.data + 2, "test disk", 9);
			break;
		case NBD_INFO_BLOCK_SIZE:
			assert_int_equal(r.len, 14);
			assert_int_equal(get_be32(r.data + 2), 1);
			assert_int_equal(get_be32(r.data + 6), 4096);
			assert_int_equal(get_be32(r.data + 10), 32u << 20);
			break;
		}
	}
	for (int i = 0; i < 4; i++)
		assert_true(seen[i]);
	/* INFO does not end the handshake; the handle was closed. */
	struct ramdisk_stats rs;
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.opens, 1);
	assert_int_equal(rs.closes, 1);
	uint16_t f = go("disk");
	assert_int_equal(f, NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
				NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
				NBD_FLAG_CAN_MULTI_CONN | NBD_FLAG_SEND_CACHE |
				NBD_FLAG_SEND_FAST_ZERO);
}

static void test_info_unknown_and_malformed(void **state)
{
	uint8_t d[256];
	uint32_t n;

	(void)state;
	greet();
	send_opt(NBD_OPT_INFO, d, go_data(d, "nope", NULL, 0));
	expect_orep(NBD_OPT_INFO, NBD_REP_ERR_UNKNOWN);
	send_opt(NBD_OPT_GO, d, go_data(d, "nope", NULL, 0));
	expect_orep(NBD_OPT_GO, NBD_REP_ERR_UNKNOWN);
	n = go_data(d, "disk", NULL, 0);
	put_be32(d, 200); /* name longer than the data */
	send_opt(NBD_OPT_GO, d, n);
	expect_orep(NBD_OPT_GO, NBD_REP_ERR_INVALID);
	send_opt(NBD_OPT_GO, d, 3); /* too short */
	expect_orep(NBD_OPT_GO, NBD_REP_ERR_INVALID);
	go(""); /* the default export */
	send_req(0, NBD_CMD_READ, 1, DISK_SIZE - 512, 512);
	assert_int_equal(read_simple(1), 0);
}

static void test_structured_with_data(void **state)
{
	(void)state;
	greet();
	send_opt(NBD_OPT_STRUCTURED_REPLY, "x", 1);
	expect_orep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID);
}

static void test_list_meta(void **state)
{
	uint8_t d[512];
	struct orep r;
	const char *q1[] = {"base:"};
	const char *q2[] = {"x-foo:bar", "base:nothing"};
	const char *q3[] = {"nocolon"};
	const char *q4[] = {"base:allocation", "base:allocation"};

	(void)state;
	greet();
	/* zero queries: everything */
	send_opt(NBD_OPT_LIST_META_CONTEXT, d, meta_data(d, "disk", NULL, 0));
	read_orep(&r);
	assert_int_equal(r.type, NBD_REP_META_CONTEXT);
	assert_int_equal(r.len, 4 + 15);
	assert_memory_equal(r.data + 4, "base:allocation", 15);
	expect_orep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK);
	/* "base:" wildcard */
	send_opt(NBD_OPT_LIST_META_CONTEXT, d, meta_data(d, "disk", q1, 1));
	expect_orep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_META_CONTEXT);
	expect_orep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK);
	/* unknown namespace and leaf: ignored */
	send_opt(NBD_OPT_LIST_META_CONTEXT, d, meta_data(d, "disk", q2, 2));
	expect_orep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK);
	/* no colon: invalid */
	send_opt(NBD_OPT_LIST_META_CONTEXT, d, meta_data(d, "disk", q3, 1));
	expect_orep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);
	/* duplicates: one reply */
	send_opt(NBD_OPT_LIST_META_CONTEXT, d, meta_data(d, "disk", q4, 2));
	expect_orep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_META_CONTEXT);
	expect_orep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ACK);
	/* a query length beyond the data */
	uint32_t n = meta_data(d, "disk", q1, 1);
	put_be32(d + 8 + 4, 100);
	send_opt(NBD_OPT_LIST_META_CONTEXT, d, n);
	expect_orep(NBD_OPT_LIST_META_CONTEXT, NBD_REP_ERR_INVALID);
}

static void test_set_meta(void **state)
{
	uint8_t d[512];
	const char *q1[] = {"base:"};

	(void)state;
	greet();
	/* needs structured replies */
	send_opt(NBD_OPT_SET_META_CONTEXT, d, meta_data(d, "disk", NULL, 0));
	expect_orep(NBD_OPT_SET_META_CONTEXT, NBD_REP_ERR_INVALID);
	structured();
	/* "base:" selects nothing in SET */
	send_opt(NBD_OPT_SET_META_CONTEXT, d, meta_data(d, "disk", q1, 1));
	expect_orep(NBD_OPT_SET_META_CONTEXT, NBD_REP_ACK);
	set_meta("ro"); /* then GO to another export: no context */
	go("disk");
	send_req(0, NBD_CMD_BLOCK_STATUS, 1, 0, 4096);
	assert_int_equal(read_any(1), NBD_EINVAL);
}

static void test_unknown_option(void **state)
{
	(void)state;
	greet();
	send_opt(NBD_OPT_STARTTLS, NULL, 0);
	expect_orep(NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP);
	send_opt(4242, "abc", 3);
	expect_orep(4242, NBD_REP_ERR_UNSUP);
	go("disk");
}

/* [nbd] allow: the parser refuses what would silently widen a network,
 * and the matcher takes IPv4-mapped IPv6 peers as IPv4. */
static void test_allow_parse_match(void **state)
{
	struct nbd_allow a;
	struct sockaddr_in v4 = {.sin_family = AF_INET};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	struct sockaddr_un {
		sa_family_t f;
	} un = {AF_UNIX};
	char err[128], many[(NBD_ALLOW_MAX + 1) * 16] = "";

	(void)state;
	assert_int_equal(nbd_allow_parse(NULL, &a, err, sizeof(err)), 0);
	assert_int_equal(a.n, 0);
	inet_pton(AF_INET, "192.0.2.7", &v4.sin_addr);
	assert_true(nbd_allow_match(&a, (struct sockaddr *)&v4)); /* empty: anyone */
	assert_int_equal(nbd_allow_parse(" 10.0.0.0/8,fd00::/8  192.0.2.7 ,", &a, err, sizeof(err)),
			 0);
	assert_int_equal(a.n, 3);
	assert_int_equal(a.nets[2].prefix, 32);
	assert_true(nbd_allow_match(&a, (struct sockaddr *)&v4));
	inet_pton(AF_INET, "192.0.2.8", &v4.sin_addr);
	assert_false(nbd_allow_match(&a, (struct sockaddr *)&v4));
	inet_pton(AF_INET, "10.200.1.1", &v4.sin_addr);
	assert_true(nbd_allow_match(&a, (struct sockaddr *)&v4));
	inet_pton(AF_INET6, "::ffff:10.1.2.3", &v6.sin6_addr);
	assert_true(nbd_allow_match(&a, (struct sockaddr *)&v6));
	inet_pton(AF_INET6, "::ffff:11.1.2.3", &v6.sin6_addr);
	assert_false(nbd_allow_match(&a, (struct sockaddr *)&v6));
	inet_pton(AF_INET6, "fd12::1", &v6.sin6_addr);
	assert_true(nbd_allow_match(&a, (struct sockaddr *)&v6));
	inet_pton(AF_INET6, "fe80::1", &v6.sin6_addr);
	assert_false(nbd_allow_match(&a, (struct sockaddr *)&v6));
	assert_false(nbd_allow_match(&a, (struct sockaddr *)&un));
	assert_false(nbd_allow_match(&a, NULL));

	/* Prefix edges: /0 is everyone of that family, odd prefixes mask bits. */
	assert_int_equal(nbd_allow_parse("0.0.0.0/0", &a, err, sizeof(err)), 0);
	assert_true(nbd_allow_match(&a, (struct sockaddr *)&v4));
	assert_false(nbd_allow_match(&a, (struct sockaddr *)&v6));
	assert_int_equal(nbd_allow_parse("10.0.0.0/9", &a, err, sizeof(err)), 0);
	inet_pton(AF_INET, "10.127.255.255", &v4.sin_addr);
	assert_true(nbd_allow_match(&a, (struct sockaddr *)&v4));
	inet_pton(AF_INET, "10.128.0.0", &v4.sin_addr);
	assert_false(nbd_allow_match(&a, (struct sockaddr *)&v4));

	assert_int_equal(nbd_allow_parse("10.0.0.1/8", &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "host bits"));
	assert_int_equal(nbd_allow_parse("10.0.0.0/33", &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(nbd_allow_parse("::/129", &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(nbd_allow_parse("10.0.0.0/", &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(nbd_allow_parse("10.0.0.0/-1", &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(nbd_allow_parse("10.0.0.0/0008", &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(nbd_allow_parse("example.com", &a, err, sizeof(err)), -EINVAL);
	assert_int_equal(nbd_allow_parse("10.0.0.0/8;", &a, err, sizeof(err)), -EINVAL);
	for (int i = 0; i <= NBD_ALLOW_MAX; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "10.0.%d.0/24,", i);
	assert_int_equal(nbd_allow_parse(many, &a, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "more than"));
}

/* A server with tls = require, over a PSK file (no certificate needed). */
static char PSK_FILE[64];

static int tls_setup(void **state)
{
	struct nbd_server_opts o = {.name = "test", .tls = NBD_TLS_REQUIRE};
	int fd;

	(void)state;
	snprintf(PSK_FILE, sizeof(PSK_FILE), "/tmp/duet-test-psk.XXXXXX");
	fd = mkstemp(PSK_FILE);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "alice:00112233445566778899aabbccddeeff\n", 39), 39);
	close(fd);
	o.tls_psk = PSK_FILE;
	start_opts(&o);
	return 0;
}

static int tls_teardown(void **state)
{
	(void)state;
	stop();
	unlink(PSK_FILE);
	return 0;
}

/* tls = require: nothing but STARTTLS and ABORT is answered before TLS,
 * nothing is listed; STARTTLS with data is invalid; STARTTLS is ACKed and
 * then only a TLS handshake is read (garbage closes). */
static void test_tls_require(void **state)
{
	struct orep r;
	uint8_t go_data[4 + 4 + 2] = {0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 0};
	uint8_t junk[64];

	(void)state;
	greet();
	send_opt(NBD_OPT_LIST, NULL, 0);
	read_orep(&r);
	assert_int_equal(r.type, NBD_REP_ERR_TLS_REQD); /* not one NBD_REP_SERVER */
	send_opt(NBD_OPT_GO, go_data, sizeof(go_data));
	expect_orep(NBD_OPT_GO, NBD_REP_ERR_TLS_REQD);
	send_opt(NBD_OPT_STRUCTURED_REPLY, NULL, 0);
	expect_orep(NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_TLS_REQD);
	send_opt(NBD_OPT_STARTTLS, "x", 1);
	expect_orep(NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID);
	send_opt(NBD_OPT_STARTTLS, NULL, 0);
	expect_orep(NBD_OPT_STARTTLS, NBD_REP_ACK);
	memset(junk, 0x42, sizeof(junk)); /* not a TLS record */
	cl_write(junk, sizeof(junk));
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
}

/* A client that leaves right after the STARTTLS ACK: closed, no spin. */
static void test_tls_client_leaves(void **state)
{
	(void)state;
	greet();
	send_opt(NBD_OPT_STARTTLS, NULL, 0);
	expect_orep(NBD_OPT_STARTTLS, NBD_REP_ACK);
	client_close();
}

static void test_tls_require_export_name(void **state)
{
	(void)state;
	greet();
	send_opt(NBD_OPT_EXPORT_NAME, "disk", 4);
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
}

/* tls on without credentials, or with a file that is not there: the
 * server is not created (the node stops at start, one line). */
static void test_tls_bad_credentials(void **state)
{
	struct nbd_server_opts o = {.name = "t", .tls = NBD_TLS_ON};
	struct nbd_server *srv = NULL;
	struct loop *l;

	(void)state;
	assert_int_equal(loop_create(&l), 0);
	assert_int_equal(nbd_server_create(l, &o, &ramdisk_ops, NULL, &srv), -EINVAL);
	o.tls_psk = "/nonexistent/keys.psk";
	assert_true(nbd_server_create(l, &o, &ramdisk_ops, NULL, &srv) < 0);
	o.tls_psk = NULL;
	o.tls_certificates = "/nonexistent";
	assert_true(nbd_server_create(l, &o, &ramdisk_ops, NULL, &srv) < 0);
	o.tls = NBD_TLS_OFF;
	o.allow = "10.0.0.1/8";
	assert_int_equal(nbd_server_create(l, &o, &ramdisk_ops, NULL, &srv), -EINVAL);
	loop_destroy(l);
}

static void test_option_too_big(void **state)
{
	uint32_t len = 70000;
	uint8_t *d = calloc(1, len);

	(void)state;
	greet();
	send_opt(NBD_OPT_INFO, d, len);
	expect_orep(NBD_OPT_INFO, NBD_REP_ERR_TOO_BIG);
	go("disk"); /* still in sync */
	free(d);
}

static void test_option_absurd(void **state)
{
	uint8_t h[16];

	(void)state;
	greet();
	put_be64(h, NBD_IHAVEOPT);
	put_be32(h + 8, NBD_OPT_GO);
	put_be32(h + 12, 0xfffffff0u);
	cl_write(h, 16);
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
}

static void test_bad_option_magic(void **state)
{
	uint8_t h[16] = "NOTMAGIC";

	(void)state;
	greet();
	cl_write(h, 16);
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
}

static void test_handshake_timeout(void **state)
{
	struct nbd_server_opts o = {.name = "test", .timeout_ms = 100};

	(void)state;
	start_opts(&o);
	greet(); /* then silence */
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
	stop();
}

/* ---- tests: transmission ---- */

static void test_simple_commands(void **state)
{
	uint8_t buf[8192], back[8192];
	struct ramdisk_stats rs;

	(void)state;
	connect_to("disk", false, false);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7);
	send_req(NBD_CMD_FLAG_FUA, NBD_CMD_WRITE, 1, 4096, sizeof(buf));
	cl_write(buf, sizeof(buf));
	assert_int_equal(read_simple(1), 0);
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.last_flags[NBD_CMD_WRITE], NBD_CMD_FLAG_FUA);
	send_req(NBD_CMD_FLAG_FUA, NBD_CMD_READ, 2, 4096, sizeof(buf));
	assert_int_equal(read_simple(2), 0);
	cl_read(back, sizeof(back));
	assert_memory_equal(buf, back, sizeof(buf));
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.last_flags[NBD_CMD_READ], 0); /* FUA stripped */
	send_req(0, NBD_CMD_FLUSH, 3, 0, 0);
	assert_int_equal(read_simple(3), 0);
	send_req(0, NBD_CMD_TRIM, 4, 4096, 4096);
	assert_int_equal(read_simple(4), 0);
	send_req(NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE_ZEROES, 5, 8192, 100);
	assert_int_equal(read_simple(5), 0);
	send_req(0, NBD_CMD_CACHE, 6, 0, 65536);
	assert_int_equal(read_simple(6), 0);
	send_req(0, NBD_CMD_READ, 7, 4096, 8192);
	assert_int_equal(read_simple(7), 0);
	cl_read(back, sizeof(back));
	for (int i = 0; i < 4096 + 100; i++)
		assert_int_equal(back[i], 0);
	assert_memory_equal(back + 4196, buf + 4196, 8192 - 4196);
	/* zero-length requests succeed without the backend */
	send_req(0, NBD_CMD_READ, 8, 0, 0);
	assert_int_equal(read_simple(8), 0);
	send_req(0, NBD_CMD_WRITE, 9, 0, 0);
	assert_int_equal(read_simple(9), 0);
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.ops[NBD_CMD_READ], 2);
	assert_int_equal(rs.ops[NBD_CMD_WRITE], 1);
	assert_int_equal(rs.ops[NBD_CMD_FLUSH], 1);
	assert_int_equal(rs.ops[NBD_CMD_TRIM], 1);
	assert_int_equal(rs.ops[NBD_CMD_WRITE_ZEROES], 1);
	assert_int_equal(rs.ops[NBD_CMD_CACHE], 1);
	assert_int_equal(rs.last_flags[NBD_CMD_WRITE_ZEROES], NBD_CMD_FLAG_NO_HOLE);
	/* DISC: closes */
	send_req(0, NBD_CMD_DISC, 10, 0, 0);
	expect_closed();
	struct nbd_server_stats st = stats();
	assert_int_equal(st.bytes_written, 8192);
	assert_int_equal(st.bytes_read, 16384);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.requests, 10);
}

static void test_structured_read(void **state)
{
	struct chunk c;
	uint8_t buf[4096];

	(void)state;
	memset(ramdisk_data(RD, "disk") + 8192, 0xab, 4096);
	uint16_t f = connect_to("disk", true, false);
	assert_true(f & NBD_FLAG_SEND_DF);
	send_req(NBD_CMD_FLAG_DF, NBD_CMD_READ, 11, 8192, 4096);
	read_chunk(&c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_OFFSET_DATA);
	assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
	assert_true(c.cookie == 11);
	assert_int_equal(c.len, 8 + 4096);
	assert_true(get_be64(c.data) == 8192);
	memset(buf, 0xab, sizeof(buf));
	assert_memory_equal(c.data + 8, buf, 4096);
	free(c.data);
	/* zero length: a NONE chunk */
	send_req(0, NBD_CMD_READ, 12, 0, 0);
	read_chunk(&c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_NONE);
	assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
	assert_int_equal(c.len, 0);
	free(c.data);
	/* an error: an error chunk with a message */
	send_req(0, NBD_CMD_READ, 13, DISK_SIZE, 1);
	read_chunk(&c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_ERROR);
	assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
	assert_int_equal(get_be32(c.data), NBD_EINVAL);
	assert_int_equal(get_be16(c.data + 4), c.len - 6);
	free(c.data);
	/* a write: simple reply allowed */
	send_req(0, NBD_CMD_WRITE, 14, 0, 4);
	cl_write("abcd", 4);
	assert_int_equal(read_any(14), 0);
}

static void test_block_status(void **state)
{
	struct chunk c;
	uint8_t buf[8192];

	(void)state;
	connect_to("disk", true, true);
	memset(buf, 1, sizeof(buf));
	send_req(0, NBD_CMD_WRITE, 1, 16384, sizeof(buf));
	cl_write(buf, sizeof(buf));
	assert_int_equal(read_any(1), 0);
	send_req(0, NBD_CMD_BLOCK_STATUS, 2, 0, DISK_SIZE);
	read_chunk(&c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_BLOCK_STATUS);
	assert_int_equal(c.flags, NBD_REPLY_FLAG_DONE);
	assert_int_equal(c.len, 4 + 3 * 8);
	assert_int_equal(get_be32(c.data), NBD_META_ALLOC_ID);
	assert_int_equal(get_be32(c.data + 4), 16384);
	assert_int_equal(get_be32(c.data + 8), NBD_STATE_HOLE | NBD_STATE_ZERO);
	assert_int_equal(get_be32(c.data + 12), 8192);
	assert_int_equal(get_be32(c.data + 16), 0);
	assert_int_equal(get_be32(c.data + 20), DISK_SIZE - 24576);
	assert_int_equal(get_be32(c.data + 24), NBD_STATE_HOLE | NBD_STATE_ZERO);
	free(c.data);
	/* REQ_ONE: one descriptor, not beyond the request */
	send_req(NBD_CMD_FLAG_REQ_ONE, NBD_CMD_BLOCK_STATUS, 3, 100, 1000);
	read_chunk(&c);
	assert_int_equal(c.len, 12);
	assert_int_equal(get_be32(c.data + 4), 1000);
	free(c.data);
	/* beyond the end */
	send_req(0, NBD_CMD_BLOCK_STATUS, 4, DISK_SIZE - 10, 20);
	assert_int_equal(read_any(4), NBD_EINVAL);
	/* a flag not for this command */
	send_req(NBD_CMD_FLAG_DF, NBD_CMD_BLOCK_STATUS, 5, 0, 20);
	assert_int_equal(read_any(5), NBD_EINVAL);
}

static void test_block_status_not_negotiated(void **state)
{
	(void)state;
	connect_to("disk", true, false);
	send_req(0, NBD_CMD_BLOCK_STATUS, 1, 0, 4096);
	assert_int_equal(read_any(1), NBD_EINVAL);
}

static void test_block_status_backend_cannot(void **state)
{
	struct chunk c;

	(void)state;
	ramdisk_info(RD, "disk")->can_block_status = false;
	connect_to("disk", true, true);
	send_req(0, NBD_CMD_BLOCK_STATUS, 1, 4096, 8192);
	read_chunk(&c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_BLOCK_STATUS);
	assert_int_equal(c.len, 12);
	assert_int_equal(get_be32(c.data + 4), 8192);
	assert_int_equal(get_be32(c.data + 8), 0);
	free(c.data);
	struct ramdisk_stats rs;
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.ops[NBD_CMD_BLOCK_STATUS], 0);
}

static void test_bad_flags(void **state)
{
	(void)state;
	ramdisk_info(RD, "disk")->can_fast_zero = false;
	ramdisk_info(RD, "disk")->can_fua = false;
	connect_to("disk", false, false);
	send_req(0x100, NBD_CMD_READ, 1, 0, 512); /* unknown flag */
	assert_int_equal(read_simple(1), NBD_EINVAL);
	send_req(NBD_CMD_FLAG_DF, NBD_CMD_READ, 2, 0, 512); /* DF needs structured */
	assert_int_equal(read_simple(2), NBD_EINVAL);
	send_req(NBD_CMD_FLAG_FAST_ZERO, NBD_CMD_WRITE_ZEROES, 3, 0, 512);
	assert_int_equal(read_simple(3), NBD_EINVAL);
	send_req(NBD_CMD_FLAG_FUA, NBD_CMD_WRITE_ZEROES, 4, 0, 512); /* FUA not advertised */
	assert_int_equal(read_simple(4), NBD_EINVAL);
	send_req(NBD_CMD_FLAG_NO_HOLE, NBD_CMD_WRITE, 5, 0, 4); /* payload still skipped */
	cl_write("abcd", 4);
	assert_int_equal(read_simple(5), NBD_EINVAL);
	send_req(0, NBD_CMD_READ, 6, 0, 512);
	assert_int_equal(read_simple(6), 0);
	uint8_t junk[512];
	cl_read(junk, sizeof(junk));
	assert_int_equal(stats().errors, 5);
	assert_int_equal(stats().protocol_errors, 0);
}

static void test_unknown_command(void **state)
{
	(void)state;
	connect_to("disk", false, false);
	send_req(0, 99, 1, 0, 0);
	assert_int_equal(read_simple(1), NBD_EINVAL);
	send_req(0, NBD_CMD_FLUSH, 2, 0, 0);
	assert_int_equal(read_simple(2), 0);
}

static void test_bad_request_magic(void **state)
{
	uint8_t h[28] = {0x12, 0x34};

	(void)state;
	connect_to("disk", false, false);
	cl_write(h, sizeof(h));
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
}

static void test_out_of_bounds(void **state)
{
	uint8_t buf[4096] = {0};

	(void)state;
	connect_to("disk", false, false);
	send_req(0, NBD_CMD_READ, 1, DISK_SIZE - 100, 4096);
	assert_int_equal(read_simple(1), NBD_EINVAL);
	send_req(0, NBD_CMD_READ, 2, UINT64_MAX - 10, 4096); /* overflow */
	assert_int_equal(read_simple(2), NBD_EINVAL);
	send_req(0, NBD_CMD_WRITE, 3, DISK_SIZE - 100, sizeof(buf));
	cl_write(buf, sizeof(buf));
	assert_int_equal(read_simple(3), NBD_ENOSPC);
	send_req(0, NBD_CMD_WRITE_ZEROES, 4, DISK_SIZE, 1);
	assert_int_equal(read_simple(4), NBD_ENOSPC);
	send_req(0, NBD_CMD_TRIM, 5, DISK_SIZE, 1);
	assert_int_equal(read_simple(5), NBD_EINVAL);
	/* the stream is still in sync after the skipped payload */
	send_req(0, NBD_CMD_FLUSH, 6, 0, 0);
	assert_int_equal(read_simple(6), 0);
	struct ramdisk_stats rs;
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.ops[NBD_CMD_WRITE], 0);
}

static void test_flush_with_offset(void **state)
{
	(void)state;
	connect_to("disk", false, false);
	send_req(0, NBD_CMD_FLUSH, 1, 512, 0);
	assert_int_equal(read_simple(1), NBD_EINVAL);
}

static void test_read_only(void **state)
{
	uint8_t buf[512] = {0};

	(void)state;
	uint16_t f = connect_to("ro", false, false);
	assert_true(f & NBD_FLAG_READ_ONLY);
	assert_false(f & NBD_FLAG_SEND_TRIM);
	assert_false(f & NBD_FLAG_SEND_WRITE_ZEROES);
	send_req(0, NBD_CMD_WRITE, 1, 0, sizeof(buf));
	cl_write(buf, sizeof(buf));
	assert_int_equal(read_simple(1), NBD_EPERM);
	send_req(0, NBD_CMD_TRIM, 2, 0, 512);
	assert_int_equal(read_simple(2), NBD_EPERM);
	send_req(0, NBD_CMD_WRITE_ZEROES, 3, 0, 512);
	assert_int_equal(read_simple(3), NBD_EPERM);
	send_req(0, NBD_CMD_READ, 4, 0, 512);
	assert_int_equal(read_simple(4), 0);
	cl_read(buf, sizeof(buf));
}

static void test_not_advertised(void **state)
{
	(void)state;
	ramdisk_info(RD, "disk")->can_trim = false;
	ramdisk_info(RD, "disk")->can_flush = false;
	ramdisk_info(RD, "disk")->can_zero = false;
	ramdisk_info(RD, "disk")->can_cache = false;
	uint16_t f = connect_to("disk", false, false);
	assert_false(f & NBD_FLAG_SEND_CACHE);
	send_req(0, NBD_CMD_CACHE, 4, 0, 512); /* a hint: succeeds, backend not asked */
	assert_int_equal(read_simple(4), 0);
	struct ramdisk_stats rs;
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.ops[NBD_CMD_CACHE], 0);
	assert_false(f & (NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_WRITE_ZEROES |
			  NBD_FLAG_SEND_FAST_ZERO));
	send_req(0, NBD_CMD_TRIM, 1, 0, 512);
	assert_int_equal(read_simple(1), NBD_EINVAL);
	send_req(0, NBD_CMD_FLUSH, 2, 0, 0);
	assert_int_equal(read_simple(2), NBD_EINVAL);
	send_req(0, NBD_CMD_WRITE_ZEROES, 3, 0, 512);
	assert_int_equal(read_simple(3), NBD_EINVAL);
}

static void test_misaligned(void **state)
{
	(void)state;
	uint8_t d[256];
	uint16_t reqs[] = {NBD_INFO_BLOCK_SIZE};
	struct orep r;
	greet();
	send_opt(NBD_OPT_GO, d, go_data(d, "aligned", reqs, 1));
	for (;;) {
		read_orep(&r);
		if (r.type == NBD_REP_ACK)
			break;
		if (get_be16(r.data) == NBD_INFO_BLOCK_SIZE) {
			assert_int_equal(get_be32(r.data + 2), 512);
			assert_int_equal(get_be32(r.data + 6), 4096);
		}
	}
	send_req(0, NBD_CMD_READ, 1, 100, 512);
	assert_int_equal(read_simple(1), NBD_EINVAL);
	send_req(0, NBD_CMD_TRIM, 2, 512, 100);
	assert_int_equal(read_simple(2), NBD_EINVAL);
	send_req(0, NBD_CMD_READ, 3, 512, 512);
	assert_int_equal(read_simple(3), 0);
}

static void test_write_over_max_payload(void **state)
{
	(void)state;
	connect_to("disk", false, false);
	send_req(0, NBD_CMD_WRITE, 1, 0, (32u << 20) + 1);
	assert_int_equal(read_simple(1), NBD_EINVAL);
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
}

static void test_read_over_max_payload(void **state)
{
	struct chunk c;

	(void)state;
	connect_to("disk", true, false);
	send_req(0, NBD_CMD_READ, 1, 0, (32u << 20) + 1);
	read_chunk(&c);
	assert_int_equal(c.type, NBD_REPLY_TYPE_ERROR);
	assert_int_equal(get_be32(c.data), NBD_EOVERFLOW);
	free(c.data);
	expect_closed();
}

static void test_backend_errors(void **state)
{
	static const struct {
		int err;
		uint16_t type, flags;
		uint32_t wire;
	} cases[] = {
	    {-EIO, NBD_CMD_READ, 0, NBD_EIO},
	    {-ENOSPC, NBD_CMD_WRITE_ZEROES, 0, NBD_ENOSPC},
	    {-EDQUOT, NBD_CMD_TRIM, 0, NBD_ENOSPC},
	    {-EROFS, NBD_CMD_TRIM, 0, NBD_EPERM},
	    {-EPERM, NBD_CMD_FLUSH, 0, NBD_EPERM},
	    {-EINVAL, NBD_CMD_CACHE, 0, NBD_EINVAL},
	    {-ENOTSUP, NBD_CMD_WRITE_ZEROES, NBD_CMD_FLAG_FAST_ZERO, NBD_ENOTSUP},
	    {-ENOTSUP, NBD_CMD_TRIM, 0, NBD_EINVAL},
	    {-EOVERFLOW, NBD_CMD_READ, NBD_CMD_FLAG_DF, NBD_EOVERFLOW},
	    {-ESHUTDOWN, NBD_CMD_READ, 0, NBD_ESHUTDOWN},
	    {-ENOMEM, NBD_CMD_READ, 0, NBD_ENOMEM},
	    {-ETIMEDOUT, NBD_CMD_READ, 0, NBD_EIO},
	};

	(void)state;
	start();
	connect_to("disk", true, false);
	for (unsigned i = 0; i < ARRAY_SIZE(cases); i++) {
		ramdisk_fail_next(RD, cases[i].err, 1);
		send_req(cases[i].flags, cases[i].type, i, 0,
			 cases[i].type == NBD_CMD_FLUSH ? 0 : 512);
		assert_int_equal(read_any(i), cases[i].wire);
	}
	assert_int_equal(stats().errors, ARRAY_SIZE(cases));
	stop();
}

static void test_out_of_order(void **state)
{
	uint8_t h[16], data[512];

	(void)state;
	connect_to("disk", false, false);
	for (int i = 0; i < 8; i++)
		memset(ramdisk_data(RD, "disk") + 512 * i, i, 512);
	ramdisk_set_mode(RD, RAMDISK_HOLD);
	for (uint64_t i = 0; i < 8; i++)
		send_req(0, NBD_CMD_READ, 100 + i, 512 * i, 512);
	uint64_t end = loop_now_ns() + DEADLINE_NS;
	while (ramdisk_held(RD) < 8) {
		pump();
		assert_true(loop_now_ns() < end);
	}
	expect_silence();
	ramdisk_release(RD, true);
	for (int i = 7; i >= 0; i--) {
		cl_read(h, 16);
		assert_int_equal(get_be32(h + 4), 0);
		assert_true(get_be64(h + 8) == 100u + (unsigned)i);
		cl_read(data, sizeof(data));
		assert_int_equal(data[0], i);
		assert_int_equal(data[511], i);
	}
}

static void test_deferred_completion(void **state)
{
	uint8_t buf[4096];

	(void)state;
	connect_to("disk", true, true);
	ramdisk_set_mode(RD, RAMDISK_DEFER);
	memset(buf, 5, sizeof(buf));
	/* pipelined: several requests in one write */
	send_req(0, NBD_CMD_WRITE, 1, 0, sizeof(buf));
	cl_write(buf, sizeof(buf));
	send_req(0, NBD_CMD_FLUSH, 2, 0, 0);
	send_req(0, NBD_CMD_BLOCK_STATUS, 3, 0, 4096);
	bool seen[4] = {0};
	for (int i = 0; i < 3; i++) {
		struct chunk c;
		uint8_t m[4];
		uint64_t end = loop_now_ns() + DEADLINE_NS;
		while (recv(CFD, m, 4, MSG_PEEK) < 4) {
			pump();
			assert_true(loop_now_ns() < end);
		}
		if (get_be32(m) == NBD_SIMPLE_REPLY_MAGIC) {
			uint8_t h[16];
			cl_read(h, 16);
			assert_int_equal(get_be32(h + 4), 0);
			seen[get_be64(h + 8)] = true;
		} else {
			read_chunk(&c);
			assert_true(c.cookie == 3);
			assert_int_equal(c.type, NBD_REPLY_TYPE_BLOCK_STATUS);
			seen[3] = true;
			free(c.data);
		}
	}
	assert_true(seen[1] && seen[2] && seen[3]);
}

static void test_client_vanishes_with_ios(void **state)
{
	uint8_t buf[4096] = {0};
	struct ramdisk_stats rs;

	(void)state;
	connect_to("disk", false, false);
	ramdisk_set_mode(RD, RAMDISK_HOLD);
	send_req(0, NBD_CMD_READ, 1, 0, 4096);
	send_req(0, NBD_CMD_WRITE, 2, 0, sizeof(buf));
	cl_write(buf, sizeof(buf));
	send_req(0, NBD_CMD_FLUSH, 3, 0, 0);
	uint64_t end = loop_now_ns() + DEADLINE_NS;
	while (ramdisk_held(RD) < 3) {
		pump();
		assert_true(loop_now_ns() < end);
	}
	client_close();
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.closes, 0); /* ios still at the backend */
	ramdisk_release(RD, false);
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.closes, 1);
}

static void test_vanish_mid_write(void **state)
{
	uint8_t buf[1000] = {0};

	(void)state;
	connect_to("disk", false, false);
	send_req(0, NBD_CMD_WRITE, 1, 0, 4096);
	cl_write(buf, sizeof(buf));
	shutdown(CFD, SHUT_WR);
	expect_closed();
	assert_int_equal(stats().connections, 0);
}

static void test_disc_waits_for_inflight(void **state)
{
	uint8_t h[16];

	(void)state;
	connect_to("disk", false, false);
	ramdisk_set_mode(RD, RAMDISK_HOLD);
	send_req(0, NBD_CMD_FLUSH, 1, 0, 0);
	send_req(0, NBD_CMD_DISC, 2, 0, 0);
	uint64_t end = loop_now_ns() + DEADLINE_NS;
	while (ramdisk_held(RD) < 1) {
		pump();
		assert_true(loop_now_ns() < end);
	}
	expect_silence();
	assert_int_equal(stats().connections, 1);
	ramdisk_release(RD, false);
	cl_read(h, 16);
	assert_true(get_be64(h + 8) == 1);
	expect_closed();
}

static void test_half_header_stall(void **state)
{
	struct nbd_server_opts o = {.name = "test", .timeout_ms = 100};
	uint8_t h[10] = {0x25, 0x60, 0x95, 0x13};
	int sv[2];

	(void)state;
	start_opts(&o);
	/* a second client, healthy, served while the first stalls */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(nbd_server_add_fd(SRV, sv[0]), 0);
	connect_to("disk", false, false);
	greet_fd(sv[1], NBD_FLAG_C_FIXED_NEWSTYLE);
	go_fd(sv[1], "disk");
	cl_write(h, sizeof(h));
	send_req_fd(sv[1], 0, NBD_CMD_FLUSH, 1, 0, 0);
	uint8_t r[16];
	assert_int_equal(cl_read_fd(sv[1], r, 16), 0);
	assert_true(get_be64(r + 8) == 1);
	expect_closed();
	assert_int_equal(stats().protocol_errors, 1);
	/* the other one still works */
	send_req_fd(sv[1], 0, NBD_CMD_FLUSH, 2, 0, 0);
	assert_int_equal(cl_read_fd(sv[1], r, 16), 0);
	assert_true(get_be64(r + 8) == 2);
	close(sv[1]);
	stop();
}

static void test_flow_control(void **state)
{
	struct nbd_server_opts o = {.name = "test", .conn_buffer = 65536};
	uint8_t *buf = calloc(1, 32768);
	uint8_t h[16];

	(void)state;
	start_opts(&o);
	connect_to("disk", false, false);
	ramdisk_set_mode(RD, RAMDISK_HOLD);
	for (uint64_t i = 0; i < 8; i++) {
		send_req(0, NBD_CMD_WRITE, i, 32768 * i, 32768);
		cl_write(buf, 32768);
	}
	uint64_t end = loop_now_ns() + DEADLINE_NS;
	while (ramdisk_held(RD) < 2) {
		pump();
		assert_true(loop_now_ns() < end);
	}
	expect_silence();
	assert_int_equal(ramdisk_held(RD), 2); /* 64 KiB budget: two writes */
	int done = 0;
	while (done < 8) {
		ramdisk_release(RD, false);
		if (recv(CFD, h, 16, MSG_DONTWAIT | MSG_PEEK) == 16) {
			cl_read(h, 16);
			assert_int_equal(get_be32(h + 4), 0);
			done++;
		} else {
			pump();
		}
		assert_true(loop_now_ns() < end);
	}
	free(buf);
	stop();
}

/* [nbd] buffer_limit: one budget over every connection (and server). A
 * second connection reads no request while the first holds the budget,
 * and is served once the first's requests are released. */
static void test_shared_budget(void **state)
{
	struct nbd_budget *b;
	uint8_t *buf = calloc(1, 32768);
	uint8_t h[16];
	uint64_t used, cached;
	int sv[2], done = 0;

	(void)state;
	assert_int_equal(nbd_budget_create(65536, &b), 0);
	struct nbd_server_opts o = {.name = "test", .budget = b};
	start_opts(&o);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(nbd_server_add_fd(SRV, sv[0]), 0);
	connect_to("disk", false, false);
	greet_fd(sv[1], NBD_FLAG_C_FIXED_NEWSTYLE);
	go_fd(sv[1], "disk");
	ramdisk_set_mode(RD, RAMDISK_HOLD);
	for (uint64_t i = 0; i < 4; i++) {
		send_req(0, NBD_CMD_WRITE, i, 32768 * i, 32768);
		cl_write(buf, 32768);
	}
	uint64_t end = loop_now_ns() + DEADLINE_NS;
	while (ramdisk_held(RD) < 2) {
		pump();
		assert_true(loop_now_ns() < end);
	}
	/* The other connection's write waits: the shared budget is full. */
	send_req_fd(sv[1], 0, NBD_CMD_WRITE, 100, 0, 32768);
	cl_write_fd(sv[1], buf, 32768);
	expect_silence();
	assert_int_equal(ramdisk_held(RD), 2);
	nbd_budget_get(b, &used, &cached);
	assert_int_equal(used, 65536);
	while (done < 5) {
		ramdisk_release(RD, false);
		if (recv(CFD, h, 16, MSG_DONTWAIT | MSG_PEEK) == 16) {
			cl_read(h, 16);
			assert_int_equal(get_be32(h + 4), 0);
			done++;
		} else if (recv(sv[1], h, 16, MSG_DONTWAIT | MSG_PEEK) == 16) {
			assert_int_equal(cl_read_fd(sv[1], h, 16), 0);
			assert_int_equal(get_be32(h + 4), 0);
			assert_true(get_be64(h + 8) == 100);
			done++;
		} else {
			pump();
		}
		assert_true(loop_now_ns() < end);
	}
	nbd_budget_get(b, &used, &cached);
	assert_int_equal(used, 0);
	assert_true(cached <= 65536 / 4);
	close(sv[1]);
	free(buf);
	stop();
	nbd_budget_put(b); /* the server's reference went with it */
}

static void test_big_read(void **state)
{
	struct nbd_server_opts o = {.name = "test"};
	uint32_t len = 32u << 20;
	uint8_t *buf = malloc(len), h[16];
	int sv[2];

	(void)state;
	assert_non_null(buf);
	assert_int_equal(loop_create(&L), 0);
	assert_int_equal(ramdisk_create(L, &RD), 0);
	assert_int_equal(ramdisk_add(RD, "big", len, false, NULL), 0);
	for (uint32_t i = 0; i < len; i += 4096)
		ramdisk_data(RD, "big")[i] = (uint8_t)(i >> 12);
	assert_int_equal(nbd_server_create(L, &o, &ramdisk_ops, RD, &SRV), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(nbd_server_add_fd(SRV, sv[0]), 0);
	CFD = sv[1];
	connect_to("big", false, false);
	send_req(0, NBD_CMD_READ, 1, 0, len);
	cl_read(h, 16);
	assert_int_equal(get_be32(h + 4), 0);
	cl_read(buf, len);
	for (uint32_t i = 0; i < len; i += 4096)
		assert_int_equal(buf[i], (uint8_t)(i >> 12));
	/* and a big write */
	send_req(0, NBD_CMD_WRITE, 2, 0, len);
	memset(buf, 0x5a, len);
	cl_write(buf, len);
	assert_int_equal(read_simple(2), 0);
	assert_int_equal(ramdisk_data(RD, "big")[len - 1], 0x5a);
	free(buf);
	stop();
}

static void test_destroy_with_ios(void **state)
{
	struct ramdisk_stats rs;

	(void)state;
	start();
	connect_to("disk", false, false);
	ramdisk_set_mode(RD, RAMDISK_HOLD);
	send_req(0, NBD_CMD_READ, 1, 0, 4096);
	uint64_t end = loop_now_ns() + DEADLINE_NS;
	while (ramdisk_held(RD) < 1) {
		pump();
		assert_true(loop_now_ns() < end);
	}
	nbd_server_destroy(SRV);
	SRV = NULL;
	expect_closed();
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.closes, 0);
	ramdisk_release(RD, false);
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.closes, 1);
	close(CFD);
	CFD = -1;
	loop_run_once(L, 0);
	ramdisk_destroy(RD);
	loop_destroy(L);
}

static void test_max_clients(void **state)
{
	struct nbd_server_opts o = {.name = "test", .max_clients = 1};
	int sv[2];

	(void)state;
	start_opts(&o);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(nbd_server_add_fd(SRV, sv[0]), -EMFILE);
	expect_closed_fd(sv[1]);
	close(sv[1]);
	assert_int_equal(stats().connections, 1);
	stop();
}

static void test_tcp_listener(void **state)
{
	struct nbd_server_opts o = {.name = "tcp", .listen = "127.0.0.1:20010"};
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(20010)};
	uint8_t r[16];
	int fd;

	(void)state;
	assert_int_equal(loop_create(&L), 0);
	assert_int_equal(ramdisk_create(L, &RD), 0);
	assert_int_equal(ramdisk_add(RD, "disk", DISK_SIZE, false, NULL), 0);
	assert_int_equal(nbd_server_create(L, &o, &ramdisk_ops, RD, &SRV), 0);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	util_set_nonblock(fd, true);
	CFD = fd;
	connect_to("disk", false, false);
	send_req(0, NBD_CMD_FLUSH, 1, 0, 0);
	cl_read(r, 16);
	assert_true(get_be64(r + 8) == 1);
	assert_int_equal(stats().accepted, 1);
	stop();
}

/* An io that does not come from a server (the proxy's) carries its own
 * completion hook: nbd_io_done() hands it the result and touches nothing
 * else, inline or deferred, success or error. */
struct hook_io {
	struct nbd_io io;
	int calls;
	int result;
};

static void hook_done(struct nbd_io *io, int result)
{
	struct hook_io *h = io->complete_arg;

	assert_ptr_equal(&h->io, io);
	h->calls++;
	h->result = result;
}

static void test_io_complete_hook(void **state)
{
	static uint8_t buf[4096] __attribute__((aligned(4096)));
	struct hook_io h[3];
	struct nbd_export_info info;
	void *handle;

	(void)state;
	assert_int_equal(loop_create(&L), 0);
	assert_int_equal(ramdisk_create(L, &RD), 0);
	assert_int_equal(ramdisk_add(RD, "disk", DISK_SIZE, false, NULL), 0);
	assert_int_equal(ramdisk_ops.open(RD, "disk", &handle, &info), 0);
	memset(h, 0, sizeof(h));
	for (int i = 0; i < 3; i++) {
		h[i].io.export_handle = handle;
		h[i].io.complete = hook_done;
		h[i].io.complete_arg = &h[i];
		h[i].result = 1;
	}
	/* inline: a write */
	memset(buf, 0x5a, sizeof(buf));
	h[0].io.type = NBD_CMD_WRITE;
	h[0].io.offset = 8192;
	h[0].io.length = sizeof(buf);
	h[0].io.buf = buf;
	ramdisk_ops.submit(RD, &h[0].io);
	assert_int_equal(h[0].calls, 1);
	assert_int_equal(h[0].result, 0);
	assert_int_equal(ramdisk_data(RD, "disk")[8192], 0x5a);
	/* deferred: a read back, and a failed flush */
	ramdisk_set_mode(RD, RAMDISK_DEFER);
	memset(buf, 0, sizeof(buf));
	h[1].io.type = NBD_CMD_READ;
	h[1].io.offset = 8192;
	h[1].io.length = sizeof(buf);
	h[1].io.buf = buf;
	ramdisk_ops.submit(RD, &h[1].io);
	ramdisk_fail_next(RD, -EIO, 1);
	h[2].io.type = NBD_CMD_FLUSH;
	ramdisk_ops.submit(RD, &h[2].io);
	uint64_t end = loop_now_ns() + DEADLINE_NS;
	while (h[1].calls == 0 || h[2].calls == 0) {
		pump();
		assert_true(loop_now_ns() < end);
	}
	assert_int_equal(h[1].calls, 1);
	assert_int_equal(h[1].result, 0);
	assert_int_equal(buf[4095], 0x5a);
	assert_int_equal(h[2].calls, 1);
	assert_int_equal(h[2].result, -EIO);
	ramdisk_ops.close(RD, handle);
	ramdisk_destroy(RD);
	loop_destroy(L);
}

/* ---- a backend that answers READs from memory of its own ---- */

/* READs are answered from ZC_MEM (nbd_io.reply_buf), at once or, with
 * ZC.hold, when the test says; every other command goes to the RAM disk.
 * ZC.released counts the server's release calls, ZC.bad wrong ones. */
#define ZC_SIZE (4u << 20)
static struct {
	uint8_t *mem;
	bool hold;
	struct nbd_io *held;
	int released;
	int bad;
	bool lend; /* write_buf lends ZC_MEM */
	int lent;
} ZC;

static void zc_release(struct nbd_io *io)
{
	const void *mem = io->type == NBD_CMD_READ ? io->reply_buf : io->buf;

	if (io->release_arg != &ZC || mem != ZC.mem + io->offset)
		ZC.bad++;
	ZC.released++;
}

static void zc_submit(void *ctx, struct nbd_io *io)
{
	if (io->type != NBD_CMD_READ) {
		ramdisk_ops.submit(ctx, io);
		return;
	}
	io->reply_buf = ZC.mem + io->offset;
	io->release = zc_release;
	io->release_arg = &ZC;
	if (ZC.hold)
		ZC.held = io;
	else
		nbd_io_done(io, 0);
}

static int zc_list(void *ctx, void (*emit)(void *arg, const char *name, const char *desc),
		   void *arg)
{
	return ramdisk_ops.list(ctx, emit, arg);
}

static int zc_open(void *ctx, const char *name, void **handle, struct nbd_export_info *info)
{
	return ramdisk_ops.open(ctx, name, handle, info);
}

static void zc_close(void *ctx, void *handle)
{
	ramdisk_ops.close(ctx, handle);
}

/* WRITE payloads go into ZC_MEM at their offset, when ZC.lend. */
static void *zc_write_buf(void *ctx, struct nbd_io *io)
{
	(void)ctx;
	if (!ZC.lend)
		return NULL;
	io->release = zc_release;
	io->release_arg = &ZC;
	ZC.lent++;
	return ZC.mem + io->offset;
}

static const struct nbd_backend_ops zc_ops = {
    .list = zc_list,
    .open = zc_open,
    .close = zc_close,
    .submit = zc_submit,
    .write_buf = zc_write_buf,
};

static void zc_start(void)
{
	struct nbd_server_opts o = {.name = "zc"};
	int sv[2];

	memset(&ZC, 0, sizeof(ZC));
	ZC.mem = malloc(ZC_SIZE);
	assert_non_null(ZC.mem);
	for (uint32_t i = 0; i < ZC_SIZE; i++)
		ZC.mem[i] = (uint8_t)(i * 7 + (i >> 12));
	assert_int_equal(loop_create(&L), 0);
	assert_int_equal(ramdisk_create(L, &RD), 0);
	assert_int_equal(ramdisk_add(RD, "disk", ZC_SIZE, false, NULL), 0);
	assert_int_equal(nbd_server_create(L, &o, &zc_ops, RD, &SRV), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(nbd_server_add_fd(SRV, sv[0]), 0);
	CFD = sv[1];
}

/* Until the backend holds a READ (ZC.hold). */
static void zc_wait_held(void)
{
	uint64_t end = loop_now_ns() + DEADLINE_NS;

	while (!ZC.held) {
		pump();
		assert_true(loop_now_ns() < end);
	}
}

static void zc_stop(void)
{
	stop();
	free(ZC.mem);
	assert_int_equal(ZC.bad, 0);
}

/* The reply's data is the backend's memory, in simple and structured
 * replies, and the memory is released once per READ after it was sent
 * (not before, not for other commands). */
static void test_reply_buf(void **state)
{
	uint8_t *buf = malloc(1u << 20);
	struct chunk c;

	(void)state;
	assert_non_null(buf);
	zc_start();
	connect_to("disk", false, false);
	ZC.hold = true;
	send_req(0, NBD_CMD_READ, 1, 8192, 1u << 20);
	zc_wait_held();
	assert_int_equal(ZC.released, 0);
	nbd_io_done(ZC.held, 0);
	assert_int_equal(read_simple(1), 0);
	cl_read(buf, 1u << 20);
	assert_memory_equal(buf, ZC.mem + 8192, 1u << 20);
	assert_int_equal(ZC.released, 1);
	ZC.hold = false;
	send_req(0, NBD_CMD_FLUSH, 2, 0, 0);
	assert_int_equal(read_simple(2), 0);
	assert_int_equal(ZC.released, 1);
	/* an error: no data, still released once */
	ZC.hold = true;
	ZC.held = NULL;
	send_req(0, NBD_CMD_READ, 3, 0, 4096);
	zc_wait_held();
	nbd_io_done(ZC.held, -EIO);
	assert_int_equal(read_simple(3), NBD_EIO);
	expect_silence();
	assert_int_equal(ZC.released, 2);
	client_close();
	assert_int_equal(ZC.released, 2);
	zc_stop();

	zc_start();
	connect_to("disk", true, true);
	send_req(NBD_CMD_FLAG_DF, NBD_CMD_READ, 4, 4096, 65536);
	read_chunk(&c);
	assert_true(c.cookie == 4);
	assert_int_equal(c.type, NBD_REPLY_TYPE_OFFSET_DATA);
	assert_int_equal(c.len, 8 + 65536);
	assert_true(get_be64(c.data) == 4096);
	assert_memory_equal(c.data + 8, ZC.mem + 4096, 65536);
	free(c.data);
	assert_int_equal(ZC.released, 1);
	zc_stop();
	free(buf);
}

/* A connection that closes before or while a reply from backend memory
 * is sent releases it exactly once: at close (queued, partly sent) or at
 * the completion that finds the connection closed. */
static void test_reply_buf_close(void **state)
{
	(void)state;
	/* closed while the backend holds the READ */
	zc_start();
	connect_to("disk", false, false);
	ZC.hold = true;
	send_req(0, NBD_CMD_READ, 1, 0, 65536);
	zc_wait_held();
	client_close();
	assert_int_equal(ZC.released, 0);
	nbd_io_done(ZC.held, 0);
	assert_int_equal(ZC.released, 1);
	zc_stop();

	/* closed while the reply is being sent: the client reads none of
	 * its 4 MiB, more than a socket buffer holds */
	zc_start();
	connect_to("disk", false, false);
	send_req(0, NBD_CMD_READ, 1, 0, ZC_SIZE);
	send_req(0, NBD_CMD_READ, 2, 0, 4096);
	for (int i = 0; i < 50; i++)
		loop_run_once(L, 1000000);
	assert_int_equal(ZC.released, 0);
	client_close();
	assert_int_equal(ZC.released, 2);
	zc_stop();

	/* the server destroyed with replies queued */
	zc_start();
	connect_to("disk", false, false);
	send_req(0, NBD_CMD_READ, 1, 0, ZC_SIZE);
	for (int i = 0; i < 20; i++)
		loop_run_once(L, 1000000);
	assert_int_equal(ZC.released, 0);
	nbd_server_destroy(SRV);
	SRV = NULL;
	assert_int_equal(ZC.released, 1);
	close(CFD);
	CFD = -1;
	loop_run_once(L, 0);
	ramdisk_destroy(RD);
	loop_destroy(L);
	free(ZC.mem);
	assert_int_equal(ZC.bad, 0);
}

/* write_buf: the payload lands in the backend's memory, the io is
 * submitted with buf there, and the memory is released once, after the
 * reply; a connection that closes mid-payload releases it without
 * submitting the io. Without a buffer lent, the server's own. */
static void test_write_buf(void **state)
{
	uint8_t *buf = malloc(65536);
	struct ramdisk_stats rs;

	(void)state;
	assert_non_null(buf);
	zc_start();
	connect_to("disk", false, false);
	ZC.lend = true;
	for (uint32_t i = 0; i < 65536; i++)
		buf[i] = (uint8_t)(i * 13 + 1);
	send_req(0, NBD_CMD_WRITE, 1, 8192, 65536);
	cl_write(buf, 65536);
	assert_int_equal(read_simple(1), 0);
	assert_int_equal(ZC.lent, 1);
	assert_memory_equal(ZC.mem + 8192, buf, 65536);
	/* the RAM disk wrote from the io's buf: the lent memory */
	assert_memory_equal(ramdisk_data(RD, "disk") + 8192, buf, 65536);
	assert_int_equal(ZC.released, 1);
	ZC.lend = false;
	memset(buf, 0x77, 4096);
	send_req(0, NBD_CMD_WRITE, 2, 0, 4096);
	cl_write(buf, 4096);
	assert_int_equal(read_simple(2), 0);
	assert_int_equal(ZC.lent, 1);
	assert_int_equal(ZC.released, 1);
	assert_int_equal(ramdisk_data(RD, "disk")[4095], 0x77);
	/* half a payload, then the client leaves */
	ZC.lend = true;
	send_req(0, NBD_CMD_WRITE, 3, 65536, 65536);
	cl_write(buf, 1000);
	for (int i = 0; i < 5; i++)
		loop_run_once(L, 1000000);
	assert_int_equal(ZC.lent, 2);
	assert_int_equal(ZC.released, 1);
	client_close();
	assert_int_equal(ZC.released, 2);
	ramdisk_get_stats(RD, &rs);
	assert_int_equal(rs.ops[NBD_CMD_WRITE], 2);
	zc_stop();
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    server_test(test_greeting_and_export_name),
	    server_test(test_export_name_no_zeroes),
	    server_test(test_export_name_unknown),
	    server_test(test_reject_not_fixed),
	    server_test(test_reject_unknown_client_flags),
	    server_test(test_abort),
	    server_test(test_list),
	    server_test(test_info_all),
	    server_test(test_info_unknown_and_malformed),
	    server_test(test_structured_with_data),
	    server_test(test_list_meta),
	    server_test(test_set_meta),
	    server_test(test_unknown_option),
	    server_test(test_option_too_big),
	    server_test(test_option_absurd),
	    server_test(test_bad_option_magic),
	    cmocka_unit_test(test_handshake_timeout),
	    server_test(test_simple_commands),
	    server_test(test_structured_read),
	    server_test(test_block_status),
	    server_test(test_block_status_not_negotiated),
	    server_test(test_block_status_backend_cannot),
	    server_test(test_bad_flags),
	    server_test(test_unknown_command),
	    server_test(test_bad_request_magic),
	    server_test(test_out_of_bounds),
	    server_test(test_flush_with_offset),
	    server_test(test_read_only),
	    server_test(test_not_advertised),
	    server_test(test_misaligned),
	    server_test(test_write_over_max_payload),
	    server_test(test_read_over_max_payload),
	    cmocka_unit_test(test_backend_errors),
	    server_test(test_out_of_order),
	    server_test(test_deferred_completion),
	    server_test(test_client_vanishes_with_ios),
	    server_test(test_vanish_mid_write),
	    server_test(test_disc_waits_for_inflight),
	    cmocka_unit_test(test_half_header_stall),
	    cmocka_unit_test(test_flow_control),
	    cmocka_unit_test(test_shared_budget),
	    cmocka_unit_test(test_big_read),
	    cmocka_unit_test(test_destroy_with_ios),
	    cmocka_unit_test(test_max_clients),
	    cmocka_unit_test(test_tcp_listener),
	    cmocka_unit_test(test_io_complete_hook),
	    cmocka_unit_test(test_reply_buf),
	    cmocka_unit_test(test_reply_buf_close),
	    cmocka_unit_test(test_write_buf),
	    cmocka_unit_test(test_allow_parse_match),
	    cmocka_unit_test_setup_teardown(test_tls_require, tls_setup, tls_teardown),
	    cmocka_unit_test_setup_teardown(test_tls_require_export_name, tls_setup, tls_teardown),
	    cmocka_unit_test_setup_teardown(test_tls_client_leaves, tls_setup, tls_teardown),
	    cmocka_unit_test(test_tls_bad_credentials),
	};

	log_set_level(LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
