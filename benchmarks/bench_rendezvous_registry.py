"""Registry throughput and memory: N registered nodes, then lookup+resolve pairs over TCP.

Run: python benchmarks/bench_rendezvous_registry.py [--nodes 10000] [--pairs 5000] [--clients 8]
The server runs as a child process (one thread, one core); the client shares the machine, so
besides wall-clock rates it prints pairs per second of the server's own CPU time, and its RSS.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def frame(obj: dict) -> bytes:
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body


async def request(r: asyncio.StreamReader, w: asyncio.StreamWriter, obj: dict) -> dict:
    w.write(frame(obj))
    (n,) = struct.unpack(">I", await r.readexactly(4))
    return json.loads(await r.readexactly(n))


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


async def main(args: argparse.Namespace) -> None:
    db = os.path.join(tempfile.mkdtemp(), "bench.sqlite")
    port = 19400 + os.getpid() % 500
    proc = subprocess.Popen([sys.executable, "-m", "pilot_rendezvous", "-registry-listen", f"127.0.0.1:{port}",
                             "-beacon-listen", "", "-db", db, "-log-level", "warning"])
    try:
        for _ in range(100):
            try:
                conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(args.clients)]
                break
            except OSError:
                await asyncio.sleep(0.1)
        keys = [Ed25519PrivateKey.generate() for _ in range(args.nodes)]
        signed = []
        for k in keys:
            pub = base64.b64encode(k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
            signed.append((k, {"type": "register", "listen_addr": "198.51.100.1:4000", "public_key": pub,
                               "signature": base64.b64encode(k.sign(f"register:198.51.100.1:4000:{pub}".encode())).decode()}))

        async def register(chunk, conn):
            return [(k, (await request(*conn, m))["node_id"]) for k, m in chunk]
        t = time.perf_counter()
        parts = await asyncio.gather(*(register(signed[i::args.clients], c) for i, c in enumerate(conns)))
        reg_s = time.perf_counter() - t
        nodes = [x for p in parts for x in p]
        k0, me = nodes[0]
        for k, nid in nodes[:1]:
            sig = base64.b64encode(k.sign(f"set_visibility:{nid}".encode())).decode()
            await request(*conns[0], {"type": "set_visibility", "node_id": nid, "public": True, "signature": sig})
        work = []
        for i in range(args.pairs):
            _, target = nodes[i % len(nodes)]
            work.append(({"type": "lookup", "node_id": target},
                          {"type": "resolve", "node_id": me, "requester_id": target,
                           "signature": base64.b64encode(nodes[i % len(nodes)][0].sign(
                               f"resolve:{target}:{me}".encode())).decode()}))

        async def drive(chunk, conn):
            for lk, rs in chunk:
                assert (await request(*conn, lk))["type"] == "lookup_ok"
                assert (await request(*conn, rs))["type"] == "resolve_ok"
        figures = []
        for label in ("cold", "warm"):      # warm: the same signed resolves again, as daemons repeat them
            t, c = time.perf_counter(), cpu_s(proc.pid)
            await asyncio.gather(*(drive(work[i::args.clients], c) for i, c in enumerate(conns)))
            wall, cpu = time.perf_counter() - t, cpu_s(proc.pid) - c
            figures.append(f"{label}: pairs/s wall={args.pairs / wall:.0f} per-server-cpu-s={args.pairs / cpu:.0f}")
        print(f"nodes={args.nodes} register/s={args.nodes / reg_s:.0f} | " + " | ".join(figures)
              + f" | server_rss_mib={rss_kib(proc.pid) / 1024:.1f}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=10000)
    p.add_argument("--pairs", type=int, default=5000)
    p.add_argument("--clients", type=int, default=8)
    asyncio.run(main(p.parse_args()))
