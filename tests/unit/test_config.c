/* Unit tests of the config schema: defaults, every value type, and errors
 * that name the file, the line and the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "config/config.h"
#include "common/util.h"

#define BASE                                                                          \
	"[node]\nid = a\nshelf = /tmp/shelf-a   # the shelf\ncontrol = /tmp/a.sock\n" \
	"[nbd]\nlisten = 127.0.0.1:10809\n"

static struct duet_config cfg;
static char err[512];

static void test_minimal(void **state)
{
	(void)state;
	assert_int_equal(config_load_string("t.ini", BASE, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.node.id, "a");
	assert_string_equal(cfg.node.shelf, "/tmp/shelf-a");
	assert_string_equal(cfg.nbd.listen, "127.0.0.1:10809");
	assert_int_equal(cfg.nbd.max_payload, 32 << 20);
	assert_string_equal(cfg.ic.provider, "tcp;ofi_rxm");
	assert_string_equal(cfg.node.control_group, "");
	assert_int_equal(cfg.nbd.buffer_limit, 1ull << 30);
}

static void expect_error(const char *text, const char *needle);

static void test_control_group(void **state)
{
	(void)state;
	assert_int_equal(config_load_string("t.ini",
					    "[node]\nid = a\nshelf = /s\ncontrol = /c\n"
					    "control_group = duet\n[nbd]\nlisten = 127.0.0.1:1\n",
					    &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg.node.control_group, "duet");
	assert_int_equal(
	    config_load_string("t.ini", BASE "buffer_limit = 256M\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.nbd.buffer_limit, 256ull << 20);
	expect_error(BASE "buffer_limit = 4K\n", "[nbd] buffer_limit");
}

static void test_links(void **state)
{
	(void)state;
	assert_int_equal(config_load_string("t.ini",
					    BASE
					    "[ic]\nlink = ic0 127.0.0.1:47001 127.0.0.1:47101\n"
					    "link = ic1 127.0.0.2:47001 127.0.0.2:47101\n",
					    &cfg, err, sizeof(err)),
			 0);
	assert_int_equal(cfg.ic.n_links, 2);
	assert_string_equal(cfg.ic.links[1].name, "ic1");
	assert_string_equal(cfg.ic.links[1].peer, "127.0.0.2:47101");
}

static void expect_error(const char *text, const char *needle)
{
	int rc = config_load_string("t.ini", text, &cfg, err, sizeof(err));
	assert_int_equal(rc, -EINVAL);
	if (!strstr(err, needle))
		fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error(BASE "[nbd]\nbogus = 1\n", "t.ini:8: [nbd] bogus: unknown key");
	expect_error(BASE "[nope]\nx = 1\n", "t.ini:8: [nope] x: unknown section");
	expect_error("[node]\nid = a\nshelf = /s\ncontrol = /c\n[nbd]\nlisten = nowhere\n",
		     "t.ini:6: [nbd] listen:");
	expect_error("[node]\nid = a b\n", "t.ini:2: [node] id:");
	expect_error("[node]\nid = a\n", "[node] shelf: required key is missing");
	expect_error(BASE "[store]\nio_depth = 2\n", "t.ini:8: [store] io_depth:");
	expect_error(BASE "[nbd]\nmax_payload = 1M\n", "[nbd] max_payload");
	expect_error(BASE "[ic]\nlink = ic0 127.0.0.1:1\n", "[ic] link");
	expect_error(BASE "garbage\n", "t.ini:7: syntax error");
}

/* Issue 12, finding 9: the error path parsed the message back out of err
 * at strlen(path) + 1, past its end when the path was longer than err
 * (duetd's is 768 bytes). err ends at a guard page here, so reading past
 * it faults in any build. */
static void test_long_path_error(void **state)
{
	const size_t len = 768;
	uint8_t *pages =
	    mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	static char name[2048];

	(void)state;
	assert_true(pages != MAP_FAILED);
	assert_int_equal(mprotect(pages + 4096, 4096, PROT_NONE), 0);
	char *e = (char *)pages + 4096 - len;
	memset(name, 'd', sizeof(name) - 6);
	name[0] = '/';
	memcpy(name + sizeof(name) - 6, ".conf", 6);
	for (size_t n = 700; n <= sizeof(name) - 1; n += 67) {
		const char *nm = name + sizeof(name) - 1 - n;
		int rc = config_load_string(nm, BASE "[nbd]\nbogus = 1\n", &cfg, e, len);
		assert_int_equal(rc, -EINVAL);
		assert_true(strlen(e) < len);
		assert_memory_equal(e, nm, strlen(e) < n ? strlen(e) : n);
	}
	/* A path that fits: the whole message. */
	assert_int_equal(config_load_string("t.ini", BASE "[nbd]\nbogus = 1\n", &cfg, e, len),
			 -EINVAL);
	assert_string_equal(e, "t.ini:8: [nbd] bogus: unknown key");
	munmap(pages, 8192);
}

/* A renamed key's old spelling still sets the value, and is counted (warned). */
static void test_renamed_keys(void **state)
{
	(void)state;
	assert_int_equal(
	    config_load_string("t.ini", BASE "[ic]\nprobe_ms = 7\n", &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.renamed_keys, 0);
	assert_int_equal(config_load_string("t.ini",
					    "[node]\nid = a\nshelf = /s\ncontrol = /c\n"
					    "nvram = /l\nnvram_size = 8M\n"
					    "[nbd]\nlisten = 127.0.0.1:1\n[ic]\nheartbeat_ms = 9\n",
					    &cfg, err, sizeof(err)),
			 0);
	assert_int_equal(cfg.renamed_keys, 3);
	assert_int_equal(cfg.ic.probe_ms, 9);
	assert_int_equal(cfg.mirror.log_size, 8 << 20);
	assert_string_equal(cfg.mirror.log, "/l");
	/* Old and new spelling together: given twice. */
	expect_error(BASE "[ic]\nprobe_ms = 7\nheartbeat_ms = 9\n",
		     "[ic] heartbeat_ms: given twice");
}

static void test_missing_file(void **state)
{
	(void)state;
	assert_int_equal(config_load("/nonexistent/duet.ini", &cfg, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/duet.ini"));
}

static void test_parse_size(void **state)
{
	uint64_t v;
	(void)state;
	assert_int_equal(util_parse_size("1G", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(util_parse_size("512M", &v), 0);
	assert_int_equal(v, 512ull << 20);
	assert_int_equal(util_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(util_parse_size("2GiB", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(util_parse_size("12X", &v), -EINVAL);
	assert_int_equal(util_parse_size("", &v), -EINVAL);
	assert_int_equal(util_parse_size("-1", &v), -EINVAL);
	assert_int_equal(util_parse_size("99999999999T", &v), -ERANGE);
}

/* ---- each module's keys (moved here from the modules' tests) ---- */

static void test_proxy_keys(void **state)
{
	const char *base = "[node]\nid = a\nshelf = /tmp/s\ncontrol = /tmp/c\n"
			   "[nbd]\nlisten = 127.0.0.1:1\n";
	char text[1024];

	(void)state;
	assert_int_equal(config_load_string("t", base, &cfg, err, sizeof(err)), 0);
	assert_true(cfg.proxy.timeout_ms == PROXY_DEFAULT_TIMEOUT_MS &&
		    cfg.proxy.ports == PROXY_DEFAULT_PORTS &&
		    cfg.proxy.port_mem == PROXY_DEFAULT_PORT_MEM &&
		    cfg.proxy.chunk == PROXY_DEFAULT_CHUNK);
	snprintf(text, sizeof(text),
		 "%s[proxy]\ntimeout_ms = 500\nports = 2\nport_mem = 8M\nchunk = 256K\n", base);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), 0);
	assert_true(cfg.proxy.timeout_ms == 500 && cfg.proxy.ports == 2 &&
		    cfg.proxy.port_mem == (8u << 20) && cfg.proxy.chunk == (256u << 10));
	snprintf(text, sizeof(text), "%s[proxy]\nport_mem = 1M\nchunk = 1M\n", base);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "chunk"));
	snprintf(text, sizeof(text), "%s[proxy]\nports = 17\n", base);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(text, sizeof(text), "%s[proxy]\ntimeout_ms = 0\n", base);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(text, sizeof(text), "%s[proxy]\nbogus = 1\n", base);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
}

/* [nbd] tls, tls_certificates, tls_psk, tls_verify_peer and allow: off and
 * open by default; the pairs that cannot work are refused at load, and a
 * bad network names the key and the entry. */
static void test_tls_keys(void **state)
{
	struct nbd_server_opts no;
	char text[1024];

	(void)state;
	assert_int_equal(config_load_string("t", BASE, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.nbd.tls, NBD_TLS_OFF);
	assert_false(cfg.nbd.tls_verify_peer);
	assert_string_equal(cfg.nbd.allow, "");
	config_nbd_opts(&cfg, false, &no);
	assert_int_equal(no.tls, NBD_TLS_OFF);
	assert_string_equal(no.allow, "");

	snprintf(text, sizeof(text),
		 "%stls = require\ntls_certificates = /etc/pki/duet\ntls_psk = /etc/duet/keys.psk\n"
		 "tls_verify_peer = on\nallow = 10.0.0.0/8, fd00::/8\n",
		 BASE);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), 0);
	config_nbd_opts(&cfg, true, &no);
	assert_int_equal(no.tls, NBD_TLS_REQUIRE);
	assert_string_equal(no.tls_certificates, "/etc/pki/duet");
	assert_string_equal(no.tls_psk, "/etc/duet/keys.psk");
	assert_true(no.tls_verify_peer);
	assert_string_equal(no.allow, "10.0.0.0/8, fd00::/8");

	snprintf(text, sizeof(text), "%stls = on\n", BASE);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[nbd] tls: on needs tls_certificates or tls_psk"));
	snprintf(text, sizeof(text), "%stls = on\ntls_psk = /k\n", BASE);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), 0);
	snprintf(text, sizeof(text), "%stls = maybe\n", BASE);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[nbd] tls: 'maybe'"));
	snprintf(text, sizeof(text), "%stls = on\ntls_psk = /k\ntls_verify_peer = on\n", BASE);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "tls_verify_peer: needs tls_certificates"));
	snprintf(text, sizeof(text), "%sallow = 10.0.0.1/8\n", BASE);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "t:7: [nbd] allow: '10.0.0.1/8' has host bits set"));
	snprintf(text, sizeof(text), "%sallow = 127.0.0.1, nohost\n", BASE);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "'nohost' is not an IPv4 or IPv6 address"));
	snprintf(text, sizeof(text), "%sallow = ,\n", BASE);
	assert_int_equal(config_load_string("t", text, &cfg, err, sizeof(err)), -EINVAL);
}

/* The [ic] key this module added. */
static void test_ccm_keys(void **state)
{
	const char *text = "[node]\nid = a\nshelf = /s\ncontrol = /c\n[nbd]\nlisten = "
			   "127.0.0.1:1\n[ic]\ninstance_max_load = 800M\n";

	(void)state;
	assert_int_equal(config_load_string("t.conf", text, &cfg, err, sizeof(err)), 0);
	assert_int_equal(cfg.ic.instance_max_load, 800ull << 20);
	config_defaults(&cfg);
	assert_int_equal(cfg.ic.instance_max_load, 0);
}

static void test_balance_keys(void **state)
{
	struct balance_opts o;
	static const char *const bad[] = {"1.0", "0.5", "1.05",	 "2.0001",
					  "x",	 ".",	"",	 "2..0",
					  "1e3", "-2",	"100.5", "99999999999999999999"};

	(void)state;
	assert_int_equal(config_load_string("t.ini", BASE, &cfg, err, sizeof(err)), 0);
	config_balance_opts(&cfg, &o);
	assert_false(o.enabled);
	assert_int_equal(o.imbalance_milli, 2000);
	assert_int_equal(o.window_s, 30);
	assert_int_equal(o.min_interval_s, 300);
	assert_int_equal(config_load_string("t.ini",
					    BASE "[balance]\nauto = on\nimbalance = 1.25\n"
						 "window_s = 5\nmin_interval_s = 0\n",
					    &cfg, err, sizeof(err)),
			 0);
	config_balance_opts(&cfg, &o);
	assert_true(o.enabled);
	assert_int_equal(o.imbalance_milli, 1250);
	assert_int_equal(o.window_s, 5);
	assert_int_equal(o.min_interval_s, 0);
	assert_int_equal(
	    config_load_string("t.ini", BASE "[balance]\nimbalance = 3\n", &cfg, err, sizeof(err)),
	    0);
	assert_int_equal(cfg.balance.imbalance_milli, 3000);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), BASE "[balance]\nimbalance = %s\n", bad[i]);
		assert_int_equal(config_load_string("t.ini", text, &cfg, err, sizeof(err)),
				 -EINVAL);
		assert_non_null(strstr(err, "[balance] imbalance"));
	}
	assert_int_equal(
	    config_load_string("t.ini", BASE "[balance]\nwindow_s = 2\n", &cfg, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "t.ini:8: [balance] window_s"));
	assert_int_equal(
	    config_load_string("t.ini", BASE "[balance]\nauto = yes\n", &cfg, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "[balance] auto"));
}

static void test_hooks_keys(void **state)
{
	(void)state;
	assert_int_equal(config_load_string("t.ini", BASE, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.hooks.dir, "");
	assert_int_equal(cfg.hooks.timeout_ms, 10000);
	assert_int_equal(cfg.hooks.max_running, 4);
	assert_int_equal(config_load_string("t.ini",
					    BASE "[hooks]\ndir = /etc/duet/hooks.d\n"
						 "timeout_ms = 2000\nmax_running = 2\n",
					    &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg.hooks.dir, "/etc/duet/hooks.d");
	assert_int_equal(cfg.hooks.timeout_ms, 2000);
	assert_int_equal(cfg.hooks.max_running, 2);
	assert_int_equal(
	    config_load_string("t.ini", BASE "[hooks]\nmax_running = 0\n", &cfg, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "[hooks] max_running"));
	assert_int_equal(
	    config_load_string("t.ini", BASE "[hooks]\ntimeout_ms = 1\n", &cfg, err, sizeof(err)),
	    -EINVAL);
	assert_non_null(strstr(err, "[hooks] timeout_ms"));
}

static void test_monitor_keys(void **state)
{
	(void)state;
	assert_int_equal(config_load_string("t.ini", BASE, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.monitor.partner_shelf, "");
	assert_int_equal(cfg.monitor.heartbeat_ms, 20);
	assert_int_equal(cfg.monitor.deadline_ms, 150);
	assert_int_equal(cfg.monitor.mailbox_ms, 25);
	assert_int_equal(cfg.monitor.mailbox_deadline_ms, 100);
	assert_int_equal(cfg.monitor.lease_ms, 100);
	assert_int_equal(cfg.monitor.fence_margin_ms, 50);
	assert_int_equal(cfg.monitor.watchdog_ms, 1000);
	assert_int_equal(cfg.monitor.auto_giveback, false);
	assert_int_equal(cfg.monitor.giveback_delay_ms, 5000);
	assert_int_equal(cfg.monitor.boot_grace_ms, 30000);

	assert_int_equal(config_load_string("t.ini",
					    BASE "[monitor]\npartner_shelf = /tmp/shelf-b\n"
						 "heartbeat_ms = 10\ndeadline_ms = 100\n"
						 "mailbox_ms = 20\nmailbox_deadline_ms = 80\n"
						 "lease_ms = 60\nfence_margin_ms = 0\n"
						 "watchdog_ms = 500\nauto_giveback = on\n"
						 "giveback_delay_ms = 0\nboot_grace_ms = 2000\n",
					    &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg.monitor.partner_shelf, "/tmp/shelf-b");
	assert_int_equal(cfg.monitor.heartbeat_ms, 10);
	assert_int_equal(cfg.monitor.lease_ms, 60);
	assert_int_equal(cfg.monitor.auto_giveback, true);
	assert_int_equal(cfg.monitor.giveback_delay_ms, 0);
	assert_int_equal(cfg.monitor.boot_grace_ms, 2000);

	struct {
		const char *text, *needle;
	} bad[] = {
	    {BASE "[monitor]\nauto_giveback = maybe\n", "t.ini:8: [monitor] auto_giveback"},
	    {BASE "[monitor]\nheartbeat_ms = 0\n", "t.ini:8: [monitor] heartbeat_ms"},
	    {BASE "[monitor]\nbogus = 1\n", "[monitor] bogus: unknown key"},
	    {BASE "[monitor]\nheartbeat_ms = 100\n", "[monitor] deadline_ms: want at least 2"},
	    {BASE "[monitor]\nmailbox_ms = 100\n", "[monitor] mailbox_deadline_ms"},
	    {BASE "[monitor]\nmailbox_ms = 60\nmailbox_deadline_ms = 500\n",
	     "[monitor] lease_ms: want at least 2 x mailbox_ms"},
	    {BASE "[monitor]\nwatchdog_ms = 100\n", "[monitor] watchdog_ms: want more"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(config_load_string("t.ini", bad[i].text, &cfg, err, sizeof(err)),
				 -EINVAL);
		if (!strstr(err, bad[i].needle))
			fail_msg("error '%s' lacks '%s'", err, bad[i].needle);
	}
}

/* [metrics] listen: off by default, an ADDR:PORT when set, one line
 * naming the key when malformed. */
static void test_metrics_keys(void **state)
{
	(void)state;
	assert_int_equal(config_load_string("t.ini", BASE, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.metrics.listen, "");
	assert_int_equal(config_load_string("t.ini", BASE "[metrics]\nlisten = 127.0.0.1:9942\n",
					    &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg.metrics.listen, "127.0.0.1:9942");
	assert_int_equal(config_load_string("t.ini", BASE "[metrics]\nlisten = nowhere\n", &cfg,
					    err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "[metrics] listen"));
}

static void test_mirror_keys(void **state)
{
	struct mirror_opts o;
	const char *base =
	    "[node]\nid = a\nshelf = /s\ncontrol = /c\n"
	    "[nbd]\nlisten = 127.0.0.1:10809\n"
	    "[mirror]\nlog = /var/lib/duet/a.nvram\nlog_size = 128M\n"
	    "mirror = off\ndurability = local-sync\nmirror_down = suspend\n"
	    "mirror_suspend_timeout_ms = 5000\ncp_interval_ms = 250\ngroup_window = 16\n"
	    "partner_image = /var/lib/duet/b.mirror\n";

	(void)state;
	assert_int_equal(config_load_string("t.ini",
					    "[node]\nid = a\nshelf = /s\ncontrol = /c\n"
					    "[nbd]\nlisten = 127.0.0.1:10809\n",
					    &cfg, err, sizeof(err)),
			 0);
	assert_string_equal(cfg.mirror.log, "");
	assert_int_equal(cfg.mirror.log_size, 64u << 20);
	assert_int_equal(cfg.mirror.mode, MIRROR_MODE_ON);
	assert_int_equal(cfg.mirror.durability, MIRROR_DURABILITY_MEMORY);
	assert_int_equal(cfg.mirror.down, MIRROR_DOWN_DEGRADE);
	assert_int_equal(cfg.mirror.cp_interval_ms, 1000);
	assert_int_equal(cfg.mirror.group_window, 2);
	assert_int_equal(config_load_string("t.ini", base, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.mirror.log, "/var/lib/duet/a.nvram");
	assert_int_equal(cfg.mirror.log_size, 128u << 20);
	assert_int_equal(cfg.mirror.mode, MIRROR_MODE_OFF);
	assert_int_equal(cfg.mirror.durability, MIRROR_DURABILITY_LOCAL_SYNC);
	assert_int_equal(cfg.mirror.down, MIRROR_DOWN_SUSPEND);
	assert_int_equal(cfg.mirror.suspend_timeout_ms, 5000);
	assert_int_equal(cfg.mirror.cp_interval_ms, 250);
	assert_int_equal(cfg.mirror.group_window, 16);
	assert_string_equal(cfg.mirror.partner_image, "/var/lib/duet/b.mirror");
	/* mirror = local: the log, no partner. */
	assert_int_equal(
	    config_load_string("t.ini",
			       "[node]\nid = a\nshelf = /s\ncontrol = /c\n"
			       "[nbd]\nlisten = 127.0.0.1:10809\n[mirror]\nmirror = local\n",
			       &cfg, err, sizeof(err)),
	    0);
	assert_int_equal(cfg.mirror.mode, MIRROR_MODE_LOCAL);
	/* The mirror's options from the config. */
	assert_int_equal(config_load_string("t.ini", base, &cfg, err, sizeof(err)), 0);
	config_mirror_opts(&cfg, "/resolved/log", &o);
	assert_string_equal(o.path, "/resolved/log");
	assert_int_equal(o.size, 128u << 20);
	assert_string_equal(o.node_id, "a");
	assert_int_equal(o.mode, MIRROR_MODE_OFF);
	assert_int_equal(o.durability, MIRROR_DURABILITY_LOCAL_SYNC);
	assert_int_equal(o.down, MIRROR_DOWN_SUSPEND);
	assert_int_equal(o.suspend_timeout_ms, 5000);
	assert_int_equal(o.cp_interval_ms, 250);
	/* Bad values name the key. */
	char bad[1024];
	snprintf(bad, sizeof(bad), "%s%s", base, "durability = disk\n");
	assert_int_equal(config_load_string("t.ini", bad, &cfg, err, sizeof(err)), -EINVAL);
	snprintf(bad, sizeof(bad), "[node]\nid = a\nshelf = /s\ncontrol = /c\nnvram_size = 4K\n");
	/* (the old spelling: the error names the key as the file spells it) */
	assert_int_equal(config_load_string("t.ini", bad, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[node] nvram_size"));
	snprintf(bad, sizeof(bad),
		 "[node]\nid = a\nshelf = /s\ncontrol = /c\n"
		 "[nbd]\nlisten = 127.0.0.1:1\n[mirror]\nmirror = maybe\n");
	assert_int_equal(config_load_string("t.ini", bad, &cfg, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "[mirror] mirror: 'maybe' is not one of the allowed values"));
}

/* Every module's options carry the configured values, and the module's own
 * defaults where the file says nothing: the config's defaults are the
 * modules' (one place for each default). */
static void test_service_address_keys(void **state)
{
	(void)state;
	assert_int_equal(config_load_string("t.ini", BASE, &cfg, err, sizeof(err)), 0);
	assert_string_equal(cfg.node.service_address, "");
	assert_false(cfg.node.service_arp_tune);
	assert_int_equal(cfg.node.service_lifetime_s, 2);
	assert_int_equal(cfg.monitor.partner_nbd_port, 0);
	assert_int_equal(
	    config_load_string("t.ini",
			       "[node]\nid = a\nshelf = /s\ncontrol = /c\n"
			       "service_address = 192.0.2.10/24 dev svc0\n"
			       "service_arp_tune = on\nservice_address_lifetime_s = 0\n"
			       "[nbd]\nlisten = 127.0.0.1:10809\n"
			       "[monitor]\npartner_service_address = 2001:db8::11/64 dev svc0\n"
			       "partner_nbd_port = 10811\npartner_proxy_port = 10812\n",
			       &cfg, err, sizeof(err)),
	    0);
	assert_string_equal(cfg.node.service_address, "192.0.2.10/24 dev svc0");
	assert_true(cfg.node.service_arp_tune);
	assert_int_equal(cfg.node.service_lifetime_s, 0);
	assert_string_equal(cfg.monitor.partner_service_address, "2001:db8::11/64 dev svc0");
	assert_int_equal(cfg.monitor.partner_nbd_port, 10811);
	assert_int_equal(cfg.monitor.partner_proxy_port, 10812);
	assert_int_not_equal(config_load_string("t.ini", BASE "service_address = 192.0.2.10/24\n",
						&cfg, err, sizeof(err)),
			     0);
	assert_int_not_equal(config_load_string("t.ini",
						"[node]\nid = a\nshelf = /s\ncontrol = /c\n"
						"service_address = 192.0.2.10/24 eth0\n"
						"[nbd]\nlisten = 127.0.0.1:1\n",
						&cfg, err, sizeof(err)),
			     0);
	assert_non_null(strstr(err, "[node] service_address"));
	assert_non_null(strstr(err, "t.ini:"));
	assert_int_not_equal(config_load_string("t.ini",
						BASE "[monitor]\npartner_nbd_port = 70000\n", &cfg,
						err, sizeof(err)),
			     0);
}

static void test_module_opts(void **state)
{
	struct store_opts so, so_def;
	struct ccm_opts co, co_def;
	struct monitor_opts mo, mo_def;
	struct mirror_opts xo, xo_def;
	struct proxy_opts po;
	struct nbd_server_opts no;

	(void)state;
	assert_int_equal(config_load_string("t.ini", BASE, &cfg, err, sizeof(err)), 0);
	store_opts_init(&so_def);
	ccm_opts_init(&co_def);
	monitor_opts_init(&mo_def);
	mirror_opts_init(&xo_def);
	config_store_opts(&cfg, &so);
	config_ccm_opts(&cfg, &co);
	config_monitor_opts(&cfg, &mo);
	config_mirror_opts(&cfg, "/l", &xo);
	assert_int_equal(so.engine, so_def.engine);
	assert_int_equal(so.depth, so_def.depth);
	assert_int_equal(so.workers, so_def.workers);
	assert_true(so.direct_io);
	assert_int_equal(so.direct_io, so_def.direct_io);
	assert_int_equal(cfg.node.realtime, NODE_RT_AUTO); /* duet.conf(5) */
	assert_int_equal(config_realtime_late_ns(&cfg), co_def.link_deadline_ms * 1000000ull / 5);
	assert_string_equal(co.provider, co_def.provider);
	assert_int_equal(co.probe_ms, co_def.probe_ms);
	assert_int_equal(co.link_deadline_ms, co_def.link_deadline_ms);
	assert_int_equal(co.session_deadline_ms, co_def.session_deadline_ms);
	assert_int_equal(co.balance, co_def.balance);
	assert_int_equal(mo.heartbeat_ms, mo_def.heartbeat_ms);
	assert_int_equal(mo.deadline_ms, mo_def.deadline_ms);
	assert_int_equal(mo.lease_ms, mo_def.lease_ms);
	assert_int_equal(mo.fence_margin_ms, mo_def.fence_margin_ms);
	assert_int_equal(mo.watchdog_ms, mo_def.watchdog_ms);
	assert_int_equal(mo.auto_giveback, mo_def.auto_giveback);
	assert_int_equal(xo.mode, xo_def.mode);
	assert_int_equal(xo.cp_interval_ms, xo_def.cp_interval_ms);

	assert_int_equal(
	    config_load_string("t.ini",
			       "[node]\nid = a\nshelf = /s\ncontrol = /c\nrealtime = off\n"
			       "[nbd]\nlisten = 127.0.0.1:10809\n",
			       &cfg, err, sizeof(err)),
	    0);
	assert_int_equal(cfg.node.realtime, NODE_RT_OFF);
	assert_int_equal(
	    config_load_string("t.ini",
			       "[node]\nid = a\nshelf = /s\ncontrol = /c\nrealtime = on\n"
			       "[nbd]\nlisten = 127.0.0.1:10809\n[ic]\nlink_deadline_ms = 10\n",
			       &cfg, err, sizeof(err)),
	    0);
	assert_int_equal(cfg.node.realtime, NODE_RT_ON);
	assert_int_equal(config_realtime_late_ns(&cfg), 5000000ull); /* at least 5 ms */
	assert_true(config_load_string("t.ini",
				       "[node]\nid = a\nshelf = /s\ncontrol = /c\nrealtime = rr\n"
				       "[nbd]\nlisten = 127.0.0.1:10809\n",
				       &cfg, err, sizeof(err)) < 0);

	assert_int_equal(
	    config_load_string("t.ini",
			       BASE
			       "proxy_listen = 127.0.0.1:10810\nmax_payload = 64M\n"
			       "[store]\nio_engine = threads\nio_depth = 64\nio_workers = 2\n"
			       "direct_io = off\n"
			       "[ic]\npartner = b\nlink = ic0 127.0.0.1:1 127.0.0.1:2\n"
			       "link = ic1 127.0.0.2:1 127.0.0.2:2\nprobe_ms = 7\n"
			       "balance = round_robin\n"
			       "[monitor]\npartner_shelf = /p\nlease_ms = 60\nauto_giveback = on\n"
			       "[proxy]\nports = 2\n",
			       &cfg, err, sizeof(err)),
	    0);
	config_store_opts(&cfg, &so);
	assert_int_equal(so.engine, STORE_ENGINE_THREADS);
	assert_int_equal(so.depth, 64);
	assert_int_equal(so.workers, 2);
	assert_false(so.direct_io);
	config_ccm_opts(&cfg, &co);
	assert_string_equal(co.node, "a");
	assert_string_equal(co.partner, "b");
	assert_int_equal(co.n_links, 2);
	assert_string_equal(co.links[1].name, "ic1");
	assert_string_equal(co.links[1].peer, "127.0.0.2:2");
	assert_int_equal(co.probe_ms, 7);
	assert_int_equal(co.balance, CCM_BALANCE_ROUND_ROBIN);
	config_monitor_opts(&cfg, &mo);
	assert_string_equal(mo.node_id, "a");
	assert_string_equal(mo.partner_id, "b");
	assert_string_equal(mo.partner_shelf, "/p");
	assert_int_equal(mo.n_links, 2);
	assert_string_equal(mo.link_names[0], "ic0");
	assert_int_equal(mo.lease_ms, 60);
	assert_true(mo.auto_giveback);
	config_proxy_opts(&cfg, &po);
	assert_string_equal(po.node, "a");
	assert_int_equal(po.n_ports, 2);
	config_nbd_opts(&cfg, true, &no);
	assert_string_equal(no.listen, "127.0.0.1:10810");
	assert_string_equal(no.name, "proxy");
	assert_int_equal(no.max_payload, 64 << 20);
	config_nbd_opts(&cfg, false, &no);
	assert_string_equal(no.listen, "127.0.0.1:10809");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_minimal),	    cmocka_unit_test(test_control_group),
	    cmocka_unit_test(test_links),	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_renamed_keys),    cmocka_unit_test(test_proxy_keys),
	    cmocka_unit_test(test_ccm_keys),	    cmocka_unit_test(test_monitor_keys),
	    cmocka_unit_test(test_mirror_keys),	    cmocka_unit_test(test_module_opts),
	    cmocka_unit_test(test_missing_file),    cmocka_unit_test(test_parse_size),
	    cmocka_unit_test(test_long_path_error), cmocka_unit_test(test_tls_keys),
	    cmocka_unit_test(test_metrics_keys),    cmocka_unit_test(test_service_address_keys),
	    cmocka_unit_test(test_hooks_keys),	    cmocka_unit_test(test_balance_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
