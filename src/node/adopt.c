/* A node that boots alone adopts the volumes of the partner's shelf that
 * were relocated to it (docs/RELOCATION.md, "Booting alone").
 *
 * Without this, such a volume waited for the partner's first volume list
 * (or a takeover): a pair whose other node stays down served nothing of it.
 * The owner record on the partner's shelf is the truth (store/owner.c), and
 * reading it here is safe whatever the partner does meanwhile:
 *   - the partner serves a volume of its shelf only while its owner record
 *     names it, or while it has taken this node over; the latter writes a
 *     takeover mark in our mailbox first, which the boot check reads
 *     (taken_at_boot: nothing is adopted, the partner serves it) or which
 *     fences this node later (node_reloc_set_serving(false) stops these
 *     volumes with the own ones); the store gate of the partner's shelf
 *     holds its I/O to the same lease as the own shelf's;
 *   - a relocation to this node took a consistency point of the partner's
 *     log before its record named us: no record of the volume is ever
 *     replayed by the partner's restart or a takeover, and we write it
 *     through (FUA, no log), so our acknowledged writes are on the shelf
 *     whoever opens it next;
 *   - a relocation back from us cannot be in flight: we just started.
 * An unreachable partner shelf adopts nothing now; the partner's first list
 * or a takeover does, as before. */
#define LOG_MODULE "route"
#include "node/node_int.h"

#include <errno.h>
#include <string.h>

#include "store/store.h"

void node_adopt_boot(struct node *n)
{
	const char *shelf = n->cfg.monitor.partner_shelf;
	int rc;

	if (!n->reloc || !shelf[0] || n->taken_at_boot || n->fenced)
		return;
	rc = store_shelf_names_owner(shelf, n->cfg.node.id);
	if (rc < 0) {
		LOG_WARN("the partner's shelf %s is not reachable (%s): volumes relocated here "
			 "are adopted at the partner's first volume list or a takeover",
			 shelf, strerror(-rc));
		return;
	}
	if (rc == 0)
		return;
	LOG_INFO("volumes of %s's shelf name this node as their owner: adopting them at boot",
		 n->cfg.ic.partner);
	node_reloc_adopt_all(n);
}
