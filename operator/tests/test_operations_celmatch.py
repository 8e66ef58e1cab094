"""The CEL subset of matchConditions, against the expression the operator really writes, and CEL's rules."""
import pytest

from pilotmesh_operator.celmatch import CelError, UnsupportedCel, evaluate
from pilotmesh_operator.desired import HAS_OPT_IN


def _env(meta):
    return {"object": {"metadata": meta}, "oldObject": None, "request": {"operation": "CREATE"}}


@pytest.mark.parametrize("meta,expected", [
    ({"annotations": {"pilot.io/inject": "true"}}, True),
    ({"annotations": {"pilot.io/inject": "nonsense"}}, True),      # any value reaches the injector (it warns)
    ({"labels": {"pilot.io/inject": "true"}}, True),
    ({"annotations": {"other": "x"}, "labels": {"app": "web"}}, False),
    ({}, False),
])
def test_the_opt_in_condition_the_operator_writes(meta, expected):
    assert evaluate(HAS_OPT_IN, _env(meta)) is expected


def test_errors_are_absorbed_by_and_or_as_in_cel():
    env = {"object": {"metadata": {}}}
    assert isinstance(evaluate("object.spec.x == 1", env), CelError)
    assert evaluate("object.spec.x == 1 || true", env) is True
    assert evaluate("false && object.spec.x == 1", env) is False
    assert isinstance(evaluate("true && object.spec.x == 1", env), CelError)


def test_literals_negation_membership_and_index_syntax():
    env = {"object": {"metadata": {"labels": {"a.b/c": "v"}}, "items": ["x", "y"]}}
    assert evaluate("!(object.metadata.labels['a.b/c'] != 'v')", env) is True
    assert evaluate("'y' in object.items && !('z' in object.items)", env) is True
    assert evaluate('has(object.metadata.labels) && !has(object.metadata.annotations)', env) is True
    assert evaluate("object.missing == null || 1 == 1", env) is True


@pytest.mark.parametrize("expr", ["object.metadata.name.startsWith('x')", "size(object) > 1", "1 +", "x == 1",
                                  "object.metadata == 'a' ?"])
def test_what_the_evaluator_does_not_know_is_reported_not_guessed(expr):
    with pytest.raises(UnsupportedCel):
        evaluate(expr, {"object": {"metadata": {"name": "a"}}})
