"""Port 1001 (data exchange) and the port-7 trace echo, between the official daemon and ours.

The official pilotctl sends messages through either daemon and reads the receiver's inbox (the JSON files
under ``~/.pilot/inbox``); ``pilotctl ping --trace`` gets the official echo's timestamped reply from ours.
"""
from __future__ import annotations

import base64
import json
import struct
import subprocess

import pytest

from daemon_harness import our_daemons  # noqa: F401  (fixture)
from pilot_daemon.io.dataexchange import DataExchange
from pilot_daemon.proto import dataexchange as dx


def ok(envelope: dict) -> dict:
    assert envelope.get("status") == "ok", envelope
    return envelope["data"]


# -- codec and receiver, no network ------------------------------------------------------------------
def test_tagged_file_and_trace_frames_round_trip():
    frames = [dx.Frame(dx.TEXT, b"hi", message_id="abc-1", reply_to="x:y"),
              dx.Frame(dx.FILE, b"\x00data", filename="report.tar.gz"),
              dx.Frame(dx.JSON, b'{"k":1}')]
    wire = b"".join(f.encode() for f in frames)
    assert struct.unpack_from(">I", wire)[0] == dx.TAGGED       # ids travel in a TAGGED wrapper
    decoder = dx.FrameDecoder()
    got = decoder.feed(wire[:11]) + decoder.feed(wire[11:])
    assert got == frames
    trace = dx.parse_trace(struct.pack(">Iq", dx.TEXT, 123) + b"body")
    assert (trace.inner_type, trace.sent_at_ns, trace.payload) == (dx.TEXT, 123, b"body")


@pytest.mark.parametrize("wire, error", [
    (struct.pack(">II", dx.TEXT, (64 << 20) + 1), "frame too large"),
    (struct.pack(">IIH", dx.FILE, 8, 6) + b"../etc", "path traversal"),
    (struct.pack(">IIH", dx.TAGGED, 2, 0), "header length 0"),
    (struct.pack(">IIH", dx.TAGGED, 8, 2) + b"{}" + struct.pack(">I", dx.TAGGED), "cannot wrap"),
    (struct.pack(">IIH", dx.TAGGED, 25, 19) + b'{"message_id":"a b"}'[:19] + struct.pack(">I", 1), "JSON"),
])
def test_bad_frames_are_refused(wire, error):
    with pytest.raises(dx.DataExchangeError, match=error):
        dx.FrameDecoder().feed(wire)


def test_max_frame_env_bounds():
    assert dx.max_frame_size(None) == dx.max_frame_size("junk") == dx.max_frame_size("10") == 64 << 20
    assert dx.max_frame_size(str(1 << 20)) == 1 << 20


def test_receiver_stores_acks_and_suppresses_repeats(tmp_path):
    svc = DataExchange(str(tmp_path))
    sender = "0:0000.0000.0007"
    msg = dx.Frame(dx.TEXT, "héllo".encode(), message_id="m1")
    assert svc.handle(msg, sender) == dx.Frame(dx.TEXT, b"ACK TEXT 6 bytes").encode()
    assert svc.handle(msg, sender) == dx.Frame(dx.TEXT, b"ACK TEXT 6 bytes (duplicate)").encode()
    assert svc.handle(dx.Frame(dx.BINARY, b"\xff\x00"), sender) == dx.Frame(dx.TEXT, b"ACK BINARY 2 bytes").encode()
    files = sorted((tmp_path / ".pilot" / "inbox").iterdir())
    assert [p.name.split("-")[0] for p in files] == ["BINARY", "TEXT"]
    records = {p.name.split("-")[0]: json.loads(p.read_bytes()) for p in files}
    assert records["TEXT"]["data"] == "héllo" and records["TEXT"]["message_id"] == "m1"
    assert records["TEXT"]["from"] == sender and records["TEXT"]["data_encoding"] == "utf8"
    assert base64.b64decode(records["BINARY"]["data_b64"]) == b"\xff\x00"
    assert oct(files[0].stat().st_mode & 0o777) == "0o600"
    svc.handle(dx.Frame(dx.FILE, b"content", filename="notes.txt"), sender)
    (saved,) = (tmp_path / ".pilot" / "received").iterdir()
    assert saved.name.startswith("notes-") and saved.suffix == ".txt" and saved.read_bytes() == b"content"
    refused = dx.FrameDecoder().feed(svc.handle(dx.Frame(9, b"?"), sender))
    assert refused == [dx.Frame(dx.TEXT, b"ERR UNKNOWN(9) save failed: unsupported frame type 9")]
    (timing,) = dx.FrameDecoder().feed(svc.handle(dx.Frame(dx.TRACE, struct.pack(">Iq", dx.JSON, 5) + b"{}"),
                                                  sender))
    body = json.loads(timing.payload)
    assert timing.type == dx.JSON and body["sent_at_ns"] == 5 and body["inner_ack"] == "ACK JSON 2 bytes"
    assert body["received_at_ns"] <= body["inbox_written_at_ns"] <= body["ack_sent_at_ns"]


# -- against the official binaries -------------------------------------------------------------------
@pytest.fixture
def pair(rendezvous, official_daemons, our_daemons):
    rdv = rendezvous()
    official = official_daemons("go-dx", rdv.registry, rdv.beacon, "-public")
    ours = our_daemons("py-dx", rdv.registry, rdv.beacon, "-public")
    return official, ours


@pytest.mark.official
@pytest.mark.timeout(90)
def test_send_message_both_ways_and_inbox(pair):
    official, ours = pair
    for sender, receiver, kind, text in ((official, ours, "text", "to-python <&> ü"),
                                         (official, ours, "json", '{"n": 1}'),
                                         (ours, official, "text", "to-go")):
        sent = ok(sender.ctl("send-message", receiver.info()["address"], "--data", text, "--type", kind))
        assert sent["ack"] == f"ACK {kind.upper()} {len(text.encode())} bytes", sent
        inbox = ok(receiver.ctl("inbox", "--latest"))
        got = json.dumps(inbox)
        assert sent["message_id"] in got and json.dumps(text)[1:-1] in got, inbox
    listing = ok(ours.ctl("inbox"))
    assert listing["total"] == 2 and {m["type"] for m in listing["messages"]} == {"TEXT", "JSON"}
    assert all(m["from"] == official.info()["address"] for m in listing["messages"])


@pytest.mark.official
@pytest.mark.timeout(90)
def test_no_dataexchange_flag_closes_port_1001(rendezvous, official_daemons, our_daemons):
    rdv = rendezvous()
    official = official_daemons("go-nodx", rdv.registry, rdv.beacon, "-public")
    ours = our_daemons("py-nodx", rdv.registry, rdv.beacon, "-public", "-no-dataexchange")
    sent = official.ctl("send-message", ours.info()["address"], "--data", "x", "--timeout", "8s", timeout=20)
    assert sent.get("status") != "ok", sent
    assert not (ours.home / ".pilot" / "inbox").exists()


@pytest.mark.official
@pytest.mark.timeout(90)
def test_ping_trace_gets_server_timestamps_from_our_echo(pair):
    official, ours = pair
    proc = official.ns.run([str(official.bin_dir / "pilotctl"), "ping", ours.info()["address"], "--count", "2",
                            "--trace"], env=official.env())
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("seq=")]
    assert len(lines) == 2 and all("bytes=20" in line and "→srv=" in line and "←srv=" in line for line in lines), \
        proc.stdout
    results = ok(official.ctl("ping", ours.info()["address"], "--count", "1", "--trace"))["results"]
    assert results[0]["bytes"] == 20 and results[0]["to_server_ms"] >= 0 and results[0]["from_server_ms"] >= 0
