"""Tier 0: the control-plane tool's pure parts (PKI, tool discovery, process helpers)."""
import datetime as dt
import ipaddress
import os
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pilotmesh_controlplane import pki, procs
from pilotmesh_controlplane.tools import Toolset, ToolsMissing


def test_issued_server_cert_chains_to_its_ca_and_carries_the_sans():
    ca = pki.CertificateAuthority("test-ca")
    pair = ca.issue("srv", ips=("127.0.0.1",), dns=("localhost",), server=True)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]


def test_client_cert_carries_groups_as_organizations():
    pair = pki.CertificateAuthority().issue("admin", organizations=("system:masters",), client=True)
    cert = x509.load_pem_x509_certificate(pair.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "admin"


def test_expired_validity_window_is_honoured():
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    pair = pki.CertificateAuthority().issue("old", server=True, ips=("127.0.0.1",),
                                            not_before=past, not_after=past + dt.timedelta(days=1))
    assert x509.load_pem_x509_certificate(pair.cert_pem).not_valid_after_utc < dt.datetime.now(dt.timezone.utc)


def test_key_files_are_private(tmp_path):
    crt, key = pki.CertificateAuthority().pair.write(tmp_path, "ca")
    assert crt.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert oct(key.stat().st_mode & 0o777) == "0o600"


def test_missing_tools_name_what_is_missing_and_how_to_get_it(tmp_path):
    with pytest.raises(ToolsMissing) as err:
        Toolset.find(tmp_path)
    assert "kube-apiserver" in str(err.value) and "make tools" in str(err.value)


def test_free_port_is_bindable_on_loopback():
    import socket
    port = procs.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_stop_escalates_to_sigkill_for_a_process_that_ignores_sigterm(tmp_path):
    script = "import signal,time,sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
    log = tmp_path / "stubborn.log"
    pid = procs.spawn([sys.executable, "-c", script], log)
    procs.wait_until("stubborn process", lambda: "ready" in log.read_text(), 10)
    assert procs.alive(pid, sys.executable)
    assert procs.stop(pid, sys.executable, timeout=0.3) is True
    assert not procs.alive(pid)


def test_alive_refuses_a_pid_running_another_binary():
    assert procs.alive(os.getpid())
    assert not procs.alive(os.getpid(), "/definitely/not/this/binary")


def test_cli_without_cluster_says_so(tmp_path):
    env = dict(os.environ, PILOTMESH_CACHE=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "pilotmesh_controlplane", "--name", "nope", "status"],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 1 and "no cluster named 'nope'" in out.stdout
