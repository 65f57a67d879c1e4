/* Levelled logging to stderr: one line per event, with time, node, level
 * and module. Rule kept: a line is formatted whole and written with one
 * fwrite to the unbuffered stderr, so lines of several threads (the
 * store's workers, the mailbox thread) never mix. */
#include "common/log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum log_level g_level = LOG_LEVEL_INFO;
static char g_node[16];

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

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
	n = strftime(line, sizeof(line), "%H:%M:%S", &tm);
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
