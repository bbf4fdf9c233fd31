"""evalys, the OAR team's toolkit for Batsim outputs, reads what Orpheus writes: a report's
jobs.csv (``JobSet.from_csv``, its Gantt chart) and the machine_states.csv of ``orpheus energy``
(its machine-state plot). Both files are written by the project's own writers from records as
OAR's tables give them."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from evalys.jobset import JobSet
from evalys.visu.legacy import plot_mstates
from matplotlib.patches import Rectangle

from orpheus import machine_states, metrics, report
from orpheus.energy import all_intervals

T0 = 1_795_320_000  # epoch of the first submission
NODES = [f"node{n}" for n in range(1, 17)]
RESOURCES = [(rid, NODES[(rid - 1) // 4]) for rid in range(1, 65)]  # 16 nodes x 4 cores


def oar_jobs() -> list[metrics.OarJob]:
    """Jobs as report.fetch_jobs reads them: every final state, contiguous or not."""
    def job(job_id: int, state: str, sub: int, start: int, stop: int, res: range | tuple,
            **kw: object) -> metrics.OarJob:
        return metrics.OarJob(job_id, state, T0 + sub, T0 + start if start >= 0 else 0,
                              T0 + stop if stop >= 0 else 0, resources=tuple(res),
                              queue="default", user="alice", **kw)
    return [
        job(101, "Terminated", 0, 2, 42, range(1, 5), exit_code=0, walltime=60, requested=4,
            command="sim {exec_time=40}"),
        job(102, "Error", 1, 3, 14, (5, 6), walltime=10, requested=2, events=("WALLTIME",)),
        job(103, "Terminated", 5, 42, 50, (1, 3, 8), exit_code=256, walltime=100, requested=3),
        job(104, "Error", 6, 7, 20, range(9, 17), walltime=300, requested=8,
            events=("BESTEFFORT_KILL",)),
        job(105, "Error", 8, -1, -1, (), walltime=60, requested=4,
            events=("SWITCH_INTO_ERROR_STATE",)),
    ]


@pytest.mark.filterwarnings("ignore:FigureCanvasAgg is non-interactive:UserWarning")
def test_evalys_reads_jobs_csv_and_draws_our_gantt(tmp_path: Path) -> None:
    index = metrics.resource_index(RESOURCES)
    records = [metrics.record_from_oar(j, T0, index=index) for j in oar_jobs()]
    assert [r.final_state for r in records] == [metrics.SUCCESS, metrics.WALLTIME,
                                                metrics.FAILED, metrics.KILLED,
                                                metrics.REJECTED]
    report.write_jobs_csv(records, tmp_path / "jobs.csv")

    js = JobSet.from_csv(str(tmp_path / "jobs.csv"))
    df = js.df.set_index("jobID")
    assert list(df.index) == ["101", "102", "103", "104", "105"]
    for r in records:
        row = df.loc[r.job_id]
        assert row.submission_time == r.submission_time
        assert row.proc_alloc == len(r.allocated)
        if r.starting_time is None:
            assert pd.isna(row.starting_time) and pd.isna(row.finish_time)
        else:
            assert (row.starting_time, row.finish_time, row.execution_time) == (
                r.starting_time, r.finish_time, r.execution_time)
    assert (js.res_bounds.inf, js.res_bounds.sup) == (0, 15)

    js.gantt(title="orpheus report: jobs.csv")
    fig = plt.gcf()
    try:
        drawn = sorted((p.get_x(), p.get_y(), p.get_width(), p.get_height())
                       for p in fig.axes[0].patches if isinstance(p, Rectangle))
        fig.savefig(tmp_path / "gantt.png")
    finally:
        plt.close(fig)
    ours = sorted((b.start, b.lo, b.end - b.start, b.hi - b.lo + 1)
                  for b in metrics.gantt_boxes(records))
    assert drawn == ours and len(ours) == 6  # job 103's resources 0, 2, 7 are three boxes
    assert (tmp_path / "gantt.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.filterwarnings("ignore:`row_stack` alias is deprecated:DeprecationWarning")
def test_evalys_plots_our_machine_states_csv(tmp_path: Path) -> None:
    nodes = NODES[:4]
    changes = {"node1": [(T0, "Alive"), (T0 + 21, "Absent"), (T0 + 65, "Alive")],
               "node2": [(T0, "Alive"), (T0 + 21, "Absent")],
               "node3": [(T0, "Alive"), (T0 + 40, "Suspected"), (T0 + 50, "Alive")],
               "node4": [(T0, "Alive")]}
    events = [(T0 + 20, "HALT", "node1"), (T0 + 20, "HALT", "node2"),
              (T0 + 60, "WAKEUP", "node1"), (T0 + 65, "ALIVE", "node1")]
    busy = {"node1": [(T0 + 66, T0 + 90)], "node3": [(T0 + 10, T0 + 30)],
            "node4": [(T0 + 5, T0 + 95)]}
    ivs = all_intervals(nodes, changes, events, busy, T0, T0 + 100)
    rows = machine_states.machine_states(ivs, changes, T0, T0 + 100)
    machine_states.write(tmp_path / "machine_states.csv", rows)

    df = pd.read_csv(tmp_path / "machine_states.csv")
    assert tuple(df.columns) == machine_states.COLUMNS
    assert df.time.iloc[0] == 0 and df.time.iloc[-1] == 100
    assert (df[list(machine_states.COUNTS)].sum(axis=1) == 4).all()
    assert df.nb_sleeping.max() == 2 and df.nb_switching_on.max() == 1
    assert df.nb_unavailable.max() == 1 and df.nb_computing.max() == 2

    fig, ax = plt.subplots()
    try:
        plot_mstates(df, ax=ax, title="orpheus energy: machine_states.csv")
        labels = [c.get_label() for c in ax.collections]
        top = ax.dataLim.y1
        fig.savefig(tmp_path / "machine_states.png")
    finally:
        plt.close(fig)
    assert labels == ["nb_computing", "nb_idle", "nb_switching_off", "nb_switching_on",
                      "nb_sleeping"]
    # evalys stacks Batsim's five states: the top is the nodes not unavailable
    assert top == (4 - df.nb_unavailable).max()
    assert (tmp_path / "machine_states.png").read_bytes().startswith(b"\x89PNG")
