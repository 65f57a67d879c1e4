/* Unit tests of src/netaddr: the "ADDR/PREFIX dev IFACE" parser, the
 * announcement frames, and (as root, in a network namespace of its own) an
 * add / look up / remove round trip on a real interface. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netaddr/netaddr_int.h"

static void test_parse(void **state)
{
	struct netaddr a;
	char buf[64];

	(void)state;
	assert_int_equal(netaddr_parse("192.0.2.10/24 dev eth0", &a), 0);
	assert_int_equal(a.family, AF_INET);
	assert_int_equal(a.prefix, 24);
	assert_string_equal(a.ifname, "eth0");
	assert_string_equal(netaddr_format(&a, buf, sizeof(buf)), "192.0.2.10/24");
	assert_string_equal(netaddr_host(&a, buf, sizeof(buf)), "192.0.2.10");
	assert_int_equal(netaddr_parse("  2001:db8::10/64   dev  br-svc ", &a), 0);
	assert_int_equal(a.family, AF_INET6);
	assert_int_equal(a.prefix, 64);
	assert_string_equal(netaddr_format(&a, buf, sizeof(buf)), "2001:db8::10/64");
	assert_int_equal(netaddr_parse("192.0.2.10 dev lo", &a), 0);
	assert_int_equal(a.prefix, 32);

	static const char *const bad[] = {
	    "",
	    "192.0.2.10/24",
	    "192.0.2.10/24 dev",
	    "192.0.2.10/24 eth0 dev",
	    "192.0.2.10/33 dev eth0",
	    "192.0.2.10/0 dev eth0",
	    "192.0.2.10/-1 dev eth0",
	    "192.0.2.10/2x dev eth0",
	    "192.0.2.300/24 dev eth0",
	    "host/24 dev eth0",
	    "192.0.2.10/24 dev eth0 extra",
	    "192.0.2.10/24 dev a-very-long-ifname0",
	    "2001:db8::1/129 dev eth0",
	    "192.0.2.10/ dev eth0",
	    "192.0.2.10/24 dev a/b",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		a.family = 99;
		assert_int_equal(netaddr_parse(bad[i], &a), -EINVAL);
		assert_int_equal(a.family, 0);
	}
	char big[300];
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(netaddr_parse(big, &a), -EINVAL);
	assert_int_equal(netaddr_parse(NULL, &a), -EINVAL);
}

static void test_same(void **state)
{
	struct netaddr a, b;

	(void)state;
	netaddr_parse("192.0.2.10/24 dev eth0", &a);
	netaddr_parse("192.0.2.10/32 dev eth1", &b);
	assert_true(netaddr_same(&a, &b));
	netaddr_parse("192.0.2.11/24 dev eth0", &b);
	assert_false(netaddr_same(&a, &b));
	netaddr_parse("::ffff:192.0.2.10/128 dev eth0", &b);
	assert_false(netaddr_same(&a, &b));
}

static void test_frames(void **state)
{
	static const uint8_t mac[6] = {2, 0, 0, 0, 0, 0x0a};
	uint8_t b[64], ip4[4], ip6[16];

	(void)state;
	inet_pton(AF_INET, "192.0.2.10", ip4);
	assert_int_equal(netaddr_arp_build(b, ARPOP_REQUEST, mac, ip4), 28);
	assert_int_equal(b[7], ARPOP_REQUEST);
	assert_memory_equal(b + 8, mac, 6);
	assert_memory_equal(b + 14, ip4, 4); /* sender = target: gratuitous */
	assert_memory_equal(b + 24, ip4, 4);
	assert_int_equal(netaddr_arp_build(b, ARPOP_REPLY, mac, ip4), 28);
	assert_memory_equal(b + 18, mac, 6);

	inet_pton(AF_INET6, "2001:db8::10", ip6);
	assert_int_equal(netaddr_na_build(b, mac, ip6), 32);
	assert_int_equal(b[0], ND_NEIGHBOR_ADVERT);
	assert_int_equal(b[4], 0x20); /* override only */
	assert_memory_equal(b + 8, ip6, 16);
	assert_int_equal(b[24], ND_OPT_TARGET_LINKADDR);
	assert_memory_equal(b + 26, mac, 6);
}

static void test_record(void **state)
{
	struct netaddr a, b;
	uint8_t rec[NETADDR_REC_SIZE], bad[NETADDR_REC_SIZE];
	uint16_t np, pp;

	(void)state;
	static const char *const in[] = {"192.0.2.10/24 dev eth0", "2001:db8::10/64 dev eth0"};
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(netaddr_parse(in[i], &a), 0);
		assert_int_equal(netaddr_service_encode(&a, 10809, 10810, rec), NETADDR_REC_SIZE);
		assert_int_equal(netaddr_service_decode(rec, sizeof(rec), &b, &np, &pp), 0);
		assert_true(netaddr_same(&a, &b));
		assert_int_equal(b.prefix, a.prefix);
		assert_string_equal(b.ifname, "");
		assert_int_equal(np, 10809);
		assert_int_equal(pp, 10810);
		/* Every single flipped bit is refused (the CRC, or the checks). */
		for (size_t bit = 0; bit < sizeof(rec) * 8; bit++) {
			memcpy(bad, rec, sizeof(bad));
			bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			assert_true(netaddr_service_decode(bad, sizeof(bad), &b, &np, &pp) < 0);
		}
		assert_int_equal(netaddr_service_decode(rec, sizeof(rec) - 1, &b, &np, &pp),
				 -EBADMSG);
	}
}

/* Root only: a namespace of our own, its loopback, both families. */
static void test_round_trip(void **state)
{
	static const char *const addrs[] = {"192.0.2.99/24 dev lo", "2001:db8::99/64 dev lo"};
	struct netaddr a;

	(void)state;
	if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
		skip();
		return;
	}
	assert_int_equal(system("ip link set lo up"), 0);
	assert_int_equal(netaddr_parse("192.0.2.99/24 dev nosuchif0", &a), 0);
	assert_int_equal(netaddr_present(&a), -ENODEV);
	assert_int_equal(netaddr_add(&a), -ENODEV);
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(netaddr_parse(addrs[i], &a), 0);
		assert_int_equal(netaddr_present(&a), 0);
		assert_int_equal(netaddr_del(&a), 0); /* absent: fine */
		assert_int_equal(netaddr_add(&a), 0);
		assert_int_equal(netaddr_present(&a), 1);
		assert_int_equal(netaddr_add(&a), 0); /* present: fine */
		assert_int_equal(netaddr_del(&a), 0);
		assert_int_equal(netaddr_present(&a), 0);
	}
	/* Announcements and the probe, on a veth pair: the probe sent on v0
	 * reaches v1, and this namespace's kernel answers it there for the
	 * address it holds on v0 (arp_ignore 0): a holder. */
	if (system("ip link add v0 type veth peer name v1 && ip link set v0 up && "
		   "ip link set v1 up") != 0) {
		skip();
		return;
	}
	static const char *const on_d0[] = {"192.0.2.98/24 dev v0", "2001:db8::98/64 dev v0"};
	for (size_t i = 0; i < 2; i++) {
		assert_int_equal(netaddr_parse(on_d0[i], &a), 0);
		assert_int_equal(netaddr_add_for(&a, 5), 0);
		assert_int_equal(netaddr_add_for(&a, 5), 0); /* a renewal */
		assert_int_equal(netaddr_present(&a), 1);
		assert_int_equal(netaddr_announce(&a), 0);
		int fd = netaddr_probe_send(&a);
		if (i == 0) {
			struct pollfd p = {.fd = fd, .events = POLLIN};
			int seen = 0;

			assert_true(fd >= 0);
			for (int tries = 0; tries < 20 && seen == 0; tries++) {
				poll(&p, 1, 50);
				seen = netaddr_probe_answered(fd, &a);
			}
			assert_int_equal(seen, 1);
			close(fd);
			/* Nobody holds another address. */
			struct netaddr other;
			assert_int_equal(netaddr_parse("192.0.2.97/24 dev v0", &other), 0);
			fd = netaddr_probe_send(&other);
			assert_true(fd >= 0);
			p.fd = fd;
			poll(&p, 1, 100);
			assert_int_equal(netaddr_probe_answered(fd, &other), 0);
			close(fd);
		} else {
			assert_int_equal(fd, -EAFNOSUPPORT);
		}
		assert_int_equal(netaddr_del(&a), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),      cmocka_unit_test(test_same),
	    cmocka_unit_test(test_frames),     cmocka_unit_test(test_record),
	    cmocka_unit_test(test_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
