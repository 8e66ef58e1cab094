"""Compat through an HTTP CONNECT proxy that is the pod's only way out (egress allows only TCP to the
proxy): Basic auth from the URL, HTTPS_PROXY in auto, a 407 answered by re-running -proxy-cmd, a clear
error when the proxy refuses, and an https:// proxy (TLS to the proxy, the daemon's TLS inside it)."""
from __future__ import annotations

import json
import re

import pytest

from netlab import lab  # noqa: F401  (fixture)
from netlab import COMPAT_FLAGS, PROXY_NAME, PROXY_PORT, RDV_IP, ok, remote_ports, rtts, sockets_of
from pilot_harness import wait_for
from pilot_rendezvous.tlsfiles import make_ca

pytestmark = [pytest.mark.official, pytest.mark.timeout(60)]
PROXY = f"http://{RDV_IP}:{PROXY_PORT}"
HTTPS_PROXY = f"https://{PROXY_NAME}:{PROXY_PORT}"


def requests(state) -> list[dict]:
    return [json.loads(line) for line in (state / "log").read_text().splitlines() if '"target"' in line]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_compat_through_an_authenticating_proxy_is_the_only_way_out(lab, scheme):
    """https: TLS to the proxy (its certificate from the lab CA, for its name), the daemon's TLS to the
    rendezvous inside that (TLS in TLS)."""
    tls = scheme == "https"
    host = PROXY_NAME if tls else RDV_IP
    state = lab.start_proxy("alice:s3cret", tls_name=PROXY_NAME if tls else "")
    peer = lab.official_udp("go-udp")
    lab.only_443(port=PROXY_PORT)
    d = lab.ours_in_pod("py-proxied", *COMPAT_FLAGS, "-proxy", f"{scheme}://alice:s3cret@{host}:{PROXY_PORT}")
    info = d.info()
    assert info["transport"] == "compat" and info["transport_path"].endswith(
        f"via {scheme}://{host}:{PROXY_PORT} (up)"), info
    assert rtts(ok(d.ctl("ping", peer.info()["address"], "--count", "3", timeout=30)))
    held = sockets_of(d.proc.pid)
    assert held["udp"] == [] and remote_ports(held) == {PROXY_PORT}, held
    seen = requests(state)
    assert {r["target"] for r in seen} == {"registry.pilot.test:443", "beacon.pilot.test:443"}     # by name
    assert all(r["status"] == 200 and r["auth"] and r["tls"] == tls for r in seen), seen   # (inside TLS for https)
    fw = lab.counters()
    assert fw["tcp443"] > 0 and fw["udp_drop"] == 0 and fw["other_drop"] == 0, fw


def test_auto_uses_https_proxy_and_a_407_reruns_proxy_cmd(lab, tmp_path):
    state = lab.start_proxy("bob:new-password")
    peer = lab.official_udp("go-udp")
    lab.only_443(port=PROXY_PORT)
    cmd_out = tmp_path / "current-proxy-url"
    cmd_out.write_text(f"http://bob:new-password@{RDV_IP}:{PROXY_PORT}\n")
    d = lab.ours_in_pod("py-auto", "-transport", "auto", "-compat-beacon", "wss://beacon.pilot.test/v1/compat",
                        "-proxy", "auto", "-proxy-cmd", f"cat {cmd_out}",
                        env={"HTTPS_PROXY": f"http://bob:old-password@{RDV_IP}:{PROXY_PORT}", "NO_PROXY": "localhost"})
    assert d.info()["transport"] == "compat"
    assert rtts(ok(d.ctl("ping", peer.info()["address"], "--count", "2", timeout=30)))
    assert all(r["status"] == 200 for r in requests(state))     # -proxy-cmd gave the current credentials

    # the proxy restarts with a rotated password: the daemon's connections drop, the next CONNECT gets 407,
    # the daemon re-runs -proxy-cmd and reconnects
    (state / "credentials").write_text("bob:rotated")
    cmd_out.write_text(f"http://bob:rotated@{RDV_IP}:{PROXY_PORT}\n")
    (state / "kick").touch()
    wait_for(lambda: [r for r in requests(state) if r["status"] == 407], 20, "a 407 from the proxy")
    wait_for(lambda: any(e.get("msg") == "proxy credentials refreshed by -proxy-cmd" for e in lab.events(d.log))
             and any(e.get("msg") == "compat mode tunnel up" for e in lab.events(d.log)[-40:]), 30,
             "the daemon to refresh its credentials and reconnect")
    assert rtts(ok(d.ctl("ping", peer.info()["address"], "--count", "2", timeout=30)))


def test_a_refusing_proxy_is_reported_clearly(lab):
    state = lab.start_proxy()
    (state / "deny").write_text("registry.pilot.test\nbeacon.pilot.test\n")
    lab.only_443(port=PROXY_PORT)
    d = lab.ours_in_pod("py-refused", *COMPAT_FLAGS, "-proxy", PROXY, wait=False)
    wait_for(lambda: "refused CONNECT: 403 Forbidden" in d.log.read_text(), 20, "the refusal in the log")
    line = next(e["msg"] for e in lab.events(d.log) if e["msg"].startswith("registration failed"))
    assert (f"cannot reach registry.pilot.test:443: proxy {PROXY} refused CONNECT: 403 Forbidden "
            "(the proxy's policy forbids this destination") in line, line
    assert d.proc.poll() is None        # still trying, with backoff


def test_an_untrusted_https_proxy_is_named_and_retried(lab):
    state = lab.start_proxy(tls_name=PROXY_NAME, ca=make_ca("not the lab CA"))
    lab.only_443(port=PROXY_PORT)
    d = lab.ours_in_pod("py-untrusted-proxy", *COMPAT_FLAGS, "-proxy", HTTPS_PROXY, wait=False)

    def failures() -> list[str]:
        return [e["msg"] for e in lab.events(d.log) if e.get("msg", "").startswith("registration failed")]

    wait_for(lambda: len(failures()) >= 3, 20, "three registration attempts")
    why = re.compile(rf"cannot reach registry\.pilot\.test:443: proxy {re.escape(HTTPS_PROXY)} presented a TLS "
                     r"certificate that is not trusted: .*certificate.* "
                     r"\(set SSL_CERT_FILE to a bundle with the proxy's CA\)")
    assert all(why.search(m) for m in failures()), failures()
    delays = [float(re.search(r"retrying in ([0-9.]+)s", m).group(1)) for m in failures()]
    assert delays == sorted(delays) and delays[-1] > delays[0], delays      # backoff
    assert not requests(state)                              # no CONNECT sent to an untrusted proxy
    assert lab.counters()["tcp443"] > 0                     # it reached the proxy; its certificate was refused
    assert d.proc.poll() is None, d.log.read_text()[-2000:]
