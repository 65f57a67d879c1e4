/* A worker thread of the log (the syncer's, the encoder's): the thread, the
 * mutex and condition its owner shares with it, and the eventfd through
 * which it wakes the loop, whose done callback then runs on the loop thread.
 *
 * Rule: this file owns the thread's life (start, stop and join); what the
 * thread does, and which fields the mutex guards, is its owner's. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/loop.h"

static void on_event(struct loop_io *io, uint32_t events)
{
	struct mirror_thread *t = io->arg;
	uint64_t v;
	ssize_t n;

	(void)events;
	n = read(t->efd, &v, sizeof(v));
	(void)n;
	t->done(t->arg);
}

int mirror_thread_start(struct mirror_thread *t, struct loop *loop, void *(*fn)(void *),
			void *fn_arg, void (*done)(void *arg), void *arg)
{
	int rc;

	memset(t, 0, sizeof(*t));
	t->loop = loop;
	t->done = done;
	t->arg = arg;
	t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (t->efd < 0) {
		rc = -errno;
		LOG_ERROR("eventfd: %s", strerror(errno));
		return rc;
	}
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cv, NULL);
	rc = loop_io_add(loop, &t->io, t->efd, EPOLLIN, on_event, t);
	if (rc < 0)
		goto err_efd;
	rc = -pthread_create(&t->thread, NULL, fn, fn_arg);
	if (rc < 0) {
		LOG_ERROR("pthread_create: %s", strerror(-rc));
		goto err_io;
	}
	return 0;
err_io:
	loop_io_del(loop, &t->io);
err_efd:
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
	close(t->efd);
	return rc;
}

void mirror_thread_stop(struct mirror_thread *t)
{
	pthread_mutex_lock(&t->mu);
	t->stop = true;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	pthread_join(t->thread, NULL);
	loop_io_del(t->loop, &t->io);
	close(t->efd);
	pthread_cond_destroy(&t->cv);
	pthread_mutex_destroy(&t->mu);
}

void mirror_thread_wake_loop(struct mirror_thread *t)
{
	uint64_t one = 1;
	ssize_t n = write(t->efd, &one, sizeof(one));

	(void)n; /* an eventfd counter cannot overflow here */
}
