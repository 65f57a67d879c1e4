/* Service addresses: an IP address with its prefix on a named interface,
 * added, removed, looked up (rtnetlink through libmnl) and announced
 * (gratuitous ARP for IPv4, unsolicited neighbour advertisement for IPv6).
 *
 * Thread context: any thread; every call is synchronous and talks only to
 * the local kernel (a netlink round trip, a few raw-socket sends), so a
 * reactor may call it. No allocation is kept between calls. */
#ifndef DUET_NETADDR_H
#define DUET_NETADDR_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Longest "ADDR/PREFIX dev IFACE" the parser accepts. */
#define NETADDR_STR_MAX 96

struct netaddr {
	int family;		  /**< AF_INET or AF_INET6; 0 = not set */
	uint8_t addr[16];	  /**< network byte order; 4 bytes used for IPv4 */
	uint8_t prefix;		  /**< prefix length */
	char ifname[IF_NAMESIZE]; /**< the interface it lives on */
};

/**
 * Parse "ADDR/PREFIX dev IFACE" (ADDR IPv4 or IPv6; PREFIX optional: 32 or
 * 128 when left out). Returns 0 or -EINVAL; never reads past @p s's NUL.
 */
int netaddr_parse(const char *s, struct netaddr *out);
/** "ADDR/PREFIX" into @p buf; returns @p buf. */
const char *netaddr_format(const struct netaddr *a, char *buf, size_t len);
/** "ADDR" alone (for a listener's host); returns @p buf. */
const char *netaddr_host(const struct netaddr *a, char *buf, size_t len);
/** Same address (family and bytes; prefix and interface ignored). */
bool netaddr_same(const struct netaddr *a, const struct netaddr *b);

/** 1 when the address is on its interface, 0 when not, or -errno (no such
 * interface: -ENODEV). */
int netaddr_present(const struct netaddr *a);
/** Add the address to its interface (IPv6 without duplicate address
 * detection, so that it can be bound at once); present already is 0. */
int netaddr_add(const struct netaddr *a);
/**
 * Add it, or renew one there, with a lifetime of @p lifetime_s seconds
 * (0: forever): the kernel removes it by itself when no refresh came in
 * time (it checks on whole seconds: gone between @p lifetime_s and
 * @p lifetime_s + 1 s after the last refresh). The dead man's switch of a
 * holder that stops or hangs.
 */
int netaddr_add_for(const struct netaddr *a, unsigned lifetime_s);
/** Remove it; absent already is 0. */
int netaddr_del(const struct netaddr *a);
/**
 * Tell the neighbours that the address now lives at this interface's
 * hardware address: a gratuitous ARP request and reply (IPv4) or an
 * unsolicited neighbour advertisement with the override flag (IPv6), each
 * once per call. Needs CAP_NET_RAW. Returns 0 or -errno.
 */
int netaddr_announce(const struct netaddr *a);
/**
 * Ask the link who holds an IPv4 address (an ARP probe, RFC 5227: sender
 * address 0.0.0.0, so no neighbour's cache changes) from @p a's interface.
 * Returns a packet socket (non-blocking) to read the answers from with
 * netaddr_probe_answered(), or -errno (-EAFNOSUPPORT for IPv6).
 */
int netaddr_probe_send(const struct netaddr *a);
/** 1 when a frame waiting on @p fd is an ARP reply (or a request) from
 * another host that holds @p a's address, 0 when none, -errno. Reads every
 * frame waiting. */
int netaddr_probe_answered(int fd, const struct netaddr *a);
/** Bytes of a service-address record (netaddr_service_encode). */
#define NETADDR_REC_SIZE 32
/** The record this node sends its partner: @p a (its interface is not
 * sent) and the ports of its NBD and proxy listeners (0: none). */
size_t netaddr_service_encode(const struct netaddr *a, uint16_t nbd_port, uint16_t proxy_port,
			      uint8_t buf[NETADDR_REC_SIZE]);
/** Decode a record from the partner (untrusted bytes): 0, -EBADMSG or
 * -EPROTO (a newer version). @p a->ifname is left empty. */
int netaddr_service_decode(const uint8_t *buf, size_t len, struct netaddr *a, uint16_t *nbd_port,
			   uint16_t *proxy_port);
/**
 * Set net.ipv4.conf.IFACE.arp_ignore = 1 and arp_announce = 2 (answer ARP
 * only for addresses of the interface asked on, and announce only them):
 * the setting that keeps a host with several interfaces from answering for
 * an address it holds elsewhere. Returns 0 or -errno.
 */
int netaddr_arp_tune(const char *ifname);

#endif
