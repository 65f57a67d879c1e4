/* The node's metrics in Prometheus' text format (version 0.0.4), as served
 * on [metrics] listen's /metrics and by `duetctl metrics`.
 *
 * Rules kept: rendered on the reactor thread from the getters that
 * `duetctl status --json` reads (monitor, mirror, ccm, proxy, nbd, store),
 * plus the datapath's per-volume counters; every family comes with HELP
 * and TYPE lines and all its samples together; names follow drbd-reactor's
 * style ("duet_" then the part, counters ending in _total, base units:
 * bytes, seconds). docs/OPERATIONS.md lists them. */
#define LOG_MODULE "metrics"
#include "node/node_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ccm/ccm.h"
#include "common/util.h"
#include "mirror/mirror.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"
#include "store/store.h"

static const char *const op_names[NODE_OPS] = {
    [NBD_CMD_READ] = "read",
    [NBD_CMD_WRITE] = "write",
    [NBD_CMD_DISC] = NULL,
    [NBD_CMD_FLUSH] = "flush",
    [NBD_CMD_TRIM] = "trim",
    [NBD_CMD_CACHE] = "cache",
    [NBD_CMD_WRITE_ZEROES] = "write_zeroes",
    [NBD_CMD_BLOCK_STATUS] = "block_status",
};

/* A volume's counters with the labels that name it. */
struct mvol {
	char name[STORE_NAME_MAX]; /* a copy: the callback's is on its stack */
	const char *owner;
	const struct node_vol_stats *st;
};

struct mvols {
	struct mvol *v;
	size_t n, cap;
	const char *owner;
	int err;
};

static void family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value: backslash, double quote and newline escaped. */
static void label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '\\' || *s == '"')
			fputc('\\', f);
		if (*s == '\n')
			fputs("\\n", f);
		else
			fputc(*s, f);
	}
}

static void sample1(FILE *f, const char *name, const char *key, const char *val, uint64_t v)
{
	fprintf(f, "%s{%s=\"", name, key);
	label(f, val);
	fprintf(f, "\"} %llu\n", (unsigned long long)v);
}

static void scalar(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	family(f, name, type, help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

static void render_ha(FILE *f, struct node *n)
{
	struct monitor_summary s;
	const char *name;

	monitor_get_summary(n->monitor, &s);
	family(f, "duet_ha_state", "gauge", "1 for the node's HA state, 0 for the others.");
	for (unsigned i = 0; (name = monitor_state_name(i)) != NULL; i++)
		sample1(f, "duet_ha_state", "state", name, i == s.state_idx);
	family(f, "duet_ha_phase", "gauge",
	       "The phase inside the HA state, as a label (always 1).");
	sample1(f, "duet_ha_phase", "phase", s.phase, 1);
	scalar(f, "duet_ha_partner_alive", "gauge",
	       "1 while heartbeats of the partner arrive on at least one link.", s.partner_alive);
	scalar(f, "duet_ha_takeover_possible", "gauge",
	       "1 when a takeover of the partner would be allowed now.", s.takeover_possible);
	scalar(f, "duet_ha_takeovers_total", "counter",
	       "Takeovers of the partner this node started since it started.", s.takeovers);
	scalar(f, "duet_ha_givebacks_total", "counter",
	       "Givebacks to the partner this node completed since it started.", s.givebacks);
}

static void render_mirror(FILE *f, struct node *n)
{
	static const enum mirror_state states[] = {MIRROR_STATE_OFF, MIRROR_STATE_IN_SYNC,
						   MIRROR_STATE_DEGRADED, MIRROR_STATE_RESYNCING};
	struct mirror_status st;

	memset(&st, 0, sizeof(st));
	if (n->mirror)
		mirror_get_status(n->mirror, &st);
	family(f, "duet_mirror_state", "gauge",
	       "1 for the state of the mirror of this node's NVRAM log, 0 for the others.");
	for (size_t i = 0; i < ARRAY_SIZE(states); i++)
		sample1(f, "duet_mirror_state", "state", mirror_state_name(states[i]),
			st.state == states[i]);
	scalar(f, "duet_mirror_lag_bytes", "gauge",
	       "Logged bytes the partner's image of the log lacks.", st.lag_bytes);
	scalar(f, "duet_mirror_log_size_bytes", "gauge", "Size of the NVRAM log.", st.log_size);
	scalar(f, "duet_mirror_log_used_bytes", "gauge",
	       "Bytes of the NVRAM log in halves not yet freed by a consistency point.",
	       st.used_bytes);
	scalar(f, "duet_mirror_consistency_points_total", "counter",
	       "Consistency points (volumes synced, a log half freed).", st.checkpoints);
	scalar(f, "duet_mirror_records_total", "counter", "Records appended to the NVRAM log.",
	       st.records);
	scalar(f, "duet_mirror_record_bytes_total", "counter",
	       "Bytes of the records appended to the NVRAM log.", st.record_bytes);
	scalar(f, "duet_mirror_resyncs_total", "counter",
	       "Resynchronisations of the partner's image.", st.resyncs);
	scalar(f, "duet_mirror_space_waits_total", "counter",
	       "Writes that waited for space in the NVRAM log.", st.space_waits);
}

static void render_ccm(FILE *f, struct node *n)
{
	struct ccm_status *cs = calloc(1, sizeof(*cs));
	char id[16];

	if (!cs)
		return;
	if (n->ccm)
		ccm_get_status(n->ccm, cs);
	scalar(f, "duet_session_up", "gauge",
	       "1 while the interconnect session to the partner is up.",
	       cs->state == CCM_SESSION_UP);
	scalar(f, "duet_sessions_total", "counter", "Interconnect sessions formed.", cs->sessions);
	family(f, "duet_link_up", "gauge", "1 while the interconnect link is up.");
	for (unsigned i = 0; i < cs->n_links; i++)
		sample1(f, "duet_link_up", "link", cs->links[i].name, cs->links[i].up);
	family(f, "duet_link_rtt_seconds", "gauge", "Smoothed probe round trip of the link.");
	for (unsigned i = 0; i < cs->n_links; i++) {
		fprintf(f, "duet_link_rtt_seconds{link=\"");
		label(f, cs->links[i].name);
		fprintf(f, "\"} %.6f\n", (double)cs->links[i].rtt_us / 1e6);
	}
	family(f, "duet_link_bytes_total", "counter", "Bytes moved by operations on the link.");
	for (unsigned i = 0; i < cs->n_links; i++)
		sample1(f, "duet_link_bytes_total", "link", cs->links[i].name, cs->links[i].bytes);
	family(f, "duet_link_errors_total", "counter", "Operations that failed on the link.");
	for (unsigned i = 0; i < cs->n_links; i++)
		sample1(f, "duet_link_errors_total", "link", cs->links[i].name,
			cs->links[i].errors);
	family(f, "duet_link_resets_total", "counter", "Endpoint resets of the link.");
	for (unsigned i = 0; i < cs->n_links; i++)
		sample1(f, "duet_link_resets_total", "link", cs->links[i].name,
			cs->links[i].resets);
	family(f, "duet_ccm_instance_load_bytes", "gauge",
	       "Bytes per second this node moves through the CCM instance (smoothed).");
	for (unsigned i = 0; i < cs->n_instances; i++) {
		snprintf(id, sizeof(id), "%u", cs->instances[i].id);
		sample1(f, "duet_ccm_instance_load_bytes", "instance", id,
			cs->instances[i].bytes_per_sec);
	}
	family(f, "duet_ccm_instance_ops_inflight", "gauge",
	       "Operations in flight on the CCM instance.");
	for (unsigned i = 0; i < cs->n_instances; i++) {
		snprintf(id, sizeof(id), "%u", cs->instances[i].id);
		sample1(f, "duet_ccm_instance_ops_inflight", "instance", id,
			cs->instances[i].ops_inflight);
	}
	family(f, "duet_ccm_instance_ports", "gauge", "CCM ports placed on the instance.");
	for (unsigned i = 0; i < cs->n_instances; i++) {
		snprintf(id, sizeof(id), "%u", cs->instances[i].id);
		sample1(f, "duet_ccm_instance_ports", "instance", id, cs->instances[i].ports);
	}
	free(cs);
}

static void render_nbd(FILE *f, struct node *n)
{
	struct nbd_server_stats own, px;

	memset(&own, 0, sizeof(own));
	memset(&px, 0, sizeof(px));
	if (n->nbd)
		nbd_server_get_stats(n->nbd, &own);
	if (n->proxy_nbd)
		nbd_server_get_stats(n->proxy_nbd, &px);
	family(f, "duet_nbd_connections", "gauge", "NBD client connections open now.");
	sample1(f, "duet_nbd_connections", "listener", "own", own.connections);
	sample1(f, "duet_nbd_connections", "listener", "proxy", px.connections);
	family(f, "duet_nbd_accepted_total", "counter", "NBD client connections accepted.");
	sample1(f, "duet_nbd_accepted_total", "listener", "own", own.accepted);
	sample1(f, "duet_nbd_accepted_total", "listener", "proxy", px.accepted);
	family(f, "duet_nbd_protocol_errors_total", "counter",
	       "NBD connections dropped for bad input.");
	sample1(f, "duet_nbd_protocol_errors_total", "listener", "own", own.protocol_errors);
	sample1(f, "duet_nbd_protocol_errors_total", "listener", "proxy", px.protocol_errors);
	family(f, "duet_nbd_refused_total", "counter",
	       "NBD connections closed at accept: not in [nbd] allow.");
	sample1(f, "duet_nbd_refused_total", "listener", "own", own.refused);
	sample1(f, "duet_nbd_refused_total", "listener", "proxy", px.refused);
}

static void vol_collect(void *arg, const char *name, const struct node_vol_stats *st)
{
	struct mvols *vs = arg;

	if (vs->n == vs->cap) {
		size_t cap = vs->cap ? 2 * vs->cap : 16;
		struct mvol *v = realloc(vs->v, cap * sizeof(*v));
		if (!v) {
			vs->err = -ENOMEM;
			return;
		}
		vs->v = v;
		vs->cap = cap;
	}
	snprintf(vs->v[vs->n].name, sizeof(vs->v[vs->n].name), "%s", name);
	vs->v[vs->n].owner = vs->owner;
	vs->v[vs->n].st = st;
	vs->n++;
}

static void vol_labels(FILE *f, const char *metric, const struct mvol *v)
{
	fprintf(f, "%s{volume=\"", metric);
	label(f, v->name);
	fprintf(f, "\",owner=\"");
	label(f, v->owner);
	fputc('"', f);
}

static void vol_ops(FILE *f, const struct mvols *vs, const char *metric, const char *help,
		    size_t field)
{
	family(f, metric, "counter", help);
	for (size_t i = 0; i < vs->n; i++) {
		const uint64_t *arr = (const uint64_t *)((const char *)vs->v[i].st + field);
		for (unsigned op = 0; op < NODE_OPS; op++) {
			if (!op_names[op])
				continue;
			vol_labels(f, metric, &vs->v[i]);
			fprintf(f, ",op=\"%s\"} %llu\n", op_names[op], (unsigned long long)arr[op]);
		}
	}
}

static void render_volumes(FILE *f, struct node *n, struct mvols *vs)
{
	const char *h = "duet_volume_request_duration_seconds";

	vs->owner = n->cfg.node.id;
	node_datapath_each_volume(n->dp, vol_collect, vs);
	vs->owner = n->cfg.ic.partner;
	node_datapath_each_volume(n->partner_dp, vol_collect, vs);
	vol_ops(f, vs, "duet_volume_requests_total", "NBD requests completed on the volume.",
		offsetof(struct node_vol_stats, requests));
	vol_ops(f, vs, "duet_volume_bytes_total",
		"Bytes read or written by successful requests on the volume.",
		offsetof(struct node_vol_stats, bytes));
	vol_ops(f, vs, "duet_volume_errors_total", "NBD requests on the volume that failed.",
		offsetof(struct node_vol_stats, errors));
	family(f, h, "histogram",
	       "Time from a request's hand-over to the store to its completion.");
	for (size_t i = 0; i < vs->n; i++) {
		const struct node_vol_stats *st = vs->v[i].st;
		uint64_t cum = 0;
		for (unsigned b = 0; b <= NODE_LAT_BUCKETS; b++) {
			cum += st->lat[b];
			vol_labels(f, "duet_volume_request_duration_seconds_bucket", &vs->v[i]);
			if (b < NODE_LAT_BUCKETS)
				fprintf(f, ",le=\"%.10g\"} %llu\n",
					(double)((1ull << NODE_LAT_BASE_SHIFT) << (2 * b)) / 1e9,
					(unsigned long long)cum);
			else
				fprintf(f, ",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
		}
		vol_labels(f, "duet_volume_request_duration_seconds_sum", &vs->v[i]);
		fprintf(f, "} %.9f\n", (double)st->lat_sum_ns / 1e9);
		vol_labels(f, "duet_volume_request_duration_seconds_count", &vs->v[i]);
		fprintf(f, "} %llu\n", (unsigned long long)st->lat_count);
	}
}

static void render_proxy(FILE *f, struct node *n)
{
	struct proxy_stats ps;

	memset(&ps, 0, sizeof(ps));
	if (n->proxy)
		proxy_get_stats(n->proxy, &ps);
	scalar(f, "duet_proxy_commands_total", "counter",
	       "NBD commands taken from the proxy listener.", ps.commands);
	scalar(f, "duet_proxy_forwarded_total", "counter",
	       "Requests forwarded to the partner (a split command makes several).", ps.requests);
	scalar(f, "duet_proxy_retried_total", "counter",
	       "Forwarded requests sent again after a session loss.", ps.retries);
	scalar(f, "duet_proxy_refused_total", "counter",
	       "Forwarded requests the partner refused (not serving).", ps.refused);
	scalar(f, "duet_proxy_errors_total", "counter", "Proxied commands failed with an error.",
	       ps.errors);
	scalar(f, "duet_proxy_timeouts_total", "counter",
	       "Proxied commands failed by [proxy] timeout_ms.", ps.timeouts);
	scalar(f, "duet_proxy_inflight", "gauge", "Proxied commands waiting now.", ps.inflight);
	scalar(f, "duet_proxy_served_total", "counter",
	       "Requests of the partner's proxy executed here.", ps.served);
	scalar(f, "duet_proxy_served_refused_total", "counter",
	       "Requests of the partner's proxy refused here (not serving).", ps.served_refused);
}

static void render_store(FILE *f, struct node *n)
{
	struct store_stats ss;

	memset(&ss, 0, sizeof(ss));
	if (n->store)
		store_get_stats(n->store, &ss);
	scalar(f, "duet_store_queue_depth", "gauge",
	       "I/O handed to the store (own shelf) and not yet completed.",
	       n->store ? store_inflight(n->store) : 0);
	scalar(f, "duet_store_held_requests", "gauge",
	       "Requests held while the I/O lease is closed.", node_datapath_held(n->dp));
	scalar(f, "duet_store_flushes_total", "counter", "FLUSH requests completed by the store.",
	       ss.flushes);
	scalar(f, "duet_store_syncs_total", "counter", "fdatasync calls those FLUSHes ran.",
	       ss.syncs);
}

/* The automatic balance's figures (balance_host.c): load units per second
 * (one per request plus one per 64 KiB), the partner's while its report is
 * fresh. */
static void render_balance(FILE *f, struct node *n)
{
	double own, partner;
	uint64_t moves;

	node_balance_figures(n, &own, &partner, &moves);
	family(f, "duet_balance_load", "gauge",
	       "Load of the volumes served by a node, in units per second (one per request, one "
	       "per 64 KiB), as the automatic balance sees it.");
	fprintf(f, "duet_balance_load{node=\"own\"} %.3f\n", own);
	if (partner >= 0)
		fprintf(f, "duet_balance_load{node=\"partner\"} %.3f\n", partner);
	scalar(f, "duet_balance_moves_total", "counter",
	       "Relocations the automatic balance started from this node.", moves);
}

int node_metrics_render(struct node *n, char **out, size_t *len)
{
	struct mvols vs = {0};
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);

	if (!f)
		return -errno;
	family(f, "duet_node_info", "gauge", "The node's id and duet version (always 1).");
	fprintf(f, "duet_node_info{node=\"");
	label(f, n->cfg.node.id);
	fprintf(f, "\",partner=\"");
	label(f, n->cfg.ic.partner);
	fprintf(f, "\",version=\"%s\"} 1\n", DUET_VERSION);
	scalar(f, "duet_node_uptime_seconds", "gauge", "Seconds since the node started.",
	       (loop_now_ns() - n->started_ns) / 1000000000ull);
	scalar(f, "duet_node_realtime", "gauge",
	       "1 when the node's threads run at SCHED_RR ([node] realtime).",
	       util_realtime() ? 1 : 0);
	render_ha(f, n);
	render_mirror(f, n);
	render_ccm(f, n);
	render_nbd(f, n);
	render_volumes(f, n, &vs);
	render_proxy(f, n);
	render_store(f, n);
	render_balance(f, n);
	free(vs.v);
	if (fclose(f) != 0 || vs.err) {
		free(buf);
		return vs.err ? vs.err : -ENOMEM;
	}
	*out = buf;
	*len = size;
	return 0;
}
