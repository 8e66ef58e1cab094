"""Run by test_daemon_sdk.py inside the test namespace: the official Python SDK (ctypes over libpilot)
against our daemon (and the official one as the far end). Prints one JSON object of results."""
import hashlib
import json
import os
import sys
import threading

import pilotprotocol as p

ours_sock, official_sock, ours_addr, official_addr = sys.argv[1:5]
size = int(sys.argv[5])
out = {}
ours, official = p.Driver(ours_sock), p.Driver(official_sock)
out["info"] = ours.info()

# dial from our daemon to the official echo service, a bulk transfer checked by hash
payload = os.urandom(size)
conn = ours.dial(f"{official_addr}:7", timeout=20)
got = hashlib.sha256()
count = [0]


def reader() -> None:
    while count[0] < size:
        chunk = conn.read(65536)
        if not chunk:
            break
        got.update(chunk)
        count[0] += len(chunk)


t = threading.Thread(target=reader)
t.start()
for i in range(0, size, 60000):
    conn.write(payload[i:i + 60000])
t.join(120)
conn.close()
out["echo_bytes"], out["echo_intact"] = count[0], got.digest() == hashlib.sha256(payload).digest()
if sys.argv[6:] == ["echo-only"]:
    print(json.dumps(out, default=str))
    sys.exit(0)

# listen on our daemon; the official daemon dials in
listener = ours.listen(6000)
remote = official.dial(f"{ours_addr}:6000", timeout=20)
remote.write(b"hello-from-go")
accepted = listener.accept()
out["accepted_read"] = accepted.read_full(13).decode()
accepted.write(b"hello-from-python")
out["dialer_read"] = remote.read_full(17).decode()
accepted.close()
remote.close()

# datagrams: official -> ours through recv_from, ours -> official
official.send_to(f"{ours_addr}:5005", b"dgram-to-python")
dg = ours.recv_from()
out["recv_from"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in dg.items()}
ours.send_to(f"{official_addr}:5006", b"dgram-to-go")
dg2 = official.recv_from()
out["official_recv_from"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in dg2.items()}
print(json.dumps(out, default=str))
