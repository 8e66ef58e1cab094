"""Network broadcast (IPC 0x29, ``pilotctl broadcast``) next to the official 1.18 daemon, through our pilot-rendezvous:
the same refusals with the same texts, and a broadcast from either daemon reaches the members of the other kind."""
from __future__ import annotations

import json
import struct
import subprocess
import time

import pytest

from daemon_harness import RawIPC, our_daemons  # noqa: F401  (fixture)
from pilot_daemon.proto import ipc
from pilot_daemon.proto.addr import Addr

pytestmark = [pytest.mark.official, pytest.mark.timeout(150)]

TOKEN = "bc-secret"


def broadcast(d, *args: str, token: str | None = TOKEN) -> dict:
    d.extra_env.pop("PILOT_ADMIN_TOKEN", None)
    if token is not None:
        d.extra_env["PILOT_ADMIN_TOKEN"] = token
    try:
        return d.ctl("broadcast", *args)
    finally:
        d.extra_env.pop("PILOT_ADMIN_TOKEN", None)


@pytest.fixture
def mesh(rendezvous, official_daemons, our_daemons):
    rdv = rendezvous(flags=["-admin-token", "registry-secret"])
    kinds = {"go": official_daemons, "py": our_daemons}
    d = {kind: start(f"{kind}-bc", rdv.registry, rdv.beacon, "-public", "-admin-token", TOKEN)
         for kind, start in kinds.items()}
    d.update({f"{kind}-plain": start(f"{kind}-plain", rdv.registry, rdv.beacon, "-public")
              for kind, start in kinds.items()})
    member = d["member"] = official_daemons("go-member", rdv.registry, rdv.beacon, "-public",
                                            env={"PILOT_ADMIN_TOKEN": "registry-secret"})
    created = member.ctl("network", "create", "--name", "lab")     # the operator's call, straight to the registry
    assert created.get("data", {}).get("network_id") == 1, created
    assert member.ctl("network", "join", "1").get("status") == "ok"
    return d


def test_refusals_match_the_official_daemon(mesh):
    cases = [
        ("plain", ("1", "hello"), "x", "broadcast denied: daemon has no admin token configured"),
        ("", ("1", "hello"), "wrong", "broadcast denied: invalid admin token"),
        ("", ("0", "hello"), TOKEN, "broadcast not permitted on backbone network"),
        ("", ("7", "hello"), TOKEN, "list nodes for broadcast: registry: network 7: network not found"),
        ("", ("1", "hello"), TOKEN, "broadcast denied: node {node} is not a member of network 1"),
    ]
    for suffix, args, token, text in cases:
        replies = {}
        for kind in ("go", "py"):
            d = mesh[f"{kind}-{suffix}" if suffix else kind]
            reply = broadcast(d, *args, token=token)
            node = d.info()["node_id"]
            assert reply.get("error") == "daemon: broadcast: " + text.format(node=node), (kind, reply)
            replies[kind] = {**reply, "error": "", "message": ""}
        assert replies["py"] == replies["go"], (args, replies)


def test_broadcasts_reach_members_of_the_other_kind(mesh):
    go, py, member = mesh["go"], mesh["py"], mesh["member"]
    for d in (go, py):
        assert d.ctl("network", "join", "1").get("status") == "ok"
    py_node, go_node = py.info()["node_id"], go.info()["node_id"]
    listen = subprocess.Popen(member.ns.argv([str(member.bin_dir / "pilotctl"), "--json", "listen", "1000",
                                              "--count", "2", "--timeout", "20s"]),
                              env=member.env(), stdout=subprocess.PIPE, text=True)
    py_app = RawIPC(py.socket)
    time.sleep(1.0)   # `listen` only connects and filters the RecvFrom pushes: nothing to poll for
    sent = {kind: broadcast(d, "1", f"from-{kind}") for kind, d in (("py", py), ("go", go))}
    assert sent["py"] == sent["go"] == {"status": "ok", "data": {"bytes": 7, "network_id": 1, "port": 1000}}, sent
    heard = json.loads(listen.communicate(timeout=30)[0])["data"]["messages"]
    assert sorted((m["src_addr"], m["data"]) for m in heard) == sorted([
        (str(Addr(1, py_node)), "from-py"), (str(Addr(1, go_node)), "from-go")])
    got = ipc.decode_reply(ipc.Frame((frame := py_app.read_frame())[4], frame[5:]))
    assert isinstance(got, ipc.RecvFrom)
    assert (got.src, got.dst_port, got.data) == (Addr(1, go_node), 1000, b"from-go")
    assert got.src_port >= 49152
    # one broadcast, one source port: the official member saw ours from the same ephemeral range
    assert all(m["src_port"] >= 49152 for m in heard)
    py_app.close()


def test_sendto_a_broadcast_address_is_refused_as_the_official_daemon_does(mesh):
    replies = {}
    for kind in ("go", "py"):
        c = RawIPC(mesh[kind].socket)
        dst = Addr(1, 0xFFFFFFFF).to_bytes() + struct.pack(">H", 1000)
        replies[kind] = c.request(ipc.Cmd.SEND_TO_CONFIRM, dst + b"x")
        c.close()
    assert replies["py"] == replies["go"], replies
