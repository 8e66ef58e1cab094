"""`pilot-daemon`: command-line entry point of the Python daemon."""
from __future__ import annotations

import sys

from . import __version__


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-version", "--version", "version"):
        print(f"pilot-daemon (pilotmesh) {__version__}")
        return 0
    print("pilot-daemon: the Python daemon is being built (see the issue tracker); "
          "only -version works in this release", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
