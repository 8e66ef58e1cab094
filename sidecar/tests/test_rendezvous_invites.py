"""Registry invitations to invite-only networks: who may invite, the signed strings the official 1.18 daemon
sends, pending invitations until answered, accept/reject, joining with an invitation, and bad requests."""
from __future__ import annotations

import pytest

from pilot_rendezvous.networks import MAX_PENDING_INVITES
from pilot_rendezvous.registry import Registry, address
from pilot_rendezvous.store_sqlite import SQLiteStore
from test_rendezvous_registry import NOW, REMOTE, Node, call


@pytest.fixture
def club():
    """A registry with an invite-only network 1 whose only member is `owner`; `guest` and `other` are not in it."""
    reg = Registry(SQLiteStore(), admin_token="s3cret")
    owner, guest, other = Node(), Node(), Node()
    for n in (owner, guest, other):
        n.register(reg)
    net = reg.handle({"type": "create_network", "name": "club", "join_rule": "invite", "node_id": owner.node_id,
                      "admin_token": "s3cret"}, REMOTE, NOW)
    assert net["network_id"] == 1
    return reg, owner, guest, other


def invite(reg, inviter: Node, target: Node, net: int = 1) -> dict:
    return call(reg, inviter, "invite_to_network", f"invite:{inviter.node_id}:{net}:{target.node_id}",
                inviter_id=inviter.node_id, network_id=net, target_node_id=target.node_id)


def poll(reg, node: Node) -> list[dict]:
    return call(reg, node, "poll_invites", f"poll_invites:{node.node_id}", node_id=node.node_id)["invites"]


def respond(reg, node: Node, accept: bool, net: int = 1) -> dict:
    return call(reg, node, "respond_invite", f"respond_invite:{node.node_id}:{net}", node_id=node.node_id,
                network_id=net, accept=accept)


def members(reg) -> list[int]:
    return [n["node_id"] for n in reg.handle({"type": "list_nodes", "network_id": 1}, REMOTE, NOW)["nodes"]]


def test_a_member_invites_and_the_invitee_accepts(club):
    reg, owner, guest, _ = club
    assert invite(reg, owner, guest) == {"type": "invite_to_network_ok", "network_id": 1,
                                        "target_node_id": guest.node_id}
    [pending] = poll(reg, guest)
    assert (pending["network_id"], pending["network_name"], pending["inviter_id"]) == (1, "club", owner.node_id)
    assert poll(reg, guest) == [pending]        # stays pending until answered
    assert respond(reg, guest, True) == {"type": "respond_invite_ok", "network_id": 1, "accepted": True,
                                         "address": address(1, guest.node_id)}
    assert guest.node_id in members(reg) and poll(reg, guest) == []
    assert respond(reg, guest, True)["code"] == "not_found"       # answered once


def test_a_rejected_invitation_is_gone_and_admits_nobody(club):
    reg, owner, guest, _ = club
    invite(reg, owner, guest)
    assert respond(reg, guest, False) == {"type": "respond_invite_ok", "network_id": 1, "accepted": False}
    assert guest.node_id not in members(reg) and poll(reg, guest) == []


def test_joining_with_a_pending_invitation_settles_it(club):
    reg, owner, guest, other = club
    join = lambda n: call(reg, n, "join_network", f"join_network:{n.node_id}:1",  # noqa: E731
                          node_id=n.node_id, network_id=1)
    assert "invite required" in join(other)["error"]
    invite(reg, owner, guest)
    assert join(guest)["type"] == "join_network_ok"
    assert poll(reg, guest) == []


def test_who_may_invite(club):
    reg, owner, guest, other = club
    assert invite(reg, other, guest)["error"] == f"inviter {other.node_id} is not a member of network 1"
    forged = {"type": "invite_to_network", "inviter_id": owner.node_id, "network_id": 1,
              "target_node_id": guest.node_id, "signature": guest.sign(f"invite:{owner.node_id}:1:{guest.node_id}")}
    assert reg.handle(forged, REMOTE, NOW)["code"] == "forbidden"        # signed by someone else than the inviter
    assert poll(reg, guest) == []
    admin = reg.handle({"type": "invite_to_network", "inviter_id": other.node_id, "network_id": 1,
                        "target_node_id": other.node_id, "admin_token": "s3cret"}, REMOTE, NOW)
    assert admin["type"] == "invite_to_network_ok"                            # the operator may
    assert invite(reg, owner, owner)["error"] == f"node {owner.node_id} already in network 1"
    assert invite(reg, owner, guest, net=0)["code"] == "bad_request"
    assert invite(reg, owner, guest, net=9)["error"] == "network 9: network not found"


def test_bad_requests_get_clear_errors(club):
    reg, owner, guest, _ = club
    for msg in ({"type": "invite_to_network", "inviter_id": "x"},
                {"type": "respond_invite", "node_id": guest.node_id, "network_id": 1, "accept": "yes",
                 "signature": guest.sign(f"respond_invite:{guest.node_id}:1")},
                {"type": "poll_invites", "node_id": guest.node_id, "signature": "AAAA"}):
        reply = reg.handle(msg, REMOTE, NOW)
        assert reply["type"] == "error" and reply["error"], reply


def test_pending_invitations_are_capped(club):
    reg, owner, guest, _ = club
    for i in range(MAX_PENDING_INVITES):
        net = reg.handle({"type": "create_network", "name": f"n{i}", "join_rule": "invite", "node_id": owner.node_id,
                          "admin_token": "s3cret"}, REMOTE, NOW)["network_id"]
        assert invite(reg, owner, guest, net)["type"] == "invite_to_network_ok"
    assert "pending invitations" in invite(reg, owner, guest)["error"]
