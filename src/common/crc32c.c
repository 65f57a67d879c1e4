/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI,
 * ext4 and NVMe: the SSE4.2 crc32 instruction where the CPU has it, else a
 * byte-wise table.
 *
 * The instruction has a latency of three cycles and a throughput of one,
 * so one dependent chain uses a third of it. Long buffers are cut into
 * three blocks whose CRCs run interleaved; the CRC of a block followed by
 * another is shift(crc_a, len_b) ^ crc_b (CRC is linear), where shift
 * appends len_b zero bytes, done with four 256-entry tables per block size. */
#include "common/crc32c.h"

#include <stdbool.h>
#include <string.h>

#define POLY	  0x82f63b78u
#define LONG_BLK  8192u /* bytes per stream for buffers >= 3 * LONG_BLK */
#define SHORT_BLK 256u	/* bytes per stream for buffers >= 3 * SHORT_BLK */

static uint32_t table[256];
static uint32_t shift_long[4][256], shift_short[4][256];
#if defined(__x86_64__)
static bool have_sse42;
#endif

/* Raw register update for @p len bytes (no pre/post inversion). */
static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

/* Tables of the linear map "register after @p n zero bytes". */
static void shift_init(uint32_t t[4][256], size_t n)
{
	uint32_t basis[32];

	for (unsigned b = 0; b < 32; b++) {
		uint32_t c = 1u << b;
		for (size_t i = 0; i < n; i++)
			c = table[c & 0xff] ^ (c >> 8);
		basis[b] = c;
	}
	for (unsigned k = 0; k < 4; k++) {
		for (unsigned v = 0; v < 256; v++) {
			uint32_t r = 0;
			for (unsigned b = 0; b < 8; b++)
				if (v & (1u << b))
					r ^= basis[8 * k + b];
			t[k][v] = r;
		}
	}
}

static inline uint32_t shift(uint32_t t[4][256], uint32_t c)
{
	return t[0][c & 0xff] ^ t[1][(c >> 8) & 0xff] ^ t[2][(c >> 16) & 0xff] ^ t[3][c >> 24];
}

/* Once, before main: no lazy initialisation racing between threads. */
__attribute__((constructor)) static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (POLY & (0u - (c & 1u)));
		table[i] = c;
	}
	shift_init(shift_long, LONG_BLK);
	shift_init(shift_short, SHORT_BLK);
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_sse42 = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__)
#include <nmmintrin.h>

__attribute__((target("sse4.2"))) static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

__attribute__((target("sse4.2"))) static uint64_t crc3(uint64_t c, const uint8_t **pp, size_t *lenp,
						       size_t blk, uint32_t t[4][256])
{
	const uint8_t *p = *pp;
	size_t len = *lenp;

	while (len >= 3 * blk) {
		uint64_t c1 = 0, c2 = 0;
		const uint8_t *end = p + blk;
		do {
			c = _mm_crc32_u64(c, load64(p));
			c1 = _mm_crc32_u64(c1, load64(p + blk));
			c2 = _mm_crc32_u64(c2, load64(p + 2 * blk));
			p += 8;
		} while (p < end);
		c = shift(t, (uint32_t)c) ^ (uint32_t)c1;
		c = shift(t, (uint32_t)c) ^ (uint32_t)c2;
		p += 2 * blk;
		len -= 3 * blk;
	}
	*pp = p;
	*lenp = len;
	return c;
}

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const uint8_t *p,
							    size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		c = _mm_crc32_u8((uint32_t)c, *p++);
		len--;
	}
	c = crc3(c, &p, &len, LONG_BLK, shift_long);
	c = crc3(c, &p, &len, SHORT_BLK, shift_short);
	while (len >= 8) {
		c = _mm_crc32_u64(c, load64(p));
		p += 8;
		len -= 8;
	}
	while (len--)
		c = _mm_crc32_u8((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
#if defined(__x86_64__)
	if (have_sse42)
		return ~crc_sse42(crc, p, len);
#endif
	return ~crc_table(crc, p, len);
}

uint32_t crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
	return ~crc_table(~crc, buf, len);
}
