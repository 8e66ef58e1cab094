"""The broadcast rules (who may broadcast, to whom) with the official 1.18 daemon's texts."""
from __future__ import annotations

import pytest

from pilot_daemon.proto.broadcast import BroadcastDenied, authorize, recipients


@pytest.mark.parametrize(("configured", "given", "network", "text"), [
    ("", "anything", 1, "broadcast denied: daemon has no admin token configured"),
    ("", "", 1, "broadcast denied: daemon has no admin token configured"),
    ("secret", "wrong", 1, "broadcast denied: invalid admin token"),
    ("secret", "", 1, "broadcast denied: invalid admin token"),
    ("secret", "secret", 0, "broadcast not permitted on backbone network"),
])
def test_refusals_in_the_official_order_and_words(configured, given, network, text):
    with pytest.raises(BroadcastDenied) as err:
        authorize(configured, given, network)
    assert str(err.value) == text


def test_a_matching_token_on_a_network_is_allowed():
    authorize("secret", "secret", 1)
    authorize("sécret", "sécret", 65535)     # compared as bytes, any UTF-8


def test_recipients_are_the_other_members_once_each():
    reply = {"type": "list_nodes_ok", "nodes": [{"node_id": 2}, {"node_id": 5.0}, {"node_id": 7}, {"node_id": 5}]}
    assert recipients(reply, 7, 1) == [2, 5]


def test_a_non_member_is_refused():
    with pytest.raises(BroadcastDenied, match=r"^broadcast denied: node 9 is not a member of network 3$"):
        recipients({"nodes": [{"node_id": 2}]}, 9, 3)
    with pytest.raises(BroadcastDenied):
        recipients({"nodes": []}, 9, 3)     # an empty list is a list: nobody, not even us


@pytest.mark.parametrize("reply", [{}, {"nodes": None}, {"nodes": "x"}, {"nodes": {"node_id": 1}}])
def test_no_node_list_means_nobody_to_send_to(reply):
    assert recipients(reply, 1, 1) == []


def test_malformed_entries_are_skipped_not_fatal():
    nodes = [None, "2", {"node_id": True}, {"node_id": 1.5}, {"node_id": -1}, {"node_id": 1 << 32}, {}, {"node_id": 4},
             {"node_id": float("nan")}, {"node_id": float("inf")}, {"node_id": 1}]   # json.loads reads NaN, Infinity
    assert recipients({"nodes": nodes}, 1, 1) == [4]
