"""Flags, environment, config file and identity file of our pilot-daemon (pure functions)."""
from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from hypothesis import given, strategies as st

from pilot_daemon import config, identity
from pilot_daemon.proto import registry as reg

# A throwaway identity written by the official pilot-daemon 1.18 (exact bytes of its file).
OFFICIAL_IDENTITY = (b'{\n  "private_key": "lnKUAHpooV2Jfw2qZyBDlKANj/kWNPNDP64wD4aQj+xqXjiVt/Y9nuONrI41x9tRnHJhp/DYUa8tIO4'
                     b'DVyJTeg==",\n  "public_key": "al44lbf2PZ7jjayONcfbUZxyYafw2FGvLSDuA1ciU3o="\n}')
OFFICIAL_OWNER = "6a5e3895b7f6@nodes.pilotprotocol.network"   # its account.json for that key


def settings(argv=(), env=None, text=None) -> dict:
    return config.resolve(config.parse_argv(list(argv)), env or {}, text)


def test_go_flag_syntax():
    s = settings(["-socket", "/a.sock", "--registry=10.0.0.1:9000", "-public", "-encrypt=false",
                  "-idle-timeout", "1m30s", "-syn-rate-limit=5", "-telemetry-url", ""])
    assert (s["socket"], s["registry"], s["public"], s["encrypt"]) == ("/a.sock", "10.0.0.1:9000", True, False)
    assert (s["idle_timeout"], s["syn_rate_limit"]) == (90.0, 5)
    args = config.parse_argv(["-public", "extra", "-hostname", "x"])
    assert args.rest == ["extra", "-hostname", "x"] and "hostname" not in args.values
    assert config.parse_argv(["-h"]).help
    for bad, text in ((["-nope"], "not defined: -nope"), (["-socket"], "needs an argument"),
                      (["-public=maybe"], "want a bool"), (["-keepalive", "5 minutes"], "want a duration")):
        with pytest.raises(config.ConfigError, match=text):
            config.parse_argv(bad)


def test_precedence_flag_env_config_default():
    cfg = json.dumps({"registry": "cfg:1", "beacon": "cfg:2", "hostname": "from-config", "encrypt": False})
    env = {"PILOT_REGISTRY": "env:1", "PILOT_HOSTNAME": ""}
    s = settings(["-registry", "flag:1"], env, cfg)
    assert (s["registry"], s["beacon"], s["hostname"], s["encrypt"]) == ("flag:1", "cfg:2", "from-config", False)
    assert settings([], env, cfg)["registry"] == "env:1"
    assert settings()["registry"] == config.DEFAULT_REGISTRY and settings()["transport"] == "udp"
    with pytest.raises(config.ConfigError, match="not valid JSON"):
        settings(text="{")
    with pytest.raises(config.ConfigError, match="config.json key"):
        settings(text='{"syn_rate_limit": "many"}')


@given(st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms", "us"])), min_size=1,
                max_size=4))
def test_durations_parse_like_go(parts):
    text = "".join(f"{n}{u}" for n, u in parts)
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    assert config.parse_duration(text) == pytest.approx(sum(n * unit[u] for n, u in parts))


def test_official_identity_file_loads_and_round_trips(tmp_path):
    ident = identity.parse(OFFICIAL_IDENTITY)
    assert ident.public_b64 == "al44lbf2PZ7jjayONcfbUZxyYafw2FGvLSDuA1ciU3o="
    assert ident.owner == OFFICIAL_OWNER
    assert ident.to_json() == OFFICIAL_IDENTITY          # byte-identical: files move between the daemons
    path = tmp_path / "sub" / "identity.json"
    made = identity.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert identity.load_or_create(path).public_b64 == made.public_b64
    assert identity.load_or_create(None).path is None


@pytest.mark.parametrize("data, text", [
    (b"not json", "bad identity file"), (b'{"public_key": "x"}', "bad identity file"),
    (b'{"private_key": "AAAA"}', "3 bytes"),
    (OFFICIAL_IDENTITY.replace(b"al44lbf2", b"bl44lbf2"), "does not match"),
])
def test_bad_identity_files_say_what_to_do(data, text):
    with pytest.raises(identity.IdentityError, match=text):
        identity.parse(data)


def test_registry_requests_carry_the_official_proofs():
    ident = identity.parse(OFFICIAL_IDENTITY)
    msg = reg.register(ident.sign_b64, "127.0.0.1:4000", ident.public_b64, ident.owner, "1.18.0")
    assert set(msg) == {"type", "listen_addr", "public_key", "owner", "signature", "version"}
    key = ident.key.public_key()
    key.verify(base64.b64decode(msg["signature"]), f"register:127.0.0.1:4000:{ident.public_b64}".encode())
    key.verify(base64.b64decode(reg.resolve(ident.sign_b64, 5, 9)["signature"]), b"resolve:5:9")
    key.verify(base64.b64decode(reg.request_handshake(ident.sign_b64, 5, 9, "hi")["signature"]), b"handshake:5:9")
    with pytest.raises(reg.RegistryError, match="registry: node not found"):
        reg.decode_reply(b'{"type":"error","error":"node not found"}')
    with pytest.raises(reg.RegistryError, match="no type"):
        reg.decode_reply(b'{"ok":true}')


def test_our_signed_strings_verify_the_official_daemons_captured_signatures():
    """Build each captured request again with a 'signer' that returns the text: the official signature verifies it."""
    import official_capture as oc
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(oc.capture()["daemon_ed25519_public_b64"]))
    echo = str   # the "signature" becomes the signed text itself
    builders = {
        "register": lambda m: reg.register(echo, m["listen_addr"], m["public_key"], m["owner"], m["version"]),
        "set_visibility": lambda m: reg.set_visibility(echo, m["node_id"], m["public"]),
        "set_hostname": lambda m: reg.set_hostname(echo, m["node_id"], m["hostname"]),
        "poll_handshakes": lambda m: reg.poll_handshakes(echo, m["node_id"]),
        "resolve": lambda m: reg.resolve(echo, m["requester_id"], m["node_id"]),
    }
    checked = 0
    for _, msg in oc.capture()["registry_log"]:
        build = builders.get(msg["type"])
        if build is None:
            continue
        ours = build(msg)
        assert set(ours) == set(msg), msg["type"]
        key.verify(base64.b64decode(msg["signature"]), ours["signature"].encode())
        checked += 1
    assert checked == 5
