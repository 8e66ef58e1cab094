"""pilotmesh-controlplane: install | up | down | status  (a real local Kubernetes without Docker)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .cluster import ControlPlane
from .tools import ToolsMissing, Toolset, cache_dir, install


def _workdir(name: str) -> Path:
    return cache_dir() / "clusters" / name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pilotmesh-controlplane", description=__doc__)
    ap.add_argument("--name", default="default", help="cluster name (state under $PILOTMESH_CACHE/clusters/NAME)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("install", help="build/install etcd, kube-apiserver, controller-manager, scheduler, kwok, helm")
    up = sub.add_parser("up", help="start a fresh control plane and print how to use it")
    up.add_argument("--nodes", type=int, default=1, help="number of kwok fake Nodes (default 1)")
    sub.add_parser("down", help="stop every process of the cluster by pid and delete its state")
    sub.add_parser("status", help="show which processes run")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except ToolsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    workdir = _workdir(args.name)
    if args.cmd == "install":
        install()
        return 0
    if args.cmd == "up":
        if (workdir / "state.json").exists() and any(ControlPlane.attach(workdir).running().values()):
            print(f"error: cluster {args.name!r} already runs; `pilotmesh-controlplane --name {args.name} down` first",
                  file=sys.stderr)
            return 1
        started = time.monotonic()
        cp = ControlPlane(workdir, Toolset.find(), nodes=args.nodes)
        if workdir.exists():
            cp.down(remove=True)
        cp.up()
        print(f"control plane {args.name!r} up in {time.monotonic() - started:.1f}s: "
              f"Kubernetes {cp.version()} at {cp.server}")
        print(f"  export KUBECONFIG={cp.kubeconfig}")
        print("  kubectl get nodes")
        print(f"  logs: {workdir / 'logs'}   stop: pilotmesh-controlplane --name {args.name} down")
        return 0
    if not (workdir / "state.json").exists():
        print(f"no cluster named {args.name!r} (nothing under {workdir})")
        return 0 if args.cmd == "down" else 1
    cp = ControlPlane.attach(workdir)
    if args.cmd == "status":
        for name, up_ in cp.running().items():
            print(f"{name:26} {'running' if up_ else 'stopped'}")
        return 0
    killed = cp.down(remove=True)
    print(f"control plane {args.name!r} stopped" + (f" (had to SIGKILL: {', '.join(killed)})" if killed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
