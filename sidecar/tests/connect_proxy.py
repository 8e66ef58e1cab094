"""A small HTTP CONNECT proxy for tests: ``python connect_proxy.py LISTEN_HOST:PORT STATE_DIR [--tls CERT KEY]``.

With ``--tls`` the listener speaks TLS (an ``https://`` proxy): the client's TLS to the target then runs inside
this TLS connection (TLS in TLS). The handshake is the server's (``start_server(ssl=)``): a server-side
``StreamWriter.start_tls()`` after accepting would lose a ClientHello that arrived first (the plain reader buffers it).

Basic auth: the accepted ``user:password`` is read from STATE_DIR/credentials on every request (empty file
or none: no auth), so a test rotates it; a host listed in STATE_DIR/deny (one per line) gets 403; creating
STATE_DIR/kick drops every open tunnel (a proxy restart). Each request is logged to stdout as JSON
(target, status, auth, tls), flushed at once.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
from pathlib import Path


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


OPEN: set[asyncio.StreamWriter] = set()


async def _kicker(state: Path) -> None:
    while True:
        await asyncio.sleep(0.1)
        if (state / "kick").exists():
            (state / "kick").unlink()
            print(json.dumps({"kicked": len(OPEN)}), flush=True)
            for writer in list(OPEN):
                writer.transport.abort()


def handler(state: Path):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.close()
            return
        lines = head.split("\r\n")
        method, target, _ = (lines[0].split(" ") + ["", "", ""])[:3]
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
        host, _, port = target.rpartition(":")
        wanted = _read(state / "credentials")
        given = headers.get("proxy-authorization", "")
        if method != "CONNECT":
            status = 405
        elif wanted and given != "Basic " + base64.b64encode(wanted.encode()).decode():
            status = 407
        elif host in _read(state / "deny").split():
            status = 403
        else:
            status = 200
        print(json.dumps({"target": target, "status": status, "auth": bool(given),
                          "tls": writer.get_extra_info("ssl_object") is not None}), flush=True)
        if status != 200:
            reason = {405: "Method Not Allowed", 407: "Proxy Authentication Required", 403: "Forbidden"}[status]
            extra = 'Proxy-Authenticate: Basic realm="test"\r\n' if status == 407 else ""
            writer.write(f"HTTP/1.1 {status} {reason}\r\n{extra}Content-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            writer.close()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        OPEN.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            OPEN.difference_update((writer, up_writer))
    return handle


async def main(listen: str, state: str, cert_key: list[str] | None) -> None:
    tls = None
    if cert_key:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(*cert_key)
    host, _, port = listen.rpartition(":")
    server = await asyncio.start_server(handler(Path(state)), host, int(port), ssl=tls,
                                        ssl_handshake_timeout=10 if tls else None)
    print(json.dumps({"listening": listen, "tls": tls is not None}), flush=True)
    asyncio.get_running_loop().create_task(_kicker(Path(state)))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="HTTP CONNECT proxy for tests")
    parser.add_argument("listen", help="HOST:PORT")
    parser.add_argument("state", help="state directory (credentials, deny, kick)")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve TLS with this certificate chain and key")
    args = parser.parse_args()
    asyncio.run(main(args.listen, args.state, args.tls))
