"""Port 1001 on disk, no network: FILESTREAM transfers through the service into a real ``~/.pilot/received``,
and the inbox / received-files caps on real directories (what the official 1.18 receiver does and says)."""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from pilot_daemon.io.dataexchange import DataExchange
from pilot_daemon.proto import dataexchange as dx
from pilot_daemon.proto import filestream as fs

SENDER = "0:0000.0000.0007"
NAME_RE = r"-\d{8}-\d{6}\.\d{3}-(\d{6})"


class Conn:
    """One data-exchange connection into ``svc``: FILESTREAM frames in, decoded replies out."""

    def __init__(self, svc: DataExchange, conn: int, data: bytes = b"", name: bytes = b"data.bin") -> None:
        self.svc, self.conn, self.data = svc, conn, data
        digest = hashlib.sha256(data).digest()
        self.tid, self.digest, self.name = digest[:16], digest, name

    def send(self, wire: bytes):
        (frame,) = dx.FrameDecoder().feed(wire)
        reply, keep = self.svc.stream_frame(self.conn, frame)
        assert keep
        if reply is None:
            return None
        (answer,) = dx.FrameDecoder().feed(reply)
        kind, tid, body = fs.split(answer.payload)
        assert answer.type == dx.FILESTREAM and tid in (self.tid, fs.ZERO_ID)
        if kind in (fs.ACK, fs.INIT_ACK):
            return kind, fs.parse_offset(body)
        if kind == fs.COMPLETE:
            return kind, fs.parse_complete(body)
        return kind, body.decode()

    def init(self, size: int | None = None):
        return self.send(fs.init(self.tid, len(self.data) if size is None else size, self.digest, self.name))

    def chunk(self, offset: int, end: int | None = None):
        return self.send(fs.chunk(self.tid, offset, self.data[offset:end]))

    def done(self):
        return self.send(fs.frame(fs.DONE, self.tid))


@pytest.fixture
def svc(tmp_path):
    events: list[tuple[str, dict]] = []
    service = DataExchange(str(tmp_path), on_event=lambda name, fields: events.append((name, fields)))
    service.events = events
    return service


def listing(directory) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_chunks_in_any_order_land_byte_identical(svc):
    data = os.urandom(3 * fs.CHUNK_SIZE + 123)
    c = Conn(svc, 1, data, b"../../notes.tar.gz")
    assert c.init() == (fs.INIT_ACK, 0)
    assert c.chunk(fs.CHUNK_SIZE, 2 * fs.CHUNK_SIZE) == (fs.ACK, 0)            # early: held back
    assert c.chunk(fs.CHUNK_SIZE, 2 * fs.CHUNK_SIZE) == (fs.ACK, 0)            # repeat of a held one
    assert c.chunk(0, fs.CHUNK_SIZE) == (fs.ACK, 2 * fs.CHUNK_SIZE)            # both written
    assert c.chunk(0, 10) == (fs.ACK, 2 * fs.CHUNK_SIZE)                       # repeat of stored bytes
    assert c.chunk(2 * fs.CHUNK_SIZE) == (fs.ACK, len(data))
    assert c.done() == (fs.COMPLETE, (True, ""))
    received = svc.received_dir
    (saved,) = received.glob("notes*")
    assert re.fullmatch(r"notes\.tar" + NAME_RE + r"\.gz", saved.name) and saved.read_bytes() == data
    assert oct(saved.stat().st_mode & 0o777) == "0o600" and listing(received) == [".partial", saved.name]
    assert svc.events == [("file.received", {"filename": saved.name, "size": len(data), "path": str(saved)})]
    svc.handle(dx.Frame(dx.FILE, b"x", filename="next.txt"), SENDER)             # one sequence for all names
    assert re.search(NAME_RE, next(received.glob("next*")).name).group(1) == "000002"


def test_resume_stale_partial_and_refusals(svc):
    data = os.urandom(100_000)
    c = Conn(svc, 1, data)
    partial = svc.received_dir / ".partial" / c.tid.hex()
    partial.parent.mkdir(parents=True)
    partial.write_bytes(data[:40_000])
    assert c.init() == (fs.INIT_ACK, 40_000)                                    # resumes what is there
    assert c.chunk(40_000) == (fs.ACK, len(data)) and c.done() == (fs.COMPLETE, (True, ""))
    partial.write_bytes(os.urandom(len(data) + 1))                              # longer than the file: stale
    c2 = Conn(svc, 2, data)
    assert c2.init() == (fs.INIT_ACK, 0) and partial.stat().st_size == 0
    assert c2.send(fs.chunk(c2.tid, 90_000, bytes(10_001))) == \
        (fs.COMPLETE, (False, "chunk at 90000 of 10001 bytes exceeds declared size 100000"))
    assert c2.done() == (fs.COMPLETE, (False, "incomplete: have 0 of 100000 bytes"))
    assert Conn(svc, 3, data).chunk(0) == (fs.ABORT, fs.NO_TRANSFER_CHUNK)
    assert Conn(svc, 3, data).done() == (fs.COMPLETE, (False, fs.NO_TRANSFER))
    assert c2.send(dx.Frame(dx.FILESTREAM, b"\x01short").encode()) == \
        (fs.COMPLETE, (False, fs.MALFORMED_FRAME))
    assert c2.send(fs.frame(fs.INIT, c2.tid, b"\x00" * 45)) == (fs.COMPLETE, (False, fs.MALFORMED_INIT))
    assert c2.send(fs.frame(fs.CHUNK, c2.tid, b"\x00" * 7)) == (fs.COMPLETE, (False, fs.MALFORMED_CHUNK))
    assert c2.send(fs.frame(fs.ACK, c2.tid, b"")) is None                         # not a receiver's input
    assert c2.send(fs.frame(99, c2.tid, b"?")) is None


def test_a_corrupt_file_is_refused_and_its_partial_kept(svc):
    data = os.urandom(5000)
    c = Conn(svc, 1, data)
    c.digest = hashlib.sha256(b"something else").digest()
    assert c.init() == (fs.INIT_ACK, 0) and c.chunk(0) == (fs.ACK, 5000)
    assert c.done() == (fs.COMPLETE, (False, fs.MISMATCH))
    assert listing(svc.received_dir) == [".partial", f".partial/{c.tid.hex()}"]
    assert c.chunk(0) == (fs.ABORT, fs.NO_TRANSFER_CHUNK)                         # the transfer is over


def test_concurrent_and_stalled_transfers_of_one_file(svc):
    data = os.urandom(2 * fs.CHUNK_SIZE)
    a, b = Conn(svc, 1, data), Conn(svc, 2, data)
    assert a.init() == (fs.INIT_ACK, 0) and a.chunk(0, fs.CHUNK_SIZE) == (fs.ACK, fs.CHUNK_SIZE)
    assert b.init() == (fs.INIT_ACK, 0)                          # a live transfer holds it: a private file
    assert len(listing(svc.received_dir / ".partial")) == 2
    svc.connection_ended(2)                                      # its connection drops: the private file goes
    assert listing(svc.received_dir / ".partial") == [a.tid.hex()]
    svc.claims.stale_after = 0                                   # a stalls; a retry takes its file over
    c = Conn(svc, 3, data)
    assert c.init() == (fs.INIT_ACK, fs.CHUNK_SIZE)
    assert a.chunk(fs.CHUNK_SIZE) == (fs.COMPLETE, (False, fs.TAKEN_OVER))
    assert c.chunk(fs.CHUNK_SIZE) == (fs.ACK, len(data)) and c.done() == (fs.COMPLETE, (True, ""))
    (saved,) = svc.received_dir.glob("data-*")
    assert saved.read_bytes() == data and listing(svc.received_dir / ".partial") == []


def test_abort_and_too_many_transfers(svc):
    conns = [Conn(svc, 1, os.urandom(10)) for _ in range(fs.MAX_TRANSFERS + 1)]
    assert all(c.init() == (fs.INIT_ACK, 0) for c in conns[:fs.MAX_TRANSFERS])
    assert conns[-1].init() == (fs.COMPLETE, (False, fs.TOO_MANY))
    assert conns[0].send(fs.abort(conns[0].tid, "user cancelled")) is None
    assert conns[0].chunk(0) == (fs.ABORT, fs.NO_TRANSFER_CHUNK)
    assert conns[-1].init() == (fs.INIT_ACK, 0)                   # the aborted one's place is free


def test_transfers_that_cannot_fit_are_refused_at_init(tmp_path):
    svc = DataExchange(str(tmp_path), received_max_bytes=1000)
    svc.received_dir.mkdir(parents=True)
    (svc.received_dir / "old.bin").write_bytes(b"x" * 900)
    assert Conn(svc, 1, os.urandom(101)).init() == \
        (fs.COMPLETE, (False, "receiver disk quota exceeded: need 101, 100 of 1000 available"))
    assert Conn(svc, 1, os.urandom(100)).init() == (fs.INIT_ACK, 0)
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_bsize
    unlimited = DataExchange(str(tmp_path / "u"), received_max_bytes=0)
    kind, (ok, text) = Conn(unlimited, 1, b"x").init(size=free + 1)
    assert (kind, ok) == (fs.COMPLETE, False)
    assert re.fullmatch(rf"receiver disk full: need {free + 1} bytes, \d+ free \(keeping 16777216 in reserve\)", text)


def test_an_unusable_received_dir_ends_the_connection(tmp_path):
    svc = DataExchange(str(tmp_path))
    svc.received_dir.parent.mkdir(parents=True)
    svc.received_dir.write_bytes(b"a file, not a directory")
    reply, keep = svc.stream_frame(1, dx.FrameDecoder().feed(fs.frame(fs.DONE, bytes(16)))[0])
    assert not keep and dx.FrameDecoder().feed(reply) == \
        [dx.Frame(dx.TEXT, f"ERR mkdir: mkdir {svc.received_dir}: not a directory".encode())]
    assert svc.handle(dx.Frame(dx.FILE, b"x", filename="a.txt"), SENDER) == dx.ack(
        dx.Frame(dx.FILE, b"x"), f"mkdir: mkdir {svc.received_dir}: not a directory")


_steps = hs.lists(hs.tuples(hs.integers(0, 9), hs.sampled_from([0, 1, 5, 1 << 20, (1 << 64) - 1]),
                            hs.binary(max_size=64)), max_size=12)


@settings(max_examples=60, deadline=None)
@given(_steps)
def test_garbage_streams_never_raise(steps):
    with tempfile.TemporaryDirectory() as home:
        svc = DataExchange(home, received_max_bytes=0)
        c = Conn(svc, 1, b"", name=b"\xff/..")
        for kind, number, raw in steps:
            body = {fs.INIT: number.to_bytes(8, "big") + bytes(36) + len(raw).to_bytes(2, "big") + raw,
                    fs.CHUNK: number.to_bytes(8, "big") + raw}.get(kind, raw)
            reply, keep = svc.stream_frame(1, dx.Frame(dx.FILESTREAM, bytes((kind,)) + c.tid + body))
            assert keep and (reply is None or dx.FrameDecoder().feed(reply)[0].type == dx.FILESTREAM)
        svc.connection_ended(1)


# -- caps ---------------------------------------------------------------------------------------------------
def sparse(path, size: int, age: float = 0) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
    if age:
        t = time.time() - age
        os.utime(path, (t, t))


def test_inbox_evicts_the_oldest_down_to_90_percent(svc):
    cap = 256 << 20
    svc.inbox_dir.mkdir(parents=True)
    for i, size in enumerate((120 << 20, 100 << 20, 40 << 20, 10)):
        sparse(svc.inbox_dir / f"old{i}.json", size, age=1000 - i)
    assert svc.handle(dx.Frame(dx.TEXT, b"hi"), SENDER) == dx.ack(dx.Frame(dx.TEXT, b"hi"))
    names = sorted(p.name for p in svc.inbox_dir.iterdir())
    assert names[1:] == ["old1.json", "old2.json", "old3.json"] and names[0].startswith("TEXT-")
    assert svc.inbox.on_disk == sum(p.stat().st_size for p in svc.inbox_dir.iterdir()) < cap * 9 // 10
    big = dx.Frame(dx.BINARY, b"\x00" * 3000)
    small = DataExchange(str(svc.inbox_dir.parent.parent / "small"), inbox_max_bytes=1000, on_event=svc.on_event)
    reply = dx.FrameDecoder().feed(small.handle(big, SENDER))[0].payload.decode()
    assert re.fullmatch(r"ERR BINARY save failed: inbox byte budget exceeded: a \d+-byte message is larger "
                        r"than the 1000-byte cap", reply)
    assert svc.events[-1] == ("inbox.full", {"from": SENDER, "type": "BINARY", "frame_bytes": 3000,
                                             "max_bytes": 1000})
    assert small.seq == 1 and not list(small.inbox_dir.iterdir())    # refused, but its number is used


def test_inbox_budget_rereads_the_directory_before_evicting(tmp_path):
    svc = DataExchange(str(tmp_path), inbox_max_bytes=2000)
    for i in range(6):
        svc.handle(dx.Frame(dx.TEXT, b"m" * 100), SENDER)              # 6 x ~230 bytes
    for p in sorted(svc.inbox_dir.iterdir())[:5]:
        p.unlink()                                                    # `pilotctl inbox --clear`, elsewhere
    svc.handle(dx.Frame(dx.TEXT, b"m" * 1500), SENDER)                 # over the stale total, fits for real
    assert len(list(svc.inbox_dir.iterdir())) == 2                    # so nothing was evicted


def test_every_64th_save_trims_the_inbox_to_its_file_cap(tmp_path):
    svc = DataExchange(str(tmp_path), inbox_max_files=3)
    svc.inbox_dir.mkdir(parents=True)
    for i in range(5):
        sparse(svc.inbox_dir / f"old{i}.json", 10, age=100 - i)
    svc.seq = 62
    svc.handle(dx.Frame(dx.TEXT, b"x"), SENDER)
    assert len(list(svc.inbox_dir.iterdir())) == 6
    svc.handle(dx.Frame(dx.TEXT, b"x"), SENDER)                        # seq 64
    assert sorted(p.name for p in svc.inbox_dir.iterdir())[2:] == ["old4.json"]


def test_received_files_quota_for_file_frames(svc):
    svc.received_dir.mkdir(parents=True)
    (svc.received_dir / ".partial").mkdir()
    sparse(svc.received_dir / ".partial" / "fragment", (2 << 30) - 5)
    frame = dx.Frame(dx.FILE, b"123456", filename="f.txt")
    assert svc.handle(frame, SENDER) == dx.ack(frame, "received-files quota exceeded: 2147483643 + 6 > 2147483648")
    assert svc.events == [("received.full", {"type": "FILE", "frame_bytes": 6, "max_bytes": 2 << 30})]
    assert svc.handle(dx.Frame(dx.FILE, b"12345", filename="f.txt"), SENDER).endswith(b"ACK FILE 5 bytes")
