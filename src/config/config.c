/* The node's INI file: one schema table (section, key, type, bounds, field)
 * and one handler for libinih.
 *
 * Rule kept: every error is one line naming the file, the line and the key
 * as the file spells it; nothing outside this file knows the INI layout,
 * and the modules get their settings as their own options structs. */
#define LOG_MODULE "config"
#include "config/config.h"
#include "common/log.h"
#include "common/util.h"
#include "netaddr/netaddr.h"

#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>

enum key_type {
	KEY_STR,     /* string of at most size bytes */
	KEY_ID,	     /* [A-Za-z0-9_-], at most size bytes */
	KEY_ADDR,    /* host:port */
	KEY_PATH,    /* non-empty path */
	KEY_UINT,    /* decimal in [min, max] */
	KEY_SIZE,    /* size with unit in [min, max] */
	KEY_ENUM,    /* one of names[] (in the enum's order) */
	KEY_BOOL,    /* off | on */
	KEY_LEVEL,   /* log level */
	KEY_LINK,    /* repeatable interconnect link */
	KEY_ALLOW,   /* list of networks (nbd_allow_parse) */
	KEY_NETADDR, /* ADDR/PREFIX dev IFACE (a service address) */
	KEY_RATIO,   /* decimal with at most 3 decimals, kept x 1000, in [min, max] (x 1000) */
};

struct key_def {
	const char *section;
	const char *key;
	enum key_type type;
	size_t offset;
	size_t size;
	uint64_t min, max;
	const char *const *names;
	bool required;
};

static const char *const io_engine_names[] = {"uring", "threads", NULL};
static const char *const balance_names[] = {"round_robin", "least_outstanding", NULL};
static const char *const mirror_mode_names[] = {"off", "on", "local", NULL};
static const char *const durability_names[] = {"memory", "local-sync", NULL};
static const char *const mirror_down_names[] = {"degrade", "suspend", NULL};
static const char *const tls_names[] = {"off", "on", "require", NULL};
static const char *const realtime_names[] = {"off", "on", "auto", NULL};

const char *config_realtime_name(enum node_realtime mode)
{
	return realtime_names[mode];
}

#define F(field) offsetof(struct duet_config, field), sizeof(((struct duet_config *)0)->field)

static const struct key_def schema[] = {
    {"node", "id", KEY_ID, F(node.id), 0, 0, NULL, true},
    {"node", "shelf", KEY_PATH, F(node.shelf), 0, 0, NULL, true},
    {"node", "control", KEY_PATH, F(node.control), 0, 0, NULL, true},
    {"node", "log_level", KEY_LEVEL, F(node.log_level), 0, 0, NULL, false},
    {"node", "realtime", KEY_ENUM, F(node.realtime), 0, 0, realtime_names, false},
    {"node", "control_group", KEY_STR, F(node.control_group), 0, 0, NULL, false},
    {"node", "service_address", KEY_NETADDR, F(node.service_address), 0, 0, NULL, false},
    {"node", "service_arp_tune", KEY_BOOL, F(node.service_arp_tune), 0, 0, NULL, false},
    {"node", "service_address_lifetime_s", KEY_UINT, F(node.service_lifetime_s), 0, 3600, NULL,
     false},
    {"nbd", "listen", KEY_ADDR, F(nbd.listen), 0, 0, NULL, true},
    {"nbd", "proxy_listen", KEY_ADDR, F(nbd.proxy_listen), 0, 0, NULL, false},
    {"nbd", "max_payload", KEY_SIZE, F(nbd.max_payload), 32ull << 20, 256ull << 20, NULL, false},
    {"nbd", "conn_buffer", KEY_SIZE, F(nbd.conn_buffer), 1ull << 20, 1ull << 30, NULL, false},
    {"nbd", "tls", KEY_ENUM, F(nbd.tls), 0, 0, tls_names, false},
    {"nbd", "tls_certificates", KEY_PATH, F(nbd.tls_certificates), 0, 0, NULL, false},
    {"nbd", "tls_psk", KEY_PATH, F(nbd.tls_psk), 0, 0, NULL, false},
    {"nbd", "tls_verify_peer", KEY_BOOL, F(nbd.tls_verify_peer), 0, 0, NULL, false},
    {"nbd", "allow", KEY_ALLOW, F(nbd.allow), 0, 0, NULL, false},
    {"nbd", "buffer_limit", KEY_SIZE, F(nbd.buffer_limit), 1ull << 20, 1ull << 40, NULL, false},
    {"store", "io_engine", KEY_ENUM, F(store.io_engine), 0, 0, io_engine_names, false},
    {"store", "io_depth", KEY_UINT, F(store.io_depth), 8, 4096, NULL, false},
    {"store", "io_workers", KEY_UINT, F(store.io_workers), 1, 64, NULL, false},
    {"store", "direct_io", KEY_BOOL, F(store.direct_io), 0, 0, NULL, false},
    {"ic", "provider", KEY_STR, F(ic.provider), 0, 0, NULL, false},
    {"ic", "cluster_id", KEY_STR, F(ic.cluster_id), 0, 0, NULL, false},
    {"ic", "secret_file", KEY_PATH, F(ic.secret_file), 0, 0, NULL, false},
    {"ic", "partner", KEY_ID, F(ic.partner), 0, 0, NULL, false},
    {"ic", "link", KEY_LINK, 0, 0, 0, 0, NULL, false},
    {"ic", "instances", KEY_UINT, F(ic.instances), 1, CONFIG_MAX_LINKS, NULL, false},
    {"ic", "balance", KEY_ENUM, F(ic.balance), 0, 0, balance_names, false},
    {"ic", "probe_ms", KEY_UINT, F(ic.probe_ms), 1, 10000, NULL, false},
    {"ic", "link_deadline_ms", KEY_UINT, F(ic.link_deadline_ms), 5, 600000, NULL, false},
    {"ic", "spin_us", KEY_UINT, F(ic.spin_us), 0, 10000, NULL, false},
    {"ic", "session_deadline_ms", KEY_UINT, F(ic.session_deadline_ms), 5, 600000, NULL, false},
    {"ic", "instance_max_load", KEY_SIZE, F(ic.instance_max_load), 0, 1ull << 40, NULL, false},
    {"proxy", "timeout_ms", KEY_UINT, F(proxy.timeout_ms), 10, 3600000, NULL, false},
    {"proxy", "ports", KEY_UINT, F(proxy.ports), 1, 16, NULL, false},
    {"proxy", "port_mem", KEY_SIZE, F(proxy.port_mem), 1ull << 20, 1ull << 30, NULL, false},
    {"proxy", "chunk", KEY_SIZE, F(proxy.chunk), 64ull << 10, 64ull << 20, NULL, false},
    {"monitor", "partner_shelf", KEY_PATH, F(monitor.partner_shelf), 0, 0, NULL, false},
    {"monitor", "partner_service_address", KEY_NETADDR, F(monitor.partner_service_address), 0, 0,
     NULL, false},
    {"monitor", "partner_nbd_port", KEY_UINT, F(monitor.partner_nbd_port), 1, 65535, NULL, false},
    {"monitor", "partner_proxy_port", KEY_UINT, F(monitor.partner_proxy_port), 1, 65535, NULL,
     false},
    {"monitor", "heartbeat_ms", KEY_UINT, F(monitor.heartbeat_ms), 1, 10000, NULL, false},
    {"monitor", "deadline_ms", KEY_UINT, F(monitor.deadline_ms), 5, 600000, NULL, false},
    {"monitor", "mailbox_ms", KEY_UINT, F(monitor.mailbox_ms), 5, 60000, NULL, false},
    {"monitor", "mailbox_deadline_ms", KEY_UINT, F(monitor.mailbox_deadline_ms), 10, 600000, NULL,
     false},
    {"monitor", "lease_ms", KEY_UINT, F(monitor.lease_ms), 10, 600000, NULL, false},
    {"monitor", "fence_margin_ms", KEY_UINT, F(monitor.fence_margin_ms), 0, 600000, NULL, false},
    {"monitor", "watchdog_ms", KEY_UINT, F(monitor.watchdog_ms), 50, 600000, NULL, false},
    {"monitor", "auto_giveback", KEY_BOOL, F(monitor.auto_giveback), 0, 0, NULL, false},
    {"monitor", "giveback_delay_ms", KEY_UINT, F(monitor.giveback_delay_ms), 0, 86400000, NULL,
     false},
    {"monitor", "boot_grace_ms", KEY_UINT, F(monitor.boot_grace_ms), 0, 86400000, NULL, false},
    {"hooks", "dir", KEY_PATH, F(hooks.dir), 0, 0, NULL, false},
    {"hooks", "timeout_ms", KEY_UINT, F(hooks.timeout_ms), 10, 3600000, NULL, false},
    {"hooks", "max_running", KEY_UINT, F(hooks.max_running), 1, 64, NULL, false},
    {"mirror", "mirror", KEY_ENUM, F(mirror.mode), 0, 0, mirror_mode_names, false},
    {"mirror", "durability", KEY_ENUM, F(mirror.durability), 0, 0, durability_names, false},
    {"mirror", "mirror_down", KEY_ENUM, F(mirror.down), 0, 0, mirror_down_names, false},
    {"mirror", "mirror_suspend_timeout_ms", KEY_UINT, F(mirror.suspend_timeout_ms), 100, 86400000,
     NULL, false},
    {"mirror", "cp_interval_ms", KEY_UINT, F(mirror.cp_interval_ms), 10, 600000, NULL, false},
    {"mirror", "group_window", KEY_UINT, F(mirror.group_window), 1, 16, NULL, false},
    {"mirror", "partner_image", KEY_PATH, F(mirror.partner_image), 0, 0, NULL, false},
    {"mirror", "log", KEY_PATH, F(mirror.log), 0, 0, NULL, false},
    {"mirror", "log_size", KEY_SIZE, F(mirror.log_size), 1ull << 20, 16ull << 30, NULL, false},
    {"metrics", "listen", KEY_ADDR, F(metrics.listen), 0, 0, NULL, false},
    {"balance", "auto", KEY_BOOL, F(balance.auto_on), 0, 0, NULL, false},
    {"balance", "imbalance", KEY_RATIO, F(balance.imbalance_milli), 1100, 100000, NULL, false},
    {"balance", "window_s", KEY_UINT, F(balance.window_s), 3, 3600, NULL, false},
    {"balance", "min_interval_s", KEY_UINT, F(balance.min_interval_s), 0, 86400, NULL, false},
};

/* Keys renamed so that one concept has one name (the NVRAM log is the
 * mirror's "log"; the CCM's link probe is not the monitor's heartbeat). The
 * old spelling still works, with a warning that names the new one. */
static const struct key_rename {
	const char *section, *key;
	const char *new_section, *new_key;
} renamed[] = {
    {"node", "nvram", "mirror", "log"},
    {"node", "nvram_size", "mirror", "log_size"},
    {"ic", "heartbeat_ms", "ic", "probe_ms"},
};

void config_defaults(struct duet_config *cfg)
{
	struct store_opts so;
	struct ccm_opts co;
	struct monitor_opts mo;
	struct mirror_opts xo;
	struct balance_opts bo;

	balance_opts_init(&bo);
	store_opts_init(&so);
	ccm_opts_init(&co);
	monitor_opts_init(&mo);
	mirror_opts_init(&xo);
	memset(cfg, 0, sizeof(*cfg));
	cfg->node.log_level = LOG_LEVEL_INFO;
	cfg->node.realtime = NODE_RT_AUTO; /* where permitted (duet.conf(5)) */
	cfg->node.service_lifetime_s = 2;
	cfg->nbd.max_payload = 32ull << 20;
	cfg->nbd.conn_buffer = 64ull << 20;
	cfg->nbd.buffer_limit = 1ull << 30;
	cfg->store.io_engine = so.engine;
	cfg->store.io_depth = so.depth;
	cfg->store.io_workers = so.workers;
	cfg->store.direct_io = so.direct_io;
	snprintf(cfg->ic.provider, sizeof(cfg->ic.provider), "%s", co.provider);
	snprintf(cfg->ic.cluster_id, sizeof(cfg->ic.cluster_id), "%s", co.cluster_id);
	cfg->ic.instances = co.instances;
	cfg->ic.balance = co.balance;
	cfg->ic.probe_ms = co.probe_ms;
	cfg->ic.link_deadline_ms = co.link_deadline_ms;
	cfg->ic.spin_us = co.spin_us;
	cfg->ic.session_deadline_ms = co.session_deadline_ms;
	cfg->proxy.timeout_ms = PROXY_DEFAULT_TIMEOUT_MS;
	cfg->proxy.ports = PROXY_DEFAULT_PORTS;
	cfg->proxy.port_mem = PROXY_DEFAULT_PORT_MEM;
	cfg->proxy.chunk = PROXY_DEFAULT_CHUNK;
	cfg->monitor.heartbeat_ms = mo.heartbeat_ms;
	cfg->monitor.deadline_ms = mo.deadline_ms;
	cfg->monitor.mailbox_ms = mo.mailbox_ms;
	cfg->monitor.mailbox_deadline_ms = mo.mailbox_deadline_ms;
	cfg->monitor.lease_ms = mo.lease_ms;
	cfg->monitor.fence_margin_ms = mo.fence_margin_ms;
	cfg->monitor.watchdog_ms = mo.watchdog_ms;
	cfg->monitor.auto_giveback = mo.auto_giveback;
	cfg->monitor.giveback_delay_ms = mo.giveback_delay_ms;
	cfg->monitor.boot_grace_ms = mo.boot_grace_ms;
	cfg->hooks.timeout_ms = 10000;
	cfg->hooks.max_running = 4;
	cfg->mirror.mode = xo.mode;
	cfg->mirror.durability = xo.durability;
	cfg->mirror.down = xo.down;
	cfg->mirror.suspend_timeout_ms = xo.suspend_timeout_ms;
	cfg->mirror.cp_interval_ms = xo.cp_interval_ms;
	cfg->mirror.group_window = xo.group_window;
	cfg->mirror.log_size = 64ull << 20;
	cfg->balance.auto_on = bo.enabled;
	cfg->balance.imbalance_milli = bo.imbalance_milli;
	cfg->balance.window_s = bo.window_s;
	cfg->balance.min_interval_s = bo.min_interval_s;
}

struct parse_ctx {
	struct duet_config *cfg;
	const char *name;
	char *err;
	size_t errlen;
	int line;
	bool seen[ARRAY_SIZE(schema)];
	bool failed;
	char what[384]; /* "[section] key: why" of the first failure */
};

static int fail(struct parse_ctx *c, const char *section, const char *key, const char *fmt,
		const char *arg)
{
	char why[256];

	snprintf(why, sizeof(why), fmt, arg);
	snprintf(c->what, sizeof(c->what), "[%s] %s: %s", section, key, why);
	snprintf(c->err, c->errlen, "%s:%d: %s", c->name, c->line, c->what);
	c->failed = true;
	return 0;
}

static bool valid_id(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		char ch = *s;
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* "2", "2.5", "1.125": a decimal with at most three decimals, x 1000. */
static int parse_ratio(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	unsigned frac = 0;
	bool dot = false, digits = false;

	for (; *s; s++) {
		if (*s == '.' && !dot) {
			dot = true;
			continue;
		}
		if (*s < '0' || *s > '9' || (dot && frac == 3) || v > 1000000000ull)
			return -EINVAL;
		v = v * 10 + (uint64_t)(*s - '0');
		digits = true;
		if (dot)
			frac++;
	}
	if (!digits)
		return -EINVAL;
	for (; frac < 3; frac++)
		v *= 10;
	*out = v;
	return 0;
}

/* Errors name the key as the file spells it (an old spelling included). */
static int set_link(struct parse_ctx *c, const char *sec, const char *key, const char *value)
{
	struct config_link *l;
	struct sockaddr_storage ss;
	socklen_t len;
	char extra[2];
	int n;

	if (c->cfg->ic.n_links == CONFIG_MAX_LINKS)
		return fail(c, sec, key, "more than %s links", "8");
	l = &c->cfg->ic.links[c->cfg->ic.n_links];
	n = sscanf(value, "%15s %127s %127s %1s", l->name, l->local, l->peer, extra);
	if (n != 3 || !valid_id(l->name))
		return fail(c, sec, key, "'%s': want NAME LOCAL_HOST:PORT PEER_HOST:PORT", value);
	if (util_parse_hostport(l->local, &ss, &len) < 0 ||
	    util_parse_hostport(l->peer, &ss, &len) < 0)
		return fail(c, sec, key, "'%s': bad host:port", value);
	for (unsigned i = 0; i < c->cfg->ic.n_links; i++)
		if (strcmp(c->cfg->ic.links[i].name, l->name) == 0)
			return fail(c, sec, key, "duplicate link name '%s'", l->name);
	c->cfg->ic.n_links++;
	return 1;
}

static int set_value(struct parse_ctx *c, const struct key_def *d, const char *sec, const char *key,
		     const char *value)
{
	char *field = (char *)c->cfg + d->offset;
	uint64_t v;
	int rc;

	switch (d->type) {
	case KEY_ID:
		if (!valid_id(value))
			return fail(c, sec, key, "'%s': use letters, digits, - and _", value);
		/* fall through */
	case KEY_STR:
	case KEY_PATH:
		if (!*value)
			return fail(c, sec, key, "empty value%s", "");
		if (strlen(value) >= d->size)
			return fail(c, sec, key, "'%s' is too long", value);
		strcpy(field, value);
		return 1;
	case KEY_ADDR: {
		struct sockaddr_storage ss;
		socklen_t len;
		if (strlen(value) >= d->size || util_parse_hostport(value, &ss, &len) < 0)
			return fail(c, sec, key,
				    "'%s': want a numeric HOST:PORT, e.g. 127.0.0.1:10809", value);
		strcpy(field, value);
		return 1;
	}
	case KEY_NETADDR:
		if (strlen(value) >= d->size || netaddr_parse(value, &(struct netaddr){0}) < 0)
			return fail(c, sec, key,
				    "'%s': want ADDR/PREFIX dev IFACE, e.g. 192.0.2.10/24 dev eth0",
				    value);
		strcpy(field, value);
		return 1;
	case KEY_UINT:
		rc = util_parse_uint(value, d->min, d->max, &v);
		if (rc < 0) {
			char range[64];
			snprintf(range, sizeof(range), "want a whole number from %llu to %llu",
				 (unsigned long long)d->min, (unsigned long long)d->max);
			return fail(c, sec, key, "%s", range);
		}
		*(uint64_t *)(void *)field = v;
		return 1;
	case KEY_RATIO:
		if (parse_ratio(value, &v) < 0 || v < d->min || v > d->max) {
			char range[96];
			snprintf(range, sizeof(range), "'%.32s': want a number from %.1f to %.1f",
				 value, (double)d->min / 1000.0, (double)d->max / 1000.0);
			return fail(c, sec, key, "%s", range);
		}
		*(uint64_t *)(void *)field = v;
		return 1;
	case KEY_SIZE:
		rc = util_parse_size(value, &v);
		if (rc < 0 || v < d->min || v > d->max) {
			char range[96];
			snprintf(range, sizeof(range), "'%.32s': want a size from %lluM to %lluM",
				 value, (unsigned long long)(d->min >> 20),
				 (unsigned long long)(d->max >> 20));
			return fail(c, sec, key, "%s", range);
		}
		*(uint64_t *)(void *)field = v;
		return 1;
	case KEY_ENUM:
		for (int i = 0; d->names[i]; i++) {
			if (strcmp(value, d->names[i]) == 0) {
				*(int *)(void *)field = i;
				return 1;
			}
		}
		return fail(c, sec, key, "'%s' is not one of the allowed values", value);
	case KEY_BOOL:
		if (strcmp(value, "on") != 0 && strcmp(value, "off") != 0)
			return fail(c, sec, key, "'%s': want on or off", value);
		*(bool *)(void *)field = strcmp(value, "on") == 0;
		return 1;
	case KEY_LEVEL: {
		enum log_level lvl;
		if (log_parse_level(value, &lvl) < 0)
			return fail(c, sec, key, "'%s': want error, warn, info or debug", value);
		*(enum log_level *)(void *)field = lvl;
		return 1;
	}
	case KEY_LINK:
		return set_link(c, sec, key, value);
	case KEY_ALLOW: {
		struct nbd_allow a;
		char why[160];
		if (strlen(value) >= d->size)
			return fail(c, sec, key, "'%.32s...' is too long", value);
		if (nbd_allow_parse(value, &a, why, sizeof(why)) < 0)
			return fail(c, sec, key, "%s", why);
		if (a.n == 0)
			return fail(c, sec, key, "no network given (leave the key out for any)%s",
				    "");
		strcpy(field, value);
		return 1;
	}
	}
	return fail(c, sec, key, "internal: unknown key type%s", "");
}

#if INI_HANDLER_LINENO
static int handler(void *user, const char *section, const char *name, const char *value, int lineno)
#else
static int handler(void *user, const char *section, const char *name, const char *value)
#endif
{
	struct parse_ctx *c = user;
	bool section_known = false;
	const char *lsection = section, *lname = name; /* looked up: the new spelling */

#if INI_HANDLER_LINENO
	c->line = lineno;
#else
	c->line++; /* approximate; ini_parse's return value gives the exact line */
#endif
	if (c->failed)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(renamed); i++) {
		const struct key_rename *r = &renamed[i];
		if (strcmp(r->section, section) == 0 && strcmp(r->key, name) == 0) {
			LOG_WARN("%s:%d: [%s] %s is now [%s] %s; please rename it", c->name,
				 c->line, section, name, r->new_section, r->new_key);
			c->cfg->renamed_keys++;
			lsection = r->new_section;
			lname = r->new_key;
			break;
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(schema); i++) {
		const struct key_def *d = &schema[i];
		if (strcmp(d->section, lsection) != 0)
			continue;
		section_known = true;
		if (strcmp(d->key, lname) != 0)
			continue;
		if (c->seen[i] && d->type != KEY_LINK)
			return fail(c, section, name, "given twice%s", "");
		c->seen[i] = true;
		return set_value(c, d, section, name, value);
	}
	if (!section_known)
		return fail(c, section, name, "unknown section [%s]", section);
	return fail(c, section, name, "unknown key%s", "");
}

/* The failover timings only make sense in a certain order (docs/FAILOVER.md):
 * refuse a set that would cause false failovers or a flickering I/O gate. */
static int check_monitor(struct parse_ctx *c)
{
	uint64_t hb = c->cfg->monitor.heartbeat_ms, deadline = c->cfg->monitor.deadline_ms;
	uint64_t mbox = c->cfg->monitor.mailbox_ms,
		 mbox_deadline = c->cfg->monitor.mailbox_deadline_ms;
	uint64_t lease = c->cfg->monitor.lease_ms, watchdog = c->cfg->monitor.watchdog_ms;
	const char *what = NULL;

	if (deadline < 2 * hb)
		what = "deadline_ms: want at least 2 x heartbeat_ms";
	else if (mbox_deadline < 2 * mbox)
		what = "mailbox_deadline_ms: want at least 2 x mailbox_ms";
	else if (lease < 2 * mbox)
		what = "lease_ms: want at least 2 x mailbox_ms";
	else if (watchdog <= lease)
		what = "watchdog_ms: want more than lease_ms";
	if (!what)
		return 0;
	snprintf(c->err, c->errlen, "%s: [monitor] %s", c->name, what);
	return -EINVAL;
}

static int finish(struct parse_ctx *c, int rc)
{
	if (rc > 0) {
		/* inih's line number is exact; rewrite the message with it. */
		/* Built again from the parts, never parsed back out of err:
		 * a path longer than err truncated it (and the parse read
		 * past its end). */
		if (c->failed) {
			snprintf(c->err, c->errlen, "%s:%d: %s", c->name, rc, c->what);
		} else {
			snprintf(c->err, c->errlen, "%s:%d: syntax error", c->name, rc);
		}
		return -EINVAL;
	}
	if (rc < 0) {
		snprintf(c->err, c->errlen, "%s: cannot read: %s", c->name,
			 rc == -1 ? strerror(errno) : "out of memory");
		return -ENOENT;
	}
	for (size_t i = 0; i < ARRAY_SIZE(schema); i++) {
		if (schema[i].required && !c->seen[i]) {
			snprintf(c->err, c->errlen, "%s: [%s] %s: required key is missing", c->name,
				 schema[i].section, schema[i].key);
			return -EINVAL;
		}
	}
	if (c->cfg->ic.n_links > 0 && c->cfg->ic.instances > c->cfg->ic.n_links) {
		snprintf(c->err, c->errlen, "%s: [ic] instances: more instances than links",
			 c->name);
		return -EINVAL;
	}
	if (c->cfg->proxy.chunk > c->cfg->proxy.port_mem / 2) {
		snprintf(c->err, c->errlen,
			 "%s: [proxy] chunk: more than half of port_mem (each half holds the "
			 "data in flight one way)",
			 c->name);
		return -EINVAL;
	}
	if (c->cfg->nbd.tls != NBD_TLS_OFF && !c->cfg->nbd.tls_certificates[0] &&
	    !c->cfg->nbd.tls_psk[0]) {
		snprintf(c->err, c->errlen, "%s: [nbd] tls: %s needs tls_certificates or tls_psk",
			 c->name, tls_names[c->cfg->nbd.tls]);
		return -EINVAL;
	}
	if (c->cfg->nbd.tls_verify_peer && !c->cfg->nbd.tls_certificates[0]) {
		snprintf(c->err, c->errlen, "%s: [nbd] tls_verify_peer: needs tls_certificates",
			 c->name);
		return -EINVAL;
	}
	return check_monitor(c);
}

static void ini_setup(void)
{
	/* Allow "key = value   # comment" as in the README's examples. */
	ini_inline_comment_prefixes = ";#";
	ini_stop_on_first_error = true;
	ini_allow_multiline = false;
	ini_max_line = 1024;
}

int config_load(const char *path, struct duet_config *cfg, char *err, size_t errlen)
{
	struct parse_ctx c = {.cfg = cfg, .name = path, .err = err, .errlen = errlen};
	FILE *f;
	int rc;

	config_defaults(cfg);
	snprintf(cfg->path, sizeof(cfg->path), "%s", path);
	f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -ENOENT;
	}
	ini_setup();
	rc = ini_parse_file(f, handler, &c);
	fclose(f);
	return finish(&c, rc);
}

int config_load_string(const char *name, const char *text, struct duet_config *cfg, char *err,
		       size_t errlen)
{
	struct parse_ctx c = {.cfg = cfg, .name = name, .err = err, .errlen = errlen};

	config_defaults(cfg);
	snprintf(cfg->path, sizeof(cfg->path), "%s", name);
	ini_setup();
	return finish(&c, ini_parse_string(text, handler, &c));
}
