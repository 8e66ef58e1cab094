"""`pilotmesh status`: each PilotMesh's webhook path, injector, pods and conditions, and the certificate.

Reads the PilotMeshes, their webhook configurations, the injector Secret and the injected pods (by label,
page by page), and probes the injector the way the apiserver reaches it. Exit 0 with the report (its
`healthy` field says whether anything needs attention); exit 2 with a one-line error when the cluster
cannot be read.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

PROG = "pilotmesh status"


def register(sub) -> None:
    p = sub.add_parser("status", help="summarise PilotMeshes: webhook health, certificate expiry, pods, transports",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kubeconfig", help="the cluster (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--operator-namespace", default="pilot-system",
                   help="where the injector runs (default pilot-system)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kubernetes.client.rest import ApiException

    from pilot_daemon import contract

    from .. import clusterfacts, k8s, statusreport
    from ..clusterread import list_all

    try:
        api = k8s.api_client(args.kubeconfig)
        snap = clusterfacts.snapshot(api, args.operator_namespace)
        facts = []
        for mesh in snap.meshes:
            mwc = clusterfacts.webhook_configuration(api, mesh["metadata"]["name"])
            facts.append(statusreport.MeshFacts(mesh, mwc, clusterfacts.probe_injector(api, mwc)))
        pods = list(list_all(api, "/api/v1/pods", {"labelSelector": contract.LABEL_INJECTED}))
        secret = clusterfacts.secret_data(api, args.operator_namespace)
    except ApiException as exc:
        print(f"{PROG}: error: the API server answered {exc.status} {exc.reason}: check --kubeconfig and that you may "
              "read PilotMeshes, pods, namespaces, webhook configurations and the injector Secret", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - no configuration, connection refused, TLS errors
        print(f"{PROG}: error: cannot read the cluster ({type(exc).__name__}: {exc}); give --kubeconfig",
              file=sys.stderr)
        return 2
    rep = statusreport.report(facts, snap, pods, secret, dt.datetime.now(dt.timezone.utc))
    sys.stdout.write(json.dumps(rep, indent=2) + "\n" if args.output == "json" else statusreport.render_text(rep))
    return 0
