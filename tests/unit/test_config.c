/* Unit tests of the config schema: defaults, every value type, and errors
 * that name the file, the line and the key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

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
	assert_int_equal(cfg.ic.heartbeat_ms, 9);
	assert_int_equal(cfg.node.nvram_size, 8 << 20);
	assert_string_equal(cfg.node.nvram, "/l");
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
	assert_int_equal(parse_size("1G", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(parse_size("512M", &v), 0);
	assert_int_equal(v, 512ull << 20);
	assert_int_equal(parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("2GiB", &v), 0);
	assert_int_equal(v, 2ull << 30);
	assert_int_equal(parse_size("12X", &v), -EINVAL);
	assert_int_equal(parse_size("", &v), -EINVAL);
	assert_int_equal(parse_size("-1", &v), -EINVAL);
	assert_int_equal(parse_size("99999999999T", &v), -ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_minimal),	 cmocka_unit_test(test_links),
	    cmocka_unit_test(test_errors),	 cmocka_unit_test(test_renamed_keys),
	    cmocka_unit_test(test_missing_file), cmocka_unit_test(test_parse_size),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
