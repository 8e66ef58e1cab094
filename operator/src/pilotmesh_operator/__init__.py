"""PilotMesh operator: PilotMesh reconciliation, the sidecar injector, the NetworkPolicy analyzer and the CLI."""

__version__ = "0.1.0"
