/* The CCM object: creation, start, reset, destruction, the periodic tick,
 * deferred work, status and its JSON form. */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *ccm_term_reason_str(enum ccm_term_reason why)
{
	switch (why) {
	case CCM_TERM_PARTNER_REBOOT:
		return "partner rebooted";
	case CCM_TERM_PARTNER_RESET:
		return "partner ended the session";
	case CCM_TERM_LINKS_LOST:
		return "all links lost";
	case CCM_TERM_LOCAL_RESET:
		return "operator reset";
	case CCM_TERM_PROTOCOL:
		return "protocol violation or version change";
	case CCM_TERM_SETUP_TIMEOUT:
		return "session setup timed out";
	case CCM_TERM_SHUTDOWN:
		return "shutdown";
	}
	return "unknown";
}

const char *ccm_session_state_str(enum ccm_session_state st)
{
	switch (st) {
	case CCM_SESSION_DOWN:
		return "down";
	case CCM_SESSION_HANDSHAKING:
		return "handshaking";
	case CCM_SESSION_UP:
		return "up";
	}
	return "down";
}

static void work_cb(struct loop_timer *t)
{
	struct ccm *ccm = t->arg;

	if (ccm->state == ST_STOPPING)
		return;
	ccm->in_work = true;
	ccm_lane_do_aborts(ccm);
	if (ccm->term_pending) {
		enum ccm_term_reason why = ccm->term_pending;
		ccm->term_pending = 0;
		ccm_sess_end(ccm, why);
	}
	if (ccm->drain_pending) {
		ccm->drain_pending = false;
		ccm_op_drain_pending(ccm);
	}
	if (ccm->kick_pending) {
		ccm->kick_pending = false;
		if (ccm->state == ST_SETUP || ccm->state == ST_UP) {
			ccm_chan_kick(&ccm->ctl);
			for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
				struct ccm_client *c = ccm->clients[i];
				if (!c || c->dead)
					continue;
				for (unsigned j = 0; j < c->n_ports; j++)
					ccm_chan_kick(&c->ports[j].ch);
			}
		}
	}
	ccm_chan_send_acks(ccm);
	ccm_client_deliver_ready(ccm);
	if (ccm->reap_pending) {
		ccm->reap_pending = false;
		ccm_client_reap(ccm);
	}
	ccm->in_work = false;
}

/* Run the deferred work after the current callback chain unwinds. */
void ccm_schedule(struct ccm *ccm)
{
	if (ccm->state != ST_STOPPING && !loop_timer_armed(&ccm->work))
		loop_timer_arm(ccm->loop, &ccm->work, 0);
}

void ccm_request_terminate(struct ccm *ccm, enum ccm_term_reason why)
{
	if (ccm->state != ST_SETUP && ccm->state != ST_UP)
		return;
	if (!ccm->term_pending)
		ccm->term_pending = why;
	ccm_schedule(ccm);
}

static void tick_cb(struct loop_timer *t)
{
	struct ccm *ccm = t->arg;

	uint64_t now = now_ns();

	if (ccm->state == ST_STOPPING)
		return;
	/* A tick much later than due: the reactor stalled (a blocking libfabric
	 * call, a reopen, an overloaded host); heartbeats were not read. */
	if (ccm->tick_due_ns && now > ccm->tick_due_ns + ccm->hb_ns)
		ccm->stall_seen_ns = now;
	ccm->tick_due_ns = now + ccm->hb_ns;
	ccm->tick_count++;
	ccm_hs_tick(ccm);
	if (ccm->state == ST_SETUP || ccm->state == ST_UP) {
		ccm_lane_tick(ccm);
		ccm_sess_tick(ccm);
	}
	for (unsigned i = 0; i < ccm->n_links; i++)
		if (ccm->links[i].reopen_pending)
			ccm_schedule(ccm);
	ccm_inst_update_rates(ccm);
	if (ccm->tick_count % 50 == 0)
		ccm_inst_rebalance(ccm);
	if (ccm->pending_ops)
		ccm->drain_pending = true;
	ccm_schedule(ccm);
	loop_timer_arm(ccm->loop, &ccm->tick, ccm->hb_ns);
}

static void shutdown_check(struct loop_timer *t);

static void *alloc_region(size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, 4096, (len + 4095) & ~(size_t)4095) != 0)
		return NULL;
	memset(p, 0, (len + 4095) & ~(size_t)4095);
	return p;
}

void ccm_opts_init(struct ccm_opts *o)
{
	memset(o, 0, sizeof(*o));
	snprintf(o->provider, sizeof(o->provider), "tcp;ofi_rxm");
	snprintf(o->cluster_id, sizeof(o->cluster_id), "duet");
	o->instances = 1;
	o->balance = CCM_BALANCE_LEAST_OUTSTANDING;
	o->heartbeat_ms = 20;
	o->link_deadline_ms = 100;
	o->session_deadline_ms = 1000;
}

int ccm_create(struct loop *loop, const struct ccm_opts *opts, struct ccm **out)
{
	struct ccm *ccm;
	int rc;

	ccm = calloc(1, sizeof(*ccm));
	if (!ccm)
		return -ENOMEM;
	ccm->loop = loop;
	ccm->opts = *opts;
	ccm->hb_ns = opts->heartbeat_ms * NS_PER_MS;
	ccm->link_deadline_ns = opts->link_deadline_ms * NS_PER_MS;
	ccm->session_deadline_ns = opts->session_deadline_ms * NS_PER_MS;
	ccm->major = CCM_PROTO_MAJOR;
	ccm->minor = CCM_PROTO_MINOR;
	ccm->n_links = opts->n_links > CCM_MAX_LINKS ? CCM_MAX_LINKS : opts->n_links;
	ccm->n_inst = opts->instances ? opts->instances : 1;
	if (ccm->n_links && ccm->n_inst > ccm->n_links)
		ccm->n_inst = ccm->n_links;
	if (ccm->n_inst > CCM_MAX_INSTANCES)
		ccm->n_inst = CCM_MAX_INSTANCES;
	ccm->next_incarnation = 1;

	if (ccm->n_links > 0) {
		if (!ccm->opts.secret_file[0]) {
			LOG_ERROR("[ic] secret_file is required when [ic] link is set: the partner "
				  "is authenticated with it");
			rc = -EINVAL;
			goto fail;
		}
		rc = ccm_load_secret(ccm);
		if (rc < 0)
			goto fail;
	}
	ccm->boot = alloc_region(sizeof(*ccm->boot));
	ccm->slot = alloc_region(sizeof(*ccm->slot));
	ccm->sess = alloc_region(sizeof(*ccm->sess));
	if (!ccm->boot || !ccm->slot || !ccm->sess) {
		rc = -ENOMEM;
		goto fail;
	}
	while (ccm->gen == 0) {
		rc = random_bytes(&ccm->gen, sizeof(ccm->gen));
		if (rc < 0)
			goto fail;
	}
	for (unsigned i = 0; i < CCM_MAX_INSTANCES; i++)
		slist_init(&ccm->inst[i].pend);
	for (unsigned i = 0; i < ccm->n_inst; i++)
		ccm->inst[i].idx = i;
	slist_init(&ccm->held);
	list_init(&ccm->acks);
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		struct ccm_inst *in = &ccm->inst[i % ccm->n_inst];
		l->ccm = ccm;
		l->idx = i;
		l->inst = i % ccm->n_inst;
		ccm_put_str(l->name, opts->links[i].name, sizeof(l->name));
		l->last_change_ns = now_ns();
		in->links[in->n_links++] = i;
	}
	ccm_lane_init(ccm);
	ccm_hs_init(ccm);
	ccm_chan_init(&ccm->ctl, ccm, NULL);
	loop_timer_init(&ccm->tick, tick_cb, ccm);
	loop_timer_init(&ccm->work, work_cb, ccm);
	loop_timer_init(&ccm->shutdown_timer, shutdown_check, ccm);
	*out = ccm;
	return 0;
fail:
	free(ccm->boot);
	free(ccm->slot);
	free(ccm->sess);
	free(ccm);
	return rc;
}

int ccm_start(struct ccm *ccm)
{
	char g[17];
	int rc;

	if (ccm->started)
		return -EALREADY;
	ccm->started = true;
	if (ccm->n_links == 0) {
		LOG_INFO("no interconnect links configured: running without a partner");
		return 0;
	}
	rc = ccm_lane_open_all(ccm);
	if (rc < 0)
		return rc;
	ccm_hs_start_epoch(ccm, 0);
	LOG_INFO("boot region published on %u link%s (key %#llx, generation %s); handshake "
		 "with partner%s%s started",
		 ccm->n_links, ccm->n_links > 1 ? "s" : "", (unsigned long long)CCM_BOOT_KEY,
		 ccm_hex64(ccm->gen, g), ccm->opts.partner[0] ? " " : "", ccm->opts.partner);
	loop_timer_arm(ccm->loop, &ccm->tick, ccm->hb_ns);
	return 0;
}

int ccm_reset(struct ccm *ccm)
{
	switch (ccm->state) {
	case ST_SETUP:
	case ST_UP:
		LOG_INFO("operator reset of the session with %s", ccm->partner.node);
		ccm_request_terminate(ccm, CCM_TERM_LOCAL_RESET);
		return 0;
	case ST_HANDSHAKE:
		LOG_INFO("operator reset: restarting the handshake");
		ccm_hs_start_epoch(ccm, 0);
		return 0;
	default:
		return -ENOTCONN;
	}
}

static void shutdown_check(struct loop_timer *t)
{
	struct ccm *ccm = t->arg;
	bool busy = false;

	for (unsigned i = 0; i < ccm->n_links; i++)
		busy |= ccm->links[i].inflight_ops > 0;
	if (busy && now_ns() < ccm->shutdown_deadline_ns) {
		loop_timer_arm(ccm->loop, &ccm->shutdown_timer, 2 * NS_PER_MS);
		return;
	}
	if (ccm->shutdown_cb) {
		void (*cb)(void *) = ccm->shutdown_cb;
		ccm->shutdown_cb = NULL;
		cb(ccm->shutdown_arg);
	}
}

int ccm_shutdown(struct ccm *ccm, void (*done)(void *arg), void *arg)
{
	ccm->shutdown_cb = done;
	ccm->shutdown_arg = arg;
	ccm->shutdown_deadline_ns = now_ns() + 200 * NS_PER_MS;
	if (ccm->state == ST_SETUP || ccm->state == ST_UP)
		ccm_sess_end(ccm, CCM_TERM_SHUTDOWN);
	if (ccm->state == ST_HANDSHAKE) {
		loop_timer_cancel(ccm->loop, &ccm->hs_timer);
		ccm->state = ST_IDLE;
		ccm_hs_publish_boot(ccm, BOOT_INIT);
	}
	loop_timer_arm(ccm->loop, &ccm->shutdown_timer, 0);
	return 0;
}

static void ccm_free(struct ccm *ccm)
{
	loop_timer_cancel(ccm->loop, &ccm->shutdown_timer);
	loop_timer_cancel(ccm->loop, &ccm->tick);
	loop_timer_cancel(ccm->loop, &ccm->work);
	loop_timer_cancel(ccm->loop, &ccm->hs_timer);
	for (unsigned i = 0; i < ccm->n_links; i++)
		loop_timer_cancel(ccm->loop, &ccm->links[i].deadline);
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (!c)
			continue;
		for (unsigned j = 0; j < c->n_ports; j++) {
			ccm_chan_free(&c->ports[j].ch);
			if (c->ports[j].own_mem)
				free(c->ports[j].mem);
		}
		free(c->ports);
		free(c);
		ccm->clients[i] = NULL;
	}
	ccm_chan_free(&ccm->ctl);
	ccm_mac_free(ccm);
	free(ccm->boot);
	free(ccm->slot);
	free(ccm->sess);
	memset(ccm->secret, 0, sizeof(ccm->secret));
	free(ccm);
}

/* Fail every operation the CCM still holds; then close the links, whose
 * in-flight operations complete (and are failed) inside fab_link_close. */
static void ccm_stop(struct ccm *ccm)
{
	ccm_op_fail_pending(ccm, -ESHUTDOWN);
	ccm_op_release_held(ccm, -ESHUTDOWN);
	ccm_chan_fail_ops(&ccm->ctl, -ESHUTDOWN);
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (!c)
			continue;
		for (unsigned j = 0; j < c->n_ports; j++)
			ccm_chan_fail_ops(&c->ports[j].ch, -ESHUTDOWN);
		ccm_client_unregister_mrs(ccm, c);
	}
	ccm->state = ST_STOPPING;
	ccm_lane_close_all(ccm);
}

void ccm_destroy(struct ccm *ccm)
{
	if (!ccm)
		return;
	if (ccm->state == ST_SETUP || ccm->state == ST_UP)
		ccm_sess_end(ccm, CCM_TERM_SHUTDOWN);
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (c && !c->dead)
			LOG_DEBUG("client %s still registered at shutdown", c->name);
	}
	ccm_stop(ccm);
	ccm_free(ccm);
}

void ccm_test_crash(struct ccm *ccm)
{
	ccm_stop(ccm);
	ccm_free(ccm);
}

void ccm_test_set_version(struct ccm *ccm, uint16_t major, uint16_t minor)
{
	ccm->major = major;
	ccm->minor = minor;
	if (ccm->state == ST_HANDSHAKE)
		ccm_hs_publish_boot(ccm, BOOT_HANDSHAKING);
}

void ccm_test_set_load(struct ccm *ccm, unsigned inst, uint64_t bytes_per_sec)
{
	if (inst < ccm->n_inst)
		ccm->inst[inst].test_load = bytes_per_sec;
}

enum hs_step ccm_test_hs_step(const struct ccm *ccm)
{
	return ccm->step;
}

uint64_t ccm_test_generation(const struct ccm *ccm)
{
	return ccm->gen;
}

/* ---- status ---- */

void ccm_get_status(const struct ccm *ccm, struct ccm_status *st)
{
	uint64_t now = now_ns();

	memset(st, 0, sizeof(*st));
	switch (ccm->state) {
	case ST_IDLE:
	case ST_STOPPING:
		st->state = CCM_SESSION_DOWN;
		break;
	case ST_HANDSHAKE:
	case ST_SETUP:
		st->state = CCM_SESSION_HANDSHAKING;
		break;
	case ST_UP:
		st->state = CCM_SESSION_UP;
		break;
	}
	snprintf(st->node, sizeof(st->node), "%s", ccm->opts.node);
	if (ccm->state == ST_SETUP || ccm->state == ST_UP) {
		snprintf(st->partner, sizeof(st->partner), "%s", ccm->partner.node);
		st->partner_major = ccm->partner.major;
		st->partner_minor = ccm->partner.minor;
		st->partner_generation = ccm->partner.gen;
	} else if (ccm->view.valid) {
		snprintf(st->partner, sizeof(st->partner), "%s", ccm->view.node);
		st->partner_major = ccm->view.major;
		st->partner_minor = ccm->view.minor;
		st->partner_generation = ccm->view.gen;
	}
	st->generation = ccm->gen;
	st->handshake_us = ccm->handshake_us;
	st->up_ms = ccm->state == ST_UP ? (now - ccm->up_since_ns) / NS_PER_MS : 0;
	st->sessions = ccm->sessions;
	snprintf(st->error, sizeof(st->error), "%s", ccm->error);

	st->n_links = ccm->n_links;
	for (unsigned i = 0; i < ccm->n_links; i++) {
		const struct ccm_link *l = &ccm->links[i];
		struct ccm_link_status *ls = &st->links[i];
		snprintf(ls->name, sizeof(ls->name), "%s", l->name);
		ls->up = l->up;
		ls->instance = l->inst;
		ls->rtt_us = l->rtt_ns / 1000;
		ls->ops = l->ops;
		ls->bytes = l->bytes;
		ls->errors = l->errors;
		ls->inflight = l->inflight_ops;
		ls->last_change_ms = (now - l->last_change_ns) / NS_PER_MS;
		ls->resets = l->resets;
		if (l->fl) {
			struct fab_link_stats fs;
			fab_link_get_stats(l->fl, &fs);
			ls->slow_calls = fs.slow_calls;
			ls->max_call_us = fs.max_call_ns / 1000;
			snprintf(ls->max_call, sizeof(ls->max_call), "%s",
				 fs.max_call ? fs.max_call : "");
		}
	}
	st->n_instances = ccm->n_links ? ccm->n_inst : 0;
	for (unsigned i = 0; i < st->n_instances; i++) {
		const struct ccm_inst *in = &ccm->inst[i];
		struct ccm_instance_status *is = &st->instances[i];
		is->id = i;
		is->links = in->n_links;
		for (unsigned j = 0; j < in->n_links; j++)
			is->links_up += ccm->links[in->links[j]].up;
		is->ports = in->ports;
		is->bytes_per_sec = in->rate + in->test_load;
		is->ops_inflight = in->ops_inflight;
		is->partner_bytes_per_sec = in->partner.bytes_per_sec;
		is->partner_ops_inflight = in->partner.ops_inflight;
	}
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		const struct ccm_client *c = ccm->clients[i];
		struct ccm_client_status *cs;
		if (!c || c->dead)
			continue;
		cs = &st->clients[st->n_clients++];
		snprintf(cs->name, sizeof(cs->name), "%s", c->name);
		cs->ports = c->n_ports;
		cs->port_mem = c->port_mem;
		for (unsigned j = 0; j < c->n_ports; j++) {
			cs->ports_up += c->ports[j].up;
			cs->msgs_sent += c->ports[j].ch.sent;
			cs->msgs_received += c->ports[j].ch.received;
		}
		for (unsigned j = 0; j < CCM_MAX_CLIENTS; j++) {
			const struct ccm_rclient *rc = &ccm->rclients[j];
			if (rc->used && strcmp(rc->name, c->name) == 0) {
				cs->on_partner = true;
				cs->partner_ports = rc->n_ports;
			}
		}
	}
	for (unsigned j = 0; j < CCM_MAX_CLIENTS; j++) {
		const struct ccm_rclient *rc = &ccm->rclients[j];
		bool local = false;
		if (!rc->used)
			continue;
		for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
			const struct ccm_client *c = ccm->clients[i];
			if (c && !c->dead && strcmp(c->name, rc->name) == 0)
				local = true;
		}
		if (!local)
			snprintf(st->partner_only[st->n_partner_only++], CCM_NAME_MAX, "%s",
				 rc->name);
	}
}

static int add(struct json_object *o, const char *k, struct json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add(o, k, v) != 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static int arr_add(struct json_object *a, struct json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_array_add(a, v) != 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

int ccm_status_to_json(const struct ccm_status *st, struct json_object *root)
{
	struct json_object *sess, *links, *insts, *clients;
	char buf[32];
	int rc = 0;

	sess = json_object_new_object();
	if (add(root, "session", sess) < 0)
		return -ENOMEM;
	rc |= add(sess, "state", json_object_new_string(ccm_session_state_str(st->state)));
	rc |= add(sess, "partner", json_object_new_string(st->partner));
	snprintf(buf, sizeof(buf), "%u.%u", st->partner_major, st->partner_minor);
	rc |= add(sess, "partner_version", json_object_new_string(st->partner[0] ? buf : ""));
	snprintf(buf, sizeof(buf), "%u.%u", CCM_PROTO_MAJOR, CCM_PROTO_MINOR);
	rc |= add(sess, "version", json_object_new_string(buf));
	rc |= add(sess, "handshake_us", json_object_new_int64((int64_t)st->handshake_us));
	rc |= add(sess, "generation", json_object_new_string(ccm_hex64(st->generation, buf)));
	rc |= add(sess, "partner_generation",
		  json_object_new_string(ccm_hex64(st->partner_generation, buf)));
	rc |= add(sess, "up_ms", json_object_new_int64((int64_t)st->up_ms));
	rc |= add(sess, "sessions", json_object_new_int64((int64_t)st->sessions));
	rc |= add(sess, "error", json_object_new_string(st->error));

	links = json_object_new_array();
	rc |= add(root, "links", links);
	for (unsigned i = 0; links && i < st->n_links; i++) {
		const struct ccm_link_status *l = &st->links[i];
		struct json_object *o = json_object_new_object();
		if (arr_add(links, o) < 0)
			return -ENOMEM;
		rc |= add(o, "name", json_object_new_string(l->name));
		rc |= add(o, "state", json_object_new_string(l->up ? "up" : "down"));
		rc |= add(o, "rtt_us", json_object_new_int64((int64_t)l->rtt_us));
		rc |= add(o, "instance", json_object_new_int((int)l->instance));
		rc |= add(o, "ops", json_object_new_int64((int64_t)l->ops));
		rc |= add(o, "bytes", json_object_new_int64((int64_t)l->bytes));
		rc |= add(o, "errors", json_object_new_int64((int64_t)l->errors));
		rc |= add(o, "inflight", json_object_new_int64((int64_t)l->inflight));
		rc |= add(o, "last_change_ms", json_object_new_int64((int64_t)l->last_change_ms));
		rc |= add(o, "resets", json_object_new_int64((int64_t)l->resets));
		rc |= add(o, "slow_calls", json_object_new_int64((int64_t)l->slow_calls));
		rc |= add(o, "max_call_us", json_object_new_int64((int64_t)l->max_call_us));
		rc |= add(o, "max_call", json_object_new_string(l->max_call));
	}

	insts = json_object_new_array();
	rc |= add(root, "ccm_instances", insts);
	for (unsigned i = 0; insts && i < st->n_instances; i++) {
		const struct ccm_instance_status *s = &st->instances[i];
		struct json_object *o = json_object_new_object();
		if (arr_add(insts, o) < 0)
			return -ENOMEM;
		rc |= add(o, "id", json_object_new_int((int)s->id));
		rc |= add(o, "links", json_object_new_int((int)s->links));
		rc |= add(o, "links_up", json_object_new_int((int)s->links_up));
		rc |= add(o, "ports", json_object_new_int((int)s->ports));
		rc |= add(o, "bytes_per_sec", json_object_new_int64((int64_t)s->bytes_per_sec));
		rc |= add(o, "ops_inflight", json_object_new_int64((int64_t)s->ops_inflight));
		rc |= add(o, "partner_bytes_per_sec",
			  json_object_new_int64((int64_t)s->partner_bytes_per_sec));
		rc |= add(o, "partner_ops_inflight",
			  json_object_new_int64((int64_t)s->partner_ops_inflight));
	}

	clients = json_object_new_array();
	rc |= add(root, "ccm_clients", clients);
	for (unsigned i = 0; clients && i < st->n_clients; i++) {
		const struct ccm_client_status *c = &st->clients[i];
		struct json_object *o = json_object_new_object();
		if (arr_add(clients, o) < 0)
			return -ENOMEM;
		rc |= add(o, "name", json_object_new_string(c->name));
		rc |= add(o, "ports", json_object_new_int((int)c->ports));
		rc |= add(o, "ports_up", json_object_new_int((int)c->ports_up));
		rc |= add(o, "port_mem", json_object_new_int64((int64_t)c->port_mem));
		rc |= add(o, "on_partner", json_object_new_boolean(c->on_partner));
		rc |= add(o, "partner_ports", json_object_new_int((int)c->partner_ports));
		rc |= add(o, "msgs_sent", json_object_new_int64((int64_t)c->msgs_sent));
		rc |= add(o, "msgs_received", json_object_new_int64((int64_t)c->msgs_received));
	}
	for (unsigned i = 0; clients && i < st->n_partner_only; i++) {
		struct json_object *o = json_object_new_object();
		if (arr_add(clients, o) < 0)
			return -ENOMEM;
		rc |= add(o, "name", json_object_new_string(st->partner_only[i]));
		rc |= add(o, "ports", json_object_new_int(0));
		rc |= add(o, "ports_up", json_object_new_int(0));
		rc |= add(o, "on_partner", json_object_new_boolean(true));
		rc |= add(o, "local", json_object_new_boolean(false));
	}
	return rc ? -ENOMEM : 0;
}

unsigned ccm_link_count(const struct ccm *ccm)
{
	return ccm ? ccm->n_links : 0;
}

const char *ccm_link_name(const struct ccm *ccm, unsigned link)
{
	return ccm && link < ccm->n_links ? ccm->links[link].name : NULL;
}

bool ccm_link_is_up(const struct ccm *ccm, unsigned link)
{
	return ccm && link < ccm->n_links && ccm->links[link].up;
}
