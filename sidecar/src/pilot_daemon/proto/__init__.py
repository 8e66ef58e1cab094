"""Sans-I/O protocol core of the pilot-daemon: bytes and time in, bytes and events out.

No module here imports asyncio or sockets or reads the clock; the I/O glue lives in ``pilot_daemon.io``.
"""
