"""IPC codec against bytes captured from the official pilot-daemon 1.18 (see vectors/README.md)."""

import json

import pytest
from hypothesis import given, strategies as st

import official_capture as oc
from pilot_daemon.proto import gojson, ipc
from pilot_daemon.proto.addr import Addr
from pilot_daemon.proto.errors import (
    IPCFrameTooLarge, IPCMessageError, IPCRequestError, PayloadTooLarge, RemoteProtocolError,
)


def frames_of(data: bytes):
    decoder = ipc.FrameDecoder()
    decoder.feed(data)
    return list(decoder.events())


def one_frame(data: bytes) -> ipc.Frame:
    (frame,) = frames_of(data)
    return frame


# Probes whose error the codec itself detects; the reply is the official daemon's exact frame.
PARSE_ERRORS = [
    "unbind_short", "unknown_7f", "dial_short", "bind_short", "close_short", "handshake_no_sub",
    "handshake_bad_sub", "network_bad_sub", "prefer_direct_short", "sendto_confirm_short", "set_tags_too_many",
    "resolve_hostname_empty", "managed_no_sub", "set_visibility_empty", "broadcast_short",
]


@pytest.mark.parametrize("name", PARSE_ERRORS)
def test_request_errors_match_official_texts_byte_for_byte(name):
    probe = oc.ipc(name)
    with pytest.raises(IPCRequestError) as caught:
        ipc.decode_request(one_frame(probe["request"]))
    assert not caught.value.silent
    assert ipc.error_frame(caught.value.message) == probe["reply"]


@pytest.mark.parametrize("name", ["bind_5000_again", "unbind_5000_not_owned"])
def test_state_errors_decode_as_error_replies(name):
    reply = ipc.decode_reply(one_frame(oc.ipc(name)["reply"]))
    assert isinstance(reply, ipc.Error) and reply.code == ipc.ERROR_CODE
    assert reply.encode() == oc.ipc(name)["reply"]


@pytest.mark.parametrize(
    "name, expected",
    [
        ("bind_5000", ipc.PortReply(ipc.Cmd.BIND_OK, 5000)),
        ("unbind_5000", ipc.PortReply(ipc.Cmd.UNBIND_OK, 5000)),
        ("dial_peer_port7", ipc.ConnReply(ipc.Cmd.DIAL_OK, 1)),
        ("close_conn", ipc.ConnReply(ipc.Cmd.CLOSE_OK, 1)),
        ("recv_push_after_peer_data", ipc.Recv(1, b"echo:hello")),
        ("recvfrom_push", ipc.RecvFrom(Addr(0, 1001), 6000, 5001, b"dgram-to-official")),
        ("sendto_confirm_peer", ipc.EmptyReply(ipc.Cmd.SEND_TO_OK)),
    ],
)
def test_official_binary_replies_decode_and_reencode(name, expected):
    raw = oc.ipc(name)["reply"]
    assert ipc.decode_reply(one_frame(raw)) == expected
    assert expected.encode() == raw


@pytest.mark.parametrize(
    "name, expected",
    [
        ("bind_5000", ipc.Bind(5000)),
        ("unbind_5000", ipc.Unbind(5000)),
        ("dial_peer_port7", ipc.Dial(Addr(0, 1001), 7)),
        ("close_conn", ipc.Close(1)),
        ("sendto_confirm_peer", ipc.SendToConfirm(Addr(0, 1001), 5555, b"dgram-payload")),
        ("info", ipc.Info()),
        ("health", ipc.Health()),
        ("handshake_pending", ipc.Handshake(ipc.HandshakeSub.PENDING)),
    ],
)
def test_requests_encode_as_we_sent_them_to_the_official_daemon(name, expected):
    raw = oc.ipc(name)["request"]
    assert ipc.decode_request(one_frame(raw)) == expected
    assert expected.encode() == raw


@pytest.mark.parametrize("name", ["info", "health", "handshake_pending", "handshake_trusted"])
def test_go_json_reencodes_official_json_replies_byte_for_byte(name):
    raw = oc.ipc(name)["reply"]
    reply = ipc.decode_reply(one_frame(raw))
    assert isinstance(reply, ipc.JsonReply)
    assert reply.encode() == raw


def test_info_reply_shape():
    body = json.loads(oc.ipc("info")["reply"][5:])
    assert tuple(body["features"]) == ipc.FEATURES
    assert body["address"] == "0:0000.0000.03E8" and body["node_id"] == 1000
    # Go marshals the float64 uptime; the official value is whole seconds, so it prints as "1", not "1.0".
    assert b'"uptime_secs":1,' in oc.ipc("info")["reply"] and gojson.dumps({"uptime_secs": 1.0}) == b'{"uptime_secs":1}'
    assert body["transport"] == "udp" and body["networks"] is None and body["ports"] == 4
    health = json.loads(oc.ipc("health")["reply"][5:])
    assert health["status"] == "ok" and isinstance(health["uptime_seconds"], int)


def test_zero_length_frame_is_skipped():
    frames = frames_of(oc.ipc("zero_length_then_health")["request"])
    assert frames == [ipc.Frame(ipc.Cmd.HEALTH, b"")]


def test_oversize_frame_raises_after_earlier_frames():
    decoder = ipc.FrameDecoder()
    decoder.feed(ipc.Info().encode() + (ipc.MAX_FRAME + 1).to_bytes(4, "big") + b"\x0d")
    got = []
    with pytest.raises(IPCFrameTooLarge, match="ipc message too large: 1048577"):
        for frame in decoder.events():
            got.append(frame)
    assert got == [ipc.Frame(ipc.Cmd.INFO, b"")]
    decoder.feed(ipc.Info().encode())  # a broken stream stays broken
    with pytest.raises(IPCFrameTooLarge):
        list(decoder.events())


def test_largest_legal_frame_and_split_feeding():
    big = ipc.Send(7, bytes(ipc.MAX_FRAME - 5)).encode()
    decoder = ipc.FrameDecoder()
    for i in range(0, len(big), 65536):
        decoder.feed(big[i:i + 65536])
    (frame,) = decoder.events()
    assert ipc.decode_request(frame) == ipc.Send(7, bytes(ipc.MAX_FRAME - 5))
    assert decoder.buffered == 0
    with pytest.raises(PayloadTooLarge):
        ipc.Send(7, bytes(ipc.MAX_FRAME - 4)).encode()


def test_byte_by_byte_feeding():
    stream = ipc.Bind(80).encode() + ipc.Health().encode() + ipc.Send(1, b"abc").encode()
    decoder = ipc.FrameDecoder()
    got = []
    for b in stream:
        decoder.feed(bytes([b]))
        got += list(decoder.events())
    assert [ipc.decode_request(f) for f in got] == [ipc.Bind(80), ipc.Health(), ipc.Send(1, b"abc")]


def test_silent_requests():
    with pytest.raises(IPCRequestError) as send:
        ipc.decode_request(ipc.Frame(ipc.Cmd.SEND, b"\x00"))
    with pytest.raises(IPCRequestError) as sendto:
        ipc.decode_request(ipc.Frame(ipc.Cmd.SEND_TO, b"\x00"))
    assert send.value.silent and sendto.value.silent
    assert ipc.decode_request(ipc.Frame(ipc.Cmd.CANCEL, b"ignored")) == ipc.Cancel()
    assert ipc.NO_REPLY == {ipc.Cmd.SEND, ipc.Cmd.SEND_TO, ipc.Cmd.CANCEL}


def test_reply_commands_sent_as_requests_are_unknown():
    with pytest.raises(IPCRequestError, match="unknown command: 0x02"):
        ipc.decode_request(ipc.Frame(ipc.Cmd.BIND_OK, b"\x00\x01"))


@pytest.mark.parametrize(
    "cmd, payload, message",
    [
        (ipc.Cmd.HANDSHAKE, b"\x01\x00", "handshake request: missing node_id"),
        (ipc.Cmd.HANDSHAKE, b"\x02", "handshake approve: missing node_id"),
        (ipc.Cmd.HANDSHAKE, b"\x03", "handshake reject: missing node_id"),
        (ipc.Cmd.HANDSHAKE, b"\x06", "handshake revoke: missing node_id"),
        (ipc.Cmd.HANDSHAKE, b"\x07\x00\x00\x00\x01", "handshake wait: payload must be [nodeID(4)][timeoutMs(4)]"),
        (ipc.Cmd.NETWORK, b"", "network: missing sub-command"),
        (ipc.Cmd.NETWORK, b"\x02\x00", "network join: missing network_id"),
        (ipc.Cmd.NETWORK, b"\x05\x00\x01\x00", "network invite: missing network_id or target_node_id"),
        (ipc.Cmd.NETWORK, b"\x07\x00\x01", "network respond-invite: missing network_id or accept flag"),
        (ipc.Cmd.MANAGED, b"\x05\x00", "managed policy: missing sub-sub-command and network_id"),
        (ipc.Cmd.MANAGED, b"\x05\x01\x00\x01", "managed policy set: missing token length"),
        (ipc.Cmd.MANAGED, b"\x05\x01\x00\x01\x00\x05ab", "managed policy set: truncated token"),
        (ipc.Cmd.MANAGED, b"\x05\x09\x00\x01", "managed policy: unknown action 0x09"),
        (ipc.Cmd.MANAGED, b"\x06\x00", "managed member-tags: missing action, network_id, or node_id"),
        (ipc.Cmd.MANAGED, b"\x06\x01\x00\x01\x00\x00\x00\x02", "managed member-tags set: missing tags JSON"),
        (ipc.Cmd.MANAGED, b"\x01", "managed: unknown sub-command 0x01"),
        (ipc.Cmd.BROADCAST, b"\x00\x01\x00\x07\x00\x09abc", "broadcast: truncated token"),
        (ipc.Cmd.PREFER_DIRECT, b"\x00\x00\x00\x01\x00", "prefer_direct: payload must be 4 bytes (node_id)"),
    ],
)
def test_sub_command_errors_use_official_texts(cmd, payload, message):
    with pytest.raises(IPCRequestError) as caught:
        ipc.decode_request(ipc.Frame(cmd, payload))
    assert caught.value.message == message


def test_json_verbs_and_tags():
    assert ipc.decode_request(ipc.Frame(ipc.Cmd.SET_TAGS, b"null")) == ipc.SetTags(())
    with pytest.raises(IPCRequestError, match="set_tags: invalid JSON"):
        ipc.decode_request(ipc.Frame(ipc.Cmd.SET_TAGS, b"[1]"))
    with pytest.raises(IPCRequestError, match="sign_envelope: bad payload"):
        ipc.decode_request(ipc.Frame(ipc.Cmd.SIGN_ENVELOPE, b"{"))
    req = ipc.JsonRequest(ipc.Cmd.VERIFY_ENVELOPE, {"envelope": "e", "signature": "s", "max_skew_secs": 30})
    assert ipc.decode_request(one_frame(req.encode())) == req


def test_handshake_wait_timeout_is_capped_like_the_official_daemon():
    assert ipc.Handshake(ipc.HandshakeSub.WAIT, 5, timeout_ms=90_000).wait_seconds == 30.0


addrs = st.builds(Addr, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
data = st.binary(max_size=64)
tags = st.lists(text, max_size=3).map(tuple)
requests = st.one_of(
    st.builds(ipc.Bind, u16), st.builds(ipc.Unbind, u16), st.builds(ipc.Dial, addrs, u16),
    st.builds(ipc.Send, u32, data), st.builds(ipc.Close, u32), st.builds(ipc.SendTo, addrs, u16, data),
    st.builds(ipc.SendToConfirm, addrs, u16, data), st.builds(ipc.Broadcast, u16, u16, text, data),
    st.builds(ipc.Info), st.builds(ipc.Health), st.builds(ipc.Deregister), st.builds(ipc.RotateKey),
    st.builds(ipc.Cancel),
    st.builds(ipc.Handshake, st.sampled_from([ipc.HandshakeSub.PENDING, ipc.HandshakeSub.TRUSTED])),
    st.builds(ipc.Handshake, st.sampled_from([ipc.HandshakeSub.SEND, ipc.HandshakeSub.REJECT]), u32, text),
    st.builds(ipc.Handshake, st.sampled_from([ipc.HandshakeSub.APPROVE, ipc.HandshakeSub.REVOKE]), u32),
    st.builds(ipc.Handshake, st.just(ipc.HandshakeSub.WAIT), u32, timeout_ms=u32),
    st.builds(ipc.ResolveHostname, text.filter(bool)), st.builds(ipc.SetHostname, text),
    st.builds(ipc.SetVisibility, st.booleans()), st.builds(ipc.SetTags, tags), st.builds(ipc.SetWebhook, text),
    st.builds(ipc.Network, st.sampled_from([ipc.NetworkSub.LIST, ipc.NetworkSub.POLL_INVITES])),
    st.builds(ipc.Network, st.sampled_from([ipc.NetworkSub.LEAVE, ipc.NetworkSub.MEMBERS]), u16),
    st.builds(ipc.Network, st.just(ipc.NetworkSub.JOIN), u16, token=text),
    st.builds(ipc.Network, st.just(ipc.NetworkSub.INVITE), u16, node_id=u32),
    st.builds(ipc.Network, st.just(ipc.NetworkSub.RESPOND_INVITE), u16, accept=st.booleans()),
    st.builds(ipc.Managed, st.sampled_from([ipc.ManagedSub.STATUS, ipc.ManagedSub.CYCLE, ipc.ManagedSub.RECONCILE]),
              st.none() | u16),
    st.builds(ipc.Managed, st.just(ipc.ManagedSub.POLICY), u16, st.just(0)),
    st.builds(ipc.Managed, st.just(ipc.ManagedSub.POLICY), u16, st.just(1), token=text, body=data),
    st.builds(ipc.Managed, st.just(ipc.ManagedSub.MEMBER_TAGS), u16, st.just(0), node_id=u32),
    st.builds(ipc.Managed, st.just(ipc.ManagedSub.MEMBER_TAGS), u16, st.just(1), node_id=u32, tags=tags),
    st.builds(ipc.PreferDirect, u32),
)


@given(requests)
def test_request_round_trip(request):
    assert ipc.decode_request(one_frame(request.encode())) == request


replies = st.one_of(
    st.builds(ipc.PortReply, st.sampled_from([ipc.Cmd.BIND_OK, ipc.Cmd.UNBIND_OK]), u16),
    st.builds(ipc.ConnReply, st.sampled_from([ipc.Cmd.DIAL_OK, ipc.Cmd.CLOSE_OK]), u32),
    st.builds(ipc.Accept, u16, u32, addrs, u16), st.builds(ipc.Recv, u32, data),
    st.builds(ipc.RecvFrom, addrs, u16, u16, data), st.builds(ipc.Error, text, u16),
    st.builds(ipc.EmptyReply, st.sampled_from([ipc.Cmd.SEND_TO_OK, ipc.Cmd.BROADCAST_OK])),
    st.builds(ipc.JsonReply, st.sampled_from(sorted(ipc.JSON_REPLIES)),
              st.dictionaries(text, st.none() | st.booleans() | st.integers(-2**53, 2**53) | text, max_size=5)),
)


@given(replies)
def test_reply_round_trip(reply):
    assert ipc.decode_reply(one_frame(reply.encode())) == reply


@given(st.integers(0, 255), st.binary(max_size=40))
def test_garbage_requests_raise_only_typed_errors(cmd, payload):
    try:
        ipc.decode_request(ipc.Frame(cmd, payload))
    except IPCRequestError:
        pass


@given(st.integers(0, 255), st.binary(max_size=40))
def test_garbage_replies_raise_only_typed_errors(cmd, payload):
    try:
        ipc.decode_reply(ipc.Frame(cmd, payload))
    except IPCMessageError:
        pass


@given(st.binary(max_size=300))
def test_garbage_streams_raise_only_frame_too_large(stream):
    decoder = ipc.FrameDecoder()
    decoder.feed(stream)
    try:
        for frame in decoder.events():
            try:
                ipc.decode_request(frame)
            except RemoteProtocolError:
                pass
    except IPCFrameTooLarge:
        pass


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_go_float_text_parses_back_to_the_same_float(value):
    assert float(gojson.format_float(value)) == value


@pytest.mark.parametrize(("value", "number"), [
    (0, True), (7, True), (10 ** 400, True), (1.5, True), (-0.0, True),
    (True, False), (False, False), (float("nan"), False), (float("inf"), False), (float("-inf"), False),
    ("1", False), (None, False), ([1], False)])
def test_is_number_means_a_json_number_as_go_reads_one(value, number):
    assert gojson.is_number(value) is number
