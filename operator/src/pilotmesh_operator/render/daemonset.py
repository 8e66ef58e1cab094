"""DaemonSet mode: one pilot-daemon per node, shared by the pods on it through a hostPath socket directory.

The node daemon listens at NODE_SOCKET_DIR/pilot.sock on the host; the injector mounts that directory
read-only at /shared in opted-in pods (render.inject, daemonset mode), so apps keep the same
`/shared/pilot.sock` contract and Jobs complete (no sidecar to stop). Callers are told apart by
SO_PEERCRED. Its identity lives on the node (hostPath), so a node keeps its Pilot address across
daemon restarts. The transport is decided for this DaemonSet's pods, which make the egress.

hostPath volumes need the `privileged` Pod Security level in the app namespaces; a CSI driver is the
planned way around that.
"""
from __future__ import annotations

from typing import Any

from pilot_daemon import contract

from ..mesh import MeshSettings
from .inject import NODE_SOCKET_DIR, PROBE_SCRIPT, daemon_process

NODE_STATE_DIR = "/var/lib/pilot"
COMPONENT = "pilot-node-daemon"


def daemonset_name(mesh_name: str) -> str:
    return f"pilot-node-{mesh_name}"


def pod_labels(mesh_name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": COMPONENT, "app.kubernetes.io/part-of": "pilotmesh", "pilot.io/mesh": mesh_name}


def node_daemonset(mesh_name: str, mesh: MeshSettings, namespace: str, transport: str, reason: str) -> dict[str, Any]:
    """The DaemonSet that runs the mesh's node daemons in ``namespace`` with ``transport`` (udp|compat)."""
    socket = f"{NODE_SOCKET_DIR}/pilot.sock"
    state = f"{NODE_STATE_DIR}/{mesh_name}"
    args, env = daemon_process(mesh, transport=transport, socket=socket, hostname_template="{{node}}",
                               log_level=mesh.log_level, listen_port=mesh.udp_port, state_dir=state)
    labels = pod_labels(mesh_name)
    container = {
        "name": contract.DAEMON_CONTAINER, "image": mesh.image, "imagePullPolicy": mesh.image_pull_policy,
        "args": args, "env": env,
        "ports": [{"name": "pilot-udp", "containerPort": mesh.udp_port, "protocol": "UDP"}],
        "resources": dict(mesh.resources),
        # root without capabilities: it owns the node's hostPath directories, nothing more
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True, "runAsUser": 0, "runAsNonRoot": False,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "startupProbe": {"exec": {"command": ["python3", "-c", PROBE_SCRIPT, socket]}, "periodSeconds": 1,
                         "failureThreshold": 60},
        "readinessProbe": {"exec": {"command": ["python3", "-c", PROBE_SCRIPT, socket]}, "periodSeconds": 10},
        "volumeMounts": [{"name": "socket-dir", "mountPath": NODE_SOCKET_DIR},
                         {"name": "state", "mountPath": state}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": daemonset_name(mesh_name), "namespace": namespace,
                     "labels": {**labels, "app.kubernetes.io/managed-by": "pilotmesh-operator"}},
        "spec": {
            "selector": {"matchLabels": labels},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": labels, "annotations": {contract.ANNOTATION_TRANSPORT: transport,
                                                               contract.ANNOTATION_TRANSPORT_REASON: reason[:512]}},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [container],
                    "volumes": [
                        {"name": "socket-dir", "hostPath": {"path": NODE_SOCKET_DIR, "type": "DirectoryOrCreate"}},
                        {"name": "state", "hostPath": {"path": state, "type": "DirectoryOrCreate"}},
                    ],
                },
            },
        },
    }


def daemonset_pod(mesh_name: str, namespace: str) -> dict[str, Any]:
    """A stand-in pod of the DaemonSet, for the NetworkPolicy analyzer (it makes the egress)."""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{daemonset_name(mesh_name)}-x", "namespace": namespace,
                         "labels": pod_labels(mesh_name)},
            "spec": {"containers": [{"name": contract.DAEMON_CONTAINER}]}}
