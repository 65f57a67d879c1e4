/*
 * Allow lists of networks ([nbd] allow = CIDR, ...): a pure parser and a
 * matcher, no state, so that the config check, the listener and the
 * fuzzer all use the same code.
 *
 * Rule kept: a list that parses allows nothing it does not say (host bits
 * past the prefix are an error rather than silently masked), and an IPv4
 * client on a dual-stack listener (::ffff:a.b.c.d) matches IPv4 networks.
 */
#include "nbd/nbd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define ENTRY_MAX 64 /* longest entry: an IPv6 address and "/128" fit */

/* Parse one "ADDR[/PREFIX]" entry. @return 0 or -EINVAL with @p err. */
static int parse_net(const char *tok, struct nbd_allow_net *n, char *err, size_t errlen)
{
	char buf[ENTRY_MAX];
	char *slash;
	unsigned bits, full;

	snprintf(buf, sizeof(buf), "%s", tok);
	slash = strchr(buf, '/');
	if (slash)
		*slash = '\0';
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, buf, n->addr) == 1) {
		n->family = AF_INET;
		full = 32;
	} else if (inet_pton(AF_INET6, buf, n->addr) == 1) {
		n->family = AF_INET6;
		full = 128;
	} else {
		snprintf(err, errlen, "'%s' is not an IPv4 or IPv6 address", tok);
		return -EINVAL;
	}
	bits = full;
	if (slash) {
		const char *p = slash + 1;
		char *end;
		unsigned long v;

		if (*p < '0' || *p > '9') {
			snprintf(err, errlen, "'%s': prefix length is not a number", tok);
			return -EINVAL;
		}
		v = strtoul(p, &end, 10);
		if (*end || v > full || end - p > 3) {
			snprintf(err, errlen, "'%s': prefix length must be 0..%u", tok, full);
			return -EINVAL;
		}
		bits = (unsigned)v;
	}
	n->prefix = bits;
	for (unsigned i = bits; i < full; i++) {
		if (n->addr[i / 8] & (0x80u >> (i % 8))) {
			snprintf(err, errlen, "'%s' has host bits set past /%u", tok, bits);
			return -EINVAL;
		}
	}
	return 0;
}

int nbd_allow_parse(const char *s, struct nbd_allow *out, char *err, size_t errlen)
{
	const char *p = s ? s : "";

	memset(out, 0, sizeof(*out));
	if (errlen)
		err[0] = '\0';
	for (;;) {
		char tok[ENTRY_MAX];
		size_t len;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		len = strcspn(p, " \t,");
		if (len >= sizeof(tok)) {
			snprintf(err, errlen, "entry '%.20s...' is too long", p);
			return -EINVAL;
		}
		memcpy(tok, p, len);
		tok[len] = '\0';
		p += len;
		if (out->n == NBD_ALLOW_MAX) {
			snprintf(err, errlen, "more than %u networks", NBD_ALLOW_MAX);
			return -EINVAL;
		}
		if (parse_net(tok, &out->nets[out->n], err, errlen) < 0)
			return -EINVAL;
		out->n++;
	}
	return 0;
}

static bool prefix_eq(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned bytes = bits / 8, rest = bits % 8;

	if (memcmp(a, b, bytes) != 0)
		return false;
	if (rest) {
		uint8_t mask = (uint8_t)(0xffu << (8 - rest));
		return (a[bytes] & mask) == (b[bytes] & mask);
	}
	return true;
}

static bool match_family(const struct nbd_allow *a, int family, const uint8_t *addr)
{
	for (unsigned i = 0; i < a->n; i++)
		if (a->nets[i].family == family &&
		    prefix_eq(a->nets[i].addr, addr, a->nets[i].prefix))
			return true;
	return false;
}

/* An IPv4 client on a dual-stack listener (::ffff:a.b.c.d) matches the
 * IPv4 networks, and the IPv6 ones that cover its mapped address. */
bool nbd_allow_match(const struct nbd_allow *a, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (a->n == 0)
		return true;
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET)
		return match_family(
		    a, AF_INET,
		    (const uint8_t *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr);
	if (sa->sa_family == AF_INET6) {
		const uint8_t *v6 =
		    ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
		if (memcmp(v6, mapped, sizeof(mapped)) == 0 && match_family(a, AF_INET, v6 + 12))
			return true;
		return match_family(a, AF_INET6, v6);
	}
	return false; /* UNIX sockets and the like: not a network client */
}
