/* The load report a node sends its partner once a tick (layout in
 * balance.h). The decoder never trusts its input: the partner may be
 * broken or hostile, so every size, name and figure is checked, and a
 * report that fails any check is dropped whole (fuzzed by
 * tests/fuzz/fuzz_balance.c). */
#include "balance/balance.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/byteorder.h"

/* A rate for the wire: non-negative, whole, at most BALANCE_WIRE_LIMIT. */
static uint64_t wire_figure(double v)
{
	if (!(v > 0))
		return 0;
	if (v >= (double)BALANCE_WIRE_LIMIT)
		return BALANCE_WIRE_LIMIT;
	return (uint64_t)llround(v);
}

static int by_load_desc(const void *a, const void *b, void *arg)
{
	const struct balance_meter *m = arg;
	double la = balance_units(&m->v[*(const uint16_t *)a].rate);
	double lb = balance_units(&m->v[*(const uint16_t *)b].rate);

	return la < lb ? 1 : la > lb ? -1 : 0;
}

void balance_report_from_meter(const struct balance_meter *m, bool auto_on,
			       struct balance_report *r)
{
	uint16_t idx[BALANCE_MAX_VOLS];
	unsigned n = m->n < BALANCE_MAX_VOLS ? m->n : BALANCE_MAX_VOLS;

	memset(r, 0, sizeof(*r));
	r->auto_on = auto_on;
	r->total = m->total;
	for (unsigned i = 0; i < n; i++)
		idx[i] = (uint16_t)i;
	qsort_r(idx, n, sizeof(idx[0]), by_load_desc, (void *)m);
	for (unsigned i = 0; i < n && r->n < BALANCE_WIRE_VOLS; i++) {
		const struct balance_vol *v = &m->v[idx[i]];
		memcpy(r->v[r->n].name, v->name, sizeof(v->name));
		r->v[r->n].load = v->rate;
		r->n++;
	}
}

size_t balance_report_encode(const struct balance_report *r, uint8_t *buf)
{
	unsigned n = r->n < BALANCE_WIRE_VOLS ? r->n : BALANCE_WIRE_VOLS;
	uint8_t *e = buf + BALANCE_WIRE_HDR;

	memset(buf, 0, BALANCE_WIRE_HDR + (size_t)n * BALANCE_WIRE_ENTRY);
	put_le32(buf, BALANCE_MAGIC);
	put_le16(buf + 4, BALANCE_VERSION);
	put_le16(buf + 6, r->auto_on ? BALANCE_F_AUTO : 0);
	put_le16(buf + 8, (uint16_t)n);
	put_le64(buf + 16, wire_figure(r->total.req_s * 1000.0));
	put_le64(buf + 24, wire_figure(r->total.bytes_s));
	for (unsigned i = 0; i < n; i++, e += BALANCE_WIRE_ENTRY) {
		size_t len = strnlen(r->v[i].name, BALANCE_NAME_MAX - 1);
		memcpy(e, r->v[i].name, len);
		put_le64(e + 64, wire_figure(r->v[i].load.req_s * 1000.0));
		put_le64(e + 72, wire_figure(r->v[i].load.bytes_s));
	}
	return BALANCE_WIRE_HDR + (size_t)n * BALANCE_WIRE_ENTRY;
}

/* A name field: [A-Za-z0-9._-]+ not starting with '.', then only NULs. */
static bool wire_name_ok(const uint8_t *p)
{
	size_t len = strnlen((const char *)p, BALANCE_NAME_MAX);

	if (len == 0 || len == BALANCE_NAME_MAX || p[0] == '.')
		return false;
	for (size_t i = 0; i < BALANCE_NAME_MAX; i++) {
		uint8_t c = p[i];
		if (i >= len ? c != 0
			     : !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				 (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* Two figures at @p p (requests/s x 1000, bytes/s), each within the limit. */
static bool wire_load(const uint8_t *p, struct balance_load *l)
{
	uint64_t req = get_le64(p), bytes = get_le64(p + 8);

	if (req > BALANCE_WIRE_LIMIT || bytes > BALANCE_WIRE_LIMIT)
		return false;
	l->req_s = (double)req / 1000.0;
	l->bytes_s = (double)bytes;
	return true;
}

int balance_report_decode(const void *buf, size_t len, struct balance_report *r)
{
	const uint8_t *p = buf, *e;
	unsigned flags, n;

	memset(r, 0, sizeof(*r));
	if (len < BALANCE_WIRE_HDR || get_le32(p) != BALANCE_MAGIC)
		return -EINVAL;
	if (get_le16(p + 4) != BALANCE_VERSION)
		return -EPROTO;
	flags = get_le16(p + 6);
	n = get_le16(p + 8);
	if ((flags & ~BALANCE_F_AUTO) || get_le16(p + 10) || get_le32(p + 12) ||
	    n > BALANCE_WIRE_VOLS || len != BALANCE_WIRE_HDR + (size_t)n * BALANCE_WIRE_ENTRY)
		return -EINVAL;
	if (!wire_load(p + 16, &r->total))
		return -EINVAL;
	r->auto_on = flags & BALANCE_F_AUTO;
	e = p + BALANCE_WIRE_HDR;
	for (unsigned i = 0; i < n; i++, e += BALANCE_WIRE_ENTRY) {
		if (!wire_name_ok(e) || !wire_load(e + 64, &r->v[i].load)) {
			memset(r, 0, sizeof(*r));
			return -EINVAL;
		}
		memcpy(r->v[i].name, e, BALANCE_NAME_MAX);
		r->n = i + 1;
	}
	return 0;
}
