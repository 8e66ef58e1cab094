"""Typed errors of the rendezvous. Their text goes back to the official client as `registry: <text>`."""
from __future__ import annotations


class RendezvousError(Exception):
    """Base class; `str(err)` is safe to send to a client."""


class BadRequest(RendezvousError):
    """The request is malformed or misses a field; the client must fix the request."""


class NotFound(RendezvousError):
    """The node, hostname or network does not exist (register first, or check the id)."""


class Forbidden(RendezvousError):
    """A signature is missing or wrong, or the caller may not see or change the object."""


class Conflict(RendezvousError):
    """The name or record is held by someone else; pick another or wait for it to be released."""


class FrameError(RendezvousError):
    """The byte stream broke the framing rules; the connection is closed after the reply."""
