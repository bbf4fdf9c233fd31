"""bench_fidelity's choice of platform and jobs for each real run of data/real-oar."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_fidelity import DATA, platform

from orpheus.workload import read_workload


def pair(seed: int) -> tuple[Path, Path]:
    stem = f"g5k_workload_delay_seed{seed}_size32"
    return DATA / f"{stem}.json", DATA / f"{stem}.real.csv"


def test_seed_1_replays_its_workload_on_the_22_nodes_its_run_had(tmp_path: Path) -> None:
    workload, reference = pair(1)
    args = argparse.Namespace(nodes=None, out=tmp_path, job_overhead=None)
    # its real jobs ran their delay + 0.47 s (median), which the replay adds to each
    assert platform(workload, reference, args) == (workload, 22, 0.47, "given, +0.47 s a job")
    assert list(tmp_path.iterdir()) == []
    args.nodes, args.job_overhead = 32, 0.0  # --nodes and --job-overhead override
    assert platform(workload, reference, args) == (workload, 32, 0.0, "given, +0 s a job")


def test_seed_0_replays_the_jobs_its_run_ran(tmp_path: Path) -> None:
    workload, reference = pair(0)
    replayed, nodes, overhead, ran = platform(
        workload, reference, argparse.Namespace(nodes=None, out=tmp_path, job_overhead=None))
    # their execution times, replayed, hold the real runner's overhead already
    assert (replayed.parent, nodes, overhead, ran) == (tmp_path, 32, 0.0, "as run (5% agree)")
    as_run = read_workload(replayed)
    assert len(as_run.jobs) == 800
    assert json.loads(replayed.read_text())["nb_res"] == 32
    # the first job the real run submitted: ft.C.1 on 1 node for 9 min 40 s, ran 387 s
    first = as_run.jobs[0]
    assert (first.id, first.res, first.walltime, first.run_time) == ("0", 1, 580, 387)
