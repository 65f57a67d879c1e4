/* The log's syncer: a thread that fdatasyncs the log file so the loop
 * never blocks on it.
 *
 * Rule: requests coalesce: one fdatasync covers every request made before
 * it started, and its completion reaches the loop through an eventfd (the
 * done callback runs on the loop thread, never on the syncer's). Only the
 * counters under the mutex are shared between the two threads. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"

struct mirror_syncer {
	struct loop *loop;
	int fd;
	int efd;
	struct loop_io io;
	void (*done)(void *arg);
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t requested; /* under mu */
	uint64_t completed; /* under mu */
	int err;	    /* under mu */
	bool stop;	    /* under mu */
};

static void *sync_main(void *arg)
{
	struct mirror_syncer *s = arg;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->stop && s->requested == s->completed)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->requested == s->completed && s->stop)
			break;
		uint64_t target = s->requested;
		pthread_mutex_unlock(&s->mu);
		int rc = fdatasync(s->fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&s->mu);
		s->completed = target;
		s->err = rc;
		uint64_t one = 1;
		ssize_t n = write(s->efd, &one, sizeof(one));
		(void)n; /* an eventfd counter cannot overflow here */
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void on_event(struct loop_io *io, uint32_t events)
{
	struct mirror_syncer *s = io->arg;
	uint64_t v;
	ssize_t n;

	(void)events;
	n = read(s->efd, &v, sizeof(v));
	(void)n;
	s->done(s->arg);
}

int mirror_syncer_start(struct loop *loop, int fd, void (*done)(void *arg), void *arg,
			struct mirror_syncer **out)
{
	struct mirror_syncer *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->fd = fd;
	s->done = done;
	s->arg = arg;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0) {
		rc = -errno;
		LOG_ERROR("eventfd: %s", strerror(errno));
		goto err_free;
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	rc = loop_io_add(loop, &s->io, s->efd, EPOLLIN, on_event, s);
	if (rc < 0)
		goto err_efd;
	rc = -pthread_create(&s->thread, NULL, sync_main, s);
	if (rc < 0) {
		LOG_ERROR("pthread_create: %s", strerror(-rc));
		goto err_io;
	}
	*out = s;
	return 0;
err_io:
	loop_io_del(loop, &s->io);
err_efd:
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	close(s->efd);
err_free:
	free(s);
	return rc;
}

void mirror_syncer_stop(struct mirror_syncer *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	loop_io_del(s->loop, &s->io);
	close(s->efd);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

void mirror_syncer_request(struct mirror_syncer *s, uint64_t ticket)
{
	pthread_mutex_lock(&s->mu);
	if (ticket > s->requested) {
		s->requested = ticket;
		pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}

uint64_t mirror_syncer_result(struct mirror_syncer *s, int *err)
{
	uint64_t v;

	pthread_mutex_lock(&s->mu);
	v = s->completed;
	if (err)
		*err = s->err;
	pthread_mutex_unlock(&s->mu);
	return v;
}
