/**
 * @file config.h
 * The node's INI configuration (libinih): one schema, one struct.
 *
 * Every key is declared once in the schema in config.c with its type,
 * bounds and default; an unknown section or key, a bad value, a missing
 * required key or a missing file is an error naming the file, line and key.
 */
#ifndef DUET_COMMON_CONFIG_H
#define DUET_COMMON_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/log.h"

#define CONFIG_ID_MAX	 16
#define CONFIG_ADDR_MAX	 128
#define CONFIG_MAX_LINKS 8

/** One interconnect link: "link = NAME LOCAL_HOST:PORT PEER_HOST:PORT". */
struct config_link {
	char name[CONFIG_ID_MAX];
	char local[CONFIG_ADDR_MAX];
	char peer[CONFIG_ADDR_MAX];
};

enum config_io_engine {
	IO_ENGINE_URING = 0,
	IO_ENGINE_THREADS,
};

enum config_balance {
	BALANCE_ROUND_ROBIN = 0,
	BALANCE_LEAST_OUTSTANDING,
};

enum config_onoff {
	CONFIG_OFF = 0,
	CONFIG_ON,
};

/** [mirror] mirror: where a write is logged before it is acknowledged. */
enum config_mirror_mode {
	CONFIG_MIRROR_MODE_OFF = 0, /* no NVRAM log: writes go straight to the volume files */
	CONFIG_MIRROR_MODE_ON,	    /* the local log and the partner's image of it */
	CONFIG_MIRROR_MODE_LOCAL,   /* the local log only (single node: restart replay) */
};

/** [mirror] durability: which syncs stand behind an acknowledged write. */
enum config_durability {
	DURABILITY_MEMORY = 0, /* local NVRAM log + partner's image, in memory */
	DURABILITY_LOCAL_SYNC, /* also fdatasync of the local log before the ack */
};

/** [mirror] mirror_down: what writes do while the partner's image is not in sync. */
enum config_mirror_down {
	CONFIG_MIRROR_DOWN_DEGRADE =
	    0,			    /* go on locally; the status says takeover would lose data */
	CONFIG_MIRROR_DOWN_SUSPEND, /* hold acks until in sync again, EIO after the timeout */
};

struct duet_config {
	char path[PATH_MAX];
	unsigned renamed_keys; /* old spellings of renamed keys seen (each warned) */
	struct {
		char id[CONFIG_ID_MAX];
		char shelf[PATH_MAX];
		char control[PATH_MAX];
		enum log_level log_level;
		char nvram[PATH_MAX]; /* the NVRAM log file; "" when not set (node's choice) */
		uint64_t nvram_size;  /* bytes, 64M by default */
	} node;
	struct {
		char listen[CONFIG_ADDR_MAX];
		char proxy_listen[CONFIG_ADDR_MAX]; /* "" when not set */
		uint64_t max_payload;		    /* bytes, largest request */
		uint64_t conn_buffer;		    /* bytes in flight per connection */
	} nbd;
	struct {
		enum config_io_engine io_engine;
		uint64_t io_depth;   /* io_uring entries */
		uint64_t io_workers; /* threads of the worker-pool engine */
	} store;
	struct {
		char provider[64];
		char cluster_id[64];
		char secret_file[PATH_MAX];
		char partner[CONFIG_ID_MAX];
		struct config_link links[CONFIG_MAX_LINKS];
		unsigned n_links;
		uint64_t instances;
		enum config_balance balance;
		uint64_t heartbeat_ms;
		uint64_t link_deadline_ms;
		uint64_t session_deadline_ms;
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
		uint64_t heartbeat_ms;	     /* heartbeat interval on every link */
		uint64_t deadline_ms;	     /* no heartbeat on any link this long: suspect */
		uint64_t mailbox_ms;	     /* mailbox write/read cycle */
		uint64_t mailbox_deadline_ms; /* partner mailbox unchanged this long: silent */
		uint64_t lease_ms;	  /* I/O allowed this long after a clean own-mark read */
		uint64_t fence_margin_ms; /* taker waits lease_ms + this after its mark */
		uint64_t watchdog_ms;	  /* reactor stall that ends the process */
		enum config_onoff auto_giveback;
		uint64_t giveback_delay_ms; /* partner waiting this long: automatic giveback */
	} monitor;
	/** NVRAM mirroring (docs/MIRROR.md). */
	struct {
		enum config_mirror_mode mode; /* mirror = on|local|off */
		enum config_durability durability;
		enum config_mirror_down down;
		uint64_t suspend_timeout_ms;  /* mirror_down = suspend: EIO after this */
		uint64_t cp_interval_ms;      /* consistency point timer */
		char partner_image[PATH_MAX]; /* file backing the partner's image; "" not set */
	} mirror;
};

/** Fill @p cfg with every default. */
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

#endif
