/**
 * @file byteorder.h
 * Loads and stores of fixed-width integers at any alignment, in big- or
 * little-endian order: the one way duet reads and writes wire and media
 * formats.
 *
 * Every wire struct is decoded field by field through these (never by
 * casting a buffer to a struct pointer and reading it in host order), so
 * an unaligned or hostile buffer is read the same way on every machine.
 */
#ifndef DUET_COMMON_BYTEORDER_H
#define DUET_COMMON_BYTEORDER_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#define BYTEORDER_ACCESSORS(bits)                                  \
	static inline uint##bits##_t get_be##bits(const void *p)   \
	{                                                          \
		uint##bits##_t v;                                  \
		memcpy(&v, p, sizeof(v));                          \
		return be##bits##toh(v);                           \
	}                                                          \
	static inline uint##bits##_t get_le##bits(const void *p)   \
	{                                                          \
		uint##bits##_t v;                                  \
		memcpy(&v, p, sizeof(v));                          \
		return le##bits##toh(v);                           \
	}                                                          \
	static inline void put_be##bits(void *p, uint##bits##_t v) \
	{                                                          \
		v = htobe##bits(v);                                \
		memcpy(p, &v, sizeof(v));                          \
	}                                                          \
	static inline void put_le##bits(void *p, uint##bits##_t v) \
	{                                                          \
		v = htole##bits(v);                                \
		memcpy(p, &v, sizeof(v));                          \
	}

BYTEORDER_ACCESSORS(16)
BYTEORDER_ACCESSORS(32)
BYTEORDER_ACCESSORS(64)

#undef BYTEORDER_ACCESSORS

#endif
