"""Bulk transfers between two in-memory stream tables through loss, reordering and duplication."""

import time

from hypothesis import HealthCheck, given, settings, strategies as st

from pilot_daemon.proto.addr import Addr, SocketAddr
from pilot_daemon.proto.stream import DataReceived, StreamEnded

from streamsim import Link, pair, transfer

LOSSY = dict(loss=0.10, dup=0.05, reorder=0.10, jitter=0.002)


def lossy_pair(seed, **options):
    return pair(seed, ab=Link(**LOSSY), ba=Link(**LOSSY), **options)


def test_one_mib_lossless_is_fast_and_uses_full_segments():
    net = pair(1)
    payload = net.rng.randbytes(1 << 20)
    client, conn = transfer(net, payload)
    assert net.received(net.b, conn) == payload
    assert client.stats["segs_sent"] == 1024 and client.stats["retransmits"] == 0
    assert net.now < 1.0


def test_one_mib_through_ten_percent_loss_reorder_and_duplication():
    net = lossy_pair(2)
    payload = net.rng.randbytes(1 << 20)
    client, conn = transfer(net, payload)
    assert net.received(net.b, conn) == payload
    assert net.ab.dropped > 50 and client.stats["retransmits"] >= net.ab.dropped // 2
    assert [type(e) for e in net.events[id(net.b)]][-2:] == [StreamEnded, type(net.events[id(net.b)][-1])]


def test_sixteen_mib_through_ten_percent_loss_reorder_and_duplication():
    net = lossy_pair(3)
    payload = net.rng.randbytes(16 << 20)
    started = time.perf_counter()
    _, conn = transfer(net, payload)
    took = time.perf_counter() - started
    assert net.received(net.b, conn) == payload
    assert took < 20, f"16 MiB took {took:.1f}s of wall time"
    assert net.now < 70, f"16 MiB took {net.now:.1f}s of simulated time (RTT 10 ms)"


def test_both_directions_at_once_with_sequence_numbers_wrapping():
    # ISS a little below 2**32: both directions cross zero within the first few segments.
    net = lossy_pair(4, iss=0xFFFFF000)
    net.b.listen(9)
    client = net.a.connect(SocketAddr(Addr(0, 2), 9), 0.0)
    up, down = net.rng.randbytes(300_000), net.rng.randbytes(200_000)
    client.send(up)
    server = []

    def both_done():
        for ev in net.events[id(net.b)]:
            if not server and hasattr(ev, "stream"):
                server.append(ev.stream)
                ev.stream.send(down)
        return server and len(net.received(net.b, server[0].conn_id)) >= len(up) \
            and len(net.received(net.a, client.conn_id)) >= len(down)

    net.run(both_done)
    assert net.received(net.b, server[0].conn_id) == up
    assert net.received(net.a, client.conn_id) == down
    assert client.iss == 0xFFFFF000 and client.snd_una > 0x1000   # offsets went past the wrap


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(0, 60_000),
       loss=st.floats(0, 0.3), dup=st.floats(0, 0.2), reorder=st.floats(0, 0.3),
       iss=st.integers(0, 2**32 - 1))
def test_any_loss_pattern_delivers_every_byte_once_and_in_order(seed, size, loss, dup, reorder, iss):
    link = dict(loss=loss, dup=dup, reorder=reorder, jitter=0.003)
    net = pair(seed, ab=Link(**link), ba=Link(**link), iss=iss)
    payload = net.rng.randbytes(size)
    _, conn = transfer(net, payload)
    chunks = [e.data for e in net.events[id(net.b)] if isinstance(e, DataReceived)]
    assert b"".join(chunks) == payload
    assert sum(isinstance(e, StreamEnded) for e in net.events[id(net.b)]) == 1


def measure(size: int, *, wire: bool) -> float:
    net = pair(5, wire=wire)
    payload = net.rng.randbytes(size)
    started = time.perf_counter()
    _, conn = transfer(net, payload)
    took = time.perf_counter() - started
    assert net.received(net.b, conn) == payload
    return size / took / (1 << 20)


def test_throughput_of_the_pure_state_machine(capsys):
    objects = measure(8 << 20, wire=False)
    encoded = measure(8 << 20, wire=True)
    with capsys.disabled():
        print(f"\nstream state machine, lossless, in memory: {objects:.0f} MiB/s (Packet objects), "
              f"{encoded:.0f} MiB/s (encode+decode+CRC32 each packet)")
    assert objects > 5 and encoded > 5
