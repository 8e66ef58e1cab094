"""PilotMesh spec -> MeshSettings: the CRD's own defaults and validation, applied in Python.

The defaults live in one place, the CRD (`charts/pilotmesh/crds/pilotmeshes.pilot.io.yaml`, shipped as package data):
objects the apiserver already defaulted come out the same, and specs it never saw (`pilotmesh inject -f --mesh`) get
the same defaults and the same errors.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

import yaml

from . import openapi

CRD_RESOURCE = "crds/pilotmeshes.pilot.io.yaml"
NATIVE_SIDECAR_MIN_VERSION = (1, 29)     # SidecarContainers beta and on by default
ALWAYS_EXCLUDED_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})
IN_CLUSTER_RENDEZVOUS = "pilot-rendezvous"  # the Service name of the in-cluster rendezvous

# Python twins of the CRD's CEL rules (keyed by the rule text; a test checks every rule has one).
CEL_TWINS: dict[str, openapi.CelTwin] = {
    "!self.inCluster || !(has(self.registry) || has(self.beacon) || has(self.compatURL))":
        lambda r: not r.get("inCluster") or not any(k in r for k in ("registry", "beacon", "compatURL")),
    "!has(self.noProxy) || has(self.httpsProxy) || has(self.secretRef)":
        lambda p: "noProxy" not in p or "httpsProxy" in p or "secretRef" in p,
    "self.operator in ['In', 'NotIn'] ? size(self.values) > 0 : size(self.values) == 0":
        lambda e: (len(e.get("values", [])) > 0) == (e["operator"] in ("In", "NotIn")),
}


class MeshSpecError(ValueError):
    """A PilotMesh spec the apiserver would reject; the message names every bad field and what is allowed."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid PilotMesh: " + "; ".join(errors))


@functools.cache
def crd() -> dict[str, Any]:
    """The PilotMesh CRD as shipped with the package."""
    return yaml.safe_load(resources.files(__package__).joinpath(CRD_RESOURCE).read_text())


def spec_schema() -> dict[str, Any]:
    return crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def parse_kube_version(text: str) -> tuple[int, int]:
    """``"v1.30.2"``, ``"1.29"`` or a VersionInfo ``major``.``minor`` like ``"1.28+"`` -> ``(1, 30)``."""
    m = re.match(r"^v?(\d+)\.(\d+)", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a Kubernetes version; use MAJOR.MINOR, e.g. 1.30")
    return int(m.group(1)), int(m.group(2))


@dataclasses.dataclass(frozen=True)
class MeshSettings:
    """A defaulted, validated PilotMesh spec, plus what the cluster tells us (version, operator namespace)."""

    spec: Mapping[str, Any]
    mode: str
    transport: str
    image: str
    image_pull_policy: str
    log_level: str
    hostname_template: str
    udp_port: int
    native_sidecar: str
    resources: Mapping[str, Any]
    registry: str | None
    beacon: str | None
    compat_url: str | None
    https_proxy: str | None
    no_proxy: str | None
    proxy_secret: tuple[str, str] | None
    namespace_selector: Mapping[str, Any]
    failure_policy: str
    timeout_seconds: int
    watchdog_restart: bool
    cluster_version: tuple[int, int] | None = None
    operator_namespace: str = "pilot-system"

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None, *, cluster_version: tuple[int, int] | None = None,
                  operator_namespace: str = "pilot-system") -> MeshSettings:
        """Default and validate ``spec`` exactly as the CRD does; raise MeshSpecError listing every problem."""
        schema = spec_schema()
        full = openapi.apply_defaults(schema, dict(spec or {}))
        errors = openapi.validate(schema, full, "spec", CEL_TWINS)
        if errors:
            raise MeshSpecError(errors)
        daemon, rdv, proxy = full["daemon"], full["rendezvous"], full["proxy"]
        registry, beacon, compat_url = rdv.get("registry"), rdv.get("beacon"), rdv.get("compatURL")
        if rdv["inCluster"]:
            host = f"{IN_CLUSTER_RENDEZVOUS}.{operator_namespace}.svc"
            registry, beacon, compat_url = f"{host}:9000", f"{host}:9001", f"wss://{host}/v1/compat"
        secret = proxy.get("secretRef")
        return cls(
            spec=full, mode=full["mode"], transport=full["transport"],
            image=daemon["image"], image_pull_policy=daemon["imagePullPolicy"], log_level=daemon["logLevel"],
            hostname_template=daemon["hostnameTemplate"], udp_port=daemon["udpPort"],
            native_sidecar=daemon["nativeSidecar"], resources=daemon["resources"],
            registry=registry, beacon=beacon, compat_url=compat_url,
            https_proxy=proxy.get("httpsProxy"), no_proxy=proxy.get("noProxy"),
            proxy_secret=(secret["name"], secret["key"]) if secret else None,
            namespace_selector=full["namespaceSelector"],
            failure_policy=full["webhook"]["failurePolicy"], timeout_seconds=full["webhook"]["timeoutSeconds"],
            watchdog_restart=full["watchdog"]["restart"],
            cluster_version=cluster_version, operator_namespace=operator_namespace,
        )

    @classmethod
    def from_object(cls, obj: Mapping[str, Any], **kw: Any) -> MeshSettings:
        """From a whole PilotMesh object (as read from a file or the API)."""
        if obj.get("kind") not in (None, "PilotMesh"):
            raise MeshSpecError([f"kind: expected PilotMesh, got {obj.get('kind')!r}"])
        return cls.from_spec(obj.get("spec") or {}, **kw)

    @property
    def native_sidecars_supported(self) -> bool:
        """Unknown cluster version (offline) counts as supported: every maintained Kubernetes release is >= 1.29."""
        return self.cluster_version is None or self.cluster_version >= NATIVE_SIDECAR_MIN_VERSION

    @property
    def excluded_namespaces(self) -> frozenset[str]:
        return ALWAYS_EXCLUDED_NAMESPACES | {self.operator_namespace}


def image_ok(image: str) -> bool:
    """Does ``image`` carry a tag or a digest (the CRD's pattern for spec.daemon.image)?"""
    return re.search(spec_schema()["properties"]["daemon"]["properties"]["image"]["pattern"], image) is not None


def hostname_template_ok(template: str) -> bool:
    """Is ``template`` a valid hostname template (the CRD's pattern for spec.daemon.hostnameTemplate)?"""
    prop = spec_schema()["properties"]["daemon"]["properties"]["hostnameTemplate"]
    return len(template) <= prop["maxLength"] and re.search(prop["pattern"], template) is not None
