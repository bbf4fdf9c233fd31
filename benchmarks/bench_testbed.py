"""How fast the test bed registers fake resources, against OAR's own oarnodesetting.

Run as root on the test bed machine: ``/opt/orpheus-adage/venv/bin/python
benchmarks/bench_testbed.py [--nodes 1000 --cores 32 --real 4]``. It brings the default test bed
up, times the real ``oarnodesetting -a`` (one Perl process per resource, as
``oar_resources_add | bash`` runs it) on a handful of resources, times the bulk registration of
nodes x cores, prints both and their ratio to the 60-s target. A running daemon is refused
(``--stop-daemon`` stops it); the bed is given back as it was found.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import benchbed  # run as a script: benchmarks/ is on the path

from oarlib import testbed
from oarlib.testbed import Config
from orpheus.testbed_cli import bring_up


def real_per_resource(count: int) -> float:
    """Seconds per resource of the real oarnodesetting -a (oar_resources_add's lines)."""
    started = time.perf_counter()
    for i in range(count):
        testbed.run(["oarnodesetting", "-a", "-h", "benchreal", "-p", "host=benchreal",
                     "-p", "cpu=9999", "-p", f"core={90000 + i}", "-p", f"cpuset={i}"])
    elapsed = time.perf_counter() - started
    with testbed.connect() as db:
        testbed.remove_resources(db, [i for i, r in testbed.registered(db)
                                      if r.network_address == "benchreal"])
    return elapsed / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--cores", type=int, default=32)
    parser.add_argument("--real", type=int, default=4, help="resources for oarnodesetting")
    benchbed.add_options(parser)
    args = parser.parse_args()
    found = benchbed.claim(args)
    try:
        return measure(args)
    finally:
        benchbed.give_back(found)


def measure(args: argparse.Namespace) -> int:
    default = Config()
    bring_up(default)
    real = real_per_resource(args.real)
    size = args.nodes * args.cores
    big = Config(nodes=args.nodes, cores=args.cores)
    with testbed.connect() as db:
        started = time.perf_counter()
        todo = testbed.register(big, db)
        bulk = time.perf_counter() - started
    started = time.perf_counter()
    st = bring_up(big)
    again = time.perf_counter() - started
    assert st["resources"] == {"Alive": size}, st["resources"]
    started = time.perf_counter()
    st = bring_up(default)
    restore = time.perf_counter() - started
    assert st["resources"] == {"Alive": default.nodes * default.cores}, st["resources"]

    print(f"real oarnodesetting -a     : {real * 1000:8.1f} ms/resource ({args.real} resources)")
    print(f"bulk register {args.nodes} x {args.cores:<3}    : {bulk:8.2f} s for "
          f"{len(todo.add)} added, {len(todo.update)} renumbered "
          f"({bulk / size * 1e6:.0f} us/resource)")
    print(f"  oarnodesetting would take: {real * size:8.0f} s  -> bulk is "
          f"{real * size / bulk:.0f}x faster "
          f"(target < 60 s: ratio {bulk / 60:.2f}, {'met' if bulk < 60 else 'MISSED'})")
    print(f"testbed up again (no-op)   : {again:8.2f} s")
    print(f"restore {default.nodes} x {default.cores} (removal)  : {restore:8.2f} s")
    return 0 if bulk < 60 else 1


if __name__ == "__main__":
    sys.exit(main())
