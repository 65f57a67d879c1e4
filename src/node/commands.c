/* The control commands (status, volume_*, links, ic_reset, takeover,
 * giveback): each turns a JSON request into calls on the node's parts and a
 * JSON result.
 *
 * Rule kept: a command validates every member it reads and answers with one
 * line for the operator on error; the status JSON members that scripts rely
 * on (docs/ARCHITECTURE.md, "Control socket") keep their names. */
#define LOG_MODULE "control"
#include "node/node_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ccm/ccm.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"
#include "store/store.h"

/* The volume's allow list: [] when anyone who may connect sees it. */
static struct json_object *allow_json(const struct store_allow *a)
{
	struct json_object *arr = json_object_new_array();

	for (unsigned i = 0; i < a->n; i++)
		json_object_array_add(arr, json_object_new_string(a->id[i]));
	return arr;
}

static struct json_object *volume_json(struct node *n, struct store_volume *v)
{
	struct store_volume_info vi;
	struct json_object *o = json_object_new_object();

	store_volume_get_info(v, &vi);
	json_object_object_add(o, "name", json_object_new_string(vi.name));
	json_object_object_add(o, "owner", json_object_new_string(vi.owner));
	/* Taken over: the partner serves them (through its proxy port). */
	json_object_object_add(o, "served_by",
			       json_object_new_string(n->fenced || n->taken_at_boot
							  ? n->cfg.ic.partner
							  : n->cfg.node.id));
	json_object_object_add(o, "port", json_object_new_string("direct"));
	/* Whose shelf holds the data: this node's store is its own shelf. */
	json_object_object_add(o, "shelf", json_object_new_string(n->cfg.node.id));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)vi.size));
	json_object_object_add(o, "allocated", json_object_new_int64((int64_t)vi.allocated));
	json_object_object_add(o, "uuid", json_object_new_string(vi.uuid));
	jobj_add_bool(o, "direct_io", vi.direct_io);
	json_object_object_add(o, "allow", allow_json(store_volume_allow(v)));
	return o;
}

static struct json_object *volumes_json(struct node *n)
{
	struct json_object *arr = json_object_new_array();
	unsigned count = store_volume_count(n->store);

	for (unsigned i = 0; i < count; i++)
		json_object_array_add(arr, volume_json(n, store_volume_at(n->store, i)));
	return arr;
}

/* "realtime": the setting, whether the node's threads run at SCHED_RR now,
 * and for auto how late the reactor was when it switched. */
static void status_realtime(struct node *n, struct json_object *resp)
{
	struct json_object *o = json_object_new_object();

	jobj_add_str(o, "mode", config_realtime_name(n->cfg.node.realtime));
	json_object_object_add(o, "active", json_object_new_boolean(util_realtime()));
	if (n->rt_late_ns)
		jobj_add_u64(o, "late_ms", n->rt_late_ns / 1000000);
	json_object_object_add(resp, "realtime", o);
}

static int cmd_status(struct node *n, struct json_object *req, struct json_object *resp, char *err,
		      size_t errlen)
{
	struct nbd_server_stats st;
	struct json_object *ha = json_object_new_object();
	struct json_object *session = json_object_new_object();
	struct json_object *mirror;
	struct json_object *nbd = json_object_new_object();
	struct json_object *volumes, *hooks;

	(void)req;
	(void)err;
	(void)errlen;
	jobj_add_str(resp, "node", n->cfg.node.id);
	jobj_add_str(resp, "version", DUET_VERSION);
	jobj_add_u64(resp, "pid", (uint64_t)getpid());
	jobj_add_u64(resp, "uptime_ms", (loop_now_ns() - n->started_ns) / 1000000);
	status_realtime(n, resp);

	monitor_status_json(n->monitor, ha);
	json_object_object_add(resp, "ha", ha);

	if (n->ccm) {
		struct ccm_status cs;
		json_object_put(session);
		ccm_get_status(n->ccm, &cs);
		if (ccm_status_to_json(&cs, resp) < 0) {
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	} else {
		jobj_add_str(session, "state", "down");
		jobj_add_str(session, "reason", "no interconnect links configured");
		json_object_object_add(resp, "session", session);
		json_object_object_add(resp, "links", json_object_new_array());
	}

	mirror = node_mirror_status_json(n);
	if (!mirror) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	json_object_object_add(resp, "mirror", mirror);

	memset(&st, 0, sizeof(st));
	if (n->nbd)
		nbd_server_get_stats(n->nbd, &st);
	jobj_add_str(nbd, "listen", n->cfg.nbd.listen);
	json_object_object_add(nbd, "serving", json_object_new_boolean(n->nbd != NULL));
	jobj_add_u64(nbd, "connections", st.connections);
	jobj_add_u64(nbd, "accepted", st.accepted);
	jobj_add_u64(nbd, "requests", st.requests);
	jobj_add_u64(nbd, "errors", st.errors);
	jobj_add_u64(nbd, "protocol_errors", st.protocol_errors);
	jobj_add_u64(nbd, "refused", st.refused);
	jobj_add_u64(nbd, "bytes_read", st.bytes_read);
	jobj_add_u64(nbd, "bytes_written", st.bytes_written);
	jobj_add_u64(nbd, "inflight", node_datapath_inflight(n->dp));
	if (n->nbd_budget) { /* [nbd] buffer_limit, over both listeners */
		uint64_t used, cached;
		nbd_budget_get(n->nbd_budget, &used, &cached);
		jobj_add_u64(nbd, "buffer_limit", n->cfg.nbd.buffer_limit);
		jobj_add_u64(nbd, "buffered", used);
		jobj_add_u64(nbd, "buffers_cached", cached);
	}
	json_object_object_add(resp, "nbd", nbd);

	volumes = volumes_json(n);
	if (n->proxy) {
		/* The partner's volumes, served here through the proxy port. */
		struct json_object *px;
		if (proxy_volumes_to_json(n->proxy, volumes) < 0 ||
		    proxy_status_to_json(n->proxy, resp) < 0) {
			json_object_put(volumes);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
		if (n->proxy_nbd && json_object_object_get_ex(resp, "proxy", &px)) {
			nbd_server_get_stats(n->proxy_nbd, &st);
			jobj_add_str(px, "listen", n->cfg.nbd.proxy_listen);
			jobj_add_u64(px, "connections", st.connections);
			jobj_add_u64(px, "protocol_errors", st.protocol_errors);
			jobj_add_u64(px, "refused", st.refused);
		}
	}
	node_reloc_fix_volumes(n, volumes); /* relocations: owner, served_by, shelf */
	node_reloc_status_json(n, resp);
	node_move_status_json(n, volumes, resp);
	node_balance_status_json(n, resp);
	json_object_object_add(resp, "volumes", volumes);
	json_object_object_add(resp, "addresses", node_addr_status_json(n));
	hooks = json_object_new_object();
	node_hooks_status_json(n->hooks, hooks);
	json_object_object_add(resp, "hooks", hooks);
	return 0;
}

static int cmd_volume_list(struct node *n, struct json_object *req, struct json_object *resp,
			   char *err, size_t errlen)
{
	(void)req;
	(void)err;
	(void)errlen;
	struct json_object *volumes = volumes_json(n);

	node_reloc_fix_volumes(n, volumes);
	node_move_status_json(n, volumes, NULL);
	json_object_object_add(resp, "volumes", volumes);
	return 0;
}

static int cmd_volume_create(struct node *n, struct json_object *req, struct json_object *resp,
			     char *err, size_t errlen)
{
	struct json_object *allow;
	const char *name;
	uint64_t size;
	const char *ids[STORE_ALLOW_MAX];
	unsigned n_ids = 0;
	struct store_volume *v;
	int rc;

	if (json_object_object_get_ex(req, "allow", &allow)) {
		size_t na = json_object_is_type(allow, json_type_array)
				? json_object_array_length(allow)
				: SIZE_MAX;
		if (na > STORE_ALLOW_MAX) {
			snprintf(err, errlen, "allow: want a list of at most %d identities",
				 STORE_ALLOW_MAX);
			return -EINVAL;
		}
		for (size_t i = 0; i < na; i++) {
			struct json_object *e = json_object_array_get_idx(allow, i);
			ids[n_ids] = json_object_is_type(e, json_type_string)
					 ? json_object_get_string(e)
					 : NULL;
			if (store_allow_id_valid(ids[n_ids]) < 0) {
				snprintf(
				    err, errlen,
				    "allow: an identity is 1 to %d bytes, no control characters",
				    STORE_ALLOW_ID_LEN - 1);
				return -EINVAL;
			}
			n_ids++;
		}
	}
	rc = node_control_volume_args(req, &name, &size, err, errlen);
	if (rc < 0)
		return rc;
	rc = store_volume_create_allow(n->store, name, size, n->cfg.node.id, ids, n_ids);
	if (rc == -EEXIST) {
		snprintf(err, errlen, "volume '%s' exists", name);
		return rc;
	}
	if (rc == -EINVAL) {
		snprintf(err, errlen,
			 "bad volume: the name takes letters, digits, '.', '-' and '_' (at "
			 "most %d), the size is a positive multiple of 512",
			 STORE_NAME_MAX - 1);
		return rc;
	}
	if (rc < 0) {
		snprintf(err, errlen, "cannot create volume: %s", strerror(-rc));
		return rc;
	}
	proxy_local_volumes_changed(n->proxy);
	node_event(n, "volume-created", "DUET_VOLUME", name, NULL);
	v = store_volume_find(n->store, name);
	if (v)
		json_object_object_add(resp, "volume", volume_json(n, v));
	return 0;
}

/* The member "name" of @p req, a string, or NULL with @p err set. */
static const char *req_name(struct json_object *req, const char *cmd, char *err, size_t errlen)
{
	struct json_object *name;

	if (!json_object_object_get_ex(req, "name", &name) ||
	    !json_object_is_type(name, json_type_string)) {
		snprintf(err, errlen, "%s wants a volume name", cmd);
		return NULL;
	}
	return json_object_get_string(name);
}

/* A volume of this node's shelf that this node may change now: not while
 * the partner serves them (taken over: it writes our shelf). */
static struct store_volume *own_volume(struct node *n, const char *name, char *err, size_t errlen)
{
	struct store_volume *v = store_volume_find(n->store, name);

	if (!v) {
		snprintf(err, errlen, "no volume '%s' on this node's shelf%s", name,
			 n->proxy ? " (a partner's volume is changed on the partner)" : "");
		return NULL;
	}
	if (n->fenced || n->taken_at_boot) {
		snprintf(err, errlen,
			 "this node is taken over: its partner serves '%s'; change it after the "
			 "giveback",
			 name);
		return NULL;
	}
	return v;
}

static int cmd_volume_delete(struct node *n, struct json_object *req, struct json_object *resp,
			     char *err, size_t errlen)
{
	const char *name = req_name(req, "volume_delete", err, errlen);
	struct store_volume *v;
	int rc;

	if (!name)
		return -EINVAL;
	v = own_volume(n, name, err, errlen);
	if (!v)
		return -ENOENT;
	if (node_move_moving(n, name)) {
		snprintf(err, errlen, "volume '%s' is being moved: abort the move first", name);
		return -EBUSY;
	}
	rc = node_datapath_volume_delete(n->dp, v, node_control_force(req), err, errlen);
	if (rc < 0)
		return rc;
	/* The partner's proxy drops it from its list: its clients see it gone. */
	proxy_local_volumes_changed(n->proxy);
	node_event(n, "volume-deleted", "DUET_VOLUME", name, NULL);
	jobj_add_str(resp, "message", "volume deleted");
	jobj_add_str(resp, "name", name);
	return 0;
}

static int cmd_volume_resize(struct node *n, struct json_object *req, struct json_object *resp,
			     char *err, size_t errlen)
{
	const char *name = req_name(req, "volume_resize", err, errlen);
	struct json_object *size;
	struct node_volume_use u;
	struct store_volume *v;
	uint64_t old, want;
	char buf[32];
	int rc;

	if (!name)
		return -EINVAL;
	if (!json_object_object_get_ex(req, "size", &size) ||
	    !json_object_is_type(size, json_type_int) || json_object_get_int64(size) <= 0) {
		snprintf(err, errlen, "volume_resize wants a name and a positive size");
		return -EINVAL;
	}
	v = own_volume(n, name, err, errlen);
	if (!v)
		return -ENOENT;
	old = store_volume_size(v);
	want = (uint64_t)json_object_get_int64(size);
	node_datapath_volume_use(n->dp, v, &u);
	if (node_move_moving(n, name)) {
		snprintf(err, errlen, "volume '%s' is being moved: resize it after", name);
		return -EBUSY;
	}
	if (u.away) {
		snprintf(err, errlen, "volume '%s' is relocated to the partner: resize it there",
			 name);
		return -EXDEV;
	}
	if (want < old && !node_control_force(req)) {
		snprintf(err, errlen,
			 "shrinking '%s' from %llu to %llu bytes drops its tail: --force does it "
			 "(with no client connected)",
			 name, (unsigned long long)old, (unsigned long long)want);
		return -EPERM;
	}
	if (want < old && (u.clients || u.inflight)) {
		snprintf(err, errlen, "volume '%s' has %u client%s connected: shrinking refused",
			 name, u.clients, u.clients == 1 ? "" : "s");
		return -EBUSY;
	}
	rc = store_volume_resize(n->store, v, want);
	if (rc == -EINVAL) {
		snprintf(err, errlen,
			 "bad size %llu: a positive multiple of 512 (of 4096 for a volume on "
			 "direct I/O)",
			 (unsigned long long)want);
		return rc;
	}
	if (rc < 0) {
		snprintf(err, errlen, "cannot resize '%s': %s", name, strerror(-rc));
		return rc;
	}
	/* Records past a new, smaller end would come back into the range if
	 * it grew again before the next consistency point: run one now. */
	if (want < old)
		node_datapath_retire_log(n->dp);
	/* New connections, here and on the partner's proxy port, see the new
	 * size; open ones keep the size they negotiated. */
	proxy_local_volumes_changed(n->proxy);
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)want);
	node_event(n, "volume-resized", "DUET_VOLUME", name, "DUET_SIZE", buf, NULL);
	jobj_add_str(resp, "message", "volume resized");
	jobj_add_u64(resp, "old_size", old);
	json_object_object_add(resp, "volume", volume_json(n, v));
	return 0;
}

static int cmd_volume_show(struct node *n, struct json_object *req, struct json_object *resp,
			   char *err, size_t errlen)
{
	const char *name = req_name(req, "volume_show", err, errlen);
	struct store_volume *v;
	struct node_volume_use u;
	struct json_object *o, *c;

	if (!name)
		return -EINVAL;
	v = store_volume_find(n->store, name);
	if (!v) {
		snprintf(err, errlen, "no volume '%s' on this node's shelf", name);
		return -ENOENT;
	}
	o = volume_json(n, v);
	c = json_object_new_object();
	node_datapath_volume_use(n->dp, v, &u);
	jobj_add_u64(o, "clients", u.clients);
	jobj_add_u64(o, "inflight", u.inflight);
	jobj_add_u64(c, "requests", u.requests);
	jobj_add_u64(c, "bytes_read", u.bytes_read);
	jobj_add_u64(c, "bytes_written", u.bytes_written);
	jobj_add_u64(c, "errors", u.errors);
	json_object_object_add(o, "counters", c);
	json_object_object_add(resp, "volume", o);
	return 0;
}

static int cmd_links(struct node *n, struct json_object *req, struct json_object *resp, char *err,
		     size_t errlen)
{
	struct ccm_status cs;
	struct json_object *all;

	(void)req;
	if (!n->ccm) {
		json_object_object_add(resp, "links", json_object_new_array());
		return 0;
	}
	/* ccm_status_to_json fills a scratch object; keep only its links. */
	all = json_object_new_object();
	ccm_get_status(n->ccm, &cs);
	if (!all || ccm_status_to_json(&cs, all) < 0) {
		json_object_put(all);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	struct json_object *links = NULL;
	json_object_object_get_ex(all, "links", &links);
	json_object_object_add(resp, "links", json_object_get(links));
	json_object_put(all);
	return 0;
}

static int cmd_ic_reset(struct node *n, struct json_object *req, struct json_object *resp,
			char *err, size_t errlen)
{
	int rc;

	(void)req;
	if (!n->ccm) {
		snprintf(err, errlen, "no interconnect links configured");
		return -ENOTCONN;
	}
	rc = ccm_reset(n->ccm);
	if (rc < 0) {
		snprintf(err, errlen, "interconnect reset failed: %s", strerror(-rc));
		return rc;
	}
	json_object_object_add(resp, "message",
			       json_object_new_string("interconnect session reset: handshaking"));
	return 0;
}

/* The monitor answers at once; the takeover or giveback then runs on its
 * own (duetctl status shows its progress). */
static int cmd_takeover(struct node *n, struct json_object *req, struct json_object *resp,
			char *err, size_t errlen)
{
	bool force = node_control_force(req);
	int rc = monitor_takeover(n->monitor, force, err, errlen);

	if (rc < 0)
		return rc;
	jobj_add_str(resp, "message", force ? "forced takeover started" : "takeover started");
	return 0;
}

static int cmd_giveback(struct node *n, struct json_object *req, struct json_object *resp,
			char *err, size_t errlen)
{
	int rc = monitor_giveback(n->monitor, node_control_force(req), err, errlen);

	if (rc < 0)
		return rc;
	jobj_add_str(resp, "message", "giveback started");
	return 0;
}

/* The metrics as /metrics serves them, in the member "text". */
static int cmd_metrics(struct node *n, struct json_object *req, struct json_object *resp, char *err,
		       size_t errlen)
{
	char *text;
	size_t len;
	int rc;

	(void)req;
	rc = node_metrics_render(n, &text, &len);
	if (rc < 0) {
		snprintf(err, errlen, "cannot render the metrics: %s", strerror(-rc));
		return rc;
	}
	json_object_object_add(resp, "text", json_object_new_string_len(text, (int)len));
	free(text);
	return 0;
}

static const struct {
	const char *name;
	node_cmd_fn fn;
} commands[] = {
    {"status", cmd_status},
    {"volume_list", cmd_volume_list},
    {"volume_create", cmd_volume_create},
    {"volume_delete", cmd_volume_delete},
    {"volume_resize", cmd_volume_resize},
    {"volume_show", cmd_volume_show},
    {"volume_relocate", node_reloc_cmd},
    {"volume_move", node_move_cmd},
    {"links", cmd_links},
    {"ic_reset", cmd_ic_reset},
    {"takeover", cmd_takeover},
    {"giveback", cmd_giveback},
    {"metrics", cmd_metrics},
};

node_cmd_fn node_commands_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (strcmp(commands[i].name, name) == 0)
			return commands[i].fn;
	return NULL;
}
