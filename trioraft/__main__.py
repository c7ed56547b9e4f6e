"""``python -m trioraft``: the command line (the ``trioraft`` command runs the same).

``serve`` runs one server on TCP and DiskStorage until SIGINT or SIGTERM; the other
commands (``status``, ``write``, ``read``, ``add``, ``remove``, ``transfer``) are clients
of a running cluster. Every command exits with a one-line message on error: status 1
for a problem met while running, 2 for a wrong argument. See ``--help``.
"""

from __future__ import annotations

import sys

from ._cli import main
from ._cli.serve import SERVE_GC_THRESHOLD, tune_collector

__all__ = ["SERVE_GC_THRESHOLD", "main", "tune_collector"]

#: Its former name (the benchmark's server processes import it).
_tune_collector = tune_collector

if __name__ == "__main__":
    sys.exit(main())
