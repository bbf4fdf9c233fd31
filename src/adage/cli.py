"""``adage``: convert (default), plan (-p), dry-run (-n) or deploy (-x) an application; and
``adage status [ID]`` / ``adage clean [ID]`` for a deployment made earlier.

Exit codes: 0 success, 1 failure (bad document, planning or deployment error, a failed process
with --wait), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from adage import documents
from adage.deploy import statedir
from adage.deploy.choice import KINDS
from adage.deploy.deployer import DETACH_WAIT, Deployer, Options
from adage.deploy.progress import Progress
from adage.deploy.sources import SourceError, local_nodes
from adage.deploy.ssh import SshOptions
from adage.errors import AdageError
from adage.model import Resources
from adage.planners import get_planner
from adage.resources.oar import job_resources, oar_nodefile
from adage.status import PState, Status
from oarlib.sshopts import OPTION

if TYPE_CHECKING:
    from rich.table import Table


class OutputError(AdageError, ValueError):
    """A dump that cannot be written (``-F``)."""


def seconds(text: str) -> float:
    """A duration option: a number of seconds above 0."""
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return value


def ssh_option(text: str) -> str:
    """One option of ssh's ``-o``: ``Keyword=value`` or ``Keyword value``, on one line."""
    if not OPTION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an ssh option (Keyword=value, as "
                                         "ssh -o takes it)")
    return text


def job_id(text: str) -> int:
    """An OAR job id: an integer above 0."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not an OAR job id (an integer above 0)")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="adage",
        description="Automatic deployment of distributed applications. Without -p/-n/-x, only "
                    "convert the application documents to the generic description. "
                    "Also: 'adage status [ID]' and 'adage clean [ID]'.")
    p.add_argument("-a", "--appl", action="append", default=[], metavar="FILE",
                   help="application document (any plugin); repeat to merge several")
    p.add_argument("-c", "--ctrl", metavar="FILE", help="control parameters")
    p.add_argument("-r", "--res", metavar="FILE", help="resource document")
    p.add_argument("-R", "--addres", action="append", default=[], metavar="FILE",
                   help="add a resource document (repeatable)")
    p.add_argument("-o", "--oarnodefile", metavar="FILE",
                   help="resources from an OAR node file (one line per core)")
    p.add_argument("-j", "--jobid", type=job_id, metavar="ID", help="resources of an OAR job")
    p.add_argument("-J", "--addjobid", type=job_id, action="append", default=[], metavar="ID",
                   help="add the resources of an OAR job (repeatable)")
    p.add_argument("--oar-api", metavar="URL",
                   help="read -j/-J jobs from OAR's REST API at URL instead of oarstat "
                        "(e.g. http://server:6668/oarapi/)")
    p.add_argument("-D", "--dump", action="append", default=[], choices=documents.DUMP_KINDS,
                   help="dump a document once validated or made (repeatable)")
    p.add_argument("-F", "--dump-file", action="append", default=[], metavar="FILE",
                   help="write the n-th -D dump to this file instead of stdout (repeatable)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("-p", "--plan", action="store_true", help="convert and plan")
    mode.add_argument("-n", "--dry-run", action="store_true",
                      help="convert, plan, and print what would be staged and run per node")
    mode.add_argument("-x", "--execute", action="store_true", help="convert, plan and deploy")
    p.add_argument("-l", "--loglevel", type=int, choices=range(4), default=2, metavar="0..3",
                   help="0 errors only, 1 summary, 2 progress (default), 3 details")
    p.add_argument("--local-nodes", type=int, default=4, metavar="N",
                   help="number of local virtual nodes when no resources are given (default 4)")
    p.add_argument("--local-root", type=Path, metavar="DIR",
                   help="directory holding the local nodes' trees (default "
                        "/tmp/<user>/adage-nodes)")
    p.add_argument("--timeout", type=seconds, default=30.0, metavar="S",
                   help="seconds to wait for any callback (default 30)")
    p.add_argument("--wait", action="store_true",
                   help="with -x: wait until every process exits; fail if one failed")
    p.add_argument("--submission", choices=("ssh", "oarsh"),
                   help="how to reach nodes from OAR or resource documents (overrides the "
                        "control parameters; default: theirs, except that their local becomes "
                        "ssh when some node does not accept local, as nodes from -o/-j do not; "
                        "resource-document nodes accept local unless they list submissions)")
    p.add_argument("--transfer", choices=("tar", "scp", "rsync", "oarcp"),
                   help="how trees are copied over ssh/oarsh (default: one tar stream)")
    p.add_argument("--fanout", type=int, default=SshOptions.fanout, metavar="N",
                   help="nodes contacted at the same time over ssh/oarsh (default 64)")
    p.add_argument("--connect-timeout", type=seconds, default=SshOptions.connect_timeout,
                   metavar="S", help="seconds to connect to a node over ssh (default 10)")
    ssh_option_argument(p)
    p.add_argument("--no-multiplex", action="store_true",
                   help="one ssh connection per command instead of one master per node")
    p.add_argument("--propagation", choices=(*KINDS, "auto"),
                   help="ssh: one ssh session per node from here (default); taktuk: one "
                        "taktuk tree stages the nodes and carries the satellites; chain: the "
                        "files once along a chain of nodes, then ssh; auto: taktuk above "
                        "--fanout nodes (overrides the control parameters)")
    return p


def ssh_option_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ssh-option", type=ssh_option, action="append", default=[],
                   metavar="OPT", help="an option of every ssh ADAGE runs (ssh -o OPT, before "
                   "ADAGE's own: it wins over them and ~/.ssh/config), e.g. Port=2222 or "
                   "KexAlgorithms=curve25519-sha256; repeatable")


def state_parser(cmd: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"adage {cmd}", description={
        "status": "Show the state of every process of a deployment (default: the latest).",
        "clean": "Kill what is left of a deployment, remove its run directories and its "
                 "state (default: the latest)."}[cmd])
    p.add_argument("id", nargs="?", help="deployment id (see ~/.adage/deployments)")
    p.add_argument("--connect-timeout", type=seconds, default=SshOptions.connect_timeout,
                   help="seconds to connect to a node over ssh/oarsh (default %(default)s)")
    ssh_option_argument(p)
    p.add_argument("--timeout", type=seconds, default=30.0,
                   help="seconds a node has to answer, connection included (default "
                        "%(default)s); a node that does not is named unreachable")
    if cmd == "clean":
        p.add_argument("--force", action="store_true",
                       help="forget the nodes that cannot be reached: remove the deployment's "
                            "state even though what runs on them is left there")
    if cmd == "status":
        shown = p.add_mutually_exclusive_group()
        shown.add_argument("-D", "--dump", action="append", default=[], choices=["status"],
                           help="print the status document instead of the table")
        shown.add_argument("--json", action="store_true",
                           help="print the status as JSON (with the failure's fields)")
    return p


class Output:
    """Where messages (stderr, by level) and dumps (stdout or -F files) go."""

    def __init__(self, level: int, dumps: list[str], files: list[str]) -> None:
        self.level = level
        self.targets = dict(zip(dumps, files, strict=False))
        self.dumps = dumps

    def say(self, level: int, text: str) -> None:
        if self.level >= level:
            tell(text)

    def dump(self, kind: str, obj: object) -> None:
        if kind not in self.dumps:
            return
        text = documents.dump(kind, obj)
        if kind in self.targets:
            try:
                Path(self.targets[kind]).write_text(text)
            except OSError as e:
                raise OutputError(f"-F {self.targets[kind]}: cannot write the {kind} document: "
                                  f"{e.strerror}") from None
            self.say(2, f"{kind} document written to {self.targets[kind]}")
        else:
            sys.stdout.write(text)
            sys.stdout.flush()


def remote(args: argparse.Namespace) -> bool:
    """Whether resources were given (otherwise: local virtual nodes)."""
    return bool(args.res or args.addres or args.oarnodefile is not None or args.jobid
                or args.addjobid)


def resources_of(args: argparse.Namespace) -> Resources:
    docs = [p for p in [args.res, *args.addres] if p]
    parts = [documents.read_resources(docs)] if docs else []
    jobs = [j for j in [args.jobid, *args.addjobid] if j is not None]
    if jobs and args.oar_api:
        from adage.resources.oarapi import api_job_resources  # urllib: only when used

        parts.append(api_job_resources(jobs, args.oar_api))
    elif jobs:
        parts.append(job_resources(jobs))
    if args.oarnodefile is not None:  # -o "" (an unset $OAR_NODEFILE) is an error, not local
        parts.append(oar_nodefile(args.oarnodefile))
    if not parts:
        return local_nodes(args.local_nodes, args.local_root)
    nodes = [n for r in parts for n in r.nodes]
    counts = Counter(n.name for n in nodes)
    dup = next((n for n, k in counts.items() if k > 1), None)
    if dup:
        raise SourceError(f"node {dup} is given twice (resource documents, OAR jobs, node "
                          "file)")
    return Resources(tuple(nodes), tuple(g for r in parts for g in r.groups))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("status", "clean"):
        return state_main(argv[0], argv[1:])
    p = parser()
    args = p.parse_args(argv)
    if len(args.dump_file) > len(args.dump):
        p.error("each -F FILE names where the -D KIND of the same rank goes: give as many -D")
    out = Output(args.loglevel, args.dump, args.dump_file)
    try:
        return run(args, out)
    except AdageError as e:
        tell(f"adage: error: {e}")
        return 1


def run(args: argparse.Namespace, out: Output) -> int:
    if not args.appl:
        tell("adage: error: give at least one application document with -a")
        return 2
    appl = documents.read_appls(args.appl)
    out.dump("generic", appl)
    ctrl = documents.read_ctrl(args.ctrl, appl)
    out.dump("ctrl", ctrl)
    resources = resources_of(args)
    if not remote(args):
        ctrl = replace(ctrl, submission_method="local", transfer=replace(ctrl.transfer,
                                                                         method="local"))
    elif args.submission or (ctrl.submission_method == "local" and any(
            "local" not in n.submission for n in resources.nodes)):
        ctrl = replace(ctrl, submission_method=args.submission or "ssh")
    if remote(args) and args.transfer:
        ctrl = replace(ctrl, transfer=replace(ctrl.transfer, method=args.transfer))
    out.dump("res", resources)
    if not (args.plan or args.dry_run or args.execute):
        out.say(1, f"converted {len(args.appl)} document(s): {len(appl.groups)} proc_group(s) "
                   "(use -D generic to see the generic description, -p/-n/-x to go on)")
        return 0
    plan = get_planner(ctrl.planner).plan(appl, resources, ctrl)
    out.dump("plan", plan)
    if args.plan:
        out.say(1, f"planned {len(plan.instances)} instance(s) with {plan.planner}")
        return 0
    options = Options(timeout=args.timeout, wait=args.wait, link_dir=Path.cwd(),
                      ssh=SshOptions(args.connect_timeout, not args.no_multiplex,
                                     max(1, args.fanout), tuple(args.ssh_option)),
                      propagation=args.propagation)
    raise_fd_limit()
    deployer = Deployer(appl, resources, ctrl, plan, options)
    if args.dry_run:
        print(deployer.dry_run())
        return 0
    progress = Progress(sys.stderr, live=sys.stderr.isatty() and args.loglevel >= 2)
    if args.loglevel >= 2:
        options.observer = progress
    if args.loglevel >= 3:
        options.trace = lambda node, way, msg: tell(f"{node} {way} {msg}")
    out.say(2, f"deployment {deployer.dep_id}: state in {deployer.dep.dir}")
    try:
        with progress:
            result = deployer.run()
    finally:
        out.dump("status", deployer.status())
    m = result.machine
    if result.undetached:
        out.say(0, f"adage: warning: {len(result.undetached)} satellite(s) did not confirm "
                   f"the detach within {DETACH_WAIT:g} s, their sessions were cut: "
                   f"{', '.join(result.undetached[:10])}")
    out.say(1, f"deployment {deployer.dep_id}: {len(m.instances)} instance(s) acknowledged in "
               f"{result.acked_after or result.elapsed:.2f} s; ./get_status.sh, ./cleanup.sh "
               f"or 'adage status|clean {deployer.dep_id}'")
    if not args.wait:
        return 0
    failed = [p for p in m.processes() if p.state != PState.EXITED or p.code != 0]
    if args.loglevel >= 1:
        draw(status_table(deployer.status()), stderr=True)
    return 1 if failed else 0


def raise_fd_limit() -> None:
    """Two pipes per node stay open to its satellite: allow as many files as permitted."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                    else max(soft, 65536), hard))


def tell(text: str) -> None:
    """A message for the user on stderr, as it is (no markup)."""
    print(text, file=sys.stderr, flush=True)


def draw(table: Table, stderr: bool = False) -> None:
    """A rich table on stdout or stderr. rich is imported only when a table is drawn: its
    import is ~20 ms of every run's start."""
    from rich.console import Console

    Console(stderr=stderr, highlight=False).print(table)


def status_table(status: Status, title: str | None = None) -> Table:
    """One row per process instance: where it ran, its state, pid and exit code."""
    from rich.table import Table

    t = Table("proc_group", "index", "node", "process", "state", "pid", "exit code",
              title=title, title_justify="left")
    for inst in status.instances:
        for p in inst.processes:
            t.add_row(inst.proc_group, str(inst.index), inst.node, f"{p.id}/{p.index}",
                      p.state, str(p.pid or "-"),
                      "-" if p.exit_code is None else str(p.exit_code))
    return t


def state_main(cmd: str, argv: list[str]) -> int:
    args = state_parser(cmd).parse_args(argv)
    try:
        dep = statedir.load(args.id)
        options = SshOptions(args.connect_timeout, multiplex=False,
                             extra=tuple(args.ssh_option))
        if cmd == "clean":
            errors = statedir.clean(dep, args.timeout, options, args.force)
            for e in errors.values():
                tell(f"adage clean: {e}")
            if errors and args.force:
                tell(f"deployment {dep.id} forgotten; not cleaned on the unreachable "
                     f"nodes {', '.join(sorted(errors))}")
            elif errors:
                tell(f"adage clean: {len(errors)} node(s) not cleaned: the deployment is "
                     "kept (run clean again, or clean --force to forget those nodes)")
            else:
                tell(f"deployment {dep.id} cleaned")
            return 1 if errors and not args.force else 0
        status, unreachable = statedir.refresh_status(dep, args.timeout, options)
    except AdageError as e:
        tell(f"adage {cmd}: error: {e}")
        return 1
    for node in unreachable:
        tell(f"adage status: node {node} is unreachable: its processes show their last "
             "known state")
    if args.dump:
        sys.stdout.write(documents.dump("status", status))
    elif args.json:
        print(json.dumps({"id": dep.id, "unreachable": unreachable, **asdict(status)},
                         indent=1))
    else:
        draw(status_table(status, f"deployment {dep.id}"))
    return 1 if unreachable else 0


if __name__ == "__main__":
    sys.exit(main())
