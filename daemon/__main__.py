"""``python -m daemon`` is the ``aced`` command line."""

import sys

from daemon.cli import main

sys.exit(main())
