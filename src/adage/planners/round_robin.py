"""ADAGE's default planner: round-robin over the nodes, least already used/planned first.

Groups are planned in document order (a group collocated with G right after G at the
earliest), instances in index order; each instance goes to the node, among those its group's
constraints admit, that holds the fewest instances of all groups planned so far, ties going
to the node that comes first in the resource document.
"""

from __future__ import annotations

from adage.model import CtrlParams, GenericAppl, Plan, Resources
from adage.planners.base import plan_least_loaded


class RoundRobinPlanner:
    """Least-loaded-first by instance count; see the module docstring."""

    name = "round-robin"

    def plan(self, appl: GenericAppl, resources: Resources, ctrl: CtrlParams) -> Plan:
        return plan_least_loaded(self.name, appl, resources, ctrl)
