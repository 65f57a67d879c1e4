/*
 * libFuzzer target for the CCM's wire (src/ccm): two CCMs, a and b, joined
 * by the in-memory fake fabric of the unit tests (tests/unit/fake_fabric.c),
 * with a session up and a client with one port on each side. Each input is
 * something b (or anyone on the link) can put in front of a:
 *
 * Byte 0 (control), the rest is the payload:
 *   bits 0-1  0: a message on the link (wire_msg header and payload), fed
 *             to a's receive path; with bit 2 its header is made to pass the
 *             cheap checks and the MAC is computed with the session key (as
 *             an authenticated but hostile partner would), so the control
 *             messages' parsers (peer info, client add/ack/del, fence,
 *             notify, data) are reached
 *             1: the bytes written into a's slot (the region anyone may
 *             write), then a's slot check; bit 2 makes its seqlock consistent
 *             2: the bytes put in b's boot region, which a's boot probe reads
 *             (bit 2: seqlock and magic made consistent); b's is restored after
 *             3: ccm_hs_boot_snapshot on the bytes alone
 * The pair is set up once and set up again whenever an input ended the
 * session (a TERMINATE, a new generation in the boot region, ...).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ccm/ccm_int.h"
#include "common/byteorder.h"
#include "common/log.h"
#include "common/loop.h"
#include "fake_fabric.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct loop *L;
static struct ccm *A, *B;
static char secret_path[64];

static void on_msg(struct ccm_port *p, const void *msg, size_t len, void *arg)
{
	volatile uint8_t s = 0;

	(void)p;
	(void)arg;
	if (len)
		s ^= ((const uint8_t *)msg)[len - 1];
	(void)s;
}

static const struct ccm_client_ops ops = {.message = on_msg};

static struct ccm *make(const char *me, const char *peer)
{
	struct ccm_opts o;
	struct ccm *c;
	struct ccm_client *cl;
	struct ccm_client_spec spec = {.name = "fz", .n_ports = 1, .port_mem = 8192, .ops = &ops};

	ccm_opts_init(&o);
	snprintf(o.node, sizeof(o.node), "%s", me);
	snprintf(o.partner, sizeof(o.partner), "%s", peer);
	snprintf(o.secret_file, sizeof(o.secret_file), "%s", secret_path);
	o.n_links = 1;
	snprintf(o.links[0].name, sizeof(o.links[0].name), "ic0");
	snprintf(o.links[0].local, sizeof(o.links[0].local), "%s:0", me);
	snprintf(o.links[0].peer, sizeof(o.links[0].peer), "%s:0", peer);
	o.probe_ms = 5;
	o.link_deadline_ms = 1000;
	o.session_deadline_ms = 2000;
	if (ccm_create(L, &o, &c) < 0 || ccm_client_register(c, &spec, &cl) < 0 || ccm_start(c) < 0)
		abort();
	return c;
}

static bool both_up(void)
{
	struct ccm_status sa, sb;

	ccm_get_status(A, &sa);
	ccm_get_status(B, &sb);
	return sa.state == CCM_SESSION_UP && sb.state == CCM_SESSION_UP;
}

/* Run the loop until the session is up again (a fresh pair if it does not
 * come back within 3 s). */
static void ensure_up(void)
{
	for (int attempt = 0; attempt < 3; attempt++) {
		if (!A) {
			A = make("a", "b");
			B = make("b", "a");
		}
		uint64_t end = loop_now_ns() + 3 * NS_PER_S;
		while (!both_up() && loop_now_ns() < end)
			loop_run_once(L, 1000000);
		if (both_up())
			return;
		ccm_destroy(A);
		ccm_destroy(B);
		A = B = NULL;
		for (int i = 0; i < 10; i++)
			loop_run_once(L, 0);
	}
	abort(); /* the fuzzer found a way to keep the pair from forming */
}

static void cleanup(void)
{
	unlink(secret_path);
}

static void init(void)
{
	log_set_level(LOG_LEVEL_ERROR);
	if (loop_create(&L) < 0)
		abort();
	ff_reset();
	snprintf(secret_path, sizeof(secret_path), "/tmp/duet-fuzz-ccm-%d.key", (int)getpid());
	FILE *f = fopen(secret_path, "w");
	if (!f)
		abort();
	fputs("a secret for the ccm fuzzer, long enough\n", f);
	fclose(f);
	chmod(secret_path, 0600);
	atexit(cleanup);
	ensure_up();
}

static void feed_msg(const uint8_t *p, size_t n, bool fix)
{
	uint8_t *m = malloc(n ? n : 1);

	memcpy(m, p, n);
	if (fix && n >= sizeof(struct wire_msg)) {
		struct wire_msg *h = (struct wire_msg *)m;
		uint16_t type = get_le16(&h->type);
		/* Keep the session: an end is a valid outcome, but a costly one. */
		if (type == MSG_TERMINATE)
			put_le16(&h->type, MSG_ACK);
		put_le32(&h->magic, CCM_MSG_MAGIC);
		put_le32(&h->len, (uint32_t)(n - sizeof(*h)));
		put_le64(&h->session_id, A->session_id);
		ccm_msg_seal(B, h, m + sizeof(*h), n - sizeof(*h)); /* as if B sent it */
	}
	ccm_sess_on_msg(A, m, n);
	free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!L)
		init();
	if (size < 1 || size > sizeof(struct wire_msg) + CCM_MSG_MAX)
		return 0;
	ensure_up();
	uint8_t ctl = data[0];
	const uint8_t *p = data + 1;
	size_t n = size - 1;

	switch (ctl & 3) {
	case 0:
		feed_msg(p, n, ctl & 4);
		break;
	case 1: {
		struct wire_slot s;
		memset(&s, 0, sizeof(s));
		memcpy(&s, p, n < sizeof(s) ? n : sizeof(s));
		if (ctl & 4) {
			s.seq_tail = s.seq_head;
			put_le64(&s.magic, CCM_SLOT_MAGIC);
		}
		memcpy(A->slot, &s, sizeof(s));
		ccm_hs_slot_check(A);
		break;
	}
	case 2: {
		struct wire_boot saved = *B->boot, bb;
		memset(&bb, 0, sizeof(bb));
		memcpy(&bb, p, n < sizeof(bb) ? n : sizeof(bb));
		if (ctl & 4) {
			bb.seq_tail = bb.seq_head;
			put_le64(&bb.magic, CCM_BOOT_MAGIC);
		}
		memcpy(B->boot, &bb, sizeof(bb));
		ccm_hs_boot_probe(A);
		for (int i = 0; i < 4; i++)
			loop_run_once(L, 0);
		memcpy(B->boot, &saved, sizeof(saved));
		break;
	}
	default: {
		struct wire_boot in, out;
		memset(&in, 0, sizeof(in));
		memcpy(&in, p, n < sizeof(in) ? n : sizeof(in));
		(void)ccm_hs_boot_snapshot(&in, &out);
		break;
	}
	}
	for (int i = 0; i < 3; i++)
		loop_run_once(L, 0);
	return 0;
}
