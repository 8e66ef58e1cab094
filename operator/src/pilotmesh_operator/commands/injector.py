"""`pilotmesh injector`: run the sidecar-injection admission webhook."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys

from .. import logs


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)


def register(sub) -> None:
    p = sub.add_parser("injector", help="run the admission webhook that injects pilot-daemon into pods",
                       description=__doc__)
    p.add_argument("--listen", type=_host_port, default=("0.0.0.0", 8443), help="HTTPS HOST:PORT (default :8443)")
    p.add_argument("--metrics-listen", type=_host_port, default=("0.0.0.0", 9090),
                   help="plain-HTTP HOST:PORT for /metrics, /healthz, /readyz (default :9090; port 0 disables)")
    p.add_argument("--tls-cert", help="serving certificate file (reloaded when it changes)")
    p.add_argument("--tls-key", help="serving key file")
    p.add_argument("--tls-secret", metavar="NAMESPACE/NAME",
                   help="read the serving certificate from this Secret through the API instead of files")
    p.add_argument("--namespace", default=os.environ.get("POD_NAMESPACE", "pilot-system"),
                   help="the operator's namespace (never injected; default $POD_NAMESPACE or pilot-system)")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"), help="default: in-cluster config")
    logs.add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..injector.server import Injector, InjectorConfig

    if not args.tls_secret and not (args.tls_cert and args.tls_key):
        print("pilotmesh injector: give --tls-cert and --tls-key, or --tls-secret NAMESPACE/NAME", file=sys.stderr)
        return 2
    logs.setup(args.log_level, args.log_format)
    config = InjectorConfig(listen_host=args.listen[0], listen_port=args.listen[1],
                            metrics_host=args.metrics_listen[0], metrics_port=args.metrics_listen[1],
                            tls_cert_file=args.tls_cert, tls_key_file=args.tls_key, tls_secret=args.tls_secret,
                            operator_namespace=args.namespace, kubeconfig=args.kubeconfig)
    try:
        asyncio.run(Injector(config).run())
    except KeyboardInterrupt:
        pass
    return 0
