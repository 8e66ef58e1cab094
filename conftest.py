"""Root conftest: the real-control-plane fixtures, and a tripwire for the stdlib `operator` trap.

The repository has a top-level folder named `operator/`. With `--import-mode=importlib` or an
`__init__.py` in the wrong place, pytest would import that folder over the standard library's
`operator` module and things break in confusing ways far away; fail loudly here instead.
"""
import operator

assert hasattr(operator, "itemgetter") and operator.__file__ and "site-packages" not in operator.__file__, (
    f"`operator` resolves to {getattr(operator, '__file__', operator)!r}, not the standard library: "
    "keep pytest's default import mode and no __init__.py in operator/ or its tests/"
)

pytest_plugins = ["pilotmesh_controlplane.pytest_plugin"]
