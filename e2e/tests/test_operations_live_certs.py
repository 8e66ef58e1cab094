"""Tier 1: certificate swaps with no refused connection and no failed admission.

1. Leaf renewal: a nearly expired serving certificate (90 s life, already past two thirds) is written into the
   Secret; the injector swaps to it; a reconcile renews it; the injector swaps again. Meanwhile a loop of TLS
   handshakes (verified against the caBundle, as the apiserver does) and a loop of pod creations run.
2. CA rotation: a CA already past two thirds of its life is written; the operator rotates it (both CAs in the
   bundle) and drops the previous one once the injector is seen serving a leaf from the new CA.
"""
import base64
import datetime as dt
import socket
import ssl
import threading
import time
import uuid

import pytest
from cryptography import x509
from kubernetes import client
from kubernetes.client.rest import ApiException

from pilotmesh_controlplane.local_pilotmesh import OPERATOR_NS, ensure_namespace
from ops_helpers import delete_mesh, fast_watchdog, patch_mesh, pod, scoped_mesh
from pilotmesh_controlplane.local_pilotmesh import wait_ready
from pilotmesh_operator import certs
from pilotmesh_operator.certinfo import pem_certificates

pytestmark = pytest.mark.kube
SECRET = "pilotmesh-injector-tls"
SWAPS = 8


def _secret(api):
    data = client.CoreV1Api(api).read_namespaced_secret(SECRET, OPERATOR_NS).data
    return {k: base64.b64decode(v) for k, v in data.items()}


def _write(api, data):
    client.CoreV1Api(api).patch_namespaced_secret(SECRET, OPERATOR_NS, {"data": {
        k: base64.b64encode(v).decode() for k, v in data.items()}})


def _serial(pem):
    return x509.load_pem_x509_certificate(pem).serial_number


def _names(pem):
    sans = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return tuple(str(v) for v in sans.get_values_for_type(x509.IPAddress)) + tuple(
        sans.get_values_for_type(x509.DNSName))


class Handshakes(threading.Thread):
    """TLS handshakes with the injector in a loop; counts failures and the serials it is served."""

    def __init__(self, port, ca_pem=None):
        super().__init__(daemon=True)
        self.port, self.stop, self.ok, self.failed, self.errors, self.serials = port, False, 0, 0, [], []
        self.ctx = ssl.create_default_context(cadata=ca_pem.decode()) if ca_pem else ssl._create_unverified_context()

    def run(self):
        while not self.stop:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=3) as raw, \
                        self.ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    serial = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number
                self.ok += 1
                if not self.serials or self.serials[-1] != serial:
                    self.serials.append(serial)
            except (OSError, ssl.SSLError) as exc:
                self.failed += 1
                self.errors.append(repr(exc))
            time.sleep(0.005)


class PodCreator(threading.Thread):
    def __init__(self, api, ns):
        super().__init__(daemon=True)
        self.api, self.ns, self.stop, self.created, self.refused = api, ns, False, [], []

    def run(self):
        while not self.stop:
            name = f"swap-{uuid.uuid4().hex[:8]}"
            try:
                created = client.CoreV1Api(self.api).create_namespaced_pod(self.ns, pod(name, {"pilot.io/inject": "true"}))
                self.created.append(created)
            except ApiException as exc:
                self.refused.append(f"{exc.status} {exc.reason}: {exc.body}"[:300])
            time.sleep(0.25)


@pytest.fixture(scope="module")
def mesh(pilotmesh):
    with fast_watchdog(pilotmesh):
        name, label = scoped_mesh(pilotmesh.api, "certs")
        ns = ensure_namespace(pilotmesh.api, f"certs-{uuid.uuid4().hex[:6]}", labels=label)
        wait_ready(pilotmesh.api, name)
        yield pilotmesh, name, ns
        delete_mesh(pilotmesh.api, name)


def test_leaf_renewal_refuses_no_handshake_and_fails_no_admission(mesh):
    stack, name, ns = mesh
    api, before = stack.api, _secret(stack.api)
    loop, pods = Handshakes(stack.port, before["ca-bundle.crt"]), PodCreator(api, ns)
    loop.start()
    pods.start()
    time.sleep(1)
    for _ in range(SWAPS):   # nearly expired leaves (90 s life, past 2/3), swapped in one after another
        short = certs.plan({k: before[k] for k in ("ca.crt", "ca.key", "ca-bundle.crt")}, _names(before["tls.crt"]),
                           dt.datetime.now(dt.timezone.utc), leaf_lifetime=dt.timedelta(seconds=90)).data
        _write(api, {"tls.crt": short["tls.crt"], "tls.key": short["tls.key"]})
        stack.wait("injector serves the short-lived leaf", lambda: _serial(short["tls.crt"]) in loop.serials, 20)
    patch_mesh(api, name, {"webhook": {"timeoutSeconds": 6}})         # a reconcile: the leaf is due, renewed
    renewed = stack.wait("operator renewed the leaf", lambda: (lambda d: d["tls.crt"] != short["tls.crt"] and d)(
        _secret(api)), 20)
    stack.wait("injector serves the renewed leaf", lambda: loop.serials[-1] == _serial(renewed["tls.crt"]), 20)
    time.sleep(1)
    loop.stop = pods.stop = True
    loop.join()
    pods.join()
    leaf = x509.load_pem_x509_certificate(renewed["tls.crt"])
    assert leaf.not_valid_after_utc - dt.datetime.now(dt.timezone.utc) > dt.timedelta(days=80)
    assert renewed["ca.crt"] == before["ca.crt"]
    print(f"\nleaf swaps: {len(loop.serials) - 1}; handshakes refused or failed: {loop.failed} of "
          f"{loop.ok + loop.failed}; pod creations refused: {len(pods.refused)} of {len(pods.created) + len(pods.refused)}")
    assert len(loop.serials) == SWAPS + 2, loop.serials          # original, short-lived ones, renewed
    assert loop.failed == 0, loop.errors[:3]
    assert pods.refused == [] and len(pods.created) >= 5
    assert all((p.metadata.annotations or {}).get("pilot.io/status") for p in pods.created), "every pod injected"


def test_ca_rotation_keeps_the_old_ca_until_the_injector_serves_the_new_chain(mesh):
    stack, name, ns = mesh
    api = stack.api
    names = _names(_secret(api)["tls.crt"])
    old = certs.plan(None, names, dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2500),
                     leaf_lifetime=dt.timedelta(days=3650)).data          # a CA past 2/3 of its life, leaf still valid
    loop = Handshakes(stack.port)
    loop.start()
    _write(api, old)
    stack.wait("injector serves the old CA's leaf", lambda: _serial(old["tls.crt"]) in loop.serials, 20)
    patch_mesh(api, name, {"webhook": {"timeoutSeconds": 7}})         # a reconcile: the CA is due, rotated
    seen_bundles = []

    def dropped():
        data = _secret(api)
        seen_bundles.append(len(pem_certificates(data["ca-bundle.crt"])))
        return data["ca.crt"] != old["ca.crt"] and data["ca-bundle.crt"] == data["ca.crt"] and data
    final = stack.wait("previous CA dropped", dropped, 30)
    assert loop.serials[-1] == _serial(final["tls.crt"])
    x509.load_pem_x509_certificate(final["tls.crt"]).verify_directly_issued_by(
        x509.load_pem_x509_certificate(final["ca.crt"]))
    patch_mesh(api, name, {"webhook": {"timeoutSeconds": 8}})         # the webhook configuration follows the Secret
    admission = client.AdmissionregistrationV1Api(api)
    stack.wait("caBundle holds only the new CA", lambda: base64.b64decode(admission.read_mutating_webhook_configuration(
        f"pilotmesh-{name}").webhooks[0].client_config.ca_bundle) == final["ca.crt"], 20)
    loop.stop = True
    loop.join()
    print(f"\nCA rotation: bundle sizes seen {sorted(set(seen_bundles))}; handshakes failed: {loop.failed} of "
          f"{loop.ok + loop.failed}")
    assert loop.failed == 0, loop.errors[:3]
    assert "CA rotation complete" in stack.tails(400)
    created = client.CoreV1Api(api).create_namespaced_pod(ns, pod("after-rotation", {"pilot.io/inject": "true"}))
    assert created.metadata.annotations.get("pilot.io/status"), "the apiserver trusts the new chain"
