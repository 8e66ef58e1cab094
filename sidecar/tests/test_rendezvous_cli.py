"""The `pilot-rendezvous` command: flags, JSON logs, clean SIGTERM shutdown with state kept."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from pilot_rendezvous.cli import build_parser, main

pytestmark = pytest.mark.timeout(30)


def test_help_documents_every_listener_and_the_database():
    text = build_parser().format_help()
    for flag in ("-registry-listen", "-beacon-listen", "-beacon-advertise", "-db", "-admin-token", "-log-format"):
        assert flag in text


def test_bad_listen_address_is_a_usage_error(capsys):
    assert main(["-registry-listen", "nowhere", "-db", ":memory:"]) == 2
    assert "want HOST:PORT" in capsys.readouterr().err


def test_sigterm_shuts_down_cleanly_and_keeps_the_database(tmp_path):
    db = tmp_path / "r.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "pilot_rendezvous", "-registry-listen", "127.0.0.1:0",
                             "-beacon-listen", "127.0.0.1:0", "-db", str(db), "-log-format", "json"],
                            stderr=subprocess.PIPE, text=True)
    lines = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines.append(json.loads(proc.stderr.readline()))
        if lines[-1]["msg"] == "pilot-rendezvous ready":
            break
    assert {e["msg"] for e in lines} >= {"registry listening", "beacon listening", "pilot-rendezvous ready"}
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=10)[1]
    assert proc.returncode == 0 and "shutting down" in rest
    assert db.exists()
