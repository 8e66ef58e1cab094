"""Our daemon on the compat transport, in a pod namespace whose egress allows only TCP/443 to the
rendezvous: it registers (relay-only, as the official compat daemon), pings an official UDP daemon and an
official compat daemon through pilot-rendezvous's TLS listener, and holds no UDP socket and one remote port."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import time

import pytest

from daemon_harness import our_daemons  # noqa: F401  (fixture)
from netlab import lab  # noqa: F401  (fixture)
from netlab import COMPAT_FLAGS, REG, TLS_PORT, ok, remote_ports, rtts, sockets_of
from pilot_harness import wait_for
from pilot_rendezvous.tlsfiles import make_ca

pytestmark = [pytest.mark.official, pytest.mark.timeout(120)]



def test_compat_behind_a_443_only_firewall_reaches_udp_and_compat_daemons(lab):
    lab.only_443()
    udp_peer = lab.official_udp("go-udp")
    compat_peer = lab.official_compat("go-compat")
    ours = lab.ours_in_pod("py-compat", *COMPAT_FLAGS)
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
    ours = lab.ours_in_pod("py-compat", *COMPAT_FLAGS)
    peer_addr = udp_peer.info()["address"]
    t0 = time.monotonic()
    bench = ok(ours.ctl("bench", peer_addr, "1", timeout=40))
    assert bench["complete"] and bench["recv_bytes"] == 1 << 20, bench
    bench_s = time.monotonic() - t0
    # a datagram from the official UDP daemon to ours (send/recv on port 5000)
    recv = subprocess.Popen(lab.p.argv([str(lab.bin / "pilotctl"), "--json", "recv", "5000", "--count", "1",
                                        "--timeout", "20s"]), env=ours.env(), stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    sent = ok(udp_peer.ctl("send", ours.info()["address"], "5000", "--data", "through-443"))
    out, _ = recv.communicate(timeout=30)
    got = json.loads(out)["data"]["messages"]
    assert got and got[0]["data"] == "through-443", (out, sent)
    fw = lab.counters()
    assert fw["udp_drop"] == 0 and fw["other_drop"] == 0, fw
    wait_for(lambda: ours.proc.poll() is None, 1, "our daemon to keep running")
    print(f"\nFIGURES compat bench py->go-udp 1MiB: {bench} wall={bench_s:.2f}s")


@pytest.mark.timeout(int(os.environ.get("PILOTMESH_BENCH_TIMEOUT", "120")))   # benchmarks/bench_compat.py: longer
def test_compat_python_vs_go_through_the_same_rendezvous(lab, our_daemons):
    """Compat RTT and stream throughput, ours / official, both in the rendezvous namespace, same UDP peer.
    The same over UDP for reference (how much of a difference is the compat link's). Sizes and rounds:
    PILOTMESH_BENCH_MIB (default 1), PILOTMESH_BENCH_PINGS (default 6), PILOTMESH_BENCH_ROUNDS (default 1).
    Every daemon logs at info, as deployed (the harnesses' debug logging would cost ours ~0.2 ms per request)."""
    mib, pings = os.environ.get("PILOTMESH_BENCH_MIB", "1"), os.environ.get("PILOTMESH_BENCH_PINGS", "6")
    rounds = int(os.environ.get("PILOTMESH_BENCH_ROUNDS", "1"))
    info = ("-log-level", "info")
    peer = lab.officials("go-udp", lab.rdv.registry, lab.rdv.beacon, "-listen", "10.77.0.1:4000", "-public", *info)
    go = lab.official_compat("go-compat", *info)
    py = our_daemons("py-compat", f"{REG}:{TLS_PORT}", lab.rdv.beacon, *COMPAT_FLAGS, "-public", *info,
                     env={"SSL_CERT_FILE": lab.ca, "PILOT_REGISTRY": lab.rdv.registry})
    go_udp = lab.officials("go-udp-ref", lab.rdv.registry, lab.rdv.beacon, "-listen", "10.77.0.1:4001", "-public",
                           *info)
    py_udp = our_daemons("py-udp-ref", lab.rdv.registry, lab.rdv.beacon, "-listen", "10.77.0.1:0", "-public", *info)
    target = peer.info()["address"]
    figures = {}
    for name, d in [("go", go), ("py", py), ("gu", go_udp), ("pu", py_udp)] * rounds:   # interleaved
        rtt = rtts(ok(d.ctl("ping", target, "--count", pings, "--timeout", "60s", timeout=90)))[1:]    # the first one keys the tunnel
        bench = ok(d.ctl("bench", target, mib, timeout=120))
        assert bench["complete"] and bench["recv_bytes"] == int(mib) << 20, bench
        figures.setdefault(name, []).append((statistics.median(rtt), bench["total_mbps"]))
    assert 'pilot_rendezvous_beacon_dropped_total{reason="unroutable_or_unknown"} 0.0' in lab.metrics()   # no loss
    best = {k: (min(r for r, _ in v), max(t for _, t in v)) for k, v in figures.items()}
    for label, py_key, go_key in (("compat", "py", "go"), ("udp", "pu", "gu")):
        (py_rtt, py_tp), (go_rtt, go_tp) = best[py_key], best[go_key]
        print(f"\nFIGURES {label} py/go: rtt_p50_ms py={py_rtt:.2f} go={go_rtt:.2f} ratio={py_rtt / go_rtt:.2f}; "
              f"bench {mib} MiB total_mbps py={py_tp:.2f} go={go_tp:.2f} ratio={py_tp / go_tp:.2f}")
    print(f"FIGURES raw {figures}")


def test_rendezvous_restart_and_an_untrusted_certificate(lab, tmp_path):
    go = lab.official_compat("go-compat")
    ours = lab.ours_in_pod("py-compat", *COMPAT_FLAGS)
    first = ours.info()
    assert first["transport_path"].endswith("(up)"), first["transport_path"]
    lab.rdv.restart()
    t0 = time.monotonic()
    wait_for(lambda: sum(e.get("msg") == "compat mode tunnel up" for e in lab.events(ours.log)) >= 2, 20,
             "our WebSocket to reconnect after the rendezvous restart")
    reconnect_s = time.monotonic() - t0
    down = next(e for e in lab.events(ours.log) if e.get("msg") == "compat link down, reconnecting")
    assert down["reason"] and down["retry_in_s"] > 0
    wait_for(lambda: not ours.ctl("ping", go.info()["address"], "--count", "1", timeout=20)["data"]["timeout"],
             20, "a ping after the restart", interval=0.5)
    again = ours.info()
    assert again["node_id"] == first["node_id"] and again["public_key"] == first["public_key"]

    # a certificate the daemon does not trust: a clear error, retried, no registration
    (tmp_path / "other-ca.pem").write_bytes(make_ca("not the rendezvous CA")[0])
    bad = lab.ours_in_pod("py-untrusting", *COMPAT_FLAGS, wait=False,
                          env={"SSL_CERT_FILE": str(tmp_path / "other-ca.pem")})
    wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in bad.log.read_text(), 15, "the certificate to be refused")
    assert bad.proc.poll() is None and not bad.socket.exists()
    print(f"\nFIGURES compat reconnect after a rendezvous restart: {reconnect_s:.2f}s")
