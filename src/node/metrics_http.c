/* The metrics endpoint: GET /metrics on [metrics] listen, served by
 * libmicrohttpd on the node's reactor.
 *
 * Why on the reactor: the numbers live in reactor-owned state (monitor,
 * mirror, CCM, datapath), which no other thread may read. libmicrohttpd
 * runs here in its "external epoll" mode: it keeps its sockets in an epoll
 * set of its own, whose descriptor the loop watches like any other; each
 * readiness (and its timeout, on a loop timer) calls MHD_run(), which does
 * non-blocking socket work only and calls answer() on this thread, which
 * renders the text at once (node_metrics_render). No thread, no lock, no
 * copy to hand over; a slow or stuck scraper costs a connection slot (at
 * most METRICS_MAX_CONNS, each closed after METRICS_TIMEOUT_S idle), never
 * a stall of the reactor.
 *
 * Rule kept: only GET or HEAD of exactly "/metrics" gets the text; any
 * other path is 404, any other method 405; a request body is refused. */
#define LOG_MODULE "metrics"
#include "node/node_int.h"

#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/util.h"

#define METRICS_MAX_CONNS NODE_METRICS_MAX_CONNS
#define METRICS_TIMEOUT_S 10
#define METRICS_TYPE	  "text/plain; version=0.0.4; charset=utf-8"

struct node_metrics_http {
	struct node *node;
	struct MHD_Daemon *d;
	struct loop_io io;	 /* MHD's epoll descriptor */
	struct loop_timer timer; /* MHD's own timeouts */
	uint64_t requests, not_found;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *text)
{
	struct MHD_Response *r =
	    MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

/* MHD's access handler, on the reactor (inside MHD_run). */
static enum MHD_Result answer(void *cls, struct MHD_Connection *c, const char *url,
			      const char *method, const char *version, const char *upload_data,
			      size_t *upload_size, void **con_cls)
{
	struct node_metrics_http *h = cls;
	struct MHD_Response *r;
	enum MHD_Result ret;
	char *text;
	size_t len;

	(void)version;
	(void)upload_data;
	if (*upload_size)
		return MHD_NO; /* a body: we never asked for one */
	if (!*con_cls) {
		/* First call: headers only; answer on the next (MHD's contract). */
		*con_cls = h;
		return MHD_YES;
	}
	h->requests++;
	if (strcmp(url, "/metrics") != 0) {
		h->not_found++;
		return reply(c, MHD_HTTP_NOT_FOUND, "not found: try /metrics\n");
	}
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, "GET /metrics\n");
	if (node_metrics_render(h->node, &text, &len) < 0)
		return reply(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
	r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
	if (!r) {
		free(text);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, METRICS_TYPE);
	ret = MHD_queue_response(c, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

/* Let MHD work, then arm the loop timer for its next timeout (0 when it
 * still has ready connections of its own: edge-triggered inside). */
static void drive(struct node_metrics_http *h)
{
	MHD_UNSIGNED_LONG_LONG ms;

	MHD_run(h->d);
	if (MHD_get_timeout(h->d, &ms) == MHD_YES)
		loop_timer_arm(h->node->loop, &h->timer, (uint64_t)ms * NS_PER_MS);
	else
		loop_timer_cancel(h->node->loop, &h->timer);
}

static void mhd_event(struct loop_io *io, uint32_t events)
{
	(void)events;
	drive(io->arg);
}

static void mhd_timer(struct loop_timer *t)
{
	drive(t->arg);
}

/* MHD's messages are about what clients sent (a bad request line, headers
 * too big): debug lines, so a hostile client cannot fill the log. Failures
 * to start are logged by node_metrics_http_create(). */
static void mhd_log(void *arg, const char *fmt, va_list ap)
{
	char msg[256];

	(void)arg;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	msg[strcspn(msg, "\n")] = '\0';
	LOG_DEBUG("http: %s", msg);
}

int node_metrics_http_create(struct node *n, const char *listen, struct node_metrics_http **out)
{
	struct node_metrics_http *h;
	struct sockaddr_storage ss;
	socklen_t sslen;
	const union MHD_DaemonInfo *info;
	int rc;

	rc = util_parse_hostport(listen, &ss, &sslen);
	if (rc < 0) {
		LOG_ERROR("[metrics] listen %s: not an ADDR:PORT", listen);
		return rc;
	}
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->node = n;
	loop_timer_init(&h->timer, mhd_timer, h);
	h->d = MHD_start_daemon(
	    MHD_USE_EPOLL | MHD_USE_ERROR_LOG | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0), 0,
	    NULL, NULL, answer, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_MAX_CONNS, MHD_OPTION_CONNECTION_TIMEOUT,
	    (unsigned)METRICS_TIMEOUT_S, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
	    MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
	if (!h->d) {
		LOG_ERROR("[metrics] listen %s: cannot serve there (in use?)", listen);
		free(h);
		return -EADDRINUSE;
	}
	info = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info) {
		MHD_stop_daemon(h->d);
		free(h);
		return -EINVAL;
	}
	rc = loop_io_add(n->loop, &h->io, info->epoll_fd, EPOLLIN, mhd_event, h);
	if (rc < 0) {
		MHD_stop_daemon(h->d);
		free(h);
		return rc;
	}
	LOG_INFO("metrics on http://%s/metrics", listen);
	*out = h;
	return 0;
}

void node_metrics_http_destroy(struct node_metrics_http *h)
{
	if (!h)
		return;
	loop_io_del(h->node->loop, &h->io);
	loop_timer_cancel(h->node->loop, &h->timer);
	MHD_stop_daemon(h->d);
	free(h);
}
