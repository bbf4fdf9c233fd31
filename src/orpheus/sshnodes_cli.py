"""``orpheus sshnodes up|down|start|stop|status``: the fake nodes as real sshd servers on
loopback (``oarlib.sshnodes``), for deploying over ssh to the nodes of OAR jobs."""

from __future__ import annotations

import argparse
import json

from oarlib import sshnodes


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "up":
            print(json.dumps(sshnodes.up(sshnodes.Config(args.nodes, tuple(args.users)))))
        elif args.action == "down":
            sshnodes.down()
        elif args.action == "start":
            for n in args.node:
                sshnodes.start(n)
        elif args.action == "stop":
            for n in args.node:
                sshnodes.stop(n)
        else:
            for n in sshnodes.running():
                print(f"{n} {sshnodes.address(n)} pid {sshnodes.pid_of(n)} "
                      f"connections {sshnodes.connections(n)}")
    except sshnodes.SshNodesError as e:
        print(f"orpheus sshnodes: error: {e}")
        return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sshnodes`` with its actions."""
    p = sub.add_parser("sshnodes", help="fake nodes served by real sshd on 127.0.0.N (root)",
                       description=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    u = actions.add_parser("up", help="hosts entries, keys and one sshd per node (idempotent)")
    u.add_argument("--nodes", type=int, default=sshnodes.Config.nodes,
                   help="nodes node1..nodeN (default %(default)s)")
    u.add_argument("--users", nargs="+", default=list(sshnodes.DEFAULT_USERS),
                   help="users given keys (default: %(default)s)")
    actions.add_parser("down", help="stop every node's sshd and remove the hosts entries")
    for name, what in (("start", "start"), ("stop", "stop (with its connections)")):
        a = actions.add_parser(name, help=f"{what} one node's sshd")
        a.add_argument("node", nargs="+")
    actions.add_parser("status", help="running nodes, their pids and connection counts")
    p.set_defaults(func=run)
