"""A bed of 1,000 nodes x 32 cores (32,000 resources) really schedules, and an OAR fault is
told (by ``testbed status`` and by a running replay) instead of leaving jobs waiting.

At this size OAR 2.5.9's default scheduler and ``oarsub`` overflow an 8 MiB stack; the test
bed runs them with a raised limit (``oarlib.stacklimit``). The crash test gives the schedulers
a stack too small instead, and checks what users are told.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ORPHEUS, SUBMITTER, db, submit_array, wait_final

from oarlib import oarcli, stacklimit, testbed
from orpheus.testbed_cli import bring_up

pytestmark = pytest.mark.oar
SRC = str(Path(__file__).resolve().parents[2] / "src")
NODES, CORES = 1000, 32


@pytest.fixture(scope="module", autouse=True)
def large_bed() -> Iterator[None]:
    found = testbed.current()
    st = bring_up(dataclasses.replace(found, nodes=NODES, cores=CORES, sched_interval=1,
                                      max_jobs_per_user=1000))
    assert st["resources"] == {"Alive": NODES * CORES}
    yield
    stacklimit.wrap()
    subprocess.run(["oarnotify", "-E"], capture_output=True, check=False)
    bring_up(found)


def queue_states() -> dict[str, str]:
    with db() as conn:
        return dict(conn.query("SELECT queue_name, state FROM queues"))


def test_a_32000_resource_bed_runs_100_one_core_jobs_to_terminated(daemon_factory) -> None:
    daemon_factory()
    assert all(stacklimit.state().values())
    ids = submit_array(["{exec_time=1}"] * 100)
    assert set(wait_final(ids, timeout=900).values()) == {"Terminated"}
    assert set(queue_states().values()) == {"Active"}
    # oarsub of a single job (it crashed about one time in three with an 8 MiB stack)
    for _ in range(6):
        [job] = oarcli.oarsub(["-l", "core=1", "sim {exec_time=0}"], SUBMITTER)
        assert job > 0


def swf(path: Path, jobs: int) -> Path:
    """A small SWF trace: one-core jobs of 5 s submitted a second apart."""
    path.write_text("".join(f"{i} {i - 1} 0 5 1 -1 -1 1 60 -1 1 1 1 -1 1 -1 -1 -1\n"
                            for i in range(1, jobs + 1)))
    return path


def test_a_crashing_scheduler_is_named_by_status_and_stops_a_replay(
        daemon_factory, tmp_path: Path) -> None:
    daemon_factory()
    # the schedulers get a 1 MiB stack: at this size they then crash on every pass (with the
    # usual 8 MiB, only on some passes: how deep they recurse follows Perl's hash order)
    stacklimit.wrap(stacklimit.schedulers(), limit="1024")
    try:
        replay = subprocess.run(
            [*ORPHEUS, "replay", str(swf(tmp_path / "t.swf", 3)), "-o", str(tmp_path / "r"),
             "--timeout", "600"], capture_output=True, text=True, timeout=300, cwd="/tmp",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": SRC})
        assert replay.returncode == 1, replay.stderr
        assert "its jobs can no longer be scheduled: queue default is disabled" in replay.stderr
        assert "killed by SIGSEGV" in replay.stderr and "oarnotify -e default" in replay.stderr
        assert queue_states()["default"] == "notActive"

        status = subprocess.run([sys.executable, "-m", "orpheus.cli", "testbed", "status",
                                 "--json"], capture_output=True, text=True, check=True,
                                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": SRC})
        st = json.loads(status.stdout)
        [fault] = [f for f in st["faults"] if f["subject"] == "queue default"]
        assert fault["blocking"] and "killed by SIGSEGV (a stack overflow" in fault["cause"]
        assert fault["fix"] == "oarnotify -e default after `orpheus testbed up`"
        assert not any(st["stack_limit"][p.name] for p in stacklimit.schedulers())
    finally:
        stacklimit.wrap()
    # the fix the status gives brings the replay's jobs through
    assert all(testbed.status()["stack_limit"].values())
    subprocess.run(["oarnotify", "-e", "default"], capture_output=True, check=True)
    with (tmp_path / "r" / "mapping.csv").open(newline="") as f:
        waiting = [int(row["oar_job_id"]) for row in csv.DictReader(f)]
    assert len(waiting) == 3
    assert set(wait_final(waiting, timeout=300).values()) == {"Terminated"}
    assert not [f for f in testbed.status()["faults"] if f["blocking"]]
