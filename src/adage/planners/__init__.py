"""ADAGE planners: place every process group instance on a node.

The two built-in planners (``round-robin``, the default, and ``capacity``) are known by name,
without distribution metadata; others are found through the ``adage.planners`` entry point
group, read only when a name is not a built-in one.
"""

from __future__ import annotations

from collections.abc import Callable

from adage.planners.base import Planner, PlanningError
from adage.planners.capacity import CapacityPlanner
from adage.planners.round_robin import RoundRobinPlanner

__all__ = ["Planner", "PlanningError", "available", "get_planner"]

BUILTIN: dict[str, Callable[[], Planner]] = {
    RoundRobinPlanner.name: RoundRobinPlanner,
    CapacityPlanner.name: CapacityPlanner,
}


def available() -> dict[str, Callable[[], Planner]]:
    """Planner factories by name: the built-in ones, then the installed entry points under
    other names."""
    from importlib.metadata import entry_points

    found = dict(BUILTIN)
    for ep in entry_points(group="adage.planners"):
        found.setdefault(ep.name, ep.load())
    return found


def get_planner(name: str) -> Planner:
    """The planner called ``name`` (the ``<planner>`` of the control parameters)."""
    if name in BUILTIN:
        return BUILTIN[name]()
    factories = available()
    if name not in factories:
        raise PlanningError(f"<planner>: unknown planner '{name}' (known: "
                            f"{', '.join(sorted(factories))})", constraint="planner")
    return factories[name]()
