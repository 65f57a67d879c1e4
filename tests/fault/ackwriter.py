#!/usr/bin/env python3
"""A write load that records every acknowledged write, and its checker.

    ackwriter.py write [--host H] --port P --export NAME --log FILE [--blocks N] [--bs B]
                       [--first-block F] [--qd Q] [--seconds S] [--stop-file F]
                       [--count C] [--until-dead] [--rate IOPS] [--allow-errors]
                       [--flush-each] [--zero-pct PCT] [--timestamps]
                       [--failover-port P2 [--failover-export NAME2]
                        [--reconnect-seconds N]]
    ackwriter.py check --log FILE[,FILE...] (--port P --export NAME | --file IMG)
                       [--bs B] [--min-acked N] [--older FILE[,FILE...]]
    ackwriter.py gaps --log FILE [--after T]
    ackwriter.py now

write: one NBD connection (fixed newstyle, NBD_OPT_GO, simple replies) with
Q requests in flight, each a WRITE of one block chosen at random among N
(blocks F .. F+N-1; --sequential: in order, round and round, so that N
writes cover every block), never two in flight on the same block (with
--zero-pct, that share of them are WRITE_ZEROES, half with NO_HOLE). Every
block written carries a unique pattern (run id, write id, block number,
repeated over the block). Before a write is sent, "S block id" (with " z"
for a zero write) goes to the log; when its reply says success, "A block
id"; an error reply, "E block id errno". The log is flushed at exit and
every 256 lines (--flush-each: every line). It runs until S seconds pass or
the stop file exists or C writes were sent (then it drains what is in
flight and disconnects cleanly), or, with --until-dead, until the server
goes away (the connection breaks: exit 0).
Exit status: 0 when every reply was a success (or --allow-errors), 1
otherwise; the last stdout line is "acked=N errors=N inflight_at_end=N ...".

The log starts with "C <monotonic seconds> <port>" (connected).
Failover (--failover-port P2): when the connection breaks, the writes in
flight stay unacknowledged in the log (an "S" line with no "A"), the writer
logs "D <monotonic seconds> <port> <writes lost>", connects to P2 (export
--failover-export, default the same), retrying for up to
--reconnect-seconds (30), logs "R <monotonic seconds> <port>" and goes on
with new writes (a lost write is never sent again: its block may get a new
write). A break of the new connection reconnects to P2 again. Without a
connection after the retries it counts as the server going away. The last
stdout line adds "reconnects=N lost=N". --timestamps appends the monotonic
time of its reply to each "A" line ("A block id seconds"), so that a
benchmark can measure the time to the first completed write after a fault.
Monotonic times are CLOCK_MONOTONIC (time.monotonic(); `ackwriter.py now`).

check: reads every block the log names (over NBD, or from an image file)
and checks that it holds the pattern of its last acknowledged write (zeros
for a zero write), or of a write sent after it that was never acknowledged
(in flight when the server died); a block with no acknowledged write may
also still be zero.
Exit status 0 when all hold, 1 with one line per bad block (the first 20).
Lines of other kinds (C, R, D) are ignored. --older names the logs of an
earlier writer (one the checked writes should have replaced): the summary
line then also says how many bad blocks hold a write that writer sent
("N bad (K hold an older write)").

gaps: from a --timestamps log, one line "acks=N reconnects=N max_gap_ms=X
max_gap_at=T [first_ack_after_ms=Y stall_ms=S resumed_after_ms=Z]": the
longest time between two consecutive acknowledgements; with --after T (a
monotonic time, e.g. just before the test killed a node) the time from T to
the first acknowledgement after it, the longest gap that ends after T (the
stall the fault caused) and the time from T to its end (writes completing
again); then one line per reconnect "reconnect at=T port=P gap_ms=G" (G:
from the break to the reconnect).

now: prints the monotonic clock (seconds), the clock of the time stamps.
"""

import argparse
import os
import random
import socket
import struct
import sys
import threading
import time

# The NBD client: tools/python/duet_nbd.py (on PYTHONPATH from tests/lib.sh).
from duet_nbd import (
    CMD_DISC,
    CMD_WRITE,
    CMD_WRITE_ZEROES,
    FLAG_NO_HOLE,
    SIMPLE_MAGIC,
    SIMPLE_REPLY,
    connect,
    pack_request,
    read_blocks,
    recv_exact,
)

PAT_MAGIC = b"DUETACK1"


def pattern(bs, run, wid, block):
    unit = PAT_MAGIC + struct.pack("<IIQQ", run, 0, wid, block)
    return unit * (bs // len(unit))


def parse_log(paths):
    """Per block: (last acked id or None, [ids sent after it, unacked])."""
    state = {}
    acked = 0
    zeros = set()  # ids of WRITE_ZEROES
    for path in paths.split(","):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or parts[0] not in ("S", "A", "E"):
                    continue  # a torn last line, or a connect (C, R, D)
                try:
                    kind, block, wid = parts[0], int(parts[1]), int(parts[2])
                except ValueError:
                    continue  # torn
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


def keepalive(sock, seconds):
    """TCP keep-alive probes after `seconds` idle, every second, 3 of them: a
    connection to a host that went silent (stopped, or its address moved
    away while this client waited for replies) breaks instead of hanging."""
    if not seconds:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(seconds)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def cmd_write(a):
    bs = a.bs
    sock, size = connect(a.port, a.export, host=a.host)
    keepalive(sock, a.keepalive)
    if size is not None and (a.first_block + a.blocks) * bs > size:
        sys.exit("export too small for %d blocks of %d" % (a.first_block + a.blocks, bs))
    run = random.getrandbits(31) | 1
    log = open(a.log, "a", buffering=1 << 16)
    log.write("C %.6f %d\n" % (time.monotonic(), a.port))
    lock = threading.Condition()
    inflight = {}  # cookie -> (block, id)
    busy = set()
    stats = {"acked": 0, "errors": 0, "dead": False, "sent": 0, "reconnects": 0, "lost": 0}
    # The current connection: its generation (a receiver of an older one
    # ignores what it reads), its port, and whether it broke.
    conn = {"gen": 0, "port": a.port, "broken": False, "why": ""}
    stop = threading.Event()
    next_id = [int(time.time() * 1000) % (1 << 40) * 1000]
    rng = random.Random()
    seq = [0]
    lines = [0]
    fo_export = a.failover_export or a.export

    def logline(s):
        log.write(s)
        lines[0] += 1
        if a.flush_each or lines[0] % 256 == 0:
            log.flush()

    def receiver(s, gen):
        try:
            while True:
                magic, err, cookie = SIMPLE_REPLY.unpack(recv_exact(s, SIMPLE_REPLY.size))
                if magic != SIMPLE_MAGIC:
                    raise RuntimeError("bad reply magic %#x" % magic)
                with lock:
                    if gen != conn["gen"]:
                        return
                    ent = inflight.pop(cookie, None)
                    if ent is None:
                        raise RuntimeError("reply for unknown cookie %d" % cookie)
                    block, wid = ent
                    busy.discard(block)
                    if err == 0:
                        if a.timestamps:
                            logline("A %d %d %.6f\n" % (block, wid, time.monotonic()))
                        else:
                            logline("A %d %d\n" % (block, wid))
                        stats["acked"] += 1
                    else:
                        logline("E %d %d %d\n" % (block, wid, err))
                        stats["errors"] += 1
                        print("error reply %d for block %d" % (err, block), file=sys.stderr)
                    lock.notify_all()
        except (ConnectionError, OSError, RuntimeError, struct.error) as e:
            with lock:
                if gen != conn["gen"] or stats.get("closing"):
                    return
                conn["broken"] = True
                conn["why"] = str(e)
                lock.notify_all()

    def start_receiver():
        t = threading.Thread(target=receiver, args=(sock, conn["gen"]), daemon=True)
        t.start()
        return t

    def on_break(reconnect):
        """The connection broke: forget what was in flight (it stays
        unacknowledged in the log) and, with a failover port, connect there.
        True when a new connection is up."""
        nonlocal sock, rt
        # The receiver logs every reply that reached us before the break.
        rt.join(2)
        if rt.is_alive():
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            rt.join(2)
        with lock:
            conn["gen"] += 1
            lost = len(inflight)
            stats["lost"] += lost
            inflight.clear()
            busy.clear()
            logline("D %.6f %d %d\n" % (time.monotonic(), conn["port"], lost))
            log.flush()
            print("connection to port %d broke (%s): %d writes in flight lost" % (
                conn["port"], conn["why"] or "send failed", lost), file=sys.stderr)
        try:
            sock.close()
        except OSError:
            pass
        if not reconnect or not a.failover_port:
            return False
        deadline = time.monotonic() + a.reconnect_seconds
        last = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                conn["why"] = "no reconnect to port %d within %gs (%s)" % (
                    a.failover_port, a.reconnect_seconds, last)
                return False
            try:
                s, sz = connect(a.failover_port, fo_export, host=a.host, timeout=max(1.0, min(left, 10.0)),
                                connect_timeout=a.connect_timeout or None)
            except (ConnectionError, OSError, RuntimeError, struct.error) as e:
                last = e
                time.sleep(0.05)
                continue
            keepalive(s, a.keepalive)
            if sz is not None and (a.first_block + a.blocks) * bs > sz:
                s.close()
                conn["why"] = "export on port %d too small" % a.failover_port
                return False
            break
        with lock:
            sock = s
            conn["port"] = a.failover_port
            conn["broken"] = False
            conn["why"] = ""
            stats["reconnects"] += 1
            logline("R %.6f %d\n" % (time.monotonic(), a.failover_port))
            log.flush()
        print("reconnected to port %d" % a.failover_port, file=sys.stderr)
        rt = start_receiver()
        return True

    rt = start_receiver()
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
                while len(inflight) >= a.qd and not conn["broken"]:
                    lock.wait(0.1)
                broken = conn["broken"]
                if not broken:
                    if a.sequential:
                        block = a.first_block + seq[0] % a.blocks
                        seq[0] += 1
                        while block in busy:
                            block = a.first_block + seq[0] % a.blocks
                            seq[0] += 1
                    else:
                        block = a.first_block + rng.randrange(a.blocks)
                        while block in busy:
                            block = a.first_block + rng.randrange(a.blocks)
                    next_id[0] += 1
                    wid = next_id[0]
                    cookie = wid
                    inflight[cookie] = (block, wid)
                    busy.add(block)
                    zero = a.zero_pct and rng.randrange(100) < a.zero_pct
                    logline("S %d %d%s\n" % (block, wid, " z" if zero else ""))
            if broken:
                if on_break(True):
                    continue
                stats["dead"] = True
                break
            stats["sent"] += 1
            try:
                if zero:
                    # Every other one keeps the range allocated (NO_HOLE).
                    flags = FLAG_NO_HOLE if wid & 1 else 0
                    sock.sendall(pack_request(CMD_WRITE_ZEROES, cookie, block * bs, bs, flags))
                else:
                    req = pack_request(CMD_WRITE, cookie, block * bs, bs)
                    sock.sendall(req + pattern(bs, run, wid, block))
            except OSError as e:
                with lock:
                    conn["broken"] = True
                    conn["why"] = conn["why"] or "send: %s" % e
        # Drain. A break now loses what is in flight; nothing is left to send,
        # so there is no reconnect.
        with lock:
            while inflight and not conn["broken"]:
                lock.wait(0.1)
            broken = conn["broken"]
        if broken and not stats["dead"]:
            on_break(False)
            if not a.failover_port:
                stats["dead"] = True
        if not stats["dead"] and not broken:
            with lock:
                stats["closing"] = True
            try:
                sock.sendall(pack_request(CMD_DISC, 0, 0, 0))
            except OSError:
                pass
    finally:
        with lock:
            n_inflight = len(inflight)
            stats["closing"] = True
            log.flush()
            os.fsync(log.fileno())
            log.close()
        try:
            sock.close()
        except OSError:
            pass
    print("acked=%d errors=%d inflight_at_end=%d sent=%d elapsed_ms=%d reconnects=%d lost=%d%s" % (
        stats["acked"], stats["errors"], n_inflight + stats["lost"], stats["sent"],
        (time.monotonic() - t_start) * 1000, stats["reconnects"], stats["lost"],
        (" dead: " + (conn["why"] or "send failed")) if stats["dead"] else ""))
    if stats["dead"] and not a.until_dead:
        print("the server went away", file=sys.stderr)
        return 1
    if stats["errors"] and not a.allow_errors:
        return 1
    return 0


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


def sent_ids(paths):
    """Ids of every write the logs at @paths sent."""
    ids = set()
    for path in paths.split(","):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "S":
                    try:
                        ids.add(int(parts[2]))
                    except ValueError:
                        pass  # torn
    return ids


def cmd_check(a):
    state, acked, zeros = parse_log(a.log)
    older_ids = sent_ids(a.older) if a.older else set()
    older = 0
    if acked < a.min_acked:
        print("only %d acknowledged writes in the log (want %d)" % (acked, a.min_acked))
        return 1
    blocks = list(state)
    if a.file:
        data = read_blocks_file(a.file, blocks, a.bs)
    else:
        data = read_blocks(a.port, a.export, blocks, a.bs, host=a.host)
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
            if wid is not None and wid in older_ids:
                older += 1
            if bad <= 20:
                what = "torn/foreign data" if wid is None and d != zero else \
                    ("zeros" if d == zero else "write %d" % wid)
                print("block %d: holds %s, last acknowledged write %s, unacknowledged %s" % (
                    b, what, last, pending[-3:]))
    print("checked %d blocks, %d acknowledged writes: %d bad%s, %d hold a write in flight "
          "at the end" % (len(blocks), acked, bad,
                          " (%d hold an older write)" % older if a.older else "", newer))
    return 1 if bad else 0


def cmd_gaps(a):
    acks = []
    reconnects = []
    breaks = []
    for path in a.log.split(","):
        with open(path) as f:
            for line in f:
                parts = line.split()
                try:
                    if parts[0] == "A" and len(parts) >= 4:
                        acks.append(float(parts[3]))
                    elif parts[0] == "R" and len(parts) >= 3:
                        reconnects.append((float(parts[1]), int(parts[2])))
                    elif parts[0] == "D" and len(parts) >= 3:
                        breaks.append(float(parts[1]))
                except (ValueError, IndexError):
                    continue  # torn
    if not acks:
        print("no time stamped acknowledgements in %s (write --timestamps)" % a.log)
        return 1
    acks.sort()
    gap, at = 0.0, acks[0]
    for x, y in zip(acks, acks[1:]):
        if y - x > gap:
            gap, at = y - x, x
    out = "acks=%d reconnects=%d max_gap_ms=%.1f max_gap_at=%.6f" % (
        len(acks), len(reconnects), gap * 1000, at)
    rc = 0
    if a.after is not None:
        later = [t for t in acks if t > a.after]
        if later:
            out += " first_ack_after_ms=%.1f" % ((later[0] - a.after) * 1000)
            # The stall the fault caused: the longest gap that ends after T.
            sgap, send = 0.0, None
            for x, y in zip(acks, acks[1:]):
                if y > a.after and y - x > sgap:
                    sgap, send = y - x, y
            if send is not None:
                out += " stall_ms=%.1f resumed_after_ms=%.1f" % (
                    sgap * 1000, (send - a.after) * 1000)
        else:
            out += " first_ack_after_ms=none"
            rc = 1
    print(out)
    for t, port in reconnects:
        before = [b for b in breaks if b <= t]
        g = (t - before[-1]) * 1000 if before else float("nan")
        print("reconnect at=%.6f port=%d gap_ms=%.1f" % (t, port, g))
    return rc


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--port", type=int, required=True)
    w.add_argument("--host", default="127.0.0.1",
                   help="server address (also of --failover-port: the same address "
                        "and port is a client that reconnects to a moving address)")
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
    w.add_argument("--first-block", type=int, default=0,
                   help="write blocks first-block .. first-block+blocks-1")
    w.add_argument("--sequential", action="store_true",
                   help="write the blocks in order, round and round, instead of at random")
    w.add_argument("--timestamps", action="store_true",
                   help="append the monotonic time of the reply to each A line")
    w.add_argument("--connect-timeout", type=float, default=0,
                   help="seconds for one TCP connect when reconnecting (0: as the handshake)")
    w.add_argument("--keepalive", type=int, default=0,
                   help="TCP keep-alive after this many idle seconds (0: off)")
    w.add_argument("--failover-port", type=int, default=0,
                   help="when the connection breaks, reconnect to this port and go on")
    w.add_argument("--failover-export", help="export name on the failover port")
    w.add_argument("--reconnect-seconds", type=float, default=30,
                   help="how long to retry the failover port")
    g = sub.add_parser("gaps")
    g.add_argument("--log", required=True)
    g.add_argument("--after", type=float, help="a monotonic time (ackwriter.py now)")
    sub.add_parser("now")
    c = sub.add_parser("check")
    c.add_argument("--log", required=True)
    c.add_argument("--port", type=int)
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--export")
    c.add_argument("--file")
    c.add_argument("--bs", type=int, default=4096)
    c.add_argument("--min-acked", type=int, default=1)
    c.add_argument("--older", help="logs of an earlier writer: count bad blocks holding its writes")
    a = p.parse_args()
    if a.cmd == "write":
        return cmd_write(a)
    if a.cmd == "gaps":
        return cmd_gaps(a)
    if a.cmd == "now":
        print("%.6f" % time.monotonic())
        return 0
    if not a.file and (a.port is None or a.export is None):
        p.error("check needs --file or --port and --export")
    return cmd_check(a)


if __name__ == "__main__":
    sys.exit(main())
