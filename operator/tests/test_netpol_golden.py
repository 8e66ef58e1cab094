"""Golden cases for the NetworkPolicy transport analyzer: operator/golden/netpol/*.yaml.

Each file holds the input (`pod`, `namespaces`, `policies`, `settings`), a hand-written `expect`
(the verdict fields a person decided) and the full `output` of `analyze(...).to_dict()`.
Regenerate the outputs after an intended change, then review the diff:

    REFRESH_GOLDEN=1 .venv/bin/python -m pytest operator/tests/test_netpol_golden.py -q

Refreshing never touches `expect`, so a refresh cannot bless a wrong verdict.
"""
from __future__ import annotations

import os
import pathlib

import pytest
import yaml

from pilotmesh_operator.render.netpol import analyze

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "netpol"
CASES = sorted(GOLDEN.glob("*.yaml"))
REFRESH = os.environ.get("REFRESH_GOLDEN") == "1"


def run(case: dict) -> dict:
    return analyze(case["pod"], case.get("namespaces") or [], case.get("policies") or [],
                   case.get("settings") or {}).to_dict()


def test_enough_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: pathlib.Path):
    case = yaml.safe_load(path.read_text())
    got = run(case)
    for key, want in case["expect"].items():
        assert got[key] == want, f"{path.name}: {key} is {got[key]!r}, the case expects {want!r}\n{got['reasons']}"
    if REFRESH:
        case["output"] = got
        path.write_text(yaml.safe_dump(case, sort_keys=False, width=120))
        return
    assert "output" in case, f"{path.name} has no output yet: run with REFRESH_GOLDEN=1 and review it"
    assert got == case["output"]
