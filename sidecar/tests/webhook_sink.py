"""A webhook receiver for tests: ``python webhook_sink.py HOST:PORT LOG_FILE``.

Every request is appended to LOG_FILE as one JSON line (time, method, path, headers, body as text), flushed at
once, then answered as its path asks: ``/ok/...`` 200, ``/status/CODE/...`` that status, ``/sleep/SECONDS/...``
200 after that long. "listening" goes to stdout once the socket is bound.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import time

from aiohttp import web


def make_app(log_path: str) -> web.Application:
    out = open(log_path, "a", buffering=1)

    async def record(request: web.Request) -> web.Response:
        body = await request.read()
        out.write(json.dumps({"t": time.time(), "method": request.method, "path": request.path,
                              "headers": dict(request.headers), "body": body.decode(errors="replace")}) + "\n")
        parts = request.path.strip("/").split("/")
        if parts[0] == "status" and len(parts) > 1 and parts[1].isdigit():
            return web.Response(status=int(parts[1]), text="as asked\n")
        if parts[0] == "sleep" and len(parts) > 1:
            await asyncio.sleep(float(parts[1]))
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    return app


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("listen")
    parser.add_argument("log")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    runner = web.AppRunner(make_app(args.log), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, int(port)).start()
    print("listening", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
