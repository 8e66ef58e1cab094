"""`pilot-rendezvous`: a self-hostable Pilot Protocol registry (TCP) and beacon (UDP)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from . import __version__, logs
from .beacon_proto import Beacon
from .registry import Registry
from .server import RendezvousServer, format_hostport, parse_hostport
from .store_sqlite import SQLiteStore

log = logging.getLogger("pilot_rendezvous.cli")

DEFAULT_DB = Path.home() / ".pilot" / "rendezvous.sqlite"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilot-rendezvous", description=__doc__,
        epilog="Flags take one dash (Go style, like the official servers) or two. TLS/443 SNI routing and "
               "the WebSocket compat bridge are not in this release.")
    add = p.add_argument
    add("-registry-listen", "--registry-listen", default="0.0.0.0:9000", metavar="HOST:PORT",
        help="registry TCP listener ([IPv6]:PORT and :PORT work; empty disables) (default %(default)s)")
    add("-beacon-listen", "--beacon-listen", default="0.0.0.0:9001", metavar="HOST:PORT",
        help="beacon UDP listener (empty disables) (default %(default)s)")
    add("-beacon-advertise", "--beacon-advertise", default="", metavar="HOST:PORT",
        help="beacon address given to nodes in beacon_list and for relay-only peers "
             "(default: the beacon listener, unless it is a wildcard address)")
    add("-db", "--db", default=os.environ.get("PILOT_RENDEZVOUS_DB", str(DEFAULT_DB)), metavar="PATH",
        help="SQLite database file; ':memory:' keeps nothing across restarts "
             "(default $PILOT_RENDEZVOUS_DB or %(default)s)")
    add("-admin-token", "--admin-token", default=os.environ.get("PILOT_RENDEZVOUS_ADMIN_TOKEN", ""),
        metavar="TOKEN", help="enables admin operations such as create_network "
                              "(default $PILOT_RENDEZVOUS_ADMIN_TOKEN; empty disables them)")
    add("-log-format", "--log-format", choices=("text", "json"), default="text", help="log format (default text)")
    add("-log-level", "--log-level", choices=("debug", "info", "warning", "error"), default="info",
        help="log level (default info)")
    add("-version", "--version", action="version", version=f"pilot-rendezvous (pilotmesh) {__version__}")
    return p


def _advertised_beacon(args: argparse.Namespace) -> str:
    if args.beacon_advertise:
        return format_hostport(*parse_hostport(args.beacon_advertise))
    if not args.beacon_listen:
        return ""
    host, port = parse_hostport(args.beacon_listen)
    return "" if host in ("0.0.0.0", "::") else format_hostport(host, port)


async def serve(args: argparse.Namespace) -> int:
    if args.db != ":memory:":
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(args.db)
    registry = Registry(store, beacon_addr=_advertised_beacon(args), admin_token=args.admin_token)
    server = RendezvousServer(
        registry, Beacon(),
        registry_listen=parse_hostport(args.registry_listen) if args.registry_listen else None,
        beacon_listen=parse_hostport(args.beacon_listen) if args.beacon_listen else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        log.info("pilot-rendezvous ready", extra={"db": args.db, "nodes": store.node_count(),
                                                  "version": __version__})
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_format, args.log_level)
    try:
        for flag in ("registry_listen", "beacon_listen", "beacon_advertise"):
            if getattr(args, flag):
                parse_hostport(getattr(args, flag))
    except ValueError as err:
        print(f"pilot-rendezvous: {err}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(args))
    except OSError as err:
        log.error("cannot start: %s (is the port in use, or the database path writable?)", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
