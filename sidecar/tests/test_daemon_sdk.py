"""The official Python SDK (pilotprotocol.Driver, ctypes over libpilot 1.18) against our daemon."""
from __future__ import annotations

import base64
import json
import os
import sys

import pytest

from pilot_harness import OFFICIAL_DIR
from daemon_harness import our_daemons  # noqa: F401  (fixture)

pytestmark = [pytest.mark.official, pytest.mark.timeout(180)]
PROBE = os.path.join(os.path.dirname(__file__), "sdk_probe.py")


def test_sdk_info_dial_listen_and_datagrams(rendezvous, official_daemons, our_daemons):
    rdv = rendezvous()
    official = official_daemons("go-sdk", rdv.registry, rdv.beacon, "-public")
    ours = our_daemons("py-sdk", rdv.registry, rdv.beacon, "-public")
    ours_addr, official_addr = ours.info()["address"], official.info()["address"]
    size = int(os.environ.get("PILOTMESH_SDK_MIB", "8")) << 20   # 64 for the full-size proof
    env = {**ours.env(), "PYTHONPATH": str(OFFICIAL_DIR),
           "PILOT_LIB_PATH": str(OFFICIAL_DIR / "pilotprotocol" / "bin" / "libpilot.so")}
    proc = ours.ns.run([sys.executable, PROBE, str(ours.socket), str(official.socket), ours_addr, official_addr,
                        str(size)], env=env, timeout=150)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["info"]["address"] == ours_addr and out["info"]["node_id"] == ours.info()["node_id"]
    assert out["echo_bytes"] == size and out["echo_intact"]
    assert (out["accepted_read"], out["dialer_read"]) == ("hello-from-go", "hello-from-python")
    assert base64.b64decode(out["recv_from"]["data"]) == b"dgram-to-python"   # the SDK gives base64
    assert out["recv_from"]["dst_port"] == 5005
    assert base64.b64decode(out["official_recv_from"]["data"]) == b"dgram-to-go"


def test_stream_intact_through_loss_duplication_and_reordering(rendezvous, our_daemons, tmp_path):
    """Python <-> Python through a relay that drops 10 %, duplicates 5 % and reorders 10 % each way."""
    rdv = rendezvous()
    relay_port, b_port = 19700, 19701
    a = our_daemons("py-lossy-a", rdv.registry, rdv.beacon, "-public")
    b = our_daemons("py-lossy-b", rdv.registry, rdv.beacon, "-public", "-listen", f"127.0.0.1:{b_port}",
                    "-advertise-endpoint", f"127.0.0.1:{relay_port}")
    relay = b.ns.spawn([sys.executable, os.path.join(os.path.dirname(__file__), "lossy_relay.py"), str(relay_port),
                        str(b_port), "0.10", "0.05", "0.10", "7"], log=tmp_path / "relay.log")
    # 16 MiB each way: ~15 s with SACK/RACK recovery and probes (it took ~110 s before them, and minutes
    # before byte-counted avoidance); PILOTMESH_LOSSY_KIB sets another size.
    size = int(os.environ.get("PILOTMESH_LOSSY_KIB", "16384")) << 10
    env = {**a.env(), "PYTHONPATH": str(OFFICIAL_DIR),
           "PILOT_LIB_PATH": str(OFFICIAL_DIR / "pilotprotocol" / "bin" / "libpilot.so")}
    proc = a.ns.run([sys.executable, PROBE, str(a.socket), str(b.socket), a.info()["address"], b.info()["address"],
                     str(size), "echo-only"], env=env, timeout=170)
    assert relay.poll() is None
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["echo_bytes"] == size and out["echo_intact"]
