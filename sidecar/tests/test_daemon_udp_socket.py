"""The daemon's UDP socket on real 127.0.0.1 sockets: bursts are drained in one batch, a lone datagram is
answered without a read that finds the socket empty, and nothing is left behind (empty datagrams included)."""
from __future__ import annotations

import asyncio
import socket

import pytest

from pilot_daemon.io.udp import BATCH, UDPSocket

pytestmark = pytest.mark.timeout(20)


class CountingSocket(socket.socket):
    """A real UDP socket that counts its reads."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_DGRAM)
        self.reads = 0

    def recvfrom(self, *args):
        self.reads += 1
        return super().recvfrom(*args)


async def _open() -> tuple[UDPSocket, CountingSocket, list, list]:
    sock = CountingSocket()
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    got: list[bytes] = []
    batches: list[int] = []
    udp = UDPSocket(sock, lambda data, addr: got.append(data), lambda: batches.append(len(got)))
    return udp, sock, got, batches


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.005)


def _sender() -> socket.socket:
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    out.setblocking(True)
    return out


def test_a_lone_datagram_is_handled_with_one_read_and_one_batch_end():
    async def main() -> None:
        udp, sock, got, batches = await _open()
        out = _sender()
        try:
            out.sendto(b"syn", udp.local)
            await _until(lambda: got)
            await asyncio.sleep(0.05)
            assert got == [b"syn"]
            assert batches == [1]
            assert sock.reads == 1      # no second read that only finds the socket empty
        finally:
            udp.close()
            out.close()
    asyncio.run(main())


def _deliver_burst(sent: list[bytes]) -> tuple[int, list[bytes], list[int]]:
    """Queue ``sent`` while nobody watches the socket, then let the daemon's reader drain it all.
    -> (reads, datagrams handled in order, handled count at each batch end)."""
    async def main() -> tuple[int, list[bytes], list[int]]:
        udp, sock, got, batches = await _open()
        udp._loop.remove_reader(sock.fileno())
        out = _sender()
        try:
            for data in sent:
                out.sendto(data, udp.local)
            await asyncio.sleep(0.05)
            udp._loop.add_reader(sock.fileno(), udp._readable)
            await _until(lambda: len(got) == len(sent))
            return sock.reads, got, batches
        finally:
            udp.close()
            out.close()
    return asyncio.run(main())


def test_a_burst_is_drained_in_order_in_one_batch():
    sent = [f"segment {i}".encode() for i in range(40)]
    reads, got, batches = _deliver_burst(sent)
    assert got == sent
    assert batches == [len(sent)]
    assert reads == len(sent) + 1   # the last read finds the socket empty


def test_more_than_a_batch_and_empty_datagrams_are_all_delivered():
    sent = [b"", b"after an empty one"] + [b"x%d" % i for i in range(BATCH + 10)] + [b""]
    _, got, batches = _deliver_burst(sent)
    assert got == sent
    assert len(batches) >= 2 and batches[-1] == len(sent)
