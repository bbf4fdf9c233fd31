"""What Orpheus does to OAR: the job-state changes bipbip and oarexec would make.

Every statement mirrors OAR 2.5.9's own (``OAR::IO::set_job_state``, ``set_finish_date``,
``set_job_exit_code``, ``add_new_event``, ``check_end_of_job``), made conditional on the state
the job is expected to be in (OAR takes no table locks in PostgreSQL mode), and parameterised.
``gantt_jobs_*`` is never written: the state change alone frees the resources.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from oarlib.db import Db

log = logging.getLogger("orpheus.oar")

END_MODES = ("oarexec", "event")
# oarexec's exit values that check_end_of_job understands (OAR::IO, bipbip)
OAREXEC_OK = 0
OAREXEC_KILLED = 3  # "oarexec is killed by Leon normally" -> Error
OAREXEC_CHECKPOINTED = 40  # received SIGUSR2 (checkpoint) -> Terminated
OAREXEC_USER_SIGNAL = 42  # received SIGURG (oardel -s) -> Terminated


LIVE_STATES = ("Launching", "Running", "Suspended", "Resuming", "Finishing")
TRANSIENT_STATES = ("toLaunch", "Launching", "Finishing", "toAckReservation", "toError",
                    "Resuming")
_NOOP = "EXISTS (SELECT 1 FROM job_types t WHERE t.job_id = j.job_id AND t.type = 'noop')"


@dataclass(frozen=True)
class ToLaunch:
    """A job the meta-scheduler set toLaunch, as bipbip sees it."""

    job_id: int
    command: str
    noop: bool = False  # type noop: bipbip sets it Running and runs nothing; Leon ends it
    client: str | None = None  # "host:port" of the interactive oarsub waiting for it


@dataclass(frozen=True)
class JobEnd:
    """How a job ends: ``oarexec_exit`` is oarexec's exit value, ``status`` the raw wait
    status of the job's script (exit code N is N << 8, as oarexec reports ``$?``), or None
    when the script did not finish (oarexec sends ``N``)."""

    job_id: int
    oarexec_exit: int
    status: int | None
    challenge: str = ""


def wait_status(exit_code: int) -> int:
    """The raw wait status OAR stores in ``jobs.exit_code`` for a script exit code."""
    return (exit_code & 0xFF) << 8


class OarBackend:
    """Job-state changes on one database connection."""

    def __init__(self, db: Db) -> None:
        self.db = db

    # ------------------------------------------------------------------ reading
    def jobs_to_launch(self) -> list[ToLaunch]:
        """Jobs the meta-scheduler has finished setting toLaunch.

        ``set_job_state`` is not atomic (no transaction): a job can be toLaunch before its
        toLaunch row is in job_state_logs, and touching it then would let the meta-scheduler
        close our Running row. So a job counts only once that row exists.
        """
        rows = self.db.query(
            f"SELECT j.job_id, j.command, {_NOOP}, j.job_type, j.reservation, j.info_type "
            "FROM jobs j WHERE j.state = %s AND EXISTS ("
            "SELECT 1 FROM job_state_logs l WHERE l.job_id = j.job_id "
            "AND l.job_state = %s AND l.date_stop = 0) ORDER BY j.job_id",
            ("toLaunch", "toLaunch"))
        return [ToLaunch(int(j), c or "", bool(noop),
                         info if kind == "INTERACTIVE" and resa == "None" and info else None)
                for j, c, noop, kind, resa, info in rows]

    def running_jobs(self) -> list[tuple[int, str, str, int]]:
        """(job_id, command, state, start epoch) of jobs Launching or Running, oldest first,
        but noop jobs (nothing runs them).

        The start is when the job entered Running in job_state_logs (the job's start_time
        for a job still Launching).
        """
        rows = self.db.query(
            "SELECT j.job_id, j.command, j.state, "
            "COALESCE(MAX(l.date_start), j.start_time) "
            "FROM jobs j LEFT JOIN job_state_logs l "
            "ON l.job_id = j.job_id AND l.job_state = %s "
            f"WHERE j.state IN (%s, %s) AND NOT {_NOOP} "
            "GROUP BY j.job_id, j.command, j.state, j.start_time",
            ("Running", "Launching", "Running"))
        out = [(int(j), c or "", s, int(t)) for j, c, s, t in rows]
        return sorted(out, key=lambda r: (r[3], r[0]))

    def waiting_reservations(self) -> list[tuple[int, int]]:
        """(job_id, start epoch) of advance reservations accepted and not started yet."""
        return [(int(j), int(t)) for j, t in self.db.query(
            "SELECT job_id, start_time FROM jobs WHERE reservation = %s AND state = %s",
            ("Scheduled", "Waiting"))]

    def challenges(self, job_ids: Iterable[int]) -> dict[int, str]:
        ids = list(job_ids)
        if not ids:
            return {}
        marks = ",".join(["%s"] * len(ids))
        rows = self.db.query(
            f"SELECT job_id, challenge FROM challenges WHERE job_id IN ({marks})", ids)
        return {int(j): c for j, c in rows}

    # ------------------------------------------------------------------ state changes
    def _set_state(self, job_id: int, expected: str, state: str) -> bool:
        """``OAR::IO::set_job_state``, only from ``expected``; True if the row changed."""
        changed = self.db.execute(
            "UPDATE jobs SET state = %s WHERE job_id = %s AND state = %s",
            (state, job_id, expected))
        if not changed:
            return False
        now = self.db.now_sql
        self.db.execute(
            f"UPDATE job_state_logs SET date_stop = {now} WHERE date_stop = 0 AND job_id = %s",
            (job_id,))
        self.db.execute(
            f"INSERT INTO job_state_logs (job_id, job_state, date_start) VALUES (%s, %s, {now})",
            (job_id, state))
        return True

    def launch(self, job_ids: Iterable[int]) -> list[int]:
        """toLaunch -> Launching -> Running, as bipbip does; the ids that were set Running."""
        started = []
        with self.db.transaction():
            for job_id in job_ids:
                if self._set_state(job_id, "toLaunch", "Launching"):
                    self._set_state(job_id, "Launching", "Running")
                    started.append(job_id)
        return started

    def finish_launching(self, job_id: int) -> bool:
        """A job left in Launching (Orpheus stopped in between): Launching -> Running."""
        with self.db.transaction():
            return self._set_state(job_id, "Launching", "Running")

    def end_as_check_end_of_job(self, ends: Iterable[JobEnd]) -> list[int]:
        """``event`` mode: what ``check_end_of_job`` writes for each end; the ids changed.

        Running -> Finishing, stop_time, exit_code and the event NodeChangeState turns into
        Terminated (SWITCH_INTO_TERMINATE_STATE) or Error (SWITCH_INTO_ERROR_STATE).
        """
        done = []
        now = self.db.now_sql
        with self.db.transaction():
            for end in ends:
                if not self._set_state(end.job_id, "Running", "Finishing"):
                    continue
                self.db.execute(
                    f"UPDATE jobs SET stop_time = GREATEST({now}, start_time) WHERE job_id = %s",
                    (end.job_id,))
                if end.status is not None:
                    self.db.execute("UPDATE jobs SET exit_code = %s WHERE job_id = %s",
                                    (end.status, end.job_id))
                killed = end.oarexec_exit == OAREXEC_KILLED
                event = "SWITCH_INTO_ERROR_STATE" if killed else "SWITCH_INTO_TERMINATE_STATE"
                self.db.execute(
                    f"INSERT INTO event_logs (type, job_id, date, description) "
                    f"VALUES (%s, %s, {now}, %s)",
                    (event, end.job_id, f"[orpheus {end.job_id}] Ask to change the job state"))
                done.append(end.job_id)
        return done

    def live_jobs(self) -> set[int]:
        """Jobs OAR has not ended yet among those it started (Launching to Finishing)."""
        marks = ",".join(["%s"] * len(LIVE_STATES))
        return {int(j) for (j,) in self.db.query(
            f"SELECT job_id FROM jobs WHERE state IN ({marks})", LIVE_STATES)}


    # ------------------------------------------------------------ the virtual clock's needs
    def transient_jobs(self) -> int:
        """Jobs between two states that OAR moves on without waiting for any instant."""
        marks = ",".join(["%s"] * len(TRANSIENT_STATES))
        return int(self.db.query(f"SELECT COUNT(*) FROM jobs WHERE state IN ({marks})",
                                 TRANSIENT_STATES)[0][0])

    def due_instants(self, after: float, sched_interval: int) -> list[tuple[float, str]]:
        """The next instants after ``after`` at which OAR has something to do, with the
        Almighty command that makes it do it: a start the Gantt predicts, reservations
        included (the meta-scheduler launches what starts by now + 1 s); a pass for jobs
        submitted since the last one (Almighty defers it by up to ``sched_interval`` s); a
        walltime expiry (sarko kills when now > start + walltime); a checkpoint signal
        (now >= start + walltime - checkpoint)."""
        wall = "j.start_time + m.moldable_walltime"
        running = ("FROM jobs j JOIN moldable_job_descriptions m "
                   "ON m.moldable_id = j.assigned_moldable_job WHERE j.state = 'Running'")
        [row] = self.db.query(
            "SELECT (SELECT MIN(g.start_time) - 1 FROM gantt_jobs_predictions g "
            "JOIN moldable_job_descriptions m ON m.moldable_id = g.moldable_job_id "
            "JOIN jobs j ON j.job_id = m.moldable_job_id "
            "WHERE j.state = 'Waiting' AND g.start_time - 1 > %s), "
            "(SELECT MAX(j.submission_time) + %s FROM jobs j "
            "WHERE j.state = 'Waiting' AND j.submission_time + %s > %s AND NOT EXISTS ("
            "SELECT 1 FROM gantt_jobs_predictions g JOIN moldable_job_descriptions m "
            "ON m.moldable_id = g.moldable_job_id WHERE m.moldable_job_id = j.job_id)), "
            f"(SELECT MIN({wall} + 1) {running} AND {wall} + 1 > %s), "
            f"(SELECT MIN({wall} - j.checkpoint) {running} AND j.checkpoint > 0 "
            f"AND {wall} - j.checkpoint > %s)",
            (int(after), sched_interval, sched_interval, int(after), int(after), int(after)))
        commands = ("Scheduling", "Scheduling", "Villains", "Villains")
        return [(float(t), c) for t, c in zip(row, commands, strict=True) if t is not None]


def oarexec_message(end: JobEnd) -> str:
    """The line oarexec sends Almighty at a job's end."""
    status = "N" if end.status is None else str(end.status)
    return f"OAREXEC_{end.job_id}_{end.oarexec_exit}_{status}_{end.challenge}"
