"""Our daemon's IPC socket under the official daemon's own probes, garbage, oversize and vanishing clients."""
from __future__ import annotations

import json
import os
import random
import signal
import stat
import struct
import time

import pytest

import official_capture as oc
from pilot_harness import wait_for
from daemon_harness import RawIPC, our_daemons  # noqa: F401  (fixture)
from pilot_daemon.proto import ipc
from pilot_daemon.proto.addr import Addr

pytestmark = pytest.mark.timeout(90)

# Probes of the capture that involve no peer: our replies must be byte-identical to the official daemon's.
EXACT = ["bind_5000", "bind_5000_again", "unbind_5000", "unbind_5000_not_owned", "unbind_short", "unknown_7f",
         "dial_short", "bind_short", "close_short", "handshake_no_sub", "handshake_bad_sub", "handshake_pending",
         "handshake_trusted", "network_bad_sub", "prefer_direct_short", "sendto_confirm_short", "set_tags_too_many",
         "resolve_hostname_empty", "managed_no_sub", "set_visibility_empty", "broadcast_short"]
# Harmless command bytes for garbage: unknown ones and verbs whose malformed forms only yield errors.
GARBAGE_CMDS = [0x01, 0x03, 0x08, 0x0F, 0x11, 0x1F, 0x23, 0x2D, 0x37, 0x39, 0x3B, 0x40, 0x7F, 0xFF]


@pytest.fixture
def daemon(rendezvous, our_daemons):
    rdv = rendezvous()
    return our_daemons("node-ipc", rdv.registry, rdv.beacon, "-public")


def health_ok(d) -> dict:
    c = RawIPC(d.socket)
    try:
        frame = c.request(ipc.Cmd.HEALTH)
    finally:
        c.close()
    assert frame[4] == ipc.Cmd.HEALTH_OK, frame
    return json.loads(frame[5:])


def test_socket_is_private_and_official_probes_get_identical_bytes(daemon):
    mode = os.stat(daemon.socket).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
    c = RawIPC(daemon.socket)
    for name in EXACT:
        probe = oc.ipc(name)
        c.send(probe["request"])
        assert c.read_frame() == probe["reply"], name
    # a zero-length frame is skipped and the next request answered
    c.send(oc.ipc("zero_length_then_health")["request"])
    frame = c.read_frame()
    assert frame[4] == ipc.Cmd.HEALTH_OK and json.loads(frame[5:])["status"] == "ok"
    c.close()


def test_garbage_truncated_oversize_and_vanishing_clients_never_hurt_others(daemon):
    rng = random.Random(1234)
    bystander = RawIPC(daemon.socket)
    bystander.request(ipc.Cmd.BIND, struct.pack(">H", 6000))

    # garbage: each frame gets at most one reply; the connection stays usable
    c = RawIPC(daemon.socket, timeout=5)
    for _ in range(300):
        payload = rng.randbytes(rng.randrange(0, 40))
        c.send(struct.pack(">I", 1 + len(payload)) + bytes((rng.choice(GARBAGE_CMDS),)) + payload)
    c.send(struct.pack(">I", 1) + bytes((ipc.Cmd.INFO,)))
    replies = []
    while not replies or replies[-1][4] != ipc.Cmd.INFO_OK:
        replies.append(c.read_frame())
    assert len(replies) <= 301 and all(r[4] in (0x02, 0x0A, 0x10, 0x12, 0x20, 0x24, 0x2E, 0x38, 0x3A, 0x09, 0x0E)
                                       for r in replies)
    c.close()

    # oversize: the official daemon drops the client; so do we
    big = RawIPC(daemon.socket)
    big.send(struct.pack(">I", ipc.MAX_FRAME + 1) + b"\x0d" + b"x" * 1000)
    with pytest.raises((ConnectionError, OSError)):
        big.read_frame()
    big.close()

    # truncated frames and clients that vanish mid-request (a confirm waiting for a key exchange, a trust wait)
    for data in (struct.pack(">I", 100) + b"\x0d" * 10,
                 struct.pack(">I", 13) + b"\x39" + bytes(2) + struct.pack(">I", 424242) + b"\x13\x88" + b"xx",
                 struct.pack(">I", 10) + b"\x0f\x07" + struct.pack(">II", 424242, 5000)):
        gone = RawIPC(daemon.socket)
        gone.send(data)
        gone.close()

    # many clients at once
    many = [RawIPC(daemon.socket) for _ in range(50)]
    for m in many:
        m.send(struct.pack(">I", 1) + bytes((ipc.Cmd.INFO,)))
    assert all(m.read_frame()[4] == ipc.Cmd.INFO_OK for m in many)
    for m in many:
        m.close()

    assert health_ok(daemon)["status"] == "ok"
    assert bystander.request(ipc.Cmd.UNBIND, struct.pack(">H", 6000)) == bytes.fromhex("00000003381770")
    assert daemon.proc.poll() is None


def test_ports_of_a_vanished_client_are_released(daemon):
    a = RawIPC(daemon.socket)
    assert a.request(ipc.Cmd.BIND, struct.pack(">H", 7000))[4] == ipc.Cmd.BIND_OK
    a.close()
    b = RawIPC(daemon.socket)
    reply = wait_for(lambda: (r := b.request(ipc.Cmd.BIND, struct.pack(">H", 7000)))[4] == ipc.Cmd.BIND_OK and r,
                     5, "port 7000 to be free again", interval=0.05)
    assert reply == bytes.fromhex("00000003021b58")
    b.close()


def test_sigterm_drains_and_exits_zero(daemon):
    t0 = time.monotonic()
    assert daemon.ns.stop(daemon.proc) == 0
    assert time.monotonic() - t0 < 5 and not daemon.socket.exists()


def test_self_dial_echo_and_a_client_vanishing_mid_stream(daemon):
    addr = Addr.parse(json.loads(RawIPC(daemon.socket).request(ipc.Cmd.INFO)[5:])["address"])
    c = RawIPC(daemon.socket)
    dial = c.request(ipc.Cmd.DIAL, addr.to_bytes() + struct.pack(">H", 7))
    assert dial[4] == ipc.Cmd.DIAL_OK, dial
    conn_id = struct.unpack(">I", dial[5:9])[0]
    c.send(ipc.Send(conn_id, b"x" * 5000).encode())
    echoed = b""
    while len(echoed) < 5000:
        frame = c.read_frame()
        assert frame[4] == ipc.Cmd.RECV and struct.unpack(">I", frame[5:9])[0] == conn_id
        echoed += frame[9:]
    assert echoed == b"x" * 5000
    c.send(ipc.Send(conn_id, b"y" * 200_000).encode())   # and vanish while it is in flight
    c.close()
    assert health_ok(daemon)["status"] == "ok" and daemon.proc.poll() is None
    wait_for(lambda: not [r for r in json.loads(RawIPC(daemon.socket).request(ipc.Cmd.INFO)[5:])["conn_list"]
                          if r["state"] not in ("TIME_WAIT", "CLOSED")], 10, "the orphaned streams to close")


def test_cancel_or_a_vanishing_client_ends_a_pending_dial(rendezvous, our_daemons):
    """A dial the peer never answers: Cancel answers it with an error and resets the half-open stream; a client
    that disconnects mid-dial leaves no stream behind either."""
    rdv = rendezvous()
    a = our_daemons("node-a", rdv.registry, rdv.beacon, "-public")
    b = our_daemons("node-b", rdv.registry, rdv.beacon, "-public")
    dial = ipc.Dial(Addr.parse(b.info()["address"]), 7).encode()
    c = RawIPC(a.socket)
    c.send(dial)
    assert c.read_frame()[4] == ipc.Cmd.DIAL_OK      # the tunnel is keyed; now the peer stops answering

    def half_open() -> list:
        rows = json.loads(RawIPC(a.socket).request(ipc.Cmd.INFO)[5:])["conn_list"]
        return [r for r in rows if r["state"] == "SYN_SENT"]

    os.kill(b.proc.pid, signal.SIGSTOP)
    try:
        c.send(dial)
        wait_for(half_open, 5, "the dial's SYN to be out")
        c.send(ipc.Cancel().encode())
        reply = c.read_frame()
        assert reply[4] == ipc.Cmd.ERROR and b"dial: cancelled" in reply, reply
        wait_for(lambda: not half_open(), 5, "the cancelled dial's stream to be reset")
        gone = RawIPC(a.socket)
        gone.send(dial)
        wait_for(half_open, 5, "the second dial's SYN to be out")
        gone.close()
        wait_for(lambda: not half_open(), 5, "the vanished client's dial to be reset")
        assert health_ok(a)["status"] == "ok"
    finally:
        os.kill(b.proc.pid, signal.SIGCONT)
