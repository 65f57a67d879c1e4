#!/usr/bin/env python3
"""Timestamped NBD write load for bench/failover.sh and scripts/demo.sh.

    ackclient.py write --port P --export NAME --log FILE [--blocks N] [--bs B]
                       [--offset BYTES] [--qd Q] [--rate IOPS] [--stop-file F]
                       [--seconds S]
    ackclient.py gap   --log FILE --from T0 [--to T1 [--inside]]
    ackclient.py check --log FILE[,FILE...] --port P --export NAME [--bs B]
                       [--offset BYTES]
    ackclient.py sum   --port P --export NAME --length BYTES [--offset BYTES]

write: one NBD connection (fixed newstyle, NBD_OPT_GO, simple replies), Q
WRITEs of one block in flight, each to a random block among N from OFFSET
(never two in flight on one block), each block filled with a pattern unique to the write
(run id, write id, block). The log gets "R run" first, then "S block id"
before a write is sent and "A block id T" when its success reply arrives (T:
wall clock, seconds since the epoch with microseconds, the clock of duetd's
log lines), "E block id errno T" for an error reply; the log is flushed
at the first acknowledgement and then every 100 ms. Runs until the stop file
exists or S seconds pass, then drains and disconnects. A broken connection
ends it with exit status 1. Last stdout line: "acked=N errors=N sent=N".

gap: the largest pause between two consecutive acknowledgements that ends
after T0 (and, with --to, starts before T1); the pause that straddles T0
counts from the last acknowledgement before it. With --inside, only pauses
that start at or after T0 and end at or before T1 count. Prints
"gap_ms=G start=S end=E resume_ms=R acks=N" where R = E - T0 in ms.

check: reads every block the logs name and checks that it holds its last
acknowledged write, or a write sent after that one and never acknowledged.
Prints "checked=N acked=N lost=N"; exit status 1 when lost > 0 (the first
lost blocks are listed on stderr).

sum: prints the SHA-256 of LENGTH bytes of the export from OFFSET.
"""

import argparse
import hashlib
import os
import random
import struct
import sys
import threading
import time

# The NBD client: tools/python/duet_nbd.py (on PYTHONPATH from bench/lib.sh).
import duet_nbd as nbd

TAG = b"DUETFOV1"


def fill(bs, run, wid, block):
    unit = TAG + struct.pack("<IIQQ", run, 0, wid, block)
    return unit * (bs // len(unit))


def nbd_connect(port, export):
    """Fixed newstyle handshake with NBD_OPT_GO; returns the socket."""
    return nbd.connect(port, export)[0]


def cmd_write(a):
    sock = nbd_connect(a.port, a.export)
    run = random.getrandbits(31) | 1
    log = open(a.log, "w", buffering=1 << 16)
    log.write("R %d\n" % run)
    cv = threading.Condition()
    inflight = {}  # handle -> block
    busy = set()
    st = {"acked": 0, "errors": 0, "sent": 0, "dead": None, "closing": False, "flushed": 0.0}

    def receiver():
        try:
            while True:
                reply = nbd.recv_exact(sock, nbd.SIMPLE_REPLY.size)
                magic, err, handle = nbd.SIMPLE_REPLY.unpack(reply)
                t = time.time()
                if magic != nbd.SIMPLE_MAGIC:
                    raise RuntimeError("bad reply magic %#x" % magic)
                with cv:
                    block = inflight.pop(handle)
                    busy.discard(block)
                    if err == 0:
                        log.write("A %d %d %.6f\n" % (block, handle, t))
                        st["acked"] += 1
                        if t - st["flushed"] >= 0.1:
                            log.flush()  # a waiting script sees progress
                            st["flushed"] = t
                    else:
                        log.write("E %d %d %d %.6f\n" % (block, handle, err, t))
                        st["errors"] += 1
                    cv.notify_all()
        except (ConnectionError, OSError, RuntimeError) as e:
            with cv:
                if not st["closing"]:
                    st["dead"] = str(e)
                cv.notify_all()

    threading.Thread(target=receiver, daemon=True).start()
    rng = random.Random()
    wid = int(time.time() * 1000) % (1 << 40) * 1000
    t_end = time.monotonic() + a.seconds if a.seconds else None
    t_next = time.monotonic()
    period = 1.0 / a.rate if a.rate else 0.0
    while not st["dead"]:
        if t_end and time.monotonic() >= t_end:
            break
        if a.stop_file and os.path.exists(a.stop_file):
            break
        if period:
            now = time.monotonic()
            if now < t_next:
                time.sleep(min(t_next - now, 0.02))
                continue
            t_next = max(t_next + period, now - 0.1)
        with cv:
            while len(inflight) >= a.qd and not st["dead"]:
                cv.wait(0.05)
            if st["dead"]:
                break
            block = rng.randrange(a.blocks)
            while block in busy:
                block = rng.randrange(a.blocks)
            wid += 1
            inflight[wid] = block
            busy.add(block)
            log.write("S %d %d\n" % (block, wid))
            st["sent"] += 1
        try:
            sock.sendall(nbd.pack_request(nbd.CMD_WRITE, wid, a.offset + block * a.bs, a.bs) +
                         fill(a.bs, run, wid, block))
        except OSError as e:
            with cv:
                st["dead"] = str(e)
            break
    with cv:
        while inflight and not st["dead"]:
            cv.wait(0.05)
        if not st["dead"]:
            st["closing"] = True
    if not st["dead"]:
        sock.sendall(nbd.pack_request(nbd.CMD_DISC, 0, 0, 0))
    with cv:
        log.close()
    sock.close()
    print("acked=%d errors=%d sent=%d%s" % (st["acked"], st["errors"], st["sent"],
                                           " dead: " + st["dead"] if st["dead"] else ""))
    return 1 if st["dead"] or st["errors"] else 0


def ack_times(path):
    out = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 4 and p[0] == "A":
                out.append(float(p[3]))
    out.sort()
    return out


def cmd_gap(a):
    ts = ack_times(a.log)
    best = None
    for prev, t in zip(ts, ts[1:]):
        if a.inside:
            ok = prev >= a.t_from and t <= a.t_to
        else:
            ok = t > a.t_from and (a.t_to is None or prev < a.t_to)
        if ok and (best is None or t - prev > best[1] - best[0]):
            best = (prev, t)
    if best is None:
        print("gap_ms=- start=- end=- resume_ms=- acks=%d" % len(ts))
        return 1
    print("gap_ms=%.1f start=%.6f end=%.6f resume_ms=%.1f acks=%d" % (
        (best[1] - best[0]) * 1000, best[0], best[1], (best[1] - a.t_from) * 1000, len(ts)))
    return 0


def parse_logs(paths):
    """block -> (run, last acked id or None, ids sent after it), acks."""
    state = {}
    acks = 0
    for path in paths.split(","):
        run = 0
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) < 2:
                    continue
                if p[0] == "R":
                    run = int(p[1])
                    continue
                if len(p) < 3:
                    continue  # torn last line
                block, wid = int(p[1]), (run, int(p[2]))
                last, pending = state.get(block, (None, []))
                if p[0] == "S":
                    pending = pending + [wid]
                elif p[0] == "A":
                    if wid in pending:
                        pending = pending[pending.index(wid) + 1:]
                    last = wid
                    acks += 1
                state[block] = (last, pending)
    return state, acks


def decode(data, bs):
    if data[:8] != TAG:
        return None
    run, _, wid, block = struct.unpack("<IIQQ", data[8:32])
    return (run, wid) if data == fill(bs, run, wid, block) else None


def cmd_check(a):
    state, acks = parse_logs(a.log)
    data = nbd.read_blocks(a.port, a.export, list(state), a.bs, a.offset)
    lost = 0
    for b in sorted(state):
        last, pending = state[b]
        got = decode(data[b], a.bs)
        if last is None or got == last or got in pending:
            continue
        lost += 1
        if lost <= 10:
            print("block %d: holds %s, last acknowledged write %s" % (
                b, got if got else "other data", last), file=sys.stderr)
    print("checked=%d acked=%d lost=%d" % (len(state), acks, lost))
    return 1 if lost else 0


def cmd_sum(a):
    sock = nbd_connect(a.port, a.export)
    h = hashlib.sha256()
    chunk = 1 << 20
    pos, end = a.offset, a.offset + a.length
    while pos < end:
        n = min(chunk, end - pos)
        sock.sendall(nbd.pack_request(nbd.CMD_READ, 1, pos, n))
        magic, err, _ = nbd.SIMPLE_REPLY.unpack(nbd.recv_exact(sock, nbd.SIMPLE_REPLY.size))
        if magic != nbd.SIMPLE_MAGIC or err:
            raise RuntimeError("read failed: magic %#x error %d" % (magic, err))
        h.update(nbd.recv_exact(sock, n))
        pos += n
    sock.sendall(nbd.pack_request(nbd.CMD_DISC, 0, 0, 0))
    sock.close()
    print(h.hexdigest())
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--export", required=True)
    w.add_argument("--log", required=True)
    w.add_argument("--blocks", type=int, default=4096)
    w.add_argument("--bs", type=int, default=4096)
    w.add_argument("--offset", type=int, default=0)
    w.add_argument("--qd", type=int, default=8)
    w.add_argument("--rate", type=float, default=0)
    w.add_argument("--seconds", type=float, default=0)
    w.add_argument("--stop-file")
    g = sub.add_parser("gap")
    g.add_argument("--log", required=True)
    g.add_argument("--from", dest="t_from", type=float, required=True)
    g.add_argument("--to", dest="t_to", type=float)
    g.add_argument("--inside", action="store_true")
    c = sub.add_parser("check")
    c.add_argument("--log", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--export", required=True)
    c.add_argument("--bs", type=int, default=4096)
    c.add_argument("--offset", type=int, default=0)
    m = sub.add_parser("sum")
    m.add_argument("--port", type=int, required=True)
    m.add_argument("--export", required=True)
    m.add_argument("--length", type=int, required=True)
    m.add_argument("--offset", type=int, default=0)
    a = p.parse_args()
    if a.cmd == "gap" and a.inside and a.t_to is None:
        p.error("--inside needs --to")
    return {"write": cmd_write, "gap": cmd_gap, "check": cmd_check, "sum": cmd_sum}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
