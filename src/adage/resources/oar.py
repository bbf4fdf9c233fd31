"""Resources of OAR jobs (``-j/-J``) and OAR node files (``-o``).

A job's resources are asked of OAR with its own user commands (they work for any user, which
oar.conf and the database password do not): ``oarstat -fJ -j ID`` gives the job's
``assigned_resources`` (those of its ``assigned_moldable_job``), ``oarnodes -J`` their
columns. Ordered by ``resource_id`` as OAR writes the job's node file
(``OAR::IO::get_job_resources_properties``): one node per ``network_address`` in order of its
first resource, cores = its resources in the job,
properties = the resources' columns that ``oarnodes`` shows (every column but OAR's system
ones, ``OAR::Tools::check_resource_system_property``), one value, or the distinct values
joined with ``,`` when the host's resources differ (``core``, ``cpuset``), plus
``oar_job_id`` (for oarsh). A node file has one line per core: a host's line count is its
cores (blank lines and ``#`` comment lines skipped). Nodes from OAR are reached with ssh
(or oarsh) and copied to with tar/scp/rsync/oarcp.
"""

from __future__ import annotations

import codecs
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from adage.deploy.sources import SourceError
from adage.model import Node, Resources

SUBMISSION = ("ssh", "oarsh")
TRANSFER = ("scp", "rsync", "oarcp")  # and a tar stream over ssh/oarsh (the default)
HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")  # the node names of resources.xsd
ACTIVE = ("Launching", "Running", "Suspended", "Resuming")  # states holding their nodes
SYSTEM = frozenset(("resource_id", "state", "state_num", "next_state", "finaud_decision",
                    "next_finaud_decision", "last_job_date", "suspended_jobs", "expiry_date",
                    "scheduler_priority"))


def nodefile_hosts(lines: Iterable[str]) -> dict[str, int]:
    """Host -> line count, in order of first appearance; blank lines and comment lines
    (``#`` first) skipped, spaces around a name (and a CRLF's CR) ignored (pure)."""
    cores: dict[str, int] = {}
    for line in lines:
        host = line.strip()
        if host and not host.startswith("#"):
            cores[host] = cores.get(host, 0) + 1
    return cores


def oar_nodefile(path: str | Path) -> Resources:
    """The hosts of an OAR node file, cores = their line count; SourceError naming the file
    (and line) for an empty path (``-o "$OAR_NODEFILE"`` outside a job), a file that cannot be
    read, anything but UTF-8 text (a BOM is allowed) with one host name per line, and a file
    without host. Blank lines and lines starting with ``#`` are skipped: OAR writes neither,
    but a node file written by hand may have them (no host name starts with ``#``)."""
    if not str(path):
        raise SourceError("OAR node file: empty file name (is $OAR_NODEFILE set? it is only "
                          "inside an OAR job)")
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise SourceError(f"{path}: cannot read this OAR node file: {e.strerror}") from None
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        lines = data.decode().split("\n")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise SourceError(f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x})") from None
    for number, line in enumerate(lines, 1):
        host = line.strip()
        if host and not host.startswith("#") and not HOST.fullmatch(host):
            raise SourceError(f"{path}:{number}: {quoted(host)} is not a host name (letters, "
                              "digits, '_', '.', '-', one per line; '#' starts a comment line)")
    cores = nodefile_hosts(lines)
    if not cores:
        raise SourceError(f"{path}: no host in this OAR node file")
    return Resources(tuple(Node(name=h, cores=n, submission=SUBMISSION, transfer=TRANSFER)
                           for h, n in cores.items()))


def quoted(text: str, limit: int = 40) -> str:
    """``text`` as an error message quotes it: escaped, at most ``limit`` characters (pure)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "…"


def job_nodes(job_id: int, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[Node]:
    """The nodes of a job from its resources' rows (pure)."""
    by_host: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        rec = dict(zip(columns, row, strict=True))
        by_host.setdefault(str(rec["network_address"]), []).append(rec)
    nodes = []
    for host, recs in by_host.items():
        props: list[tuple[str, str]] = []
        for col in columns:
            if col in SYSTEM or col in ("network_address", "jobs"):  # jobs: oarnodes' own
                continue
            values = list(dict.fromkeys("" if r[col] is None else str(r[col]) for r in recs))
            props.append((col, ",".join(values)))
        props.append(("oar_job_id", str(job_id)))
        nodes.append(Node(name=host, cores=len(recs), properties=tuple(props),
                          submission=SUBMISSION, transfer=TRANSFER))
    return nodes


def job_resources(job_ids: Sequence[int]) -> Resources:
    """The nodes of OAR jobs, from ``oarstat -fJ -j ID`` (its ``assigned_resources``) and
    ``oarnodes -J`` (their properties), run as the calling user; SourceError for a job that
    does not exist or holds no resource (not started yet)."""
    nodes: list[Node] = []
    props = _oar_json(["oarnodes", "-J"], "oarnodes")
    for job in job_ids:
        info = _oar_json(["oarstat", "-fJ", "-j", str(job)], f"OAR job {job}").get(str(job))
        if not info:
            raise SourceError(f"OAR job {job} does not exist")
        if info.get("state") not in ACTIVE:
            raise SourceError(f"OAR job {job} is {info.get('state')}, not running")
        ids = sorted(int(r) for r in info.get("assigned_resources") or [])
        if not ids:
            raise SourceError(f"OAR job {job} ({info.get('state')}) holds no resource yet")
        missing = [r for r in ids if str(r) not in props]
        if missing:
            raise SourceError(f"OAR job {job}: oarnodes does not know resources {missing}")
        rows = [props[str(r)] for r in ids]
        columns = list(dict.fromkeys(k for r in rows for k in r))
        nodes += job_nodes(job, columns, [[r.get(c) for c in columns] for r in rows])
    return Resources(tuple(nodes))


def _oar_json(argv: list[str], what: str) -> dict[str, Any]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              cwd="/tmp")
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SourceError(f"{what}: {argv[0]}: {e}") from None
    if done.returncode != 0:
        raise SourceError(f"{what}: {' '.join(argv)} failed: "
                          f"{(done.stderr or done.stdout).strip()[-300:]}")
    try:
        data = json.loads(done.stdout or "{}")
    except ValueError:
        raise SourceError(f"{what}: {' '.join(argv)} printed no JSON") from None
    return data if isinstance(data, dict) else {}
