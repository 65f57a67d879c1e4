/**
 * @file json.h
 * The few json-c shortcuts every status and control reply uses, so that
 * a member is added the same way everywhere (and an unsigned counter is
 * never printed negative).
 */
#ifndef DUET_COMMON_JSON_H
#define DUET_COMMON_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

static inline void jobj_add_str(struct json_object *o, const char *key, const char *val)
{
	json_object_object_add(o, key, val ? json_object_new_string(val) : NULL);
}

/** Counters above INT64_MAX do not occur; json-c stores int64. */
static inline void jobj_add_u64(struct json_object *o, const char *key, uint64_t val)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)val));
}

static inline void jobj_add_i64(struct json_object *o, const char *key, int64_t val)
{
	json_object_object_add(o, key, json_object_new_int64(val));
}

static inline void jobj_add_bool(struct json_object *o, const char *key, bool val)
{
	json_object_object_add(o, key, json_object_new_boolean(val));
}

static inline void jobj_add_double(struct json_object *o, const char *key, double val)
{
	json_object_object_add(o, key, json_object_new_double(val));
}

/** An age in ms, or null when @p never_value (the thing never happened). */
static inline void jobj_add_age(struct json_object *o, const char *key, uint64_t ms,
				uint64_t never_value)
{
	json_object_object_add(o, key,
			       ms == never_value ? NULL : json_object_new_int64((int64_t)ms));
}

#endif
