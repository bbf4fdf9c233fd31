"""Hulot energy saving with fake nodes, through the real OAR, and `orpheus energy` on it:
idle nodes are halted, a job wakes the nodes it needs and runs after their boot, and the
report's figures are the power states' durations times their watts."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from conftest import FINAL, ORPHEUS, SUBMITTER, db, state_durations, wait_final
from evalys.visu.legacy import plot_mstates

from oarlib import conf as oarconf
from oarlib import oarcli, testbed
from oarlib.almighty import notify
from orpheus import machine_states
from orpheus.testbed_cli import bring_up

pytestmark = pytest.mark.oar

ENERGY_LOG = Path("/var/lib/oar/orpheus/energy.log")
WATTS = {"idle": 100.0, "busy": 200.0, "off": 10.0, "booting": 150.0}


def energy_events(since: float) -> list[tuple[int, str, str]]:
    if not ENERGY_LOG.exists():
        return []
    return [(int(t), k, n) for t, k, n, *_ in (line.split() for line in
                                                ENERGY_LOG.read_text().splitlines())
            if int(t) >= since]


def first(kind: str, since: float) -> dict[str, int]:
    """Each node's first ``kind`` line in energy.log since ``since``."""
    out: dict[str, int] = {}
    for t, k, n in energy_events(since):
        if k == kind:
            out.setdefault(n, t)
    return out


def absent_nodes() -> set[str]:
    with db() as conn:
        return {n for (n,) in conn.query(
            "SELECT network_address FROM resources GROUP BY network_address "
            "HAVING bool_and(state = 'Absent')")}


WINDOW = 900  # seconds: the test's report window starts at t0 and ends before t0 + WINDOW


def dated_ahead(t0: int) -> set[str]:
    """Nodes where OAR's history has a job Running within the test's window: a virtual-clock
    run on this test bed dated its jobs ahead of the real clock (docs/virtual-clock.md,
    "Switching back"), and the report counts a span it overlaps busy, as OAR's database says
    (spans that start after the window, days ahead, do not count)."""
    with db() as conn:
        return {n for (n,) in conn.query(
            "SELECT DISTINCT r.network_address FROM job_state_logs l JOIN jobs j "
            "ON j.job_id = l.job_id JOIN assigned_resources a "
            "ON a.moldable_job_id = j.assigned_moldable_job JOIN resources r "
            "ON r.resource_id = a.resource_id WHERE l.job_state = %s AND l.date_stop > %s "
            "AND l.date_start < %s", ("Running", t0, t0 + WINDOW))}


def test_hulot_halts_idle_nodes_wakes_them_for_a_job_and_the_report_adds_up(
        daemon_factory) -> None:
    daemon_factory("--mode", "event")  # holds the test bed while energy saving is on
    normal = testbed.current()
    server = oarconf.ServerAddress.from_conf(oarconf.read())
    now = int(time.time())
    with db() as conn:  # OAR may date an earlier job's end a second ahead of this clock
        last_end = conn.scalar("SELECT COALESCE(MAX(stop_time), 0) FROM jobs "
                               "WHERE stop_time <= %s", (now + 5,))  # not a virtual run's
    t0 = max(now, int(last_end))
    # the job runs on two nodes added for the test: new resources, so no virtual run's
    # history is dated on them (the bed's other nodes may have some in the window)
    bed = dataclasses.replace(normal, nodes=normal.nodes + 2, energy=True, energy_idle=20,
                              boot_time=5)
    every = {f"node{i}" for i in range(1, bed.nodes + 1)}
    clean = [f"node{normal.nodes + 1}", f"node{normal.nodes + 2}"]
    job = None
    try:
        bring_up(bed)
        ahead = dated_ahead(t0)
        assert not ahead & set(clean), f"nodes added for the test have a history: {ahead}"
        deadline = time.time() + 150
        while absent_nodes() != every:  # a scheduler pass runs Hulot's idle check
            assert time.time() < deadline, f"not halted after 150 s: {every - absent_nodes()}"
            notify(server, "Scheduling")
            time.sleep(3)
        halted = first("HALT", t0)
        assert set(halted) == every
        submitted = time.time()
        nodes = ",".join(f"'{n}'" for n in clean)
        (job,) = oarcli.oarsub(["-l", "nodes=2", "-p", f"network_address IN ({nodes})",
                                "sim {exec_time=10}"], user=SUBMITTER)
        assert wait_final([job], timeout=120) == {job: "Terminated"}
        start, stop = state_durations([job])[job]["Running"]
        with db() as conn:
            used = {n for (n,) in conn.query(
                "SELECT DISTINCT r.network_address FROM jobs j JOIN assigned_resources a "
                "ON a.moldable_job_id = j.assigned_moldable_job JOIN resources r "
                "ON r.resource_id = a.resource_id WHERE j.job_id = %s", (job,))}
        woken, alive = first("WAKEUP", t0), first("ALIVE", t0)
        assert set(woken) == used and set(alive) == used
        for n in used:
            assert start - woken[n] >= 5, (n, woken[n], start)  # ran after the boot time
        print(f"halted {len(halted)} nodes; job Running {start - submitted:.1f} s after oarsub "
              f"(boot 5 s), on {sorted(used)}")
        # before the restore sets the halted nodes Alive; OAR may date the end a second
        # ahead of this clock's integer part
        until = max(int(time.time()), stop)
        assert until < t0 + WINDOW
        # the report before the restore: it removes the added nodes and their history
        out_csv = Path(f"/tmp/orpheus-energy-{job}.csv")
        states_csv = Path(f"/tmp/orpheus-machine-states-{job}.csv")
        watts = ",".join(f"{k}={v:g}" for k, v in WATTS.items())
        res = subprocess.run([*ORPHEUS, "energy", "--since", str(t0), "--until", str(until),
                              "--watts", watts, "-o", str(out_csv),
                              "--machine-states", str(states_csv), "--json"],
                             capture_output=True, text=True, timeout=120)
    finally:
        restore_error = None
        try:
            with db() as conn:
                left = job is not None and conn.scalar(
                    "SELECT state FROM jobs WHERE job_id = %s", (job,)) not in FINAL
            if left:  # ended before its nodes are removed
                oarcli.oardel([job], user=SUBMITTER)
                wait_final([job], timeout=60)
            bring_up(normal)  # energy saving off again, Almighty restarted, nodes Alive
        except Exception as exc:  # report it, after the test's own failure if any
            restore_error = exc
        assert restore_error is None, f"could not restore the test bed: {restore_error}"
    assert absent_nodes() == set()
    assert "ENERGY_SAVING_INTERNAL=\"no\"" in Path("/etc/oar/oar.conf").read_text()

    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    with out_csv.open() as f:
        rows = list(csv.DictReader(f))
    out_csv.unlink()
    machine = pd.read_csv(states_csv)  # as evalys's machine-state plot takes it
    states_csv.unlink()
    per_node: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        per_node[r["node"]].append(r)
    # the figures are the durations times the watts, node by node and in total
    for node, figures in report["nodes"].items():
        for state in WATTS:
            secs = sum(float(r["duration_s"]) for r in per_node[node] if r["state"] == state)
            assert figures["seconds"][state] == pytest.approx(secs, abs=0.01)
        assert figures["joules"] == pytest.approx(
            sum(figures["seconds"][s] * WATTS[s] for s in WATTS))
        assert sum(figures["seconds"].values()) == pytest.approx(until - t0)
    assert report["total_j"] == pytest.approx(sum(f["joules"] for f in report["nodes"].values()))
    assert report["total_wh"] == pytest.approx(report["total_j"] / 3600)
    # and the power states are the ones OAR and Hulot went through
    for node in every:
        states = [(r["state"], float(r["start"]), float(r["end"])) for r in per_node[node]]
        off = [s for s in states if s[0] == "off"]
        assert off and off[0][1] == halted[node], (node, states)
        if node in used:
            booting = [s for s in states if s[0] == "booting"]
            assert len(booting) == 1 and booting[0][1] == woken[node], (node, states)
            assert 5 <= booting[0][2] - booting[0][1] <= 9, (node, states)
            busy = [s for s in states if s[0] == "busy"]
            assert busy == [("busy", start, stop)], (node, states)
        else:
            assert states[-1] == ("off", halted[node], until), (node, states)
    # the nodes dated ahead were busy at t0, until Hulot halted them; the job's came later
    check_machine_states(machine, report, len(every), len(used), max(len(used), len(ahead)),
                         until - t0)


def check_machine_states(states: pd.DataFrame, report: dict, nodes: int, used: int,
                         computing: int, length: float) -> None:
    """Batsim's machine_states.csv of the run: every row counts every node; all were
    sleeping at once; the job's nodes switched on and computed; each state's node-seconds
    are the report's; and evalys's machine-state plot stacks it."""
    assert tuple(states.columns) == machine_states.COLUMNS
    assert states.time.iloc[0] == 0 and states.time.iloc[-1] == pytest.approx(length, abs=0.001)
    assert (states[list(machine_states.COUNTS)].sum(axis=1) == nodes).all()
    assert states.nb_sleeping.max() == nodes
    assert states.nb_switching_on.max() == used and states.nb_computing.max() == computing
    assert (states.nb_switching_off == 0).all()
    spans = states.time.diff().shift(-1).fillna(0)
    seconds = {s: sum(f["seconds"][s] for f in report["nodes"].values()) for s in WATTS}
    for column, state in (("nb_sleeping", "off"), ("nb_switching_on", "booting"),
                          ("nb_computing", "busy")):
        assert (states[column] * spans).sum() == pytest.approx(seconds[state], abs=0.5)
    idle = ((states.nb_idle + states.nb_unavailable) * spans).sum()
    assert idle == pytest.approx(seconds["idle"], abs=0.5)
    fig, ax = plt.subplots()
    try:
        plot_mstates(states, ax=ax, title="orpheus energy --machine-states")
        labels = [c.get_label() for c in ax.collections]
        top = ax.dataLim.y1
    finally:
        plt.close(fig)
    assert labels == ["nb_computing", "nb_idle", "nb_switching_off", "nb_switching_on",
                      "nb_sleeping"]
    assert top == (nodes - states.nb_unavailable).max()
