"""What every planner shares: the protocol, the error, placement constraints and the
least-loaded placement engine both built-in planners are made of.

The engine places one instance at a time on the eligible node with the smallest load key,
ties going to the node that comes first in the resource document. It keeps, per distinct
set of property predicates, one heap of ``(load key, document index)`` over the nodes those
predicates admit; loads only grow, so entries are refreshed lazily when popped (an entry
whose key is out of date is pushed back with the current key). Nodes a group may not use
right now (``max_per_node`` reached, hosting a ``separate_from`` group) are set aside while
that group is planned and pushed back afterwards. A group costs O(log n) per instance plus
its set-asides, never O(nodes): no library offers a least-loaded heap with document-order
ties and per-group exclusions, hence ``heapq`` by hand.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from heapq import heapify, heappop, heappush, heapreplace
from typing import Any, Protocol

from adage.errors import AdageError
from adage.model import (
    Constraint,
    CtrlParams,
    GenericAppl,
    Node,
    PgInstance,
    Plan,
    ProcGroup,
    PropertyPredicate,
    Resources,
)

COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt, "le": operator.le,
    "gt": operator.gt, "ge": operator.ge,
}
OPS = (*COMPARE, "in")
NODE_ATTRIBUTES = ("name", "cores", "speed", "memory")  # usable in predicates as properties


class PlanningError(AdageError, ValueError):
    """A plan cannot be made; the message names the process group and the constraint."""

    def __init__(self, message: str, group: str = "", constraint: str = "") -> None:
        super().__init__(message)
        self.group = group
        self.constraint = constraint


class Planner(Protocol):
    """Places every instance of every process group on one node."""

    name: str

    def plan(self, appl: GenericAppl, resources: Resources, ctrl: CtrlParams) -> Plan: ...


# ------------------------------------------------------------------ property predicates
def node_value(node: Node, name: str) -> str | None:
    """Property ``name`` of ``node``; ``name``, ``cores``, ``speed`` and ``memory`` fall back
    to the node's attributes when no property of that name is declared."""
    value = node.prop(name)
    if value is None and name in NODE_ATTRIBUTES:
        value = str(getattr(node, name))
    return value


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _compare(left: str, op: str, right: str) -> bool:
    a, b = _number(left), _number(right)
    if a is not None and b is not None:
        return bool(COMPARE[op](a, b))
    return bool(COMPARE[op](left, right))


def matches(node: Node, pred: PropertyPredicate) -> bool:
    """Whether ``node`` satisfies ``pred``: numeric comparison when both sides are numbers,
    string comparison otherwise; ``in`` takes a comma-separated list; a node without the
    property never matches (not even ``ne``)."""
    value = node_value(node, pred.name)
    if value is None:
        return False
    if pred.op == "in":
        return any(_compare(value, "eq", item.strip()) for item in pred.value.split(","))
    return _compare(value, pred.op, pred.value)


def describe(preds: Iterable[PropertyPredicate]) -> str:
    """``cluster in a,b and cores ge 8``."""
    return " and ".join(f"{p.name} {p.op} {p.value}" for p in preds)


# ------------------------------------------------------------------ constraints and order
def checked_constraints(appl: GenericAppl, ctrl: CtrlParams) -> dict[str, Constraint]:
    """The constraint of every group (empty when none is given), checked for consistency."""
    ids = {g.id for g in appl.groups}
    given: dict[str, Constraint] = {}
    for c in ctrl.constraints:
        where = f"constraint of process group '{c.proc_group}'"
        if c.proc_group not in ids:
            raise PlanningError(f"{where}: no such process group", c.proc_group, "proc_group")
        if c.proc_group in given:
            raise PlanningError(f"{where}: given twice", c.proc_group, "proc_group")
        if c.max_per_node < 0:
            raise PlanningError(f"{where}: max_per_node must be >= 0, not {c.max_per_node}",
                                c.proc_group, "max_per_node")
        for attr in ("collocate_with", "separate_from"):
            other = getattr(c, attr)
            if other == c.proc_group:
                hint = " (use max_per_node=1)" if attr == "separate_from" else ""
                raise PlanningError(f"{where}: {attr} names the group itself{hint}",
                                    c.proc_group, attr)
            if other and other not in ids:
                raise PlanningError(f"{where}: {attr} names unknown process group '{other}'",
                                    c.proc_group, attr)
        for p in c.predicates:
            if p.op not in OPS:
                raise PlanningError(f"{where}: property {p.name}: unknown op '{p.op}' "
                                    f"(one of {', '.join(OPS)})", c.proc_group, "property")
        given[c.proc_group] = c
    for g in appl.groups:
        if g.cardinality < 0:
            raise PlanningError(f"process group '{g.id}': negative cardinality "
                                f"{g.cardinality}", g.id, "cardinality")
    return {g.id: given.get(g.id, Constraint(g.id)) for g in appl.groups}


def planning_order(appl: GenericAppl, constraints: dict[str, Constraint]) -> list[ProcGroup]:
    """Groups in document order, except that a group collocated with G comes after G."""
    waiting: dict[str, list[int]] = {}
    ready: list[int] = []
    for k, g in enumerate(appl.groups):
        target = constraints[g.id].collocate_with
        if target:
            waiting.setdefault(target, []).append(k)
        else:
            ready.append(k)
    heapify(ready)
    order: list[ProcGroup] = []
    while ready:
        g = appl.groups[heappop(ready)]
        order.append(g)
        for k in waiting.pop(g.id, []):
            heappush(ready, k)
    if len(order) < len(appl.groups):
        stuck = [g.id for g in appl.groups if g not in order]
        raise PlanningError(f"process groups {', '.join(stuck)}: collocate_with references "
                            "form a cycle", stuck[0], "collocate_with")
    return order


# ------------------------------------------------------------------ the engine
Entry = tuple[float, int]


def plan_least_loaded(planner: str, appl: GenericAppl, resources: Resources,
                      ctrl: CtrlParams, *, weights: list[float] | None = None,
                      slots: list[int] | None = None) -> Plan:
    """Place each instance on the eligible node with the lowest load key, ties by document
    order. The key is the node's instance count (all groups), divided by ``weights[node]``
    when given; a node never takes more instances than ``slots[node]`` when given."""
    constraints = checked_constraints(appl, ctrl)
    nodes = resources.nodes
    count = [0] * len(nodes)
    w = weights or []

    def weighted(i: int) -> float:
        return count[i] / w[i]

    key: Callable[[int], float] = count.__getitem__ if weights is None else weighted
    partners: dict[str, set[str]] = {g.id: set() for g in appl.groups}
    for c in constraints.values():
        if c.separate_from:
            partners[c.proc_group].add(c.separate_from)
            partners[c.separate_from].add(c.proc_group)
    pools: dict[frozenset[PropertyPredicate], tuple[bytearray, list[Entry]]] = {}
    hosted: dict[str, dict[int, int]] = {}  # group -> node -> instances of the group there
    placements: dict[str, list[int]] = {}  # group -> node of each instance, in index order

    for g in planning_order(appl, constraints):
        c = constraints[g.id]
        mine: dict[int, int] = {}
        hosted[g.id] = mine
        placed: list[int] = []
        placements[g.id] = placed
        if g.cardinality == 0:
            continue
        preds = frozenset(c.predicates)
        if preds not in pools:
            mask = bytearray(all(matches(n, p) for p in preds) for n in nodes)
            pool = [(key(i), i) for i in range(len(nodes)) if mask[i]]
            heapify(pool)
            pools[preds] = (mask, pool)
        mask, heap = pools[preds]
        excluded: set[int] = set()
        for other in partners[g.id]:
            excluded.update(hosted.get(other, ()))
        if c.collocate_with:
            heap = [(key(i), i) for i in hosted[c.collocate_with] if mask[i]]
            heapify(heap)
        aside: list[Entry] = []
        limit = c.max_per_node
        for k in range(g.cardinality):
            while heap:
                load, i = heap[0]
                now = key(i)
                if load != now:
                    heapreplace(heap, (now, i))
                elif slots is not None and count[i] >= slots[i]:
                    heappop(heap)  # full for good: counts never go down
                elif i in excluded or (limit and mine.get(i, 0) >= limit):
                    aside.append(heappop(heap))
                else:
                    break
            else:
                raise _failure(g, c, k, nodes, mask, hosted, excluded, count, slots)
            count[i] += 1
            mine[i] = mine.get(i, 0) + 1
            placed.append(i)
            heapreplace(heap, (key(i), i))
        if not c.collocate_with:
            for entry in aside:
                heappush(heap, entry)

    return Plan(planner, tuple(PgInstance(g.id, k, nodes[i].name)
                               for g in appl.groups for k, i in enumerate(placements[g.id])))


def _failure(g: ProcGroup, c: Constraint, k: int, nodes: tuple[Node, ...], mask: bytearray,
             hosted: dict[str, dict[int, int]], excluded: set[int], count: list[int],
             slots: list[int] | None) -> PlanningError:
    """Why instance ``k`` of ``g`` has no node: the first constraint that empties the set."""
    missing = g.cardinality - k
    head = (f"process group '{g.id}': {missing} of {g.cardinality} instances cannot be "
            "placed")
    candidates = [i for i in range(len(nodes)) if mask[i]]
    if not nodes:
        return PlanningError(f"{head}: the resources have no node", g.id, "resources")
    if not candidates:
        return PlanningError(f"{head}: no node satisfies {describe(c.predicates)}", g.id,
                             "property")
    if c.collocate_with:
        candidates = [i for i in candidates if i in hosted[c.collocate_with]]
        if not candidates:
            return PlanningError(f"{head}: collocate_with '{c.collocate_with}': no eligible "
                                 "node hosts that group", g.id, "collocate_with")
    free = [i for i in candidates if i not in excluded]
    if not free:
        return PlanningError(f"{head}: separate_from: every eligible node hosts an instance "
                             f"of a group it must be kept apart from", g.id, "separate_from")
    full = sum(1 for i in free if slots is not None and count[i] >= slots[i])
    if full == len(free):
        return PlanningError(f"{head}: core slots missing: {missing}; every core of the "
                             f"{full} eligible nodes is taken (set oversubscribe to allow "
                             "more instances than cores)", g.id, "cores")
    maxed = f"max_per_node={c.max_per_node} is reached on {len(free) - full} eligible nodes"
    if full:
        maxed += (f" and every core of the {full} others is taken (core slots missing: {missing}; "
                  "oversubscribe allows more instances than cores)")
    return PlanningError(f"{head}: {maxed}", g.id, "max_per_node")
