"""Admission latency of the injector at a steady 200 pod admissions/s, against a minimal baseline webhook.

Run on demand:  .venv/bin/python benchmarks/bench_injector_admission.py [--rate 200] [--seconds 10]

Two HTTPS servers on 127.0.0.1, each in its own process: the real `AdmissionEndpoint` (the injector's
POST /inject, with a Snapshot of 50 namespaces, 200 NetworkPolicies and one PilotMesh, transport `auto` so
every admission runs the NetworkPolicy analyzer), and a baseline that parses the AdmissionReview and
allows it unchanged. A paced client sends the same annotated pods to both, one server after the other,
and prints p50/p99 of the client-observed latency and of the time inside the handler, and the ratio.
Goal (issue: operator and sidecar injector): p99 <= 10 ms in the handler.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import ssl
import statistics
import tempfile
import time
from pathlib import Path

from aiohttp import ClientSession, TCPConnector, web

from pilotmesh_controlplane import pki, procs


def snapshot():
    from pilotmesh_operator.injector.snapshot import Snapshot
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{i}", "labels": {"team": str(i % 7)}}}
                  for i in range(50)]
    policies = []
    for i in range(50):
        ns = f"ns-{i}"
        policies.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": "default-deny", "namespace": ns},
                         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"] if i % 2 else ["Ingress"]}})
        policies.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                         "metadata": {"name": "allow-443", "namespace": ns},
                         "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                             {"ports": [{"protocol": "TCP", "port": 443}]},
                             {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}})
        for j in range(2):
            policies.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                             "metadata": {"name": f"app-{j}", "namespace": ns},
                             "spec": {"podSelector": {"matchLabels": {"app": f"svc-{j}"}}, "ingress": [
                                 {"from": [{"namespaceSelector": {"matchLabels": {"team": "1"}}}]}]}})
    mesh = {"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh",
            "metadata": {"name": "default", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}}
    return Snapshot.build([mesh], namespaces, policies, cluster_version=(1, 36))


def review_body(i: int) -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"uid-{i}", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": f"ns-{i % 50}",
        "operation": "CREATE", "object": {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "labels": {"app": "web"}, "annotations": {"pilot.io/inject": "true"}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1",
                                     "ports": [{"containerPort": 8080}]}]}}}}).encode()


def serve(kind: str, port: int, certdir: str, handler_times, ready) -> None:
    from pilotmesh_operator.injector.server import AdmissionEndpoint

    async def main():
        if kind == "injector":
            snap = snapshot()
            endpoint = AdmissionEndpoint(lambda: snap)
        else:
            async def endpoint(request):
                body = json.loads(await request.read())
                return web.json_response({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                          "response": {"uid": body["request"]["uid"], "allowed": True}})

        async def timed(request):
            start = time.perf_counter()
            resp = await endpoint(request)
            handler_times.append(time.perf_counter() - start)
            return resp
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.add_routes([web.post("/inject", timed)])
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f"{certdir}/srv.crt", f"{certdir}/srv.key")
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ctx).start()
        ready.set()
        await asyncio.Event().wait()
    asyncio.run(main())


async def drive(port: int, ca: str, rate: float, seconds: float) -> list[float]:
    ctx = ssl.create_default_context(cafile=ca)
    latencies: list[float] = []
    async with ClientSession(connector=TCPConnector(ssl=ctx, limit=64)) as session:
        async def one(i: int) -> None:
            start = time.perf_counter()
            async with session.post(f"https://127.0.0.1:{port}/inject", data=review_body(i),
                                    headers={"Content-Type": "application/json"}) as resp:
                body = await resp.json()
                assert body["response"]["allowed"], body
            latencies.append(time.perf_counter() - start)
        for i in range(20):                          # warm up connections
            await one(i)
        latencies.clear()
        tasks, start, n = [], time.perf_counter(), int(rate * seconds)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return latencies


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else float("nan")


def run(kind: str, certdir: str, rate: float, seconds: float) -> tuple[list[float], list[float]]:
    manager = multiprocessing.Manager()
    handler_times, ready = manager.list(), manager.Event()
    port = procs.free_port()
    server = multiprocessing.Process(target=serve, args=(kind, port, certdir, handler_times, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit(f"{kind} server did not start")
        client = asyncio.run(drive(port, f"{certdir}/ca.crt", rate, seconds))
        return client, list(handler_times)[20:]
    finally:
        server.terminate()
        server.join(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as certdir:
        ca = pki.CertificateAuthority("bench-ca")
        Path(certdir, "ca.crt").write_bytes(ca.cert_pem)
        ca.issue("srv", ips=("127.0.0.1",), server=True).write(Path(certdir), "srv")
        results = {kind: run(kind, certdir, args.rate, args.seconds) for kind in ("baseline", "injector")}
    print(f"{int(args.rate * args.seconds)} admissions at {args.rate:.0f}/s per server, 127.0.0.1, TLS")
    print(f"{'':10} {'client p50':>11} {'client p99':>11} {'handler p50':>12} {'handler p99':>12}   (ms)")
    for kind, (client, handler) in results.items():
        print(f"{kind:10} {pct(client, 50):11.2f} {pct(client, 99):11.2f} {pct(handler, 50):12.3f} "
              f"{pct(handler, 99):12.3f}")
    (bc, bh), (ic, ih) = results["baseline"], results["injector"]
    print(f"ratio injector/baseline: client p99 {pct(ic, 99) / pct(bc, 99):.2f}x, "
          f"handler p99 {pct(ih, 99) / pct(bh, 99):.1f}x")
    verdict = "meets" if pct(ih, 99) <= 10 else "misses"
    print(f"handler p99 {pct(ih, 99):.2f} ms {verdict} the 10 ms goal")


if __name__ == "__main__":
    main()
