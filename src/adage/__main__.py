"""``python -m adage``: the ``adage`` command."""

import sys

from adage import command

sys.exit(command())
