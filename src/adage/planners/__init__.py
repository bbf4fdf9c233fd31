"""ADAGE planners: place every process group instance on a node.

Planners are found through the ``adage.planners`` entry point group; the two built-in ones
(``round-robin``, the default, and ``capacity``) are also known without distribution
metadata, e.g. when running from a source checkout.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points

from adage.planners.base import Planner, PlanningError
from adage.planners.capacity import CapacityPlanner
from adage.planners.round_robin import RoundRobinPlanner

__all__ = ["Planner", "PlanningError", "available", "get_planner"]

BUILTIN: dict[str, Callable[[], Planner]] = {
    RoundRobinPlanner.name: RoundRobinPlanner,
    CapacityPlanner.name: CapacityPlanner,
}


def available() -> dict[str, Callable[[], Planner]]:
    """Planner factories by name: the built-in ones, then the installed entry points."""
    found = dict(BUILTIN)
    found.update({ep.name: ep.load() for ep in entry_points(group="adage.planners")})
    return found


def get_planner(name: str) -> Planner:
    """The planner called ``name`` (the ``<planner>`` of the control parameters)."""
    factories = available()
    if name not in factories:
        raise PlanningError(f"<planner>: unknown planner '{name}' (known: "
                            f"{', '.join(sorted(factories))})", constraint="planner")
    return factories[name]()
