"""The runtime floor of the ping benchmark: a Go and a Python asyncio process doing nothing but answer
AES-256-GCM frames over UDP (``floor/``), probed side by side by one Go client with the same idle gaps as
``pilotctl ping``. Its ratio is the least a Python responder can add on this machine; bench_daemon prints it
next to the daemons' ping ratio, measured in the same run.

Run alone: python benchmarks/runtime_floor.py [--rounds 30] [--gap-ms 500]   (127.0.0.1 only; needs Go)
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Protocol

HERE = Path(__file__).resolve().parent / "floor"
GO_ADDR, PY_ADDR = "127.0.0.1:9071", "127.0.0.1:9072"


class Runner(Protocol):
    def spawn(self, argv: list[str], env: dict, log: Path) -> subprocess.Popen: ...
    def run(self, argv: list[str], env: dict) -> str: ...
    def stop(self, proc: subprocess.Popen) -> None: ...


class Local:
    """Runs on this host's 127.0.0.1 (bench_daemon passes its network namespace instead)."""

    def spawn(self, argv: list[str], env: dict, log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def run(self, argv: list[str], env: dict) -> str:
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600).stdout

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)


def build(workdir: Path) -> Path:
    binary = workdir / "floor"
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    done = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=HERE, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"building the Go floor responder failed (is Go installed?):\n{done.stderr}")
    return binary


def wait_udp_bound(port: int, proc: subprocess.Popen, runner: Runner, env: dict) -> None:
    deadline = time.monotonic() + 10
    while f":{port} " not in runner.run(["ss", "-Hlun"], env):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"floor responder on port {port} did not start")
        time.sleep(0.05)


def measure(runner: Runner, *, rounds: int = 30, gap_ms: int = 500) -> dict[str, float]:
    """p50 of one two-exchange round in microseconds: {"go": ..., "python": ...}."""
    with tempfile.TemporaryDirectory(prefix="pm-floor-") as tmp:
        workdir = Path(tmp)
        binary = build(workdir)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        procs = [runner.spawn([str(binary), "serve", GO_ADDR], env, workdir / "go.log"),
                 runner.spawn([sys.executable, str(HERE / "responder.py"), PY_ADDR], env, workdir / "py.log")]
        try:
            for proc, addr in zip(procs, (GO_ADDR, PY_ADDR)):
                wait_udp_bound(int(addr.rsplit(":", 1)[1]), proc, runner, env)
            out = runner.run([str(binary), "probe", str(gap_ms), str(rounds), GO_ADDR, PY_ADDR], env)
        finally:
            for proc in procs:
                runner.stop(proc)
    p50 = dict(line.split() for line in out.splitlines() if line.strip())
    return {"go": float(p50.get(GO_ADDR, "nan")), "python": float(p50.get(PY_ADDR, "nan"))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--gap-ms", type=int, default=500, help="idle time before each round")
    args = ap.parse_args()
    got = measure(Local(), rounds=args.rounds, gap_ms=args.gap_ms)
    print(f"floor round p50: go {got['go']:.0f} us, python asyncio {got['python']:.0f} us, "
          f"python/go {got['python'] / got['go']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
