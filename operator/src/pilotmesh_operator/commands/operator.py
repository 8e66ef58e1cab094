"""`pilotmesh operator`: run the PilotMesh operator (kopf; one replica)."""
from __future__ import annotations

import argparse
import os

from .. import logs


def register(sub) -> None:
    p = sub.add_parser("operator", help="run the operator that reconciles PilotMesh resources", description=__doc__)
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "pilot-system"),
                   help="where the injector, its certificate and Service live (default $POD_NAMESPACE or pilot-system)")
    p.add_argument("--injector-image", default=os.environ.get("PILOTMESH_INJECTOR_IMAGE",
                                                              "ghcr.io/pilotmesh/operator:0.1.0"))
    p.add_argument("--injector-replicas", type=int, default=int(os.environ.get("PILOTMESH_INJECTOR_REPLICAS", "2")))
    p.add_argument("--injector-host-network", action="store_true",
                   default=os.environ.get("PILOTMESH_INJECTOR_HOST_NETWORK") == "true",
                   help="run the injector on the host network (control planes that cannot reach pod IPs)")
    p.add_argument("--webhook-url", default=os.environ.get("PILOTMESH_WEBHOOK_URL"),
                   help="use this URL in the webhook configuration instead of the injector Service")
    p.add_argument("--no-injector-deployment", action="store_true",
                   help="do not create the injector Deployment/Service (it runs elsewhere, e.g. with --webhook-url)")
    p.add_argument("--liveness", default=os.environ.get("PILOTMESH_LIVENESS", "http://0.0.0.0:8080/healthz"),
                   help="kopf liveness endpoint URL ('' disables)")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: in-cluster config")
    logs.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import kopf

    from .. import handlers  # noqa: F401 - registers the kopf handlers
    from .. import handlers_transport  # noqa: F401 - transport re-decision when policies change
    from .. import k8s
    from ..desired import OperatorSettings
    from ..reconcile import Reconciler

    logs.setup(args.log_level, args.log_format)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig   # kopf's own login reads it
    settings = OperatorSettings(namespace=args.namespace, injector_image=args.injector_image,
                                injector_replicas=args.injector_replicas,
                                injector_host_network=args.injector_host_network, webhook_url=args.webhook_url,
                                manage_injector=not args.no_injector_deployment)
    reconciler = Reconciler(k8s.api_client(args.kubeconfig), settings)
    kopf.run(standalone=True, clusterwide=True, liveness_endpoint=args.liveness or None,
             memo=kopf.Memo(reconciler=reconciler))
    return 0
