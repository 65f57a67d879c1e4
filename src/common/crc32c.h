/**
 * @file crc32c.h
 * CRC32C (Castagnoli), for the on-disk and on-wire records of the NVRAM log
 * and the failover mailbox.
 */
#ifndef DUET_COMMON_CRC32C_H
#define DUET_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/** CRC32C chained like zlib's crc32: start with 0, feed the result back.
 * Uses the SSE4.2 instruction where the CPU has it. */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/** The same by the portable table, whatever the CPU (for tests). */
uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len);

#endif
