"""Outbound TCP(+TLS) connections for the compat transport, direct or through an HTTP CONNECT proxy.

``dial()`` gives asyncio streams with TLS end to end to the target (the proxy sees only ``CONNECT
host:443``). An ``https://`` proxy adds TLS to the proxy itself (trusted as the system's, i.e. ``SSL_CERT_FILE``);
the target's TLS then runs inside it, which asyncio supports since 3.11 (``start_tls`` over an SSL transport,
bpo-37179). A 407 answer re-runs ``-proxy-cmd`` (its first output line is the new proxy URL, e.g. with fresh
credentials) and tries once more; any other refusal raises ``ProxyRefused`` naming the status.
"""
from __future__ import annotations

import asyncio
import logging
import ssl

from ..proto import proxy as px

log = logging.getLogger("pilot_daemon.proxy")

CMD_TIMEOUT = 10.0


class ProxyUnavailable(OSError):
    """The proxy itself could not be reached or broke the exchange."""


class Proxies:
    """The ``-proxy`` / ``-proxy-cmd`` settings and the environment; ``url`` overrides after a refresh."""

    def __init__(self, setting: str, cmd: str, env: dict[str, str]) -> None:
        self.setting = setting.strip() or "auto"
        self.cmd = cmd
        self.env = env
        self.from_cmd: str = ""
        if self.setting != "auto" and not self.off:
            px.parse_url(self.setting)     # a bad URL stops the start (ProxyConfigError)

    def for_target(self, host: str, port: int) -> px.ProxyURL | None:
        if self.off:
            return None
        if self.from_cmd:
            no_proxy = next((self.env[k] for k in px.NO_PROXY_ENV if self.env.get(k)), "")
            if self.setting == "auto" and no_proxy and px.no_proxy_matches(host, port, no_proxy):
                return None
            return px.parse_url(self.from_cmd)
        return px.select(self.setting, self.env, host, port)

    @property
    def off(self) -> bool:
        return self.setting in ("off", "none", "direct")

    def describe(self, host: str, port: int) -> str:
        url = self.for_target(host, port)
        return url.display if url else "direct"

    async def refresh(self) -> bool:
        """Run ``-proxy-cmd``; True when it printed a usable URL."""
        if not self.cmd:
            return False
        try:
            proc = await asyncio.create_subprocess_shell(self.cmd, stdout=asyncio.subprocess.PIPE,
                                                         stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(proc.communicate(), CMD_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("-proxy-cmd failed to run: %s", exc or "timeout")
            return False
        line = next((ln.strip() for ln in out.decode(errors="replace").splitlines() if ln.strip()), "")
        if proc.returncode or not line:
            log.warning("-proxy-cmd gave no proxy URL", extra={"rc": proc.returncode,
                                                               "stderr": err.decode(errors="replace")[-300:]})
            return False
        try:
            url = px.parse_url(line)
        except px.ProxyConfigError as exc:
            log.warning("-proxy-cmd output unusable: %s", exc)
            return False
        self.from_cmd = line
        log.info("proxy credentials refreshed by -proxy-cmd", extra={"proxy": url.display})
        return True


async def dial(host: str, port: int, *, tls: ssl.SSLContext | None, proxies: Proxies | None,
               timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Streams to ``host:port`` (TLS with SNI = host when ``tls``); raises OSError, ssl.SSLError,
    ``ProxyRefused`` or ``asyncio.TimeoutError``."""
    if proxies is not None and proxies.cmd and not proxies.from_cmd and not proxies.off:
        await proxies.refresh()      # the command is the source of the current proxy URL and credentials
    proxy = proxies.for_target(host, port) if proxies else None
    if proxy is None:
        return await asyncio.wait_for(asyncio.open_connection(
            host, port, ssl=tls, server_hostname=host if tls else None), timeout)
    for attempt in range(2):
        reader, writer = await _connect_through(proxy, host, port, timeout)
        if reader is not None:
            break
        status, reason = writer
        if status == 407 and attempt == 0 and proxies is not None and await proxies.refresh():
            proxy = proxies.for_target(host, port) or proxy
            continue
        raise px.ProxyRefused(status, reason, proxy.display)
    if tls is not None:
        await asyncio.wait_for(writer.start_tls(tls, server_hostname=host), timeout)
    return reader, writer


async def _connect_through(proxy: px.ProxyURL, host: str, port: int, timeout: float):
    """(reader, writer) once CONNECT succeeded, or (None, (status, reason)) when the proxy refused."""
    ctx = ssl.create_default_context() if proxy.scheme == "https" else None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(
            proxy.host, proxy.port, ssl=ctx, server_hostname=proxy.host if ctx else None), timeout)
    except ssl.SSLCertVerificationError as exc:
        raise ProxyUnavailable(f"proxy {proxy.display} presented a TLS certificate that is not trusted: "
                               f"{exc.verify_message} (set SSL_CERT_FILE to a bundle with the proxy's CA)") from None
    except (OSError, asyncio.TimeoutError) as exc:
        raise ProxyUnavailable(f"cannot reach proxy {proxy.display}: {str(exc) or 'timed out'}") from None
    try:
        writer.write(px.connect_request(host, port, proxy))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status, reason = px.parse_response_head(head)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
            ValueError) as exc:
        writer.close()
        raise ProxyUnavailable(f"proxy {proxy.display} broke the CONNECT exchange: {exc!r}") from None
    if 200 <= status < 300:
        return reader, writer
    writer.close()
    log.warning("proxy refused CONNECT", extra={"proxy": proxy.display, "status": status, "reason": reason,
                                                "target": f"{host}:{port}"})
    return None, (status, reason)
