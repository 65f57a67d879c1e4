/* fi_raw: interconnect baselines on loopback, one process pair per metric.
 *
 * Raw libfabric (direct calls, not src/fabric) and raw TCP sockets give the
 * floor that the cluster connection manager is compared against; the link_*
 * modes run the same traffic through the src/fabric link API so that its
 * overhead shows. The parent is the initiator, a forked child the target.
 *
 * Output: one line per metric, "metric=NAME key=value ...":
 *   fi_write_4k_dc_lat_spin   raw fi_writemsg 4 KiB FI_DELIVERY_COMPLETE, one
 *                             at a time, both processes spinning on the CQ
 *   fi_write_4k_dc_lat_sleep  the same, both sleeping on the CQ wait fd
 *   tcp_4k_lat_spin / _sleep  4 KiB over a TCP_NODELAY socket, 8 B answer
 *                             (what a delivery-complete write costs)
 *   fi_write_1m_bw            raw 1 MiB writes, 16 in flight, for --seconds
 *   link_write_4k_dc_lat      as fi_write_4k_dc_lat_sleep through src/fabric,
 *                             both sides in a duet loop (epoll)
 *   link_write_1m_bw          as fi_write_1m_bw through src/fabric
 *
 *   fi_raw [--mode all|fi_lat|fi_lat_wait|tcp_lat|fi_bw|link_lat|link_bw]
 *          [--host 127.0.0.1] [--port 21500] [--provider "tcp;ofi_rxm"]
 *          [--iters 20000] [--seconds 2]
 */
#define LOG_MODULE "fi_raw"
#include "common/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include "common/log.h"
#include "common/loop.h"
#include "fabric/fabric.h"

#define MSG_SIZE   4096
#define BW_SIZE	   (1u << 20)
#define BW_DEPTH   16
#define TARGET_KEY 0xbe11
#define LOCAL_KEY  0xbe12
#define WARMUP	   1000

static const char *opt_host = "127.0.0.1";
static int opt_port = 21500;
static const char *opt_prov = "tcp;ofi_rxm";
static int opt_iters = 20000;
static double opt_seconds = 2.0;

/* ---- target process plumbing: a pipe to say ready, one to say stop ---- */

struct child {
	pid_t pid;
	int ready_rd; /* parent reads 1 byte when the target is up */
	int stop_wr;  /* parent closes to stop the target */
};

typedef int (*target_fn)(int ready_fd, int stop_fd);

static int child_start(struct child *c, target_fn fn)
{
	int rp[2], sp[2];

	if (pipe(rp) < 0 || pipe(sp) < 0)
		return -errno;
	c->pid = fork();
	if (c->pid < 0)
		return -errno;
	if (c->pid == 0) {
		close(rp[0]);
		close(sp[1]);
		_exit(fn(rp[1], sp[0]) ? 1 : 0);
	}
	close(rp[1]);
	close(sp[0]);
	c->ready_rd = rp[0];
	c->stop_wr = sp[1];
	char b;
	if (read(c->ready_rd, &b, 1) != 1) {
		fprintf(stderr, "fi_raw: target failed to start\n");
		waitpid(c->pid, NULL, 0);
		return -EIO;
	}
	return 0;
}

static int child_stop(struct child *c)
{
	int st = 0;

	close(c->stop_wr);
	close(c->ready_rd);
	waitpid(c->pid, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}

static void say_ready(int fd)
{
	if (write(fd, "r", 1) != 1)
		_exit(1);
}

static bool stop_requested(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};

	return poll(&p, 1, 0) > 0;
}

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static void print_lat(const char *name, uint64_t *lat, int n)
{
	qsort(lat, (size_t)n, sizeof(lat[0]), cmp_u64);
	printf("metric=%s p50_us=%.1f p99_us=%.1f min_us=%.1f iters=%d\n", name,
	       (double)lat[n / 2] / 1e3, (double)lat[(size_t)n * 99 / 100] / 1e3,
	       (double)lat[0] / 1e3, n);
	fflush(stdout);
}

/* ---- raw libfabric ---- */

struct raw {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	struct fid_mr *mr;
	void *desc;
	fi_addr_t peer;
	int wait_fd;
	unsigned char *buf;
	size_t len;
};

#define CHECK(call)                                                                    \
	do {                                                                           \
		int rc_ = (int)(call);                                                 \
		if (rc_) {                                                             \
			fprintf(stderr, "fi_raw: %s: %s\n", #call, fi_strerror(-rc_)); \
			return rc_;                                                    \
		}                                                                      \
	} while (0)

/* The same recipe as FABRIC-NOTES: RDM endpoint bound at a predefined
 * address, peer inserted by sockaddr, application-chosen key. */
static int raw_open(struct raw *r, int port, int peer_port, size_t len, bool wait_fd)
{
	struct fi_info *h = fi_allocinfo();
	struct fi_av_attr av_attr = {.type = FI_AV_TABLE, .count = 4};
	struct fi_cq_attr cq_attr = {.format = FI_CQ_FORMAT_DATA,
				     .wait_obj = wait_fd ? FI_WAIT_FD : FI_WAIT_NONE};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)peer_port)};
	char svc[16];

	memset(r, 0, sizeof(*r));
	r->wait_fd = -1;
	h->caps = FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
	h->mode = FI_CONTEXT | FI_CONTEXT2;
	h->addr_format = FI_SOCKADDR_IN;
	h->ep_attr->type = FI_EP_RDM;
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_ALLOCATED;
	h->domain_attr->threading = FI_THREAD_DOMAIN;
	h->fabric_attr->prov_name = strdup(opt_prov);
	snprintf(svc, sizeof(svc), "%d", port);
	CHECK(fi_getinfo(FI_VERSION(1, 12), opt_host, svc, FI_SOURCE, h, &r->info));
	fi_freeinfo(h);
	CHECK(fi_fabric(r->info->fabric_attr, &r->fabric, NULL));
	CHECK(fi_domain(r->fabric, r->info, &r->domain, NULL));
	CHECK(fi_av_open(r->domain, &av_attr, &r->av, NULL));
	CHECK(fi_cq_open(r->domain, &cq_attr, &r->cq, NULL));
	if (wait_fd)
		CHECK(fi_control(&r->cq->fid, FI_GETWAIT, &r->wait_fd));
	CHECK(fi_endpoint(r->domain, r->info, &r->ep, NULL));
	CHECK(fi_ep_bind(r->ep, &r->av->fid, 0));
	CHECK(fi_ep_bind(r->ep, &r->cq->fid, FI_TRANSMIT | FI_RECV));
	CHECK(fi_enable(r->ep));
	r->len = len;
	r->buf = aligned_alloc(4096, len);
	if (!r->buf)
		return -ENOMEM;
	memset(r->buf, 0, len);
	CHECK(fi_mr_reg(r->domain, r->buf, len,
			FI_REMOTE_READ | FI_REMOTE_WRITE | FI_READ | FI_WRITE, 0,
			port == opt_port ? LOCAL_KEY : TARGET_KEY, 0, &r->mr, NULL));
	r->desc = fi_mr_desc(r->mr);
	inet_pton(AF_INET, opt_host, &sa.sin_addr);
	if (fi_av_insert(r->av, &sa, 1, &r->peer, 0, NULL) != 1) {
		fprintf(stderr, "fi_raw: fi_av_insert failed\n");
		return -EIO;
	}
	return 0;
}

static void raw_close(struct raw *r)
{
	if (r->ep)
		fi_close(&r->ep->fid);
	if (r->mr)
		fi_close(&r->mr->fid);
	if (r->av)
		fi_close(&r->av->fid);
	if (r->cq)
		fi_close(&r->cq->fid);
	if (r->domain)
		fi_close(&r->domain->fid);
	if (r->fabric)
		fi_close(&r->fabric->fid);
	if (r->info)
		fi_freeinfo(r->info);
	free(r->buf);
}

/* Reap completions: spinning, or sleeping on the wait fd after fi_trywait.
 * @return completions read (>= 1), or a negative error. */
static int raw_reap(struct raw *r, bool sleep, int stop_fd)
{
	struct fi_cq_data_entry e[BW_DEPTH];
	struct fid *fids[1] = {&r->cq->fid};
	unsigned spins = 0;

	for (;;) {
		ssize_t n = fi_cq_read(r->cq, e, BW_DEPTH);
		if (n > 0)
			return (int)n;
		if (n == -FI_EAVAIL) {
			struct fi_cq_err_entry err = {0};
			fi_cq_readerr(r->cq, &err, 0);
			fprintf(stderr, "fi_raw: completion error: %s\n", fi_strerror(err.err));
			return -err.err;
		}
		if (n != -FI_EAGAIN)
			return (int)n;
		if (!sleep) {
			/* Look at the stop pipe rarely: a syscall per spin would
			 * be measured too. */
			if (stop_fd >= 0 && ++spins % 4096 == 0 && stop_requested(stop_fd))
				return 0;
			continue;
		}
		if (fi_trywait(r->fabric, fids, 1) == 0) {
			struct pollfd p[2] = {{.fd = r->wait_fd, .events = POLLIN},
					      {.fd = stop_fd, .events = POLLIN}};
			poll(p, stop_fd >= 0 ? 2 : 1, 100);
			if (stop_fd >= 0 && p[1].revents)
				return 0;
		}
	}
}

/* The target only drives progress: spinning or sleeping on its wait fd. */
static int raw_target(int ready_fd, int stop_fd, bool sleep)
{
	struct raw r;
	int rc = raw_open(&r, opt_port + 1, opt_port, (size_t)BW_SIZE * BW_DEPTH, sleep);

	if (rc)
		return rc;
	say_ready(ready_fd);
	while (raw_reap(&r, sleep, stop_fd) > 0)
		;
	raw_close(&r);
	return 0;
}

static int raw_target_spin(int ready_fd, int stop_fd)
{
	return raw_target(ready_fd, stop_fd, false);
}

static int raw_target_sleep(int ready_fd, int stop_fd)
{
	return raw_target(ready_fd, stop_fd, true);
}

/* Post one RMA write, reaping completions while the provider pushes back
 * (-FI_EAGAIN: connection being set up or queue full); *reaped counts them.
 * @return 0 once posted, or a negative error. */
static ssize_t raw_write(struct raw *r, void *buf, size_t len, uint64_t off, uint64_t flags,
			 void *ctx, int *reaped)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct fi_rma_iov riov = {.addr = off, .len = len, .key = TARGET_KEY};
	struct fi_msg_rma msg = {.msg_iov = &iov,
				 .desc = &r->desc,
				 .iov_count = 1,
				 .addr = r->peer,
				 .rma_iov = &riov,
				 .rma_iov_count = 1,
				 .context = ctx};
	ssize_t rc;

	while ((rc = fi_writemsg(r->ep, &msg, flags | FI_COMPLETION)) == -FI_EAGAIN) {
		struct fi_cq_data_entry e[BW_DEPTH];
		ssize_t n = fi_cq_read(r->cq, e, BW_DEPTH);
		if (n > 0)
			*reaped += (int)n;
		else if (n != -FI_EAGAIN)
			return n;
	}
	return rc;
}

static int run_fi_lat(bool sleep)
{
	struct child c;
	struct raw r;
	struct fi_context2 ctx;
	uint64_t *lat = calloc((size_t)opt_iters, sizeof(*lat));
	int rc;

	if (!lat)
		return -ENOMEM;
	rc = child_start(&c, sleep ? raw_target_sleep : raw_target_spin);
	if (rc)
		goto out_free;
	rc = raw_open(&r, opt_port, opt_port + 1, MSG_SIZE, sleep);
	if (rc)
		goto out;
	for (int i = 0; i < WARMUP + opt_iters; i++) {
		uint64_t t0 = loop_now_ns();
		int reaped = 0;
		ssize_t w = raw_write(&r, r.buf, MSG_SIZE, 0, FI_DELIVERY_COMPLETE, &ctx, &reaped);
		if (w < 0) {
			rc = (int)w;
			break;
		}
		if ((rc = raw_reap(&r, sleep, -1)) < 0)
			break;
		rc = 0;
		if (i >= WARMUP)
			lat[i - WARMUP] = loop_now_ns() - t0;
	}
	if (!rc)
		print_lat(sleep ? "fi_write_4k_dc_lat_sleep" : "fi_write_4k_dc_lat_spin", lat,
			  opt_iters);
	raw_close(&r);
out:
	if (child_stop(&c) && !rc)
		rc = -EIO;
out_free:
	free(lat);
	return rc;
}

static int run_fi_bw(void)
{
	struct child c;
	struct raw r;
	struct fi_context2 ctx[BW_DEPTH];
	uint64_t bytes = 0;
	int inflight = 0, rc;

	rc = child_start(&c, raw_target_sleep);
	if (rc)
		return rc;
	rc = raw_open(&r, opt_port, opt_port + 1, (size_t)BW_SIZE * BW_DEPTH, false);
	if (rc)
		goto out;
	/* Connect first. */
	int reaped = 0;
	if (raw_write(&r, r.buf, 8, 0, FI_DELIVERY_COMPLETE, &ctx[0], &reaped) == 0)
		raw_reap(&r, false, -1);
	uint64_t t0 = loop_now_ns(), end = t0 + (uint64_t)(opt_seconds * 1e9);
	unsigned next = 0;
	while (loop_now_ns() < end || inflight) {
		while (inflight < BW_DEPTH && loop_now_ns() < end) {
			unsigned i = next++ % BW_DEPTH;
			reaped = 0;
			ssize_t w = raw_write(&r, r.buf + (size_t)i * BW_SIZE, BW_SIZE,
					      (uint64_t)i * BW_SIZE, 0, &ctx[i], &reaped);
			if (w < 0) {
				rc = (int)w;
				goto done;
			}
			inflight += 1 - reaped;
			bytes += (uint64_t)reaped * BW_SIZE;
		}
		int n = raw_reap(&r, false, -1);
		if (n < 0) {
			rc = n;
			goto done;
		}
		inflight -= n;
		bytes += (uint64_t)n * BW_SIZE;
	}
	double secs = (double)(loop_now_ns() - t0) / 1e9;
	printf("metric=fi_write_1m_bw gbytes_per_s=%.2f depth=%d seconds=%.2f target=sleep\n",
	       (double)bytes / secs / 1e9, BW_DEPTH, secs);
	fflush(stdout);
done:
	raw_close(&r);
out:
	if (child_stop(&c) && !rc)
		rc = -EIO;
	return rc;
}

/* ---- raw TCP ---- */

static int read_full(int fd, void *buf, size_t len, bool spin)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(fd, (char *)buf + got, len - got, spin ? MSG_DONTWAIT : 0);
		if (n > 0)
			got += (size_t)n;
		else if (n == 0)
			return -EPIPE;
		else if (errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	size_t put = 0;

	while (put < len) {
		ssize_t n = send(fd, (const char *)buf + put, len - put, MSG_NOSIGNAL);
		if (n > 0)
			put += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return 0;
}

static bool tcp_spin;

/* Target: receive 4 KiB, answer 8 bytes (what a delivery-complete write
 * needs: the data there, an acknowledgement back). */
static int tcp_target(int ready_fd, int stop_fd)
{
	char hp[80], buf[MSG_SIZE];
	int one = 1, lfd, fd;

	snprintf(hp, sizeof(hp), "%s:%d", opt_host, opt_port + 1);
	lfd = util_tcp_listen(hp, 4);
	if (lfd < 0)
		return lfd;
	util_set_nonblock(lfd, false);
	say_ready(ready_fd);
	fd = accept(lfd, NULL, NULL);
	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (read_full(fd, buf, MSG_SIZE, tcp_spin) == 0) {
		if (write_full(fd, buf, 8) < 0)
			break;
	}
	(void)stop_fd;
	close(fd);
	close(lfd);
	return 0;
}

static int run_tcp_lat(bool spin)
{
	struct child c;
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)(opt_port + 1))};
	char buf[MSG_SIZE] = {0};
	uint64_t *lat = calloc((size_t)opt_iters, sizeof(*lat));
	int one = 1, fd, rc;

	if (!lat)
		return -ENOMEM;
	tcp_spin = spin;
	rc = child_start(&c, tcp_target);
	if (rc)
		goto out_free;
	inet_pton(AF_INET, opt_host, &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		rc = -errno;
		goto out;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (int i = 0; i < WARMUP + opt_iters; i++) {
		uint64_t t0 = loop_now_ns();
		if ((rc = write_full(fd, buf, MSG_SIZE)) < 0 ||
		    (rc = read_full(fd, buf, 8, spin)) < 0)
			break;
		if (i >= WARMUP)
			lat[i - WARMUP] = loop_now_ns() - t0;
	}
	if (!rc)
		print_lat(spin ? "tcp_4k_lat_spin" : "tcp_4k_lat_sleep", lat, opt_iters);
	close(fd);
out:
	if (child_stop(&c) && !rc)
		rc = -EIO;
out_free:
	free(lat);
	return rc;
}

/* ---- the same through the src/fabric link API ---- */

static void on_stop(struct loop_io *io, uint32_t events)
{
	(void)events;
	loop_stop(io->arg);
}

static int link_target(int ready_fd, int stop_fd)
{
	struct loop *l;
	struct fab_link *link;
	struct fab_mr *mr;
	struct loop_io io = {0};
	char local[80], peer[80];
	size_t len = (size_t)BW_SIZE * BW_DEPTH;
	void *buf = aligned_alloc(4096, len);
	int rc;

	snprintf(local, sizeof(local), "%s:%d", opt_host, opt_port + 1);
	snprintf(peer, sizeof(peer), "%s:%d", opt_host, opt_port);
	struct fab_link_opts o = {
	    .name = "target", .provider = opt_prov, .local = local, .peer = peer};
	if (!buf || loop_create(&l))
		return -ENOMEM;
	rc = fab_link_open(l, &o, NULL, &link);
	if (rc)
		return rc;
	rc = fab_mr_reg(link, buf, len, TARGET_KEY, FAB_REMOTE_READ | FAB_REMOTE_WRITE, &mr);
	if (rc)
		return rc;
	loop_io_add(l, &io, stop_fd, EPOLLIN, on_stop, l);
	say_ready(ready_fd);
	rc = loop_run(l);
	loop_io_del(l, &io);
	fab_mr_close(mr);
	fab_link_close(link);
	loop_destroy(l);
	free(buf);
	return rc;
}

struct link_bench {
	struct loop *loop;
	struct fab_link *link;
	struct fab_remote rem;
	unsigned char *buf;
	struct fab_op ops[BW_DEPTH];
	uint64_t *lat;
	int done, total, inflight, err;
	uint64_t t0, end, bytes;
	unsigned next;
};

static void lat_done(struct fab_op *op, int status);

static void lat_issue(struct link_bench *b)
{
	b->t0 = loop_now_ns();
	int rc =
	    fab_write(b->link, b->buf, MSG_SIZE, &b->rem, 0, FAB_DELIVERY_COMPLETE, &b->ops[0]);
	if (rc) {
		b->err = rc;
		loop_stop(b->loop);
	}
}

static void lat_done(struct fab_op *op, int status)
{
	struct link_bench *b = op->arg;

	if (status) {
		b->err = status;
		loop_stop(b->loop);
		return;
	}
	if (b->done >= WARMUP)
		b->lat[b->done - WARMUP] = loop_now_ns() - b->t0;
	if (++b->done == b->total) {
		loop_stop(b->loop);
		return;
	}
	lat_issue(b);
}

static void bw_done(struct fab_op *op, int status);

static void bw_issue(struct link_bench *b)
{
	while (b->inflight < BW_DEPTH && loop_now_ns() < b->end) {
		unsigned i = b->next++ % BW_DEPTH;
		b->ops[i].done = bw_done;
		b->ops[i].arg = b;
		int rc = fab_write(b->link, b->buf + (size_t)i * BW_SIZE, BW_SIZE, &b->rem,
				   (uint64_t)i * BW_SIZE, 0, &b->ops[i]);
		if (rc) {
			b->err = rc;
			loop_stop(b->loop);
			return;
		}
		b->inflight++;
	}
	if (!b->inflight)
		loop_stop(b->loop);
}

static void bw_done(struct fab_op *op, int status)
{
	struct link_bench *b = op->arg;

	b->inflight--;
	if (status) {
		b->err = status;
		loop_stop(b->loop);
		return;
	}
	b->bytes += BW_SIZE;
	bw_issue(b);
}

static int run_link(bool bw)
{
	struct child c;
	struct link_bench b = {0};
	struct fab_mr *mr = NULL;
	char local[80], peer[80];
	size_t len = bw ? (size_t)BW_SIZE * BW_DEPTH : MSG_SIZE;
	int rc;

	snprintf(local, sizeof(local), "%s:%d", opt_host, opt_port);
	snprintf(peer, sizeof(peer), "%s:%d", opt_host, opt_port + 1);
	struct fab_link_opts o = {
	    .name = "initiator", .provider = opt_prov, .local = local, .peer = peer};
	b.total = WARMUP + opt_iters;
	b.lat = calloc((size_t)opt_iters, sizeof(*b.lat));
	b.buf = aligned_alloc(4096, len);
	if (!b.lat || !b.buf)
		return -ENOMEM;
	memset(b.buf, 1, len);
	b.rem.key = TARGET_KEY;
	b.rem.size = (uint64_t)BW_SIZE * BW_DEPTH;
	rc = child_start(&c, link_target);
	if (rc)
		goto out_free;
	if ((rc = loop_create(&b.loop)) || (rc = fab_link_open(b.loop, &o, NULL, &b.link)) ||
	    (rc = fab_mr_reg(b.link, b.buf, len, LOCAL_KEY, 0, &mr)))
		goto out;
	for (int i = 0; i < BW_DEPTH; i++) {
		b.ops[i].done = lat_done;
		b.ops[i].arg = &b;
	}
	if (!bw) {
		lat_issue(&b);
		if (!b.err)
			rc = loop_run(b.loop);
		if (!rc && !b.err)
			print_lat("link_write_4k_dc_lat", b.lat, opt_iters);
	} else {
		/* Connect first, then stream. */
		b.total = 1;
		lat_issue(&b);
		if (!b.err)
			rc = loop_run(b.loop);
		b.t0 = loop_now_ns();
		b.end = b.t0 + (uint64_t)(opt_seconds * 1e9);
		bw_issue(&b);
		if (!rc && !b.err)
			rc = loop_run(b.loop);
		double secs = (double)(loop_now_ns() - b.t0) / 1e9;
		if (!rc && !b.err)
			printf("metric=link_write_1m_bw gbytes_per_s=%.2f depth=%d seconds=%.2f\n",
			       (double)b.bytes / secs / 1e9, BW_DEPTH, secs);
	}
	if (!rc)
		rc = b.err;
	fflush(stdout);
out:
	fab_mr_close(mr);
	fab_link_close(b.link);
	if (b.loop)
		loop_destroy(b.loop);
	if (child_stop(&c) && !rc)
		rc = -EIO;
out_free:
	free(b.lat);
	free(b.buf);
	return rc;
}

/* ---- main ---- */

static void usage(void)
{
	fprintf(stderr, "usage: fi_raw [--mode all|fi_lat|fi_lat_wait|tcp_lat|fi_bw|link_lat|"
			"link_bw] [--host H] [--port P] [--provider NAME] [--iters N] "
			"[--seconds S]\n");
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"mode", required_argument, NULL, 'm'},  {"host", required_argument, NULL, 'h'},
	    {"port", required_argument, NULL, 'p'},  {"provider", required_argument, NULL, 'P'},
	    {"iters", required_argument, NULL, 'i'}, {"seconds", required_argument, NULL, 's'},
	    {"help", no_argument, NULL, '?'},	     {NULL, 0, NULL, 0}};
	const char *mode = "all";
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'm':
			mode = optarg;
			break;
		case 'h':
			opt_host = optarg;
			break;
		case 'p':
			opt_port = atoi(optarg);
			break;
		case 'P':
			opt_prov = optarg;
			break;
		case 'i':
			opt_iters = atoi(optarg);
			break;
		case 's':
			opt_seconds = atof(optarg);
			break;
		default:
			usage();
			return 2;
		}
	}
	if (opt_iters < 100 || opt_port <= 0 || opt_port > 65534 || opt_seconds <= 0) {
		usage();
		return 2;
	}
	/* Same process-wide settings as the src/fabric module, so raw and
	 * link numbers compare like with like. */
	setenv("FI_AV_REMOVE_CLEANUP", "1", 0);
	setenv("FI_TCP_NODELAY", "1", 0);
	setenv("FI_OFI_RXM_CM_PROGRESS_INTERVAL", "0", 0);
	setenv("IPATH_NO_BACKTRACE", "1", 0);
	log_set_level(LOG_LEVEL_WARN);
	signal(SIGPIPE, SIG_IGN);
	printf("# fi_raw provider=%s host=%s 4 KiB latency, 1 MiB x %d bandwidth\n", opt_prov,
	       opt_host, BW_DEPTH);
	fflush(stdout);

	bool all = strcmp(mode, "all") == 0, any = false;
	if (!rc && (all || !strcmp(mode, "fi_lat")))
		any = true, rc = run_fi_lat(false);
	if (!rc && (all || !strcmp(mode, "fi_lat_wait")))
		any = true, rc = run_fi_lat(true);
	if (!rc && (all || !strcmp(mode, "tcp_lat"))) {
		any = true;
		rc = run_tcp_lat(true);
		if (!rc)
			rc = run_tcp_lat(false);
	}
	if (!rc && (all || !strcmp(mode, "fi_bw")))
		any = true, rc = run_fi_bw();
	if (!rc && (all || !strcmp(mode, "link_lat")))
		any = true, rc = run_link(false);
	if (!rc && (all || !strcmp(mode, "link_bw")))
		any = true, rc = run_link(true);
	if (!any) {
		usage();
		return 2;
	}
	if (rc) {
		fprintf(stderr, "fi_raw: failed: %s\n", strerror(rc < 0 ? -rc : rc));
		return 1;
	}
	return 0;
}
