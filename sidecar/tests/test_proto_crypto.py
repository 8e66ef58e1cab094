"""Tunnel crypto against frames captured from the official pilot-daemon 1.18 (see vectors/README.md)."""

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, strategies as st
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

import official_capture as oc
from pilot_daemon.proto import crypto
from pilot_daemon.proto import packet as pk
from pilot_daemon.proto.errors import BadSignature, DecryptFailed, InvalidPeerKey, OutsideReplayWindow, ReplayDetected


def captured_session_key() -> bytes:
    daemon_x = oc.daemon_pila()[8:40]
    return crypto.derive_tunnel_key(oc.peer_x25519(), daemon_x)


def test_hkdf_is_rfc5869_with_empty_salt_and_pilot_info():
    # Independent re-derivation: PRK = HMAC-SHA256(key = empty, IKM), OKM = HMAC-SHA256(PRK, info || 0x01).
    daemon_x = oc.daemon_pila()[8:40]
    shared = oc.peer_x25519().exchange(X25519PublicKey.from_public_bytes(daemon_x))
    prk = hmac.new(b"", shared, hashlib.sha256).digest()
    okm = hmac.new(prk, b"pilot-tunnel-v1\x01", hashlib.sha256).digest()
    assert captured_session_key() == okm


def test_official_pils_frames_open_with_derived_key_and_sender_aad():
    opener = crypto.PeerCrypto(captured_session_key(), peer_x25519=b"", created_at=0.0, authenticated=True)
    frames = oc.udp_frames("daemon->peer", b"PILS")
    packets = []
    for frame in frames:
        assert oc.u32(frame, 4) == oc.DAEMON_NODE
        packets.append(pk.decode(opener.open(frame[4:8], frame[8:20], frame[20:])))
    # The daemon's first stream packet is a SYN to port 7 from an ephemeral port, ISN 0, window 512.
    syn = packets[0]
    assert syn.has(pk.Flag.SYN) and syn.dst_port == 7 and syn.src_port >= pk.PORT_EPHEMERAL_MIN
    assert (syn.seq, syn.window) == (0, 512)
    # Nonces: one random prefix per key, counter from 1 upwards.
    prefixes = {frame[8:12] for frame in frames}
    assert len(prefixes) == 1
    assert [int.from_bytes(frame[12:20], "big") for frame in frames] == list(range(1, len(frames) + 1))


def test_wrong_aad_fails_on_official_frame():
    opener = crypto.PeerCrypto(captured_session_key(), peer_x25519=b"", created_at=0.0, authenticated=True)
    frame = oc.udp_frames("daemon->peer", b"PILS")[0]
    with pytest.raises(DecryptFailed):
        opener.open((oc.DAEMON_NODE + 1).to_bytes(4, "big"), frame[8:20], frame[20:])
    assert opener.window.max_seen == 0  # a forged frame never touches the replay window


def test_our_seal_reproduces_frames_the_official_daemon_accepted():
    sealer = crypto.PeerCrypto(captured_session_key(), peer_x25519=b"", created_at=0.0, authenticated=True)
    opener = crypto.PeerCrypto(captured_session_key(), peer_x25519=b"", created_at=0.0, authenticated=True)
    ours = oc.udp_frames("peer->daemon", b"PILS")
    sealer.nonce_prefix = ours[0][8:12]
    for frame in ours:
        plaintext = opener.open(frame[4:8], frame[8:20], frame[20:])
        assert b"PILS" + frame[4:8] + sealer.seal(frame[4:8], plaintext) == frame


def test_official_pila_signature_layout():
    pila = oc.daemon_pila()
    node, x_pub, ed_pub, sig = oc.u32(pila, 4), pila[8:40], pila[40:72], pila[72:136]
    assert len(pila) == 136 and node == oc.DAEMON_NODE
    assert ed_pub == base64.b64decode(oc.capture()["daemon_ed25519_public_b64"])
    crypto.verify_auth(ed_pub, node, x_pub, sig)  # "auth" || node u32 BE || X25519 public
    with pytest.raises(BadSignature):
        crypto.verify_auth(ed_pub, node + 1, x_pub, sig)
    with pytest.raises(BadSignature):
        crypto.verify_auth(ed_pub, node, x_pub, sig[:-1] + bytes([sig[-1] ^ 1]))
    with pytest.raises(BadSignature):
        crypto.verify_auth(b"\x00" * 31, node, x_pub, sig)


def test_low_order_x25519_point_is_rejected():
    with pytest.raises(InvalidPeerKey):
        crypto.derive_tunnel_key(X25519PrivateKey.generate(), bytes(32))
    with pytest.raises(InvalidPeerKey):
        crypto.derive_tunnel_key(X25519PrivateKey.generate(), bytes(31))


def pair():
    key = bytes(range(32))
    a = crypto.PeerCrypto(key, peer_x25519=b"", created_at=0.0, authenticated=True, nonce_prefix=b"\x01\x02\x03\x04")
    b = crypto.PeerCrypto(key, peer_x25519=b"", created_at=0.0, authenticated=True)
    return a, b


NODE = (7).to_bytes(4, "big")


def test_seal_open_tamper_replay():
    a, b = pair()
    sealed = a.seal(NODE, b"hello")
    assert sealed[:12] == b"\x01\x02\x03\x04" + (1).to_bytes(8, "big")
    assert b.open(NODE, sealed[:12], sealed[12:]) == b"hello"
    with pytest.raises(ReplayDetected):
        b.open(NODE, sealed[:12], sealed[12:])
    tampered = bytearray(sealed)
    tampered[-1] ^= 0x80
    with pytest.raises(DecryptFailed):
        b.open(NODE, bytes(tampered[:12]), bytes(tampered[12:]))
    nonce_tampered = bytearray(sealed)
    nonce_tampered[11] ^= 1
    with pytest.raises(DecryptFailed):
        b.open(NODE, bytes(nonce_tampered[:12]), bytes(nonce_tampered[12:]))
    assert (b.replay_count, b.decrypt_failures) == (1, 2)


def test_outside_window_and_counters_reset_on_success():
    a, b = pair()
    frames = [a.seal(NODE, i.to_bytes(2, "big")) for i in range(300)]
    b.open(NODE, frames[299][:12], frames[299][12:])
    with pytest.raises(OutsideReplayWindow):
        b.open(NODE, frames[0][:12], frames[0][12:])  # counter 1 vs max 300: 299 behind
    assert b.open(NODE, frames[100][:12], frames[100][12:]) == (100).to_bytes(2, "big")  # 199 behind: still inside
    assert b.outside_window_count == 0


def test_drop_gates():
    _, b = pair()
    b.decrypt_failures = 5
    assert b.drop_reason(2.9) is None and b.drop_reason(3.0) == "consecutive_decrypt_failures"
    _, b = pair()
    b.replay_count = 4
    assert b.drop_reason(10.0) is None
    assert b.drop_reason(60.0) == "consecutive_replays"  # aged key: a single replay is divergence
    b.replay_count = 5
    assert b.drop_reason(0.5) is None and b.drop_reason(1.0) == "consecutive_replays"
    _, b = pair()
    b.outside_window_count = 1
    assert b.drop_reason(59.0) is None and b.drop_reason(61.0) == "outside_replay_window"


class ModelWindow:
    """Reference model: accept a counter iff unseen and within 256 of the highest seen."""

    def __init__(self):
        self.seen, self.max = set(), 0

    def check(self, c):
        if self.max == 0 or c > self.max:
            self.seen.add(c)
            self.max = max(self.max, c)
            return True
        if self.max - c >= 256 or c in self.seen:
            return False
        self.seen.add(c)
        return True


@given(st.lists(st.integers(1, 2000), max_size=300))
def test_replay_window_matches_model(counters):
    window, model = crypto.ReplayWindow(), ModelWindow()
    for c in counters:
        would = window.would_accept(c)
        got = window.check_and_record(c)
        assert got == model.check(c) == would


@given(st.binary(max_size=12), st.binary(max_size=80))
def test_garbage_never_escapes_as_other_exceptions(nonce, body):
    _, b = pair()
    try:
        b.open(NODE, nonce.ljust(12, b"\0"), body)
    except (DecryptFailed, ReplayDetected, OutsideReplayWindow):
        pass


def test_sign_auth_round_trip():
    identity = Ed25519PrivateKey.generate()
    x_pub = crypto.public_bytes(X25519PrivateKey.generate())
    sig = crypto.sign_auth(identity, 1234, x_pub)
    crypto.verify_auth(crypto.public_bytes(identity), 1234, x_pub, sig)
