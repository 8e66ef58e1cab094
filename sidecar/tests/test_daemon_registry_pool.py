"""The daemon's registry client against a registry on a real 127.0.0.1 socket that answers some requests slowly:
a slow request does not hold up the others, no more than POOL_SIZE connections are open, idle ones are reused, and
a connection the registry closed while idle is replaced without the caller noticing."""
from __future__ import annotations

import asyncio
import json
import struct

import pytest

from pilot_daemon.io.registry_client import POOL_SIZE, RegistryClient
from pilot_daemon.proto import registry as reg

pytestmark = pytest.mark.timeout(30)


class SlowRegistry:
    """Lock-step ``[u32][JSON]`` server: ``{"seconds": s}`` waits s before answering, ``{"type": "fail",
    "error": text}`` gets an error reply."""

    def __init__(self) -> None:
        self.connections = 0
        self.open = 0
        self.peak = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return "127.0.0.1:%d" % self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.peak = max(self.peak, self.open)
        self.writers.append(writer)
        try:
            while True:
                (n,) = struct.unpack(">I", await reader.readexactly(4))
                msg = json.loads(await reader.readexactly(n))
                await asyncio.sleep(msg.get("seconds", 0))
                reply = ({"type": "error", "error": msg["error"]} if msg["type"] == "fail"
                         else {"type": msg["type"] + "_ok", "n": msg.get("n")})
                body = json.dumps(reply).encode()
                writer.write(struct.pack(">I", len(body)) + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    def drop_all(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    async def close(self) -> None:
        self.drop_all()
        self.server.close()
        await self.server.wait_closed()


async def _with_registry(body) -> None:
    server = SlowRegistry()
    client = RegistryClient(await server.start())
    try:
        await body(server, client)
    finally:
        await client.close()
        await server.close()


def test_a_slow_request_does_not_hold_up_the_others():
    async def body(server, client):
        slow = asyncio.create_task(client.request({"type": "slow", "seconds": 1.5}))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        replies = await asyncio.gather(*(client.request({"type": "lookup", "n": i}) for i in range(3)))
        assert [r["n"] for r in replies] == [0, 1, 2]
        assert loop.time() - t0 < 1.0 and not slow.done()
        assert (await slow)["type"] == "slow_ok"
    asyncio.run(_with_registry(body))


def test_connections_are_capped_and_reused():
    async def body(server, client):
        replies = await asyncio.gather(*(client.request({"type": "slow", "seconds": 0.05, "n": i})
                                         for i in range(4 * POOL_SIZE)))
        assert sorted(r["n"] for r in replies) == list(range(4 * POOL_SIZE))
        assert server.peak == POOL_SIZE
        before = server.connections
        for i in range(20):
            assert (await client.request({"type": "lookup", "n": i}))["n"] == i
        assert server.connections == before == POOL_SIZE      # sequential requests ride the idle connections
    asyncio.run(_with_registry(body))


def test_idle_connections_the_registry_closed_are_replaced():
    async def body(server, client):
        await asyncio.gather(*(client.request({"type": "slow", "seconds": 0.05}) for _ in range(3)))
        server.drop_all()             # e.g. the registry restarted or timed its idle clients out
        await asyncio.sleep(0.1)
        for i in range(3):
            assert (await client.request({"type": "lookup", "n": i}))["n"] == i
        assert client.failures == 1 and server.connections == 4     # one failed try, then a fresh connection
    asyncio.run(_with_registry(body))


def test_an_error_reply_keeps_the_connection():
    async def body(server, client):
        with pytest.raises(reg.RegistryError, match="node 9: node not found"):
            await client.request({"type": "fail", "error": "node 9: node not found"})
        assert (await client.request({"type": "lookup"}))["type"] == "lookup_ok"
        assert server.connections == 1
    asyncio.run(_with_registry(body))
