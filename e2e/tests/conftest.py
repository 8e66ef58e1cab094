"""Fixtures that run PilotMesh itself (operator + injector as real processes) on the `kube` control plane."""
from __future__ import annotations

import pytest

from pilotmesh_controlplane.local_pilotmesh import (OPERATOR_NS, LocalPilotMesh, ensure_crd,  # noqa: F401
                                                    ensure_namespace)


class Stack(LocalPilotMesh):
    """LocalPilotMesh plus the test's API client."""

    def __init__(self, kube, logs) -> None:
        super().__init__(kube.kubeconfig, logs)
        self.kube, self.api = kube, kube.client()


@pytest.fixture(scope="session")
def pilotmesh(kube, tmp_path_factory):
    """The operator and the injector running against the control plane (webhook by URL on 127.0.0.1)."""
    stack = Stack(kube, tmp_path_factory.mktemp("pilotmesh-logs"))
    ensure_crd(stack.api)
    ensure_namespace(stack.api, OPERATOR_NS)
    stack.start()
    yield stack
    stack.stop()
