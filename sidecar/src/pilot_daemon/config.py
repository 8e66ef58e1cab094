"""Daemon settings: flags > ``PILOT_*`` environment > ``~/.pilot/config.json`` (or ``-config``) > defaults.

Flags follow Go's ``flag`` package, as the official binary parses them: ``-name value``, ``-name=value``,
``--name`` works too; booleans take only ``-name`` or ``-name=true|false``; parsing stops at ``--`` or
at the first non-flag argument. Pure: the caller passes argv, the environment and the config text.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .proto import gojson

DEFAULT_REGISTRY = "34.71.57.205:9000"
DEFAULT_BEACON = "34.71.57.205:9001"


class ConfigError(Exception):
    """A flag, environment variable or config file value that cannot be used."""


@dataclass(frozen=True)
class Flag:
    name: str
    kind: str            # str | bool | int | duration
    default: Any
    help: str
    env: str = ""
    ignored: bool = False  # accepted for compatibility, has no effect here


_F = Flag
FLAGS: tuple[Flag, ...] = (
    _F("socket", "str", "/tmp/pilot.sock", "Unix socket path for IPC", "PILOT_SOCKET"),
    _F("transport", "str", "udp", "tunnel transport: udp, compat or auto", "PILOT_TRANSPORT"),
    _F("registry", "str", DEFAULT_REGISTRY, "registry server address (or $PILOT_REGISTRY)", "PILOT_REGISTRY"),
    _F("beacon", "str", DEFAULT_BEACON, "beacon server address (or $PILOT_BEACON)", "PILOT_BEACON"),
    _F("listen", "str", ":0", "UDP listen address for tunnel traffic"),
    _F("identity", "str", "", "path to persist Ed25519 identity (enables stable identity across restarts)"),
    _F("hostname", "str", "", "hostname for discovery (lowercase alphanumeric + hyphens, max 63 chars)",
       "PILOT_HOSTNAME"),
    _F("public", "bool", False, "make this node's endpoint publicly visible (default: private)"),
    _F("encrypt", "bool", True, "enable tunnel-layer encryption (X25519 + AES-256-GCM)"),
    _F("trust-auto-approve", "bool", False, "automatically approve all incoming trust handshakes"),
    _F("registry-tls", "bool", False, "use TLS for registry connection"),
    _F("registry-trust", "str", "pinned", "trust store for -registry-tls: pinned or system",
       "PILOT_REGISTRY_TRUST"),
    _F("registry-fingerprint", "str", "", "hex SHA-256 fingerprint of registry TLS certificate",
       "PILOT_REGISTRY_FINGERPRINT"),
    _F("log-format", "str", "text", "log format (text, json)"),
    _F("log-level", "str", "info", "log level (debug, info, warn, error)"),
    _F("no-echo", "bool", False, "disable built-in echo service (port 7)"),
    _F("no-dataexchange", "bool", False, "disable built-in data exchange service (port 1001)"),
    _F("dataexchange-b64", "bool", False, "write inbox payloads as base64"),
    _F("no-eventstream", "bool", False, "disable built-in event stream service (port 1002)"),
    _F("email", "str", "", "email address for account identification and key recovery"),
    _F("owner", "str", "", "(deprecated: use -email) owner identifier"),
    _F("endpoint", "str", "", "fixed public endpoint (host:port) - skips STUN"),
    _F("advertise-endpoint", "str", "", "override the STUN-discovered endpoint advertised to the registry"),
    _F("relay-only", "bool", False, "hide real_addr from peers; reach this node only via the beacon relay"),
    _F("networks", "str", "", "comma-separated network IDs to auto-join at startup"),
    _F("idle-timeout", "duration", 120.0, "idle connection timeout"),
    _F("keepalive", "duration", 60.0, "keepalive probe interval"),
    _F("time-wait", "duration", 10.0, "TIME_WAIT duration"),
    _F("syn-rate-limit", "int", 100, "max SYN packets per second"),
    _F("max-conns-per-port", "int", 1024, "max connections per port"),
    _F("max-conns-total", "int", 65536, "max total connections"),
    _F("config", "str", "", "path to config file (JSON)"),
    _F("compat-beacon", "str", "wss://beacon.pilotprotocol.network/v1/compat", "beacon WSS URL for compat"),
    _F("tls-trust", "str", "system", "TLS trust store for -transport=compat: system or pinned"),
    _F("proxy", "str", "auto", "outbound proxy: auto, off or an http(s):// URL", "PILOT_PROXY"),
    _F("proxy-cmd", "str", "", "command whose output is the current proxy URL", "PILOT_PROXY_CMD"),
    _F("transport-file", "str", "", "file holding the transport (udp, compat or auto), watched: a change "
       "switches live (Kubernetes: the pilot.io/transport annotation via the downward API)", "PILOT_TRANSPORT_FILE"),
    _F("exit-on-file", "str", "", "exit 0 once this file exists (Jobs without native sidecars)"),
    _F("socket-allow-uids", "str", "same", "who may use the IPC socket: same (the daemon's UID, as upstream), "
       "any, or a comma-separated list of UIDs (a pod's app containers may run as other users)"),
    _F("metrics-listen", "str", "", "serve Prometheus metrics at http://HOST:PORT/metrics (PilotMesh extension, "
       "not in the official daemon; default off)", "PILOT_METRICS_LISTEN"),
    _F("admin-token", "str", "", "admin token for network operations (broadcast)", "PILOT_ADMIN_TOKEN"),
    _F("webhook", "str", "", "HTTP(S) endpoint for event notifications (empty = disabled)"),
    _F("webhook-secret", "str", "", "HMAC-SHA256 pre-shared secret for webhook payload signing (empty = no "
       "signature). Env: PILOT_WEBHOOK_SECRET.", "PILOT_WEBHOOK_SECRET"),
    _F("version", "bool", False, "print version and exit"),
    # Accepted and ignored: features of the official binary this daemon does not carry.
    *(_F(n, k, d, h, ignored=True) for n, k, d, h in (
        ("beacon-rtt-probe", "bool", False, "probe beacon RTT before selection"),
        ("log-max-backups", "int", 3, "rotated log generations kept"),
        ("log-max-size", "int", 50, "rotate the daemon log past this many MB"),
        ("motd-feed-url", "str", "", "message-of-the-day feed URL"),
        ("motd-interval", "duration", 900.0, "message-of-the-day poll interval"),
        ("no-addr-watch", "bool", False, "disable the own-address watcher"),
        ("no-path-watch", "bool", False, "disable the per-peer path watchdog"),
        ("no-rx-watchdog", "bool", False, "disable the inbound-path watchdog"),
        ("no-skillinject", "bool", False, "disable the skill-injection service"),
        ("pprof", "str", "", "serve Go runtime profiles"),
        ("rekey-whitelist", "str", "", "peers that bypass the rekey interval"),
        ("reply-whitelist", "str", "", "peers that bypass the key-exchange reply gate"),
        ("sandbox", "bool", False, "restrict file I/O to the sandbox directory"),
        ("sandbox-dir", "str", "", "confinement root when -sandbox is set"),
        ("security-profile", "str", "compatible", "locked security profile"),
        ("strict-dataplane-trust", "bool", False, "refuse key exchange with untrusted peers"),
        ("syn-whitelist", "str", "", "sources that bypass the SYN rate limit"),
        ("telemetry-url", "str", "", "telemetry endpoint URL"),
    )),
)
BY_NAME = {f.name: f for f in FLAGS}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass
class ParsedArgs:
    values: dict[str, Any] = field(default_factory=dict)   # only flags given on the command line
    rest: list[str] = field(default_factory=list)
    help: bool = False


def parse_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` (seconds as float); a bare ``0`` is allowed."""
    s = text.strip()
    sign = -1.0 if s.startswith("-") else 1.0
    s = s.lstrip("+-")
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ConfigError(f"invalid duration {text!r} (use e.g. 500ms, 30s, 2m)")
    return sign * total


def convert(flag: Flag, raw: Any, source: str) -> Any:
    """Turn a flag/env/config value into the flag's type; raises ``ConfigError`` naming the source."""
    try:
        if flag.kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "t", "true"):
                return True
            if text in ("0", "f", "false", ""):
                return False
            raise ValueError(raw)
        if flag.kind == "int":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if flag.kind == "duration":
            return float(raw) if gojson.is_number(raw) else parse_duration(raw)
        return raw if isinstance(raw, str) else str(raw)
    except (ValueError, TypeError, ConfigError):
        raise ConfigError(f'invalid value "{raw}" for {source} -{flag.name}: want a {flag.kind}') from None


def parse_argv(argv: list[str]) -> ParsedArgs:
    out = ParsedArgs()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if len(arg) < 2 or not arg.startswith("-"):
            break
        name = arg[2:] if arg.startswith("--") else arg[1:]
        name, has_value, value = name.partition("=")
        if name in ("h", "help"):
            out.help = True
            i += 1
            continue
        flag = BY_NAME.get(name)
        if flag is None or not name or name.startswith("-"):
            raise ConfigError(f"flag provided but not defined: -{name}")
        if flag.kind == "bool" and not has_value:
            value = "true"
        elif not has_value:
            if i + 1 >= len(argv):
                raise ConfigError(f"flag needs an argument: -{name}")
            i += 1
            value = argv[i]
        out.values[name] = convert(flag, value, "flag")
        i += 1
    out.rest = argv[i:]
    return out


def resolve(args: ParsedArgs, env: dict[str, str], config_text: str | None) -> dict[str, Any]:
    """Every flag's effective value (``-`` in names becomes ``_``)."""
    config: dict[str, Any] = {}
    if config_text:
        try:
            loaded = json.loads(config_text)
        except ValueError as exc:
            raise ConfigError(f"config file is not valid JSON: {exc}; fix or remove it") from None
        if not isinstance(loaded, dict):
            raise ConfigError("config file must hold a JSON object")
        config = {k.replace("-", "_"): v for k, v in loaded.items()}
    settings: dict[str, Any] = {}
    for flag in FLAGS:
        key = flag.name.replace("-", "_")
        if flag.name in args.values:
            value = args.values[flag.name]
        elif flag.env and env.get(flag.env, "") != "":
            value = convert(flag, env[flag.env], f"${flag.env} for")
        elif key in config and config[key] is not None:
            value = convert(flag, config[key], "config.json key for")
        else:
            value = flag.default
        settings[key] = value
    return settings


def usage(prog: str = "pilot-daemon") -> str:
    lines = [f"Usage of {prog}:"]
    for flag in sorted(FLAGS, key=lambda f: f.name):
        kind = "" if flag.kind == "bool" else f" {flag.kind if flag.kind != 'str' else 'string'}"
        note = " (accepted, no effect in this daemon)" if flag.ignored else ""
        default = "" if flag.default in ("", False, None) else f" (default {_go_default(flag)})"
        lines.append(f"  -{flag.name}{kind}\n    \t{flag.help}{note}{default}")
    return "\n".join(lines)


def _go_default(flag: Flag) -> str:
    """A default as Go's flag package prints it: quoted strings, ``true``, ``2m0s``."""
    value = flag.default
    if flag.kind == "str":
        return f'"{value}"'
    if flag.kind == "bool":
        return "true" if value else "false"
    if flag.kind == "duration":
        minutes, seconds = divmod(int(value), 60)
        hours, minutes = divmod(minutes, 60)
        if hours:
            return f"{hours}h{minutes}m{seconds}s"
        return f"{minutes}m{seconds}s" if minutes else f"{seconds}s"
    return str(value)
