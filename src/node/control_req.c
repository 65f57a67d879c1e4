/* The control socket's request parser: one line of JSON from a local
 * client, checked before any command sees it.
 *
 * Rule: no node, no I/O, no state: what a client sends is parsed here the
 * same way by duetd and by the fuzzer (tests/fuzz/fuzz_control.c), and a
 * command only ever reads arguments this file has checked the type of. */
#define LOG_MODULE "control"
#include "node/node_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "common/control.h"

int node_control_parse(const char *line, size_t len, struct json_object **req, const char **cmd,
		       char *err, size_t errlen)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *r = NULL, *c;

	*req = NULL;
	*cmd = NULL;
	if (!tok) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	/* The whole line and nothing after the object: no trailing junk. */
	if (memchr(line, '\0', len) == NULL)
		r = json_tokener_parse_ex(tok, line, (int)len);
	if (r && json_tokener_get_error(tok) == json_tokener_success &&
	    tok->char_offset < (int)len) {
		for (size_t i = (size_t)tok->char_offset; i < len; i++)
			if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r') {
				json_object_put(r);
				r = NULL;
				break;
			}
	}
	json_tokener_free(tok);
	if (!r || !json_object_is_type(r, json_type_object) ||
	    !json_object_object_get_ex(r, "cmd", &c) || !json_object_is_type(c, json_type_string)) {
		json_object_put(r);
		snprintf(err, errlen, "malformed request: want {\"cmd\": ...}");
		return -EINVAL;
	}
	/* The protocol's version (docs/CONTROL.md): none is 1, the duetctl of
	 * before; one this node does not speak is refused, naming ours. */
	struct json_object *v;
	if (json_object_object_get_ex(r, "version", &v) &&
	    (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 1 ||
	     json_object_get_int64(v) > DUET_CONTROL_VERSION)) {
		snprintf(err, errlen,
			 "unsupported control protocol version %.32s: this node speaks %d",
			 json_object_to_json_string(v), DUET_CONTROL_VERSION);
		json_object_put(r);
		return -EPROTO;
	}
	*req = r;
	*cmd = json_object_get_string(c);
	return 0;
}

int node_control_volume_args(struct json_object *req, const char **name, uint64_t *size, char *err,
			     size_t errlen)
{
	struct json_object *n, *s;

	if (!json_object_object_get_ex(req, "name", &n) ||
	    !json_object_is_type(n, json_type_string) ||
	    !json_object_object_get_ex(req, "size", &s) || !json_object_is_type(s, json_type_int) ||
	    json_object_get_int64(s) <= 0) {
		snprintf(err, errlen, "volume_create wants a name and a positive size");
		return -EINVAL;
	}
	*name = json_object_get_string(n);
	*size = (uint64_t)json_object_get_int64(s);
	return 0;
}

bool node_control_force(struct json_object *req)
{
	struct json_object *f;

	return json_object_object_get_ex(req, "force", &f) && json_object_get_boolean(f);
}
