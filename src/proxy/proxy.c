/* The top of the proxy: its life cycle, the CCM client whose callbacks
 * dispatch to the forwarding side (forward.c and fw_*.c) and the serving
 * side (serve.c), the public hooks of proxy.h, and status. Calls go one
 * way: down from here into the two sides, which never call back into this
 * file (what they share is in port.c). See proxy_int.h for the layering. */
#define LOG_MODULE "proxy"
#include "proxy/proxy_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

static struct pxport *port_of(struct proxy *px, struct ccm_port *cp)
{
	unsigned i = ccm_port_index(cp);

	return i < px->n_ports ? &px->ports[i] : NULL;
}

/* ---- CCM callbacks ---- */

static void cb_partner_ready(struct ccm_client *c, const struct ccm_partner_info *pi, void *arg)
{
	struct proxy *px = arg;

	(void)c;
	snprintf(px->partner, sizeof(px->partner), "%s", pi->node);
	if (!pi->client_present) {
		/* It may still register (a partner registers its proxy only
		 * after replaying its NVRAM log): its ports come up then. */
		px->ready_seen = true;
		px->ready_gen = pi->generation;
		LOG_INFO("partner %s has no proxy (yet): its volumes are not reachable here",
			 pi->node);
		return;
	}
	px->session_up = true;
	proxy_fw_partner_ready(px, pi->generation);
}

static void cb_terminating(struct ccm_client *c, enum ccm_term_reason why, void *arg)
{
	struct proxy *px = arg;

	(void)c;
	(void)why;
	px->session_up = false;
	px->ready_seen = false;
}

static void cb_port_up(struct ccm_port *cp, void *arg)
{
	struct proxy *px = arg;
	struct pxport *p = port_of(px, cp);

	if (!p)
		return;
	p->up = true;
	p->blocked = false;
	proxy_port_drop_batch(p);
	proxy_srv_port_up(p);
	proxy_fw_port_up(p);
	if (!px->session_up && px->ready_seen) {
		/* The partner's proxy registered during the session: no
		 * partner_ready follows, its ports just come up. */
		px->ready_seen = false;
		px->session_up = true;
		proxy_fw_partner_ready(px, px->ready_gen);
	}
}

static void cb_port_down(struct ccm_port *cp, void *arg)
{
	struct proxy *px = arg;
	struct pxport *p = port_of(px, cp);

	if (!p)
		return;
	p->up = false;
	p->blocked = false;
	proxy_port_drop_batch(p);
	proxy_fw_port_down(p);
	proxy_srv_port_down(p);
}

struct rx_ctx {
	struct proxy *px;
	struct pxport *p;
};

static void dispatch(void *arg, const void *msg, size_t len)
{
	struct rx_ctx *rx = arg;
	struct pxport *p = rx->p;

	if (!p->up)
		return; /* the port went down under a batch */
	switch (proxy_wire_msg_type(msg, len)) {
	case PX_REQ:
		proxy_srv_on_req(p, msg, len);
		break;
	case PX_REP:
		proxy_fw_on_rep(p, msg, len);
		break;
	case PX_HELLO:
		proxy_srv_on_hello(p, msg, len);
		break;
	case PX_VOLS:
		proxy_fw_on_vols(p, msg, len);
		break;
	default:
		proxy_log_bad(rx->px, false, "message", "unknown type or magic");
		break;
	}
}

static void cb_message(struct ccm_port *cp, const void *msg, size_t len, void *arg)
{
	struct proxy *px = arg;
	struct rx_ctx rx = {px, port_of(px, cp)};
	const char *why;

	if (!rx.p)
		return;
	if (proxy_wire_msg_type(msg, len) != PX_BATCH) {
		dispatch(&rx, msg, len);
		return;
	}
	if (proxy_wire_batch_walk(msg, len, dispatch, &rx, &why) < 0)
		proxy_log_bad(px, false, "batch", why);
}

static void cb_send_ready(struct ccm_port *cp, void *arg)
{
	struct proxy *px = arg;
	struct pxport *p = port_of(px, cp);

	if (!p)
		return;
	p->blocked = false;
	if (proxy_port_flush(p) == -EAGAIN)
		return;
	proxy_srv_flush(p);
	proxy_fw_pump(px);
}

static const struct ccm_client_ops client_ops = {
    .partner_ready = cb_partner_ready,
    .terminating = cb_terminating,
    .port_up = cb_port_up,
    .port_down = cb_port_down,
    .message = cb_message,
    .send_ready = cb_send_ready,
};

/* ---- life cycle ---- */

static void free_all(struct proxy *px)
{
	for (unsigned i = 0; px->ports && i < px->n_ports; i++) {
		free(px->ports[i].batch);
		proxy_pmem_fini(&px->ports[i].fmem);
		proxy_pmem_fini(&px->ports[i].smem);
	}
	proxy_pmem_maps_put(px->maps);
	free(px->ports);
	free(px->scratch);
	free(px);
}

static int check_opts(const struct proxy_opts *o, struct proxy *px)
{
	px->n_ports = o->n_ports ? o->n_ports : PROXY_DEFAULT_PORTS;
	px->port_mem = o->port_mem ? o->port_mem : PROXY_DEFAULT_PORT_MEM;
	px->chunk = o->chunk ? o->chunk : MIN((uint64_t)PROXY_DEFAULT_CHUNK, px->port_mem / 2);
	px->timeout_ns = (o->timeout_ms ? o->timeout_ms : PROXY_DEFAULT_TIMEOUT_MS) * NS_PER_MS;
	px->port_mem &= ~(size_t)(2 * PX_UNIT - 1);
	if (px->n_ports > CCM_MAX_PORTS || px->port_mem < (1u << 20) || !o->local_ops ||
	    px->chunk < PX_UNIT || px->chunk > px->port_mem / 2 || px->chunk > PX_CHUNK_MAX) {
		LOG_ERROR("bad options: 1 to %d ports of at least 1 MiB, a chunk of %u bytes to "
			  "half the port memory, and a local backend",
			  CCM_MAX_PORTS, PX_UNIT);
		return -EINVAL;
	}
	return 0;
}

int proxy_create(struct loop *loop, struct ccm *ccm, const struct proxy_opts *opts,
		 struct proxy **out)
{
	struct proxy *px = calloc(1, sizeof(*px));
	struct ccm_client_spec spec;
	int rc;

	if (!px)
		return -ENOMEM;
	px->loop = loop;
	px->ccm = ccm;
	/* Both sides' lists first: the failure path frees through them. */
	proxy_fw_init(px);
	rc = proxy_srv_init(px);
	if (rc < 0)
		goto fail;
	snprintf(px->node, sizeof(px->node), "%s", opts->node ? opts->node : "");
	rc = check_opts(opts, px);
	if (rc < 0)
		goto fail;
	px->lops = opts->local_ops;
	px->lctx = opts->local_ctx;
	px->vols_changed = opts->partner_vols_changed;
	px->vols_changed_arg = opts->changed_arg;
	loop_timer_init(&px->flush_timer, proxy_port_flush_all, px);
	while (px->session == 0) {
		rc = util_random_bytes(&px->session, sizeof(px->session));
		if (rc < 0)
			goto fail;
	}
	px->next_seq = px->oldest_seq = 1;
	px->scratch = malloc(CCM_MSG_MAX);
	px->ports = calloc(px->n_ports, sizeof(*px->ports));
	if (!px->scratch || !px->ports) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = proxy_pmem_maps_create(px->n_ports, px->port_mem, &px->maps);
	if (rc < 0)
		goto fail;
	for (unsigned i = 0; i < px->n_ports; i++) {
		struct pxport *p = &px->ports[i];
		list_init(&p->rq);
		slist_init(&p->bufq);
		slist_init(&p->repq);
		p->batch = malloc(PX_MSG_MAX);
		if (!p->batch) {
			rc = -ENOMEM;
			goto fail;
		}
		proxy_wire_batch_init(p->batch);
		p->batch_len = sizeof(struct px_batch);
		p->px = px;
		p->idx = i;
		p->half = px->port_mem / 2;
		if (proxy_pmem_init(&p->fmem, p->half) < 0 ||
		    proxy_pmem_init(&p->smem, px->port_mem - p->half) < 0) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	spec = (struct ccm_client_spec){
	    .name = "proxy",
	    .n_ports = px->n_ports,
	    .port_mem = px->port_mem,
	    .port_buf = px->maps->map,
	    .flags = CCM_CLIENT_HEAVY,
	    .ops = &client_ops,
	    .arg = px,
	};
	rc = ccm_client_register(ccm, &spec, &px->client);
	if (rc < 0) {
		LOG_ERROR("cannot register with the CCM: %s", strerror(-rc));
		goto fail;
	}
	for (unsigned i = 0; i < px->n_ports; i++) {
		struct pxport *p = &px->ports[i];
		p->cp = ccm_client_port(px->client, i);
		p->mem = px->maps->map[i];
	}
	LOG_INFO("proxy: %u port%s of %zu MiB, requests up to %llu KiB, timeout %llu ms",
		 px->n_ports, px->n_ports == 1 ? "" : "s", px->port_mem >> 20,
		 (unsigned long long)(px->chunk >> 10),
		 (unsigned long long)(px->timeout_ns / NS_PER_MS));
	*out = px;
	return 0;
fail:
	proxy_srv_free(px);
	free_all(px);
	return rc;
}

bool proxy_busy(const struct proxy *px)
{
	return px && px->st.served_inflight > 0;
}

void proxy_stop(struct proxy *px)
{
	if (!px || px->stopped)
		return;
	px->stopped = true;
	loop_timer_cancel(px->loop, &px->flush_timer);
	proxy_fw_fail_all(px, -ESHUTDOWN);
	if (px->client) {
		/* Its ports go down without callbacks; its operations in flight
		 * fail first. Served requests still at the local backend find
		 * the port down and drop their replies. */
		for (unsigned i = 0; i < px->n_ports; i++) {
			px->ports[i].up = false;
			px->ports[i].fstate = FP_DOWN;
			proxy_port_drop_batch(&px->ports[i]);
		}
		ccm_client_unregister(px->client);
		px->client = NULL;
		for (unsigned i = 0; i < px->n_ports; i++)
			proxy_srv_port_down(&px->ports[i]);
	}
	px->session_up = false;
}

void proxy_destroy(struct proxy *px)
{
	if (!px)
		return;
	proxy_stop(px);
	if (px->st.served_inflight) {
		/* The local backend still holds requests that point here (and
		 * into the port memory): keep it all rather than free it under
		 * them. */
		LOG_ERROR("destroyed with %llu partner requests still executing",
			  (unsigned long long)px->st.served_inflight);
		px->dead = true;
		return;
	}
	proxy_fw_free(px);
	proxy_srv_free(px);
	free_all(px);
}

const struct nbd_backend_ops *proxy_backend_ops(void)
{
	return &proxy_fw_ops;
}

void proxy_local_volumes_changed(struct proxy *px)
{
	if (px)
		proxy_srv_refresh_vols(px, NULL);
}

void proxy_set_shelf_state(struct proxy *px, unsigned state)
{
	if (!px || px->shelf == state)
		return;
	px->shelf = state;
	proxy_srv_refresh_vols(px, NULL);
}

unsigned proxy_partner_shelf_state(const struct proxy *px)
{
	return px ? px->partner_shelf : 0;
}

bool proxy_partner_lists(struct proxy *px, const char *volume)
{
	struct pvol *v = px ? proxy_fw_vol_find(px, volume) : NULL;

	return v && v->listed && v->id_valid;
}

int proxy_route_local(struct proxy *px, const char *volume, const struct nbd_backend_ops *ops,
		      void *ctx)
{
	return proxy_fw_route_local(px, volume, ops, ctx);
}

int proxy_route_partner(struct proxy *px, const char *volume)
{
	return proxy_fw_route_partner(px, volume);
}

void proxy_set_serving(struct proxy *px, bool serving)
{
	if (px)
		proxy_srv_set_serving(px, serving);
}

/* ---- status ---- */

void proxy_get_stats(const struct proxy *px, struct proxy_stats *st)
{
	*st = px->st;
}

static unsigned ports_ready(const struct proxy *px)
{
	unsigned n = 0;

	for (unsigned i = 0; i < px->n_ports; i++)
		n += px->ports[i].fstate == FP_READY;
	return n;
}

int proxy_status_to_json(const struct proxy *px, struct json_object *root)
{
	struct json_object *o = json_object_new_object();
	struct json_object *srv = json_object_new_object();
	unsigned ready = ports_ready(px);
	const struct proxy_stats *s = &px->st;

	if (!o || !srv) {
		json_object_put(o);
		json_object_put(srv);
		return -ENOMEM;
	}
	json_object_object_add(o, "state",
			       json_object_new_string(ready	       ? "up"
						      : px->session_up ? "connecting"
								       : "waiting"));
	json_object_object_add(o, "partner", json_object_new_string(px->partner));
	jobj_add_u64(o, "ports", px->n_ports);
	jobj_add_u64(o, "ports_ready", ready);
	jobj_add_u64(o, "port_mem", px->port_mem);
	jobj_add_u64(o, "chunk", px->chunk);
	jobj_add_u64(o, "timeout_ms", px->timeout_ns / NS_PER_MS);
	jobj_add_u64(o, "commands", s->commands);
	jobj_add_u64(o, "requests", s->requests);
	jobj_add_u64(o, "bytes_read", s->bytes_read);
	jobj_add_u64(o, "bytes_written", s->bytes_written);
	jobj_add_u64(o, "bytes", s->bytes_read + s->bytes_written);
	jobj_add_u64(o, "errors", s->errors);
	jobj_add_u64(o, "retries", s->retries);
	jobj_add_u64(o, "refused", s->refused);
	jobj_add_u64(o, "timeouts", s->timeouts);
	jobj_add_u64(o, "local", s->local);
	jobj_add_u64(o, "inflight", s->inflight);
	jobj_add_u64(o, "rtt_us", px->rtt_ns / 1000);
	jobj_add_u64(o, "bad_replies", s->bad_replies);
	jobj_add_u64(srv, "requests", s->served);
	jobj_add_u64(srv, "bytes", s->served_bytes);
	jobj_add_u64(srv, "duplicates", s->duplicates);
	jobj_add_u64(srv, "bad_requests", s->bad_requests);
	jobj_add_u64(srv, "inflight", s->served_inflight);
	jobj_add_u64(srv, "refused", s->served_refused);
	json_object_object_add(srv, "serving", json_object_new_boolean(px->serving));
	json_object_object_add(o, "served", srv);
	json_object_object_add(root, "proxy", o);
	return 0;
}

int proxy_volumes_to_json(const struct proxy *px, struct json_object *volumes)
{
	const struct list *pos;

	list_for_each(pos, &px->vols)
	{
		const struct pvol *v = list_entry(pos, struct pvol, node);
		struct json_object *o;
		if (!v->listed && !v->local)
			continue;
		o = json_object_new_object();
		if (!o)
			return -ENOMEM;
		json_object_object_add(o, "name", json_object_new_string(v->name));
		json_object_object_add(o, "owner", json_object_new_string(px->partner));
		json_object_object_add(o, "served_by",
				       json_object_new_string(v->local ? px->node : px->partner));
		json_object_object_add(o, "port", json_object_new_string("proxy"));
		/* The partner lists the volumes of its own shelf. */
		json_object_object_add(o, "shelf", json_object_new_string(px->partner));
		jobj_add_u64(o, "size", v->local ? v->linfo.size : v->info.size);
		json_object_object_add(o, "state",
				       json_object_new_string(v->local		? "local"
							      : ports_ready(px) ? "reachable"
										: "waiting"));
		json_object_array_add(volumes, o);
	}
	return 0;
}
