"""`pilotmesh transport-verdict --pod NAMESPACE/NAME`: the verdict for a pod, read live from the cluster.

Reads the pod, the namespaces, every policy kind the cluster serves and the PilotMesh that selects the
pod's namespace (its analyzer settings apply; the defaults when none does). Exit 2 with a message when
the cluster cannot be reached or the pod does not exist.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from pilot_daemon import contract

POD_REF = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$")


def live_target(args: argparse.Namespace) -> tuple[str, str] | None:
    """(namespace, name) when the one --pod names a pod in the cluster rather than a file."""
    if len(args.pod) != 1 or args.filename or args.policies or args.namespaces:
        return None
    m = POD_REF.match(args.pod[0])
    if m is None or (os.path.exists(args.pod[0]) and not args.kubeconfig):
        return None
    return m.group(1), m.group(3)


def run_live(args: argparse.Namespace, namespace: str, name: str) -> int:
    from kubernetes.client.rest import ApiException

    from .. import k8s
    from ..clusterread import NotFound, read_live
    from ..render.netpol import PodInputError, SettingsError, analyze
    from .transport_verdict import print_results

    try:
        api = k8s.api_client(args.kubeconfig)
        live = read_live(api, namespace, name, args.operator_namespace)
        verdict = analyze(live.pod, live.snapshot.namespaces.values(), live.snapshot.policies, live.settings)
    except NotFound as e:
        return _fail(str(e))
    except ApiException as e:
        return _fail(f"the API server answered {e.status} {e.reason}: check --kubeconfig and that you may list pods, "
                     "namespaces and network policies")
    except (SettingsError, PodInputError) as e:
        return _fail(str(e))
    except Exception as e:  # noqa: BLE001 - no cluster configuration, connection refused, TLS errors
        return _fail(f"cannot read the cluster ({type(e).__name__}: {e}); give --kubeconfig")
    verdict.warnings.append(f"settings from PilotMesh {live.mesh}" if live.mesh else
                            f"no PilotMesh selects namespace {namespace}: default analyzer settings")
    current = ((live.pod.get("metadata") or {}).get("annotations") or {}).get(contract.ANNOTATION_TRANSPORT)
    if current and current != verdict.transport:
        verdict.warnings.append(f"the pod's {contract.ANNOTATION_TRANSPORT} annotation says {current}")
    print_results([(live.pod, verdict)], args.output)
    return 0


def _fail(message: str) -> int:
    print(f"pilotmesh transport-verdict: error: {message}", file=sys.stderr)
    return 2
