/* The service manager's view of the node (systemd, Type=notify): READY=1
 * once the node serves, STATUS= with the HA and mirror states whenever one
 * changes, WATCHDOG=1 from the reactor, STOPPING=1 at shutdown. All through
 * libsystemd's sd_notify(3); without NOTIFY_SOCKET every call is a no-op.
 *
 * Rule kept: WATCHDOG=1 is sent by a loop timer and nothing else, so a
 * stalled reactor stops it and systemd ends the process after WatchdogSec
 * (as duet's own watchdog thread does after [monitor] watchdog_ms). */
#define LOG_MODULE "service"
#include "node/node_int.h"

#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "mirror/mirror.h"
#include "monitor/monitor.h"

/* Also refreshes STATUS=: the partner's state changes without an HA state
 * change (alive, suspect, ...), and this tick sees it soon enough. */
static void watchdog_tick(struct loop_timer *t)
{
	struct node *n = t->arg;

	node_service_status(n);
	sd_notify(0, "WATCHDOG=1");
	loop_timer_arm(n->loop, &n->sd_wd_timer, n->sd_wd_ns);
}

/* One line for `systemctl status`: "ha up/none, partner alive, mirror
 * in_sync"; sent only when it changed. Called at every HA or mirror state
 * change and at every watchdog tick. */
void node_service_status(struct node *n)
{
	struct monitor_summary ms;
	struct mirror_status st;
	char line[sizeof(n->sd_status)];

	if (!n->sd_ready)
		return;
	monitor_get_summary(n->monitor, &ms);
	if (n->mirror)
		mirror_get_status(n->mirror, &st);
	snprintf(line, sizeof(line), "ha %s/%s, partner %s, mirror %s", ms.state, ms.phase,
		 ms.partner, n->mirror ? mirror_state_name(st.state) : "off");
	if (strcmp(line, n->sd_status) == 0)
		return;
	memcpy(n->sd_status, line, sizeof(line));
	sd_notifyf(0, "STATUS=%s", line);
}

int node_service_ready(struct node *n)
{
	uint64_t usec = 0;
	int rc;

	loop_timer_init(&n->sd_wd_timer, watchdog_tick, n);
	n->sd_ready = true;
	node_service_status(n);
	sd_notifyf(0, "READY=1\nMAINPID=%lu", (unsigned long)getpid());
	/* WATCHDOG_USEC (and WATCHDOG_PID, if set, naming this process). */
	rc = sd_watchdog_enabled(0, &usec);
	if (rc < 0)
		LOG_WARN("service watchdog: %s: ignored", strerror(-rc));
	if (rc > 0 && usec > 0) {
		n->sd_wd_ns = usec * 1000 / 2;
		if (usec / 1000 < n->cfg.monitor.watchdog_ms)
			LOG_WARN("WatchdogSec (%llu ms) is below [monitor] watchdog_ms (%llu ms): "
				 "systemd ends a stalled node before duet's own watchdog does",
				 (unsigned long long)(usec / 1000),
				 (unsigned long long)n->cfg.monitor.watchdog_ms);
		LOG_INFO("service watchdog every %llu ms",
			 (unsigned long long)(n->sd_wd_ns / NS_PER_MS));
		watchdog_tick(&n->sd_wd_timer);
	}
	return 0;
}

void node_service_stopping(struct node *n)
{
	if (!n->sd_ready)
		return;
	sd_notify(0, "STOPPING=1\nSTATUS=stopping");
	loop_timer_cancel(n->loop, &n->sd_wd_timer);
	n->sd_ready = false;
}
