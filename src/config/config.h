/**
 * @file config.h
 * The node's INI configuration (libinih): one schema, one struct.
 *
 * Every key is declared once in the schema in config.c with its type,
 * bounds and default; an unknown section or key, a bad value, a missing
 * required key or a missing file is an error naming the file, line and key.
 */
#ifndef DUET_CONFIG_CONFIG_H
#define DUET_CONFIG_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "balance/balance.h"
#include "ccm/ccm.h"
#include "common/log.h"
#include "mirror/mirror.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"
#include "store/store.h"

#define CONFIG_ID_MAX	 16
#define CONFIG_ADDR_MAX	 128
#define CONFIG_MAX_LINKS 8

/** [node] realtime: when the node's threads take SCHED_RR (util_go_realtime). */
enum node_realtime {
	NODE_RT_OFF,  /* never */
	NODE_RT_ON,   /* from the start */
	NODE_RT_AUTO, /* once the reactor finds itself late (loop_watch_late) */
};

/** One interconnect link: "link = NAME LOCAL_HOST:PORT PEER_HOST:PORT". */
struct config_link {
	char name[CONFIG_ID_MAX];
	char local[CONFIG_ADDR_MAX];
	char peer[CONFIG_ADDR_MAX];
};

struct duet_config {
	char path[PATH_MAX];
	unsigned renamed_keys; /* old spellings of renamed keys seen (each warned) */
	struct {
		char id[CONFIG_ID_MAX];
		char shelf[PATH_MAX];
		char control[PATH_MAX];
		char control_group[64]; /* "": the control socket is 0600 */
		enum log_level log_level;
		enum node_realtime realtime; /* SCHED_RR + mlockall where permitted */
		char service_address[96];    /* "ADDR/PREFIX dev IFACE"; "" none */
		bool service_arp_tune;	     /* arp_ignore=1, arp_announce=2 on its interface */
		uint64_t service_lifetime_s; /* the addresses expire unless renewed; 0 never */
	} node;
	struct {
		char listen[CONFIG_ADDR_MAX];
		char proxy_listen[CONFIG_ADDR_MAX]; /* "" when not set */
		uint64_t max_payload;		    /* bytes, largest request */
		uint64_t conn_buffer;		    /* bytes in flight per connection */
		enum nbd_tls_mode tls;		    /* tls = off | on | require */
		char tls_certificates[PATH_MAX];    /* ca-cert.pem, server-*.pem; "" none */
		char tls_psk[PATH_MAX];		    /* psktool file; "" none */
		bool tls_verify_peer;		    /* client certificates against the CA */
		char allow[1024];		    /* "CIDR, ..."; "" anyone */
		uint64_t buffer_limit; /* payload bytes buffered across all connections */
	} nbd;
	struct {
		enum store_engine io_engine;
		uint64_t io_depth;   /* io_uring entries */
		uint64_t io_workers; /* threads of the worker-pool engine */
		bool direct_io;	     /* volume files O_DIRECT (docs/STORE.md) */
	} store;
	struct {
		char provider[64];
		char cluster_id[64];
		char secret_file[PATH_MAX];
		char partner[CONFIG_ID_MAX];
		struct config_link links[CONFIG_MAX_LINKS];
		unsigned n_links;
		uint64_t instances;
		enum ccm_balance balance;
		uint64_t probe_ms; /* link probe interval (not the monitor's heartbeat) */
		uint64_t link_deadline_ms;
		uint64_t session_deadline_ms;
		uint64_t spin_us; /* busy-poll a link's CQ this long with operations in flight */
		uint64_t instance_max_load; /* bytes/s past which ports go to another
					       CCM instance; 0: least-loaded only */
	} ic;
	struct {
		uint64_t timeout_ms; /* a forwarded command fails with EIO after this */
		uint64_t ports;	     /* CCM ports of the proxy client */
		uint64_t port_mem;   /* bytes per port: half for data in flight each way */
		uint64_t chunk;	     /* largest forwarded request; bigger ones are split */
	} proxy;
	/** Failover monitor (docs/FAILOVER.md explains every figure). */
	struct {
		char
		    partner_shelf[PATH_MAX]; /* where this node sees the partner's shelf; "" none */
		char partner_service_address[96]; /* the partner's, moved here at takeover */
		uint64_t partner_nbd_port;	  /* its listeners' ports there; 0 none */
		uint64_t partner_proxy_port;
		uint64_t heartbeat_ms;	      /* heartbeat interval on every link */
		uint64_t deadline_ms;	      /* no heartbeat on any link this long: suspect */
		uint64_t mailbox_ms;	      /* mailbox write/read cycle */
		uint64_t mailbox_deadline_ms; /* partner mailbox unchanged this long: silent */
		uint64_t lease_ms;	  /* I/O allowed this long after a clean own-mark read */
		uint64_t fence_margin_ms; /* taker waits lease_ms + this after its mark */
		uint64_t watchdog_ms;	  /* reactor stall that ends the process */
		bool auto_giveback;
		uint64_t giveback_delay_ms; /* partner waiting this long: automatic giveback */
		uint64_t boot_grace_ms;	    /* not heard since start: no auto takeover yet */
	} monitor;
	/** Hooks run on node events (docs/HOOKS.md). */
	struct {
		char dir[PATH_MAX];   /* "" : no hooks */
		uint64_t timeout_ms;  /* a hook running longer is killed (its group) */
		uint64_t max_running; /* hooks at once; more wait in a bounded queue */
	} hooks;
	/** NVRAM mirroring (docs/MIRROR.md). */
	struct {
		enum mirror_mode mode; /* mirror = on|local|off */
		enum mirror_durability durability;
		enum mirror_down_policy down;
		uint64_t suspend_timeout_ms;  /* mirror_down = suspend: EIO after this */
		uint64_t cp_interval_ms;      /* consistency point timer */
		uint64_t group_window;	      /* record writes in flight before grouping */
		char partner_image[PATH_MAX]; /* file backing the partner's image; "" not set */
		char log[PATH_MAX]; /* the NVRAM log file; "" when not set (node's choice) */
		uint64_t log_size;  /* bytes, 64M by default */
	} mirror;
	/** Prometheus metrics over HTTP (docs/OPERATIONS.md). */
	struct {
		char listen[CONFIG_ADDR_MAX]; /* ADDR:PORT of /metrics; "" off (the default) */
	} metrics;
	/** Automatic balance on load (docs/RELOCATION.md). */
	struct {
		bool auto_on;
		uint64_t imbalance_milli; /* imbalance x 1000 */
		uint64_t window_s;
		uint64_t min_interval_s;
	} balance;
};

/** Fill @p cfg with every default (the modules' own, from their *_opts_init). */
void config_defaults(struct duet_config *cfg);

/**
 * Parse @p path into @p cfg (defaults first).
 * @param err  receives one line "FILE:LINE: [section] key: what is wrong".
 * @return 0 or -EINVAL / -ENOENT.
 */
int config_load(const char *path, struct duet_config *cfg, char *err, size_t errlen);

/** Same, from a string (tests); @p name stands for the file in errors. */
int config_load_string(const char *name, const char *text, struct duet_config *cfg, char *err,
		       size_t errlen);

/**
 * @name Module options from the config
 * Each fills one module's options struct (defaults first, from the module's
 * own *_opts_init), so that no module sees struct duet_config. Strings point
 * into @p cfg, which must outlive the options' use; the node adds what is
 * not configuration (loop, callbacks, resolved paths).
 * @{
 */
void config_store_opts(const struct duet_config *cfg, struct store_opts *o);
void config_ccm_opts(const struct duet_config *cfg, struct ccm_opts *o);
/** @p log_path: the log file as the node resolved it ([mirror] log or its default). */
void config_mirror_opts(const struct duet_config *cfg, const char *log_path, struct mirror_opts *o);
void config_monitor_opts(const struct duet_config *cfg, struct monitor_opts *o);
void config_proxy_opts(const struct duet_config *cfg, struct proxy_opts *o);
void config_balance_opts(const struct duet_config *cfg, struct balance_opts *o);
/** realtime = auto: how late a timer of the reactor may fire before the
 * node goes real-time (loop_watch_late()): a fifth of the link deadline,
 * at least 5 ms. */
uint64_t config_realtime_late_ns(const struct duet_config *cfg);
/** "off", "on" or "auto", as the file spells it. */
const char *config_realtime_name(enum node_realtime mode);
/** The own NBD listener ([nbd] listen), or with @p proxy the proxy listener. */
void config_nbd_opts(const struct duet_config *cfg, bool proxy, struct nbd_server_opts *o);
/** @} */

#endif
