"""The 34-byte packet header and its CRC-32 (official common/protocol/packet.go, checksum.go)."""

import zlib

import pytest
from hypothesis import given, strategies as st

from pilot_daemon.proto import packet as pk
from pilot_daemon.proto.addr import Addr
from pilot_daemon.proto.errors import (
    ChecksumMismatch, PacketError, PacketTooShort, PacketTruncated, PayloadTooLarge, RemoteProtocolError,
    UnsupportedVersion,
)

# Hand-assembled from the layout comment in packet.go: a SYN from 0:0000.0000.03E9 port 49152 to
# 0:0000.0000.03E8 port 7, seq 0x01020304, window 512, payload "hi". The checksum is CRC-32/IEEE
# (hash/crc32 IEEE table = zlib.crc32) over the 34 header bytes with bytes 30-33 zero, then payload.
SYN_HEADER_NO_CRC = bytes.fromhex(
    "11"            # version 1 << 4 | SYN
    "01"            # stream
    "0002"          # payload length
    "0000000003e9"  # src
    "0000000003e8"  # dst
    "c000" "0007"   # ports
    "01020304"      # seq
    "00000000"      # ack
    "0200"          # window
)
SYN_PAYLOAD = b"hi"
SYN_CRC = zlib.crc32(SYN_HEADER_NO_CRC + bytes(4) + SYN_PAYLOAD)
SYN_WIRE = SYN_HEADER_NO_CRC + SYN_CRC.to_bytes(4, "big") + SYN_PAYLOAD


def syn_packet():
    return pk.Packet(
        protocol=pk.Proto.STREAM, src=Addr(0, 1001), dst=Addr(0, 1000), src_port=49152, dst_port=7,
        flags=pk.Flag.SYN, seq=0x01020304, window=512, payload=SYN_PAYLOAD,
    )


def test_encode_matches_hand_assembled_vector():
    assert syn_packet().encode() == SYN_WIRE
    assert len(SYN_WIRE) == pk.HEADER_SIZE + 2


def test_decode_vector():
    p = pk.decode(SYN_WIRE)
    assert p == syn_packet()
    assert p.has(pk.Flag.SYN) and not p.has(pk.Flag.ACK)
    assert pk.checksum(SYN_WIRE) == SYN_CRC


def test_crc_is_ieee_known_answer():
    # CRC-32/IEEE check value from the CRC catalogue: crc32("123456789") = 0xCBF43926.
    assert zlib.crc32(b"123456789") == 0xCBF43926


def test_trailing_bytes_after_payload_are_ignored():
    assert pk.decode(SYN_WIRE + b"junk").payload == SYN_PAYLOAD


def test_too_short_truncated_bad_crc_bad_version():
    with pytest.raises(PacketTooShort):
        pk.decode(SYN_WIRE[:33])
    with pytest.raises(PacketTruncated):
        pk.decode(SYN_WIRE[:-1])
    tampered = bytearray(SYN_WIRE)
    tampered[-1] ^= 0x01
    with pytest.raises(ChecksumMismatch):
        pk.decode(bytes(tampered))
    v2 = bytearray(SYN_WIRE)
    v2[0] = 0x21
    v2[30:34] = pk.checksum(bytes(v2)).to_bytes(4, "big")
    with pytest.raises(UnsupportedVersion):
        pk.decode(bytes(v2))


def test_checksum_is_checked_before_version():
    v2 = bytearray(SYN_WIRE)
    v2[0] = 0x21
    with pytest.raises(ChecksumMismatch):
        pk.decode(bytes(v2))


def test_oversize_payload_is_a_local_error():
    p = syn_packet()
    p.payload = bytes(pk.MAX_PAYLOAD + 1)
    with pytest.raises(PayloadTooLarge):
        p.encode()
    p.payload = bytes(pk.MAX_PAYLOAD)
    assert len(p.encode()) == pk.HEADER_SIZE + pk.MAX_PAYLOAD


packets = st.builds(
    pk.Packet,
    protocol=st.integers(0, 255),
    src=st.builds(Addr, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
    dst=st.builds(Addr, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)),
    src_port=st.integers(0, 0xFFFF),
    dst_port=st.integers(0, 0xFFFF),
    flags=st.integers(0, 15),
    seq=st.integers(0, 0xFFFFFFFF),
    ack=st.integers(0, 0xFFFFFFFF),
    window=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=300),
)


@given(packets)
def test_round_trip(p):
    assert pk.decode(p.encode()) == p


@given(packets, st.data())
def test_any_single_bit_flip_is_caught(p, data):
    wire = bytearray(p.encode())
    bit = data.draw(st.integers(0, len(wire) * 8 - 1))
    wire[bit // 8] ^= 1 << (bit % 8)
    try:
        got = pk.decode(bytes(wire))
    except PacketError:
        return
    # A flip in the length field can still yield a valid shorter packet only if the CRC matches,
    # which CRC-32 rules out for a single-bit change over the covered bytes.
    pytest.fail(f"bit flip {bit} accepted: {got}")


@given(st.binary(max_size=200))
def test_garbage_raises_only_packet_errors(data):
    try:
        pk.decode(data)
    except RemoteProtocolError:
        pass


def test_error_bases_are_abstract_and_messages_kept():
    from pilot_daemon.proto.errors import LocalProtocolError, PilotError

    for base in (PilotError, LocalProtocolError, RemoteProtocolError):
        with pytest.raises(TypeError):
            base("x")
    err = ChecksumMismatch("drop it")
    assert err.message == "drop it" and isinstance(err, RemoteProtocolError)
