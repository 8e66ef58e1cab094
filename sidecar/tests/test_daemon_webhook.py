"""Webhooks next to the official 1.18 daemon, in a private netns: both daemons POST to receivers in the namespace
(``webhook_sink``) while an official peer drives the same steps against each; the receivers get the same events in
the same order with the same JSON (ids, ports, times masked) and valid signatures. Receivers that fail, hang or are
down never hold either daemon up, and show in the info counters. set-webhook answers byte for byte as upstream.

Official quirks are masked, all measured: ``tunnel.established`` sometimes arrives without ``peer_node_id``;
``conn.fin`` comes twice when the official data-exchange service closes a connection the peer closed first; and
after ``untrust`` the official daemon drops the peer's tunnel while its revoke message is still being closed, so
whether a new tunnel and that connection's ``conn.fin`` follow (and ``known_peers`` at shutdown) is a race there:
that step compares the ``trust.*`` events.
"""
from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

import pytest

from daemon_harness import RawIPC, our_daemons  # noqa: F401  (fixture)
from pilot_daemon.client import Client
from pilot_daemon.proto import ipc
from pilot_daemon.proto import webhook as wh
from pilot_daemon.proto.addr import Addr
from pilot_harness import wait_for

pytestmark = [pytest.mark.official, pytest.mark.timeout(120)]

SECRET = "wh-secret"
SINK = "127.0.0.1:8088"
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


class Sink:
    def __init__(self, log: Path) -> None:
        self.log = log

    def url(self, path: str) -> str:
        return f"http://{SINK}/{path}"

    def requests(self, path: str) -> list[dict]:
        rows = [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []
        return [r for r in rows if r["path"] == "/" + path]

    def events(self, path: str) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests(path)]


@pytest.fixture
def sink(netns, tmp_path):
    out = tmp_path / "sink.out"
    proc = netns.spawn([sys.executable, str(Path(__file__).with_name("webhook_sink.py")), SINK,
                        str(tmp_path / "sink.jsonl")], log=out)
    wait_for(lambda: proc.poll() is not None or b"listening" in out.read_bytes(), 10, "the webhook receiver")
    assert proc.poll() is None, out.read_text()
    return Sink(tmp_path / "sink.jsonl")


def ok(envelope: dict) -> dict:
    assert envelope.get("status") == "ok", envelope
    return envelope["data"]


def node_of(d) -> int:
    return wait_for(lambda: d.info().get("node_id"), 20, "registration")


def settle(sink: Sink, paths: list[str], before: dict[str, int], quiet: float = 0.8, timeout: float = 15) -> None:
    """Wait until every path got something new and then nothing for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        counts = [len(sink.requests(p)) for p in paths]
        if counts != last:
            last, since = counts, time.monotonic()
        elif all(c > before[p] for c, p in zip(counts, paths)) and time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)
    raise AssertionError(f"webhook events did not settle: {dict(zip(paths, last or []))} (before {before})")


def masked(events: list[dict], names: dict[int, str]) -> list[tuple]:
    """(event, data) with node ids and addresses named by role, connection ids, ephemeral ports and figures
    that differ between runs replaced by their type; the two official quirks (see the module doc) removed."""
    out, fins = [], set()
    addresses = {str(Addr(0, node)): role for node, role in names.items()}
    for ev in events:
        data = dict(ev.get("data") or {})
        if ev["event"] == "tunnel.established":
            data.pop("peer_node_id", None)
        if ev["event"] == "conn.fin":
            if data["conn_id"] in fins:
                continue
            fins.add(data["conn_id"])
        for key, value in list(data.items()):
            if key in ("peer_node_id", "node_id") and value in names:
                data[key] = names[value]
            elif isinstance(value, str) and value in addresses:
                data[key] = addresses[value]
            elif isinstance(value, int) and not isinstance(value, bool) and (
                    key in ("conn_id", "uptime_seconds", "known_peers") or key.endswith("port") and value >= 49152):
                data[key] = "int"
            elif key in ("endpoint", "message_id", "path"):
                data[key] = "str"
            elif key == "filename":
                data[key] = re.sub(r"\d", "0", value)
        out.append((ev["event"], data))
    return out


def check_envelopes(sink: Sink, path: str, node: int, secret: str) -> None:
    rows = sink.requests(path)
    assert rows, path
    for i, row in enumerate(rows):
        doc = json.loads(row["body"])
        assert list(doc) == ["event_id", "event", "node_id", "timestamp", "data"], doc
        assert doc["event_id"] == i + 1 and doc["node_id"] == node and STAMP.fullmatch(doc["timestamp"]), doc
        assert row["method"] == "POST" and row["headers"]["Content-Type"] == "application/json"
        assert row["headers"]["User-Agent"] == "Go-http-client/1.1"
        assert row["headers"]["X-Pilot-Signature-256"] == wh.signature(secret, row["body"].encode())


def test_the_same_steps_give_the_same_events_as_the_official_daemon(rendezvous, official_daemons, our_daemons, sink):
    rdv = rendezvous()
    hook = ("-webhook-secret", SECRET)
    start = {"go": official_daemons, "py": our_daemons}
    d = {k: start[k](f"wh-{k}", rdv.registry, rdv.beacon, "-public", "-webhook", sink.url(f"ok/{k}"), *hook)
         for k in ("go", "py")}
    x = official_daemons("wh-x", rdv.registry, rdv.beacon, "-public")
    node = {k: node_of(v) for k, v in d.items()}
    xn = node_of(x)
    addr = {k: str(Addr(0, n)) for k, n in node.items()}
    steps: list[tuple[str, dict]] = []

    def step(name: str, action, before: dict[str, int] | None = None) -> None:
        before = before or {k: len(sink.requests(f"ok/{k}")) for k in d}
        for k in d:
            action(k)
        settle(sink, [f"ok/{k}" for k in d], {f"ok/{k}": n for k, n in before.items()})
        steps.append((name, before))

    step("registered", lambda k: None, before={"go": 0, "py": 0})
    step("handshake", lambda k: ok(x.ctl("handshake", str(node[k]), "let me in")))
    step("approve", lambda k: ok(d[k].ctl("approve", str(xn))))
    step("message", lambda k: ok(x.ctl("send-message", addr[k], "--data", "hello")))
    step("ping", lambda k: ok(x.ctl("ping", addr[k], "--count", "1")))
    step("datagram", lambda k: ok(x.ctl("dgram", addr[k], "5000", "--data", "dg")))
    payload = x.home / "report.txt"
    payload.write_text("file body\n")
    step("file", lambda k: ok(x.ctl("send-file", addr[k], str(payload))))
    step("sent", lambda k: ok(d[k].ctl("send-message", str(Addr(0, xn)), "--data", "back")))
    step("refused", lambda k: d[k].ctl("connect", str(Addr(0, xn)), "5555", "--message", "x", "--timeout", "3s"))
    step("untrust", lambda k: ok(d[k].ctl("untrust", str(xn))))
    step("stop", lambda k: d[k].ns.stop(d[k].proc, timeout=15))

    for k in d:
        check_envelopes(sink, f"ok/{k}", node[k], SECRET)
    events = {k: sink.events(f"ok/{k}") for k in d}
    bounds = [before for _, before in steps[1:]] + [{k: len(events[k]) for k in d}]
    for (name, before), after in zip(steps, bounds):
        got = {k: masked(events[k][before[k]:after[k]], {node[k]: "self", xn: "x"}) for k in d}
        if name == "untrust":
            got = {k: [e for e in v if e[0].startswith("trust.")] for k, v in got.items()}
        assert got["py"] == got["go"], f"step {name}:\n ours {got['py']}\n official {got['go']}"
    names = [e["event"] for e in events["py"]]
    for expected in ("node.registered", "agent.registered", "tunnel.established", "conn.syn_received",
                     "conn.established", "handshake.received", "handshake.pending", "handshake.approved",
                     "trust.changed", "message.received", "conn.fin", "data.datagram", "file.received",
                     "file.delivered", "conn.rst", "trust.revoked",
                     "daemon.shutting_down"):
        assert expected in names, (expected, names)


def test_failing_slow_and_absent_receivers_hold_up_neither_daemon(rendezvous, official_daemons, our_daemons, sink):
    rdv = rendezvous()
    targets = {"go-500": official_daemons("wh-go500", rdv.registry, rdv.beacon, "-public",
                                          "-webhook", sink.url("status/500/go")),
               "py-500": our_daemons("wh-py500", rdv.registry, rdv.beacon, "-public",
                                     "-webhook", sink.url("status/500/py")),
               "py-slow": our_daemons("wh-pyslow", rdv.registry, rdv.beacon, "-public",
                                      "-webhook", sink.url("sleep/30/py")),
               "py-down": our_daemons("wh-pydown", rdv.registry, rdv.beacon, "-public",
                                      "-webhook", "http://127.0.0.1:8099/nothing-listens")}
    x = official_daemons("wh-x", rdv.registry, rdv.beacon, "-public")
    addr = {k: str(Addr(0, node_of(v))) for k, v in targets.items()}

    def pings_are_fine() -> None:
        for k in targets:
            t = time.monotonic()
            ping = ok(x.ctl("ping", addr[k], "--count", "2", timeout=30))
            assert not ping["timeout"] and all(r["rtt_ms"] < 1000 for r in ping["results"]), (k, ping)
            assert time.monotonic() - t < 10, k
            t = time.monotonic()
            assert targets[k].info()["node_id"] and time.monotonic() - t < 2, k
    pings_are_fine()
    with Client(str(x.socket)) as c:
        # a burst of datagrams (one data.datagram event each) for the receiver that never answers: the queue
        # (1024) overflows at once and the rest is dropped
        dst = Addr.parse(addr["py-slow"])
        for i in range(1400):
            c.sock.sendall(ipc.SendTo(dst, 5000, b"%d" % i).encode())
        wait_for(lambda: targets["py-slow"].info()["webhook_queue_dropped"] > 0, 15, "dropped events to be counted")
        # 500 and "down": each event is tried 3 times (1 s, then 2 s apart); 5 events given up open the circuit,
        # later events are skipped (a datagram a second makes them)
        failing = ("go-500", "py-500", "py-down")

        def skipping() -> bool:
            for k in failing:
                c.sock.sendall(ipc.SendTo(Addr.parse(addr[k]), 5000, b"x").encode())
            return all(targets[k].info()["webhook_circuit_skips"] > 0 for k in failing)
        wait_for(skipping, 30, "the circuits to open", interval=1)
    pings_are_fine()
    for k in failing:
        health = ok(targets[k].ctl("health"))
        assert health["webhook_circuit_skips"] > 0 and health["webhook_queue_dropped"] == 0, (k, health)
    assert ok(targets["py-slow"].ctl("health"))["webhook_queue_dropped"] > 0
    tries = {k: [json.loads(r["body"])["event_id"] for r in sink.requests(f"status/500/{k}")] for k in ("go", "py")}
    for k in tries:     # the first events, each tried three times, in order
        assert tries[k][:6] == [1, 1, 1, 2, 2, 2], (k, tries[k])
    t = time.monotonic()
    stops = [threading.Thread(target=d.ns.stop, args=(d.proc, 20)) for d in targets.values()]
    for thread in stops:
        thread.start()
    for thread in stops:
        thread.join()
    assert time.monotonic() - t < 15        # a stop gives the webhook at most 5 s
    assert all(d.proc.returncode == 0 for k, d in targets.items() if k.startswith("py")), targets


def test_set_webhook_answers_checks_and_persists_as_the_official_daemon(rendezvous, official_daemons, our_daemons,
                                                                       sink):
    rdv = rendezvous()
    start = {"go": official_daemons, "py": our_daemons}
    d = {k: start[k](f"ws-{k}", rdv.registry, rdv.beacon, "-public", "-webhook-secret", SECRET) for k in start}
    node = {k: node_of(v) for k, v in d.items()}
    urls = [b"ftp://x/", b"http://169.254.169.254/latest", b"http://metadata.google.internal/", b"not a url",
            b"http://:80/", b"http://[fe80::1%25eth0]:8/", b"http://[::1/", b"http://h:port/"]
    for url in urls:
        replies = {}
        for k in d:
            c = RawIPC(d[k].socket)
            replies[k] = c.request(ipc.Cmd.SET_WEBHOOK, url)
            c.close()
        assert replies["py"] == replies["go"], (url, replies)
    for k in d:
        c = RawIPC(d[k].socket)
        url = sink.url(f"ok/set-{k}").encode()
        reply = ipc.JsonReply(ipc.Cmd.SET_WEBHOOK_OK, {"webhook": url.decode()}).encode()
        assert c.request(ipc.Cmd.SET_WEBHOOK, url) == reply
        c.close()
        assert (d[k].home / ".pilot" / "webhook_url").read_text() == url.decode()
    # the URL set at run time survives a restart without -webhook; events are signed with -webhook-secret
    for k in d:
        d[k].ns.stop(d[k].proc, timeout=15)
        d[k] = start[k](f"ws-{k}", rdv.registry, rdv.beacon, "-public", "-webhook-secret", SECRET)
    for k in d:
        wait_for(lambda: [e["event"] for e in sink.events(f"ok/set-{k}")][-2:] == ["node.registered",
                                                                                  "agent.registered"], 15,
                 f"{k}: events at the saved URL")
        evs = sink.events(f"ok/set-{k}")
        assert [(e["event"], e["event_id"]) for e in evs] == [("daemon.shutting_down", 1), ("node.registered", 1),
                                                              ("agent.registered", 2)], (k, evs)
        assert all(e["node_id"] == node[k] for e in evs)
        assert all(r["headers"]["X-Pilot-Signature-256"] == wh.signature(SECRET, r["body"].encode())
                   for r in sink.requests(f"ok/set-{k}"))
    replies = {}
    for k in d:       # "" turns delivery off and forgets the saved URL
        c = RawIPC(d[k].socket)
        replies[k] = c.request(ipc.Cmd.SET_WEBHOOK, b"")
        c.close()
        assert not (d[k].home / ".pilot" / "webhook_url").exists()
    assert replies["py"] == replies["go"] == ipc.JsonReply(ipc.Cmd.SET_WEBHOOK_OK, {"webhook": ""}).encode()
    for k in d:
        d[k].ns.stop(d[k].proc, timeout=15)
    time.sleep(0.5)
    assert [e["event"] for e in sink.events(f"ok/set-{k}")][-1] == "agent.registered"   # nothing after clearing


def test_an_idle_connection_is_closed_and_reported_as_the_official_daemon_does(rendezvous, official_daemons,
                                                                                our_daemons, sink):
    """-idle-timeout shorter than the keepalive's dead-peer verdict: the idle side closes the connection and
    emits conn.idle_timeout (the official daemon finds it on its idle sweep, so allow it a while)."""
    rdv = rendezvous()
    start = {"go": official_daemons, "py": our_daemons}
    d = {k: start[k](f"idle-{k}", rdv.registry, rdv.beacon, "-public", "-idle-timeout", "3s",
                     "-webhook", sink.url(f"ok/{k}")) for k in ("go", "py")}
    x = official_daemons("idle-x", rdv.registry, rdv.beacon, "-public")
    node = {k: node_of(v) for k, v in d.items()}
    xn = node_of(x)
    with Client(str(x.socket)) as c:
        for k in d:
            c.dial(Addr(0, node[k]), 7)          # then nothing: the echo service never speaks first
        t0 = time.monotonic()
        wait_for(lambda: any(e["event"] == "conn.idle_timeout" for e in sink.events("ok/py")), 10,
                 "our conn.idle_timeout (-idle-timeout 3s)", interval=0.2)
        ours_after = time.monotonic() - t0
        wait_for(lambda: any(e["event"] == "conn.idle_timeout" for e in sink.events("ok/go")), 45,
                 "the official conn.idle_timeout (its idle sweep runs every few seconds)", interval=0.5)
    assert 2.5 < ours_after < 6, ours_after
    got = {k: [masked([e], {node[k]: "self", xn: "x"})[0] for e in sink.events(f"ok/{k}")
               if e["event"] == "conn.idle_timeout"] for k in d}
    assert got["py"] == got["go"] == [("conn.idle_timeout", {"conn_id": "int", "local_port": 7, "remote_addr": "x",
                                                             "remote_port": "int"})], got


def test_rotate_key_is_announced_with_the_new_key(rendezvous, official_daemons, our_daemons, sink):
    rdv = rendezvous()
    got = {}
    for kind, start in (("go", official_daemons), ("py", our_daemons)):
        d = start(f"rot-{kind}", rdv.registry, rdv.beacon, "-public", "-webhook", sink.url(f"ok/{kind}"))
        node = node_of(d)
        before = len(sink.events(f"ok/{kind}"))
        new_key = ok(d.ctl("rotate-key"))["public_key"]    # (the official `info` goes on showing the old key)
        wait_for(lambda: any(e["event"] == "key.rotated" for e in sink.events(f"ok/{kind}")[before:]), 10,
                 f"{kind}: key.rotated")
        [event] = [e for e in sink.events(f"ok/{kind}")[before:] if e["event"] == "key.rotated"]
        assert event["data"] == {"node_id": node, "public_key": new_key}, event
        got[kind] = sorted(event["data"])
    assert got["py"] == got["go"]
