/* The log's encoder: a thread that copies a large record's data into its
 * slot and seals it with its CRC, so that the loop thread does not spend a
 * copy and a CRC per mirrored byte: with 1 MiB writes those were a quarter
 * of the owner's reactor, the one thread a burst of writes waits for
 * (docs/BENCHMARKS.md, "where a burst's time goes").
 *
 * Rule: the loop places records (slot, sequence number, header) in order
 * and hands the data of the large ones here; they are sealed in the same
 * order. Everything that reads the log's tail stops before the oldest record
 * not yet sealed (append.c mirror_encoded_seq, replicate.c, half reuse), so a
 * record is never sent, synced, reported logged or overwritten half made.
 * Jobs live in a fixed ring (no allocation per record): a full ring means
 * the loop seals the record itself. Completions reach the loop as the
 * syncer's do (thread.c); only the ring under the mutex is shared between
 * the threads. */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#define ENC_RING 64u /* records queued at most: 64 MiB of 1 MiB records */

struct mirror_encoder {
	struct mirror_thread t;		      /* t.mu guards the fields below */
	struct mirror_enc_job ring[ENC_RING]; /* [head, head + count) */
	unsigned head, count;		      /* head is being sealed */
	bool paused;			      /* mirror_encoder_pause */
};

static void *enc_main(void *arg)
{
	struct mirror_encoder *e = arg;

	pthread_mutex_lock(&e->t.mu);
	for (;;) {
		while (!e->t.stop && (e->count == 0 || e->paused))
			pthread_cond_wait(&e->t.cv, &e->t.mu);
		if (e->t.stop)
			break;
		/* The slot stays queued (the oldest) until it is sealed. */
		struct mirror_enc_job j = e->ring[e->head];
		pthread_mutex_unlock(&e->t.mu);
		mirror_rec_seal(j.dst, j.data, j.data_len);
		pthread_mutex_lock(&e->t.mu);
		e->head = (e->head + 1) % ENC_RING;
		e->count--;
		mirror_thread_wake_loop(&e->t);
	}
	pthread_mutex_unlock(&e->t.mu);
	return NULL;
}

int mirror_encoder_start(struct loop *loop, void (*done)(void *arg), void *arg,
			 struct mirror_encoder **out)
{
	struct mirror_encoder *e = calloc(1, sizeof(*e));
	int rc;

	if (!e)
		return -ENOMEM;
	rc = mirror_thread_start(&e->t, loop, enc_main, e, done, arg);
	if (rc < 0) {
		free(e);
		return rc;
	}
	*out = e;
	return 0;
}

void mirror_encoder_stop(struct mirror_encoder *e)
{
	if (!e)
		return;
	mirror_thread_stop(&e->t);
	free(e);
}

bool mirror_encoder_push(struct mirror_encoder *e, const struct mirror_enc_job *j)
{
	bool ok;

	pthread_mutex_lock(&e->t.mu);
	ok = e->count < ENC_RING;
	if (ok) {
		e->ring[(e->head + e->count) % ENC_RING] = *j;
		if (e->count++ == 0)
			pthread_cond_signal(&e->t.cv);
	}
	pthread_mutex_unlock(&e->t.mu);
	return ok;
}

bool mirror_encoder_oldest(struct mirror_encoder *e, struct mirror_enc_job *out)
{
	bool any;

	pthread_mutex_lock(&e->t.mu);
	any = e->count > 0;
	if (any && out)
		*out = e->ring[e->head];
	pthread_mutex_unlock(&e->t.mu);
	return any;
}

void mirror_encoder_pause(struct mirror_encoder *e, bool pause)
{
	pthread_mutex_lock(&e->t.mu);
	e->paused = pause;
	pthread_cond_signal(&e->t.cv);
	pthread_mutex_unlock(&e->t.mu);
}
