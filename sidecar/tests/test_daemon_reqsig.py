"""Request-signature envelopes (IPC 0x33 SignEnvelope / 0x35 VerifyEnvelope) with the official pilotctl: our daemon
signs what the official daemon verifies and the other way round, and both daemons give the same verdicts and
errors for the same bad input."""
from __future__ import annotations

import hashlib
import json
import struct

import pytest

from daemon_harness import RawIPC, our_daemons  # noqa: F401  (fixture)
from pilot_daemon.proto import ipc, reqsig

pytestmark = [pytest.mark.official, pytest.mark.timeout(120)]

AUDIENCE = "svc.example.io"


def ok(envelope: dict) -> dict:
    assert envelope.get("status") == "ok", envelope
    return envelope["data"]


def raw_json(d, cmd: ipc.Cmd, body: dict) -> tuple[int, dict | str]:
    """One JSON request over a bare IPC connection -> (reply command, parsed JSON or the error text)."""
    c = RawIPC(d.socket)
    try:
        payload = json.dumps(body).encode()
        c.send(struct.pack(">I", 1 + len(payload)) + bytes((cmd,)) + payload)
        frame = c.read_frame()
    finally:
        c.close()
    if frame[4] == ipc.Cmd.ERROR:
        return frame[4], frame[7:].decode()       # 0x0A, u16 code, text
    return frame[4], json.loads(frame[5:])


@pytest.fixture
def pair(rendezvous, official_daemons, our_daemons):
    rdv = rendezvous()
    return (official_daemons("go-sign", rdv.registry, rdv.beacon, "-public"),
            our_daemons("py-sign", rdv.registry, rdv.beacon, "-public"))


def test_envelopes_signed_by_one_daemon_verify_on_the_other(pair):
    go, ours = pair
    node = ours.info()["node_id"]
    signed = ok(ours.ctl("sign-request", "--audience", AUDIENCE, "--body", "hello envelope"))
    go_signed = ok(go.ctl("sign-request", "--audience", AUDIENCE, "--body", "hello envelope"))
    assert set(signed) == set(go_signed) == {"envelope", "signature", "address"}
    env = reqsig.parse(signed["envelope"])
    assert (env.node, env.audience, env.body_hash) == (node, AUDIENCE, hashlib.sha256(b"hello envelope").hexdigest())
    assert signed["address"] == ours.info()["address"]

    by_go = ok(go.ctl("verify-request", "--envelope", signed["envelope"], "--signature", signed["signature"]))
    assert by_go["valid"] is True and by_go["node_id"] == node, by_go
    first = ok(ours.ctl("verify-request", "--envelope", go_signed["envelope"], "--signature", go_signed["signature"]))
    go_own = ok(go.ctl("verify-request", "--envelope", go_signed["envelope"], "--signature", go_signed["signature"]))
    assert set(first) == set(go_own), (first, go_own)
    assert first["valid"] is True and first["node_id"] == go.info()["node_id"] and first["verified_via"] == "registry"
    again = ok(ours.ctl("verify-request", "--envelope", go_signed["envelope"], "--signature", go_signed["signature"]))
    assert again["verified_via"] == "cache"
    standing = ok(ours.ctl("verify-request", "--envelope", signed["envelope"], "--signature", signed["signature"],
                           "--standing"))
    assert standing["valid"] is True, standing


def test_bad_envelopes_get_the_official_verdicts_and_errors(pair):
    go, ours = pair
    signed = ok(ours.ctl("sign-request", "--audience", AUDIENCE, "--body-hash", "ab" * 32))
    text, sig = signed["envelope"], signed["signature"]
    parts = text.split("|")
    stale = "|".join([*parts[:2], str(int(parts[2]) - 3600), *parts[3:]])
    forged = [
        (text.replace(AUDIENCE, "svc.other.io"), sig),     # another audience: the signature no longer matches
        (stale, sig),                                      # an hour old
        ("pilot-req-v2" + text[len("pilot-req-v1"):], sig),
        (text.replace("|" + parts[2] + "|", "|0" + parts[2] + "|"), sig),   # non-canonical timestamp
        (text + "|extra", sig),
        (text, "not base64!"),
    ]
    for envelope, signature in forged:
        body = {"envelope": envelope, "signature": signature}
        got, want = raw_json(ours, ipc.Cmd.VERIFY_ENVELOPE, body), raw_json(go, ipc.Cmd.VERIFY_ENVELOPE, body)
        assert got[0] == want[0] == ipc.Cmd.VERIFY_ENVELOPE_OK and got[1]["valid"] is False, (envelope, got, want)
        if signature == sig:                       # Go's base64 error text is its own
            assert got == want, (envelope, got, want)
    skew = {"envelope": stale, "signature": sig, "max_skew_secs": 7200}
    assert raw_json(ours, ipc.Cmd.VERIFY_ENVELOPE, skew) == raw_json(go, ipc.Cmd.VERIFY_ENVELOPE, skew), skew

    requests = [{}, {"audience": AUDIENCE}, {"audience": AUDIENCE, "body_hash": "zz"},
                {"audience": AUDIENCE, "body_hash": "ab" * 32, "body_b64": "aGk="},
                {"audience": "Upper.Case", "body_b64": "aGk="}, {"audience": AUDIENCE, "body_b64": "aGk=", "nonce": "x"}]
    for body in requests:
        got, want = raw_json(ours, ipc.Cmd.SIGN_ENVELOPE, body), raw_json(go, ipc.Cmd.SIGN_ENVELOPE, body)
        assert got == want and got[0] == ipc.Cmd.ERROR, (body, got, want)
    assert raw_json(ours, ipc.Cmd.VERIFY_ENVELOPE, {"envelope": text}) == \
        raw_json(go, ipc.Cmd.VERIFY_ENVELOPE, {"envelope": text})
    code, text_err = raw_json(ours, ipc.Cmd.SIGN_ENVELOPE, {"audience": 7, "body_b64": "aGk="})
    assert code == ipc.Cmd.ERROR and text_err.startswith("sign_envelope: bad payload: ")
    assert ours.info()["node_id"]          # still serving
