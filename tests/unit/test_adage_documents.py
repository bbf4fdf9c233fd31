"""ADAGE documents: schema validation errors, semantic checks, merging, dumps and round trips,
the examples and the documentation's XML blocks."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adage import documents
from adage.documents import DocumentError
from adage.model import (
    FILE_TYPES,
    SUBMISSION_METHODS,
    TRANSFER_METHODS,
    Constraint,
    CtrlParams,
    Dependency,
    EnvSetting,
    FileSpec,
    GenericAppl,
    Node,
    NodeGroup,
    PgInstance,
    Plan,
    PluginRef,
    Process,
    ProcGroup,
    PropertyPredicate,
    Resources,
    Transfer,
)
from adage.placeholders import PlaceholderError, Ref, refs, substitute
from adage.status import STATES, InstanceStatus, ProcessStatus, Status

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "adage"
CHAIN = (EXAMPLES / "chain.xml").read_text()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def chain_dir(tmp_path: Path) -> Path:
    """A folder with the chain's script, where variants of chain.xml can be written."""
    shutil.copy(EXAMPLES / "chain_node.py", tmp_path)
    return tmp_path


def line_of(text: str, marker: str) -> int:
    return text[: text.index(marker)].count("\n") + 1


# ------------------------------------------------------------------ schema errors
# (description, replaced, replacement, marker of the offending line, element, rule pattern)
BROKEN = [
    ("missing required attribute", '<proc_group id="B" type="generic" cardinality="1">',
     '<proc_group id="B" type="generic">', '<proc_group id="B"', "proc_group",
     r"required attribute 'cardinality' is missing"),
    ("wrong enumeration", '<dependency group="C" on="B" condition="ack"/>',
     '<dependency group="C" on="B" condition="done"/>', '<dependency group="C"', "dependency",
     r"attribute 'condition': 'done' is not one of 'ack', 'ready', 'exit'"),
    ("unknown element", "<arg>--name</arg><arg>C</arg>", "<bogus/><arg>--name</arg><arg>C</arg>",
     "<bogus/>", "bogus", r"element not allowed here"),
    ("bad cardinality", '<proc_group id="C" type="generic" cardinality="1">',
     '<proc_group id="C" type="generic" cardinality="0">', '<proc_group id="C"', "proc_group",
     r"attribute 'cardinality': '0' is not a positive integer"),
    ("dangling dependency group", '<dependency group="C" on="B"',
     '<dependency group="D" on="B"', '<dependency group="D"', "dependency",
     r"'D' names nothing: dependency/@group must name a proc_group"),
    ("duplicate group id", '<proc_group id="C"', '<proc_group id="B"',
     '<proc_group id="B" type="generic" cardinality="1">\n      <process id="stage">\n'
     "        <executable>chain_node.py</executable>\n        <arguments>\n"
     "          <arg>--name</arg><arg>C</arg>", "proc_group",
     r"duplicate 'B': proc_group ids must be unique"),
    ("attribute not allowed", '<file type="exe" src="chain_node.py"/>\n        </files>\n'
     "      </process>\n    </proc_group>\n    <proc_group id=\"C\"",
     '<file type="exe" src="chain_node.py" mode="755"/>\n        </files>\n'
     "      </process>\n    </proc_group>\n    <proc_group id=\"C\"", 'mode="755"', "file",
     r"attribute 'mode' is not allowed here"),
    ("bad identifier", '<proc_group id="A"', '<proc_group id="1A"', '<proc_group id="1A"',
     "proc_group", r"attribute 'id': '1A' does not match the pattern"),
    ("empty executable", "<executable>chain_node.py</executable>",
     "<executable></executable>", "<executable></executable>", "executable",
     r"^the value must not be empty$"),
    ("element inside a text element", "<arg>A</arg>", "<arg><b/></arg>", "<arg><b/></arg>",
     "arg", r"^child elements are not allowed in this element$"),
    ("text inside an empty element", '<file type="exe" src="chain_node.py"/>',
     '<file type="exe" src="chain_node.py">x</file>', ">x</file>", "file",
     r"^text is not allowed in this element$"),
    ("missing child", "<executable>chain_node.py</executable>\n        <arguments>\n"
     "          <arg>--name</arg><arg>A</arg>", "<arguments>\n          <arg>--name</arg>"
     "<arg>A</arg>", "<arguments>\n          <arg>--name</arg><arg>A</arg>", "arguments",
     r"element not allowed here; expected: executable"),
]


@pytest.mark.parametrize(("what", "old", "new", "marker", "element", "rule"), BROKEN,
                         ids=[b[0] for b in BROKEN])
def test_schema_errors_name_file_line_element_and_rule(
    chain_dir: Path, what: str, old: str, new: str, marker: str, element: str, rule: str
) -> None:
    assert old in CHAIN, what
    text = CHAIN.replace(old, new, 1)
    path = write(chain_dir, "broken.xml", text)
    with pytest.raises(DocumentError) as err:
        documents.read_appls([path])
    e = err.value
    assert (e.file, e.line, e.element) == (str(path), line_of(text, marker), element)
    assert re.search(rule, e.rule), e.rule
    assert str(e).startswith(f"{path}:{e.line}: <{element}>: ")


def test_malformed_xml_names_the_mismatched_element(chain_dir: Path) -> None:
    text = CHAIN.replace("</arguments>", "</argument>", 1)
    path = write(chain_dir, "bad.xml", text)
    with pytest.raises(DocumentError) as err:
        documents.load(path)
    assert (err.value.line, err.value.element) == (line_of(text, "</argument>"), "argument")
    assert "malformed XML" in err.value.rule


def test_truncated_xml(tmp_path: Path) -> None:
    path = write(tmp_path, "cut.xml", "<resources>\n  <node name=\"a\"")
    with pytest.raises(DocumentError) as err:
        documents.load(path)
    assert err.value.line == 2 and err.value.element == "node"


def test_unknown_root_and_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"<jxta>: no plugin reads documents with root"):
        documents.load(write(tmp_path, "x.xml", "<jxta/>"))
    with pytest.raises(DocumentError, match=r"missing.xml:0: <->: cannot read the file"):
        documents.load(tmp_path / "missing.xml")


def test_external_entities_are_not_resolved(tmp_path: Path) -> None:
    secret = write(tmp_path, "secret.txt", "s3cr3t")
    text = (f'<!DOCTYPE r [<!ENTITY x SYSTEM "file://{secret}">]>\n'
            '<plan planner="rr"><pg_instance proc_group="A" index="0" node="&x;"/></plan>')
    with pytest.raises(DocumentError) as err:
        documents.loads(text, "xxe.xml")
    assert "s3cr3t" not in str(err.value)


def test_wrong_document_kind(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r"<plan>: expected a <resources> document"):
        documents.read_resources([write(tmp_path, "p.xml", '<plan planner="x"/>')])


@pytest.mark.parametrize("doctype", [
    '<!DOCTYPE plan [<!ENTITY e "/bin/true">]>', '<!DOCTYPE plan SYSTEM "file:///etc/passwd">',
    "<!DOCTYPE plan>"])
def test_documents_declaring_a_dtd_are_refused(doctype: str) -> None:
    with pytest.raises(DocumentError) as err:
        documents.loads(f'<?xml version="1.0"?>\n{doctype}\n<plan planner="rr"/>', "d.xml")
    assert (err.value.file, err.value.line, err.value.element) == ("d.xml", 2, "!DOCTYPE")
    assert "document type declaration" in err.value.rule


def test_a_document_of_another_kind_given_as_application() -> None:
    path = EXAMPLES / "resources-4.xml"
    with pytest.raises(DocumentError) as err:
        documents.read_appls([path])
    assert (err.value.file, err.value.line, err.value.element) == (str(path), 3, "resources")
    assert err.value.rule.startswith("expected an application document here")


# ------------------------------------------------------------------ semantic checks
def test_dependency_on_unknown_group(chain_dir: Path) -> None:
    text = CHAIN.replace('group="C" on="B"', 'group="C" on="Z"')
    path = write(chain_dir, "a.xml", text)
    with pytest.raises(DocumentError) as err:
        documents.read_appls([path])
    assert (err.value.line, err.value.element) == (line_of(text, 'on="Z"'), "dependency")
    assert err.value.rule == "'Z' names no proc_group"


def test_dependency_cycle(chain_dir: Path) -> None:
    text = CHAIN.replace('<dependency group="C"',
                         '<dependency group="A" on="C"/>\n    <dependency group="C"')
    path = write(chain_dir, "a.xml", text)
    with pytest.raises(DocumentError) as err:
        documents.read_appls([path])
    assert err.value.element == "dependency"
    assert err.value.line in {line_of(text, f'<dependency group="{g}"') for g in "ABC"}
    cycle = re.search(r"dependency cycle: (.*) \(each", err.value.rule)[1].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"A", "B", "C"}
    waits = {("A", "C"), ("B", "A"), ("C", "B")}
    assert set(itertools.pairwise(cycle)) == waits


def test_placeholder_needs_a_dependency(chain_dir: Path) -> None:
    text = CHAIN.replace("@{B.host}:17102", "@{A.host}:17101").replace(
        '<dependency group="C" on="B" condition="ack"/>', "")
    path = write(chain_dir, "a.xml", text)
    with pytest.raises(DocumentError) as err:
        documents.read_appls([path])
    line_in_c = text[: text.rindex("<arg>@{A.host}")].count("\n") + 1  # B has the same arg
    assert (err.value.line, err.value.element) == (line_in_c, "arg")
    assert "proc_group 'C' must depend on 'A'" in err.value.rule


def test_placeholder_through_a_transitive_dependency(chain_dir: Path) -> None:
    text = CHAIN.replace("@{B.host}:17102", "@{A.host}:@{B.value.port}")
    appl = documents.read_appls([write(chain_dir, "a.xml", text)])
    assert appl.group("C").processes[0].args[-1] == "@{A.host}:@{B.value.port}"


@pytest.mark.parametrize(("placeholder", "rule"), [
    ("@{B.hots}", r"@\{B.hots\} is not a placeholder"),
    ("@{B[1].host}", r"'B' has only 1 instance"),
    ("@{Q.host}", r"'Q' names no proc_group"),
    ("@{B[0].count}", r"an instance index \[i\] goes only with"),
    ("@{self.count}", r"@\{self.count\}: self has only .index, .host, .urlhost and .group"),
    ("@{self.hosts}", r"self has only"),
    ("@{self.value.K}", r"self has only"),
    ("@{self[1].host}", r"self has only"),
    ("@{B.host", r"@\{B.host:17102: unclosed placeholder"),
])
def test_bad_placeholders(chain_dir: Path, placeholder: str, rule: str) -> None:
    text = CHAIN.replace("@{B.host}", placeholder)
    path = write(chain_dir, "a.xml", text)
    with pytest.raises(DocumentError) as err:
        documents.read_appls([path])
    assert (err.value.line, err.value.element) == (line_of(text, placeholder), "arg")
    assert re.search(rule, err.value.rule)


def test_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "a.xml", CHAIN)
    with pytest.raises(DocumentError) as err:
        documents.read_appls([path])
    assert (err.value.line, err.value.element) == (line_of(CHAIN, "<file "), "file")
    assert err.value.rule == f"file '{tmp_path / 'chain_node.py'}' does not exist"


def test_a_directory_is_not_a_file(chain_dir: Path) -> None:
    (chain_dir / "tools").mkdir()
    text = CHAIN.replace('<file type="exe" src="chain_node.py"/>',
                         '<file type="exe" src="chain_node.py"/><file type="data" src="tools"/>', 1)
    with pytest.raises(DocumentError) as err:
        documents.read_appls([write(chain_dir, "a.xml", text)])
    assert (err.value.line, err.value.element) == (line_of(text, 'src="tools"'), "file")
    assert err.value.rule == f"file '{chain_dir / 'tools'}' is a directory"


@pytest.mark.parametrize("dest", ["../../x", "/etc/x", "a/../../x", "..", "."])
def test_file_destinations_stay_in_the_run_directory(chain_dir: Path, dest: str) -> None:
    text = CHAIN.replace('<file type="exe" src="chain_node.py"/>',
                         f'<file type="exe" src="chain_node.py" dest="{dest}"/>', 1)
    with pytest.raises(DocumentError) as err:
        documents.read_appls([write(chain_dir, "a.xml", text)])
    assert (err.value.line, err.value.element) == (line_of(text, f'dest="{dest}"'), "file")
    assert "must be a relative path without '..'" in err.value.rule


def test_two_files_of_a_process_with_one_destination(chain_dir: Path) -> None:
    write(chain_dir, "other.py", "")
    text = CHAIN.replace('<file type="exe" src="chain_node.py"/>',
                         '<file type="exe" src="chain_node.py"/>\n'
                         '<file type="cfg" src="other.py" dest="chain_node.py"/>', 1)
    with pytest.raises(DocumentError) as err:
        documents.read_appls([write(chain_dir, "a.xml", text)])
    assert (err.value.line, err.value.element) == (line_of(text, 'src="other.py"'), "file")
    assert err.value.rule == (f"'chain_node.py' is also the destination of "
                              f"'{chain_dir / 'chain_node.py'}' in this process")
    same = CHAIN.replace('<file type="exe" src="chain_node.py"/>',
                         '<file type="exe" src="chain_node.py"/><file type="exe" '
                         'src="chain_node.py"/>', 1)  # the same source twice is harmless
    documents.read_appls([write(chain_dir, "b.xml", same)])


@pytest.mark.parametrize(("old", "new", "marker", "rule"), [
    ('id="B" type="generic"', 'id="B" type="foo"', 'type="foo"',
     "type 'foo': no plugin named 'foo' is installed (known: dask, generic, mpi)"),
    ('"A"', '"_common"', '<proc_group id="_common"',
     "proc_group id '_common' is reserved by the run directory layout"),
])
def test_group_types_and_reserved_ids(chain_dir: Path, old: str, new: str, marker: str,
                                      rule: str) -> None:
    text = CHAIN.replace(old, new).replace("@{A.host}", "@{_common.host}")
    with pytest.raises(DocumentError) as err:
        documents.read_appls([write(chain_dir, "a.xml", text)])
    assert (err.value.line, err.value.element, err.value.rule) == (line_of(text, marker),
                                                                   "proc_group", rule)


def test_pretty_printed_executable_is_trimmed(chain_dir: Path) -> None:
    text = CHAIN.replace("<executable>chain_node.py</executable>",
                         "<executable>\n          chain_node.py\n        </executable>")
    appl = documents.read_appls([write(chain_dir, "a.xml", text)])
    assert {p.executable for g in appl.groups for p in g.processes} == {"chain_node.py"}


@pytest.mark.parametrize(("old", "new", "rule"), [
    ('cardinality="1">\n      <process id="stage">\n        <executable>chain_node.py'
     '</executable>\n        <arguments>\n          <arg>--name</arg><arg>A',
     'cardinality="100000000000000000000">\n      <process id="stage">\n        <executable>'
     'chain_node.py</executable>\n        <arguments>\n          <arg>--name</arg><arg>A',
     r"'100000000000000000000' is too large \(at most 1000000\)"),
    ('name="CHAIN_STAGE"', 'name="A=B"', r"'A=B' does not match the pattern .*not starting"),
    ('condition="ack"', 'condition=" ack"', r"' ack' is not one of"),
])
def test_values_the_code_could_not_use_are_schema_errors(chain_dir: Path, old: str, new: str,
                                                          rule: str) -> None:
    text = CHAIN.replace(old, new, 1)
    assert text != CHAIN
    with pytest.raises(DocumentError, match=rule):
        documents.read_appls([write(chain_dir, "a.xml", text)])


# ------------------------------------------------------------------ merging
def test_merge_chain_and_dask() -> None:
    appl = documents.read_appls([EXAMPLES / "chain.xml", EXAMPLES / "dask.xml"])
    assert [g.id for g in appl.groups] == ["A", "B", "C", "dask-scheduler", "dask-workers",
                                           "dask-client"]
    assert Dependency("C", "B") in appl.dependencies
    assert Dependency("dask-workers", "dask-scheduler", "ready") in appl.dependencies


def test_duplicate_group_across_documents(chain_dir: Path) -> None:
    first = write(chain_dir, "one.xml", CHAIN)
    second = write(chain_dir, "two.xml", CHAIN.replace('id="A"', 'id="X"'))
    with pytest.raises(DocumentError) as err:
        documents.read_appls([first, second])
    e = err.value
    assert (e.file, e.line, e.element) == (str(second), line_of(CHAIN, 'id="B"'), "proc_group")
    assert e.rule == f"proc_group id 'B' is already used in {first}"


def test_dependency_across_documents(chain_dir: Path) -> None:
    text = CHAIN.replace('<dependency group="B" on="A" condition="ack"/>',
                         '<dependency group="A" on="dask-scheduler" condition="ready"/>\n'
                         '    <dependency group="B" on="A" condition="ack"/>').replace(
        "<arg>17101</arg>", "<arg>17101</arg><arg>@{dask-scheduler.host}</arg>")
    appl = documents.read_appls([write(chain_dir, "a.xml", text), EXAMPLES / "dask.xml"])
    assert Dependency("A", "dask-scheduler", "ready") in appl.dependencies


def test_no_application() -> None:
    with pytest.raises(DocumentError, match="no application document"):
        documents.read_appls([])


def test_resources_merge(tmp_path: Path) -> None:
    extra = write(tmp_path, "extra.xml", '<resources>\n<node name="big" cores="64"/>\n'
                  '<node_group id="nfs" shared_dir="/nfs"><node_ref name="big"/></node_group>'
                  "\n</resources>")
    res = documents.read_resources([EXAMPLES / "resources-4.xml", extra])
    assert [n.name for n in res.nodes] == ["local1", "local2", "local3", "local4", "big"]
    assert res.nodes[-1] == Node("big", cores=64)
    assert res.nodes[2].prop("gpu") == "1" and res.nodes[2].speed == 2.0
    assert [g.id for g in res.groups] == ["beta-nfs", "nfs"]
    dup = write(tmp_path, "dup.xml", '<resources>\n\n<node name="local2"/></resources>')
    with pytest.raises(DocumentError) as err:
        documents.read_resources([EXAMPLES / "resources-4.xml", dup])
    assert (err.value.file, err.value.line, err.value.element) == (str(dup), 3, "node")


@pytest.mark.parametrize(("node", "rule"), [
    ('<node name=" n5 "/>', r"attribute 'name': ' n5 ' does not match the pattern"),
    ('<node name=""/>', r"attribute 'name': '' does not match the pattern"),
    ('<node name="a#b"/>', r"does not match the pattern"),
    ('<node name="n" address="a b"/>', r"'a b' does not match the pattern .*host name"),
    ('<node name="n" address="-oProxyCommand"/>', r"not starting with '-'"),
    ('<node name="n" address="[::1]"/>', r"'\[::1\]' does not match the pattern"),
    ('<node name="n" scratch="scratch"/>',
     r"attribute 'scratch': 'scratch' must be an absolute path"),
    ('<node name="n" speed="NaN"/>', r"attribute 'speed': 'NaN' is not a finite number"),
    ('<node name="n" speed="INF"/>', r"'INF' is not a finite number"),
    ('<node name="n" speed="1e400"/>', r"'1e400' is not a finite number"),
    ('<node name="n"><submission method="ssh "/></node>', r"'ssh ' is not one of"),
])
def test_bad_nodes(tmp_path: Path, node: str, rule: str) -> None:
    path = write(tmp_path, "r.xml", f"<resources>\n{node}\n</resources>")
    with pytest.raises(DocumentError, match=rule) as err:
        documents.read_resources([path])
    assert err.value.line == 2


@pytest.mark.parametrize("address", ["::1", "fe80::1%eth0", "2001:db8::7", "10.0.0.1",
                                     "node-1.example.org"])
def test_node_addresses_are_bare_host_names_or_ip_addresses(tmp_path: Path,
                                                            address: str) -> None:
    path = write(tmp_path, "r.xml", f'<resources><node name="n" address="{address}"/>'
                                    "</resources>")
    assert documents.read_resources([path]).nodes[0].address == address


def test_node_groups_need_an_absolute_directory_and_their_own_nodes(tmp_path: Path) -> None:
    text = ('<resources><node name="a"/>\n<node_group id="g" shared_dir="/s">'
            '<node_ref name="a"/></node_group>\n<node_group id="h" shared_dir="/t">'
            '<node_ref name="a"/></node_group></resources>')
    with pytest.raises(DocumentError, match=r"r.xml:3: <node_ref>: node 'a' is already in "
                                            r"node_group 'g'"):
        documents.read_resources([write(tmp_path, "r.xml", text)])
    text = ('<resources><node name="a"/>\n<node_group id="g" shared_dir="/s">'
            '<node_ref name="a"/><node_ref name="a"/></node_group></resources>')
    with pytest.raises(DocumentError, match="already in node_group 'g'"):
        documents.read_resources([write(tmp_path, "r.xml", text)])
    text = ('<resources><node name="a"/>\n<node_group id="g" shared_dir="nfs">'
            '<node_ref name="a"/></node_group></resources>')
    with pytest.raises(DocumentError, match=r"r.xml:2: <node_group>: attribute 'shared_dir': "
                                            "'nfs' must be an absolute path"):
        documents.read_resources([write(tmp_path, "r.xml", text)])


def test_node_ref_to_unknown_node(tmp_path: Path) -> None:
    path = write(tmp_path, "r.xml", '<resources><node name="a"/>\n<node_group id="g" '
                 'shared_dir="/s">\n<node_ref name="b"/></node_group></resources>')
    with pytest.raises(DocumentError, match=r"r.xml:3: <node_ref>: 'b' names nothing"):
        documents.read_resources([path])


# ------------------------------------------------------------------ control parameters
def test_ctrl_defaults_and_examples() -> None:
    assert documents.read_ctrl(None) == CtrlParams()
    ctrl = documents.read_ctrl(EXAMPLES / "ctrl-local.xml")
    assert ctrl.envs == (EnvSetting("ADAGE_EXAMPLE", "1", "set"),
                         EnvSetting("PATH", "/usr/local/bin", "add"))
    assert ctrl.transfer == Transfer() and ctrl.planner == "round-robin"
    appl = documents.read_appls([EXAMPLES / "chain.xml", EXAMPLES / "dask.xml"])
    ctrl = documents.read_ctrl(EXAMPLES / "ctrl-constraints.xml", appl)
    assert ctrl.oversubscribe and ctrl.planner == "capacity"
    assert ctrl.transfer == Transfer("local", ("cfg", "data", "exe", "lib"), True, "scratch")
    assert ctrl.constraint("dask-workers") == Constraint(
        "dask-workers", (PropertyPredicate("gpu", "ge", "1"),
                         PropertyPredicate("cluster", "in", "alpha,beta")), max_per_node=2)
    assert ctrl.constraint("C").separate_from == "A"


def test_ctrl_partial_document_keeps_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "c.xml", '<ctrl_params><transfer_files destdir="shared"/>'
                 '<plugins><plugin name="mpi" file="mpi.xml"/></plugins></ctrl_params>')
    ctrl = documents.read_ctrl(path)
    assert ctrl.transfer == Transfer(destdir="shared")
    assert ctrl.plugins == (PluginRef("mpi", str(tmp_path / "mpi.xml")),)
    assert ctrl.submission_method == "local" and not ctrl.oversubscribe


def test_ctrl_constraint_on_unknown_group(tmp_path: Path) -> None:
    appl = documents.read_appls([EXAMPLES / "chain.xml"])
    path = write(tmp_path, "c.xml", '<ctrl_params>\n<constraints>\n<constraint proc_group="B"/>'
                 '\n<constraint proc_group="A" collocate_with="Q"/>\n</constraints></ctrl_params>')
    with pytest.raises(DocumentError) as err:
        documents.read_ctrl(path, appl)
    assert (err.value.line, err.value.element) == (4, "constraint")
    assert err.value.rule == "collocate_with 'Q' names no proc_group of the application"


@pytest.mark.parametrize(("value", "rule"), [
    ("@{Q.host}", r"@\{Q.host\}: 'Q' names no proc_group"),
    ("@{A[3].host}", r"'A' has only 1 instance"),
    ("@{A.value.port}", r"reported values cannot be used in the control parameters"),
    ("@{self.count}", r"self has only"),
    ("@{A.host", r"unclosed"),
])
def test_ctrl_env_placeholders(tmp_path: Path, value: str, rule: str) -> None:
    appl = documents.read_appls([EXAMPLES / "chain.xml"])
    path = write(tmp_path, "c.xml", f'<ctrl_params><envs>\n<env name="X" value="{value}"/>'
                                    "</envs></ctrl_params>")
    with pytest.raises(DocumentError, match=rule) as err:
        documents.read_ctrl(path, appl)
    assert (err.value.line, err.value.element) == (2, "env")


def test_ctrl_env_placeholders_naming_groups_are_resolved(tmp_path: Path) -> None:
    appl = documents.read_appls([EXAMPLES / "chain.xml"])
    path = write(tmp_path, "c.xml", '<ctrl_params><envs><env name="FIRST" value="@{A.host} '
                                    '@{self.index}"/></envs></ctrl_params>')
    assert documents.read_ctrl(path, appl).envs == (EnvSetting("FIRST",
                                                               "@{A.host} @{self.index}"),)


def test_ctrl_rejects_bad_values(tmp_path: Path) -> None:
    for body, rule in [
        ('<transfer_files type="cfg,bin"/>', r"'cfg,bin' does not match"),
        ('<transfer_files method="ftp"/>', r"'ftp' is not one of"),
        ('<oversubscribe value="maybe"/>', r"'maybe' is not a boolean"),
        ('<planner name="round robin"/>', r"does not match"),
        ('<transfer_files destdir=" shared"/>', r"' shared' is not one of"),
        ('<envs><env name="A=B" value="1"/></envs>', r"'A=B' does not match the pattern"),
        ('<constraints><constraint proc_group="A"><property name="x" op="like" value="1"/>'
         "</constraint></constraints>", r"'like' is not one of"),
    ]:
        with pytest.raises(DocumentError, match=rule):
            documents.read_ctrl(write(tmp_path, "c.xml", f"<ctrl_params>{body}</ctrl_params>"))


# ------------------------------------------------------------------ dumps and round trips
IDS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True)
XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"),
                                 include_characters="\t\n", exclude_characters="@\ufffe\uffff"),
                   max_size=12)
THIS_FILE = str(Path(__file__).resolve())


@st.composite
def appls(draw: st.DrawFn) -> GenericAppl:
    ids = draw(st.lists(IDS, min_size=1, max_size=4, unique=True))
    groups = []
    for gid in ids:
        procs = tuple(
            Process(pid, draw(XML_TEXT.map(str.strip).filter(bool)),
                    tuple(draw(st.lists(XML_TEXT, max_size=3))),
                    tuple(draw(st.lists(st.tuples(IDS, XML_TEXT), max_size=2))),
                    tuple(FileSpec(t, THIS_FILE, draw(st.sampled_from(["", "x.py"])))
                          for t in draw(st.lists(st.sampled_from(FILE_TYPES), max_size=2))),
                    draw(st.integers(1, 3)))
            for pid in draw(st.lists(IDS, min_size=1, max_size=2, unique=True)))
        groups.append(ProcGroup(gid, draw(st.sampled_from(["generic", "mpi", "dask"])),
                                draw(st.integers(1, 50)), procs,
                                tuple(draw(st.lists(st.tuples(IDS, XML_TEXT), max_size=2)))))
    pairs = {(ids[i], ids[j]) for i in range(len(ids)) for j in range(i)}
    chosen = draw(st.lists(st.sampled_from(sorted(pairs)), unique=True)) if pairs else []
    deps = tuple(Dependency(g, on, draw(st.sampled_from(["ack", "ready", "exit"])))
                 for g, on in chosen)
    return GenericAppl(tuple(groups), deps)


nodes = st.builds(
    Node, name=IDS, cores=st.integers(1, 512),
    speed=st.floats(0.001, 1e6, allow_nan=False, allow_infinity=False),
    memory=st.integers(0, 10**7),
    properties=st.lists(st.tuples(IDS, XML_TEXT), max_size=3, unique_by=lambda p: p[0]).map(tuple),
    submission=st.lists(st.sampled_from(SUBMISSION_METHODS), min_size=1, max_size=3).map(tuple),
    transfer=st.lists(st.sampled_from(TRANSFER_METHODS), min_size=1, max_size=3).map(tuple),
    scratch=st.sampled_from(["/tmp", "/scratch/adage"]), address=st.sampled_from(["", "10.0.0.1"]),
)


@st.composite
def resources(draw: st.DrawFn) -> Resources:
    ns = draw(st.lists(nodes, min_size=1, max_size=4, unique_by=lambda n: n.name))
    gids = draw(st.lists(IDS, max_size=2, unique=True))
    owner = {n.name: draw(st.sampled_from([None, *gids])) for n in ns}  # one group at most
    groups = (NodeGroup(gid, "/nfs/" + gid, tuple(n for n, o in owner.items() if o == gid))
              for gid in gids)
    return Resources(tuple(ns), tuple(g for g in groups if g.nodes))


plans = st.builds(Plan, planner=st.sampled_from(["round-robin", "capacity"]),
                  instances=st.lists(st.builds(PgInstance, IDS, st.integers(0, 99), IDS),
                                     unique_by=lambda i: (i.proc_group, i.index)).map(tuple))

ctrls = st.builds(
    CtrlParams,
    submission_method=st.sampled_from(SUBMISSION_METHODS),
    transfer=st.builds(Transfer, st.sampled_from(TRANSFER_METHODS),
                       st.lists(st.sampled_from(FILE_TYPES), max_size=5).map(tuple),
                       st.booleans(), st.sampled_from(["scratch", "shared"])),
    envs=st.lists(st.builds(EnvSetting, IDS, XML_TEXT, st.sampled_from(["set", "add"])),
                  max_size=3).map(tuple),
    planner=st.from_regex(r"[A-Za-z0-9_.\-]{1,12}", fullmatch=True),
    constraints=st.lists(st.builds(
        Constraint, IDS,
        st.lists(st.builds(PropertyPredicate, IDS,
                           st.sampled_from(["eq", "ne", "lt", "le", "gt", "ge", "in"]),
                           XML_TEXT), max_size=2).map(tuple),
        st.integers(0, 9), st.sampled_from(["", "A"]), st.sampled_from(["", "B"])),
        max_size=3, unique_by=lambda c: c.proc_group).map(tuple),
    plugins=st.lists(st.builds(PluginRef, IDS, st.sampled_from(["", "/etc/adage/mpi.xml"])),
                     max_size=2, unique_by=lambda p: p.name).map(tuple),
    oversubscribe=st.booleans(),
)

times = st.none() | st.floats(0, 4e9, allow_nan=False)
process_statuses = st.builds(
    ProcessStatus, IDS, st.integers(0, 9), st.sampled_from(STATES),
    st.none() | st.integers(1, 2**22), st.none() | st.integers(-64, 255),
    XML_TEXT, XML_TEXT, XML_TEXT, times, times, XML_TEXT,
    st.lists(st.tuples(IDS, XML_TEXT), max_size=2).map(tuple))
statuses = st.builds(
    Status,
    st.lists(st.builds(InstanceStatus, IDS, st.integers(0, 9), IDS, st.sampled_from(STATES),
                       st.lists(process_statuses, max_size=3,
                                unique_by=lambda p: (p.id, p.index)).map(tuple),
                       times, times, times, XML_TEXT),
             max_size=3, unique_by=lambda i: (i.proc_group, i.index)).map(tuple),
    XML_TEXT, st.sampled_from(["", "round-robin"]), times, times)

READERS = {
    "generic": lambda p: documents.read_appls([p]),
    "res": lambda p: documents.read_resources([p]),
    "plan": documents.read_plan,
    "ctrl": documents.read_ctrl,
    "status": documents.read_status,
}
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def round_trip(kind: str, obj: object) -> None:
    text = documents.dump(kind, obj)
    documents.loads(text, f"<{kind} dump>")  # valid against our schema
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder, "dump.xml")
        path.write_text(text, encoding="utf-8")
        assert READERS[kind](path) == obj


@SETTINGS
@given(appls())
def test_generic_round_trip(appl: GenericAppl) -> None:
    round_trip("generic", appl)


@SETTINGS
@given(resources())
def test_resources_round_trip(res: Resources) -> None:
    round_trip("res", res)


@SETTINGS
@given(plans)
def test_plan_round_trip(plan: Plan) -> None:
    round_trip("plan", plan)


@SETTINGS
@given(ctrls)
def test_ctrl_round_trip(ctrl: CtrlParams) -> None:
    round_trip("ctrl", ctrl)


@SETTINGS
@given(statuses)
def test_status_round_trip(status: Status) -> None:
    round_trip("status", status)


def test_examples_round_trip() -> None:
    appl = documents.read_appls([EXAMPLES / "chain.xml", EXAMPLES / "dask.xml"])
    round_trip("generic", appl)
    round_trip("res", documents.read_resources([EXAMPLES / "resources-4.xml"]))
    round_trip("ctrl", documents.read_ctrl(EXAMPLES / "ctrl-constraints.xml"))


def test_dump_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown dump kind 'gadget'"):
        documents.dump("gadget", Plan("x", ()))


# ------------------------------------------------------------------ placeholders
def test_placeholder_parsing() -> None:
    found = list(refs("a @{A.host} @{B[2].value.port} @{self.index} @{C.hosts} @@{D.count}"))
    assert found == [Ref("@{A.host}", "A", "host"), Ref("@{B[2].value.port}", "B", "value", 2,
                                                        "port"),
                     Ref("@{self.index}", "self", "index"), Ref("@{C.hosts}", "C", "hosts")]
    assert list(refs("@{A.urlhost}@{A[1].urlhost}@{self.urlhost}")) == [
        Ref("@{A.urlhost}", "A", "urlhost"), Ref("@{A[1].urlhost}", "A", "urlhost", 1),
        Ref("@{self.urlhost}", "self", "urlhost")]
    assert substitute("x@{A[1].host}:@{A.count}, user@@host",
                      lambda r: f"{r.group}{r.index}{r.what}") == "xA1host:A0count, user@host"
    with pytest.raises(PlaceholderError):
        list(refs("@{self.pid}"))
    with pytest.raises(PlaceholderError, match="unclosed"):
        substitute("@{A.host", lambda r: "x")


@given(st.text())
def test_escaped_text_substitutes_to_itself(text: str) -> None:
    def fail(ref: Ref) -> str:
        raise AssertionError(ref)

    assert substitute(text.replace("@", "@@"), fail) == text


# ------------------------------------------------------------------ examples and docs
def test_every_example_validates() -> None:
    found = sorted(EXAMPLES.glob("*.xml"))
    assert len(found) >= 6
    for path in found:
        documents.load(path)


def test_mpi_example_with_its_binary_built(tmp_path: Path) -> None:
    for name in ("mpi-ring.xml", "ring.c"):
        shutil.copy(EXAMPLES / name, tmp_path)
    subprocess.run(["mpicc", "-O2", "-o", "ring", "ring.c"], cwd=tmp_path, check=True)
    appl = documents.read_appls([tmp_path / "mpi-ring.xml"])
    assert appl.groups[0].processes[0].files == (FileSpec("exe", str(tmp_path / "ring")),)


DOC = ROOT / "docs" / "adage-documents.md"


def xml_blocks(markdown: str) -> list[tuple[int, str]]:
    return [(markdown.count("\n", 0, m.start()) + 2, m[1])
            for m in re.finditer(r"^```xml\n(.*?)^```", markdown, re.S | re.M)]


def test_every_xml_block_of_the_documentation_validates() -> None:
    blocks = xml_blocks(DOC.read_text())
    roots = set()
    for line, text in blocks:
        tree = documents.loads(text, f"{DOC}:{line}")
        roots.add(etree.QName(tree.getroot()).localname)
    assert roots >= {"generic_appl_descr", "resources", "ctrl_params", "plan", "status",
                     "mpi_application", "dask_application"}


def test_documentation_lists_every_schema() -> None:
    text = DOC.read_text()
    for xsd in (ROOT / "src" / "adage" / "schemas").glob("*.xsd"):
        assert xsd.name in text


def test_python_blocks_of_the_documentation_run(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), re.S | re.M)
    assert blocks
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), {})
    assert "<generic_appl_descr>" in capsys.readouterr().out


# ------------------------------------------------------------ unusual but valid, and malformed
ODD = """<?xml version="1.0" encoding="{enc}"?>
<!-- before the root --><?pi before?>
<generic_appl_descr><!-- c --><?pi x?>
  <proc_groups>
    <proc_group cardinality="1" type="generic" id="cafe"><!-- c -->
      <param value="&#x41;&amp;&lt;" name="n"/>
      <process id="p"><executable>x</executable>
        <arguments><arg>\u00e9t\u00e9</arg><arg>a<![CDATA[ & ]]>b</arg></arguments>
      </process>
    </proc_group>
  </proc_groups>
  <dependencies><!-- none --></dependencies>
</generic_appl_descr>
<!-- after the root --><?pi after?>
"""


@pytest.mark.parametrize(("enc", "bom"), [("ISO-8859-1", b""), ("UTF-8", b"\xef\xbb\xbf"),
                                          ("UTF-8", b"")])
def test_encodings_comments_and_references(tmp_path: Path, enc: str, bom: bytes) -> None:
    text = ODD.format(enc=enc)
    path = tmp_path / "odd.xml"
    path.write_bytes(bom + text.encode(enc))
    (group,) = documents.read_appls([path]).groups
    assert group.params == (("n", "A&<"),)
    assert group.processes[0].args == ("\u00e9t\u00e9", "a & b")


def test_a_str_document_ignores_its_declared_encoding() -> None:
    text = ODD.format(enc="ISO-8859-1")
    tree = documents.loads(text, "odd.xml")
    assert tree.getroot().find(".//arg").text == "\u00e9t\u00e9"
    assert documents.loads("\ufeff" + text).getroot().find(".//arg").text == "\u00e9t\u00e9"


@pytest.mark.parametrize("root", ['<generic_appl_descr xmlns="urn:adage">',
                                  '<a:generic_appl_descr xmlns:a="urn:adage">'])
def test_namespaced_documents_are_refused_clearly(root: str) -> None:
    tag = root.split()[0][1:]
    with pytest.raises(DocumentError) as err:
        documents.loads(f"\n{root}<proc_groups/></{tag}>", "ns.xml")
    assert (err.value.line, err.value.element) == (2, "generic_appl_descr")
    assert err.value.rule.startswith("namespace 'urn:adage': ADAGE documents use no XML namespace")


def test_numbers_booleans_and_tokens_as_xsd_writes_them(tmp_path: Path) -> None:
    res = write(tmp_path, "r.xml", '<resources><node memory=" 0004096 " speed=" +2.5e0 " '
                f'cores="+016" name="n"/><node name="m" memory="{"0" * 5000}1"/></resources>')
    assert [(n.cores, n.speed, n.memory) for n in documents.read_resources([res]).nodes] == [
        (16, 2.5, 4096), (1, 1.0, 1)]
    ctrl = write(tmp_path, "c.xml", '<ctrl_params><oversubscribe value=" 1 "/><transfer_files '
                 'binlib_in_commondir="\ntrue"/><constraints><constraint max_per_node="+02" '
                 'proc_group="A"/></constraints></ctrl_params>')
    got = documents.read_ctrl(ctrl)
    assert got.oversubscribe and got.transfer.binlib_in_commondir
    assert got.constraints[0].max_per_node == 2
    plan = write(tmp_path, "p.xml", '<plan planner="  round-robin "><pg_instance node="n" '
                 'index=" +01 " proc_group="A"/></plan>')
    assert documents.read_plan(plan) == Plan("round-robin", (PgInstance("A", 1, "n"),))
    status = write(tmp_path, "s.xml", '<status planner=" rr "><pg_instance proc_group="A" '
                   'index="0" node="n" state="exited"><process id=" p " index="00" '
                   'state="exited" exit_code=" -0001 "/></pg_instance></status>')
    proc = documents.read_status(status).instances[0].processes[0]
    assert (proc.id, proc.index, proc.exit_code) == ("p", 0, -1)


def test_integers_beyond_pythons_digits_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "r.xml", f'<resources>\n<node name="n" cores="1{"0" * 5000}"/>'
                 "</resources>")
    with pytest.raises(DocumentError, match=r"r.xml:2: <node>: attribute 'cores': '1000.*' is "
                                            "too large"):
        documents.read_resources([path])


def test_node_ranges_are_not_expanded(tmp_path: Path) -> None:
    path = write(tmp_path, "r.xml", '<resources><node name="node[1-4,7]"/></resources>')
    with pytest.raises(DocumentError, match=r"<node>: attribute 'name': 'node\[1-4,7\]' does not "
                                            r"match .*node ranges .* are not expanded"):
        documents.read_resources([path])


LAUGHS = ('<?xml version="1.0"?>\n<!-- billion laughs -->\n<!DOCTYPE r [<!ENTITY a "ha">'
          + "".join(f'<!ENTITY {e} "{f"&{p};" * 10}">' for p, e in itertools.pairwise("abcdefghij"))
          + "]>\n<r>&j;</r>")


@pytest.mark.parametrize(("text", "line", "element", "rule"), [
    ("", 0, "-", "the document is empty"),
    ("\ufeff \n\n", 0, "-", "the document is empty"),
    ('<status>\n<pg_instance proc_group="A" proc_group="B"/><failure message="m"/></status>', 2,
     "pg_instance", "malformed XML: Attribute proc_group redefined"),
    (LAUGHS, 3, "!DOCTYPE", "a document type declaration (DTD, entities) is not allowed"),
    ('<ctrl_params>\n<planner name="a"/>\n<planner name="b"/></ctrl_params>', 3, "planner",
     "element not allowed here (a repeated <planner>: it may be given once)"),
    ('<dask_application id="d"><scheduler port="0"/><workers count="1"/></dask_application>', 1,
     "scheduler", "attribute 'port': '0' is too small (at least 1)"),
    ('<resources><node name="n" speed="0"/></resources>', 1, "node",
     "attribute 'speed': '0' is too small (it must be above 0)"),
    ('<resources><node name="n" speed="0x1"/></resources>', 1, "node",
     "attribute 'speed': '0x1' is not a number above 0"),
    ('<status started="x"/>', 1, "status", "attribute 'started': 'x' is not a time"),
])
def test_malformed_documents_name_line_element_and_rule(text: str, line: int, element: str,
                                                        rule: str) -> None:
    with pytest.raises(DocumentError) as err:
        documents.loads(text, "bad.xml")
    assert (err.value.file, err.value.line, err.value.element) == ("bad.xml", line, element)
    assert err.value.rule.startswith(rule), err.value.rule


def test_a_directory_or_nothing_is_not_a_document(tmp_path: Path) -> None:
    with pytest.raises(DocumentError, match=r":0: <->: cannot read the file: Is a directory"):
        documents.read_resources([tmp_path])
    with pytest.raises(DocumentError, match=r":0: <->: cannot read the file: No such file"):
        documents.read_ctrl(tmp_path / "none.xml")


def test_self_dependency_is_a_cycle(chain_dir: Path) -> None:
    text = CHAIN.replace('group="C" on="B"', 'group="C" on="C"')
    with pytest.raises(DocumentError, match=r"<dependency>: dependency cycle: C -> C"):
        documents.read_appls([write(chain_dir, "a.xml", text)])
