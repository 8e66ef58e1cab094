"""``pilot-daemon service systemd|launchd [--install] [--path FILE] [--no-start] [--user] [-- daemon flags...]``

Prints the unit (systemd) or LaunchAgent plist (launchd) that runs this pilot-daemon with the given daemon
flags (checked as the daemon would check them); ``--install`` writes it (default: /etc/systemd/system as
root, else ~/.config/systemd/user; ~/Library/LaunchAgents) and starts it with systemctl / launchctl when
they are on PATH (``--no-start``: only write it, and print the commands).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import config, service_files

USAGE = ("usage: pilot-daemon service systemd|launchd [--install] [--path FILE] [--no-start] [--user] "
         "[--exe PATH] [--] [daemon flags...]")


def _exe() -> str:
    found = shutil.which("pilot-daemon")
    return os.path.realpath(found) if found else os.path.realpath(sys.argv[0])


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("systemd", "launchd"):
        print(USAGE, file=sys.stderr)
        return 2
    kind, rest = argv[0], argv[1:]
    install, start, path, exe = False, True, "", ""
    user = os.geteuid() != 0 if kind == "systemd" else True
    while rest and rest[0] in ("--install", "--path", "--no-start", "--user", "--exe", "--"):
        opt = rest.pop(0)
        if opt == "--":
            break
        if opt in ("--path", "--exe"):
            if not rest:
                print(f"pilot-daemon service: {opt} needs a value\n{USAGE}", file=sys.stderr)
                return 2
            value = rest.pop(0)
            path, exe = (value, exe) if opt == "--path" else (path, value)
        elif opt == "--install":
            install = True
        elif opt == "--no-start":
            start = False
        else:
            user = True
    try:
        parsed = config.parse_argv(rest)
    except config.ConfigError as exc:
        print(f"pilot-daemon service: {exc}", file=sys.stderr)
        return 2
    if parsed.rest:
        print(f"pilot-daemon service: unexpected argument {parsed.rest[0]!r}\n{USAGE}", file=sys.stderr)
        return 2
    home = Path.home()
    exe = exe or _exe()
    if kind == "systemd":
        state = home / ".pilot" if user else Path(service_files.SYSTEM_STATE_DIR)
        text = service_files.systemd_unit(exe, service_files.with_identity(rest, str(state / "identity.json")),
                                          user=user)
        target = Path(path) if path else ((home / ".config/systemd/user" if user else Path("/etc/systemd/system"))
                                          / service_files.UNIT_NAME)
        scope = ["--user"] if user else []
        commands = [["systemctl", *scope, "daemon-reload"],
                    ["systemctl", *scope, "enable", "--now", service_files.UNIT_NAME]]
    else:
        flags = service_files.with_identity(rest, str(home / ".pilot" / "identity.json"))
        text = service_files.launchd_plist(exe, flags, log_path=str(home / "Library/Logs/pilot-daemon.log"))
        target = Path(path) if path else home / "Library/LaunchAgents" / f"{service_files.LAUNCHD_LABEL}.plist"
        commands = [["launchctl", "load", "-w", str(target)]]
    if not install:
        sys.stdout.write(text)
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}")
    tool = commands[0][0]
    if not start or shutil.which(tool) is None:
        print("start it with:\n" + "\n".join("  " + " ".join(c) for c in commands))
        return 0
    for cmd in commands:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(f"pilot-daemon service: {' '.join(cmd)} failed: {done.stderr.strip()}", file=sys.stderr)
            return 1
    print(f"started: {' '.join(commands[-1])}")
    return 0
