/* duet-hostile: an authenticated but hostile partner, for tests.
 *
 * It reads a duetd config file (only [node] id, [ic] and [mirror] log_size
 * matter: it plays the partner the config describes, with the cluster
 * secret), forms a valid CCM session with the node, registers the clients a
 * node has ("monitor", "mirror", "proxy", "balance", with ports of the sizes duetd
 * gives them, plus one the node does not know), and then, for --seconds,
 * does everything a partner may do, badly:
 *
 *  - writes garbage into every byte of port memory the node exposes to it
 *    (its heartbeat slots, its image of our log, header included, its proxy
 *    request memory), at random offsets and lengths, and headers with valid
 *    magics and CRCs but hostile fields where it knows the format (the
 *    image header with half_size 2^63);
 *  - sends messages of every size up to the largest on every port, random
 *    bytes or with a valid proxy or load-report header and random fields, and
 *    write-notifies with random offsets, lengths and values;
 *  - from a second, unauthenticated link (--raw-local): messages of every
 *    size up to past the largest, garbage and doorbells into the slot,
 *    reads of the boot region and of guessed keys.
 *
 * The node must stay up, log what it refuses (rate-limited), and go on
 * serving its clients: tests/fault/hostile-partner.sh checks that. Each
 * session end is waited out and the attack goes on in the next session.
 * stdout: one line of counts at the end; exit 0 when a session was formed
 * at least once, 2 when none was (or bad arguments).
 *
 *   duet-hostile --config FILE [--seconds N] [--raw-local HOST:PORT] [--seed N]
 */
#define LOG_MODULE "hostile"
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "balance/balance.h"
#include "ccm/ccm.h"
#include "common/byteorder.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "config/config.h"
#include "fabric/fabric.h"

#define TICK_NS	   (2 * NS_PER_MS)
#define GARBAGE_SZ (1u << 20)
#define PX_MAGIC   0x31585044u /* "DPX1": src/proxy/proxy_int.h */
#define NV_MAGIC   0x48564e44u /* "DNVH": src/mirror/mirror_int.h */
#define BOOT_KEY   0x3130304254455544ull
#define SLOT_KEY   0x3130305354455544ull

enum { C_MONITOR, C_MIRROR, C_PROXY, C_BALANCE, C_STRANGER, N_CLIENTS };

struct hport {
	struct ccm_port *p;
	struct ccm_op op;
	bool busy;
	bool up;
};

struct hc {
	struct loop *loop;
	struct ccm *ccm;
	struct ccm_client *cl[N_CLIENTS];
	struct hport ports[N_CLIENTS][4];
	unsigned n_ports[N_CLIENTS];
	uint8_t *garbage;
	uint8_t hdr[1024]; /* a forged image header (in flight: not on the stack) */
	uint64_t rng;
	struct loop_timer tick, end;
	bool ever_up;
	/* The raw, unauthenticated link. */
	struct fab_link *raw;
	struct fab_op raw_op;
	bool raw_busy;
	uint8_t raw_buf[FAB_MSG_MAX + 4096];
	/* Counts. */
	uint64_t writes, write_errs, msgs, msg_errs, notifies, raw_ops, raw_errs, sessions,
	    forged_headers;
};

static uint64_t rnd(struct hc *h)
{
	uint64_t x = h->rng;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return h->rng = x;
}

static uint64_t rnd_below(struct hc *h, uint64_t n)
{
	return n ? rnd(h) % n : 0;
}

static void fill(struct hc *h, uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd(h);
		memcpy(b + i, &v, len - i < 8 ? len - i : 8);
	}
}

/* ---- client callbacks: take what the node sends, do nothing with it ---- */

static void on_up(struct ccm_port *p, void *arg)
{
	struct hc *h = arg;

	for (unsigned i = 0; i < N_CLIENTS; i++)
		for (unsigned k = 0; k < h->n_ports[i]; k++)
			if (h->ports[i][k].p == p)
				h->ports[i][k].up = true;
	if (!h->ever_up)
		LOG_INFO("a port is up: the attack starts");
	h->ever_up = true;
}

static void on_down(struct ccm_port *p, void *arg)
{
	struct hc *h = arg;

	for (unsigned i = 0; i < N_CLIENTS; i++)
		for (unsigned k = 0; k < h->n_ports[i]; k++)
			if (h->ports[i][k].p == p)
				h->ports[i][k].up = false;
}

static void on_msg(struct ccm_port *p, const void *msg, size_t len, void *arg)
{
	(void)p;
	(void)msg;
	(void)len;
	(void)arg;
}

static void on_ready(struct ccm_client *c, const struct ccm_partner_info *pi, void *arg)
{
	struct hc *h = arg;

	(void)pi;
	if (c == h->cl[C_MONITOR])
		h->sessions++;
}

static const struct ccm_client_ops ops = {
    .partner_ready = on_ready,
    .port_up = on_up,
    .port_down = on_down,
    .message = on_msg,
};

/* ---- the attack ---- */

static void write_done(struct ccm_op *op, int status)
{
	struct hport *hp = op->arg;

	(void)status;
	hp->busy = false;
}

/* An image header with a valid CRC and half_size 2^63: the partner may
 * write the whole image, header included (issue 12, finding 1). */
static size_t forged_image_header(uint8_t *b, uint64_t size)
{
	memset(b, 0, 1024);
	for (unsigned s = 0; s < 2; s++) {
		uint8_t *p = b + s * 512;
		put_le32(p, NV_MAGIC);
		put_le16(p + 8, 1);
		put_le32(p + 12, 4096);
		put_le64(p + 16, 1ull << 62); /* gen: newer than any */
		put_le64(p + 24, size);
		put_le64(p + 32, 1ull << 63); /* half_size */
		put_le64(p + 40, 7);
		put_le32(p + 56, 1); /* image valid */
		put_le32(p + 60, 64);
		put_le32(p + 4, crc32c(0, p, 128));
	}
	return 1024;
}

static void attack_port(struct hc *h, unsigned c, struct hport *hp)
{
	uint64_t rsize = ccm_port_remote_size(hp->p);
	unsigned what = (unsigned)rnd_below(h, 8);

	if (!hp->up)
		return;
	if (!hp->busy && rsize && what < 4) {
		size_t len = (size_t)rnd_below(h, rsize < GARBAGE_SZ ? rsize : GARBAGE_SZ) + 1;
		uint64_t off = rnd_below(h, rsize - len + 1);
		const uint8_t *src = h->garbage + rnd_below(h, GARBAGE_SZ - len + 1);
		if (c == C_MIRROR && what == 0 && rsize >= 4096) {
			len = forged_image_header(h->hdr, rsize);
			src = h->hdr;
			off = 0;
			h->forged_headers++;
		}
		hp->op.done = write_done;
		hp->op.arg = hp;
		int rc = ccm_port_write(hp->p, &hp->op, src, len, off, 0);
		if (rc == 0) {
			hp->busy = true;
			h->writes++;
		} else {
			h->write_errs++;
		}
		return;
	}
	if (what < 7) {
		size_t len = (size_t)rnd_below(h, CCM_MSG_MAX + 1);
		uint8_t *m = h->garbage + rnd_below(h, GARBAGE_SZ - CCM_MSG_MAX);
		uint8_t save[16];
		memcpy(save, m, 16);
		if (c == C_PROXY && len >= 8 && (rnd(h) & 1)) {
			put_le32(m, PX_MAGIC);
			put_le16(m + 4, (uint16_t)(1 + rnd_below(h, 5)));
		}
		if (c == C_BALANCE && (rnd(h) & 1)) {
			/* A load report's header and size, garbage entries. */
			unsigned k = (unsigned)rnd_below(h, BALANCE_WIRE_VOLS + 3);
			len = BALANCE_WIRE_HDR + k * BALANCE_WIRE_ENTRY;
			put_le32(m, BALANCE_MAGIC);
			put_le16(m + 4, BALANCE_VERSION);
			put_le16(m + 6, (uint16_t)(rnd(h) & 1));
			put_le16(m + 8, (uint16_t)k);
			put_le16(m + 10, 0);
			put_le32(m + 12, 0);
		}
		int rc = ccm_port_send(hp->p, m, len);
		memcpy(m, save, 16);
		if (rc == 0)
			h->msgs++;
		else
			h->msg_errs++;
		/* Oversized: refused here; the raw link sends those. */
		if (ccm_port_send(hp->p, m, CCM_MSG_MAX + 1 + (size_t)rnd_below(h, 100)) == 0)
			h->msgs++;
		return;
	}
	if (!hp->busy && rsize) {
		size_t len = (size_t)rnd_below(h, rsize < 4096 ? rsize : 4096) + 1;
		hp->op.done = write_done;
		hp->op.arg = hp;
		if (ccm_port_write_notify(hp->p, &hp->op, h->garbage, len,
					  rnd_below(h, rsize - len + 1), rnd(h)) == 0) {
			hp->busy = true;
			h->notifies++;
		}
	}
}

static void raw_done(struct fab_op *op, int status)
{
	struct hc *h = op->arg;

	if (status < 0)
		h->raw_errs++;
	h->raw_busy = false;
}

static void attack_raw(struct hc *h)
{
	static const struct fab_remote boot = {BOOT_KEY, 256}, slot = {SLOT_KEY, 256};
	struct fab_remote guess = {rnd(h) >> 1, 4096};
	int rc = 0;

	if (!h->raw || h->raw_busy)
		return;
	h->raw_op.done = raw_done;
	h->raw_op.arg = h;
	fill(h, h->raw_buf, 512);
	switch (rnd_below(h, 5)) {
	case 0:
		rc =
		    fab_send(h->raw, h->raw_buf, (size_t)rnd_below(h, FAB_MSG_MAX + 1), &h->raw_op);
		break;
	case 1: /* past the largest: refused by our fabric, or truncated at theirs */
		rc = fab_send(h->raw, h->raw_buf, FAB_MSG_MAX + 1 + (size_t)rnd_below(h, 4096),
			      &h->raw_op);
		break;
	case 2:
		rc = fab_writedata(h->raw, h->raw_buf, 256, &slot, 0,
				   rnd(h) & 1 ? 0x534c4f54u : rnd(h), 0, &h->raw_op);
		break;
	case 3:
		rc = fab_read(h->raw, h->raw_buf, 256, &boot, 0, &h->raw_op);
		break;
	default:
		rc = fab_read(h->raw, h->raw_buf, 64, &guess, 0, &h->raw_op);
		break;
	}
	if (rc == 0) {
		h->raw_busy = true;
		h->raw_ops++;
	} else {
		h->raw_errs++;
	}
}

static void tick(struct loop_timer *t)
{
	struct hc *h = t->arg;

	for (unsigned c = 0; c < N_CLIENTS; c++)
		for (unsigned k = 0; k < h->n_ports[c]; k++)
			attack_port(h, c, &h->ports[c][k]);
	attack_raw(h);
	loop_timer_arm(h->loop, &h->tick, TICK_NS);
}

static void end(struct loop_timer *t)
{
	struct hc *h = t->arg;

	loop_stop(h->loop);
}

static void stopped(void *arg)
{
	loop_stop(arg);
}

static void usage(void)
{
	fprintf(stderr, "usage: duet-hostile --config FILE [--seconds N] [--raw-local HOST:PORT] "
			"[--seed N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"seconds", required_argument, NULL, 's'},
	    {"raw-local", required_argument, NULL, 'r'},
	    {"seed", required_argument, NULL, 'S'},
	    {NULL, 0, NULL, 0},
	};
	static struct duet_config cfg;
	static struct hc h;
	const char *config = NULL, *raw_local = NULL;
	unsigned seconds = 5;
	struct ccm_opts co;
	char err[768];
	int c, rc;

	h.rng = 0x9e3779b97f4a7c15ull;
	while ((c = getopt_long(argc, argv, "c:s:r:S:", lo, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 's':
			seconds = (unsigned)atoi(optarg);
			break;
		case 'r':
			raw_local = optarg;
			break;
		case 'S':
			h.rng = strtoull(optarg, NULL, 0) | 1;
			break;
		default:
			usage();
		}
	}
	if (!config)
		usage();
	if (config_load(config, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	log_set_node(cfg.node.id);
	log_set_level(cfg.node.log_level);
	signal(SIGPIPE, SIG_IGN);
	h.garbage = malloc(GARBAGE_SZ);
	if (!h.garbage || loop_create(&h.loop) < 0)
		return 1;
	fill(&h, h.garbage, GARBAGE_SZ);
	config_ccm_opts(&cfg, &co);
	if (ccm_create(h.loop, &co, &h.ccm) < 0 || ccm_start(h.ccm) < 0)
		return 2;
	unsigned links = ccm_link_count(h.ccm);
	const struct {
		const char *name;
		unsigned n;
		size_t mem;
	} spec[N_CLIENTS] = {
	    [C_MONITOR] = {"monitor", 1, (links ? links : 1) * 64},
	    [C_MIRROR] = {"mirror", 1, cfg.mirror.log_size},
	    [C_PROXY] = {"proxy", 4, 16u << 20},
	    [C_BALANCE] = {"balance", 1, 0},
	    [C_STRANGER] = {"stranger", 1, 4096},
	};
	for (unsigned i = 0; i < N_CLIENTS; i++) {
		struct ccm_client_spec s = {
		    .name = spec[i].name,
		    .n_ports = spec[i].n,
		    .port_mem = spec[i].mem,
		    .ops = &ops,
		    .arg = &h,
		};
		rc = ccm_client_register(h.ccm, &s, &h.cl[i]);
		if (rc < 0) {
			fprintf(stderr, "duet-hostile: client %s: %s\n", spec[i].name,
				strerror(-rc));
			return 2;
		}
		h.n_ports[i] = spec[i].n;
		for (unsigned k = 0; k < spec[i].n; k++)
			h.ports[i][k].p = ccm_client_port(h.cl[i], k);
	}
	if (raw_local && co.n_links) {
		struct fab_link_opts o = {.name = "raw",
					  .provider = co.provider,
					  .local = raw_local,
					  .peer = co.links[0].peer,
					  .max_msg = FAB_MSG_MAX};
		if (fab_link_open(h.loop, &o, NULL, &h.raw) < 0)
			LOG_WARN("no raw link from %s: the unauthenticated part is skipped",
				 raw_local);
	}
	loop_timer_init(&h.tick, tick, &h);
	loop_timer_init(&h.end, end, &h);
	loop_timer_arm(h.loop, &h.tick, TICK_NS);
	loop_timer_arm(h.loop, &h.end, (uint64_t)seconds * NS_PER_S);
	loop_run(h.loop);
	loop_timer_cancel(h.loop, &h.tick);
	printf("hostile: sessions=%" PRIu64 " writes=%" PRIu64 " write_refused=%" PRIu64
	       " forged_headers=%" PRIu64 " messages=%" PRIu64 " messages_refused=%" PRIu64
	       " notifies=%" PRIu64 " raw_ops=%" PRIu64 " raw_failed=%" PRIu64 "\n",
	       h.sessions, h.writes, h.write_errs, h.forged_headers, h.msgs, h.msg_errs, h.notifies,
	       h.raw_ops, h.raw_errs);
	fflush(stdout);
	if (h.raw)
		fab_link_close(h.raw);
	ccm_shutdown(h.ccm, stopped, h.loop);
	loop_run(h.loop);
	for (unsigned i = 0; i < N_CLIENTS; i++)
		ccm_client_unregister(h.cl[i]);
	ccm_destroy(h.ccm);
	loop_destroy(h.loop);
	free(h.garbage);
	return h.ever_up ? 0 : 2;
}
