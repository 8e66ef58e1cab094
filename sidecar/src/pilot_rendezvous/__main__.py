"""`python -m pilot_rendezvous`."""
import sys

from .cli import main

sys.exit(main())
