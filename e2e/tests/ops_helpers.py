"""Shared by the tier-1 operations tests: a faster watchdog, meshes scoped to one test's namespaces, the CLI."""
from __future__ import annotations

import contextlib
import io
import json
import os
import uuid
from contextlib import redirect_stderr, redirect_stdout

from kubernetes import client
from kubernetes.client.rest import ApiException

from pilotmesh_operator.cli import main as cli_main

GROUP, VERSION, PLURAL = "pilot.io", "v1alpha1", "pilotmeshes"


@contextlib.contextmanager
def fast_watchdog(stack, seconds: float = 2.0):
    """Restart the operator with a short watchdog interval for the block, then restart it as it was."""
    os.environ["PILOTMESH_WATCHDOG_INTERVAL"] = str(seconds)
    stack.stop_operator()
    stack.start_operator()
    try:
        yield
    finally:
        os.environ.pop("PILOTMESH_WATCHDOG_INTERVAL", None)
        stack.stop_operator()
        stack.start_operator()


def scoped_mesh(api, prefix: str, **spec) -> tuple[str, dict[str, str]]:
    """Create a PilotMesh selecting only namespaces labelled with a label unique to it; (name, that label)."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    label = {"pilotmesh-test": name}
    client.CustomObjectsApi(api).create_cluster_custom_object(GROUP, VERSION, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "PilotMesh", "metadata": {"name": name},
        "spec": {"namespaceSelector": {"matchLabels": label}, **spec}})
    return name, label


def get_mesh(api, name: str) -> dict:
    return client.CustomObjectsApi(api).get_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def patch_mesh(api, name: str, spec: dict) -> None:
    client.CustomObjectsApi(api).patch_cluster_custom_object(GROUP, VERSION, PLURAL, name, {"spec": spec})


def delete_mesh(api, name: str) -> None:
    with contextlib.suppress(ApiException):
        client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def pod(name: str, annotations=None, labels=None, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}], **spec}}


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli_main(list(argv))
    return code, out.getvalue(), err.getvalue()


def cli_json(*argv: str):
    code, out, err = cli(*argv, "-o", "json")
    assert code == 0, err
    return json.loads(out)
