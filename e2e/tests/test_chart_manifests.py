"""Tier 1: the plain manifests. `kubectl apply -f manifests/` installs (twice: the second changes nothing),
`kubectl delete -f manifests/` removes every object it created, the CRD included."""
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from chart_helpers import ROOT, kubectl

pytestmark = pytest.mark.kube
MANIFESTS = ROOT / "manifests"


def test_kubectl_apply_then_delete_manifests(kube):
    try:
        client.CoreV1Api(kube.client()).read_namespace("pilot-system")
        pytest.skip("namespace pilot-system is in use by another test of this session; "
                    "run this module on its own (or first) to check the plain manifests")
    except ApiException as exc:
        assert exc.status == 404
    first = kubectl(kube, "apply", "-f", str(MANIFESTS))
    kubectl(kube, "wait", "--for=condition=Established", "crd/pilotmeshes.pilot.io", "--timeout=30s")
    names = kubectl(kube, "get", "-f", str(MANIFESTS), "-o", "name").stdout.split()
    assert len(names) == len(first.stdout.splitlines()) >= 12, (first.stdout, names)
    for expected in ("namespace/pilot-system", "customresourcedefinition.apiextensions.k8s.io/pilotmeshes.pilot.io",
                     "deployment.apps/pilotmesh-operator", "clusterrole.rbac.authorization.k8s.io/pilotmesh-operator",
                     "clusterrole.rbac.authorization.k8s.io/pilotmesh-injector", "serviceaccount/pilotmesh-operator"):
        assert expected in names, names
    again = kubectl(kube, "apply", "-f", str(MANIFESTS)).stdout.splitlines()
    assert again and all(line.endswith(" unchanged") for line in again), again
    kubectl(kube, "delete", "-f", str(MANIFESTS), "--wait=true", "--timeout=90s")
    left = kubectl(kube, "get", "-f", str(MANIFESTS), "-o", "name", check=False)
    assert left.returncode != 0 and not left.stdout.strip(), f"left behind: {left.stdout}"
