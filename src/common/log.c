/* Levelled logging to stderr: one line per event, with time, node, level
 * and module. Rule kept: a line is formatted whole and written with one
 * fwrite to the unbuffered stderr, so lines of several threads (the
 * store's workers, the mailbox thread) never mix.
 *
 * When stderr is the journal (systemd sets JOURNAL_STREAM to the device
 * and inode of the stream it gave us, sd-daemon(3)), every line starts with
 * its syslog priority, "<3>" for an error, so that `journalctl -p warning`
 * selects by level. */
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

static enum log_level g_level = LOG_LEVEL_INFO;
static char g_node[16];

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_prios[] = {SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG};
static bool g_journal;
static pthread_once_t g_journal_once = PTHREAD_ONCE_INIT;

/* JOURNAL_STREAM is "DEV:INO" of the journal's stream; it is inherited by
 * children whose stderr went elsewhere, so it counts only while stderr is
 * still that very stream. */
static void journal_detect(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	g_journal = env && sscanf(env, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0 &&
		    (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

bool log_to_journal(void)
{
	pthread_once(&g_journal_once, journal_detect);
	return g_journal;
}

void log_set_level(enum log_level level)
{
	g_level = level;
}

enum log_level log_get_level(void)
{
	return g_level;
}

int log_parse_level(const char *s, enum log_level *out)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};

	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void log_set_node(const char *node)
{
	snprintf(g_node, sizeof(g_node), "%s", node ? node : "");
}

/* The whole line is formatted first and written with one call, so that lines
 * of concurrent threads (the watchdog, io workers) never interleave. */
void log_msg(enum log_level level, const char *module, const char *fmt, ...)
{
	char line[1024];
	struct timespec ts;
	struct tm tm;
	size_t n;
	va_list ap;
	int saved = errno;

	if (level > g_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = log_to_journal() ? (size_t)snprintf(line, sizeof(line), "%s", level_prios[level]) : 0;
	n += strftime(line + n, sizeof(line) - n, "%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n,
			      ".%06ld %s%s%s %-5s %s: ", ts.tv_nsec / 1000, g_node[0] ? "[" : "",
			      g_node, g_node[0] ? "]" : "", level_names[level], module);
	if (n < sizeof(line)) {
		va_start(ap, fmt);
		int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
		if (m > 0)
			n += (size_t)m;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
	errno = saved;
}
