"""Interop: official pilot-daemon/pilotctl 1.18 against our pilot-rendezvous, in a private netns."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from pilot_harness import wait_for

pytestmark = [pytest.mark.official, pytest.mark.timeout(120)]


def _ok(envelope: dict) -> dict:
    assert envelope.get("status") == "ok", envelope
    return envelope["data"]


def _events(rdv_log) -> list[dict]:
    out = []
    for line in rdv_log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def test_two_official_daemons_register_ping_send_and_survive_a_restart(rendezvous, official_daemons):
    rdv = rendezvous()
    t0 = time.monotonic()
    a = official_daemons("node-a", rdv.registry, rdv.beacon, "-public")
    registered_a = time.monotonic() - t0
    b = official_daemons("node-b", rdv.registry, rdv.beacon, "-public")

    info_a, info_b = a.info(), b.info()
    assert info_a["version"] == "1.18.0" and info_a["hostname"] == "node-a"
    assert info_a["node_id"] != info_b["node_id"]
    assert info_a["address"] == f"0:0000.{info_a['node_id'] >> 16:04X}.{info_a['node_id'] & 0xFFFF:04X}"

    # the registry's view, through pilotctl's own registry client
    looked = _ok(b.ctl("lookup", str(info_a["node_id"])))
    assert looked["public_key"] == info_a["public_key"]
    found = _ok(b.ctl("find", "node-a"))
    assert found["node_id"] == info_a["node_id"]

    ping = _ok(b.ctl("ping", info_a["address"], "--count", "3", timeout=60))
    assert not ping["timeout"] and len(ping["results"]) == 3, ping
    rtts = [r["rtt_ms"] for r in ping["results"]]

    recv = subprocess.Popen(a.ns.argv([str(a.bin_dir / "pilotctl"), "--json", "recv", "5000", "--count", "1",
                                       "--timeout", "20s"]), env=a.env(), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    # send then waits --timeout for an answer `recv` never gives: a short wait ends as "timeout"
    sent = b.ctl("send", info_a["address"], "5000", "--data", "hello-pilotmesh", "--timeout", "2s")
    assert sent.get("status") == "ok" or sent.get("code") == "timeout", sent
    got = json.loads(recv.communicate(timeout=30)[0])
    assert [m["data"] for m in got["data"]["messages"]] == ["hello-pilotmesh"]

    # restart the rendezvous: same database, node ids and hostnames kept, traffic resumes
    rdv.restart()
    again = _ok(a.ctl("lookup", str(info_b["node_id"])))
    assert again["hostname"] == "node-b" and again["public_key"] == info_b["public_key"]
    assert _ok(a.ctl("find", "node-b"))["node_id"] == info_b["node_id"]
    ping2 = _ok(a.ctl("ping", info_b["address"], "--count", "2", timeout=60))
    assert not ping2["timeout"] and len(ping2["results"]) == 2
    assert a.info()["node_id"] == info_a["node_id"] and b.info()["node_id"] == info_b["node_id"]

    types = {e.get("type") for e in _events(rdv.log)}
    print(f"\nFIGURES registration_s={registered_a:.3f} ping_rtt_ms={rtts} after_restart_ms="
          f"{[r['rtt_ms'] for r in ping2['results']]} registry_types_seen={sorted(t for t in types if t)}")


def test_restarted_official_daemon_keeps_its_node_id(rendezvous, official_daemons):
    rdv = rendezvous()
    a = official_daemons("node-a", rdv.registry, rdv.beacon)
    first = a.info()["node_id"]
    a.ns.stop(a.proc)
    rdv.restart()
    a2 = official_daemons("node-a", rdv.registry, rdv.beacon)
    info = wait_for(lambda: a2.info() if a2.info().get("hostname") == "node-a" else None, 10, "hostname back")
    assert info["node_id"] == first


def test_private_nodes_handshake_through_the_registry_then_talk(rendezvous, official_daemons):
    rdv = rendezvous()
    a = official_daemons("node-a", rdv.registry, rdv.beacon)
    b = official_daemons("node-b", rdv.registry, rdv.beacon)
    id_a, addr_b = a.info()["node_id"], b.info()["address"]
    denied = a.ctl("lookup", str(b.info()["node_id"]))
    assert "real_addr" not in denied.get("data", {})          # private: no endpoint for strangers

    asked = _ok(a.ctl("handshake", str(b.info()["node_id"]), "pilotmesh interop"))
    assert asked["status"] in ("sent", "in_flight"), asked
    pending = wait_for(lambda: _ok(b.ctl("pending"))["pending"], 20, "the request to reach node-b")
    assert [p["node_id"] for p in pending] == [id_a]
    assert _ok(b.ctl("approve", str(id_a)))["status"] == "approved"
    ping = wait_for(lambda: (r := a.ctl("ping", addr_b, "--count", "2", timeout=60)).get("status") == "ok" and r,
                    40, "ping after approval", interval=1)
    assert not ping["data"]["timeout"]
    events = [e for e in _events(rdv.log) if e.get("type") in ("request_handshake", "respond_handshake")]
    assert all(e["ok"] for e in events) and {e["type"] for e in events} == {"request_handshake", "respond_handshake"}


def test_relay_only_node_is_reached_through_our_beacon(rendezvous, official_daemons):
    rdv = rendezvous()
    a = official_daemons("node-a", rdv.registry, rdv.beacon, "-public")
    b = official_daemons("node-b", rdv.registry, rdv.beacon, "-public", "-relay-only")
    ping = _ok(a.ctl("ping", b.info()["address"], "--count", "3", timeout=60))
    assert not ping["timeout"] and len(ping["results"]) == 3
    peers = {p["node_id"]: p for p in a.info()["peer_list"]}
    assert peers[b.info()["node_id"]]["relay"] is True, peers
    size = os.environ.get("PILOTMESH_BENCH_MIB", "1")     # raise it to measure relay throughput
    bench = _ok(a.ctl("bench", b.info()["address"], size, timeout=120))
    assert bench["complete"] and bench["recv_bytes"] == int(size) << 20
    print(f"\nFIGURES relay ping_rtt_ms={[r['rtt_ms'] for r in ping['results']]} bench={bench}")


def test_official_rotate_key_keeps_the_node_id(rendezvous, official_daemons):
    rdv = rendezvous()
    a = official_daemons("node-a", rdv.registry, rdv.beacon, "-public")
    b = official_daemons("node-b", rdv.registry, rdv.beacon, "-public")
    before = a.info()
    rotated = _ok(a.ctl("rotate-key"))
    looked = _ok(b.ctl("lookup", str(before["node_id"])))
    assert looked["public_key"] != before["public_key"], rotated
    assert looked["public_key"] == wait_for(lambda: a.info()["public_key"] != before["public_key"] and
                                            a.info()["public_key"], 10, "the daemon to adopt its new key")
    assert a.info()["node_id"] == before["node_id"]
    ping = _ok(b.ctl("ping", before["address"], "--count", "2", timeout=60))
    assert not ping["timeout"]
