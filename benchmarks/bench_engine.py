"""Engine throughput: start+end events per second and peak memory, for each I/O model.

A closed system, like a full cluster: RUNNING I/O jobs run at once (their first starts spread
over 100 s), and each end starts the next job at that time, until JOBS jobs have run; the
target's capacity is half the first running demand (W stays near 2C: always contended). Each
job is a start event and an end event. Target: >= 100,000 events/s on one core for the linear
model. Speed is start+end events per CPU second of this process (the machine may be shared),
measured without tracing; the linear model's peak memory is measured on a second run with
tracemalloc. The fair model with many distinct demands costs O(K log K) per event (K classes).
Run: /opt/orpheus-adage/venv/bin/python benchmarks/bench_engine.py [--quick]
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from orpheus.engine import Engine
from orpheus.iomodels import make_model
from orpheus.spec import JobSpec

TARGET = 100_000  # events/s, linear model


@dataclass(frozen=True)
class Case:
    model: str
    jobs: int
    running: int
    distinct: int  # distinct io_workload (fair) / io_sensitivity (sensitivity) values


def workload(case: Case, seed: int = 1) -> list[JobSpec]:
    rng = random.Random(seed)
    demands = [0.5 + 1.5 * i / case.distinct for i in range(case.distinct)]
    sensitivities = [(i + 1) / case.distinct for i in range(case.distinct)]
    return [
        JobSpec(exec_time=rng.uniform(100.0, 1000.0), io=True,
                io_workload=rng.choice(demands) if case.model == "fair" else rng.uniform(0.5, 2),
                io_sensitivity=rng.choice(sensitivities))
        for _ in range(case.jobs)
    ]


def simulate(case: Case, specs: list[JobSpec]) -> tuple[int, int]:
    """Run the closed system; return (events, most jobs running at once)."""
    capacity = 0.5 * sum(s.io_workload for s in specs[: case.running])
    engine = Engine(make_model(case.model, {}, capacity))
    for job_id in range(case.running):
        engine.start(job_id, specs[job_id], job_id * 100.0 / case.running)
    peak, events, following = len(engine), case.running, case.running
    while (now := engine.next_end()) is not None:
        for _ in engine.pop_ended(now):
            events += 1
            if following < case.jobs:
                engine.start(following, specs[following], now)
                following += 1
                events += 1
    return events, peak


def measure(case: Case, memory: bool) -> tuple[float, int, float | None]:
    """(events per CPU second, most jobs running at once, tracemalloc peak MiB or None)."""
    specs = workload(case)
    began = time.process_time()  # CPU time of this process: the machine may be shared
    events, peak = simulate(case, specs)
    rate = events / (time.process_time() - began)
    assert events == 2 * case.jobs
    traced = None
    if memory:
        tracemalloc.start()
        simulate(case, specs)
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return rate, peak, traced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of the jobs")
    scale = 10 if parser.parse_args().quick else 1
    cases = [  # (case, measure memory too)
        (Case("linear", 100_000 // scale, 10_000 // scale, 1), True),
        (Case("sensitivity", 100_000 // scale, 10_000 // scale, 4), False),
        (Case("fair", 100_000 // scale, 10_000 // scale, 8), False),
        (Case("fair", 5_000 // scale, 500 // scale, 500 // scale), False),
    ]
    print(f"{'model':<12}{'jobs':>8}{'running':>9}{'classes':>9}{'events/s':>12}"
          f"{'vs target':>11}{'peak MiB':>10}")
    for case, memory in cases:
        rate, peak, traced = measure(case, memory)
        shown = "-" if traced is None else f"{traced:.1f}"
        print(f"{case.model:<12}{case.jobs:>8}{peak:>9}{case.distinct:>9}{rate:>12,.0f}"
              f"{rate / TARGET:>10.2f}x{shown:>10}")
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"events/s: start+end events per CPU second of this process; target {TARGET:,} "
          "(linear)")
    print(f"peak MiB: tracemalloc peak of the engine run; process peak RSS {maxrss:.0f} MiB")


if __name__ == "__main__":
    main()
