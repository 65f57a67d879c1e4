/* libFuzzer target of the [nbd] allow parser (src/nbd/allow.c): any bytes
 * as the list text; a list that parses is matched against addresses made
 * of the same bytes, and its networks must hold what the parser promises
 * (a known family, a prefix within it, no host bits past the prefix). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nbd/nbd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nbd_allow a;
	struct sockaddr_in v4 = {.sin_family = AF_INET};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
	char err[128];
	char *text;

	if (size > 4096)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (nbd_allow_parse(text, &a, err, sizeof(err)) == 0) {
		if (a.n > NBD_ALLOW_MAX)
			abort();
		for (unsigned i = 0; i < a.n; i++) {
			const struct nbd_allow_net *n = &a.nets[i];
			unsigned full = n->family == AF_INET ? 32 : 128;
			if ((n->family != AF_INET && n->family != AF_INET6) || n->prefix > full)
				abort();
			for (unsigned b = n->prefix; b < full; b++)
				if (n->addr[b / 8] & (0x80u >> (b % 8)))
					abort();
			/* The network's own address is in it. */
			if (n->family == AF_INET) {
				memcpy(&v4.sin_addr, n->addr, 4);
				if (!nbd_allow_match(&a, (struct sockaddr *)&v4))
					abort();
			} else {
				memcpy(&v6.sin6_addr, n->addr, 16);
				if (!nbd_allow_match(&a, (struct sockaddr *)&v6))
					abort();
			}
		}
	} else if (!memchr(err, '\0', sizeof(err)) || !err[0]) {
		abort(); /* every refusal says why */
	}
	if (size >= 16) {
		memcpy(&v6.sin6_addr, data, 16);
		nbd_allow_match(&a, (struct sockaddr *)&v6);
		memcpy(&v4.sin_addr, data, 4);
		nbd_allow_match(&a, (struct sockaddr *)&v4);
	}
	free(text);
	return 0;
}
