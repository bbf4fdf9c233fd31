"""``orpheus`` command line: one sub-command per module, each registering its own parser.

Only the module of the sub-command being run is imported (``orpheus run`` does not pay for
matplotlib); ``orpheus -h`` imports them all to list them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from orpheus.errors import OrpheusError

# sub-command -> module exposing ``register(subparsers)``; each sets ``func(args) -> int``
COMMANDS = {
    "testbed": "orpheus.testbed_cli",
    "install": "orpheus.install",
    "uninstall": "orpheus.install",
    "run": "orpheus.daemon",
    "model": "orpheus.model_cli",
    "demo": "orpheus.demo",
    "replay": "orpheus.replay",
    "report": "orpheus.report",
    "compare": "orpheus.compare_cli",
    "energy": "orpheus.energy",
    "fail-node": "orpheus.failnode",
    "sshnodes": "orpheus.sshnodes_cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command`` (every sub-command when None)."""
    parser = argparse.ArgumentParser(prog="orpheus", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for module in dict.fromkeys(wanted):
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except OrpheusError as exc:  # one line, whichever command let it through
        print(f"orpheus {command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
