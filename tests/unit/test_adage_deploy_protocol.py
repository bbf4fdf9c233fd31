"""Satellite messages: decoding lines, parsing objects, and the events they mean (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from adage.deploy import protocol
from adage.deploy.events import Acked, Exited, LaunchError, Value
from adage.deploy.protocol import (
    Cover,
    Detached,
    Ended,
    Hello,
    Killed,
    Reported,
    Started,
    StartFailed,
    events,
    parse,
)
from adage.deploy.state import Machine
from adage.model import GenericAppl, PgInstance, Plan, Process, ProcGroup
from adage.status import PState


def test_decode_keeps_json_objects_and_drops_noise() -> None:
    lines = [b'{"ev": "hello", "pid": 7}', b"Warning: Permanently added host", b"[1, 2]",
             '{"ev": "killed"}', b"{broken"]
    assert protocol.decode(lines) == [{"ev": "hello", "pid": 7}, {"ev": "killed"}]


def test_parse_turns_every_message_into_its_type_and_process_names_into_pairs() -> None:
    assert parse({"ev": "hello", "node": "n1", "pid": "12", "python": "3.11"}) == Hello(12)
    assert parse({"ev": "killed"}) == Killed()
    assert parse({"ev": "detached"}) == Detached()
    assert parse({"ev": "started", "key": "A/0", "pids": {"p/0": 5, "p/1": 6}}) == \
        Started("A/0", {("p", 0): 5, ("p", 1): 6})
    assert parse({"ev": "error", "key": "A/0", "proc": "p/1", "message": "no such file"}) == \
        StartFailed("A/0", ("p", 1), "no such file")
    assert parse({"ev": "value", "key": "A/0", "proc": "a/b/0", "name": "k", "value": "v"}) == \
        Reported("A/0", ("a/b", 0), "k", "v")
    assert parse({"ev": "exit", "key": "A/0", "proc": "p/0", "code": -9}) == \
        Ended("A/0", ("p", 0), -9, "")


@given(st.dictionaries(st.sampled_from(["ev", "key", "proc", "pid", "pids", "code"]),
                       st.one_of(st.text(max_size=5), st.integers(), st.none())))
def test_parse_never_raises_on_malformed_objects(obj: dict[str, object]) -> None:
    assert parse(obj) is None or isinstance(parse(obj), protocol.Message)


def test_a_message_missing_a_field_is_not_a_message() -> None:
    assert parse({"ev": "exit", "key": "A/0", "proc": "p/0"}) is None
    assert parse({"ev": "started", "key": "A/0", "pids": {"p": 1}}) is None
    assert parse({"ev": "nonsense"}) is None


def test_events_of_a_launch_of_one_instance() -> None:
    cover = Cover("A", (0,), whole=False)
    procs = {0: [("p", 0), ("p", 1)]}
    assert events(Started("A/0", {("p", 0): 5, ("p", 1): 6}), cover, procs) == \
        [Acked("A", 0, {("p", 0): 5, ("p", 1): 6})]
    assert events(StartFailed("A/0", ("p", 1), "nope"), cover, procs) == \
        [LaunchError("A", 0, ("p", 1), "nope")]
    assert events(Ended("A/0", ("p", 1), 3, "boom"), cover, procs) == \
        [Exited("A", 0, ("p", 1), 3, "boom")]
    assert events(Hello(1), cover, procs) == []


def test_one_process_standing_for_several_instances_acks_and_ends_them_all() -> None:
    cover = Cover("R", (0, 1), whole=True)
    procs = {0: [("rank", 0)], 1: [("rank", 0)]}
    assert events(Started("R/*", {("mpirun", 0): 42}), cover, procs) == \
        [Acked("R", 0, {("rank", 0): 42}), Acked("R", 1, {("rank", 0): 42})]
    assert events(Reported("R/*", ("mpirun", 0), "k", "v"), cover, procs) == \
        [Value("R", 0, ("mpirun", 0), "k", "v"), Value("R", 1, ("mpirun", 0), "k", "v")]
    assert events(Ended("R/*", ("mpirun", 0), 0, ""), cover, procs) == \
        [Exited("R", 0, ("rank", 0), 0), Exited("R", 1, ("rank", 0), 0)]


def test_decoded_lines_drive_the_state_machine_to_the_end() -> None:
    appl = GenericAppl((ProcGroup("A", "generic", 2, (Process("p", "true"),)),))
    m = Machine(appl, Plan("t", (PgInstance("A", 0, "n"), PgInstance("A", 1, "n"))),
                {"A": True}, {}, 30.0)
    cover = Cover("A", (0, 1), whole=True)
    procs = {i: [p.process for p in m.instances[("A", i)].processes] for i in (0, 1)}
    lines = [b'{"ev": "started", "key": "A/*", "pids": {"mpirun/0": 9}}',
             b'{"ev": "exit", "key": "A/*", "proc": "mpirun/0", "code": 0}']
    for obj in protocol.decode(lines):
        msg = parse(obj)
        assert msg is not None
        for ev in events(msg, cover, procs):
            m.feed(ev, 1.0)
    assert [(p.state, p.pid, p.started, p.ended) for p in m.processes()] == \
        [(PState.EXITED, 9, 1.0, 1.0)] * 2


def test_launch_key_and_operation() -> None:
    assert protocol.launch_key("A", [3]) == "A/3" and protocol.launch_key("A", [0, 1]) == "A/*"
    assert protocol.launch_op("A/3", []) == {"op": "launch", "key": "A/3", "procs": []}
    assert protocol.launch_op("A/3", [], watch=True) == {"op": "launch", "key": "A/3",
                                                         "procs": [], "watch": True}
