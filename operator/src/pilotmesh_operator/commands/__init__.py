"""One module per `pilotmesh` subcommand; each exposes register(subparsers)."""
