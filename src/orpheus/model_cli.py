"""``orpheus model``: offline end times of a list of jobs under an I/O model, without OAR.

Reads CSV ``job_id,start,command`` (start in seconds, command as given to oarsub), runs the
jobs through the daemon's Engine and writes CSV ``job_id,start,end`` in input order; ``end``
is ``inf`` for a job that never ends (``sleep infinity``, or an I/O share too small for a
float). Bad input is reported as ``orpheus model: FILE: line N: ...`` (N = line) and nothing
is written (exit 2), unless ``--on-error skip`` skips the bad rows with a warning on stderr.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from orpheus.engine import Engine
from orpheus.errors import OrpheusError
from orpheus.iomodels import MODELS, IOModel, make_model, parse_capacities
from orpheus.spec import JobSpec, SpecError, decimal, parse_command, seconds

FIELDS = ("job_id", "start", "command")


class InputError(OrpheusError, ValueError):
    """A bad input row or header, with its line number."""


@dataclass(frozen=True)
class Row:
    """One job of the input."""

    job_id: int
    start: float
    spec: JobSpec


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """The I/O model options shared by ``orpheus model`` (``--io-model`` is an alias)."""
    parser.add_argument("--model", "--io-model", dest="io_model", choices=MODELS,
                        default="linear", help="I/O contention model (default: linear)")
    parser.add_argument("--io-capacity", type=_capacities, default=({}, math.inf),
                        metavar="C|TARGET=C,...",
                        help="capacity of the default target, or per target, e.g. "
                             "scratch=10,home=4 (default: unlimited)")


def model_from_args(args: argparse.Namespace) -> IOModel:
    """The IOModel selected by :func:`add_model_options`."""
    capacities, default = args.io_capacity
    return make_model(args.io_model, capacities, default)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``model`` sub-command."""
    p = subparsers.add_parser("model", help="end times of a CSV of jobs under an I/O model",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("jobs", help="CSV file with header job_id,start,command ('-': stdin)")
    p.add_argument("-o", "--output", default="-", help="output CSV (default '-': stdout)")
    add_model_options(p)
    p.add_argument("--default-exec-time", type=seconds, default=10.0,
                   help="exec_time of jobs whose command has no arguments (default 10 s)")
    p.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="bad rows: fail (exit 2, no output; default) or skip with a warning")
    p.set_defaults(func=_main)


def _capacities(text: str) -> tuple[dict[str, float], float]:
    try:
        return parse_capacities(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--io-capacity ")) from None


def read_jobs(
    stream: Iterable[str], default_exec_time: float = 10.0, skip_errors: bool = False
) -> tuple[list[Row], list[str]]:
    """Rows of a ``job_id,start,command`` CSV and the problems met (``line N: ...``, N = the
    record's first line). A UTF-8 byte order mark before the header is ignored.

    Raises InputError on the first bad row unless ``skip_errors``; a bad header always raises.
    """
    reader = csv.reader(stream, strict=True)
    _, header = _next_record(reader)
    if header:
        header[0] = header[0].removeprefix("\ufeff")
    if header is None or [h.strip() for h in header] != list(FIELDS):
        raise InputError(f"line 1: expected the header {','.join(FIELDS)}, got {header!r}")
    rows: list[Row] = []
    problems: list[str] = []
    seen: set[int] = set()
    while True:
        line, record = _next_record(reader)
        if record is None:
            break
        if not record or record == [""]:
            continue
        try:
            rows.append(_row(line, record, seen, default_exec_time))
        except InputError as exc:
            if not skip_errors:
                raise
            problems.append(str(exc))
    return rows, problems


class _Reader(Protocol):
    line_num: int

    def __next__(self) -> list[str]: ...


def _next_record(reader: _Reader) -> tuple[int, list[str] | None]:
    """The next record and its first line (None at the end)."""
    line = reader.line_num + 1
    try:
        return line, next(reader)
    except StopIteration:
        return line, None
    except csv.Error as exc:
        raise InputError(f"line {line}: bad CSV: {exc}") from None


_INTEGER = re.compile(r"[-+]?[0-9]+")


def _row(line: int, record: list[str], seen: set[int], default_exec_time: float) -> Row:
    if len(record) != len(FIELDS):
        raise InputError(f"line {line}: expected {len(FIELDS)} fields "
                         f"(job_id,start,command), got {len(record)}")
    job_text, start_text, command = record
    if not _INTEGER.fullmatch(job_text.strip()):
        raise InputError(f"line {line}: job_id must be an integer, got {job_text!r}")
    job_id = int(job_text)
    if job_id in seen:
        raise InputError(f"line {line}: job {job_id}: duplicate job_id")
    start = decimal(start_text)
    if start is None or not math.isfinite(start):
        raise InputError(f"line {line}: job {job_id}: start must be a finite number of "
                         f"seconds, got {start_text!r}")
    try:
        spec = parse_command(command, default_exec_time)
    except SpecError as exc:
        raise InputError(f"line {line}: job {job_id}: {exc}") from None
    seen.add(job_id)
    return Row(job_id, start, spec)


def simulate(rows: Iterable[Row], model: IOModel) -> dict[int, float]:
    """End time of every job, starting them in start order (stable) in one Engine."""
    engine = Engine(model)
    for row in sorted(rows, key=lambda r: r.start):
        engine.start(row.job_id, row.spec, row.start)
    return {ended.job_id: ended.time for ended in engine.pop_ended(math.inf)}


def format_time(seconds: float) -> str:
    """Seconds rounded to the microsecond, without trailing zeros."""
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def write_ends(out: IO[str], rows: Iterable[Row], ends: dict[int, float]) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("job_id", "start", "end"))
    for row in rows:
        writer.writerow((row.job_id, format_time(row.start), format_time(ends[row.job_id])))


def _main(args: argparse.Namespace) -> int:
    name = "<stdin>" if args.jobs == "-" else args.jobs
    try:
        if args.jobs == "-":
            rows, problems = read_jobs(sys.stdin, args.default_exec_time,
                                       args.on_error == "skip")
        else:
            with open(args.jobs, newline="", encoding="utf-8") as stream:
                rows, problems = read_jobs(stream, args.default_exec_time,
                                           args.on_error == "skip")
    except OSError as exc:
        print(f"orpheus model: cannot read {name}: {exc.strerror}", file=sys.stderr)
        return 2
    except (InputError, UnicodeDecodeError) as exc:
        print(f"orpheus model: {name}: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"orpheus model: {name}: {problem}: skipped", file=sys.stderr)
    ends = simulate(rows, model_from_args(args))
    if args.output == "-":
        write_ends(sys.stdout, rows, ends)
    else:
        try:
            with Path(args.output).open("w", newline="") as out:
                write_ends(out, rows, ends)
        except OSError as exc:
            print(f"orpheus model: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 2
    return 0
