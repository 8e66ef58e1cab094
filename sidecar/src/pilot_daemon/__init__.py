"""PilotMesh's Python pilot-daemon: wire- and IPC-compatible with the official Pilot Protocol 1.18 daemon."""

__version__ = "0.1.0"
