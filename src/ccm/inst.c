/* CCM instances (docs/CCM.md, "Instances"): the links are split into
 * instances, and every port is placed on one, where its traffic goes.
 * This file keeps the load of each instance (ours, and the partner's from
 * its session region) and decides placement and rebalancing; it only
 * reads lanes and ports and never posts anything, so it calls no other
 * file of the CCM. */
#define LOG_MODULE "ccm"
#include "ccm/ccm_int.h"
#include "common/log.h"

static uint64_t inst_load(const struct ccm *ccm, unsigned i)
{
	const struct ccm_inst *in = &ccm->inst[i];

	return in->rate + in->test_load + in->partner.bytes_per_sec;
}

/* One tick of a smoothed rate (7/8 old, 1/8 new) of a byte counter. */
static void rate_update(const struct ccm *ccm, uint64_t total, uint64_t *prev, uint64_t *rate)
{
	uint64_t d = total - *prev;
	uint64_t r = ccm->probe_ns ? d * NS_PER_S / ccm->probe_ns : 0;

	*prev = total;
	*rate = (*rate * 7 + r) / 8;
}

void ccm_inst_update_rates(struct ccm *ccm)
{
	for (unsigned i = 0; i < ccm->n_inst; i++) {
		struct ccm_inst *in = &ccm->inst[i];
		rate_update(ccm, in->bytes_total, &in->bytes_prev, &in->rate);
	}
	for (unsigned c = 0; c < CCM_MAX_CLIENTS; c++) {
		struct ccm_client *cl = ccm->clients[c];
		if (!cl || cl->dead)
			continue;
		for (unsigned p = 0; p < cl->n_ports; p++) {
			struct ccm_port *pt = &cl->ports[p];
			rate_update(ccm, pt->bytes_total, &pt->bytes_prev, &pt->rate);
		}
	}
}

static unsigned heavy_ports(const struct ccm *ccm, unsigned inst)
{
	unsigned n = 0;

	for (unsigned c = 0; c < CCM_MAX_CLIENTS; c++) {
		const struct ccm_client *cl = ccm->clients[c];
		if (!cl || cl->dead || !(cl->flags & CCM_CLIENT_HEAVY))
			continue;
		for (unsigned p = 0; p < cl->n_ports; p++)
			n += cl->ports[p].inst == inst;
	}
	return n;
}

/* Whether instance @p i has a link up. */
static bool inst_live(const struct ccm *ccm, unsigned i)
{
	const struct ccm_inst *in = &ccm->inst[i];

	for (unsigned k = 0; k < in->n_links; k++)
		if (ccm->links[in->links[k]].up)
			return true;
	return false;
}

/*
 * Where a new port goes: an instance with a link up if any (in a session),
 * else the instance with the least load (ours plus what the partner
 * publishes), skipping instances past ic.instance_max_load while another is
 * below it; ties go to the one with fewer ports. Heavy clients first avoid
 * instances that already carry a heavy port.
 */
unsigned ccm_inst_place(struct ccm *ccm, const struct ccm_client *c, unsigned idx)
{
	unsigned best = 0;
	bool heavy = c && (c->flags & CCM_CLIENT_HEAVY);
	bool up = ccm->state == ST_UP;

	(void)idx;
	for (unsigned i = 1; i < ccm->n_inst; i++) {
		uint64_t li = inst_load(ccm, i), lb = inst_load(ccm, best);
		bool oi = ccm->opts.instance_max_load && li > ccm->opts.instance_max_load;
		bool ob = ccm->opts.instance_max_load && lb > ccm->opts.instance_max_load;
		if (up && inst_live(ccm, i) != inst_live(ccm, best)) {
			if (inst_live(ccm, i))
				best = i;
			continue;
		}
		if (heavy) {
			unsigned hcur = heavy_ports(ccm, i), hbest = heavy_ports(ccm, best);
			if (hcur != hbest) {
				if (hcur < hbest)
					best = i;
				continue;
			}
		}
		if (oi != ob) {
			if (!oi)
				best = i;
			continue;
		}
		if (li < lb || (li == lb && ccm->inst[i].ports < ccm->inst[best].ports))
			best = i;
	}
	return best;
}

/* Whether instance @p i is below ic.instance_max_load (it may take a port). */
static bool inst_below_max(const struct ccm *ccm, unsigned i)
{
	return inst_load(ccm, i) < ccm->opts.instance_max_load;
}

/* The least-loaded instance other than @p except for which @p ok holds
 * (the first of equals), or ccm->n_inst when there is none. */
static unsigned least_loaded(const struct ccm *ccm, unsigned except,
			     bool (*ok)(const struct ccm *ccm, unsigned i))
{
	unsigned to = ccm->n_inst;

	for (unsigned j = 0; j < ccm->n_inst; j++)
		if (j != except && ok(ccm, j) &&
		    (to == ccm->n_inst || inst_load(ccm, j) < inst_load(ccm, to)))
			to = j;
	return to;
}

/* Port @p pt goes to instance @p to. */
static void port_move(struct ccm *ccm, struct ccm_port *pt, unsigned to)
{
	if (ccm->inst[pt->inst].ports)
		ccm->inst[pt->inst].ports--;
	ccm->inst[to].ports++;
	pt->inst = to;
	pt->ch.inst = to;
}

/* Once a second: an instance past the configured load gives its heaviest
 * port to the least-loaded instance below it. */
void ccm_inst_rebalance(struct ccm *ccm)
{
	if (!ccm->opts.instance_max_load || ccm->n_inst < 2 || ccm->state != ST_UP)
		return;
	for (unsigned i = 0; i < ccm->n_inst; i++) {
		struct ccm_port *heaviest = NULL;
		unsigned to;
		if (inst_load(ccm, i) <= ccm->opts.instance_max_load)
			continue;
		for (unsigned c = 0; c < CCM_MAX_CLIENTS; c++) {
			struct ccm_client *cl = ccm->clients[c];
			if (!cl || cl->dead)
				continue;
			for (unsigned p = 0; p < cl->n_ports; p++) {
				struct ccm_port *pt = &cl->ports[p];
				if (pt->inst == i && (!heaviest || pt->rate > heaviest->rate))
					heaviest = pt;
			}
		}
		if (!heaviest)
			continue;
		to = least_loaded(ccm, i, inst_below_max);
		if (to == ccm->n_inst)
			continue;
		LOG_INFO("instance %u carries %llu B/s (> %llu): port %s/%u moves to instance %u",
			 i, (unsigned long long)inst_load(ccm, i),
			 (unsigned long long)ccm->opts.instance_max_load, heaviest->client->name,
			 heaviest->idx, to);
		heaviest->home = 0;
		port_move(ccm, heaviest, to);
		return;
	}
}

#define INST_BACK_NS (1000 * NS_PER_MS) /* links up this long: ports come back */

/* Move the ports on @p from (all of them, or those whose home it is: @p
 * home) to @p to. @return how many moved. */
static unsigned ports_move(struct ccm *ccm, unsigned from, unsigned to, bool home)
{
	unsigned moved = 0;

	for (unsigned c = 0; c < CCM_MAX_CLIENTS; c++) {
		struct ccm_client *cl = ccm->clients[c];
		if (!cl || cl->dead)
			continue;
		for (unsigned p = 0; p < cl->n_ports; p++) {
			struct ccm_port *pt = &cl->ports[p];
			if (home ? pt->home != from + 1 : pt->inst != from)
				continue;
			if (!home && !pt->home)
				pt->home = from + 1;
			if (home)
				pt->home = 0;
			port_move(ccm, pt, to);
			moved++;
		}
	}
	return moved;
}

/* Every tick, in a session: an instance whose links are all down after one
 * was up in this session (its interconnect device failed) gives every port it carries to the
 * least-loaded instance with a link up. Until then its traffic already
 * goes over any up lane (lane_rules.c, pick); this makes the placement, the
 * load accounting and new ports follow. The ports go back home once their
 * instance has had a link up for INST_BACK_NS (a link that flaps does not
 * move them back and forth faster than that). */
void ccm_inst_failover(struct ccm *ccm)
{
	uint64_t now = loop_now_ns();

	if (ccm->n_inst < 2 || ccm->state != ST_UP)
		return;
	for (unsigned i = 0; i < ccm->n_inst; i++) {
		struct ccm_inst *in = &ccm->inst[i];
		unsigned to, moved;
		if (inst_live(ccm, i)) {
			in->live_session = ccm->sessions;
			if (!in->live_since_ns)
				in->live_since_ns = now;
			if (now - in->live_since_ns < INST_BACK_NS)
				continue;
			moved = ports_move(ccm, i, i, true);
			if (moved)
				LOG_INFO(
				    "instance %u has had a link up for %llu ms: %u port%s back", i,
				    (unsigned long long)((now - in->live_since_ns) / NS_PER_MS),
				    moved, moved == 1 ? " comes" : "s come");
			continue;
		}
		in->live_since_ns = 0;
		/* Not yet up in this session (links come up one by one after
		 * it forms): not failed. */
		if (!in->ports || in->live_session != ccm->sessions)
			continue;
		to = least_loaded(ccm, i, inst_live);
		if (to == ccm->n_inst)
			return; /* no link up anywhere: the session deadline decides */
		moved = ports_move(ccm, i, to, false);
		LOG_WARN("instance %u has no link up: its %u port%s to instance %u", i, moved,
			 moved == 1 ? " moves" : "s move", to);
	}
}
