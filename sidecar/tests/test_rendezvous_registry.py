"""Registry core: signatures, hostnames, visibility, trust handshakes, networks, persistence."""
from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pilot_rendezvous.registry import Registry, address, sanitize_listen_addr
from pilot_rendezvous.store_sqlite import SQLiteStore

NOW = 1_700_000_000.0
REMOTE = "127.0.0.1:50000"


class Node:
    """A test identity that signs like the official client."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_key = base64.b64encode(raw).decode()
        self.node_id = 0

    def sign(self, text: str) -> str:
        return base64.b64encode(self.key.sign(text.encode())).decode()

    def register(self, reg: Registry, listen: str = "127.0.0.1:4000", **extra) -> dict:
        msg = {"type": "register", "listen_addr": listen, "public_key": self.public_key,
               "signature": self.sign(f"register:{listen}:{self.public_key}"), "version": "1.18.0", **extra}
        reply = reg.handle(msg, REMOTE, NOW)
        self.node_id = reply.get("node_id", 0)
        return reply


def call(reg: Registry, node: Node, mtype: str, challenge: str, **fields) -> dict:
    return reg.handle({"type": mtype, **fields, "signature": node.sign(challenge)}, REMOTE, NOW)


@pytest.fixture
def reg() -> Registry:
    return Registry(SQLiteStore(), beacon_addr="127.0.0.1:9001")


def test_register_allocates_stable_ids_per_key(reg):
    a, b = Node(), Node()
    first = a.register(reg)
    assert first["type"] == "register_ok"
    assert first["address"] == address(0, first["node_id"])
    assert b.register(reg)["node_id"] != first["node_id"]
    assert a.register(reg, listen="127.0.0.1:4100")["node_id"] == first["node_id"]
    assert reg.handle({"type": "lookup", "node_id": first["node_id"]}, REMOTE, NOW)["public_key"] == a.public_key


def test_address_format_matches_official():
    assert address(0, 1000) == "0:0000.0000.03E8"
    assert address(7, 0x12345678) == "7:0007.1234.5678"


def test_register_rejects_missing_or_forged_signature(reg):
    a, mallory = Node(), Node()
    unsigned = {"type": "register", "listen_addr": "127.0.0.1:1", "public_key": a.public_key}
    assert reg.handle(unsigned, REMOTE, NOW)["type"] == "error"
    forged = dict(unsigned, signature=mallory.sign(f"register:127.0.0.1:1:{a.public_key}"))
    reply = reg.handle(forged, REMOTE, NOW)
    assert reply == {"type": "error", "error": "signature verification failed", "code": "forbidden"}
    assert reg.store.node_count() == 0


def test_heartbeat_and_resolve_need_the_right_key(reg):
    a, b, mallory = Node(), Node(), Node()
    a.register(reg)
    b.register(reg)
    ok = call(reg, a, "heartbeat", f"heartbeat:{a.node_id}", node_id=a.node_id)
    assert ok == {"type": "heartbeat_ok", "time": int(NOW)}
    bad = call(reg, mallory, "heartbeat", f"heartbeat:{a.node_id}", node_id=a.node_id)
    assert bad["error"] == "signature verification failed"
    # a signature over another request's string is no proof either
    replay = call(reg, a, "resolve", f"heartbeat:{a.node_id}", node_id=b.node_id, requester_id=a.node_id)
    assert replay["type"] == "error"


def test_private_nodes_resolve_only_after_handshake(reg):
    a, b = Node(), Node()
    a.register(reg)
    b.register(reg)
    resolve = lambda: call(reg, a, "resolve", f"resolve:{a.node_id}:{b.node_id}",  # noqa: E731
                           node_id=b.node_id, requester_id=a.node_id)
    assert "private" in resolve()["error"]
    req = call(reg, a, "request_handshake", f"handshake:{a.node_id}:{b.node_id}",
               from_node_id=a.node_id, to_node_id=b.node_id, justification="hi")
    assert req == {"type": "request_handshake_ok", "status": "delivered"}
    # a forged approval (signed by the requester, not the target) creates no trust
    forged = call(reg, a, "respond_handshake", f"respond:{b.node_id}:{a.node_id}",
                  node_id=b.node_id, peer_id=a.node_id, accept=True)
    assert forged["error"] == "signature verification failed"
    polled = call(reg, b, "poll_handshakes", f"poll_handshakes:{b.node_id}", node_id=b.node_id)
    assert [r["from_node_id"] for r in polled["requests"]] == [a.node_id]
    assert polled["requests"][0]["justification"] == "hi"
    ok = call(reg, b, "respond_handshake", f"respond:{b.node_id}:{a.node_id}",
              node_id=b.node_id, peer_id=a.node_id, accept=True)
    assert ok == {"type": "respond_handshake_ok", "accept": True, "peer_id": a.node_id}
    assert call(reg, b, "respond_handshake", f"respond:{b.node_id}:{a.node_id}",   # the daemon repeats it
                node_id=b.node_id, peer_id=a.node_id, accept=True) == ok
    resolved = resolve()
    assert resolved["type"] == "resolve_ok" and resolved["real_addr"] == "127.0.0.1:4000"
    answers = call(reg, a, "poll_handshakes", f"poll_handshakes:{a.node_id}", node_id=a.node_id)
    assert answers["responses"] == [{"from_node_id": b.node_id, "accept": True, "timestamp": int(NOW)}]


def test_unsolicited_approval_and_one_sided_trust_grant_nothing(reg):
    a, b = Node(), Node()
    a.register(reg)
    b.register(reg)
    unsolicited = call(reg, a, "respond_handshake", f"respond:{a.node_id}:{b.node_id}",
                       node_id=a.node_id, peer_id=b.node_id, accept=True)
    assert unsolicited["code"] == "not_found"
    call(reg, a, "report_trust", f"report_trust:{a.node_id}:{b.node_id}", node_id=a.node_id, peer_id=b.node_id)
    check = {"type": "check_trust", "node_id": a.node_id, "peer_id": b.node_id}
    assert reg.handle(check, REMOTE, NOW)["trusted"] is False
    call(reg, b, "report_trust", f"report_trust:{b.node_id}:{a.node_id}", node_id=b.node_id, peer_id=a.node_id)
    assert reg.handle(check, REMOTE, NOW)["trusted"] is True


def test_hostname_rules_and_uniqueness(reg):
    a, b = Node(), Node()
    a.register(reg)
    b.register(reg)
    set_host = lambda n, h: call(reg, n, "set_hostname", f"set_hostname:{n.node_id}",  # noqa: E731
                                 node_id=n.node_id, hostname=h)
    assert set_host(a, "web-1")["hostname"] == "web-1"
    for bad in ("Web", "-x", "x-", "a_b", "localhost", "a" * 64):
        assert set_host(a, bad)["error"].startswith("invalid hostname"), bad
    taken = set_host(b, "web-1")
    assert taken["code"] == "conflict" and f"node {a.node_id}" in taken["error"]
    assert set_host(a, "")["hostname"] == ""          # clearing frees the name
    assert set_host(b, "web-1")["type"] == "set_hostname_ok"
    # public lookups by name work only for public nodes (or trusted/shared-network requesters)
    by_name = {"type": "resolve_hostname", "hostname": "web-1", "requester_id": a.node_id}
    assert reg.handle(by_name, REMOTE, NOW)["code"] == "not_found"
    call(reg, b, "set_visibility", f"set_visibility:{b.node_id}", node_id=b.node_id, public=True)
    assert reg.handle(by_name, REMOTE, NOW)["node_id"] == b.node_id


def test_register_with_taken_hostname_keeps_the_holder(reg):
    a, b = Node(), Node()
    assert a.register(reg, hostname="db")["hostname"] == "db"
    reply = b.register(reg, hostname="db")
    assert "already in use" in reply["hostname_error"] and "hostname" not in reply
    assert b.register(reg, hostname="Bad Name")["hostname_error"].startswith("hostname must be")


def test_tags_visibility_and_deregister(reg):
    a = Node()
    a.register(reg)
    tags = call(reg, a, "set_tags", f"set_tags:{a.node_id}", node_id=a.node_id, tags=["#web", "web", "gpu"])
    assert tags["tags"] == ["web", "gpu"]
    assert call(reg, a, "set_tags", f"set_tags:{a.node_id}", node_id=a.node_id, tags=["UPPER"])["type"] == "error"
    vis = call(reg, a, "set_visibility", f"set_visibility:{a.node_id}", node_id=a.node_id, public=True)
    assert vis["visibility"] == "public"
    looked = reg.handle({"type": "lookup", "node_id": a.node_id}, REMOTE, NOW)
    assert looked["real_addr"] == "127.0.0.1:4000" and looked["tags"] == ["web", "gpu"]
    assert call(reg, a, "deregister", f"deregister:{a.node_id}", node_id=a.node_id) == {"type": "deregister_ok"}
    assert reg.handle({"type": "lookup", "node_id": a.node_id}, REMOTE, NOW)["code"] == "not_found"
    assert a.register(reg)["node_id"] == a.node_id     # the key gets its id back


def test_rotate_key_moves_the_id_to_the_new_key(reg):
    a, new = Node(), Node()
    a.register(reg)
    signed_other = call(reg, a, "rotate_key", f"rotate:{a.node_id}:{Node().public_key}", node_id=a.node_id,
                        new_public_key=new.public_key)
    assert signed_other["error"] == "signature verification failed"   # the proof names the new key
    reply = call(reg, a, "rotate_key", f"rotate:{a.node_id}:{new.public_key}", node_id=a.node_id,
                 new_public_key=new.public_key)
    assert reply["public_key"] == new.public_key
    assert new.register(reg)["node_id"] == a.node_id
    old_key_heartbeat = call(reg, a, "heartbeat", f"heartbeat:{a.node_id}", node_id=a.node_id)
    assert old_key_heartbeat["error"] == "signature verification failed"


def test_networks_join_leave_and_shared_network_resolve():
    reg = Registry(SQLiteStore(), admin_token="s3cret")
    a, b = Node(), Node()
    a.register(reg)
    b.register(reg)
    assert reg.handle({"type": "create_network", "name": "lab", "join_rule": "token", "token": "t"},
                      REMOTE, NOW)["error"] == "invalid admin token"
    net = reg.handle({"type": "create_network", "name": "lab", "join_rule": "token", "token": "t",
                      "admin_token": "s3cret", "node_id": a.node_id}, REMOTE, NOW)
    net_id = net["network_id"]
    join = lambda tok: call(reg, b, "join_network", f"join_network:{b.node_id}:{net_id}",  # noqa: E731
                            node_id=b.node_id, network_id=net_id, token=tok)
    assert join("wrong")["code"] == "forbidden"
    assert join("t")["address"] == address(net_id, b.node_id)
    resolved = call(reg, a, "resolve", f"resolve:{a.node_id}:{b.node_id}", node_id=b.node_id, requester_id=a.node_id)
    assert resolved["type"] == "resolve_ok"
    names = [n["name"] for n in reg.handle({"type": "list_networks"}, REMOTE, NOW)["networks"]]
    assert names == ["backbone", "lab"]
    # what `pilotctl network create --name ops` sends: node_id 0, no owner and no member yet
    ops = reg.handle({"type": "create_network", "name": "ops", "join_rule": "open", "token": "", "node_id": 0,
                      "admin_token": "s3cret"}, REMOTE, NOW)
    assert ops["type"] == "create_network_ok", ops
    assert reg.handle({"type": "list_nodes", "network_id": ops["network_id"]}, REMOTE, NOW)["nodes"] == []
    assert reg.handle({"type": "create_network", "name": "ops2", "node_id": 99, "admin_token": "s3cret"},
                      REMOTE, NOW)["code"] == "not_found"
    members = reg.handle({"type": "list_nodes", "network_id": net_id}, REMOTE, NOW)["nodes"]
    assert sorted(m["node_id"] for m in members) == sorted([a.node_id, b.node_id])
    policy = reg.handle({"type": "get_network_policy", "network_id": net_id}, REMOTE, NOW)
    assert policy == {"type": "get_network_policy_ok", "network_id": net_id, "max_members": 0,
                      "allowed_ports": [], "description": ""}
    left = call(reg, b, "leave_network", f"leave_network:{b.node_id}:{net_id}", node_id=b.node_id, network_id=net_id)
    assert left["type"] == "leave_network_ok"
    assert reg.handle({"type": "lookup", "node_id": b.node_id}, REMOTE, NOW)["networks"] == [0]


def test_unknown_and_malformed_requests_get_typed_errors(reg):
    unknown = reg.handle({"type": "frobnicate"}, REMOTE, NOW)
    assert unknown["type"] == "error" and 'unknown message type: "frobnicate"' in unknown["error"]
    for bad in ([1, 2], {"node_id": 1}, {"type": "lookup"}, {"type": "lookup", "node_id": -1},
                {"type": "lookup", "node_id": "7"}, {"type": "heartbeat", "node_id": 1e300}):
        reply = reg.handle(bad, REMOTE, NOW)
        assert reply["type"] == "error" and reply["code"] in ("bad_request", "not_found"), bad


def test_beacon_list_and_relay_only_endpoint(reg):
    assert reg.handle({"type": "beacon_list"}, REMOTE, NOW)["beacons"] == [{"id": 1, "addr": "127.0.0.1:9001"}]
    a, b = Node(), Node()
    a.register(reg, relay_only=True)
    b.register(reg)
    call(reg, a, "set_visibility", f"set_visibility:{a.node_id}", node_id=a.node_id, public=True)
    resolved = call(reg, b, "resolve", f"resolve:{b.node_id}:{a.node_id}", node_id=a.node_id, requester_id=b.node_id)
    assert resolved["real_addr"] == "127.0.0.1:9001" and resolved["relay_only"] is True


def test_sanitize_listen_addr():
    assert sanitize_listen_addr("203.0.113.9:5555", "0.0.0.0:4000") == "203.0.113.9:4000"
    assert sanitize_listen_addr("203.0.113.9:5555", "10.0.0.5:4000") == "203.0.113.9:4000"
    assert sanitize_listen_addr("203.0.113.9:5555", "198.51.100.7:4000") == "198.51.100.7:4000"
    assert sanitize_listen_addr("[2001:db8::1]:5555", "[::]:4000") == "[2001:db8::1]:4000"
    assert sanitize_listen_addr("203.0.113.9:5555", "") == "203.0.113.9:5555"


def test_state_survives_a_restart(tmp_path):
    db = tmp_path / "rdv.sqlite"
    reg = Registry(SQLiteStore(db))
    a, b = Node(), Node()
    a.register(reg, hostname="alpha")
    b.register(reg)
    call(reg, a, "request_handshake", f"handshake:{a.node_id}:{b.node_id}",
         from_node_id=a.node_id, to_node_id=b.node_id, justification="later")
    reg.store.close()

    reg2 = Registry(SQLiteStore(db))
    assert a.register(reg2)["node_id"] == a.node_id
    assert reg2.handle({"type": "resolve_hostname", "hostname": "alpha", "requester_id": a.node_id},
                       REMOTE, NOW)["node_id"] == a.node_id
    assert call(reg2, b, "heartbeat", f"heartbeat:{b.node_id}", node_id=b.node_id)["type"] == "heartbeat_ok"
    polled = call(reg2, b, "poll_handshakes", f"poll_handshakes:{b.node_id}", node_id=b.node_id)
    assert [r["justification"] for r in polled["requests"]] == ["later"]
    assert Node().register(reg2)["node_id"] not in (a.node_id, b.node_id)
