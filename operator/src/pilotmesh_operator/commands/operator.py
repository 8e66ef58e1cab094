"""`pilotmesh operator`: run the PilotMesh operator (kopf; one replica)."""
from __future__ import annotations

import argparse
import json
import os

from .. import logs
from .injector import _host_port


def _resources(text: str) -> dict | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"injector resources are not JSON: {exc}") from None
    if not isinstance(value, dict) or not set(value) <= {"requests", "limits"}:
        raise argparse.ArgumentTypeError("injector resources must be an object with requests and/or limits")
    return value


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
    p.add_argument("--injector-resources", type=_resources,
                   default=_resources(os.environ.get("PILOTMESH_INJECTOR_RESOURCES", "")),
                   help="injector container resources as JSON, e.g. '{\"requests\": {\"cpu\": \"50m\"}}'")
    p.add_argument("--injector-anti-affinity", choices=["soft", "hard", "none"],
                   default=os.environ.get("PILOTMESH_INJECTOR_ANTI_AFFINITY", "soft"),
                   help="spread injector replicas over nodes (default soft)")
    p.add_argument("--no-injector-pdb", action="store_true",
                   default=os.environ.get("PILOTMESH_INJECTOR_PDB", "true") == "false",
                   help="no PodDisruptionBudget for the injector")
    p.add_argument("--webhook-url", default=os.environ.get("PILOTMESH_WEBHOOK_URL"),
                   help="use this URL in the webhook configuration instead of the injector Service")
    p.add_argument("--no-injector-deployment", action="store_true",
                   help="do not create the injector Deployment/Service (it runs elsewhere, e.g. with --webhook-url)")
    p.add_argument("--liveness", default=os.environ.get("PILOTMESH_LIVENESS", "http://0.0.0.0:8080/healthz"),
                   help="kopf liveness endpoint URL ('' disables)")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: in-cluster config")
    p.add_argument("--metrics-listen", type=_host_port,
                   default=_host_port(os.environ.get("PILOTMESH_OPERATOR_METRICS_LISTEN", ":9091")),
                   help="plain-HTTP HOST:PORT for Prometheus /metrics (default :9091; port 0 disables)")
    p.add_argument("--watchdog-interval", type=float,
                   default=float(os.environ.get("PILOTMESH_WATCHDOG_INTERVAL", "60")),
                   help="seconds between watchdog rounds (default 60)")
    p.add_argument("--watchdog-restarts-per-minute", type=int, default=5,
                   help="with spec.watchdog.restart: at most this many owner restarts per minute (default 5)")
    logs.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import kopf

    from .. import handlers  # noqa: F401 - registers the kopf handlers
    from .. import handlers_transport  # noqa: F401 - transport re-decision when policies change
    from .. import handlers_watchdog, k8s, metrics
    from ..desired import OperatorSettings
    from ..operations import WatchdogSettings
    from ..reconcile import Reconciler

    logs.setup(args.log_level, args.log_format)
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig   # kopf's own login reads it
    settings = OperatorSettings(namespace=args.namespace, injector_image=args.injector_image,
                                injector_replicas=args.injector_replicas,
                                injector_host_network=args.injector_host_network, webhook_url=args.webhook_url,
                                manage_injector=not args.no_injector_deployment,
                                injector_anti_affinity=args.injector_anti_affinity,
                                injector_pdb=not args.no_injector_pdb,
                                **({"injector_resources": args.injector_resources} if args.injector_resources else {}))
    handlers_watchdog.register(WatchdogSettings(args.watchdog_interval, args.watchdog_restarts_per_minute))
    if args.metrics_listen[1]:
        metrics.serve(*args.metrics_listen)
    reconciler = Reconciler(k8s.api_client(args.kubeconfig), settings)
    kopf.run(standalone=True, clusterwide=True, liveness_endpoint=args.liveness or None,
             memo=kopf.Memo(reconciler=reconciler))
    return 0
