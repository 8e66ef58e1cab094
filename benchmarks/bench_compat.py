"""Compat transport, our daemon against the official 1.18 daemon, through the same pilot-rendezvous, same run.

Run (root, iproute2, iptables): .venv/bin/python benchmarks/bench_compat.py [--mib 16] [--pings 10] [--rounds 3]

The topology is the compat tests' lab (sidecar/tests/netlab.py: a rendezvous namespace with pilot-rendezvous on
TLS/443 and an official UDP peer); the measurement is the test
``test_daemon_compat.py::test_compat_python_vs_go_through_the_same_rendezvous``, run here with larger sizes:
an official compat daemon and ours ping the peer (`pilotctl ping`, the first round keys the tunnel and is
left out) and `pilotctl bench` to it, interleaved round by round; the same pair over UDP is the reference for
how much is the compat link's. Best round of each is kept. Prints ours/official for RTT (goal <= 1.2) and
for throughput (goal >= 1.0).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST = "sidecar/tests/test_daemon_compat.py::test_compat_python_vs_go_through_the_same_rendezvous"
LINE = re.compile(r"FIGURES (\w+) py/go: rtt_p50_ms py=([\d.]+) go=([\d.]+) ratio=([\d.]+); "
                  r"bench (\d+) MiB total_mbps py=([\d.]+) go=([\d.]+) ratio=([\d.]+)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=16, help="pilotctl bench size per round (MiB)")
    ap.add_argument("--pings", type=int, default=10, help="pilotctl ping count per round")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best kept)")
    args = ap.parse_args()
    env = {**os.environ, "PILOTMESH_BENCH_MIB": str(args.mib), "PILOTMESH_BENCH_PINGS": str(args.pings),
           "PILOTMESH_BENCH_ROUNDS": str(args.rounds), "PILOTMESH_BENCH_TIMEOUT": "3600"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", TEST], cwd=ROOT,
                         env=env, capture_output=True, text=True)
    rows = LINE.findall(out.stdout)
    if out.returncode or not rows:
        print(out.stdout[-4000:], out.stderr[-2000:], sep="\n", file=sys.stderr)
        return 1
    print(f"{'path':<8}{'metric':<22}{'official':>10}{'ours':>10}{'ours/official':>16}{'goal':>8}")
    for path, py_rtt, go_rtt, rtt_ratio, mib, py_tp, go_tp, tp_ratio in rows:
        print(f"{path:<8}{'ping_rtt_p50_ms':<22}{go_rtt:>10}{py_rtt:>10}{rtt_ratio:>16}{'<=1.2':>8}")
        print(f"{path:<8}{f'bench_{mib}MiB_mibps':<22}{go_tp:>10}{py_tp:>10}{tp_ratio:>16}{'>=1.0':>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
