"""The Python half of the runtime floor (see floor.go): the same AES-256-GCM echo on an asyncio loop, the socket
read through ``loop.add_reader`` as the daemon's UDP socket is. Usage: python responder.py 127.0.0.1:PORT"""
import asyncio
import socket
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


async def serve(host: str, port: int) -> None:
    aead = AESGCM(bytes(32))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.setblocking(False)

    def readable() -> None:
        while True:
            try:
                data, peer = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            try:
                plain = aead.decrypt(data[:12], data[12:], None)
            except Exception:
                continue
            sock.sendto(data[:12] + aead.encrypt(data[:12], plain, None), peer)

    asyncio.get_running_loop().add_reader(sock.fileno(), readable)
    await asyncio.Event().wait()


if __name__ == "__main__":
    host, _, port = sys.argv[1].rpartition(":")
    asyncio.run(serve(host, int(port)))
