/*
 * libFuzzer target for the NBD server: the input is a client byte stream
 * fed to a whole server connection through an in-memory transport (no
 * sockets), with a RAM disk backend; or, with bit 7 of the first byte,
 * straight to the pure parsers.
 *
 * Byte 0 (control):
 *   bits 0-1  prefix: 0 none (the stream starts with the client flags),
 *             1 handshake done with structured replies + base:allocation
 *             on "disk", 2 EXPORT_NAME "disk" (simple replies),
 *             3 GO "aligned" (min block 512), structured
 *   bits 2-3  backend: 0 inline completions, 1 deferred (newest first),
 *             2 held and released in bursts, 3 inline with tls = require
 *             (a PSK file: every option but STARTTLS and ABORT refused;
 *             STARTTLS itself is refused on the memory transport)
 *   bits 4-6  size of each read the server gets (1 byte .. everything)
 *   bit  7    parsers only
 * Byte 1: the server may write at most byte1 * 61 bytes per call (0: all).
 * The rest is the stream.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "nbd/nbd_int.h"
#include "ramdisk.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct mem {
	const uint8_t *p;
	size_t len, pos;
	size_t chunk;
	size_t wlimit;
};

static ssize_t mem_readv(void *arg, const struct iovec *iov, int n)
{
	struct mem *m = arg;
	size_t budget = m->chunk, got = 0;

	if (m->pos == m->len)
		return 0;
	for (int i = 0; i < n && budget && m->pos < m->len; i++) {
		size_t k = iov[i].iov_len;
		if (k > budget)
			k = budget;
		if (k > m->len - m->pos)
			k = m->len - m->pos;
		memcpy(iov[i].iov_base, m->p + m->pos, k);
		m->pos += k;
		got += k;
		budget -= k;
	}
	return (ssize_t)got;
}

static ssize_t mem_writev(void *arg, const struct iovec *iov, int n, bool more)
{
	struct mem *m = arg;
	size_t total = 0;

	(void)more;
	for (int i = 0; i < n; i++)
		total += iov[i].iov_len;
	/* Touch the bytes so ASan checks what the server sends. */
	for (int i = 0; i < n; i++) {
		volatile uint8_t sink = 0;
		const uint8_t *b = iov[i].iov_base;
		for (size_t j = 0; j < iov[i].iov_len; j += 509)
			sink ^= b[j];
		(void)sink;
	}
	if (m->wlimit && total > m->wlimit)
		return (ssize_t)m->wlimit;
	return (ssize_t)total;
}

static const struct nbd_xport mem_xport = {.readv = mem_readv, .writev = mem_writev};

static struct loop *L;

/* Canned handshakes so the fuzzer starts deep in transmission. */
static size_t put_opt(uint8_t *b, uint32_t opt, const void *d, uint32_t len)
{
	put_be64(b, NBD_IHAVEOPT);
	put_be32(b + 8, opt);
	put_be32(b + 12, len);
	if (len)
		memcpy(b + 16, d, len);
	return 16 + len;
}

static size_t prefix(uint8_t *b, int kind)
{
	static const uint8_t go_disk[] = {0, 0, 0, 4, 'd', 'i', 's', 'k', 0, 0};
	static const uint8_t go_aligned[] = {0, 0, 0, 7, 'a', 'l', 'i', 'g', 'n', 'e', 'd', 0, 0};
	static const uint8_t meta[] = {0,   0,	 0,   4,   'd', 'i', 's', 'k', 0,   0,	 0,
				       1,   0,	 0,   0,   15,	'b', 'a', 's', 'e', ':', 'a',
				       'l', 'l', 'o', 'c', 'a', 't', 'i', 'o', 'n'};
	size_t n = 4;

	put_be32(b, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES);
	switch (kind) {
	case 1:
		n += put_opt(b + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
		n += put_opt(b + n, NBD_OPT_SET_META_CONTEXT, meta, sizeof(meta));
		n += put_opt(b + n, NBD_OPT_GO, go_disk, sizeof(go_disk));
		break;
	case 2:
		n += put_opt(b + n, NBD_OPT_EXPORT_NAME, "disk", 4);
		break;
	case 3:
		n += put_opt(b + n, NBD_OPT_STRUCTURED_REPLY, NULL, 0);
		n += put_opt(b + n, NBD_OPT_GO, go_aligned, sizeof(go_aligned));
		break;
	default:
		n = 0;
	}
	return n;
}

static void fuzz_parsers(const uint8_t *d, size_t size)
{
	struct nbd_opt_go g;
	struct nbd_opt_meta m;
	struct nbd_request r;
	uint32_t len = size > NBD_OPT_DATA_MAX ? NBD_OPT_DATA_MAX : (uint32_t)size;

	nbd_parse_opt_go(d, len, &g);
	nbd_parse_opt_meta(d, len, true, &m);
	nbd_parse_opt_meta(d, len, false, &m);
	if (size >= NBD_REQ_LEN + 8) {
		struct nbd_xmit_params p = {
		    .size = get_be32(d + NBD_REQ_LEN),
		    .max_payload = 1u << 25,
		    .min_block = 1u << (d[NBD_REQ_LEN + 4] & 15),
		    .tflags = get_be16(d + NBD_REQ_LEN + 5),
		    .structured = d[NBD_REQ_LEN + 7] & 1,
		    .meta_alloc = d[NBD_REQ_LEN + 7] & 2,
		};
		const char *msg;
		bool fatal;
		uint8_t h[NBD_REQ_LEN];
		memcpy(h, d, NBD_REQ_LEN);
		put_be32(h, NBD_REQUEST_MAGIC);
		if (nbd_parse_request(h, &r) == 0)
			nbd_check_request(&p, &r, &msg, &fatal);
		/* extents from the rest, as a backend could return them */
		size_t n = (size - NBD_REQ_LEN - 8) / 12;
		if (n > 64)
			n = 64;
		struct nbd_extent ext[64];
		for (size_t i = 0; i < n; i++) {
			const uint8_t *e = d + NBD_REQ_LEN + 8 + 12 * i;
			ext[i].length = get_be64(e);
			ext[i].flags = get_be32(e + 8);
		}
		if (r.offset <= p.size)
			nbd_encode_extents(ext, (uint32_t)n, r.offset, r.length ? r.length : 1,
					   p.size, r.flags & 1);
	}
}

static char psk_path[64];

static void psk_remove(void)
{
	unlink(psk_path);
}

/* A PSK file for tls = require, made once per process, removed at exit. */
static const char *psk_file(void)
{
	char *path = psk_path;
	int fd;

	if (path[0])
		return path;
	snprintf(path, sizeof(psk_path), "/tmp/duet-fuzz-psk.XXXXXX");
	fd = mkstemp(path);
	if (fd < 0 || write(fd, "fuzz:00112233445566778899aabbccddeeff\n", 38) != 38)
		abort();
	close(fd);
	atexit(psk_remove);
	return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t chunks[] = {1, 3, 16, 28, 100, 4096, 65536, SIZE_MAX};
	struct nbd_server_opts o = {.name = "fuzz", .conn_buffer = 256 << 10, .timeout_ms = 60000};
	struct nbd_server *srv;
	struct ramdisk *rd;
	struct mem m = {0};
	uint8_t *stream;
	size_t n;
	int mode;

	if (size < 2)
		return 0;
	if (!L) {
		log_set_level(LOG_LEVEL_ERROR);
		if (loop_create(&L) < 0)
			abort();
	}
	if (data[0] & 0x80) {
		fuzz_parsers(data + 1, size - 1);
		return 0;
	}
	stream = malloc(256 + size);
	if (!stream)
		return 0;
	n = prefix(stream, data[0] & 3);
	memcpy(stream + n, data + 2, size - 2);
	m.p = stream;
	m.len = n + size - 2;
	m.chunk = chunks[(data[0] >> 4) & 7];
	m.wlimit = (size_t)data[1] * 61;
	mode = (data[0] >> 2) & 3;

	if (ramdisk_create(L, &rd) < 0)
		abort();
	ramdisk_add(rd, "disk", 1u << 20, false, "fuzz disk");
	ramdisk_add(rd, "ro", 65536, true, NULL);
	ramdisk_add(rd, "aligned", 65536, false, NULL);
	ramdisk_info(rd, "aligned")->min_block = 512;
	ramdisk_set_mode(rd, mode == 1 ? RAMDISK_DEFER : mode == 2 ? RAMDISK_HOLD : RAMDISK_INLINE);
	if (mode == 3) {
		o.tls = NBD_TLS_REQUIRE;
		o.tls_psk = psk_file();
	}
	if (nbd_server_create(L, &o, &ramdisk_ops, rd, &srv) < 0)
		abort();
	nbd_server_add_xport(srv, &mem_xport, &m);
	for (int i = 0; i < 256; i++) {
		struct nbd_server_stats st;
		nbd_server_get_stats(srv, &st);
		if (st.connections == 0)
			break;
		nbd_server_kick(srv);
		if (mode == 2 && (i & 1))
			ramdisk_release(rd, i & 2);
		loop_run_once(L, 0);
	}
	nbd_server_destroy(srv);
	ramdisk_release(rd, false);
	loop_run_once(L, 0);
	loop_run_once(L, 0);
	ramdisk_destroy(rd);
	free(stream);
	return 0;
}
