"""`pilotmesh`: the user CLI and the operator/injector entry points.

Each subcommand lives in its own module exposing ``register(subparsers)``, which adds its parser and
sets ``func`` (called with the parsed args, returns the exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

# module names under pilotmesh_operator.commands, in the order `--help` lists them
COMMANDS: tuple[str, ...] = ("inject", "transport_verdict", "why", "status", "operator", "injector", "uninstall")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pilotmesh", description="Run Pilot Protocol on Kubernetes.")
    ap.add_argument("--version", action="version", version=f"pilotmesh {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").register(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "func", None):
        ap.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
