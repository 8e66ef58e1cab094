"""Label selectors: Kubernetes LabelSelector and Calico selector expressions."""
from __future__ import annotations

import pytest

from pilotmesh_operator.render.netpol.model import PolicyInputError
from pilotmesh_operator.render.netpol.selectors import calico_selector, label_selector

WEB = {"app": "web", "tier": "front"}


@pytest.mark.parametrize("sel, labels, want", [
    ({}, {}, True),
    ({"matchLabels": {"app": "web"}}, WEB, True),
    ({"matchLabels": {"app": "api"}}, WEB, False),
    ({"matchLabels": {"app": "web", "tier": "back"}}, WEB, False),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}, WEB, True),
    ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["api"]}]}, WEB, False),
    ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["api"]}]}, WEB, True),
    ({"matchExpressions": [{"key": "absent", "operator": "NotIn", "values": ["x"]}]}, WEB, True),
    ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, WEB, True),
    ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, WEB, False),
    ({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, WEB, False),
    ({"matchLabels": {"v": 1}}, {"v": "1"}, True),  # YAML ints compare as the apiserver's strings
    ({"matchLabels": {"on": True}}, {"on": "true"}, True),
])
def test_label_selector(sel, labels, want):
    assert label_selector(sel, "sel")(labels) is want


@pytest.mark.parametrize("sel, fragment", [
    ({"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}, "unknown operator 'Equals'"),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "non-empty `values`"),
    ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "takes no `values`"),
    ({"matchExpressions": [{"operator": "Exists"}]}, "string `key`"),
    ({"matchLabels": ["app"]}, "must be a mapping"),
    ({"matchLabels": {"a": {"b": 1}}}, "expected a string"),
    ({"podSelector": {}}, "unknown selector field"),
    ("app=web", "must be a mapping"),
])
def test_label_selector_errors_name_the_field(sel, fragment):
    with pytest.raises(PolicyInputError, match="^spec.podSelector") as e:
        label_selector(sel, "spec.podSelector")
    assert fragment in str(e.value)


def test_label_selector_key_rewrite():
    sel = label_selector({"matchLabels": {"k8s:app": "web"}}, "s", key=lambda k: k.removeprefix("k8s:"))
    assert sel({"app": "web"})


@pytest.mark.parametrize("expr, want", [
    ("", True), ("all()", True), ("global()", False),
    ("app == 'web'", True), ('app == "api"', False), ("app != 'api'", True), ("missing != 'x'", True),
    ("has(tier)", True), ("!has(tier)", False), ("has(missing)", False),
    ("app in {'web', 'api'}", True), ("app not in {'web'}", False), ("missing not in {'web'}", True),
    ("app == 'web' && tier == 'front'", True), ("app == 'api' || tier == 'front'", True),
    ("app == 'api' || (tier == 'front' && !has(debug))", True), ("!(app == 'web')", False),
    ("app contains 'e'", True), ("app starts with 'w'", True), ("app ends with 'x'", False),
    ("projectcalico.org/namespace == 'shop'", True),
])
def test_calico_selector(expr, want):
    labels = {**WEB, "projectcalico.org/namespace": "shop"}
    assert calico_selector(expr, "spec.selector")(labels) is want


@pytest.mark.parametrize("expr", ["app = 'web'", "app == web", "app == 'web' &&", "(app == 'web'", "app in 'web'",
                                  "app ~ 'x'", "has(app"])
def test_calico_selector_errors(expr):
    with pytest.raises(PolicyInputError, match="spec.selector"):
        calico_selector(expr, "spec.selector")


def test_calico_selector_type_error():
    with pytest.raises(PolicyInputError, match="must be a string"):
        calico_selector(["all()"], "spec.selector")
