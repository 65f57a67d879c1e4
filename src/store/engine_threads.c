/* The worker-pool engine: N threads run each step as one blocking system
 * call. The loop hands steps over in batches (one lock and one wakeup per
 * loop turn) into a queue bounded by `depth`; workers pass completions back
 * through a lock-protected list and an eventfd, signalled only when that
 * list goes from empty to non-empty. */
#define LOG_MODULE "store"
#include "common/log.h"
#include "store/store_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct store_pool {
	struct store *s;
	unsigned n_threads;
	pthread_t *threads;

	/* Shared with the workers, under lock. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct slist queue;
	unsigned idle;
	bool stop;

	pthread_mutex_t done_lock;
	struct slist done;
	int efd;

	/* Loop thread only. */
	struct loop_io lio;
	struct loop_task submit_task;
	struct slist pending;
	unsigned outstanding; /* handed to workers, not yet reaped */
	unsigned cap;
};

static void *worker(void *arg)
{
	struct store_pool *p = arg;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		struct store_io *io;
		struct store_step st;
		bool signal;

		while (slist_empty(&p->queue) && !p->stop) {
			p->idle++;
			pthread_cond_wait(&p->cond, &p->lock);
			p->idle--;
		}
		if (p->stop)
			break;
		io = store_io_pop(&p->queue);
		pthread_mutex_unlock(&p->lock);

		store_step_get(io, &st);
		if (io->eng_sync) /* io_uring's FUA write is in: its fdatasync */
			st.kind = STORE_STEP_SYNC;
		/* Right before the system call: a stop between the loop's check
		 * and here must not let the step reach the disk. */
		do
			io->result =
			    store_gate_open_io(p->s, io) ? store_step_exec(&st) : STORE_GATED_RES;
		while (io->result == -EINTR);
		if (io->eng_sync && io->result != STORE_GATED_RES) {
			io->eng_sync = 0;
			if (io->result >= 0)
				io->result = io->eng_bytes;
			st.kind = STORE_STEP_WRITE;
			st.dsync = true;
		}
		if (st.kind == STORE_STEP_WRITE && st.dsync && io->result >= 0)
			__atomic_fetch_add(&p->s->st.fua_syncs, 1, __ATOMIC_RELAXED);

		pthread_mutex_lock(&p->done_lock);
		signal = slist_empty(&p->done);
		store_io_push(&p->done, io);
		pthread_mutex_unlock(&p->done_lock);
		if (signal) {
			uint64_t one = 1;
			/* Cannot fail short of a counter at 2^64-1. */
			if (write(p->efd, &one, sizeof(one)) < 0)
				LOG_ERROR("eventfd write: %s", strerror(errno));
		}
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Once per loop turn: move what fits under the bound into the shared queue
 * and wake as many idle workers as there are new steps. */
static void submit_task(void *arg)
{
	struct store_pool *p = arg;
	unsigned moved = 0;

	if (slist_empty(&p->pending) || p->outstanding >= p->cap)
		return;
	if (!store_gate_open(p->s)) {
		struct store_io *io;
		while ((io = store_io_pop(&p->pending)))
			store_gate_park(p->s, io);
		return;
	}
	pthread_mutex_lock(&p->lock);
	while (!slist_empty(&p->pending) && p->outstanding < p->cap) {
		store_io_push(&p->queue, store_io_pop(&p->pending));
		p->outstanding++;
		moved++;
	}
	if (moved >= p->idle)
		pthread_cond_broadcast(&p->cond);
	else
		for (unsigned i = 0; i < moved; i++)
			pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

static void efd_cb(struct loop_io *lio, uint32_t events)
{
	struct store_pool *p = lio->arg;
	struct slist l;
	struct store_io *io;

	(void)events;
	/* Edge-triggered: each worker signal is a new edge; the counter is
	 * never read. Take the whole list after the wake. */
	pthread_mutex_lock(&p->done_lock);
	store_io_take_all(&l, &p->done);
	pthread_mutex_unlock(&p->done_lock);
	while ((io = store_io_pop(&l))) {
		p->outstanding--;
		if (io->result == STORE_GATED_RES)
			store_gate_park(p->s, io);
		else
			store_step_done(p->s, io, io->result);
	}
	if (!slist_empty(&p->pending))
		loop_post(p->s->loop, &p->submit_task);
}

void store_pool_queue(struct store_pool *p, struct store_io *io)
{
	store_io_push(&p->pending, io);
	loop_post(p->s->loop, &p->submit_task);
}

static void pool_queue(struct store *s, struct store_io *io)
{
	store_pool_queue(s->engine, io);
}

static void stop_threads(struct store_pool *p, unsigned n)
{
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < n; i++)
		pthread_join(p->threads[i], NULL);
}

int store_pool_new(struct store *s, unsigned workers, unsigned cap, struct store_pool **out)
{
	struct store_pool *p = calloc(1, sizeof(*p));
	unsigned started = 0;
	int rc;

	if (!p)
		return -ENOMEM;
	p->s = s;
	p->n_threads = workers;
	p->cap = cap;
	slist_init(&p->queue);
	slist_init(&p->done);
	slist_init(&p->pending);
	loop_task_init(&p->submit_task, submit_task, p);
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->done_lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	p->threads = calloc(p->n_threads, sizeof(*p->threads));
	if (!p->threads) {
		rc = -ENOMEM;
		goto err_free;
	}
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0) {
		rc = -errno;
		LOG_ERROR("eventfd: %s", strerror(errno));
		goto err_free;
	}
	rc = loop_io_add(s->loop, &p->lio, p->efd, EPOLLIN | EPOLLET, efd_cb, p);
	if (rc < 0)
		goto err_efd;
	for (; started < p->n_threads; started++) {
		rc = -pthread_create(&p->threads[started], NULL, worker, p);
		if (rc < 0) {
			LOG_ERROR("pthread_create: %s", strerror(-rc));
			goto err_threads;
		}
	}
	*out = p;
	LOG_DEBUG("worker pool: %u threads, queue bound %u", p->n_threads, p->cap);
	return 0;

err_threads:
	stop_threads(p, started);
	loop_io_del(s->loop, &p->lio);
err_efd:
	close(p->efd);
err_free:
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->done_lock);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
	return rc;
}

void store_pool_free(struct store_pool *p)
{
	if (!p)
		return;
	stop_threads(p, p->n_threads);
	loop_io_del(p->s->loop, &p->lio);
	close(p->efd);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->done_lock);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
}

static int pool_init(struct store *s)
{
	struct store_pool *p;
	int rc = store_pool_new(s, s->opts.workers, s->opts.depth, &p);

	if (rc == 0)
		s->engine = p;
	return rc;
}

static void pool_fini(struct store *s)
{
	store_pool_free(s->engine);
	s->engine = NULL;
}

static void pool_add_volume(struct store *s, struct store_volume *v)
{
	(void)s;
	v->slot = STORE_SLOT_NONE;
}

static void pool_del_volume(struct store *s, struct store_volume *v)
{
	(void)s;
	(void)v;
}

const struct store_engine_ops store_threads_ops = {
    .init = pool_init,
    .fini = pool_fini,
    .add_volume = pool_add_volume,
    .del_volume = pool_del_volume,
    .queue = pool_queue,
};
