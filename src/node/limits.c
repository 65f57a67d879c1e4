/* Descriptors (docs/SECURITY.md, "Resource limits").
 *
 * Rule kept: clients never take the descriptors the node needs for its own
 * work. At start the soft RLIMIT_NOFILE is raised to the hard limit; once
 * the shelf and the log are open (just before the listeners), what is in
 * use plus a reserve (control connections, volume creation, and a takeover
 * opening the partner's shelf: as many volume files again as the own shelf
 * holds, plus the directories and the replay; the metrics port's clients)
 * is kept back, and the rest
 * is split over the NBD listeners: each refuses clients beyond its share.
 * A listener that still meets EMFILE/ENFILE pauses accepting (loop_io_pause)
 * instead of spinning. */
#define LOG_MODULE "node"
#include "node/node_int.h"

#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "common/log.h"
#include "common/util.h"
#include "store/store.h"

/* Kept back beyond what is open at boot and the partner's volume files (a
 * quarter of the limit under a small one). */
#define NODE_FD_RESERVE 48

void node_limits_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		LOG_WARN("cannot raise the descriptor limit to %llu: %s",
			 (unsigned long long)rl.rlim_max, strerror(errno));
}

/* Descriptors open in this process now. */
static unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	unsigned n = 0;

	if (!d)
		return 64; /* a guess on the safe side */
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n > 0 ? n - 1 : 0; /* not the directory's own */
}

unsigned node_limits_clients(struct node *n)
{
	struct rlimit rl;
	unsigned listeners = n->cfg.nbd.proxy_listen[0] ? 2 : 1;
	uint64_t limit, used = open_fds(), reserve, clients;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		limit = UINT32_MAX;
	else
		limit = rl.rlim_cur;
	reserve = MIN(NODE_FD_RESERVE, limit / 4) + (n->store ? store_volume_count(n->store) : 0);
	if (n->cfg.metrics.listen[0])
		reserve += NODE_METRICS_MAX_CONNS; /* its HTTP clients, capped there */
	clients = limit > used + reserve ? (limit - used - reserve) / listeners : 0;
	if (clients > NODE_MAX_CLIENTS)
		clients = NODE_MAX_CLIENTS;
	if (clients == 0) {
		clients = 1; /* nbd_server reads 0 as its default */
		LOG_WARN("descriptor limit %llu: %llu in use and %llu kept for the node leave "
			 "nothing for NBD clients (raise the hard limit, e.g. LimitNOFILE=)",
			 (unsigned long long)limit, (unsigned long long)used,
			 (unsigned long long)reserve);
	}
	LOG_INFO("descriptors: limit %llu, %llu in use, %llu kept for the node: %llu NBD "
		 "clients per listener (%u listener%s)",
		 (unsigned long long)limit, (unsigned long long)used, (unsigned long long)reserve,
		 (unsigned long long)clients, listeners, listeners > 1 ? "s" : "");
	return (unsigned)clients;
}
