"""Stream packets against the official 1.18 daemon's captured frames, and the wire rules of streams."""

import base64

import pytest
from hypothesis import given, strategies as st

import official_capture as oc
from pilot_daemon.proto import packet as pk
from pilot_daemon.proto import sack, tunnel
from pilot_daemon.proto.addr import Addr, SocketAddr
from pilot_daemon.proto.packet import Flag
from pilot_daemon.proto.stream import (
    Closed, Connected, DataReceived, Stream, StreamEnded, StreamError, StreamReset, StreamState,
)
from pilot_daemon.proto.streams import Accepted, PortInUse, StreamTable, SynDropped

from streamsim import Link, pair, transfer


def captured_stream_packets() -> dict[str, list[pk.Packet]]:
    """Every stream packet of the capture, decrypted, by direction."""
    s = tunnel.TunnelSession(local_node=oc.PEER_NODE, identity=oc.peer_ed25519(), x25519=oc.peer_x25519())
    s.receive_datagram(oc.daemon_pila(), 0.0)
    s.provide_peer_identity(oc.DAEMON_NODE, base64.b64decode(oc.capture()["daemon_ed25519_public_b64"]), 0.0)
    aead = s.session(oc.DAEMON_NODE)._aead   # one key both ways: the peer's own frames decrypt too
    out = {"daemon->peer": [], "peer->daemon": []}
    for entry in oc.capture()["udp"]:
        frame = bytes.fromhex(entry["hex"])
        if frame[:4] != b"PILS":
            continue
        sealed = tunnel.decode_frame(frame)
        packet = pk.decode(aead.decrypt(sealed.nonce, sealed.ciphertext, frame[4:8]))
        if packet.protocol == pk.Proto.STREAM:
            out[entry["dir"]].append(packet)
    return out


def drain(source) -> list:
    out = []
    while (ev := source.next_event()) is not None:
        out.append(ev)
    return out


OFFICIAL = SocketAddr(Addr(0, oc.DAEMON_NODE), 49152)
PEER = SocketAddr(Addr(0, oc.PEER_NODE), 7)


def test_listener_answers_the_official_syn_byte_for_byte():
    official = captured_stream_packets()["daemon->peer"]
    ours = captured_stream_packets()["peer->daemon"]
    syn, final_ack, data, ack_of_echo, fin = official
    assert (syn.flags, syn.seq, syn.window) == (Flag.SYN, 0, 512)   # official ISS 0, 512 free slots
    table = StreamTable(oc.PEER_NODE, iss=5000)
    table.listen(7)
    table.receive_packet(syn, 0.0)
    (synack,) = table.packets_to_send(0.0)
    assert synack.encode() == ours[0].encode()                       # SYN|ACK seq 5000 ack 1 win 512
    table.receive_packet(final_ack, 0.01)
    table.receive_packet(data, 0.02)
    events = drain(table)
    assert isinstance(events[0], Accepted)
    stream = events[0].stream
    assert [type(e) for e in events[1:]] == [Connected, DataReceived]
    assert events[2].data == b"hello-from-official"
    stream.send(b"echo:hello")
    (echo,) = table.packets_to_send(0.03)                            # data piggybacks the ACK
    assert echo.encode() == ours[2].encode()
    table.receive_packet(ack_of_echo, 0.04)
    table.receive_packet(fin, 0.05)                                  # FIN: flags FIN only, ack 0, window 0
    assert [type(e) for e in drain(table)] == [StreamEnded, Closed]
    (finack,) = table.packets_to_send(0.05)
    assert (finack.flags, finack.seq, finack.ack) == (Flag.FIN | Flag.ACK, 5011, 21)
    assert stream.state is StreamState.TIME_WAIT


def test_dialer_sends_the_official_syn_ack_and_fin_byte_for_byte():
    official = captured_stream_packets()["daemon->peer"]
    synack, _, echo = captured_stream_packets()["peer->daemon"][:3]
    table = StreamTable(oc.DAEMON_NODE)
    stream = table.connect(PEER, 0.0)
    assert stream.local == OFFICIAL                                  # first ephemeral port 49152
    assert [p.encode() for p in table.packets_to_send(0.0)] == [official[0].encode()]
    table.receive_packet(synack, 0.01)
    assert [p.encode() for p in table.packets_to_send(0.01)] == [official[1].encode()]
    stream.send(b"hello-from-official")
    assert [p.encode() for p in table.packets_to_send(0.02)] == [official[2].encode()]
    table.receive_packet(echo, 0.03)
    stream.close(0.04)
    assert [p.encode() for p in table.packets_to_send(0.04)] == [official[4].encode()]
    assert drain(table)[-1] == DataReceived(b"echo:hello", conn_id=stream.conn_id)


def test_sack_codec_matches_the_official_layout():
    blocks = [(5, 10), (0xFFFFFFF0, 3)]
    raw = sack.encode(blocks)
    assert raw == b"SACK\x02" + bytes.fromhex("00000005 0000000a fffffff0 00000003")
    assert sack.decode(raw) == blocks
    assert sack.encode([(i, i + 1) for i in range(6)])[4] == 4       # at most four blocks
    for not_sack in (b"", b"SACK", b"SACK\x00", b"SACK\x05" + bytes(40), b"SACK\x02" + bytes(15), b"sack\x01" + bytes(8)):
        assert sack.decode(not_sack) is None


@given(st.binary(max_size=64))
def test_no_data_segment_is_ever_read_as_sack(data):
    sent = []
    rest = memoryview(data)
    while rest:
        n = sack.guard_payload(bytes(rest[:1024]))
        sent.append(bytes(rest[:n]))
        rest = rest[n:]
    assert b"".join(sent) == data
    assert all(sack.decode(seg) is None for seg in sent)


def test_data_that_looks_like_sack_still_arrives_intact():
    net = pair(3)
    payload = sack.encode([(1, 2), (3, 4)]) * 300
    _, conn = transfer(net, payload)
    assert net.received(net.b, conn) == payload


def test_syn_to_an_unbound_port_gets_rst_and_other_strangers_get_nothing():
    table = StreamTable(2)
    src = Addr(0, 1)
    syn = pk.Packet(pk.Proto.STREAM, src, Addr(0, 2), 49152, 80, Flag.SYN, 0, 0, 512)
    table.receive_packet(syn, 0.0)
    (rst,) = table.packets_to_send(0.0)
    assert (rst.flags, rst.seq, rst.ack, rst.window, rst.src_port, rst.dst_port, rst.dst) == (Flag.RST, 0, 0, 0, 80, 49152, src)
    assert drain(table) == [SynDropped(SocketAddr(src, 49152), 80, "no listener", True)]
    for flags in (Flag.ACK, Flag.FIN, Flag.RST, Flag.FIN | Flag.ACK, Flag.SYN | Flag.ACK):
        table.receive_packet(pk.Packet(pk.Proto.STREAM, src, Addr(0, 2), 49152, 80, flags, 7, 9, 512, b"x"), 0.1)
    assert table.packets_to_send(0.1) == [] and drain(table) == []


def test_rst_from_the_listener_side_refuses_the_dial():
    net = pair(0)
    stream = net.a.connect(SocketAddr(Addr(0, 2), 81), 0.0)
    net.run()
    assert [type(e) for e in net.events[id(net.a)]] == [StreamReset, Closed]
    assert stream.closed_reason == "connection refused"


def test_duplicate_syn_gets_the_same_synack_and_a_new_iss_replaces_the_connection():
    table = StreamTable(2, iss=77)
    table.listen(7)
    syn = pk.Packet(pk.Proto.STREAM, Addr(0, 1), Addr(0, 2), 49152, 7, Flag.SYN, 100, 0, 512)
    table.receive_packet(syn, 0.0)
    first = table.packets_to_send(0.0)
    table.receive_packet(syn, 0.5)
    assert [p.encode() for p in table.packets_to_send(0.5)] == [p.encode() for p in first]
    assert len(table.streams) == 1
    table.receive_packet(pk.Packet(pk.Proto.STREAM, Addr(0, 1), Addr(0, 2), 49152, 7, Flag.SYN, 9000, 0, 512), 1.0)
    (synack,) = table.packets_to_send(1.0)
    assert synack.ack == 9001 and len(table.streams) == 1


def test_listen_twice_and_send_after_close_are_local_errors():
    table = StreamTable(1)
    table.listen(5)
    with pytest.raises(PortInUse, match="already bound"):
        table.listen(5)
    stream = Stream(SocketAddr(Addr(0, 1), 5), SocketAddr(Addr(0, 2), 6), 0.0, initiator=True)
    stream.connect(0.0)
    stream.close(0.0)
    with pytest.raises(StreamError, match="after close"):
        stream.send(b"late")


def test_ephemeral_ports_round_robin_from_49152_and_skip_ports_in_use():
    table = StreamTable(1)
    table.listen(49153)
    ports = [table.connect(SocketAddr(Addr(0, 2), 7), 0.0).local.port for _ in range(3)]
    assert ports == [49152, 49154, 49155]


def test_lossy_link_through_the_wire_codec():
    link = dict(loss=0.1, dup=0.05, reorder=0.2)
    net = pair(11, wire=True, ab=Link(**link), ba=Link(**link))
    payload = net.rng.randbytes(200_000)
    _, conn = transfer(net, payload)
    assert net.received(net.b, conn) == payload
    assert net.ab.dropped > 0


def _syn(src_node: int, src_port: int, dst_port: int) -> pk.Packet:
    return pk.Packet(pk.Proto.STREAM, Addr(0, src_node), Addr(0, 2), src_port, dst_port, Flag.SYN, 0, 0, 512)


def test_connection_limits_per_port_and_in_total_follow_streams_as_they_close():
    table = StreamTable(2, max_connections_per_port=3, max_total_connections=5)
    table.listen(7)
    table.listen(8)
    for i in range(3):
        table.receive_packet(_syn(10 + i, 49152, 7), 0.0)
    assert [p.flags for p in table.packets_to_send(0.0)] == [Flag.SYN | Flag.ACK] * 3
    drain(table)
    table.receive_packet(_syn(20, 49152, 7), 0.1)                 # a fourth on port 7: refused with RST
    (rst,) = table.packets_to_send(0.1)
    assert rst.flags == Flag.RST and rst.dst == Addr(0, 20)
    assert drain(table) == [SynDropped(SocketAddr(Addr(0, 20), 49152), 7, "too many connections on the port", True)]
    for i in range(2):                                            # port 8 has its own count
        table.receive_packet(_syn(30 + i, 49152, 8), 0.2)
    assert [p.flags for p in table.packets_to_send(0.2)] == [Flag.SYN | Flag.ACK] * 2
    assert table.open_count == 5
    table.receive_packet(_syn(40, 49152, 8), 0.3)                 # five open in all: the total limit
    table.packets_to_send(0.3)
    assert drain(table)[-1] == SynDropped(SocketAddr(Addr(0, 40), 49152), 8, "too many connections", True)
    on_port_7 = next(s for s in table.streams.values() if s.local.port == 7)
    on_port_7.abort(0.4)                                          # one closes: its place is free at once
    assert table.open_count == 4
    table.packets_to_send(0.4)
    drain(table)
    table.receive_packet(_syn(50, 49152, 7), 0.5)
    assert [p.flags for p in table.packets_to_send(0.5)] == [Flag.SYN | Flag.ACK]
    assert table.open_count == 5


def test_a_replaced_connection_is_counted_once():
    table = StreamTable(2, max_connections_per_port=1)
    table.listen(7)
    table.receive_packet(_syn(10, 49152, 7), 0.0)
    table.receive_packet(pk.Packet(pk.Proto.STREAM, Addr(0, 10), Addr(0, 2), 49152, 7, Flag.SYN, 9000, 0, 512), 1.0)
    assert table.open_count == 1 and len(table.streams) == 1      # the new ISS replaced it, not refused by the limit
    assert all(p.flags != Flag.RST for p in table.packets_to_send(1.0))


def test_per_source_syn_buckets_stay_bounded_and_a_busy_source_keeps_its_limit():
    from pilot_daemon.proto.streams import PER_SOURCE_TRACKED
    table = StreamTable(2, syn_rate_limit=10**9, per_source_syn_limit=2, max_connections_per_port=10**6)
    table.listen(7, backlog=10**6)
    busy = 1

    def syn_from(node: int, port: int, now: float) -> list:
        table.receive_packet(_syn(node, port, 7), now)
        table.packets_to_send(now)
        return drain(table)

    for node in range(100, 100 + PER_SOURCE_TRACKED - 1):       # the table is full of sources seen at t=0
        syn_from(node, 49152, 0.0)
    assert syn_from(busy, 49152, 0.9) == [] and syn_from(busy, 49153, 0.9) == []
    assert syn_from(busy, 49154, 0.9)[-1].reason == "per-source SYN rate limit"
    syn_from(50_000, 49152, 1.2)                                # one more source: the idle ones are forgotten
    assert len(table._per_source) == 2                           # the busy one and the new one
    assert syn_from(busy, 49155, 1.2)[-1].reason == "per-source SYN rate limit"   # still limited
    for node in range(60_000, 60_000 + 3 * PER_SOURCE_TRACKED):  # a flood of busy sources: never above the bound
        syn_from(node, 49152, 1.5)
        assert len(table._per_source) <= PER_SOURCE_TRACKED
