"""Our Python pilot-daemon against the official 1.18 daemon, measured in the same run, same namespace.

Run (root, iproute2): python benchmarks/bench_daemon.py [--rounds 5] [--pings 20]
Everything runs inside a private network namespace with our pilot-rendezvous; the official binaries come
from PyPI pilotprotocol==1.18.0 (the test harness's cache, PILOTMESH_OFFICIAL_DIR). Prints per metric the
official figure, ours, and the ratio ours/official:
  start_to_socket_ms  exec -> IPC socket present (registered: both create it after registration)
  idle_rss_mib        resident memory 3 s after start, no traffic
  ping_rtt_p50_ms     official `pilotctl ping` (echo on port 7, one stream per round) to each daemon
  bench_*_mibps       `pilotctl bench` (encrypted stream through the echo service), Go->Go vs Python->Python;
                      bench's own figures ("send_mbps" = MiB/s of the upload, "total_mbps" with the echo back)
  floor_round_us      runtime_floor.py in the same namespace: a do-nothing AES-GCM responder in Go and in Python
                      asyncio, two exchanges per idle round like a ping; what any Python responder adds here
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import runtime_floor

OFFICIAL = Path(os.environ.get("PILOTMESH_OFFICIAL_DIR", Path.home() / ".cache/pilotmesh/official/1.18.0"))
BIN = OFFICIAL / "pilotprotocol" / "bin"
REGISTRY, BEACON = "127.0.0.1:9000", "127.0.0.1:9001"


class Namespace:
    def __init__(self) -> None:
        self.name = f"pm-bench-{secrets.token_hex(3)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        self.procs: list[subprocess.Popen] = []

    def spawn(self, argv: list[str], env: dict, log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], env=env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], env: dict) -> str:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], env=env, capture_output=True, text=True,
                              timeout=120).stdout

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        subprocess.run(["ip", "netns", "del", self.name])


def env_for(home: Path) -> dict:
    return {"HOME": str(home), "PATH": "/usr/bin:/bin", "PILOT_REGISTRY": REGISTRY, "PILOT_BEACON": BEACON,
            "PILOT_SOCKET": str(home / "pilot.sock"), "PILOT_TELEMETRY_URL": "", "PILOT_MOTD_URL": "",
            "PILOT_NO_SKILLINJECT": "1", "PILOT_PROXY": "off"}


def daemon_argv(kind: str, home: Path, name: str) -> list[str]:
    common = ["-socket", str(home / "pilot.sock"), "-registry", REGISTRY, "-beacon", BEACON,
              "-listen", "127.0.0.1:0", "-identity", str(home / "identity.json"), "-hostname", name, "-public",
              "-log-level", "warn"]
    if kind == "official":
        return [str(BIN / "pilot-daemon"), *common, "-telemetry-url", "", "-motd-feed-url", "", "-no-skillinject",
                "-proxy", "off"]
    return [sys.executable, "-m", "pilot_daemon", *common]


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(ns: Namespace, kind: str, root: Path, name: str) -> tuple[subprocess.Popen, Path, float]:
    home = root / name
    home.mkdir(parents=True, exist_ok=True)
    sock = home / "pilot.sock"
    t0 = time.perf_counter()
    proc = ns.spawn(daemon_argv(kind, home, name), env_for(home), home / "daemon.log")
    while not sock.exists():
        if proc.poll() is not None or time.perf_counter() - t0 > 20:
            raise SystemExit(f"{kind} daemon {name} did not start: {(home / 'daemon.log').read_text()[-2000:]}")
        time.sleep(0.001)
    return proc, home, (time.perf_counter() - t0) * 1000


def pilotctl(ns: Namespace, home: Path, *args: str) -> dict:
    out = ns.run([str(BIN / "pilotctl"), "--json", *args], env_for(home))
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return {"status": "error", "error": out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5, help="daemon starts per kind (median reported)")
    ap.add_argument("--pings", type=int, default=10, help="pilotctl ping rounds per batch")
    ap.add_argument("--batches", type=int, default=4, help="interleaved ping batches per target")
    ap.add_argument("--floor-rounds", type=int, default=20, help="runtime floor rounds (1 s apart)")
    ap.add_argument("--bench-mib", type=int, default=16, help="pilotctl bench size (MiB), same-kind pairs")
    args = ap.parse_args()
    if not (BIN / "pilot-daemon").exists():
        raise SystemExit(f"official binaries missing in {BIN}: run the daemon tests once, or pip install "
                         f"--target {OFFICIAL} pilotprotocol==1.18.0")
    ns = Namespace()
    root = Path(tempfile.mkdtemp(prefix="pm-bench-"))
    figures: dict[str, dict[str, float]] = {}
    batch_ratios: list[float] = []
    try:
        rdv_log = root / "rendezvous.log"
        rdv = ns.spawn([sys.executable, "-m", "pilot_rendezvous", "-registry-listen", REGISTRY, "-beacon-listen",
                        BEACON, "-db", ":memory:", "-log-level", "info"], env_for(root), rdv_log)
        deadline = time.monotonic() + 30
        while b"pilot-rendezvous ready" not in rdv_log.read_bytes():
            if rdv.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"pilot-rendezvous did not start: {rdv_log.read_text()[-2000:]}")
            time.sleep(0.05)
        for kind in ("official", "ours"):
            starts, rss = [], []
            for i in range(args.rounds):
                proc, home, ms = start(ns, kind, root, f"{kind}-{i}")
                starts.append(ms)
                time.sleep(3.0)
                rss.append(rss_mib(proc.pid))
                ns.stop(proc)
            figures.setdefault("start_to_socket_ms", {})[kind] = statistics.median(starts)
            figures.setdefault("idle_rss_mib", {})[kind] = statistics.median(rss)
        pinger, pinger_home, _ = start(ns, "official", root, "pinger")
        targets = {kind: start(ns, kind, root, f"target-{kind}")[1] for kind in ("official", "ours")}
        addresses = {kind: pilotctl(ns, home, "info").get("data", {}).get("address", "")
                     for kind, home in targets.items()}
        rtts: dict[str, list[float]] = {"official": [], "ours": []}
        for _ in range(args.batches):   # interleaved batches: both targets see the same machine load
            batch: dict[str, list[float]] = {}
            for kind, address in addresses.items():
                reply = pilotctl(ns, pinger_home, "ping", address, "--count", str(args.pings))
                got = [r["rtt_ms"] for r in (reply.get("data") or {}).get("results") or [] if "rtt_ms" in r]
                if not got:
                    print(f"ping to the {kind} daemon failed: {json.dumps(reply)[:300]}", file=sys.stderr)
                rtts[kind] += got[1:]   # the first round includes the key exchange
                batch[kind] = got[1:]
            if all(batch.get(kind) for kind in addresses):
                batch_ratios.append(statistics.median(batch["ours"]) / statistics.median(batch["official"]))
        for kind, values in rtts.items():
            figures.setdefault("ping_rtt_p50_ms", {})[kind] = statistics.median(values) if values else float("nan")
        for kind in ("official", "ours"):   # same-kind pairs: Go -> Go and Python -> Python, echo on port 7
            client_home = start(ns, kind, root, f"bench-client-{kind}")[1]
            reply = pilotctl(ns, client_home, "bench", addresses[kind], str(args.bench_mib), "--timeout", "300s")
            data = reply.get("data") or {}
            if not data.get("complete"):
                print(f"bench {kind}->{kind} failed: {json.dumps(reply)[:300]}", file=sys.stderr)
            figures.setdefault("bench_send_mibps", {})[kind] = data.get("send_mbps", float("nan"))
            figures.setdefault("bench_total_mibps", {})[kind] = data.get("total_mbps", float("nan"))
        try:
            floor = runtime_floor.measure(ns, rounds=args.floor_rounds, gap_ms=1000)
            figures["floor_round_us"] = {"official": floor["go"], "ours": floor["python"]}
        except SystemExit as exc:   # no Go toolchain: the daemon figures still stand
            print(f"runtime floor skipped: {exc}", file=sys.stderr)
    finally:
        ns.close()
    print(f"{'metric':<22}{'official':>12}{'ours':>12}{'ours/official':>16}")
    for metric, by in figures.items():
        off, ours = by.get("official", float("nan")), by.get("ours", float("nan"))
        print(f"{metric:<22}{off:>12.2f}{ours:>12.2f}{ours / off if off else float('nan'):>16.2f}")
    if batch_ratios:   # how much the machine moved the RTT ratio between batches of the same run
        print("ping ratio per batch: " + " ".join(f"{r:.2f}" for r in batch_ratios))
    ping, floor = figures.get("ping_rtt_p50_ms", {}), figures.get("floor_round_us", {})
    if len(ping) == 2 and len(floor) == 2:   # the same responder-side cost in absolute terms
        print(f"added per ping round: our daemon {1000 * (ping['ours'] - ping['official']):+.0f} us over the "
              f"official one; a do-nothing Python responder {floor['ours'] - floor['official']:+.0f} us over Go")
    return 0


if __name__ == "__main__":
    sys.exit(main())
