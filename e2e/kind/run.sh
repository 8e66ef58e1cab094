#!/usr/bin/env bash
# PilotMesh end to end on a real kind cluster, for machines with Docker (CI has none: it runs the same
# chart against a local control plane instead, see e2e/tests/test_chart_*.py).
#
#   e2e/kind/run.sh            create the cluster (if missing), build and load the images, install, check
#   e2e/kind/run.sh --delete   delete the cluster
#
# Needs: docker, kind (go install sigs.k8s.io/kind@v0.33.0), kubectl, helm 3. Env: CLUSTER (default
# pilotmesh), TAG (image tag, default dev). The images are built from this checkout and loaded into kind;
# nothing is pushed anywhere.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLUSTER=${CLUSTER:-pilotmesh}
TAG=${TAG:-dev}
NS=pilot-system
OPERATOR_IMAGE=ghcr.io/pilotmesh/operator:$TAG
DAEMON_IMAGE=ghcr.io/pilotmesh/pilot-daemon:$TAG
CTX=kind-$CLUSTER
k() { kubectl --context "$CTX" "$@"; }
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
if [[ ${1:-} == --delete ]]; then
  kind delete cluster --name "$CLUSTER"
  exit 0
fi

step "kind cluster $CLUSTER"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --config "$ROOT/e2e/kind/kind-config.yaml" --wait 120s

step "build and load the images ($TAG)"
docker build -t "$OPERATOR_IMAGE" -f "$ROOT/operator/Dockerfile" "$ROOT"
docker build -t "$DAEMON_IMAGE" -f "$ROOT/sidecar/Dockerfile" "$ROOT"
kind load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$DAEMON_IMAGE"

step "helm install (a PilotMesh using the in-cluster rendezvous, so nothing leaves the cluster)"
helm --kube-context "$CTX" upgrade --install pilotmesh "$ROOT/charts/pilotmesh" -n "$NS" --create-namespace \
  --set images.operator.tag="$TAG" --set images.daemon.tag="$TAG" --set images.rendezvous.tag="$TAG" \
  --set mesh.create=true --set mesh.rendezvous.inCluster=true --set rendezvous.enabled=true --wait --timeout 180s
k wait pilotmesh/default --for=condition=Ready --timeout=180s
helm --kube-context "$CTX" test pilotmesh -n "$NS" --logs

step "an annotated Deployment and a Job: injected"
k apply -f "$ROOT/manifests/samples/deployment.yaml" -f "$ROOT/manifests/samples/job.yaml"
k -n pilot-demo rollout status deploy/pilot-demo --timeout=180s
k -n pilot-demo wait job/pilot-demo-job --for=condition=Complete --timeout=180s
pod=$(k -n pilot-demo get pod -l app=pilot-demo -o jsonpath='{.items[0].metadata.name}')
k -n pilot-demo get pod "$pod" -o jsonpath='{.metadata.annotations.pilot\.io/status}{"\n"}'
names=$(k -n pilot-demo get pod "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}')
[[ " $names " == *" pilot "* ]] || fail "pod $pod has no pilot container: $names"
k -n pilot-demo logs "$pod" -c app --tail=1 | grep -q pilot.sock || fail "the app does not see /shared/pilot.sock"

step "a default-deny namespace (egress TCP/443 and DNS only): compat"
k apply -f "$ROOT/manifests/samples/default-deny-namespace.yaml"
k -n pilot-locked rollout status deploy/locked-app --timeout=180s
transport=$(k -n pilot-locked get pod -l app=locked-app -o jsonpath='{.items[0].metadata.annotations.pilot\.io/transport}')
echo "transport: $transport ($(k -n pilot-locked get pod -l app=locked-app -o jsonpath='{.items[0].metadata.annotations.pilot\.io/transport-reason}'))"
[[ $transport == compat ]] || fail "expected compat in pilot-locked, got $transport"

step "two pods, two daemons, both registered with the in-cluster rendezvous"
registered() {
  k -n "$NS" exec deploy/pilotmesh-rendezvous -- python -c \
    'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9102/metrics").read().decode())' |
    awk '/^pilot_rendezvous_nodes /{print int($2)}'
}
for _ in $(seq 60); do [[ $(registered) -ge 2 ]] && break; sleep 2; done
[[ $(registered) -ge 2 ]] || fail "fewer than two daemons registered: $(registered)"
echo "daemons registered: $(registered)"

step "uninstall: the pre-delete hook removes the webhook configurations first"
k delete -f "$ROOT/manifests/samples/deployment.yaml" -f "$ROOT/manifests/samples/default-deny-namespace.yaml" --wait=false
helm --kube-context "$CTX" uninstall pilotmesh -n "$NS" --wait --timeout 180s
left=$(k get mutatingwebhookconfigurations -l app.kubernetes.io/managed-by=pilotmesh-operator -o name)
[[ -z $left ]] || fail "webhook configurations left behind: $left"
echo
echo "OK. The CRD is kept (Helm convention): kubectl --context $CTX delete crd pilotmeshes.pilot.io"
echo "Delete the cluster: e2e/kind/run.sh --delete"
