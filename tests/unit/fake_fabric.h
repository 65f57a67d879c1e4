/* An in-memory implementation of src/fabric/fabric.h for unit tests: links
 * of several "nodes" in one process, joined by address, with operations
 * carried out by a loop poller, plus fault injection. */
#ifndef DUET_TESTS_FAKE_FABRIC_H
#define DUET_TESTS_FAKE_FABRIC_H

#include <stdbool.h>
#include <stdint.h>

#include "fabric/fabric.h"

/** Forget all fault settings (links must all be closed). */
void ff_reset(void);
/** Every operation takes effect no sooner than @p ns after its post. */
void ff_set_delay_ns(uint64_t ns);
/**
 * Operations from or to the link bound at @p addr hang while it is dead
 * (new posts are accepted, as a pulled cable does); they run when it
 * comes back unless aborted.
 */
void ff_set_dead(const char *addr, bool dead);
/** Operations posted on the link at @p addr wait while it is stalled; the
 * peer's operations towards it still run (a one-way stall). */
void ff_set_stalled(const char *addr, bool stalled);
/** Operations posted on the link at @p addr take @p ns longer (a slow path
 * that its heartbeats still find alive). */
void ff_set_slow(const char *addr, uint64_t ns);
/** The next @p n operations posted on the link at @p addr fail with @p err. */
void ff_fail_next(const char *addr, unsigned n, int err);
/** The next @p n operations posted on the link at @p addr never complete. */
void ff_drop_next(const char *addr, unsigned n);
/** The next @p n messages sent on the link at @p addr are accepted and then
 * neither delivered nor completed until the link is reset or closed, while
 * everything else goes on: what rxm does to a rendezvous send whose
 * connection the peer closed (docs/FABRIC.md). */
void ff_lose_next_sends(const char *addr, unsigned n);
/** Writes in flight when their link is aborted or closed still land in the
 * peer's memory later (no completion), unless the peer's end of the link
 * was closed meanwhile. */
void ff_set_late_effects(bool on);
/** Such late writes land no sooner than @p ns after their link's abort,
 * reset or close (bytes still queued in a socket), default 0. */
void ff_set_late_delay_ns(uint64_t ns);
/** Raise doorbells for write-with-immediate (default on). */
void ff_set_doorbells(bool on);
/** Stop carrying out operations (they queue). */
void ff_pause(bool on);

struct ff_stats {
	uint64_t executed; /* operations carried out */
	uint64_t rejected; /* refused by the target: key, access or bounds */
	uint64_t aborted;
	uint64_t late; /* aborted writes that landed anyway */
	uint64_t msgs; /* messages delivered */
	uint64_t doorbells;
};
void ff_get_stats(struct ff_stats *st);
unsigned ff_queued(void);

#endif
