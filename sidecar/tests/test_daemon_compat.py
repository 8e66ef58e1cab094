"""Our daemon on the compat transport, in a pod namespace whose egress allows only TCP/443 to the
rendezvous: it registers (relay-only, as the official compat daemon), pings an official UDP daemon and an
official compat daemon through pilot-rendezvous's TLS listener, and holds no UDP socket and one remote port."""
from __future__ import annotations

import time

import pytest

from netlab import PodLab, TLS_PORT, ok, remote_ports, rtts, sockets_of
from pilot_harness import wait_for

pytestmark = [pytest.mark.official, pytest.mark.timeout(60)]


@pytest.fixture
def lab(netns, official_daemons, official_bin, tmp_path):
    lab = PodLab(netns, official_daemons, official_bin, tmp_path)
    yield lab
    lab.close()


def test_compat_behind_a_443_only_firewall_reaches_udp_and_compat_daemons(lab):
    lab.only_443()
    udp_peer = lab.official_udp("go-udp")
    compat_peer = lab.official_compat("go-compat")
    ours = lab.ours_in_pod("py-compat", "-transport", "compat", "-compat-beacon", "wss://beacon.pilot.test/v1/compat")
    info = ok(ours.ctl("info"))
    assert info["transport"] == "compat" and info["node_id"], info
    assert info["transport_path"].startswith("compat wss://beacon.pilot.test/v1/compat")

    out_udp = rtts(ok(ours.ctl("ping", udp_peer.info()["address"], "--count", "3", timeout=30)))
    out_compat = rtts(ok(ours.ctl("ping", compat_peer.info()["address"], "--count", "3", timeout=30)))
    in_udp = rtts(ok(udp_peer.ctl("ping", info["address"], "--count", "3", timeout=30)))
    in_compat = rtts(ok(compat_peer.ctl("ping", info["address"], "--count", "3", timeout=30)))
    direct = rtts(ok(udp_peer.ctl("ping", compat_peer.info()["address"], "--count", "3", timeout=30)))

    held = sockets_of(ours.proc.pid)
    assert held["udp"] == [], held
    assert remote_ports(held) == {TLS_PORT}, held
    fw = lab.counters()
    assert fw["tcp443"] > 0 and fw["udp_drop"] == 0 and fw["other_drop"] == 0, fw

    register = next(e for e in lab.events(ours.log) if e.get("msg") == "daemon registered")
    assert register["endpoint"] == "0.0.0.0:0"
    peers = {p["node_id"]: p for p in ours.info()["peer_list"]}
    assert all(p["relay"] for p in peers.values()) and len(peers) == 2, peers
    print(f"\nFIGURES compat ping_rtt_ms py->go-udp={out_udp} py->go-compat={out_compat} go-udp->py={in_udp} "
          f"go-compat->py={in_compat} go-udp->go-compat={direct} firewall={fw} sockets={held}")


def test_bench_and_datagrams_between_our_compat_daemon_and_official_daemons(lab):
    lab.only_443()
    udp_peer = lab.official_udp("go-udp")
    ours = lab.ours_in_pod("py-compat", "-transport", "compat", "-compat-beacon", "wss://beacon.pilot.test/v1/compat")
    peer_addr = udp_peer.info()["address"]
    t0 = time.monotonic()
    bench = ok(ours.ctl("bench", peer_addr, "1", timeout=40))
    assert bench["complete"] and bench["recv_bytes"] == 1 << 20, bench
    bench_s = time.monotonic() - t0
    # a datagram from the official UDP daemon to ours (send/recv on port 5000)
    import subprocess
    recv = subprocess.Popen(lab.p.argv([str(lab.bin / "pilotctl"), "--json", "recv", "5000", "--count", "1",
                                        "--timeout", "20s"]), env=ours.env(), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    sent = ok(udp_peer.ctl("send", ours.info()["address"], "5000", "--data", "through-443"))
    out, _ = recv.communicate(timeout=30)
    import json
    got = json.loads(out)["data"]["messages"]
    assert got and got[0]["data"] == "through-443", (out, sent)
    fw = lab.counters()
    assert fw["udp_drop"] == 0 and fw["other_drop"] == 0, fw
    wait_for(lambda: ours.proc.poll() is None, 1, "our daemon to keep running")
    print(f"\nFIGURES compat bench py->go-udp 1MiB: {bench} wall={bench_s:.2f}s")
