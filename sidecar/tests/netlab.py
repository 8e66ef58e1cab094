"""A two-namespace lab for transport tests: a "pod" namespace joined by a veth pair to the "rendezvous"
namespace (the ``netns`` fixture's), with an optional default-deny egress firewall in the pod.

  rendezvous ns (10.77.0.1): pilot-rendezvous (registry 9000, beacon UDP 9001, TLS 443 routed by SNI),
                             official daemons (UDP or compat)
  pod ns        (10.77.0.2): our daemon; ``only_443()`` drops all UDP and every TCP port but 443
Both namespaces resolve registry.pilot.test and beacon.pilot.test to 10.77.0.1 (/etc/netns hosts files), and an
https proxy's name (``start_proxy(tls_name=...)``) once it is started.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_harness import OurDaemon
from pilot_harness import NetNS, Rendezvous, missing, sockets_of, wait_for
from pilot_rendezvous.tlsfiles import make_leaf, write_pair

RDV_IP, POD_IP = "10.77.0.1", "10.77.0.2"
REG, BEA, TLS_PORT, PROXY_PORT = "registry.pilot.test", "beacon.pilot.test", 443, 3128
PROXY_NAME = "proxy.pilot.test"
COMPAT_FLAGS = ("-transport", "compat", "-compat-beacon", f"wss://{BEA}/v1/compat")


def ok(envelope: dict) -> dict:
    assert envelope.get("status") == "ok", envelope
    return envelope["data"]


def rtts(ping: dict) -> list[float]:
    assert not ping.get("timeout") and ping.get("results"), ping
    assert all("rtt_ms" in r for r in ping["results"]), ping
    return [r["rtt_ms"] for r in ping["results"]]


class PodLab:
    def __init__(self, rdv_ns: NetNS, official_daemons, official_bin: Path, tmp_path: Path) -> None:
        if subprocess.run(["iptables", "-V"], capture_output=True).returncode:
            missing("iptables is needed for the egress firewall (apt-get install iptables)")
        self.r, self.officials, self.bin, self.dir = rdv_ns, official_daemons, official_bin, tmp_path
        self.p = NetNS(f"pm-pod-{secrets.token_hex(4)}")
        subprocess.run(["ip", "netns", "add", self.p.name], check=True, capture_output=True)
        # no IPv6 duplicate address detection in the pod: the veth's link-local address is final when the link comes
        # up, not ~2 s later (a late address event would make an auto daemon re-probe in the middle of a test)
        self.p.run(["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"])
        for argv in (["ip", "-n", self.p.name, "link", "set", "lo", "up"],
                     ["ip", "-n", self.r.name, "link", "add", "vr", "type", "veth", "peer", "name", "vp",
                      "netns", self.p.name],
                     ["ip", "-n", self.r.name, "addr", "add", f"{RDV_IP}/24", "dev", "vr"],
                     ["ip", "-n", self.p.name, "addr", "add", f"{POD_IP}/24", "dev", "vp"],
                     ["ip", "-n", self.r.name, "link", "set", "vr", "up"],
                     ["ip", "-n", self.p.name, "link", "set", "vp", "up"]):
            subprocess.run(argv, check=True, capture_output=True)
        self.names = {REG: RDV_IP, BEA: RDV_IP}
        for ns in (self.r, self.p):
            ns.hosts(self.names)
        self.tls_dir = tmp_path / "tls"
        self.rdv = Rendezvous(self.r, tmp_path, registry=f"{RDV_IP}:9000", beacon=f"{RDV_IP}:9001",
                              flags=["-tls-listen", f"{RDV_IP}:{TLS_PORT}", "-tls-self-signed", str(self.tls_dir),
                                     "-domain", "pilot.test", "-metrics-listen", f"{RDV_IP}:9102"]).start()
        self.ca = str(self.tls_dir / "ca.pem")
        self.ours: list[OurDaemon] = []

    # -- firewall in the pod --------------------------------------------------------------------
    def ipt(self, *args: str) -> str:
        proc = self.p.run(["iptables", *args])
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def only_443(self, port: int = TLS_PORT) -> None:
        """Default-deny egress: loopback and TCP to ``port`` (443) of the rendezvous side only; the rest dropped."""
        self.ipt("-F", "OUTPUT")
        self.ipt("-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT")
        self.ipt("-A", "OUTPUT", "-p", "tcp", "-d", RDV_IP, "--dport", str(port), "-j", "ACCEPT")
        self.ipt("-A", "OUTPUT", "-p", "udp", "-j", "DROP")
        self.ipt("-A", "OUTPUT", "-j", "DROP")

    def open_egress(self) -> None:
        self.ipt("-F", "OUTPUT")

    def counters(self) -> dict[str, int]:
        """Packets per OUTPUT rule: {'lo', 'tcp443', 'udp_drop', 'other_drop'}."""
        rows = [line.split() for line in self.ipt("-L", "OUTPUT", "-v", "-n", "-x").splitlines()[2:] if line.strip()]
        names = ("lo", "tcp443", "udp_drop", "other_drop")
        return {name: int(row[0]) for name, row in zip(names, rows)}

    # -- daemons ----------------------------------------------------------------------------------
    def ours_in_pod(self, name: str, *flags: str, registry: str = f"{REG}:{TLS_PORT}", wait: bool = True,
                    env: dict[str, str] | None = None) -> OurDaemon:
        home = self.dir / name
        home.mkdir(exist_ok=True)
        d = OurDaemon(self.p, self.bin, home, registry, self.rdv.beacon,
                      extra_env={"SSL_CERT_FILE": self.ca, "PILOT_REGISTRY": self.rdv.registry, **(env or {})})
        d.proc = self.p.spawn(d.argv(name, "-listen", f"{POD_IP}:0", "-public", *flags), env=d.env(), log=d.log)
        self.ours.append(d)
        # pilotctl runs beside the rendezvous: its own registry look-ups speak plain TCP/9000, which the pod's
        # firewall drops; the IPC socket is a file, reachable from any namespace. The daemon stays in the pod.
        d.ns = self.r
        if wait:
            wait_for(lambda: d.proc.poll() is not None or d.socket.exists(), 30, f"our daemon {name}'s socket")
            assert d.proc.poll() is None, f"our pilot-daemon {name} exited: {d.log.read_text()[-3000:]}"
        return d

    def official_udp(self, name: str, port: int = 4000):
        """A fixed port: with a specific -listen host the official daemon registers the flag's port (0) as is."""
        return self.officials(name, self.rdv.registry, self.rdv.beacon, "-listen", f"{RDV_IP}:{port}", "-public")

    def official_compat(self, name: str, *flags: str):
        return self.officials(name, f"{REG}:{TLS_PORT}", self.rdv.beacon, *COMPAT_FLAGS, "-public", *flags,
                              env={"SSL_CERT_FILE": self.ca, "PILOT_REGISTRY": self.rdv.registry})

    def start_proxy(self, credentials: str = "", port: int = PROXY_PORT, *, tls_name: str = "",
                    ca: tuple[bytes, bytes] | None = None) -> Path:
        """connect_proxy.py on the rendezvous side; returns its state dir (credentials, deny, log).
        ``tls_name``: an https proxy serving a certificate for that name, issued by the lab CA (or by ``ca``,
        another CA's (cert_pem, key_pem)); both namespaces then resolve the name to the rendezvous side."""
        state = self.dir / "proxy"
        state.mkdir(exist_ok=True)
        (state / "credentials").write_text(credentials)
        tls_args: list[str] = []
        if tls_name:
            issuer = ca or ((self.tls_dir / "ca.pem").read_bytes(), (self.tls_dir / "ca.key").read_bytes())
            write_pair(state / "tls.crt", state / "tls.key", *make_leaf(*issuer, [tls_name]))
            tls_args = ["--tls", str(state / "tls.crt"), str(state / "tls.key")]
            self.names[tls_name] = RDV_IP
            for ns in (self.r, self.p):
                ns.hosts(self.names)
        proc = self.r.spawn([sys.executable, str(Path(__file__).with_name("connect_proxy.py")), f"{RDV_IP}:{port}",
                             str(state), *tls_args], log=state / "log")
        wait_for(lambda: proc.poll() is not None or b"listening" in (state / "log").read_bytes(), 10, "the proxy")
        assert proc.poll() is None, (state / "log").read_text()
        return state

    def metrics(self) -> str:
        """The rendezvous' Prometheus text."""
        code = f"import urllib.request as u; print(u.urlopen('http://{RDV_IP}:9102/metrics').read().decode())"
        proc = self.r.run([sys.executable, "-c", code])
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def close(self) -> None:
        self.p.close()

    def events(self, log: Path) -> list[dict]:
        out = []
        for line in log.read_text().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return out


def remote_ports(held: dict[str, list[tuple[str, str]]]) -> set[int]:
    return {int(remote.rsplit(":", 1)[1], 16) for _, remote in held["tcp"]}


@pytest.fixture
def lab(netns, official_daemons, official_bin, tmp_path):
    """A PodLab; import it into a test module: ``from netlab import lab  # noqa: F401``."""
    made = PodLab(netns, official_daemons, official_bin, tmp_path)
    yield made
    made.close()

