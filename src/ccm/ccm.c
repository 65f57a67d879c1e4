/* The CCM object: its options, creation, start, reset, shutdown and
 * destruction, the periodic tick and the deferred work.
 *
 * The rule it keeps: what acts on the whole CCM (ending a session,
 * re-issuing parked operations, kicking every channel, sending acks,
 * delivering partner_ready, reaping clients) never runs inside a fabric
 * callback. The other files set a flag and call ccm_schedule() or
 * ccm_request_terminate(); the work task here runs it once the callback
 * chain has unwound. Status and its JSON form are in status.c. */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

	uint64_t now = loop_now_ns();

	if (ccm->state == ST_STOPPING)
		return;
	/* A tick much later than due: the reactor stalled (a blocking libfabric
	 * call, a reopen, an overloaded host); probes were not posted. */
	if (ccm->tick_due_ns && now > ccm->tick_due_ns + ccm->probe_ns)
		ccm->stall_seen_ns = now;
	ccm->tick_due_ns = now + ccm->probe_ns;
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
	ccm_inst_failover(ccm);
	if (ccm->tick_count % 50 == 0)
		ccm_inst_rebalance(ccm);
	if (ccm->pending_ops)
		ccm->drain_pending = true;
	ccm_schedule(ccm);
	loop_timer_arm(ccm->loop, &ccm->tick, ccm->probe_ns);
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
	o->probe_ms = 20;
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
	ccm->probe_ns = opts->probe_ms * NS_PER_MS;
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
		rc = util_random_bytes(&ccm->gen, sizeof(ccm->gen));
		if (rc < 0)
			goto fail;
	}
	for (unsigned i = 0; i < CCM_MAX_INSTANCES; i++)
		slist_init(&ccm->inst[i].pend);
	for (unsigned i = 0; i < ccm->n_inst; i++)
		ccm->inst[i].idx = i;
	slist_init(&ccm->held);
	list_init(&ccm->acks);
	list_init(&ccm->acks_late);
	for (unsigned i = 0; i < ccm->n_links; i++) {
		struct ccm_link *l = &ccm->links[i];
		struct ccm_inst *in = &ccm->inst[i % ccm->n_inst];
		l->ccm = ccm;
		l->idx = i;
		l->inst = i % ccm->n_inst;
		ccm_put_str(l->name, opts->links[i].name, sizeof(l->name));
		l->last_change_ns = loop_now_ns();
		in->links[in->n_links++] = i;
	}
	ccm_lane_init(ccm);
	ccm_hs_init(ccm);
	ccm_chan_init(&ccm->ctl, ccm, NULL);
	loop_timer_init(&ccm->tick, tick_cb, ccm);
	loop_timer_init(&ccm->work, work_cb, ccm);
	loop_timer_init(&ccm->ack_timer, ccm_chan_acks_late_fire, ccm);
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
	loop_timer_arm(ccm->loop, &ccm->tick, ccm->probe_ns);
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
	if (busy && loop_now_ns() < ccm->shutdown_deadline_ns) {
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
	ccm->shutdown_deadline_ns = loop_now_ns() + 200 * NS_PER_MS;
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
	loop_timer_cancel(ccm->loop, &ccm->ack_timer);
	loop_timer_cancel(ccm->loop, &ccm->hs_timer);
	for (unsigned i = 0; i < ccm->n_links; i++)
		loop_timer_cancel(ccm->loop, &ccm->links[i].deadline);
	for (unsigned i = 0; i < CCM_MAX_CLIENTS; i++) {
		struct ccm_client *c = ccm->clients[i];
		if (!c)
			continue;
		ccm_client_free(ccm, i);
	}
	ccm_chan_free(&ccm->ctl);
	ccm_mac_free(ccm);
	free(ccm->boot);
	free(ccm->slot);
	free(ccm->sess);
	ccm_wipe_keys(ccm);
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
