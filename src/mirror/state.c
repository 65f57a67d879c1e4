/* The engine's state and its one trigger: mirror_post() queues the work
 * task (mirror.c), mirror_set_state() moves the state the status shows.
 *
 * Rule: the bottom layer of the engine. Every other file of the engine may
 * call these; they call nothing of the engine back, only the host's
 * state_changed hook (an up-call through struct mirror_host_ops). */
#define LOG_MODULE "mirror"
#include "mirror/mirror_int.h"

#include <stdarg.h>
#include <stdio.h>

#include "common/log.h"
#include "common/loop.h"

void mirror_post(struct mirror *m)
{
	if (!m->closing)
		loop_post(m->loop, &m->work->task);
}

const char *mirror_state_name(enum mirror_state s)
{
	switch (s) {
	case MIRROR_STATE_OFF:
		return "off";
	case MIRROR_STATE_IN_SYNC:
		return "in_sync";
	case MIRROR_STATE_DEGRADED:
		return "degraded";
	case MIRROR_STATE_RESYNCING:
		return "resyncing";
	}
	return "?";
}

void mirror_set_state(struct mirror *m, enum mirror_state st, const char *fmt, ...)
{
	va_list ap;
	bool changed = st != m->state;

	va_start(ap, fmt);
	vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
	va_end(ap);
	m->state = st;
	/* Outdated from the moment the image stops following the log until
	 * a resync ends. */
	m->out_want = st == MIRROR_STATE_DEGRADED || st == MIRROR_STATE_RESYNCING;
	mirror_post(m);
	if (!changed)
		return;
	if (st == MIRROR_STATE_DEGRADED)
		LOG_WARN("mirror %s: %s", mirror_state_name(st), m->reason);
	else
		LOG_INFO("mirror %s: %s", mirror_state_name(st), m->reason);
	if (m->host->state_changed)
		m->host->state_changed(m->host_ctx, st, m->reason);
}

/* The image takes record and header writes: in sync, or resyncing past the
 * invalid mark. */
bool mirror_image_follows(const struct mirror *m)
{
	return m->tup && (m->state == MIRROR_STATE_IN_SYNC ||
			  (m->state == MIRROR_STATE_RESYNCING && m->rs >= RS_COPY));
}
