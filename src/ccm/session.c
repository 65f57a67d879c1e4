/* The session after the handshake (docs/CCM.md, "Session"): session
 * regions under fresh keys, the exchange of peer and client information on
 * the control channel, ready alerts both ways, and termination.
 *
 * Layering: the top of the protocol; calls every file below it and is
 * called from them only through its up-calls (ccm_sess_begin, _on_msg,
 * _on_ctl, _send_client_add/del).
 */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void copy_id(char *dst, const char *src, size_t n)
{
	memcpy(dst, src, n);
	dst[n - 1] = '\0';
}

void ccm_sess_publish_load(struct ccm *ccm)
{
	struct wire_sess *s = ccm->sess;
	uint64_t seq = s->seq_head + 1;

	s->seq_head = seq;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	put_le64(&s->magic, CCM_SESS_MAGIC);
	put_le64(&s->generation, ccm->gen);
	put_le64(&s->session_id, ccm->session_id);
	put_le64(&s->sess_ticks, ccm->sess_ticks);
	put_le32(&s->n_instances, ccm->n_inst);
	for (unsigned i = 0; i < ccm->n_inst && i < 8; i++) {
		const struct ccm_inst *in = &ccm->inst[i];
		unsigned up = 0;
		for (unsigned j = 0; j < in->n_links; j++)
			up += ccm->links[in->links[j]].up;
		put_le64(&s->inst[i].bytes_per_sec, in->rate + in->test_load);
		put_le64(&s->inst[i].ops_inflight, in->ops_inflight);
		put_le64(&s->inst[i].bytes_inflight, in->bytes_inflight);
		put_le32(&s->inst[i].ports, in->ports);
		put_le32(&s->inst[i].links_up, up);
	}
	__atomic_thread_fence(__ATOMIC_RELEASE);
	s->seq_tail = seq;
}

static int send_ctl(struct ccm *ccm, uint16_t type, const void *p, size_t len)
{
	int rc = ccm_chan_send(&ccm->ctl, type, p, len, NULL);

	if (rc < 0) {
		/* 64 control messages unacknowledged: the partner is not
		 * following; start over. */
		LOG_WARN("control channel to %s is full (%s); ending the session",
			 ccm->partner.node, strerror(-rc));
		ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
	}
	return rc;
}

static void send_peer_info(struct ccm *ccm)
{
	struct wire_peer_info pi;

	memset(&pi, 0, sizeof(pi));
	put_le16(&pi.major, ccm->major);
	put_le16(&pi.minor, ccm->minor);
	put_le32(&pi.caps, CCM_CAPS);
	put_le64(&pi.generation, ccm->gen);
	ccm_put_str(pi.node, ccm->opts.node, sizeof(pi.node));
	ccm_put_str(pi.cluster, ccm->opts.cluster_id, sizeof(pi.cluster));
	put_le32(&pi.n_links, ccm->n_links);
	put_le32(&pi.n_instances, ccm->n_inst);
	put_le64(&pi.sess_key, ccm->sess_key);
	put_le64(&pi.sess_size, sizeof(*ccm->sess));
	put_le32(&pi.max_msg, CCM_MSG_MAX);
	for (unsigned i = 0; i < ccm->n_links && i < 8; i++)
		ccm_put_str(pi.links[i], ccm->links[i].name, sizeof(pi.links[i]));
	send_ctl(ccm, MSG_PEER_INFO, &pi, sizeof(pi));
}

void ccm_sess_send_client_add(struct ccm *ccm, struct ccm_client *c)
{
	uint8_t buf[sizeof(struct wire_client_add) + CCM_MAX_PORTS * sizeof(struct wire_port_info)];
	struct wire_client_add *a = (struct wire_client_add *)(void *)buf;

	memset(buf, 0, sizeof(buf));
	ccm_put_str(a->name, c->name, sizeof(a->name));
	put_le32(&a->n_ports, c->n_ports);
	put_le32(&a->flags, c->flags);
	for (unsigned i = 0; i < c->n_ports; i++) {
		put_le32(&a->ports[i].id, c->ports[i].id);
		put_le64(&a->ports[i].key, c->ports[i].key);
		put_le64(&a->ports[i].size, c->ports[i].size);
	}
	send_ctl(ccm, MSG_CLIENT_ADD, buf, sizeof(*a) + c->n_ports * sizeof(struct wire_port_info));
}

void ccm_sess_send_client_del(struct ccm *ccm, struct ccm_client *c)
{
	struct wire_client_ref r;

	memset(&r, 0, sizeof(r));
	ccm_put_str(r.name, c->name, sizeof(r.name));
	put_le32(&r.first_port_id, c->ports[0].id);
	send_ctl(ccm, MSG_CLIENT_DEL, &r, sizeof(r));
}

int ccm_sess_send_terminate(struct ccm *ccm, enum ccm_term_reason why)
{
	struct wire_terminate t = {0};

	put_le32(&t.reason, (uint32_t)why);

	return ccm_chan_send(&ccm->ctl, MSG_TERMINATE, &t, sizeof(t), NULL);
}

/* Entered from the handshake once both sides proved the secret. */
void ccm_sess_begin(struct ccm *ccm)
{
	uint64_t setup = 3 * ccm->session_deadline_ns;
	int rc;

	ccm->state = ST_SETUP;
	ccm->got_peer_info = ccm->got_setup_done = ccm->sent_ready = ccm->got_ready = false;
	ccm->partner_sess = (struct fab_remote){0, 0};
	ccm->partner_caps = 0;
	ccm->setup_deadline_ns =
	    loop_now_ns() + (setup < 1000 * NS_PER_MS ? 1000 * NS_PER_MS : setup);
	for (unsigned i = 0; i < ccm->n_inst; i++)
		memset(&ccm->inst[i].partner, 0, sizeof(ccm->inst[i].partner));
	if (ccm_session_keys(ccm) < 0)
		goto fail;
	ccm_hs_publish_boot(ccm, BOOT_SESSION);
	ccm_sess_publish_load(ccm);
	rc = ccm_reg_all(ccm, ccm->sess, sizeof(*ccm->sess), FAB_REMOTE_READ, &ccm->sess_key, NULL);
	if (rc < 0)
		goto fail;
	ccm_lane_session_begin(ccm, ccm->hs_link);
	ccm_chan_reset(&ccm->ctl);
	ccm->ctl.peer_id = 0;
	memset(ccm->rclients, 0, sizeof(ccm->rclients));
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (!c || c->dead)
			continue;
		c->remote_acked = false;
		c->told_ready = false;
		c->ready_pending = false;
		for (unsigned j = 0; j < c->n_ports; j++)
			ccm_chan_reset(&c->ports[j].ch);
		rc = ccm_client_register_mrs(ccm, c);
		if (rc < 0)
			goto fail;
	}
	send_peer_info(ccm);
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (c && !c->dead)
			ccm_sess_send_client_add(ccm, c);
	}
	send_ctl(ccm, MSG_SETUP_DONE, NULL, 0);
	return;
fail:
	LOG_ERROR("cannot set up the session with %s; starting over", ccm->partner.node);
	ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
}

static void sess_go_up(struct ccm *ccm)
{
	struct ccm_partner_info pi;
	uint64_t now = loop_now_ns();
	unsigned n_clients = 0;

	ccm->state = ST_UP;
	ccm->up_since_ns = now;
	ccm->handshake_us = ccm->hs_t0_ns ? (now - ccm->hs_t0_ns) / 1000 : 0;
	ccm->sessions++;
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++)
		n_clients += ccm->clients[i] && !ccm->clients[i]->dead;
	LOG_INFO("session with %s up: protocol %u.%u, %u of %u link%s up, %u client%s "
		 "(handshake %llu us)",
		 ccm->partner.node, ccm->partner.major, ccm->partner.minor, ccm_lane_up_count(ccm),
		 ccm->n_links, ccm->n_links > 1 ? "s" : "", n_clients, n_clients == 1 ? "" : "s",
		 (unsigned long long)ccm->handshake_us);
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (!c || c->dead)
			continue;
		ccm_client_eval_ports(ccm, c);
		if (c->dead || ccm->state != ST_UP)
			continue;
		ccm_client_partner_info(ccm, c, &pi);
		if (!pi.client_present)
			LOG_INFO("client %s has no counterpart on %s (reported in status)", c->name,
				 ccm->partner.node);
		c->told_ready = true;
		c->ready_pending = false;
		if (c->ops.partner_ready)
			c->ops.partner_ready(c, &pi, c->arg);
		if (ccm->state != ST_UP)
			return;
	}
	for (unsigned j = 0; j < CCM_MAX_CLIENTS; j++) {
		struct ccm_rclient *rc = &ccm->rclients[j];
		if (rc->used && !ccm_client_by_name(ccm, rc->name))
			LOG_INFO("partner client %s has no counterpart here (reported in status)",
				 rc->name);
	}
}

static void maybe_up(struct ccm *ccm)
{
	if (ccm->state == ST_SETUP && ccm->got_peer_info && ccm->sent_ready && ccm->got_ready)
		sess_go_up(ccm);
}

static void on_peer_info(struct ccm *ccm, const uint8_t *p, size_t len)
{
	struct wire_peer_info pi;
	char node[CCM_NODE_MAX], cluster[CCM_CLUSTER_MAX], names[8 * 17 + 1] = "";
	size_t nl = 0;
	uint16_t major, minor;

	if (len < sizeof(pi)) {
		LOG_ERROR("partner %s sent a short peer info (%zu bytes)", ccm->partner.node, len);
		ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
		return;
	}
	memcpy(&pi, p, sizeof(pi));
	copy_id(node, pi.node, sizeof(node));
	copy_id(cluster, pi.cluster, sizeof(cluster));
	major = get_le16(&pi.major);
	minor = get_le16(&pi.minor);
	if (major != ccm->major) {
		LOG_ERROR("partner %s speaks CCM protocol %u.%u, this node %u.%u: incompatible "
			  "major version, no session",
			  node, major, minor, ccm->major, ccm->minor);
		snprintf(ccm->error, sizeof(ccm->error), "partner %s: incompatible version %u.%u",
			 node, major, minor);
		ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
		return;
	}
	if (strcmp(cluster, ccm->opts.cluster_id) != 0 || strcmp(node, ccm->partner.node) != 0 ||
	    get_le64(&pi.generation) != ccm->partner.gen) {
		LOG_ERROR("partner %s's peer info (node %s, cluster %s) contradicts its handshake",
			  ccm->partner.node, node, cluster);
		ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
		return;
	}
	ccm->partner.minor = minor;
	ccm->partner_caps = get_le32(&pi.caps) & CCM_CAPS;
	ccm->partner_n_links = get_le32(&pi.n_links);
	ccm->partner_sess.key = get_le64(&pi.sess_key);
	ccm->partner_sess.size = get_le64(&pi.sess_size);
	if (ccm->partner_sess.size > sizeof(struct wire_sess))
		ccm->partner_sess.size = sizeof(struct wire_sess);
	if (ccm->partner_sess.size < sizeof(struct wire_sess)) {
		LOG_ERROR("partner %s's session region is too small", node);
		ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
		return;
	}
	for (unsigned i = 0; i < ccm->partner_n_links && i < 8; i++) {
		char n[17];
		memcpy(n, pi.links[i], 16);
		n[16] = '\0';
		nl += (size_t)snprintf(names + nl, sizeof(names) - nl, "%s%s", i ? " " : "", n);
	}
	LOG_INFO("partner %s: protocol %u.%u, links [%s], %u instance%s", node, major, minor, names,
		 get_le32(&pi.n_instances), get_le32(&pi.n_instances) == 1 ? "" : "s");
	ccm->got_peer_info = true;
	ccm_lane_post_probes(ccm);
	maybe_up(ccm);
}

static void on_client_add(struct ccm *ccm, const uint8_t *p, size_t len)
{
	struct wire_client_add a;
	struct wire_client_ref ack;
	struct ccm_rclient *rc;
	struct ccm_client *c;
	char name[CCM_NAME_MAX];
	unsigned n;

	if (len < sizeof(a))
		goto bad;
	memcpy(&a, p, sizeof(a));
	copy_id(name, a.name, sizeof(name));
	n = get_le32(&a.n_ports);
	if (!name[0] || n == 0 || n > CCM_MAX_PORTS ||
	    len != sizeof(a) + n * sizeof(struct wire_port_info))
		goto bad;
	c = ccm_client_by_name(ccm, name);
	if (c)
		ccm_client_ports_down(ccm, c, true, -ECONNRESET);
	rc = ccm_rclient_by_name(ccm, name, true);
	if (!rc) {
		LOG_WARN("partner %s has more than %u clients; %s ignored", ccm->partner.node,
			 CCM_MAX_CLIENTS, name);
		return;
	}
	rc->n_ports = n;
	rc->flags = get_le32(&a.flags);
	for (unsigned i = 0; i < n; i++) {
		struct wire_port_info pi;
		memcpy(&pi, p + sizeof(a) + i * sizeof(pi), sizeof(pi));
		rc->ports[i].id = get_le32(&pi.id);
		rc->ports[i].key = get_le64(&pi.key);
		rc->ports[i].size = get_le64(&pi.size);
	}
	memset(&ack, 0, sizeof(ack));
	memcpy(ack.name, a.name, sizeof(ack.name));
	put_le32(&ack.first_port_id, rc->ports[0].id);
	send_ctl(ccm, MSG_CLIENT_ACK, &ack, sizeof(ack));
	LOG_DEBUG("partner client %s: %u port(s)", name, n);
	c = ccm_client_by_name(ccm, name);
	if (c)
		ccm_client_eval_ports(ccm, c);
	return;
bad:
	LOG_ERROR("partner %s sent a malformed client description; ending the session",
		  ccm->partner.node);
	ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
}

static void on_client_ref(struct ccm *ccm, uint16_t type, const uint8_t *p, size_t len)
{
	struct wire_client_ref r;
	struct ccm_client *c;
	char name[CCM_NAME_MAX];

	if (len != sizeof(r)) {
		LOG_ERROR("partner %s sent a malformed client message", ccm->partner.node);
		ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
		return;
	}
	memcpy(&r, p, sizeof(r));
	copy_id(name, r.name, sizeof(name));
	c = ccm_client_by_name(ccm, name);
	if (type == MSG_CLIENT_ACK) {
		/* Only an ack of this incarnation of our client counts. */
		if (c && c->ports[0].id == get_le32(&r.first_port_id)) {
			c->remote_acked = true;
			ccm_client_eval_ports(ccm, c);
		}
		return;
	}
	struct ccm_rclient *rc = ccm_rclient_by_name(ccm, name, false);
	if (!rc || rc->ports[0].id != get_le32(&r.first_port_id))
		return;
	LOG_INFO("partner client %s unregistered", name);
	if (c)
		ccm_client_ports_down(ccm, c, true, -ECONNRESET);
	memset(rc, 0, sizeof(*rc));
}

void ccm_sess_on_ctl(struct ccm *ccm, uint16_t type, const uint8_t *p, size_t len)
{
	if (ccm->state != ST_SETUP && ccm->state != ST_UP)
		return;
	switch (type) {
	case MSG_PEER_INFO:
		on_peer_info(ccm, p, len);
		break;
	case MSG_CLIENT_ADD:
		on_client_add(ccm, p, len);
		break;
	case MSG_CLIENT_ACK:
	case MSG_CLIENT_DEL:
		on_client_ref(ccm, type, p, len);
		break;
	case MSG_SETUP_DONE:
		if (ccm->got_setup_done)
			break;
		ccm->got_setup_done = true;
		if (send_ctl(ccm, MSG_READY, NULL, 0) == 0)
			ccm->sent_ready = true;
		maybe_up(ccm);
		break;
	case MSG_READY:
		ccm->got_ready = true;
		maybe_up(ccm);
		break;
	case MSG_FENCE:
	case MSG_FENCE_ACK: {
		struct wire_fence f;
		if (len != sizeof(f)) {
			LOG_ERROR("partner %s sent a malformed fence", ccm->partner.node);
			ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
			break;
		}
		memcpy(&f, p, sizeof(f));
		if (type == MSG_FENCE)
			ccm_lane_fence_request(ccm, get_le32(&f.lane), get_le64(&f.seq));
		else
			ccm_lane_fence_acked(ccm, get_le64(&f.seq));
		break;
	}
	case MSG_TERMINATE: {
		struct wire_terminate t = {0};
		if (len >= sizeof(t))
			memcpy(&t, p, sizeof(t));
		LOG_INFO("partner %s ends the session (%s)", ccm->partner.node,
			 ccm_term_reason_str((enum ccm_term_reason)get_le32(&t.reason)));
		ccm_request_terminate(ccm, CCM_TERM_PARTNER_RESET);
		break;
	}
	default:
		LOG_DEBUG("control message of unknown type %u ignored", type);
		break;
	}
}

/* One line per 10 s at most about refused messages, with the counts. */
static void bad_note(struct ccm *ccm, const char *what)
{
	uint64_t now = loop_now_ns(), total = ccm->bad_msgs + ccm->bad_macs + ccm->unverified;

	if (ccm->bad_warn_ns && now < ccm->bad_warn_ns + CCM_BAD_WARN_NS)
		return;
	LOG_WARN("interconnect: dropped %llu message(s) since the last note (%s; in all %llu "
		 "malformed or of another session, %llu with a bad MAC, %llu unverified over "
		 "the MAC failure budget)",
		 (unsigned long long)(total - ccm->bad_at_warn), what,
		 (unsigned long long)ccm->bad_msgs, (unsigned long long)ccm->bad_macs,
		 (unsigned long long)ccm->unverified);
	ccm->bad_warn_ns = now;
	ccm->bad_at_warn = total;
}

/* Take one MAC check from the budget of failures; false when spent. */
static bool mac_budget(struct ccm *ccm)
{
	uint64_t now = loop_now_ns();

	if (now >= ccm->mac_refill_ns + CCM_MAC_REFILL_NS) {
		ccm->mac_tokens = CCM_MAC_BURST;
		ccm->mac_refill_ns = now;
	}
	return ccm->mac_tokens > 0;
}

/*
 * A message from any link. Only messages of the current session with a
 * valid MAC under the session key count: a node without the secret cannot
 * make us do anything with a message. Cheap checks first (length, magic,
 * the session id, which is secret: never in a region anyone may read);
 * then the MAC, whose failures are bounded (mac_budget).
 */
void ccm_sess_on_msg(struct ccm *ccm, const void *msg, size_t len)
{
	const uint8_t *b = msg;
	struct wire_msg h;
	struct ccm_chan *ch;
	uint32_t port;
	size_t plen;

	if (len < sizeof(h)) {
		ccm->bad_msgs++;
		bad_note(ccm, "too short");
		return;
	}
	memcpy(&h, b, sizeof(h));
	plen = get_le32(&h.len);
	if (get_le32(&h.magic) != CCM_MSG_MAGIC || plen != len - sizeof(h)) {
		ccm->bad_msgs++;
		bad_note(ccm, "malformed");
		return;
	}
	if (ccm->state == ST_HANDSHAKE)
		ccm_hs_slot_check(ccm); /* its ready may be in our slot without a doorbell */
	if (ccm->state != ST_SETUP && ccm->state != ST_UP)
		return;
	if (get_le64(&h.session_id) != ccm->session_id) {
		ccm->bad_msgs++;
		bad_note(ccm, "another session");
		return;
	}
	if (!mac_budget(ccm)) {
		ccm->unverified++;
		bad_note(ccm, "MAC failure budget spent");
		return;
	}
	if (!ccm_msg_mac_ok(ccm, &h, b + sizeof(h), plen)) {
		ccm->mac_tokens--;
		ccm->bad_macs++;
		bad_note(ccm, "bad MAC: forged or corrupted");
		return;
	}
	port = get_le32(&h.port);
	if (port == 0) {
		ch = &ccm->ctl;
	} else {
		struct ccm_port *p = ccm_client_port_by_id(ccm, port);
		if (!p)
			return; /* unregistered meanwhile */
		ch = &p->ch;
		if (!p->up && ccm->state == ST_UP && get_le16(&h.type) != MSG_ACK &&
		    ccm_rclient_by_name(ccm, p->client->name, false)) {
			/* The partner uses the port, so it has our ack... its
			 * ack of our client is on the way: take this as it. */
			p->client->remote_acked = true;
			ccm_client_eval_ports(ccm, p->client);
		}
	}
	if (get_le16(&h.type) == MSG_ACK) {
		ccm_chan_on_ack(ch, get_le64(&h.ack));
		return;
	}
	ccm_chan_on_data(ch, &h, b + sizeof(h));
}

/*
 * End the session: alert the clients, close the ports, drop everything of
 * the session, and (unless shutting down) start a new handshake.
 */
void ccm_sess_end(struct ccm *ccm, enum ccm_term_reason why)
{
	enum ccm_state prev = ccm->state;

	if ((prev != ST_SETUP && prev != ST_UP) || ccm->in_terminate)
		return;
	ccm->in_terminate = true;
	if (why == CCM_TERM_LINKS_LOST || why == CCM_TERM_PARTNER_REBOOT)
		LOG_WARN("session with %s ended: %s", ccm->partner.node, ccm_term_reason_str(why));
	else
		LOG_INFO("session with %s ended: %s", ccm->partner.node, ccm_term_reason_str(why));
	if (why == CCM_TERM_LOCAL_RESET || why == CCM_TERM_SHUTDOWN || why == CCM_TERM_PROTOCOL ||
	    why == CCM_TERM_SETUP_TIMEOUT)
		ccm_sess_send_terminate(ccm, why);
	ccm->state = ST_HANDSHAKE; /* ports refuse new work from here on */
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (c && !c->dead && c->told_ready && c->ops.terminating)
			c->ops.terminating(c, why, c->arg);
	}
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (c && !c->dead)
			ccm_client_ports_down(ccm, c, true, -ECONNRESET);
	}
	ccm->epoch++;
	ccm_op_fail_pending(ccm, -ECONNRESET);
	ccm_op_release_held(ccm, -ECONNRESET);
	ccm_chan_fail_ops(&ccm->ctl, -ECONNRESET);
	ccm_chan_reset(&ccm->ctl);
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (!c)
			continue;
		c->told_ready = false;
		c->ready_pending = false;
		c->remote_acked = false;
		ccm_client_unregister_mrs(ccm, c);
	}
	ccm_lane_abort_down(ccm);
	ccm_lane_session_end(ccm);
	memset(ccm->rclients, 0, sizeof(ccm->rclients));
	ccm->partner_sess = (struct fab_remote){0, 0};
	ccm_mac_free(ccm);
	ccm->session_id = 0;
	ccm->in_terminate = false;
	if (why != CCM_TERM_SHUTDOWN) {
		ccm_hs_start_epoch(ccm,
				   why == CCM_TERM_LINKS_LOST ? 10 * NS_PER_MS : 1 * NS_PER_MS);
	} else {
		ccm->state = ST_IDLE;
		ccm_hs_publish_boot(ccm, BOOT_INIT);
	}
}

void ccm_sess_tick(struct ccm *ccm)
{
	uint64_t now = loop_now_ns();
	uint64_t rto = ccm->link_deadline_ns;

	ccm->sess_ticks++;
	ccm_sess_publish_load(ccm);
	if (ccm->state == ST_SETUP && now > ccm->setup_deadline_ns) {
		LOG_WARN("session setup with %s did not finish in time", ccm->partner.node);
		ccm_request_terminate(ccm, CCM_TERM_SETUP_TIMEOUT);
		return;
	}
	if (ccm_lane_up_count(ccm) == 0 && ccm->all_down_since_ns &&
	    now - ccm->all_down_since_ns > ccm->session_deadline_ns) {
		ccm_request_terminate(ccm, CCM_TERM_LINKS_LOST);
		return;
	}
	if (ccm_lane_up_count(ccm) == 0 && !ccm->all_down_since_ns)
		ccm->all_down_since_ns = now;
	ccm_lane_send_fences(ccm);
	/* (Not while the last lane up shows no life: the fence cannot pass,
	 * and that lane ends the session itself, as links lost.) */
	if (ccm->fence_acked < ccm->fence_next && ccm_lane_up_count(ccm) > 0 &&
	    !ccm_lane_any_stale(ccm) && now - ccm->fence_sent_ns > ccm->session_deadline_ns) {
		LOG_WARN("partner %s did not confirm closing a failed link in time",
			 ccm->partner.node);
		ccm_request_terminate(ccm, CCM_TERM_PROTOCOL);
		return;
	}
	if (now - ccm->last_boot_probe_ns >
	    (ccm_lane_up_count(ccm) < ccm->n_links ? 4 * ccm->probe_ns : 500 * NS_PER_MS))
		ccm_hs_boot_probe(ccm);
	ccm_chan_tick(&ccm->ctl, now, rto);
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (!c || c->dead)
			continue;
		for (unsigned j = 0; j < c->n_ports; j++)
			ccm_chan_tick(&c->ports[j].ch, now, rto);
	}
}
