/* Unit tests of the proxy: its wire format and allocator, and two proxies
 * ("a" forwards, "b" serves a RAM disk) joined by a fake CCM
 * (test_proxy_ccm.c) that can lose, duplicate and capture messages and end
 * sessions at will. Commands are submitted to a's forwarding backend as
 * the proxy listener would, with the nbd_io completion hook. Every wait
 * pumps the loop until a condition holds, with a generous deadline. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "nbd/nbd.h"
#include "nbd/nbd_int.h"
#include "proxy/proxy.h"
#include "proxy/proxy_int.h"
#include "ramdisk.h"
#include "test_proxy_ccm.h"

#define DEADLINE_NS 10000000000ull
#define VOL_SIZE    (8u << 20)

static struct loop *L;
static struct ccm *CA, *CB;
static struct ramdisk *RA, *RB, *RL;
static struct proxy *PA, *PB;
static const struct nbd_backend_ops *FW;
static void *H; /* a's handle of "vb" */
static struct nbd_export_info INFO;

#define WAIT(cond)                                           \
	do {                                                 \
		uint64_t end_ = loop_now_ns() + DEADLINE_NS; \
		while (!(cond)) {                            \
			loop_run_once(L, 1000000);           \
			assert_true(loop_now_ns() < end_);   \
		}                                            \
	} while (0)

static bool drop_reps, drop_reqs, capture_next_req, capture_next_rep;

/* ---- test ios ---- */

struct tio {
	struct nbd_io io;
	int calls;
	int result;
	uint64_t order;
	struct nbd_extent ext[PX_MAX_EXTENTS];
};

static uint64_t done_order;

static void tio_done(struct nbd_io *io, int result)
{
	struct tio *t = io->complete_arg;

	t->calls++;
	t->result = result;
	t->order = ++done_order;
}

static struct tio *tio_new(uint16_t type, uint64_t off, uint64_t len)
{
	struct tio *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	t->io.type = type;
	t->io.offset = off;
	t->io.length = len;
	t->io.export_handle = H;
	t->io.complete = tio_done;
	t->io.complete_arg = t;
	t->result = 1;
	if ((type == NBD_CMD_READ || type == NBD_CMD_WRITE) && len) {
		assert_int_equal(posix_memalign(&t->io.buf, 4096, len), 0);
		memset(t->io.buf, 0, len);
	}
	if (type == NBD_CMD_BLOCK_STATUS) {
		t->io.extents = t->ext;
		t->io.max_extents = PX_MAX_EXTENTS;
	}
	return t;
}

static void tio_free(struct tio *t)
{
	free(t->io.buf);
	free(t);
}

static void submit(struct tio *t)
{
	/* The server gives each io a fresh handle field: so do we. */
	t->io.export_handle = H;
	t->io.complete = tio_done;
	t->io.complete_arg = t;
	FW->submit(PA, &t->io);
}

static int run(struct tio *t)
{
	submit(t);
	WAIT(t->calls);
	assert_int_equal(t->calls, 1);
	return t->result;
}

static void fill(void *buf, size_t len, unsigned seed)
{
	uint8_t *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 9));
}

/* A WRITE of pattern @p seed, submitted (not waited for). */
static struct tio *submit_write(uint64_t off, uint64_t len, unsigned seed)
{
	struct tio *t = tio_new(NBD_CMD_WRITE, off, len);

	fill(t->io.buf, len, seed);
	submit(t);
	return t;
}

static int write_at(uint64_t off, uint64_t len, unsigned seed)
{
	struct tio *t = tio_new(NBD_CMD_WRITE, off, len);
	int rc;

	fill(t->io.buf, len, seed);
	rc = run(t);
	tio_free(t);
	return rc;
}

static void expect_disk(struct ramdisk *rd, const char *vol, uint64_t off, uint64_t len,
			unsigned seed)
{
	uint8_t *want = malloc(len);

	fill(want, len, seed);
	assert_memory_equal(ramdisk_data(rd, vol) + off, want, len);
	free(want);
}

/* ---- fixture ---- */

static bool all_ready(const struct proxy *px)
{
	for (unsigned i = 0; i < px->n_ports; i++)
		if (px->ports[i].fstate != FP_READY)
			return false;
	return true;
}

static bool none_ready(const struct proxy *px)
{
	for (unsigned i = 0; i < px->n_ports; i++)
		if (px->ports[i].fstate == FP_READY)
			return false;
	return true;
}

static struct proxy_opts opts_for(const char *node, struct ramdisk *rd, uint64_t timeout_ms)
{
	struct proxy_opts o = {
	    .node = node,
	    .n_ports = 2,
	    .port_mem = 4u << 20,
	    .chunk = 1u << 20,
	    .timeout_ms = timeout_ms,
	    .local_ops = &ramdisk_ops,
	    .local_ctx = rd,
	};
	return o;
}

static void start_timeout(uint64_t timeout_ms)
{
	struct proxy_opts oa = opts_for("a", NULL, timeout_ms), ob;

	assert_int_equal(loop_create(&L), 0);
	assert_int_equal(ramdisk_create(L, &RA), 0);
	assert_int_equal(ramdisk_create(L, &RB), 0);
	assert_int_equal(ramdisk_add(RA, "va", VOL_SIZE, false, NULL), 0);
	assert_int_equal(ramdisk_add(RB, "vb", VOL_SIZE, false, NULL), 0);
	assert_int_equal(ramdisk_add(RB, "vb-ro", 1u << 20, true, NULL), 0);
	CA = fake_ccm_create(L, "a");
	CB = fake_ccm_create(L, "b");
	fake_ccm_pair(CA, CB);
	oa.local_ctx = RA;
	ob = opts_for("b", RB, timeout_ms);
	assert_int_equal(proxy_create(L, CA, &oa, &PA), 0);
	assert_int_equal(proxy_create(L, CB, &ob, &PB), 0);
	FW = proxy_backend_ops();
	drop_reps = drop_reqs = capture_next_req = capture_next_rep = false;
	fake_session_up(CA);
	WAIT(all_ready(PA) && all_ready(PB));
	assert_int_equal(FW->open(PA, "vb", &H, &INFO), 0);
	done_order = 0;
}

static void stop(void);

/* Fixtures: a and b up, b's "vb" open at a (H); stop() undoes it all. */
static int setup(void **state)
{
	(void)state;
	start_timeout(5000);
	return 0;
}

/* The same with a 200 ms command deadline. */
static int setup_short_deadline(void **state)
{
	(void)state;
	start_timeout(200);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	stop();
	return 0;
}

static void stop(void)
{
	if (H)
		FW->close(PA, H);
	H = NULL;
	ramdisk_release(RB, false);
	ramdisk_release(RA, false);
	if (RL)
		ramdisk_release(RL, false);
	proxy_destroy(PA);
	proxy_destroy(PB);
	PA = PB = NULL;
	fake_ccm_destroy(CA);
	fake_ccm_destroy(CB);
	fake_reset();
	ramdisk_destroy(RA);
	ramdisk_destroy(RB);
	if (RL)
		ramdisk_destroy(RL);
	RL = NULL;
	loop_destroy(L);
}

/* Run @p turns loop turns, each waiting up to @p wait_ns. */
static void spin(int turns, uint64_t wait_ns)
{
	for (int i = 0; i < turns; i++)
		loop_run_once(L, wait_ns);
}

/* Port memory units in use at @p px: its forwarded data (fw) or the
 * partner's being served (srv), over both ports. */
static unsigned fw_mem_used(const struct proxy *px)
{
	return px->ports[0].fmem.used + px->ports[1].fmem.used;
}

static unsigned srv_mem_used(const struct proxy *px)
{
	return px->ports[0].smem.used + px->ports[1].smem.used;
}

/* RL: a local copy of "vb" for the takeover route. */
static void make_local_disk(void)
{
	assert_int_equal(ramdisk_create(L, &RL), 0);
	assert_int_equal(ramdisk_add(RL, "vb", VOL_SIZE, false, NULL), 0);
}

/* Encode @p q and deliver it to b's port 0 as if a had sent it. */
static void inject_req(const struct pxm_req *q)
{
	uint8_t buf[sizeof(struct px_req)];
	size_t len;

	assert_false(q->cmd == NBD_CMD_WRITE && (q->flags & PX_F_INLINE)); /* no data here */
	len = proxy_wire_encode_req(buf, q, NULL);

	fake_inject(CB, 0, buf, len);
}

static uint64_t disk_ops(struct ramdisk *rd, uint16_t type)
{
	struct ramdisk_stats st;

	ramdisk_get_stats(rd, &st);
	return st.ops[type];
}

static void cycle_session(void)
{
	fake_session_down(CA);
	fake_session_up(CA);
}

/* ---- filters ---- */

static uint8_t captured[CCM_MSG_MAX];
static size_t captured_len;
static uint8_t captured_rep[CCM_MSG_MAX];
static size_t captured_rep_len;

struct scan {
	bool rep, req;
};

static void scan_rec(void *arg, const void *rec, size_t len)
{
	struct scan *sc = arg;
	unsigned t = proxy_wire_msg_type(rec, len);

	if (t == PX_REP) {
		sc->rep = true;
		if (capture_next_rep) {
			memcpy(captured_rep, rec, len);
			captured_rep_len = len;
			capture_next_rep = false;
		}
	}
	if (t == PX_REQ) {
		sc->req = true;
		if (capture_next_req) {
			memcpy(captured, rec, len);
			captured_len = len;
			capture_next_req = false;
		}
	}
}

/* Looks into batches: drops a message holding a reply (or a request) when
 * told to, captures the next request. */
static enum fake_verdict filter(struct ccm *from, unsigned port, const void *msg, size_t len,
				void *arg)
{
	struct scan sc = {false, false};
	const char *why;

	(void)from;
	(void)port;
	(void)arg;
	if (proxy_wire_msg_type(msg, len) == PX_BATCH)
		assert_int_equal(proxy_wire_batch_walk(msg, len, scan_rec, &sc, &why), 0);
	else
		scan_rec(&sc, msg, len);
	if ((sc.rep && drop_reps) || (sc.req && drop_reqs))
		return FAKE_DROP;
	return FAKE_DELIVER;
}

/* ---- wire ---- */

static void test_wire_roundtrip(void **state)
{
	uint8_t buf[CCM_MSG_MAX], data[100];
	struct pxm_hello h = {PX_VERSION, 42, 1 << 20, 65536}, h2;
	struct pxm_req r = {0}, r2;
	struct pxm_rep p = {0}, p2;
	struct pxm_vols v;
	struct px_vol w = {7, PXV_CAN_TRIM | PXV_CAN_FUA, 1 << 20, 512, 4096, "vol-b"}, w2;
	const char *why;
	size_t len;
	uint64_t el;
	uint32_t ef;

	(void)state;
	len = proxy_wire_encode_hello(buf, &h);
	assert_int_equal(proxy_wire_msg_type(buf, len), PX_HELLO);
	assert_int_equal(proxy_wire_decode_hello(buf, len, &h2, &why), 0);
	assert_true(h2.session == 42 && h2.data_size == (1 << 20) && h2.chunk == 65536);

	memset(data, 0x77, sizeof(data));
	r.flags = PX_F_INLINE | PX_F_RETRY;
	r.vol = 3;
	r.cmd = NBD_CMD_WRITE;
	r.cflags = NBD_CMD_FLAG_FUA;
	r.session = 9;
	r.seq = 12345;
	r.offset = 4096;
	r.length = sizeof(data);
	len = proxy_wire_encode_req(buf, &r, data);
	assert_int_equal(len, sizeof(struct px_req) + sizeof(data));
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), 0);
	assert_true(r2.flags == r.flags && r2.vol == 3 && r2.cmd == NBD_CMD_WRITE &&
		    r2.cflags == NBD_CMD_FLAG_FUA && r2.session == 9 && r2.seq == 12345 &&
		    r2.offset == 4096 && r2.length == sizeof(data));
	assert_memory_equal(r2.data, data, sizeof(data));

	p.result = -ENOSPC;
	p.session = 9;
	p.seq = 5;
	len = proxy_wire_encode_rep(buf, &p);
	assert_int_equal(proxy_wire_decode_rep(buf, len, &p2, &why), 0);
	assert_int_equal(p2.result, -ENOSPC);
	p.result = 0;
	p.count = 2;
	len = proxy_wire_encode_rep(buf, &p);
	proxy_wire_put_ext(buf, 0, 4096, NBD_STATE_HOLE);
	proxy_wire_put_ext(buf, 1, 8192, 0);
	len += 2 * sizeof(struct px_ext);
	assert_int_equal(proxy_wire_decode_rep(buf, len, &p2, &why), 0);
	proxy_wire_ext_get(&p2, 1, &el, &ef);
	assert_true(el == 8192 && ef == 0);

	len = proxy_wire_encode_vols_hdr(buf, PX_F_FIRST | PX_F_LAST, 1, 0xfffffffeu, 77);
	proxy_wire_put_vol(buf, 0, &w);
	assert_int_equal(proxy_wire_decode_vols(buf, len, &v, &why), 0);
	assert_int_equal(v.count, 1);
	assert_int_equal(v.gen, 0xfffffffeu);
	assert_true(v.server_session == 77);
	assert_int_equal(proxy_wire_vol_get(&v, 0, &w2, &why), 0);
	assert_string_equal(w2.name, "vol-b");
	assert_true(w2.id == 7 && w2.size == (1 << 20) && w2.min_block == 512);
}

static void count_rec(void *arg, const void *rec, size_t len)
{
	(void)rec;
	(void)len;
	(*(unsigned *)arg)++;
}

static void test_wire_rejects(void **state)
{
	static uint8_t junk[PX_INLINE_MAX + 1];
	uint8_t buf[CCM_MSG_MAX];
	struct pxm_req r = {0}, r2;
	struct pxm_rep p = {0}, p2;
	struct pxm_hello h = {PX_VERSION, 42, 1 << 20, 65536}, h2;
	struct pxm_vols v;
	struct px_vol w = {1, 0, 1 << 20, 512, 4096, "ok"}, w2;
	const char *why;
	size_t len;

	(void)state;
	memset(buf, 0, sizeof(buf));
	/* truncated and foreign */
	assert_int_equal(proxy_wire_msg_type(buf, 3), 0);
	assert_int_equal(proxy_wire_decode_req(buf, 3, &r2, &why), -EBADMSG);
	memset(buf, 0xff, 64);
	assert_int_equal(proxy_wire_decode_req(buf, 64, &r2, &why), -EBADMSG);
	/* hello: version, zero session, size */
	h.version = 2;
	len = proxy_wire_encode_hello(buf, &h);
	assert_int_equal(proxy_wire_decode_hello(buf, len, &h2, &why), -EBADMSG);
	h.version = PX_VERSION;
	h.session = 0;
	len = proxy_wire_encode_hello(buf, &h);
	assert_int_equal(proxy_wire_decode_hello(buf, len, &h2, &why), -EBADMSG);
	h.session = 1;
	len = proxy_wire_encode_hello(buf, &h);
	assert_int_equal(proxy_wire_decode_hello(buf, len + 1, &h2, &why), -EBADMSG);

	/* requests */
	r.session = 1;
	r.seq = 1;
	r.cmd = NBD_CMD_READ;
	r.length = 4096;
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), 0);
	r.seq = 0; /* sequence 0 */
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.seq = 1;
	r.cmd = 99; /* unknown command */
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.cmd = NBD_CMD_DISC;
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.cmd = NBD_CMD_READ;
	r.cflags = 0x100; /* unknown flag */
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.cflags = 0;
	r.length = 0; /* empty read */
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.length = PX_CHUNK_MAX + 1;
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.length = 4096;
	r.offset = UINT64_MAX - 100; /* wraps */
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.offset = 0;
	r.cmd = NBD_CMD_WRITE; /* inline length mismatch */
	r.flags = PX_F_INLINE;
	len = proxy_wire_encode_req(buf, &r, junk);
	assert_int_equal(proxy_wire_decode_req(buf, len - 1, &r2, &why), -EBADMSG);
	r.length = PX_INLINE_MAX + 1; /* inline too long */
	len = proxy_wire_encode_req(buf, &r, junk);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.flags = 0;
	r.length = 4096;
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len + 8, &r2, &why), -EBADMSG); /* trailing */
	r.cmd = NBD_CMD_FLUSH; /* flush with a range */
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.cmd = NBD_CMD_BLOCK_STATUS;
	r.max_extents = PX_MAX_EXTENTS + 1;
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);
	r.cmd = NBD_CMD_TRIM;
	r.max_extents = 0;
	r.flags = PX_F_INLINE; /* inline without data */
	len = proxy_wire_encode_req(buf, &r, NULL);
	assert_int_equal(proxy_wire_decode_req(buf, len, &r2, &why), -EBADMSG);

	/* replies */
	p.session = 1;
	p.seq = 1;
	p.result = 5; /* positive */
	len = proxy_wire_encode_rep(buf, &p);
	assert_int_equal(proxy_wire_decode_rep(buf, len, &p2, &why), -EBADMSG);
	p.result = -5000;
	len = proxy_wire_encode_rep(buf, &p);
	assert_int_equal(proxy_wire_decode_rep(buf, len, &p2, &why), -EBADMSG);
	p.result = 0;
	p.count = 3; /* extents missing */
	len = proxy_wire_encode_rep(buf, &p);
	assert_int_equal(proxy_wire_decode_rep(buf, len + 16, &p2, &why), -EBADMSG);
	p.count = PX_MAX_EXTENTS + 1;
	len = proxy_wire_encode_rep(buf, &p);
	assert_int_equal(proxy_wire_decode_rep(
			     buf, len + (PX_MAX_EXTENTS + 1) * sizeof(struct px_ext), &p2, &why),
			 -EBADMSG);
	p.count = 0;
	p.flags = PX_F_INLINE;
	p.length = 100;
	len = proxy_wire_encode_rep(buf, &p);
	assert_int_equal(proxy_wire_decode_rep(buf, len + 99, &p2, &why), -EBADMSG);
	p.result = -EIO; /* data with an error */
	len = proxy_wire_encode_rep(buf, &p);
	assert_int_equal(proxy_wire_decode_rep(buf, len + 100, &p2, &why), -EBADMSG);

	/* volume lists */
	len = proxy_wire_encode_vols_hdr(buf, PX_F_FIRST, 1, 1, 5);
	proxy_wire_put_vol(buf, 0, &w);
	assert_int_equal(proxy_wire_decode_vols(buf, len - 1, &v, &why), -EBADMSG);
	assert_int_equal(proxy_wire_decode_vols(buf, len, &v, &why), 0);
	assert_int_equal(proxy_wire_vol_get(&v, 1, &w2, &why), -EBADMSG);
	memcpy(buf + sizeof(struct px_vols) + offsetof(struct px_vol, name), "../x", 5);
	assert_int_equal(proxy_wire_vol_get(&v, 0, &w2, &why), -EBADMSG);
	memset(buf + sizeof(struct px_vols) + offsetof(struct px_vol, name), 'a', PX_NAME_MAX);
	assert_int_equal(proxy_wire_vol_get(&v, 0, &w2, &why), -EBADMSG); /* unterminated */
	w.min_block = 3;
	proxy_wire_put_vol(buf, 0, &w);
	assert_int_equal(proxy_wire_vol_get(&v, 0, &w2, &why), -EBADMSG);
	w.min_block = 512;
	w.size = 1000; /* not a multiple of the block */
	proxy_wire_put_vol(buf, 0, &w);
	assert_int_equal(proxy_wire_vol_get(&v, 0, &w2, &why), -EBADMSG);
	w.size = 4096;
	w.flags = 1u << 20;
	proxy_wire_put_vol(buf, 0, &w);
	assert_int_equal(proxy_wire_vol_get(&v, 0, &w2, &why), -EBADMSG);
	len = proxy_wire_encode_vols_hdr(buf, 0, PX_VOLS_PER_MSG + 1, 1, 5);
	assert_int_equal(proxy_wire_decode_vols(buf, len, &v, &why), -EBADMSG);
	/* the shelf handover bits ride along; a bit past them does not */
	len = proxy_wire_encode_vols_hdr(
	    buf,
	    PX_F_FIRST | PX_F_LAST | (PROXY_SHELF_GIVE | PROXY_SHELF_DROPPED) << PX_F_SHELF_SHIFT,
	    0, 1, 5);
	assert_int_equal(proxy_wire_decode_vols(buf, len, &v, &why), 0);
	assert_int_equal((v.flags & PX_F_SHELF_MASK) >> PX_F_SHELF_SHIFT,
			 PROXY_SHELF_GIVE | PROXY_SHELF_DROPPED);
	len = proxy_wire_encode_vols_hdr(buf, PX_F_FIRST | (1u << 8), 0, 1, 5);
	assert_int_equal(proxy_wire_decode_vols(buf, len, &v, &why), -EBADMSG);

	/* batches */
	{
		uint8_t rec[24] = {0};
		unsigned n = 0;
		proxy_wire_batch_init(buf);
		len = proxy_wire_batch_add(buf, sizeof(struct px_batch), rec, 13);
		len = proxy_wire_batch_add(buf, len, rec, 24);
		proxy_wire_batch_finish(buf, 2);
		assert_int_equal(proxy_wire_msg_type(buf, len), PX_BATCH);
		assert_int_equal(proxy_wire_batch_walk(buf, len, count_rec, &n, &why), 0);
		assert_int_equal(n, 2);
		assert_int_equal(proxy_wire_batch_walk(buf, len - 1, count_rec, &n, &why),
				 -EBADMSG);
		assert_int_equal(proxy_wire_batch_walk(buf, len + 8, count_rec, &n, &why),
				 -EBADMSG);
		proxy_wire_batch_finish(buf, 3); /* more records than there are */
		assert_int_equal(proxy_wire_batch_walk(buf, len, count_rec, &n, &why), -EBADMSG);
		proxy_wire_batch_finish(buf, 0);
		assert_int_equal(proxy_wire_batch_walk(buf, len, count_rec, &n, &why), -EBADMSG);
		proxy_wire_batch_finish(buf, 1);
		buf[sizeof(struct px_batch)] = 0xff; /* a record longer than the batch */
		assert_int_equal(proxy_wire_batch_walk(buf, len, count_rec, &n, &why), -EBADMSG);
		/* a batch inside a batch */
		static uint8_t inner[64];
		proxy_wire_batch_init(inner);
		proxy_wire_batch_init(buf);
		len = proxy_wire_batch_add(buf, sizeof(struct px_batch), inner,
					   sizeof(struct px_batch));
		proxy_wire_batch_finish(buf, 1);
		assert_int_equal(proxy_wire_batch_walk(buf, len, count_rec, &n, &why), -EBADMSG);
	}
}

static void test_pmem(void **state)
{
	struct pmem m;
	int64_t a, b, c, d;

	(void)state;
	assert_int_equal(proxy_pmem_init(&m, 100 * PX_UNIT), 0);
	a = proxy_pmem_alloc(&m, 1);
	b = proxy_pmem_alloc(&m, PX_UNIT + 1);
	c = proxy_pmem_alloc(&m, 64 * PX_UNIT);
	assert_true(a == 0 && b == PX_UNIT && c == 3 * PX_UNIT);
	assert_int_equal(proxy_pmem_alloc(&m, 34 * PX_UNIT), -1); /* 33 left */
	d = proxy_pmem_alloc(&m, 33 * PX_UNIT);
	assert_int_equal(d, 67 * PX_UNIT);
	assert_int_equal(proxy_pmem_alloc(&m, 1), -1);
	proxy_pmem_free(&m, b, PX_UNIT + 1);
	assert_int_equal(proxy_pmem_alloc(&m, 3 * PX_UNIT), -1); /* a hole of 2 */
	assert_int_equal(proxy_pmem_alloc(&m, 2 * PX_UNIT), PX_UNIT);
	proxy_pmem_free(&m, a, 1);
	proxy_pmem_free(&m, c, 64 * PX_UNIT);
	proxy_pmem_free(&m, d, 33 * PX_UNIT);
	proxy_pmem_free(&m, PX_UNIT, 2 * PX_UNIT);
	assert_int_equal(m.used, 0);
	assert_int_equal(proxy_pmem_alloc(&m, 100 * PX_UNIT), 0);
	proxy_pmem_fini(&m);
}

/* ---- over the fake CCM ---- */

struct names {
	char v[8][64];
	unsigned n;
};

static void collect(void *arg, const char *name, const char *desc)
{
	struct names *nm = arg;

	(void)desc;
	if (nm->n < 8)
		snprintf(nm->v[nm->n++], 64, "%s", name);
}

static bool listed(const char *name)
{
	struct names nm = {0};

	FW->list(PA, collect, &nm);
	for (unsigned i = 0; i < nm.n; i++)
		if (strcmp(nm.v[i], name) == 0)
			return true;
	return false;
}

static void test_list_open(void **state)
{
	struct nbd_export_info info;
	void *h;

	(void)state;
	assert_true(listed("vb") && listed("vb-ro"));
	assert_false(listed("va")); /* a's own volume is not a partner volume */
	assert_true(INFO.size == VOL_SIZE && !INFO.read_only && INFO.can_trim && INFO.can_zero &&
		    INFO.can_fast_zero && INFO.can_cache && INFO.can_flush && INFO.can_fua &&
		    INFO.can_multi_conn && INFO.can_block_status);
	assert_int_equal(FW->open(PA, "vb-ro", &h, &info), 0);
	assert_true(info.read_only && info.size == (1u << 20));
	FW->close(PA, h);
	assert_int_equal(FW->open(PA, "nope", &h, &info), -ENOENT);
	/* b sees a's volume the same way */
	assert_int_equal(FW->open(PB, "va", &h, &info), 0);
	FW->close(PB, h);
	/* a new volume on b is pushed to a */
	assert_int_equal(ramdisk_add(RB, "vb-new", 1u << 20, false, NULL), 0);
	proxy_local_volumes_changed(PB);
	WAIT(listed("vb-new"));
}

static void test_read_write(void **state)
{
	static const struct {
		uint64_t off, len;
	} cases[] = {
	    {0, 512},			   /* inline */
	    {4096, PX_INLINE_MAX},	   /* largest inline */
	    {65536, PX_INLINE_MAX + 512},  /* slot */
	    {1u << 20, 1u << 20},	   /* one chunk */
	    {3u << 20, (3u << 20) + 4096}, /* split into four chunks */
	};
	struct proxy_stats st;

	(void)state;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct tio *t;
		assert_int_equal(write_at(cases[i].off, cases[i].len, i + 1), 0);
		expect_disk(RB, "vb", cases[i].off, cases[i].len, i + 1);
		t = tio_new(NBD_CMD_READ, cases[i].off, cases[i].len);
		assert_int_equal(run(t), 0);
		assert_memory_equal(t->io.buf, ramdisk_data(RB, "vb") + cases[i].off, cases[i].len);
		tio_free(t);
	}
	proxy_get_stats(PA, &st);
	assert_int_equal(st.commands, 10);
	assert_int_equal(st.requests, 2 * (4 + 4));
	assert_int_equal(st.errors, 0);
	/* nothing left behind */
	for (unsigned i = 0; i < PA->n_ports; i++) {
		assert_int_equal(PA->ports[i].fmem.used, 0);
		assert_int_equal(PB->ports[i].smem.used, 0);
	}
}

static void test_other_commands(void **state)
{
	struct tio *t;
	struct ramdisk_stats rs;

	(void)state;
	assert_int_equal(write_at(0, 65536, 3), 0);
	/* flush, with FUA on a write */
	t = tio_new(NBD_CMD_FLUSH, 0, 0);
	assert_int_equal(run(t), 0);
	tio_free(t);
	t = tio_new(NBD_CMD_WRITE, 65536, 4096);
	t->io.flags = NBD_CMD_FLAG_FUA;
	assert_int_equal(run(t), 0);
	ramdisk_get_stats(RB, &rs);
	assert_int_equal(rs.last_flags[NBD_CMD_WRITE], NBD_CMD_FLAG_FUA);
	tio_free(t);
	/* trim a block: a hole that reads zero */
	t = tio_new(NBD_CMD_TRIM, 0, 4096);
	assert_int_equal(run(t), 0);
	tio_free(t);
	t = tio_new(NBD_CMD_WRITE_ZEROES, 8192, 4096);
	t->io.flags = NBD_CMD_FLAG_NO_HOLE;
	assert_int_equal(run(t), 0);
	tio_free(t);
	t = tio_new(NBD_CMD_CACHE, 0, 65536);
	assert_int_equal(run(t), 0);
	tio_free(t);
	/* block status: hole, data, ..., from b's map */
	t = tio_new(NBD_CMD_BLOCK_STATUS, 0, 1u << 20);
	assert_int_equal(run(t), 0);
	assert_true(t->io.n_extents >= 2);
	assert_int_equal(t->ext[0].length, 4096);
	assert_int_equal(t->ext[0].flags, NBD_STATE_HOLE | NBD_STATE_ZERO);
	assert_int_equal(t->ext[1].flags, 0);
	tio_free(t);
	/* an error from b's backend comes back as it is */
	ramdisk_fail_next(RB, -ENOSPC, 1);
	assert_int_equal(write_at(0, 4096, 1), -ENOSPC);
}

static void test_out_of_order(void **state)
{
	struct tio *t[8];

	(void)state;
	for (unsigned i = 0; i < 8; i++)
		memset(ramdisk_data(RB, "vb") + i * 65536, (int)i + 1, 65536);
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	for (unsigned i = 0; i < 8; i++) {
		/* small and big reads mixed */
		t[i] = tio_new(NBD_CMD_READ, i * 65536, i % 2 ? 65536 : 4096);
		submit(t[i]);
	}
	WAIT(ramdisk_held(RB) == 8);
	ramdisk_release(RB, true);
	WAIT(t[0]->calls && t[1]->calls && t[2]->calls && t[3]->calls && t[4]->calls &&
	     t[5]->calls && t[6]->calls && t[7]->calls);
	for (unsigned i = 0; i < 8; i++) {
		uint8_t *b = t[i]->io.buf;
		assert_int_equal(t[i]->result, 0);
		assert_int_equal(b[0], i + 1);
		assert_int_equal(b[t[i]->io.length - 1], i + 1);
	}
	/* the newest first: completions came back out of order (t0 and t2
	 * came back inline, the others by RDMA) */
	assert_true(t[2]->order < t[0]->order && t[7]->order < t[1]->order);
	for (unsigned i = 0; i < 8; i++)
		tio_free(t[i]);
}

/* Executed, reply lost with the session: sent again, recognised, the
 * stored result returned, never executed twice. */
static void dup_after_loss(uint64_t len)
{
	struct tio *t;
	struct proxy_stats sa, sb;

	fake_set_filter(CB, filter, NULL);
	drop_reps = true;
	t = submit_write(0, len, 9);
	WAIT(PB->st.served == 1);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 1);
	loop_run_once(L, 0);
	assert_int_equal(t->calls, 0); /* its reply was lost */
	drop_reps = false;
	cycle_session();
	WAIT(t->calls);
	assert_int_equal(t->result, 0);
	proxy_get_stats(PA, &sa);
	proxy_get_stats(PB, &sb);
	assert_int_equal(sa.retries, 1);
	assert_int_equal(sb.duplicates, 1);
	assert_int_equal(sb.served, 1);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 1);
	expect_disk(RB, "vb", 0, len, 9);
	tio_free(t);
}

static void test_dup_after_loss_inline(void **state)
{
	(void)state;
	dup_after_loss(4096);
}

static void test_dup_after_loss_slot(void **state)
{
	(void)state;
	dup_after_loss(256 * 1024);
}

/* Sent again while the first copy still executes: one execution, one
 * reply once it is done. */
static void test_dup_while_executing(void **state)
{
	struct tio *t;

	(void)state;
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	t = submit_write(0, 128 * 1024, 4);
	WAIT(ramdisk_held(RB) == 1);
	cycle_session();
	WAIT(PB->st.duplicates == 1);
	assert_int_equal(t->calls, 0);
	ramdisk_release(RB, false);
	WAIT(t->calls);
	assert_int_equal(t->result, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 1);
	spin(10, 0);
	assert_int_equal(t->calls, 1);
	expect_disk(RB, "vb", 0, 128 * 1024, 4);
	tio_free(t);
}

/* Lost before it ran (the request, or its data transfer, died with the
 * session): sent again and executed once. */
static void test_lost_in_transit(void **state)
{
	struct tio *t;

	(void)state;
	/* the request message itself */
	t = submit_write(0, 4096, 5);
	cycle_session();
	WAIT(t->calls);
	assert_int_equal(t->result, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 1);
	tio_free(t);
	/* its RDMA read of the data: b got the request, the read fails */
	t = submit_write(65536, 65536, 6);
	loop_run_once(L, 0); /* delivers the request; b posts its read */
	assert_int_equal(srv_mem_used(PB), 4);
	cycle_session();
	WAIT(t->calls);
	assert_int_equal(t->result, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 2);
	expect_disk(RB, "vb", 65536, 65536, 6);
	tio_free(t);
}

/* A copy of an old write arrives after a newer write to the same place:
 * it must not run (it would undo the newer one). */
static void test_forged_old_write(void **state)
{
	struct pxm_req m;
	const char *why;
	struct tio *t;

	(void)state;
	fake_set_filter(CA, filter, NULL);
	capture_next_req = true;
	assert_int_equal(write_at(0, 4096, 1), 0);
	assert_true(captured_len > 0);
	assert_int_equal(write_at(0, 4096, 2), 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 2);
	/* same port session: answered already, dropped */
	fake_inject(CB, 0, captured, captured_len);
	fake_inject(CB, 1, captured, captured_len);
	expect_disk(RB, "vb", 0, 4096, 2);
	/* a later session: the stored result, not an execution */
	cycle_session();
	WAIT(all_ready(PA));
	fake_inject(CB, 0, captured, captured_len);
	fake_inject(CB, 1, captured, captured_len);
	spin(10, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 2);
	expect_disk(RB, "vb", 0, 4096, 2);
	assert_true(PB->st.duplicates >= 2);
	/* older than the table: dropped too */
	for (unsigned i = 0; i < PX_TABLE + 8; i++) {
		t = tio_new(NBD_CMD_FLUSH, 0, 0);
		submit(t);
		WAIT(t->calls);
		tio_free(t);
	}
	assert_int_equal(proxy_wire_decode_req(captured, captured_len, &m, &why), 0);
	fake_inject(CB, 0, captured, captured_len);
	fake_inject(CB, 1, captured, captured_len);
	spin(10, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 2);
	expect_disk(RB, "vb", 0, 4096, 2);
	/* a forged request of another session is refused */
	uint64_t bad = PB->st.bad_requests;
	((struct px_req *)(void *)captured)->session ^= 1;
	fake_inject(CB, 0, captured, captured_len);
	assert_int_equal(PB->st.bad_requests, bad + 1);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 2);
}

/* The partner is unreachable: requests wait, then fail with EIO at the
 * deadline; what comes back later is harmless. */
static void test_deadline(void **state)
{
	struct tio *w, *r;
	uint64_t t0;

	(void)state;
	fake_session_down(CA);
	WAIT(none_ready(PA));
	t0 = loop_now_ns();
	w = tio_new(NBD_CMD_WRITE, 0, 4096);
	r = tio_new(NBD_CMD_READ, 0, 65536);
	submit(w);
	submit(r);
	WAIT(w->calls && r->calls);
	assert_true(loop_now_ns() - t0 >= 200000000ull);
	assert_int_equal(w->result, -EIO);
	assert_int_equal(r->result, -EIO);
	assert_int_equal(PA->st.timeouts, 2);
	assert_int_equal(PA->st.inflight, 0);
	/* never sent: nothing executes when the session returns */
	fake_session_up(CA);
	WAIT(all_ready(PA));
	spin(10, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 0);
	tio_free(w);
	tio_free(r);

	/* sent, not answered in time (b is stuck): EIO; the late answer
	 * frees what the request held */
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	r = tio_new(NBD_CMD_READ, 0, 65536);
	submit(r);
	WAIT(r->calls);
	assert_int_equal(r->result, -EIO);
	assert_int_equal(fw_mem_used(PA), 4);
	ramdisk_release(RB, false);
	WAIT(fw_mem_used(PA) == 0);
	tio_free(r);
	ramdisk_set_mode(RB, RAMDISK_INLINE);

	/* sent and lost, then abandoned: after the session returns it is
	 * asked about (PX_F_NOEXEC) and never executed */
	fake_set_filter(CA, filter, NULL);
	drop_reqs = true;
	w = tio_new(NBD_CMD_WRITE, 0, 65536);
	submit(w);
	WAIT(w->calls);
	assert_int_equal(w->result, -EIO);
	drop_reqs = false;
	assert_int_equal(fw_mem_used(PA), 4);
	cycle_session();
	WAIT(fw_mem_used(PA) == 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 0);
	tio_free(w);
	/* the link works as before */
	assert_int_equal(write_at(0, 4096, 7), 0);
	expect_disk(RB, "vb", 0, 4096, 7);
}

/* The session returns before the deadline: the requests complete. */
static void test_wait_for_session(void **state)
{
	struct tio *w, *r;

	(void)state;
	fake_session_down(CA);
	w = tio_new(NBD_CMD_WRITE, 0, 65536);
	fill(w->io.buf, 65536, 3);
	r = tio_new(NBD_CMD_READ, 1u << 20, 4096);
	memset(ramdisk_data(RB, "vb") + (1u << 20), 0x3c, 4096);
	submit(w);
	submit(r);
	spin(20, 1000000);
	assert_true(w->calls == 0 && r->calls == 0);
	fake_session_up(CA);
	WAIT(w->calls && r->calls);
	assert_int_equal(w->result, 0);
	assert_int_equal(r->result, 0);
	expect_disk(RB, "vb", 0, 65536, 3);
	assert_memory_equal(r->io.buf, ramdisk_data(RB, "vb") + (1u << 20), 4096);
	tio_free(w);
	tio_free(r);
}

/* The partner restarts (a new process: new session, new table, new ids):
 * requests in flight there are sent again and run on the new one. */
static void test_partner_restart(void **state)
{
	struct proxy_opts ob = opts_for("b", NULL, 5000);
	struct tio *w;

	(void)state;
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	w = submit_write(0, 65536, 8);
	WAIT(ramdisk_held(RB) == 1);
	/* b dies after executing it, before answering */
	fake_session_down(CA);
	ramdisk_release(RB, false);
	ramdisk_set_mode(RB, RAMDISK_INLINE);
	proxy_destroy(PB);
	fake_new_generation(CB);
	ob.local_ctx = RB;
	assert_int_equal(proxy_create(L, CB, &ob, &PB), 0);
	fake_session_up(CA);
	WAIT(w->calls);
	assert_int_equal(w->result, 0);
	expect_disk(RB, "vb", 0, 65536, 8);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 2);
	tio_free(w);
}

/* Takeover: the partner's volume is served locally from now on, waiting
 * commands included; giveback forwards again. */
static void test_route_local(void **state)
{
	struct tio *w, *r;

	(void)state;
	make_local_disk();
	fake_session_down(CA);
	w = submit_write(0, 65536, 11);
	loop_run_once(L, 0);
	assert_int_equal(w->calls, 0);
	assert_int_equal(proxy_route_local(PA, "vb", &ramdisk_ops, RL), 0);
	assert_int_equal(proxy_route_local(PA, "vb", &ramdisk_ops, RL), -EEXIST);
	WAIT(w->calls);
	assert_int_equal(w->result, 0);
	expect_disk(RL, "vb", 0, 65536, 11);
	r = tio_new(NBD_CMD_READ, 0, 65536);
	assert_int_equal(run(r), 0);
	assert_memory_equal(r->io.buf, ramdisk_data(RL, "vb"), 65536);
	assert_int_equal(PA->st.local, 2);
	assert_true(listed("vb"));
	/* giveback */
	assert_int_equal(proxy_route_partner(PA, "vb"), 0);
	assert_int_equal(proxy_route_partner(PA, "vb"), -ENOENT);
	fake_session_up(CA);
	assert_int_equal(write_at(0, 4096, 12), 0);
	expect_disk(RB, "vb", 0, 4096, 12);
	tio_free(w);
	tio_free(r);
}

/* ---- the owner does not serve (fenced) ---- */

/* Entries on one of the proxy's lists (parked or held requests, lent slots). */
static unsigned list_len(const struct list *l)
{
	const struct list *pos;
	unsigned n = 0;

	list_for_each(pos, l) n++;
	return n;
}

/* Nothing held by the forwarder any more: sequence numbers, slots, queues. */
static bool fw_idle(const struct proxy *px)
{
	for (unsigned i = 0; i < px->n_ports; i++)
		if (px->ports[i].outstanding || px->ports[i].fmem.used ||
		    !list_empty(&px->ports[i].rq))
			return false;
	return list_empty(&px->parked) && list_empty(&px->waitq);
}

/* The serving side's id of its volume @p name. */
static uint32_t svol_id(const struct proxy *px, const char *name)
{
	const struct list *pos;

	list_for_each(pos, &px->svols)
	{
		const struct svol *v = list_entry(pos, struct svol, node);
		if (strcmp(v->name, name) == 0)
			return v->id;
	}
	fail_msg("no served volume %s", name);
	return 0;
}

/* The id of the most recently listed served volume. */
static uint32_t first_svol_id(const struct proxy *px)
{
	assert_false(list_empty(&px->svols));
	return list_entry(px->svols.next, struct svol, node)->id;
}

static unsigned table_used(const struct proxy *px)
{
	unsigned n = 0;

	for (unsigned i = 0; i < PX_TABLE; i++)
		n += px->table[i].state != SE_EMPTY;
	return n;
}

/* Not serving: forwarded writes are refused, never executed, and wait at
 * the forwarder (in order, ahead of newer commands); once serving again
 * they execute once and complete. The volume list is still pushed. */
static void test_not_serving(void **state)
{
	struct tio *w[3];
	uint64_t refused;

	(void)state;
	proxy_set_serving(PB, false);
	for (unsigned i = 0; i < 2; i++) {
		w[i] = submit_write(i * 65536ull, i ? 65536 : 4096, 40 + i);
	}
	WAIT(list_len(&PA->parked) == 2);
	assert_int_equal(w[0]->calls + w[1]->calls, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 0);
	assert_int_equal(PB->st.served, 0);
	assert_true(PA->st.refused >= 2 && PB->st.served_refused >= 2);
	assert_int_equal(table_used(PB), 0);
	/* a newer command, waiting for the session, goes behind them */
	fake_session_down(CA);
	w[2] = submit_write(2 * 65536ull, 4096, 42);
	WAIT(list_len(&PA->parked) == 0);
	{
		const struct list *pos = PA->waitq.next;
		for (unsigned i = 0; i < 3; i++, pos = pos->next) {
			const struct preq *r = list_entry(pos, struct preq, qnode);
			assert_ptr_not_equal(pos, &PA->waitq);
			assert_ptr_equal(r->cmd->nio, &w[i]->io);
			assert_int_equal(r->state, PR_WAIT);
			assert_int_equal(r->seq, 0);
			assert_int_equal(r->slot, -1);
		}
		assert_ptr_equal(pos, &PA->waitq);
	}
	/* the session returns: the list arrives, the requests are refused */
	refused = PA->st.refused;
	fake_session_up(CA);
	WAIT(all_ready(PA));
	assert_int_equal(ramdisk_add(RB, "vb-new", 1u << 20, false, NULL), 0);
	proxy_local_volumes_changed(PB);
	WAIT(listed("vb-new"));
	WAIT(PA->st.refused >= refused + 3);
	assert_int_equal(w[0]->calls + w[1]->calls + w[2]->calls, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 0);
	/* serving again: each runs once */
	proxy_set_serving(PB, true);
	WAIT(w[0]->calls && w[1]->calls && w[2]->calls);
	spin(10, 0);
	for (unsigned i = 0; i < 3; i++) {
		assert_int_equal(w[i]->calls, 1);
		assert_int_equal(w[i]->result, 0);
		expect_disk(RB, "vb", i * 65536ull, w[i]->io.length, 40 + i);
	}
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 3);
	assert_int_equal(PA->st.errors, 0);
	WAIT(fw_idle(PA));
	for (unsigned i = 0; i < 3; i++)
		tio_free(w[i]);
}

/* Relocation: the owner's backend answers PROXY_MOVED (the volume left
 * it): the request is refused, not executed, forgotten; the forwarder
 * parks it and sends it again; once the backend executes, the client sees
 * one completion and no error. */
static void test_moved_refused(void **state)
{
	struct tio *w;

	(void)state;
	ramdisk_fail_next(RB, PROXY_MOVED, 3);
	w = submit_write(0, 4096, 60);
	WAIT(w->calls == 1);
	spin(10, 0);
	assert_int_equal(w->calls, 1);
	assert_int_equal(w->result, 0);
	expect_disk(RB, "vb", 0, 4096, 60);
	assert_true(PA->st.refused >= 3 && PB->st.served_refused >= 3);
	assert_int_equal(PA->st.errors, 0);
	WAIT(fw_idle(PA));
	tio_free(w);
}

/* Fenced while the request executes at the owner's backend: its completion
 * is answered -EAGAIN and forgotten; the forwarder retries; once serving
 * again it executes again and the client sees one completion. */
static void test_fenced_while_executing(void **state)
{
	struct tio *w;

	(void)state;
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	w = submit_write(0, 128 * 1024, 50);
	WAIT(ramdisk_held(RB) == 1);
	proxy_set_serving(PB, false);
	ramdisk_set_mode(RB, RAMDISK_INLINE);
	ramdisk_release(RB, false);
	WAIT(PA->st.refused >= 1);
	assert_int_equal(w->calls, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 1);
	assert_int_equal(PB->st.served_refused, 1);
	assert_int_equal(table_used(PB), 0);
	/* retried, refused again, not executed */
	WAIT(PA->st.refused >= 3);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 1);
	assert_int_equal(w->calls, 0);
	proxy_set_serving(PB, true);
	WAIT(w->calls);
	spin(10, 0);
	assert_int_equal(w->calls, 1);
	assert_int_equal(w->result, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 2);
	expect_disk(RB, "vb", 0, 128 * 1024, 50);
	WAIT(fw_idle(PA));
	tio_free(w);
}

/* Fenced while the owner reads the write data (RDMA): it never executes. */
static void test_fenced_while_reading_data(void **state)
{
	struct tio *w;

	(void)state;
	w = submit_write(65536, 65536, 51);
	loop_run_once(L, 0); /* delivers the request; b posts its read */
	assert_int_equal(srv_mem_used(PB), 4);
	proxy_set_serving(PB, false);
	WAIT(PA->st.refused >= 1);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 0);
	assert_int_equal(srv_mem_used(PB), 0);
	assert_int_equal(w->calls, 0);
	proxy_set_serving(PB, true);
	WAIT(w->calls);
	assert_int_equal(w->result, 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 1);
	expect_disk(RB, "vb", 65536, 65536, 51);
	tio_free(w);
}

/* Replies b sends for injected requests (seq >= INJ_SEQ). */
#define INJ_SEQ (1ull << 20)
static int inj_result[8];
static unsigned inj_replies;

static void inj_rec(void *arg, const void *rec, size_t len)
{
	struct pxm_rep m;
	const char *why;

	(void)arg;
	if (proxy_wire_msg_type(rec, len) != PX_REP ||
	    proxy_wire_decode_rep(rec, len, &m, &why) < 0)
		return;
	if (m.seq >= INJ_SEQ && m.seq < INJ_SEQ + 8) {
		inj_result[m.seq - INJ_SEQ] = m.result;
		inj_replies++;
	}
}

static enum fake_verdict inj_filter(struct ccm *from, unsigned port, const void *msg, size_t len,
				    void *arg)
{
	const char *why;

	(void)from;
	(void)port;
	(void)arg;
	if (proxy_wire_msg_type(msg, len) == PX_BATCH)
		assert_int_equal(proxy_wire_batch_walk(msg, len, inj_rec, NULL, &why), 0);
	else
		inj_rec(NULL, msg, len);
	return FAKE_DELIVER;
}

/* Fenced with requests waiting for the owner's port memory: they are
 * refused at once, those executing when they complete; new ones at once. */
static void test_fenced_bufwait(void **state)
{
	struct pxm_req q = {0};

	(void)state;
	memset(inj_result, 0, sizeof(inj_result));
	inj_replies = 0;
	fake_set_filter(CB, inj_filter, NULL);
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	q.session = PA->session;
	q.cmd = NBD_CMD_WRITE;
	q.length = 1u << 20; /* two fill b's serving half of a port */
	q.vol = svol_id(PB, "vb");
	for (unsigned i = 0; i < 3; i++) {
		q.seq = INJ_SEQ + i;
		q.offset = i * (uint64_t)q.length;
		inject_req(&q);
	}
	WAIT(ramdisk_held(RB) == 2);
	assert_false(slist_empty(&PB->ports[0].bufq));
	proxy_set_serving(PB, false);
	assert_true(slist_empty(&PB->ports[0].bufq));
	WAIT(inj_replies == 1);
	assert_int_equal(inj_result[2], -EAGAIN);
	/* a new one: refused at once */
	q.seq = INJ_SEQ + 3;
	q.offset = 0;
	inject_req(&q);
	WAIT(inj_replies == 2);
	assert_int_equal(inj_result[3], -EAGAIN);
	/* the two executing complete: refused too */
	ramdisk_release(RB, false);
	WAIT(inj_replies == 4);
	assert_int_equal(inj_result[0], -EAGAIN);
	assert_int_equal(inj_result[1], -EAGAIN);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 2);
	assert_int_equal(PB->st.served_refused, 4);
	assert_int_equal(PB->ports[0].smem.used, 0);
	assert_int_equal(table_used(PB), 0);
	assert_int_equal(PB->st.served_inflight, 0);
	/* serving again: the same sequence number runs normally */
	ramdisk_set_mode(RB, RAMDISK_INLINE);
	proxy_set_serving(PB, true);
	q.seq = INJ_SEQ + 2;
	q.offset = 2 * (uint64_t)q.length;
	inject_req(&q);
	WAIT(inj_replies == 5);
	assert_int_equal(inj_result[2], 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 3);
	fake_set_filter(CB, NULL, NULL);
}

/* Takeover while the owner refuses: the waiting command (parked, or in
 * flight) runs locally, once. */
static void test_route_local_refused(void **state)
{
	struct tio *w;

	(void)state;
	make_local_disk();
	proxy_set_serving(PB, false);
	/* parked */
	w = submit_write(0, 65536, 60);
	WAIT(list_len(&PA->parked) == 1);
	assert_int_equal(proxy_route_local(PA, "vb", &ramdisk_ops, RL), 0);
	WAIT(w->calls);
	spin(10, 1000000);
	assert_int_equal(w->calls, 1);
	assert_int_equal(w->result, 0);
	expect_disk(RL, "vb", 0, 65536, 60);
	assert_int_equal(disk_ops(RL, NBD_CMD_WRITE), 1);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 0);
	assert_int_equal(PA->st.local, 1);
	WAIT(fw_idle(PA));
	tio_free(w);
	/* in flight (sent, the refusal not yet back) */
	assert_int_equal(proxy_route_partner(PA, "vb"), 0);
	w = submit_write(65536, 65536, 61);
	assert_non_null(PA->outstanding[(PA->next_seq - 1) & PX_TABLE_MASK]);
	assert_int_equal(proxy_route_local(PA, "vb", &ramdisk_ops, RL), 0);
	WAIT(w->calls);
	assert_int_equal(w->result, 0);
	WAIT(fw_idle(PA)); /* its refusal came back and freed it */
	assert_int_equal(w->calls, 1);
	expect_disk(RL, "vb", 65536, 65536, 61);
	assert_int_equal(disk_ops(RL, NBD_CMD_WRITE), 2);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 0);
	tio_free(w);
}

/* Refused for longer than the deadline: EIO, and it never runs later. */
static void test_refused_deadline(void **state)
{
	struct tio *w;
	uint64_t t0;

	(void)state;
	proxy_set_serving(PB, false);
	t0 = loop_now_ns();
	w = submit_write(0, 65536, 70);
	WAIT(w->calls);
	assert_true(loop_now_ns() - t0 >= 200000000ull);
	assert_int_equal(w->result, -EIO);
	assert_int_equal(PA->st.timeouts, 1);
	assert_true(PA->st.refused >= 1);
	assert_int_equal(PA->st.inflight, 0);
	WAIT(fw_idle(PA));
	proxy_set_serving(PB, true);
	spin(20, 1000000);
	assert_int_equal(w->calls, 1);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 0);
	tio_free(w);
	assert_int_equal(write_at(0, 4096, 71), 0);
	expect_disk(RB, "vb", 0, 4096, 71);
}

/* A hostile or broken partner: every bad message is refused, nothing
 * crashes, requests it garbles fail with EIO instead of hanging. */
static void test_hostile_partner(void **state)
{
	uint8_t buf[CCM_MSG_MAX];
	struct pxm_rep p = {0};
	struct pxm_req q = {0};
	struct tio *r;
	size_t len;
	uint64_t before;

	(void)state;
	/* garbage both ways */
	memset(buf, 0x5a, sizeof(buf));
	fake_inject(CA, 0, buf, 100);
	fake_inject(CB, 0, buf, 100);
	fake_inject(CA, 1, buf, 0);
	/* replies to nothing, of another session */
	p.session = PA->session;
	p.seq = 999;
	len = proxy_wire_encode_rep(buf, &p);
	fake_inject(CA, 0, buf, len);
	p.session = 1;
	len = proxy_wire_encode_rep(buf, &p);
	before = PA->st.bad_replies;
	fake_inject(CA, 0, buf, len);
	assert_int_equal(PA->st.bad_replies, before + 1);
	/* a reply with the wrong length for a request in flight: EIO */
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	r = tio_new(NBD_CMD_READ, 0, 4096);
	submit(r);
	WAIT(ramdisk_held(RB) == 1);
	{
		struct preq *pr = PA->outstanding[(PA->next_seq - 1) & PX_TABLE_MASK];
		assert_non_null(pr);
		p.session = PA->session;
		p.seq = pr->seq;
		p.flags = PX_F_INLINE;
		p.length = 100;
		len = proxy_wire_encode_rep(buf, &p);
		fake_inject(CA, pr->port->idx, buf, len + 100);
	}
	WAIT(r->calls);
	assert_int_equal(r->result, -EIO);
	ramdisk_release(RB, false);
	ramdisk_set_mode(RB, RAMDISK_INLINE);
	tio_free(r);
	/* requests with bad fields: refused with an error, no RDMA, no I/O */
	before = fake_ops(CB);
	q.session = PB->ports[0].fsession;
	q.seq = 1u << 30;
	q.cmd = NBD_CMD_WRITE;
	q.length = 65536;
	q.data_off = (uint64_t)PA->ports[0].half; /* outside a's data area */
	q.vol = first_svol_id(PB);
	inject_req(&q);
	q.seq++;
	q.data_off = 0;
	q.vol = 12345; /* unknown volume */
	inject_req(&q);
	q.seq++;
	q.vol = first_svol_id(PB);
	q.offset = VOL_SIZE; /* beyond the volume */
	inject_req(&q);
	spin(10, 0);
	assert_int_equal(fake_ops(CB), before);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 0);
	assert_true(PB->st.bad_requests >= 3);
	/* a bad volume list is refused, the old one kept */
	len = proxy_wire_encode_vols_hdr(buf, PX_F_FIRST | PX_F_LAST, 1, PA->vols_applied_gen + 1,
					 PA->vols_server_session);
	memset(buf + sizeof(struct px_vols), 0xee, sizeof(struct px_vol));
	fake_inject(CA, 0, buf, len);
	assert_true(listed("vb"));
	/* and everything still works */
	assert_int_equal(write_at(0, 65536, 13), 0);
	expect_disk(RB, "vb", 0, 65536, 13);
}

/* Inject a volume list of generation @p gen on a's port @p port: "vb" as
 * b numbers it, and "vc" (a made-up id) when @p with_vc. */
static void inject_vols(unsigned port, uint16_t flags, uint32_t gen, bool with_vb, bool with_vc)
{
	uint8_t buf[CCM_MSG_MAX];
	struct px_vol w = {
	    .flags = PXV_CAN_FLUSH, .size = VOL_SIZE, .min_block = 512, .pref_block = 4096};
	uint32_t n = 0;
	size_t len;

	if (with_vb) {
		w.id = proxy_fw_vol_find(PA, "vb")->id;
		snprintf(w.name, sizeof(w.name), "vb");
		proxy_wire_put_vol(buf, n++, &w);
	}
	if (with_vc) {
		w.id = 999;
		snprintf(w.name, sizeof(w.name), "vc");
		proxy_wire_put_vol(buf, n++, &w);
	}
	len = proxy_wire_encode_vols_hdr(buf, flags, n, gen, PA->vols_server_session);
	fake_inject(CA, port, buf, len);
}

/* The lists of one server reach the forwarder over several ports, and an
 * older one can arrive after a newer one (a HELLO answered on one port in
 * the same loop turn as a change told on another): the newest stays. */
static void test_vols_stale(void **state)
{
	uint32_t g = PA->vols_applied_gen;
	uint32_t sent;

	(void)state;
	/* the server numbers its lists: a change takes a new generation */
	assert_int_not_equal(g, 0);
	sent = PB->vols_gen;
	proxy_local_volumes_changed(PB);
	assert_true(PB->vols_gen == sent + 1);
	WAIT(PA->vols_applied_gen == sent + 1);
	g = PA->vols_applied_gen;
	assert_true(listed("vb"));

	/* newer on port 0 (vb, vc), then older on port 1 (none): kept */
	assert_int_equal(PA->n_ports, 2);
	inject_vols(0, PX_F_FIRST | PX_F_LAST, g + 2, true, true);
	assert_true(listed("vb") && listed("vc"));
	inject_vols(1, PX_F_FIRST | PX_F_LAST, g + 1, false, false);
	assert_true(listed("vb") && listed("vc"));
	inject_vols(1, PX_F_FIRST | PX_F_LAST, g + 2, false, false); /* the same one again */
	assert_true(listed("vb") && listed("vc"));
	assert_int_equal(PA->vols_applied_gen, g + 2);

	/* a list in two parts on port 1; an older one in two parts on port 0
	 * meanwhile is skipped, and the list being received completes */
	inject_vols(1, PX_F_FIRST, g + 4, true, false);
	inject_vols(0, PX_F_FIRST, g + 3, false, false);
	inject_vols(0, PX_F_LAST, g + 3, false, true);
	assert_true(listed("vc")); /* nothing taken yet */
	inject_vols(1, PX_F_LAST, g + 4, false, false);
	assert_true(listed("vb") && !listed("vc"));
	assert_int_equal(PA->vols_applied_gen, g + 4);

	/* generations wrap */
	PA->vols_applied_gen = 0xffffffffu;
	inject_vols(0, PX_F_FIRST | PX_F_LAST, 1, true, true);
	assert_true(listed("vc"));
	inject_vols(0, PX_F_FIRST | PX_F_LAST, 0xfffffffeu, true, false);
	assert_true(listed("vc"));

	/* a server that does not number its lists (0) is always believed */
	inject_vols(0, PX_F_FIRST | PX_F_LAST, 0, true, false);
	assert_true(listed("vb") && !listed("vc"));
	inject_vols(1, PX_F_FIRST | PX_F_LAST, 0, true, true);
	assert_true(listed("vc"));

	/* and I/O still goes */
	assert_int_equal(write_at(0, 4096, 21), 0);
	expect_disk(RB, "vb", 0, 4096, 21);
}

/* A small channel window: requests and replies wait for room. */
static void test_flow_control(void **state)
{
	struct tio *t[64];

	(void)state;
	fake_set_window(CA, 2);
	fake_set_window(CB, 2);
	for (unsigned i = 0; i < 64; i++) {
		t[i] = tio_new(i % 2 ? NBD_CMD_READ : NBD_CMD_WRITE, i * 65536ull,
			       i % 4 < 2 ? 4096 : 65536);
		if (t[i]->io.type == NBD_CMD_WRITE)
			fill(t[i]->io.buf, t[i]->io.length, i);
		submit(t[i]);
	}
	for (unsigned i = 0; i < 64; i++) {
		WAIT(t[i]->calls);
		assert_int_equal(t[i]->result, 0);
	}
	for (unsigned i = 0; i < 64; i += 2)
		expect_disk(RB, "vb", i * 65536ull, t[i]->io.length, i);
	for (unsigned i = 0; i < 64; i++)
		tio_free(t[i]);
}

/* The requests of one loop turn share a message, and so do the replies. */
static void test_batching(void **state)
{
	struct tio *t[32];
	uint64_t sent;

	(void)state;
	sent = fake_msgs_sent(CA);
	for (unsigned i = 0; i < 32; i++) {
		t[i] = tio_new(i % 2 ? NBD_CMD_READ : NBD_CMD_WRITE, i * 4096ull, 4096);
		submit(t[i]);
	}
	for (unsigned i = 0; i < 32; i++) {
		WAIT(t[i]->calls);
		assert_int_equal(t[i]->result, 0);
	}
	/* 16 inline writes of 4 KiB take 6 messages, the reads one */
	assert_true(fake_msgs_sent(CA) - sent <= 8);
	assert_true(fake_msgs_sent(CB) < 32);
	for (unsigned i = 0; i < 32; i++)
		tio_free(t[i]);
}

/* The server answers small reads inline when asked (the forwarder asks
 * while few requests are in flight, see PX_READ_INLINE_LOAD). */
static void test_inline_read_reply(void **state)
{
	uint8_t buf[256];
	struct pxm_req q = {0};
	struct pxm_rep r;
	const char *why;
	size_t len;

	(void)state;
	fake_set_filter(CB, filter, NULL);
	memset(ramdisk_data(RB, "vb") + 8192, 0x6e, 512);
	q.flags = PX_F_INLINE;
	q.session = PA->session;
	q.seq = 1u << 20;
	q.cmd = NBD_CMD_READ;
	q.offset = 8192;
	q.length = 512;
	q.vol = svol_id(PB, "vb");
	len = proxy_wire_encode_req(buf, &q, NULL);
	capture_next_rep = true;
	fake_inject(CB, 0, buf, len);
	WAIT(!capture_next_rep);
	assert_int_equal(proxy_wire_decode_rep(captured_rep, captured_rep_len, &r, &why), 0);
	assert_true(r.result == 0 && (r.flags & PX_F_INLINE) && r.length == 512 && r.seq == q.seq);
	assert_int_equal(r.data[0], 0x6e);
	assert_int_equal(r.data[511], 0x6e);
}

static void test_status_json(void **state)
{
	struct json_object *root = json_object_new_object(), *arr = json_object_new_array();
	struct json_object *px, *v, *x;

	(void)state;
	assert_int_equal(write_at(0, 4096, 1), 0);
	assert_int_equal(proxy_status_to_json(PA, root), 0);
	assert_true(json_object_object_get_ex(root, "proxy", &px));
	assert_true(json_object_object_get_ex(px, "state", &x));
	assert_string_equal(json_object_get_string(x), "up");
	assert_true(json_object_object_get_ex(px, "commands", &x));
	assert_int_equal(json_object_get_int64(x), 1);
	assert_true(json_object_object_get_ex(px, "bytes_written", &x));
	assert_int_equal(json_object_get_int64(x), 4096);
	assert_true(json_object_object_get_ex(px, "retries", &x));
	assert_true(json_object_object_get_ex(px, "refused", &x));
	assert_int_equal(json_object_get_int64(x), 0);
	assert_true(json_object_object_get_ex(px, "served", &v));
	assert_true(json_object_object_get_ex(v, "refused", &x));
	assert_true(json_object_object_get_ex(v, "serving", &x));
	assert_true(json_object_get_boolean(x));
	assert_true(json_object_object_get_ex(px, "errors", &x));
	assert_int_equal(proxy_volumes_to_json(PA, arr), 0);
	assert_int_equal(json_object_array_length(arr), 2);
	v = json_object_array_get_idx(arr, 0);
	assert_true(json_object_object_get_ex(v, "port", &x));
	assert_string_equal(json_object_get_string(x), "proxy");
	assert_true(json_object_object_get_ex(v, "served_by", &x));
	assert_string_equal(json_object_get_string(x), "b");
	assert_true(json_object_object_get_ex(v, "owner", &x));
	assert_string_equal(json_object_get_string(x), "b");
	json_object_put(root);
	json_object_put(arr);
}

/* ---- READ replies sent from the slot: a real NBD server on a's side ---- */

static struct nbd_server *NS;
static int NFD = -1;

static void nc_write(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t end = loop_now_ns() + DEADLINE_NS;

	while (len) {
		ssize_t n = write(NFD, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		assert_true(n < 0 && errno == EAGAIN);
		loop_run_once(L, 1000000);
		assert_true(loop_now_ns() < end);
	}
}

static void nc_read(void *buf, size_t len)
{
	uint8_t *p = buf;
	uint64_t end = loop_now_ns() + DEADLINE_NS;

	while (len) {
		ssize_t n = read(NFD, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		assert_true(n < 0 && errno == EAGAIN);
		loop_run_once(L, 1000000);
		assert_true(loop_now_ns() < end);
	}
}

/* The proxy listener of a (NS) with one client (NFD) in transmission on "vb". */
static void nc_start(void)
{
	struct nbd_server_opts o = {.name = "proxy"};
	uint8_t h[20], d[64];
	int sv[2];

	assert_int_equal(nbd_server_create(L, &o, proxy_backend_ops(), PA, &NS), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	assert_int_equal(nbd_server_add_fd(NS, sv[0]), 0);
	NFD = sv[1];
	nc_read(d, NBD_GREETING_LEN);
	put_be32(d, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	nc_write(d, 4);
	put_be64(h, NBD_IHAVEOPT);
	put_be32(h + 8, NBD_OPT_GO);
	put_be32(h + 12, 8);
	put_be32(d, 2);
	memcpy(d + 4, "vb", 2);
	put_be16(d + 6, 0);
	nc_write(h, 16);
	nc_write(d, 8);
	for (;;) {
		nc_read(h, 20);
		assert_true(get_be32(h + 16) <= sizeof(d));
		nc_read(d, get_be32(h + 16));
		if (get_be32(h + 12) == NBD_REP_ACK)
			break;
		assert_int_equal(get_be32(h + 12), NBD_REP_INFO);
	}
}

static void nc_stop(void)
{
	if (NFD >= 0)
		close(NFD);
	NFD = -1;
	nbd_server_destroy(NS);
	NS = NULL;
	spin(2, 0);
}

static void nc_req(uint16_t type, uint64_t cookie, uint64_t off, uint32_t len)
{
	uint8_t h[NBD_REQ_LEN];

	put_be32(h, NBD_REQUEST_MAGIC);
	put_be16(h + 4, 0);
	put_be16(h + 6, type);
	put_be64(h + 8, cookie);
	put_be64(h + 16, off);
	put_be32(h + 24, len);
	nc_write(h, sizeof(h));
}

/* A successful simple reply with @p len bytes of data: @return its cookie. */
static uint64_t nc_reply(void *data, uint32_t len)
{
	uint8_t h[NBD_SIMPLE_LEN];

	nc_read(h, sizeof(h));
	assert_int_equal(get_be32(h), NBD_SIMPLE_REPLY_MAGIC);
	assert_int_equal(get_be32(h + 4), 0);
	nc_read(data, len);
	return get_be64(h + 8);
}

/* A 1 MiB READ (one chunk, in a slot) goes to the client from its slot:
 * the slot stays held while the reply waits to be sent, through a session
 * loss and a partner restart, while other requests run (none gets it),
 * and is free once sent. A READ of two chunks is copied (nothing held). */
static void test_read_from_slot(void **state)
{
	struct proxy_opts ob = opts_for("b", NULL, 5000);
	uint32_t mib = 1u << 20;
	uint8_t *buf = malloc(2 * mib), *want = malloc(2 * mib);
	uint64_t base;
	struct tio *t;

	(void)state;
	assert_non_null(buf);
	assert_non_null(want);
	assert_int_equal(write_at(65536, mib, 21), 0);
	fill(want, mib, 21);
	nc_start();
	nc_req(NBD_CMD_READ, 1, 65536, mib);
	WAIT(PA->st.bytes_read == mib);
	assert_int_equal(list_len(&PA->held), 1);
	assert_int_equal(fw_mem_used(PA), mib / PX_UNIT);
	cycle_session();
	WAIT(all_ready(PA) && all_ready(PB));
	fake_session_down(CA);
	proxy_destroy(PB);
	fake_new_generation(CB);
	ob.local_ctx = RB;
	assert_int_equal(proxy_create(L, CB, &ob, &PB), 0);
	fake_session_up(CA);
	WAIT(all_ready(PA) && all_ready(PB));
	assert_int_equal(fw_mem_used(PA), mib / PX_UNIT);
	/* other big requests, both ways, while it is held */
	for (unsigned i = 0; i < 4; i++) {
		assert_int_equal(write_at(2 * mib, mib, 30 + i), 0);
		t = tio_new(NBD_CMD_READ, 2 * mib, mib);
		assert_int_equal(run(t), 0);
		fill(buf, mib, 30 + i);
		assert_memory_equal(t->io.buf, buf, mib);
		tio_free(t);
	}
	assert_true(nc_reply(buf, mib) == 1);
	assert_memory_equal(buf, want, mib);
	WAIT(fw_mem_used(PA) == 0);
	assert_int_equal(list_len(&PA->held), 0);
	/* two chunks: gathered in the NBD buffer, no slot held */
	base = PA->st.bytes_read;
	nc_req(NBD_CMD_READ, 2, 65536, 2 * mib);
	WAIT(PA->st.bytes_read == base + 2 * mib);
	assert_int_equal(list_len(&PA->held), 0);
	assert_int_equal(fw_mem_used(PA), 0);
	assert_true(nc_reply(buf, 2 * mib) == 2);
	assert_memory_equal(buf, ramdisk_data(RB, "vb") + 65536, 2 * mib);
	nc_stop();
	free(buf);
	free(want);
}

/* Held slots stay within half of a port's forwarder memory: beyond, the
 * data is copied, so a client that does not read cannot take every slot. */
static void test_read_from_slot_bound(void **state)
{
	uint32_t mib = 1u << 20;
	uint8_t *buf = malloc(mib);

	(void)state;
	assert_non_null(buf);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(write_at(i * mib, mib, 40 + i), 0);
	nc_start();
	for (unsigned i = 0; i < 4; i++)
		nc_req(NBD_CMD_READ, i, i * mib, mib);
	WAIT(PA->st.bytes_read == 4 * mib);
	assert_int_equal(list_len(&PA->held), 2);
	for (unsigned i = 0; i < PA->n_ports; i++)
		assert_true(PA->ports[i].held <= PA->ports[i].fmem.units / 2);
	for (unsigned i = 0; i < 4; i++) {
		uint64_t cookie = nc_reply(buf, mib);
		assert_true(cookie < 4);
		expect_disk(RB, "vb", cookie * mib, mib, 40 + (unsigned)cookie);
		assert_memory_equal(buf, ramdisk_data(RB, "vb") + cookie * mib, mib);
	}
	WAIT(fw_mem_used(PA) == 0);
	assert_int_equal(list_len(&PA->held), 0);
	nc_stop();
	free(buf);
}

/* The release comes once also when the client goes away: before the
 * reply was sent, and before the partner answered (the NBD server then
 * releases inside the completion). */
static void test_read_from_slot_close(void **state)
{
	(void)state;
	nc_start();
	nc_req(NBD_CMD_READ, 1, 0, 1u << 20);
	WAIT(PA->st.bytes_read == 1u << 20);
	assert_int_equal(list_len(&PA->held), 1);
	close(NFD);
	NFD = -1;
	WAIT(fw_mem_used(PA) == 0);
	assert_int_equal(list_len(&PA->held), 0);
	nc_stop();

	nc_start();
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	nc_req(NBD_CMD_READ, 2, 0, 1u << 20);
	WAIT(ramdisk_held(RB) == 1);
	close(NFD);
	NFD = -1;
	spin(5, 1000000);
	ramdisk_release(RB, false);
	WAIT(PA->st.bytes_read == 2u << 20);
	WAIT(fw_mem_used(PA) == 0);
	assert_int_equal(list_len(&PA->held), 0);
	assert_int_equal(PA->stopped, false);
	nc_stop();
}

/* A reply still sent from a slot when the proxy stops: the release after
 * proxy_stop() frees the slot as usual. */
static void test_read_from_slot_stop(void **state)
{
	uint32_t mib = 1u << 20;
	uint8_t *buf = malloc(mib);

	(void)state;
	assert_non_null(buf);
	assert_int_equal(write_at(0, mib, 51), 0);
	nc_start();
	nc_req(NBD_CMD_READ, 1, 0, mib);
	WAIT(PA->st.bytes_read == mib);
	proxy_stop(PA);
	assert_int_equal(list_len(&PA->held), 1);
	assert_true(nc_reply(buf, mib) == 1);
	expect_disk(RB, "vb", 0, mib, 51);
	assert_memory_equal(buf, ramdisk_data(RB, "vb"), mib);
	assert_int_equal(list_len(&PA->held), 0);
	assert_int_equal(fw_mem_used(PA), 0);
	nc_stop();
	free(buf);
}

/* ... and when it is destroyed: the port memory is still there for the
 * reply (the data arrives whole) and is unmapped at the release. */
static void test_read_from_slot_destroy(void **state)
{
	uint32_t mib = 1u << 20;
	uint8_t *buf = malloc(mib);
	struct nbd_conn *c;

	(void)state;
	assert_non_null(buf);
	assert_int_equal(write_at(0, mib, 52), 0);
	nc_start();
	nc_req(NBD_CMD_READ, 1, 0, mib);
	WAIT(PA->st.bytes_read == mib);
	assert_int_equal(list_len(&PA->held), 1);
	/* The node closes its listeners before the proxy; here only the reply
	 * outlives it, so the connection gives back its export handle (the
	 * proxy's volume) first. */
	c = list_first_entry_or_null(&NS->conns, struct nbd_conn, link);
	assert_non_null(c);
	FW->close(PA, c->handle);
	c->handle = NULL;
	FW->close(PA, H);
	H = NULL;
	proxy_destroy(PA);
	PA = NULL;
	assert_true(nc_reply(buf, mib) == 1);
	expect_disk(RB, "vb", 0, mib, 52);
	assert_memory_equal(buf, ramdisk_data(RB, "vb"), mib);
	nc_stop();
	free(buf);
}

/* A one-chunk WRITE's payload is received straight into a slot (write_buf)
 * and sent from there; the slot is freed after the reply. A header whose
 * payload never comes holds its slot only until the connection closes,
 * and others write meanwhile. A WRITE of two chunks uses the server's
 * buffer. */
static void test_write_into_slot(void **state)
{
	uint32_t mib = 1u << 20;
	uint8_t *buf = malloc(2 * mib), h[NBD_SIMPLE_LEN];

	(void)state;
	assert_non_null(buf);
	nc_start();
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	fill(buf, mib, 61);
	nc_req(NBD_CMD_WRITE, 1, 3 * mib, mib);
	nc_write(buf, mib);
	WAIT(ramdisk_held(RB) == 1);
	assert_int_equal(list_len(&PA->lent), 1);
	assert_int_equal(list_first_entry_or_null(&PA->lent, struct pslot, node)->users, 1);
	assert_int_equal(fw_mem_used(PA), mib / PX_UNIT);
	ramdisk_release(RB, false);
	ramdisk_set_mode(RB, RAMDISK_INLINE);
	assert_true(nc_reply(h, 0) == 1);
	expect_disk(RB, "vb", 3 * mib, mib, 61);
	WAIT(list_len(&PA->lent) == 0 && fw_mem_used(PA) == 0);
	/* two chunks: not lent */
	fill(buf, 2 * mib, 62);
	nc_req(NBD_CMD_WRITE, 2, 0, 2 * mib);
	nc_write(buf, 2 * mib);
	assert_true(nc_reply(h, 0) == 2);
	expect_disk(RB, "vb", 0, 2 * mib, 62);
	assert_int_equal(fw_mem_used(PA), 0);
	/* a header, a little of its payload, and nothing more */
	nc_req(NBD_CMD_WRITE, 3, 4 * mib, mib);
	nc_write(buf, 4096);
	WAIT(list_len(&PA->lent) == 1);
	for (unsigned i = 0; i < 4; i++)
		assert_int_equal(write_at(5 * mib, mib, 63 + i), 0);
	expect_disk(RB, "vb", 5 * mib, mib, 66);
	close(NFD);
	NFD = -1;
	WAIT(list_len(&PA->lent) == 0 && fw_mem_used(PA) == 0);
	assert_int_equal(disk_ops(RB, NBD_CMD_WRITE), 1 + 2 + 4);
	nc_stop();
	free(buf);
}

/* A WRITE sent from a lent slot whose command fails by its deadline: the
 * request stays behind, abandoned, and keeps the slot (the partner may
 * still read it) after the server released it; the slot is freed with
 * the partner's answer. Also a session loss and a refusal (not serving)
 * in between: it goes again from the same slot. */
static void test_write_into_slot_deadline(void **state)
{
	uint32_t mib = 1u << 20;
	uint8_t *buf = malloc(mib), h[NBD_SIMPLE_LEN];

	(void)state;
	assert_non_null(buf);
	nc_start();
	ramdisk_set_mode(RB, RAMDISK_HOLD);
	fill(buf, mib, 71);
	nc_req(NBD_CMD_WRITE, 1, 0, mib);
	nc_write(buf, mib);
	WAIT(ramdisk_held(RB) == 1);
	nc_read(h, sizeof(h)); /* the deadline: EIO */
	assert_int_equal(get_be32(h + 4), NBD_EIO);
	WAIT(list_len(&PA->lent) == 1 &&
	     !list_first_entry_or_null(&PA->lent, struct pslot, node)->lent);
	assert_int_equal(fw_mem_used(PA), mib / PX_UNIT);
	ramdisk_release(RB, false);
	ramdisk_set_mode(RB, RAMDISK_INLINE);
	WAIT(list_len(&PA->lent) == 0 && fw_mem_used(PA) == 0);
	expect_disk(RB, "vb", 0, mib, 71);

	/* not serving, then a session loss: sent again from its slot */
	proxy_set_serving(PB, false);
	fill(buf, mib, 72);
	nc_req(NBD_CMD_WRITE, 2, mib, mib);
	nc_write(buf, mib);
	WAIT(PA->st.refused > 0);
	assert_int_equal(list_len(&PA->lent), 1);
	cycle_session();
	WAIT(all_ready(PA) && all_ready(PB));
	proxy_set_serving(PB, true);
	assert_true(nc_reply(h, 0) == 2);
	expect_disk(RB, "vb", mib, mib, 72);
	WAIT(list_len(&PA->lent) == 0 && fw_mem_used(PA) == 0);
	nc_stop();
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_wire_roundtrip),
	    cmocka_unit_test(test_wire_rejects),
	    cmocka_unit_test(test_pmem),
	    cmocka_unit_test_setup_teardown(test_list_open, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_other_commands, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dup_after_loss_inline, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dup_after_loss_slot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dup_while_executing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lost_in_transit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_forged_old_write, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deadline, setup_short_deadline, teardown),
	    cmocka_unit_test_setup_teardown(test_wait_for_session, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_partner_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_route_local, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_serving, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_moved_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fenced_while_executing, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fenced_while_reading_data, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fenced_bufwait, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_route_local_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_refused_deadline, setup_short_deadline, teardown),
	    cmocka_unit_test_setup_teardown(test_hostile_partner, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_vols_stale, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_flow_control, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_batching, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_inline_read_reply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_status_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_from_slot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_from_slot_bound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_from_slot_close, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_from_slot_stop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_read_from_slot_destroy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_into_slot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_write_into_slot_deadline, setup_short_deadline,
					    teardown),
	};

	log_set_level(getenv("PROXY_TEST_DEBUG") ? LOG_LEVEL_DEBUG : LOG_LEVEL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
