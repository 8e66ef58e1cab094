"""The demo's last act as a test: pilot-rendezvous and two Python daemons on 127.0.0.1, driven through
pilot_daemon.client (echo on port 7, a stream to a bound port, errors surfaced as ClientError)."""
import pytest

from pilot_daemon.client import Client, ClientError
from pilot_daemon.proto.addr import Addr
from pilotmesh_controlplane.local_pilots import LocalPilots


@pytest.fixture
def pilots(tmp_path):
    p = LocalPilots(tmp_path / "pilots")
    p.start_rendezvous()
    yield p
    p.stop()


def test_two_daemons_echo_and_stream_through_a_local_rendezvous(pilots):
    a_sock, b_sock = pilots.start_daemon("t-a"), pilots.start_daemon("t-b")
    with Client(str(a_sock)) as a, Client(str(b_sock)) as b:
        peer = Addr.parse(b.info()["address"])
        assert a.info()["hostname"] == "t-a"
        conn = a.dial(peer, 7)
        payload = bytes(range(256)) * 64        # 16 KiB through the encrypted tunnel and back
        a.send(conn, payload)
        assert a.recv(conn, len(payload)) == payload
        a.close(conn)
        assert b.bind(1000) == 1000
        conn = a.dial(peer, 1000)
        a.send(conn, b"hello")
        accepted = b.accept()
        assert accepted.local_port == 1000 and b.recv(accepted.conn_id, 5) == b"hello"
        with pytest.raises(ClientError, match="already bound"):
            b.bind(1000)
