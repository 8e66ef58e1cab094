"""What the operator remembers between transport re-decisions (pure, no I/O).

- `Tracker`: a fingerprint of each watched object; `observe()` says which namespaces' pods a change can
  affect: a namespaced policy -> its namespace; a cluster-scoped one -> all; a namespace whose labels
  changed -> that namespace, or all when meshes' analyzer settings read it (DNS, rendezvous, peers);
  a PilotMesh whose spec changed -> all. Status-only updates (resourceVersion churn) affect nothing.
- `Pending`: the union of scopes not yet handled.
- `CompileCache`: compiled policies memoised by object and resourceVersion, for building a Snapshot
  per batch without recompiling thousands of unchanged policies.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .injector.snapshot import Snapshot
from .mesh import MeshSettings
from .render.netpol import Settings, SettingsError
from .render.netpol.kinds import Compiled, compile_object
from .redecide import namespaces_read

POLICY, NAMESPACE, MESH = "policy", "namespace", "mesh"


@dataclasses.dataclass
class Pending:
    """Namespaces whose injected pods must be re-decided; `everything` means all of them."""

    namespaces: set[str] = dataclasses.field(default_factory=set)
    everything: bool = False

    def __bool__(self) -> bool:
        return self.everything or bool(self.namespaces)

    def add(self, other: "Pending") -> None:
        self.everything = self.everything or other.everything
        self.namespaces |= other.namespaces

    def take(self) -> "Pending":
        """This scope, leaving self empty."""
        out = Pending(self.namespaces, self.everything)
        self.namespaces, self.everything = set(), False
        return out

    def describe(self) -> str:
        if self.everything:
            return "all namespaces"
        names = sorted(self.namespaces)
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


ALL = Pending(everything=True)


def _key(kind: str, obj: Mapping[str, Any]) -> tuple[str, ...]:
    meta = obj.get("metadata") or {}
    return kind, str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""), str(meta.get("namespace") or ""), \
        str(meta.get("name") or "")


def _fingerprint(kind: str, obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    if kind == NAMESPACE:
        what: Any = meta.get("labels") or {}
    elif kind == MESH:
        what = obj.get("spec") or {}
    else:   # every field but metadata/status (Cilium has `specs`), and the labels (Calico may select on them)
        what = [{k: v for k, v in obj.items() if k not in ("metadata", "status")}, meta.get("labels") or {}]
    return json.dumps(what, sort_keys=True, default=str)


class Tracker:
    def __init__(self) -> None:
        self._seen: dict[tuple[str, ...], str] = {}
        self.read_by_meshes: frozenset[str] = frozenset()   # namespaces the meshes' settings read

    def observe(self, kind: str, obj: Mapping[str, Any], deleted: bool = False) -> Pending:
        """Record one watch event; the scope of pods it can change (empty when nothing that matters did)."""
        key = _key(kind, obj)
        if deleted:
            if self._seen.pop(key, None) is None:
                return Pending()
        else:
            fp = _fingerprint(kind, obj)
            if self._seen.get(key) == fp:
                return Pending()
            self._seen[key] = fp
        return self._scope(kind, key[3], key[4], deleted)

    def replace(self, kind: str, objects: Iterable[Mapping[str, Any]], collection: tuple[str, str]) -> Pending:
        """Record the whole content of one collection (apiVersion, kind), e.g. an informer's cache."""
        out = Pending()
        present = set()
        for obj in objects:
            present.add(_key(kind, obj))
            out.add(self.observe(kind, obj))
        gone = [k for k in self._seen if k[0] == kind and k[1:3] == collection and k not in present]
        for k in gone:
            del self._seen[k]
            out.add(self._scope(kind, k[3], k[4], True))
        return out

    def _scope(self, kind: str, namespace: str, name: str, deleted: bool) -> Pending:
        if kind == MESH:
            return Pending(everything=True)
        if kind == NAMESPACE:
            if deleted:
                return Pending()   # its pods are gone with it
            return Pending({name}, everything=name in self.read_by_meshes)
        return Pending({namespace}) if namespace else Pending(everything=True)


def read_namespaces(snapshot: Snapshot) -> frozenset[str]:
    """Namespaces any mesh's analyzer settings read besides the pod's own (DNS, rendezvous, peers)."""
    out: set[str] = set()
    for mesh in snapshot.meshes:
        try:
            settings = MeshSettings.from_object(mesh, cluster_version=snapshot.cluster_version,
                                                operator_namespace=snapshot.operator_namespace)
            out |= namespaces_read(Settings.from_dict(snapshot.analyzer_settings(settings)), "")
        except (ValueError, SettingsError):
            continue
    return frozenset(out - {""})


class CompileCache:
    """compile_object() results by (apiVersion, kind, namespace, name, resourceVersion)."""

    def __init__(self) -> None:
        self._items: dict[tuple[str, ...], Compiled] = {}

    def compile(self, objects: Iterable[Mapping[str, Any]]) -> list[Compiled]:
        """Every object compiled (reusing unchanged ones); entries for objects not given are dropped."""
        fresh: dict[tuple[str, ...], Compiled] = {}
        for obj in objects:
            key = (*_key(POLICY, obj)[1:], str((obj.get("metadata") or {}).get("resourceVersion") or ""))
            hit = self._items.get(key) if key[-1] else None
            fresh[key] = hit if hit is not None else compile_object(dict(obj), "default")
        self._items = fresh
        return list(fresh.values())

    def __len__(self) -> int:
        return len(self._items)
