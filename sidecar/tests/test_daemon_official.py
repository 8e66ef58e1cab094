"""Our pilot-daemon next to the official 1.18 one, through our pilot-rendezvous, in a private netns:
the official pilotctl sees the same JSON shapes, and datagrams cross between the two daemons both ways."""
from __future__ import annotations

import json
import struct
import subprocess
import time

import pytest

from pilot_harness import wait_for
from daemon_harness import RawIPC, our_daemons  # noqa: F401  (fixture)
from pilot_daemon.proto import ipc
from pilot_daemon.proto.addr import Addr

pytestmark = [pytest.mark.official, pytest.mark.timeout(120)]


def shape(value):
    """Keys and JSON types, recursively (numbers are one type: Go prints 5.0 as 5)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    return "number" if isinstance(value, (int, float)) else type(value).__name__


def ok(envelope: dict) -> dict:
    assert envelope.get("status") == "ok", envelope
    return envelope["data"]


def registered(d) -> dict:
    return wait_for(lambda: (i := d.info()).get("node_id") and i, 15, "registration")


@pytest.fixture
def pair(rendezvous, official_daemons, our_daemons):
    rdv = rendezvous()
    official = official_daemons("node-off", rdv.registry, rdv.beacon, "-public")
    ours = our_daemons("node-ours", rdv.registry, rdv.beacon, "-public")
    return official, ours


def test_info_and_health_have_the_official_shapes(pair):
    official, ours = pair
    info_off, info_ours = registered(official), registered(ours)
    # one documented addition: transport_path (the path in use: udp socket or compat WebSocket and proxy)
    assert info_ours.pop("transport_path").startswith("udp ")
    assert shape(info_ours) == shape(info_off)
    assert info_ours["hostname"] == "node-ours" and info_ours["address"] == str(Addr(0, info_ours["node_id"]))
    assert info_ours["features"] == info_off["features"] and info_ours["transport"] == "udp"
    assert shape(ok(ours.ctl("health"))) == shape(ok(official.ctl("health")))
    for verb in ("pending", "trust", "peers"):
        assert shape(ok(ours.ctl(verb))) == shape(ok(official.ctl(verb))), verb
    # the official pilotctl's own registry lookups agree with what our daemon registered
    looked = ok(official.ctl("lookup", str(info_ours["node_id"])))
    assert looked["public_key"] == info_ours["public_key"]
    assert ok(official.ctl("find", "node-ours"))["node_id"] == info_ours["node_id"]


def test_datagrams_cross_both_ways_and_peer_rows_match(pair):
    official, ours = pair
    info_off, info_ours = registered(official), registered(ours)

    # official -> ours: every IPC client of ours gets the RecvFrom push
    listener = RawIPC(ours.socket)
    sent = official.ctl("dgram", info_ours["address"], "5001", "--data", "to-python")
    assert sent.get("status") == "ok", sent
    frame = listener.read_frame()
    got = ipc.decode_reply(ipc.Frame(frame[4], frame[5:]))
    assert isinstance(got, ipc.RecvFrom)
    assert (got.src.node, got.dst_port, got.data) == (info_off["node_id"], 5001, b"to-python")

    # ours -> official: the official `pilotctl listen` receives what we send, by SendToConfirm and by pilotctl dgram
    listen = subprocess.Popen(official.ns.argv([str(official.bin_dir / "pilotctl"), "--json", "listen", "5002",
                                                "--count", "2", "--timeout", "20s"]),
                              env=official.env(), stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)   # `listen` only connects and filters the RecvFrom pushes: nothing to poll for
    dst = Addr(0, info_off["node_id"]).to_bytes() + struct.pack(">H", 5002)
    assert listener.request(ipc.Cmd.SEND_TO_CONFIRM, dst + b"from-python-1") == ipc.EmptyReply(ipc.Cmd.SEND_TO_OK).encode()
    assert ours.ctl("dgram", info_off["address"], "5002", "--data", "from-python-2").get("status") == "ok"
    out = json.loads(listen.communicate(timeout=30)[0])
    assert sorted(m["data"] for m in out["data"]["messages"]) == ["from-python-1", "from-python-2"]

    rows_off = ok(official.ctl("info"))["peer_list"]
    rows_ours = ok(ours.ctl("info"))["peer_list"]
    assert rows_ours and shape(rows_ours) == shape(rows_off)
    peer = {r["node_id"]: r for r in rows_ours}[info_off["node_id"]]
    assert peer["encrypted"] and peer["authenticated"] and not peer["relay"]
    listener.close()


def test_ping_send_recv_and_bench_both_ways(pair):
    official, ours = pair
    info_off, info_ours = registered(official), registered(ours)
    for src, dst in ((official, info_ours), (ours, info_off)):
        ping = ok(src.ctl("ping", dst["address"], "--count", "3", timeout=60))
        assert not ping["timeout"] and [r["seq"] for r in ping["results"] if "rtt_ms" in r] == [0, 1, 2], ping

    for receiver, sender, target in ((ours, official, info_ours), (official, ours, info_off)):
        recv = subprocess.Popen(receiver.ns.argv([str(receiver.bin_dir / "pilotctl"), "--json", "recv", "5000",
                                                  "--count", "1", "--timeout", "20s"]),
                                env=receiver.env(), stdout=subprocess.PIPE, text=True)
        time.sleep(0.7)
        sent = sender.ctl("send", target["address"], "5000", "--data", "hello-stream", "--timeout", "2s")
        assert sent.get("status") == "ok" or sent.get("code") == "timeout", sent
        got = json.loads(recv.communicate(timeout=30)[0])
        assert [m["data"] for m in got["data"]["messages"]] == ["hello-stream"], got

    for src, dst in ((official, info_ours), (ours, info_off)):
        bench = ok(src.ctl("bench", dst["address"], "1", timeout=120))
        assert bench["complete"] and bench["recv_bytes"] == 1 << 20, bench
    conns = ok(ours.ctl("info"))["conn_list"]
    rows_off = ok(official.ctl("info"))["conn_list"]
    if conns and rows_off:
        assert shape(conns[0]) == shape(rows_off[0])


def test_our_daemon_rides_out_a_rendezvous_restart(rendezvous, official_daemons, our_daemons):
    rdv = rendezvous()
    official = official_daemons("node-off", rdv.registry, rdv.beacon, "-public")
    ours = our_daemons("node-ours", rdv.registry, rdv.beacon, "-public")
    before = registered(ours)
    rdv.restart()   # same database: same node ids; our registry connection breaks and is re-made
    assert ok(ours.ctl("set-hostname", "node-ours-2"))["hostname"] == "node-ours-2"
    assert ok(official.ctl("find", "node-ours-2"))["node_id"] == before["node_id"]
    ping = ok(official.ctl("ping", before["address"], "--count", "2", timeout=60))
    assert not ping["timeout"]


@pytest.mark.parametrize("relay_side", ["official", "ours"])
def test_relay_only_nodes_are_reached_through_the_beacon(rendezvous, official_daemons, our_daemons, relay_side):
    rdv = rendezvous()
    flags = {"official": (), "ours": ()}
    flags[relay_side] = ("-relay-only",)
    official = official_daemons("node-off", rdv.registry, rdv.beacon, "-public", *flags["official"])
    ours = our_daemons("node-ours", rdv.registry, rdv.beacon, "-public", *flags["ours"])
    target, source = (official, ours) if relay_side == "official" else (ours, official)
    ping = ok(source.ctl("ping", registered(target)["address"], "--count", "3", timeout=60))
    assert not ping["timeout"] and len([r for r in ping["results"] if "rtt_ms" in r]) == 3, ping
    rows = {r["node_id"]: r for r in ok(source.ctl("info"))["peer_list"]}
    assert rows[registered(target)["node_id"]]["relay"] is True, rows
    bench = ok(source.ctl("bench", registered(target)["address"], "1", timeout=120))
    assert bench["complete"] and bench["recv_bytes"] == 1 << 20


def test_a_dial_the_registry_refuses_fails_at_once_with_its_words(rendezvous, official_daemons, our_daemons):
    """No such node, or a private node that does not trust us: the official daemon answers the dial at once with
    the registry's refusal (no relay attempt, no timeout); ours gives the same bytes."""
    rdv = rendezvous()
    daemons = {"go": official_daemons("go-dial", rdv.registry, rdv.beacon, "-public"),
               "py": our_daemons("py-dial", rdv.registry, rdv.beacon, "-public")}
    private = registered(official_daemons("private", rdv.registry, rdv.beacon))["node_id"]
    for node in (30583, private):
        replies = {}
        for kind, d in daemons.items():
            c = RawIPC(d.socket, timeout=20)
            t0 = time.monotonic()
            replies[kind] = c.request(ipc.Cmd.DIAL, Addr(0, node).to_bytes() + struct.pack(">H", 7))
            assert time.monotonic() - t0 < 3, (kind, node)
            c.close()
        assert replies["py"] == replies["go"], replies
        assert replies["py"][4] == ipc.Cmd.ERROR and replies["py"][7:].startswith(f"resolve node {node}: ".encode())
    assert all(p["node_id"] != 30583 for p in ok(daemons["py"].ctl("info"))["peer_list"] or [])


def test_every_verb_aimed_at_a_missing_node_answers_as_the_official_daemon(rendezvous, official_daemons,
                                                                           our_daemons):
    """pilotctl's verbs against a node the registry does not know: the same envelope, byte for byte, from both
    daemons (the error texts are the daemons' own, wrapped by pilotctl), and no verb waits for a timeout."""
    rdv = rendezvous()
    daemons = {"go": official_daemons("go-miss", rdv.registry, rdv.beacon, "-public"),
               "py": our_daemons("py-miss", rdv.registry, rdv.beacon, "-public")}
    gone, node = "0:0000.0000.7777", "30583"
    verbs = [("find", "nobody"), ("lookup", node), ("handshake", node, "hi"), ("approve", node), ("reject", node),
             ("untrust", node), ("send-message", gone, "--data", "x"), ("ping", gone, "--count", "1"),
             ("connect", gone, "7", "--message", "x"), ("dgram", gone, "5", "--data", "x"),
             ("send", gone, "7", "--data", "x"), ("subscribe", gone, "t", "--count", "1"),
             ("publish", gone, "t", "--data", "x"), ("bench", gone, "1"), ("send-file", gone, "/etc/hostname"),
             ("traceroute", gone), ("set-hostname", "Bad_Name")]
    for verb in verbs:
        replies = {}
        for kind, d in daemons.items():
            t0 = time.monotonic()
            replies[kind] = d.ctl(*verb, timeout=30)
            assert time.monotonic() - t0 < 3, (kind, verb)
        if verb[0] == "traceroute":      # timings inside the reply
            replies = {k: {**v, "data": {**v["data"], "setup_ms": 0}} for k, v in replies.items()}
        assert replies["py"] == replies["go"], verb


def test_closed_connections_are_listed_in_time_wait_but_not_counted(rendezvous, official_daemons, our_daemons):
    """After `publish` and `send-message` (each a short stream we close), `info` and `pilotctl connections` show
    the two TIME_WAIT rows with the same byte counts on both daemons, and count no open connection."""
    rdv = rendezvous()
    target = official_daemons("tw-target", rdv.registry, rdv.beacon, "-public")
    seen = {}
    for kind, start in (("go", official_daemons), ("py", our_daemons)):
        d = start(f"tw-{kind}", rdv.registry, rdv.beacon, "-public")
        ok(d.ctl("publish", target.info()["address"], "topic", "--data", "x"))
        ok(d.ctl("send-message", target.info()["address"], "--data", "x"))
        listed = wait_for(lambda: (c := ok(d.ctl("connections")))["total"] == 2 and c, 10, f"{kind}: 2 rows listed")
        rows = sorted((c["state"], c["remote_port"], c["bytes_sent"], c["bytes_recv"]) for c in listed["connections"])
        seen[kind] = (ok(d.ctl("info"))["connections"], ok(d.ctl("health"))["connections"], listed["total"], rows)
    assert seen["py"] == seen["go"], seen
    assert seen["py"][:3] == (0, 0, 2) and [r[0] for r in seen["py"][3]] == ["TIME_WAIT", "TIME_WAIT"]
