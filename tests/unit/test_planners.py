"""Planners: the seed's example, invariants (hypothesis), agreement with a brute-force
reference, constraint errors, and the worked examples of docs/adage-planners.md."""

from __future__ import annotations

import doctest
import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from adage import documents
from adage.deploy.deployer import Deployer
from adage.model import (
    Constraint,
    CtrlParams,
    Dependency,
    GenericAppl,
    Node,
    Plan,
    ProcGroup,
    PropertyPredicate,
    Resources,
)
from adage.planners import PlanningError, available, get_planner
from adage.planners.base import matches
from adage.planners.capacity import CapacityPlanner
from adage.planners.round_robin import RoundRobinPlanner

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "adage-planners.md"
SCHEMAS = ROOT / "src" / "adage" / "schemas"
PLANNERS = ("round-robin", "capacity")


def appl(*cards: tuple[str, int], deps: tuple[Dependency, ...] = ()) -> GenericAppl:
    return GenericAppl(tuple(ProcGroup(g, "generic", n, ()) for g, n in cards), deps)


def nodes(*names: str, **kw: object) -> Resources:
    return Resources(tuple(Node(n, **kw) for n in names))  # type: ignore[arg-type]


def placement(plan: Plan) -> list[tuple[str, int, str]]:
    return [(i.proc_group, i.index, i.node) for i in plan.instances]


# ------------------------------------------------------------------ the seed's example
@pytest.mark.parametrize("name", PLANNERS)
def test_seed_example(name: str) -> None:
    plan = get_planner(name).plan(appl(("A", 3), ("B", 1)), nodes("node1", "node2", cores=2),
                                  CtrlParams())
    assert plan.planner == name
    assert placement(plan) == [("A", 0, "node1"), ("A", 1, "node2"), ("A", 2, "node1"),
                               ("B", 0, "node2")]


def test_default_planner_and_entry_points() -> None:
    assert CtrlParams().planner == "round-robin"
    assert isinstance(get_planner("round-robin"), RoundRobinPlanner)
    assert isinstance(get_planner("capacity"), CapacityPlanner)
    assert set(PLANNERS) <= set(available())


def test_unknown_planner() -> None:
    with pytest.raises(PlanningError, match=r"unknown planner 'heuristic' \(known: capacity, "
                                            r"round-robin"):
        get_planner("heuristic")


# ------------------------------------------------------------------ predicates
@pytest.mark.parametrize(("props", "op", "value", "expected"), [
    ((("mem", "512"),), "ge", "64", True),  # numeric: "512" < "64" as strings
    ((("mem", "512"),), "lt", "64", False),
    ((("mem", "1e3"),), "eq", "1000", True),
    ((("arch", "x86_64"),), "ge", "arm", True),  # string comparison
    ((("arch", "x86_64"),), "ne", "arm", True),
    ((("arch", "x86_64"),), "eq", "X86_64", False),
    ((("cluster", "b"),), "in", "a, b,c", True),
    ((("cluster", "d"),), "in", "a,b,c", False),
    ((("gpus", "2.0"),), "in", "1,2", True),
    ((), "ne", "x", False),  # a node without the property fails every predicate
    ((), "in", "", False),
])
def test_matches(props: tuple[tuple[str, str], ...], op: str, value: str,
                 expected: bool) -> None:
    name = props[0][0] if props else "missing"
    assert matches(Node("n", properties=props), PropertyPredicate(name, op, value)) is expected


def test_matches_node_attributes() -> None:
    node = Node("big", cores=16, speed=2.5, memory=65536)
    assert matches(node, PropertyPredicate("cores", "ge", "8"))
    assert matches(node, PropertyPredicate("speed", "gt", "2"))
    assert matches(node, PropertyPredicate("memory", "eq", "65536"))
    assert matches(node, PropertyPredicate("name", "in", "small,big"))
    assert not matches(Node("n", properties=(("cores", "2"),), cores=16),
                       PropertyPredicate("cores", "ge", "8"))  # a declared property wins


# ------------------------------------------------------------------ brute-force reference
def reference(appl_: GenericAppl, res: Resources, ctrl: CtrlParams, capacity: bool
              ) -> list[tuple[str, int, str]] | str:
    """Obviously correct and O(nodes) per instance: the placement, or the failing group."""
    cons = {g.id: ctrl.constraint(g.id) for g in appl_.groups}
    todo, order = list(appl_.groups), []
    while todo:
        ready = [g for g in todo if not cons[g.id].collocate_with
                 or cons[g.id].collocate_with in [o.id for o in order]]
        if not ready:
            return todo[0].id
        order.append(ready[0])
        todo.remove(ready[0])
    count: Counter[int] = Counter()
    where: dict[str, list[int]] = {}
    for g in order:
        c = cons[g.id]
        apart = {h for h, hc in cons.items() if hc.separate_from == g.id}
        apart |= {c.separate_from} if c.separate_from else set()
        where[g.id] = []
        for _ in range(g.cardinality):
            ok = [i for i, n in enumerate(res.nodes)
                  if all(matches(n, p) for p in c.predicates)
                  and (not c.collocate_with or i in where[c.collocate_with])
                  and not any(i in where.get(h, ()) for h in apart)
                  and not (c.max_per_node and where[g.id].count(i) >= c.max_per_node)
                  and not (capacity and not ctrl.oversubscribe
                           and count[i] >= res.nodes[i].cores)]
            if not ok:
                return g.id
            w = [res.nodes[i].cores * res.nodes[i].speed if capacity else 1 for i in ok]
            best = min(zip(ok, w, strict=True), key=lambda iw: (count[iw[0]] / iw[1], iw[0]))[0]
            count[best] += 1
            where[g.id].append(best)
    return [(g.id, k, res.nodes[i].name) for g in appl_.groups for k, i in enumerate(where[g.id])]


PREDICATES = [PropertyPredicate("cluster", "in", "a,b"), PropertyPredicate("cluster", "eq", "c"),
              PropertyPredicate("mem", "ge", "16"), PropertyPredicate("cores", "gt", "1")]


@st.composite
def problems(draw: st.DrawFn) -> tuple[GenericAppl, Resources, CtrlParams]:
    res = Resources(tuple(
        Node(f"n{k}", cores=draw(st.integers(1, 4)), speed=draw(st.sampled_from([0.5, 1, 1.5, 3])),
             properties=draw(st.sampled_from([(), (("cluster", "a"),), (("cluster", "c"),),
                                              (("cluster", "b"), ("mem", "32")),
                                              (("mem", "8"),)])))
        for k in range(draw(st.integers(1, 8)))))
    ids = [f"G{k}" for k in range(draw(st.integers(1, 5)))]
    groups = appl(*((g, draw(st.integers(0, 8))) for g in ids))
    others = st.sampled_from(["", *ids])
    cons = []
    for g in ids:
        if draw(st.booleans()):
            co, sep = draw(others), draw(others)
            cons.append(Constraint(g, tuple(draw(st.lists(st.sampled_from(PREDICATES),
                                                          max_size=2, unique=True))),
                                   draw(st.integers(0, 3)), "" if co == g else co,
                                   "" if sep == g else sep))
    return groups, res, CtrlParams(constraints=tuple(cons), oversubscribe=draw(st.booleans()))


@settings(max_examples=300, deadline=None)
@given(problems(), st.sampled_from(PLANNERS))
def test_agrees_with_reference(problem: tuple[GenericAppl, Resources, CtrlParams],
                               name: str) -> None:
    a, res, ctrl = problem
    expected = reference(a, res, ctrl, capacity=name == "capacity")
    if isinstance(expected, str):
        with pytest.raises(PlanningError) as err:
            get_planner(name).plan(a, res, ctrl)
        assert err.value.group == expected
        assert expected in str(err.value)
    else:
        assert placement(get_planner(name).plan(a, res, ctrl)) == expected


@settings(max_examples=200, deadline=None)
@given(problems(), st.sampled_from(PLANNERS))
def test_invariants(problem: tuple[GenericAppl, Resources, CtrlParams], name: str) -> None:
    a, res, ctrl = problem
    try:
        plan = get_planner(name).plan(a, res, ctrl)
    except PlanningError:
        return  # when it fails is test_agrees_with_reference's business
    by_name = {n.name: n for n in res.nodes}
    for g in a.groups:
        mine = plan.of(g.id)
        assert [i.index for i in mine] == list(range(g.cardinality))
        c = ctrl.constraint(g.id)
        for i in mine:
            assert all(matches(by_name[i.node], p) for p in c.predicates)
        per_node = Counter(i.node for i in mine)
        if c.max_per_node:
            assert max(per_node.values(), default=0) <= c.max_per_node
        if c.collocate_with:
            assert set(per_node) <= {i.node for i in plan.of(c.collocate_with)}
        if c.separate_from:
            assert not set(per_node) & {i.node for i in plan.of(c.separate_from)}
    assert len(plan.instances) == sum(g.cardinality for g in a.groups)
    if name == "capacity" and not ctrl.oversubscribe:
        total = Counter(i.node for i in plan.instances)
        assert all(total[n.name] <= n.cores for n in res.nodes)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 12), st.lists(st.integers(0, 30), min_size=1, max_size=6))
def test_round_robin_spread_at_most_one(n_nodes: int, cards: list[int]) -> None:
    res = nodes(*(f"n{k}" for k in range(n_nodes)))
    a = appl(*((f"G{k}", c) for k, c in enumerate(cards)))
    plan = RoundRobinPlanner().plan(a, res, CtrlParams())
    load = Counter({n.name: 0 for n in res.nodes})
    for g in a.groups:
        load.update(i.node for i in plan.of(g.id))
        assert max(load.values()) - min(load.values()) <= 1


@settings(max_examples=100, deadline=None)
@given(problems(), st.sampled_from(PLANNERS))
def test_dependencies_do_not_affect_placement(
        problem: tuple[GenericAppl, Resources, CtrlParams], name: str) -> None:
    a, res, ctrl = problem
    ids = [g.id for g in a.groups]
    deps = tuple(Dependency(x, y) for x, y in zip(ids[1:], ids, strict=False))
    try:
        plain = get_planner(name).plan(a, res, ctrl)
    except PlanningError:
        return
    assert get_planner(name).plan(GenericAppl(a.groups, deps), res, ctrl) == plain


# ------------------------------------------------------------------ specific behaviour
def test_collocated_group_declared_first_is_planned_after_its_target() -> None:
    ctrl = CtrlParams(constraints=(Constraint("worker", collocate_with="master"),))
    plan = RoundRobinPlanner().plan(appl(("worker", 3), ("master", 2)),
                                    nodes("n1", "n2", "n3", "n4"), ctrl)
    assert placement(plan) == [("worker", 0, "n1"), ("worker", 1, "n2"), ("worker", 2, "n1"),
                               ("master", 0, "n1"), ("master", 1, "n2")]


def test_loads_count_groups_with_other_predicates() -> None:
    """G1 (cluster a only) loads n1 and n2; G2 (any node) must see it and fill n3, n4 first."""
    res = Resources(tuple(Node(f"n{k}", properties=(("cluster", "a" if k < 3 else "b"),))
                          for k in range(1, 5)))
    ctrl = CtrlParams(constraints=(Constraint("G1", (PropertyPredicate("cluster", "eq", "a"),)),))
    plan = RoundRobinPlanner().plan(appl(("G0", 4), ("G1", 2), ("G2", 3)), res, ctrl)
    assert [i.node for i in plan.of("G2")] == ["n3", "n4", "n1"]


def test_nodes_set_aside_for_one_group_serve_the_next() -> None:
    ctrl = CtrlParams(constraints=(Constraint("G1", separate_from="G0", max_per_node=2),))
    plan = RoundRobinPlanner().plan(appl(("G0", 2), ("G1", 2), ("G2", 2)),
                                    nodes("n1", "n2", "n3"), ctrl)
    assert placement(plan) == [("G0", 0, "n1"), ("G0", 1, "n2"), ("G1", 0, "n3"),
                               ("G1", 1, "n3"), ("G2", 0, "n1"), ("G2", 1, "n2")]


def test_separate_from_is_symmetric() -> None:
    ctrl = CtrlParams(constraints=(Constraint("A", separate_from="B"),))
    plan = RoundRobinPlanner().plan(appl(("A", 2), ("B", 2)), nodes("n1", "n2", "n3", "n4"),
                                    ctrl)
    assert placement(plan) == [("A", 0, "n1"), ("A", 1, "n2"), ("B", 0, "n3"), ("B", 1, "n4")]


def test_capacity_weights_cores_by_speed() -> None:
    res = Resources((Node("slow", cores=4, speed=1.0), Node("fast", cores=2, speed=4.0)))
    plan = CapacityPlanner().plan(appl(("A", 5)), res, CtrlParams())
    # weights 4 and 8: loads after each step decide; ties (0/4, 0/8) go to document order
    assert [i.node for i in plan.instances] == ["slow", "fast", "fast", "slow", "slow"]


def test_capacity_oversubscribes_only_when_allowed() -> None:
    a, res = appl(("A", 5)), nodes("n1", "n2", cores=2)
    with pytest.raises(PlanningError, match=r"'A': 1 of 5 instances cannot be placed: core "
                                            r"slots missing: 1.*oversubscribe"):
        CapacityPlanner().plan(a, res, CtrlParams())
    plan = CapacityPlanner().plan(a, res, CtrlParams(oversubscribe=True))
    assert Counter(i.node for i in plan.instances) == {"n1": 3, "n2": 2}


def test_capacity_rejects_coreless_nodes() -> None:
    with pytest.raises(PlanningError, match=r"node 'n1': .*cores >= 1"):
        CapacityPlanner().plan(appl(("A", 1)), nodes("n1", cores=0), CtrlParams())


@pytest.mark.parametrize(("cons", "cards", "message"), [
    ((Constraint("A", (PropertyPredicate("cluster", "eq", "z"),)),), (("A", 1),),
     r"'A': 1 of 1 instances cannot be placed: no node satisfies cluster eq z"),
    ((Constraint("A", max_per_node=1),), (("A", 3),),
     r"'A': 1 of 3 instances cannot be placed: max_per_node=1 is reached on 2 eligible"),
    ((Constraint("B", collocate_with="A"),), (("A", 0), ("B", 1)),
     r"'B': .*collocate_with 'A': no eligible node hosts that group"),
    ((Constraint("B", separate_from="A"),), (("A", 2), ("B", 1)),
     r"'B': .*separate_from: every eligible node hosts"),
    ((Constraint("A", collocate_with="B"), Constraint("B", collocate_with="A")),
     (("A", 1), ("B", 1)), r"process groups A, B: collocate_with references form a cycle"),
    ((Constraint("Z"),), (("A", 1),), r"constraint of process group 'Z': no such process group"),
    ((Constraint("A", collocate_with="Q"),), (("A", 1),),
     r"'A': collocate_with names unknown process group 'Q'"),
    ((Constraint("A", separate_from="A"),), (("A", 1),),
     r"'A': separate_from names the group itself \(use max_per_node=1\)"),
    ((Constraint("A"), Constraint("A")), (("A", 1),), r"'A': given twice"),
    ((Constraint("A", (PropertyPredicate("x", "like", "y"),)),), (("A", 1),),
     r"'A': property x: unknown op 'like'"),
    ((Constraint("A", max_per_node=-1),), (("A", 1),), r"max_per_node must be >= 0"),
])
@pytest.mark.parametrize("name", PLANNERS)
def test_impossible_constraints(cons: tuple[Constraint, ...], cards: tuple[tuple[str, int], ...],
                                message: str, name: str) -> None:
    with pytest.raises(PlanningError, match=message):
        get_planner(name).plan(appl(*cards), nodes("n1", "n2", cores=8),
                               CtrlParams(constraints=cons))


def test_no_nodes() -> None:
    with pytest.raises(PlanningError, match=r"'A': 2 of 2 .*the resources have no node"):
        RoundRobinPlanner().plan(appl(("A", 2)), Resources(()), CtrlParams())
    assert RoundRobinPlanner().plan(appl(("A", 0)), Resources(()), CtrlParams()).instances == ()


# ------------------------------------------------------------------ the example control file
def test_ctrl_constraints_example_plans_chain_and_dask_on_four_nodes() -> None:
    """As documented: ``-a chain.xml -a dask.xml -r resources-4.xml -c ctrl-constraints.xml``."""
    examples = ROOT / "examples" / "adage"
    app = documents.read_appls([examples / "chain.xml", examples / "dask.xml"])
    res = documents.read_resources([examples / "resources-4.xml"])
    ctrl = documents.read_ctrl(examples / "ctrl-constraints.xml", app)
    plan = get_planner(ctrl.planner).plan(app, res, ctrl)
    where = {(i.proc_group, i.index): res.nodes[int(i.node[-1]) - 1] for i in plan.instances}
    assert len(where) == sum(g.cardinality for g in app.groups) == 9
    assert where[("A", 0)].prop("cluster") == "alpha"
    assert where[("C", 0)] != where[("A", 0)]
    workers = Counter(n.name for (g, _), n in where.items() if g == "dask-workers")
    assert all(res.nodes[int(n[-1]) - 1].prop("gpu") == "1" for n in workers)
    assert sum(workers.values()) == 4 and max(workers.values()) <= 2
    assert where[("dask-client", 0)] == where[("dask-scheduler", 0)]
    Deployer(app, res, ctrl, plan).dry_run()  # and it can be deployed on these nodes


# ------------------------------------------------------------------ the documentation
def doc_blocks(lang: str) -> list[tuple[int, str]]:
    """The ``lang`` fenced blocks of the planners page, with the line each starts on."""
    text = DOC.read_text()
    return [(text.count("\n", 0, m.start(1)) + 1, m[1])
            for m in re.finditer(rf"^```{lang}\n(.*?)^```$", text, re.M | re.S)]


def test_doc_examples_run() -> None:
    blocks = doc_blocks("pycon")
    text = ""
    for line, body in blocks:  # each block on its own line of the page, for the reports
        text += "\n" * (line - 1 - text.count("\n")) + body
    test = doctest.DocTestParser().get_doctest(text, {}, DOC.name, str(DOC), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert len(blocks) >= 8
    assert runner.summarize(verbose=False) == doctest.TestResults(0, len(test.examples))


def test_doc_xml_validates() -> None:
    schema = etree.XMLSchema(file=str(SCHEMAS / "ctrl_params.xsd"))
    blocks = doc_blocks("xml")
    assert len(blocks) >= 2
    for line, body in blocks:
        doc = etree.fromstring(body)
        assert schema.validate(doc), f"{DOC.name}:{line}: {schema.error_log}"
