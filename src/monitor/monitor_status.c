/* What the monitor reports: the status JSON of `duetctl status`, the
 * summary for metrics, and the names they use.
 *
 * Apart from monitor.c, which drives the state machine: everything here
 * only reads struct monitor and the mailbox views (and samples the inputs
 * as the state machine would see them), never steps or acts, so a status
 * field is added without reading the driver.
 */
#define LOG_MODULE "monitor"
#include "monitor/monitor_int.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "common/util.h"

void monitor_ha_describe(const struct ha *h, struct monitor_ha_view *v)
{
	v->state = monitor_ha_state_name(h->state);
	v->phase = monitor_ha_phase_name(h->phase);
	v->reason = h->reason;
	v->partner = monitor_ha_partner_name(h->partner);
	v->mark_gen = h->mark_gen;
}

void monitor_get_summary(const struct monitor *m, struct monitor_summary *s)
{
	memset(s, 0, sizeof(*s));
	s->state = m->booted ? monitor_ha_state_name(m->ha.state) : "up";
	s->state_idx = m->booted ? (unsigned)m->ha.state : HA_UP;
	s->phase = m->booted ? monitor_ha_phase_name(m->ha.phase) : "booting";
	s->partner = monitor_ha_partner_name(m->ha.partner);
	s->partner_alive = m->ha.partner == HA_PARTNER_ALIVE;
	s->takeover_possible = m->booted && m->ha.takeover_possible;
	s->takeovers = m->takeovers;
	s->givebacks = m->givebacks;
	s->mark_gen = m->ha.mark_gen;
}

const char *monitor_state_name(unsigned i)
{
	return i < HA_STATE_COUNT ? monitor_ha_state_name((enum ha_state)i) : NULL;
}

void monitor_status_json(struct monitor *m, struct json_object *ha)
{
	struct ha_inputs in;
	struct monitor_mbox_own_view ov;
	struct monitor_mbox_partner_view pv;
	char own[HA_REASON_MAX];
	struct json_object *last = json_object_new_object();
	struct json_object *partner = json_object_new_object();
	struct json_object *links = json_object_new_array();
	struct json_object *mbox = json_object_new_object();
	struct json_object *progress = json_object_new_object();
	uint64_t now = loop_now_ns();

	monitor_sample(m, &in);
	monitor_mbox_own(m->mb, &ov);
	monitor_mbox_partner(m->mb, &pv);
	if (ov.rc < 0)
		snprintf(own, sizeof(own), "%s", strerror(-ov.rc));
	else if (ov.write_rc < 0)
		snprintf(own, sizeof(own), "write_failed: %s", strerror(-ov.write_rc));
	else
		snprintf(own, sizeof(own), "ok");
	json_object_object_add(
	    ha, "state",
	    json_object_new_string(m->booted ? monitor_ha_state_name(m->ha.state) : "up"));
	json_object_object_add(
	    ha, "phase",
	    json_object_new_string(m->booted ? monitor_ha_phase_name(m->ha.phase) : "booting"));
	json_object_object_add(ha, "takeover_possible",
			       json_object_new_boolean(m->booted && m->ha.takeover_possible));
	json_object_object_add(
	    ha, "reason", json_object_new_string(m->booted ? m->ha.why : "checking own mailbox"));
	json_object_object_add(last, "reason", json_object_new_string(m->ha.reason));
	jobj_add_age(last, "age_ms", m->booted ? in.now_ms - m->ha.since_ms : HA_NEVER, HA_NEVER);
	json_object_object_add(ha, "last_change", last);
	json_object_object_add(partner, "state",
			       json_object_new_string(monitor_ha_partner_name(m->ha.partner)));
	json_object_object_add(partner, "detail", json_object_new_string(m->ha.partner_why));
	json_object_object_add(ha, "partner", partner);
	for (unsigned i = 0; i < m->n_links; i++) {
		struct json_object *l = json_object_new_object();
		json_object_object_add(l, "name", json_object_new_string(m->link_names[i]));
		jobj_add_age(l, "hb_age_ms", in.hb_age_ms[i], HA_NEVER);
		json_object_array_add(links, l);
	}
	json_object_object_add(ha, "heartbeats", links);
	jobj_add_age(mbox, "own_write_age_ms",
		     ov.last_write_ns ? (now - ov.last_write_ns) / NS_PER_MS : HA_NEVER, HA_NEVER);
	json_object_object_add(mbox, "own", json_object_new_string(own));
	json_object_object_add(mbox, "direct_io",
			       json_object_new_boolean(monitor_mbox_direct(m->mb)));
	json_object_object_add(mbox, "partner_direct_io",
			       pv.opened ? json_object_new_boolean(pv.direct) : NULL);
	/* What the partner publishes; null before a record of it was read, 0
	 * for a partner of the older layout (it publishes none). */
	json_object_object_add(mbox, "partner_lease_ms",
			       pv.seen ? json_object_new_int64(pv.rec.lease_ms) : NULL);
	json_object_object_add(mbox, "partner_fence_margin_ms",
			       pv.seen ? json_object_new_int64(pv.rec.fence_margin_ms) : NULL);
	json_object_object_add(
	    mbox, "partner_reads_direct",
	    pv.seen && pv.rec.lease_ms ? json_object_new_boolean(pv.rec.mbox_direct) : NULL);
	json_object_object_add(
	    mbox, "fence_wait_ms",
	    json_object_new_int64((int64_t)(m->booted ? monitor_ha_fence_wait_ms(&m->ha, &in)
						      : m->hcfg.fence_wait_ms)));
	json_object_object_add(mbox, "partner",
			       json_object_new_string(!m->has_partner_mailbox ? "not configured"
						      : in.mbox_rc < 0 ? strerror(-in.mbox_rc)
								       : "ok"));
	jobj_add_age(mbox, "partner_change_age_ms", in.mbox_change_age_ms, HA_NEVER);
	jobj_add_age(mbox, "partner_silent_ms", in.mbox_seen ? in.mbox_silent_ms : HA_NEVER,
		     HA_NEVER);
	json_object_object_add(ha, "mailbox", mbox);
	json_object_object_add(ha, "partner_seen_since_boot",
			       json_object_new_boolean(m->booted && m->ha.partner_seen));
	json_object_object_add(ha, "mark_gen", json_object_new_int64((int64_t)m->ha.mark_gen));
	json_object_object_add(ha, "io_allowed", json_object_new_boolean(monitor_io_allowed(m)));
	json_object_object_add(progress, "done_bytes",
			       json_object_new_int64((int64_t)m->progress_done));
	json_object_object_add(progress, "total_bytes",
			       json_object_new_int64((int64_t)m->progress_total));
	json_object_object_add(ha, "progress", progress);
}
