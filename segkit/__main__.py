"""``python -m segkit`` is the ``segkit`` command (Composer's launcher runs it this way)."""

import sys

from segkit.cli import main

sys.exit(main())
