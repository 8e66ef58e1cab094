"""Port 1002 (event stream) between the official daemon and ours, driven by the official pilotctl."""
from __future__ import annotations

import json
import subprocess
import time

import pytest

from daemon_harness import our_daemons  # noqa: F401  (fixture)
from pilot_daemon.proto.eventstream import Event, EventDecoder, EventError
from pilot_harness import wait_for

pytestmark = [pytest.mark.official, pytest.mark.timeout(120)]


def ok(envelope: dict) -> dict:
    assert envelope.get("status") == "ok", envelope
    return envelope["data"]


def test_event_codec_round_trip_and_limits():
    frames = Event("news", b"hello").encode() + Event("*").encode()
    decoder = EventDecoder()
    assert decoder.feed(frames[:5]) == [] and decoder.feed(frames[5:]) == [Event("news", b"hello"), Event("*")]
    with pytest.raises(EventError, match="topic too long"):
        EventDecoder().feed(b"\x04\x01")
    with pytest.raises(EventError, match="UTF-8"):
        EventDecoder().feed(b"\x00\x01\xff\x00\x00\x00\x00")


def trust(asker, granter) -> None:
    assert ok(asker.ctl("handshake", str(granter.info()["node_id"]), "events"))["status"] in ("sent", "in_flight")
    wait_for(lambda: asker.info()["node_id"] in [t["node_id"] for t in ok(granter.ctl("trust"))["trusted"]],
             30, "auto-approval", interval=0.5)


@pytest.mark.parametrize("broker_kind", ["ours", "official"])
def test_subscribe_and_publish_through_either_broker(rendezvous, official_daemons, our_daemons, broker_kind):
    rdv = rendezvous()
    official = official_daemons("go-ev", rdv.registry, rdv.beacon, "-public", "-trust-auto-approve")
    ours = our_daemons("py-ev", rdv.registry, rdv.beacon, "-public", "-trust-auto-approve")
    broker, client = (ours, official) if broker_kind == "ours" else (official, ours)
    trust(client, broker)
    address = broker.info()["address"]
    sub = subprocess.Popen(client.ns.argv([str(client.bin_dir / "pilotctl"), "--json", "subscribe", address, "news",
                                           "--count", "1", "--timeout", "30s"]),
                           env=client.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    published = client.ctl("publish", address, "news", "--data", f"hello-from-{broker_kind}-broker")
    assert published.get("status") == "ok", published
    out, err = sub.communicate(timeout=40)
    got = json.loads(out or err)
    assert got["status"] == "ok", got
    assert f"hello-from-{broker_kind}-broker" in json.dumps(got["data"]), got
