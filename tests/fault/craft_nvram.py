#!/usr/bin/env python3
"""Forge an NVRAM log or partner image header (tests of issue 12).

    craft_nvram.py FILE half-size N     both header slots: a valid CRC, a high
                                        gen, half_size = N (the rest kept)

The header layout is docs/MIRROR.md's: slot 0 at 0, slot 1 at 512, 128
bytes each, CRC32C of the slot with its crc field (offset 4) zero."""
import struct
import sys

SLOT_STRIDE, SLOT_BYTES = 512, 128


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def forge(path, half_size):
    with open(path, "r+b") as f:
        slot = bytearray(f.read(SLOT_BYTES))
        if struct.unpack_from("<I", slot, 0)[0] != 0x48564E44:
            f.seek(SLOT_STRIDE)
            slot = bytearray(f.read(SLOT_BYTES))
        if struct.unpack_from("<I", slot, 0)[0] != 0x48564E44:
            sys.exit(f"{path}: no header to forge from")
        struct.pack_into("<Q", slot, 16, 1 << 62)  # gen: newer than any real one
        struct.pack_into("<Q", slot, 32, half_size)
        struct.pack_into("<I", slot, 4, 0)
        struct.pack_into("<I", slot, 4, crc32c(bytes(slot)))
        for i in range(2):
            f.seek(i * SLOT_STRIDE)
            f.write(slot)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[2] != "half-size":
        sys.exit(__doc__)
    forge(sys.argv[1], int(sys.argv[3], 0))
