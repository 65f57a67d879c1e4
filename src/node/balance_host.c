/* Automatic balance on load, wired into the node: the I/O around the pure
 * meter and policy of src/balance (docs/RELOCATION.md, "Automatic
 * balance").
 *
 * Once a tick (BALANCE_TICK_MS) the meter samples the datapath counters of
 * every volume served here (the own shelf's and the partner shelf's
 * relocated here; not those away or leaving), the node sends its report
 * (total and busiest volumes) to the partner as one message of the CCM
 * client "balance", and, with [balance] auto = on, the policy decides on
 * the own total against the partner's last report. A report older than
 * PARTNER_STALE_TICKS ticks, a session down, a takeover or a relocation in
 * progress: no decision (and the window starts again). A move is
 * node_reloc_start(), logged with the figures that caused it.
 *
 * Messages rather than a region the partner reads: a message arrives
 * whole (never torn by a concurrent update), authenticated by the CCM, and
 * its arrival is its freshness. A report that does not decode is dropped
 * and counted; the partner's load is then unknown, which moves nothing. */
#define LOG_MODULE "balance"
#include "node/node_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "balance/balance.h"
#include "ccm/ccm.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "nbd/nbd.h"

#define PARTNER_STALE_TICKS 3

struct node_balance {
	struct node *n;
	struct balance_opts o;
	struct balance_meter meter;
	struct balance_state st;
	struct loop_timer tick;
	uint64_t last_tick_ns;
	struct ccm_client *client;
	struct ccm_port *port; /* up, or NULL */
	struct balance_report partner;
	bool partner_valid;
	uint64_t partner_at_ns;
	uint64_t bad_reports; /* partner reports dropped */
	bool bad_logged;      /* since the last good one */
	uint64_t reloc_moves; /* node_reloc_activity's count at the last tick */
	enum balance_verdict verdict;
	const char *paused; /* why no decision is taken now, or NULL */
	struct balance_choice choice;
	uint64_t moves; /* started automatically from here */
	char last[320]; /* the last automatic move, with its figures */
	struct balance_report out;
	uint8_t buf[BALANCE_WIRE_MAX];
	struct balance_cand cand[BALANCE_MAX_VOLS];
};

/* ---- measuring ---- */

struct sample_ctx {
	struct node_balance *b;
	struct node_datapath *dp; /* NULL: the relocated volumes (ask relocate.c) */
};

static void sample_vol(void *arg, const char *name, const struct node_vol_stats *st)
{
	struct sample_ctx *sc = arg;
	struct node *n = sc->b->n;
	uint64_t req = 0;
	bool here = sc->dp ? node_datapath_vol_here(sc->dp, name) : node_reloc_owned_here(n, name);

	if (!here)
		return; /* away, leaving or not adopted: not served here */
	for (unsigned i = 0; i < NODE_OPS; i++)
		req += st->requests[i];
	balance_meter_sample(&sc->b->meter, name, req,
			     st->bytes[NBD_CMD_READ] + st->bytes[NBD_CMD_WRITE], true);
}

static void measure(struct node_balance *b, uint64_t dt_ms)
{
	struct node *n = b->n;
	struct sample_ctx sc = {.b = b, .dp = n->dp};

	balance_meter_begin(&b->meter);
	node_datapath_each_volume(n->dp, sample_vol, &sc);
	sc.dp = NULL;
	node_reloc_each_volume(n, sample_vol, &sc);
	balance_meter_end(&b->meter, dt_ms);
}

static void publish(struct node_balance *b)
{
	size_t len;
	int rc;

	if (!b->port)
		return;
	balance_report_from_meter(&b->meter, b->o.enabled, &b->out);
	len = balance_report_encode(&b->out, b->buf);
	rc = ccm_port_send(b->port, b->buf, len);
	if (rc < 0 && rc != -EAGAIN)
		LOG_DEBUG("cannot send the load report: %s", strerror(-rc));
}

/* ---- deciding ---- */

static bool partner_fresh(const struct node_balance *b, uint64_t now_ns)
{
	return b->port && b->partner_valid &&
	       now_ns - b->partner_at_ns <= PARTNER_STALE_TICKS * BALANCE_TICK_MS * NS_PER_MS;
}

/* Why the node takes no decision now, or NULL. */
static const char *paused_by(struct node_balance *b)
{
	struct node *n = b->n;
	uint64_t moves;

	if (n->fenced || n->taken_at_boot)
		return "taken over";
	if (n->pstore)
		return "serving the partner's volumes";
	if (node_reloc_activity(n, &moves))
		return "a relocation runs";
	if (!n->cfg.monitor.partner_shelf[0])
		return "no [monitor] partner_shelf";
	return NULL;
}

static void move(struct node_balance *b, uint64_t now_ms)
{
	struct node *n = b->n;
	const struct balance_choice *ch = &b->choice;
	const struct balance_vol *v = &b->meter.v[ch->index];
	struct balance_load p = b->partner.total;
	char err[160];
	int rc;

	balance_note_move(&b->st, now_ms); /* also when it fails: no retry each tick */
	snprintf(b->last, sizeof(b->last),
		 "%s to %s: own load %.1f (%.1f req/s, %.0f B/s) > %.3g x partner's %.1f "
		 "(%.1f req/s, %.0f B/s) for %llu s; the volume %.1f (%.1f req/s, %.0f B/s); "
		 "after: %.1f vs %.1f",
		 v->name, n->cfg.ic.partner, ch->own, b->meter.total.req_s, b->meter.total.bytes_s,
		 (double)b->o.imbalance_milli / 1000.0, ch->partner, p.req_s, p.bytes_s,
		 (unsigned long long)(ch->over_ms / 1000), ch->own - ch->own_after, v->rate.req_s,
		 v->rate.bytes_s, ch->own_after, ch->partner_after);
	rc = node_reloc_start(n, v->name, err, sizeof(err));
	if (rc < 0) {
		LOG_WARN("automatic balance: cannot relocate %s: %s", b->last, err);
		snprintf(b->last + strlen(b->last), sizeof(b->last) - strlen(b->last),
			 " (refused: %s)", err);
		return;
	}
	b->moves++;
	LOG_INFO("automatic balance: relocating %s", b->last);
}

static void decide(struct node_balance *b, uint64_t now_ns)
{
	uint64_t now_ms = now_ns / NS_PER_MS, moves = 0;
	double own = balance_units(&b->meter.total), partner;
	unsigned n = b->meter.n;

	/* Any relocation of the pair (either way, automatic or not) is a move:
	 * the partner's reach us as adoptions. */
	node_reloc_activity(b->n, &moves);
	if (moves != b->reloc_moves) {
		b->reloc_moves = moves;
		balance_note_move(&b->st, now_ms);
	}
	b->paused = b->o.enabled ? paused_by(b) : NULL;
	if (!b->o.enabled || b->paused) {
		b->st.over = false;
		b->verdict = b->o.enabled ? BALANCE_NO_PARTNER : BALANCE_OFF;
		return;
	}
	for (unsigned i = 0; i < n; i++) {
		b->cand[i].load = balance_units(&b->meter.v[i].rate);
		b->cand[i].movable = b->meter.v[i].movable;
	}
	partner = balance_units(&b->partner.total);
	b->verdict =
	    balance_decide(&b->st, &b->o, now_ms, own, partner_fresh(b, now_ns) ? &partner : NULL,
			   b->cand, n, &b->choice);
	if (b->verdict == BALANCE_MOVE)
		move(b, now_ms);
}

static void tick_fire(struct loop_timer *t)
{
	struct node_balance *b = t->arg;
	uint64_t now = loop_now_ns();

	measure(b, (now - b->last_tick_ns) / NS_PER_MS);
	b->last_tick_ns = now;
	publish(b);
	decide(b, now);
	loop_timer_arm(b->n->loop, &b->tick, BALANCE_TICK_MS * NS_PER_MS);
}

/* ---- the partner's reports ---- */

static void bal_port_up(struct ccm_port *p, void *arg)
{
	struct node_balance *b = arg;

	b->port = p;
	b->partner_valid = false;
}

static void bal_port_down(struct ccm_port *p, void *arg)
{
	struct node_balance *b = arg;

	(void)p;
	b->port = NULL;
	b->partner_valid = false;
}

static void bal_message(struct ccm_port *p, const void *msg, size_t len, void *arg)
{
	struct node_balance *b = arg;
	int rc;

	(void)p;
	rc = balance_report_decode(msg, len, &b->partner);
	if (rc < 0) {
		b->partner_valid = false;
		b->bad_reports++;
		if (!b->bad_logged)
			LOG_WARN("the partner's load report is unusable (%zu bytes: %s): dropped, "
				 "its load unknown",
				 len, strerror(-rc));
		b->bad_logged = true;
		return;
	}
	b->bad_logged = false;
	b->partner_valid = true;
	b->partner_at_ns = loop_now_ns();
}

static const struct ccm_client_ops bal_ops = {
    .port_up = bal_port_up,
    .port_down = bal_port_down,
    .message = bal_message,
};

/* ---- life, status ---- */

int node_balance_create(struct node *n)
{
	struct ccm_client_spec spec = {
	    .name = "balance",
	    .n_ports = 1,
	    .port_mem = 0,
	    .ops = &bal_ops,
	};
	struct node_balance *b = calloc(1, sizeof(*b));
	int rc;

	if (!b)
		return -ENOMEM;
	b->n = n;
	config_balance_opts(&n->cfg, &b->o);
	b->verdict = b->o.enabled ? BALANCE_NO_PARTNER : BALANCE_OFF;
	loop_timer_init(&b->tick, tick_fire, b);
	if (n->ccm) {
		spec.arg = b;
		rc = ccm_client_register(n->ccm, &spec, &b->client);
		if (rc < 0) {
			LOG_ERROR("cannot register the balance client with the CCM: %s",
				  strerror(-rc));
			free(b);
			return rc;
		}
	}
	b->last_tick_ns = loop_now_ns();
	loop_timer_arm(n->loop, &b->tick, BALANCE_TICK_MS * NS_PER_MS);
	n->balance = b;
	if (b->o.enabled && !n->cfg.monitor.partner_shelf[0])
		LOG_WARN("[balance] auto = on without [monitor] partner_shelf: nothing can move");
	else if (b->o.enabled)
		LOG_INFO("automatic balance on: imbalance %.3g, window %llu s, min interval %llu s",
			 (double)b->o.imbalance_milli / 1000.0, (unsigned long long)b->o.window_s,
			 (unsigned long long)b->o.min_interval_s);
	return 0;
}

void node_balance_destroy(struct node *n)
{
	struct node_balance *b = n->balance;

	if (!b)
		return;
	loop_timer_cancel(n->loop, &b->tick);
	if (b->client)
		ccm_client_unregister(b->client);
	free(b);
	n->balance = NULL;
}

static struct json_object *load_json(const struct balance_load *l)
{
	struct json_object *o = json_object_new_object();

	jobj_add_double(o, "units", balance_units(l));
	jobj_add_double(o, "req_s", l->req_s);
	jobj_add_double(o, "bytes_s", l->bytes_s);
	return o;
}

void node_balance_status_json(struct node *n, struct json_object *root)
{
	struct node_balance *b = n->balance;
	struct json_object *o, *vols, *pl;
	uint64_t now = loop_now_ns();

	if (!b)
		return;
	o = json_object_new_object();
	jobj_add_bool(o, "auto", b->o.enabled);
	jobj_add_double(o, "imbalance", (double)b->o.imbalance_milli / 1000.0);
	jobj_add_u64(o, "window_s", b->o.window_s);
	jobj_add_u64(o, "min_interval_s", b->o.min_interval_s);
	jobj_add_str(o, "state", b->paused ? "paused" : balance_verdict_name(b->verdict));
	if (b->paused)
		jobj_add_str(o, "paused_by", b->paused);
	jobj_add_u64(o, "over_ms", b->st.over ? now / NS_PER_MS - b->st.over_since_ms : 0);
	json_object_object_add(o, "own_load", load_json(&b->meter.total));
	if (partner_fresh(b, now)) {
		pl = load_json(&b->partner.total);
		jobj_add_bool(pl, "auto", b->partner.auto_on);
		jobj_add_u64(pl, "age_ms", (now - b->partner_at_ns) / NS_PER_MS);
		vols = json_object_new_array();
		for (unsigned i = 0; i < b->partner.n; i++) {
			struct json_object *v = load_json(&b->partner.v[i].load);
			jobj_add_str(v, "name", b->partner.v[i].name);
			json_object_array_add(vols, v);
		}
		json_object_object_add(pl, "volumes", vols);
		json_object_object_add(o, "partner_load", pl);
	} else {
		json_object_object_add(o, "partner_load", NULL);
	}
	jobj_add_u64(o, "bad_reports", b->bad_reports);
	jobj_add_u64(o, "moves", b->moves);
	jobj_add_str(o, "last", b->last);
	vols = json_object_new_array();
	for (unsigned i = 0; i < b->meter.n; i++) {
		struct json_object *v = load_json(&b->meter.v[i].rate);
		jobj_add_str(v, "name", b->meter.v[i].name);
		json_object_array_add(vols, v);
	}
	json_object_object_add(o, "volumes", vols);
	json_object_object_add(root, "balance", o);
}

void node_balance_figures(struct node *n, double *own, double *partner, uint64_t *moves)
{
	struct node_balance *b = n->balance;

	*own = b ? balance_units(&b->meter.total) : 0;
	*partner = b && partner_fresh(b, loop_now_ns()) ? balance_units(&b->partner.total) : -1;
	*moves = b ? b->moves : 0;
}
