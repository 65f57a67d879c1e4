/* Announcing a service address that moved here: a gratuitous ARP (IPv4) or
 * an unsolicited neighbour advertisement (IPv6) from the interface that now
 * holds it, so that neighbours' caches point at this host at once instead
 * of after their entries age out (RFC 5227 section 3, RFC 4861 7.2.6).
 *
 * Rule kept: frames are built by pure functions (netaddr_arp_build,
 * netaddr_na_build) that the unit test reads; the sockets live only for the
 * length of one call. */
#define LOG_MODULE "netaddr"
#include "netaddr/netaddr_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"

size_t netaddr_arp_build(uint8_t *b, int op, const uint8_t mac[6], const uint8_t ip4[4])
{
	/* htype 1 (ethernet), ptype 0x0800, hlen 6, plen 4, op; sender and
	 * target protocol addresses both the announced one. */
	b[0] = 0;
	b[1] = 1;
	b[2] = 0x08;
	b[3] = 0x00;
	b[4] = 6;
	b[5] = 4;
	b[6] = 0;
	b[7] = (uint8_t)op;
	memcpy(b + 8, mac, 6);
	memcpy(b + 14, ip4, 4);
	if (op == ARPOP_REPLY)
		memcpy(b + 18, mac, 6);
	else
		memset(b + 18, 0, 6);
	memcpy(b + 24, ip4, 4);
	return 28;
}

size_t netaddr_na_build(uint8_t *b, const uint8_t mac[6], const uint8_t ip6[16])
{
	memset(b, 0, 32);
	b[0] = ND_NEIGHBOR_ADVERT;
	b[1] = 0;    /* code; b[2..3] the checksum, the kernel's */
	b[4] = 0x20; /* override, not solicited, not a router */
	memcpy(b + 8, ip6, 16);
	b[24] = ND_OPT_TARGET_LINKADDR;
	b[25] = 1; /* length in units of 8 bytes */
	memcpy(b + 26, mac, 6);
	return 32;
}

static int if_mac(int fd, const char *ifname, uint8_t mac[6], int *ifindex)
{
	struct ifreq ifr;

	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0)
		return -errno;
	memcpy(mac, ifr.ifr_hwaddr.sa_data, 6);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0)
		return -errno;
	*ifindex = ifr.ifr_ifindex;
	return 0;
}

/* A packet socket for ARP on @p a's interface, its MAC in @p mac, and @p to
 * set to the interface's broadcast address (bound to the interface when
 * @p bound: the probe reads the answers on it). @return the fd or -errno. */
static int arp_socket(const struct netaddr *a, int flags, bool bound, uint8_t mac[6],
		      struct sockaddr_ll *to)
{
	int fd, ifindex, rc;

	fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | flags, htons(ETH_P_ARP));
	if (fd < 0)
		return -errno;
	rc = if_mac(fd, a->ifname, mac, &ifindex);
	if (rc < 0)
		goto fail;
	memset(to, 0, sizeof(*to));
	to->sll_family = AF_PACKET;
	to->sll_protocol = htons(ETH_P_ARP);
	to->sll_ifindex = ifindex;
	if (bound && bind(fd, (struct sockaddr *)to, sizeof(*to)) < 0) {
		rc = -errno;
		goto fail;
	}
	to->sll_halen = 6;
	memset(to->sll_addr, 0xff, 6);
	return fd;
fail:
	close(fd);
	return rc;
}

static int announce4(const struct netaddr *a)
{
	uint8_t pkt[28], mac[6];
	struct sockaddr_ll to;
	int fd, rc = 0;

	fd = arp_socket(a, 0, false, mac, &to);
	if (fd < 0)
		return fd;
	/* A request (what Linux's arping -U sends) and a reply (arping -A):
	 * neighbours differ in which one updates an entry they hold. */
	for (int op = ARPOP_REQUEST; op <= ARPOP_REPLY; op++) {
		netaddr_arp_build(pkt, op, mac, a->addr);
		if (sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
			rc = -errno;
			break;
		}
	}
	close(fd);
	return rc;
}

static int announce6(const struct netaddr *a)
{
	uint8_t pkt[32], mac[6];
	struct sockaddr_in6 to, from;
	int fd, ifindex, hops = 255, rc;

	fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6);
	if (fd < 0)
		return -errno;
	rc = if_mac(fd, a->ifname, mac, &ifindex);
	if (rc < 0)
		goto out;
	/* Neighbour discovery is accepted only with a hop limit of 255. */
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) < 0 ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) < 0) {
		rc = -errno;
		goto out;
	}
	memset(&from, 0, sizeof(from));
	from.sin6_family = AF_INET6;
	memcpy(&from.sin6_addr, a->addr, 16);
	if (bind(fd, (struct sockaddr *)&from, sizeof(from)) < 0) {
		rc = -errno;
		goto out;
	}
	memset(&to, 0, sizeof(to));
	to.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
	to.sin6_scope_id = (uint32_t)ifindex;
	netaddr_na_build(pkt, mac, a->addr);
	if (sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		rc = -errno;
out:
	close(fd);
	return rc;
}

int netaddr_probe_send(const struct netaddr *a)
{
	static const uint8_t zero4[4];
	uint8_t pkt[28], mac[6];
	struct sockaddr_ll to;
	int fd;

	if (a->family != AF_INET)
		return -EAFNOSUPPORT;
	fd = arp_socket(a, SOCK_NONBLOCK, true, mac, &to);
	if (fd < 0)
		return fd;
	netaddr_arp_build(pkt, ARPOP_REQUEST, mac, zero4);
	memset(pkt + 18, 0, 6);
	memcpy(pkt + 24, a->addr, 4); /* who has it? (sender 0.0.0.0) */
	if (sendto(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)&to, sizeof(to)) < 0) {
		int rc = -errno;

		close(fd);
		return rc;
	}
	return fd;
}

bool netaddr_arp_holder(const uint8_t *b, size_t len, const uint8_t ip4[4])
{
	/* Ethernet/IPv4 ARP only; the sender protocol address at 14..17. */
	if (len < 28 || b[0] != 0 || b[1] != 1 || b[2] != 0x08 || b[3] != 0 || b[4] != 6 ||
	    b[5] != 4)
		return false;
	return memcmp(b + 14, ip4, 4) == 0;
}

int netaddr_probe_answered(int fd, const struct netaddr *a)
{
	uint8_t b[64];
	struct sockaddr_ll from;
	socklen_t flen;
	ssize_t n;
	int seen = 0;

	for (;;) {
		flen = sizeof(from);
		n = recvfrom(fd, b, sizeof(b), 0, (struct sockaddr *)&from, &flen);
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? seen : -errno;
		/* Our own frames come back as PACKET_OUTGOING. */
		if (from.sll_pkttype == PACKET_OUTGOING)
			continue;
		if (netaddr_arp_holder(b, (size_t)n, a->addr)) /* the sender holds it */
			seen = 1;
	}
}

int netaddr_announce(const struct netaddr *a)
{
	if (a->family == AF_INET)
		return announce4(a);
	if (a->family == AF_INET6)
		return announce6(a);
	return -EINVAL;
}
