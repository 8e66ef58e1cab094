"""Label selectors: the Kubernetes `LabelSelector` and Calico's selector expressions.

Both compile once to a predicate over a label dict. Malformed selectors raise `PolicyInputError`
with the offending part, so the caller can name the policy.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from .model import PolicyInputError

Labels = dict[str, str]
Predicate = Callable[[Labels], bool]


def _match_all(_labels: Labels) -> bool:
    return True


def scalar(value: Any, where: str) -> str:
    """A label value as YAML gives it (str, int, bool) turned into the string the apiserver stores."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise PolicyInputError(f"{where}: expected a string, got {type(value).__name__}")


def label_selector(sel: Any, where: str, key: Callable[[str], str] = lambda k: k) -> Predicate:
    """Compile a metav1.LabelSelector (matchLabels AND matchExpressions); `{}` matches everything.

    `key` rewrites keys before matching (Cilium strips source prefixes such as `k8s:`).
    """
    if sel is None or sel == {}:
        return _match_all
    if not isinstance(sel, dict):
        raise PolicyInputError(f"{where}: a label selector must be a mapping, got {type(sel).__name__}")
    unknown = set(sel) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise PolicyInputError(f"{where}: unknown selector field(s) {', '.join(sorted(unknown))}")
    checks: list[Predicate] = []
    labels = sel.get("matchLabels") or {}
    if not isinstance(labels, dict):
        raise PolicyInputError(f"{where}.matchLabels: must be a mapping")
    wanted = {key(str(k)): scalar(v, f"{where}.matchLabels.{k}") for k, v in labels.items()}
    if wanted:
        checks.append(lambda lb: all(lb.get(k) == v for k, v in wanted.items()))
    exprs = sel.get("matchExpressions") or []
    if not isinstance(exprs, list):
        raise PolicyInputError(f"{where}.matchExpressions: must be a list")
    for i, e in enumerate(exprs):
        checks.append(_expression(e, f"{where}.matchExpressions[{i}]", key))
    return lambda lb: all(c(lb) for c in checks)


def _expression(e: Any, where: str, key: Callable[[str], str]) -> Predicate:
    if not isinstance(e, dict) or not isinstance(e.get("key"), str):
        raise PolicyInputError(f"{where}: needs a string `key`")
    k, op, values = key(e["key"]), e.get("operator"), e.get("values")
    if op in ("In", "NotIn"):
        if not isinstance(values, list) or not values:
            raise PolicyInputError(f"{where}: operator {op} needs a non-empty `values` list")
        vs = frozenset(scalar(v, f"{where}.values") for v in values)
        if op == "In":
            return lambda lb: lb.get(k) in vs
        return lambda lb: lb.get(k) not in vs  # a missing key is "not in"
    if op in ("Exists", "DoesNotExist"):
        if values:
            raise PolicyInputError(f"{where}: operator {op} takes no `values`")
        if op == "Exists":
            return lambda lb: k in lb
        return lambda lb: k not in lb
    raise PolicyInputError(f"{where}: unknown operator {op!r} (use In, NotIn, Exists or DoesNotExist)")


# --- Calico selector expressions -------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<op>&&|\|\||==|!=|!|\(|\)|\{|\}|,)|(?P<str>'[^']*'|\"[^\"]*\")|(?P<word>[A-Za-z0-9_./\-]+))"
)


def _tokens(text: str, where: str) -> list[str]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PolicyInputError(f"{where}: cannot parse selector {text!r} at {text[pos:]!r}")
        out.append(m.group(0).strip())
        pos = m.end()
    return out


class _CalicoParser:
    def __init__(self, text: str, where: str):
        self.toks, self.i, self.where, self.text = _tokens(text, where), 0, where, text

    def fail(self, what: str) -> PolicyInputError:
        return PolicyInputError(f"{self.where}: {what} in selector {self.text!r}")

    def peek(self, n: int = 0) -> str | None:
        j = self.i + n
        return self.toks[j] if j < len(self.toks) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise self.fail(f"expected {want or 'more'}, found {tok or 'the end'}")
        self.i += 1
        return tok

    def parse(self) -> Predicate:
        if not self.toks:
            return _match_all  # an empty selector selects everything, like all()
        pred = self.or_()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()!r}")
        return pred

    def or_(self) -> Predicate:
        return self._joined("||", self.and_, any)

    def and_(self) -> Predicate:
        return self._joined("&&", self.unary, all)

    def _joined(self, sep: str, sub: Callable[[], Predicate], combine: Callable) -> Predicate:
        parts = [sub()]
        while self.peek() == sep:
            self.take()
            parts.append(sub())
        return parts[0] if len(parts) == 1 else (lambda lb: combine(p(lb) for p in parts))

    def unary(self) -> Predicate:
        if self.peek() == "!":
            self.take()
            inner = self.unary()
            return lambda lb: not inner(lb)
        if self.peek() == "(":
            self.take()
            inner = self.or_()
            self.take(")")
            return inner
        return self.term()

    def value(self) -> str:
        tok = self.take()
        if len(tok) < 2 or tok[0] not in "'\"":
            raise self.fail(f"expected a quoted value, found {tok!r}")
        return tok[1:-1]

    def term(self) -> Predicate:
        word = self.take()
        if word in ("all", "global", "has") and self.peek() == "(":
            self.take("(")
            if word == "has":
                k = self.take()
                self.take(")")
                return lambda lb: k in lb
            self.take(")")
            return _match_all if word == "all" else (lambda lb: False)  # global() selects no pod
        op = self.take()
        if op in ("==", "!="):
            v = self.value()
            return (lambda lb: lb.get(word) == v) if op == "==" else (lambda lb: lb.get(word) != v)
        negate = op == "not"
        if negate:
            op = self.take()
        if op == "in":
            vs = self.value_set()
            return (lambda lb: lb.get(word) not in vs) if negate else (lambda lb: lb.get(word) in vs)
        if op in ("contains", "starts", "ends") and not negate:
            if op != "contains":
                self.take("with")
            v = self.value()
            test = {"contains": str.__contains__, "starts": str.startswith, "ends": str.endswith}[op]
            return lambda lb: word in lb and test(lb[word], v)
        raise self.fail(f"unknown operator {op!r}")

    def value_set(self) -> frozenset[str]:
        self.take("{")
        vs = set()
        while self.peek() != "}":
            vs.add(self.value())
            if self.peek() == ",":
                self.take()
        self.take("}")
        return frozenset(vs)


def calico_selector(text: Any, where: str) -> Predicate:
    """Compile a Calico selector such as `app == 'web' && !has(debug)`; "" and `all()` select everything."""
    if text is None:
        return _match_all
    if not isinstance(text, str):
        raise PolicyInputError(f"{where}: a Calico selector must be a string, got {type(text).__name__}")
    return _CalicoParser(text, where).parse()
