"""The generic plugin: documents with root ``generic_appl_descr`` are the generic description
itself; groups of type "generic" are started as plain processes by the satellites."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from lxml import etree

from adage.model import Dependency, GenericAppl, Process, ProcGroup
from adage.plugin import Plugin
from adage.plugins import args_of, env_of, files_of, integer, trimmed


def process_of(elem: etree._Element, source: Path) -> Process:
    """One ``process`` element."""
    return Process(
        id=elem.get("id"),
        executable=trimmed(elem.find("executable")),
        args=args_of(elem),
        env=env_of(elem),
        files=files_of(elem, source),
        cardinality=integer(elem.get("cardinality")),
    )


class GenericPlugin(Plugin):
    name: ClassVar[str] = "generic"
    root: ClassVar[str] = "generic_appl_descr"
    schema: ClassVar[str] = "generic_appl_descr.xsd"

    def convert(self, doc: etree._ElementTree, source: Path) -> GenericAppl:
        """The document as it is (file sources made absolute)."""
        root = doc.getroot()
        groups = tuple(
            ProcGroup(
                id=g.get("id"),
                type=g.get("type"),
                cardinality=integer(g.get("cardinality")),
                processes=tuple(process_of(p, source) for p in g.iterfind("process")),
                params=tuple((p.get("name"), p.get("value")) for p in g.iterfind("param")),
            )
            for g in root.iterfind("proc_groups/proc_group")
        )
        deps = tuple(
            Dependency(d.get("group"), d.get("on"), d.get("condition"))
            for d in root.iterfind("dependencies/dependency")
        )
        return GenericAppl(groups, deps)
