"""Asyncio glue of the pilot-daemon: sockets, timers and tasks around the sans-I/O ``proto`` core.

Modules: ``clock`` (time sources), ``udp`` (the shared UDP socket), ``registry_client`` (TCP/TLS registry),
``beacon`` (STUN, punch, relay), ``ipc_server`` (the Unix socket), ``daemon`` (ties them together).
"""
