"""orpheus.machine_states: Batsim's machine_states.csv from power-state intervals; the worked
example of docs/orpheus-lifecycle.md, hand-computed cases and invariants."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orpheus.energy import DEFAULT_WATTS, Interval, all_intervals, energy, node_intervals
from orpheus.machine_states import COLUMNS, COUNTS, machine_states, not_alive, write

DOC = (Path(__file__).resolve().parents[2] / "docs" / "orpheus-lifecycle.md").read_text()


def test_the_worked_example_of_the_doc(tmp_path: Path) -> None:
    section = DOC.split("<!-- machine-states-example -->")[1]
    given_inputs = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    expected = re.search(r"```csv\n(.*?)```", section, re.S).group(1)
    changes = {n: [tuple(c) for c in cs] for n, cs in given_inputs["state_changes"].items()}
    since, until = given_inputs["since"], given_inputs["until"]
    ivs = all_intervals(sorted(changes), changes, given_inputs["energy_events"],
                        given_inputs["busy"], since, until)
    out = tmp_path / "machine_states.csv"
    write(out, machine_states(ivs, changes, since, until))  # what --machine-states writes
    assert out.read_text() == expected


def test_times_are_from_the_window_start_with_millisecond_precision(tmp_path: Path) -> None:
    ivs = [Interval("a", "idle", 1000.0, 1002.5), Interval("a", "busy", 1002.5, 1010.125)]
    rows = machine_states(ivs, {}, 1000.0, 1010.125)
    write(tmp_path / "m.csv", rows)
    assert (tmp_path / "m.csv").read_text().splitlines() == [
        ",".join(COLUMNS), "0,0,0,0,1,0,0", "2.5,0,0,0,0,1,0", "10.125,0,0,0,0,1,0"]


def test_not_alive_spans() -> None:
    assert not_alive([]) == []
    assert not_alive([(5, "Alive"), (0, "Suspected"), (9, "Absent"), (12, "Dead")]) == [
        (0, 5), (9, float("inf"))]


def test_only_idle_time_becomes_unavailable() -> None:
    # Absent from 0 to 50 (Hulot's halt at 10 makes it off, the wake-up at 30 booting)
    changes = [(0, "Absent"), (50, "Alive"), (70, "Suspected")]
    ivs = node_intervals("n", changes, [(10, "HALT"), (30, "WAKEUP")], [(80, 90)], 0, 100)
    rows = machine_states(ivs, {"n": changes}, 0, 100)
    state = {r["time"]: next(c for c in COUNTS if r[c]) for r in rows}
    assert state == {0: "nb_unavailable", 10: "nb_sleeping", 30: "nb_switching_on",
                     50: "nb_idle", 70: "nb_unavailable", 80: "nb_computing",
                     90: "nb_unavailable", 100: "nb_unavailable"}


def test_no_interval_no_row() -> None:
    assert machine_states([], {}, 5, 5) == []


times = st.integers(min_value=-20, max_value=120)
node_inputs = st.tuples(
    st.lists(st.tuples(times, st.sampled_from(["Alive", "Absent", "Suspected"])), max_size=6),
    st.lists(st.tuples(times, st.sampled_from(["HALT", "WAKEUP", "ALIVE"])), max_size=6),
    st.lists(st.tuples(times, times), max_size=4))


@given(st.lists(node_inputs, min_size=1, max_size=4), st.integers(0, 20), st.integers(1, 80))
def test_rows_count_every_node_and_add_up_to_the_intervals(nodes, since, length) -> None:
    until = since + length
    changes = {f"n{i}": sorted(c) for i, (c, _, _) in enumerate(nodes)}
    ivs = [iv for i, (c, ev, busy) in enumerate(nodes)
           for iv in node_intervals(f"n{i}", changes[f"n{i}"], ev, busy, since, until)]
    rows = machine_states(ivs, changes, since, until)
    assert rows[0]["time"] == 0 and rows[-1]["time"] == length
    assert all(sum(r[c] for c in COUNTS) == len(nodes) for r in rows)
    assert rows[-1]["nb_switching_off"] == 0
    # node-seconds per column (step function) = the intervals' seconds per power state
    seconds = dict.fromkeys(COUNTS, 0.0)
    for a, b in itertools.pairwise(rows):
        for c in COUNTS:
            seconds[c] += a[c] * (b["time"] - a["time"])
    per_state = {s: sum(e.seconds[s] for e in energy(ivs, DEFAULT_WATTS))
                 for s in DEFAULT_WATTS}
    assert seconds["nb_sleeping"] == pytest.approx(per_state["off"])
    assert seconds["nb_switching_on"] == pytest.approx(per_state["booting"])
    assert seconds["nb_computing"] == pytest.approx(per_state["busy"])
    assert seconds["nb_idle"] + seconds["nb_unavailable"] == pytest.approx(per_state["idle"])
