/* The one-sided boot handshake (docs/CCM.md, "Handshake").
 *
 * Each node publishes a read-only boot region (identity, boot generation,
 * a fresh nonce per attempt, and its acknowledgement of the partner) and a
 * write-only slot. The active side reads the partner's boot region, writes
 * its hello (identity + proof over both nonces) into the partner's slot,
 * reads the boot region again until it shows the partner's ack of us (with
 * the partner's proof), and writes ready. The passive side acks every valid
 * hello that targets its current generation and nonce. Both sides run both
 * halves; a session forms when, for one view of the partner, we acked it,
 * it acked us, we wrote ready and it wrote ready. Restarts show up as a new
 * generation or nonce and send the active side back to the hello.
 *
 * Layering: calls crypto.c and posts on the links directly (it runs before
 * there are lanes); its one up-call is ccm_sess_begin, once authenticated.
 */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define US 1000ull

static const struct fab_remote boot_remote = {CCM_BOOT_KEY, sizeof(struct wire_boot)};
static const struct fab_remote slot_remote = {CCM_SLOT_KEY, sizeof(struct wire_slot)};

static void copy_id(char *dst, const char *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n - 1] = '\0';
}

/* Log a handshake condition once, when it changes; errors are also kept
 * for the status. */
static void hs_cond(struct ccm *ccm, enum hs_cond c, enum log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void hs_cond(struct ccm *ccm, enum hs_cond c, enum log_level lvl, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (ccm->cond == c)
		return;
	ccm->cond = c;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_msg(lvl, LOG_MODULE, "%s", msg);
	if (lvl <= LOG_LEVEL_WARN)
		snprintf(ccm->error, sizeof(ccm->error), "%s", msg);
}

/* Seqlock-style update of our boot region: a reader that sees seq_head !=
 * seq_tail read a torn copy and tries again. */
static void boot_begin(struct ccm *ccm)
{
	ccm->boot_seq++;
	put_le64(&ccm->boot->seq_head, ccm->boot_seq);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void boot_end(struct ccm *ccm)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	put_le64(&ccm->boot->seq_tail, ccm->boot_seq);
}

void ccm_hs_publish_boot(struct ccm *ccm, uint32_t state)
{
	struct wire_boot *b = ccm->boot;

	boot_begin(ccm);
	put_le64(&b->magic, CCM_BOOT_MAGIC);
	put_le16(&b->major, ccm->major);
	put_le16(&b->minor, ccm->minor);
	put_le32(&b->state, state);
	put_le64(&b->generation, ccm->gen);
	ccm_put_str(b->node, ccm->opts.node, sizeof(b->node));
	ccm_put_str(b->cluster, ccm->opts.cluster_id, sizeof(b->cluster));
	memcpy(b->nonce, ccm->nonce, sizeof(b->nonce));
	/* Never the session id: anyone who reaches a link may read this
	 * region, and the id is the cheap check before a message's MAC. */
	put_le64(&b->session_id, 0);
	if (state != BOOT_SESSION && state != BOOT_HANDSHAKING) {
		b->ack_gen = 0;
		memset(b->ack_nonce, 0, sizeof(b->ack_nonce));
		memset(b->ack_proof, 0, sizeof(b->ack_proof));
	}
	put_le32(&b->n_links, ccm->n_links);
	boot_end(ccm);
}

static void boot_clear_ack(struct ccm *ccm)
{
	boot_begin(ccm);
	ccm->boot->ack_gen = 0;
	memset(ccm->boot->ack_nonce, 0, CCM_NONCE_LEN);
	memset(ccm->boot->ack_proof, 0, CCM_PROOF_LEN);
	boot_end(ccm);
}

static bool boot_acks(const struct ccm *ccm, uint64_t gen, const uint8_t *nonce)
{
	return get_le64(&ccm->boot->ack_gen) == gen &&
	       memcmp(ccm->boot->ack_nonce, nonce, CCM_NONCE_LEN) == 0;
}

static void boot_set_ack(struct ccm *ccm, const char *node, uint64_t gen, const uint8_t *nonce)
{
	uint8_t proof[CCM_PROOF_LEN];

	if (boot_acks(ccm, gen, nonce))
		return;
	ccm_proof(ccm, "ack", ccm->opts.node, ccm->gen, ccm->nonce, node, gen, nonce, proof);
	boot_begin(ccm);
	put_le64(&ccm->boot->ack_gen, gen);
	memcpy(ccm->boot->ack_nonce, nonce, CCM_NONCE_LEN);
	memcpy(ccm->boot->ack_proof, proof, CCM_PROOF_LEN);
	boot_end(ccm);
}

bool ccm_hs_boot_snapshot(const struct wire_boot *in, struct wire_boot *out)
{
	*out = *in;
	return out->seq_head == out->seq_tail && out->seq_head != 0 &&
	       get_le64(&out->magic) == CCM_BOOT_MAGIC && out->generation != 0;
}

static void hs_arm(struct ccm *ccm, uint64_t delay_ns)
{
	loop_timer_arm(ccm->loop, &ccm->hs_timer, delay_ns);
}

static uint64_t hs_backoff(struct ccm *ccm, uint64_t min_ns, uint64_t max_ns)
{
	uint64_t b = ccm->hs_backoff_ns;

	if (b < min_ns)
		b = min_ns;
	ccm->hs_backoff_ns = b * 2 > max_ns ? max_ns : b * 2;
	return b > max_ns ? max_ns : b;
}

void ccm_hs_start_epoch(struct ccm *ccm, uint64_t delay_ns)
{
	ccm->state = ST_HANDSHAKE;
	if (util_random_bytes(ccm->nonce, sizeof(ccm->nonce)) < 0)
		ccm->nonce[0]++; /* never the same attempt twice */
	/* The operator may have fixed the secret file since the last attempt. */
	if (ccm->opts.secret_file[0])
		ccm_load_secret(ccm);
	memset(&ccm->view, 0, sizeof(ccm->view));
	ccm->view_ver++;
	ccm->peer_acked_us = false;
	ccm->wrote_ready = false;
	ccm->ready_gen = 0;
	memset(ccm->ready_nonce, 0, sizeof(ccm->ready_nonce));
	ccm->step = HS_READ1;
	ccm->hs_retries = 0;
	ccm->hs_backoff_ns = 0;
	ccm->hs_t0_ns = 0;
	ccm->epoch_start_ns = loop_now_ns();
	ccm->read1_backoff_ns = 0;
	ccm->reread = false;
	ccm->cond = HC_NONE;
	memset(ccm->slot_last, 0, sizeof(ccm->slot_last));
	ccm_hs_publish_boot(ccm, BOOT_HANDSHAKING);
	boot_clear_ack(ccm);
	hs_arm(ccm, delay_ns);
}

static void hs_build_slot(struct ccm *ccm, uint32_t state)
{
	struct wire_slot *s = &ccm->hs_wbuf;
	uint64_t seq = ccm->boot_seq + 1;

	memset(s, 0, sizeof(*s));
	put_le64(&s->seq_head, seq);
	put_le64(&s->magic, CCM_SLOT_MAGIC);
	put_le16(&s->major, ccm->major);
	put_le16(&s->minor, ccm->minor);
	put_le32(&s->state, state);
	put_le64(&s->generation, ccm->gen);
	ccm_put_str(s->node, ccm->opts.node, sizeof(s->node));
	ccm_put_str(s->cluster, ccm->opts.cluster_id, sizeof(s->cluster));
	memcpy(s->nonce, ccm->nonce, CCM_NONCE_LEN);
	put_le64(&s->target_gen, ccm->view.gen);
	memcpy(s->target_nonce, ccm->view.nonce, CCM_NONCE_LEN);
	ccm_proof(ccm, state == SLOT_HELLO ? "hello" : "ready", ccm->opts.node, ccm->gen,
		  ccm->nonce, ccm->view.node, ccm->view.gen, ccm->view.nonce, s->proof);
	s->seq_tail = s->seq_head;
}

/* The step's operation on hs_link failed: look for the partner on every
 * link again (the view stays, so this costs two extra operations). */
static void hs_failed(struct ccm *ccm, int status)
{
	const struct ccm_link *l = &ccm->links[ccm->hs_link];

	LOG_DEBUG("handshake step %d on %s: %s", ccm->step, l->name, strerror(-status));
	ccm->step = HS_READ1;
	hs_arm(ccm, hs_backoff(ccm, 1 * NS_PER_MS, 100 * NS_PER_MS));
}

static void hs_read1_done(struct fab_op *op, int status);

/* Post the first read on every link that has none in flight. They wait in
 * the fabric's backlog while the partner is away; the first answer wins. */
static void hs_post_read1(struct ccm *ccm)
{
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		if (!l->fl || l->hs_busy)
			continue;
		l->hs_op.done = hs_read1_done;
		l->hs_op.arg = l;
		if (fab_read(l->fl, &l->hs_buf, sizeof(l->hs_buf), &boot_remote, 0, &l->hs_op) ==
		    0) {
			l->hs_busy = true;
			l->hs_epoch = ccm->epoch;
		}
	}
}

static void hs_run(struct ccm *ccm)
{
	struct ccm_link *l;
	int rc;

	if (ccm->state != ST_HANDSHAKE)
		return;
	ccm_hs_slot_check(ccm);
	if (ccm->state != ST_HANDSHAKE)
		return;
	if (ccm->step == HS_READ1) {
		hs_post_read1(ccm);
		return;
	}
	if (ccm->hs_busy)
		return;
	l = &ccm->links[ccm->hs_link];
	if (!l->fl) {
		hs_failed(ccm, -ENOTCONN);
		return;
	}
	switch (ccm->step) {
	case HS_READ2:
	case HS_WAIT:
		rc = fab_read(l->fl, &ccm->hs_rbuf, sizeof(ccm->hs_rbuf), &boot_remote, 0,
			      &ccm->hs_op);
		break;
	case HS_WRITE_HELLO:
	case HS_WRITE_READY:
		hs_build_slot(ccm, ccm->step == HS_WRITE_HELLO ? SLOT_HELLO : SLOT_READY);
		rc = fab_writedata(l->fl, &ccm->hs_wbuf, sizeof(ccm->hs_wbuf), &slot_remote, 0,
				   CCM_IMM_SLOT, FAB_DELIVERY_COMPLETE, &ccm->hs_op);
		break;
	default:
		return;
	}
	if (rc < 0) {
		hs_failed(ccm, rc);
		return;
	}
	ccm->hs_busy = true;
	ccm->hs_epoch = ccm->epoch;
	ccm->hs_view_ver = ccm->view_ver;
	ccm->hs_post_ns = loop_now_ns();
}

static void hs_timer_cb(struct loop_timer *t)
{
	hs_run(t->arg);
}

static void hs_check_established(struct ccm *ccm)
{
	char g1[17], g2[17];

	if (ccm->state != ST_HANDSHAKE || !ccm->view.valid)
		return;
	if (!boot_acks(ccm, ccm->view.gen, ccm->view.nonce) || !ccm->peer_acked_us ||
	    !ccm->wrote_ready || ccm->ready_gen != ccm->view.gen ||
	    memcmp(ccm->ready_nonce, ccm->view.nonce, CCM_NONCE_LEN) != 0)
		return;
	loop_timer_cancel(ccm->loop, &ccm->hs_timer);
	ccm->partner = ccm->view;
	ccm->error[0] = '\0';
	ccm->cond = HC_NONE;
	LOG_INFO("authenticated partner %s (protocol %u.%u, generation %s, ours %s) on %s",
		 ccm->partner.node, ccm->partner.major, ccm->partner.minor,
		 ccm_hex64(ccm->partner.gen, g1), ccm_hex64(ccm->gen, g2),
		 ccm->links[ccm->hs_link].name);
	ccm_sess_begin(ccm);
}

/* Checks common to the boot region and the slot; false (logged once) when
 * the partner cannot be ours. */
static bool hs_identity_ok(struct ccm *ccm, const char *node, const char *cluster, uint16_t major,
			   uint16_t minor, const char *where)
{
	if (major != ccm->major) {
		hs_cond(ccm, HC_VERSION, LOG_LEVEL_ERROR,
			"partner %s speaks CCM protocol %u.%u, this node %u.%u: incompatible "
			"major version, no session",
			node, major, minor, ccm->major, ccm->minor);
		return false;
	}
	if (strcmp(cluster, ccm->opts.cluster_id) != 0) {
		hs_cond(ccm, HC_CLUSTER, LOG_LEVEL_ERROR,
			"partner %s is in cluster '%s', this node in '%s': no session", node,
			cluster, ccm->opts.cluster_id);
		return false;
	}
	if (strcmp(node, ccm->opts.node) == 0) {
		hs_cond(ccm, HC_SELF, LOG_LEVEL_ERROR,
			"%s reaches this node itself (%s): check the [ic] link addresses", where,
			node);
		return false;
	}
	if (ccm->opts.partner[0] && strcmp(node, ccm->opts.partner) != 0) {
		hs_cond(ccm, HC_WRONG_NODE, LOG_LEVEL_ERROR,
			"%s reaches node '%s', but [ic] partner is '%s': no session", where, node,
			ccm->opts.partner);
		return false;
	}
	return true;
}

static void hs_on_boot_read(struct ccm *ccm)
{
	struct wire_boot b;
	char node[CCM_NODE_MAX], cluster[CCM_CLUSTER_MAX], g1[17], g2[17];
	uint64_t gen;
	uint16_t major, minor;
	const char *lname = ccm->links[ccm->hs_link].name;

	if (!ccm_hs_boot_snapshot(&ccm->hs_rbuf, &b)) {
		/* Torn, or the partner is not published yet. */
		hs_arm(ccm, hs_backoff(ccm, 1 * NS_PER_MS, 100 * NS_PER_MS));
		return;
	}
	copy_id(node, b.node, sizeof(node));
	copy_id(cluster, b.cluster, sizeof(cluster));
	gen = get_le64(&b.generation);
	major = get_le16(&b.major);
	minor = get_le16(&b.minor);
	if (!hs_identity_ok(ccm, node, cluster, major, minor, lname)) {
		ccm->step = HS_READ1;
		memset(&ccm->view, 0, sizeof(ccm->view));
		ccm->view_ver++;
		hs_arm(ccm, hs_backoff(ccm, 100 * NS_PER_MS, 1000 * NS_PER_MS));
		return;
	}
	if (!ccm->view.valid || ccm->view.gen != gen ||
	    memcmp(ccm->view.nonce, b.nonce, CCM_NONCE_LEN) != 0) {
		if (ccm->view.valid && ccm->view.gen != gen)
			hs_cond(ccm, HC_RESTARTED, LOG_LEVEL_INFO,
				"partner %s restarted during the handshake (generation %s -> %s)",
				node, ccm_hex64(ccm->view.gen, g1), ccm_hex64(gen, g2));
		else if (ccm->cond != HC_RESTARTED)
			hs_cond(ccm, HC_FOUND, LOG_LEVEL_INFO,
				"partner %s found on %s (protocol %u.%u, generation %s), "
				"authenticating",
				node, lname, major, minor, ccm_hex64(gen, g1));
		ccm->view.valid = true;
		ccm->view.gen = gen;
		memcpy(ccm->view.nonce, b.nonce, CCM_NONCE_LEN);
		memcpy(ccm->view.node, node, sizeof(ccm->view.node));
		ccm->view.major = major;
		ccm->view.minor = minor;
		ccm->view_ver++;
		ccm->peer_acked_us = false;
		ccm->wrote_ready = false;
		if (!ccm->hs_t0_ns)
			ccm->hs_t0_ns = loop_now_ns();
		ccm->step = HS_WRITE_HELLO;
		ccm->hs_backoff_ns = 0;
		/* A hello that waited in our slot for this view can be acked now. */
		memset(ccm->slot_last, 0, sizeof(ccm->slot_last));
		hs_arm(ccm, 0);
		return;
	}
	switch (ccm->step) {
	case HS_READ1:
		ccm->step = HS_WRITE_HELLO;
		hs_arm(ccm, 0);
		return;
	case HS_READ2:
		if (get_le64(&b.ack_gen) == ccm->gen &&
		    memcmp(b.ack_nonce, ccm->nonce, CCM_NONCE_LEN) == 0) {
			uint8_t want[CCM_PROOF_LEN];
			ccm_proof(ccm, "ack", ccm->view.node, ccm->view.gen, ccm->view.nonce,
				  ccm->opts.node, ccm->gen, ccm->nonce, want);
			if (!ccm_ct_equal(want, b.ack_proof, CCM_PROOF_LEN)) {
				hs_cond(ccm, HC_BAD_ACK, LOG_LEVEL_ERROR,
					"partner %s failed authentication (its proof does not "
					"match our secret): check [ic] secret_file on both nodes",
					node);
				hs_arm(ccm, hs_backoff(ccm, 100 * NS_PER_MS, 1000 * NS_PER_MS));
				return;
			}
			ccm->peer_acked_us = true;
			ccm->step = HS_WRITE_READY;
			ccm->hs_backoff_ns = 0;
			hs_arm(ccm, 0);
			return;
		}
		/* Not acked yet: the partner has not looked at its slot, or our
		 * hello was overwritten; write it again now and then. */
		if (++ccm->hs_retries % 32 == 0)
			ccm->step = HS_WRITE_HELLO;
		hs_arm(ccm, hs_backoff(ccm, 200 * US, 50 * NS_PER_MS));
		return;
	case HS_WAIT:
		hs_check_established(ccm);
		if (ccm->state == ST_HANDSHAKE) {
			/* Its ready may have been overwritten: write ours again
			 * now and then, which also rings its doorbell. */
			if (++ccm->hs_retries % 32 == 0)
				ccm->step = HS_READ2;
			hs_arm(ccm, hs_backoff(ccm, 500 * US, 100 * NS_PER_MS));
		}
		return;
	default:
		return;
	}
}

static void hs_done(struct fab_op *op, int status)
{
	struct ccm *ccm = op->arg;

	ccm->hs_busy = false;
	if (ccm->state != ST_HANDSHAKE)
		return;
	if (ccm->hs_epoch != ccm->epoch) {
		hs_arm(ccm, 0);
		return;
	}
	if (status < 0) {
		hs_failed(ccm, status);
		return;
	}
	switch (ccm->step) {
	case HS_READ1:
		return; /* went back to READ1 meanwhile: the per-link reads do it */
	case HS_READ2:
	case HS_WAIT:
		hs_on_boot_read(ccm);
		return;
	case HS_WRITE_HELLO:
		if (ccm->hs_view_ver != ccm->view_ver) {
			hs_arm(ccm, 0);
			return;
		}
		ccm->step = HS_READ2;
		ccm->hs_retries = 0;
		ccm->hs_backoff_ns = 0;
		hs_arm(ccm, 0);
		return;
	case HS_WRITE_READY:
		if (ccm->hs_view_ver != ccm->view_ver) {
			hs_arm(ccm, 0);
			return;
		}
		ccm->wrote_ready = true;
		ccm->step = HS_WAIT;
		ccm->hs_retries = 0;
		ccm->hs_backoff_ns = 0;
		hs_check_established(ccm);
		if (ccm->state == ST_HANDSHAKE)
			hs_arm(ccm, hs_backoff(ccm, 500 * US, 100 * NS_PER_MS));
		return;
	}
}

static void hs_read1_done(struct fab_op *op, int status)
{
	struct ccm_link *l = op->arg;
	struct ccm *ccm = l->ccm;

	l->hs_busy = false;
	if (ccm->state != ST_HANDSHAKE)
		return;
	if (l->hs_epoch != ccm->epoch) {
		hs_arm(ccm, 0);
		return;
	}
	if (status < 0) {
		/* The partner went away under it (or the link is being reset):
		 * ask again later, slower and slower. */
		uint64_t b = ccm->read1_backoff_ns ? ccm->read1_backoff_ns : 1 * NS_PER_MS;
		ccm->read1_backoff_ns = b * 2 > 500 * NS_PER_MS ? 500 * NS_PER_MS : b * 2;
		if (ccm->step == HS_READ1)
			hs_arm(ccm, b);
		return;
	}
	ccm->read1_backoff_ns = 0;
	if (ccm->step != HS_READ1)
		return; /* another link answered first */
	ccm->hs_link = l->idx;
	ccm->hs_rbuf = l->hs_buf;
	hs_on_boot_read(ccm);
}

/*
 * Look at what the partner wrote into our slot. Only a hello or ready that
 * targets our current generation and nonce and carries a valid proof
 * counts; anything else (stale, torn, hostile) is ignored.
 */
void ccm_hs_slot_check(struct ccm *ccm)
{
	struct wire_slot s;
	char node[CCM_NODE_MAX], cluster[CCM_CLUSTER_MAX], g1[17], g2[17];
	uint8_t want[CCM_PROOF_LEN];
	uint64_t gen;
	uint32_t state;

	if (ccm->state != ST_HANDSHAKE && ccm->state != ST_SETUP && ccm->state != ST_UP)
		return;
	memcpy(&s, ccm->slot, sizeof(s));
	if (memcmp(&s, ccm->slot_last, sizeof(s)) == 0)
		return;
	memcpy(ccm->slot_last, &s, sizeof(s));
	if (s.seq_head != s.seq_tail || get_le64(&s.magic) != CCM_SLOT_MAGIC)
		return;
	if (get_le64(&s.target_gen) != ccm->gen ||
	    memcmp(s.target_nonce, ccm->nonce, CCM_NONCE_LEN) != 0) {
		LOG_DEBUG("slot: stale hello (for another boot or attempt), ignored");
		return;
	}
	copy_id(node, s.node, sizeof(node));
	copy_id(cluster, s.cluster, sizeof(cluster));
	gen = get_le64(&s.generation);
	state = get_le32(&s.state);
	if (gen == 0 || (state != SLOT_HELLO && state != SLOT_READY))
		return;
	if (!hs_identity_ok(ccm, node, cluster, get_le16(&s.major), get_le16(&s.minor),
			    "the slot writer"))
		return;
	ccm_proof(ccm, state == SLOT_HELLO ? "hello" : "ready", node, gen, s.nonce, ccm->opts.node,
		  ccm->gen, ccm->nonce, want);
	if (!ccm_ct_equal(want, s.proof, CCM_PROOF_LEN)) {
		hs_cond(ccm, HC_BAD_SECRET, LOG_LEVEL_ERROR,
			"partner %s failed authentication: its proof does not match our secret; "
			"check [ic] secret_file on both nodes",
			node);
		return;
	}
	if (ccm->state != ST_HANDSHAKE) {
		if (gen == ccm->partner.gen &&
		    memcmp(s.nonce, ccm->partner.nonce, CCM_NONCE_LEN) == 0)
			return; /* the session's partner, nothing new */
		if (gen != ccm->partner.gen)
			LOG_INFO("partner %s restarted (generation %s -> %s)", node,
				 ccm_hex64(ccm->partner.gen, g1), ccm_hex64(gen, g2));
		ccm_request_terminate(ccm, gen != ccm->partner.gen ? CCM_TERM_PARTNER_REBOOT
								   : CCM_TERM_PARTNER_RESET);
		return;
	}
	boot_set_ack(ccm, node, gen, s.nonce);
	if (state == SLOT_READY) {
		ccm->ready_gen = gen;
		memcpy(ccm->ready_nonce, s.nonce, CCM_NONCE_LEN);
	}
	if (!ccm->view.valid || ccm->view.gen != gen ||
	    memcmp(ccm->view.nonce, s.nonce, CCM_NONCE_LEN) != 0) {
		/* Our picture of the partner is older than its hello: read its
		 * boot region again soon. */
		if (!ccm->hs_busy && (ccm->step == HS_READ2 || ccm->step == HS_WAIT)) {
			ccm->hs_backoff_ns = 0;
			hs_arm(ccm, 0);
		}
		return;
	}
	hs_check_established(ccm);
}

void ccm_hs_on_doorbell(struct ccm *ccm, uint64_t imm)
{
	if (imm == CCM_IMM_SLOT)
		ccm_hs_slot_check(ccm);
}

static void boot_probe_done(struct fab_op *op, int status)
{
	struct ccm *ccm = op->arg;
	struct wire_boot b;

	ccm->boot_probe_busy = false;
	if (ccm->boot_probe_epoch != ccm->epoch || (ccm->state != ST_SETUP && ccm->state != ST_UP))
		return;
	if (status < 0 || !ccm_hs_boot_snapshot(&ccm->boot_probe_buf, &b))
		return;
	if (get_le64(&b.generation) != ccm->partner.gen) {
		char g1[17], g2[17];
		LOG_INFO("partner %s restarted (generation %s -> %s)", ccm->partner.node,
			 ccm_hex64(ccm->partner.gen, g1), ccm_hex64(get_le64(&b.generation), g2));
		ccm_request_terminate(ccm, CCM_TERM_PARTNER_REBOOT);
	} else if (memcmp(b.nonce, ccm->partner.nonce, CCM_NONCE_LEN) != 0) {
		ccm_request_terminate(ccm, CCM_TERM_PARTNER_RESET);
	}
}

/* During a session: read the partner's boot region to see whether it
 * rebooted or left the session while we could not hear it. */
void ccm_hs_boot_probe(struct ccm *ccm)
{
	struct ccm_link *l = NULL;

	if (ccm->boot_probe_busy || (ccm->state != ST_SETUP && ccm->state != ST_UP))
		return;
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *c = &ccm->links[(ccm->boot_probe_link + i) % ccm->n_links];
		if (c->up && c->fl) {
			l = c;
			break;
		}
	}
	if (!l)
		return; /* no lane: the session deadline decides */
	ccm->boot_probe_link = (l->idx + 1) % ccm->n_links;
	if (fab_read(l->fl, &ccm->boot_probe_buf, sizeof(ccm->boot_probe_buf), &boot_remote, 0,
		     &ccm->boot_probe_op) < 0)
		return;
	ccm->boot_probe_busy = true;
	ccm->boot_probe_epoch = ccm->epoch;
	ccm->boot_probe_post_ns = loop_now_ns();
	ccm->last_boot_probe_ns = ccm->boot_probe_post_ns;
}

void ccm_hs_tick(struct ccm *ccm)
{
	uint64_t now = loop_now_ns();

	ccm_hs_slot_check(ccm);
	if (ccm->state == ST_HANDSHAKE && ccm->step == HS_READ1 && !ccm->view.valid &&
	    now - ccm->epoch_start_ns > 1000 * NS_PER_MS) {
		char names[CCM_MAX_LINKS * 17] = "";
		size_t n = 0;
		for (unsigned i = 0; i < ccm->n_links; i++)
			n += (size_t)snprintf(names + n, sizeof(names) - n, "%s%s", i ? ", " : "",
					      ccm->links[i].name);
		hs_cond(ccm, HC_NO_ANSWER, LOG_LEVEL_INFO,
			"waiting for partner%s%s: no answer on %s yet; serving without it "
			"meanwhile",
			ccm->opts.partner[0] ? " " : "", ccm->opts.partner, names);
	}
	if (ccm->state == ST_HANDSHAKE && ccm->hs_busy &&
	    now - ccm->hs_post_ns > ccm->session_deadline_ns) {
		struct ccm_link *l = &ccm->links[ccm->hs_link];
		LOG_DEBUG("handshake operation on %s hangs; resetting the link", l->name);
		l->reset_pending = true;
		ccm_schedule(ccm);
	}
}

/* Called once at creation: the callbacks of the embedded operations. */
void ccm_hs_init(struct ccm *ccm)
{
	ccm->hs_op.done = hs_done;
	ccm->hs_op.arg = ccm;
	ccm->boot_probe_op.done = boot_probe_done;
	ccm->boot_probe_op.arg = ccm;
	loop_timer_init(&ccm->hs_timer, hs_timer_cb, ccm);
}
