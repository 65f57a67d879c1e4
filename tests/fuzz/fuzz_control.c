/*
 * libFuzzer target for control requests (src/node/control_req.c): the
 * input is what a local client writes on the control socket up to its
 * newline, parsed as duetd parses it, with the arguments of the commands
 * that take some checked as the commands check them.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/log.h"
#include "node/node_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct json_object *req;
	const char *cmd, *name;
	uint64_t vsize;
	char err[256];

	if (size > 64 * 1024)
		return 0; /* the socket closes a longer request */
	char *line = malloc(size + 1);
	if (!line)
		return 0;
	memcpy(line, data, size);
	line[size] = '\0';
	if (node_control_parse(line, size, &req, &cmd, err, sizeof(err)) == 0) {
		if (!cmd || strnlen(cmd, size + 1) > size)
			abort();
		if (node_control_volume_args(req, &name, &vsize, err, sizeof(err)) == 0 &&
		    (vsize == 0 || !name))
			abort();
		(void)node_control_force(req);
		json_object_put(req);
	} else if (strnlen(err, sizeof(err)) >= sizeof(err)) {
		abort();
	}
	free(line);
	return 0;
}
