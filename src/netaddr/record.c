/* The service-address record a node sends its partner over the
 * interconnect (a CCM client "svcaddr", one message per session): its own
 * address and the ports of its two listeners, so that the partner can take
 * them over without being configured with them.
 *
 * Layout (32 bytes, little endian): magic "DUSA", version 1, family (4 or
 * 6), prefix, reserved 0, address (16 bytes; IPv4 in the first 4, the rest
 * zero), NBD port, proxy port, CRC32C of the first 28 bytes.
 *
 * Rule kept: the decoder trusts nothing: length, magic, version, CRC,
 * family, prefix bounds and the unused bytes are all checked. */
#include "netaddr/netaddr_int.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "common/byteorder.h"
#include "common/crc32c.h"

#define REC_MAGIC   0x41535544u /* "DUSA" read little endian */
#define REC_VERSION 1

size_t netaddr_service_encode(const struct netaddr *a, uint16_t nbd_port, uint16_t proxy_port,
			      uint8_t buf[NETADDR_REC_SIZE])
{
	memset(buf, 0, NETADDR_REC_SIZE);
	put_le32(buf, REC_MAGIC);
	buf[4] = REC_VERSION;
	buf[5] = a->family == AF_INET6 ? 6 : 4;
	buf[6] = a->prefix;
	memcpy(buf + 8, a->addr, a->family == AF_INET6 ? 16 : 4);
	put_le16(buf + 24, nbd_port);
	put_le16(buf + 26, proxy_port);
	put_le32(buf + 28, crc32c(0, buf, 28));
	return NETADDR_REC_SIZE;
}

int netaddr_service_decode(const uint8_t *buf, size_t len, struct netaddr *a, uint16_t *nbd_port,
			   uint16_t *proxy_port)
{
	static const uint8_t zero[12];

	if (len != NETADDR_REC_SIZE || get_le32(buf) != REC_MAGIC)
		return -EBADMSG;
	if (get_le32(buf + 28) != crc32c(0, buf, 28))
		return -EBADMSG;
	if (buf[4] != REC_VERSION)
		return -EPROTO;
	if (buf[7] != 0 || (buf[5] != 4 && buf[5] != 6))
		return -EBADMSG;
	if (buf[5] == 4 && memcmp(buf + 12, zero, 12) != 0)
		return -EBADMSG;
	if (buf[6] == 0 || buf[6] > (buf[5] == 4 ? 32 : 128))
		return -EBADMSG;
	memset(a, 0, sizeof(*a));
	a->family = buf[5] == 4 ? AF_INET : AF_INET6;
	a->prefix = buf[6];
	memcpy(a->addr, buf + 8, buf[5] == 4 ? 4 : 16);
	*nbd_port = get_le16(buf + 24);
	*proxy_port = get_le16(buf + 26);
	return 0;
}
