"""Start, watch and stop the control plane's processes by pid, with bounded waits."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (never binds any other address)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start a detached process (own session, so Ctrl-C in a shell does not hit it); return its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env)
    return proc.pid


def alive(pid: int, binary: str | None = None) -> bool:
    """True when pid runs (and, if given, runs ``binary``: guards against a recycled pid)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                _reap(pid)
                return False
        if binary is not None:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read().split(b"\0", 1)[0].decode() == binary
        return True
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(pid: int, binary: str | None = None, timeout: float = 10.0) -> bool:
    """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns True if it had to kill."""
    if not alive(pid, binary):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid):
            return False
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not alive(pid):
            break
        time.sleep(0.02)
    return True


def wait_until(what: str, check, timeout: float, logs: list[Path] = (), interval: float = 0.1):
    """Poll ``check()`` until it returns a truthy value; on timeout raise with the log tails."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - any failure just means "not yet"
            last_error = exc
        time.sleep(interval)
    tails = "\n".join(f"--- {p.name} (last lines)\n{tail(p)}" for p in logs)
    raise TimeoutError(f"{what} not ready after {timeout:.0f}s (last error: {last_error})\n{tails}")


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
