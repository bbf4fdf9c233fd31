"""OAR faults read from oar.log lines as OAR 2.5.9 writes them (oarlib.faults), and the
stack-limit wrapper (oarlib.stacklimit)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from oarlib.faults import Fault, log_causes, read_log_tail, timeout_faults
from oarlib.stacklimit import wrapper_text

SCHED = "oar_sched_gantt_with_timesharing_and_fairsharing_and_quotas"
BAD_VALUE = (f"[error] [2026-12-03 22:43:52.967] [MetaSched] Error: Scheduler {SCHED} returned "
             "a bad value: 139, at time 1796337831. Disabling queue default (see `oarnotify')")
FAILED = ("[error] [2026-12-03 22:50:01.002] [MetaSched] Error: execution of "
          f"{SCHED} failed (pid=undef signal=6 core_dump=0). Disabling queue besteffort "
          "(see `oarnotify')")


def test_a_scheduler_killed_by_sigsegv_is_named_with_its_queue_and_date() -> None:
    disabled, timeouts = log_causes(["[info] [2026-12-03 22:43:50.000] [Almighty] Start",
                                     BAD_VALUE])
    assert disabled == {"default": f"scheduler {SCHED} killed by SIGSEGV (a stack overflow at "
                                   "this many resources: see docs/testbed.md) at "
                                   "2026-12-03 22:43:52.967"}
    assert timeouts == {}


def test_a_failed_execution_gives_its_signal_and_a_plain_exit_code_stays_a_code() -> None:
    plain = BAD_VALUE.replace("139", "1").replace("default", "admin")
    disabled, _ = log_causes([FAILED, plain])
    assert disabled["besteffort"].startswith(f"scheduler {SCHED} killed by SIGABRT at")
    assert disabled["admin"].startswith(f"scheduler {SCHED} exited with 1 at")


def test_the_last_disabling_of_a_queue_wins() -> None:
    later = BAD_VALUE.replace("139", "2").replace("22:43:52.967", "23:00:00.000")
    disabled, _ = log_causes([BAD_VALUE, later])
    assert disabled["default"] == f"scheduler {SCHED} exited with 2 at 2026-12-03 23:00:00.000"


def test_a_timeout_counts_only_until_the_next_pass_of_its_queue() -> None:
    start = "[debug] [2026-12-03 22:00:00.000] [{s}] Starting scheduler for queue {q} at time 5"
    timeout = ("[debug] [2026-12-03 22:00:10.000] [{s}] Warning: some jobs were not scheduled "
               "because the scheduler's timeout was reached (10 s)")
    lines = [start.format(s=SCHED, q="default"), timeout.format(s=SCHED),
             start.format(s=SCHED, q="besteffort")]
    _, timeouts = log_causes(lines)
    assert timeouts == {"default": f"scheduler {SCHED} reached its timeout (10 s)"}
    [fault] = timeout_faults(timeouts)
    assert fault.subject == "queue default" and not fault.blocking
    assert "SCHEDULER_TIMEOUT" in fault.fix
    _, timeouts = log_causes([*lines, start.format(s=SCHED, q="default")])
    assert timeouts == {}


def test_a_restart_of_almighty_forgets_timeouts_but_not_disabled_queues() -> None:
    # at LOG_LEVEL 2 no pass start is logged: the restart is what closes the old passes
    timeout = ("[debug] [2026-12-03 22:00:10.000] [{s}] Warning: some jobs were not scheduled "
               "because the scheduler's timeout was reached (30 s)")
    lines = [f"[debug] [2026-12-03 22:00:00.000] [{SCHED}] Starting scheduler for queue default",
             timeout.format(s=SCHED), BAD_VALUE,
             "[info] [2026-12-04 03:28:34.846] [Almighty] Start Almighty"]
    disabled, timeouts = log_causes(lines)
    assert timeouts == {} and set(disabled) == {"default"}
    _, timeouts = log_causes(lines[:3])
    assert set(timeouts) == {"default"}


def test_unrelated_and_malformed_lines_give_nothing() -> None:
    lines = ["", "Disabling queue", "[error] [x] [MetaSched] Error: Scheduler returned a bad "
             "value: Disabling queue q", "garbage \x00 ÿ", FAILED.replace("signal=6", "signal=x")]
    assert log_causes(lines) == ({}, {})


def test_a_fault_reads_as_one_line_with_its_fix() -> None:
    f = Fault("queue default", "is disabled", "scheduler X killed by SIGSEGV",
              "oarnotify -e default")
    assert str(f) == ("queue default is disabled: scheduler X killed by SIGSEGV; "
                      "fix: oarnotify -e default")


def test_the_log_tail_keeps_whole_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "oar.log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    tail = read_log_tail(log, size=100)
    assert tail[-1] == "line 999" and all(t.startswith("line ") for t in tail)
    assert read_log_tail(tmp_path / "missing") == []


def test_the_wrapper_raises_the_soft_stack_limit_and_passes_every_argument(
        tmp_path: Path) -> None:
    real = tmp_path / "prog.real"
    real.write_text('#!/bin/sh\nulimit -s\nfor a in "$@"; do echo "[$a]"; done\n')
    real.chmod(0o755)
    wrapper = tmp_path / "prog"
    wrapper.write_text(wrapper_text(real))
    wrapper.chmod(0o755)
    out = subprocess.run(["sh", "-c", f'ulimit -S -s 8192; "{wrapper}" "a b" "" "\\$x"'],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    hard = subprocess.run(["sh", "-c", "ulimit -H -s"], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert out == [hard, "[a b]", "[]", "[$x]"]
