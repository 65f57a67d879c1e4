/* Private to src/mirror: what replay_store.c needs of the engine. */
#ifndef DUET_MIRROR_PRIV_H
#define DUET_MIRROR_PRIV_H

#include <stdbool.h>
#include <stddef.h>

struct mirror;

/* The log needs replaying (live records, trusted, not yet recovered):
 * @return true with its mapping in @p base / @p size. */
bool mirror_priv_replay_wanted(const struct mirror *m, const void **base, size_t *size);
/* The replay is applied and durable: reset the log (as mirror_recover). */
int mirror_priv_recovered(struct mirror *m);

#endif
