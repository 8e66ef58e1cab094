"""Names shared by the daemon, the operator and users' manifests: the only daemon module the operator imports.

Changing a value here is a breaking change for running clusters (pods carry these names).
"""

# The shared volume and socket every injected pod gets.
SHARED_VOLUME = "pilot-shared"
SHARED_MOUNT = "/shared"
SOCKET_PATH = "/shared/pilot.sock"
SOCKET_ENV = "PILOT_SOCKET"            # what the official pilotctl and SDK read
DEFAULT_SOCKET = "/tmp/pilot.sock"     # the official daemon's default when no -socket is given

# Environment the daemon honours (same names as the official daemon).
ENV_REGISTRY = "PILOT_REGISTRY"
ENV_BEACON = "PILOT_BEACON"
ENV_TRANSPORT = "PILOT_TRANSPORT"
ENV_PROXY = "PILOT_PROXY"
ENV_HOSTNAME = "PILOT_HOSTNAME"

# Ports.
UDP_PEER_PORT = 4000                   # the daemon's UDP listen port for direct peer paths
COMPAT_PORT = 443                      # compat: WSS beacon + TLS registry, SNI-routed
REGISTRY_PORT = 9000
BEACON_PORT = 9001

TRANSPORTS = ("udp", "compat", "auto")

# Pod annotations and labels (prefix pilot.io/).
ANNOTATION_INJECT = "pilot.io/inject"
ANNOTATION_TRANSPORT = "pilot.io/transport"
ANNOTATION_TRANSPORT_REASON = "pilot.io/transport-reason"
ANNOTATION_STATUS = "pilot.io/status"
ANNOTATION_CONTAINERS = "pilot.io/containers"
ANNOTATION_NATIVE_SIDECAR = "pilot.io/native-sidecar"
ANNOTATION_HOSTNAME = "pilot.io/hostname"      # per-pod hostname template override
ANNOTATION_IMAGE = "pilot.io/image"            # per-pod daemon image override
ANNOTATION_LOG_LEVEL = "pilot.io/log-level"    # per-pod daemon log level override
# per-pod daemon resources (Kubernetes quantities), like Istio's sidecar.istio.io/proxyCPU...
ANNOTATION_RESOURCES = {
    "pilot.io/cpu": ("requests", "cpu"), "pilot.io/memory": ("requests", "memory"),
    "pilot.io/cpu-limit": ("limits", "cpu"), "pilot.io/memory-limit": ("limits", "memory"),
}
LABEL_INJECT = "pilot.io/inject"
LABEL_MODE = "pilot.io/mode"              # namespace label: sidecar | daemonset, overrides the PilotMesh spec.mode
LABEL_INJECTED = "pilot.io/injected"      # set on injected pods ("sidecar" or "daemonset"): lets the operator list them

# The file (downward API of the pilot.io/transport annotation) the daemon watches to switch transport live.
TRANSPORT_FILE = "/etc/pilot/podinfo/transport"

# Without native sidecars, a run-to-completion pod's daemon (flag `-exit-on-file`) exits when this file appears;
# the app's last step is `touch /shared/pilot.exit`.
EXIT_FILE = "/shared/pilot.exit"

DAEMON_CONTAINER = "pilot"            # the injected container's name (issue: "the daemon container is named `pilot`")
