"""``python -m trioraft.bench``."""

import sys

from . import main

sys.exit(main())
