/* Private to src/netaddr: the pieces shared by its files and its unit test. */
#ifndef DUET_NETADDR_INT_H
#define DUET_NETADDR_INT_H

#include "netaddr/netaddr.h"

/* announce.c: the frames, built apart from the sockets so a test can read them. */
/** An ARP packet (28 bytes) saying @p ip4 is at @p mac; @p op 1 request, 2 reply. */
size_t netaddr_arp_build(uint8_t *buf, int op, const uint8_t mac[6], const uint8_t ip4[4]);
/** An ARP frame (@p len bytes from the wire, untrusted) whose sender holds
 * @p ip4: an answer to our probe, or that holder's own announcement. */
bool netaddr_arp_holder(const uint8_t *frame, size_t len, const uint8_t ip4[4]);
/** A neighbour advertisement (32 bytes, checksum left to the kernel). */
size_t netaddr_na_build(uint8_t *buf, const uint8_t mac[6], const uint8_t ip6[16]);

#endif
