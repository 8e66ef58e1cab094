"""Addresses: text and wire forms as the official common/protocol/address.go defines them."""

import pytest
from hypothesis import given, strategies as st

from pilot_daemon.proto.addr import ADDR_SIZE, Addr, SocketAddr
from pilot_daemon.proto.errors import AddressError, LocalProtocolError

addrs = st.builds(Addr, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))


# Vectors: the official daemon printed node 1000 as 0:0000.0000.03E8 (research note §6, observed);
# the other two are the examples in address.go's ParseAddr doc comment.
@pytest.mark.parametrize(
    "text, network, node",
    [
        ("0:0000.0000.03E8", 0, 1000),
        ("0:0000.0000.0001", 0, 1),
        ("1:0001.00A3.F291", 1, 0x00A3F291),
        ("65535:FFFF.FFFF.FFFF", 0xFFFF, 0xFFFFFFFF),
    ],
)
def test_text_form_matches_official_examples(text, network, node):
    addr = Addr.parse(text)
    assert (addr.network, addr.node) == (network, node)
    assert str(addr) == text


def test_lower_case_hex_parses_and_formats_upper_case():
    assert str(Addr.parse("10:000a.dead.beef")) == "10:000A.DEAD.BEEF"


def test_wire_form_is_network_then_node_big_endian():
    assert Addr(0xCAFE, 0xDEADBEEF).to_bytes() == bytes.fromhex("cafedeadbeef")
    assert Addr.from_bytes(bytes.fromhex("00ffcafedeadbeef"), 2) == Addr(0xCAFE, 0xDEADBEEF)
    assert len(Addr(1, 2).to_bytes()) == ADDR_SIZE


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ("", "expected N:XXXX"),
        ("0000.0000.0001", "expected N:XXXX"),
        ("x:0000.0000.0001", "network ID"),
        ("-1:0000.0000.0001", "network ID"),
        ("+1:0001.0000.0001", "network ID"),
        ("65536:0000.0000.0001", "out of range"),
        ("0:0000.0001", "3 dot-separated"),
        ("0:0000.0000.0000.0001", "3 dot-separated"),
        ("0:000.0000.0001", "4 hex digits"),
        ("0:0000.0000.00001", "4 hex digits"),
        ("1:GGGG.0000.0000", "4 hex digits"),
        ("0:0x00.0000.0001", "4 hex digits"),
        ("1:0002.0000.0001", "network mismatch"),
        (" 0:0000.0000.0001", "network ID"),
    ],
)
def test_bad_text_raises_address_error(bad, fragment):
    with pytest.raises(AddressError, match=fragment):
        Addr.parse(bad)


def test_address_error_is_a_local_protocol_error_and_value_error():
    with pytest.raises(LocalProtocolError):
        Addr.parse("nope")
    with pytest.raises(ValueError):
        Addr(0x10000, 0)
    with pytest.raises(AddressError):
        Addr(0, -1)
    with pytest.raises(AddressError):
        Addr.from_bytes(b"\x00" * 5)


def test_socket_address_forms():
    sa = SocketAddr.parse("0:0000.0000.03E8:7")
    assert sa == SocketAddr(Addr(0, 1000), 7)
    assert str(sa) == "0:0000.0000.03E8:7"
    assert str(SocketAddr.parse("1:0001.0001.0001:8080")) == "1:0001.0001.0001:8080"


@pytest.mark.parametrize(
    "bad", ["0:0000.0000.03E8", "0:0000.0000.03E8:", "0:0000.0000.03E8:65536", "0:0000.0000.03E8:x", "7"]
)
def test_bad_socket_address(bad):
    with pytest.raises(AddressError):
        SocketAddr.parse(bad)


def test_broadcast_and_zero():
    assert Addr(3, 0xFFFFFFFF).is_broadcast
    assert Addr(0, 0).is_zero and not Addr(0, 1).is_zero


@given(addrs)
def test_text_round_trip(addr):
    assert Addr.parse(str(addr)) == addr


@given(addrs)
def test_wire_round_trip(addr):
    assert Addr.from_bytes(addr.to_bytes()) == addr


@given(addrs, st.integers(0, 0xFFFF))
def test_socket_round_trip(addr, port):
    assert SocketAddr.parse(str(SocketAddr(addr, port))) == SocketAddr(addr, port)


@given(st.text(max_size=40))
def test_garbage_text_raises_only_address_error(text):
    try:
        addr = Addr.parse(text)
    except AddressError:
        return
    assert str(addr).lower() == text.lower()
