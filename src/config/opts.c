/* Each module's options struct, filled from the config: the one place that
 * knows both the INI layout and the modules' settings.
 *
 * Rule kept: every function starts from the module's own defaults
 * (*_opts_init) and copies only configured values; nothing here allocates
 * or validates (config.c validated the file), and strings in the options
 * point into the config, which outlives them. */
#include "config/config.h"

#include <stdio.h>

#include "common/util.h"

void config_store_opts(const struct duet_config *cfg, struct store_opts *o)
{
	store_opts_init(o);
	o->engine = cfg->store.io_engine;
	o->depth = (unsigned)cfg->store.io_depth;
	o->workers = (unsigned)cfg->store.io_workers;
	o->direct_io = cfg->store.direct_io;
}

void config_ccm_opts(const struct duet_config *cfg, struct ccm_opts *o)
{
	ccm_opts_init(o);
	snprintf(o->node, sizeof(o->node), "%s", cfg->node.id);
	snprintf(o->partner, sizeof(o->partner), "%s", cfg->ic.partner);
	snprintf(o->cluster_id, sizeof(o->cluster_id), "%s", cfg->ic.cluster_id);
	snprintf(o->provider, sizeof(o->provider), "%s", cfg->ic.provider);
	snprintf(o->secret_file, sizeof(o->secret_file), "%s", cfg->ic.secret_file);
	o->n_links = MIN(cfg->ic.n_links, CCM_MAX_LINKS);
	for (unsigned i = 0; i < o->n_links; i++) {
		const struct config_link *l = &cfg->ic.links[i];
		snprintf(o->links[i].name, sizeof(o->links[i].name), "%s", l->name);
		snprintf(o->links[i].local, sizeof(o->links[i].local), "%s", l->local);
		snprintf(o->links[i].peer, sizeof(o->links[i].peer), "%s", l->peer);
	}
	o->instances = (unsigned)cfg->ic.instances;
	o->balance = cfg->ic.balance;
	o->probe_ms = cfg->ic.probe_ms;
	o->link_deadline_ms = cfg->ic.link_deadline_ms;
	o->spin_us = (unsigned)cfg->ic.spin_us;
	o->session_deadline_ms = cfg->ic.session_deadline_ms;
	o->instance_max_load = cfg->ic.instance_max_load;
}

void config_mirror_opts(const struct duet_config *cfg, const char *log_path, struct mirror_opts *o)
{
	mirror_opts_init(o);
	o->path = log_path;
	o->size = cfg->mirror.log_size;
	o->node_id = cfg->node.id;
	o->mode = cfg->mirror.mode;
	o->durability = cfg->mirror.durability;
	o->down = cfg->mirror.down;
	o->suspend_timeout_ms = cfg->mirror.suspend_timeout_ms;
	o->cp_interval_ms = cfg->mirror.cp_interval_ms;
	o->group_window = (unsigned)cfg->mirror.group_window;
}

void config_monitor_opts(const struct duet_config *cfg, struct monitor_opts *o)
{
	_Static_assert(CONFIG_ID_MAX <= MONITOR_ID_MAX, "node ids fit in monitor records");
	monitor_opts_init(o);
	o->node_id = cfg->node.id;
	o->partner_id = cfg->ic.partner;
	o->shelf = cfg->node.shelf;
	o->partner_shelf = cfg->monitor.partner_shelf;
	o->n_links = MIN(cfg->ic.n_links, MONITOR_MAX_LINKS);
	for (unsigned i = 0; i < o->n_links; i++)
		o->link_names[i] = cfg->ic.links[i].name;
	o->heartbeat_ms = cfg->monitor.heartbeat_ms;
	o->deadline_ms = cfg->monitor.deadline_ms;
	o->mailbox_ms = cfg->monitor.mailbox_ms;
	o->mailbox_deadline_ms = cfg->monitor.mailbox_deadline_ms;
	o->lease_ms = cfg->monitor.lease_ms;
	o->fence_margin_ms = cfg->monitor.fence_margin_ms;
	o->watchdog_ms = cfg->monitor.watchdog_ms;
	o->auto_giveback = cfg->monitor.auto_giveback;
	o->giveback_delay_ms = cfg->monitor.giveback_delay_ms;
	o->boot_grace_ms = cfg->monitor.boot_grace_ms;
}

void config_proxy_opts(const struct duet_config *cfg, struct proxy_opts *o)
{
	*o = (struct proxy_opts){
	    .node = cfg->node.id,
	    .n_ports = (unsigned)cfg->proxy.ports,
	    .port_mem = cfg->proxy.port_mem,
	    .chunk = cfg->proxy.chunk,
	    .timeout_ms = cfg->proxy.timeout_ms,
	};
}

void config_nbd_opts(const struct duet_config *cfg, bool proxy, struct nbd_server_opts *o)
{
	*o = (struct nbd_server_opts){
	    .listen = proxy ? cfg->nbd.proxy_listen : cfg->nbd.listen,
	    .name = proxy ? "proxy" : "nbd",
	    .max_payload = cfg->nbd.max_payload,
	    .conn_buffer = cfg->nbd.conn_buffer,
	    .tls = cfg->nbd.tls,
	    .tls_certificates = cfg->nbd.tls_certificates,
	    .tls_psk = cfg->nbd.tls_psk,
	    .tls_verify_peer = cfg->nbd.tls_verify_peer,
	    .allow = cfg->nbd.allow,
	    /* The service address comes and goes with the volumes. */
	    .freebind = cfg->node.service_address[0] != '\0',
	};
}

void config_balance_opts(const struct duet_config *cfg, struct balance_opts *o)
{
	balance_opts_init(o);
	o->enabled = cfg->balance.auto_on;
	o->imbalance_milli = cfg->balance.imbalance_milli;
	o->window_s = cfg->balance.window_s;
	o->min_interval_s = cfg->balance.min_interval_s;
}

/* A reactor that waited a fifth of the link deadline for a CPU is on its
 * way to the stalls that take links out (docs/CCM.md, "Liveness under
 * load"), and one that only shares its CPUs with a client is not. */
uint64_t config_realtime_late_ns(const struct duet_config *cfg)
{
	uint64_t late = cfg->ic.link_deadline_ms * 1000000ull / 5;

	return late > 5000000ull ? late : 5000000ull;
}
