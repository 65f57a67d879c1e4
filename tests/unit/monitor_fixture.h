/* Shared set-up of the monitor's unit tests: a temporary directory with
 * the shelves of nodes "a" and "b", the options of one node of that pair,
 * and small helpers. Nothing here asserts: each helper returns 0 or a
 * negative errno, so a test keeps its own cmocka checks. */
#ifndef DUET_TESTS_MONITOR_FIXTURE_H
#define DUET_TESTS_MONITOR_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "monitor/monitor_int.h"

/** A node's options with the storage their strings point into. */
struct monitor_fixture_opts {
	struct monitor_opts o;
	char shelf[256];
	char partner_shelf[256];
};

/** Index of the single bit set in @p bit (an enum ha_action). */
int monitor_fixture_bit_index(uint32_t bit);
/** mkdtemp("/tmp/duet-<name>-XXXXXX") into @p dir with shelves a/ and b/ in it. */
int monitor_fixture_mkdirs(char *dir, size_t len, const char *name);
/** Remove what monitor_fixture_mkdirs() made and the mailboxes in it. */
void monitor_fixture_rmdirs(const char *dir);
/** Default options of node @p id with partner @p peer, shelves in @p dir,
 * @p n_links links named ic0, ic1, ... (at most 4). */
void monitor_fixture_opts(struct monitor_fixture_opts *f, const char *dir, const char *id,
			  const char *peer, unsigned n_links);

#endif
