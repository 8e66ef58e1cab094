"""The subset of CEL that admission `matchConditions` usually hold, evaluated the way the apiserver does.

Supported: `object` / `oldObject` / `request` variables, field selection (`a.b`, `a['b']`), `has(a.b)`,
string, int, bool and null literals, `in` (map keys, list items), `==`, `!=`, `!`, `&&`, `||`, parentheses.
`&&` and `||` absorb errors as CEL does (`false && error` is false, `true || error` is true). Anything else
raises UnsupportedCel: the caller then says it cannot predict the apiserver's answer, rather than guess.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<num>\d+)|(?P<op>&&|\|\||==|!=|[!().\[\]])
                        |(?P<id>[A-Za-z_][A-Za-z0-9_]*))""", re.X)


class UnsupportedCel(ValueError):
    """The expression uses CEL this evaluator does not implement."""


@dataclasses.dataclass(frozen=True)
class CelError:
    """A runtime error value (CEL keeps evaluating; `&&`/`||` may absorb it)."""

    message: str


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UnsupportedCel(f"cannot read CEL at {text[pos:pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, env: Mapping[str, Any]) -> None:
        self.toks, self.i, self.env = _tokens(text), 0, env

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks) or (want is not None and self.toks[self.i][1] != want):
            raise UnsupportedCel(f"expected {want or 'more'} at token {self.i}")
        self.i += 1
        return self.toks[self.i - 1]

    # Each level returns a value or a CelError; both sides are always parsed (no short-circuit on syntax).
    def expr(self) -> Any:
        left = self.conj()
        while self.peek() == "||":
            self.take()
            right = self.conj()
            left = _or(left, right)
        return left

    def conj(self) -> Any:
        left = self.unary()
        while self.peek() == "&&":
            self.take()
            right = self.unary()
            left = _and(left, right)
        return left

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            value = self.unary()
            return value if isinstance(value, CelError) else (not _bool(value))
        return self.relation()

    def relation(self) -> Any:
        left = self.primary()
        op = self.peek()
        if op not in ("in", "==", "!="):
            return left
        self.take()
        right = self.primary()
        if isinstance(left, CelError):
            return left
        if isinstance(right, CelError):
            return right
        if op == "in":
            if not isinstance(right, (Mapping, list)):
                return CelError(f"'in' needs a map or list, got {type(right).__name__}")
            return left in right
        return (left == right) if op == "==" else (left != right)

    def primary(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.expr()
            self.take(")")
            return value
        if kind == "str":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if kind == "num":
            return int(text)
        if kind != "id":
            raise UnsupportedCel(f"unexpected {text!r}")
        if text in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[text]
        if text == "has":
            self.take("(")
            value = self.selection(self.variable(self.take()[1]), presence=True)
            self.take(")")
            return value
        return self.selection(self.variable(text))

    def variable(self, name: str) -> Any:
        if name not in self.env:
            raise UnsupportedCel(f"unknown variable or function {name!r}")
        return self.env[name]

    def selection(self, value: Any, presence: bool = False) -> Any:
        steps = []
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "id":
                    raise UnsupportedCel(f"expected a field name, got {name!r}")
                if self.peek() == "(":
                    raise UnsupportedCel(f"method call .{name}() is not supported")
            else:
                kind, name = self.take()
                if kind != "str":
                    raise UnsupportedCel("only string map keys are supported in [...]")
                name = name[1:-1]
                self.take("]")
            steps.append(name)
        if presence and not steps:
            raise UnsupportedCel("has() needs a field selection")
        for n, name in enumerate(steps):
            last = presence and n == len(steps) - 1
            if isinstance(value, CelError):
                return value
            if not isinstance(value, Mapping):
                return CelError(f"no such key: {name} (not a map)")
            if last:
                return name in value and value[name] is not None
            if name not in value:
                return CelError(f"no such key: {name}")
            value = value[name]
        return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise UnsupportedCel(f"expected a bool, got {type(value).__name__}")
    return value


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    return a if isinstance(a, CelError) else (b if isinstance(b, CelError) else (_bool(a) or _bool(b)))


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    return a if isinstance(a, CelError) else (b if isinstance(b, CelError) else (_bool(a) and _bool(b)))


def evaluate(expression: str, env: Mapping[str, Any]) -> bool | CelError:
    """True/False, or a CelError (the apiserver then applies the webhook's failurePolicy)."""
    parser = _Parser(expression, env)
    value = parser.expr()
    if parser.i != len(parser.toks):
        raise UnsupportedCel(f"unexpected {parser.peek()!r} after the expression")
    return value if isinstance(value, CelError) else _bool(value)
