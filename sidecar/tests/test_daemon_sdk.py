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
    size = 8 << 20
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
