"""`pilot-rendezvous`: a self-hostable Pilot Protocol registry (TCP), beacon (UDP) and compat bridge
(WebSocket), with one TLS listener that routes registry and beacon by SNI."""
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
from .metrics import MetricsServer
from .registry import Registry
from .server import RendezvousServer, format_hostport, parse_hostport
from .store_sqlite import SQLiteStore
from .tls_frontend import RELOAD_INTERVAL, TLSFrontend, TLSSettings
from .tlsfiles import TLSConfigError, TLSFiles, ensure_self_signed

log = logging.getLogger("pilot_rendezvous.cli")

DEFAULT_DB = Path.home() / ".pilot" / "rendezvous.sqlite"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pilot-rendezvous", description=__doc__,
        epilog="Flags take one dash (Go style, like the official servers) or two. The TLS listener starts "
               "when -tls-cert/-tls-key or -tls-self-signed is given. Official daemons in compat mode: "
               "-transport compat -registry registry.<domain>:443 -compat-beacon wss://beacon.<domain>/v1/compat, "
               "trusting the CA through SSL_CERT_FILE (-tls-trust system) and for the registry "
               "-registry-trust system or -registry-fingerprint <the fingerprint logged at start>.")
    add = p.add_argument
    add("-registry-listen", "--registry-listen", default="0.0.0.0:9000", metavar="HOST:PORT",
        help="registry TCP listener ([IPv6]:PORT and :PORT work; empty disables) (default %(default)s)")
    add("-beacon-listen", "--beacon-listen", default="0.0.0.0:9001", metavar="HOST:PORT",
        help="beacon UDP listener (empty disables) (default %(default)s)")
    add("-beacon-advertise", "--beacon-advertise", default="", metavar="HOST:PORT",
        help="beacon address given to nodes in beacon_list and for relay-only peers "
             "(default: the beacon listener, unless it is a wildcard address)")
    add("-tls-listen", "--tls-listen", default="0.0.0.0:443", metavar="HOST:PORT",
        help="TLS listener for the registry and the compat bridge, routed by SNI (default %(default)s)")
    add("-tls-cert", "--tls-cert", default="", metavar="FILE",
        help="PEM certificate chain covering -registry-sni and -beacon-sni (reloaded when it changes)")
    add("-tls-key", "--tls-key", default="", metavar="FILE", help="PEM private key of -tls-cert")
    add("-tls-self-signed", "--tls-self-signed", default="", metavar="DIR",
        help="for labs: generate a CA (DIR/ca.pem, give it to clients) and a certificate for the SNI names "
             "in DIR, kept across restarts and renewed a week before expiry")
    add("-tls-reload-interval", "--tls-reload-interval", type=float, default=RELOAD_INTERVAL, metavar="SECONDS",
        help="how often the certificate files are checked for changes (default %(default)s)")
    add("-domain", "--domain", default="", metavar="DOMAIN",
        help="sets -registry-sni registry.DOMAIN and -beacon-sni beacon.DOMAIN")
    add("-registry-sni", "--registry-sni", default="", metavar="NAME",
        help="server name routed to the registry on the TLS listener (default registry.DOMAIN)")
    add("-beacon-sni", "--beacon-sni", default="", metavar="NAME",
        help="server name routed to HTTPS/WebSocket (/v1/compat, /healthz) (default beacon.DOMAIN); "
             "connections without a known SNI are routed by their first bytes")
    add("-metrics-listen", "--metrics-listen", default="", metavar="HOST:PORT",
        help="HTTP /healthz, /readyz and Prometheus /metrics, e.g. 127.0.0.1:9102 (empty disables, the default)")
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


def _sni_names(args: argparse.Namespace) -> tuple[str, str]:
    registry_sni = args.registry_sni or (f"registry.{args.domain}" if args.domain else "")
    beacon_sni = args.beacon_sni or (f"beacon.{args.domain}" if args.domain else "")
    return registry_sni, beacon_sni


def _tls_settings(args: argparse.Namespace) -> TLSSettings | None:
    if bool(args.tls_cert) != bool(args.tls_key):
        raise TLSConfigError("give both -tls-cert and -tls-key (or -tls-self-signed DIR)")
    if not (args.tls_cert or args.tls_self_signed):
        return None
    registry_sni, beacon_sni = _sni_names(args)
    if args.tls_cert:
        files = TLSFiles(Path(args.tls_cert), Path(args.tls_key))
    else:
        names = [n for n in (registry_sni, beacon_sni) if n] or ["localhost", "127.0.0.1"]
        files = ensure_self_signed(Path(args.tls_self_signed), names)
        log.info("lab CA in use: give clients its certificate", extra={"ca": str(Path(args.tls_self_signed) /
                                                                             "ca.pem")})
    return TLSSettings(parse_hostport(args.tls_listen), files, registry_sni, beacon_sni,
                       reload_interval=args.tls_reload_interval)


async def serve(args: argparse.Namespace) -> int:
    tls_settings = _tls_settings(args)
    if args.db != ":memory:":
        Path(args.db).parent.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(args.db)
    registry = Registry(store, beacon_addr=_advertised_beacon(args), admin_token=args.admin_token)
    server = RendezvousServer(
        registry, Beacon(),
        registry_listen=parse_hostport(args.registry_listen) if args.registry_listen else None,
        beacon_listen=parse_hostport(args.beacon_listen) if args.beacon_listen else None)
    tls = TLSFrontend(server, tls_settings) if tls_settings else None
    metrics = MetricsServer(server, parse_hostport(args.metrics_listen), tls) if args.metrics_listen else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        if tls is not None:
            await tls.start()
        if metrics is not None:
            await metrics.start()
        log.info("pilot-rendezvous ready", extra={"db": args.db, "nodes": store.node_count(),
                                                  "version": __version__})
        await stop.wait()
        log.info("shutting down")
    finally:
        if metrics is not None:
            await metrics.stop()
        if tls is not None:
            await tls.stop()
        await server.stop()
        store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.log_format, args.log_level)
    try:
        for flag in ("registry_listen", "beacon_listen", "beacon_advertise", "tls_listen", "metrics_listen"):
            if getattr(args, flag):
                parse_hostport(getattr(args, flag))
    except ValueError as err:
        print(f"pilot-rendezvous: {err}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(serve(args))
    except TLSConfigError as err:
        log.error("cannot start: %s", err)
        return 1
    except OSError as err:
        log.error("cannot start: %s (is the port in use, or the database path writable?)", err)
        return 1


if __name__ == "__main__":
    sys.exit(main())
