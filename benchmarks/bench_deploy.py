"""Deploy 1,000 processes on 100 local virtual nodes and time it.

    /opt/orpheus-adage/venv/bin/python benchmarks/bench_deploy.py [--nodes 100] [--per-node 10]

Prints the seconds until every process is acknowledged (staging, 100 satellites, 1,000
launches), processes per second, and the time to clean up; then the same for a chain of 10
dependent groups (each waits for the previous one), to show the cost of dependency rounds;
then the deployment state machine alone (no process) fed the events of 10,000 to 80,000
instances: events per second should not fall as the deployment grows.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # run from the checkout

from adage.deploy import Options, deploy, statedir
from adage.deploy.sources import local_nodes
from adage.deploy.state import Acked, Exited, Machine, NodeUp
from adage.model import CtrlParams, Dependency, GenericAppl, PgInstance, Plan, Process, ProcGroup
from adage.planners import get_planner


def run(label: str, appl: GenericAppl, nodes: int, root: Path) -> None:
    resources = local_nodes(nodes, root / "nodes")
    ctrl = CtrlParams()
    plan = get_planner("round-robin").plan(appl, resources, ctrl)
    procs = sum(g.cardinality * sum(p.cardinality for p in g.processes) for g in appl.groups)
    t0 = time.perf_counter()
    result = deploy(appl, resources, ctrl, plan, Options(timeout=120))
    acked = result.acked_after or result.elapsed
    t1 = time.perf_counter()
    errors = statedir.clean(result.deployment)
    t2 = time.perf_counter()
    assert not errors, errors
    print(f"{label}: {procs} processes on {nodes} nodes acknowledged in {acked:.2f} s "
          f"({procs / acked:.0f} processes/s; deploy() returned after {t1 - t0:.2f} s); "
          f"clean {t2 - t1:.2f} s")


def machine_rate(instances: int, nodes: int = 1000) -> None:
    """Feed the state machine every event of a deployment: nodes up, acknowledgements, exits."""
    appl = GenericAppl((ProcGroup("g", "generic", instances, (Process("p", "true"),)),))
    plan = Plan("bench", tuple(PgInstance("g", i, f"n{i % nodes}") for i in range(instances)))
    m = Machine(appl, plan, {}, {}, 120.0)
    events = [NodeUp(f"n{k}") for k in range(nodes)]
    events += [Acked("g", i, {"p/0": i}) for i in range(instances)]
    events += [Exited("g", i, "p/0", 0) for i in range(instances)]
    t0 = time.perf_counter()
    for ev in events:
        m.feed(ev, 0.0)
    took = time.perf_counter() - t0
    assert m.finished
    print(f"state machine: {instances} instances, {len(events)} events in {took:.2f} s "
          f"({len(events) / took:,.0f} events/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=100)
    ap.add_argument("--per-node", type=int, default=10, help="processes per node")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        os.environ["ADAGE_HOME"] = str(Path(tmp) / "home")
        sleeper = Process("p", "sleep", ("120",), cardinality=args.per_node)
        flat = GenericAppl((ProcGroup("bench", "generic", args.nodes, (sleeper,)),))
        run("one group ", flat, args.nodes, Path(tmp))
        per = max(1, args.nodes // 10)
        chain = GenericAppl(
            tuple(ProcGroup(f"g{k}", "generic", per, (sleeper,)) for k in range(10)),
            tuple(Dependency(f"g{k}", f"g{k - 1}") for k in range(1, 10)))
        run("chain x10 ", chain, args.nodes, Path(tmp))
    for instances in (10_000, 20_000, 40_000, 80_000):
        machine_rate(instances)


if __name__ == "__main__":
    main()
