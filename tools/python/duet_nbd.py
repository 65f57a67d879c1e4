"""The NBD protocol client shared by duet's tests and benchmarks.

One place for the wire constants, the fixed-newstyle handshake and the
request/reply framing. tests/lib.sh and bench/lib.sh put this folder on
PYTHONPATH, so a script just does `import duet_nbd` (or `from duet_nbd
import ...`). Users: tests/fault/ackwriter.py, tests/integration/nbd_abuse.py,
bench/ackclient.py.

It offers:
  constants      NBDMAGIC, IHAVEOPT, REPLY_MAGIC, REQ_MAGIC, SIMPLE_MAGIC,
                 STRUCT_MAGIC; FLAG_* (handshake), OPT_*, REP_* (option
                 replies), INFO_*, CMD_*, CMD_FLAG_*, FLAG_NO_HOLE, CHUNK_*
  structs        GREETING (">QQH": magic, IHAVEOPT, handshake flags),
                 OPTION (">QII": IHAVEOPT, option, length),
                 OPT_REPLY (">QIII": magic, option, type, length),
                 REQUEST (">IHHQQI": magic, flags, type, cookie, offset,
                 length), SIMPLE_REPLY (">IIQ": magic, error, cookie),
                 CHUNK (">HHQI": flags, type, cookie, length; after the
                 structured reply magic)
  raw building blocks (for tests that send malformed bytes on purpose)
    pack_request(ctype, cookie, offset, length, flags=0, magic=REQ_MAGIC)
    pack_option(opt, data=b"")      an option request, header and data
    go_data(name, infos=())         the data of NBD_OPT_GO/NBD_OPT_INFO
  a client
    recv_exact(sock, n)             n bytes or ConnectionError
    connect(port, export, host="127.0.0.1", timeout=30, connect_timeout=None)
                                    TCP_NODELAY, fixed newstyle, NBD_OPT_GO;
                                    returns (socket, export size or None); the
                                    socket blocks (no timeout) afterwards
    disconnect(sock)                NBD_CMD_DISC, then close
    read_blocks(port, export, blocks, bs, offset=0, qd=32, host="127.0.0.1")
                                    {block: bytes} of the blocks of size bs at
                                    offset + block * bs, qd reads in flight,
                                    simple replies; RuntimeError on an error
"""

import socket
import struct

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCT_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR = 1 << 31
REP_ERR_UNSUP = REP_ERR + 1
REP_ERR_POLICY = REP_ERR + 2
REP_ERR_INVALID = REP_ERR + 3
REP_ERR_UNKNOWN = REP_ERR + 6
REP_ERR_TOO_BIG = REP_ERR + 9

INFO_EXPORT = 0
INFO_BLOCK_SIZE = 3

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_FLAG_FUA = 1
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 4
FLAG_NO_HOLE = CMD_FLAG_NO_HOLE

CHUNK_NONE = 0
CHUNK_OFFSET_DATA = 1
CHUNK_OFFSET_HOLE = 2
CHUNK_BLOCK_STATUS = 5
CHUNK_ERROR = (1 << 15) + 1
CHUNK_ERROR_OFFSET = (1 << 15) + 2
CHUNK_FLAG_DONE = 1

GREETING = struct.Struct(">QQH")
OPTION = struct.Struct(">QII")
OPT_REPLY = struct.Struct(">QIII")
REQUEST = struct.Struct(">IHHQQI")
SIMPLE_REPLY = struct.Struct(">IIQ")
CHUNK = struct.Struct(">HHQI")


def pack_request(ctype, cookie, offset, length, flags=0, magic=REQ_MAGIC):
    """A request header (the data of a WRITE goes after it)."""
    return REQUEST.pack(magic, flags, ctype, cookie, offset, length)


def pack_option(opt, data=b""):
    """An option request: its header, then data."""
    return OPTION.pack(IHAVEOPT, opt, len(data)) + data


def go_data(name, infos=()):
    """The data of NBD_OPT_GO / NBD_OPT_INFO: the export name, the infos asked for."""
    nb = name.encode()
    return (struct.pack(">I", len(nb)) + nb + struct.pack(">H", len(infos)) +
            b"".join(struct.pack(">H", i) for i in infos))


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return bytes(buf)


def connect(port, export, host="127.0.0.1", timeout=30, connect_timeout=None):
    """Fixed newstyle handshake with NBD_OPT_GO: (socket, size or None).
    connect_timeout bounds the TCP connect alone (default: timeout): a
    client that retries soon after a dropped SYN finds a moved address
    sooner than the kernel's SYN retransmission (1 s, then 3 s) would."""
    sock = socket.create_connection((host, port), timeout=connect_timeout or timeout)
    sock.settimeout(timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    magic, opt, hflags = GREETING.unpack(recv_exact(sock, GREETING.size))
    if magic != NBDMAGIC or opt != IHAVEOPT:
        raise RuntimeError("not an NBD server (newstyle)")
    no_zeroes = FLAG_NO_ZEROES if hflags & FLAG_NO_ZEROES else 0
    sock.sendall(struct.pack(">I", FLAG_FIXED_NEWSTYLE | no_zeroes))
    sock.sendall(pack_option(OPT_GO, go_data(export)))
    size = None
    while True:
        magic, _, rtype, rlen = OPT_REPLY.unpack(recv_exact(sock, OPT_REPLY.size))
        if magic != REPLY_MAGIC:
            raise RuntimeError("bad option reply magic")
        body = recv_exact(sock, rlen)
        if rtype == REP_ACK:
            break
        if rtype & REP_ERR:
            raise RuntimeError("NBD_OPT_GO refused (%#x): %r" % (rtype, body))
        if rtype == REP_INFO and len(body) >= 12:
            (itype,) = struct.unpack(">H", body[:2])
            if itype == INFO_EXPORT:
                size, _ = struct.unpack(">QH", body[2:12])
    sock.settimeout(None)
    return sock, size


def disconnect(sock):
    """NBD_CMD_DISC, then close the socket."""
    sock.sendall(pack_request(CMD_DISC, 0, 0, 0))
    sock.close()


def read_blocks(port, export, blocks, bs, offset=0, qd=32, host="127.0.0.1"):
    """{block: data} read over one connection, qd reads in flight."""
    sock, _ = connect(port, export, host=host)
    out = {}
    todo = sorted(blocks)
    pending = {}
    i = 0
    while i < len(todo) or pending:
        while i < len(todo) and len(pending) < qd:
            b = todo[i]
            i += 1
            pending[b + 1] = b
            sock.sendall(pack_request(CMD_READ, b + 1, offset + b * bs, bs))
        magic, err, cookie = SIMPLE_REPLY.unpack(recv_exact(sock, SIMPLE_REPLY.size))
        if magic != SIMPLE_MAGIC or err:
            raise RuntimeError("read failed: magic %#x error %d" % (magic, err))
        out[pending.pop(cookie)] = recv_exact(sock, bs)
    disconnect(sock)
    return out
