"""What the injector knows of the cluster at one instant: PilotMeshes, Namespaces, policies.

Built from the watch caches (never from API calls on the admission path). Pure: tests build one from dicts.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from pilot_daemon import contract

from ..mesh import MeshSettings, MeshSpecError
from ..render.netpol import compile_policies
from ..render.netpol.from_pilotmesh import settings_from_pilotmesh
from ..render.netpol.selectors import label_selector


MODES = ("sidecar", "daemonset")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def mesh_order(mesh: Mapping[str, Any]) -> tuple[str, str]:
    """Oldest first; the name breaks ties. The first mesh that selects a namespace owns it."""
    return (str(_meta(mesh).get("creationTimestamp") or "9999"), str(_meta(mesh).get("name") or ""))


@dataclasses.dataclass(frozen=True)
class MeshChoice:
    name: str
    settings: MeshSettings | None
    error: str | None = None            # the mesh's spec is invalid: nothing is injected
    shadowed: tuple[str, ...] = ()      # newer meshes that also select the namespace (Conflict)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    meshes: Sequence[Mapping[str, Any]] = ()
    namespaces: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    policies: Sequence[Any] = ()        # raw policy objects of any kind, or compiled ones
    cluster_version: tuple[int, int] | None = None
    operator_namespace: str = "pilot-system"
    _settings: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)  # per mesh, computed once

    @classmethod
    def build(cls, meshes, namespaces, policies, **kw) -> "Snapshot":
        """From raw lists; compiles the policies once so each admission only evaluates them."""
        ns = {str(_meta(n).get("name")): n for n in namespaces}
        return cls(meshes=sorted(meshes, key=mesh_order), namespaces=ns,
                   policies=compile_policies(policies), **kw)

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        obj = self.namespaces.get(namespace)
        labels = dict(_meta(obj).get("labels") or {}) if obj else {}
        labels.setdefault("kubernetes.io/metadata.name", namespace)
        return labels

    def mesh_for(self, namespace: str) -> MeshChoice | None:
        """The mesh that injects in ``namespace``: the oldest whose namespaceSelector selects it."""
        labels = self.namespace_labels(namespace)
        chosen: list[tuple[str, Mapping[str, Any]]] = []
        for mesh in self.meshes:
            selector = (mesh.get("spec") or {}).get("namespaceSelector") or {}
            try:
                if label_selector(selector, "namespaceSelector")(labels):
                    chosen.append((str(_meta(mesh).get("name")), mesh))
            except ValueError:
                continue  # an invalid selector selects nothing; the operator reports it in status
        if not chosen:
            return None
        name, mesh = chosen[0]
        shadowed = tuple(n for n, _ in chosen[1:])
        if name not in self._settings:
            try:
                self._settings[name] = (MeshSettings.from_object(mesh, cluster_version=self.cluster_version,
                                                                 operator_namespace=self.operator_namespace), None)
            except MeshSpecError as exc:
                self._settings[name] = (None, f"PilotMesh {name} is invalid: {exc}")
        settings, error = self._settings[name]
        mode = self.namespace_labels(namespace).get(contract.LABEL_MODE)
        if settings is not None and mode is not None and mode != settings.mode:
            if mode not in MODES:
                return MeshChoice(name, None, f"namespace {namespace} has label {contract.LABEL_MODE}={mode!r}; "
                                              f"use {' or '.join(MODES)}", shadowed)
            settings = dataclasses.replace(settings, mode=mode)
        return MeshChoice(name, settings, error, shadowed)

    def analyzer_settings(self, mesh: MeshSettings) -> dict[str, Any]:
        return settings_from_pilotmesh(dict(mesh.spec), self.operator_namespace)
