"""`-transport auto` re-probes after network changes: rtnetlink messages named (pure), bursts debounced into
one call, the real kernel's notifications in a private namespace, and our daemon behind the pod firewall moving
compat -> udp -> compat within seconds of an address change (the timer alone would take REPROBE_INTERVAL)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest
from hypothesis import given, strategies as st

from daemon_harness import metric, metrics_port, scrape
from netlab import lab  # noqa: F401  (fixture)
from netlab import POD_IP, REG, ok, rtts
from pilot_daemon.io import transport
from pilot_daemon.io.netwatch import NetWatch
from pilot_daemon.proto import netlink as nl
from pilot_harness import missing, wait_for

pytestmark = pytest.mark.timeout(60)
AUTO = ("-transport", "auto", "-compat-beacon", "wss://beacon.pilot.test/v1/compat")
RTM_NEWLINK, RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, NLMSG_NOOP, NLMSG_DONE = 16, 20, 21, 24, 1, 3


def message(msg_type: int, body: bytes = b"") -> bytes:
    """One nlmsghdr + body, padded to 4 bytes as the kernel sends it."""
    length = nl.HEADER.size + len(body)
    return nl.HEADER.pack(length, msg_type, 0, 0, 0) + body + bytes(-length % 4)


def test_messages_are_named_by_type():
    data = (message(RTM_NEWADDR, b"\x02\x18\x00\x00\x05") + message(RTM_NEWROUTE, bytes(28)) + message(NLMSG_NOOP)
            + message(RTM_NEWROUTE) + message(NLMSG_DONE) + message(RTM_NEWLINK, bytes(3)) + message(999))
    assert nl.changes(data) == ["address added", "route added", "route added", "link changed"]
    assert nl.describe(nl.changes(data)) == "address added, link changed, route added x2"
    assert nl.kind(RTM_DELADDR) == "address removed" and nl.kind(NLMSG_DONE) is None
    assert nl.changes(message(RTM_NEWADDR)[:-1]) == []                                     # truncated header
    assert nl.changes(message(RTM_NEWADDR) + message(RTM_DELADDR, bytes(8))[:-4]) == ["address added"]
    assert nl.changes(struct.pack("=IHHII", 4, RTM_NEWADDR, 0, 0, 0) + message(RTM_NEWADDR)) == []  # length < 16
    assert nl.changes(b"") == [] and nl.describe([]) == ""


@given(st.binary(max_size=512))
def test_any_bytes_parse_without_error(data):
    assert set(nl.changes(data)) <= set(nl.KINDS.values())


def test_a_burst_is_one_call_and_a_storm_still_reports():
    async def scenario() -> tuple[list, list, list, float]:
        tx, rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        calls: list[tuple[float, str]] = []
        loop = asyncio.get_running_loop()
        watch = NetWatch(rx, lambda why: calls.append((loop.time(), why)), debounce=0.1, max_delay=0.4)
        tx.send(message(RTM_NEWADDR) + message(RTM_NEWROUTE))
        tx.send(message(RTM_NEWROUTE))
        tx.send(message(NLMSG_DONE))
        await asyncio.sleep(0.3)
        burst = list(calls)
        calls.clear()
        t0 = loop.time()
        for _ in range(16):              # a message every 50 ms for 0.8 s: never quiet for 0.1 s
            tx.send(message(RTM_NEWLINK))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        storm = list(calls)
        calls.clear()
        tx.send(message(NLMSG_NOOP))     # says nothing changed: no call
        tx.send(message(RTM_NEWLINK))    # closed before the debounce ends: no call
        await asyncio.sleep(0.02)
        watch.close()
        await asyncio.sleep(0.3)
        tx.close()
        return burst, storm, calls, t0
    burst, storm, after, t0 = asyncio.run(scenario())
    assert [why for _, why in burst] == ["address added, route added x2"]
    assert len(storm) >= 2 and 0.35 <= storm[0][0] - t0 <= 0.6, storm     # max_delay after the first message
    assert all(why.startswith("link changed") for _, why in storm), storm
    assert sum(int(why.split(" x")[1]) if " x" in why else 1 for _, why in storm) == 16, storm   # each one once
    assert after == []


def test_the_kernel_notifications_in_a_private_namespace():
    """A real rtnetlink socket in a fresh namespace (``unshare -n``): bringing lo up and adding an address."""
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        missing("a private network namespace needs root, unshare and iproute2")
    script = """
import asyncio, json, subprocess, sys
from pilot_daemon.io.netwatch import NetWatch
async def main():
    got = []
    watch = NetWatch.open(got.append, debounce=0.2)
    assert watch is not None
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    await asyncio.sleep(0.6)
    subprocess.run(["ip", "addr", "add", "10.99.0.1/24", "dev", "lo"], check=True)
    await asyncio.sleep(0.6)
    watch.close()
    print(json.dumps(got))
asyncio.run(main())
"""
    proc = subprocess.run(["unshare", "-n", sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert len(got) == 2, got
    assert "link changed" in got[0] and "address added" in got[0], got     # lo up brings 127.0.0.1 and ::1
    assert "address added" in got[1] and "route added" in got[1], got


@pytest.mark.official
def test_auto_moves_with_the_network_well_before_the_reprobe_timer(lab):
    peer = lab.official_udp("go-udp")
    lab.only_443()
    d = lab.ours_in_pod("py-auto", *AUTO, "-metrics-listen", "127.0.0.1:0", registry=f"{REG}:9000")
    assert d.info()["transport"] == "compat"
    assert "watching network changes" in d.log.read_text()
    port = metrics_port(d)
    wait_for(lambda: metric(scrape(lab.p, port), "pilot_daemon_compat_tunnel_up") == 1, 10, "the compat link")

    lab.open_egress()          # UDP open, but nothing the daemon sees: it stays on compat until a change or the timer
    time.sleep(2)
    assert d.info()["transport"] == "compat"
    t0 = time.monotonic()
    lab.p.run(["ip", "addr", "add", "10.77.0.3/24", "dev", "vp"]).check_returncode()
    wait_for(lambda: d.info().get("transport") == "udp", 10, "the daemon to move to udp", interval=0.05)
    to_udp = time.monotonic() - t0
    assert d.info()["transport_path"].startswith(f"udp {POD_IP}:")
    udp_rtt = rtts(ok(d.ctl("ping", peer.info()["address"], "--count", "2", timeout=30)))

    lab.only_443()
    t1 = time.monotonic()
    lab.p.run(["ip", "addr", "del", "10.77.0.3/24", "dev", "vp"]).check_returncode()
    wait_for(lambda: d.info().get("transport") == "compat", 15, "the daemon to move to compat", interval=0.05)
    to_compat = time.monotonic() - t1
    assert to_udp < 5 and to_compat < 8 < transport.REPROBE_INTERVAL, (to_udp, to_compat)

    def switched() -> list[tuple[str, str]]:     # logged once the switch's registration is done
        return [(e["from"], e["to"]) for e in lab.events(d.log) if e.get("msg") == "transport switched"]
    wait_for(lambda: len(switched()) == 2, 15, "the second switch to complete")
    assert switched() == [("compat", "udp"), ("udp", "compat")], switched()
    changes = [e for e in lab.events(d.log) if e.get("msg") == "network changed, re-probing transport"]
    assert "address added" in changes[0]["reason"] and "address removed" in changes[-1]["reason"], changes
    m = scrape(lab.p, port)
    assert metric(m, "pilot_daemon_transport_info", mode="auto", transport="compat") == 1
    assert metric(m, "pilot_daemon_transport_switches_total") == 2
    assert metric(m, "pilot_daemon_network_changes_total") == len(changes) >= 2
    assert d.proc.poll() is None
    print(f"\nFIGURES auto re-probe after a network change: compat->udp {to_udp:.2f}s, udp->compat {to_compat:.2f}s "
          f"(timer: {transport.REPROBE_INTERVAL:.0f}s); udp ping_ms={udp_rtt}; reasons={[c['reason'] for c in changes]}")
