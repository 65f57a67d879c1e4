/*
 * A RAM-backed NBD backend with a hole map (4 KiB blocks), for tests, the
 * fuzzer and the nbd-ramdisk tool. Completions can be inline, deferred to
 * a posted task (in reverse order), or held until the test releases them.
 */
#ifndef DUET_TESTS_RAMDISK_H
#define DUET_TESTS_RAMDISK_H

#include <stdbool.h>
#include <stdint.h>

#include "nbd/nbd.h"

struct loop;
struct ramdisk;

#define RAMDISK_BLOCK 4096u

enum ramdisk_mode {
	RAMDISK_INLINE, /* nbd_io_done from within submit */
	RAMDISK_DEFER,	/* from a posted task, newest first */
	RAMDISK_HOLD,	/* when ramdisk_release() is called */
};

struct ramdisk_stats {
	uint64_t ops[8]; /* by enum nbd_cmd_type */
	uint16_t last_flags[8];
	uint64_t opens, closes;
};

extern const struct nbd_backend_ops ramdisk_ops;

int ramdisk_create(struct loop *loop, struct ramdisk **out);
void ramdisk_destroy(struct ramdisk *rd);

/** Add an export; its info (all features on) can be changed after. */
int ramdisk_add(struct ramdisk *rd, const char *name, uint64_t size, bool read_only,
		const char *desc);
struct nbd_export_info *ramdisk_info(struct ramdisk *rd, const char *name);
/** The bytes of an export, to check or preset from a test. */
uint8_t *ramdisk_data(struct ramdisk *rd, const char *name);

void ramdisk_set_mode(struct ramdisk *rd, enum ramdisk_mode mode);
/** Fail the next @p count ios with @p err (a negative errno). */
void ramdisk_fail_next(struct ramdisk *rd, int err, unsigned count);
/** Held ios. */
unsigned ramdisk_held(const struct ramdisk *rd);
/** Complete every held io, newest first when @p reverse. */
void ramdisk_release(struct ramdisk *rd, bool reverse);
void ramdisk_get_stats(const struct ramdisk *rd, struct ramdisk_stats *st);

#endif
