/*
 * nbd-ramdisk: a RAM-backed NBD server built on src/nbd, for manual checks
 * with nbdinfo/nbdsh/nbdcopy, protocol tests and fuzzing against a live
 * server.
 *
 *   nbd-ramdisk [-e NAME:SIZE[:ro]]... [-m defer] [-v] HOST:PORT
 */
#define LOG_MODULE "nbd-ramdisk"
#include "common/log.h"
#include "common/loop.h"
#include "common/util.h"
#include "nbd/nbd.h"
#include "ramdisk.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr, "usage: nbd-ramdisk [-e NAME:SIZE[:ro]]... [-m inline|defer] [-v] "
			"HOST:PORT\n"
			"  default export: disk:64M; -m defer completes ios later, newest "
			"first\n");
	exit(2);
}

static void on_signal(struct loop_io *io, uint32_t ev)
{
	struct signalfd_siginfo si;

	(void)ev;
	if (read(io->fd, &si, sizeof(si)) > 0)
		loop_stop(io->arg);
}

static int add_export(struct ramdisk *rd, char *spec)
{
	char *size = strchr(spec, ':');
	char *ro;
	uint64_t bytes;

	if (!size)
		return -EINVAL;
	*size++ = '\0';
	ro = strchr(size, ':');
	if (ro)
		*ro++ = '\0';
	if (util_parse_size(size, &bytes) < 0)
		return -EINVAL;
	return ramdisk_add(rd, spec, bytes, ro && strcmp(ro, "ro") == 0, "RAM disk");
}

int main(int argc, char **argv)
{
	struct nbd_server_opts opts = {.name = "nbd"};
	struct loop_io sig_io = {0};
	struct nbd_server *srv = NULL;
	struct ramdisk *rd = NULL;
	struct loop *loop = NULL;
	bool have_export = false;
	sigset_t mask;
	int opt, sfd, rc;

	if (loop_create(&loop) < 0 || ramdisk_create(loop, &rd) < 0)
		return 1;
	while ((opt = getopt(argc, argv, "e:m:v")) != -1) {
		switch (opt) {
		case 'e':
			if (add_export(rd, optarg) < 0) {
				fprintf(stderr, "bad export '%s'\n", optarg);
				return 2;
			}
			have_export = true;
			break;
		case 'm':
			if (strcmp(optarg, "defer") == 0)
				ramdisk_set_mode(rd, RAMDISK_DEFER);
			else if (strcmp(optarg, "inline") != 0)
				usage();
			break;
		case 'v':
			log_set_level(LOG_LEVEL_DEBUG);
			break;
		default:
			usage();
		}
	}
	if (optind != argc - 1)
		usage();
	if (!have_export)
		ramdisk_add(rd, "disk", 64u << 20, false, "RAM disk");
	opts.listen = argv[optind];

	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0 || loop_io_add(loop, &sig_io, sfd, EPOLLIN, on_signal, loop) < 0)
		return 1;

	rc = nbd_server_create(loop, &opts, &ramdisk_ops, rd, &srv);
	if (rc < 0)
		return 1;
	rc = loop_run(loop);
	nbd_server_destroy(srv);
	loop_run_once(loop, 0);
	ramdisk_release(rd, false); /* ios held at exit complete into the void */
	loop_run_once(loop, 0);
	loop_io_del(loop, &sig_io);
	close(sfd);
	ramdisk_destroy(rd);
	loop_destroy(loop);
	return rc < 0 ? 1 : 0;
}
