/* What the shelf keeps on disk besides the data: the format marker and one
 * JSON metadata file per volume, with the checks of every name, owner, size
 * and uuid found there. Metadata is only ever replaced atomically
 * (temporary file, fsync, rename, fsync of the directory). */
#define LOG_MODULE "store"
#include "common/log.h"
#include "common/util.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SHELF_FORMAT   1
#define VOLUME_FORMAT  2 /* 2: may carry an allow list (format 1 never does) */
#define SHELF_FILE     "shelf.json"
#define META_MAX_BYTES 65536
#define SIZE_MAX_BYTES (UINT64_C(1) << 62)

static bool name_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

int store_ident_valid(const char *name, size_t max)
{
	size_t n;

	if (!name || !name[0] || name[0] == '.')
		return -EINVAL;
	for (n = 0; name[n]; n++) {
		if (n + 1 >= max || !name_char_ok(name[n]))
			return -EINVAL;
	}
	return 0;
}

int store_name_valid(const char *name)
{
	return store_ident_valid(name, STORE_NAME_MAX);
}

int store_make_uuid(char out[STORE_UUID_LEN])
{
	uint8_t b[16];
	int rc = util_random_bytes(b, sizeof(b));

	if (rc < 0)
		return rc;
	b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
	b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(out, STORE_UUID_LEN,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
	return 0;
}

static bool uuid_valid(const char *u)
{
	if (strlen(u) != STORE_UUID_LEN - 1)
		return false;
	for (int i = 0; u[i]; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? u[i] != '-'
			 : !((u[i] >= '0' && u[i] <= '9') || (u[i] >= 'a' && u[i] <= 'f')))
			return false;
	}
	return true;
}

/* Replace @p dirfd/@p name with @p text so that a crash leaves either the old
 * or the new file, never a mix: temporary file, fsync, rename, fsync dir. */
static int write_atomic(int dirfd, const char *name, const char *text)
{
	char tmp[STORE_NAME_MAX + 32];
	size_t len = strlen(text), off = 0;
	int fd, rc = 0;

	snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
	fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		LOG_ERROR("create %s: %s", tmp, strerror(errno));
		return rc;
	}
	while (off < len) {
		ssize_t n = write(fd, text + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			LOG_ERROR("write %s: %s", tmp, strerror(errno));
			goto err_unlink;
		}
		off += (size_t)n;
	}
	if (fsync(fd) < 0) {
		rc = -errno;
		LOG_ERROR("fsync %s: %s", tmp, strerror(errno));
		goto err_unlink;
	}
	close(fd);
	fd = -1;
	if (renameat(dirfd, tmp, dirfd, name) < 0) {
		rc = -errno;
		LOG_ERROR("rename %s: %s", tmp, strerror(errno));
		goto err_unlink;
	}
	if (fsync(dirfd) < 0) {
		rc = -errno;
		LOG_ERROR("fsync of the directory of %s: %s", name, strerror(errno));
		return rc;
	}
	return 0;

err_unlink:
	if (fd >= 0)
		close(fd);
	unlinkat(dirfd, tmp, 0);
	return rc;
}

/* Read a small JSON file under @p dirfd. @return 0, -ENOENT, or -EINVAL when
 * it is not a JSON object. */
static int read_json(int dirfd, const char *name, json_object **out)
{
	char *buf;
	ssize_t n;
	size_t len = 0;
	int fd, rc = 0;
	json_tokener *tok;
	json_object *obj;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	buf = malloc(META_MAX_BYTES + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (len < META_MAX_BYTES && (n = read(fd, buf + len, META_MAX_BYTES - len)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			goto out;
		}
		len += (size_t)n;
	}
	buf[len] = 0;
	tok = json_tokener_new();
	if (!tok) {
		rc = -ENOMEM;
		goto out;
	}
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	if (!obj || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_is_type(obj, json_type_object)) {
		json_object_put(obj);
		rc = -EINVAL;
	} else {
		*out = obj;
	}
	json_tokener_free(tok);
out:
	free(buf);
	close(fd);
	return rc;
}

static const char *json_str(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static bool json_int(json_object *o, const char *key, int64_t *out)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_int))
		return false;
	errno = 0;
	*out = json_object_get_int64(v);
	return errno == 0;
}

int store_size_valid(uint64_t size)
{
	if (size == 0 || size % 512 || size > SIZE_MAX_BYTES)
		return -EINVAL;
	return 0;
}

/* ---- the shelf marker ---- */

int store_shelf_marker(struct store *s)
{
	json_object *o = NULL;
	int64_t format;
	const char *uuid;
	int rc = read_json(s->dirfd, SHELF_FILE, &o);

	if (rc == -ENOENT) {
		char text[128];

		rc = store_make_uuid(s->shelf_uuid);
		if (rc < 0)
			return rc;
		snprintf(text, sizeof(text), "{\"format\": %d, \"uuid\": \"%s\"}\n", SHELF_FORMAT,
			 s->shelf_uuid);
		return write_atomic(s->dirfd, SHELF_FILE, text);
	}
	if (rc < 0) {
		LOG_ERROR("%s/%s: %s", s->dir, SHELF_FILE,
			  rc == -EINVAL ? "not a JSON object" : strerror(-rc));
		return rc;
	}
	uuid = json_str(o, "uuid");
	if (!json_int(o, "format", &format) || !uuid || !uuid_valid(uuid)) {
		LOG_ERROR("%s/%s: missing or bad format/uuid", s->dir, SHELF_FILE);
		rc = -EINVAL;
	} else if (format > SHELF_FORMAT) {
		LOG_ERROR("%s: shelf format %" PRId64 " is newer than this program (%d)", s->dir,
			  format, SHELF_FORMAT);
		rc = -EINVAL;
	} else {
		snprintf(s->shelf_uuid, sizeof(s->shelf_uuid), "%s", uuid);
	}
	json_object_put(o);
	return rc;
}

/* ---- volumes ---- */

int store_meta_write(struct store *s, const struct store_volume *v)
{
	char file[STORE_NAME_MAX + 8];
	json_object *o = json_object_new_object();
	const char *text;
	char *line;
	size_t len;
	int rc;

	if (!o)
		return -ENOMEM;
	/* Format 1 without an allow list: older nodes still read it; one with
	 * a list is format 2, which they refuse rather than serve to all. */
	json_object_object_add(o, "format", json_object_new_int(v->allow.n ? VOLUME_FORMAT : 1));
	json_object_object_add(o, "name", json_object_new_string(v->name));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)v->size));
	json_object_object_add(o, "uuid", json_object_new_string(v->uuid));
	json_object_object_add(o, "owner", json_object_new_string(v->owner));
	json_object_object_add(o, "created", json_object_new_int64(v->created));
	if (v->move_to[0]) {
		json_object *mv = json_object_new_object();
		json_object_object_add(mv, "to", json_object_new_string(v->move_to));
		json_object_object_add(mv, "state", json_object_new_string("copying"));
		json_object_object_add(o, "move", mv);
	}
	if (v->allow.n) {
		json_object *a = json_object_new_array();
		for (unsigned i = 0; i < v->allow.n; i++)
			json_object_array_add(a, json_object_new_string(v->allow.id[i]));
		json_object_object_add(o, "allow", a);
	}
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
						     JSON_C_TO_STRING_NOSLASHESCAPE);
	len = strlen(text);
	line = malloc(len + 2);
	if (!line) {
		json_object_put(o);
		return -ENOMEM;
	}
	memcpy(line, text, len);
	memcpy(line + len, "\n", 2);
	snprintf(file, sizeof(file), "%s.meta", v->name);
	rc = write_atomic(s->voldirfd, file, line);
	free(line);
	json_object_put(o);
	return rc;
}

int store_allow_id_valid(const char *id)
{
	size_t len = id ? strlen(id) : 0;

	if (len == 0 || len >= STORE_ALLOW_ID_LEN)
		return -EINVAL;
	for (const char *p = id; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -EINVAL;
	return 0;
}

/* The optional "allow" array of NAME.meta: a bad one fails the volume
 * (refused rather than served to everyone). */
static int meta_read_allow(json_object *o, const char *name, struct store_allow *a)
{
	json_object *arr;
	size_t n;

	a->n = 0;
	if (!json_object_object_get_ex(o, "allow", &arr))
		return 0;
	n = json_object_is_type(arr, json_type_array) ? json_object_array_length(arr) : SIZE_MAX;
	if (n == 0 || n > STORE_ALLOW_MAX) {
		LOG_ERROR("volume %s: bad allow list (want 1 to %d identities)", name,
			  STORE_ALLOW_MAX);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_array_get_idx(arr, i);
		const char *id =
		    json_object_is_type(e, json_type_string) ? json_object_get_string(e) : NULL;
		if (store_allow_id_valid(id) < 0) {
			LOG_ERROR("volume %s: bad identity in the allow list", name);
			return -EINVAL;
		}
		snprintf(a->id[i], sizeof(a->id[i]), "%s", id);
	}
	a->n = (unsigned)n;
	return 0;
}

/* The optional "move" record of NAME.meta ({"to": NODE, "state":
 * "copying"}): a copy on NODE's shelf was being made (src/node/move.c
 * decides after a crash whether it committed). A bad one fails the volume. */
static int meta_read_move(json_object *o, const char *name, struct store_volume *v)
{
	json_object *mv;
	const char *to;

	v->move_to[0] = '\0';
	if (!json_object_object_get_ex(o, "move", &mv))
		return 0;
	to = json_object_is_type(mv, json_type_object) ? json_str(mv, "to") : NULL;
	if (!to || store_ident_valid(to, STORE_OWNER_MAX) < 0) {
		LOG_ERROR("volume %s: bad move record", name);
		return -EINVAL;
	}
	snprintf(v->move_to, sizeof(v->move_to), "%s", to);
	return 0;
}

/* Parse NAME.meta into @p v. Every problem is logged here. */
int store_meta_read(struct store *s, const char *name, struct store_volume *v)
{
	char file[STORE_NAME_MAX + 8];
	json_object *o = NULL;
	const char *jname, *uuid, *owner;
	int64_t format, size, created = 0;
	int rc;

	snprintf(file, sizeof(file), "%s.meta", name);
	rc = read_json(s->voldirfd, file, &o);
	if (rc < 0) {
		LOG_ERROR("volume %s: %s: %s", name, file,
			  rc == -EINVAL ? "not a JSON object" : strerror(-rc));
		return rc;
	}
	rc = -EINVAL;
	jname = json_str(o, "name");
	uuid = json_str(o, "uuid");
	owner = json_str(o, "owner");
	if (!json_int(o, "format", &format) || format > VOLUME_FORMAT) {
		LOG_ERROR("volume %s: missing or unsupported format", name);
		goto out;
	}
	if (!jname || strcmp(jname, name) != 0) {
		LOG_ERROR("volume %s: name in %s does not match the file", name, file);
		goto out;
	}
	if (!json_int(o, "size", &size) || size < 0 || store_size_valid((uint64_t)size) < 0) {
		LOG_ERROR("volume %s: missing or bad size", name);
		goto out;
	}
	if (!uuid || !uuid_valid(uuid)) {
		LOG_ERROR("volume %s: missing or bad uuid", name);
		goto out;
	}
	if (!owner || store_ident_valid(owner, STORE_OWNER_MAX) < 0) {
		LOG_ERROR("volume %s: missing or bad owner", name);
		goto out;
	}
	json_int(o, "created", &created);
	if (meta_read_allow(o, name, &v->allow) < 0 || meta_read_move(o, name, v) < 0)
		goto out;
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->uuid, sizeof(v->uuid), "%s", uuid);
	snprintf(v->owner, sizeof(v->owner), "%s", owner);
	v->size = (uint64_t)size;
	v->created = created;
	rc = 0;
out:
	json_object_put(o);
	return rc;
}

/* Index of @p name in the sorted array, or where it would go (*found false). */
