"""Placeholders in process arguments and environment values: ``@{G.host}``, ``@{G[i].host}``,
``@{G.urlhost}``, ``@{G[i].urlhost}``, ``@{G.hosts}``, ``@{G.count}``, ``@{G.value.KEY}``,
``@{G[i].value.KEY}``, ``@{self.index}``, ``@{self.host}``, ``@{self.urlhost}``,
``@{self.group}``; ``@@`` is a literal ``@`` and any other ``@`` not followed by ``{`` is kept
(an unclosed ``@{`` is an error). ``host`` is the node's address as is (``::1``), ``urlhost``
the same ready to go before ``:PORT`` in a host:port or URL (``[::1]``, ``model.url_host``).

Pure parsing and substitution; what a reference resolves to is the caller's business (the
deployer knows the plan and the reported values; ``adage.documents`` only checks references).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from adage.errors import AdageError

_TOKEN = re.compile(r"@@|@\{([^}]*)(\}?)")
_SELF = re.compile(r"self\.(index|host|urlhost|group)")
_GROUP = re.compile(
    r"(?P<group>[A-Za-z_][A-Za-z0-9_.\-]*?)(?:\[(?P<index>[0-9]+)\])?"
    r"\.(?P<what>host|urlhost|hosts|count|value\.(?P<key>[^.\s]+))"
)


class PlaceholderError(AdageError, ValueError):
    """A ``@{...}`` that does not follow the placeholder syntax."""


@dataclass(frozen=True)
class Ref:
    """One placeholder. ``group`` is "self" for ``@{self.*}``; ``what`` is host, urlhost,
    hosts, count, value, index or group; ``index`` is the instance for host/urlhost/value (0
    unless ``[i]``)."""

    text: str  # as written, e.g. "@{A[1].host}"
    group: str
    what: str
    index: int = 0
    key: str = ""  # for what == "value"


def parse_ref(inner: str) -> Ref:
    """The reference written ``@{inner}``."""
    text = f"@{{{inner}}}"
    if m := _SELF.fullmatch(inner):
        return Ref(text, "self", m[1])
    m = _GROUP.fullmatch(inner)
    if m is None:
        raise PlaceholderError(
            f"{text} is not a placeholder (expected @{{GROUP.host}}, @{{GROUP[i].host}}, "
            "@{GROUP.urlhost}, @{GROUP.hosts}, @{GROUP.count}, @{GROUP.value.KEY} or "
            "@{self.index|host|urlhost|group})"
        )
    if m["group"] == "self":
        raise PlaceholderError(f"{text}: self has only .index, .host, .urlhost and .group")
    what = "value" if m["key"] else m["what"]
    if m["index"] is not None and what in ("hosts", "count"):
        raise PlaceholderError(f"{text}: an instance index [i] goes only with .host, .urlhost "
                               "or .value")
    return Ref(text, m["group"], what, int(m["index"] or 0), m["key"] or "")


def _token(m: re.Match[str]) -> Ref:
    if not m[2]:
        raise PlaceholderError(f"{m[0]}: unclosed placeholder (missing '}}'; write @@ for a "
                               "literal @)")
    return parse_ref(m[1])


def refs(text: str) -> Iterator[Ref]:
    """Every placeholder of ``text``, in order (raises PlaceholderError on a bad one)."""
    for m in _TOKEN.finditer(text):
        if m[0] != "@@":
            yield _token(m)


def substitute(text: str, resolve: Callable[[Ref], str]) -> str:
    """``text`` with each placeholder replaced by ``resolve(ref)`` and ``@@`` by ``@``."""
    return _TOKEN.sub(lambda m: "@" if m[0] == "@@" else resolve(_token(m)), text)
