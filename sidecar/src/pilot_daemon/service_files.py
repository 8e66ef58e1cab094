"""Service definitions for hosts outside Kubernetes (pure): a systemd unit and a launchd LaunchAgent plist
that run ``pilot-daemon`` with the given flags, restarted on failure, with a persistent identity."""
from __future__ import annotations

import plistlib

UNIT_NAME = "pilot-daemon.service"
LAUNCHD_LABEL = "io.pilotmesh.pilot-daemon"
SYSTEM_STATE_DIR = "/var/lib/pilot"


def with_identity(flags: list[str], identity: str) -> list[str]:
    """``flags`` plus ``-identity PATH`` when none is given: a service must keep its node id across restarts."""
    names = {f.lstrip("-").split("=", 1)[0] for f in flags if f.startswith("-")}
    return flags if "identity" in names else [*flags, "-identity", identity]


def systemd_quote(arg: str) -> str:
    """One ExecStart word: ``%`` and ``$`` escaped for systemd, double-quoted when it holds spaces or quotes."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and not any(c in text for c in ' \t"\'\\;'):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_unit(exe: str, flags: list[str], *, user: bool) -> str:
    """A unit for ``/etc/systemd/system`` (``user=False``, state in /var/lib/pilot) or ``~/.config/systemd/user``."""
    exec_start = " ".join(systemd_quote(a) for a in (exe, *flags))
    lines = [
        "[Unit]",
        "Description=Pilot Protocol daemon (PilotMesh pilot-daemon)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        "Restart=on-failure",
        "RestartSec=2",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=10",
    ]
    if not user:
        lines += [f"StateDirectory={SYSTEM_STATE_DIR.rsplit('/', 1)[1]}", f"Environment=HOME={SYSTEM_STATE_DIR}",
                  "NoNewPrivileges=yes", "ProtectSystem=full"]
    lines += ["", "[Install]", f"WantedBy={'default.target' if user else 'multi-user.target'}", ""]
    return "\n".join(lines)


def launchd_plist(exe: str, flags: list[str], *, log_path: str) -> str:
    """A LaunchAgent (``~/Library/LaunchAgents``): started at login, restarted when it exits with an error."""
    doc = {
        "Label": LAUNCHD_LABEL,
        "ProgramArguments": [exe, *flags],
        "RunAtLoad": True,
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        "StandardOutPath": log_path,
        "StandardErrorPath": log_path,
        "ProcessType": "Background",
    }
    return plistlib.dumps(doc, sort_keys=False).decode()
