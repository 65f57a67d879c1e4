#!/usr/bin/env python3
"""A write load that records every acknowledged write, and its checker.

    ackwriter.py write --port P --export NAME --log FILE [--blocks N] [--bs B]
                       [--qd Q] [--seconds S] [--stop-file F] [--count C]
                       [--until-dead] [--rate IOPS] [--allow-errors] [--flush-each]
    ackwriter.py check --log FILE[,FILE...] (--port P --export NAME | --file IMG)
                       [--bs B] [--min-acked N]

write: one NBD connection (fixed newstyle, NBD_OPT_GO, simple replies) with
Q requests in flight, each a WRITE of one block chosen at random among N,
never two in flight on the same block (with --zero-pct, that share of them
are WRITE_ZEROES, half with NO_HOLE). Every block written carries a unique
pattern (run id, write id, block number, repeated over the block). Before a
write is sent, "S block id" (with " z" for a zero write) goes to the log; when its reply says success,
"A block id"; an error reply, "E block id errno". The log is flushed at
exit and every 256 lines. It runs until S seconds pass or the stop file
exists or C writes were sent (then it drains what is in flight and
disconnects cleanly), or, with
--until-dead, until the server goes away (the connection breaks: exit 0).
Exit status: 0 when every reply was a success (or --allow-errors), 1
otherwise; the last stdout line is "acked=N errors=N inflight_at_end=N".

check: reads every block the log names (over NBD, or from an image file)
and checks that it holds the pattern of its last acknowledged write (zeros
for a zero write), or of a write sent after it that was never acknowledged
(in flight when the server died); a block with no acknowledged write may
also still be zero.
Exit status 0 when all hold, 1 with one line per bad block (the first 20).
"""

import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
OPT_GO = 7
REP_ACK = 1
REP_INFO = 3
INFO_EXPORT = 0
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_WRITE_ZEROES = 6
FLAG_NO_HOLE = 1 << 1
PAT_MAGIC = b"DUETACK1"


def pattern(bs, run, wid, block):
    unit = PAT_MAGIC + struct.pack("<IIQQ", run, 0, wid, block)
    return unit * (bs // len(unit))


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return bytes(buf)


def connect(port, export, host="127.0.0.1"):
    sock = socket.create_connection((host, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    magic, opt, hflags = struct.unpack(">QQH", recv_exact(sock, 18))
    if magic != NBDMAGIC or opt != IHAVEOPT:
        raise RuntimeError("not an NBD server (newstyle)")
    sock.sendall(struct.pack(">I", 1 | (2 if hflags & 2 else 0)))
    name = export.encode()
    data = struct.pack(">I", len(name)) + name + struct.pack(">H", 0)
    sock.sendall(struct.pack(">QII", IHAVEOPT, OPT_GO, len(data)) + data)
    size = None
    while True:
        magic, _, rtype, rlen = struct.unpack(">QIII", recv_exact(sock, 20))
        if magic != REPLY_MAGIC:
            raise RuntimeError("bad option reply magic")
        body = recv_exact(sock, rlen)
        if rtype == REP_ACK:
            break
        if rtype & (1 << 31):
            raise RuntimeError("NBD_OPT_GO refused (%#x): %r" % (rtype, body))
        if rtype == REP_INFO and len(body) >= 12:
            (itype,) = struct.unpack(">H", body[:2])
            if itype == INFO_EXPORT:
                size, _ = struct.unpack(">QH", body[2:12])
    sock.settimeout(None)
    return sock, size


def parse_log(paths):
    """Per block: (last acked id or None, [ids sent after it, unacked])."""
    state = {}
    acked = 0
    zeros = set()  # ids of WRITE_ZEROES
    for path in paths.split(","):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue  # a torn last line
                kind, block, wid = parts[0], int(parts[1]), int(parts[2])
                if kind == "S" and len(parts) > 3 and parts[3] == "z":
                    zeros.add(wid)
                last, pending = state.get(block, (None, []))
                if kind == "S":
                    pending = pending + [wid]
                elif kind == "A":
                    if wid in pending:
                        pending = pending[pending.index(wid) + 1:]
                    last = wid
                    acked += 1
                elif kind == "E":
                    pass  # failed: stays a candidate (its content is undefined)
                state[block] = (last, pending)
    return state, acked, zeros


def cmd_write(a):
    sock, size = connect(a.port, a.export)
    bs = a.bs
    if size is not None and a.blocks * bs > size:
        sys.exit("export too small for %d blocks of %d" % (a.blocks, bs))
    run = random.getrandbits(31) | 1
    log = open(a.log, "a", buffering=1 << 16)
    lock = threading.Condition()
    inflight = {}  # cookie -> (block, id)
    busy = set()
    stats = {"acked": 0, "errors": 0, "dead": False, "sent": 0}
    stop = threading.Event()
    next_id = [int(time.time() * 1000) % (1 << 40) * 1000]
    rng = random.Random()
    lines = [0]

    def logline(s):
        log.write(s)
        lines[0] += 1
        if a.flush_each or lines[0] % 256 == 0:
            log.flush()

    def receiver():
        try:
            while True:
                magic, err, cookie = struct.unpack(">IIQ", recv_exact(sock, 16))
                if magic != SIMPLE_MAGIC:
                    raise RuntimeError("bad reply magic %#x" % magic)
                with lock:
                    if cookie == 0:  # never used: guard
                        continue
                    block, wid = inflight.pop(cookie)
                    busy.discard(block)
                    if err == 0:
                        logline("A %d %d\n" % (block, wid))
                        stats["acked"] += 1
                    else:
                        logline("E %d %d %d\n" % (block, wid, err))
                        stats["errors"] += 1
                        print("error reply %d for block %d" % (err, block), file=sys.stderr)
                    lock.notify_all()
        except (ConnectionError, OSError) as e:
            with lock:
                if stats.get("closing"):
                    return
                stats["dead"] = True
                stats["why"] = str(e)
                lock.notify_all()

    rt = threading.Thread(target=receiver, daemon=True)
    rt.start()
    t_start = time.monotonic()
    t_end = t_start + a.seconds if a.seconds else None
    interval = 1.0 / a.rate if a.rate else 0
    t_next = time.monotonic()
    try:
        while True:
            if t_end and time.monotonic() >= t_end:
                break
            if a.stop_file and os.path.exists(a.stop_file):
                break
            if a.count and stats["sent"] >= a.count:
                break
            if interval:
                now = time.monotonic()
                if now < t_next:
                    time.sleep(min(t_next - now, 0.05))
                    continue
                t_next += interval
            with lock:
                while len(inflight) >= a.qd and not stats["dead"]:
                    lock.wait(0.1)
                if stats["dead"]:
                    break
                block = rng.randrange(a.blocks)
                while block in busy:
                    block = rng.randrange(a.blocks)
                next_id[0] += 1
                wid = next_id[0]
                cookie = wid
                inflight[cookie] = (block, wid)
                busy.add(block)
                zero = a.zero_pct and rng.randrange(100) < a.zero_pct
                logline("S %d %d%s\n" % (block, wid, " z" if zero else ""))
            stats["sent"] += 1
            try:
                if zero:
                    # Every other one keeps the range allocated (NO_HOLE).
                    flags = FLAG_NO_HOLE if wid & 1 else 0
                    sock.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, CMD_WRITE_ZEROES,
                                             cookie, block * bs, bs))
                else:
                    req = struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, cookie, block * bs, bs)
                    sock.sendall(req + pattern(bs, run, wid, block))
            except OSError:
                with lock:
                    stats["dead"] = True
                break
        # Drain.
        with lock:
            while inflight and not stats["dead"]:
                lock.wait(0.1)
        if not stats["dead"]:
            with lock:
                stats["closing"] = True
            sock.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, 0, 0, 0))
    finally:
        with lock:
            n_inflight = len(inflight)
            log.flush()
            os.fsync(log.fileno())
            log.close()
        sock.close()
    print("acked=%d errors=%d inflight_at_end=%d sent=%d elapsed_ms=%d%s" % (
        stats["acked"], stats["errors"], n_inflight, stats["sent"],
        (time.monotonic() - t_start) * 1000,
        (" dead: " + stats.get("why", "")) if stats["dead"] else ""))
    if stats["dead"] and not a.until_dead:
        print("the server went away", file=sys.stderr)
        return 1
    if stats["errors"] and not a.allow_errors:
        return 1
    return 0


def read_blocks_nbd(port, export, blocks, bs):
    sock, _ = connect(port, export)
    out = {}
    blocks = sorted(blocks)
    qd = 32
    i = 0
    pending = {}
    while i < len(blocks) or pending:
        while i < len(blocks) and len(pending) < qd:
            b = blocks[i]
            i += 1
            pending[b + 1] = b
            sock.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, b + 1, b * bs, bs))
        magic, err, cookie = struct.unpack(">IIQ", recv_exact(sock, 16))
        if magic != SIMPLE_MAGIC or err:
            raise RuntimeError("read failed: magic %#x error %d" % (magic, err))
        out[pending.pop(cookie)] = recv_exact(sock, bs)
    sock.sendall(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_DISC, 0, 0, 0))
    sock.close()
    return out


def read_blocks_file(path, blocks, bs):
    out = {}
    with open(path, "rb") as f:
        for b in blocks:
            f.seek(b * bs)
            data = f.read(bs)
            out[b] = data + bytes(bs - len(data))
    return out


def decode(data, bs):
    """(run, id) if @data is one whole pattern, else None."""
    if data[:8] != PAT_MAGIC:
        return None
    run, _, wid, block = struct.unpack("<IIQQ", data[8:32])
    if data != pattern(bs, run, wid, block):
        return None
    return wid


def cmd_check(a):
    state, acked, zeros = parse_log(a.log)
    if acked < a.min_acked:
        print("only %d acknowledged writes in the log (want %d)" % (acked, a.min_acked))
        return 1
    blocks = list(state)
    if a.file:
        data = read_blocks_file(a.file, blocks, a.bs)
    else:
        data = read_blocks_nbd(a.port, a.export, blocks, a.bs)
    zero = bytes(a.bs)
    bad = 0
    newer = 0
    for b in sorted(blocks):
        last, pending = state[b]
        d = data[b]
        wid = decode(d, a.bs)
        ok = False
        if wid is not None and (wid == last or wid in pending):
            ok = True
            if wid != last:
                newer += 1
        elif d == zero and (last is None or last in zeros or
                            any(p in zeros for p in pending)):
            ok = True  # never written, or zeroed
        if not ok:
            bad += 1
            if bad <= 20:
                what = "torn/foreign data" if wid is None and d != zero else \
                    ("zeros" if d == zero else "write %d" % wid)
                print("block %d: holds %s, last acknowledged write %s, unacknowledged %s" % (
                    b, what, last, pending[-3:]))
    print("checked %d blocks, %d acknowledged writes: %d bad, %d hold a write in flight "
          "at the end" % (len(blocks), acked, bad, newer))
    return 1 if bad else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--export", required=True)
    w.add_argument("--log", required=True)
    w.add_argument("--blocks", type=int, default=8192)
    w.add_argument("--bs", type=int, default=4096)
    w.add_argument("--qd", type=int, default=64)
    w.add_argument("--seconds", type=float, default=0)
    w.add_argument("--stop-file")
    w.add_argument("--until-dead", action="store_true")
    w.add_argument("--rate", type=float, default=0, help="writes per second (0: no limit)")
    w.add_argument("--allow-errors", action="store_true")
    w.add_argument("--count", type=int, default=0, help="stop after this many writes")
    w.add_argument("--flush-each", action="store_true", help="flush the log at every line")
    w.add_argument("--zero-pct", type=int, default=0,
                   help="this percentage of the writes are WRITE_ZEROES")
    c = sub.add_parser("check")
    c.add_argument("--log", required=True)
    c.add_argument("--port", type=int)
    c.add_argument("--export")
    c.add_argument("--file")
    c.add_argument("--bs", type=int, default=4096)
    c.add_argument("--min-acked", type=int, default=1)
    a = p.parse_args()
    if a.cmd == "write":
        return cmd_write(a)
    if not a.file and (a.port is None or a.export is None):
        p.error("check needs --file or --port and --export")
    return cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
