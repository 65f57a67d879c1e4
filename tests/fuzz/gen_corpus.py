#!/usr/bin/env python3
"""Write the seed corpus of fuzz_nbd into tests/fuzz/corpus/nbd/.

Each seed is: control byte, write-limit byte, client stream (see the
comment at the top of fuzz_nbd.c)."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "nbd")
IHAVEOPT = 0x49484156454F5054
REQ = 0x25609513


def opt(o, data=b""):
    return struct.pack(">QII", IHAVEOPT, o, len(data)) + data


def go(name, reqs=()):
    n = name.encode()
    return struct.pack(">I", len(n)) + n + struct.pack(">H", len(reqs)) + b"".join(
        struct.pack(">H", r) for r in reqs)


def meta(name, queries):
    n = name.encode()
    b = struct.pack(">I", len(n)) + n + struct.pack(">I", len(queries))
    for q in queries:
        b += struct.pack(">I", len(q)) + q.encode()
    return b


def req(typ, off=0, length=0, flags=0, cookie=1, payload=b""):
    return struct.pack(">IHHQQI", REQ, flags, typ, cookie, off, length) + payload


def cmds():
    return (req(1, 4096, 512, 1, 1, b"\xaa" * 512) + req(0, 4096, 512, 0, 2) +
            req(3, cookie=3) + req(4, 0, 8192, cookie=4) + req(6, 8192, 4096, 2, 5) +
            req(6, 0, 4096, 16, 6) + req(5, 0, 65536, cookie=7) +
            req(7, 0, 1 << 20, 0, 8) + req(7, 100, 1000, 8, 9) + req(0, 0, 4096, 4, 10) +
            req(2, cookie=11))


FLAGS = struct.pack(">I", 3)
seeds = {
    "handshake_all": bytes([0x70, 0]) + FLAGS + opt(3) + opt(6, go("disk", (0, 1, 2, 3))) +
    opt(9, meta("disk", [])) + opt(9, meta("disk", ["base:"])) + opt(8) +
    opt(10, meta("disk", ["base:allocation"])) + opt(5) + opt(99, b"x") +
    opt(7, go("disk", (3,))) + cmds(),
    "export_name": bytes([0x70, 0]) + struct.pack(">I", 1) + opt(1, b"disk") + cmds(),
    "abort": bytes([0x70, 0]) + FLAGS + opt(2),
    "go_unknown": bytes([0x70, 0]) + FLAGS + opt(7, go("nope")) + opt(7, go("ro")) +
    req(1, 0, 512, 0, 1, b"\0" * 512) + req(0, 0, 512),
    "structured_meta": bytes([0x71, 0]) + cmds(),
    "simple": bytes([0x72, 0]) + cmds(),
    "aligned": bytes([0x73, 0]) + cmds() + req(0, 100, 512) + req(1, 512, 100, 0, 2, b"y" * 100),
    "deferred": bytes([0x75, 0]) + cmds(),
    "held_small_reads": bytes([0x29, 0]) + cmds(),
    "partial_writes": bytes([0x71, 3]) + cmds(),
    "bad_magic": bytes([0x71, 0]) + b"\x12\x34" * 14,
    "errors": bytes([0x71, 0]) + req(0, 1 << 20, 1) + req(1, (1 << 20) - 1, 2, 0, 2, b"zz") +
    req(9) + req(0, 0, 512, 0x40) + req(3, 1, 1),
    "parsers": bytes([0x80]) + req(0, 0, 4096, 8) + struct.pack(">IBHB", 1 << 20, 9, 0x1ff, 3) +
    struct.pack(">QI", 4096, 3) * 4,
}
os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
