"""Planner speed: 100,000 instances on 10,000 nodes for both planners, with and without
property predicates, against the 2 s target.

Run: /opt/orpheus-adage/venv/bin/python benchmarks/bench_planner.py [--repeat N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from the checkout

from rich.console import Console
from rich.table import Table

from adage.model import (
    Constraint,
    CtrlParams,
    GenericAppl,
    Node,
    ProcGroup,
    PropertyPredicate,
    Resources,
)
from adage.planners import get_planner

TARGET = 2.0  # seconds
NODES = 10_000
INSTANCES = 100_000


def resources() -> Resources:
    """10,000 nodes in 4 clusters, 16 to 32 cores, speeds 1 to 2."""
    return Resources(tuple(
        Node(f"node{k}", cores=(16, 24, 32)[k % 3], speed=(1.0, 1.5, 2.0)[k % 5 % 3],
             properties=(("cluster", "abcd"[k % 4]), ("mem", str((32, 64)[k % 2]))))
        for k in range(NODES)))


def scenarios() -> list[tuple[str, GenericAppl, tuple[Constraint, ...]]]:
    ten = GenericAppl(tuple(ProcGroup(f"G{k}", "generic", INSTANCES // 10, ())
                            for k in range(10)))
    many = GenericAppl(tuple(ProcGroup(f"G{k}", "generic", 10, ())
                             for k in range(INSTANCES // 10)))
    preds = (PropertyPredicate("cluster", "in", "a,b"), PropertyPredicate("cluster", "in", "b,c"))
    alternating = tuple(Constraint(g.id, (preds[k % 2],)) for k, g in enumerate(ten.groups))
    return [
        ("10 groups x 10,000, no constraint", ten, ()),
        ("10 groups x 10,000, cluster in a,b | b,c", ten, alternating),
        ("10,000 groups x 10, no constraint", many, ()),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="best of N runs (default 3)")
    args = parser.parse_args()
    res = resources()
    table = Table(title=f"planning {INSTANCES:,} instances on {NODES:,} nodes "
                        f"(best of {args.repeat}; target {TARGET:g} s)")
    for col in ("scenario", "planner", "seconds", "instances/s", "ratio to target"):
        table.add_column(col, justify="left" if col in ("scenario", "planner") else "right")
    for label, appl, constraints in scenarios():
        for name in ("round-robin", "capacity"):
            planner = get_planner(name)
            ctrl = CtrlParams(planner=name, constraints=constraints)
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                plan = planner.plan(appl, res, ctrl)
                best = min(best, time.perf_counter() - start)
            assert len(plan.instances) == INSTANCES
            table.add_row(label, name, f"{best:.3f}", f"{INSTANCES / best:,.0f}",
                          f"{best / TARGET:.2f}")
    Console(width=110).print(table)
    print("ratio to target = seconds / 2 s (below 1.00 meets the target)")


if __name__ == "__main__":
    main()
