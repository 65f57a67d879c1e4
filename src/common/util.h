/**
 * @file util.h
 * Small helpers shared by every module: time units, size and address
 * parsing, descriptor flags, random bytes. Byte order is in byteorder.h,
 * lists in list.h, JSON shortcuts in json.h.
 */
#ifndef DUET_COMMON_UTIL_H
#define DUET_COMMON_UTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ARRAY_SIZE(a)			(sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)			((a) < (b) ? (a) : (b))
#define MAX(a, b)			((a) > (b) ? (a) : (b))
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* Time units: every duration inside duet is a uint64_t of nanoseconds. */
#define NS_PER_US 1000ull
#define NS_PER_MS 1000000ull
#define NS_PER_S  1000000000ull

/** Parse "4096", "512K", "64M", "1G", "2T" (binary units). @return 0 or -EINVAL. */
int util_parse_size(const char *s, uint64_t *out);

/** Parse an unsigned decimal in [min, max]. @return 0, -EINVAL or -ERANGE. */
int util_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/** Parse "host:port" or "[v6]:port" with numeric host and port. */
int util_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/** Split "host:port" into its parts; @p host must hold 64 bytes. */
int util_split_hostport(const char *s, char *host, size_t hostlen, char *port, size_t portlen);

/** Format a sockaddr as "host:port" into @p buf. */
const char *util_format_sockaddr(const struct sockaddr *sa, char *buf, size_t len);

int util_set_nonblock(int fd, bool on);

/** Fill @p buf with @p len bytes from getrandom(2), retrying short reads and
 * EINTR. Logs and returns -errno on failure, else 0. */
int util_random_bytes(void *buf, size_t len);

/** Create a listening TCP socket (non-blocking, CLOEXEC, SO_REUSEADDR). */
int util_tcp_listen(const char *hostport, int backlog);
/** Bind even to an address not (yet) on any interface: a service address
 * that comes and goes with the node's volumes. */
#define UTIL_LISTEN_FREEBIND (1u << 0)
/** util_tcp_listen with UTIL_LISTEN_* @p flags. */
int util_tcp_listen_flags(const char *hostport, int backlog, unsigned flags);

/** Create a listening UNIX stream socket at @p path with @p mode (and group
 * @p gid unless -1), whatever the umask. A socket left there by a dead
 * process is replaced; a live one fails with -EADDRINUSE; any other file is
 * never removed: -EEXIST. Each failure logs one line. */
int util_unix_listen(const char *path, int backlog, unsigned mode, int gid);

/** Real-time priority of a reactor (SCHED_RR): above every normal process,
 * below the kernel's interrupt threads (50). */
#define UTIL_RT_PRIORITY 10

/** Run every thread of the process with SCHED_RR at UTIL_RT_PRIORITY (the
 * reactor, libfabric's, whose progress the partner's probes need, the
 * store's and io_uring's workers, the failover monitor's; threads created
 * afterwards inherit it; none of them spins), and lock the process's memory
 * as it is touched (mlockall MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT; not
 * under a sanitizer, whose shadow memory is huge), as Corosync does:
 * heartbeats and probes must not wait for busy neighbours or for a page
 * coming back from swap. Called at start (realtime = on) or from the
 * reactor once it finds itself late (realtime = auto). Either refused
 * (EPERM, a limit): the process runs as before. What took effect is written
 * to @p msg for the caller to log. @return 0 when both took effect, else
 * the first -errno. */
int util_go_realtime(char *msg, size_t len);

/** Whether util_go_realtime() gave the process SCHED_RR. */
bool util_realtime(void);

/** Give thread @p t the reactor's real-time priority, if util_go_realtime()
 * took effect: the failover monitor's watchdog and mailbox threads, as
 * liveness-critical as the reactor, have it whoever started them. */
void util_thread_realtime(pthread_t t);

#endif
