"""The daemon's webhook sender against a real HTTP receiver on 127.0.0.1 (``webhook_sink``): order, ids and
signatures; 5xx retried and counted against the URL, 4xx not; the circuit breaker and its skips; a full queue
drops and counts; a slow or absent receiver never holds up the event loop; drain at close; set-webhook's check,
swap and URL file. Timings are scaled down through the sender's options (the official ones are in proto)."""
from __future__ import annotations

import asyncio
import json
import socket
import stat
import time
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from pilot_daemon.io.webhook import Sender, Webhook
from pilot_daemon.proto import webhook as wh
from webhook_sink import make_app

pytestmark = pytest.mark.timeout(30)
FAST = {"attempt_timeout": 0.3, "initial_backoff": 0.05, "cooldown": 0.5}


@asynccontextmanager
async def receiver(tmp_path):
    log = tmp_path / "sink.jsonl"
    runner = web.AppRunner(make_app(str(log)), access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]

    def requests() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        await runner.cleanup()


async def until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_events_arrive_in_order_signed_with_the_official_envelope(tmp_path):
    async def main():
        async with receiver(tmp_path) as (base, requests):
            node = {"id": 0}
            sender = Sender(base + "/ok/a", "s3cret", lambda: node["id"], **FAST)
            sender.emit("node.registered", {"address": "0:0000.0000.0007", "endpoint": "127.0.0.1:1"})
            node["id"] = 7
            for i in range(20):
                sender.emit("data.datagram", {"size": i})
            await sender.close()
            got = requests()
            assert len(got) == 21 and sender.delivered == 21
            for i, r in enumerate(got):
                doc = json.loads(r["body"])
                assert r["method"] == "POST" and r["path"] == "/ok/a"
                assert r["headers"]["X-Pilot-Signature-256"] == wh.signature("s3cret", r["body"].encode())
                assert r["headers"]["User-Agent"] == "Go-http-client/1.1"
                assert r["headers"]["Content-Type"] == "application/json" and "Accept" not in r["headers"]
                assert list(doc) == ["event_id", "event", "node_id", "timestamp", "data"]
                assert doc["event_id"] == i + 1 and doc["node_id"] == (0 if i == 0 else 7)
            assert [json.loads(r["body"])["data"].get("size") for r in got[1:]] == list(range(20))
    asyncio.run(main())


def test_server_errors_are_retried_then_open_the_circuit_client_errors_are_not(tmp_path):
    async def main():
        async with receiver(tmp_path) as (base, requests):
            failing = Sender(base + "/status/503/f", "", lambda: 1, **FAST)
            refused = Sender(base + "/status/404/c", "", lambda: 1, **FAST)
            for i in range(8):
                failing.emit("e", {"i": i})
                refused.emit("e", {"i": i})
            await until(lambda: failing.queue.qsize() == 0 and refused.queue.qsize() == 0)
            await asyncio.sleep(0.1)
            paths = [r["path"] for r in requests()]
            # 5 events x 3 attempts, then the circuit is open: the last 3 are skipped unsent
            assert paths.count("/status/503/f") == 15 and failing.circuit_skips == 3
            assert paths.count("/status/404/c") == 8 and refused.circuit_skips == 0   # no retry, no breaker
            await asyncio.sleep(FAST["cooldown"])
            failing.emit("probe", None)      # after the cooldown one event probes (and fails: open again)
            failing.emit("skipped", None)
            await failing.close()
            await refused.close()
            assert [r["path"] for r in requests()].count("/status/503/f") == 18 and failing.circuit_skips == 4
    asyncio.run(main())


def test_a_receiver_that_is_down_counts_like_server_errors(tmp_path):
    async def main():
        sender = Sender(f"http://127.0.0.1:{closed_port()}/x", "", lambda: 1, **FAST)
        for i in range(7):
            sender.emit("e", None)
        await until(lambda: sender.queue.qsize() == 0 and sender.circuit.open_until is not None)
        await sender.close()
        assert sender.delivered == 0 and sender.circuit_skips == 2 and sender.circuit.failures == 5
    asyncio.run(main())


def test_a_slow_receiver_never_holds_the_event_loop_and_a_full_queue_drops(tmp_path):
    async def main():
        async with receiver(tmp_path) as (base, requests):
            sender = Sender(base + "/sleep/5/s", "", lambda: 1, queue_size=16,
                            **{**FAST, "attempt_timeout": 3.0})
            worst = 0.0
            for i in range(40):
                t0 = time.monotonic()
                sender.emit("e", {"i": i})
                await asyncio.sleep(0.01)
                worst = max(worst, time.monotonic() - t0)
            assert worst < 0.2, worst              # emit never waits for the receiver
            # one event is in the worker's hands, 16 queued, the rest dropped
            assert sender.dropped == 40 - 16 - 1
            t0 = time.monotonic()
            await sender.close(timeout=0.5)       # the drain gives up: the receiver is too slow
            assert time.monotonic() - t0 < 2
    asyncio.run(main())


def test_set_webhook_checks_swaps_and_remembers_the_url(tmp_path):
    async def main():
        async with receiver(tmp_path) as (base, requests):
            home = tmp_path / "home"
            hook = Webhook("", "k", lambda: 3, home=str(home), **FAST)
            assert hook.url == "" and hook.stats() == (0, 0)
            hook.emit("dropped.silently", None)
            with pytest.raises(wh.WebhookURLError, match="link-local"):
                await hook.set_url("http://169.254.169.254/latest")
            await hook.set_url(base + "/ok/one")
            hook.emit("a", None)
            hook.emit("b", None)
            await hook.set_url(base + "/ok/two")      # the old URL's queue goes out first
            hook.emit("c", None)
            saved = home / ".pilot" / "webhook_url"
            assert saved.read_text() == base + "/ok/two" and stat.S_IMODE(saved.stat().st_mode) == 0o600
            again = Webhook("", "k", lambda: 3, home=str(home))     # a restart without -webhook reads the file
            assert again.url == base + "/ok/two"
            assert Webhook(base + "/ok/flag", "", lambda: 3, home=str(home)).url == base + "/ok/flag"
            await hook.set_url("")
            assert hook.url == "" and not saved.exists()
            got = [(r["path"], json.loads(r["body"])["event"], json.loads(r["body"])["event_id"]) for r in requests()]
            assert got == [("/ok/one", "a", 1), ("/ok/one", "b", 2), ("/ok/two", "c", 1)]
            assert all(r["headers"].get("X-Pilot-Signature-256") for r in requests())   # the secret stays
    asyncio.run(main())


def test_a_bad_saved_url_is_ignored_and_a_bad_flag_url_only_fails_its_posts(tmp_path):
    async def main():
        (tmp_path / ".pilot").mkdir()
        (tmp_path / ".pilot" / "webhook_url").write_text("ftp://nowhere/\n")
        assert Webhook("", "", lambda: 1, home=str(tmp_path)).url == ""
        hook = Webhook("ftp://nowhere/", "", lambda: 1, home=str(tmp_path), **FAST)   # as upstream: not checked
        hook.emit("e", None)
        await until(lambda: hook.sender.queue.qsize() == 0 and hook.sender.circuit.failures == 1)
        await hook.close()
        assert hook.sender.delivered == 0
    asyncio.run(main())


def test_heartbeats(tmp_path):
    async def main():
        async with receiver(tmp_path) as (base, requests):
            hook = Webhook(base + "/ok/h", "", lambda: 0x1234, home=str(tmp_path))
            task = asyncio.get_running_loop().create_task(hook.heartbeats(interval=0.05))
            await until(lambda: len(requests()) >= 2)
            task.cancel()
            await hook.close()
            doc = json.loads(requests()[0]["body"])
            assert doc["event"] == "agent.heartbeat"
            assert doc["data"] == {"address": "0:0000.0000.1234", "node_id": 0x1234}
    asyncio.run(main())


def test_no_running_loop_and_unencodable_data_are_not_errors(tmp_path):
    sender = Sender("http://127.0.0.1:9/", "", lambda: 1)
    sender.emit("e", None)          # outside a loop: queued, no task yet
    assert sender.queue.qsize() == 1 and sender.worker is None
    sender.emit("bad", {"path": tmp_path})      # not JSON: logged, not sent, not raised
    assert sender.queue.qsize() == 1
