"""pilot-rendezvous: a self-hostable Pilot registry + beacon + compat bridge on one TLS/443 listener."""

__version__ = "0.1.0"
