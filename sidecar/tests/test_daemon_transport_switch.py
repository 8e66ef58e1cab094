"""`-transport auto` and live switching with `-transport-file`, in the pod/rendezvous namespace lab:
auto picks compat behind a TCP/443-only firewall and udp when UDP is open; flipping the file
udp -> compat -> udp keeps the node id, and ping (and an open stream) keep working."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from netlab import lab  # noqa: F401  (fixture)
from netlab import POD_IP, REG, ok, remote_ports, rtts, sockets_of
from pilot_harness import wait_for

pytestmark = [pytest.mark.official, pytest.mark.timeout(90)]
AUTO = ("-transport", "auto", "-compat-beacon", "wss://beacon.pilot.test/v1/compat")



def test_auto_picks_compat_behind_the_firewall_and_udp_when_open(lab):
    peer = lab.official_udp("go-udp")
    lab.only_443()
    walled = lab.ours_in_pod("py-walled", *AUTO, registry=f"{REG}:9000")
    info = walled.info()
    assert info["transport"] == "compat", info
    assert rtts(ok(walled.ctl("ping", peer.info()["address"], "--count", "2", timeout=30)))
    held = sockets_of(walled.proc.pid)
    assert held["udp"] == [] and remote_ports(held) == {443}, held
    fw = lab.counters()
    assert fw["udp_drop"] == 3 and fw["other_drop"] == 0, fw      # the three discover probes, nothing else

    lab.open_egress()
    free = lab.ours_in_pod("py-free", *AUTO, registry=f"{REG}:9000")
    info = free.info()
    assert info["transport"] == "udp" and info["transport_path"].startswith(f"udp {POD_IP}:"), info
    assert rtts(ok(free.ctl("ping", peer.info()["address"], "--count", "2", timeout=30)))
    assert {p["relay"] for p in free.info()["peer_list"]} == {False}


def _flip(lab, d, path, mode: str, peer_addr: str) -> float:
    """Write ``mode`` to the transport file; seconds until the daemon reports it and a ping succeeds."""
    t0 = time.monotonic()
    path.write_text(mode + "\n")
    wait_for(lambda: d.info().get("transport") == mode, 15, f"the daemon to switch to {mode}", interval=0.05)
    wait_for(lambda: not ok(d.ctl("ping", peer_addr, "--count", "1", timeout=20)).get("timeout"), 40,
             "a ping over the new path", interval=0.2)
    return time.monotonic() - t0


def test_live_switch_udp_compat_udp_keeps_the_node_and_the_stream(lab, tmp_path):
    peer = lab.official_udp("go-udp")
    peer_addr = peer.info()["address"]
    tfile = tmp_path / "podinfo-transport"
    tfile.write_text("udp")
    d = lab.ours_in_pod("py-switch", "-transport", "udp", "-transport-file", str(tfile), "-compat-beacon",
                        "wss://beacon.pilot.test/v1/compat", registry=f"{REG}:9000")
    first = d.info()
    assert first["transport"] == "udp"
    udp_rtt = rtts(ok(d.ctl("ping", peer_addr, "--count", "3", timeout=30)))

    # an open stream (bench) while the pod loses UDP and the annotation says compat
    bench = subprocess.Popen(lab.r.argv([str(lab.bin / "pilotctl"), "--json", "bench", peer_addr, "24"]),
                             env=d.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    lab.only_443()
    to_compat = _flip(lab, d, tfile, "compat", peer_addr)
    out, err = bench.communicate(timeout=60)
    stream = json.loads(out or err)
    compat_rtt = rtts(ok(d.ctl("ping", peer_addr, "--count", "3", timeout=30)))
    held = sockets_of(d.proc.pid)
    assert held["udp"] == [] and remote_ports(held) == {443}, held
    mid = d.info()
    assert mid["node_id"] == first["node_id"] and mid["public_key"] == first["public_key"]

    lab.open_egress()
    to_udp = _flip(lab, d, tfile, "udp", peer_addr)
    back = d.info()
    assert back["node_id"] == first["node_id"] and back["transport_path"].startswith(f"udp {POD_IP}:")
    assert rtts(ok(peer.ctl("ping", back["address"], "--count", "2", timeout=30)))
    assert d.proc.poll() is None
    switched = [e for e in lab.events(d.log) if e.get("msg") == "transport switched"]
    assert [(e["from"], e["to"]) for e in switched] == [("udp", "compat"), ("compat", "udp")]
    print(f"\nFIGURES switch udp->compat {to_compat:.2f}s (daemon {switched[0]['took_s']}s) compat->udp "
          f"{to_udp:.2f}s (daemon {switched[1]['took_s']}s); ping_ms udp={udp_rtt} compat={compat_rtt}; "
          f"stream during the switch: {stream}")
