/*
 * libFuzzer target for the partner's load report (src/balance/wire.c): any
 * bytes the partner sends on the "balance" CCM client. A report that
 * decodes must hold only valid names and bounded figures, and encode back
 * to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "balance/balance.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct balance_report r;
	static uint8_t out[BALANCE_WIRE_MAX];

	if (balance_report_decode(data, size, &r) < 0)
		return 0;
	if (r.n > BALANCE_WIRE_VOLS || !(r.total.req_s >= 0) || !(r.total.bytes_s >= 0))
		abort();
	for (unsigned i = 0; i < r.n; i++) {
		if (!r.v[i].name[0] || strnlen(r.v[i].name, BALANCE_NAME_MAX) == BALANCE_NAME_MAX)
			abort();
	}
	if (balance_report_encode(&r, out) != size || memcmp(out, data, size) != 0)
		abort();
	return 0;
}
