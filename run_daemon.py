"""Start the aced persistence daemon (what ``deploy/aced.service`` runs): ``python run_daemon.py``.

Equivalent to ``aced run``; configuration comes from ``ACED_*`` variables and ``ACED_CONFIG``.
"""

import sys

from daemon.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
