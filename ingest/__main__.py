"""``python -m ingest`` runs the ``carewatch`` command line."""

import sys

from ingest.cli import main

sys.exit(main())
