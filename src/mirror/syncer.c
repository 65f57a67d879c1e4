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
#include <stdlib.h>
#include <unistd.h>

struct mirror_syncer {
	struct mirror_thread t; /* t.mu guards the fields below */
	int fd;
	uint64_t requested;
	uint64_t completed;
	int err;
};

static void *sync_main(void *arg)
{
	struct mirror_syncer *s = arg;

	pthread_mutex_lock(&s->t.mu);
	for (;;) {
		while (!s->t.stop && s->requested == s->completed)
			pthread_cond_wait(&s->t.cv, &s->t.mu);
		if (s->requested == s->completed && s->t.stop)
			break;
		uint64_t target = s->requested;
		pthread_mutex_unlock(&s->t.mu);
		int rc = fdatasync(s->fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&s->t.mu);
		s->completed = target;
		s->err = rc;
		mirror_thread_wake_loop(&s->t);
	}
	pthread_mutex_unlock(&s->t.mu);
	return NULL;
}

int mirror_syncer_start(struct loop *loop, int fd, void (*done)(void *arg), void *arg,
			struct mirror_syncer **out)
{
	struct mirror_syncer *s = calloc(1, sizeof(*s));
	int rc;

	if (!s)
		return -ENOMEM;
	s->fd = fd;
	rc = mirror_thread_start(&s->t, loop, sync_main, s, done, arg);
	if (rc < 0) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}

void mirror_syncer_stop(struct mirror_syncer *s)
{
	if (!s)
		return;
	mirror_thread_stop(&s->t);
	free(s);
}

void mirror_syncer_request(struct mirror_syncer *s, uint64_t ticket)
{
	pthread_mutex_lock(&s->t.mu);
	if (ticket > s->requested) {
		s->requested = ticket;
		pthread_cond_signal(&s->t.cv);
	}
	pthread_mutex_unlock(&s->t.mu);
}

uint64_t mirror_syncer_result(struct mirror_syncer *s, int *err)
{
	uint64_t v;

	pthread_mutex_lock(&s->t.mu);
	v = s->completed;
	if (err)
		*err = s->err;
	pthread_mutex_unlock(&s->t.mu);
	return v;
}
