"""Stream timers on a fake clock: RTO backoff, dial timeout, zero window, keepalive, TIME_WAIT, SYN floods."""

from pilot_daemon.proto import packet as pk
from pilot_daemon.proto.addr import Addr, SocketAddr
from pilot_daemon.proto.packet import Flag
from pilot_daemon.proto.stream import Closed, DataReceived, IdleTimedOut, StreamEnded, StreamState
from pilot_daemon.proto.streams import Accepted, StreamTable, SynDropped

from streamsim import pair, transfer

B7 = SocketAddr(Addr(0, 2), 7)


def established(net, **options):
    net.b.listen(7)
    client = net.a.connect(B7, net.now, **options)
    net.run(lambda: net.accepted[id(net.b)])
    return client, net.accepted[id(net.b)][0]


def sent_times(net, direction, pred):
    return [round(t, 3) for t, d, p in net.log if d == direction and pred(p)]


def test_two_probes_then_rto_doubling_then_reset_after_eight_transmissions():
    net = pair(0)
    client, server = established(net)
    net.keep_log = True
    net.ab.drop = lambda p: True                    # the path dies after the handshake
    client.send(b"x" * 100)
    net.run(lambda: client.is_closed)
    times = sent_times(net, "a>b", lambda p: p.payload)
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:])]
    assert len(times) == 8
    # handshake RTT 10 ms: SRTT 10 ms, RTTVAR 5 ms; PTO = SRTT + 4*RTTVAR + 40 ms (a lone segment waits
    # out the peer's delayed ACK) = 70 ms, doubled for the second probe; then RTO 200 ms, doubling
    pto = round(client.rtt.srtt + 4 * client.rtt.rttvar + 0.040, 3)
    assert gaps[:2] == [pto, 2 * pto] == [0.07, 0.14]
    assert gaps[2] == 0.2 and all(g2 == min(2 * g1, 10.0) for g1, g2 in zip(gaps[2:], gaps[3:]))
    assert client.closed_reason == "retransmission limit reached"
    assert net.log[-1][2].flags == Flag.RST


def test_dial_retries_the_syn_like_the_official_daemon_then_gives_up():
    net = pair(0)
    net.keep_log = True
    net.ab.drop = lambda p: True
    client = net.a.connect(B7, 0.0)
    net.run(lambda: client.is_closed)
    assert sent_times(net, "a>b", lambda p: p.flags == Flag.SYN) == [0, 1, 3, 7, 15, 23, 31]
    assert client.closed_reason == "dial timeout" and net.now == 39


def test_delayed_ack_waits_40ms_for_one_segment_and_not_for_two():
    net = pair(0)
    client, _ = established(net)
    net.keep_log = True
    client.send(b"a" * 10)
    net.advance_to(net.now + 0.5)
    acks = [(t, p) for t, d, p in net.log if d == "b>a" and not p.payload]
    assert len(acks) == 1 and round(acks[0][0] - 0.005 - net.log[0][0], 3) == 0.040
    net.log.clear()
    client.nodelay = True
    client.send(b"b" * 2048)
    net.advance_to(net.now + 0.5)
    sent = net.log[0][0]
    acks = [t for t, d, p in net.log if d == "b>a"]
    assert len(acks) == 1 and round(acks[0] - sent, 3) == 0.005      # at once on the second segment


def test_zero_window_is_probed_with_backoff_and_reopens():
    net = pair(0)
    net.b.stream_options = dict(auto_consume=False, recv_slots=4)   # the application reads nothing
    net.b.listen(7)
    client = net.a.connect(B7, 0.0)
    net.run(lambda: net.accepted[id(net.b)])
    server = net.accepted[id(net.b)][0]
    net.keep_log = True
    payload = bytes(range(256)) * 40                # ten segments
    client.send(payload)
    net.advance_to(10)
    assert client.peer_window == 0
    probes = sent_times(net, "a>b", lambda p: not p.payload and p.flags == Flag.ACK)
    gaps = [round(b - a, 3) for a, b in zip(probes, probes[1:])]
    assert gaps[:3] == [1.0, 2.0, 4.0] and len(probes) >= 4
    got = net.received(net.b, server.conn_id)
    assert got == payload[:len(got)] and len(got) == 4 * 1024
    for _ in range(3):                              # reading again: window updates restart the flow
        server.data_consumed(4 * 1024)
        net.advance_to(net.now + 0.1)
    assert net.received(net.b, server.conn_id) == payload


def test_dead_peer_is_found_by_keepalives_and_reset():
    net = pair(0)
    client, _ = established(net)
    start = net.now
    net.keep_log = True
    net.ba.drop = lambda p: True
    net.run(lambda: client.is_closed)
    probes = [round(t - start, 1) for t, d, p in net.log if d == "a>b" and p.flags == Flag.ACK]
    assert probes == [60.0, 75.0, 90.0]
    assert client.closed_reason == "dead peer: keepalives unanswered" and round(net.now - start) == 105
    assert net.log[-1][2].flags == Flag.RST


def test_keepalive_probes_go_unanswered_like_the_official_daemons():
    # A keepalive is a pure ACK and the official receiver sends nothing back, so the side that probes
    # first resets an idle connection after three probes (105 s), live peer or not: we do the same.
    net = pair(0)
    client, server = established(net)
    start = net.now
    net.run(lambda: client.is_closed and server.is_closed)
    assert round(net.now - start) == 105
    assert client.closed_reason == "dead peer: keepalives unanswered"
    assert server.closed_reason == "reset by peer"


def test_traffic_keeps_an_idle_timer_from_firing():
    net = pair(0)
    client, server = established(net)
    for _ in range(6):
        net.advance_to(net.now + 50)
        client.send(b"tick")
        server.send(b"tock")
    assert client.state is StreamState.ESTABLISHED and server.state is StreamState.ESTABLISHED
    assert net.now > 250


def test_early_fin_is_held_until_the_missing_data_arrives():
    net = pair(0)
    client, server = established(net)
    lost = []
    net.ab.drop = lambda p: bool(p.payload) and not lost and not lost.append(p)
    client.send(b"first" * 300)
    client.close(net.now)
    net.run(lambda: server.is_closed)
    events = [e for e in net.events[id(net.b)] if getattr(e, "conn_id", 0) == server.conn_id]
    assert net.received(net.b, server.conn_id) == b"first" * 300
    assert [type(e) for e in events][-2:] == [StreamEnded, Closed]


def test_time_wait_answers_a_repeated_fin_then_the_table_forgets_the_stream():
    net = pair(0)
    client, conn = transfer(net, b"bye")
    server = net.b.streams[conn]
    assert server.state is StreamState.TIME_WAIT
    fin = pk.Packet(pk.Proto.STREAM, Addr(0, 1), Addr(0, 2), client.local.port, server.local.port,
                    Flag.FIN, (client.iss + 4) & 0xFFFFFFFF, 0, 0)
    net.b.receive_packet(fin, net.now)
    (ack,) = net.b.packets_to_send(net.now)
    assert ack.flags == Flag.ACK and ack.ack == (fin.seq + 1) & 0xFFFFFFFF
    net.run(lambda: net.now > 11)
    assert conn not in net.b.streams


def test_syn_flood_is_rate_limited_silently():
    table = StreamTable(2)
    table.listen(7)
    for i in range(500):      # 50 sources x 10 ports, all at once
        table.receive_packet(pk.Packet(pk.Proto.STREAM, Addr(0, 100 + i // 10), Addr(0, 2), 40000 + i, 7,
                                       Flag.SYN, i, 0, 512), 0.0)
    out = table.packets_to_send(0.0)
    drops = [e for e in iter(table.next_event, None) if isinstance(e, SynDropped)]
    synacks = [p for p in out if p.flags == Flag.SYN | Flag.ACK]
    assert len(synacks) == 64                                 # the accept backlog fills first
    assert {d.reason for d in drops} == {"accept queue full", "SYN rate limit"}
    assert all(d.rst == (d.reason == "accept queue full") for d in drops)
    one_source = StreamTable(3)
    one_source.listen(7)
    for i in range(50):
        one_source.receive_packet(pk.Packet(pk.Proto.STREAM, Addr(0, 9), Addr(0, 3), 40000 + i, 7, Flag.SYN, i, 0,
                                            512), 0.0)
    assert len(one_source.packets_to_send(0.0)) == 10             # 10 SYN/s per source
    one_source.receive_packet(pk.Packet(pk.Proto.STREAM, Addr(0, 9), Addr(0, 3), 41000, 7, Flag.SYN, 1, 0, 512), 1.0)
    assert len(one_source.packets_to_send(1.0)) == 1


def test_accepted_comes_before_the_streams_own_events():
    net = pair(0)
    _, conn = transfer(net, b"hello")
    kinds = [type(e).__name__ for e in net.events[id(net.b)]]
    assert kinds[:3] == ["Accepted", "Connected", "DataReceived"] and conn is not None
    assert isinstance(net.events[id(net.b)][0], Accepted)
    assert [e for e in net.events[id(net.b)] if isinstance(e, DataReceived)][0].data == b"hello"


def test_idle_timeout_closes_with_a_fin_and_says_so():
    # -idle-timeout shorter than the keepalive's dead-peer verdict (105 s): the idle side closes gracefully
    net = pair(0)
    client, server = established(net, idle_timeout=30.0)
    start = net.now
    net.run(lambda: client.is_closed and server.is_closed)
    [idle] = net.of(net.a, IdleTimedOut)
    assert idle.conn_id == client.conn_id and 30 <= net.now - start < 31     # not at the 60 s keepalive check
    assert net.of(net.b, StreamEnded) and not net.of(net.b, IdleTimedOut)     # the peer saw a FIN, not a reset
