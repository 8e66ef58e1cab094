"""`pilot-rendezvous`: command-line entry point."""
from __future__ import annotations

import sys

from . import __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-version", "--version", "version"):
        print(f"pilot-rendezvous (pilotmesh) {__version__}")
        return 0
    print("pilot-rendezvous: not built yet (see the issue tracker); only -version works in this release",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
