/* libFuzzer target: the two parsers of src/netaddr that read outside
 * bytes: "ADDR/PREFIX dev IFACE" (a config value), an ARP frame from the
 * link (the answer to the takeover's probe) and the partner's
 * service-address record (a CCM message). Neither may crash, read past
 * its input or accept garbage; a parsed address formats and parses back to
 * itself. */
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "netaddr/netaddr_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t ip4[4] = {192, 0, 2, 10};
	struct netaddr a, b;
	char *s, buf[128], again[160];

	uint16_t np, pp;
	uint8_t rec[NETADDR_REC_SIZE];

	(void)netaddr_arp_holder(data, size, ip4);
	/* The partner's record: what decodes encodes back to the same bytes. */
	if (netaddr_service_decode(data, size, &a, &np, &pp) == 0 &&
	    (netaddr_service_encode(&a, np, pp, rec) != size || memcmp(rec, data, size) != 0))
		abort();
	s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (netaddr_parse(s, &a) == 0) {
		netaddr_format(&a, buf, sizeof(buf));
		snprintf(again, sizeof(again), "%s dev %s", buf, a.ifname);
		if (netaddr_parse(again, &b) != 0 || !netaddr_same(&a, &b) ||
		    a.prefix != b.prefix || strcmp(a.ifname, b.ifname) != 0)
			abort();
	}
	free(s);
	return 0;
}
