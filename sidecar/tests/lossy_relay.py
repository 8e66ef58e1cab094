"""A lossy UDP relay for tests: run inside the test namespace as
``python lossy_relay.py LISTEN_PORT TARGET_PORT LOSS DUP REORDER SEED``.

Datagrams from the target go back to the last other sender; everything else goes to the target.
Each datagram is dropped with probability LOSS, sent twice with DUP, and with REORDER held back
until the next one has gone."""
import random
import socket
import sys

listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
loss, dup, reorder = (float(x) for x in sys.argv[3:6])
rng = random.Random(int(sys.argv[6]))
target = ("127.0.0.1", target_port)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
sock.bind(("127.0.0.1", listen_port))
client = None
held: dict = {}
while True:
    data, src = sock.recvfrom(65535)
    if src == target:
        dst = client
    else:
        client, dst = src, target
    if dst is None or rng.random() < loss:
        continue
    if held.get(dst) is None and rng.random() < reorder:
        held[dst] = data
        continue
    sock.sendto(data, dst)
    if rng.random() < dup:
        sock.sendto(data, dst)
    late = held.pop(dst, None)
    if late is not None:
        sock.sendto(late, dst)
