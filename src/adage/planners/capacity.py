"""Capacity planner: a node's cores are its slots and its speed their weight.

Each instance goes to the eligible node with the lowest load = instances placed there (all
groups) / (cores * speed), ties going to the node that comes first in the resource document.
A node never takes more instances than it has cores unless ``ctrl.oversubscribe`` is true.
"""

from __future__ import annotations

from adage.model import CtrlParams, GenericAppl, Plan, Resources
from adage.planners.base import PlanningError, plan_least_loaded


class CapacityPlanner:
    """Least-loaded-first by instances per weighted core; see the module docstring."""

    name = "capacity"

    def plan(self, appl: GenericAppl, resources: Resources, ctrl: CtrlParams) -> Plan:
        for node in resources.nodes:
            if node.cores < 1 or not node.speed > 0:
                raise PlanningError(f"node '{node.name}': the capacity planner needs cores >= 1 "
                                    f"and speed > 0 (cores={node.cores}, speed={node.speed})",
                                    constraint="cores")
        weights = [n.cores * n.speed for n in resources.nodes]
        slots = None if ctrl.oversubscribe else [n.cores for n in resources.nodes]
        return plan_least_loaded(self.name, appl, resources, ctrl, weights=weights, slots=slots)
