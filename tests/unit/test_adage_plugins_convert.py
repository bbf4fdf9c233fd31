"""The converters of the generic, MPI and Dask plugins, and plugin discovery."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from adage import documents, plugin
from adage.model import Dependency, FileSpec, GenericAppl, Process, ProcGroup
from adage.plugins.dask import DaskPlugin
from adage.plugins.generic import GenericPlugin
from adage.plugins.mpi import MpiPlugin

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "adage"


def convert(cls: type[plugin.Plugin], path: Path) -> GenericAppl:
    return cls().convert(documents.load(path), path)


def test_plugins_are_found_by_entry_point_and_root() -> None:
    found = plugin.available()
    assert {found[n] for n in ("generic", "mpi", "dask")} == {GenericPlugin, MpiPlugin,
                                                             DaskPlugin}
    for cls in (GenericPlugin, MpiPlugin, DaskPlugin):
        assert isinstance(plugin.for_root(cls.root), cls)
        assert (documents.SCHEMA_DIR / cls.schema).is_file()
        assert documents.schema_name(cls.root) == cls.schema


def test_generic_converter_keeps_the_document() -> None:
    appl = convert(GenericPlugin, EXAMPLES / "chain.xml")
    script = FileSpec("exe", str(EXAMPLES / "chain_node.py"))
    assert appl.groups[1] == ProcGroup("B", "generic", 1, (Process(
        "stage", "chain_node.py", ("--name", "B", "--port", "17102", "--after", "@{A.host}:17101"),
        files=(script,)),))
    assert appl.groups[0].processes[0].env == (("CHAIN_STAGE", "@{self.group}"),)
    assert appl.dependencies == (Dependency("B", "A"), Dependency("C", "B"))


def test_generic_params_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "g.xml"
    path.write_text('<generic_appl_descr><proc_groups><proc_group id="s" type="mpi" '
                    'cardinality="8"><param name="flavour" value="mpich"/><process id="p" '
                    'cardinality="2"><executable>/bin/true</executable><files><file type="data"'
                    ' src="in/../d.txt" dest="input"/></files></process></proc_group>'
                    "</proc_groups><dependencies/></generic_appl_descr>")
    (group,) = convert(GenericPlugin, path).groups
    assert group.params == (("flavour", "mpich"),) and group.cardinality == 8
    assert group.processes[0] == Process("p", "/bin/true", cardinality=2, files=(
        FileSpec("data", str(tmp_path / "d.txt"), "input"),))


def test_mpi_converter() -> None:
    appl = convert(MpiPlugin, EXAMPLES / "mpi-ring.xml")
    assert appl == GenericAppl((ProcGroup(
        "ring", "mpi", 4,
        (Process("rank", "ring", ("3",), (("OMPI_MCA_btl", "self,tcp"),),
                 (FileSpec("exe", str(EXAMPLES / "ring")),)),),
        (("flavour", "openmpi"), ("mpirun", "mpirun"), ("mpirun_option", "--oversubscribe")),
    ),))


def test_mpi_converter_defaults(tmp_path: Path) -> None:
    path = tmp_path / "m.xml"
    path.write_text('<mpi_application id="cg" processes="16"><executable>/opt/cg</executable>'
                    "</mpi_application>")
    (group,) = convert(MpiPlugin, path).groups
    assert group.params == (("flavour", "openmpi"), ("mpirun", "mpirun"))
    assert group.processes == (Process("rank", "/opt/cg"),) and group.cardinality == 16


def test_mpi_rejects_unknown_flavour(tmp_path: Path) -> None:
    path = tmp_path / "m.xml"
    path.write_text('<mpi_application id="cg" flavour="lam" processes="2">\n'
                    "<executable>x</executable></mpi_application>")
    with pytest.raises(documents.DocumentError, match=r"m.xml:1: <mpi_application>: attribute "
                       r"'flavour': 'lam' is not one of 'openmpi', 'mpich'"):
        documents.load(path)


def test_dask_converter() -> None:
    appl = convert(DaskPlugin, EXAMPLES / "dask.xml")
    py = sys.executable
    params = (("python", py), ("port", "8786"))
    sched, workers, client = appl.groups
    assert sched == ProcGroup("dask-scheduler", "dask", 1, (Process(
        "scheduler", py, ("-m", "distributed.cli.dask_scheduler", "--port", "8786",
                          "--no-dashboard")),), (("role", "scheduler"), *params))
    assert workers == ProcGroup("dask-workers", "dask", 4, (Process(
        "worker", py, ("-m", "distributed.cli.dask_worker", "tcp://@{dask-scheduler.urlhost}:8786",
                       "--nthreads", "1", "--memory-limit", "512MiB",
                       "--name", "dask-workers-@{self.index}", "--no-dashboard")),),
        (("role", "workers"), *params))
    assert client == ProcGroup("dask-client", "dask", 1, (Process(
        "client", py, ("dask_client.py", "--n", "1000"),
        (("DASK_SCHEDULER_ADDRESS", "tcp://@{dask-scheduler.urlhost}:8786"),
         ("DASK_WORKERS", "@{dask-workers.count}")),
        (FileSpec("cfg", str(EXAMPLES / "dask_client.py"), "dask_client.py"),)),),
        (("role", "client"), *params))
    assert appl.dependencies == (Dependency("dask-workers", "dask-scheduler", "ready"),
                                 Dependency("dask-client", "dask-scheduler", "ready"),
                                 Dependency("dask-client", "dask-workers", "ack"))


def test_dask_modules_exist() -> None:
    for module in ("distributed.cli.dask_scheduler", "distributed.cli.dask_worker"):
        assert importlib.util.find_spec(module) is not None


def test_dask_without_client_with_dashboard(tmp_path: Path) -> None:
    path = tmp_path / "d.xml"
    path.write_text('<dask_application id="x" python="/usr/bin/python3"><scheduler port="9000" '
                    'dashboard="true"/><workers count="2"/></dask_application>')
    appl = convert(DaskPlugin, path)
    assert [g.id for g in appl.groups] == ["x-scheduler", "x-workers"]
    sched, workers = appl.groups
    assert sched.processes[0].executable == "/usr/bin/python3"
    assert sched.processes[0].args[-3:] == ("--dashboard", "--dashboard-address", ":8787")
    assert "tcp://@{x-scheduler.urlhost}:9000" in workers.processes[0].args
    assert workers.processes[0].args[3:7] == ("--nthreads", "1", "--memory-limit", "auto")
    assert appl.dependencies == (Dependency("x-workers", "x-scheduler", "ready"),)


def test_dask_rejects_bad_memory(tmp_path: Path) -> None:
    path = tmp_path / "d.xml"
    path.write_text('<dask_application id="x">\n<workers count="2" memory="lots"/>'
                    "</dask_application>")
    with pytest.raises(documents.DocumentError, match=r"d.xml:2: <workers>: attribute 'memory'"):
        documents.load(path)


def test_dask_converted_groups_pass_the_merge_checks() -> None:
    appl = documents.read_appls([EXAMPLES / "dask.xml"])
    assert documents.ancestors(appl, "dask-client") == {"dask-scheduler", "dask-workers"}


# ------------------------------------------------------------ text and values as XSD reads them
def test_text_is_every_text_and_cdata_part_without_comments(tmp_path: Path) -> None:
    path = tmp_path / "g.xml"
    path.write_text('<generic_appl_descr><proc_groups><proc_group cardinality=" +003 " '
                    'type="generic" id="A"><?pi x?><process cardinality="0002" id="p">'
                    "<executable>\n  pro<!-- c -->g<?pi?>.sh\n</executable><arguments>"
                    "<arg><!--c-->lead</arg><arg>x<![CDATA[<&>]]>y</arg><arg>&#x41;&amp;</arg>"
                    "<arg> two\n lines </arg><arg/></arguments></process></proc_group>"
                    "</proc_groups></generic_appl_descr>")
    (group,) = convert(GenericPlugin, path).groups
    assert group.cardinality == 3
    assert group.processes == (Process("p", "prog.sh", ("lead", "x<&>y", "A&", " two\n lines ",
                                                        ""), cardinality=2),)


def test_only_xml_whitespace_is_trimmed(tmp_path: Path) -> None:
    path = tmp_path / "g.xml"
    path.write_text('<mpi_application id="r" processes="1"><executable>\u00a0x\t</executable>'
                    "</mpi_application>", encoding="utf-8")
    assert convert(MpiPlugin, path).groups[0].processes[0].executable == "\u00a0x"


def test_mpi_options_with_comments_and_cdata(tmp_path: Path) -> None:
    path = tmp_path / "m.xml"
    path.write_text('<mpi_application processes=" 04 " id="r"><executable><?pi?>ring'
                    "</executable><mpirun><option><!--c-->--bind-to</option><option>"
                    "<![CDATA[ core ]]></option></mpirun></mpi_application>")
    (group,) = convert(MpiPlugin, path).groups
    assert group.cardinality == 4 and group.processes[0].executable == "ring"
    assert [v for k, v in group.params if k == "mpirun_option"] == ["--bind-to", "core"]


@pytest.mark.parametrize(("dashboard", "shown"), [(" 1 ", True), ("true", True), ("0", False),
                                                  (" false", False)])
def test_dask_values_as_xsd_writes_them(tmp_path: Path, dashboard: str, shown: bool) -> None:
    path = tmp_path / "d.xml"
    path.write_text(f'<dask_application id="x"><scheduler dashboard="{dashboard}" port=" +09000"'
                    ' dashboard_port="08788 "/><workers threads=" +004 " count="002"/>'
                    "</dask_application>")
    sched, workers = convert(DaskPlugin, path).groups
    assert ("--dashboard-address" in sched.processes[0].args) == shown
    if shown:
        assert sched.processes[0].args[-1] == ":8788"
    assert sched.processes[0].args[3] == "9000" and workers.cardinality == 2
    assert workers.processes[0].args[2:5] == ("tcp://@{x-scheduler.urlhost}:9000", "--nthreads",
                                              "4")
