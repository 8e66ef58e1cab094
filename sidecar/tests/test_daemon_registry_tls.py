"""Our daemon's registry client over TLS against pilot-rendezvous's TLS listener: pinned fingerprint,
system trust (SSL_CERT_FILE) with the server name checked, and a wrong pin refused."""
from __future__ import annotations

import json

import pytest

from daemon_harness import our_daemons  # noqa: F401  (fixture)
from pilot_harness import wait_for
from pilot_rendezvous.tlsfiles import make_ca, make_leaf, write_pair

pytestmark = pytest.mark.timeout(90)
REG, PORT = "registry.pilot.test", 443


@pytest.fixture
def tls_rendezvous(netns, rendezvous, tmp_path):
    d = tmp_path / "tls"
    d.mkdir()
    ca = make_ca("pilotmesh daemon test CA")
    (d / "ca.pem").write_bytes(ca[0])
    write_pair(d / "tls.crt", d / "tls.key", *make_leaf(*ca, [REG]))
    netns.hosts({REG: "127.0.0.1"})
    rdv = rendezvous(flags=["-tls-listen", f"127.0.0.1:{PORT}", "-tls-cert", str(d / "tls.crt"),
                            "-tls-key", str(d / "tls.key"), "-registry-sni", REG])
    events = [json.loads(line) for line in rdv.log.read_text().splitlines() if line.startswith("{")]
    fingerprint = next(e["fingerprint"] for e in events if e.get("msg") == "TLS listening")
    return rdv, fingerprint, d / "ca.pem"


def test_pinned_and_system_trust_register_and_a_wrong_pin_is_refused(tls_rendezvous, our_daemons):
    rdv, fingerprint, ca = tls_rendezvous
    plain = {"PILOT_REGISTRY": rdv.registry}   # pilotctl's own registry lookups speak plain TCP
    pinned = our_daemons("py-pinned", f"127.0.0.1:{PORT}", rdv.beacon, "-registry-tls",
                         "-registry-fingerprint", fingerprint.upper(), env=plain)
    assert pinned.info()["node_id"]
    system = our_daemons("py-system", f"{REG}:{PORT}", rdv.beacon, "-registry-tls", "-registry-trust", "system",
                         "-public", env={**plain, "SSL_CERT_FILE": str(ca)})
    assert system.info()["node_id"]
    assert pinned.ctl("find", "py-system")["data"]["node_id"] == system.info()["node_id"]

    bad = our_daemons("py-wrong-pin", f"127.0.0.1:{PORT}", rdv.beacon, "-registry-tls",
                      "-registry-fingerprint", "00" * 32, env=plain, wait=False)
    wait_for(lambda: "TLS fingerprint mismatch" in bad.log.read_text(), 15, "the pin to be refused")
    assert not bad.socket.exists()
