/* duetctl: talk to a running duetd over its control socket.
 *
 * Exit status: 0 done, 1 duetd refused the request, 2 usage error or the
 * node could not be reached. */
#define LOG_MODULE "duetctl"
#include <errno.h>
#include <getopt.h>
#include <json-c/json.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/control.h"
#include "common/util.h"

static void usage(FILE *f)
{
	fprintf(
	    f, "usage: duetctl --socket PATH [--json | --raw] COMMAND\n"
	       "commands:\n"
	       "  status                 node, HA, session, links, mirror and volumes\n"
	       "  volume create NAME SIZE [--allow ID...]\n"
	       "                         create a volume (SIZE like 1G, 512M); with\n"
	       "                         --allow only TLS clients with one of these\n"
	       "                         identities (PSK username, certificate CN,\n"
	       "                         SAN or DN) see it\n"
	       "  volume relocate NAME   move its ownership to the partner (no copy)\n"
	       "  volume move NAME --shelf NODE | --abort\n"
	       "                         copy it to NODE's shelf while it is used, then\n"
	       "                         hand it to NODE; --abort stops it before the cut-over\n"
	       "  volume list            list the volumes\n"
	       "  volume show NAME       size, allocated, owner, clients, counters\n"
	       "  volume resize NAME SIZE [--force]  grow online; shrink needs --force, no client\n"
	       "  volume delete NAME [--force]  delete; --force disconnects its clients\n"
	       "  links                  interconnect links\n"
	       "  takeover [--force]     serve the partner's volumes\n"
	       "  giveback [--force]     give the partner's volumes back\n"
	       "  ic reset               end the interconnect session and start again\n"
	       "  metrics                the metrics, in Prometheus' text format\n"
	       "--json prints the result as one JSON object (on an error, the whole answer);\n"
	       "--raw prints the node's whole answer as it came (docs/CONTROL.md).\n");
}

/* Send one request line, read the whole answer (the node closes after it). */
static int call(const char *path, struct json_object *req, struct json_object **resp)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	const char *s = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	char *buf = NULL;
	size_t len = 0, cap = 0;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "duetctl: socket path too long\n");
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int err = -errno;
		fprintf(stderr, "duetctl: cannot reach duetd at %s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return err;
	}
	if (send(fd, s, strlen(s), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0)
		goto io_error;
	for (;;) {
		if (len + 4096 > cap) {
			cap = cap ? cap * 2 : 65536;
			char *nb = realloc(buf, cap);
			if (!nb)
				goto io_error;
			buf = nb;
		}
		ssize_t n = recv(fd, buf + len, cap - len - 1, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto io_error;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (!buf) {
		fprintf(stderr, "duetctl: duetd closed the connection without an answer\n");
		return -EPROTO;
	}
	buf[len] = '\0';
	*resp = json_tokener_parse(buf);
	free(buf);
	if (!*resp) {
		fprintf(stderr, "duetctl: unreadable answer from duetd\n");
		return -EPROTO;
	}
	return 0;

io_error:
	fprintf(stderr, "duetctl: talking to duetd: %s\n", strerror(errno));
	free(buf);
	close(fd);
	return -EIO;
}

static const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!o || !json_object_object_get_ex(o, key, &v) || !v)
		return "-";
	return json_object_get_string(v);
}

static struct json_object *jget(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o)
		json_object_object_get_ex(o, key, &v);
	return v;
}

static const char *format_size(uint64_t b, char *buf, size_t len)
{
	static const char *const units[] = {"B", "K", "M", "G", "T"};
	unsigned u = 0;
	double v = (double)b;

	while (v >= 1024 && u < 4) {
		v /= 1024;
		u++;
	}
	snprintf(buf, len, "%.1f%s", v, units[u]);
	return buf;
}

static void print_volumes(struct json_object *vols)
{
	size_t n = vols ? json_object_array_length(vols) : 0;
	char size[32], alloc[32];

	printf("%-20s %-6s %-9s %10s %10s  %s\n", "VOLUME", "OWNER", "SERVED_BY", "SIZE",
	       "ALLOCATED", "ALLOW");
	for (size_t i = 0; i < n; i++) {
		struct json_object *v = json_object_array_get_idx(vols, i);
		struct json_object *allow = jget(v, "allow");
		size_t na = allow && json_object_is_type(allow, json_type_array)
				? json_object_array_length(allow)
				: 0;
		printf("%-20s %-6s %-9s %10s %10s  ", jstr(v, "name"), jstr(v, "owner"),
		       jstr(v, "served_by"),
		       format_size((uint64_t)json_object_get_int64(jget(v, "size")), size,
				   sizeof(size)),
		       format_size((uint64_t)json_object_get_int64(jget(v, "allocated")), alloc,
				   sizeof(alloc)));
		if (na == 0)
			printf("any");
		for (size_t j = 0; j < na; j++)
			printf("%s%s", j ? "," : "",
			       json_object_get_string(json_object_array_get_idx(allow, j)));
		if (jget(v, "move")) {
			struct json_object *mv = jget(v, "move");
			uint64_t done = (uint64_t)json_object_get_int64(jget(mv, "done_bytes"));
			uint64_t total = (uint64_t)json_object_get_int64(jget(mv, "total_bytes"));
			printf("  (moving to %s's shelf: %s, %llu%%)", jstr(mv, "to"),
			       jstr(mv, "state"),
			       (unsigned long long)(total ? done * 100 / total : 0));
		}
		printf("\n");
	}
}

static void print_volume_show(struct json_object *v)
{
	struct json_object *c = jget(v, "counters");
	char size[32], alloc[32];

	printf("volume %s\n", jstr(v, "name"));
	printf("  owner %s, served by %s, uuid %s\n", jstr(v, "owner"), jstr(v, "served_by"),
	       jstr(v, "uuid"));
	printf("  size %s (%s bytes), allocated %s (%s bytes), direct I/O %s\n",
	       format_size((uint64_t)json_object_get_int64(jget(v, "size")), size, sizeof(size)),
	       jstr(v, "size"),
	       format_size((uint64_t)json_object_get_int64(jget(v, "allocated")), alloc,
			   sizeof(alloc)),
	       jstr(v, "allocated"), jstr(v, "direct_io"));
	printf("  clients %s, in flight %s\n", jstr(v, "clients"), jstr(v, "inflight"));
	printf("  requests %s, bytes read %s, bytes written %s, errors %s\n", jstr(c, "requests"),
	       jstr(c, "bytes_read"), jstr(c, "bytes_written"), jstr(c, "errors"));
}

static void print_links(struct json_object *links)
{
	size_t n = links ? json_object_array_length(links) : 0;

	if (n == 0) {
		printf("links: none\n");
		return;
	}
	printf("%-8s %-6s %8s %14s %8s\n", "LINK", "STATE", "RTT_US", "BYTES", "ERRORS");
	for (size_t i = 0; i < n; i++) {
		struct json_object *l = json_object_array_get_idx(links, i);
		printf("%-8s %-6s %8s %14s %8s\n", jstr(l, "name"), jstr(l, "state"),
		       jstr(l, "rtt_us"), jstr(l, "bytes"), jstr(l, "errors"));
	}
}

/* Who holds which service address (none configured: nothing printed). */
static void print_addresses(struct json_object *arr)
{
	size_t n = arr ? json_object_array_length(arr) : 0;

	if (n == 0)
		return;
	printf("%-28s %-8s %-8s %s\n", "ADDRESS", "OWNER", "HELD BY", "DEV");
	for (size_t i = 0; i < n; i++) {
		struct json_object *a = json_object_array_get_idx(arr, i);
		printf("%-28s %-8s %-8s %s\n", jstr(a, "address"), jstr(a, "owner"),
		       jstr(a, "held_by"), jstr(a, "dev"));
	}
}

/* " (WHY)" when there is something to say. */
static void print_why(const char *why)
{
	if (why[0] && strcmp(why, "-") != 0)
		printf(" (%s)", why);
}

static void print_status(struct json_object *r)
{
	struct json_object *ha = jget(r, "ha"), *ses = jget(r, "session"), *mir = jget(r, "mirror");

	printf("node %s (duet %s, pid %s)\n", jstr(r, "node"), jstr(r, "version"), jstr(r, "pid"));
	struct json_object *prog = jget(ha, "progress"), *hbs = jget(ha, "heartbeats");

	printf("ha: %s/%s, partner %s (%s)\n", jstr(ha, "state"), jstr(ha, "phase"),
	       jstr(jget(ha, "partner"), "state"), jstr(jget(ha, "partner"), "detail"));
	printf("  last change: %s (%s ms ago)\n", jstr(jget(ha, "last_change"), "reason"),
	       jstr(jget(ha, "last_change"), "age_ms"));
	printf("  takeover possible: %s (%s)\n", jstr(ha, "takeover_possible"), jstr(ha, "reason"));
	if (prog && json_object_get_int64(jget(prog, "total_bytes")) > 0)
		printf("  progress: %s of %s bytes\n", jstr(prog, "done_bytes"),
		       jstr(prog, "total_bytes"));
	for (size_t i = 0; hbs && i < json_object_array_length(hbs); i++) {
		struct json_object *h = json_object_array_get_idx(hbs, i);
		printf("  heartbeat %s: %s ms ago\n", jstr(h, "name"), jstr(h, "hb_age_ms"));
	}
	printf("  mailbox: own %s (written %s ms ago), partner %s (changed %s ms ago)\n",
	       jstr(jget(ha, "mailbox"), "own"), jstr(jget(ha, "mailbox"), "own_write_age_ms"),
	       jstr(jget(ha, "mailbox"), "partner"),
	       jstr(jget(ha, "mailbox"), "partner_change_age_ms"));
	printf("session: %s, partner %s, version %s\n", jstr(ses, "state"), jstr(ses, "partner"),
	       jstr(ses, "partner_version"));
	printf("mirror: %s, lag %s bytes, takeover safe: %s (%s)\n", jstr(mir, "state"),
	       jstr(mir, "lag_bytes"), jstr(mir, "takeover_safe"), jstr(mir, "reason"));
	struct json_object *sf = jget(r, "shelf_handover");
	if (sf && (strcmp(jstr(sf, "own"), "ok") != 0 || strcmp(jstr(sf, "give"), "ok") != 0 ||
		   strcmp(jstr(sf, "take"), "idle") != 0)) {
		printf("shelf: own %s", jstr(sf, "own"));
		print_why(jstr(sf, "why"));
		printf("; handing it over: %s", jstr(sf, "give"));
		print_why(jstr(sf, "give_last"));
		printf("; taking the partner's: %s", jstr(sf, "take"));
		print_why(jstr(sf, "take_last"));
		printf("\n");
	}
	print_links(jget(r, "links"));
	print_volumes(jget(r, "volumes"));
	print_addresses(jget(r, "addresses"));
}

/* Build the request from the command words; NULL with a message on misuse. */
static struct json_object *build_request(int argc, char **argv)
{
	struct json_object *req = json_object_new_object();
	const char *cmd = argv[0];
	uint64_t size;

	if (strcmp(cmd, "status") == 0 && argc == 1) {
		json_object_object_add(req, "cmd", json_object_new_string("status"));
	} else if (strcmp(cmd, "metrics") == 0 && argc == 1) {
		json_object_object_add(req, "cmd", json_object_new_string("metrics"));
	} else if (strcmp(cmd, "links") == 0 && argc == 1) {
		json_object_object_add(req, "cmd", json_object_new_string("links"));
	} else if ((strcmp(cmd, "takeover") == 0 || strcmp(cmd, "giveback") == 0) && argc <= 2) {
		bool force = argc == 2 && strcmp(argv[1], "--force") == 0;
		if (argc == 2 && !force)
			goto bad;
		json_object_object_add(req, "cmd", json_object_new_string(cmd));
		json_object_object_add(req, "force", json_object_new_boolean(force));
	} else if (strcmp(cmd, "ic") == 0 && argc == 2 && strcmp(argv[1], "reset") == 0) {
		json_object_object_add(req, "cmd", json_object_new_string("ic_reset"));
	} else if (strcmp(cmd, "volume") == 0 && argc == 2 && strcmp(argv[1], "list") == 0) {
		json_object_object_add(req, "cmd", json_object_new_string("volume_list"));
	} else if (strcmp(cmd, "volume") == 0 && argc == 3 && strcmp(argv[1], "show") == 0) {
		json_object_object_add(req, "cmd", json_object_new_string("volume_show"));
		json_object_object_add(req, "name", json_object_new_string(argv[2]));
	} else if (strcmp(cmd, "volume") == 0 && (argc == 3 || argc == 4) &&
		   strcmp(argv[1], "delete") == 0) {
		if (argc == 4 && strcmp(argv[3], "--force") != 0)
			goto bad;
		json_object_object_add(req, "cmd", json_object_new_string("volume_delete"));
		json_object_object_add(req, "name", json_object_new_string(argv[2]));
		json_object_object_add(req, "force", json_object_new_boolean(argc == 4));
	} else if (strcmp(cmd, "volume") == 0 && (argc == 4 || argc == 5) &&
		   strcmp(argv[1], "resize") == 0) {
		if (argc == 5 && strcmp(argv[4], "--force") != 0)
			goto bad;
		if (util_parse_size(argv[3], &size) < 0 || size == 0 || size > INT64_MAX) {
			fprintf(stderr, "duetctl: bad size '%s' (want e.g. 1G, 512M)\n", argv[3]);
			json_object_put(req);
			return NULL;
		}
		json_object_object_add(req, "cmd", json_object_new_string("volume_resize"));
		json_object_object_add(req, "name", json_object_new_string(argv[2]));
		json_object_object_add(req, "size", json_object_new_int64((int64_t)size));
		json_object_object_add(req, "force", json_object_new_boolean(argc == 5));
	} else if (strcmp(cmd, "volume") == 0 && (argc == 4 || argc == 5) &&
		   strcmp(argv[1], "move") == 0) {
		bool abort_it = argc == 4 && strcmp(argv[3], "--abort") == 0;
		if (!abort_it && (argc != 5 || strcmp(argv[3], "--shelf") != 0))
			goto bad;
		json_object_object_add(req, "cmd", json_object_new_string("volume_move"));
		json_object_object_add(req, "name", json_object_new_string(argv[2]));
		if (abort_it)
			json_object_object_add(req, "abort", json_object_new_boolean(true));
		else
			json_object_object_add(req, "shelf", json_object_new_string(argv[4]));
	} else if (strcmp(cmd, "volume") == 0 && argc == 3 && strcmp(argv[1], "relocate") == 0) {
		json_object_object_add(req, "cmd", json_object_new_string("volume_relocate"));
		json_object_object_add(req, "name", json_object_new_string(argv[2]));
	} else if (strcmp(cmd, "volume") == 0 && argc >= 4 && strcmp(argv[1], "create") == 0) {
		struct json_object *allow = NULL;
		if (util_parse_size(argv[3], &size) < 0 || size == 0 || size > INT64_MAX) {
			fprintf(stderr, "duetctl: bad size '%s' (want e.g. 1G, 512M)\n", argv[3]);
			json_object_put(req);
			return NULL;
		}
		/* --allow ID [ID...], repeatable: the volume's allow list. */
		for (int i = 4; i < argc; i++) {
			if (strcmp(argv[i], "--allow") == 0) {
				if (i + 1 == argc || strcmp(argv[i + 1], "--allow") == 0)
					goto bad;
				if (!allow)
					allow = json_object_new_array();
				continue;
			}
			if (!allow)
				goto bad;
			json_object_array_add(allow, json_object_new_string(argv[i]));
		}
		json_object_object_add(req, "cmd", json_object_new_string("volume_create"));
		json_object_object_add(req, "name", json_object_new_string(argv[2]));
		json_object_object_add(req, "size", json_object_new_int64((int64_t)size));
		if (allow)
			json_object_object_add(req, "allow", allow);
	} else {
		goto bad;
	}
	json_object_object_add(req, "version", json_object_new_int(DUET_CONTROL_VERSION));
	return req;
bad:
	usage(stderr);
	json_object_put(req);
	return NULL;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"raw", no_argument, NULL, 'r'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *sock = getenv("DUET_SOCKET");
	struct json_object *req, *resp = NULL, *result;
	bool as_json = false, raw = false;
	int c, rc;

	/* "+" stops at the first command word; --json is also taken after it. */
	while ((c = getopt_long(argc, argv, "+s:jrh", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			raw = true;
			break;
		case 's':
			sock = optarg;
			break;
		case 'j':
			as_json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	int nargs = 0;
	char *args[48];
	for (int i = optind; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0) {
			as_json = true;
			continue;
		}
		if (strcmp(argv[i], "--raw") == 0) {
			raw = true;
			continue;
		}
		if (nargs == (int)ARRAY_SIZE(args)) {
			usage(stderr);
			return 2;
		}
		args[nargs++] = argv[i];
	}
	if (!sock || nargs == 0) {
		usage(stderr);
		return 2;
	}
	req = build_request(nargs, args);
	if (!req)
		return 2;
	rc = call(sock, req, &resp);
	json_object_put(req);
	if (rc < 0)
		return 2;
	if (raw) {
		/* The node's whole answer, as it came: {"ok", "version", ...}. */
		printf("%s\n", json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN));
		rc = json_object_get_boolean(jget(resp, "ok")) ? 0 : 1;
		json_object_put(resp);
		return rc;
	}
	if (!json_object_get_boolean(jget(resp, "ok"))) {
		fprintf(stderr, "duetctl: %s\n", jstr(resp, "error"));
		if (as_json)
			printf("%s\n",
			       json_object_to_json_string_ext(resp, JSON_C_TO_STRING_PLAIN));
		json_object_put(resp);
		return 1;
	}
	result = jget(resp, "result");
	if (as_json) {
		printf("%s\n", json_object_to_json_string_ext(result, JSON_C_TO_STRING_PLAIN));
	} else if (strcmp(args[0], "status") == 0) {
		print_status(result);
	} else if (strcmp(args[0], "volume") == 0 && strcmp(args[1], "show") == 0) {
		print_volume_show(jget(result, "volume"));
	} else if (strcmp(args[0], "volume") == 0 && strcmp(args[1], "delete") == 0) {
		printf("%s\n", jstr(result, "message"));
	} else if (strcmp(args[0], "volume") == 0 && strcmp(args[1], "relocate") == 0) {
		printf("relocating %s to %s (its data stays where it is)\n", jstr(result, "volume"),
		       jstr(result, "to"));
	} else if (strcmp(args[0], "volume") == 0 && strcmp(args[1], "move") == 0) {
		if (jget(result, "to"))
			printf("moving %s to %s's shelf (progress: duetctl volume list)\n",
			       jstr(result, "volume"), jstr(result, "to"));
		else
			printf("move of %s: %s\n", jstr(result, "volume"), jstr(result, "state"));
	} else if (strcmp(args[0], "volume") == 0) {
		struct json_object *vols = jget(result, "volumes");
		if (!vols) {
			vols = json_object_new_array();
			json_object_array_add(vols, json_object_get(jget(result, "volume")));
			print_volumes(vols);
			json_object_put(vols);
		} else {
			print_volumes(vols);
		}
	} else if (strcmp(args[0], "links") == 0) {
		print_links(jget(result, "links"));
	} else if (strcmp(args[0], "metrics") == 0) {
		fputs(jstr(result, "text"), stdout);
	} else {
		printf("%s\n", jstr(result, "message"));
	}
	json_object_put(resp);
	return 0;
}
