/* Hooks ([hooks] dir): every executable file of the directory runs on each
 * node event (node_event()), with the event in its environment.
 *
 * Rules kept: the reactor never waits for a hook. A hook starts with
 * posix_spawn() in a process group of its own, with signals unblocked and
 * stdin on /dev/null (its output goes to the node's stderr, the log); its
 * end is seen through a pidfd on the loop and reaped with waitid(P_PIDFD),
 * never with a wait for any child. At most max_running run at once; the
 * others wait in a bounded queue (HOOKS_QUEUE_MAX), and an event that
 * finds it full is dropped with one log line. A hook still running after
 * timeout_ms gets SIGKILL, its whole process group. Every end is logged
 * with the hook's exit status. */
#define LOG_MODULE "hooks"
#include "node/node_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ccm/ccm.h"
#include "common/json.h"
#include "common/log.h"
#include "common/util.h"

extern char **environ;

#define HOOKS_QUEUE_MAX	   64 /* hook runs waiting for a free slot */
#define HOOKS_ENV_MAX	   24 /* variables of one event, ours only */
#define HOOKS_VAR_MAX	   512
#define HOOKS_LINK_POLL_MS 100

/* One run of one hook for one event: queued, then running. */
struct hook_run {
	struct hook_run *next; /* in the queue */
	struct node_hooks *h;
	char path[PATH_MAX + 256];
	char event[48];
	char *env[HOOKS_ENV_MAX + 1]; /* our variables, malloc'ed, NULL-ended */
	pid_t pid;
	int pidfd;
	struct loop_io io;
	struct loop_timer timer;
	uint64_t start_ns;
	bool killed;
};

struct node_hooks {
	struct node *node;
	char dir[PATH_MAX];
	uint64_t timeout_ns;
	unsigned max_running;
	unsigned n_running;
	struct hook_run **running; /* max_running slots */
	struct hook_run *qhead, *qtail;
	unsigned n_queued;
	/* Links as last seen, for "link-up" / "link-down" (the CCM has no
	 * callback for them: read its status every HOOKS_LINK_POLL_MS). */
	struct loop_timer link_timer;
	bool link_known[CCM_MAX_LINKS];
	bool link_up[CCM_MAX_LINKS];
	uint64_t started, dropped, failed, timed_out; /* since the node started */
};

static void run_free(struct hook_run *r)
{
	for (unsigned i = 0; r->env[i]; i++)
		free(r->env[i]);
	free(r);
}

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static void start_queued(struct node_hooks *h);

/* The hook ended (its pidfd is readable): reap it, log how it ended. */
static void run_ended(struct loop_io *io, uint32_t events)
{
	struct hook_run *r = io->arg;
	struct node_hooks *h = r->h;
	siginfo_t si;
	uint64_t ms = (loop_now_ns() - r->start_ns) / 1000000;

	(void)events;
	memset(&si, 0, sizeof(si));
	if (waitid((idtype_t)P_PIDFD, (id_t)r->pidfd, &si, WEXITED | WNOHANG) < 0) {
		/* Reaped elsewhere (SIGCHLD ignored): it ended, how is unknown. */
		LOG_WARN("hook %s (%s): ended after %llu ms, status unknown (%s)", r->path,
			 r->event, (unsigned long long)ms, strerror(errno));
	} else if (si.si_pid == 0) {
		return; /* not yet (a spurious wake-up) */
	} else if (si.si_code == CLD_EXITED && si.si_status == 0) {
		LOG_INFO("hook %s (%s): exit 0 after %llu ms", r->path, r->event,
			 (unsigned long long)ms);
	} else if (si.si_code == CLD_EXITED) {
		h->failed++;
		LOG_WARN("hook %s (%s): exit %d after %llu ms", r->path, r->event, si.si_status,
			 (unsigned long long)ms);
	} else {
		h->failed++;
		LOG_WARN("hook %s (%s): killed by signal %d after %llu ms%s", r->path, r->event,
			 si.si_status, (unsigned long long)ms,
			 r->killed ? " (its timeout, [hooks] timeout_ms)" : "");
	}
	loop_io_del(h->node->loop, &r->io);
	loop_timer_cancel(h->node->loop, &r->timer);
	close(r->pidfd);
	for (unsigned i = 0; i < h->max_running; i++)
		if (h->running[i] == r)
			h->running[i] = NULL;
	h->n_running--;
	run_free(r);
	start_queued(h);
}

static void run_timeout(struct loop_timer *t)
{
	struct hook_run *r = t->arg;

	r->killed = true;
	r->h->timed_out++;
	LOG_WARN("hook %s (%s): still running after %llu ms: killing its process group", r->path,
		 r->event, (unsigned long long)(r->h->timeout_ns / 1000000));
	/* Its own group (posix_spawn with POSIX_SPAWN_SETPGROUP 0): whatever
	 * it started goes too. Reaped when its pidfd says so. */
	if (kill(-r->pid, SIGKILL) < 0)
		kill(r->pid, SIGKILL);
}

/* The environment of a hook: the node's, then ours (which win: getenv
 * takes the first, so ours go first). */
static char **build_env(struct hook_run *r)
{
	size_t n = 0, k = 0;
	char **env;

	while (r->env[n])
		n++;
	for (char **e = environ; *e; e++)
		k++;
	env = calloc(n + k + 1, sizeof(*env));
	if (!env)
		return NULL;
	memcpy(env, r->env, n * sizeof(*env));
	for (size_t i = 0; i < k; i++) {
		/* The node's own DUET_* would be taken for the event's; the
		 * service manager's are the node's alone (a hook is no main
		 * process to notify for, nor one to be socket-activated). */
		if (strncmp(environ[i], "DUET_", 5) == 0 ||
		    strncmp(environ[i], "NOTIFY_SOCKET=", 14) == 0 ||
		    strncmp(environ[i], "WATCHDOG_", 9) == 0 ||
		    strncmp(environ[i], "LISTEN_", 7) == 0)
			continue;
		env[n++] = environ[i];
	}
	env[n] = NULL;
	return env;
}

static int run_start(struct node_hooks *h, struct hook_run *r)
{
	posix_spawnattr_t attr;
	posix_spawn_file_actions_t fa;
	sigset_t none, dfl;
	char *argv[] = {r->path, r->event, NULL};
	char **env = build_env(r);
	int rc;

	if (!env)
		return -ENOMEM;
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
					    POSIX_SPAWN_SETSIGDEF);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setsigmask(&attr, &none); /* the node blocks INT and TERM */
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	rc = posix_spawn(&r->pid, r->path, &fa, &attr, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	free(env);
	if (rc) {
		LOG_WARN("hook %s (%s): cannot start: %s", r->path, r->event, strerror(rc));
		return -rc;
	}
	r->pidfd = pidfd_open_(r->pid);
	if (r->pidfd < 0) {
		rc = -errno;
		LOG_ERROR("hook %s: pidfd_open: %s: killing it", r->path, strerror(errno));
		kill(-r->pid, SIGKILL);
		/* Its zombie stays until the node exits: no wait for any child. */
		return rc;
	}
	rc = loop_io_add(h->node->loop, &r->io, r->pidfd, EPOLLIN, run_ended, r);
	if (rc < 0) {
		kill(-r->pid, SIGKILL);
		close(r->pidfd);
		return rc;
	}
	r->start_ns = loop_now_ns();
	loop_timer_init(&r->timer, run_timeout, r);
	loop_timer_arm(h->node->loop, &r->timer, h->timeout_ns);
	h->started++;
	LOG_DEBUG("hook %s (%s): started, pid %d", r->path, r->event, (int)r->pid);
	return 0;
}

static void start_queued(struct node_hooks *h)
{
	while (h->qhead && h->n_running < h->max_running) {
		struct hook_run *r = h->qhead;
		h->qhead = r->next;
		if (!h->qhead)
			h->qtail = NULL;
		h->n_queued--;
		if (run_start(h, r) < 0) {
			h->failed++;
			run_free(r);
			continue;
		}
		for (unsigned i = 0; i < h->max_running; i++) {
			if (!h->running[i]) {
				h->running[i] = r;
				break;
			}
		}
		h->n_running++;
	}
}

static void link_poll(struct loop_timer *t)
{
	struct node_hooks *h = t->arg;
	struct node *n = h->node;
	struct ccm_status *st;

	loop_timer_arm(n->loop, &h->link_timer, HOOKS_LINK_POLL_MS * 1000000ull);
	if (!n->ccm)
		return;
	st = malloc(sizeof(*st));
	if (!st)
		return;
	ccm_get_status(n->ccm, st);
	for (unsigned i = 0; i < st->n_links && i < CCM_MAX_LINKS; i++) {
		bool up = st->links[i].up;
		if (h->link_known[i] && h->link_up[i] == up)
			continue;
		/* The first look says only what is up: down is where links start. */
		if (h->link_known[i] || up)
			node_event(n, up ? "link-up" : "link-down", "DUET_LINK", st->links[i].name,
				   "DUET_STATE", up ? "up" : "down", NULL);
		h->link_known[i] = true;
		h->link_up[i] = up;
	}
	free(st);
}

int node_hooks_create(struct node *n, struct node_hooks **out)
{
	struct node_hooks *h;

	*out = NULL;
	if (!n->cfg.hooks.dir[0])
		return 0;
	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->node = n;
	snprintf(h->dir, sizeof(h->dir), "%s", n->cfg.hooks.dir);
	h->timeout_ns = n->cfg.hooks.timeout_ms * 1000000ull;
	h->max_running = (unsigned)n->cfg.hooks.max_running;
	/* A SIGCHLD ignored by whoever started us would reap the hooks before
	 * we can read their status: the default disposition keeps them. */
	signal(SIGCHLD, SIG_DFL);
	h->running = calloc(h->max_running, sizeof(*h->running));
	if (!h->running) {
		free(h);
		return -ENOMEM;
	}
	loop_timer_init(&h->link_timer, link_poll, h);
	loop_timer_arm(n->loop, &h->link_timer, HOOKS_LINK_POLL_MS * 1000000ull);
	LOG_INFO("hooks: %s (timeout %llu ms, at most %u at once)", h->dir,
		 (unsigned long long)n->cfg.hooks.timeout_ms, h->max_running);
	*out = h;
	return 0;
}

void node_hooks_destroy(struct node_hooks *h)
{
	if (!h)
		return;
	loop_timer_cancel(h->node->loop, &h->link_timer);
	/* Hooks still running are left to finish on their own (they are in
	 * groups of their own); the queue is dropped. */
	for (unsigned i = 0; i < h->max_running; i++) {
		struct hook_run *r = h->running[i];
		if (!r)
			continue;
		loop_io_del(h->node->loop, &r->io);
		loop_timer_cancel(h->node->loop, &r->timer);
		close(r->pidfd);
		run_free(r);
	}
	while (h->qhead) {
		struct hook_run *r = h->qhead;
		h->qhead = r->next;
		run_free(r);
	}
	free(h->running);
	free(h);
}

static int env_add(struct hook_run *r, unsigned *n, const char *key, const char *val)
{
	size_t len;

	if (*n >= HOOKS_ENV_MAX)
		return -E2BIG;
	len = strlen(key) + strlen(val) + 2;
	if (len > HOOKS_VAR_MAX)
		return -E2BIG;
	r->env[*n] = malloc(len);
	if (!r->env[*n])
		return -ENOMEM;
	snprintf(r->env[*n], len, "%s=%s", key, val);
	(*n)++;
	return 0;
}

/* An executable regular file, not hidden, not an editor's backup. */
static bool is_hook(int dfd, const char *name)
{
	struct stat st;
	size_t len = strlen(name);

	if (name[0] == '.' || (len && name[len - 1] == '~'))
		return false;
	if (fstatat(dfd, name, &st, 0) < 0 || !S_ISREG(st.st_mode))
		return false;
	return faccessat(dfd, name, X_OK, 0) == 0;
}

static void queue_run(struct node_hooks *h, const char *name, const char *event,
		      const char *const *kv, unsigned n_kv)
{
	struct hook_run *r;
	unsigned n = 0;
	char when[32];

	if (h->n_queued >= HOOKS_QUEUE_MAX) {
		h->dropped++;
		LOG_WARN("hooks: queue full (%u waiting): event %s dropped for %s", HOOKS_QUEUE_MAX,
			 event, name);
		return;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		h->dropped++;
		return;
	}
	r->h = h;
	r->pidfd = -1;
	if ((size_t)snprintf(r->path, sizeof(r->path), "%.*s/%s", (int)(sizeof(r->path) / 2),
			     h->dir, name) >= sizeof(r->path)) {
		free(r);
		return;
	}
	snprintf(r->event, sizeof(r->event), "%s", event);
	snprintf(when, sizeof(when), "%lld", (long long)time(NULL));
	if (env_add(r, &n, "DUET_EVENT", event) < 0 ||
	    env_add(r, &n, "DUET_NODE", h->node->cfg.node.id) < 0 ||
	    env_add(r, &n, "DUET_PARTNER", h->node->cfg.ic.partner) < 0 ||
	    env_add(r, &n, "DUET_TIME", when) < 0)
		goto drop;
	for (unsigned i = 0; i + 1 < n_kv; i += 2)
		if (env_add(r, &n, kv[i], kv[i + 1]) < 0)
			goto drop;
	if (h->qtail)
		h->qtail->next = r;
	else
		h->qhead = r;
	h->qtail = r;
	h->n_queued++;
	return;
drop:
	h->dropped++;
	LOG_WARN("hooks: event %s: environment too large: dropped for %s", event, name);
	run_free(r);
}

void node_event(struct node *n, const char *event, ...)
{
	struct node_hooks *h = n->hooks;
	const char *kv[2 * 16];
	unsigned n_kv = 0;
	struct dirent *e;
	va_list ap;
	DIR *d;

	if (!h)
		return;
	va_start(ap, event);
	for (;;) {
		const char *k = va_arg(ap, const char *), *v;
		if (!k)
			break;
		v = va_arg(ap, const char *);
		if (n_kv + 2 <= ARRAY_SIZE(kv)) {
			kv[n_kv++] = k;
			kv[n_kv++] = v ? v : "";
		}
	}
	va_end(ap);
	/* A small local directory, read per event so that a hook added or
	 * removed counts at once (metadata only: nothing waits on a disk). */
	d = opendir(h->dir);
	if (!d) {
		LOG_WARN("hooks: %s: %s (event %s not run)", h->dir, strerror(errno), event);
		return;
	}
	while ((e = readdir(d)))
		if (is_hook(dirfd(d), e->d_name))
			queue_run(h, e->d_name, event, kv, n_kv);
	closedir(d);
	start_queued(h);
}

void node_hooks_status_json(struct node_hooks *h, struct json_object *o)
{
	if (!h) {
		jobj_add_str(o, "dir", "");
		return;
	}
	jobj_add_str(o, "dir", h->dir);
	jobj_add_u64(o, "running", h->n_running);
	jobj_add_u64(o, "queued", h->n_queued);
	jobj_add_u64(o, "started", h->started);
	jobj_add_u64(o, "failed", h->failed);
	jobj_add_u64(o, "timed_out", h->timed_out);
	jobj_add_u64(o, "dropped", h->dropped);
}
