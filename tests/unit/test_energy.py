"""orpheus.energy: power-state intervals and energy, hand-computed cases and invariants; the
worked example and the command examples of docs/orpheus-lifecycle.md."""

from __future__ import annotations

import itertools
import json
import re
import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orpheus.cli import build_parser
from orpheus.energy import (
    DEFAULT_WATTS,
    POWER_STATES,
    EnergyError,
    Interval,
    all_intervals,
    energy,
    node_intervals,
    node_state_changes,
    parse_energy_log,
    parse_watts,
    write_csv,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "orpheus-lifecycle.md").read_text()


def spans(ivs: list[Interval]) -> list[tuple[str, float, float]]:
    return [(iv.state, iv.start, iv.end) for iv in ivs]


def test_an_idle_node_with_one_job() -> None:
    ivs = node_intervals("n1", [(-500, "Alive")], [], [(10, 30)], 0, 100)
    assert spans(ivs) == [("idle", 0, 10), ("busy", 10, 30), ("idle", 30, 100)]
    (row,) = energy(ivs, DEFAULT_WATTS)
    assert row.seconds == {"off": 0, "booting": 0, "idle": 80, "busy": 20}
    assert row.joules == 80 * 95 + 20 * 190 == 11400
    assert row.wh == pytest.approx(11400 / 3600)


def test_a_hulot_cycle_halt_wakeup_boot_job() -> None:
    # HALT at 20 (Absent applied at 21), WAKEUP at 60, Alive at 65, job Running 66..90
    ivs = node_intervals("n1", [(0, "Alive"), (21, "Absent"), (65, "Alive")],
                         [(20, "HALT"), (60, "WAKEUP"), (65, "ALIVE")], [(66, 90)], 0, 100)
    assert spans(ivs) == [("idle", 0, 20), ("off", 20, 60), ("booting", 60, 65),
                          ("idle", 65, 66), ("busy", 66, 90), ("idle", 90, 100)]
    (row,) = energy(ivs, DEFAULT_WATTS)
    assert row.joules == 31 * 95 + 40 * 8 + 5 * 120 + 24 * 190 == 8425


def test_a_window_that_starts_while_the_node_is_off() -> None:
    ivs = node_intervals("n1", [(-49, "Absent")], [(-50, "HALT")], [], 0, 30)
    assert spans(ivs) == [("off", 0, 30)]


def test_set_alive_by_hand_after_a_halt_ends_off_without_booting() -> None:
    ivs = node_intervals("n1", [(10, "Absent"), (50, "Alive")], [(10, "HALT")], [], 0, 60)
    assert spans(ivs) == [("idle", 0, 10), ("off", 10, 50), ("idle", 50, 60)]


def test_absent_by_hand_without_halt_stays_powered() -> None:
    ivs = node_intervals("n1", [(10, "Absent"), (20, "Suspected")], [], [], 0, 30)
    assert spans(ivs) == [("idle", 0, 30)]


def test_a_zero_second_boot_has_no_booting_interval() -> None:
    ivs = node_intervals("n1", [(5, "Absent"), (50, "Alive")],
                         [(5, "HALT"), (50, "WAKEUP")], [], 0, 60)
    assert spans(ivs) == [("idle", 0, 5), ("off", 5, 50), ("idle", 50, 60)]


def test_overlapping_jobs_and_jobs_outside_the_window() -> None:
    busy = [(10, 30), (20, 40), (-100, 2), (95, 1000), (200, 300)]
    ivs = node_intervals("n1", [], [], busy, 0, 100)
    assert spans(ivs) == [("busy", 0, 2), ("idle", 2, 10), ("busy", 10, 40), ("idle", 40, 95),
                          ("busy", 95, 100)]


def test_busy_never_counts_while_off() -> None:
    # a Running span that overlaps a halt (bad data) does not turn an off node busy
    ivs = node_intervals("n1", [], [(10, "HALT")], [(5, 20)], 0, 30)
    assert spans(ivs) == [("idle", 0, 5), ("busy", 5, 10), ("off", 10, 30)]


def test_an_empty_window_and_a_reversed_one() -> None:
    assert node_intervals("n1", [], [], [], 5, 5) == []
    with pytest.raises(EnergyError, match="before it starts"):
        node_intervals("n1", [], [], [], 5, 4)


def test_node_state_is_alive_if_any_resource_is() -> None:
    node_of = {1: "n1", 2: "n1", 3: "n2"}
    changes = node_state_changes(
        {1: [(0, "Alive"), (10, "Absent"), (30, "Alive")],
         2: [(10, "Absent"), (0, "Alive"), (20, "Suspected")],
         3: [(0, "Alive"), (5, "Suspected")]}, node_of)
    assert changes == {"n1": [(0, "Alive"), (10, "Absent"), (30, "Alive")],
                       "n2": [(0, "Alive"), (5, "Suspected")]}


def test_node_state_changes_when_only_part_of_its_resources_leave() -> None:
    changes = node_state_changes({1: [(0, "Alive"), (10, "Absent")],
                                  2: [(0, "Alive"), (12, "Absent")]}, {1: "n", 2: "n"})
    assert changes == {"n": [(0, "Alive"), (12, "Absent")]}


def test_parse_energy_log_and_its_errors() -> None:
    text = "100 HALT node1\n\n160 WAKEUP node1\n165 ALIVE node1 rc=0\n"
    assert parse_energy_log(text) == [(100, "HALT", "node1"), (160, "WAKEUP", "node1"),
                                      (165, "ALIVE", "node1")]
    with pytest.raises(EnergyError, match=r"^/x/energy.log:2: expected .*'12 REBOOT node1'"):
        parse_energy_log("1 HALT node1\n12 REBOOT node1\n", "/x/energy.log")
    with pytest.raises(EnergyError, match=r"energy.log:1:"):
        parse_energy_log("soon HALT node1\n")
    with pytest.raises(EnergyError, match=r"energy.log:1:"):
        parse_energy_log("12 HALT\n")


def test_parse_watts() -> None:
    assert parse_watts("") == DEFAULT_WATTS
    assert parse_watts("idle=100, off=0") == {**DEFAULT_WATTS, "idle": 100.0, "off": 0.0}
    for bad, msg in (("sleep=3", "STATE=WATTS"), ("idle", "STATE=WATTS"),
                     ("idle=x", "not a number"), ("busy=-1", ">= 0"), ("busy=inf", "finite")):
        with pytest.raises(EnergyError, match=msg):
            parse_watts(bad)


def test_all_intervals_dispatches_energy_events_by_node() -> None:
    ivs = all_intervals(["a", "b"], {"a": [(1, "Absent")]}, [(1, "HALT", "a")],
                        {"b": [(0, 2)]}, 0, 4)
    assert spans(ivs) == [("idle", 0, 1), ("off", 1, 4), ("busy", 0, 2), ("idle", 2, 4)]
    assert [iv.node for iv in ivs] == ["a", "a", "b", "b"]


# ----------------------------------------------------------------------------- invariants

times = st.integers(min_value=-50, max_value=150)
events = st.lists(st.tuples(times, st.sampled_from(["HALT", "WAKEUP", "ALIVE"])), max_size=8)
states = st.lists(st.tuples(times, st.sampled_from(["Alive", "Absent", "Suspected"])),
                  max_size=8)
busy = st.lists(st.tuples(times, times), max_size=6)


@given(states, events, busy, st.integers(0, 50), st.integers(0, 100))
def test_intervals_partition_the_window(st_changes, ev, bz, since, length) -> None:
    until = since + length
    ivs = node_intervals("n", st_changes, ev, bz, since, until)
    assert sum(iv.duration for iv in ivs) == length
    if ivs:
        assert ivs[0].start == since and ivs[-1].end == until
    for a, b in itertools.pairwise(ivs):
        assert a.end == b.start and a.state != b.state
    assert all(iv.duration > 0 and iv.state in POWER_STATES for iv in ivs)
    (row,) = energy(ivs, DEFAULT_WATTS) if ivs else (None,)
    if row is not None:
        assert row.joules == pytest.approx(sum(iv.duration * DEFAULT_WATTS[iv.state]
                                               for iv in ivs))


@given(states, events, busy)
def test_busy_time_is_the_covered_time_when_never_halted(st_changes, ev, bz) -> None:
    ev = [(t, k) for t, k in ev if k == "ALIVE"]  # no HALT/WAKEUP: always powered
    ivs = node_intervals("n", st_changes, ev, bz, 0, 100)
    covered = sum(1 for s in range(100) if any(a <= s < b for a, b in bz))
    assert sum(iv.duration for iv in ivs if iv.state == "busy") == covered


# ----------------------------------------------------------------------------- the doc

def test_the_worked_example_of_the_doc(tmp_path: Path) -> None:
    section = DOC.split("<!-- energy-example -->")[1]
    given_inputs = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    expected = re.search(r"```csv\n(.*?)```", section, re.S).group(1).strip().splitlines()
    watts = parse_watts(given_inputs["watts"])
    ivs = node_intervals("node1", given_inputs["state_changes"],
                         given_inputs["energy_events"], given_inputs["busy"],
                         given_inputs["since"], given_inputs["until"])
    out = tmp_path / "intervals.csv"
    write_csv(out, ivs, watts)  # what `orpheus energy -o FILE` writes
    assert out.read_bytes().decode().split("\r\n") == [*expected, ""]
    total = re.search(r"total: ([0-9.]+) J", section).group(1)
    assert energy(ivs, watts)[0].joules == float(total)


@pytest.mark.parametrize("example", [
    line.split("#")[0].strip() for block in re.findall(r"```sh\n(.*?)```", DOC, re.S)
    for line in block.splitlines() if line.startswith("orpheus ")])
def test_every_command_example_of_the_doc_parses(example: str) -> None:
    args = build_parser().parse_args(shlex.split(example)[1:])
    assert callable(args.func)
