"""The deployment state machine, driven by events only (no process, no clock)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from adage.deploy.state import (
    FINAL,
    Acked,
    Deployed,
    Exited,
    Fail,
    Finished,
    Launch,
    LaunchError,
    Machine,
    NodeStarting,
    NodeUp,
    PluginReady,
    PState,
    Tick,
    Value,
)
from adage.model import Dependency, GenericAppl, PgInstance, Plan, Process, ProcGroup


def group(gid: str, card: int = 1, procs: int = 1) -> ProcGroup:
    return ProcGroup(gid, "generic", card,
                     tuple(Process(f"p{k}", "true") for k in range(procs)))


def plan_of(appl: GenericAppl, nodes: int = 2) -> Plan:
    insts, k = [], 0
    for g in appl.groups:
        for i in range(g.cardinality):
            insts.append(PgInstance(g.id, i, f"n{k % nodes}"))
            k += 1
    return Plan("test", tuple(insts))


def machine(appl: GenericAppl, nodes: int = 2, asynchronous: dict[str, bool] | None = None,
            needs: dict[str, set[tuple[str, int, str]]] | None = None,
            timeout: float = 10.0, whole: frozenset[str] = frozenset()) -> Machine:
    return Machine(appl, plan_of(appl, nodes), asynchronous or {}, needs or {}, timeout, whole)


def up(m: Machine, nodes: int = 2) -> list[object]:
    out: list[object] = []
    for k in range(nodes):
        out += m.feed(NodeUp(f"n{k}"), 0.0)
    return out


def ack(m: Machine, gid: str, now: float = 0.0) -> list[object]:
    out: list[object] = []
    for r in m.of(gid):
        out += m.feed(Acked(gid, r.index, {p.process: 100 + r.index for p in r.processes}),
                      now)
    return out


CHAIN = GenericAppl((group("A"), group("B"), group("C")),
                    (Dependency("B", "A"), Dependency("C", "B")))


def test_a_chain_launches_each_group_after_its_predecessor_is_acked() -> None:
    m = machine(CHAIN)
    assert up(m) == [Launch("A", (0,))]
    assert ack(m, "A") == [Launch("B", (0,))]
    assert ack(m, "B") == [Launch("C", (0,))]
    assert ack(m, "C") == [Deployed()]
    assert [p.state for p in m.processes()] == [PState.READY] * 3


def test_each_instance_launches_as_soon_as_its_node_is_up() -> None:
    m = machine(GenericAppl((group("A", card=3),)), nodes=3)
    assert m.feed(NodeUp("n1"), 0.0) == [Launch("A", (1,))]
    assert m.launched == set()
    assert m.feed(NodeUp("n0"), 0.0) == [Launch("A", (0,))]
    assert m.feed(NodeUp("n2"), 0.0) == [Launch("A", (2,))]
    assert m.launched == {"A"}


def test_a_group_launched_as_a_whole_waits_for_every_node_of_it() -> None:
    m = machine(GenericAppl((group("A", card=2), group("B", card=2))), nodes=4,
                whole=frozenset({"A"}))
    assert m.feed(NodeUp("n0"), 0.0) == []  # A[0]: A waits for n1
    assert m.feed(NodeUp("n2"), 0.0) == [Launch("B", (0,))]
    assert m.feed(NodeUp("n1"), 0.0) == [Launch("A", (0, 1))]


def test_instances_on_a_node_up_before_their_group_is_released_launch_together() -> None:
    appl = GenericAppl((group("S"), group("W", card=4)), (Dependency("W", "S", "ack"),))
    m = machine(appl, nodes=2)
    assert up(m) == [Launch("S", (0,))]
    assert ack(m, "S") == [Launch("W", (0, 1, 2, 3))]


def test_a_non_asynchronous_group_holds_its_dependants_until_the_plugin_says_ready() -> None:
    appl = GenericAppl((group("S"), group("W", card=3)), (Dependency("W", "S", "ack"),))
    m = machine(appl, asynchronous={"S": False})
    up(m)
    assert ack(m, "S") == []
    assert m.feed(PluginReady("S"), 0.0) == [Launch("W", (0, 1, 2))]


def test_a_group_waits_for_the_values_its_placeholders_use() -> None:
    appl = GenericAppl((group("S"), group("W")), (Dependency("W", "S", "ack"),))
    m = machine(appl, needs={"W": {("S", 0, "address")}})
    up(m)
    assert ack(m, "S") == []
    assert m.feed(Value("S", 0, ("p0", 0), "other", "x"), 0.0) == []
    assert m.feed(Value("S", 0, ("p0", 0), "address", "tcp://h:1"), 0.0) == [Launch("W", (0,))]
    assert m.instances[("S", 0)].values["address"] == "tcp://h:1"


def test_the_exit_condition_waits_for_every_process_to_exit_zero() -> None:
    appl = GenericAppl((group("setup", card=2), group("run")),
                       (Dependency("run", "setup", "exit"),))
    m = machine(appl)
    up(m)
    assert ack(m, "setup") == []
    assert m.feed(Exited("setup", 0, ("p0", 0), 0), 0.0) == []
    assert m.feed(Exited("setup", 1, ("p0", 0), 0), 0.0) == [Launch("run", (0,))]
    assert ack(m, "run") == [Deployed()]
    assert m.feed(Exited("run", 0, ("p0", 0), 0), 0.0) == [Finished()]


def test_a_failed_process_fails_the_deployment_naming_node_group_and_process() -> None:
    m = machine(CHAIN)
    up(m)
    ack(m, "A")
    [fail] = m.feed(Exited("A", 0, ("p0", 0), 3), 1.0)
    assert isinstance(fail, Fail)
    assert "node n0" in fail.message and "group A" in fail.message
    assert "p0/0" in fail.message and "code 3" in fail.message
    assert "stderr" not in fail.message  # nothing said, nothing shown
    assert m.feed(NodeUp("n1"), 2.0) == []  # a failed machine launches nothing more
    m.kill_all()
    assert m.instances[("B", 0)].processes[0].state == PState.KILLED


def test_a_process_that_cannot_start_is_named() -> None:
    m = machine(CHAIN)
    up(m)
    [fail] = m.feed(LaunchError("A", 0, ("p0", 0), "nope: No such file"), 0.0)
    assert fail == Fail("node n0: group A instance 0 process p0/0 failed to start: "
                        "nope: No such file")


def test_a_satellite_that_never_calls_back_is_an_error_naming_node_and_processes() -> None:
    m = machine(CHAIN, timeout=5.0)
    m.feed(NodeStarting("n0"), 0.0)
    m.feed(NodeStarting("n1"), 0.0)
    m.feed(NodeUp("n0"), 1.0)
    assert m.feed(Tick(), 4.9) == []
    [fail] = m.feed(Tick(), 5.0)
    assert isinstance(fail, Fail)
    assert fail.message.startswith("node n1: no callback from its satellite within 5 s")
    assert "B[0] p0/0" in fail.message


def test_an_acknowledgement_that_never_comes_is_an_error_naming_node_and_processes() -> None:
    m = machine(GenericAppl((group("A", procs=2),)), timeout=2.0)
    assert up(m) == [Launch("A", (0,))]
    [fail] = m.feed(Tick(), 2.5)
    assert fail == Fail("node n0: no callback within 2 s for group A instance 0 "
                        "(processes p0/0, p1/0)")


def test_readiness_that_never_comes_says_what_is_missing() -> None:
    appl = GenericAppl((group("S"), group("W")), (Dependency("W", "S", "ready"),))
    m = machine(appl, asynchronous={"S": False}, needs={"W": {("S", 0, "port")}}, timeout=1.0)
    up(m)
    ack(m, "S", now=0.5)
    [fail] = m.feed(Tick(), 1.6)
    assert isinstance(fail, Fail)
    assert "not ready within 1 s" in fail.message
    assert "plugin readiness" in fail.message and "value port" in fail.message


# ------------------------------------------------------------------ property-based
def assert_counts_match_records(m: Machine) -> None:
    """The machine's incremental counts are what a pass over its records gives."""
    for g in m.appl.groups:
        procs = [p for r in m.of(g.id) for p in r.processes]
        states, started_final = m.tally(g.id)
        assert +Counter(states) == Counter(p.state for p in procs)
        assert started_final == sum(p.state in FINAL and p.pid is not None for p in procs)
        assert m.all_acked(g.id) == all(r.acked for r in m.of(g.id))
        assert m.met(g.id, "exit") == all(p.state == PState.EXITED for p in procs)
        assert m.met(g.id, "ready") == all(r.ready for r in m.of(g.id))
    assert [r.index for r in m.of(m.appl.groups[0].id)] == list(
        range(m.appl.groups[0].cardinality))


@st.composite
def deployments(draw: st.DrawFn) -> tuple[GenericAppl, dict[str, bool], int]:
    n = draw(st.integers(1, 6))
    groups = [group(f"g{i}", draw(st.integers(1, 3)), draw(st.integers(1, 2)))
              for i in range(n)]
    deps = [Dependency(f"g{i}", f"g{j}", draw(st.sampled_from(["ack", "ready", "exit"])))
            for i in range(n) for j in range(i) if draw(st.booleans())]
    asynchronous = {f"g{i}": draw(st.booleans()) for i in range(n)}
    return GenericAppl(tuple(groups), tuple(deps)), asynchronous, draw(st.integers(1, 3))


@settings(max_examples=150, deadline=None)
@given(deployments(), st.data())
def test_no_group_launches_before_its_dependencies_met_their_condition(
        dep: tuple[GenericAppl, dict[str, bool], int], data: st.DataObject) -> None:
    appl, asynchronous, nodes = dep
    whole = frozenset(g.id for g in appl.groups if data.draw(st.booleans()))
    m = machine(appl, nodes, asynchronous, timeout=1e9, whole=whole)
    acked: set[tuple[str, int]] = set()
    plugin_ready: set[str] = set()
    exited: set[tuple[str, int, str]] = set()
    launched: list[tuple[str, int]] = []  # instances, in launch order
    up_nodes: set[str] = set()

    def ready(g: str, i: int) -> bool:
        return (g, i) in acked and (asynchronous[g] or g in plugin_ready)

    def met(d: Dependency) -> bool:
        insts = m.of(d.on)
        if d.condition == "exit":
            return all((d.on, r.index, p.process) in exited for r in insts for p in r.processes)
        if d.condition == "ready" or not asynchronous[d.on]:
            return all(ready(d.on, r.index) for r in insts)
        return all((d.on, r.index) in acked for r in insts)

    def apply(event: object) -> None:
        for action in m.feed(event, 0.0):  # type: ignore[arg-type]
            assert not isinstance(action, Fail), action
            if isinstance(action, Launch):
                g = action.proc_group
                assert all(met(d) for d in appl.dependencies if d.group == g)
                on = {m.instances[(g, i)].node for i in action.indexes}
                assert on <= up_nodes  # an instance starts only on a node that is up
                if g in whole:  # all at once, once every node of the group is up
                    assert sorted(action.indexes) == [r.index for r in m.of(g)]
                    assert {r.node for r in m.of(g)} <= up_nodes
                launched.extend((g, i) for i in action.indexes)

    pending_nodes = [f"n{k}" for k in range(nodes)]
    while True:
        pool: list[object] = [NodeUp(n) for n in pending_nodes]
        for (g, i), r in m.instances.items():
            if (g, i) in launched and (g, i) not in acked:
                pool.append(Acked(g, i, {p.process: 1 for p in r.processes}))
            for p in r.processes:
                if (g, i) in acked and (g, i, p.process) not in exited:
                    pool.append(Exited(g, i, p.process, 0))
        pool += [PluginReady(g) for g in m.launched if g not in plugin_ready
                 and not asynchronous[g] and all((g, r.index) in acked for r in m.of(g))]
        if not pool:
            break
        ev = pool[data.draw(st.integers(0, len(pool) - 1))]
        match ev:
            case NodeUp(node):
                pending_nodes.remove(node)
                up_nodes.add(node)
            case Acked(g, i, _):
                acked.add((g, i))
            case Exited(g, i, p, _):
                exited.add((g, i, p))
            case PluginReady(g):
                plugin_ready.add(g)
        apply(ev)
        assert_counts_match_records(m)
    assert sorted(launched) == sorted(m.instances)  # every instance, once
    assert m.launched == {g.id for g in appl.groups}
    assert m.finished and m.deployed


def test_progress_lines_at_most_once_a_second_then_the_final_counts() -> None:
    import io

    from adage.deploy.progress import Progress, counts

    appl = GenericAppl((group("A", 50),))
    m = machine(appl, 5)
    out = io.StringIO()
    with Progress(out, live=False) as progress:
        for ev in [*(NodeUp(f"n{k}") for k in range(5)),
                   *(Acked("A", i, {("p0", 0): i}) for i in range(50)),
                   *(Exited("A", i, ("p0", 0), 0) for i in range(50))]:
            m.feed(ev, 0.0)
            progress(m)
    lines = out.getvalue().splitlines()
    assert lines[-1] == "A: launched 50, acked 50, exited 50"
    assert len(lines) <= 3  # 105 changes in well under a second: the first, the last
    assert counts(m)["A"][PState.EXITED] == 50
