"""pytest fixtures on top of ControlPlane: ``kube`` (session-wide real cluster) and ``helm``.

Tests that use them carry ``@pytest.mark.kube`` / ``@pytest.mark.helm``. When the binaries are
missing the tests skip with the command that installs them -- except with ``CI=true``, where a
missing control plane is an error: tier-1 tests must never silently vanish in CI.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest

from .cluster import ControlPlane
from .tools import ToolsMissing, Toolset

_started: dict[str, object] = {}


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> None:
    """Skip locally; fail under CI=true, where every prerequisite must be present."""
    if _in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


@dataclasses.dataclass
class Kube:
    """What a test gets: the running control plane, its kubeconfig and a kubernetes ApiClient."""

    cp: ControlPlane
    kubeconfig: Path
    version: str

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def client(self):
        import kubernetes

        return kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig))

    def helm(self, helm: Path, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(helm), "--kubeconfig", str(self.kubeconfig), *args], capture_output=True,
                              text=True, check=check, timeout=timeout)


@pytest.fixture(scope="session")
def kube_tools() -> Toolset:
    try:
        return Toolset.find()
    except ToolsMissing as exc:
        unavailable(str(exc))
        raise  # unreachable: skip/fail raise


@pytest.fixture(scope="session")
def kube(kube_tools: Toolset, tmp_path_factory: pytest.TempPathFactory):
    cp = ControlPlane(tmp_path_factory.mktemp("controlplane"), kube_tools, nodes=2)
    cp.up()
    kube = Kube(cp, cp.kubeconfig, cp.version())
    _started["version"] = kube.version
    _started["up_seconds"] = cp.ports.get("up_seconds_x1000", 0) / 1000
    yield kube
    cp.down()


@pytest.fixture(scope="session")
def helm(kube_tools: Toolset) -> Path:
    if kube_tools.helm is None:
        unavailable("Helm 3 is not installed; run `make tools` (or `pilotmesh-controlplane install`)")
    out = subprocess.run([str(kube_tools.helm), "version", "--short"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("v3."), f"Helm 3 required, found {out.stdout.strip()}"
    return kube_tools.helm


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    stats = terminalreporter.stats
    kube_ran = sum(1 for key in ("passed", "failed", "error") for r in stats.get(key, [])
                   if getattr(r, "when", "call") == "call" and "kube" in getattr(r, "keywords", {}))
    if "version" in _started:
        terminalreporter.write_line(
            f"tier-1: {kube_ran} test(s) ran against a real kube-apiserver {_started['version']} "
            f"(control plane up in {_started['up_seconds']:.1f}s)")
    elif kube_ran == 0:
        terminalreporter.write_line("tier-1: no test ran against a real kube-apiserver")
