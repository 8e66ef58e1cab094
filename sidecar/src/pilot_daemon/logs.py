"""Daemon logging like Go's slog: ``-log-format text`` (key=value) or ``json`` (one object per line)."""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

_RESERVED = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "warning": logging.WARNING,
          "error": logging.ERROR}


def _attrs(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED}


def _when(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")


class SlogJSON(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": _when(record), "level": record.levelname.replace("WARNING", "WARN"),
               "msg": record.getMessage(), **_attrs(record)}
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class SlogText(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [f"time={_when(record)}", f"level={record.levelname.replace('WARNING', 'WARN')}",
                 f"msg={json.dumps(record.getMessage())}"]
        parts += [f"{k}={v}" for k, v in _attrs(record).items()]
        text = " ".join(parts)
        return text + ("\n" + self.formatException(record.exc_info) if record.exc_info else "")


def setup(fmt: str, level: str) -> None:
    if level.lower() not in LEVELS:
        raise ValueError(f"-log-level {level!r}: use debug, info, warn or error")
    if fmt not in ("text", "json"):
        raise ValueError(f"-log-format {fmt!r}: use text or json")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SlogJSON() if fmt == "json" else SlogText())
    root = logging.getLogger("pilot_daemon")
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level.lower()])
    root.propagate = False
