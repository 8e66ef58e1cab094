"""Private nodes (the default): trust handshakes through the registry relay, between our daemons and with
the official one, driven by the official pilotctl; then traffic flows. Also Python <-> Python streams."""
from __future__ import annotations

import pytest

from pilot_harness import wait_for
from daemon_harness import our_daemons  # noqa: F401  (fixture)

pytestmark = [pytest.mark.official, pytest.mark.timeout(150)]


def ok(envelope: dict) -> dict:
    assert envelope.get("status") == "ok", envelope
    return envelope["data"]


def handshake(a, b) -> None:
    """a asks b for trust; b sees it pending and approves; a can ping b."""
    id_a, id_b, addr_b = a.info()["node_id"], b.info()["node_id"], b.info()["address"]
    assert ok(a.ctl("handshake", str(id_b), "pilotmesh test"))["status"] in ("sent", "in_flight")
    pending = wait_for(lambda: ok(b.ctl("pending"))["pending"], 30, "the request to reach the peer", interval=0.5)
    assert [p["node_id"] for p in pending] == [id_a]
    assert ok(b.ctl("approve", str(id_a)))["status"] == "approved"
    assert id_a in [t["node_id"] for t in ok(b.ctl("trust"))["trusted"]]
    ping = wait_for(lambda: (r := a.ctl("ping", addr_b, "--count", "2", timeout=60)).get("status") == "ok"
                    and not r["data"]["timeout"] and r, 40, "ping after approval", interval=1)
    assert len([r for r in ping["data"]["results"] if "rtt_ms" in r]) == 2


def test_private_python_nodes_trust_each_other_then_stream(rendezvous, our_daemons):
    rdv = rendezvous()
    a = our_daemons("py-a", rdv.registry, rdv.beacon)
    b = our_daemons("py-b", rdv.registry, rdv.beacon)
    handshake(a, b)
    # neither may resolve the other yet (private), so, as between official daemons, the request went through the
    # registry's relay: the registry refused the resolve and the dial to port 444 failed at once
    relayed = [line for line in rdv.log.read_text().splitlines() if '"request_handshake"' in line]
    assert len(relayed) == 1 and '"ok": true' in relayed[0], relayed
    bench = ok(a.ctl("bench", b.info()["address"], "4", timeout=120))
    assert bench["complete"] and bench["recv_bytes"] == 4 << 20, bench
    print(f"\nFIGURES python->python bench 4 MiB: {bench}")


def test_private_official_asks_python_and_python_asks_official(rendezvous, our_daemons, official_daemons):
    rdv = rendezvous()
    official = official_daemons("go-a", rdv.registry, rdv.beacon)
    ours = our_daemons("py-b", rdv.registry, rdv.beacon)
    handshake(official, ours)
    official2 = official_daemons("go-c", rdv.registry, rdv.beacon)
    handshake(ours, official2)


def test_auto_approve_and_untrusted_refusal(rendezvous, our_daemons, official_daemons):
    rdv = rendezvous()
    official = official_daemons("go-a", rdv.registry, rdv.beacon)
    ours = our_daemons("py-auto", rdv.registry, rdv.beacon, "-trust-auto-approve")
    addr = ours.info()["address"]
    refused = official.ctl("ping", addr, "--count", "1", "--timeout", "3s", timeout=30)
    assert refused.get("status") != "ok" or refused["data"]["timeout"] or \
        not [r for r in refused["data"]["results"] if "rtt_ms" in r]
    assert ok(official.ctl("handshake", str(ours.info()["node_id"]), "auto please"))["status"] in ("sent", "in_flight")
    wait_for(lambda: official.info()["node_id"] in [t["node_id"] for t in ok(ours.ctl("trust"))["trusted"]],
             30, "auto-approval", interval=0.5)
    ping = wait_for(lambda: (r := official.ctl("ping", addr, "--count", "1", timeout=60)).get("status") == "ok"
                    and not r["data"]["timeout"] and r, 40, "ping after auto-approval", interval=1)
    assert ping["data"]["results"][0]["rtt_ms"] > 0
