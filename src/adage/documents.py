"""ADAGE's XML documents: load and validate them against our XSD schemas, read them into the
model (``adage.model``, ``adage.status``), merge several, check what XSD cannot express, and
dump the model back to XML.

Every failure is a ``DocumentError`` naming the file, the line, the element and the rule
broken. lxml does the parsing and the schema validation (XSD 1.0, identity constraints with
xs:key/xs:keyref/xs:unique); its messages are reworded here into plain sentences. Documents are
parsed without resolving entities or touching the network (no XXE), and a document that
declares a DTD (entities) is refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import replace
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from lxml import etree

from adage import plugin
from adage.errors import AdageError
from adage.model import (
    RESERVED,
    Constraint,
    CtrlParams,
    EnvSetting,
    GenericAppl,
    Node,
    NodeGroup,
    PgInstance,
    Plan,
    PluginRef,
    PropertyPredicate,
    Resources,
    Transfer,
    stays_below,
)
from adage.placeholders import PlaceholderError, refs
from adage.plugins import XML_SPACE, boolean, integer, resolve_src
from adage.status import Failure, InstanceStatus, ProcessStatus, Status

SCHEMA_DIR = Path(__file__).parent / "schemas"
SCHEMAS = {  # root element -> schema, for the documents that are not application descriptions
    "resources": "resources.xsd",
    "ctrl_params": "ctrl_params.xsd",
    "plan": "plan.xsd",
    "status": "status.xsd",
}
DUMP_KINDS = ("generic", "res", "plan", "ctrl", "status")


class DocumentError(AdageError, ValueError):
    """A document that cannot be read, is not well-formed, breaks its schema or a rule of
    ADAGE; ``line`` is 0 when the error concerns the whole file."""

    def __init__(self, file: str, line: int, element: str, rule: str) -> None:
        self.file, self.line, self.element, self.rule = str(file), line, element, rule
        super().__init__(f"{self.file}:{line}: <{element}>: {rule}")


# ------------------------------------------------------------------ loading and validation
def _parser(encoding: str | None = None) -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           huge_tree=False, encoding=encoding)


@cache
def schema(name: str) -> etree.XMLSchema:
    """The compiled schema ``name`` of adage/schemas/ (validation fills in attribute
    defaults)."""
    xsd = etree.parse(str(SCHEMA_DIR / name), _parser())
    return etree.XMLSchema(xsd, attribute_defaults=True)


def schema_name(root: str) -> str:
    """The schema file of documents whose root element is ``root``."""
    if root in SCHEMAS:
        return SCHEMAS[root]
    return plugin.for_root(root).schema


def load(path: str | Path) -> etree._ElementTree:
    """The document at ``path``, parsed (with line numbers) and valid against the schema of its
    root element."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DocumentError(str(path), 0, "-", f"cannot read the file: {e.strerror}") from None
    return loads(data, str(path))


def loads(data: bytes | str, file: str = "<string>") -> etree._ElementTree:
    """Like ``load`` for a document held in memory; ``file`` names it in errors. A ``str`` is
    taken as decoded already (its XML declaration's encoding is ignored)."""
    encoding = None
    if isinstance(data, str):
        data, encoding = data.encode(), "utf-8"
    try:
        tree = etree.ElementTree(etree.fromstring(data, _parser(encoding), base_url=file))
    except etree.XMLSyntaxError as e:
        if doctype := _doctype_line(data):  # e.g. entities expanding beyond libxml2's limit
            raise _no_dtd(file, doctype) from None
        if not data.removeprefix(b"\xef\xbb\xbf").strip(b" \t\r\n"):
            raise DocumentError(file, 0, "-", "the document is empty") from None
        line, column = e.position if e.lineno else (0, 0)
        mismatch = re.search(r"tag mismatch: \S+ line \d+ and (\S+?),", e.msg)
        element = mismatch[1] if mismatch else _open_tag_before(data, line, column)
        raise DocumentError(file, line, element, f"malformed XML: {e.msg}") from None
    if tree.docinfo.doctype:
        raise _no_dtd(file, _doctype_line(data) or 1)
    root = tree.getroot()
    tag = etree.QName(root).localname
    if namespace := etree.QName(root).namespace:
        raise DocumentError(file, root.sourceline or 1, tag, f"namespace '{namespace}': ADAGE "
                            "documents use no XML namespace (remove the xmlns declaration "
                            "and the prefixes)")
    try:
        xsd = schema(schema_name(tag))
    except LookupError as e:
        raise DocumentError(file, root.sourceline or 1, tag, str(e)) from None
    if not xsd.validate(tree):
        errors = list(xsd.error_log)
        element, rule = _plain(errors[0].message, errors[0].path)
        more = f" (and {len(errors) - 1} more schema errors)" if len(errors) > 1 else ""
        raise DocumentError(file, errors[0].line, element, rule + more)
    return tree


def _open_tag_before(data: bytes, line: int, column: int) -> str:
    """The last element opened before ``line``, ``column``: where a syntax error is."""
    lines = data.splitlines()[: max(line, 1)] or [b""]
    lines[-1] = lines[-1][: column] if column > 0 else lines[-1]
    head = b"\n".join(lines).decode("utf-8", "replace")
    tags = re.findall(r"<([A-Za-z_][\w.:\-]*)", head)
    return tags[-1] if tags else "-"


_PROLOG_DOCTYPE = re.compile(  # BOM, then whitespace, processing instructions, comments
    rb"\A(?:\xef\xbb\xbf)?(?:\s|<\?(?:[^?]|\?(?!>))*\?>|<!--(?:[^-]|-(?!->))*-->)*<!DOCTYPE")


def _doctype_line(data: bytes) -> int:
    """The line of the document type declaration of ``data``, 0 if it has none."""
    m = _PROLOG_DOCTYPE.match(data)
    return data[: m.end()].count(b"\n") + 1 if m else 0


def _no_dtd(file: str, line: int) -> DocumentError:
    return DocumentError(file, line, "!DOCTYPE", "a document type declaration (DTD, entities) "
                         "is not allowed in ADAGE documents")


_TYPES = {
    "xs:positiveInteger": "a positive integer (1, 2, ...)",
    "xs:nonNegativeInteger": "a non-negative integer (0, 1, ...)",
    "xs:integer": "an integer",
    "xs:boolean": "a boolean (true, false, 1 or 0)",
    "xs:double": "a number",
    "xs:unsignedShort": "a port number (1 to 65535)",
    "cardinality": "a positive integer (1 to 1000000)",
    "port": "a port number (1 to 65535)",
    "speed": "a number above 0",
    "time": "a time (seconds since the epoch, 0 or more)",
}
_PATTERNS = {  # the patterns of our schemas, in words
    r"[A-Za-z_][A-Za-z0-9_.\-]*": "letters, digits, '_', '.', '-', not starting with a digit",
    r"[A-Za-z0-9_][A-Za-z0-9_.\-]*": "letters, digits, '_', '.', '-'",
    r"[A-Za-z_][A-Za-z0-9_]*": "letters, digits, '_', not starting with a digit",
    r"[A-Za-z0-9_.:%][A-Za-z0-9_.:%\-]*": "a host name or an IP address, not starting with '-'",
}
_CONSTRAINTS = {
    "proc_group_id": "proc_group ids must be unique",
    "process_id": "process ids must be unique within a proc_group",
    "dependency_pair": "the same dependency must not be given twice",
    "dependency_group": "dependency/@group must name a proc_group of this document",
    "node_name": "node names must be unique",
    "node_property": "a node must not give the same property twice",
    "node_ref_name": "node_ref/@name must name a node of this document",
    "node_group_id": "node_group ids must be unique",
    "constraint_group": "there must be one constraint per proc_group",
    "plugin_name": "each plugin must be listed once",
    "pg_instance_key": "each (proc_group, index) must be placed once",
    "status_instance": "each (proc_group, index) must appear once",
    "process_instance": "each (process id, index) must appear once in a pg_instance",
}
_ATTRIBUTE_REWRITES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"The attribute '(\w+)' is required but missing\."),
     "required attribute '{0}' is missing"),
    (re.compile(r"The attribute '(\w+)' is not allowed\."), "attribute '{0}' is not allowed here"),
]
_REWRITES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\[facet 'enumeration'\] The value '(.*)' is not an element of the set "
                r"\{(.*)\}\."),
     "'{0}' is not one of {1}"),
    (re.compile(r"\[facet '\w+'\] The value '(.*)' is greater than the maximum value allowed "
                r"\('(.*)'\)\."),
     "'{0}' is too large (at most {1})"),
    (re.compile(r"\[facet '\w+'\] The value '(.*)' is less than the minimum value allowed "
                r"\('(.*)'\)\."),
     "'{0}' is too small (at least {1})"),
    (re.compile(r"\[facet 'minExclusive'\] The value '(.*)' must be greater than '(.*)'\."),
     "'{0}' is too small (it must be above {1})"),
    (re.compile(r"\[facet '(\w+)'\] The value '(.*)' is (?:less|greater) than.*"),
     "'{1}' is out of range ({0})"),
    (re.compile(r"\[facet 'minLength'\] The value (?:'.*' )?has a length of '0'.*"),
     "the value must not be empty"),
    (re.compile(r"This element is not expected\. Expected is (?:one of )?\( (.*) \)\."),
     "element not allowed here; expected: {0}"),
    (re.compile(r"This element is not expected\."), "element not allowed here"),
    (re.compile(r"Missing child element\(s\)\. Expected is (?:one of )?\( (.*) \)\."),
     "missing child element; expected: {0}"),
    (re.compile(r"Character content (?:other than whitespace )?is not allowed.*"),
     "text is not allowed in this element"),
    (re.compile(r"Element content is not allowed, because the (?:content type|type "
                r"definition) is (?:a )?simple.*"),
     "child elements are not allowed in this element"),
]


def _plain(message: str, path: str | None) -> tuple[str, str]:
    """(element, rule in plain words) of one libxml2 schema error message."""
    m = re.match(r"Element '([^']+)'(?:, attribute '([^']+)')?: (.*)", message.strip())
    if not m:
        leaf = (path or "").rsplit("/", 1)[-1].split("[")[0]
        return leaf or "-", message.strip()
    element, attribute, text = etree.QName(m[1]).localname, m[2], m[3]
    prefix = f"attribute '{attribute}': " if attribute else ""
    if tm := re.match(r"'(.*)' is not a valid value of the (?:atomic|local atomic|union) "
                      r"type '([^']*)'\.", text):
        what = _TYPES.get(tm[2], f"of type {tm[2]}" if tm[2] else "valid here")
        return element, f"{prefix}'{tm[1]}' is not {what}"
    if km := re.match(r"No match found for key-sequence \[(.*)\] of keyref '(\w+)'\.", text):
        return element, f"{km[1]} names nothing: {_CONSTRAINTS.get(km[2], km[2])}"
    if km := re.match(r"Duplicate key-sequence \[(.*)\] in (?:unique|key) identity-constraint "
                      r"'(\w+)'\.", text):
        return element, f"duplicate {km[1]}: {_CONSTRAINTS.get(km[2], km[2])}"
    if pm := re.fullmatch(r"\[facet 'pattern'\] The value '(.*)' is not accepted by the "
                          r"pattern '(.*)'\.", text):
        words = f" ({_PATTERNS[pm[2]]})" if pm[2] in _PATTERNS else ""
        if "[" in pm[1] and element in ("node", "node_ref"):
            words += "; node ranges such as n[1-4] are not expanded: write each name out"
        return element, f"{prefix}'{pm[1]}' does not match the pattern {pm[2]}{words}"
    for pattern, template in _ATTRIBUTE_REWRITES:
        if rm := pattern.fullmatch(text):
            return element, template.format(*rm.groups())
    for pattern, template in _REWRITES:
        if rm := pattern.fullmatch(text):
            rule = prefix + template.format(*rm.groups())
            nth = re.search(r"\[(\d+)\]$", path or "")  # the 2nd <planner/>: .../planner[2]
            if rule == "element not allowed here" and nth and int(nth[1]) > 1:
                rule += f" (a repeated <{element}>: it may be given once)"
            return element, rule
    return element, prefix + text


# ------------------------------------------------------------------ application descriptions
class _Source:
    """One loaded document, to point errors at the element they concern."""

    def __init__(self, path: str | Path) -> None:
        self.file = str(path)
        self.path = Path(path)
        self.tree = load(path)
        self.root = self.tree.getroot()

    def fail(self, xpath: str, rule: str, **variables: str) -> DocumentError:
        """A DocumentError at the first element ``xpath`` selects (or at the root); ``xpath``
        may list alternatives separated by " || ", tried in order."""
        found = next((hit for x in xpath.split(" || ") if (hit := self.tree.xpath(x, **variables))),
                     [self.root])
        return self.at(found[0], rule)

    def at(self, elem: etree._Element, rule: str) -> DocumentError:
        """A DocumentError at ``elem``."""
        return DocumentError(self.file, elem.sourceline or 0, etree.QName(elem).localname, rule)


def read_appls(paths: Iterable[str | Path]) -> GenericAppl:
    """The generic description of the application documents ``paths`` (``-a``), each converted
    by the plugin of its root element, then merged and checked."""
    parts = []
    for path in paths:
        src = _Source(path)
        try:
            conv = plugin.for_root(etree.QName(src.root).localname)
        except LookupError as e:
            raise src.at(src.root, f"expected an application document here: {e}") from None
        parts.append((src, conv.convert(src.tree, src.path)))
    if not parts:
        raise DocumentError("-", 0, "-", "no application document given")
    return _merge(parts)


def _merge(parts: list[tuple[_Source, GenericAppl]]) -> GenericAppl:
    """One description of all ``parts``, checked: unique and unreserved group ids, installed
    plugins, dependencies on existing groups and without cycle, placeholders naming groups
    depended on, existing files with destinations below their directory."""
    owner: dict[str, _Source] = {}
    for src, appl in parts:
        for g in appl.groups:
            where = "//proc_group[@id=$g]"
            if g.id in owner:
                raise src.fail(where, f"proc_group id '{g.id}' is already used in "
                               f"{owner[g.id].file}", g=g.id)
            if g.id in RESERVED:
                raise src.fail(where, f"proc_group id '{g.id}' is reserved by the run "
                               "directory layout", g=g.id)
            if plugin.named(g.type) is None:
                known = ", ".join(sorted(plugin.available()))
                raise src.fail(where, f"type '{g.type}': no plugin named '{g.type}' is "
                               f"installed (known: {known})", g=g.id)
            owner[g.id] = src
    merged = GenericAppl(tuple(g for _, a in parts for g in a.groups),
                         tuple(d for _, a in parts for d in a.dependencies))
    for d in merged.dependencies:
        for name in (d.group, d.on):
            if name not in owner:
                src = next(s for s, a in parts if d in a.dependencies)
                raise src.fail("//dependency[@group=$g][@on=$o]",
                               f"'{name}' names no proc_group", g=d.group, o=d.on)
    _check_cycles(merged, owner)
    for g in merged.groups:
        _check_group(merged, g.id, owner[g.id])
    return merged


def _check_cycles(appl: GenericAppl, owner: dict[str, _Source]) -> None:
    graph: dict[str, set[str]] = {g.id: set() for g in appl.groups}
    for d in appl.dependencies:
        graph[d.group].add(d.on)
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as e:
        cycle = e.args[1][::-1]  # graphlib lists predecessors first: reversed, each waits
        raise owner[cycle[0]].fail(  # for the next
            "//dependency[@group=$g][@on=$o]",
            "dependency cycle: " + " -> ".join(cycle) + " (each waits for the next)",
            g=cycle[0], o=cycle[1],
        ) from None


def ancestors(appl: GenericAppl, group_id: str) -> set[str]:
    """The groups ``group_id`` depends on, directly or not."""
    seen: set[str] = set()
    todo = [group_id]
    while todo:
        current = todo.pop()
        for d in appl.dependencies:
            if d.group == current and d.on not in seen:
                seen.add(d.on)
                todo.append(d.on)
    return seen


def _check_refs(src: _Source, where: str, text: str, appl: GenericAppl | None,
                user: str | None, **variables: str) -> None:
    """The placeholders of ``text`` are well formed and, with ``appl``, name groups of it
    within their cardinality: groups that ``user`` depends on, or for a control parameter
    (``user`` None, applied to every group) any group but not its reported values."""
    try:
        found = list(refs(text))
    except PlaceholderError as e:
        raise src.fail(where, str(e), **variables) from None
    groups = {g.id: g for g in appl.groups} if appl else {}
    for ref in found:
        if ref.group == "self" or appl is None:
            continue
        if ref.group not in groups:
            rule = f"'{ref.group}' names no proc_group"
        elif user is None and ref.what == "value":
            rule = "reported values cannot be used in the control parameters"
        elif user is not None and ref.group not in ancestors(appl, user):
            rule = f"proc_group '{user}' must depend on '{ref.group}' to use it"
        elif ref.index >= groups[ref.group].cardinality:
            rule = (f"'{ref.group}' has only {groups[ref.group].cardinality} instance(s), "
                    "numbered from 0")
        else:
            continue
        raise src.fail(where, f"{ref.text}: {rule}", **variables)


def _check_group(appl: GenericAppl, group_id: str, src: _Source) -> None:
    """Placeholders of the group's processes, and their files: existing, each to its own
    destination below the run directory."""
    for proc in appl.group(group_id).processes:
        for text in (*proc.args, *(v for _, v in proc.env)):
            where = ("//proc_group[@id=$g]//arg[contains(., $t)] | "
                     "//proc_group[@id=$g]//env[contains(@value, $t)] || "
                     "//arg[contains(., $t)] | //env[contains(@value, $t)]")
            _check_refs(src, where, text, appl, group_id, t=text, g=group_id)
        dests: dict[str, str] = {}
        scope = src.tree.xpath("//proc_group[@id=$g]", g=group_id) or [src.root]
        for spec in proc.files:
            elem = next((e for e in scope[0].iter() for attr in ("src", "script")
                         if e.get(attr) and resolve_src(e.get(attr), src.path) == spec.src
                         and e.get("dest", spec.dest) == spec.dest), src.root)
            if not Path(spec.src).is_file():
                what = "is a directory" if Path(spec.src).is_dir() else "does not exist"
                raise src.at(elem, f"file '{spec.src}' {what}")
            if not stays_below(spec.name):
                raise src.at(elem, f"dest '{spec.name}' must be a relative path without '..'")
            if dests.setdefault(spec.name, spec.src) != spec.src:
                raise src.at(elem, f"'{spec.name}' is also the destination of "
                                   f"'{dests[spec.name]}' in this process")


# ------------------------------------------------------------------ resources
def read_resources(paths: Iterable[str | Path]) -> Resources:
    """The nodes and node groups of the resource documents ``paths``, merged (node names and
    node group ids unique across documents, a node in one node group at most)."""
    nodes: list[Node] = []
    groups: list[NodeGroup] = []
    seen: dict[str, str] = {}
    grouped: dict[str, str] = {}  # node -> its node group
    for path in paths:
        src = _Source(path)
        _expect_root(src, "resources")
        for elem in src.root.iterfind("node"):
            node = _node(src, elem)
            if node.name in seen:
                raise src.at(elem, f"node '{node.name}' is already described in "
                                   f"{seen[node.name]}")
            seen[node.name] = src.file
            nodes.append(node)
        for elem in src.root.iterfind("node_group"):
            gid = elem.get("id")
            if any(g.id == gid for g in groups):
                raise src.at(elem, f"node_group '{gid}' is already described in another "
                                   "document")
            _absolute(src, elem, "shared_dir")
            for ref in elem.iterfind("node_ref"):
                name = ref.get("name")
                if name in grouped:
                    raise src.at(ref, f"node '{name}' is already in node_group "
                                      f"'{grouped[name]}'")
                grouped[name] = gid
            groups.append(NodeGroup(gid, elem.get("shared_dir"),
                                    tuple(r.get("name") for r in elem.iterfind("node_ref"))))
    if not nodes:
        raise DocumentError("-", 0, "-", "no resource document given")
    return Resources(tuple(nodes), tuple(groups))


def _node(src: _Source, elem: etree._Element) -> Node:
    speed = float(elem.get("speed"))
    if not math.isfinite(speed):
        raise src.at(elem, f"attribute 'speed': '{elem.get('speed')}' is not a finite number")
    _absolute(src, elem, "scratch")
    return Node(
        name=elem.get("name"),
        cores=_int(elem, "cores"),
        speed=speed,
        memory=_int(elem, "memory"),
        properties=tuple((p.get("name"), p.get("value")) for p in elem.iterfind("property")),
        submission=tuple(s.get("method") for s in elem.iterfind("submission")) or ("local",),
        transfer=tuple(t.get("method") for t in elem.iterfind("transfer")) or ("local",),
        scratch=elem.get("scratch"),
        address=elem.get("address", ""),
    )


def _absolute(src: _Source, elem: etree._Element, attr: str) -> None:
    if not elem.get(attr).startswith("/"):
        raise src.at(elem, f"attribute '{attr}': '{elem.get(attr)}' must be an absolute path "
                           "(it is a directory on the nodes)")


def _expect_root(src: _Source, root: str) -> None:
    tag = etree.QName(src.root).localname
    if tag != root:
        raise DocumentError(src.file, src.root.sourceline or 0, tag,
                            f"expected a <{root}> document here")


# ------------------------------------------------------------------ control parameters
def read_ctrl(path: str | Path | None, appl: GenericAppl | None = None) -> CtrlParams:
    """The control parameters at ``path`` (None: the defaults). With ``appl``, constraints
    must name its groups."""
    if path is None:
        return CtrlParams()
    src = _Source(path)
    _expect_root(src, "ctrl_params")
    root = src.root
    ctrl = CtrlParams()
    if (sub := root.find("submission_method")) is not None:
        ctrl = replace(ctrl, submission_method=sub.get("name"))
    if (prop := root.find("propagation")) is not None:
        ctrl = replace(ctrl, propagation=prop.get("engine"))
    if (tf := root.find("transfer_files")) is not None:
        types = tuple(t for t in tf.get("type").split(",") if t)
        ctrl = replace(ctrl, transfer=Transfer(tf.get("method"), types,
                                                boolean(tf.get("binlib_in_commondir")),
                                                tf.get("destdir")))
    envs = tuple(EnvSetting(e.get("name"), e.get("value"), e.get("action"))
                 for e in root.iterfind("envs/env"))
    for e in envs:
        _check_refs(src, "//envs/env[@name=$n][@value=$v]", e.value, appl, None, n=e.name,
                    v=e.value)
    constraints = tuple(
        Constraint(
            proc_group=c.get("proc_group"),
            predicates=tuple(PropertyPredicate(p.get("name"), p.get("op"), p.get("value"))
                             for p in c.iterfind("property")),
            max_per_node=_int(c, "max_per_node"),
            collocate_with=c.get("collocate_with", ""),
            separate_from=c.get("separate_from", ""),
        )
        for c in root.iterfind("constraints/constraint")
    )
    plugins = tuple(PluginRef(p.get("name"), resolve_src(p.get("file"), src.path)
                              if p.get("file") else "")
                    for p in root.iterfind("plugins/plugin"))
    ctrl = replace(ctrl, envs=envs, constraints=constraints, plugins=plugins)
    if (pl := root.find("planner")) is not None:
        ctrl = replace(ctrl, planner=pl.get("name"))
    if (ov := root.find("oversubscribe")) is not None:
        ctrl = replace(ctrl, oversubscribe=boolean(ov.get("value")))
    if appl is not None:
        known = {g.id for g in appl.groups}
        for c in ctrl.constraints:
            for attr in ("proc_group", "collocate_with", "separate_from"):
                name = getattr(c, attr)
                if name and name not in known:
                    raise src.fail("//constraint[@proc_group=$g]",
                                   f"{attr} '{name}' names no proc_group of the application",
                                   g=c.proc_group)
    return ctrl


# ------------------------------------------------------------------ plan and status
def read_plan(path: str | Path) -> Plan:
    """The plan at ``path``."""
    src = _Source(path)
    _expect_root(src, "plan")
    return Plan(_token(src.root.get("planner")), tuple(
        PgInstance(i.get("proc_group"), _int(i, "index"), i.get("node"))
        for i in src.root.iterfind("pg_instance")))


def read_status(path: str | Path) -> Status:
    """The deployment status at ``path``."""
    src = _Source(path)
    _expect_root(src, "status")
    root = src.root
    return Status(
        instances=tuple(
            InstanceStatus(
                proc_group=i.get("proc_group"), index=_int(i, "index"), node=i.get("node"),
                state=i.get("state"),
                processes=tuple(_process_status(p) for p in i.iterfind("process")),
                launched=_float(i.get("launched")), acked=_float(i.get("acked")),
                ended=_float(i.get("ended")), message=i.get("message", ""),
            )
            for i in root.iterfind("pg_instance")
        ),
        deployment=root.get("deployment", ""), planner=_token(root.get("planner", "")),
        started=_float(root.get("started")), updated=_float(root.get("updated")),
        failure=_failure(root.find("failure")),
    )


def _failure(f: etree._Element | None) -> Failure | None:
    if f is None:
        return None
    return Failure(f.get("message"), f.get("node", ""), f.get("proc_group", ""),
                   _opt_int(f, "index"), _token(f.get("process", "")),
                   _opt_int(f, "process_index"), _opt_int(f, "exit_code"), f.get("stderr", ""))


def _process_status(p: etree._Element) -> ProcessStatus:
    return ProcessStatus(
        id=_token(p.get("id")), index=_int(p, "index"), state=p.get("state"),
        pid=_opt_int(p, "pid"), exit_code=_opt_int(p, "exit_code"),
        rundir=p.get("rundir", ""), stdout=p.get("stdout", ""), stderr=p.get("stderr", ""),
        started=_float(p.get("started")), ended=_float(p.get("ended")),
        message=p.get("message", ""),
        values=tuple((v.get("name"), v.get("value")) for v in p.iterfind("value")),
    )


def _opt_int(elem: etree._Element, attr: str) -> int | None:
    return None if elem.get(attr) is None else _int(elem, attr)


def _int(elem: etree._Element, attr: str) -> int:
    """The xs:integer attribute ``attr`` of ``elem``."""
    text = elem.get(attr)
    try:
        return integer(text)
    except ValueError:  # beyond Python's limit of digits for int(str)
        raise DocumentError(elem.getroottree().docinfo.URL or "-", elem.sourceline or 0,
                            etree.QName(elem).localname,
                            f"attribute '{attr}': '{text.strip(XML_SPACE)[:20]}...' is too "
                            "large") from None


def _token(text: str) -> str:
    """An xs:token value: whitespace collapsed to single spaces, none around."""
    return " ".join(re.split(f"[{XML_SPACE}]+", text.strip(XML_SPACE)))


def _float(text: str | None) -> float | None:
    return None if text is None else float(text)


# ------------------------------------------------------------------ dumps
def dump(kind: str, obj: object) -> str:
    """``obj`` as an XML document of ``kind`` (generic|res|plan|ctrl|status), valid against
    our schema for it."""
    builders = {"generic": _generic_xml, "res": _resources_xml, "plan": _plan_xml,
                "ctrl": _ctrl_xml, "status": _status_xml}
    if kind not in builders:
        raise ValueError(f"unknown dump kind {kind!r} (known: {', '.join(DUMP_KINDS)})")
    root = builders[kind](obj)
    return etree.tostring(root, pretty_print=True, xml_declaration=True,
                          encoding="UTF-8").decode()


def _el(parent: etree._Element | None, tag: str, **attrs: object) -> etree._Element:
    """A new element with the attributes that are not None (converted to text)."""
    clean = {k: _text(v) for k, v in attrs.items() if v is not None}
    if parent is None:
        return etree.Element(tag, clean)
    return etree.SubElement(parent, tag, clean)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _pairs(parent: etree._Element, tag: str, pairs: Iterable[tuple[str, str]]) -> None:
    for name, value in pairs:
        _el(parent, tag, name=name, value=value)


def _generic_xml(appl: GenericAppl) -> etree._Element:
    root = _el(None, "generic_appl_descr")
    groups = _el(root, "proc_groups")
    for g in appl.groups:
        ge = _el(groups, "proc_group", id=g.id, type=g.type, cardinality=g.cardinality)
        _pairs(ge, "param", g.params)
        for p in g.processes:
            pe = _el(ge, "process", id=p.id, cardinality=p.cardinality)
            _el(pe, "executable").text = p.executable
            if p.args:
                args = _el(pe, "arguments")
                for a in p.args:
                    _el(args, "arg").text = a
            if p.env:
                _pairs(_el(pe, "environment"), "env", p.env)
            if p.files:
                files = _el(pe, "files")
                for f in p.files:
                    _el(files, "file", type=f.type, src=f.src, dest=f.dest or None)
    if appl.dependencies:
        deps = _el(root, "dependencies")
        for d in appl.dependencies:
            _el(deps, "dependency", group=d.group, on=d.on, condition=d.condition)
    return root


def _resources_xml(res: Resources) -> etree._Element:
    root = _el(None, "resources")
    for n in res.nodes:
        ne = _el(root, "node", name=n.name, cores=n.cores, speed=repr(float(n.speed)),
                 memory=n.memory, scratch=n.scratch, address=n.address or None)
        _pairs(ne, "property", n.properties)
        for m in n.submission:
            _el(ne, "submission", method=m)
        for m in n.transfer:
            _el(ne, "transfer", method=m)
    for g in res.groups:
        ge = _el(root, "node_group", id=g.id, shared_dir=g.shared_dir)
        for name in g.nodes:
            _el(ge, "node_ref", name=name)
    return root


def _plan_xml(plan: Plan) -> etree._Element:
    root = _el(None, "plan", planner=plan.planner)
    for i in plan.instances:
        _el(root, "pg_instance", proc_group=i.proc_group, index=i.index, node=i.node)
    return root


def _ctrl_xml(ctrl: CtrlParams) -> etree._Element:
    root = _el(None, "ctrl_params")
    _el(root, "submission_method", name=ctrl.submission_method)
    if ctrl.propagation != "ssh":
        _el(root, "propagation", engine=ctrl.propagation)
    t = ctrl.transfer
    _el(root, "transfer_files", method=t.method, type=",".join(t.types),
        binlib_in_commondir=t.binlib_in_commondir, destdir=t.destdir)
    if ctrl.envs:
        envs = _el(root, "envs")
        for e in ctrl.envs:
            _el(envs, "env", name=e.name, value=e.value, action=e.action)
    _el(root, "planner", name=ctrl.planner)
    _el(root, "oversubscribe", value=ctrl.oversubscribe)
    if ctrl.constraints:
        cs = _el(root, "constraints")
        for c in ctrl.constraints:
            ce = _el(cs, "constraint", proc_group=c.proc_group, max_per_node=c.max_per_node,
                     collocate_with=c.collocate_with or None,
                     separate_from=c.separate_from or None)
            for p in c.predicates:
                _el(ce, "property", name=p.name, op=p.op, value=p.value)
    if ctrl.plugins:
        ps = _el(root, "plugins")
        for p in ctrl.plugins:
            _el(ps, "plugin", name=p.name, file=p.file)
    return root


def _status_xml(status: Status) -> etree._Element:
    root = _el(None, "status", deployment=status.deployment or None,
               planner=status.planner or None, started=_time(status.started),
               updated=_time(status.updated))
    for i in status.instances:
        ie = _el(root, "pg_instance", proc_group=i.proc_group, index=i.index, node=i.node,
                 state=i.state, launched=_time(i.launched), acked=_time(i.acked),
                 ended=_time(i.ended), message=i.message or None)
        for p in i.processes:
            pe = _el(ie, "process", id=p.id, index=p.index, state=p.state, pid=p.pid,
                     exit_code=p.exit_code, rundir=p.rundir or None, stdout=p.stdout or None,
                     stderr=p.stderr or None, started=_time(p.started), ended=_time(p.ended),
                     message=p.message or None)
            _pairs(pe, "value", p.values)
    if (f := status.failure) is not None:
        _el(root, "failure", message=f.message, node=f.node or None,
            proc_group=f.proc_group or None, index=f.index, process=f.process or None,
            process_index=f.process_index, exit_code=f.exit_code, stderr=f.stderr or None)
    return root


def _time(t: float | None) -> str | None:
    return None if t is None else repr(float(t))

