/* Private to src/mirror: a thread that fdatasyncs the log file so the loop
 * never blocks on it. Requests coalesce: one fdatasync covers every request
 * made before it started. */
#ifndef DUET_MIRROR_SYNCER_H
#define DUET_MIRROR_SYNCER_H

#include <stdint.h>

struct loop;
struct syncer;

/* @p done(@p arg) runs on the loop when a sync finished. */
int syncer_start(struct loop *loop, int fd, void (*done)(void *arg), void *arg,
		 struct syncer **out);
/* Wait for the sync in progress, then stop the thread. */
void syncer_stop(struct syncer *s);
/* Ask for an fdatasync covering everything written so far; @p ticket is
 * reported back by syncer_result once it is durable (tickets only grow). */
void syncer_request(struct syncer *s, uint64_t ticket);
/* Highest ticket made durable, and the error of the last sync (0 or -errno). */
uint64_t syncer_result(struct syncer *s, int *err);

#endif
