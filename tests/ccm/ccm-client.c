/* ccm-client: one node's CCM with a test client, over the real fabric.
 *
 * It reads a duetd config file (only [node] id and [ic] matter), starts the
 * CCM, registers client "ccmtest" with N ports and, while a port is up,
 * streams RDMA writes into the partner's port memory and reads each one
 * back to verify it, and sends sequence-numbered messages the partner
 * checks for order. Events and periodic statistics go to stdout, one line
 * each (statistics as JSON with the CCM status), logs to stderr.
 *
 *   ccm-client --config FILE [--ports N] [--size BYTES] [--inflight N]
 *              [--duration SEC] [--stats-ms MS] [--no-load] [--quiet]
 *              [--write-only]   (no read-back: for latency measurements)
 *              [--read-size BYTES] (read back only the first BYTES of each
 *                                 write; default: all of it)
 *
 * A second client, "hb", writes a heartbeat record every 20 ms over each
 * link by itself (ccm_port_write_link, as the failover monitor does) at
 * offset link x 64 of the partner's port, and watches the records the
 * partner writes into ours: the statistics show per link the writes done,
 * failed and refused, and the last counter received with its age.
 *
 * SIGUSR1 resets the session (ccm_reset), SIGTERM/SIGINT end it cleanly.
 * Exit status: 0 when no operation failed and nothing read back was wrong
 * (operations cut by a session end are counted as "reset", not as errors).
 */
#define LOG_MODULE "ccm-client"
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "ccm/ccm.h"
#include "config/config.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"

#define MAX_INFLIGHT 256
#define HB_NS	     20000000ull
#define HB_REC	     64

struct tc;

struct slot {
	struct ccm_op op;
	struct tport *tp;
	unsigned idx;
	bool reading;
	bool busy; /* op in flight: untouchable until its done */
	uint64_t t_post;
	uint64_t round;
	uint8_t *buf;
	uint8_t *expect;
};

struct tport {
	struct tc *tc;
	struct ccm_port *p;
	unsigned idx;
	bool up;
	unsigned busy; /* slots with an op in flight */
	struct slot slots[MAX_INFLIGHT];
	uint64_t msg_next, msg_expect;
};

/* One link's heartbeat: our writes over it, and what the partner wrote. */
struct hblink {
	struct ccm_op op;
	bool busy;
	uint8_t rec[HB_REC];
	uint64_t seq;		       /* counter of our next record */
	uint64_t ok, failed, refused;  /* our writes over this link */
	uint64_t rx_seq, rx_change_ns; /* the partner's last record in our slot */
};

struct tc {
	struct loop *loop;
	struct ccm_client *hb_client;
	struct ccm_port *hb_port;
	unsigned n_links;
	struct hblink hb[CCM_MAX_LINKS];
	struct loop_timer hb_timer;
	struct ccm *ccm;
	struct ccm_client *client;
	struct tport *ports;
	unsigned n_ports, inflight;
	size_t size, read_size;
	bool load, quiet, write_only;
	uint64_t seed;
	struct loop_io sig_io;
	int sig_fd;
	struct loop_timer stats_timer, end_timer, late_timer;
	uint64_t late_due, late_max_ns; /* how late a 5 ms timer fires: reactor stalls */
	uint64_t stats_ns;
	uint64_t t0;
	/* counters */
	uint64_t writes, reads, bytes, errors, verify_errors, resets, msgs_out, msgs_in, msg_errors,
	    sessions, terms;
	uint64_t lat_sum_ns, lat_n, lat_max_ns;
};

static void emit(struct tc *tc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct tc *tc, const char *fmt, ...)
{
	va_list ap;

	printf("%.3f ", (double)(loop_now_ns() - tc->t0) / 1e9);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void post_slot(struct slot *s);

static void fill(struct slot *s)
{
	struct tport *tp = s->tp;
	uint64_t v = tp->tc->seed ^ ((uint64_t)tp->idx << 48) ^ ((uint64_t)s->idx << 32) ^ s->round;

	for (size_t i = 0; i + 8 <= tp->tc->size; i += 8) {
		uint64_t w = v + i;
		memcpy(s->expect + i, &w, 8);
	}
	memcpy(s->buf, s->expect, tp->tc->size);
}

static void slot_done(struct ccm_op *op, int status)
{
	struct slot *s = container_of(op, struct slot, op);
	struct tport *tp = s->tp;
	struct tc *tc = tp->tc;
	uint64_t lat = loop_now_ns() - s->t_post;

	s->busy = false;
	tp->busy--;
	if (status != 0) {
		if (status == -ECONNRESET || status == -ESHUTDOWN || status == -ECANCELED) {
			tc->resets++;
		} else {
			tc->errors++;
			LOG_ERROR("port %u slot %u: %s failed: %s", tp->idx, s->idx,
				  s->reading ? "read" : "write", strerror(-status));
		}
		s->reading = false;
		return; /* the port went down: it starts over at the next port_up */
	}
	tc->lat_sum_ns += lat;
	tc->lat_n++;
	if (lat > tc->lat_max_ns)
		tc->lat_max_ns = lat;
	tc->bytes += s->reading ? tc->read_size : tc->size;
	if (s->reading) {
		tc->reads++;
		if (memcmp(s->buf, s->expect, tc->read_size) != 0) {
			tc->verify_errors++;
			LOG_ERROR("port %u slot %u: read back differs from what was written",
				  tp->idx, s->idx);
		}
		s->reading = false;
		s->round++;
	} else {
		tc->writes++;
		s->reading = !tc->write_only;
		if (tc->write_only)
			s->round++;
	}
	if (tp->up && tc->load)
		post_slot(s);
}

static void post_slot(struct slot *s)
{
	struct tport *tp = s->tp;
	struct tc *tc = tp->tc;
	uint64_t off = (uint64_t)s->idx * tc->size;
	int rc;

	s->op.done = slot_done;
	if (s->reading) {
		memset(s->buf, 0, tc->read_size);
		rc = ccm_port_read(tp->p, &s->op, s->buf, tc->read_size, off);
	} else {
		fill(s);
		rc = ccm_port_write(tp->p, &s->op, s->buf, tc->size, off, CCM_WRITE_DELIVERED);
	}
	if (rc < 0) {
		if (rc != -ENOTCONN) {
			tc->errors++;
			LOG_ERROR("port %u: cannot post: %s", tp->idx, strerror(-rc));
		}
		return;
	}
	s->t_post = loop_now_ns();
	s->busy = true;
	tp->busy++;
}

static void send_msgs(struct tport *tp)
{
	while (tp->up) {
		uint64_t v = tp->msg_next;
		int rc = ccm_port_send(tp->p, &v, sizeof(v));
		if (rc < 0)
			return; /* -EAGAIN: send_ready follows */
		tp->msg_next++;
		tp->tc->msgs_out++;
		if (tp->msg_next % 64 == 0)
			return; /* a few per stats tick is enough */
	}
}

static void on_ready(struct ccm_client *c, const struct ccm_partner_info *pi, void *arg)
{
	struct tc *tc = arg;

	(void)c;
	tc->sessions++;
	emit(tc,
	     "event partner_ready partner=%s version=%u.%u generation=%016" PRIx64
	     " client_present=%d ports=%u",
	     pi->node, pi->major, pi->minor, pi->generation, pi->client_present, pi->ports);
}

static void on_term(struct ccm_client *c, enum ccm_term_reason why, void *arg)
{
	struct tc *tc = arg;

	(void)c;
	tc->terms++;
	emit(tc, "event terminating reason=\"%s\"", ccm_term_reason_str(why));
}

static void on_port_up(struct ccm_port *p, void *arg)
{
	struct tc *tc = arg;
	struct tport *tp = &tc->ports[ccm_port_index(p)];

	tp->up = true;
	tp->msg_next = 0;
	tp->msg_expect = 0;
	if (ccm_port_remote_size(p) < (uint64_t)tc->inflight * tc->size) {
		LOG_ERROR("port %u: the partner's memory (%" PRIu64 " bytes) is smaller than "
			  "--inflight x --size",
			  tp->idx, ccm_port_remote_size(p));
		tc->errors++;
		return;
	}
	if (!tc->quiet)
		emit(tc, "event port_up port=%u remote_size=%" PRIu64, tp->idx,
		     ccm_port_remote_size(p));
	if (!tc->load)
		return;
	for (unsigned i = 0; i < tc->inflight; i++) {
		struct slot *s = &tp->slots[i];
		if (s->busy)
			continue; /* still completing from the last session */
		s->reading = false;
		post_slot(s);
	}
	send_msgs(tp);
}

static void on_port_down(struct ccm_port *p, void *arg)
{
	struct tc *tc = arg;
	struct tport *tp = &tc->ports[ccm_port_index(p)];

	tp->up = false;
	if (!tc->quiet)
		emit(tc, "event port_down port=%u", tp->idx);
}

static void on_message(struct ccm_port *p, const void *msg, size_t len, void *arg)
{
	struct tc *tc = arg;
	struct tport *tp = &tc->ports[ccm_port_index(p)];
	uint64_t v;

	tc->msgs_in++;
	if (len != sizeof(v)) {
		tc->msg_errors++;
		return;
	}
	memcpy(&v, msg, sizeof(v));
	if (v != tp->msg_expect) {
		tc->msg_errors++;
		LOG_ERROR("port %u: message %" PRIu64 " arrived, expected %" PRIu64, tp->idx, v,
			  tp->msg_expect);
	}
	tp->msg_expect = v + 1;
}

static void on_send_ready(struct ccm_port *p, void *arg)
{
	struct tc *tc = arg;

	send_msgs(&tc->ports[ccm_port_index(p)]);
}

static void hb_done(struct ccm_op *op, int status)
{
	struct hblink *h = container_of(op, struct hblink, op);

	h->busy = false;
	if (status == 0)
		h->ok++;
	else
		h->failed++;
}

/* Every 20 ms: a record over each link whose last one completed; and a
 * look at the records the partner wrote into our memory. */
static void hb_cb(struct loop_timer *t)
{
	struct tc *tc = t->arg;
	const uint8_t *mem = ccm_port_mem(tc->hb_port);
	uint64_t now = loop_now_ns();

	for (unsigned i = 0; i < tc->n_links; i++) {
		struct hblink *h = &tc->hb[i];
		uint64_t v;
		memcpy(&v, mem + (size_t)i * HB_REC, sizeof(v));
		if (v != h->rx_seq) {
			h->rx_seq = v;
			h->rx_change_ns = now;
		}
		if (h->busy || !ccm_port_is_up(tc->hb_port))
			continue;
		memset(h->rec, 0, sizeof(h->rec));
		h->seq++;
		memcpy(h->rec, &h->seq, sizeof(h->seq));
		h->rec[8] = (uint8_t)i;
		h->op.done = hb_done;
		int rc = ccm_port_write_link(tc->hb_port, i, &h->op, h->rec, HB_REC,
					     (uint64_t)i * HB_REC);
		if (rc == 0)
			h->busy = true;
		else if (rc == -ENOLINK)
			h->refused++;
		else if (rc != -ENOTCONN)
			LOG_ERROR("heartbeat over link %u: %s", i, strerror(-rc));
	}
	loop_timer_arm(tc->loop, &tc->hb_timer, HB_NS);
}

static const struct ccm_client_ops hb_ops = {0};

static const struct ccm_client_ops client_ops = {
    .partner_ready = on_ready,
    .terminating = on_term,
    .port_up = on_port_up,
    .port_down = on_port_down,
    .message = on_message,
    .send_ready = on_send_ready,
};

static void print_stats(struct tc *tc)
{
	struct ccm_status st;
	struct json_object *o = json_object_new_object(), *c = json_object_new_object();

	if (!o || !c) {
		json_object_put(o);
		json_object_put(c);
		return;
	}
	ccm_get_status(tc->ccm, &st);
	ccm_status_to_json(&st, o);
	json_object_object_add(c, "writes", json_object_new_int64((int64_t)tc->writes));
	json_object_object_add(c, "reads", json_object_new_int64((int64_t)tc->reads));
	json_object_object_add(c, "bytes", json_object_new_int64((int64_t)tc->bytes));
	json_object_object_add(c, "errors", json_object_new_int64((int64_t)tc->errors));
	json_object_object_add(c, "verify_errors",
			       json_object_new_int64((int64_t)tc->verify_errors));
	json_object_object_add(c, "resets", json_object_new_int64((int64_t)tc->resets));
	json_object_object_add(c, "msgs_out", json_object_new_int64((int64_t)tc->msgs_out));
	json_object_object_add(c, "msgs_in", json_object_new_int64((int64_t)tc->msgs_in));
	json_object_object_add(c, "msg_errors", json_object_new_int64((int64_t)tc->msg_errors));
	json_object_object_add(c, "sessions", json_object_new_int64((int64_t)tc->sessions));
	json_object_object_add(c, "terminations", json_object_new_int64((int64_t)tc->terms));
	json_object_object_add(
	    c, "lat_avg_us",
	    json_object_new_double(tc->lat_n ? (double)tc->lat_sum_ns / (double)tc->lat_n / 1000.0
					     : 0.0));
	json_object_object_add(c, "lat_max_us",
			       json_object_new_double((double)tc->lat_max_ns / 1000.0));
	json_object_object_add(c, "loop_late_max_ms",
			       json_object_new_double((double)tc->late_max_ns / 1e6));
	tc->late_max_ns = 0;
	json_object_object_add(o, "client", c);
	struct json_object *hb = json_object_new_array();
	for (unsigned i = 0; hb && i < tc->n_links; i++) {
		const struct hblink *h = &tc->hb[i];
		struct json_object *l = json_object_new_object();
		if (!l)
			break;
		json_object_object_add(l, "link",
				       json_object_new_string(ccm_link_name(tc->ccm, i)));
		json_object_object_add(l, "ok", json_object_new_int64((int64_t)h->ok));
		json_object_object_add(l, "failed", json_object_new_int64((int64_t)h->failed));
		json_object_object_add(l, "refused", json_object_new_int64((int64_t)h->refused));
		json_object_object_add(l, "rx", json_object_new_int64((int64_t)h->rx_seq));
		json_object_object_add(
		    l, "rx_age_ms",
		    json_object_new_int64(
			h->rx_change_ns ? (int64_t)((loop_now_ns() - h->rx_change_ns) / 1000000)
					: -1));
		json_object_array_add(hb, l);
	}
	if (hb)
		json_object_object_add(o, "hb", hb);
	emit(tc, "stats %s", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	tc->lat_sum_ns = tc->lat_n = tc->lat_max_ns = 0;
}

static void stats_cb(struct loop_timer *t)
{
	struct tc *tc = t->arg;

	print_stats(tc);
	for (unsigned i = 0; i < tc->n_ports; i++)
		if (tc->ports[i].up && tc->load)
			send_msgs(&tc->ports[i]);
	loop_timer_arm(tc->loop, &tc->stats_timer, tc->stats_ns);
}

static void late_cb(struct loop_timer *t)
{
	struct tc *tc = t->arg;
	uint64_t now = loop_now_ns();

	if (tc->late_due && now > tc->late_due && now - tc->late_due > tc->late_max_ns)
		tc->late_max_ns = now - tc->late_due;
	tc->late_due = now + 5000000ull;
	loop_timer_arm(tc->loop, &tc->late_timer, 5000000ull);
}

static void end_cb(struct loop_timer *t)
{
	struct tc *tc = t->arg;

	loop_stop(tc->loop);
}

/* realtime = auto, as duetd (node.c). */
static void go_realtime_late(void *arg, uint64_t late_ns)
{
	char rt[160];

	(void)arg;
	util_go_realtime(rt, sizeof(rt));
	LOG_WARN("the reactor ran %llu ms late, realtime = auto: %s",
		 (unsigned long long)(late_ns / 1000000), rt);
}

static void on_signal(struct loop_io *io, uint32_t events)
{
	struct tc *tc = io->arg;
	struct signalfd_siginfo si;

	(void)events;
	while (read(tc->sig_fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGUSR1) {
			emit(tc, "event reset");
			ccm_reset(tc->ccm);
		} else {
			loop_stop(tc->loop);
		}
	}
}

static void stop_loop(void *arg)
{
	loop_stop(arg);
}

static void usage(void)
{
	fprintf(stderr, "usage: ccm-client --config FILE [--ports N] [--size BYTES] "
			"[--inflight N] [--duration SEC] [--stats-ms MS] [--no-load] [--quiet] "
			"[--write-only] [--read-size BYTES]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"ports", required_argument, NULL, 'p'},
	    {"size", required_argument, NULL, 's'},
	    {"inflight", required_argument, NULL, 'i'},
	    {"duration", required_argument, NULL, 'd'},
	    {"stats-ms", required_argument, NULL, 'm'},
	    {"no-load", no_argument, NULL, 'n'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"write-only", no_argument, NULL, 'w'},
	    {"read-size", required_argument, NULL, 'r'},
	    {NULL, 0, NULL, 0},
	};
	struct tc tc = {.n_ports = 1, .inflight = 8, .size = 4096, .load = true};
	const char *config = NULL;
	uint64_t duration = 0, stats_ms = 1000, v;
	struct duet_config cfg;
	struct ccm_opts co;
	char err[512];
	sigset_t mask;
	int c, rc;

	uint64_t read_size = 0;

	while ((c = getopt_long(argc, argv, "c:p:s:i:d:m:nqwr:", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'p':
			if (util_parse_uint(optarg, 1, CCM_MAX_PORTS, &v) < 0)
				usage();
			tc.n_ports = (unsigned)v;
			break;
		case 's':
			if (util_parse_size(optarg, &v) < 0 || v < 8 || v > (64ull << 20))
				usage();
			tc.size = (size_t)v & ~(size_t)7;
			break;
		case 'i':
			if (util_parse_uint(optarg, 1, MAX_INFLIGHT, &v) < 0)
				usage();
			tc.inflight = (unsigned)v;
			break;
		case 'd':
			if (util_parse_uint(optarg, 1, 86400, &duration) < 0)
				usage();
			break;
		case 'm':
			if (util_parse_uint(optarg, 10, 3600000, &stats_ms) < 0)
				usage();
			break;
		case 'n':
			tc.load = false;
			break;
		case 'q':
			tc.quiet = true;
			break;
		case 'w':
			tc.write_only = true;
			break;
		case 'r':
			if (util_parse_size(optarg, &read_size) < 0 || read_size < 8)
				usage();
			break;
		default:
			usage();
		}
	}
	if (!config)
		usage();
	tc.read_size = read_size && read_size < tc.size ? (size_t)read_size : tc.size;
	if (config_load(config, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 2;
	}
	log_set_node(cfg.node.id);
	log_set_level(cfg.node.log_level);
	if (cfg.node.realtime == NODE_RT_ON) {
		char rt[160];

		util_go_realtime(rt, sizeof(rt)); /* as duetd */
		LOG_INFO("%s", rt);
	}
	tc.t0 = loop_now_ns();
	tc.seed = tc.t0 * 0x9e3779b97f4a7c15ull;
	tc.stats_ns = stats_ms * 1000000ull;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	tc.sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (tc.sig_fd < 0 || loop_create(&tc.loop) < 0)
		return 1;
	loop_io_add(tc.loop, &tc.sig_io, tc.sig_fd, EPOLLIN, on_signal, &tc);
	if (cfg.node.realtime == NODE_RT_AUTO) /* as duetd */
		loop_watch_late(tc.loop, config_realtime_late_ns(&cfg), go_realtime_late, NULL);

	config_ccm_opts(&cfg, &co);
	rc = ccm_create(tc.loop, &co, &tc.ccm);
	if (rc < 0)
		return 1;
	/* First thing: the links and the boot region (as duetd does). */
	rc = ccm_start(tc.ccm);
	if (rc < 0)
		return 1;
	emit(&tc, "event started node=%s", cfg.node.id);

	tc.ports = calloc(tc.n_ports, sizeof(*tc.ports));
	if (!tc.ports)
		return 1;
	for (unsigned i = 0; i < tc.n_ports; i++) {
		struct tport *tp = &tc.ports[i];
		tp->tc = &tc;
		tp->idx = i;
		for (unsigned k = 0; k < tc.inflight; k++) {
			tp->slots[k].tp = tp;
			tp->slots[k].idx = k;
			tp->slots[k].buf = malloc(tc.size);
			tp->slots[k].expect = malloc(tc.size);
			if (!tp->slots[k].buf || !tp->slots[k].expect)
				return 1;
		}
	}
	struct ccm_client_spec spec = {
	    .name = "ccmtest",
	    .n_ports = tc.n_ports,
	    .port_mem = (size_t)tc.inflight * tc.size,
	    .ops = &client_ops,
	    .arg = &tc,
	};
	rc = ccm_client_register(tc.ccm, &spec, &tc.client);
	if (rc < 0)
		return 1;
	for (unsigned i = 0; i < tc.n_ports; i++)
		tc.ports[i].p = ccm_client_port(tc.client, i);
	tc.n_links = ccm_link_count(tc.ccm);
	struct ccm_client_spec hb_spec = {
	    .name = "hb",
	    .n_ports = 1,
	    .port_mem = (tc.n_links ? tc.n_links : 1) * (size_t)HB_REC,
	    .ops = &hb_ops,
	    .arg = &tc,
	};
	rc = ccm_client_register(tc.ccm, &hb_spec, &tc.hb_client);
	if (rc < 0)
		return 1;
	tc.hb_port = ccm_client_port(tc.hb_client, 0);
	loop_timer_init(&tc.hb_timer, hb_cb, &tc);
	loop_timer_arm(tc.loop, &tc.hb_timer, HB_NS);

	loop_timer_init(&tc.stats_timer, stats_cb, &tc);
	loop_timer_arm(tc.loop, &tc.stats_timer, tc.stats_ns);
	loop_timer_init(&tc.late_timer, late_cb, &tc);
	late_cb(&tc.late_timer);
	loop_timer_init(&tc.end_timer, end_cb, &tc);
	if (duration)
		loop_timer_arm(tc.loop, &tc.end_timer, duration * 1000000000ull);
	loop_run(tc.loop);
	/* Orderly: the partner hears the goodbye before the links close. */
	ccm_shutdown(tc.ccm, stop_loop, tc.loop);
	loop_run(tc.loop);

	print_stats(&tc);
	emit(&tc, "event exit errors=%" PRIu64 " verify_errors=%" PRIu64 " msg_errors=%" PRIu64,
	     tc.errors, tc.verify_errors, tc.msg_errors);
	loop_timer_cancel(tc.loop, &tc.stats_timer);
	loop_timer_cancel(tc.loop, &tc.end_timer);
	loop_timer_cancel(tc.loop, &tc.late_timer);
	loop_timer_cancel(tc.loop, &tc.hb_timer);
	ccm_client_unregister(tc.hb_client);
	ccm_client_unregister(tc.client);
	ccm_destroy(tc.ccm);
	loop_io_del(tc.loop, &tc.sig_io);
	close(tc.sig_fd);
	loop_destroy(tc.loop);
	for (unsigned i = 0; i < tc.n_ports; i++)
		for (unsigned k = 0; k < tc.inflight; k++) {
			free(tc.ports[i].slots[k].buf);
			free(tc.ports[i].slots[k].expect);
		}
	free(tc.ports);
	return tc.errors || tc.verify_errors || tc.msg_errors ? 1 : 0;
}
