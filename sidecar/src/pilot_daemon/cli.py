"""`pilot-daemon`: the Python Pilot Protocol daemon, with the official 1.18 daemon's flags.

Settings: flags > ``PILOT_*`` environment > ``-config`` / ``~/.pilot/config.json`` > defaults. SIGTERM or
SIGINT drain and exit 0; ``-exit-on-file PATH`` exits 0 once PATH exists (Jobs without native sidecars).
``pilot-daemon service systemd|launchd [--install] [flags...]`` prints or installs a service definition.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from . import __version__, config, identity, logs
from .io.daemon import Daemon, DaemonError, watch_exit_file
from .io.ipc_server import SocketInUse
from .io.status import COMPAT_VERSION

log = logging.getLogger("pilot_daemon.cli")


def load_settings(argv: list[str], env: dict[str, str]) -> tuple[config.ParsedArgs, dict]:
    args = config.parse_argv(argv)
    path = args.values.get("config") or os.path.join(env.get("HOME", str(Path.home())), ".pilot", "config.json")
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        if args.values.get("config"):
            raise config.ConfigError(f"config file {path} not found") from None
        text = None
    except OSError as exc:
        raise config.ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return args, config.resolve(args, env, text)


async def run(settings: dict) -> int:
    ident = identity.load_or_create(settings["identity"])
    daemon = Daemon(settings, ident)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if settings["exit_on_file"]:
        daemon.spawn(watch_exit_file(settings["exit_on_file"], stop))
    start = loop.create_task(daemon.start())
    stopper = loop.create_task(stop.wait())
    await asyncio.wait({start, stopper}, return_when=asyncio.FIRST_COMPLETED)
    gc.freeze()   # start-up objects leave the collector's generations: shorter GC pauses on the packet path
    if start.done() and start.exception() is not None:
        stopper.cancel()
        await daemon.stop()
        raise start.exception()  # type: ignore[misc]
    await stopper
    start.cancel()
    log.info("shutting down")
    await daemon.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["service"]:     # pilot-daemon service systemd|launchd [--install] [flags...]
        from .service_cli import main as service_main
        return service_main(argv[1:])
    try:
        args, settings = load_settings(argv, dict(os.environ))
    except config.ConfigError as exc:
        print(f"{exc}\n{config.usage()}" if "not defined" in str(exc) else f"pilot-daemon: {exc}", file=sys.stderr)
        return 2
    if args.help:
        print(config.usage(), file=sys.stderr)
        return 0
    if settings["version"]:
        print(f"{COMPAT_VERSION} (pilotmesh {__version__})")
        return 0
    try:
        logs.setup(settings["log_format"], settings["log_level"])
    except ValueError as exc:
        print(f"pilot-daemon: {exc}", file=sys.stderr)
        return 2
    if settings["transport"] not in ("udp", "compat", "auto"):
        print(f"pilot-daemon: unknown -transport {settings['transport']!r}: use udp, compat or auto",
              file=sys.stderr)
        return 2
    for flag in config.FLAGS:
        if flag.ignored and flag.name in args.values:
            log.debug("flag -%s has no effect in this daemon", flag.name)
    try:
        return asyncio.run(run(settings))
    except (DaemonError, identity.IdentityError, SocketInUse, ValueError, OSError) as exc:
        log.error("pilot-daemon: %s", exc)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
