/* Parsing of sizes, numbers and addresses, socket set-up, random bytes.
 * Rule kept: every parser rejects what it does not fully understand
 * (trailing bytes, overflow, out-of-range values) with -EINVAL or -ERANGE,
 * never a silent clamp. */
#define LOG_MODULE "util"
#include "common/util.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int util_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return errno == ERANGE ? -ERANGE : -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int util_parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (toupper((unsigned char)*end) == 'B')
			end++;
	}
	if (*end)
		return -EINVAL;
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

int util_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon, *h = s;
	size_t hl;

	if (!s)
		return -EINVAL;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return -EINVAL;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen || strlen(colon + 1) == 0 || strlen(colon + 1) >= portlen)
		return -EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

int util_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64], port[16];
	uint64_t p;

	if (util_split_hostport(s, host, sizeof(host), port, sizeof(port)) < 0)
		return -EINVAL;
	if (util_parse_uint(port, 0, 65535, &p) < 0)
		return -EINVAL;
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)p);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)p);
		*len = sizeof(*sin6);
		return 0;
	}
	return -EINVAL;
}

const char *util_format_sockaddr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(sin->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		snprintf(buf, len, "unix");
	}
	return buf;
}

int util_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -errno;
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	if (fcntl(fd, F_SETFL, fl) < 0)
		return -errno;
	return 0;
}

int util_tcp_listen(const char *hostport, int backlog)
{
	return util_tcp_listen_flags(hostport, backlog, 0);
}

int util_tcp_listen_flags(const char *hostport, int backlog, unsigned flags)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, one = 1, err;

	if (util_parse_hostport(hostport, &ss, &len) < 0) {
		LOG_ERROR("bad listen address '%s'", hostport);
		return -EINVAL;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		LOG_ERROR("socket: %s", strerror(errno));
		return err;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* IP_FREEBIND applies to IPv6 sockets too. */
	if ((flags & UTIL_LISTEN_FREEBIND) &&
	    setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof(one)) < 0) {
		err = -errno;
		LOG_ERROR("IP_FREEBIND: %s", strerror(errno));
		close(fd);
		return err;
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
		err = -errno;
		LOG_ERROR("listen on %s: %s", hostport, strerror(errno));
		close(fd);
		return err;
	}
	return fd;
}

/* What sits at a control socket's path before we bind: nothing (0), a
 * socket nobody listens on any more (0: a dead daemon's, replaced), a live
 * socket (-EADDRINUSE) or anything else (-EEXIST: never removed). */
static int unix_path_check(const char *path, const struct sockaddr_un *sun)
{
	struct stat st;
	int fd, rc;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		LOG_ERROR("%s exists and is not a socket: not replacing it", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	if (rc == 0) {
		LOG_ERROR("%s: another process listens on this socket", path);
		return -EADDRINUSE;
	}
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

int util_unix_listen(const char *path, int backlog, unsigned mode, int gid)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, err;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		LOG_ERROR("socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	strcpy(sun.sun_path, path);
	err = unix_path_check(path, &sun);
	if (err < 0)
		return err;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		err = -errno;
		LOG_ERROR("socket: %s", strerror(errno));
		return err;
	}
	/* Nobody can connect between bind and listen, so the mode and group
	 * set in between hold before the first caller, whatever the umask. */
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		err = -errno;
		LOG_ERROR("bind %s: %s", path, strerror(errno));
		close(fd);
		return err;
	}
	if (gid >= 0 && chown(sun.sun_path, (uid_t)-1, (gid_t)gid) < 0)
		err = -errno;
	else if (chmod(sun.sun_path, mode) < 0)
		err = -errno;
	else if (listen(fd, backlog) < 0)
		err = -errno;
	if (err < 0) {
		LOG_ERROR("listen on %s: %s", sun.sun_path, strerror(-err));
		unlink(sun.sun_path);
		close(fd);
		return err;
	}
	return fd;
}

int util_random_bytes(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int err = -errno;
			LOG_ERROR("getrandom: %s", strerror(errno));
			return err;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UTIL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define UTIL_SANITIZED 1
#endif
#endif

static _Atomic bool went_realtime; /* set by the reactor, read by any thread */

/* SCHED_RR for every thread of the process, by its id under /proc/self/task:
 * realtime = auto switches long after libfabric's, the store's and the
 * monitor's threads exist, and a policy set on one thread reaches only the
 * threads it creates afterwards. A thread created while the directory is
 * read inherits from a creator already switched, or is caught by the next
 * pass (passes repeat until one finds nothing left to change). @return
 * -errno when the calling thread was refused (nothing changed), else how
 * many other threads refused, the first one's errno in @p first_err. */
static int rr_every_thread(int *first_err)
{
	struct sched_param sp = {.sched_priority = UTIL_RT_PRIORITY};
	int refused = 0;

	*first_err = 0;
	if (sched_setscheduler(0, SCHED_RR, &sp) < 0)
		return -errno;
	for (int pass = 0; pass < 4; pass++) {
		DIR *d = opendir("/proc/self/task");
		struct dirent *e;
		int changed = 0;

		if (!d)
			break;
		refused = 0;
		while ((e = readdir(d))) {
			pid_t tid = (pid_t)strtol(e->d_name, NULL, 10);

			if (tid <= 0 || sched_getscheduler(tid) == SCHED_RR)
				continue;
			if (sched_setscheduler(tid, SCHED_RR, &sp) < 0) {
				if (errno == ESRCH) /* it ended */
					continue;
				if (!*first_err)
					*first_err = errno;
				refused++;
				continue;
			}
			changed++;
		}
		closedir(d);
		if (!changed)
			break;
	}
	return refused;
}

int util_go_realtime(char *msg, size_t len)
{
	int rc = 0, err, refused;
	size_t used;

	/* Every thread, libfabric's among them (its providers' progress must
	 * keep up for the partner's probes to complete), as well as the
	 * store's and io_uring's workers. With the reactor alone real time
	 * (SCHED_RESET_ON_FORK), a busy host still took a link out once or
	 * twice in five minutes; with every thread, never (docs/BENCHMARKS.md,
	 * "Issue 11: the session of 2026-12-07"). Threads started later
	 * inherit it. */
	refused = rr_every_thread(&err);
	if (refused < 0) {
		rc = refused;
		used = (size_t)snprintf(
		    msg, len, "realtime: SCHED_RR refused (%s): the node runs at normal priority",
		    strerror(-rc));
	} else {
		went_realtime = true;
		used =
		    (size_t)snprintf(msg, len, "realtime: SCHED_RR priority %d", UTIL_RT_PRIORITY);
		if (refused && used < len) {
			rc = -err;
			used += (size_t)snprintf(msg + used, len - used,
						 " (%d thread(s) refused it: %s)", refused,
						 strerror(err));
		}
	}
#ifndef UTIL_SANITIZED
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) < 0) {
		err = errno;
		if (!rc)
			rc = -err;
		if (used < len)
			snprintf(msg + used, len - used, "; memory not locked (%s)", strerror(err));
	} else if (used < len) {
		snprintf(msg + used, len - used, ", memory locked as touched");
	}
#endif
	return rc;
}

bool util_realtime(void)
{
	return went_realtime;
}

void util_thread_realtime(pthread_t t)
{
	struct sched_param sp = {.sched_priority = UTIL_RT_PRIORITY};

	if (went_realtime)
		pthread_setschedparam(t, SCHED_RR, &sp); /* permitted: we did it once */
}
