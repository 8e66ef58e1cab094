"""Tunnel frames and TunnelSession: official captured frames, two in-memory sessions, bad input."""

import base64
import pytest
from hypothesis import given, settings, strategies as st
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

import official_capture as oc
from pilot_daemon.proto import crypto, tunnel
from pilot_daemon.proto import packet as pk
from pilot_daemon.proto.addr import Addr
from pilot_daemon.proto.errors import (
    BadSignature, DecryptFailed, FrameError, FrameTooShort, IdentityMismatch, NoSessionKey, ReplayDetected,
    UnknownMagic,
)


def events(session):
    out = []
    while (ev := session.next_event()) is not None:
        out.append(ev)
    return out


def of(kind, evs):
    return [e for e in evs if isinstance(e, kind)]


# --- codec -------------------------------------------------------------------------------------

def test_decode_captured_frames():
    pila = tunnel.decode_frame(oc.daemon_pila())
    assert isinstance(pila, tunnel.AuthKeyExchangeFrame) and pila.node == oc.DAEMON_NODE
    pils = tunnel.decode_frame(oc.udp_frames("daemon->peer", b"PILS")[0])
    assert isinstance(pils, tunnel.SecureFrame) and pils.sender_node == oc.DAEMON_NODE
    assert len(pils.nonce) == 12 and len(pils.ciphertext) == pk.HEADER_SIZE + 16


def test_beacon_demux_on_first_byte():
    for raw in oc.capture()["beacon_rx"]:
        assert isinstance(tunnel.decode_frame(bytes.fromhex(raw)), tunnel.BeaconFrame)
    assert isinstance(tunnel.decode_frame(b"\x0f"), tunnel.BeaconFrame)


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", FrameTooShort), (b"PI", FrameTooShort), (b"PILS" + bytes(31), FrameTooShort),
        (b"PILA" + bytes(131), FrameTooShort), (b"PILK" + bytes(35), FrameTooShort),
        (b"PILT" + bytes(33), FrameTooShort), (b"PILX" + bytes(40), UnknownMagic), (b"\x10abc", UnknownMagic),
    ],
)
def test_malformed_frames(data, error):
    with pytest.raises(error):
        tunnel.decode_frame(data)


def test_longer_frames_are_accepted_like_the_official_reader():
    frame = tunnel.decode_frame(tunnel.encode_key_exchange(5, bytes(range(32))) + b"extra")
    assert frame == tunnel.KeyExchangeFrame(5, bytes(range(32)))
    assert tunnel.decode_frame(tunnel.encode_punch(9)) == tunnel.PunchFrame((9).to_bytes(4, "big"))


@given(st.binary(max_size=200))
def test_garbage_decodes_or_raises_frame_error(data):
    try:
        tunnel.decode_frame(data)
    except FrameError:
        pass


# --- against the official daemon's captured frames ----------------------------------------------

def peer_session():
    """Our session posing as the capture's node 1001, with the same keys the official daemon saw."""
    return tunnel.TunnelSession(local_node=oc.PEER_NODE, identity=oc.peer_ed25519(), x25519=oc.peer_x25519())


def test_session_accepts_official_pila_and_decrypts_official_pils():
    s = peer_session()
    s.receive_datagram(oc.daemon_pila(), 0.0, addr="A")
    assert of(tunnel.PeerIdentityNeeded, events(s)) == [tunnel.PeerIdentityNeeded(oc.DAEMON_NODE)]
    s.provide_peer_identity(oc.DAEMON_NODE, base64.b64decode(oc.capture()["daemon_ed25519_public_b64"]), 0.0)
    est = of(tunnel.TunnelEstablished, events(s))
    assert est == [tunnel.TunnelEstablished(oc.DAEMON_NODE, True, False, False, False, "A")]
    # We answer with our PILA: byte-identical to the one the official daemon accepted (Ed25519 is deterministic).
    out = s.datagrams_to_send()
    assert out == [(oc.DAEMON_NODE, oc.udp_frames("peer->daemon", b"PILA")[0])]
    got = []
    for frame in oc.udp_frames("daemon->peer", b"PILS"):
        s.receive_datagram(frame, 1.0)
        got += of(tunnel.PacketReceived, events(s))
    assert [p.packet.protocol for p in got] == [1, 1, 1, 1, 2, 3, 1]
    assert got[2].packet.payload == b"hello-from-official"
    ping_reply = got[5].packet  # control ping answer: ACK, ack = seq + 1, same payload, port 0
    assert (ping_reply.flags, ping_reply.seq, ping_reply.ack, ping_reply.payload) == (pk.Flag.ACK, 77, 78, b"ping!")
    assert got[-1].packet.flags == pk.Flag.FIN
    assert all(p.encrypted and p.peer_node == oc.DAEMON_NODE for p in got)


# --- two sessions in memory ----------------------------------------------------------------------

class Net:
    """Two sessions, a registry of identities, and a lossless wire between them."""

    def __init__(self):
        self.ids = {1: Ed25519PrivateKey.generate(), 2: Ed25519PrivateKey.generate()}
        self.s = {n: tunnel.TunnelSession(local_node=n, identity=k) for n, k in self.ids.items()}
        self.log = {1: [], 2: []}
        self.wire = []

    def pump(self, now=0.0, rounds=10):
        for _ in range(rounds):
            moved = False
            for n, sess in self.s.items():
                for ev in events(sess):
                    self.log[n].append(ev)
                    if isinstance(ev, tunnel.PeerIdentityNeeded):
                        other = self.ids.get(ev.peer_node)
                        sess.provide_peer_identity(ev.peer_node, other and crypto.public_bytes(other), now)
                        moved = True
                for dst, frame in sess.datagrams_to_send():
                    self.wire.append((n, dst, frame))
                    self.s[dst].receive_datagram(frame, now, addr=n)
                    moved = True
            if not moved:
                return

    def connect(self, now=0.0):
        self.s[1].start_key_exchange(2, now)
        self.pump(now)


def stream(src, dst, payload=b"x", seq=0):
    return pk.Packet(protocol=pk.Proto.STREAM, src=Addr(0, src), dst=Addr(0, dst), src_port=49152, dst_port=7,
                     flags=pk.Flag.ACK, seq=seq, payload=payload).encode()


def test_handshake_then_packets_both_ways():
    net = Net()
    net.connect()
    assert net.s[1].has_session(2) and net.s[2].has_session(1)
    assert net.s[1].session(2).authenticated and net.s[2].session(1).authenticated
    assert of(tunnel.TunnelEstablished, net.log[2])[0].rekeyed is False
    assert net.s[1].get_timer() is None and net.s[2].get_timer() is None  # nothing pending
    frame = net.s[1].seal(2, stream(1, 2, b"hello"))
    net.s[2].receive_datagram(frame, 1.0)
    (rx,) = of(tunnel.PacketReceived, events(net.s[2]))
    assert rx.packet.payload == b"hello" and rx.peer_node == 1
    net.s[1].receive_datagram(net.s[2].seal(1, stream(2, 1, b"back")), 1.0)
    assert of(tunnel.PacketReceived, events(net.s[1]))[0].packet.payload == b"back"


def test_tampered_replayed_and_unknown_sender_frames_become_events():
    net = Net()
    net.connect()
    b = net.s[2]
    frame = net.s[1].seal(2, stream(1, 2))
    bad = bytearray(frame)
    bad[30] ^= 1
    b.receive_datagram(bytes(bad), 1.0)
    b.receive_datagram(frame, 1.0)
    b.receive_datagram(frame, 1.0)
    spoofed = bytearray(net.s[1].seal(2, stream(1, 2)))
    spoofed[4:8] = (3).to_bytes(4, "big")  # another sender id: no key for node 3
    b.receive_datagram(bytes(spoofed), 1.0)
    evs = events(b)
    drops = of(tunnel.FrameDropped, evs)
    assert [type(d.error) for d in drops] == [DecryptFailed, ReplayDetected, NoSessionKey]
    assert len(of(tunnel.PacketReceived, evs)) == 1


def test_aad_binds_the_sender_id():
    # Same key on both sides, frame re-labelled with another node id that also has a session: AEAD fails.
    net = Net()
    net.connect()
    frame = bytearray(net.s[1].seal(2, stream(1, 2)))
    s2 = net.s[2]
    s2._peers[9] = s2._peers[1]  # node 9 shares node 1's key: only the AAD differs
    frame[4:8] = (9).to_bytes(4, "big")
    s2.receive_datagram(bytes(frame), 1.0)
    assert isinstance(of(tunnel.FrameDropped, events(s2))[0].error, DecryptFailed)


def test_forged_pila_is_dropped_without_installing():
    net = Net()
    mallory = Ed25519PrivateKey.generate()
    x_pub = crypto.public_bytes(X25519PrivateKey.generate())
    b = net.s[2]
    b.provide_peer_identity(1, crypto.public_bytes(net.ids[1]), 0.0)
    # Forged identity key in the frame (registry holds another one).
    b.receive_datagram(tunnel.encode_auth_key_exchange(1, x_pub, mallory), 1.0)
    # Right identity key in the frame, wrong signature.
    forged = bytearray(tunnel.encode_auth_key_exchange(1, x_pub, net.ids[1]))
    forged[-1] ^= 1
    b.receive_datagram(bytes(forged), 1.0)
    drops = of(tunnel.FrameDropped, events(b))
    assert [type(d.error) for d in drops] == [IdentityMismatch, BadSignature]
    assert not b.has_session(1) and b.datagrams_to_send() == []


def test_pila_from_node_unknown_to_registry_is_dropped():
    net = Net()
    stranger = tunnel.TunnelSession(local_node=77, identity=Ed25519PrivateKey.generate())
    stranger.start_key_exchange(2, 0.0)
    ((_, frame),) = stranger.datagrams_to_send()
    b = net.s[2]
    b.receive_datagram(frame, 0.0)
    assert of(tunnel.PeerIdentityNeeded, events(b)) == [tunnel.PeerIdentityNeeded(77)]
    b.provide_peer_identity(77, None, 0.0)
    assert isinstance(of(tunnel.FrameDropped, events(b))[0].error, IdentityMismatch)
    assert not b.has_session(77)


def test_unauthenticated_pilk_is_refused_with_our_pila_when_peer_is_registered():
    net = Net()
    a_x = X25519PrivateKey.generate()
    b = net.s[2]
    b.provide_peer_identity(1, crypto.public_bytes(net.ids[1]), 0.0)
    b.receive_datagram(tunnel.encode_key_exchange(1, crypto.public_bytes(a_x)), 0.0)
    assert not b.has_session(1)
    ((dst, frame),) = b.datagrams_to_send()
    assert dst == 1 and frame[:4] == b"PILA"


def test_pilk_accepted_between_nodes_without_identity():
    a = tunnel.TunnelSession(local_node=1)
    b = tunnel.TunnelSession(local_node=2)
    a.start_key_exchange(2, 0.0)
    ((_, frame),) = a.datagrams_to_send()
    assert frame[:4] == b"PILK" and len(frame) == 40
    b.receive_datagram(frame, 0.0)
    assert b.has_session(1) and not b.session(1).authenticated
    ((_, reply),) = b.datagrams_to_send()
    a.receive_datagram(reply, 0.0)
    b.receive_datagram(a.seal(2, stream(1, 2, b"u")), 0.0)
    assert of(tunnel.PacketReceived, events(b))[0].packet.payload == b"u"


def test_rekey_retransmit_key_request_and_give_up():
    a = tunnel.TunnelSession(local_node=1, identity=Ed25519PrivateKey.generate())
    a.start_key_exchange(2, 0.0)
    assert [f[:4] for _, f in a.datagrams_to_send()] == [b"PILA"]
    assert a.get_timer() == 4.0
    a.handle_timer(3.9)
    assert a.datagrams_to_send() == []
    a.handle_timer(4.0)
    assert [f[:4] for _, f in a.datagrams_to_send()] == [b"PILA", b"PILK"]  # key request rides on retransmits
    sent = 2
    now = 4.0
    while a.get_timer() is not None:
        now = a.get_timer()
        a.handle_timer(now)
        if a.datagrams_to_send():
            sent += 1
    assert sent == 1 + tunnel.MAX_REKEY_ATTEMPTS
    assert of(tunnel.RekeyGaveUp, events(a)) == [tunnel.RekeyGaveUp(2)]


def test_peer_rekey_installs_new_key_and_reports_it():
    net = Net()
    net.connect()
    # Node 1 restarts: same identity, new X25519 key.
    net.s[1] = tunnel.TunnelSession(local_node=1, identity=net.ids[1])
    net.connect(now=10.0)
    est = of(tunnel.TunnelEstablished, net.log[2])
    assert [e.rekeyed for e in est] == [False, True]
    net.s[2].receive_datagram(net.s[1].seal(2, stream(1, 2, b"after")), 11.0)
    assert of(tunnel.PacketReceived, events(net.s[2]))[0].packet.payload == b"after"


def test_replay_storm_on_aged_key_drops_session_and_rekeys():
    net = Net()
    net.connect()
    b = net.s[2]
    frame = net.s[1].seal(2, stream(1, 2))
    b.receive_datagram(frame, 1.0)
    b.receive_datagram(frame, 61.0)  # a replay on a key older than 60 s: divergence, renegotiate
    evs = events(b)
    assert of(tunnel.SessionDropped, evs) == [tunnel.SessionDropped(1, "consecutive_replays")]
    assert not b.has_session(1)
    assert [f[:4] for _, f in b.datagrams_to_send()] == [b"PILA"]


def test_duplicate_pila_inside_debounce_is_silent():
    net = Net()
    net.connect()
    pila = [f for src, dst, f in net.wire if src == 1 and f[:4] == b"PILA"][0]
    before = len(of(tunnel.TunnelEstablished, net.log[2]))
    net.s[2].receive_datagram(pila, 0.1)
    assert of(tunnel.TunnelEstablished, events(net.s[2])) == []
    assert before == 1


def test_encryption_off_uses_pilt():
    a = tunnel.TunnelSession(local_node=1, encrypt=False)
    b = tunnel.TunnelSession(local_node=2, encrypt=False)
    frame = a.seal(2, stream(1, 2, b"plain"))
    assert frame[:4] == b"PILT"
    b.receive_datagram(frame, 0.0)
    (rx,) = of(tunnel.PacketReceived, events(b))
    assert not rx.encrypted and rx.packet.payload == b"plain"
    b.receive_datagram(tunnel.encode_key_exchange(1, bytes(32)), 0.0)  # ignored when encryption is off
    assert events(b) == [] and b.datagrams_to_send() == []


def test_seal_without_session_is_a_local_error():
    with pytest.raises(NoSessionKey):
        tunnel.TunnelSession(local_node=1).seal(2, b"x")


@settings(max_examples=200)
@given(st.lists(st.binary(max_size=160), max_size=8))
def test_random_datagrams_never_raise(datagrams):
    net = Net()
    net.connect()
    for data in datagrams:
        for prefix in (b"", b"PILS\x00\x00\x00\x01", b"PILA\x00\x00\x00\x01", b"PILK\x00\x00\x00\x01", b"PILT"):
            net.s[2].receive_datagram(prefix + data, 5.0)
    events(net.s[2])
    assert net.s[2].has_session(1) or of(tunnel.SessionDropped, net.log[2])
