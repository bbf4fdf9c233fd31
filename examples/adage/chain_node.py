#!/usr/bin/env python3
"""One stage of the ADAGE chain example (stdlib only).

With ``--after HOST:PORT`` it first waits until its predecessor answers there; with ``--port``
it then serves one greeting to its successor and exits; without, it is the last stage and exits
once its predecessor answered. It appends ``up=1`` (and its port) to the file named by
ADAGE_REPORT when there is one.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time


def wait_for(name: str, address: str, timeout: float) -> str:
    """The greeting of the stage listening at ``address``, retrying until ``timeout``."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:PORT, from @{G.urlhost}:PORT
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=2) as conn:
                return conn.recv(256).decode().strip()
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"{name}: predecessor at {address} not up after {timeout:.0f} s")
            time.sleep(0.2)


def report(**values: object) -> None:
    path = os.environ.get("ADAGE_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.writelines(f"{key}={value}\n" for key, value in values.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, help="serve one greeting on this port")
    parser.add_argument("--after", metavar="HOST:PORT", help="predecessor to wait for")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    server = None
    if args.port:
        server = socket.create_server(("", args.port), reuse_port=False)
        server.settimeout(args.timeout)
    if args.after:
        print(f"{args.name}: predecessor says: {wait_for(args.name, args.after, args.timeout)}")
    report(up=1, port=args.port or 0)
    if server is None:
        print(f"{args.name}: chain complete")
        return
    with server:
        conn, _ = server.accept()
        with conn:
            conn.sendall(f"{args.name} up\n".encode())
    print(f"{args.name}: served my successor")


if __name__ == "__main__":
    main()
