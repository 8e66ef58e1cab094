"""Event stream frames (port 1002, official ``eventstream`` package): ``[u16 topic len][topic][u32 len][payload]``.

Topics are UTF-8, at most 1024 bytes; payloads at most 16 MiB. On a broker connection the first event is
the subscription (topic ``*`` = everything), every later one a publication.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

MAX_TOPIC = 1024
MAX_PAYLOAD = 1 << 24
_U16, _U32 = struct.Struct(">H"), struct.Struct(">I")


class EventError(ValueError):
    """A malformed event: the official broker drops the connection."""


@dataclass(frozen=True, slots=True)
class Event:
    topic: str
    payload: bytes = b""

    def encode(self) -> bytes:
        topic = self.topic.encode()
        return _U16.pack(len(topic)) + topic + _U32.pack(len(self.payload)) + self.payload


class EventDecoder:
    """Incremental: ``feed(data)`` returns the complete events; raises ``EventError`` on a bad one."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        buf = self._buf
        buf += data
        out: list[Event] = []
        while len(buf) >= 2:
            tl = _U16.unpack_from(buf)[0]
            if tl > MAX_TOPIC:
                raise EventError(f"topic too long: {tl}")
            if len(buf) < 2 + tl + 4:
                break
            pl = _U32.unpack_from(buf, 2 + tl)[0]
            if pl > MAX_PAYLOAD:
                raise EventError(f"payload too large: {pl}")
            end = 2 + tl + 4 + pl
            if len(buf) < end:
                break
            try:
                topic = bytes(buf[2:2 + tl]).decode()
            except UnicodeDecodeError:
                raise EventError("topic contains invalid UTF-8") from None
            out.append(Event(topic, bytes(buf[2 + tl + 4:end])))
            del buf[:end]
        return out
