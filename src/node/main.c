/* duetd: one duet storage node, in the foreground, logging to stderr. */
#define LOG_MODULE "duetd"
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ccm/ccm.h"
#include "config/config.h"
#include "common/log.h"
#include "common/util.h"
#include "netaddr/netaddr.h"
#include "node/node.h"

/* A dead duetd's service address stays on its host's interface: the
 * service manager removes it after any exit (docs/FAILOVER.md). */
static int release_addresses(const struct duet_config *cfg)
{
	const char *const spec[] = {cfg->node.service_address,
				    cfg->monitor.partner_service_address};
	int worst = 0;

	for (size_t i = 0; i < sizeof(spec) / sizeof(spec[0]); i++) {
		struct netaddr a;
		char s[64];
		int rc;

		if (!spec[i][0] || netaddr_parse(spec[i], &a) < 0)
			continue;
		rc = netaddr_del(&a);
		if (rc < 0) {
			LOG_ERROR("cannot remove %s from %s: %s", netaddr_format(&a, s, sizeof(s)),
				  a.ifname, strerror(-rc));
			worst = rc;
		} else {
			LOG_INFO("%s released from %s", netaddr_format(&a, s, sizeof(s)), a.ifname);
		}
	}
	return worst;
}

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: duetd --config FILE [--check | --release-addresses]\n"
	       "       duetd --version\n"
	       "Runs one duet storage node in the foreground; logs go to stderr.\n"
	       "--check only reads FILE: exit 0 if it is valid, else 2 with the reason.\n"
	       "--release-addresses removes the node's service addresses (own and partner's)\n"
	       "from this host's interfaces and exits: the unit's ExecStopPost, after any exit.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 'k'},
	    {"release-addresses", no_argument, NULL, 'r'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	static struct duet_config cfg;
	const char *path = NULL;
	bool check = false, release = false;
	struct node *n;
	char err[768], rt[160] = "";
	int c, rc;

	while ((c = getopt_long(argc, argv, "c:Vh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'k':
			check = true;
			break;
		case 'r':
			release = true;
			break;
		case 'V':
			printf("duetd %s\n", DUET_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!path || optind != argc) {
		usage(stderr);
		return 2;
	}
	if (config_load(path, &cfg, err, sizeof(err)) < 0) {
		fprintf(stderr, "duetd: config error: %s\n", err);
		return 2;
	}
	/* A secret file others may read, or not ours, is a configuration
	 * error: one line and exit 2, before anything starts. */
	if (cfg.ic.n_links > 0 && cfg.ic.secret_file[0]) {
		rc = ccm_secret_check(cfg.ic.secret_file, err, sizeof(err));
		/* --check on another machine (a package build): a file not
		 * there yet is noted, one that is there must be right. */
		if (rc == -ENOENT && check) {
			fprintf(stderr, "duetd: note: %s (needed to start)\n", err);
		} else if (rc < 0) {
			fprintf(stderr, "duetd: config error: %s\n", err);
			return 2;
		}
	}
	if (check) {
		printf("%s: valid configuration of node %s\n", path, cfg.node.id);
		return 0;
	}
	log_set_level(cfg.node.log_level);
	log_set_node(cfg.node.id);
	if (release)
		return release_addresses(&cfg) < 0 ? 1 : 0;
	/* Before any thread exists: the node's threads inherit it. */
	if (cfg.node.realtime == NODE_RT_ON)
		util_go_realtime(rt, sizeof(rt));
	rc = node_create(&cfg, &n);
	if (rc == -NODE_EREFUSED)
		return 2; /* the one line is out */
	if (rc < 0) {
		LOG_ERROR("node %s failed to start: %s", cfg.node.id, strerror(-rc));
		return 1;
	}
	if (rt[0])
		LOG_INFO("%s", rt);
	rc = node_run(n);
	node_destroy(n);
	LOG_INFO("stopped");
	return rc < 0 ? 1 : 0;
}
