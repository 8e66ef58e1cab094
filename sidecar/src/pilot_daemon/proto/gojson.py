"""JSON bytes as Go's ``encoding/json.Marshal`` writes them for maps and slices, and Go's time text.

The official daemon builds its IPC replies from ``map[string]interface{}``, so: keys sorted, no spaces,
``<``, ``>``, ``&``, U+2028 and U+2029 escaped as ``\\u003c`` and so on, non-ASCII written as UTF-8,
and floats in Go's shortest form (``5`` not ``5.0``; ``1e-7`` not ``1e-07``; exponent form below 1e-6
and from 1e21 up). Python ints are written as integers.
"""

from __future__ import annotations

import json
import math
import time
from decimal import Decimal
from typing import Any

_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` (dicts, lists, tuples, str, int, float, bool, None) like Go's json.Marshal."""
    parts: list[str] = []
    _encode(obj, parts)
    return "".join(parts).encode("utf-8", "surrogateescape")


def _encode(obj: Any, out: list[str]) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        out.append(json.dumps(obj, ensure_ascii=False).translate(_ESCAPES))
    elif isinstance(obj, int):
        out.append(str(int(obj)))
    elif isinstance(obj, float):
        out.append(format_float(obj))
    elif isinstance(obj, dict):
        out.append("{")
        for i, key in enumerate(sorted(obj, key=str)):
            if i:
                out.append(",")
            _encode(str(key), out)
            out.append(":")
            _encode(obj[key], out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def format_float(value: float) -> str:
    """Go's float64 JSON form (strconv 'f' or 'e' shortest, with its exponent clean-up)."""
    if not math.isfinite(value):
        raise ValueError(f"JSON has no representation for {value}")
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        sign = exponent[0] if exponent[0] in "+-" else "+"
        digits = exponent.lstrip("+-").lstrip("0") or "0"
        return f"{mantissa}e{sign}{digits.zfill(2) if sign == '+' else digits}"
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def is_number(value: Any) -> bool:
    """A JSON number as Go decodes one: ``bool`` is an ``int`` in Python, not a number in JSON, and Python's
    ``json.loads`` also reads ``NaN`` and ``Infinity``, which are no JSON numbers (and break ``int()``)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def rfc3339nano(ns: int, *, utc: bool = False) -> str:
    """Go's ``time.RFC3339Nano`` (also how a ``time.Time`` marshals) for an instant in ns since the epoch, in
    local time or ``utc``: fraction without trailing zeros, ``Z`` for a zero offset."""
    secs, frac = divmod(ns, 1_000_000_000)
    t = time.gmtime(secs) if utc else time.localtime(secs)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", t)
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    off = t.tm_gmtoff or 0
    if off == 0:
        return text + "Z"
    sign, off = ("+", off) if off > 0 else ("-", -off)
    return f"{text}{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"
