"""Placeholders in process arguments and environment values, resolved just before launch.

Syntax (``docs/adage.md``): ``@{G.host}``, ``@{G[i].host}``, ``@{G.hosts}``, ``@{G.count}``,
``@{G.value.KEY}``, ``@{G[i].value.KEY}``, ``@{self.index}``, ``@{self.host}``,
``@{self.group}``; ``@@`` is a literal ``@``. Pure functions: the deployer passes a view of
where groups landed and what their processes reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

_TOKEN = re.compile(r"@@|@\{([^}]*)\}")
_REF = re.compile(
    r"^(?P<group>.+?)(?:\[(?P<index>\d+)\])?\.(?P<attr>hosts|host|count|value\.(?P<key>.+))$"
)


class PlaceholderError(ValueError):
    """A placeholder that is malformed or refers to something unknown."""


@dataclass(frozen=True)
class Ref:
    """One parsed placeholder: ``group`` is ``"self"`` for ``@{self.*}``."""

    group: str
    attr: str  # host | hosts | count | value | index | group
    index: int = 0
    key: str = ""


class View(Protocol):
    """What resolution needs to know about the deployment."""

    def hosts(self, group: str) -> list[str]:
        """Addresses of the nodes of every instance of ``group``, in index order."""
        ...

    def value(self, group: str, index: int, key: str) -> str | None:
        """The value ``key`` reported by instance ``index`` of ``group``, if any yet."""
        ...


def parse(body: str, text: str = "") -> Ref:
    """The reference inside ``@{...}``; ``text`` (the whole string) is quoted in errors."""
    if body in ("self.index", "self.host", "self.group"):
        return Ref("self", body.split(".", 1)[1])
    m = _REF.match(body)
    if m is None or m["group"] == "self":
        raise PlaceholderError(f"malformed placeholder @{{{body}}} in {text or body!r}")
    attr = "value" if m["key"] is not None else m["attr"]
    if m["index"] is not None and attr in ("hosts", "count"):
        raise PlaceholderError(f"@{{{body}}} in {text!r}: .{attr} takes no instance index")
    return Ref(m["group"], attr, int(m["index"] or 0), m["key"] or "")


def references(text: str) -> list[Ref]:
    """Every placeholder in ``text``, in order (``@@`` excluded)."""
    return [parse(m[1], text) for m in _TOKEN.finditer(text) if m[0] != "@@"]


def resolve(text: str, view: View, group: str, index: int, host: str) -> str:
    """``text`` with every placeholder replaced, for instance ``index`` of ``group`` on
    ``host``. Raises PlaceholderError for unknown groups, indexes or unreported values."""

    def one(m: re.Match[str]) -> str:
        if m[0] == "@@":
            return "@"
        ref = parse(m[1], text)
        if ref.group == "self":
            return {"index": str(index), "host": host, "group": group}[ref.attr]
        hosts = view.hosts(ref.group)
        if not hosts:
            raise PlaceholderError(f"@{{{m[1]}}} in {text!r}: no group {ref.group!r} in the plan")
        if ref.attr == "hosts":
            return ",".join(hosts)
        if ref.attr == "count":
            return str(len(hosts))
        if ref.index >= len(hosts):
            raise PlaceholderError(
                f"@{{{m[1]}}} in {text!r}: group {ref.group!r} has {len(hosts)} instance(s)"
            )
        if ref.attr == "host":
            return hosts[ref.index]
        value = view.value(ref.group, ref.index, ref.key)
        if value is None:
            raise PlaceholderError(
                f"@{{{m[1]}}} in {text!r}: {ref.group}[{ref.index}] has not reported {ref.key}"
            )
        return value

    return _TOKEN.sub(one, text)
