"""``python -m adage``: the ``adage`` command."""

import sys

from adage import command

if __name__ == "__main__":
    sys.exit(command())
