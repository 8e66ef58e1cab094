"""Beacon client: STUN discover (learn our public endpoint), punch requests, relay through the beacon."""
from __future__ import annotations

import asyncio
import logging
import socket

from ..proto import beacon as bp
from .udp import Endpoint, UDPSocket, split_host_port

log = logging.getLogger("pilot_daemon.beacon")


class BeaconClient:
    def __init__(self, udp: UDPSocket, address: str) -> None:
        """``udp`` is the link beacon messages go out on: the UDP socket, or the compat WebSocket."""
        self.udp = udp
        self.address = address
        self.endpoint: Endpoint | None = None
        self.observed: Endpoint | None = None     # our endpoint as the beacon sees it
        self._observed_event = asyncio.Event()
        self.relayed_out = 0
        self.relayed_in = 0

    async def resolve(self) -> Endpoint:
        host, port = split_host_port(self.address)
        infos = await asyncio.get_running_loop().getaddrinfo(host or "127.0.0.1", port, type=socket.SOCK_DGRAM)
        family_ok = [i for i in infos if i[0] == socket.AF_INET] or infos
        self.endpoint = family_ok[0][4][:2]
        return self.endpoint

    def is_beacon(self, addr: Endpoint) -> bool:
        return self.endpoint is not None and tuple(addr) == self.endpoint

    def discover(self, node: int) -> None:
        if self.endpoint is not None:
            self.udp.send(bp.discover(node), self.endpoint)

    async def wait_observed(self, timeout: float) -> Endpoint | None:
        try:
            await asyncio.wait_for(self._observed_event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return self.observed

    def punch_request(self, requester: int, target: int) -> None:
        if self.endpoint is not None and self.udp.direct:   # compat: no hole punching
            self.udp.send(bp.punch_request(requester, target), self.endpoint)

    def relay(self, src: int, dst: int, frame: bytes) -> None:
        if self.endpoint is not None:
            self.relayed_out += 1
            self.udp.send(bp.relay(src, dst, frame), self.endpoint)

    def handle(self, data: bytes) -> bp.BeaconMessage | None:
        """Digest a beacon datagram; returns the message for the daemon to act on (or None)."""
        msg = bp.decode(data)
        if isinstance(msg, bp.DiscoverReply):
            self.observed = msg.endpoint
            self._observed_event.set()
        elif isinstance(msg, bp.RelayDeliver):
            self.relayed_in += 1
        elif msg is None:
            log.debug("dropped beacon message type 0x%02x (%d bytes)", data[0] if data else -1, len(data))
        return msg
