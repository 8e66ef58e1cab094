"""``python -m pilot_daemon``: same as the ``pilot-daemon`` command."""
import sys

from .cli import main

sys.exit(main())
