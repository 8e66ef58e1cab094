"""Tripwires for the pytest traps of this layout (see ../shared/design.md): every test folder's conftest.py
is imported under the one module name `conftest`, and test modules share one namespace of basenames."""
import collections
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEST_DIRS = [ROOT / "operator" / "tests", ROOT / "sidecar" / "tests", ROOT / "e2e" / "tests"]


def _python_files():
    return [p for d in TEST_DIRS for p in d.rglob("*.py")]


def test_no_test_module_imports_from_conftest():
    needles = ("from " + "conftest import", "import " + "conftest")
    offenders = [str(p.relative_to(ROOT)) for p in _python_files() if any(n in p.read_text() for n in needles)]
    assert not offenders, f"import helpers from a uniquely named module instead of conftest: {offenders}"


def test_test_folders_have_no_init_and_basenames_are_unique():
    assert not [p for d in TEST_DIRS for p in d.rglob("__init__.py")], "no __init__.py in test folders"
    names = collections.Counter(p.name for p in _python_files() if p.name != "conftest.py")
    assert [n for n, c in names.items() if c > 1] == []


def test_no_package_folder_named_operator_is_importable():
    import operator
    assert operator.__file__ and "operator/src" not in operator.__file__
    assert not (ROOT / "operator" / "__init__.py").exists()
