/* store-bench: the store's two I/O engines side by side, through the public
 * store API and a real reactor, as the node uses them.
 *
 * For each workload (4 KiB random read/write at depth 1 and 32, 1 MiB
 * sequential read/write at depth 8) and each engine, it runs for a fixed
 * time against one prefilled volume and reports IOPS, MB/s, mean and p99
 * latency and the process CPU used; the best of --repeat runs is kept and
 * the io_uring/threads ratio printed. */
#define LOG_MODULE "bench"
#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "store/store.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

struct workload {
	const char *name;
	enum store_op op;
	bool random;
	uint32_t bs;
	unsigned qd;
};

static struct workload workloads[] = {
    {"randread", STORE_OP_READ, true, 4096, 1},	   {"randread", STORE_OP_READ, true, 4096, 32},
    {"randwrite", STORE_OP_WRITE, true, 4096, 1},  {"randwrite", STORE_OP_WRITE, true, 4096, 32},
    {"seqread", STORE_OP_READ, false, 1 << 20, 8}, {"seqwrite", STORE_OP_WRITE, false, 1 << 20, 8},
};

struct result {
	double iops;
	double mbs;
	double lat_us;
	double p99_us;
	double cpu; /* CPU seconds per wall second, all threads */
};

struct run;

struct slot {
	struct store_io io;
	struct run *r;
	uint64_t start;
	void *buf;
};

struct run {
	struct store_volume *v;
	const struct workload *w;
	uint64_t size;
	uint64_t end_ns;
	uint64_t seq_off;
	uint64_t rng;
	uint64_t ios;
	uint64_t lat_sum;
	uint64_t *lat; /* samples, capped */
	size_t n_lat, cap_lat;
	unsigned active;
	int error;
	bool once; /* prefill: one pass over the volume, no clock */
};

static uint64_t next_rand(struct run *r)
{
	r->rng ^= r->rng << 13;
	r->rng ^= r->rng >> 7;
	r->rng ^= r->rng << 17;
	return r->rng;
}

static void io_done(struct store_io *io, int result);

/* Issue the next io of @p sl, or retire it when the run is over. */
static void issue(struct slot *sl)
{
	struct run *r = sl->r;
	uint64_t off;

	if (r->error || (r->once ? r->seq_off >= r->size : loop_now_ns() >= r->end_ns)) {
		r->active--;
		return;
	}
	if (r->w->random) {
		off = (next_rand(r) % (r->size / r->w->bs)) * r->w->bs;
	} else {
		if (r->seq_off >= r->size)
			r->seq_off = 0;
		off = r->seq_off;
		r->seq_off += r->w->bs;
	}
	memset(&sl->io, 0, sizeof(sl->io));
	sl->io.op = r->w->op;
	sl->io.offset = off;
	sl->io.length = r->w->bs;
	sl->io.buf = sl->buf;
	sl->io.done = io_done;
	sl->start = loop_now_ns();
	store_submit(r->v, &sl->io);
}

static void io_done(struct store_io *io, int result)
{
	struct slot *sl = container_of(io, struct slot, io);
	struct run *r = sl->r;
	uint64_t lat = loop_now_ns() - sl->start;

	if (result < 0) {
		fprintf(stderr, "io error: %s\n", strerror(-result));
		r->error = result;
	}
	r->ios++;
	r->lat_sum += lat;
	if (r->n_lat < r->cap_lat)
		r->lat[r->n_lat++] = lat;
	issue(sl);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double cpu_seconds(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int run_workload(struct loop *l, struct store_volume *v, const struct workload *w,
			double seconds, bool once, struct result *res)
{
	struct run r = {0};
	struct slot *slots = calloc(w->qd, sizeof(*slots));
	uint64_t t0, t1;
	double c0, c1;
	int rc = 0;

	if (!slots)
		return -ENOMEM;
	r.v = v;
	r.w = w;
	r.size = store_volume_size(v);
	r.rng = 0x2545F4914F6CDD1Dull;
	r.once = once;
	r.cap_lat = 1u << 22;
	r.lat = malloc(r.cap_lat * sizeof(*r.lat));
	if (!r.lat) {
		free(slots);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < w->qd; i++) {
		if (posix_memalign(&slots[i].buf, 4096, w->bs)) {
			rc = -ENOMEM;
			goto out;
		}
		memset(slots[i].buf, 0x5a + (int)i, w->bs);
		slots[i].r = &r;
	}
	c0 = cpu_seconds();
	t0 = loop_now_ns();
	r.end_ns = t0 + (uint64_t)(seconds * 1e9);
	r.active = w->qd;
	for (unsigned i = 0; i < w->qd; i++)
		issue(&slots[i]);
	while (r.active > 0) {
		rc = loop_run_once(l, 100000000ull);
		if (rc < 0)
			goto out;
	}
	t1 = loop_now_ns();
	c1 = cpu_seconds();
	rc = r.error;
	if (rc == 0 && res) {
		double secs = (double)(t1 - t0) / 1e9;
		qsort(r.lat, r.n_lat, sizeof(*r.lat), cmp_u64);
		res->iops = (double)r.ios / secs;
		res->mbs = (double)r.ios * w->bs / secs / 1e6;
		res->lat_us = r.ios ? (double)r.lat_sum / (double)r.ios / 1e3 : 0;
		res->p99_us = r.n_lat ? (double)r.lat[r.n_lat * 99 / 100] / 1e3 : 0;
		res->cpu = (c1 - c0) / secs;
	}
out:
	for (unsigned i = 0; i < w->qd; i++)
		free(slots[i].buf);
	free(slots);
	free(r.lat);
	return rc;
}

/* "NAME:BS:QD", NAME one of randread, randwrite, seqread, seqwrite. */
static int parse_only(const char *arg, struct workload *w)
{
	char name[16];
	unsigned bs, qd;

	if (sscanf(arg, "%15[a-z]:%u:%u", name, &bs, &qd) != 3 || !bs || bs % 512 || !qd ||
	    qd > 1024)
		return -EINVAL;
	w->op = strstr(name, "read") ? STORE_OP_READ : STORE_OP_WRITE;
	w->random = !strncmp(name, "rand", 4);
	w->name = w->op == STORE_OP_READ ? (w->random ? "randread" : "seqread")
					 : (w->random ? "randwrite" : "seqwrite");
	w->bs = bs;
	w->qd = qd;
	return 0;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: store-bench --dir DIR [--size 1G] [--runtime SECONDS] [--repeat N]\n"
		"                   [--engine uring|threads|both] [--depth N] [--workers N]\n"
		"                   [--only randread|randwrite|seqread|seqwrite:BS:QD]\n"
		"Creates (once) a volume 'bench' of SIZE in the shelf DIR, fills it, then runs\n"
		"each workload with each engine and prints a markdown table.\n");
}

static int open_store(struct loop *l, const char *dir, enum store_engine e, unsigned depth,
		      unsigned workers, uint64_t size, struct store **s, struct store_volume **v)
{
	struct store_opts o;
	int rc;

	store_opts_init(&o);
	o.engine = e;
	if (depth)
		o.depth = depth;
	if (workers)
		o.workers = workers;
	rc = store_open(l, dir, &o, s);
	if (rc < 0)
		return rc;
	if (store_get_engine(*s) != e) {
		fprintf(stderr, "engine %s unavailable\n", store_engine_name(e));
		store_close(*s);
		return -ENOTSUP;
	}
	*v = store_volume_find(*s, "bench");
	if (*v && store_volume_size(*v) != size) {
		fprintf(stderr, "volume 'bench' in %s has another size; remove it\n", dir);
		store_close(*s);
		return -EEXIST;
	}
	if (!*v) {
		const struct workload fill = {"fill", STORE_OP_WRITE, false, 1 << 20, 8};
		rc = store_volume_create(*s, "bench", size, "bench");
		if (rc < 0) {
			store_close(*s);
			return rc;
		}
		*v = store_volume_find(*s, "bench");
		fprintf(stderr, "filling %llu MiB...\n", (unsigned long long)(size >> 20));
		rc = run_workload(l, *v, &fill, 0, true, NULL);
		if (rc < 0) {
			store_close(*s);
			return rc;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"dir", required_argument, NULL, 'd'},     {"size", required_argument, NULL, 's'},
	    {"runtime", required_argument, NULL, 't'}, {"repeat", required_argument, NULL, 'r'},
	    {"engine", required_argument, NULL, 'e'},  {"depth", required_argument, NULL, 'q'},
	    {"workers", required_argument, NULL, 'w'}, {"help", no_argument, NULL, 'h'},
	    {"only", required_argument, NULL, 'o'},    {NULL, 0, NULL, 0},
	};
	const char *dir = NULL, *engine = "both";
	uint64_t size = 1ull << 30, runtime = 5, repeat = 3, depth = 0, workers = 0;
	enum store_engine engines[2] = {STORE_ENGINE_URING, STORE_ENGINE_THREADS};
	unsigned n_eng = 2;
	struct result best[ARRAY_SIZE(workloads)][2];
	struct loop *l;
	int c, rc = 0;

	size_t n_work = ARRAY_SIZE(workloads);

	while ((c = getopt_long(argc, argv, "d:s:t:r:e:q:w:o:h", lo, NULL)) != -1) {
		switch (c) {
		case 'o':
			rc = parse_only(optarg, &workloads[0]);
			n_work = 1;
			break;
		case 'd':
			dir = optarg;
			break;
		case 's':
			rc = util_parse_size(optarg, &size);
			break;
		case 't':
			rc = util_parse_uint(optarg, 1, 3600, &runtime);
			break;
		case 'r':
			rc = util_parse_uint(optarg, 1, 100, &repeat);
			break;
		case 'e':
			engine = optarg;
			break;
		case 'q':
			rc = util_parse_uint(optarg, 1, 4096, &depth);
			break;
		case 'w':
			rc = util_parse_uint(optarg, 1, 64, &workers);
			break;
		default:
			usage();
			return c == 'h' ? 0 : 2;
		}
		if (rc < 0) {
			fprintf(stderr, "bad value: %s\n", optarg);
			return 2;
		}
	}
	if (!dir || size % (1 << 20)) {
		usage();
		return 2;
	}
	if (!strcmp(engine, "uring")) {
		n_eng = 1;
	} else if (!strcmp(engine, "threads")) {
		engines[0] = STORE_ENGINE_THREADS;
		n_eng = 1;
	} else if (strcmp(engine, "both")) {
		usage();
		return 2;
	}
	log_set_level(LOG_LEVEL_WARN);
	if (loop_create(&l) < 0)
		return 1;
	memset(best, 0, sizeof(best));
	for (unsigned rep = 0; rep < repeat; rep++) {
		for (unsigned e = 0; e < n_eng; e++) {
			struct store *s;
			struct store_volume *v;

			rc = open_store(l, dir, engines[e], (unsigned)depth, (unsigned)workers,
					size, &s, &v);
			if (rc < 0) {
				fprintf(stderr, "open %s: %s\n", dir, strerror(-rc));
				return 1;
			}
			for (size_t i = 0; i < n_work; i++) {
				const struct workload *w = &workloads[i];
				struct result r;
				rc = run_workload(l, v, w, (double)runtime, false, &r);
				if (rc < 0) {
					fprintf(stderr, "%s: %s\n", w->name, strerror(-rc));
					return 1;
				}
				fprintf(stderr,
					"run %u %-7s %-9s bs=%-7u qd=%-2u %9.0f IOPS %8.1f MB/s "
					"lat %7.1f us p99 %7.1f us cpu %.2f\n",
					rep + 1, store_engine_name(engines[e]), w->name, w->bs,
					w->qd, r.iops, r.mbs, r.lat_us, r.p99_us, r.cpu);
				if (r.iops > best[i][e].iops)
					best[i][e] = r;
			}
			store_close(s);
		}
	}
	printf("| workload | bs | qd |");
	for (unsigned e = 0; e < n_eng; e++)
		printf(" %s IOPS | %s MB/s | %s lat us (p99) | %s CPU |",
		       store_engine_name(engines[e]), store_engine_name(engines[e]),
		       store_engine_name(engines[e]), store_engine_name(engines[e]));
	printf("%s\n", n_eng == 2 ? " uring/threads |" : "");
	printf("|---|---|---|");
	for (unsigned e = 0; e < n_eng; e++)
		printf("---|---|---|---|");
	printf("%s\n", n_eng == 2 ? "---|" : "");
	for (size_t i = 0; i < n_work; i++) {
		const struct workload *w = &workloads[i];
		printf("| %s | %uk | %u |", w->name, w->bs / 1024, w->qd);
		for (unsigned e = 0; e < n_eng; e++)
			printf(" %.0f | %.1f | %.1f (%.1f) | %.2f |", best[i][e].iops,
			       best[i][e].mbs, best[i][e].lat_us, best[i][e].p99_us,
			       best[i][e].cpu);
		if (n_eng == 2)
			printf(" %.2f |",
			       best[i][1].iops > 0 ? best[i][0].iops / best[i][1].iops : 0);
		printf("\n");
	}
	loop_destroy(l);
	return 0;
}
