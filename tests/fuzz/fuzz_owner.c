/* libFuzzer target of a volume's owner record (src/store/owner.c): any bytes
 * as the sector read from SHELF/volumes/NAME.owner, checked with and without
 * an expected uuid, and once more with its checksum made right (offset 12
 * of the 128-byte record) so that the fields behind it are reached. A record
 * that passes must name a valid owner. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/crc32c.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char uuid[] = "0123abcd-0123-4567-89ab-0123456789ab";
	static uint8_t buf[4096];
	char owner[16];
	uint64_t gen;
	uint32_t crc;

	if (size > sizeof(buf))
		return 0;
	memcpy(buf, data, size);
	for (int pass = 0; pass < 3; pass++) {
		if (pass == 2 && size >= 128) {
			memset(buf + 12, 0, 4);
			crc = crc32c(0, buf, 128);
			memcpy(buf + 12, &crc, 4);
		}
		memset(owner, 0x55, sizeof(owner));
		if (store_owner_parse(buf, size, pass ? uuid : NULL, owner, &gen) == 0) {
			size_t n = strnlen(owner, sizeof(owner));
			if (n == 0 || n == sizeof(owner))
				abort();
		}
	}
	return 0;
}
