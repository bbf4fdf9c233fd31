"""``orpheus`` command line: one sub-command per module, each registering its own parser."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orpheus", description=__doc__)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in dict.fromkeys(COMMANDS.values()):
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose > 1 else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
