/* What the CCM shows of itself: the names of its states and reasons, the
 * status snapshot (ccm_get_status) and its JSON form, and the link
 * accessors. Read-only: nothing here changes the CCM, so the control
 * socket may call it at any time on the reactor thread. */
#include "ccm/ccm_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
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

void ccm_get_status(const struct ccm *ccm, struct ccm_status *st)
{
	uint64_t now = loop_now_ns();

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
	st->bad_msgs = ccm->bad_msgs;
	st->bad_macs = ccm->bad_macs;
	st->unverified = ccm->unverified;
	snprintf(st->error, sizeof(st->error), "%s", ccm->error);

	st->n_links = ccm->n_links;
	for (unsigned i = 0; i < ccm->n_links; i++) {
		const struct ccm_link *l = &ccm->links[i];
		struct ccm_link_status *ls = &st->links[i];
		snprintf(ls->name, sizeof(ls->name), "%s", l->name);
		ls->up = l->up;
		ls->stale = l->up && l->stale;
		ls->inflight_bytes = l->inflight_bytes;
		ls->inflight_cap = l->inflight_cap ? l->inflight_cap : CCM_LANE_MIN_CAP;
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
			cs->acks_sent += c->ports[j].ch.acks_sent;
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
	rc |= add(sess, "bad_messages", json_object_new_int64((int64_t)st->bad_msgs));
	rc |= add(sess, "bad_macs", json_object_new_int64((int64_t)st->bad_macs));
	rc |= add(sess, "unverified_drops", json_object_new_int64((int64_t)st->unverified));
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
		rc |= add(o, "stale", json_object_new_boolean(l->stale));
		rc |= add(o, "inflight", json_object_new_int64((int64_t)l->inflight));
		rc |= add(o, "inflight_bytes", json_object_new_int64((int64_t)l->inflight_bytes));
		rc |= add(o, "inflight_cap", json_object_new_int64((int64_t)l->inflight_cap));
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
		rc |= add(o, "acks_sent", json_object_new_int64((int64_t)c->acks_sent));
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
