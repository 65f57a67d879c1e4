/* The control socket: a UNIX stream listener that duetctl talks to.
 *
 * Rule kept: one request per connection, bounded in size and time; a bad
 * request gets one JSON error line and the connection closes, never a
 * crash; the commands themselves are in commands.c. */
#define LOG_MODULE "control"
#include "node/node_int.h"

#include <errno.h>
#include <stdio.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/control.h"
#include "common/log.h"
#include "common/util.h"

#define CONTROL_MAX_REQUEST (64 * 1024)
#define CONTROL_TIMEOUT_NS  (10ull * 1000000000ull)

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

static void accept_event(struct loop_io *io, uint32_t events)
{
	struct control *ctl = io->arg;
	(void)events;

	for (;;) {
		int fd = accept4(ctl->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
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
		c->next = ctl->conns;
		ctl->conns = c;
		loop_timer_init(&c->timer, conn_timeout, c);
		loop_timer_arm(ctl->node->loop, &c->timer, CONTROL_TIMEOUT_NS);
	}
}

int node_control_create(struct node *n, const char *path, struct control **out)
{
	struct control *ctl = calloc(1, sizeof(*ctl));
	int rc;

	if (!ctl)
		return -ENOMEM;
	ctl->node = n;
	snprintf(ctl->path, sizeof(ctl->path), "%s", path);
	ctl->fd = util_unix_listen(path, 16);
	if (ctl->fd < 0) {
		rc = ctl->fd;
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
	loop_io_del(ctl->node->loop, &ctl->io);
	close(ctl->fd);
	unlink(ctl->path);
	free(ctl);
}
