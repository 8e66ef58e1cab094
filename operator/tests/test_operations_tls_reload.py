"""The injector's certificate reload under load: handshakes in other threads never see half a swap."""
import datetime as dt
import socket
import ssl
import threading

from cryptography import x509

from pilotmesh_operator import certs
from pilotmesh_operator.injector.tls import ReloadingContext

NOW = dt.datetime.now(dt.timezone.utc)
CA = certs.plan(None, ("127.0.0.1",), NOW).data
LEAVES = [certs.plan({k: CA[k] for k in ("ca.crt", "ca.key")}, ("127.0.0.1",), NOW,
                     leaf_lifetime=dt.timedelta(seconds=60 + i)).data for i in range(6)]


def test_handshakes_during_swaps_all_verify_and_each_new_chain_is_served():
    rc = ReloadingContext()
    assert rc.load_pem(CA["tls.crt"], CA["tls.key"]) and rc.not_after is not None
    srv = socket.create_server(("127.0.0.1", 0))
    port, stop, failures, served = srv.getsockname()[1], threading.Event(), [], set()
    serving = threading.Event()
    serving.set()

    def serve():   # until the client is done: its last handshake may start just before it sees ``stop``
        while serving.is_set():
            conn, _ = srv.accept()
            try:
                with rc.context.wrap_socket(conn, server_side=True):
                    pass
            except (OSError, ssl.SSLError):
                pass    # the client records what went wrong

    def handshake():
        client = ssl.create_default_context(cadata=CA["ca.crt"].decode())
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as raw, \
                        client.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    served.add(x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number)
            except (OSError, ssl.SSLError) as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=serve, daemon=True), threading.Thread(target=handshake, daemon=True)]
    for t in threads:
        t.start()
    for round_ in range(20):
        leaf = LEAVES[round_ % len(LEAVES)]
        assert rc.load_pem(leaf["tls.crt"], leaf["tls.key"])
        threading.Event().wait(0.02)
    stop.set()
    threads[1].join(5)
    serving.clear()
    socket.create_connection(("127.0.0.1", port)).close()   # wake the accept loop
    assert failures == [], failures[:3]
    wanted = {x509.load_pem_x509_certificate(d["tls.crt"]).serial_number for d in LEAVES}
    assert len(served & wanted) >= 3, "new chains were served during the run"


def test_an_unusable_chain_keeps_the_previous_one():
    rc = ReloadingContext()
    assert rc.load_pem(CA["tls.crt"], CA["tls.key"])
    before = rc.not_after
    assert not rc.load_pem(LEAVES[0]["tls.crt"], CA["tls.key"])    # key does not match the certificate
    assert not rc.load_pem(CA["tls.crt"], CA["tls.key"])           # unchanged: nothing to do
    assert rc.not_after == before and rc.loaded
