"""Which transport the daemon uses (udp or compat), choosing it in ``auto``, and switching it live.

- ``udp``: one UDP socket for tunnel frames and beacon messages; the registry as configured.
- ``compat``: no UDP socket; the beacon over one WebSocket (``CompatLink``), the registry over TLS with
  SNI (trust ``system`` unless a fingerprint is pinned), both through ``-proxy`` if one applies.
  Registration is relay-only with ``listen_addr`` ``0.0.0.0:0``, as the official compat daemon.
- ``auto``: udp when the beacon answers a UDP discover within ``PROBE_TIMEOUT``, else compat; re-probed
  every ``REPROBE_INTERVAL``, when the compat link keeps failing, and (Linux) after a network change: a
  ``NetWatch`` (``netwatch.py``: rtnetlink link/address/route notifications, debounced) wakes ``watch``,
  which logs "network changed, re-probing transport" with the reason. Only while the mode is auto.
- ``-transport-file PATH`` (the pod's ``pilot.io/transport`` annotation through the downward API): read at
  start (it wins over ``-transport``) and polled; a change switches without a restart. The identity and
  node id stay; tunnels are re-keyed over the new path, so open streams carry on after a pause.

The path in use is in ``info`` (``transport``, ``transport_path``) and, with ``-metrics-listen`` (a PilotMesh
extension), in Prometheus metrics (``metrics.py``: ``pilot_daemon_transport_info{mode,transport,path}``,
``pilot_daemon_transport_switches_total``, ``pilot_daemon_network_changes_total``, read at scrape time).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import config
from ..proto import beacon as bp
from .beacon import BeaconClient
from .netwatch import NetWatch
from .proxy import Proxies, dial
from .registry_client import normalize_fingerprint
from .udp import UDPSocket, split_host_port

if TYPE_CHECKING:
    from .compat import CompatLink
    from .daemon import Daemon

log = logging.getLogger("pilot_daemon.transport")

MODES = ("udp", "compat", "auto")
PROBE_TIMEOUT = 2.0
REPROBE_INTERVAL = 60.0
FILE_POLL = 1.0
COMPAT_UP_WAIT = 10.0
COMPAT_FAILURES_BEFORE_REPROBE = 3
OFFICIAL_COMPAT_REGISTRY = "registry.pilotprotocol.network:443"
COMPAT_PORT = 443
PLAIN_REGISTRY_PORT = 9000


def is_compat(link: "UDPSocket | CompatLink | None") -> bool:
    """The link reaches only the beacon (a ``CompatLink``), not peers directly."""
    return link is not None and not link.direct


class TransportError(ValueError):
    """A transport setting that cannot be used."""


def compat_registry(settings: dict[str, Any]) -> tuple[str, str, str]:
    """(address, trust, fingerprint) of the registry in compat mode: always TLS. The official default
    registry becomes its TLS name on 443, as the official daemon does; a registry given on the plain port
    9000 is reached on 443 of the same host (the rendezvous' TLS listener; TCP 9000 is what compat avoids)."""
    address = settings["registry"]
    if address == config.DEFAULT_REGISTRY:
        address = OFFICIAL_COMPAT_REGISTRY
    host, port = split_host_port(address)
    if port == PLAIN_REGISTRY_PORT:
        address = f"[{host}]:{COMPAT_PORT}" if ":" in host else f"{host}:{COMPAT_PORT}"
    fingerprint = settings["registry_fingerprint"]
    trust = "pinned" if settings["registry_trust"] == "pinned" and fingerprint else "system"
    return address, trust, fingerprint


def compat_tls(settings: dict[str, Any]) -> tuple[ssl.SSLContext, str]:
    """TLS for the WebSocket: ``-tls-trust system`` (CA store, ``SSL_CERT_FILE``) or ``pinned`` (the
    certificate fingerprint ``-registry-fingerprint``: one TLS listener serves both names)."""
    trust = settings["tls_trust"]
    if trust == "system":
        return ssl.create_default_context(), ""
    if trust != "pinned":
        raise TransportError(f"-tls-trust {trust!r}: use system or pinned")
    if not settings["registry_fingerprint"]:
        raise TransportError("-tls-trust pinned needs -registry-fingerprint (hex SHA-256 of the rendezvous "
                             "certificate); or use -tls-trust system with SSL_CERT_FILE")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE   # the pin is the check
    return ctx, normalize_fingerprint(settings["registry_fingerprint"])


def read_transport_file(path: str) -> str | None:
    """The mode in the file (udp, compat or auto), or None when absent, empty or not a mode."""
    try:
        text = Path(path).read_text().strip().lower()
    except OSError:
        return None
    return text if text in MODES else None


async def udp_beacon_answers(beacon: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the beacon answers a discover over UDP (from a throw-away socket)."""
    try:
        host, port = split_host_port(beacon)
        infos = await asyncio.get_running_loop().getaddrinfo(host or "127.0.0.1", port, type=socket.SOCK_DGRAM)
    except (OSError, ValueError):
        return False
    target = infos[0][4][:2]
    answered = asyncio.Event()

    def on_datagram(data: bytes, addr: Any) -> None:
        if tuple(addr) == target and isinstance(bp.decode(data), bp.DiscoverReply):
            answered.set()
    sock = await UDPSocket.open("[::]:0" if infos[0][0] == socket.AF_INET6 else "0.0.0.0:0", on_datagram)
    try:
        tries = 3
        for _ in range(tries):
            sock.send(bp.discover(0), target)
            try:
                await asyncio.wait_for(answered.wait(), timeout / tries)
                return True
            except asyncio.TimeoutError:
                pass
        return False
    finally:
        sock.close()


class TransportManager:
    """Owns the daemon's link (``daemon.udp``: a ``UDPSocket`` or a ``CompatLink``) and its beacon client."""

    def __init__(self, daemon: "Daemon", settings: dict[str, Any], env: dict[str, str]) -> None:
        self.d = daemon
        self.s = settings
        self.file = settings.get("transport_file") or ""
        requested = settings["transport"]
        if requested not in MODES:
            raise TransportError(f"unknown -transport {requested!r}: use udp, compat or auto")
        self.requested = requested
        self.proxies = Proxies(settings["proxy"], settings["proxy_cmd"], env)
        self.mode = ""                 # udp | compat once started
        self.switches = 0
        self.last_switch_s = 0.0
        self.network_changes = 0       # debounced network changes that made auto re-probe
        self.netwatch: NetWatch | None = None
        self._changed = ""             # what changed since the watch loop last looked
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._compat_tls: tuple[ssl.SSLContext, str] | None = None

    # -- start ------------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.file:
            from_file = read_transport_file(self.file)
            if from_file:
                self.requested = from_file
        mode = await self.choose(self.requested)
        await self._open(mode)
        self._sync_netwatch()
        log.info("outbound network", extra={"transport": mode, "requested": self.requested,
                                            "path": self.describe(), "registry": self._registry_desc()})

    async def choose(self, requested: str) -> str:
        if requested != "auto":
            return requested
        if await udp_beacon_answers(self.d.beacon_addr):
            return "udp"
        log.info("auto: the beacon did not answer over UDP; using compat",
                 extra={"beacon": self.d.beacon_addr, "timeout_s": PROBE_TIMEOUT})
        return "compat"

    async def _open(self, mode: str) -> None:
        d = self.d
        if mode == "udp":
            link: Any = await UDPSocket.open(self.s["listen"], d._on_datagram, d._on_datagram_batch)
            beacon = BeaconClient(link, d.beacon_addr)
            try:
                await beacon.resolve()
                beacon.discover(d.node_id)
            except (OSError, ValueError) as exc:
                log.warning("beacon %s unusable: %s (relay and STUN disabled)", d.beacon_addr, exc)
            d.registry.configure(self.s["registry"], tls=self.s["registry_tls"], trust=self.s["registry_trust"],
                                 fingerprint=self.s["registry_fingerprint"])
        else:
            if self._compat_tls is None:
                self._compat_tls = compat_tls(self.s)
            tls, pin = self._compat_tls
            from .compat import COMPAT_ADDR, CompatLink   # websockets is loaded only for compat (start-up time)
            link = CompatLink(self.s["compat_beacon"], tls=tls, fingerprint=pin, proxies=self.proxies,
                              sign=d.identity.sign_b64, public_key=d.identity.public_b64,
                              on_datagram=d._on_datagram, on_batch_end=d._on_datagram_batch)
            beacon = BeaconClient(link, d.beacon_addr)
            beacon.endpoint = COMPAT_ADDR
            address, trust, fingerprint = compat_registry(self.s)
            d.registry.configure(address, tls=True, trust=trust, fingerprint=fingerprint,
                                 dial=lambda host, port, *, tls, timeout: dial(host, port, tls=tls,
                                                                                 proxies=self.proxies, timeout=timeout))
        d.udp, d.beacon, d.transport, self.mode = link, beacon, mode, mode

    async def after_register(self, node: int) -> None:
        """Compat: (re)connect the WebSocket as ``node``; wait a little for it, keep trying in the background."""
        link = self.d.udp
        if is_compat(link):
            link.start(node)
            if not await link.wait_up(COMPAT_UP_WAIT):
                log.warning("compat link not up yet; retrying in the background",
                            extra={"beacon": link.url, "last_error": link.last_error})
            self.d.beacon.discover(node)

    def describe(self) -> str:
        """The path in use and, in compat, the link's state (``info``'s ``transport_path``)."""
        link = self.d.udp
        if is_compat(link):
            state = link.state if link.state == "up" or not link.last_error else f"{link.state}: {link.last_error}"
            return f"{self.path()} ({state})"
        return self.path()

    def path(self) -> str:
        """The path in use without its state: ``compat URL [via PROXY]`` or ``udp HOST:PORT beacon ADDR``."""
        link = self.d.udp
        if is_compat(link):
            return f"compat {link.describe()}"
        if isinstance(link, UDPSocket):
            host, port = link.local
            return f"udp {host}:{port} beacon {self.d.beacon_addr}"
        return ""

    def _registry_desc(self) -> str:
        r = self.d.registry
        via = self.proxies.describe(r.host, r.port) if r.dial is not None else "direct"
        return f"{r.host}:{r.port}{' tls' if r.ssl else ''}{'' if via == 'direct' else ' via ' + via}"

    def close(self) -> None:
        if self.netwatch is not None:
            self.netwatch.close()
            self.netwatch = None
        if self.d.udp is not None:
            self.d.udp.close()

    # -- network changes (auto) -----------------------------------------------------------------
    def _sync_netwatch(self) -> None:
        """Watch the network while the mode is auto, not otherwise."""
        if self.requested == "auto" and self.netwatch is None:
            self.netwatch = NetWatch.open(self._network_changed)
        elif self.requested != "auto" and self.netwatch is not None:
            self.netwatch.close()
            self.netwatch = None

    def _network_changed(self, reason: str) -> None:
        self._changed = f"{self._changed}; {reason}" if self._changed else reason
        self._wake.set()

    async def _tick(self) -> str:
        """Wait ``FILE_POLL``, less when the network changes; what changed meanwhile ("" for nothing)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), FILE_POLL)
        self._wake.clear()
        changed, self._changed = self._changed, ""
        return changed

    # -- switching ------------------------------------------------------------------------------
    async def switch(self, mode: str, why: str) -> bool:
        """Move to ``mode`` (udp or compat) live; False when already there."""
        async with self._lock:
            if mode == self.mode:
                return False
            t0 = time.monotonic()
            old, old_mode = self.d.udp, self.mode
            log.info("switching transport", extra={"from": old_mode, "to": mode, "why": why})
            await self._open(mode)
            if old is not None:
                old.close()
            active = self.d.reset_paths()
            await self.d.register()
            self.d.rekey(active)
            self.switches += 1
            self.last_switch_s = time.monotonic() - t0
            log.info("transport switched", extra={"from": old_mode, "to": mode, "node_id": self.d.node_id,
                                                  "path": self.describe(), "took_s": round(self.last_switch_s, 3)})
            return True

    async def watch(self) -> None:
        """The transport file (polled) and, in auto, re-probes: periodic and after network changes."""
        last_probe = time.monotonic()
        while True:
            changed = await self._tick()
            try:
                if self.file:
                    wanted = read_transport_file(self.file)
                    if wanted and wanted != self.requested:
                        log.info("transport file changed", extra={"file": self.file, "from": self.requested,
                                                                  "to": wanted})
                        self.requested = wanted
                        self._sync_netwatch()
                        await self.switch(await self.choose(wanted), f"{self.file} says {wanted}")
                        last_probe = time.monotonic()
                        continue
                if self.requested == "auto" and (changed or self._reprobe_due(last_probe)):
                    last_probe = time.monotonic()
                    if changed:
                        self.network_changes += 1
                        log.info("network changed, re-probing transport", extra={"reason": changed,
                                                                                  "transport": self.mode})
                    mode = await self.choose("auto")
                    await self.switch(mode, f"network changed ({changed})" if changed else "auto re-probe")
            except Exception:     # a failed switch is retried on the next change or probe
                log.exception("transport switch failed")

    def _reprobe_due(self, last_probe: float) -> bool:
        link = self.d.udp
        if is_compat(link) and link.failures >= COMPAT_FAILURES_BEFORE_REPROBE:
            return time.monotonic() - last_probe > PROBE_TIMEOUT * 3
        return time.monotonic() - last_probe >= REPROBE_INTERVAL
