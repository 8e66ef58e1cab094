"""Port 1001 (data exchange) and the port-7 trace echo, between the official daemon and ours.

The official pilotctl sends messages through either daemon and reads the receiver's inbox (the JSON files
under ``~/.pilot/inbox``); ``pilotctl ping --trace`` gets the official echo's timestamped reply from ours.
``pilotctl send-file`` streams files (FILESTREAM, whatever their size) into ours and into an official
receiver side by side: the same JSON reply, the same bytes on disk, the same refusals when full.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import subprocess
import time

import pytest

from daemon_harness import our_daemons  # noqa: F401  (fixture)
from pilot_harness import missing
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


# -- send-file (FILESTREAM) and the storage caps, official receiver and ours side by side --------------------
@pytest.fixture
def trio(rendezvous, official_daemons, our_daemons):
    """(official sender, official receiver, our receiver)"""
    rdv = rendezvous()
    sender = official_daemons("go-tx", rdv.registry, rdv.beacon, "-public")
    return sender, official_daemons("go-rx", rdv.registry, rdv.beacon, "-public"), \
        our_daemons("py-rx", rdv.registry, rdv.beacon, "-public")


def same_shape(envelope: dict, receiver) -> dict:
    """The reply without what differs between runs and receivers: timings, the receiver's address, ids."""
    text = json.dumps(envelope, sort_keys=True).replace(receiver.info()["address"], "ADDR")
    text = re.sub(r'"(elapsed_ms|throughput_mbps)": [0-9.e+-]+', r'"\1": 0', text)
    return json.loads(re.sub(r'"message_id": "[0-9a-f]+"', '"message_id": "ID"', text))


def received(d, pattern: str = "*") -> list[str]:
    """The receiver's ``~/.pilot/received`` (recursively), with the time in each name blanked."""
    root = d.home / ".pilot" / "received"
    return sorted(re.sub(r"-\d{8}-\d{6}\.\d{3}-", "-T-", str(p.relative_to(root))) for p in root.rglob(pattern))


@pytest.mark.official
@pytest.mark.timeout(90)
def test_send_file_streams_into_ours_as_into_the_official(trio, tmp_path):
    sender, official, ours = trio
    data = os.urandom((2 << 20) + 12345)                  # 43 chunks of 48 KiB and a short one
    path = tmp_path / "payload.tar.gz"
    path.write_bytes(data)
    reply = {}
    for who, d in (("official", official), ("ours", ours)):
        reply[who] = same_shape(ok(sender.ctl("send-file", d.info()["address"], str(path))), d)
        (saved,) = (d.home / ".pilot" / "received").glob("payload.tar-*.gz")
        assert saved.read_bytes() == data
        assert received(d) == [".partial", "payload.tar-T-000001.gz"]
    assert reply["ours"]["transport"] == "filestream" and reply["ours"]["verified"] is True
    assert reply["ours"] == reply["official"], reply
    assert '"msg": "file saved (stream)"' in ours.log.read_text()

    prefix = hashlib.sha256(data).digest()[:16].hex()      # a retry finds its .partial and resumes
    for who, d in (("official", official), ("ours", ours)):
        (d.home / ".pilot" / "received" / ".partial" / prefix).write_bytes(data[:1_000_000])
        reply[who] = same_shape(ok(sender.ctl("send-file", d.info()["address"], str(path))), d)
        assert received(d, "*-000002.gz") == ["payload.tar-T-000002.gz"]
    assert reply["ours"]["bytes_resumed"] == 1_000_000 and reply["ours"] == reply["official"], reply

    back = ok(ours.ctl("send-file", official.info()["address"], str(path)))   # and out through ours
    assert back["transport"] == "filestream" and back["verified"] is True and back["bytes_resumed"] == 0


def sparse(path, size: int, age: float = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)
    if age:
        os.utime(path, (time.time() - age,) * 2)


def chattr(flag: str, path) -> None:
    proc = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if proc.returncode:
        missing(f"an undeletable file needs chattr on this filesystem: {proc.stderr.strip()}")


@pytest.mark.official
@pytest.mark.timeout(90)
def test_full_received_dir_and_inbox_are_refused_as_the_official_refuses(trio, tmp_path):
    sender, official, ours = trio
    receivers = (("official", official), ("ours", ours))
    path = tmp_path / "report.bin"
    path.write_bytes(os.urandom(120_000))
    replies: dict = {}
    for who, d in receivers:
        sparse(d.home / ".pilot" / "received" / "big.bin", (2 << 30) - 100_000)    # 2 GiB quota, nearly used
        replies[who] = [sender.ctl("send-file", d.info()["address"], str(path), *extra)
                        for extra in ((), ("--no-stream",))]
        assert received(d) == [".partial", "big.bin"]
    assert [r["message"] for r in replies["ours"]] == [
        "streamed send-file failed: receiver rejected file: receiver disk quota exceeded: need 120000, 100000 of "
        "2147483648 available",
        "receiver rejected file: ERR FILE save failed: received-files quota exceeded: 2147383648 + 120000 > 2147483648"]
    assert [same_shape(r, ours) for r in replies["ours"]] == [same_shape(r, official) for r in replies["official"]]

    sizes = {}
    for who, d in receivers:                   # the inbox holds 256 MiB that cannot be evicted
        stuck = d.home / ".pilot" / "inbox" / "stuck.json"
        sparse(stuck, 256 << 20)
        chattr("+i", stuck)
        try:
            reply = sender.ctl("send-message", d.info()["address"], "--data", "hello")
        finally:
            chattr("-i", stuck)
        stuck.unlink()
        found = re.fullmatch(r"ERR TEXT save failed: inbox byte budget exceeded: 268435456 \+ (\d+) > 268435456",
                             reply["results"][0]["ack"])
        assert found and reply["status"] == "error", reply
        sizes[who] = int(found.group(1))       # the message's JSON: its received_at has 1-9 fraction digits
        replies[who] = same_shape(json.loads(json.dumps(reply).replace(found.group(1), "N")), d)
        assert not list((d.home / ".pilot" / "inbox").iterdir())
    assert replies["ours"] == replies["official"] and abs(sizes["ours"] - sizes["official"]) <= 8, (replies, sizes)

    listings = []
    for who, d in receivers:                   # over the cap: the oldest go, down to 90 %
        for i, size in enumerate((120 << 20, 100 << 20, 40 << 20, 10)):
            sparse(d.home / ".pilot" / "inbox" / f"old{i}.json", size, age=1000 - i)
        assert ok(sender.ctl("send-message", d.info()["address"], "--data", "x" * 100))["ack"] == "ACK TEXT 100 bytes"
        listings.append(sorted(re.sub(r"-\d{8}-\d{6}\.\d{3}-", "-T-", p.name)
                               for p in (d.home / ".pilot" / "inbox").iterdir()))
    assert listings[0] == listings[1] == ["TEXT-T-000002.json", "old1.json", "old2.json", "old3.json"]
