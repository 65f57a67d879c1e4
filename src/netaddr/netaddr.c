/* Service addresses on an interface, through rtnetlink (libmnl): parse,
 * look up (RTM_GETADDR dump), add (RTM_NEWADDR), remove (RTM_DELADDR).
 *
 * Rule kept: one netlink socket per call, closed before returning; the
 * kernel's answer (an ack or a dump) is read to its end, and every
 * attribute is checked for its length before it is used. */
#define LOG_MODULE "netaddr"
#include "netaddr/netaddr_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libmnl/libmnl.h>
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

/* One netlink message or one part of a dump (libmnl's MNL_SOCKET_BUFFER_SIZE
 * is a run-time value). */
#define NL_BUF 8192

int netaddr_parse(const char *s, struct netaddr *out)
{
	char buf[NETADDR_STR_MAX + 1], *addr, *slash, *dev, *ifn, *rest, *save = NULL;
	unsigned long prefix;
	char *end;

	memset(out, 0, sizeof(*out));
	if (!s || strnlen(s, sizeof(buf)) >= sizeof(buf))
		return -EINVAL;
	snprintf(buf, sizeof(buf), "%s", s);
	addr = strtok_r(buf, " \t", &save);
	dev = strtok_r(NULL, " \t", &save);
	ifn = strtok_r(NULL, " \t", &save);
	rest = strtok_r(NULL, " \t", &save);
	if (!addr || !dev || !ifn || rest || strcmp(dev, "dev") != 0)
		return -EINVAL;
	if (strlen(ifn) >= IF_NAMESIZE || strchr(ifn, '/'))
		return -EINVAL;
	slash = strchr(addr, '/');
	if (slash)
		*slash++ = '\0';
	if (inet_pton(AF_INET, addr, out->addr) == 1) {
		out->family = AF_INET;
		out->prefix = 32;
	} else if (inet_pton(AF_INET6, addr, out->addr) == 1) {
		out->family = AF_INET6;
		out->prefix = 128;
	} else {
		return -EINVAL;
	}
	if (slash) {
		if (*slash < '0' || *slash > '9')
			goto bad;
		errno = 0;
		prefix = strtoul(slash, &end, 10);
		if (errno || *end || prefix > out->prefix || prefix == 0)
			goto bad;
		out->prefix = (uint8_t)prefix;
	}
	snprintf(out->ifname, sizeof(out->ifname), "%s", ifn);
	return 0;
bad:
	memset(out, 0, sizeof(*out));
	return -EINVAL;
}

const char *netaddr_host(const struct netaddr *a, char *buf, size_t len)
{
	if (!a->family || !inet_ntop(a->family, a->addr, buf, (socklen_t)len))
		snprintf(buf, len, "-");
	return buf;
}

const char *netaddr_format(const struct netaddr *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (!a->family) {
		snprintf(buf, len, "-");
		return buf;
	}
	snprintf(buf, len, "%s/%u", netaddr_host(a, host, sizeof(host)), a->prefix);
	return buf;
}

bool netaddr_same(const struct netaddr *a, const struct netaddr *b)
{
	size_t n = a->family == AF_INET ? 4 : 16;

	return a->family && a->family == b->family && memcmp(a->addr, b->addr, n) == 0;
}

static size_t addr_len(const struct netaddr *a)
{
	return a->family == AF_INET ? 4 : 16;
}

/* ---- netlink ---- */

struct nl_ctx {
	const struct netaddr *want;
	unsigned ifindex;
	bool found;
};

static int dump_cb(const struct nlmsghdr *nlh, void *data)
{
	struct nl_ctx *c = data;
	const struct ifaddrmsg *ifa = mnl_nlmsg_get_payload(nlh);
	const struct nlattr *attr;

	if (nlh->nlmsg_type != RTM_NEWADDR || mnl_nlmsg_get_payload_len(nlh) < sizeof(*ifa))
		return MNL_CB_OK;
	if (ifa->ifa_family != c->want->family || ifa->ifa_index != c->ifindex)
		return MNL_CB_OK;
	mnl_attr_for_each(attr, nlh, sizeof(*ifa))
	{
		uint16_t type = mnl_attr_get_type(attr);

		/* IFA_LOCAL is the address on a point-to-point link, IFA_ADDRESS
		 * elsewhere; either one matching is the address being there. */
		if (type != IFA_ADDRESS && type != IFA_LOCAL)
			continue;
		if (mnl_attr_get_payload_len(attr) != addr_len(c->want))
			continue;
		if (memcmp(mnl_attr_get_payload(attr), c->want->addr, addr_len(c->want)) == 0)
			c->found = true;
	}
	return MNL_CB_OK;
}

/* One request, then read until its ack or the end of its dump. */
static int nl_talk(struct nlmsghdr *nlh, mnl_cb_t cb, void *data)
{
	char buf[NL_BUF];
	struct mnl_socket *nl = mnl_socket_open(NETLINK_ROUTE);
	unsigned portid, seq;
	ssize_t r;
	int rc = 0;

	if (!nl)
		return -errno;
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) < 0) {
		rc = -errno;
		goto out;
	}
	portid = mnl_socket_get_portid(nl);
	seq = nlh->nlmsg_seq = (unsigned)time(NULL);
	if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0) {
		rc = -errno;
		goto out;
	}
	for (;;) {
		r = mnl_socket_recvfrom(nl, buf, sizeof(buf));
		if (r < 0) {
			rc = -errno;
			break;
		}
		r = mnl_cb_run(buf, (size_t)r, seq, portid, cb, data);
		if (r <= MNL_CB_STOP) {
			rc = r < 0 ? -errno : 0;
			break;
		}
	}
out:
	mnl_socket_close(nl);
	return rc;
}

int netaddr_present(const struct netaddr *a)
{
	char buf[NL_BUF];
	struct nlmsghdr *nlh;
	struct ifaddrmsg *ifa;
	struct nl_ctx c = {.want = a};
	int rc;

	if (!a->family)
		return -EINVAL;
	c.ifindex = if_nametoindex(a->ifname);
	if (!c.ifindex)
		return -ENODEV;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = RTM_GETADDR;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)a->family;
	rc = nl_talk(nlh, dump_cb, &c);
	if (rc < 0)
		return rc;
	return c.found ? 1 : 0;
}

static int addr_msg(const struct netaddr *a, uint16_t type, uint16_t flags, unsigned lifetime_s)
{
	char buf[NL_BUF];
	struct nlmsghdr *nlh;
	struct ifaddrmsg *ifa;
	unsigned ifindex;

	if (!a->family)
		return -EINVAL;
	ifindex = if_nametoindex(a->ifname);
	if (!ifindex)
		return -ENODEV;
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	ifa = mnl_nlmsg_put_extra_header(nlh, sizeof(*ifa));
	ifa->ifa_family = (uint8_t)a->family;
	ifa->ifa_prefixlen = a->prefix;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = ifindex;
	/* No duplicate address detection: the node binds the address at once,
	 * and the fence, not DAD, is what keeps it single. */
	if (a->family == AF_INET6)
		ifa->ifa_flags = IFA_F_NODAD;
	mnl_attr_put(nlh, IFA_LOCAL, addr_len(a), a->addr);
	mnl_attr_put(nlh, IFA_ADDRESS, addr_len(a), a->addr);
	if (a->family == AF_INET6)
		mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
	if (lifetime_s) {
		/* The kernel removes the address by itself once this runs out
		 * without a refresh: a stopped or hung holder loses it. */
		struct ifa_cacheinfo ci = {.ifa_prefered = lifetime_s, .ifa_valid = lifetime_s};
		mnl_attr_put(nlh, IFA_CACHEINFO, sizeof(ci), &ci);
	}
	return nl_talk(nlh, NULL, NULL);
}

int netaddr_add(const struct netaddr *a)
{
	return netaddr_add_for(a, 0);
}

int netaddr_add_for(const struct netaddr *a, unsigned lifetime_s)
{
	/* Create or replace: a refresh renews the lifetime of one there. */
	return addr_msg(a, RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, lifetime_s);
}

int netaddr_del(const struct netaddr *a)
{
	int rc = addr_msg(a, RTM_DELADDR, 0, 0);

	/* The kernel says EADDRNOTAVAIL for an address that is not there. */
	return rc == -EADDRNOTAVAIL || rc == -ENOENT ? 0 : rc;
}

int netaddr_arp_tune(const char *ifname)
{
	static const struct {
		const char *name, *value;
	} knobs[] = {{"arp_ignore", "1"}, {"arp_announce", "2"}};
	char path[128];

	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]); i++) {
		FILE *f;
		int rc = 0;

		snprintf(path, sizeof(path), "/proc/sys/net/ipv4/conf/%s/%s", ifname,
			 knobs[i].name);
		f = fopen(path, "w");
		if (!f)
			return -errno;
		if (fputs(knobs[i].value, f) < 0)
			rc = -EIO;
		if (fclose(f) != 0 && !rc)
			rc = -errno;
		if (rc < 0)
			return rc;
	}
	return 0;
}
