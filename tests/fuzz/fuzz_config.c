/*
 * libFuzzer target for the INI config (src/config): the input is a config
 * file's text, parsed against the schema and, when it loads, turned into
 * every module's options (what duetd does before anything starts). The
 * name is long sometimes (the error path once read past a short buffer):
 * byte 0 picks it; the rest is the text.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "ccm/ccm.h"
#include "config/config.h"
#include "mirror/mirror.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "proxy/proxy.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Every module's options from a loaded config, as duetd builds them. */
static void fill_all(const struct duet_config *cfg)
{
	static struct store_opts so;
	static struct ccm_opts co;
	static struct mirror_opts mo;
	static struct monitor_opts no;
	static struct proxy_opts po;
	static struct nbd_server_opts bo;

	config_store_opts(cfg, &so);
	config_ccm_opts(cfg, &co);
	config_mirror_opts(cfg, "/x.nvram", &mo);
	config_monitor_opts(cfg, &no);
	config_proxy_opts(cfg, &po);
	config_nbd_opts(cfg, false, &bo);
	config_nbd_opts(cfg, true, &bo);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct duet_config cfg;
	static char name[1200];
	char err[768];

	if (size < 1)
		return 0;
	log_set_level(LOG_LEVEL_ERROR);
	size_t nlen = (size_t)(data[0] & 7) * 150 + 5;
	memset(name, 'p', nlen);
	memcpy(name, "/c", 2);
	name[nlen] = '\0';
	char *text = malloc(size);
	if (!text)
		return 0;
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	if (config_load_string(name, text, &cfg, err, sizeof(err)) == 0)
		fill_all(&cfg);
	else if (strnlen(err, sizeof(err)) >= sizeof(err))
		abort();
	free(text);
	return 0;
}
