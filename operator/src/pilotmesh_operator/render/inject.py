"""Sidecar injection as one pure function: (object, mesh settings, transport decision) -> object + JSON Patch.

The admission webhook and `pilotmesh inject -f` are thin shells around `inject()`. It takes a Pod (as in an
AdmissionReview: maybe no name yet, only generateName; pass the request's namespace) or a workload with a pod
template, and returns the mutated object, the RFC 6902 patch that turns the input into it, or a skip with a reason
from `SKIP_REASONS` (Linkerd's `Reasons` idea). Injecting the result again is a skip (`already_injected`), never a
second daemon, so `reinvocationPolicy: IfNeeded` is safe.

What a sidecar-mode pod gets:
- volumes `pilot-shared` (emptyDir in memory, at /shared), `pilot-state` (emptyDir, the daemon's identity and HOME,
  mounted in the daemon only, so apps never read its private key) and `pilot-podinfo` (downward API: the
  `pilot.io/transport` annotation at contract.TRANSPORT_FILE, which the daemon watches to switch transport live);
- in each app container (and init container when the daemon starts before them): the /shared mount and
  `PILOT_SOCKET`, plus PILOT_REGISTRY/PILOT_BEACON when the mesh sets them (pilotctl looks peers up itself);
  a value the user set wins and is reported in `warnings`;
- the `pilot` container: a native sidecar (first init container, `restartPolicy: Always`, so later init containers
  and the apps start once its startupProbe sees the socket) or, without native sidecars, a regular container placed
  last; then a run-to-completion pod's daemon gets `-exit-on-file /shared/pilot.exit` (the app's last step touches
  it); resources from the mesh, overridden per pod by `pilot.io/cpu`, `memory`, `cpu-limit`, `memory-limit`;
- annotations `pilot.io/status` (JSON: version, image, transport, what was added), `pilot.io/transport`,
  `pilot.io/transport-reason`, and `kubectl.kubernetes.io/default-container` when absent.
In daemonset mode the pod gets only the node's socket directory (hostPath, read-only) and the env.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pilot_daemon import contract

from .. import __version__
from ..mesh import MeshSettings, hostname_template_ok, image_ok, spec_schema
from .quantity import parse_quantity
from .netpol.selectors import label_selector

# Where the pod template sits in each kind we inject (Pod: the object itself).
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

SKIP_REASONS: dict[str, str] = {
    "unsupported_kind": "not a Pod or a workload with a pod template",
    "annotation_absent": 'pilot.io/inject is not "true" on the pod (annotation or label) nor on its namespace',
    "injection_disabled": 'pilot.io/inject is "false"',
    "invalid_annotation": "an annotation or label has a value PilotMesh does not accept",
    "namespace_excluded": "the namespace is never injected (system namespaces and the operator's own)",
    "namespace_not_selected": "the PilotMesh namespaceSelector does not select the namespace",
    "already_injected": "already injected (pilot.io/status is set)",
    "no_containers": "the pod spec has no app containers",
    "mount_conflict": "an app container already mounts another volume at /shared",
    "malformed": "the object is not the shape Kubernetes accepts",
}

STATE_VOLUME, STATE_MOUNT = "pilot-state", "/var/lib/pilot"
PODINFO_VOLUME = "pilot-podinfo"
PODINFO_MOUNT = contract.TRANSPORT_FILE.rsplit("/", 1)[0]
NODE_SOCKET_DIR = "/var/run/pilot"          # daemonset mode: the node daemon's socket directory (hostPath)
DAEMON_UID = 65532
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
RUN_TO_COMPLETION = ("Never", "OnFailure")
MAX_REASON = 512

# Exit 0 iff the socket accepts (the image is Python, so no extra binary is needed).
PROBE_SCRIPT = "import socket,sys; sys.exit(socket.socket(socket.AF_UNIX).connect_ex(sys.argv[1]))"

# hostnameTemplate variables -> (env var the kubelet fills in, downward API field).
HOSTNAME_VARS: dict[str, tuple[str, str]] = {
    "pod": ("PILOT_POD_NAME", "metadata.name"),
    "namespace": ("PILOT_POD_NAMESPACE", "metadata.namespace"),
    "node": ("PILOT_NODE_NAME", "spec.nodeName"),
    "serviceAccount": ("PILOT_SERVICE_ACCOUNT", "spec.serviceAccountName"),
}


@dataclasses.dataclass(frozen=True)
class TransportDecision:
    """The transport chosen for a pod before injection (from the NetworkPolicy verdict or a CLI flag)."""

    transport: str  # udp | compat
    reason: str

    @classmethod
    def from_verdict(cls, verdict: Any) -> TransportDecision:
        """From a `render.netpol` Verdict (anything with `.transport` and `.reasons` or `.summary()`)."""
        reasons = " ".join(getattr(verdict, "reasons", None) or ())
        return cls(verdict.transport, f"{verdict.summary()}: {reasons}" if reasons else verdict.summary())


@dataclasses.dataclass(frozen=True)
class InjectResult:
    """What `inject()` did: `obj` (the input unchanged when skipped), `patch` (RFC 6902, empty when skipped)."""

    obj: dict[str, Any]
    patch: list[dict[str, Any]]
    skip: str | None = None          # a SKIP_REASONS key
    message: str = ""                # one line for an Event or a log: what was done, or why not
    warnings: tuple[str, ...] = ()   # user settings kept over ours, volumes reused
    transport: str | None = None
    transport_reason: str | None = None

    @property
    def injected(self) -> bool:
        return self.skip is None


class _Skip(Exception):
    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail
        super().__init__(detail or SKIP_REASONS[reason])


@dataclasses.dataclass
class _Options:
    """Mesh settings after the pod's override annotations."""

    transport_policy: str
    image: str
    log_level: str
    hostname_template: str
    native: bool
    selected: frozenset[str] | None  # pilot.io/containers, None = all
    resources: Mapping[str, Any]


def inject(obj: Mapping[str, Any], mesh: MeshSettings, transport: TransportDecision | None = None, *,
           namespace: str | None = None, namespace_labels: Mapping[str, str] | None = None,
           require_opt_in: bool = True) -> InjectResult:
    """Inject the Pilot daemon into a Pod or a workload's pod template; see the module docstring.

    ``namespace``: the AdmissionReview's namespace (else the object's). ``namespace_labels``: when given, the mesh's
    namespaceSelector is checked and a namespace label `pilot.io/inject` acts as the default. ``require_opt_in``:
    False for `pilotmesh inject -f` (like `istioctl kube-inject`, the user asked explicitly); "false" still wins.
    """
    try:
        return _inject(obj, mesh, transport, namespace, namespace_labels, require_opt_in)
    except _Skip as skip:
        return InjectResult(obj=copy.deepcopy(dict(obj)), patch=[], skip=skip.reason, message=str(skip))


def _inject(obj: Mapping[str, Any], mesh: MeshSettings, decision: TransportDecision | None, namespace: str | None,
            namespace_labels: Mapping[str, str] | None, require_opt_in: bool) -> InjectResult:
    kind = obj.get("kind") or "Pod"
    if kind not in TEMPLATE_PATHS:
        raise _Skip("unsupported_kind", f"{kind} has no pod template")
    tpath = TEMPLATE_PATHS[kind]
    template = _lookup(obj, tpath)
    template = template if isinstance(template, Mapping) else {}
    _check_shape(template)
    meta = template.get("metadata") or {}
    spec = template.get("spec") or {}
    annotations, labels = dict(meta.get("annotations") or {}), dict(meta.get("labels") or {})
    namespace = namespace or (obj.get("metadata") or {}).get("namespace")

    _check_opt_in(annotations, labels, namespace_labels, require_opt_in)
    _check_namespace(namespace, namespace_labels, mesh)
    if contract.ANNOTATION_STATUS in annotations:
        raise _Skip("already_injected")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not any(
            isinstance(c, Mapping) and c.get("name") != contract.DAEMON_CONTAINER for c in containers):
        raise _Skip("no_containers")
    opts = _options(annotations, spec, mesh)
    policy, transport, why = _transport(opts.transport_policy, mesh, decision, bool(spec.get("hostNetwork")))

    work = copy.deepcopy(dict(obj))
    patch = _Patch(work)
    plan = _Plan(mesh, opts, transport, spec, tpath)
    plan.check_mounts()
    status = {
        "version": __version__, "mode": mesh.mode, "appContainers": plan.app_names(),
        "volumes": plan.volume_names(),
    }
    new_annotations: dict[str, str] = {}
    if mesh.mode == "sidecar":
        status.update(image=opts.image, transport=transport, transportPolicy=policy, nativeSidecar=opts.native,
                      containers=[] if opts.native else [contract.DAEMON_CONTAINER],
                      initContainers=[contract.DAEMON_CONTAINER] if opts.native else [])
        new_annotations[contract.ANNOTATION_TRANSPORT] = transport
        new_annotations[contract.ANNOTATION_TRANSPORT_REASON] = why
    new_annotations[contract.ANNOTATION_STATUS] = json.dumps(status, sort_keys=True, separators=(",", ":"))
    first_app = next((c.get("name") for c in spec["containers"] if c.get("name") != contract.DAEMON_CONTAINER), None)
    if DEFAULT_CONTAINER_ANNOTATION not in annotations and first_app:
        new_annotations[DEFAULT_CONTAINER_ANNOTATION] = first_app

    patch.ensure_dict(tpath + ("metadata",))
    patch.merge_dict(tpath + ("metadata", "annotations"), new_annotations)
    patch.merge_dict(tpath + ("metadata", "labels"), {contract.LABEL_INJECTED: mesh.mode})
    plan.apply(patch)
    what = "daemonset-mode socket volume" if mesh.mode == "daemonset" else (
        f"{'native sidecar' if opts.native else 'sidecar'} {contract.DAEMON_CONTAINER} ({opts.image})")
    return InjectResult(obj=work, patch=patch.ops, message=f"injected {what}, transport {transport}",
                        warnings=tuple(plan.warnings), transport=transport if mesh.mode == "sidecar" else None,
                        transport_reason=why if mesh.mode == "sidecar" else None)


def _check_shape(template: Mapping[str, Any]) -> None:
    """Refuse shapes the apiserver would never accept, so nothing below can trip over them."""
    def mapping(value: Any, where: str) -> None:
        if value is not None and not isinstance(value, Mapping):
            raise _Skip("malformed", f"{where} must be a mapping, not {type(value).__name__}")

    def items(value: Any, where: str) -> list[Any]:
        if value is not None and not (isinstance(value, list) and all(isinstance(v, Mapping) for v in value)):
            raise _Skip("malformed", f"{where} must be a list of mappings")
        return value or []

    meta, spec = template.get("metadata"), template.get("spec")
    mapping(meta, "metadata")
    mapping(spec, "spec")
    for key in ("annotations", "labels"):
        mapping((meta or {}).get(key), f"metadata.{key}")
    spec = spec or {}
    items(spec.get("volumes"), "spec.volumes")
    for list_name in ("containers", "initContainers"):
        for i, c in enumerate(items(spec.get(list_name), f"spec.{list_name}")):
            for key in ("env", "volumeMounts"):
                items(c.get(key), f"spec.{list_name}[{i}].{key}")


def _lookup(obj: Any, path: Sequence[str]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, Mapping) else None
    return obj


def pod_template(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod (template) inside a Pod or workload object; None for other kinds or a missing template."""
    path = TEMPLATE_PATHS.get(obj.get("kind") or "Pod")
    found = None if path is None else _lookup(obj, path)
    return found if isinstance(found, Mapping) else None


def _flag(value: Any, where: str, allowed: Sequence[str]) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Skip("invalid_annotation", f'{where} is the YAML boolean {json.dumps(value)}; quote it: '
                                          f'"{json.dumps(value)}"')
    if value not in allowed:
        shown = " or ".join(f'"{a}"' for a in allowed)
        raise _Skip("invalid_annotation", f"{where} is {json.dumps(value)}; use {shown}")
    return str(value)


def _check_opt_in(annotations: Mapping[str, Any], labels: Mapping[str, Any],
                  namespace_labels: Mapping[str, str] | None, require_opt_in: bool) -> None:
    key = contract.ANNOTATION_INJECT
    pod = [_flag(annotations.get(key), f"annotation {key}", ("true", "false")),
           _flag(labels.get(contract.LABEL_INJECT), f"label {contract.LABEL_INJECT}", ("true", "false"))]
    if "false" in pod:
        raise _Skip("injection_disabled")
    if "true" in pod:
        return
    ns = (namespace_labels or {}).get(contract.LABEL_INJECT)
    if ns == "false":
        raise _Skip("injection_disabled", f"namespace label {contract.LABEL_INJECT} is \"false\"")
    if ns != "true" and require_opt_in:
        raise _Skip("annotation_absent")


def _check_namespace(namespace: str | None, namespace_labels: Mapping[str, str] | None, mesh: MeshSettings) -> None:
    if namespace in mesh.excluded_namespaces:
        raise _Skip("namespace_excluded", f"namespace {namespace} is never injected")
    if namespace_labels is not None and not label_selector(mesh.namespace_selector, "namespaceSelector")(
            dict(namespace_labels)):
        raise _Skip("namespace_not_selected", f"the PilotMesh namespaceSelector does not select namespace {namespace}")


def _options(annotations: Mapping[str, Any], spec: Mapping[str, Any], mesh: MeshSettings) -> _Options:
    transport = _flag(annotations.get(contract.ANNOTATION_TRANSPORT), f"annotation {contract.ANNOTATION_TRANSPORT}",
                      contract.TRANSPORTS)
    native = _flag(annotations.get(contract.ANNOTATION_NATIVE_SIDECAR),
                   f"annotation {contract.ANNOTATION_NATIVE_SIDECAR}", ("true", "false"))
    levels = spec_schema()["properties"]["daemon"]["properties"]["logLevel"]["enum"]
    log_level = _flag(annotations.get(contract.ANNOTATION_LOG_LEVEL), f"annotation {contract.ANNOTATION_LOG_LEVEL}",
                      levels)
    image = annotations.get(contract.ANNOTATION_IMAGE)
    if image is not None and not (isinstance(image, str) and image_ok(image)):
        raise _Skip("invalid_annotation", f"annotation {contract.ANNOTATION_IMAGE} is {json.dumps(image)}; "
                                          "use an image with a tag or a digest (repo:tag or repo@sha256:...)")
    hostname = annotations.get(contract.ANNOTATION_HOSTNAME)
    if hostname is not None and not (isinstance(hostname, str) and hostname_template_ok(hostname)):
        raise _Skip("invalid_annotation", f"annotation {contract.ANNOTATION_HOSTNAME} is {json.dumps(hostname)}; use "
                    "lowercase letters, digits, hyphens and {{pod}}, {{namespace}}, {{node}}, {{serviceAccount}}")
    return _Options(
        transport_policy=transport or mesh.transport, image=image or mesh.image,
        log_level=log_level or mesh.log_level, hostname_template=hostname or mesh.hostname_template,
        native=(native == "true") if native else (
            mesh.native_sidecar == "always" or (mesh.native_sidecar == "auto" and mesh.native_sidecars_supported)),
        selected=_selected(annotations.get(contract.ANNOTATION_CONTAINERS), spec),
        resources=_resources(annotations, mesh.resources),
    )


def _resources(annotations: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The mesh's daemon resources with the pod's pilot.io/cpu, memory, cpu-limit, memory-limit applied."""
    out = copy.deepcopy(dict(defaults))
    for key, (kind, resource) in contract.ANNOTATION_RESOURCES.items():
        value = annotations.get(key)
        if value is None:
            continue
        try:
            parse_quantity(value)
        except ValueError as exc:
            raise _Skip("invalid_annotation", f"annotation {key}: {exc}") from None
        out.setdefault(kind, {})[resource] = value
    for resource in ("cpu", "memory"):
        request, limit = (out.get("requests") or {}).get(resource), (out.get("limits") or {}).get(resource)
        if request is not None and limit is not None and parse_quantity(str(request)) > parse_quantity(str(limit)):
            raise _Skip("invalid_annotation", f"the daemon's {resource} request {request} would exceed its limit "
                                              f"{limit}; set pilot.io/{resource} and pilot.io/{resource}-limit to fit")
    return out


def _selected(value: Any, spec: Mapping[str, Any]) -> frozenset[str] | None:
    if value is None:
        return None
    where = f"annotation {contract.ANNOTATION_CONTAINERS}"
    names = [n.strip() for n in value.split(",")] if isinstance(value, str) else []
    known = {c.get("name") for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])}
    known.discard(contract.DAEMON_CONTAINER)
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise _Skip("invalid_annotation", f"{where} is {json.dumps(value)}; list container names of this pod "
                                          f"separated by commas ({', '.join(sorted(map(str, known)))})")
    return frozenset(names)


def _transport(policy: str, mesh: MeshSettings, decision: TransportDecision | None,
               host_network: bool) -> tuple[str, str, str]:
    """(policy asked for, transport given to the daemon, why)."""
    if policy != mesh.transport:
        transport, why = policy, f"pod annotation {contract.ANNOTATION_TRANSPORT}={policy}"
    else:
        transport, why = policy, f"PilotMesh spec.transport={policy}"
    if transport == "auto" and decision is not None:
        transport, why = decision.transport, decision.reason
    elif transport == "auto":
        why = "no NetworkPolicy verdict at injection: the daemon decides at start, UDP beacon first, then TCP 443"
    if host_network:
        why += "; hostNetwork pod: NetworkPolicy does not apply to it"
    return policy, transport, why if len(why) <= MAX_REASON else why[:MAX_REASON - 3] + "..."


class _Plan:
    """The containers, volumes and env to add, worked out before anything is written."""

    def __init__(self, mesh: MeshSettings, opts: _Options, transport: str, spec: Mapping[str, Any],
                 tpath: tuple[str, ...]):
        self.mesh, self.opts, self.transport, self.spec = mesh, opts, transport, spec
        self.spec_path = tpath + ("spec",)
        self.sidecar = mesh.mode == "sidecar"
        self.warnings: list[str] = []
        # (list name, index, container) of app containers that get the mount and env
        lists = [("containers", spec["containers"])]
        if opts.native or not self.sidecar:
            lists.append(("initContainers", spec.get("initContainers") or []))
        self.apps = [(name, i, c) for name, items in lists for i, c in enumerate(items)
                     if isinstance(c, Mapping) and c.get("name") != contract.DAEMON_CONTAINER
                     and (opts.selected is None or c.get("name") in opts.selected)]

    def app_names(self) -> list[str]:
        return [str(c.get("name")) for _, _, c in self.apps]

    def volumes(self) -> list[dict[str, Any]]:
        if not self.sidecar:
            return [{"name": contract.SHARED_VOLUME,
                     "hostPath": {"path": NODE_SOCKET_DIR, "type": "DirectoryOrCreate"}}]
        return [
            {"name": contract.SHARED_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
            {"name": STATE_VOLUME, "emptyDir": {"sizeLimit": "16Mi"}},
            {"name": PODINFO_VOLUME, "downwardAPI": {"items": [{
                "path": contract.TRANSPORT_FILE.rsplit("/", 1)[1],
                "fieldRef": {"fieldPath": f"metadata.annotations['{contract.ANNOTATION_TRANSPORT}']"}}]}},
        ]

    def volume_names(self) -> list[str]:
        existing = {v.get("name") for v in self.spec.get("volumes") or [] if isinstance(v, Mapping)}
        return [v["name"] for v in self.volumes() if v["name"] not in existing]

    def check_mounts(self) -> None:
        for _, _, c in self.apps:
            for m in c.get("volumeMounts") or []:
                if _same_path(m.get("mountPath"), contract.SHARED_MOUNT) and m.get("name") != contract.SHARED_VOLUME:
                    raise _Skip("mount_conflict", f"container {c.get('name')} already mounts volume {m.get('name')} "
                                f"at {contract.SHARED_MOUNT}; move that mount, or name the other containers in "
                                f"{contract.ANNOTATION_CONTAINERS}")

    def app_env(self) -> list[dict[str, Any]]:
        env = [{"name": contract.SOCKET_ENV, "value": contract.SOCKET_PATH}]
        env += [{"name": name, "value": value} for name, value in
                ((contract.ENV_REGISTRY, self.mesh.registry), (contract.ENV_BEACON, self.mesh.beacon)) if value]
        return env

    def apply(self, patch: _Patch) -> None:
        existing = {v.get("name"): v for v in self.spec.get("volumes") or [] if isinstance(v, Mapping)}
        for vol in self.volumes():
            if vol["name"] in existing:
                if existing[vol["name"]] != vol:
                    self.warnings.append(f"volume {vol['name']} is declared by the pod; using it as it is")
                continue
            patch.append(self.spec_path + ("volumes",), vol)
        mount = {"name": contract.SHARED_VOLUME, "mountPath": contract.SHARED_MOUNT}
        if not self.sidecar:
            mount["readOnly"] = True
        for list_name, i, c in self.apps:
            self._wire_app(patch, self.spec_path + (list_name, i), c, mount)
        if self.sidecar:
            self._add_daemon(patch)

    def _wire_app(self, patch: _Patch, path: tuple[Any, ...], c: Mapping[str, Any], mount: dict[str, Any]) -> None:
        if not any(m.get("name") == contract.SHARED_VOLUME and _same_path(m.get("mountPath"), contract.SHARED_MOUNT)
                   for m in c.get("volumeMounts") or []):
            patch.append(path + ("volumeMounts",), dict(mount))
        have = {e.get("name"): e for e in c.get("env") or [] if isinstance(e, Mapping)}
        for var in self.app_env():
            mine = have.get(var["name"])
            if mine is None:
                patch.append(path + ("env",), var)
            elif mine != var:
                self.warnings.append(f"container {c.get('name')} sets {var['name']} itself; kept its value "
                                     f"(the daemon listens at {contract.SOCKET_PATH})"
                                     if var["name"] == contract.SOCKET_ENV else
                                     f"container {c.get('name')} sets {var['name']} itself; kept its value")

    def _add_daemon(self, patch: _Patch) -> None:
        daemon = self.daemon_container()
        for list_name in ("containers", "initContainers"):
            items = self.spec.get(list_name) or []
            for i, c in reversed(list(enumerate(items))):   # from the end, so indices stay valid
                if isinstance(c, Mapping) and c.get("name") == contract.DAEMON_CONTAINER:
                    daemon = _merge_container(daemon, c)
                    self.warnings.append(f"{list_name} declares a {contract.DAEMON_CONTAINER} container; "
                                         "merged over the injected one (its fields win)")
                    patch.remove(self.spec_path + (list_name, i))
        if self.opts.native:   # first init container: later init containers and the apps can use the socket
            patch.insert(self.spec_path + ("initContainers",), 0, daemon)
        else:                  # a regular container goes last (the issue's contract; apps retry the socket)
            patch.append(self.spec_path + ("containers",), daemon)

    def daemon_container(self) -> dict[str, Any]:
        mesh, opts = self.mesh, self.opts
        host_network = bool(self.spec.get("hostNetwork"))
        args, env = daemon_process(mesh, transport=self.transport, socket=contract.SOCKET_PATH,
                                   hostname_template=opts.hostname_template, log_level=opts.log_level,
                                   listen_port=0 if host_network else mesh.udp_port, state_dir=STATE_MOUNT)
        if not opts.native and self.spec.get("restartPolicy") in RUN_TO_COMPLETION:
            args += ["-exit-on-file", contract.EXIT_FILE]
        args += ["-transport-file", contract.TRANSPORT_FILE]   # the annotation, live: the daemon switches on change
        probe = ["python3", "-c", PROBE_SCRIPT, contract.SOCKET_PATH]
        container: dict[str, Any] = {
            "name": contract.DAEMON_CONTAINER, "image": opts.image, "imagePullPolicy": mesh.image_pull_policy,
            "args": args, "env": env,
        }
        if not host_network:   # a containerPort on a hostNetwork pod is a hostPort: two pods per node would clash
            container["ports"] = [{"name": "pilot-udp", "containerPort": mesh.udp_port, "protocol": "UDP"}]
        container.update({
            "resources": copy.deepcopy(dict(opts.resources)),
            "securityContext": {
                "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": False,
                "readOnlyRootFilesystem": True, "runAsNonRoot": True, "runAsUser": DAEMON_UID,
                "runAsGroup": DAEMON_UID, "seccompProfile": {"type": "RuntimeDefault"},
            },
            "startupProbe": {"exec": {"command": probe}, "periodSeconds": 1, "timeoutSeconds": 2,
                             "failureThreshold": 60},
            "volumeMounts": [
                {"name": contract.SHARED_VOLUME, "mountPath": contract.SHARED_MOUNT},
                {"name": STATE_VOLUME, "mountPath": STATE_MOUNT},
                {"name": PODINFO_VOLUME, "mountPath": PODINFO_MOUNT, "readOnly": True},
            ],
        })
        if opts.native:
            container["restartPolicy"] = "Always"
        return container


def daemon_process(mesh: MeshSettings, *, transport: str, socket: str, hostname_template: str, log_level: str,
                   listen_port: int, state_dir: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The daemon's args and env: shared by the injected sidecar and the node DaemonSet."""
    hostname, env = hostname_template, []
    for var, (env_name, field) in HOSTNAME_VARS.items():
        if "{{" + var + "}}" in hostname:
            hostname = hostname.replace("{{" + var + "}}", f"$({env_name})")
            env.append({"name": env_name, "valueFrom": {"fieldRef": {"fieldPath": field}}})
    # the pod's app containers (or the node's pods) may run as any user: the daemon runs as DAEMON_UID
    args = ["-socket", socket, "-socket-allow-uids", "any", "-transport", transport, "-listen", f":{listen_port}"]
    for flag, value in (("-registry", mesh.registry), ("-beacon", mesh.beacon), ("-compat-beacon", mesh.compat_url)):
        if value:
            args += [flag, value]
    args += ["-hostname", hostname, "-identity", f"{state_dir}/identity.json",
             "-log-format", "json", "-log-level", log_level]
    env.append({"name": "HOME", "value": state_dir})
    if mesh.proxy_secret:
        name, key = mesh.proxy_secret
        env.append({"name": "HTTPS_PROXY", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}})
    elif mesh.https_proxy:
        env.append({"name": "HTTPS_PROXY", "value": mesh.https_proxy})
    if mesh.no_proxy:
        env.append({"name": "NO_PROXY", "value": mesh.no_proxy})
    if mesh.proxy_secret or mesh.https_proxy:
        args += ["-proxy", "auto"]
    return args, env


def _same_path(a: Any, b: str) -> bool:
    return isinstance(a, str) and a.rstrip("/") == b.rstrip("/")


_MERGE_KEYS = {"env": "name", "ports": "name", "volumeMounts": "mountPath"}


def _merge_container(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> dict[str, Any]:
    """A user-declared `pilot` container overrides ours: maps merge deeply, env/ports/mounts by key, the rest
    (args, image, ...) is replaced by theirs."""
    merged = copy.deepcopy(dict(ours))
    for field, value in theirs.items():
        if value is None:   # null: not set
            continue
        if field in _MERGE_KEYS and isinstance(value, list):
            key = _MERGE_KEYS[field]
            mine = {item.get(key) for item in value if isinstance(item, Mapping)}
            merged[field] = [item for item in merged.get(field) or [] if item.get(key) not in mine] + copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(merged.get(field), Mapping):
            merged[field] = _merge_container(merged[field], value)
        else:
            merged[field] = copy.deepcopy(value)
    return merged


def _clone(value: Any) -> Any:
    """A deep copy; through JSON when possible (several times faster than copy.deepcopy for these values)."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):   # e.g. a datetime from a YAML manifest
        return copy.deepcopy(value)


def _pointer(path: Sequence[Any]) -> str:
    """RFC 6901: `~` -> `~0`, then `/` -> `~1`."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class _Patch:
    """Edits `root` in place and records each edit as an RFC 6902 operation.

    Missing or null lists and maps are added whole (`add` on an object member also replaces a null), never
    appended to; values are snapshotted so later edits never change recorded operations.
    """

    def __init__(self, root: dict[str, Any]):
        self.root = root
        self.ops: list[dict[str, Any]] = []

    def _get(self, path: Sequence[Any]) -> Any:
        cur: Any = self.root
        for key in path:
            cur = cur[key]
        return cur

    def add(self, path: tuple[Any, ...], value: Any) -> None:
        parent, key = self._get(path[:-1]), path[-1]
        if isinstance(parent, list):
            parent.insert(len(parent) if key == "-" else key, value)
        else:
            parent[key] = value
        self.ops.append({"op": "add", "path": _pointer(path), "value": _clone(value)})

    def remove(self, path: tuple[Any, ...]) -> None:
        del self._get(path[:-1])[path[-1]]
        self.ops.append({"op": "remove", "path": _pointer(path)})

    def ensure_dict(self, path: tuple[Any, ...]) -> None:
        for depth in range(1, len(path) + 1):
            parent = self._get(path[:depth - 1])
            if not isinstance(parent.get(path[depth - 1]), dict):
                self.add(path[:depth], {})

    def merge_dict(self, path: tuple[Any, ...], items: Mapping[str, Any]) -> None:
        if not isinstance(self._get(path[:-1]).get(path[-1]), dict):
            self.add(path, dict(items))
            return
        for key, value in items.items():
            self.add(path + (key,), value)

    def append(self, path: tuple[Any, ...], value: Any) -> None:
        if isinstance(self._get(path[:-1]).get(path[-1]), list):
            self.add(path + ("-",), value)
        else:
            self.add(path, [value])

    def insert(self, path: tuple[Any, ...], index: int, value: Any) -> None:
        if isinstance(self._get(path[:-1]).get(path[-1]), list):
            self.add(path + (index,), value)
        else:
            self.add(path, [value])
