/**
 * @file log.h
 * Levelled logging to stderr.
 *
 * One line per event: time, node id, level, module, message. Log once, where
 * an error is found; callers above it only propagate the negative errno.
 */
#ifndef DUET_COMMON_LOG_H
#define DUET_COMMON_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum log_level {
	LOG_LEVEL_ERROR = 0,
	LOG_LEVEL_WARN,
	LOG_LEVEL_INFO,
	LOG_LEVEL_DEBUG,
};

/** Set the process-wide threshold; messages above it are dropped. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/** Parse "error|warn|info|debug". @return 0 or -EINVAL. */
int log_parse_level(const char *s, enum log_level *out);

/** Tag every line with this node id (e.g. "a"); NULL for none. */
void log_set_node(const char *node);

/** Whether stderr is the journal's stream (JOURNAL_STREAM): lines then
 * carry a "<N>" syslog priority prefix. */
bool log_to_journal(void);

/** printf-like; prefer the LOG_* macros below. */
void log_msg(enum log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifndef LOG_MODULE
#define LOG_MODULE "duet"
#endif

#define LOG_ERROR(...) log_msg(LOG_LEVEL_ERROR, LOG_MODULE, __VA_ARGS__)
#define LOG_WARN(...)  log_msg(LOG_LEVEL_WARN, LOG_MODULE, __VA_ARGS__)
#define LOG_INFO(...)  log_msg(LOG_LEVEL_INFO, LOG_MODULE, __VA_ARGS__)
#define LOG_DEBUG(...)                                                     \
	do {                                                               \
		if (log_get_level() >= LOG_LEVEL_DEBUG)                    \
			log_msg(LOG_LEVEL_DEBUG, LOG_MODULE, __VA_ARGS__); \
	} while (0)

#endif
