"""``python -m airlaunch.cli``: the same as the ``airlaunch`` command."""

import sys

from airlaunch.cli import main

sys.exit(main())
