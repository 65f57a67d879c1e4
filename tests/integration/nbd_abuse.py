#!/usr/bin/env python3
"""Raw NBD protocol abuse against a live server, one case per run.

    nbd_abuse.py --port P --export NAME [--pid PID] CASE
    nbd_abuse.py --list

Each case speaks the wire protocol (NetworkBlockDevice/nbd doc/proto.md)
directly with the socket module, does something a broken or hostile client
would do, and checks that the server answers with the protocol's error
reply or a clean disconnect, stays in sync, keeps serving other clients,
and (with --pid) keeps its memory bounded. Exit status 0 when the server
behaved, 1 with a message when not. The last stdout line is "events=N":
how many bad inputs the case sent (the caller compares the server's log).
"""

import argparse
import errno
import os
import select
import socket
import struct
import subprocess
import sys
import threading
import time

# Wire constants and framing: tools/python/duet_nbd.py (on PYTHONPATH from
# tests/lib.sh). This test keeps its own connection class (Conn): it sends
# malformed bytes on purpose and turns socket errors into Fail/Closed.
from duet_nbd import (
    CHUNK,
    CHUNK_ERROR,
    CHUNK_ERROR_OFFSET,
    CHUNK_FLAG_DONE,
    CHUNK_OFFSET_DATA,
    CMD_BLOCK_STATUS,
    CMD_CACHE,
    CMD_DISC,
    CMD_FLUSH,
    CMD_READ,
    CMD_TRIM,
    CMD_WRITE,
    CMD_WRITE_ZEROES,
    FLAG_FIXED_NEWSTYLE,
    FLAG_NO_ZEROES,
    GREETING,
    IHAVEOPT,
    INFO_BLOCK_SIZE,
    INFO_EXPORT,
    NBDMAGIC,
    OPT_ABORT,
    OPT_GO,
    OPT_INFO,
    OPT_LIST,
    OPT_REPLY,
    OPT_STRUCTURED_REPLY,
    REPLY_MAGIC,
    REP_ACK,
    REP_ERR,
    REP_ERR_INVALID,
    REP_ERR_TOO_BIG,
    REP_ERR_UNKNOWN,
    REP_ERR_UNSUP,
    REP_INFO,
    REP_SERVER,
    REQ_MAGIC,
    SIMPLE_MAGIC,
    STRUCT_MAGIC,
    go_data,
    pack_option,
    pack_request,
)

TIMEOUT = 10.0 * float(os.environ.get("DUET_TIMEOUT_SCALE", "1"))


class Fail(Exception):
    pass


class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


def errname(e):
    return errno.errorcode.get(e, str(e))


class Conn:
    def __init__(self, port, timeout=TIMEOUT):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.structured = False
        self.size = None
        self.tflags = None
        self.block = None
        self.cookie = 1

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass

    def send(self, data):
        try:
            self.s.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Closed(str(e))

    def recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.s.recv(min(n - len(buf), 1 << 20))
            except ConnectionResetError as e:
                raise Closed(str(e))
            except socket.timeout:
                raise Fail("no answer from the server within %.0fs" % TIMEOUT)
            if not chunk:
                raise Closed("EOF")
            buf += chunk
        return bytes(buf)

    def expect_closed(self, what, timeout=TIMEOUT):
        """The server must close the connection (after any replies)."""
        self.s.settimeout(timeout)
        try:
            while True:
                chunk = self.s.recv(65536)
                if not chunk:
                    return
        except ConnectionResetError:
            return
        except socket.timeout:
            raise Fail("%s: the server kept the connection open" % what)

    # --- handshake ---
    def greeting(self, client_flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        magic, opt, hflags = GREETING.unpack(self.recv(GREETING.size))
        if magic != NBDMAGIC or opt != IHAVEOPT:
            raise Fail("bad server greeting %x %x" % (magic, opt))
        if not hflags & FLAG_FIXED_NEWSTYLE:
            raise Fail("server is not fixed newstyle")
        self.send(struct.pack(">I", client_flags))

    def option(self, opt, data=b""):
        self.send(pack_option(opt, data))

    def opt_reply(self):
        magic, opt, rtype, length = OPT_REPLY.unpack(self.recv(OPT_REPLY.size))
        if magic != REPLY_MAGIC:
            raise Fail("bad option reply magic %x" % magic)
        if length > 1 << 20:
            raise Fail("option reply of %d bytes" % length)
        return opt, rtype, self.recv(length)

    def go(self, name, opt=OPT_GO):
        self.option(opt, go_data(name, (INFO_BLOCK_SIZE,)))
        while True:
            _, rtype, data = self.opt_reply()
            if rtype == REP_ACK:
                return 0
            if rtype & REP_ERR:
                return rtype
            if rtype == REP_INFO:
                (itype,) = struct.unpack(">H", data[:2])
                if itype == INFO_EXPORT:
                    self.size, self.tflags = struct.unpack(">QH", data[2:12])
                elif itype == INFO_BLOCK_SIZE:
                    self.block = struct.unpack(">III", data[2:14])

    def open(self, name, structured=False):
        self.greeting()
        if structured:
            self.option(OPT_STRUCTURED_REPLY)
            _, rtype, _ = self.opt_reply()
            if rtype != REP_ACK:
                raise Fail("STRUCTURED_REPLY refused: %x" % rtype)
            self.structured = True
        rc = self.go(name)
        if rc:
            raise Fail("GO %s refused: %x" % (name, rc))
        if self.size is None:
            raise Fail("GO gave no NBD_INFO_EXPORT")
        return self

    # --- transmission ---
    def request(self, ctype, offset, length, flags=0, data=None, magic=REQ_MAGIC):
        cookie = self.cookie
        self.cookie += 1
        hdr = pack_request(ctype, cookie, offset, length, flags, magic)
        self.send(hdr + (data or b""))
        return cookie

    def reply(self, cookie, read_len=0):
        """(errno, data) of one reply; data only for a successful read.
        With structured replies negotiated, a READ must get structured
        chunks; other commands may get a simple reply."""
        err = 0
        data = None
        while True:
            (magic,) = struct.unpack(">I", self.recv(4))
            if magic == SIMPLE_MAGIC:
                err, ck = struct.unpack(">IQ", self.recv(12))
                if ck != cookie:
                    raise Fail("reply for cookie %d, expected %d" % (ck, cookie))
                if self.structured and read_len and err == 0:
                    raise Fail("simple reply to a READ after structured replies were negotiated")
                return err, (self.recv(read_len) if err == 0 and read_len else b"")
            if magic != STRUCT_MAGIC:
                raise Fail("bad reply magic %x" % magic)
            if not self.structured:
                raise Fail("structured reply that was not negotiated")
            cflags, ctype, ck, length = CHUNK.unpack(self.recv(CHUNK.size))
            if ck != cookie:
                raise Fail("reply for cookie %d, expected %d" % (ck, cookie))
            payload = self.recv(length)
            if data is None:
                data = bytearray(min(read_len, 1 << 26))
            if ctype in (CHUNK_ERROR, CHUNK_ERROR_OFFSET):
                err = struct.unpack(">I", payload[:4])[0]
            elif ctype == CHUNK_OFFSET_DATA:
                (off,) = struct.unpack(">Q", payload[:8])
                base = off - self.req_offset
                if base < 0 or base + length - 8 > read_len:
                    raise Fail("data chunk outside the request")
                data[base:base + length - 8] = payload[8:]
            if cflags & CHUNK_FLAG_DONE:
                return err, bytes(data) if err == 0 else b""

    def call(self, ctype, offset, length, flags=0, data=None):
        self.req_offset = offset
        ck = self.request(ctype, offset, length, flags, data)
        return self.reply(ck, length if ctype == CMD_READ else 0)

    def disc(self):
        self.request(CMD_DISC, 0, 0)
        self.close()


def pattern(seed, n):
    b = bytes((seed + i * 7) & 0xFF for i in range(256))
    return (b * (n // 256 + 1))[:n]


def roundtrip(c, offset, n, seed):
    """Write, read back and compare on an open connection."""
    data = pattern(seed, n)
    err, _ = c.call(CMD_WRITE, offset, n, data=data)
    if err:
        raise Fail("normal write failed: %s" % errname(err))
    err, got = c.call(CMD_READ, offset, n)
    if err:
        raise Fail("normal read failed: %s" % errname(err))
    if got != data:
        raise Fail("read back differs from what was written at %d" % offset)


def healthy(args, seed=0x42):
    """A fresh, well-behaved client still works."""
    c = Conn(args.port).open(args.export)
    roundtrip(c, 1 << 20, 65536, seed)
    c.disc()


def rss_kb(pid):
    if not pid:
        return 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def check_rss(args, before, what, limit_mb=256):
    if not args.pid:
        return
    after = rss_kb(args.pid)
    if after - before > limit_mb * 1024:
        raise Fail("%s: server RSS grew from %d to %d KiB" % (what, before, after))


def expect_err(what, got, allowed):
    if got not in allowed:
        raise Fail("%s: got %s, want %s" % (what, errname(got) if got else "success",
                                             " or ".join(errname(a) for a in allowed)))


# ---------------------------------------------------------------- cases
CASES = {}


def case(fn):
    CASES[fn.__name__.replace("_", "-")] = fn
    return fn


@case
def bad_magic(args):
    """A request with a bad magic: the server disconnects."""
    c = Conn(args.port).open(args.export)
    roundtrip(c, 0, 4096, 1)
    c.request(CMD_READ, 0, 4096, magic=0xDEADBEEF)
    c.expect_closed("request with bad magic")
    c.close()
    # Garbage right after the handshake, too.
    c = Conn(args.port).open(args.export)
    c.send(b"GET / HTTP/1.0\r\n\r\n" + b"x" * 10)
    c.expect_closed("garbage request")
    c.close()
    return 2


@case
def out_of_range(args):
    """Offsets and lengths outside the volume: error replies, still in sync."""
    c = Conn(args.port).open(args.export)
    size = c.size
    n = 0
    err, _ = c.call(CMD_READ, size - 4096, 8192)
    expect_err("READ across the end", err, (errno.EINVAL,))
    n += 1
    err, _ = c.call(CMD_READ, size, 512)
    expect_err("READ at the end", err, (errno.EINVAL,))
    n += 1
    err, _ = c.call(CMD_READ, 1 << 62, 4096)
    expect_err("READ at 2^62", err, (errno.EINVAL,))
    n += 1
    err, _ = c.call(CMD_READ, (1 << 64) - 512, 1024)
    expect_err("READ whose end wraps past 2^64", err, (errno.EINVAL,))
    n += 1
    err, _ = c.call(CMD_WRITE, size - 512, 4096, data=b"\xab" * 4096)
    expect_err("WRITE across the end", err, (errno.ENOSPC, errno.EINVAL))
    n += 1
    err, _ = c.call(CMD_WRITE, (1 << 64) - 4096, 8192, data=b"\xab" * 8192)
    expect_err("WRITE whose end wraps past 2^64", err, (errno.ENOSPC, errno.EINVAL))
    n += 1
    err, _ = c.call(CMD_TRIM, size - 4096, 1 << 20)
    expect_err("TRIM across the end", err, (errno.ENOSPC, errno.EINVAL))
    n += 1
    err, _ = c.call(CMD_WRITE_ZEROES, size, 4096)
    expect_err("WRITE_ZEROES past the end", err, (errno.ENOSPC, errno.EINVAL))
    n += 1
    err, _ = c.call(CMD_CACHE, size + 4096, 4096)
    expect_err("CACHE past the end", err, (errno.EINVAL,))
    n += 1
    # The last block of the volume is fine, and the stream is still in sync.
    roundtrip(c, size - 4096, 4096, 3)
    c.disc()
    # The same with structured replies: an error chunk.
    c = Conn(args.port).open(args.export, structured=True)
    err, _ = c.call(CMD_READ, c.size - 4096, 8192)
    expect_err("READ across the end (structured)", err, (errno.EINVAL,))
    n += 1
    roundtrip(c, 0, 4096, 4)
    c.disc()
    return n


@case
def too_long(args):
    """Lengths over the advertised maximum: an error reply or a disconnect,
    never a huge allocation."""
    before = rss_kb(args.pid)
    c = Conn(args.port).open(args.export)
    mx = c.block[2] if c.block else 32 << 20
    if mx < 32 << 20:
        raise Fail("maximum block size %d < 32 MiB" % mx)
    n = 0
    # READ over the maximum (and over the volume size is not the point: stay inside).
    over = min(mx + 4096, 0xFFFFFFFF)
    if over <= c.size:
        n += 1
        try:
            err, _ = c.call(CMD_READ, 0, over)
            expect_err("READ of max+4 KiB", err, (errno.EINVAL, errno.EOVERFLOW, errno.ENOMEM))
            roundtrip(c, 0, 4096, 5)
        except Closed:
            c.close()
            c = Conn(args.port).open(args.export)
    # READ of 4 GiB - 1.
    n += 1
    try:
        err, _ = c.call(CMD_READ, 0, 0xFFFFFFFF)
        expect_err("READ of 4 GiB-1", err, (errno.EINVAL, errno.EOVERFLOW, errno.ENOMEM))
        roundtrip(c, 0, 4096, 6)
        c.disc()
    except Closed:
        c.close()
    # WRITE header of 4 GiB-1 with only some data behind it: the server cannot
    # skip that much payload, so it should drop the connection.
    n += 1
    c = Conn(args.port).open(args.export)
    try:
        c.request(CMD_WRITE, 0, 0xFFFFFFFF, data=b"\0" * 65536)
        # Either an error reply arrives (and then the server would have to
        # swallow 4 GiB, which it must not wait for) or the connection closes.
        c.s.settimeout(TIMEOUT)
        try:
            hdr = c.recv(16)
            magic, err, _ = struct.unpack(">IIQ", hdr)
            if magic != SIMPLE_MAGIC or err == 0:
                raise Fail("WRITE of 4 GiB-1: unexpected reply magic %x err %d" % (magic, err))
        except Closed:
            pass
    except Closed:
        pass
    c.close()
    # WRITE of max+4 KiB with its whole payload: error reply (payload
    # skipped, stream in sync) or disconnect.
    n += 1
    c = Conn(args.port).open(args.export)
    ln = mx + 4096
    if ln <= c.size:
        ck = c.cookie
        c.cookie += 1
        msg = struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_WRITE, ck, 0, ln) + b"\x5a" * ln
        result = {}

        def sender():
            try:
                c.s.sendall(msg)
            except OSError as e:
                result["closed"] = str(e)

        t = threading.Thread(target=sender)
        t.start()
        try:
            err, _ = c.reply(ck)
            expect_err("WRITE of max+4 KiB", err, (errno.EINVAL, errno.EOVERFLOW, errno.ENOMEM))
            t.join(TIMEOUT)
            if "closed" not in result:
                roundtrip(c, 0, 4096, 7)
        except Closed:
            pass
        t.join(TIMEOUT)
    c.close()
    check_rss(args, before, "oversized requests")
    return n


@case
def unknown_command(args):
    """Unknown command types: EINVAL, connection stays usable."""
    c = Conn(args.port).open(args.export)
    n = 0
    for t in (8, 9, 63, 0xFFFF):
        err, _ = c.call(t, 0, 4096)
        expect_err("command type %d" % t, err, (errno.EINVAL,))
        n += 1
    roundtrip(c, 0, 4096, 8)
    c.disc()
    return n


@case
def unknown_flags(args):
    """Unknown command flags: EINVAL, connection stays usable."""
    c = Conn(args.port).open(args.export)
    n = 0
    for f in (1 << 7, 1 << 10, 1 << 15):
        err, _ = c.call(CMD_READ, 0, 4096, flags=f)
        expect_err("READ with flag %#x" % f, err, (errno.EINVAL,))
        n += 1
    err, _ = c.call(CMD_WRITE, 0, 4096, flags=1 << 9, data=b"\1" * 4096)
    expect_err("WRITE with flag 0x200", err, (errno.EINVAL,))
    n += 1
    # BLOCK_STATUS without structured replies is not allowed either.
    err, _ = c.call(CMD_BLOCK_STATUS, 0, 4096)
    expect_err("BLOCK_STATUS without structured replies", err, (errno.EINVAL,))
    n += 1
    roundtrip(c, 0, 4096, 9)
    c.disc()
    return n


@case
def disconnect_mid_request(args):
    """Clients that vanish in the middle of things; the server carries on."""
    n = 0
    # Half a request header.
    c = Conn(args.port).open(args.export)
    c.send(struct.pack(">IHHQ", REQ_MAGIC, 0, CMD_READ, 1))
    c.close()
    n += 1
    # A WRITE header and a tenth of its payload.
    c = Conn(args.port).open(args.export)
    c.request(CMD_WRITE, 0, 1 << 20, data=b"\x77" * (100 << 10))
    c.close()
    n += 1
    # Many READs in flight, then gone without reading a reply.
    c = Conn(args.port).open(args.export)
    for i in range(64):
        c.request(CMD_READ, i << 20, 1 << 20)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST
    n += 1
    # Many WRITEs (whole payloads) in flight, then gone.
    c = Conn(args.port).open(args.export)
    for i in range(32):
        c.request(CMD_WRITE, i << 20, 1 << 20, data=pattern(i, 1 << 20))
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()  # RST
    n += 1
    # Gone in the middle of the handshake.
    c = Conn(args.port)
    c.recv(18)
    c.send(struct.pack(">I", FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
    c.send(struct.pack(">QI", IHAVEOPT, OPT_GO))
    c.close()
    n += 1
    healthy(args)
    return n


@case
def stall(args):
    """Half a header, then silence, while other clients work normally."""
    stalled = []
    # Half a request header after the handshake.
    c = Conn(args.port).open(args.export)
    c.send(struct.pack(">IHHQ", REQ_MAGIC, 0, CMD_READ, 1)[:14])
    stalled.append(c)
    # Half a WRITE payload.
    c = Conn(args.port).open(args.export)
    c.request(CMD_WRITE, 0, 1 << 20, data=b"\x11" * 4096)
    stalled.append(c)
    # Half an option header during the handshake.
    c = Conn(args.port)
    c.greeting()
    c.send(struct.pack(">Q", IHAVEOPT)[:5])
    stalled.append(c)
    # Nothing at all after connecting.
    stalled.append(Conn(args.port))
    # Meanwhile: many round trips by a normal client, each must be quick.
    t0 = time.monotonic()
    c = Conn(args.port).open(args.export)
    for i in range(200):
        roundtrip(c, (i % 64) * 65536 + (4 << 20), 65536, i)
    c.disc()
    # And a real client, if there is one.
    uri = "nbd://127.0.0.1:%d/%s" % (args.port, args.export)
    try:
        p = subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 0x33 8M 1M",
                            "-c", "read -P 0x33 8M 1M", uri],
                           capture_output=True, text=True, timeout=TIMEOUT * 3)
        if p.returncode != 0:
            raise Fail("qemu-io failed while clients stall: %s%s" % (p.stdout, p.stderr))
    except FileNotFoundError:
        pass
    took = time.monotonic() - t0
    if took > TIMEOUT:
        raise Fail("normal clients took %.1fs while others stalled" % took)
    for s in stalled:
        s.close()
    healthy(args)
    return len(stalled)


@case
def slow_reader(args):
    """A client floods READs and never reads the replies: the server must
    bound what it buffers and keep serving others."""
    before = rss_kb(args.pid)
    c = Conn(args.port).open(args.export)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    mx = min(c.block[2] if c.block else 32 << 20, 32 << 20, c.size)
    sent = 0
    c.s.setblocking(False)
    hdrs = b"".join(struct.pack(">IHHQQI", REQ_MAGIC, 0, CMD_READ, i + 1, 0, mx)
                    for i in range(2048))
    deadline = time.monotonic() + TIMEOUT
    view = memoryview(hdrs)
    # Send as many requests as the server accepts (it stops reading once its
    # buffer for this connection is full).
    while sent < len(hdrs) and time.monotonic() < deadline:
        _, w, _ = select.select([], [c.s], [], 0.5)
        if not w:
            break
        try:
            sent += c.s.send(view[sent:])
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    c.s.setblocking(True)
    healthy(args, 0x55)
    check_rss(args, before, "%d READs of %d bytes not read back" % (sent // 28, mx), 512)
    c.s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    healthy(args, 0x56)
    return 0


@case
def bad_options(args):
    """Oversized, malformed and unknown options."""
    before = rss_kb(args.pid)
    n = 0
    # Unknown option with some data: ERR_UNSUP, then the handshake goes on.
    c = Conn(args.port)
    c.greeting()
    c.option(99, b"\0" * 100)
    _, rtype, _ = c.opt_reply()
    expect_opt("unknown option 99", rtype, (REP_ERR_UNSUP,))
    n += 1
    # Unknown export name: ERR_UNKNOWN; then LIST still works.
    rc = c.go("no-such-volume")
    expect_opt("GO no-such-volume", rc, (REP_ERR_UNKNOWN,))
    n += 1
    c.option(OPT_LIST)
    names = []
    while True:
        _, rtype, data = c.opt_reply()
        if rtype == REP_ACK:
            break
        if rtype != REP_SERVER:
            raise Fail("LIST: reply type %x" % rtype)
        (ln,) = struct.unpack(">I", data[:4])
        names.append(data[4:4 + ln].decode())
    if args.export not in names:
        raise Fail("LIST does not name %s: %s" % (args.export, names))
    # GO whose name length runs past the option data: ERR_INVALID.
    c.option(OPT_GO, struct.pack(">I", 1000) + b"abc")
    _, rtype, _ = c.opt_reply()
    expect_opt("GO with a name longer than its data", rtype, (REP_ERR_INVALID,))
    n += 1
    # A name over 4096 bytes: ERR_INVALID or ERR_TOO_BIG (or a disconnect).
    try:
        big = b"v" * 5000
        c.option(OPT_INFO, struct.pack(">I", len(big)) + big + struct.pack(">H", 0))
        _, rtype, _ = c.opt_reply()
        expect_opt("INFO with a 5000-byte name", rtype,
                   (REP_ERR_INVALID, REP_ERR_TOO_BIG, REP_ERR_UNKNOWN))
        # STRUCTURED_REPLY with data it must not have.
        c.option(OPT_STRUCTURED_REPLY, b"x")
        _, rtype, _ = c.opt_reply()
        expect_opt("STRUCTURED_REPLY with data", rtype, (REP_ERR_INVALID,))
        n += 1
        # Still usable: GO the real export.
        if c.go(args.export):
            raise Fail("GO failed after bad options")
        roundtrip(c, 0, 4096, 10)
        c.disc()
    except Closed:
        c.close()
    n += 1
    # Option data of 2 GiB announced, 1 KiB sent: ERR_TOO_BIG or a disconnect.
    c = Conn(args.port)
    c.greeting()
    c.send(struct.pack(">QII", IHAVEOPT, OPT_GO, 0x7FFFFFFF) + b"\0" * 1024)
    c.s.settimeout(TIMEOUT)
    try:
        _, rtype, _ = c.opt_reply()
        expect_opt("2 GiB option", rtype, (REP_ERR_TOO_BIG, REP_ERR_INVALID))
        c.expect_closed("after a 2 GiB option")
    except Closed:
        pass
    c.close()
    n += 1
    # Bad option magic: disconnect.
    c = Conn(args.port)
    c.greeting()
    c.send(struct.pack(">QII", 0x1122334455667788, OPT_LIST, 0))
    c.expect_closed("option with bad magic")
    c.close()
    n += 1
    # Unknown client flags: disconnect.
    c = Conn(args.port)
    c.greeting(client_flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES | (1 << 20))
    c.s.settimeout(TIMEOUT)
    try:
        c.option(OPT_LIST)
        c.expect_closed("unknown client flags")
    except Closed:
        pass
    c.close()
    n += 1
    # Many small options in a row (an option flood) stay bounded and answered.
    c = Conn(args.port)
    c.greeting()
    for _ in range(200):
        c.option(99, b"y" * 1000)
    for _ in range(200):
        _, rtype, _ = c.opt_reply()
        if rtype != REP_ERR_UNSUP:
            raise Fail("option flood: reply %x" % rtype)
    c.option(OPT_ABORT)
    try:
        c.opt_reply()
    except Closed:
        pass
    c.close()
    check_rss(args, before, "bad options")
    healthy(args)
    return n


def expect_opt(what, got, allowed):
    if got not in allowed:
        raise Fail("%s: option reply %#x, want %s" % (what, got, " or ".join("%#x" % a for a in allowed)))


@case
def good(args):
    """A well-behaved client (used to check the server between cases)."""
    healthy(args)
    c = Conn(args.port).open(args.export, structured=True)
    roundtrip(c, 2 << 20, 1 << 20, 11)
    err, _ = c.call(CMD_FLUSH, 0, 0)
    expect_err("FLUSH", err, (0,))
    c.disc()
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int)
    ap.add_argument("--export")
    ap.add_argument("--pid", type=int, default=0)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("case", nargs="?")
    args = ap.parse_args()
    if args.list:
        for name, fn in CASES.items():
            print("%-24s %s" % (name, fn.__doc__.splitlines()[0]))
        return 0
    if args.case not in CASES or not args.port or args.export is None:
        ap.print_usage(sys.stderr)
        return 2
    try:
        n = CASES[args.case](args)
    except Fail as e:
        print("%s: %s" % (args.case, e), file=sys.stderr)
        return 1
    except Closed as e:
        print("%s: the server closed the connection unexpectedly (%s)" % (args.case, e),
              file=sys.stderr)
        return 1
    except OSError as e:
        print("%s: %s" % (args.case, e), file=sys.stderr)
        return 1
    print("events=%d" % (n or 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
