"""Structural-schema defaulting and validation for CRD objects the apiserver never saw (offline `pilotmesh inject`).

Covers the subset our CRDs use: type, default, enum, pattern, minimum/maximum, maxLength, maxItems, required,
properties, additionalProperties (false or a schema), items, int-or-string, and `x-kubernetes-validations` whose
CEL rules are given as Python twins (a rule without a twin is an error at load time, so none is silently skipped).
Defaulting follows the apiserver: an absent or null field with a `default` gets it, then is walked like any other.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

CelTwin = Callable[[Any], bool]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,), "integer": (int,), "number": (int, float),
}


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """Return a copy of ``value`` with the schema's defaults filled in (absent or null fields only)."""
    value = copy.deepcopy(value)
    _default(schema, value)
    return value


def _default(schema: Mapping[str, Any], value: Any) -> None:
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if value.get(key) is None and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                _default(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        for item in value:
            _default(schema["items"], item)


def validate(schema: Mapping[str, Any], value: Any, path: str, twins: Mapping[str, CelTwin]) -> list[str]:
    """Every violation as ``"<path>: <what is wrong>"``; empty when ``value`` is valid."""
    errors: list[str] = []
    _validate(schema, value, path, twins, errors)
    return errors


def _type_ok(schema: Mapping[str, Any], value: Any) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    kind = schema.get("type")
    if kind is None:
        return True
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _TYPES[kind])


def _validate(schema: Mapping[str, Any], value: Any, path: str, twins: Mapping[str, CelTwin], errors: list[str]) -> None:
    if not _type_ok(schema, value):
        want = "an integer or a string" if schema.get("x-kubernetes-int-or-string") else f"a {schema['type']}"
        errors.append(f"{path}: must be {want}, got {value!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            hint = schema.get("description", "").split(". ")[0].rstrip(".") or f"must match {schema['pattern']}"
            errors.append(f"{path}: {value!r} is not valid ({hint})")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        for i, item in enumerate(value):
            _validate(schema.get("items", {}), item, f"{path}[{i}]", twins, errors)
    if isinstance(value, dict):
        _validate_object(schema, value, path, twins, errors)
    for rule in schema.get("x-kubernetes-validations", ()):
        if not errors and not twins[rule["rule"]](value):
            errors.append(f"{path}: {rule['message']}")


def _validate_object(schema: Mapping[str, Any], value: dict, path: str, twins: Mapping[str, CelTwin],
                     errors: list[str]) -> None:
    props = schema.get("properties", {})
    for key in schema.get("required", ()):
        if value.get(key) is None:
            errors.append(f"{path}.{key}: required")
    extra = schema.get("additionalProperties", True if not props else False)
    for key, sub in value.items():
        if sub is None:
            continue
        if key in props:
            _validate(props[key], sub, f"{path}.{key}", twins, errors)
        elif isinstance(extra, Mapping):
            _validate(extra, sub, f"{path}.{key}", twins, errors)
        elif extra is False:
            known = ", ".join(props) or "none"
            errors.append(f"{path}.{key}: unknown field (known: {known})")


def cel_rules(schema: Mapping[str, Any]) -> set[str]:
    """Every CEL rule text in the schema, to check each has a Python twin."""
    found = {rule["rule"] for rule in schema.get("x-kubernetes-validations", ())}
    for sub in schema.get("properties", {}).values():
        found |= cel_rules(sub)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), Mapping):
            found |= cel_rules(schema[key])
    return found
