"""`pilot-daemon service systemd|launchd`: the unit / LaunchAgent carries the flags (quoted for systemd),
a persistent identity, restarts on failure; --install writes it; bad flags are refused."""
from __future__ import annotations

import plistlib
import shlex
import subprocess
import sys

from pilot_daemon.service_files import systemd_quote, systemd_unit, with_identity


def run(*args: str, home) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pilot_daemon", "service", *args], capture_output=True, text=True,
                          timeout=30, env={"HOME": str(home), "PATH": "/nonexistent"})


def test_systemd_unit_runs_the_daemon_with_the_flags(tmp_path):
    out = run("systemd", "--user", "--exe", "/opt/pilot/bin/pilot-daemon", "-transport", "auto", "-hostname",
              "edge-1", "-proxy", "http://u:p%20w@proxy:3128", home=tmp_path)
    assert out.returncode == 0, out.stderr
    unit = out.stdout
    exec_line = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    words = shlex.split(exec_line[len("ExecStart="):].replace("%%", "%"))
    assert words == ["/opt/pilot/bin/pilot-daemon", "-transport", "auto", "-hostname", "edge-1", "-proxy",
                     "http://u:p%20w@proxy:3128", "-identity", f"{tmp_path}/.pilot/identity.json"]
    assert "Restart=on-failure" in unit and "WantedBy=default.target" in unit
    system = systemd_unit("/usr/bin/pilot-daemon", with_identity(["-identity=/etc/pilot/id.json"], "/x"), user=False)
    assert "-identity=/etc/pilot/id.json" in system and "/x" not in system
    assert "StateDirectory=pilot" in system and "WantedBy=multi-user.target" in system
    assert systemd_quote("a b$%") == '"a b$$%%"' and systemd_quote('q"') == '"q\\""'


def test_launchd_install_writes_a_plist(tmp_path):
    target = tmp_path / "agents" / "io.pilotmesh.pilot-daemon.plist"
    out = run("launchd", "--install", "--path", str(target), "--exe", "/usr/local/bin/pilot-daemon", "--",
              "-transport", "compat", "-compat-beacon", "wss://beacon.example/v1/compat", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"wrote {target}" in out.stdout and "launchctl load -w" in out.stdout   # no launchctl on PATH
    doc = plistlib.loads(target.read_bytes())
    assert doc["Label"] == "io.pilotmesh.pilot-daemon" and doc["RunAtLoad"] is True
    assert doc["ProgramArguments"][:5] == ["/usr/local/bin/pilot-daemon", "-transport", "compat", "-compat-beacon",
                                           "wss://beacon.example/v1/compat"]
    assert doc["ProgramArguments"][-2:] == ["-identity", f"{tmp_path}/.pilot/identity.json"]
    assert doc["KeepAlive"] == {"SuccessfulExit": False}


def test_bad_invocations_are_refused(tmp_path):
    assert run("upstart", home=tmp_path).returncode == 2
    bad = run("systemd", "-no-such-flag", home=tmp_path)
    assert bad.returncode == 2 and "flag provided but not defined: -no-such-flag" in bad.stderr
    assert run("systemd", "--path", home=tmp_path).returncode == 2
