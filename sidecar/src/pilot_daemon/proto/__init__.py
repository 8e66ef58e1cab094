"""Sans-I/O protocol core of the pilot-daemon: bytes and time in, bytes and events out.

No module here imports asyncio or sockets or reads the clock; the I/O glue lives in ``pilot_daemon.io``.
Modules: ``addr`` (48-bit addresses), ``packet`` (34-byte header + CRC-32), ``crypto`` and ``tunnel``
(UDP tunnel frames, key exchange, AES-GCM sessions), ``ipc`` (the Unix-socket codec), ``gojson``
(Go-identical JSON bytes), ``errors`` (the typed error tree).
"""

from .addr import Addr, SocketAddr
from .errors import LocalProtocolError, PilotError, RemoteProtocolError
from .packet import Flag, Packet, Proto
from .tunnel import TunnelSession

__all__ = [
    "Addr", "Flag", "LocalProtocolError", "Packet", "PilotError", "Proto", "RemoteProtocolError", "SocketAddr",
    "TunnelSession",
]
