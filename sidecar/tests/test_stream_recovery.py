"""Loss recovery of the stream sender on a fake clock: SACK + RACK + probes keep a lossy link moving
without retransmission timeouts; the receiver's duplicate ACKs still suit an official sender."""

import pytest

from pilot_daemon.proto.addr import Addr, SocketAddr
from pilot_daemon.proto.packet import Flag
from pilot_daemon.proto.stream import SEGMENT_SIZE

from streamsim import Link, pair, transfer

LOSSY = dict(loss=0.10, dup=0.05, reorder=0.10, jitter=0.002)          # 5 ms each way, late ones +10 ms
RELAY = dict(loss=0.10, dup=0.05, hold=0.10, delay=0.0005, jitter=0.0005)  # what lossy_relay.py does
B7 = SocketAddr(Addr(0, 2), 7)


def seq_no(pkt, iss=0):
    return (pkt.seq - iss - 1) // SEGMENT_SIZE


@pytest.mark.parametrize("seed", [1, 3, 9])
def test_one_mib_through_ten_percent_loss_takes_a_few_hundred_round_trips(seed):
    # Before RACK/probes this took 14-16 s of simulated time (35-41 timeouts of >= 200 ms each).
    net = pair(seed, ab=Link(**LOSSY), ba=Link(**LOSSY))
    payload = net.rng.randbytes(1 << 20)
    client, conn = transfer(net, payload)
    assert net.received(net.b, conn) == payload
    assert net.ab.dropped > 80 and client.stats["retransmits"] >= net.ab.dropped
    assert client.cc.timeouts == 0
    assert net.now < 4.0, f"1 MiB took {net.now:.2f} s of simulated time"


@pytest.mark.parametrize("seed", [0, 1])
def test_one_mib_through_a_relay_that_holds_packets_back(seed):
    # Held packets wait for the next one on the link: on a quiet link that is forever, so a stalled
    # flight is only restarted by a probe; capped by the least RTT, probes come every few ms.
    net = pair(seed, ab=Link(**RELAY), ba=Link(**RELAY))
    payload = net.rng.randbytes(1 << 20)
    client, conn = transfer(net, payload)
    assert net.received(net.b, conn) == payload
    assert client.cc.timeouts == 0 and net.now < 1.0, (client.cc.timeouts, net.now)


def established(net):
    net.b.listen(7)
    client = net.a.connect(B7, net.now)
    net.run(lambda: net.accepted[id(net.b)])
    return client, net.accepted[id(net.b)][0]


def test_a_lost_retransmission_is_resent_without_a_timeout():
    net = pair(0)
    client, server = established(net)
    net.keep_log = True
    drops = {5: 2}                                  # segment 5 and its first retransmission

    def drop(pkt):
        n = seq_no(pkt, client.iss)
        if pkt.payload and drops.get(n, 0) > 0:
            drops[n] -= 1
            return True
        return False
    net.ab.drop = drop
    payload = bytes(range(256)) * 4 * 200           # 200 segments: new data keeps flowing after the resend
    client.send(payload)
    net.run(lambda: len(net.received(net.b, server.conn_id)) == len(payload))
    assert net.received(net.b, server.conn_id) == payload
    sends = [t for t, d, p in net.log if d == "a>b" and p.payload and seq_no(p, client.iss) == 5]
    assert len(sends) == 3 and client.cc.timeouts == 0
    # RACK: a segment sent after the retransmission arrived, so ~1 RTT (10 ms) + reordering window
    assert sends[2] - sends[1] < 0.02, sends


def test_a_lost_tail_segment_is_probed_long_before_the_rto():
    net = pair(0)
    client, server = established(net)
    net.keep_log = True
    dropped = []

    def drop(pkt):
        if pkt.payload and seq_no(pkt, client.iss) == 3 and not dropped:
            dropped.append(pkt)
            return True
        return False
    net.ab.drop = drop
    payload = b"t" * (4 * SEGMENT_SIZE)             # the last of four segments is lost
    client.send(payload)
    net.run(lambda: len(net.received(net.b, server.conn_id)) == len(payload))
    sends = [t for t, d, p in net.log if d == "a>b" and p.payload and seq_no(p, client.iss) == 3]
    assert len(sends) == 2 and client.cc.timeouts == 0
    # the probe resends the newest segment about 2 SRTT (20 ms) after the last ACK, not after the RTO
    assert sends[1] - sends[0] < 0.06, sends
    assert client.cc.cwnd >= 10 * 4096              # a probe is no congestion signal


def test_duplicate_acks_go_plain_then_with_sack_for_an_official_sender():
    # An official 1.18 sender counts only empty ACKs as duplicates (fast retransmit at three): the
    # first three duplicates of a hole go plain and each has a SACK twin; later ones carry SACK only.
    net = pair(0)
    client, server = established(net)
    net.keep_log = True
    dropped = []
    net.ab.drop = lambda p: bool(p.payload) and seq_no(p, client.iss) == 0 and not dropped.append(p)
    client.nodelay = True
    client.send(b"s" * (8 * SEGMENT_SIZE))
    net.advance_to(net.now + 0.008)                 # the first flight has arrived, nothing resent yet
    acks = [p for t, d, p in net.log if d == "b>a"]
    kinds = ["sack" if p.payload[:4] == b"SACK" else "plain" for p in acks]
    assert kinds == ["plain", "sack"] * 3 + ["sack"] * 4
    assert len({p.ack for p in acks}) == 1 and all(p.flags == Flag.ACK for p in acks)


def test_an_official_receiver_that_only_sends_sack_duplicates_is_served_by_rack():
    # The official receiver answers out-of-order data with SACK ACKs only: drop our plain duplicates
    # and the sender must still recover without timeouts.
    net = pair(5, ab=Link(**LOSSY), ba=Link(**LOSSY))
    last = {}

    def official_receiver(pkt):
        dup = not pkt.payload and last.get("ack") == pkt.ack
        last["ack"] = pkt.ack
        return dup
    net.ba.drop = official_receiver
    payload = net.rng.randbytes(512 << 10)
    client, conn = transfer(net, payload)
    assert net.received(net.b, conn) == payload
    assert client.cc.timeouts <= 1 and net.now < 4.0, (client.cc.timeouts, net.now)
