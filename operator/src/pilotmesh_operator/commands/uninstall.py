"""`pilotmesh uninstall`: what the Helm chart's pre-delete hook runs, so no webhook outlives PilotMesh.

Steps, in order (each wait bounded by --timeout; a step that times out is reported and the next runs):
  1. delete the PilotMeshes matching --mesh-selector (the chart's own) and wait while the running
     operator finalizes them: it removes their webhook configuration first;
  2. scale the operator Deployment to zero and wait for its pods to go, so nothing is re-created;
  3. delete every MutatingWebhookConfiguration labelled app.kubernetes.io/managed-by=pilotmesh-operator;
  4. remove the operator's finalizer from the PilotMeshes left (yours are kept, and can be deleted later
     without an operator; a reinstalled operator adds the finalizer again);
  5. delete what the operator created in --namespace (injector Deployment, Service, PDB, ServiceAccount,
     certificate Secret, DaemonSets), selected by the same label.
Kept: the CRD and the PilotMeshes you created. Also runnable as `python -m pilotmesh_operator.commands.uninstall`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

MANAGED = "app.kubernetes.io/managed-by=pilotmesh-operator"
FINALIZER = "pilot.io/finalizer"
MESHES = "/apis/pilot.io/v1alpha1/pilotmeshes"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
# What the operator creates in its namespace: collection paths under /namespaces/NS.
OWNED = ("/apis/apps/v1/namespaces/{ns}/deployments", "/apis/apps/v1/namespaces/{ns}/daemonsets",
         "/api/v1/namespaces/{ns}/services", "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
         "/api/v1/namespaces/{ns}/serviceaccounts", "/api/v1/namespaces/{ns}/secrets")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "pilot-system"),
                   help="the operator's namespace (default $POD_NAMESPACE or pilot-system)")
    p.add_argument("--operator-deployment", help="the operator's Deployment, scaled to zero before the webhooks go")
    p.add_argument("--mesh-selector", help="label selector of the PilotMeshes to delete (the chart's own); "
                                           "others are kept")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait at each step (default 60)")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: in-cluster config")


def register(sub) -> None:
    p = sub.add_parser("uninstall", help="remove PilotMesh's webhooks and operator-created objects (pre-delete hook)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def _wait(what: str, done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            print(f"  timed out after {timeout:.0f}s waiting for {what}; going on")
            return False
        time.sleep(0.5)
    return True


def run(args: argparse.Namespace) -> int:
    from kubernetes.client.rest import ApiException

    from .. import k8s

    api = k8s.api_client(args.kubeconfig)

    def items(path: str, selector: str | None = None) -> list[dict]:
        try:
            return k8s.call(api, "GET", path, query={"labelSelector": selector} if selector else None).get("items") or []
        except ApiException as exc:
            if exc.status == 404:       # the CRD is gone already, or a kind is not served
                return []
            raise

    def names(objs: list[dict]) -> list[str]:
        return sorted(o["metadata"]["name"] for o in objs)

    if args.mesh_selector:
        meshes = items(MESHES, args.mesh_selector)
        print(f"1. deleting PilotMesh(es) {names(meshes) or 'none'} ({args.mesh_selector})")
        for name in names(meshes):
            k8s.delete(api, f"{MESHES}/{name}")
        _wait("the operator to finalize them", lambda: not items(MESHES, args.mesh_selector), args.timeout)

    if args.operator_deployment:
        path = f"/apis/apps/v1/namespaces/{args.namespace}/deployments/{args.operator_deployment}"
        dep = k8s.get(api, path)
        if dep:
            print(f"2. scaling Deployment {args.namespace}/{args.operator_deployment} to 0")
            k8s.call(api, "PATCH", path, {"spec": {"replicas": 0}},
                     content_type="application/merge-patch+json")
            match = ",".join(f"{k}={v}" for k, v in sorted(dep["spec"]["selector"].get("matchLabels", {}).items()))
            _wait("the operator's pods to stop",
                  lambda: not items(f"/api/v1/namespaces/{args.namespace}/pods", match), args.timeout)

    hooks = items(WEBHOOKS, MANAGED)
    print(f"3. deleting MutatingWebhookConfiguration(s) {names(hooks) or 'none'}")
    for name in names(hooks):
        k8s.delete(api, f"{WEBHOOKS}/{name}")

    for mesh in items(MESHES):
        finalizers = mesh["metadata"].get("finalizers") or []
        if FINALIZER in finalizers:
            print(f"4. removing the operator's finalizer from PilotMesh {mesh['metadata']['name']}")
            patch = [{"op": "test", "path": "/metadata/finalizers", "value": finalizers},
                     {"op": "replace", "path": "/metadata/finalizers", "value": [f for f in finalizers if f != FINALIZER]}]
            try:
                k8s.call(api, "PATCH", f"{MESHES}/{mesh['metadata']['name']}", patch,
                         content_type="application/json-patch+json")
            except ApiException as exc:
                if exc.status not in (404, 422):   # gone, or changed under us: nothing to fix
                    raise

    for template in OWNED:
        path = template.format(ns=args.namespace)
        found = items(path, MANAGED)
        if found:
            print(f"5. deleting {path.rsplit('/', 1)[1]} {names(found)} in {args.namespace}")
            for name in names(found):
                k8s.delete(api, f"{path}/{name}")
    left = names(items(WEBHOOKS, MANAGED))
    if left:
        print(f"error: MutatingWebhookConfiguration(s) {left} came back; is an operator still running? "
              f"Stop it and run this again", file=sys.stderr)
        return 1
    print("done: no PilotMesh webhook configuration is left")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pilotmesh uninstall", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
