"""Fake-node layout, registration plan and resource_logs rows of the test bed (pure parts)."""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from oarlib.testbed import Plan, Resource, layout, plan


def test_layout_matches_oar_resources_add_lines() -> None:
    # `oar_resources_add -H 2 -C 1 -c 3 --host-prefix node` prints, after the oarproperty lines:
    # oarnodesetting -a -h 'node1' -p host='node1' -p cpu=1 -p core=1 -p cpuset=0  ... etc.
    assert [(r.network_address, r.host, r.cpu, r.core, r.cpuset) for r in layout(2, 3)] == [
        ("node1", "node1", 1, 1, "0"), ("node1", "node1", 1, 2, "1"),
        ("node1", "node1", 1, 3, "2"), ("node2", "node2", 2, 4, "0"),
        ("node2", "node2", 2, 5, "1"), ("node2", "node2", 2, 6, "2"),
    ]


def test_log_rows_skip_a_property_equal_to_the_column_default() -> None:
    # set_resources_property only logs a change: cpuset=0 is the schema default, so no row
    assert Resource("n1", "n1", 1, 1, "0").log_rows() == [
        ("state", "Alive"), ("host", "n1"), ("cpu", "1"), ("core", "1")]
    assert Resource("n1", "n1", 1, 2, "1").log_rows()[-1] == ("cpuset", "1")


@given(st.integers(1, 40), st.integers(1, 40))
def test_layout_is_unique_and_sized(nodes: int, cores: int) -> None:
    res = layout(nodes, cores)
    assert len(res) == len(set(res)) == nodes * cores
    assert sorted(r.core for r in res) == list(range(1, nodes * cores + 1))
    assert Counter(r.host for r in res) == {f"node{h}": cores for h in range(1, nodes + 1)}


universe = [*layout(3, 3), Resource("other", "other", 9, 99, "0"),
            Resource("node1", "node1", 1, 7, "0")]  # node1/cpuset 0 with another core number


def apply(existing: list[tuple[int, Resource]], p: Plan) -> list[Resource]:
    new = dict(p.update)
    return [new.get(rid, r) for rid, r in existing if rid not in set(p.remove)] + p.add


@given(st.lists(st.sampled_from(universe), max_size=15), st.integers(1, 3), st.integers(1, 3))
def test_plan_reaches_exactly_what_is_asked(existing: list[Resource], nodes: int,
                                            cores: int) -> None:
    wanted = layout(nodes, cores)
    rows = list(enumerate(existing, start=1))
    p = plan(rows, wanted)
    assert Counter(apply(rows, p)) == Counter(wanted)
    # minimal: one registered resource per asked (node, cpuset) is kept, whatever its numbers
    keys = {(r.network_address, r.cpuset) for r in existing}
    assert len(p.add) == len([r for r in wanted if (r.network_address, r.cpuset) not in keys])
    assert all(rows[rid - 1][1] != res for rid, res in p.update)


def test_plan_is_empty_when_the_set_is_right() -> None:
    wanted = layout(4, 2)
    assert plan(list(enumerate(wanted, start=10)), wanted) == Plan([], [], [])


def test_plan_renumbers_kept_nodes_and_removes_duplicates_and_strangers() -> None:
    small, big = layout(2, 2), layout(3, 4)
    p = plan(list(enumerate(small, start=1)), big)
    assert p.remove == [] and [rid for rid, _ in p.update] == [3, 4]  # node2: cores 3,4 -> 5,6
    assert p.update[0][1] == Resource("node2", "node2", 2, 5, "0") and len(p.add) == 8
    existing = [(1, small[0]), (2, small[0]), (3, Resource("x", "x", 5, 5, "0"))]
    p = plan(existing, small[:2])
    assert p.remove == [2, 3] and p.update == [] and p.add == [small[1]]
