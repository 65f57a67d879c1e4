/* ic_bench: interconnect benchmarks through the public CCM API.
 *
 * One process is one node (its CCM, from a duetd config file) with a
 * benchmark client "icbench"; bench/ic.sh starts two of them (on loopback,
 * or in two network namespaces) and reads the "metric=..." lines. Monotonic
 * clock times (CLOCK_MONOTONIC, system wide) are comparable between
 * processes.
 *
 *   ic_bench node --config FILE [--load none|lat|stream|failover] [--spin]
 *            [--ports N] [--size B] [--inflight N] [--iters N] [--warmup N]
 *            [--duration S] [--warmup-s S] [--no-delivered] [--stats-ms MS]
 *            [--trials N] [--cut-link NAME --cut-if IFNAME] [--report-up]
 *   ic_bench fabnode --config FILE [--load none|lat] [--spin] [--iters N]
 *            (src/fabric only: the connection floor; with --load lat the
 *            same 4 KiB delivered-write loop as the CCM's, on the bare link,
 *            against a partner fabnode: metric=fab_write_dc_lat)
 *   ic_bench launch --config A --config B [--runs N] [--fabric-only | --both]
 *
 * Loads (the node with no load serves its partner until SIGTERM/SIGINT):
 *   lat       one ccm_port_write of --size (4 KiB) with CCM_WRITE_DELIVERED
 *             at a time on port 0, --warmup then --iters timed:
 *             metric=ccm_write_dc_lat p50_us p99_us min_us
 *   stream    --inflight writes of --size per port, kept in flight for
 *             --warmup-s then --duration seconds (timed): metric=ccm_stream
 *             mbytes_per_s and each link's share of the bytes
 *   failover  a stream of writes; --trials times: set --cut-if down (in this
 *             process's network namespace, ioctl SIOCSIFFLAGS: what
 *             `ip link set down` does), time until the CCM reports
 *             --cut-link down (detect) and until every write posted before
 *             that (in flight at the cut, or sent to the dead link before
 *             it was taken out) has completed (moved: re-issued on the
 *             other link), the longest time with no completion at all
 *             (stall); after 200 ms on one link set it up again,
 *             time until the link is back and carries writes:
 *             metric=ccm_failover moved_p50_ms ...
 * --spin: the loop never sleeps (loop_run_once with no wait), for a
 * comparison with busy-polling baselines; by default it sleeps in epoll.
 *
 * node --report-up and fabnode are the children of launch: they print
 * "up ..." once the session is ready (partner_ready) or, for fabnode, once a
 * first 256-byte RDMA read of the partner's region completed (what the
 * handshake's first step costs on a bare link: process start, link open,
 * libfabric's connection set-up); they exit when their stdin closes.
 * launch starts both at the same instant, --runs times (--both: a bare
 * fabric start and a CCM start alternate), and prints per kind the wall time
 * from the fork to both up, split into exec (to main), open (to the later
 * of the two ccm_start / fab_link_open returns) and after_open (from there
 * to both up: connection set-up plus, for the CCM, the handshake), and the
 * CCM's handshake_us (its first successful read of the partner to up).
 */
#define LOG_MODULE "ic_bench"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ccm/ccm.h"
#include "config/config.h"
#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "fabric/fabric.h"

#define MAX_INFLIGHT 256
#define MAX_TRIALS   100
#define MAX_RUNS     200
#define FAB_KEY	     0x1cb0
#define FAB_REGION   256  /* the first read: as the CCM's boot region */
#define FAB_MEM	     4096 /* region for fabnode --load lat writes */

enum load { LOAD_NONE, LOAD_LAT, LOAD_STREAM, LOAD_FAILOVER };

enum fo_phase {
	FO_WAIT_STEADY, /* both links up and carrying writes, for settle time */
	FO_CUT,		/* link cut: waiting for detection and the moved writes */
	FO_RESTORED,	/* link set up again: waiting for it to carry writes */
	FO_DONE,
};

struct bench;

struct bslot {
	struct ccm_op op;
	struct bport *bp;
	unsigned idx;
	bool busy;
	unsigned mark; /* trial number: posted before that trial's link was taken out */
	uint64_t t_post;
};

struct bport {
	struct bench *b;
	struct ccm_port *p;
	unsigned idx;
	bool up;
	uint8_t *buf;
	struct bslot slots[MAX_INFLIGHT];
};

struct trial {
	double detect_ms, moved_ms, stall_ms, stall_at_ms, back_ms, carry_ms, cut_call_ms;
};

struct bench {
	struct loop *loop;
	struct ccm *ccm;
	struct ccm_client *client;
	struct bport ports[CCM_MAX_PORTS];
	struct loop_io sig_io, stdin_io;
	struct loop_timer timer, stats_timer;
	int sig_fd;
	bool stop;
	int exit_rc;

	/* options */
	enum load load;
	bool spin, delivered, report_up;
	unsigned n_ports, inflight, trials;
	size_t size;
	unsigned iters, warmup;
	double duration_s, warmup_s;
	uint64_t stats_ms;
	const char *cut_link, *cut_if;

	uint64_t t_main, t_started;
	bool reported_up, load_started, draining;
	uint64_t errors, resets, ops, bytes;

	/* lat */
	uint64_t *lat;
	unsigned lat_done;

	/* stream */
	uint64_t t_meas0, t_meas1, bytes0, bytes1;
	uint64_t link_bytes0[CCM_MAX_LINKS], link_bytes1[CCM_MAX_LINKS];
	char link_names[CCM_MAX_LINKS][16];
	unsigned n_links;

	/* failover */
	enum fo_phase phase;
	int cut_idx;	/* index of cut_link in the status */
	int ifsock;	/* socket for SIOCSIFFLAGS in this namespace */
	unsigned trial; /* 1-based while running */
	uint64_t t_phase, t_cut, t_detect, t_moved, t_last_done, max_gap, t_restore, t_back;
	uint64_t t_last_marked; /* completion of the last marked write so far */
	uint64_t t_gap;		/* start of the longest stall */
	uint64_t carry_bytes0;
	unsigned pending_pre;
	struct trial res[MAX_TRIALS];
};

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* Median of @p n values (sorts them). */
static double median(double *v, unsigned n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double ms_since(uint64_t t0, uint64_t t1)
{
	return t1 > t0 ? (double)(t1 - t0) / 1e6 : 0;
}

static void bench_stop(struct bench *b)
{
	b->stop = true;
	loop_stop(b->loop);
}

/* ---- the load ---- */

static void post_slot(struct bslot *s);

static void finish_if_drained(struct bench *b)
{
	if (!b->draining)
		return;
	for (unsigned i = 0; i < b->n_ports; i++)
		for (unsigned k = 0; k < b->inflight; k++)
			if (b->ports[i].slots[k].busy)
				return;
	bench_stop(b);
}

static void slot_done(struct ccm_op *op, int status)
{
	struct bslot *s = container_of(op, struct bslot, op);
	struct bport *bp = s->bp;
	struct bench *b = bp->b;
	uint64_t now = loop_now_ns();

	s->busy = false;
	if (s->mark && s->mark == b->trial && b->phase == FO_CUT) {
		s->mark = 0;
		b->t_last_marked = now;
		if (--b->pending_pre == 0 && b->t_detect)
			b->t_moved = now;
	}
	if (status) {
		if (status == -ECONNRESET || status == -ESHUTDOWN || status == -ECANCELED) {
			b->resets++;
		} else {
			b->errors++;
			LOG_ERROR("port %u: write failed: %s", bp->idx, strerror(-status));
		}
		finish_if_drained(b);
		return;
	}
	b->ops++;
	b->bytes += b->size;
	if (b->load == LOAD_LAT) {
		if (b->lat_done >= b->warmup)
			b->lat[b->lat_done - b->warmup] = now - s->t_post;
		if (++b->lat_done == b->warmup + b->iters) {
			b->draining = true;
			finish_if_drained(b);
			return;
		}
	}
	if (b->load == LOAD_FAILOVER) {
		/* Longest time without any completion since the cut. */
		if (b->phase == FO_CUT && now - b->t_last_done > b->max_gap) {
			b->max_gap = now - b->t_last_done;
			b->t_gap = b->t_last_done;
		}
		b->t_last_done = now;
	}
	if (b->draining) {
		finish_if_drained(b);
		return;
	}
	if (bp->up)
		post_slot(s);
}

static void post_slot(struct bslot *s)
{
	struct bport *bp = s->bp;
	struct bench *b = bp->b;
	uint64_t off = (uint64_t)s->idx * b->size;
	unsigned flags = b->delivered ? CCM_WRITE_DELIVERED : 0;
	int rc;

	s->op.done = slot_done;
	s->mark = 0;
	s->t_post = loop_now_ns();
	rc = ccm_port_write(bp->p, &s->op, bp->buf + off, b->size, off, flags);
	if (rc < 0) {
		if (rc != -ENOTCONN) {
			b->errors++;
			LOG_ERROR("port %u: cannot post: %s", bp->idx, strerror(-rc));
		}
		return;
	}
	s->busy = true;
	/* Failover: a write posted after the cut and before the link was seen
	 * out may sit on the dead link; its completion is part of the move. */
	if (b->load == LOAD_FAILOVER && b->phase == FO_CUT && !b->t_detect) {
		s->mark = b->trial;
		b->pending_pre++;
	}
}

static void start_port_load(struct bport *bp)
{
	struct bench *b = bp->b;
	unsigned n = b->load == LOAD_LAT ? 1 : b->inflight;

	if (b->load == LOAD_NONE || b->draining)
		return;
	if (b->load == LOAD_LAT && bp->idx != 0)
		return;
	if (ccm_port_remote_size(bp->p) < (uint64_t)n * b->size) {
		LOG_ERROR("port %u: the partner's memory (%" PRIu64 " bytes) is smaller than "
			  "--inflight x --size: start both with the same options",
			  bp->idx, ccm_port_remote_size(bp->p));
		b->errors++;
		bench_stop(b);
		return;
	}
	for (unsigned k = 0; k < n; k++)
		if (!bp->slots[k].busy)
			post_slot(&bp->slots[k]);
	if (!b->load_started) {
		b->load_started = true;
		b->t_phase = loop_now_ns();
	}
}

/* ---- client callbacks ---- */

static void report_up(struct bench *b)
{
	struct ccm_status st;

	if (b->reported_up || !b->report_up)
		return;
	b->reported_up = true;
	ccm_get_status(b->ccm, &st);
	printf("up t_ns=%" PRIu64 " main_ns=%" PRIu64 " started_ns=%" PRIu64
	       " handshake_us=%" PRIu64 "\n",
	       loop_now_ns(), b->t_main, b->t_started, st.handshake_us);
	fflush(stdout);
}

static void on_ready(struct ccm_client *c, const struct ccm_partner_info *pi, void *arg)
{
	struct bench *b = arg;

	(void)c;
	(void)pi;
	report_up(b);
}

static void on_term(struct ccm_client *c, enum ccm_term_reason why, void *arg)
{
	struct bench *b = arg;

	(void)c;
	if (b->load != LOAD_NONE && !b->draining)
		LOG_WARN("session terminating during the benchmark: %s", ccm_term_reason_str(why));
}

static void on_port_up(struct ccm_port *p, void *arg)
{
	struct bench *b = arg;
	struct bport *bp = &b->ports[ccm_port_index(p)];

	bp->up = true;
	start_port_load(bp);
}

static void on_port_down(struct ccm_port *p, void *arg)
{
	struct bench *b = arg;

	b->ports[ccm_port_index(p)].up = false;
}

static const struct ccm_client_ops client_ops = {
    .partner_ready = on_ready,
    .terminating = on_term,
    .port_up = on_port_up,
    .port_down = on_port_down,
};

/* ---- stream ---- */

static void snapshot_links(struct bench *b, uint64_t *bytes)
{
	struct ccm_status st;

	ccm_get_status(b->ccm, &st);
	b->n_links = st.n_links;
	for (unsigned i = 0; i < st.n_links; i++) {
		bytes[i] = st.links[i].bytes;
		memcpy(b->link_names[i], st.links[i].name, sizeof(b->link_names[i]));
	}
}

static void stream_tick(struct loop_timer *t)
{
	struct bench *b = t->arg;
	uint64_t now = loop_now_ns();

	if (!b->load_started) {
		loop_timer_arm(b->loop, t, 10000000ull);
		return;
	}
	if (!b->t_meas0) {
		if (now - b->t_phase < (uint64_t)(b->warmup_s * 1e9)) {
			loop_timer_arm(b->loop, t, 5000000ull);
			return;
		}
		b->t_meas0 = now;
		b->bytes0 = b->bytes;
		snapshot_links(b, b->link_bytes0);
	}
	if (now - b->t_meas0 < (uint64_t)(b->duration_s * 1e9)) {
		loop_timer_arm(b->loop, t, 5000000ull);
		return;
	}
	b->t_meas1 = now;
	b->bytes1 = b->bytes;
	snapshot_links(b, b->link_bytes1);
	double secs = (double)(b->t_meas1 - b->t_meas0) / 1e9;
	uint64_t total = 0;
	for (unsigned i = 0; i < b->n_links; i++)
		total += b->link_bytes1[i] - b->link_bytes0[i];
	printf("metric=ccm_stream mbytes_per_s=%.2f mbit_per_s=%.1f seconds=%.2f ports=%u "
	       "inflight=%u size=%zu delivered=%d errors=%" PRIu64,
	       (double)(b->bytes1 - b->bytes0) / secs / 1e6,
	       (double)(b->bytes1 - b->bytes0) * 8 / secs / 1e6, secs, b->n_ports, b->inflight,
	       b->size, b->delivered, b->errors);
	for (unsigned i = 0; i < b->n_links; i++)
		printf(" share_%s=%.3f", b->link_names[i],
		       total ? (double)(b->link_bytes1[i] - b->link_bytes0[i]) / (double)total : 0);
	printf("\n");
	fflush(stdout);
	b->draining = true;
	finish_if_drained(b);
}

/* Periodic line with each link's bytes, for watching a run. */
static void stats_tick(struct loop_timer *t)
{
	struct bench *b = t->arg;
	struct ccm_status st;

	struct timespec ts;
	struct tm tm;

	/* Wall clock as in the logs, to line stalls up with log lines. */
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	ccm_get_status(b->ccm, &st);
	printf("stats %02d:%02d:%02d.%03ld t_ms=%.0f state=%s ops=%" PRIu64 " errors=%" PRIu64,
	       tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
	       ms_since(b->t_main, loop_now_ns()), ccm_session_state_str(st.state), b->ops,
	       b->errors);
	for (unsigned i = 0; i < st.n_links; i++)
		printf(" %s=%s/%" PRIu64 "/%" PRIu64, st.links[i].name,
		       st.links[i].up ? "up" : "down", st.links[i].bytes, st.links[i].rtt_us);
	printf("\n");
	fflush(stdout);
	loop_timer_arm(b->loop, t, b->stats_ms * 1000000ull);
}

/* ---- failover ---- */

/* Set an interface of this process's network namespace up or down, the
 * way `ip link set` does (same kernel path), timing the call itself. */
static int if_set(struct bench *b, bool up, uint64_t *call_ns)
{
	struct ifreq ifr = {0};
	uint64_t t0;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", b->cut_if);
	if (ioctl(b->ifsock, SIOCGIFFLAGS, &ifr) < 0) {
		LOG_ERROR("%s: SIOCGIFFLAGS: %s", b->cut_if, strerror(errno));
		return -errno;
	}
	if (up)
		ifr.ifr_flags = (short)(ifr.ifr_flags | IFF_UP);
	else
		ifr.ifr_flags = (short)(ifr.ifr_flags & ~IFF_UP);
	t0 = loop_now_ns();
	if (ioctl(b->ifsock, SIOCSIFFLAGS, &ifr) < 0) {
		LOG_ERROR("%s: SIOCSIFFLAGS: %s", b->cut_if, strerror(errno));
		return -errno;
	}
	*call_ns = loop_now_ns() - t0;
	return 0;
}

static void fo_print(struct bench *b)
{
	double v[MAX_TRIALS];
	unsigned n = b->trials;
	const char *names[] = {"detect", "moved", "stall", "back", "carry", "cut_call"};

	printf("metric=ccm_failover trials=%u errors=%" PRIu64, n, b->errors);
	for (unsigned f = 0; f < ARRAY_SIZE(names); f++) {
		double mx = 0;
		for (unsigned i = 0; i < n; i++) {
			const struct trial *r = &b->res[i];
			double x[] = {r->detect_ms, r->moved_ms, r->stall_ms,
				      r->back_ms,   r->carry_ms, r->cut_call_ms};
			v[i] = x[f];
			if (v[i] > mx)
				mx = v[i];
		}
		double lo = n ? v[0] : 0;
		for (unsigned i = 1; i < n; i++)
			if (v[i] < lo)
				lo = v[i];
		printf(" %s_p50_ms=%.1f %s_min_ms=%.1f %s_max_ms=%.1f", names[f], median(v, n),
		       names[f], lo, names[f], mx);
	}
	printf("\n");
	fflush(stdout);
}

static void fo_tick(struct loop_timer *t)
{
	struct bench *b = t->arg;
	struct ccm_status st;
	uint64_t now = loop_now_ns(), call_ns = 0;
	bool all_up = true;

	loop_timer_arm(b->loop, t, 1000000ull);
	if (!b->load_started)
		return;
	ccm_get_status(b->ccm, &st);
	if (b->cut_idx < 0) {
		for (unsigned i = 0; i < st.n_links; i++)
			if (!strcmp(st.links[i].name, b->cut_link))
				b->cut_idx = (int)i;
		if (b->cut_idx < 0) {
			LOG_ERROR("no link named %s", b->cut_link);
			b->errors++;
			bench_stop(b);
			return;
		}
	}
	const struct ccm_link_status *cl = &st.links[b->cut_idx];
	for (unsigned i = 0; i < st.n_links; i++)
		all_up &= st.links[i].up;

	switch (b->phase) {
	case FO_WAIT_STEADY:
		/* Both links up and the one to cut carrying writes for 300 ms. */
		if (!all_up || st.state != CCM_SESSION_UP) {
			b->t_phase = now;
			b->carry_bytes0 = cl->bytes;
			return;
		}
		if (now - b->t_phase < 300000000ull || cl->bytes == b->carry_bytes0)
			return;
		b->trial++;
		b->pending_pre = 0;
		for (unsigned i = 0; i < b->n_ports; i++)
			for (unsigned k = 0; k < b->inflight; k++) {
				struct bslot *s = &b->ports[i].slots[k];
				if (s->busy) {
					s->mark = b->trial;
					b->pending_pre++;
				}
			}
		b->t_detect = b->t_moved = b->max_gap = 0;
		b->t_last_marked = 0;
		if (if_set(b, false, &call_ns) < 0) {
			b->errors++;
			bench_stop(b);
			return;
		}
		b->t_cut = loop_now_ns();
		b->t_last_done = b->t_cut;
		b->res[b->trial - 1].cut_call_ms = (double)call_ns / 1e6;
		b->phase = FO_CUT;
		b->t_phase = now;
		return;
	case FO_CUT:
		if (!cl->up && !b->t_detect) {
			/* Seen out (this tick polls every ms): from now on nothing
			 * new goes to it; wait for the writes posted before. */
			b->t_detect = now;
			if (!b->pending_pre)
				b->t_moved =
				    b->t_last_marked > b->t_cut ? b->t_last_marked : b->t_cut;
		}
		if (now - b->t_phase > 30000000000ull) {
			LOG_ERROR("trial %u: link %s not taken out or writes not moved after 30 s",
				  b->trial, b->cut_link);
			b->errors++;
			bench_stop(b);
			return;
		}
		if (!b->t_detect || !b->t_moved)
			return;
		/* Let the stream run on one link a little, then repair. */
		if (now - b->t_moved < 200000000ull)
			return;
		{
			struct trial *r = &b->res[b->trial - 1];
			r->detect_ms = ms_since(b->t_cut, b->t_detect);
			r->moved_ms = ms_since(b->t_cut, b->t_moved);
			r->stall_ms = (double)b->max_gap / 1e6;
			r->stall_at_ms = ms_since(b->t_cut, b->t_gap);
		}
		if (if_set(b, true, &call_ns) < 0) {
			b->errors++;
			bench_stop(b);
			return;
		}
		b->t_restore = loop_now_ns();
		b->t_back = 0;
		b->phase = FO_RESTORED;
		b->t_phase = now;
		return;
	case FO_RESTORED:
		if (cl->up && !b->t_back) {
			b->t_back = now;
			b->carry_bytes0 = cl->bytes;
		}
		if (now - b->t_phase > 30000000000ull) {
			LOG_ERROR("trial %u: link %s did not come back within 30 s", b->trial,
				  b->cut_link);
			b->errors++;
			bench_stop(b);
			return;
		}
		if (!b->t_back || cl->bytes == b->carry_bytes0)
			return;
		{
			struct trial *r = &b->res[b->trial - 1];
			r->back_ms = ms_since(b->t_restore, b->t_back);
			r->carry_ms = ms_since(b->t_restore, now);
			printf(
			    "trial=%u detect_ms=%.1f moved_ms=%.1f stall_ms=%.1f stall_at_ms=%.1f "
			    "back_ms=%.1f carry_ms=%.1f cut_call_ms=%.2f errors=%" PRIu64 "\n",
			    b->trial, r->detect_ms, r->moved_ms, r->stall_ms, r->stall_at_ms,
			    r->back_ms, r->carry_ms, r->cut_call_ms, b->errors);
			fflush(stdout);
		}
		if (b->trial == b->trials) {
			b->phase = FO_DONE;
			fo_print(b);
			b->draining = true;
			loop_timer_cancel(b->loop, t);
			finish_if_drained(b);
			return;
		}
		b->phase = FO_WAIT_STEADY;
		b->t_phase = now;
		b->carry_bytes0 = cl->bytes;
		return;
	case FO_DONE:
		return;
	}
}

/* ---- signals and stdin ---- */

static void on_signal(struct loop_io *io, uint32_t events)
{
	struct bench *b = io->arg;
	struct signalfd_siginfo si;

	(void)events;
	while (read(b->sig_fd, &si, sizeof(si)) == sizeof(si))
		bench_stop(b);
}

static void on_stdin(struct loop_io *io, uint32_t events)
{
	struct bench *b = io->arg;
	char buf[64];
	ssize_t n = read(io->fd, buf, sizeof(buf));

	(void)events;
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		loop_io_del(b->loop, io);
		bench_stop(b);
	}
}

static int setup_signals(struct bench *b)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	b->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (b->sig_fd < 0)
		return -errno;
	return loop_io_add(b->loop, &b->sig_io, b->sig_fd, EPOLLIN, on_signal, b);
}

/* A launched child stops when its parent closes its stdin (a pipe). */
static void watch_stdin(struct bench *b)
{
	struct stat st;

	if (fstat(0, &st) < 0 || !S_ISFIFO(st.st_mode))
		return;
	util_set_nonblock(0, true);
	loop_io_add(b->loop, &b->stdin_io, 0, EPOLLIN, on_stdin, b);
}

/* Run until stopped: sleeping in epoll, or spinning. */
static int run_loop(struct bench *b)
{
	int rc = 0;

	b->stop = false;
	if (!b->spin)
		return loop_run(b->loop);
	while (!b->stop && rc >= 0) /* 1: a poller or task did work */
		rc = loop_run_once(b->loop, 0);
	return rc < 0 ? rc : 0;
}

static void stop_cb(void *arg)
{
	bench_stop(arg);
}

/* ---- node ---- */

static int load_config(const char *path, struct duet_config *cfg)
{
	char err[512];

	if (!path) {
		fprintf(stderr, "ic_bench: --config is required\n");
		return -EINVAL;
	}
	if (config_load(path, cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return -EINVAL;
	}
	log_set_node(cfg->node.id);
	log_set_level(cfg->node.log_level);
	return 0;
}

static int run_node(struct bench *b, const char *config)
{
	struct duet_config cfg;
	struct ccm_opts co;
	int rc;

	if ((rc = load_config(config, &cfg)) < 0)
		return rc;
	if ((rc = loop_create(&b->loop)) < 0 || (rc = setup_signals(b)) < 0)
		return rc;
	if (b->report_up)
		watch_stdin(b);
	config_ccm_opts(&cfg, &co);
	if (b->spin) /* the links' pollers read their CQs on every turn */
		co.spin_us = 10000;
	if ((rc = ccm_create(b->loop, &co, &b->ccm)) < 0)
		return rc;
	/* First thing, as duetd does: links and boot region. */
	if ((rc = ccm_start(b->ccm)) < 0)
		return rc;
	b->t_started = loop_now_ns();

	size_t mem = (size_t)(b->load == LOAD_LAT ? 1 : b->inflight) * b->size;
	for (unsigned i = 0; i < b->n_ports; i++) {
		struct bport *bp = &b->ports[i];
		bp->b = b;
		bp->idx = i;
		bp->buf = aligned_alloc(4096, (mem + 4095) & ~(size_t)4095);
		if (!bp->buf)
			return -ENOMEM;
		memset(bp->buf, 0x5a, mem);
		for (unsigned k = 0; k < MAX_INFLIGHT; k++) {
			bp->slots[k].bp = bp;
			bp->slots[k].idx = k;
		}
	}
	if (b->load == LOAD_LAT) {
		b->lat = calloc(b->iters, sizeof(*b->lat));
		if (!b->lat)
			return -ENOMEM;
	}
	struct ccm_client_spec spec = {
	    .name = "icbench",
	    .n_ports = b->n_ports,
	    .port_mem = mem,
	    .ops = &client_ops,
	    .arg = b,
	};
	if ((rc = ccm_client_register(b->ccm, &spec, &b->client)) < 0)
		return rc;
	for (unsigned i = 0; i < b->n_ports; i++)
		b->ports[i].p = ccm_client_port(b->client, i);

	loop_timer_init(&b->timer, NULL, b);
	if (b->load == LOAD_STREAM) {
		loop_timer_init(&b->timer, stream_tick, b);
		loop_timer_arm(b->loop, &b->timer, 10000000ull);
	} else if (b->load == LOAD_FAILOVER) {
		b->cut_idx = -1;
		b->ifsock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		if (b->ifsock < 0)
			return -errno;
		loop_timer_init(&b->timer, fo_tick, b);
		loop_timer_arm(b->loop, &b->timer, 1000000ull);
	}
	loop_timer_init(&b->stats_timer, stats_tick, b);
	if (b->stats_ms)
		loop_timer_arm(b->loop, &b->stats_timer, b->stats_ms * 1000000ull);

	rc = run_loop(b);
	loop_timer_cancel(b->loop, &b->timer);
	loop_timer_cancel(b->loop, &b->stats_timer);

	if (b->load == LOAD_LAT && b->lat_done >= b->warmup + b->iters) {
		qsort(b->lat, b->iters, sizeof(*b->lat), cmp_u64);
		printf("metric=ccm_write_dc_lat p50_us=%.1f p99_us=%.1f min_us=%.1f iters=%u "
		       "size=%zu wait=%s\n",
		       (double)b->lat[b->iters / 2] / 1e3,
		       (double)b->lat[(size_t)b->iters * 99 / 100] / 1e3, (double)b->lat[0] / 1e3,
		       b->iters, b->size, b->spin ? "spin" : "sleep");
		fflush(stdout);
	} else if (b->load == LOAD_LAT) {
		fprintf(stderr, "ic_bench: latency run ended after %u of %u writes\n", b->lat_done,
			b->warmup + b->iters);
		b->exit_rc = 1;
	}
	if (b->load == LOAD_STREAM && !b->t_meas1)
		b->exit_rc = 1;
	if (b->load == LOAD_FAILOVER && b->phase != FO_DONE)
		b->exit_rc = 1;
	if (b->load == LOAD_FAILOVER)
		close(b->ifsock);

	/* Orderly goodbye; the loop sleeps from here on. */
	b->spin = false;
	ccm_shutdown(b->ccm, stop_cb, b);
	run_loop(b);
	ccm_client_unregister(b->client);
	ccm_destroy(b->ccm);
	if (b->errors) {
		fprintf(stderr, "ic_bench: %" PRIu64 " operations failed\n", b->errors);
		b->exit_rc = 1;
	}
	loop_io_del(b->loop, &b->sig_io);
	if (b->report_up && b->stdin_io.added)
		loop_io_del(b->loop, &b->stdin_io);
	close(b->sig_fd);
	loop_destroy(b->loop);
	for (unsigned i = 0; i < b->n_ports; i++)
		free(b->ports[i].buf);
	free(b->lat);
	return b->exit_rc ? -EIO : 0;
}

/* ---- fabnode: the bare link, for the connection set-up floor ---- */

struct fabnode {
	struct bench *b;
	struct fab_link *link;
	struct fab_op op;
	struct fab_remote rem;
	uint8_t local[FAB_MEM];
	int tries;
	uint64_t t_post;
};

static void fab_read_done(struct fab_op *op, int status);

static int fab_post(struct fabnode *f)
{
	f->op.done = fab_read_done;
	f->op.arg = f;
	f->tries++;
	return fab_read(f->link, f->local, FAB_REGION, &f->rem, 0, &f->op);
}

static void fab_write_done(struct fab_op *op, int status);

static void fab_write_next(struct fabnode *f)
{
	int rc;

	f->op.done = fab_write_done;
	f->op.arg = f;
	f->t_post = loop_now_ns();
	rc = fab_write(f->link, f->local, f->b->size, &f->rem, 0, FAB_DELIVERY_COMPLETE, &f->op);
	if (rc < 0) {
		LOG_ERROR("fab_write: %s", strerror(-rc));
		f->b->exit_rc = 1;
		bench_stop(f->b);
	}
}

/* The same loop as the CCM's latency load, on the bare src/fabric link. */
static void fab_write_done(struct fab_op *op, int status)
{
	struct fabnode *f = op->arg;
	struct bench *b = f->b;

	if (status) {
		LOG_ERROR("write failed: %s", strerror(-status));
		b->exit_rc = 1;
		bench_stop(b);
		return;
	}
	if (b->lat_done >= b->warmup)
		b->lat[b->lat_done - b->warmup] = loop_now_ns() - f->t_post;
	if (++b->lat_done == b->warmup + b->iters) {
		bench_stop(b);
		return;
	}
	fab_write_next(f);
}

static void fab_read_done(struct fab_op *op, int status)
{
	struct fabnode *f = op->arg;
	struct bench *b = f->b;

	if (status) {
		/* A refused connection: try again, as the CCM's READ1 would. */
		if (f->tries < 1000 && fab_post(f) == 0)
			return;
		LOG_ERROR("read of the partner's region failed: %s", strerror(-status));
		b->exit_rc = 1;
		bench_stop(b);
		return;
	}
	printf("up t_ns=%" PRIu64 " main_ns=%" PRIu64 " started_ns=%" PRIu64
	       " handshake_us=0 tries=%d\n",
	       loop_now_ns(), b->t_main, b->t_started, f->tries);
	fflush(stdout);
	if (b->load == LOAD_LAT)
		fab_write_next(f);
}

static int run_fabnode(struct bench *b, const char *config)
{
	struct duet_config cfg;
	struct fabnode f = {.b = b};
	struct fab_mr *mr = NULL;
	static uint8_t region[FAB_MEM];
	int rc;

	if ((rc = load_config(config, &cfg)) < 0)
		return rc;
	if (!cfg.ic.n_links) {
		fprintf(stderr, "ic_bench: no [ic] link in %s\n", config);
		return -EINVAL;
	}
	if ((rc = loop_create(&b->loop)) < 0 || (rc = setup_signals(b)) < 0)
		return rc;
	watch_stdin(b);
	if (b->load == LOAD_LAT) {
		if (b->size > FAB_MEM) {
			fprintf(stderr, "ic_bench: fabnode writes at most %d bytes\n", FAB_MEM);
			return -EINVAL;
		}
		b->lat = calloc(b->iters, sizeof(*b->lat));
		if (!b->lat)
			return -ENOMEM;
	}
	struct fab_link_opts o = {.name = cfg.ic.links[0].name,
				  .provider = cfg.ic.provider,
				  .local = cfg.ic.links[0].local,
				  .peer = cfg.ic.links[0].peer,
				  .spin_us = b->spin ? 10000 : (unsigned)cfg.ic.spin_us};
	if ((rc = fab_link_open(b->loop, &o, NULL, &f.link)) < 0)
		return rc;
	if ((rc = fab_mr_reg(f.link, region, sizeof(region), FAB_KEY,
			     FAB_REMOTE_READ | FAB_REMOTE_WRITE, &mr)) < 0)
		return rc;
	b->t_started = loop_now_ns();
	f.rem.key = FAB_KEY;
	f.rem.size = sizeof(region);
	if ((rc = fab_post(&f)) < 0)
		return rc;
	rc = run_loop(b);
	if (b->load == LOAD_LAT && b->lat_done == b->warmup + b->iters) {
		qsort(b->lat, b->iters, sizeof(*b->lat), cmp_u64);
		printf("metric=fab_write_dc_lat p50_us=%.1f p99_us=%.1f min_us=%.1f iters=%u "
		       "size=%zu wait=%s\n",
		       (double)b->lat[b->iters / 2] / 1e3,
		       (double)b->lat[(size_t)b->iters * 99 / 100] / 1e3, (double)b->lat[0] / 1e3,
		       b->iters, b->size, b->spin ? "spin" : "sleep");
		fflush(stdout);
	} else if (b->load == LOAD_LAT) {
		b->exit_rc = 1;
	}
	free(b->lat);
	fab_mr_close(mr);
	fab_link_close(f.link);
	loop_io_del(b->loop, &b->sig_io);
	if (b->stdin_io.added)
		loop_io_del(b->loop, &b->stdin_io);
	close(b->sig_fd);
	loop_destroy(b->loop);
	return rc ? rc : (b->exit_rc ? -EIO : 0);
}

/* ---- launch: both nodes at the same instant, N times ---- */

struct child {
	pid_t pid;
	int out_rd, in_wr;
	char line[512];
	size_t len;
	bool up;
	uint64_t t_up, t_main, t_started, hs_us;
};

static int spawn(struct child *c, const char *self, const char *mode, const char *config)
{
	int out[2], in[2];

	memset(c, 0, sizeof(*c));
	if (pipe2(out, O_CLOEXEC) < 0 || pipe2(in, O_CLOEXEC) < 0)
		return -errno;
	c->pid = fork();
	if (c->pid < 0)
		return -errno;
	if (c->pid == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		if (!strcmp(mode, "node"))
			execl(self, self, "node", "--config", config, "--report-up", (char *)NULL);
		else
			execl(self, self, "fabnode", "--config", config, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	close(in[0]);
	c->out_rd = out[0];
	c->in_wr = in[1];
	return 0;
}

/* Read what the child printed; parse its "up" line. */
static void child_read(struct child *c)
{
	ssize_t n = read(c->out_rd, c->line + c->len, sizeof(c->line) - 1 - c->len);
	char *nl;

	if (n <= 0)
		return;
	c->len += (size_t)n;
	c->line[c->len] = 0;
	while ((nl = strchr(c->line, '\n'))) {
		*nl = 0;
		unsigned long long t, m, st, h;
		if (sscanf(c->line, "up t_ns=%llu main_ns=%llu started_ns=%llu handshake_us=%llu",
			   &t, &m, &st, &h) == 4) {
			c->up = true;
			c->t_up = t;
			c->t_main = m;
			c->t_started = st;
			c->hs_us = h;
		}
		size_t rest = c->len - (size_t)(nl + 1 - c->line);
		memmove(c->line, nl + 1, rest + 1);
		c->len = rest;
	}
}

static int child_end(struct child *c)
{
	int st = 0;

	close(c->in_wr);
	close(c->out_rd);
	if (waitpid(c->pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

/* Results of one kind of start (bare fabric or CCM) over the runs. */
struct launch_res {
	const char *what, *mode;
	double wall[MAX_RUNS], hs[MAX_RUNS], hs_max[MAX_RUNS], exec_ms[MAX_RUNS], open_ms[MAX_RUNS],
	    after_open[MAX_RUNS];
	unsigned ok, failed;
};

/* One start of both nodes at the same instant; 0 when both came up. */
static int launch_once(struct launch_res *lr, const char *self, const char *cfg_a,
		       const char *cfg_b, unsigned r)
{
	struct child c[2];
	uint64_t t0 = loop_now_ns();
	int rc = spawn(&c[0], self, lr->mode, cfg_a);

	if (!rc)
		rc = spawn(&c[1], self, lr->mode, cfg_b);
	if (rc)
		return rc;
	uint64_t deadline = t0 + 20000000000ull;
	while (!(c[0].up && c[1].up) && loop_now_ns() < deadline) {
		struct pollfd p[2] = {{.fd = c[0].out_rd, .events = POLLIN},
				      {.fd = c[1].out_rd, .events = POLLIN}};
		if (poll(p, 2, 100) < 0 && errno != EINTR)
			break;
		for (int i = 0; i < 2; i++)
			if (p[i].revents)
				child_read(&c[i]);
		if ((p[0].revents & POLLHUP && !c[0].up) || (p[1].revents & POLLHUP && !c[1].up))
			break;
	}
	bool up = c[0].up && c[1].up;
	int e0 = child_end(&c[0]), e1 = child_end(&c[1]);
	if (!up || e0 || e1) {
		lr->failed++;
		printf("run=%u %s failed (up a=%d b=%d, exit a=%d b=%d)\n", r, lr->what, c[0].up,
		       c[1].up, e0, e1);
		fflush(stdout);
		return 0;
	}
	unsigned k = lr->ok++;
	uint64_t last = c[0].t_up > c[1].t_up ? c[0].t_up : c[1].t_up;
	uint64_t started = c[0].t_started > c[1].t_started ? c[0].t_started : c[1].t_started;
	lr->wall[k] = ms_since(t0, last);
	lr->hs[k] = (double)(c[0].hs_us + c[1].hs_us) / 2e3;
	lr->hs_max[k] = (double)(c[0].hs_us > c[1].hs_us ? c[0].hs_us : c[1].hs_us) / 1e3;
	lr->exec_ms[k] = ms_since(t0, c[0].t_main > c[1].t_main ? c[0].t_main : c[1].t_main);
	lr->open_ms[k] = ms_since(t0, started);
	lr->after_open[k] = ms_since(started, last);
	printf("run=%u %s wall_ms=%.2f exec_ms=%.2f open_done_ms=%.2f after_open_ms=%.2f "
	       "a_up_ms=%.2f b_up_ms=%.2f a_handshake_ms=%.2f b_handshake_ms=%.2f\n",
	       r, lr->what, lr->wall[k], lr->exec_ms[k], lr->open_ms[k], lr->after_open[k],
	       ms_since(t0, c[0].t_up), ms_since(t0, c[1].t_up), (double)c[0].hs_us / 1e3,
	       (double)c[1].hs_us / 1e3);
	fflush(stdout);
	return 0;
}

static void launch_print(struct launch_res *lr)
{
	double wall_min = 0, wall_max = 0;
	unsigned n = lr->ok;

	for (unsigned i = 0; i < n; i++) {
		if (!i || lr->wall[i] < wall_min)
			wall_min = lr->wall[i];
		if (lr->wall[i] > wall_max)
			wall_max = lr->wall[i];
	}
	printf("metric=%s runs=%u failed=%u wall_p50_ms=%.2f wall_min_ms=%.2f wall_max_ms=%.2f "
	       "exec_p50_ms=%.2f open_done_p50_ms=%.2f after_open_p50_ms=%.2f "
	       "handshake_p50_ms=%.2f handshake_max_p50_ms=%.2f\n",
	       lr->what, n, lr->failed, median(lr->wall, n), wall_min, wall_max,
	       median(lr->exec_ms, n), median(lr->open_ms, n), median(lr->after_open, n),
	       median(lr->hs, n), median(lr->hs_max, n));
	fflush(stdout);
}

/* Start both nodes @p runs times; with @p both, a bare-fabric start and a
 * CCM start alternate, so that both see the same machine load. */
static int run_launch(const char *cfg_a, const char *cfg_b, unsigned runs, bool fabric_only,
		      bool both)
{
	static struct launch_res res[2] = {{.what = "fabric_first_read", .mode = "fabnode"},
					   {.what = "ccm_handshake", .mode = "node"}};
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	unsigned first = both || fabric_only ? 0 : 1, last = both || !fabric_only ? 1 : 0;
	int rc;

	if (n <= 0)
		return -errno;
	self[n] = 0;
	signal(SIGPIPE, SIG_IGN);
	for (unsigned r = 0; r < runs; r++)
		for (unsigned k = first; k <= last; k++)
			if ((rc = launch_once(&res[k], self, cfg_a, cfg_b, r)) < 0)
				return rc;
	for (unsigned k = first; k <= last; k++)
		launch_print(&res[k]);
	return res[0].failed || res[1].failed ? -EIO : 0;
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(
	    stderr,
	    "usage: ic_bench node --config FILE [--load none|lat|stream|failover] [--spin]\n"
	    "                [--ports N] [--size B] [--inflight N] [--iters N] [--warmup N]\n"
	    "                [--duration S] [--warmup-s S] [--no-delivered] [--stats-ms MS]\n"
	    "                [--trials N] [--cut-link NAME --cut-if IFNAME] [--report-up]\n"
	    "       ic_bench fabnode --config FILE [--load none|lat] [--spin] [--iters N]\n"
	    "       ic_bench launch --config A --config B [--runs N] [--fabric-only | --both]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},	{"load", required_argument, NULL, 'l'},
	    {"spin", no_argument, NULL, 'S'},		{"ports", required_argument, NULL, 'p'},
	    {"size", required_argument, NULL, 's'},	{"inflight", required_argument, NULL, 'i'},
	    {"iters", required_argument, NULL, 'n'},	{"warmup", required_argument, NULL, 'W'},
	    {"duration", required_argument, NULL, 'd'}, {"warmup-s", required_argument, NULL, 'w'},
	    {"no-delivered", no_argument, NULL, 'D'},	{"stats-ms", required_argument, NULL, 'm'},
	    {"trials", required_argument, NULL, 't'},	{"cut-link", required_argument, NULL, 'L'},
	    {"cut-if", required_argument, NULL, 'I'},	{"report-up", no_argument, NULL, 'u'},
	    {"runs", required_argument, NULL, 'r'},	{"fabric-only", no_argument, NULL, 'F'},
	    {"both", no_argument, NULL, 'B'},		{NULL, 0, NULL, 0},
	};
	static struct bench b = {
	    .n_ports = 1,
	    .inflight = 16,
	    .size = 4096,
	    .iters = 20000,
	    .warmup = 1000,
	    .duration_s = 5,
	    .warmup_s = 1,
	    .delivered = true,
	    .trials = 10,
	    .cut_link = "ic1",
	};
	const char *configs[2] = {NULL, NULL};
	unsigned n_configs = 0, runs = 20;
	bool fabric_only = false, both = false;
	uint64_t v;
	int c, rc;

	b.t_main = loop_now_ns();
	if (argc < 2)
		usage();
	const char *mode = argv[1];
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (n_configs == 2)
				usage();
			configs[n_configs++] = optarg;
			break;
		case 'l':
			if (!strcmp(optarg, "none"))
				b.load = LOAD_NONE;
			else if (!strcmp(optarg, "lat"))
				b.load = LOAD_LAT;
			else if (!strcmp(optarg, "stream"))
				b.load = LOAD_STREAM;
			else if (!strcmp(optarg, "failover"))
				b.load = LOAD_FAILOVER;
			else
				usage();
			break;
		case 'S':
			b.spin = true;
			break;
		case 'p':
			if (util_parse_uint(optarg, 1, CCM_MAX_PORTS, &v) < 0)
				usage();
			b.n_ports = (unsigned)v;
			break;
		case 's':
			if (util_parse_size(optarg, &v) < 0 || v < 8 || v > (64ull << 20))
				usage();
			b.size = (size_t)v;
			break;
		case 'i':
			if (util_parse_uint(optarg, 1, MAX_INFLIGHT, &v) < 0)
				usage();
			b.inflight = (unsigned)v;
			break;
		case 'n':
			if (util_parse_uint(optarg, 100, 100000000, &v) < 0)
				usage();
			b.iters = (unsigned)v;
			break;
		case 'W':
			if (util_parse_uint(optarg, 0, 100000000, &v) < 0)
				usage();
			b.warmup = (unsigned)v;
			break;
		case 'd':
			b.duration_s = atof(optarg);
			if (b.duration_s <= 0)
				usage();
			break;
		case 'w':
			b.warmup_s = atof(optarg);
			if (b.warmup_s < 0)
				usage();
			break;
		case 'D':
			b.delivered = false;
			break;
		case 'm':
			if (util_parse_uint(optarg, 10, 3600000, &b.stats_ms) < 0)
				usage();
			break;
		case 't':
			if (util_parse_uint(optarg, 1, MAX_TRIALS, &v) < 0)
				usage();
			b.trials = (unsigned)v;
			break;
		case 'L':
			b.cut_link = optarg;
			break;
		case 'I':
			b.cut_if = optarg;
			break;
		case 'u':
			b.report_up = true;
			break;
		case 'r':
			if (util_parse_uint(optarg, 1, MAX_RUNS, &v) < 0)
				usage();
			runs = (unsigned)v;
			break;
		case 'F':
			fabric_only = true;
			break;
		case 'B':
			both = true;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (!strcmp(mode, "node")) {
		if (n_configs != 1 || (b.load == LOAD_FAILOVER && !b.cut_if))
			usage();
		rc = run_node(&b, configs[0]);
	} else if (!strcmp(mode, "fabnode")) {
		if (n_configs != 1)
			usage();
		rc = run_fabnode(&b, configs[0]);
	} else if (!strcmp(mode, "launch")) {
		if (n_configs != 2)
			usage();
		rc = run_launch(configs[0], configs[1], runs, fabric_only, both);
	} else {
		usage();
		return 2;
	}
	if (rc < 0) {
		fprintf(stderr, "ic_bench %s: %s\n", mode, strerror(-rc));
		return 1;
	}
	return 0;
}
