/*
 * libFuzzer target for the failover monitor's records (src/monitor/
 * record.c): the mailbox's liveness sector and takeover mark (on the
 * shared shelves: the partner writes the mark, and a damaged disk gives
 * anything) and the heartbeat record the partner RDMA-writes. The input
 * is the sector's bytes (zero-padded to the sector, as a read returns a
 * whole one); byte 0 picks which decoder, and bit 7 recomputes the CRC at
 * its place (bytes 60..63 of a record, CRC32C of bytes 0..59) so that the
 * field checks behind it are reached.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/byteorder.h"
#include "common/crc32c.h"
#include "common/log.h"
#include "monitor/monitor_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The record CRC as record.c seals it: CRC32C of bytes 0..59 at 60. */
static void fix_crc(uint8_t *b)
{
	put_le32(b + 60, crc32c(0, b, 60));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t sector[MONITOR_SECTOR];
	struct monitor_alive a;
	struct monitor_mark m;

	if (size < 1)
		return 0;
	log_set_level(LOG_LEVEL_ERROR);
	size_t n = size - 1 < sizeof(sector) ? size - 1 : sizeof(sector);
	memset(sector, 0, sizeof(sector));
	memcpy(sector, data + 1, n);
	if (data[0] & 0x80) {
		fix_crc(sector);
		fix_crc(sector + MONITOR_REC_SIZE);
	}
	switch (data[0] & 3) {
	case 0:
		monitor_alive_sector_decode(sector, &a);
		break;
	case 1:
		monitor_mark_decode(sector, &m);
		break;
	case 2:
		monitor_alive_decode(sector, MONITOR_REC_HEARTBEAT, &a);
		break;
	default:
		monitor_alive_decode(sector, MONITOR_REC_ALIVE, &a);
		monitor_alive_decode(sector, (enum monitor_rec_kind)(data[0] >> 2), &a);
		break;
	}
	return 0;
}
