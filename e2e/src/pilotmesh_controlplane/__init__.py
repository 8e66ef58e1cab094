"""A real Kubernetes control plane as local processes, for tests and demos without Docker.

etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok (fake nodes), all on
127.0.0.1 with freshly generated PKI.  ``pilotmesh-controlplane install`` gets the binaries,
``up``/``down`` start and stop a cluster; :class:`ControlPlane` does the same from Python.
"""
from .cluster import ControlPlane, ControlPlaneError
from .tools import Toolset, ToolsMissing

__all__ = ["ControlPlane", "ControlPlaneError", "Toolset", "ToolsMissing"]
