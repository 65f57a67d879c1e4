/*
 * libFuzzer target for the proxy wire (src/proxy/wire.c): the input is one
 * CCM message on a proxy port, as the partner (forwarder or server) sends
 * it: decoded as whatever type it claims, batches walked record by record,
 * every extent and volume entry read. The copy handed to the decoders is
 * exactly the input's length, so ASan sees any read past it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "proxy/proxy_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void one(const void *msg, size_t len)
{
	const char *why = NULL;
	struct pxm_hello h;
	struct pxm_req q;
	struct pxm_rep r;
	struct pxm_vols v;
	struct px_vol vol;

	switch (proxy_wire_msg_type(msg, len)) {
	case PX_HELLO:
		if (proxy_wire_decode_hello(msg, len, &h, &why) == 0)
			sink += h.data_size + h.chunk;
		break;
	case PX_REQ:
		if (proxy_wire_decode_req(msg, len, &q, &why) == 0 && q.data && q.length)
			sink += q.data[0] + q.data[q.length - 1];
		break;
	case PX_REP:
		if (proxy_wire_decode_rep(msg, len, &r, &why) == 0) {
			if ((r.flags & PX_F_INLINE) && r.length)
				sink += r.data[0] + r.data[r.length - 1];
			for (unsigned i = 0; i < r.count; i++) {
				uint64_t l;
				uint32_t f;
				proxy_wire_ext_get(&r, i, &l, &f);
				sink += l + f;
			}
		}
		break;
	case PX_VOLS:
		if (proxy_wire_decode_vols(msg, len, &v, &why) == 0)
			for (unsigned i = 0; i < v.count; i++)
				if (proxy_wire_vol_get(&v, i, &vol, &why) == 0)
					sink += strlen(vol.name);
		break;
	default:
		break;
	}
}

static void rec(void *arg, const void *m, size_t len)
{
	(void)arg;
	one(m, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *why = NULL;
	uint8_t *msg = malloc(size ? size : 1);

	if (!msg)
		return 0;
	memcpy(msg, data, size);
	if (proxy_wire_msg_type(msg, size) == PX_BATCH)
		proxy_wire_batch_walk(msg, size, rec, NULL, &why);
	else
		one(msg, size);
	for (size_t k = 0; k < 8 && k < size; k++)
		proxy_wire_name_ok((const char *)msg + k, size - k);
	free(msg);
	return 0;
}
