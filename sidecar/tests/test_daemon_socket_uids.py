"""-socket-allow-uids (a PilotMesh extension): in a pod the app containers may run as other users than the
daemon, so the injector lets them in; the default stays the official same-UID rule."""
import os
import stat
import subprocess
import sys

import pytest

from daemon_harness import our_daemons  # noqa: F401  (fixture)
from pilot_daemon.io.ipc_server import parse_allowed_uids
from pilot_daemon.proto import ipc

# Connect as another user and ask for health; exit 0 when answered, 3 when the daemon closes on us.
PROBE = """
import os, socket, struct, sys
os.setgid(4321); os.setuid(4321)
s = socket.socket(socket.AF_UNIX); s.settimeout(5)
try:
    s.connect(sys.argv[1])
except PermissionError:
    sys.exit(2)
s.sendall(struct.pack('>I', 1) + bytes((int(sys.argv[2]),)))
sys.exit(0 if s.recv(5)[4:5] == bytes((int(sys.argv[3]),)) else 3)
"""


def _probe_as_other_user(sock) -> int:
    return subprocess.run([sys.executable, "-c", PROBE, str(sock), str(int(ipc.Cmd.HEALTH)),
                           str(int(ipc.Cmd.HEALTH_OK))], timeout=20).returncode


def test_parse_allowed_uids():
    assert parse_allowed_uids("same") == {os.getuid()}
    assert parse_allowed_uids("any") is None
    assert parse_allowed_uids("1000, 2000") == {os.getuid(), 1000, 2000}
    with pytest.raises(ValueError, match="socket-allow-uids"):
        parse_allowed_uids("everyone")


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another UID needs root")
def test_other_users_are_refused_by_default_and_let_in_with_any(rendezvous, our_daemons, tmp_path):
    for folder in [tmp_path, *tmp_path.parents][:4]:   # pytest's temp folders are 0700: let the other user through
        if folder.owner() == "root" and str(folder).startswith("/tmp/"):
            os.chmod(folder, 0o755)
    rdv = rendezvous()
    strict = our_daemons("strict", rdv.registry, rdv.beacon, "-public")
    assert stat.S_IMODE(os.stat(strict.socket).st_mode) == 0o600
    for d in (strict,):
        os.chmod(d.socket.parent, 0o755)
    assert _probe_as_other_user(strict.socket) in (2, 3)
    open_ = our_daemons("open", rdv.registry, rdv.beacon, "-public", "-socket-allow-uids", "any")
    os.chmod(open_.socket.parent, 0o755)
    assert stat.S_IMODE(os.stat(open_.socket).st_mode) == 0o666
    assert _probe_as_other_user(open_.socket) == 0
