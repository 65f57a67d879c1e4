/* Service addresses (docs/FAILOVER.md, "Service addresses"): the node's own
 * address, which its listeners bind to, and the partner's, which moves here
 * with the partner's volumes at a takeover.
 *
 * Rule kept: an address is on at most one node at any moment. So the own
 * address is removed before anything else at boot, and when a takeover mark
 * fences this node right after its listener closed (its clients get their
 * FIN from the address), and added only once the own mailbox was read
 * clean (the boot check, or the giveback's SERVE_OWN); the partner's is
 * added only in SERVE_PARTNER (after the fence) and removed first thing in
 * DRAIN_PARTNER, right after its listeners closed.
 * After each add the address is announced (gratuitous ARP, unsolicited
 * neighbour advertisement) a few times, then every ANNOUNCE_EVERY_NS while
 * held, so that neighbours' caches follow it even where a stale holder (a
 * dead duetd whose host kept the address) answers a broadcast request.
 *
 * A holder that stops (SIGSTOP, a hung host) cannot remove anything, so
 * every address is added with a lifetime ([node]
 * service_address_lifetime_s, 2 s) that the node renews only while it holds
 * its I/O lease: a stopped holder's kernel drops the address by itself at
 * most lifetime + 1 s after the lease ran out. The taker, after the fence,
 * asks the link who holds the partner's IPv4 address (ARP probes, RFC 5227)
 * and adds it once nobody answers, or once that bound has passed. */
#define LOG_MODULE "addr"
#include "node/node_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ccm/ccm.h"
#include "common/log.h"
#include "common/util.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "netaddr/netaddr.h"
#include "proxy/proxy.h"

#define ANNOUNCE_EVERY_NS (2000 * NS_PER_MS)
#define PROBE_WAIT_NS	  (50 * NS_PER_MS) /* for answers to one ARP probe */
#define REFRESH_MAX_NS	  (250 * NS_PER_MS)

/* After a move: announce at once, then at these delays (a neighbour busy
 * with its own resolution may miss the first). */
static const uint64_t announce_burst_ms[] = {0, 50, 200, 1000};

struct node_addr {
	struct netaddr own, partner;
	bool has_own, has_partner;
	bool own_held, partner_held;
	char own_str[64], partner_str[64];
	/* The partner's listeners, on its address and ports, while held. */
	char p_listen[80], p_proxy_listen[80];
	struct nbd_server *p_nbd;   /* its NBD port: its volumes (through the proxy routes) */
	struct nbd_server *p_proxy; /* its proxy port: our volumes */
	struct loop_timer announce_timer;
	unsigned burst; /* next index in announce_burst_ms */
	uint64_t burst_start_ns;
	/* Lifetimes: renewed every refresh_ns while the lease holds. */
	unsigned lifetime_s;
	uint64_t refresh_ns;
	struct loop_timer refresh_timer;
	/* Claiming the partner's address: probe until nobody answers. */
	struct loop_timer claim_timer;
	int probe_fd;
	bool claiming, claim_warned;
	uint64_t claim_start_ns, claim_deadline_ns;
	/* The partner's address as it told us over the interconnect. */
	struct ccm_client *sa_client;
	bool learned;
};

/* Announce once; a failure is logged once per process (it repeats). */
static void announce_one(const struct netaddr *a, const char *s)
{
	int rc = netaddr_announce(a);
	static bool warned;

	if (rc < 0 && !warned) {
		warned = true;
		LOG_WARN("cannot announce %s on %s: %s (neighbours learn it when their cache "
			 "entries age)",
			 s, a->ifname, strerror(-rc));
	}
}

static void announce_tick(struct loop_timer *t)
{
	struct node *n = t->arg;
	struct node_addr *na = n->addr;
	uint64_t next;

	if (na->own_held)
		announce_one(&na->own, na->own_str);
	if (na->partner_held)
		announce_one(&na->partner, na->partner_str);
	if (!na->own_held && !na->partner_held)
		return;
	if (na->burst < ARRAY_SIZE(announce_burst_ms)) {
		uint64_t due = na->burst_start_ns + announce_burst_ms[na->burst] * NS_PER_MS;
		uint64_t now = loop_now_ns();

		na->burst++;
		next = due > now ? due - now : 0;
	} else {
		next = ANNOUNCE_EVERY_NS;
	}
	loop_timer_arm(n->loop, t, next);
}

static void announce_burst(struct node *n)
{
	struct node_addr *na = n->addr;

	na->burst = 1;
	na->burst_start_ns = loop_now_ns();
	loop_timer_cancel(n->loop, &na->announce_timer);
	loop_timer_arm(n->loop, &na->announce_timer, 0);
}

/* Replace the host of "HOST:PORT" @p listen by @p a's address. */
static void listen_on(const struct netaddr *a, const char *listen, uint64_t port, char *buf,
		      size_t len)
{
	char host[64], p[16];

	netaddr_host(a, host, sizeof(host));
	if (!port && util_split_hostport(listen, (char[64]){0}, 64, p, sizeof(p)) == 0)
		port = strtoull(p, NULL, 10);
	snprintf(buf, len, a->family == AF_INET6 ? "[%s]:%llu" : "%s:%llu", host,
		 (unsigned long long)port);
}

/* Renew the lifetimes while this node may serve (its lease holds): a
 * stopped or hung node stops renewing, and its kernel drops them. */
static void refresh_one(struct node *n, const struct netaddr *a, const char *str)
{
	struct node_addr *na = n->addr;
	int was = netaddr_present(a), rc;

	rc = netaddr_add_for(a, na->lifetime_s);
	if (rc < 0) {
		LOG_ERROR("cannot renew %s: %s", str, strerror(-rc));
		return;
	}
	if (was == 0) {
		/* It expired while the lease was closed (a stall or a stop
		 * longer than its lifetime) and the lease came back. */
		LOG_WARN("service address %s had expired (this node stalled past its lifetime): "
			 "added again",
			 str);
		announce_burst(n);
	}
}

/* Renew the lifetimes while this node may serve (its lease holds): a
 * stopped or hung node stops renewing, and its kernel drops them. */
static void refresh_tick(struct loop_timer *t)
{
	struct node *n = t->arg;
	struct node_addr *na = n->addr;

	if (!n->monitor || monitor_io_allowed(n->monitor)) {
		if (na->own_held)
			refresh_one(n, &na->own, na->own_str);
		if (na->partner_held)
			refresh_one(n, &na->partner, na->partner_str);
	}
	loop_timer_arm(n->loop, t, na->refresh_ns);
}

static void claim_done(struct node *n)
{
	struct node_addr *na = n->addr;
	int rc;

	na->claiming = false;
	rc = netaddr_add_for(&na->partner, na->lifetime_s);
	if (rc < 0) {
		LOG_ERROR("cannot add the partner's service address %s to %s: %s", na->partner_str,
			  na->partner.ifname, strerror(-rc));
		return;
	}
	na->partner_held = true;
	announce_burst(n);
	LOG_WARN("service address %s of the partner moved here (on %s, serving in %llu ms after "
		 "the fence)",
		 na->partner_str, na->partner.ifname,
		 (unsigned long long)((loop_now_ns() - na->claim_start_ns) / NS_PER_MS));
	node_event(n, "address-move", "DUET_ADDRESS", na->partner_str, "DUET_INTERFACE",
		   na->partner.ifname, "DUET_OWNER", n->cfg.ic.partner, "DUET_STATE", "added",
		   NULL);
}

static void probe_close(struct node_addr *na)
{
	if (na->probe_fd >= 0)
		close(na->probe_fd);
	na->probe_fd = -1;
}

/* One probe's answers are in: nobody holds it (add it), or a stale holder
 * still does (its lifetime runs out by the deadline: ask again). */
static void claim_tick(struct loop_timer *t)
{
	struct node *n = t->arg;
	struct node_addr *na = n->addr;
	int answered = 0;

	if (na->probe_fd >= 0)
		answered = netaddr_probe_answered(na->probe_fd, &na->partner);
	probe_close(na);
	if (answered <= 0 || loop_now_ns() >= na->claim_deadline_ns) {
		if (answered > 0)
			LOG_WARN("%s still answers on the link past its lifetime: adding it anyway "
				 "(the announcements win the neighbours' caches)",
				 na->partner_str);
		claim_done(n);
		return;
	}
	if (!na->claim_warned) {
		na->claim_warned = true;
		LOG_WARN("%s is still held on the link (the partner's host kept it: a stopped "
			 "or killed duetd): waiting until its lifetime runs out",
			 na->partner_str);
	}
	na->probe_fd = netaddr_probe_send(&na->partner);
	loop_timer_arm(n->loop, t, PROBE_WAIT_NS);
}

static void claim_start(struct node *n)
{
	struct node_addr *na = n->addr;
	uint64_t bound_s = (na->lifetime_s ? na->lifetime_s : 2) + 1;

	na->claiming = true;
	na->claim_warned = false;
	na->claim_start_ns = loop_now_ns();
	na->claim_deadline_ns = na->claim_start_ns + bound_s * 1000 * NS_PER_MS;
	na->probe_fd = netaddr_probe_send(&na->partner);
	if (na->probe_fd < 0) {
		/* IPv6 (no probe here) or no packet socket: the fence alone. */
		if (na->probe_fd != -EAFNOSUPPORT)
			LOG_WARN("cannot probe for %s: %s", na->partner_str,
				 strerror(-na->probe_fd));
		na->probe_fd = -1;
		claim_done(n);
		return;
	}
	loop_timer_arm(n->loop, &na->claim_timer, PROBE_WAIT_NS);
}

int node_addr_boot(struct node *n)
{
	struct node_addr *na = calloc(1, sizeof(*na));
	int rc;

	if (!na)
		return -ENOMEM;
	n->addr = na;
	na->probe_fd = -1;
	na->lifetime_s = (unsigned)n->cfg.node.service_lifetime_s;
	na->refresh_ns = na->lifetime_s ? na->lifetime_s * 1000 * NS_PER_MS / 4 : 0;
	if (na->refresh_ns > REFRESH_MAX_NS)
		na->refresh_ns = REFRESH_MAX_NS;
	loop_timer_init(&na->announce_timer, announce_tick, n);
	loop_timer_init(&na->refresh_timer, refresh_tick, n);
	loop_timer_init(&na->claim_timer, claim_tick, n);
	if (n->cfg.node.service_address[0]) {
		netaddr_parse(n->cfg.node.service_address, &na->own); /* config.c checked it */
		na->has_own = true;
		netaddr_format(&na->own, na->own_str, sizeof(na->own_str));
	}
	if (n->cfg.monitor.partner_service_address[0]) {
		netaddr_parse(n->cfg.monitor.partner_service_address, &na->partner);
		na->has_partner = true;
		netaddr_format(&na->partner, na->partner_str, sizeof(na->partner_str));
		if (n->cfg.monitor.partner_nbd_port)
			listen_on(&na->partner, "", n->cfg.monitor.partner_nbd_port, na->p_listen,
				  sizeof(na->p_listen));
		if (n->cfg.monitor.partner_proxy_port)
			listen_on(&na->partner, "", n->cfg.monitor.partner_proxy_port,
				  na->p_proxy_listen, sizeof(na->p_proxy_listen));
	}
	if (na->refresh_ns && (na->has_own || na->has_partner))
		loop_timer_arm(n->loop, &na->refresh_timer, na->refresh_ns);
	/* Before anything else: an address left by an earlier run of ours (a
	 * crash keeps it on the interface) is not ours to hold until the own
	 * mailbox says so. */
	if (na->has_own) {
		if (n->cfg.node.service_arp_tune && na->own.family == AF_INET) {
			rc = netaddr_arp_tune(na->own.ifname);
			if (rc < 0)
				LOG_WARN("cannot set arp_ignore/arp_announce on %s: %s",
					 na->own.ifname, strerror(-rc));
		}
		rc = netaddr_present(&na->own);
		if (rc > 0) {
			rc = netaddr_del(&na->own);
			LOG_WARN("service address %s was on %s at start (an earlier run's): %s",
				 na->own_str, na->own.ifname, rc < 0 ? strerror(-rc) : "removed");
		}
		if (rc < 0) {
			LOG_ERROR("service address %s dev %s: %s", na->own_str, na->own.ifname,
				  strerror(-rc));
			return rc;
		}
		/* The listeners bind to it. */
		listen_on(&na->own, n->cfg.nbd.listen, 0, n->cfg.nbd.listen,
			  sizeof(n->cfg.nbd.listen));
		if (n->cfg.nbd.proxy_listen[0])
			listen_on(&na->own, n->cfg.nbd.proxy_listen, 0, n->cfg.nbd.proxy_listen,
				  sizeof(n->cfg.nbd.proxy_listen));
	}
	if (na->has_partner && netaddr_present(&na->partner) > 0) {
		rc = netaddr_del(&na->partner);
		LOG_WARN("the partner's service address %s was on %s at start: %s", na->partner_str,
			 na->partner.ifname, rc < 0 ? strerror(-rc) : "removed");
	}
	return 0;
}

int node_addr_take_own(struct node *n)
{
	struct node_addr *na = n->addr;
	uint64_t t0 = loop_now_ns();
	int rc;

	if (!na || !na->has_own || na->own_held)
		return 0;
	rc = netaddr_add_for(&na->own, na->lifetime_s);
	if (rc < 0) {
		LOG_ERROR("cannot add the service address %s to %s: %s", na->own_str,
			  na->own.ifname, strerror(-rc));
		return rc;
	}
	na->own_held = true;
	announce_burst(n);
	LOG_INFO("service address %s held here (on %s, added and announced in %llu us)",
		 na->own_str, na->own.ifname,
		 (unsigned long long)((loop_now_ns() - t0) / NS_PER_US));
	node_event(n, "address-move", "DUET_ADDRESS", na->own_str, "DUET_INTERFACE", na->own.ifname,
		   "DUET_OWNER", n->cfg.node.id, "DUET_STATE", "added", NULL);
	return 0;
}

void node_addr_drop_own(struct node *n, const char *why)
{
	struct node_addr *na = n->addr;
	int rc;

	if (!na || !na->has_own)
		return;
	rc = netaddr_del(&na->own);
	if (rc < 0)
		LOG_ERROR("cannot remove the service address %s from %s: %s", na->own_str,
			  na->own.ifname, strerror(-rc));
	else if (na->own_held) {
		LOG_WARN("service address %s removed (%s)", na->own_str, why);
		node_event(n, "address-move", "DUET_ADDRESS", na->own_str, "DUET_INTERFACE",
			   na->own.ifname, "DUET_OWNER", n->cfg.node.id, "DUET_STATE", "removed",
			   "DUET_REASON", why, NULL);
	}
	na->own_held = false;
}

int node_addr_take_partner(struct node *n)
{
	struct node_addr *na = n->addr;
	struct nbd_server_opts o;
	int rc;

	if (!na || !na->has_partner)
		return 0;
	/* Its NBD port serves every volume of the pair, as the partner's own
	 * port did (its volumes through the proxy's routes, local now); its
	 * proxy port serves ours, as its forwarder did. */
	if (na->p_listen[0] && !na->p_nbd && n->proxy) {
		config_nbd_opts(&n->cfg, true, &o);
		o.listen = na->p_listen;
		o.name = "partner-nbd";
		o.max_clients = n->max_clients;
		o.budget = n->nbd_budget;
		o.freebind = true;
		rc = nbd_server_create(n->loop, &o, node_route_ops(), n, &na->p_nbd);
		if (rc < 0)
			LOG_ERROR("cannot listen on the partner's NBD port %s: %s", na->p_listen,
				  strerror(-rc));
	}
	if (na->p_proxy_listen[0] && !na->p_proxy && n->dp) {
		config_nbd_opts(&n->cfg, false, &o);
		o.listen = na->p_proxy_listen;
		o.name = "partner-proxy";
		o.max_clients = n->max_clients;
		o.budget = n->nbd_budget;
		o.freebind = true;
		rc = nbd_server_create(n->loop, &o, node_datapath_ops(), n->dp, &na->p_proxy);
		if (rc < 0)
			LOG_ERROR("cannot listen on the partner's proxy port %s: %s",
				  na->p_proxy_listen, strerror(-rc));
	}
	/* The listeners bind freely; the address comes once nobody else
	 * answers for it. */
	if (!na->partner_held && !na->claiming)
		claim_start(n);
	return 0;
}

void node_addr_drop_partner(struct node *n, const char *why)
{
	struct node_addr *na = n->addr;
	uint64_t t0 = loop_now_ns();
	bool held;
	int rc;

	if (!na || !na->has_partner)
		return;
	held = na->partner_held;
	loop_timer_cancel(n->loop, &na->claim_timer);
	probe_close(na);
	na->claiming = false;
	/* The listeners and their clients first: the clients' connections
	 * end with a FIN from the address while it is still here (without it
	 * a client waiting for replies would wait on a dead connection). */
	if (na->p_nbd)
		nbd_server_destroy(na->p_nbd);
	if (na->p_proxy)
		nbd_server_destroy(na->p_proxy);
	na->p_nbd = na->p_proxy = NULL;
	rc = netaddr_del(&na->partner);
	if (rc < 0)
		LOG_ERROR("cannot remove the partner's service address %s from %s: %s",
			  na->partner_str, na->partner.ifname, strerror(-rc));
	na->partner_held = false;
	if (held) {
		LOG_WARN("service address %s of the partner removed here (%s) in %llu us",
			 na->partner_str, why,
			 (unsigned long long)((loop_now_ns() - t0) / NS_PER_US));
		node_event(n, "address-move", "DUET_ADDRESS", na->partner_str, "DUET_INTERFACE",
			   na->partner.ifname, "DUET_OWNER", n->cfg.ic.partner, "DUET_STATE",
			   "removed", "DUET_REASON", why, NULL);
	}
}

/* ---- the partner's address, learned over the interconnect ---- */

static uint16_t port_of(const char *hostport)
{
	char host[64], port[16];
	uint64_t v;

	if (!hostport[0] ||
	    util_split_hostport(hostport, host, sizeof(host), port, sizeof(port)) < 0 ||
	    util_parse_uint(port, 1, 65535, &v) < 0)
		return 0;
	return (uint16_t)v;
}

/* Each session: tell the partner our address and ports (none: nothing). */
static void sa_port_up(struct ccm_port *p, void *arg)
{
	struct node *n = arg;
	struct node_addr *na = n->addr;
	uint8_t rec[NETADDR_REC_SIZE];
	int rc;

	if (!na || !na->has_own)
		return;
	netaddr_service_encode(&na->own, port_of(n->cfg.nbd.listen),
			       port_of(n->cfg.nbd.proxy_listen), rec);
	rc = ccm_port_send(p, rec, sizeof(rec));
	if (rc < 0)
		LOG_WARN("cannot tell the partner this node's service address: %s", strerror(-rc));
}

/* The partner's record: its address and ports replace what the config
 * said ([monitor] partner_service_address is for a partner never met), on
 * the interface the config names for it, else the own address's. Not
 * while the partner's address is held or being claimed here. */
static void sa_message(struct ccm_port *p, const void *msg, size_t len, void *arg)
{
	struct node *n = arg;
	struct node_addr *na = n->addr;
	struct netaddr a;
	uint16_t np, pp;
	const char *dev;
	char s[64];
	int rc;

	(void)p;
	if (!na)
		return;
	rc = netaddr_service_decode(msg, len, &a, &np, &pp);
	if (rc < 0) {
		LOG_WARN("the partner's service-address record is unusable (%s): ignored",
			 strerror(-rc));
		return;
	}
	netaddr_format(&a, s, sizeof(s));
	dev = na->has_partner ? na->partner.ifname : na->has_own ? na->own.ifname : NULL;
	if (!dev) {
		LOG_INFO("the partner's service address is %s; it cannot move here: no interface "
			 "for it ([node] service_address or [monitor] partner_service_address)",
			 s);
		return;
	}
	if (na->has_partner && netaddr_same(&a, &na->partner) && a.prefix == na->partner.prefix &&
	    np == port_of(na->p_listen) && pp == port_of(na->p_proxy_listen))
		return; /* what we knew */
	if (na->partner_held || na->claiming) {
		LOG_WARN("the partner says its service address is %s now; the old one is held "
			 "here: kept until the giveback",
			 s);
		return;
	}
	if (na->has_partner && !na->learned)
		LOG_WARN("the partner's service address is %s (ports %u, %u), not [monitor] "
			 "partner_service_address %s: using the partner's",
			 s, np, pp, na->partner_str);
	else
		LOG_INFO("the partner's service address is %s (NBD port %u, proxy port %u): it "
			 "moves to %s here at a takeover",
			 s, np, pp, dev);
	snprintf(a.ifname, sizeof(a.ifname), "%s", dev);
	na->partner = a;
	na->has_partner = true;
	na->learned = true;
	snprintf(na->partner_str, sizeof(na->partner_str), "%s", s);
	na->p_listen[0] = na->p_proxy_listen[0] = '\0';
	if (np)
		listen_on(&na->partner, "", np, na->p_listen, sizeof(na->p_listen));
	if (pp)
		listen_on(&na->partner, "", pp, na->p_proxy_listen, sizeof(na->p_proxy_listen));
	if (na->refresh_ns) {
		loop_timer_cancel(n->loop, &na->refresh_timer);
		loop_timer_arm(n->loop, &na->refresh_timer, na->refresh_ns);
	}
}

static const struct ccm_client_ops sa_ops = {
    .port_up = sa_port_up,
    .message = sa_message,
};

int node_addr_register(struct node *n)
{
	struct ccm_client_spec spec = {
	    .name = "svcaddr",
	    .n_ports = 1,
	    .port_mem = 0,
	    .ops = &sa_ops,
	    .arg = n,
	};
	int rc;

	if (!n->ccm || !n->addr)
		return 0;
	rc = ccm_client_register(n->ccm, &spec, &n->addr->sa_client);
	if (rc < 0)
		LOG_ERROR("cannot register the service-address client with the CCM: %s",
			  strerror(-rc));
	return rc;
}

void node_addr_close(struct node *n, bool keep_own)
{
	struct node_addr *na = n->addr;

	if (!na)
		return;
	loop_timer_cancel(n->loop, &na->announce_timer);
	loop_timer_cancel(n->loop, &na->refresh_timer);
	if (na->sa_client)
		ccm_client_unregister(na->sa_client);
	na->sa_client = NULL;
	node_addr_drop_partner(n, "shutting down");
	if (!keep_own)
		node_addr_drop_own(n, "shutting down");
	free(na);
	n->addr = NULL;
}

/* held_by: what this node knows: its own holding, else the partner's by
 * the HA state (taken over: the partner holds ours; serving the partner's
 * volumes: we hold its). */
struct json_object *node_addr_status_json(struct node *n)
{
	struct json_object *arr = json_object_new_array();
	struct node_addr *na = n->addr;
	const char *me = n->cfg.node.id, *partner = n->cfg.ic.partner[0] ? n->cfg.ic.partner : "-";

	if (!na)
		return arr;
	if (na->has_own) {
		struct json_object *o = json_object_new_object();
		bool taken = n->fenced || n->taken_at_boot;

		json_object_object_add(o, "address", json_object_new_string(na->own_str));
		json_object_object_add(o, "owner", json_object_new_string(me));
		json_object_object_add(o, "held_by",
				       json_object_new_string(na->own_held ? me
							      : taken	   ? partner
									   : "none"));
		json_object_object_add(o, "dev", json_object_new_string(na->own.ifname));
		json_object_array_add(arr, o);
	}
	if (na->has_partner) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "address", json_object_new_string(na->partner_str));
		json_object_object_add(o, "owner", json_object_new_string(partner));
		json_object_object_add(o, "held_by",
				       json_object_new_string(na->partner_held ? me : partner));
		json_object_object_add(o, "dev", json_object_new_string(na->partner.ifname));
		json_object_array_add(arr, o);
	}
	return arr;
}
