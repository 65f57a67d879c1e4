/* duet-nvram: look into an NVRAM log (or a partner's mirror image of one)
 * and replay it onto a shelf directory with the owning node stopped.
 *
 *   duet-nvram dump FILE [--summary]
 *   duet-nvram replay FILE SHELF_DIR [--force] [--retire] [--engine uring|threads]
 */
#define LOG_MODULE "duet-nvram"
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "common/loop.h"
#include "mirror/mirror.h"
#include "store/store.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: duet-nvram dump FILE [--summary]\n"
		   "       duet-nvram replay FILE SHELF_DIR [--force] [--retire] "
		   "[--engine uring|threads]\n"
		   "\n"
		   "dump    print the header, both halves and every record of a log or image\n"
		   "replay  apply the records newer than the checkpoint onto the volumes of\n"
		   "        SHELF_DIR, in sequence order, then fdatasync them. The node owning\n"
		   "        the shelf must be stopped.\n"
		   "  --force   replay an image whose header says it is incomplete (the\n"
		   "            owner was degraded or resyncing: writes may be missing)\n"
		   "  --retire  then mark the records as applied in FILE\n");
}

static const char *type_name(unsigned t)
{
	switch (t) {
	case MIRROR_REC_WRITE:
		return "write";
	case MIRROR_REC_ZERO:
		return "zero";
	case MIRROR_REC_TRIM:
		return "trim";
	}
	return "?";
}

struct dump_ctx {
	uint64_t cp_seq;
};

static int print_record(void *arg, const struct mirror_record *r, const void *data)
{
	struct dump_ctx *c = arg;
	char id[37];

	(void)data;
	printf("  %10" PRIu64 " @%-10" PRIu64 " %-5s vol %s off %" PRIu64 " len %" PRIu64
	       "%s%s %s\n",
	       r->seq, r->log_off, type_name(r->type), mirror_vol_id_format(&r->vol, id), r->offset,
	       r->length, r->flags & MIRROR_RF_FUA ? " fua" : "",
	       r->flags & MIRROR_RF_NO_HOLE ? " no-hole" : "",
	       r->seq <= c->cp_seq ? "(checkpointed)" : "(live)");
	return 0;
}

static int cmd_dump(const char *path, bool summary)
{
	struct mirror_image_map map;
	struct mirror_image_info info;
	struct mirror_replay_stats st;
	struct dump_ctx c;
	char when[64] = "?";
	int rc;

	rc = mirror_image_map(path, 0, false, &map);
	if (rc < 0)
		return 1;
	rc = mirror_image_info(map.base, map.size, &info);
	if (rc == -ENODATA) {
		printf("%s: %zu bytes, no NVRAM header (never written)\n", path, map.size);
		mirror_image_unmap(&map);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "%s: not a readable NVRAM log: %s\n", path,
			rc == -EBADMSG ? "header refused: impossible geometry" : strerror(-rc));
		mirror_image_unmap(&map);
		return 1;
	}
	time_t t = (time_t)info.created;
	struct tm tm;
	if (gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	printf("%s: NVRAM log version %u.%u, %" PRIu64 " bytes (file %zu)\n", path,
	       info.version_major, info.version_minor, info.log_size, map.size);
	printf("header: slot %u, gen %" PRIu64 ", node '%s', log id %016" PRIx64 ", reset %s\n",
	       info.slot, info.gen, info.node, info.log_id, when);
	char boot[37];
	printf("checkpoint: seq %" PRIu64 "; image %s; durability %s; boot %s\n", info.cp_seq,
	       info.image_valid ? "complete (valid)" : "not marked complete",
	       info.local_sync ? "local-sync" : "memory",
	       mirror_vol_id_format(&info.boot_id, boot));
	c.cp_seq = info.cp_seq;
	for (unsigned h = 0; h < 2; h++) {
		struct mirror_half_scan sc;
		mirror_image_scan(map.base, map.size, h, NULL, NULL, &sc);
		printf("half %u: offset %" PRIu64 ", %" PRIu64 " bytes: ", h, info.half_off[h],
		       info.half_size);
		if (!sc.records)
			printf("no records");
		else
			printf("%" PRIu64 " records, seq %" PRIu64 "-%" PRIu64 ", %" PRIu64
			       " bytes used, %s",
			       sc.records, sc.first_seq, sc.last_seq, sc.used,
			       sc.last_seq <= info.cp_seq ? "checkpointed (free)" : "live");
		printf("; then %s at %" PRIu64 "\n", mirror_stop_name(sc.stop), sc.stop_off);
		if (!summary && sc.records)
			mirror_image_scan(map.base, map.size, h, print_record, &c, &sc);
	}
	rc = mirror_replay(map.base, map.size, 0, NULL, NULL, &st);
	if (rc == 0) {
		if (st.records)
			printf("replay would apply %" PRIu64 " records, seq %" PRIu64 "-%" PRIu64
			       ", %" PRIu64 " data bytes; it ends at: %s\n",
			       st.records, st.first_seq, st.last_seq, st.bytes,
			       mirror_stop_name(st.stop));
		else
			printf("replay would apply nothing\n");
		if (st.gap_at_start)
			printf("warning: the first live record does not follow the checkpoint\n");
	}
	mirror_image_unmap(&map);
	return 0;
}

static int cmd_replay(const char *path, const char *dir, bool force, bool retire,
		      enum store_engine engine)
{
	struct mirror_replay_stats st;
	struct store_opts so;
	struct store *s;
	struct loop *loop;
	struct stat sb;
	int rc, ret = 1;

	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "%s: not a shelf directory\n", dir);
		return 1;
	}
	rc = loop_create(&loop);
	if (rc < 0)
		return 1;
	store_opts_init(&so);
	so.engine = engine;
	rc = store_open(loop, dir, &so, &s);
	if (rc < 0) {
		fprintf(stderr, "%s: cannot open the shelf: %s\n", dir, strerror(-rc));
		goto out_loop;
	}
	rc = mirror_replay_file_to_store(
	    path, loop, s,
	    (force ? 0 : MIRROR_REPLAY_REQUIRE_VALID) | (retire ? MIRROR_REPLAY_RETIRE : 0), &st);
	if (rc == -ESTALE) {
		fprintf(stderr,
			"%s: the image is not marked complete (its owner was degraded or "
			"resyncing when it was last written): writes may be missing. Use --force "
			"to replay it anyway.\n",
			path);
	} else if (rc == -ENODATA) {
		printf("%s: no NVRAM header: nothing to replay\n", path);
		ret = 0;
	} else if (rc < 0) {
		fprintf(stderr, "%s: replay failed: %s\n", path,
			rc == -EBADMSG ? "header refused: impossible geometry" : strerror(-rc));
	} else {
		printf("replayed %" PRIu64 " records (seq %" PRIu64 "-%" PRIu64 ", %" PRIu64
		       " data bytes) onto %s; checkpoint was %" PRIu64 "; ended at: %s\n",
		       st.records, st.first_seq, st.last_seq, st.bytes, dir, st.cp_seq,
		       mirror_stop_name(st.stop));
		if (st.skipped)
			fprintf(stderr,
				"%" PRIu64 " records were skipped (volume not on this shelf or "
				"range beyond its end)\n",
				st.skipped);
		ret = st.skipped ? 1 : 0;
	}
	store_close(s);
out_loop:
	loop_destroy(loop);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"summary", no_argument, NULL, 's'}, {"force", no_argument, NULL, 'f'},
	    {"retire", no_argument, NULL, 'r'},	 {"engine", required_argument, NULL, 'e'},
	    {"help", no_argument, NULL, 'h'},	 {NULL, 0, NULL, 0},
	};
	bool summary = false, force = false, retire = false;
	enum store_engine engine = STORE_ENGINE_URING;
	int c;

	log_set_level(LOG_LEVEL_WARN);
	while ((c = getopt_long(argc, argv, "sfre:h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			summary = true;
			break;
		case 'f':
			force = true;
			break;
		case 'r':
			retire = true;
			break;
		case 'e':
			if (!strcmp(optarg, "uring"))
				engine = STORE_ENGINE_URING;
			else if (!strcmp(optarg, "threads"))
				engine = STORE_ENGINE_THREADS;
			else {
				usage(stderr);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 2 && !strcmp(argv[0], "dump"))
		return cmd_dump(argv[1], summary);
	if (argc == 3 && !strcmp(argv[0], "replay"))
		return cmd_replay(argv[1], argv[2], force, retire, engine);
	usage(stderr);
	return 2;
}
