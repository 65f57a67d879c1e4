/* The primitives every other file of a link uses: timed libfabric calls,
 * libfabric error codes as errnos, rate-limited logs, closing a fid, and
 * arming the link's one timer.
 *
 * Rule: every libfabric call made on the loop thread goes between
 * fab_tstart() and fab_call_timed(), so that a call holding the reactor
 * past FAB_SLOW_CALL_NS is counted and logged (stats.slow_calls). Nothing
 * here calls another file of the module.
 */
#define LOG_MODULE "fabric"
#include "fabric/fabric_int.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/resource.h>

#include <rdma/fi_errno.h>

#include "common/log.h"

/* DUET_FABRIC_CPU_TIMING=1: slow calls also report the thread's CPU time
 * and context switches (voluntary: it blocked; involuntary: it was
 * preempted). Two more system calls per libfabric call: for measurements. */
static bool cpu_timing;

void fab_timing_init(void)
{
	cpu_timing = getenv("DUET_FABRIC_CPU_TIMING") && atoi(getenv("DUET_FABRIC_CPU_TIMING"));
}

bool fab_log_allowed(struct fab_ratelimit *rl)
{
	uint64_t now = loop_now_ns();

	if (rl->last_ns && now - rl->last_ns < FAB_LOG_INTERVAL_NS) {
		rl->suppressed++;
		return false;
	}
	rl->last_ns = now;
	return true;
}

static void thread_usage(uint64_t *cpu, long *vcsw, long *ivcsw)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	*cpu = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000ull +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000ull;
	*vcsw = ru.ru_nvcsw;
	*ivcsw = ru.ru_nivcsw;
}

void fab_tstart(struct fab_tstart *t)
{
	t->wall = loop_now_ns();
	if (cpu_timing)
		thread_usage(&t->cpu, &t->vcsw, &t->ivcsw);
}

/* The longest call is kept, and calls that held the loop past
 * FAB_SLOW_CALL_NS are counted and logged (rate-limited). */
void fab_call_timed(struct fab_link *link, const char *what, const struct fab_tstart *t)
{
	uint64_t d = loop_now_ns() - t->wall;

	if (d <= link->st.max_call_ns && d < FAB_SLOW_CALL_NS)
		return;
	if (d > link->st.max_call_ns) {
		link->st.max_call_ns = d;
		link->st.max_call = what;
	}
	if (d >= FAB_SLOW_CALL_NS) {
		link->st.slow_calls++;
		if (!fab_log_allowed(&link->rl_slow))
			return;
		if (cpu_timing) {
			uint64_t cpu;
			long vcsw, ivcsw;
			thread_usage(&cpu, &vcsw, &ivcsw);
			LOG_INFO("%s: %s held the loop thread for %.1f ms (%.1f ms on the CPU, "
				 "%ld blocking and %ld preempting context switches)",
				 link->name, what, (double)d / 1e6, (double)(cpu - t->cpu) / 1e6,
				 vcsw - t->vcsw, ivcsw - t->ivcsw);
		} else {
			LOG_INFO("%s: %s held the loop thread for %.1f ms", link->name, what,
				 (double)d / 1e6);
		}
	}
}

/* libfabric's own error codes (>= FI_ERRNO_OFFSET) have no errno twin. */
int fab_errno(int fi_err)
{
	if (fi_err < 0)
		fi_err = -fi_err;
	if (fi_err == 0)
		return -EIO;
	if (fi_err < FI_ERRNO_OFFSET)
		return -fi_err;
	switch (fi_err) {
	case FI_ETRUNC:
		return -EMSGSIZE;
	case FI_ENOKEY:
		return -EKEYREJECTED;
	case FI_ETOOSMALL:
		return -ENOBUFS;
	default:
		return -EIO;
	}
}

void fab_close_fid(const char *name, struct fid *fid, const char *what)
{
	int rc;

	if (!fid)
		return;
	rc = fi_close(fid);
	if (rc)
		LOG_WARN("%s: closing the %s: %s", name, what, fi_strerror(-rc));
}

void fab_schedule(struct fab_link *link, uint64_t delay_ns)
{
	if (link->closing)
		return;
	if (loop_timer_armed(&link->timer) && link->timer.deadline_ns <= loop_now_ns() + delay_ns)
		return;
	loop_timer_arm(link->loop, &link->timer, delay_ns);
}

void fab_link_free(struct fab_link *link)
{
	free(link);
}

void fab_link_leave(struct fab_link *link)
{
	if (--link->busy == 0 && link->closing)
		fab_link_free(link);
}
