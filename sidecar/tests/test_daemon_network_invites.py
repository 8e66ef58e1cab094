"""Invite-only networks (``pilotctl network invite|invites|accept|reject``) next to the official 1.18 daemon,
through our pilot-rendezvous: an operator with the admin token invites both daemons, each invites a node of the
other kind, and both daemons give the same replies and errors for the same steps."""
from __future__ import annotations

import re

import pytest

from daemon_harness import our_daemons  # noqa: F401  (fixture)
from test_daemon_official import ok, shape

pytestmark = [pytest.mark.official, pytest.mark.timeout(150)]


@pytest.fixture
def club(rendezvous, official_daemons, our_daemons):
    rdv = rendezvous(flags=["-admin-token", "registry-secret"])
    up = {"go": official_daemons, "py": our_daemons}
    d = {kind: start(kind, rdv.registry, rdv.beacon, "-public") for kind, start in up.items()}
    d.update({f"{kind}-guest": start(f"{kind}-guest", rdv.registry, rdv.beacon, "-public") for kind, start in up.items()})
    # the operator: its daemon and pilotctl carry the registry's admin token
    d["op"] = official_daemons("operator", rdv.registry, rdv.beacon, env={"PILOT_ADMIN_TOKEN": "registry-secret"})
    assert ok(d["op"].ctl("network", "create", "--name", "club", "--join-rule", "invite"))["network_id"] == 1
    return d


def node(d) -> str:
    return str(d.info()["node_id"])


def test_invitations_across_both_daemons(club):
    go, py, op = club["go"], club["py"], club["op"]
    for kind in ("go", "py"):      # nobody may join without an invitation
        refused = club[kind].ctl("network", "join", "1")
        assert "invite required for network 1" in refused.get("error", ""), refused
    for d in (go, py):
        ok(op.ctl("network", "invite", "1", node(d)))
    pending = {kind: ok(club[kind].ctl("network", "invites")) for kind in ("go", "py")}
    assert shape(pending["py"]) == shape(pending["go"]), pending
    assert [(i["network_id"], i["inviter_id"]) for i in pending["py"]["invites"]] == [(1, int(node(op)))]
    accepted = {kind: ok(club[kind].ctl("network", "accept", "1")) for kind in ("go", "py")}
    assert shape(accepted["py"]) == shape(accepted["go"]), accepted
    assert accepted["py"]["address"].startswith("1:") and ok(py.ctl("network", "invites"))["invites"] == []

    # members invite: ours invites an official node, the official daemon one of ours
    sent = {"py": ok(py.ctl("network", "invite", "1", node(club["go-guest"]))),
            "go": ok(go.ctl("network", "invite", "1", node(club["py-guest"])))}
    assert shape(sent["py"]) == shape(sent["go"]), sent
    assert ok(club["go-guest"].ctl("network", "invites"))["invites"][0]["inviter_id"] == int(node(py))
    rejected = ok(club["go-guest"].ctl("network", "reject", "1"))
    joined = ok(club["py-guest"].ctl("network", "accept", "1"))
    assert rejected["accepted"] is False and joined["accepted"] is True
    members = {m["node_id"] for m in ok(op.ctl("network", "members", "1"))["nodes"]}
    assert members == {int(node(d)) for d in (go, py, club["py-guest"])}


def test_the_same_errors_from_both_daemons(club):
    steps = [("network", "accept", "1"), ("network", "reject", "7"), ("network", "invite", "1", "1")]
    for args in steps:
        texts = {}
        for kind in ("go", "py"):
            d = club[kind]
            reply = d.ctl(*args)
            assert reply.get("status") == "error", (kind, args, reply)
            texts[kind] = re.sub(rf"(node|inviter) {node(d)}\b", r"\1 <self>", reply["error"])
        assert texts["py"] == texts["go"], (args, texts)
