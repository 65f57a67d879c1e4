/* Shared set-up of the monitor's unit tests (monitor_fixture.h): the pair's
 * directories and options, written once for test_monitor_ha, _pair and
 * _fence. */
#include "monitor_fixture.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const ids[] = {"a", "b"};
static const char *const link_names[] = {"ic0", "ic1", "ic2", "ic3"};

int monitor_fixture_bit_index(uint32_t bit)
{
	int i = 0;

	while (bit > 1) {
		bit >>= 1;
		i++;
	}
	return i;
}

int monitor_fixture_mkdirs(char *dir, size_t len, const char *name)
{
	char p[300];

	snprintf(dir, len, "/tmp/duet-%s-XXXXXX", name);
	if (!mkdtemp(dir))
		return -errno;
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, ids[i]);
		if (mkdir(p, 0755) < 0)
			return -errno;
	}
	return 0;
}

void monitor_fixture_rmdirs(const char *dir)
{
	char p[300];

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s/%s", dir, ids[i], MONITOR_MBOX_NAME);
		unlink(p);
		snprintf(p, sizeof(p), "%s/%s", dir, ids[i]);
		rmdir(p);
	}
	rmdir(dir);
}

void monitor_fixture_opts(struct monitor_fixture_opts *f, const char *dir, const char *id,
			  const char *peer, unsigned n_links)
{
	struct monitor_opts *o = &f->o;

	monitor_opts_init(o);
	o->boot_grace_ms = 0; /* the scenarios here start alone on purpose */
	snprintf(f->shelf, sizeof(f->shelf), "%s/%s", dir, id);
	snprintf(f->partner_shelf, sizeof(f->partner_shelf), "%s/%s", dir, peer);
	o->node_id = id;
	o->partner_id = peer;
	o->shelf = f->shelf;
	o->partner_shelf = f->partner_shelf;
	if (n_links > sizeof(link_names) / sizeof(link_names[0]))
		abort();
	o->n_links = n_links;
	for (unsigned i = 0; i < n_links; i++)
		o->link_names[i] = link_names[i];
}
