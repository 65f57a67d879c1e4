/* The load meter and the balance policy: pure functions over sampled
 * counters and timestamps, so that every scenario is a unit test
 * (tests/unit/test_balance.c).
 *
 * Rule kept: only the node over the threshold decides, and it only moves a
 * volume that leaves the partner at most halfway from even to the
 * threshold, so that no move ever makes the partner the one over it (no
 * volume goes back and forth); the window restarts at every move, and the
 * pair's moves are spaced by min_interval_s. */
#include "balance/balance.h"

#include <errno.h>
#include <math.h>
#include <string.h>

void balance_opts_init(struct balance_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->enabled = false;
	o->imbalance_milli = 2000;
	o->window_s = 30;
	o->min_interval_s = 300;
}

double balance_units(const struct balance_load *l)
{
	return l->req_s + l->bytes_s / BALANCE_BYTES_PER_UNIT;
}

/* ---- the meter ---- */

/* The volume names of the store: [A-Za-z0-9._-], not starting with '.'. */
static bool name_ok(const char *s, size_t max)
{
	size_t i;

	if (!s[0] || s[0] == '.')
		return false;
	for (i = 0; i < max && s[i]; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '-' || c == '_'))
			return false;
	}
	return i < max;
}

void balance_meter_begin(struct balance_meter *m)
{
	for (unsigned i = 0; i < m->n; i++)
		m->v[i].seen = false;
}

int balance_meter_sample(struct balance_meter *m, const char *name, uint64_t requests,
			 uint64_t bytes, bool movable)
{
	struct balance_vol *v = NULL;

	if (!name_ok(name, BALANCE_NAME_MAX))
		return -EINVAL;
	/* From where the last one was found: the node samples its volumes in
	 * the same order each tick, so this is one comparison in the usual
	 * case, not a scan. */
	for (unsigned k = 0; k < m->n; k++) {
		unsigned i = (m->cursor + k) % m->n;
		if (strcmp(m->v[i].name, name) == 0) {
			v = &m->v[i];
			break;
		}
	}
	if (v)
		m->cursor = (unsigned)(v - m->v) + 1;
	if (v && v->seen)
		return -EEXIST;
	if (!v) {
		if (m->n == BALANCE_MAX_VOLS)
			return -ENOSPC;
		v = &m->v[m->n++];
		memset(v, 0, sizeof(*v));
		strcpy(v->name, name);
	} else if (requests >= v->last_req && bytes >= v->last_bytes) {
		v->d_req = requests - v->last_req;
		v->d_bytes = bytes - v->last_bytes;
		v->primed = true;
	} else {
		/* Opened again: its counters started over; this tick counts nothing. */
		v->d_req = v->d_bytes = 0;
		v->primed = false;
	}
	v->last_req = requests;
	v->last_bytes = bytes;
	v->seen = true;
	v->movable = movable;
	return 0;
}

void balance_meter_end(struct balance_meter *m, uint64_t dt_ms)
{
	double dt = (double)(dt_ms ? dt_ms : 1) / 1000.0;
	unsigned j = 0;

	m->total.req_s = m->total.bytes_s = 0;
	for (unsigned i = 0; i < m->n; i++) {
		struct balance_vol *v = &m->v[i];
		if (!v->seen)
			continue; /* no longer served here */
		if (v->primed && !v->has_rate) {
			/* Its first full tick is its rate: a volume that just moved
			 * here shows its whole load at once, not after a ramp. */
			v->rate.req_s = (double)v->d_req / dt;
			v->rate.bytes_s = (double)v->d_bytes / dt;
			v->has_rate = true;
		} else if (v->primed) {
			v->rate.req_s += BALANCE_ALPHA * ((double)v->d_req / dt - v->rate.req_s);
			v->rate.bytes_s +=
			    BALANCE_ALPHA * ((double)v->d_bytes / dt - v->rate.bytes_s);
		}
		v->d_req = v->d_bytes = 0;
		m->total.req_s += v->rate.req_s;
		m->total.bytes_s += v->rate.bytes_s;
		if (j != i)
			m->v[j] = *v;
		j++;
	}
	m->n = j;
}

/* ---- the policy ---- */

const char *balance_verdict_name(enum balance_verdict v)
{
	static const char *const names[] = {
	    [BALANCE_OFF] = "off",
	    [BALANCE_NO_PARTNER] = "no-partner",
	    [BALANCE_EVEN] = "even",
	    [BALANCE_WAIT_WINDOW] = "over",
	    [BALANCE_WAIT_INTERVAL] = "over-interval",
	    [BALANCE_NO_CANDIDATE] = "over-no-candidate",
	    [BALANCE_MOVE] = "moving",
	};

	return (unsigned)v < sizeof(names) / sizeof(names[0]) && names[v] ? names[v] : "?";
}

void balance_note_move(struct balance_state *st, uint64_t now_ms)
{
	st->moved = true;
	st->last_move_ms = now_ms;
	st->over = false;
}

enum balance_verdict balance_decide(struct balance_state *st, const struct balance_opts *o,
				    uint64_t now_ms, double own, const double *partner,
				    const struct balance_cand *c, unsigned n,
				    struct balance_choice *out)
{
	double imb = (double)o->imbalance_milli / 1000.0;
	double hyst = (1.0 + imb) / 2.0; /* the partner after a move: at most this x own */
	double best = INFINITY;

	memset(out, 0, sizeof(*out));
	out->index = -1;
	out->own = own;
	out->partner = partner ? *partner : 0;
	if (!o->enabled || !partner || !isfinite(own) || !isfinite(*partner) || own < 0 ||
	    *partner < 0) {
		st->over = false;
		return o->enabled ? BALANCE_NO_PARTNER : BALANCE_OFF;
	}
	if (own < BALANCE_MIN_LOAD || own <= imb * *partner) {
		st->over = false;
		return BALANCE_EVEN;
	}
	if (!st->over) {
		st->over = true;
		st->over_since_ms = now_ms;
	}
	out->over_ms = now_ms - st->over_since_ms;
	if (out->over_ms < o->window_s * 1000)
		return BALANCE_WAIT_WINDOW;
	if (st->moved && now_ms - st->last_move_ms < o->min_interval_s * 1000)
		return BALANCE_WAIT_INTERVAL;
	for (unsigned i = 0; i < n; i++) {
		double l = c[i].load, oa = own - l, pa = *partner + l;
		if (!c[i].movable || !(l > 0) || !isfinite(l) || l >= own)
			continue;
		if (pa > hyst * oa)
			continue; /* would overshoot: the partner would be the loaded one */
		if (fabs(oa - pa) < best) {
			best = fabs(oa - pa);
			out->index = (int)i;
			out->own_after = oa;
			out->partner_after = pa;
		}
	}
	return out->index >= 0 ? BALANCE_MOVE : BALANCE_NO_CANDIDATE;
}
