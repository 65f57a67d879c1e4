#!/usr/bin/env python3
"""A libnbd program that rides through a failover (docs/CLIENTS.md).

    nbd_reconnect.py URI [--blocks N] [--bs B] [--seconds S | --stop-file F]
                         [--reconnect-seconds R]

Writes block after block of URI (nbd://host:port/export) in rounds, each
block with a pattern naming the round, one write at a time. When a write
fails because the connection broke (the server died, or its address moved
to the partner), it closes the handle, connects again to the SAME URI
(every 100 ms, for up to R seconds, default 30) and writes the same block
again: an NBD write is idempotent, so a write that may or may not have
landed before the break is simply repeated. At the end it reads every
block back and checks the pattern of its last acknowledged write.

The last line: "writes=N reconnects=N max_stall_ms=X verified=N bad=N";
exit status 0 when bad=0.
"""

import argparse
import os
import sys
import time

import nbd


def pattern(block, rnd, bs):
    head = b"duet %08d %08d " % (block, rnd)
    return (head * (bs // len(head) + 1))[:bs]


def connect(uri, deadline):
    last = None
    while True:
        h = nbd.NBD()
        try:
            h.connect_uri(uri)
            return h
        except nbd.Error as e:
            last = e
            del h  # the handle closes when dropped
        if time.monotonic() > deadline:
            raise SystemExit("no reconnect to %s: %s" % (uri, last))
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("uri")
    ap.add_argument("--blocks", type=int, default=256)
    ap.add_argument("--bs", type=int, default=4096)
    ap.add_argument("--seconds", type=float, default=0)
    ap.add_argument("--stop-file")
    ap.add_argument("--reconnect-seconds", type=float, default=30)
    a = ap.parse_args()

    h = connect(a.uri, time.monotonic() + a.reconnect_seconds)
    acked = {}
    writes = reconnects = 0
    max_stall = 0.0
    end = time.monotonic() + a.seconds if a.seconds else None
    rnd = 0
    done = False
    while not done:
        rnd += 1
        for b in range(a.blocks):
            if (end and time.monotonic() > end) or (a.stop_file and os.path.exists(a.stop_file)):
                done = True
                break
            data = pattern(b, rnd, a.bs)
            t0 = time.monotonic()
            while True:
                try:
                    h.pwrite(data, b * a.bs)
                    break
                except nbd.Error:
                    # Lost the server: the same URI again, then the same write.
                    del h
                    h = connect(a.uri, time.monotonic() + a.reconnect_seconds)
                    reconnects += 1
            max_stall = max(max_stall, time.monotonic() - t0)
            acked[b] = rnd
            writes += 1
    bad = 0
    for b, r in acked.items():
        if h.pread(a.bs, b * a.bs) != pattern(b, r, a.bs):
            bad += 1
    h.shutdown()
    print("writes=%d reconnects=%d max_stall_ms=%d verified=%d bad=%d"
          % (writes, reconnects, max_stall * 1000, len(acked), bad))
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
