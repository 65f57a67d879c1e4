/* The control socket: a UNIX stream listener that duetctl talks to.
 *
 * Rule kept: one request per connection, bounded in size and time; a bad
 * request gets one JSON error line and the connection closes, never a
 * crash; the commands themselves are in commands.c.
 *
 * Who may talk (docs/SECURITY.md, "Control socket"): the socket is 0600,
 * or 0660 with [node] control_group, whatever the umask; and every caller
 * is checked by SO_PEERCRED: root, the daemon's user, or a member of that
 * group. Anyone else gets one JSON error line and is closed. */
#define LOG_MODULE "control"
#include "node/node_int.h"

#include <errno.h>
#include <stdio.h>
#include <json-c/json.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/control.h"
#include "common/log.h"
#include "common/util.h"

#define CONTROL_MAX_REQUEST (64 * 1024)
#define CONTROL_TIMEOUT_NS  (10ull * 1000000000ull)
#define CONTROL_BACKOFF_NS  (50 * NS_PER_MS) /* accept paused, out of descriptors */

/* The control protocol (docs/CONTROL.md): the client sends one JSON object
 * on one line, {"cmd": "status", "version": 1, ...}; the node answers one
 * JSON object, {"ok": true, "version": 1, "result": {...}} or {"ok": false,
 * "version": 1, "error": "..."}, and closes. One request per connection
 * keeps both ends trivial. A request without "version" is version 1 (the
 * duetctl of before); a newer one than the node's is refused. */

struct control_conn {
	struct control *ctl;
	struct control_conn *next;
	int fd;
	struct loop_io io;
	struct loop_timer timer;
	bool refused; /* the caller may not use the socket: answer that, close */
	uid_t uid;
	char *in;
	size_t in_len;
	char *out;
	size_t out_len, out_off;
};

struct control {
	struct node *node;
	char path[108];
	int fd;
	struct loop_io io;
	struct control_conn *conns;
	int gid;		   /* [node] control_group, or -1 */
	struct loop_timer backoff; /* accept paused: out of descriptors */
	uint64_t backoff_logged_ns;
};

static void conn_close(struct control_conn *c)
{
	struct control *ctl = c->ctl;

	for (struct control_conn **pp = &ctl->conns; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	loop_io_del(ctl->node->loop, &c->io);
	loop_timer_cancel(ctl->node->loop, &c->timer);
	close(c->fd);
	free(c->in);
	free(c->out);
	free(c);
}

static void respond(struct control_conn *c, struct json_object *resp)
{
	const char *s = json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN);
	size_t len = strlen(s);

	c->out = malloc(len + 1);
	if (c->out) {
		memcpy(c->out, s, len);
		c->out[len] = '\n';
		c->out_len = len + 1;
	}
	json_object_put(resp);
	loop_io_mod(c->ctl->node->loop, &c->io, EPOLLOUT);
}

static void dispatch(struct control_conn *c)
{
	struct json_object *req, *resp = json_object_new_object(), *result;
	char err[256] = "";
	const char *cmd;
	node_cmd_fn fn;
	int rc;

	if (c->refused) {
		LOG_WARN("control connection of uid %u refused", (unsigned)c->uid);
		snprintf(err, sizeof(err),
			 "permission denied: uid %u may not use this control socket (root, "
			 "uid %u%s only)",
			 (unsigned)c->uid, (unsigned)geteuid(),
			 c->ctl->gid >= 0 ? " or the control_group" : "");
		json_object_object_add(resp, "ok", json_object_new_boolean(0));
		json_object_object_add(resp, "error", json_object_new_string(err));
		respond(c, resp);
		return;
	}
	if (node_control_parse(c->in, strlen(c->in), &req, &cmd, err, sizeof(err)) < 0) {
		LOG_WARN("malformed control request");
		json_object_object_add(resp, "ok", json_object_new_boolean(0));
		json_object_object_add(resp, "version", json_object_new_int(DUET_CONTROL_VERSION));
		json_object_object_add(resp, "error", json_object_new_string(err));
		respond(c, resp);
		return;
	}
	json_object_object_add(resp, "version", json_object_new_int(DUET_CONTROL_VERSION));
	fn = node_commands_find(cmd);
	if (!fn) {
		snprintf(err, sizeof(err), "unknown command '%.64s'", cmd);
		rc = -EINVAL;
		result = NULL;
	} else {
		result = json_object_new_object();
		rc = fn(c->ctl->node, req, result, err, sizeof(err));
	}
	json_object_object_add(resp, "ok", json_object_new_boolean(rc == 0));
	if (rc == 0) {
		json_object_object_add(resp, "result", result);
	} else {
		json_object_put(result);
		json_object_object_add(resp, "error",
				       json_object_new_string(err[0] ? err : strerror(-rc)));
	}
	json_object_put(req);
	respond(c, resp);
}

static void conn_read(struct control_conn *c)
{
	for (;;) {
		if (c->in_len >= CONTROL_MAX_REQUEST) {
			LOG_WARN("control request over %d bytes: closing", CONTROL_MAX_REQUEST);
			conn_close(c);
			return;
		}
		ssize_t n = recv(c->fd, c->in + c->in_len, CONTROL_MAX_REQUEST - c->in_len, 0);
		if (n == 0) {
			conn_close(c);
			return;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			conn_close(c);
			return;
		}
		char *nl = memchr(c->in + c->in_len, '\n', (size_t)n);
		c->in_len += (size_t)n;
		if (nl) {
			*nl = '\0';
			dispatch(c);
			return;
		}
	}
}

static void conn_write(struct control_conn *c)
{
	while (c->out && c->out_off < c->out_len) {
		ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return;
			break;
		}
		c->out_off += (size_t)n;
	}
	conn_close(c);
}

static void conn_event(struct loop_io *io, uint32_t events)
{
	struct control_conn *c = io->arg;

	if (c->out)
		conn_write(c);
	else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		conn_read(c);
}

static void conn_timeout(struct loop_timer *t)
{
	struct control_conn *c = t->arg;

	LOG_WARN("control client silent for 10 s: closing");
	conn_close(c);
}

/* Is @p gid among the supplementary groups of process @p pid? Read from
 * /proc (the caller's groups at the time it connected are not kept by the
 * kernel; its current ones are what it could use anyway). */
static bool pid_in_group(pid_t pid, gid_t gid)
{
	char path[64], line[4096];
	bool found = false;
	FILE *f;

	if (pid <= 0)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Groups:", 7) != 0)
			continue;
		for (char *p = line + 7, *end; *p; p = end) {
			unsigned long g = strtoul(p, &end, 10);
			if (end == p)
				break;
			if (g == gid)
				found = true;
		}
		break;
	}
	fclose(f);
	return found;
}

/* SO_PEERCRED: root, the daemon's own user, or (with control_group) a
 * member of that group may use the socket. */
static bool peer_allowed(struct control *ctl, int fd, uid_t *uid)
{
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0) {
		*uid = (uid_t)-1;
		return false;
	}
	*uid = cr.uid;
	if (cr.uid == 0 || cr.uid == geteuid())
		return true;
	if (ctl->gid < 0)
		return false;
	return cr.gid == (gid_t)ctl->gid || pid_in_group(cr.pid, (gid_t)ctl->gid);
}

static void accept_resume(struct loop_timer *t)
{
	struct control *ctl = t->arg;

	loop_io_mod(ctl->node->loop, &ctl->io, EPOLLIN);
}

static void accept_event(struct loop_io *io, uint32_t events)
{
	struct control *ctl = io->arg;
	(void)events;

	for (;;) {
		int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE) {
				/* Level-triggered: without a pause the loop spins. */
				uint64_t now = loop_now_ns();
				if (now - ctl->backoff_logged_ns > 10 * NS_PER_S) {
					ctl->backoff_logged_ns = now;
					LOG_WARN(
					    "control: out of descriptors (%s): not "
					    "accepting for %llu ms",
					    strerror(errno),
					    (unsigned long long)(CONTROL_BACKOFF_NS / NS_PER_MS));
				}
				loop_io_pause(ctl->node->loop, &ctl->io, &ctl->backoff,
					      CONTROL_BACKOFF_NS);
			}
			return;
		}
		struct control_conn *c = calloc(1, sizeof(*c));
		if (c)
			c->in = malloc(CONTROL_MAX_REQUEST + 1);
		if (!c || !c->in ||
		    loop_io_add(ctl->node->loop, &c->io, fd, EPOLLIN, conn_event, c) < 0) {
			if (c)
				free(c->in);
			free(c);
			close(fd);
			continue;
		}
		c->ctl = ctl;
		c->fd = fd;
		c->refused = !peer_allowed(ctl, fd, &c->uid);
		c->next = ctl->conns;
		ctl->conns = c;
		loop_timer_init(&c->timer, conn_timeout, c);
		loop_timer_arm(ctl->node->loop, &c->timer, CONTROL_TIMEOUT_NS);
	}
}

/* [node] control_group by name, or -1 when unset; an unknown group is a
 * configuration error (one line). */
static int control_group(const char *name, int *gid)
{
	char buf[16384];
	struct group gr, *res = NULL;
	int rc;

	*gid = -1;
	if (!name[0])
		return 0;
	rc = getgrnam_r(name, &gr, buf, sizeof(buf), &res);
	if (rc != 0 || !res) {
		LOG_ERROR("[node] control_group = %s: no such group", name);
		return -EINVAL;
	}
	*gid = (int)res->gr_gid;
	return 0;
}

int node_control_check(struct node *n)
{
	const char *path = n->cfg.node.control;
	struct stat st;
	int gid;

	if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		LOG_ERROR("control socket path %s exists and is not a socket: not replacing it",
			  path);
		return -NODE_EREFUSED;
	}
	if (control_group(n->cfg.node.control_group, &gid) < 0)
		return -NODE_EREFUSED;
	return 0;
}

int node_control_create(struct node *n, const char *path, struct control **out)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	int rc;

	if (!ctl)
		return -ENOMEM;
	ctl->node = n;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	loop_timer_init(&ctl->backoff, accept_resume, ctl);
	rc = control_group(n->cfg.node.control_group, &ctl->gid);
	if (rc < 0) {
		rc = -NODE_EREFUSED;
		goto err_free;
	}
	ctl->fd = util_unix_listen(path, 16, ctl->gid >= 0 ? 0660 : 0600, ctl->gid);
	if (ctl->fd < 0) {
		rc = ctl->fd;
		if (rc == -EEXIST || rc == -EADDRINUSE)
			rc = -NODE_EREFUSED; /* not ours to replace: said in one line */
		goto err_free;
	}
	rc = loop_io_add(n->loop, &ctl->io, ctl->fd, EPOLLIN, accept_event, ctl);
	if (rc < 0)
		goto err_close;
	*out = ctl;
	return 0;

err_close:
	close(ctl->fd);
	unlink(path);
err_free:
	free(ctl);
	return rc;
}

void node_control_destroy(struct control *ctl)
{
	if (!ctl)
		return;
	while (ctl->conns)
		conn_close(ctl->conns);
	loop_timer_cancel(ctl->node->loop, &ctl->backoff);
	loop_io_del(ctl->node->loop, &ctl->io);
	close(ctl->fd);
	unlink(ctl->path);
	free(ctl);
}
