#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets other than fuzz_nbd
(gen_corpus.py writes that one) into tests/fuzz/corpus/<target>/.

Each seed starts with the target's control byte (see the comment at the
top of each fuzz_*.c); the layouts are those of the wire structs in
src/*/X_int.h, written out here by hand so that the seeds do not depend on
the code under test."""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- nvram (src/mirror/mirror_int.h) ----
VOL = bytes(range(0x10, 0x20))


def nv_header(size, half, log_id=7, cp=0, gen=1, flags=1):
    b = bytearray(128)
    struct.pack_into("<IIHHIQQQQQII", b, 0, 0x48564E44, 0, 1, 0, 4096, gen, size, half,
                     log_id, cp, flags, 64)
    b[64:65] = b"a"  # node
    struct.pack_into("<I", b, 4, crc32c(bytes(b)))
    return bytes(b)


def nv_rec(seq, typ, off, length, data=b"", log_id=7):
    h = bytearray(64)
    struct.pack_into("<IIQQ16sQQIHH", h, 0, 0x52564E44, 0, seq, log_id, VOL, off, length,
                     len(data), typ, 0)
    crc = crc32c(bytes(h) + data)
    struct.pack_into("<I", h, 4, crc)
    r = bytes(h) + data
    return r + b"\0" * ((-len(r)) % 64)


def nv_image(size=16384, recs0=(), recs1=(), half=None, **kw):
    half = half if half is not None else ((size - 4096) // 2) & ~4095
    img = bytearray(size)
    h = nv_header(size, half, **kw)
    img[0:128] = h
    img[512:640] = h
    p = 4096
    for r in recs0:
        img[p:p + len(r)] = r
        p += len(r)
    p = 4096 + half
    for r in recs1:
        img[p:p + len(r)] = r
        p += len(r)
    return bytes(img)


def nvram():
    w0 = nv_rec(1, 1, 0, 512, bytes(range(256)) * 2)
    z = nv_rec(2, 2, 4096, 8192)
    t = nv_rec(3, 3, 65536, 4096)
    w4 = nv_rec(4, 1, 1 << 19, 100, b"x" * 100)
    write("nvram", "valid", b"\x00" + nv_image(recs0=(w0, z, t), recs1=(w4,)))
    write("nvram", "valid_fixup", b"\x07" + nv_image(recs0=(w0, z, t), recs1=(w4,)))
    write("nvram", "checkpointed", b"\x00" + nv_image(recs0=(w0, z), cp=2))
    write("nvram", "header_only", b"\x04" + nv_image()[:4096])
    torn = bytearray(nv_image(recs0=(w0, z, t)))
    torn[4096 + 64 + 10] ^= 0xFF
    write("nvram", "torn", b"\x00" + bytes(torn))
    write("nvram", "gap", b"\x00" + nv_image(recs0=(w0,), recs1=(nv_rec(9, 1, 0, 4, b"abcd"),)))
    write("nvram", "half_wrap", b"\x00" + nv_image(half=1 << 63)[:16384])
    write("nvram", "other_log", b"\x00" + nv_image(recs0=(nv_rec(1, 1, 0, 4, b"abcd", 8),)))
    write("nvram", "bad_major", b"\x01" + nv_image()[:4096].replace(b"\x01\x00\x00\x00\x00\x10", b"\x02\x00\x00\x00\x00\x10", 1))


# ---- ccm (src/ccm/ccm_int.h) ----
def msg(typ, payload=b"", port=0, seq=1, ack=0):
    return struct.pack("<IHHIIQQQQ16s", 0x324D4344, typ, 0, port, len(payload), 0, seq, ack,
                       1, b"\0" * 16) + payload


def ccm():
    pi = bytearray(256)
    struct.pack_into("<HHIQ16s64sIIQQII", pi, 0, 2, 0, 1, 0x1234, b"b", b"duet", 1, 1, 0x55,
                     312, 16384, 0)
    pi[136:136 + 3] = b"ic0"
    write("ccm", "peer_info", b"\x04" + msg(2, bytes(pi)))
    add = struct.pack("<32sII", b"fz", 1, 0) + struct.pack("<IIQQ", 1, 0, 0x777, 8192)
    write("ccm", "client_add", b"\x04" + msg(3, add, seq=2))
    ref = struct.pack("<32sII", b"fz", 1, 0)
    write("ccm", "client_ack", b"\x04" + msg(4, ref, seq=3))
    write("ccm", "client_del", b"\x04" + msg(5, ref, seq=4))
    write("ccm", "setup_done", b"\x04" + msg(6, seq=5))
    write("ccm", "fence", b"\x04" + msg(9, struct.pack("<IIQ", 0, 0, 3), seq=6))
    write("ccm", "ack", b"\x04" + msg(1, ack=3))
    write("ccm", "data", b"\x04" + msg(16, b"hello", port=1, seq=1))
    write("ccm", "notify", b"\x04" + msg(17, struct.pack("<QQQ", 0, 8, 1), port=1, seq=2))
    write("ccm", "data_big", b"\x04" + msg(16, b"\xab" * 16384, port=1, seq=3))
    write("ccm", "unauth", b"\x00" + msg(16, b"forged", port=1))
    slot = bytearray(256)
    struct.pack_into("<QQHHIQ16s64s", slot, 0, 5, 0x544F4C5354455544, 2, 0, 1, 0x99, b"b",
                     b"duet")
    struct.pack_into("<Q", slot, 248, 5)
    write("ccm", "slot_hello", b"\x05" + bytes(slot))
    boot = bytearray(256)
    struct.pack_into("<QQHHIQ16s64s", boot, 0, 9, 0x544F4F4254455544, 2, 0, 2, 0x77, b"b",
                     b"duet")
    struct.pack_into("<Q", boot, 248, 9)
    write("ccm", "boot_session", b"\x06" + bytes(boot))
    write("ccm", "boot_snapshot", b"\x03" + bytes(boot))


# ---- proxy (src/proxy/proxy_int.h) ----
def px_hdr(t, flags=0):
    return struct.pack("<IHH", 0x31585044, t, flags)


def proxy():
    hello = px_hdr(1) + struct.pack("<IIQQQ", 1, 0, 0x1111, 1 << 20, 1 << 20)
    write("proxy", "hello", hello)
    req = px_hdr(3) + struct.pack("<IHHQQQIIQ", 0, 1, 0, 0x1111, 1, 0, 4096, 0, 0)
    write("proxy", "req_write", req)
    reqi = px_hdr(3, 4) + struct.pack("<IHHQQQIIQ", 0, 1, 0, 0x1111, 2, 512, 8, 0, 0) + b"12345678"
    write("proxy", "req_write_inline", reqi)
    write("proxy", "req_read", px_hdr(3, 4) + struct.pack("<IHHQQQIIQ", 0, 0, 0, 0x1111, 3, 0, 512, 0, 0))
    write("proxy", "req_status", px_hdr(3) + struct.pack("<IHHQQQIIQ", 0, 7, 0, 0x1111, 4, 0, 1 << 20, 16, 0))
    rep = px_hdr(4, 4) + struct.pack("<iIQQII", 0, 0, 0x1111, 3, 4, 0) + b"data"
    write("proxy", "rep_read", rep)
    reps = px_hdr(4) + struct.pack("<iIQQII", 0, 2, 0x1111, 4, 0, 0) + struct.pack("<QII", 4096, 0, 0) + struct.pack("<QII", 8192, 3, 0)
    write("proxy", "rep_status", reps)
    write("proxy", "rep_error", px_hdr(4) + struct.pack("<iIQQII", -5, 0, 0x1111, 5, 0, 0))
    vol = struct.pack("<IIQII64s", 0, 0x1FF, 1 << 30, 512, 4096, b"vol-a")
    write("proxy", "vols", px_hdr(2, 24) + struct.pack("<IIQ", 1, 0, 0x2222) + vol)
    recs = b""
    for m in (req, rep):
        recs += struct.pack("<II", len(m), 0) + m + b"\0" * ((-len(m)) % 8)
    write("proxy", "batch", px_hdr(5) + struct.pack("<II", 2, 0) + recs)


# ---- mbox (src/monitor/record.c) ----
def rec(kind, body):
    b = bytearray(64)
    struct.pack_into("<IHH", b, 0, 0x4D425544, 1, kind)
    b[8:8 + len(body)] = body
    struct.pack_into("<I", b, 60, crc32c(bytes(b[:60])))
    return bytes(b)


def mbox():
    alive = b"a".ljust(16, b"\0") + struct.pack("<QQQQBB", 3, 10, 0, 0, 0, 1)
    lease = b"a".ljust(16, b"\0") + struct.pack("<QQIIH", 3, 10, 200, 50, 1)
    write("mbox", "sector", b"\x00" + rec(1, alive) + rec(4, lease))
    write("mbox", "sector_old", b"\x00" + rec(1, alive))
    mark = b"b".ljust(16, b"\0") + b"a".ljust(16, b"\0") + struct.pack("<QQBB", 2, 0, 1, 0)
    write("mbox", "mark", b"\x01" + rec(2, mark))
    write("mbox", "heartbeat", b"\x02" + rec(3, alive))
    write("mbox", "blank", b"\x00" + b"\0" * 128)
    write("mbox", "fixup", b"\x80" + rec(1, alive)[:60])


# ---- control (src/node/control_req.c) ----
def control():
    for name, line in {
        "status": b'{"cmd": "status"}',
        "create": b'{"cmd": "volume_create", "name": "vol-a", "size": 1073741824}',
        "takeover": b'{"cmd": "takeover", "force": true}',
        "bad_size": b'{"cmd": "volume_create", "name": "v", "size": -1}',
        "nested": b'{"cmd": "status", "x": [[[[{"a": [1, 2.5, null, "\\u0041"]}]]]]}',
        "trailing": b'{"cmd": "status"} junk',
        "not_object": b'["cmd", "status"]',
    }.items():
        write("control", name, line)


# ---- config (src/config) ----
def config():
    base = (b"[node]\nid = a\nshelf = /tmp/s\ncontrol = /tmp/a.sock\n"
            b"[nbd]\nlisten = 127.0.0.1:10809\n")
    write("config", "minimal", b"\x00" + base)
    full = base + (b"proxy_listen = 127.0.0.1:10810\nmax_payload = 32M\n"
                   b"[ic]\npartner = b\ncluster_id = duet\nsecret_file = /k\n"
                   b"link = ic0 127.0.0.1:47001 127.0.0.1:47101  # a link\n"
                   b"[mirror]\nmirror = on\nlog_size = 64M\ndurability = memory\n"
                   b"[monitor]\npartner_shelf = /tmp/b\ndeadline_ms = 300\n"
                   b"[proxy]\ntimeout_ms = 1000\n[store]\nio_engine = threads\n")
    write("config", "full", b"\x01" + full)
    write("config", "bad_key", b"\x07" + base + b"colour = blue\n")
    write("config", "syntax", b"\x03[node\nid = a\n")
    write("config", "balance", b"\x00" + base + b"[balance]\nauto = on\nimbalance = 1.5\n"
          b"window_s = 10\nmin_interval_s = 60\n")


# ---- balance (src/balance/wire.c) ----
def balance():
    def entry(name, req_milli, bps):
        return name.ljust(64, b"\0") + struct.pack("<QQ", req_milli, bps)
    vols = [entry(b"vol-a", 120000, 4096 * 120), entry(b"v.1_x", 5, 0)]
    hdr = struct.pack("<IHHHHIQQ", 0x314C4244, 1, 1, len(vols), 0, 0, 120005, 4096 * 120)
    write("balance", "two", hdr + b"".join(vols))
    write("balance", "empty", struct.pack("<IHHHHIQQ", 0x314C4244, 1, 0, 0, 0, 0, 0, 0))


if __name__ == "__main__":
    nvram()
    ccm()
    proxy()
    mbox()
    control()
    config()
    balance()
