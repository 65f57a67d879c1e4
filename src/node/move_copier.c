/* The volume move's copier threads (move_copier.h). Jobs go to the threads
 * through a list under a mutex; finished ones come back through another
 * list and an eventfd that the loop watches, so that every callback runs
 * on the reactor. The threads block in pread/pwrite (store_move_copy): the
 * reactor never waits for the shelf on behalf of the copy. */
#define LOG_MODULE "move"
#include "node/move_copier.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"
#include "store/store.h"

struct move_copier {
	struct loop *loop;
	struct loop_io efd_io;
	int efd;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct move_copy_job *todo, **todo_tail, *done;
	bool quit;
	unsigned n_threads;
	pthread_t threads[MOVE_COPIER_THREADS];
};

static void *worker(void *arg)
{
	struct move_copier *c = arg;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		struct move_copy_job *j;
		uint64_t one = 1;
		while (!c->todo && !c->quit)
			pthread_cond_wait(&c->cv, &c->mu);
		if (!c->todo)
			break;
		j = c->todo;
		c->todo = j->next;
		if (!c->todo)
			c->todo_tail = &c->todo;
		pthread_mutex_unlock(&c->mu);
		j->result = store_move_copy(j->src, j->dst, j->offset, j->length, j->buf, j->buflen,
					    &j->data);
		pthread_mutex_lock(&c->mu);
		j->next = c->done;
		c->done = j;
		/* A failure leaves the counter non-zero already (EAGAIN). */
		if (write(c->efd, &one, sizeof(one)) < 0)
			continue;
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* Completions: run each job's callback on the loop, oldest first. */
static void efd_ready(struct loop_io *io, uint32_t events)
{
	struct move_copier *c = io->arg;
	struct move_copy_job *list, *rev = NULL;
	uint64_t v;

	(void)events;
	if (read(c->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		LOG_WARN("copier eventfd read: %s", strerror(errno));
	pthread_mutex_lock(&c->mu);
	list = c->done;
	c->done = NULL;
	pthread_mutex_unlock(&c->mu);
	while (list) {
		struct move_copy_job *next = list->next;
		list->next = rev;
		rev = list;
		list = next;
	}
	while (rev) {
		struct move_copy_job *next = rev->next;
		rev->next = NULL;
		rev->done(rev);
		rev = next;
	}
}

void move_copier_submit(struct move_copier *c, struct move_copy_job *job)
{
	job->next = NULL;
	job->result = 0;
	job->data = 0;
	pthread_mutex_lock(&c->mu);
	*c->todo_tail = job;
	c->todo_tail = &job->next;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

int move_copier_create(struct loop *loop, struct move_copier **out)
{
	struct move_copier *c = calloc(1, sizeof(*c));
	int rc;

	if (!c)
		return -ENOMEM;
	c->loop = loop;
	c->todo_tail = &c->todo;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->efd < 0) {
		rc = -errno;
		LOG_ERROR("copier eventfd: %s", strerror(errno));
		goto fail_efd;
	}
	rc = loop_io_add(loop, &c->efd_io, c->efd, EPOLLIN, efd_ready, c);
	if (rc < 0) {
		LOG_ERROR("copier eventfd on the loop: %s", strerror(-rc));
		goto fail_io;
	}
	for (; c->n_threads < MOVE_COPIER_THREADS; c->n_threads++) {
		rc = -pthread_create(&c->threads[c->n_threads], NULL, worker, c);
		if (rc < 0) {
			LOG_ERROR("copier thread: %s", strerror(-rc));
			goto fail_threads;
		}
	}
	*out = c;
	return 0;

fail_threads:
	move_copier_destroy(c);
	return rc;
fail_io:
	close(c->efd);
fail_efd:
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
	return rc;
}

void move_copier_destroy(struct move_copier *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	c->quit = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	for (unsigned i = 0; i < c->n_threads; i++)
		pthread_join(c->threads[i], NULL);
	loop_io_del(c->loop, &c->efd_io);
	close(c->efd);
	pthread_cond_destroy(&c->cv);
	pthread_mutex_destroy(&c->mu);
	free(c);
}
