"""FILESTREAM codec, the receiver's pure decisions and the storage caps (sans-I/O, no files, no network).

Layouts and texts are the official 1.18 receiver's (``proto.filestream``, ``proto.storage_caps``); the INIT
sizes below are the ones the official daemon logs for ``pilotctl send-file`` (70 bytes for ``f10.bin``,
49177 for a full 48 KiB chunk).
"""
from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from pilot_daemon.proto import dataexchange as dx
from pilot_daemon.proto import filestream as fs
from pilot_daemon.proto import storage_caps as caps

TID = bytes(range(16))


def payload_of(wire: bytes) -> bytes:
    (frame,) = dx.FrameDecoder().feed(wire)
    assert frame.type == dx.FILESTREAM
    return frame.payload


def test_frames_round_trip_with_the_official_sizes():
    digest = hashlib.sha256(b"0123456789").digest()
    init = payload_of(fs.init(digest[:16], 10, digest, b"f10.bin"))
    assert len(init) == 70
    kind, tid, body = fs.split(init)
    assert (kind, tid) == (fs.INIT, digest[:16])
    assert fs.parse_init(body) == fs.Init(10, digest, fs.CHUNK_SIZE, b"f10.bin")
    chunk = payload_of(fs.chunk(TID, 49152, b"x" * fs.CHUNK_SIZE))
    assert len(chunk) == 49177 and fs.parse_chunk(fs.split(chunk)[2]) == (49152, b"x" * fs.CHUNK_SIZE)
    assert fs.split(payload_of(fs.frame(fs.DONE, TID))) == (fs.DONE, TID, b"")
    for kind in (fs.ACK, fs.INIT_ACK):
        k, _, body = fs.split(payload_of(fs.offset_frame(kind, TID, 1 << 40)))
        assert (k, fs.parse_offset(body)) == (kind, 1 << 40)
    assert fs.parse_complete(fs.split(payload_of(fs.complete(TID)))[2]) == (True, "")
    assert fs.parse_complete(fs.split(payload_of(fs.complete(TID, fs.TOO_MANY)))[2]) == (False, fs.TOO_MANY)
    assert fs.split(payload_of(fs.abort(TID, "why")))[2] == b"why"
    assert len(fs.parse_init(fs.split(payload_of(fs.init(TID, 1, digest, b"n" * 300)))[2]).name) == 255


@pytest.mark.parametrize("call, body, text", [
    (fs.split, b"\x01" + bytes(15), fs.MALFORMED_FRAME),
    (fs.parse_init, bytes(45), fs.MALFORMED_INIT),                                  # truncated header
    (fs.parse_init, struct.pack(">Q32sIH", 1, bytes(32), 1, 5) + b"abc", fs.MALFORMED_INIT),  # name cut
    (fs.parse_init, struct.pack(">Q32sIH", 1, bytes(32), 1, 1) + b"ab", fs.MALFORMED_INIT),   # trailing junk
    (fs.parse_chunk, b"\x00" * 7, fs.MALFORMED_CHUNK),
    (fs.parse_offset, b"\x00" * 7, "malformed offset"),
    (fs.parse_complete, b"", "malformed complete"),
])
def test_truncated_and_garbage_bodies_give_the_official_texts(call, body, text):
    with pytest.raises(fs.FileStreamError) as info:
        call(body)
    assert str(info.value) == text
    assert isinstance(info.value, dx.DataExchangeError)     # what the service already handles


@given(hs.binary(max_size=120))
def test_no_exception_but_filestream_error_escapes_the_decoders(raw):
    for call in (fs.split, fs.parse_init, fs.parse_chunk, fs.parse_offset, fs.parse_complete):
        try:
            call(raw)
        except fs.FileStreamError:
            pass
    fs.base_name(raw)


def test_oversize_frames_and_ids_are_refused():
    huge = struct.pack(">II", dx.FILESTREAM, (64 << 20) + 1)
    with pytest.raises(dx.DataExchangeError, match=r"frame too large: 67108865 \(max 67108864\)"):
        dx.FrameDecoder().feed(huge)
    with pytest.raises(fs.FileStreamError, match="transfer id must be 16 bytes"):
        fs.frame(fs.DONE, b"short")


def test_receiver_decisions():
    assert fs.chunk_check(0, 10, 10) is None and fs.chunk_check(10, 0, 10) is None
    assert fs.chunk_check(5, 6, 10) == "chunk at 5 of 6 bytes exceeds declared size 10"
    assert fs.chunk_check(11, 0, 10) == "chunk at 11 of 0 bytes exceeds declared size 10"
    assert fs.resume_offset(None, 10) == 0 and fs.resume_offset(4, 10) == 4 and fs.resume_offset(11, 10) == 0
    assert fs.quota_check(5, 90, 100) == (10, None)
    assert fs.quota_check(20, 150, 100) == (0, "receiver disk quota exceeded: need 20, 0 of 100 available")
    assert fs.disk_check(1, fs.DISK_RESERVE + 1) is None
    assert fs.disk_check(2, fs.DISK_RESERVE + 1) == \
        f"receiver disk full: need 2 bytes, {fs.DISK_RESERVE + 1} free (keeping 16777216 in reserve)"
    assert [fs.base_name(n) for n in (b"a/b/c.txt", b"../x", b"", b"/", b".", b"..", b"d/", b"\xff")] == \
        ["c.txt", "x", "received.bin", "received.bin", "received.bin", "..", "d", "\udcff"]


def test_partial_claims_take_over_only_stale_holders():
    claims = fs.PartialClaims(stale_after=10)
    first, prev = claims.claim("p", now=0)
    assert first is not None and prev is None and claims.held("p", 5)
    assert claims.claim("p", now=5) == (None, None)            # a live holder keeps it
    assert claims.still_holds("p", first, now=8)               # ...and a write refreshes it
    second, prev = claims.claim("p", now=19)
    assert second is not None and prev is first and not claims.still_holds("p", first, 19)
    claims.release("p", second, prev)                           # given back to the one it was taken from
    assert claims.paths["p"] is first
    claims.release("p", first)
    assert not claims.held("p", 20) and claims.still_holds("p", None, 20)


def test_storage_caps():
    assert (caps.INBOX_MAX_BYTES, caps.RECEIVED_MAX_BYTES, caps.INBOX_MAX_FILES) == (256 << 20, 2 << 30, 10000)
    assert caps.low_water(caps.INBOX_MAX_BYTES) == 241591910 and caps.low_water(1000) == 900
    assert caps.low_water(99) == 89
    assert str(caps.inbox_full(1, 2, 3)) == "inbox byte budget exceeded: 1 + 2 > 3"
    assert str(caps.message_too_large(9, 8)) == \
        "inbox byte budget exceeded: a 9-byte message is larger than the 8-byte cap"
    assert str(caps.received_full(1, 2, 3)) == "received-files quota exceeded: 1 + 2 > 3"


def test_os_error_text_is_gos():
    assert dx.os_error_text("open", "/x/y", PermissionError(13, "Permission denied")) == \
        "open /x/y: permission denied"
    assert dx.os_error_text("rename", "/a /b", ValueError("embedded null byte")) == "rename /a /b: invalid argument"
