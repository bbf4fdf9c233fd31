"""``orpheus run``: the daemon that "executes" OAR's jobs.

It wakes on SIGUSR1 (sent by the runner shim and the fake ssh), at the next simulated end, or
every ``--poll`` seconds (the database is the truth: a lost signal costs at most one poll). On
each wake it applies kill requests, sets toLaunch jobs Running, starts them in the engine and
hands every job whose time has come back to OAR, in ``oarexec`` mode (the line a real oarexec
sends, so OAR's own end-of-job code runs) or ``event`` mode (what ``check_end_of_job`` writes,
then ``ChState`` and ``Term``).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import fcntl
import logging
import math
import os
import pwd
import signal
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from oarlib import conf as oarconf
from oarlib import faults, idle, testbed, vclock
from oarlib.almighty import notify
from oarlib.db import Db, connection_errors
from orpheus import iomodels
from orpheus.engine import Ended, Engine
from orpheus.model_cli import add_model_options
from orpheus.oarbackend import (
    END_MODES,
    OAREXEC_CHECKPOINTED,
    OAREXEC_KILLED,
    OAREXEC_OK,
    OAREXEC_USER_SIGNAL,
    JobEnd,
    OarBackend,
    oarexec_message,
    wait_status,
)
from orpheus.spec import JobSpec, SpecError, parse_command, seconds

log = logging.getLogger("orpheus")

SPOOL = Path("/var/lib/oar/orpheus")
EARLY_KILL_TTL = 600.0  # seconds a signal for a job not launched yet is kept
ALMIGHTY_READ_TIMEOUT = 10.0  # seconds Almighty waits for a command before it looks at its timers
CHECK_INTERVAL = 10.0  # seconds between two looks for jobs OAR ended without Orpheus
FAULT_CHECK_INTERVAL = 30.0  # seconds between two looks for OAR faults (oarlib.faults)
SLOW_STEP = 1.0  # seconds: a wake-up that takes longer is logged with the time of each phase
RECORD_FIELDS = ("job_id", "start", "intended_end", "notified", "lateness", "outcome",
                 "exit_code", "oarexec_exit")


@dataclass
class Options:
    conf: Path = oarconf.DEFAULT_PATH
    mode: str = "oarexec"
    spool: Path = SPOOL
    poll: float = 1.0
    default_exec_time: float = 10.0
    bad_args_exit_code: int = 1
    stats_interval: float = 0.0
    io_model: str = "linear"
    io_capacity: tuple[dict[str, float], float] = ({}, math.inf)  # per target, default
    record: Path | None = None
    kick_reservations: bool = False
    rekick: float = 0.0
    clock: str = "real"  # "virtual": this daemon moves the test bed's clock (oarlib.vclock)


@dataclass
class Running:
    spec: JobSpec
    start: float
    challenge: str
    signals: list[str] = field(default_factory=list)


@dataclass
class Counters:
    launched: int = 0
    adopted: int = 0
    terminated: int = 0
    killed: int = 0
    bad_args: int = 0
    signals: int = 0
    lateness: list[float] = field(default_factory=list)

    def line(self, running: int) -> str:
        return (f"launched={self.launched} adopted={self.adopted} terminated={self.terminated} "
                f"killed={self.killed} running={running} signals={self.signals} "
                f"bad_args={self.bad_args}")

    def lateness_line(self) -> str:
        if not self.lateness:
            return "lateness: no job ended"
        ms = sorted(x * 1000 for x in self.lateness)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        return (f"lateness over {len(ms)} ends: p50={statistics.median(ms):.1f} ms "
                f"p99={p99:.1f} ms max={ms[-1]:.1f} ms")


class Daemon:
    """One Orpheus daemon bound to one OAR server."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        settings = oarconf.read(opts.conf)
        self.db_params = oarconf.DbParams.from_conf(settings)
        self.server = oarconf.ServerAddress.from_conf(settings)
        self.engine = Engine(iomodels.make_model(opts.io_model, *opts.io_capacity))
        self.jobs: dict[int, Running] = {}
        self.pending: list[tuple[JobEnd, float, float, str]] = []  # end, intended, start, outcome
        self.counters = Counters()
        self.db: Db | None = None
        self.db_errors = connection_errors()
        self.stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._record: IO[str] | None = None
        self._record_writer: Any = None
        if opts.record:  # opened now: the daemon may drop its rights before running
            new = not opts.record.exists() or opts.record.stat().st_size == 0
            self._record = opts.record.open("a", newline="")
            self._record_writer = csv.writer(self._record)
            if new:
                self._record_writer.writerow(RECORD_FIELDS)
                self._record.flush()
        self.clock = vclock.Clock() if opts.clock == "virtual" else vclock.RealClock()
        self.sched_interval = int(settings.get("SCHEDULER_MIN_TIME_BETWEEN_2_CALLS", "5"))
        self._handled = 0.0  # virtual clock: every instant due up to this one was acted on
        # ... and what it saw of OAR's passes: a request (an end handed over, a submission,
        # a kick) after the start of the last pass it saw may be deferred by Almighty until
        # SCHEDULER_MIN_TIME_BETWEEN_2_CALLS after that pass's end
        self._pass_on, self._pass_start, self._pass_end, self._asked = False, 0.0, 0.0, 0.0
        self._clock = 0.0  # last time given to the engine: it never goes backwards
        self._next_kick: float | None = None  # next reservation start to kick the scheduler at
        self._kicked: dict[int, float] = {}  # reservation -> when Scheduling was last sent
        self._rekick_at: float | None = None  # when to send Scheduling again after ends
        self._rekick_until = 0.0  # ... and until when to repeat it
        self.early_kills: dict[int, tuple[float, list[str]]] = {}  # job -> (since, signals)
        self._next_check = 0.0  # when to look for jobs OAR ended without Orpheus
        self._next_fault_check = 0.0
        self.faults: set[str] = set()  # what keeps OAR from running jobs, as last told
        self._phases: dict[str, float] = {}  # seconds per phase of the current wake-up

    def _now(self) -> float:
        self._clock = max(self._clock, self.clock.now())
        return self._clock

    # ------------------------------------------------------------------ life cycle
    def run(self) -> int:
        self._install_signals()
        self._lock_spool()
        pidfile = self.opts.spool / "orpheus.pid"
        pidfile.write_text(f"{os.getpid()}\n")
        log.info("orpheus: mode=%s db=%s@%s:%s almighty=%s:%s io_model=%s", self.opts.mode,
                 self.db_params.type, self.db_params.host, self.db_params.port,
                 self.server.host, self.server.port, self.opts.io_model)
        next_stats = time.monotonic() + self.opts.stats_interval
        backoff = 0.5
        try:
            while not self.stopping:
                self._phases = {}
                try:
                    self._step()
                    backoff = 0.5
                except self.db_errors as exc:  # the daemon outlives any database outage
                    log.warning("database unreachable (%s); retrying in %.1f s", exc, backoff)
                    if self.db is not None:
                        self.db.close()
                        self.db = None
                    self._sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                now = time.monotonic()
                if now >= self._next_fault_check:
                    with self._timed("faults"):
                        self._check_faults()
                    self._next_fault_check = now + FAULT_CHECK_INTERVAL
                if (took := sum(self._phases.values())) > SLOW_STEP:
                    log.warning("slow wake-up: %.2f s (%s): ends due meanwhile are late", took,
                                " ".join(f"{k}={v:.2f}s" for k, v in self._phases.items()))
                if self.opts.stats_interval and now >= next_stats:
                    log.info("stats: %s faults=%d", self.counters.line(len(self.jobs)),
                             len(self.faults))
                    next_stats = now + self.opts.stats_interval
                self._sleep(self._advance() if self.opts.clock == "virtual"
                            else self._timeout())
        except Exception:
            log.exception("orpheus: stopped by an unexpected error (a bug: please report it)")
            raise
        finally:
            log.info("summary: %s", self.counters.line(len(self.jobs)))
            log.info("summary: %s", self.counters.lateness_line())
            with contextlib.suppress(FileNotFoundError):
                if pidfile.read_text().strip() == str(os.getpid()):
                    pidfile.unlink()
            if self._record:
                self._record.close()
            if self.db:
                self.db.close()
        return 0

    def _lock_spool(self) -> None:
        """One daemon per spool: an exclusive lock held for the daemon's life (the kernel
        drops it even on kill -9), taken before the pid file is written."""
        self._lockfile = (self.opts.spool / "orpheus.lock").open("a")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"orpheus run: another daemon already serves {self.opts.spool}"
                             f" (pid {running_daemon(self.opts.spool)})") from None

    def _install_signals(self) -> None:
        self._wake_w.setblocking(False)
        self._wake_r.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGUSR1, lambda *_: None)

        def stop(*_: object) -> None:
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

    def _timeout(self) -> float:
        timeout = self.opts.poll
        if self.pending:
            timeout = min(timeout, 0.2)
        for nxt in (self.engine.next_end(), self._next_kick, self._rekick_at):
            if nxt is not None:
                timeout = min(timeout, max(0.0, nxt - self.clock.now()))
        return timeout

    def _sleep(self, timeout: float) -> None:
        import select

        if self.stopping:
            return
        ready, _, _ = select.select([self._wake_r], [], [], timeout)
        if ready:
            with contextlib.suppress(BlockingIOError):
                while self._wake_r.recv(4096):
                    pass

    # ------------------------------------------------------------------ virtual clock
    def _advance(self) -> float:
        """Under the virtual clock: once OAR and this daemon are idle, jump to the next
        instant something is due and kick Almighty (see docs/virtual-clock.md). Returns how
        long to wait before the next step."""
        if self.db is None or self.pending or self._spool_news():
            return 0.0
        self._observe(idle.read_tree(pid) if (pid := testbed.almighty_pid()) else None)
        backend = OarBackend(self.db)
        if backend.transient_jobs():
            return 0.01
        if idle.wait_idle(testbed.almighty_pid, self.server.port, timeout=0.2,
                          observe=self._observe) is not None:
            return 0.01  # OAR works: let it have the CPU
        if self._spool_news() or backend.transient_jobs():
            return 0.0
        now = self._now()
        holds = vclock.holds()
        if any(h <= now for h in holds):
            self._asked = now
            return 0.01  # a replay is submitting what is due now
        due = [(t, c) for t, c in backend.due_instants(self._handled, self.sched_interval)]
        if self._asked > self._pass_start and \
                (deferred := math.floor(self._pass_end) + self.sched_interval) > self._handled:
            due.append((float(deferred), "Scheduling"))
        due += [(h, "") for h in holds]
        if (end := self.engine.next_end()) is not None:
            due.append((end, ""))
        if not due:
            return self.opts.poll  # nothing is due: only a new command can change that
        when = min(t for t, _ in due)
        commands = sorted({c for t, c in due if t == when and c})  # all that is due then
        if when > now:
            step = self.clock.advance_to(when)
            log.debug("virtual clock: +%.3f s to %.3f (%s)", step, when,
                      " ".join(commands) or "due")
        self._handled = max(self._handled, self._now())
        for command in commands:
            self._asked = self._handled
            self._kick(command)
        return 0.0

    def _observe(self, tree: idle.Proc | None) -> None:
        """Note when a meta-scheduler pass is seen to start and to end."""
        on = idle.runs(tree, "oar_meta_sched")
        if on != self._pass_on:
            if on:
                self._pass_start = self._now()
            else:
                self._pass_end = self._now()
            self._pass_on = on

    def _spool_news(self) -> bool:
        """Whether a shim left something for the daemon (a launch, a signal)."""
        return any(True for p in ("launch.*", "kill.*") for _ in self.opts.spool.glob(p))

    def _kick(self, command: str) -> None:
        """Send Almighty a command and wait (at most 2 s) until it has taken it."""
        pid = testbed.almighty_pid()
        before = idle.read_tree(pid) if pid else None
        if not self._notify(command) or before is None:
            return
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            tree = idle.read_tree(before.pid)
            if tree is None or tree.cpu_ns != before.cpu_ns:
                return
            time.sleep(0.001)

    # ------------------------------------------------------------------ one wake-up
    def _backend(self) -> OarBackend:
        if self.db is None:
            self.db = Db(self.db_params)
            backend = OarBackend(self.db)
            self._adopt(backend)
            return backend
        return OarBackend(self.db)

    @contextlib.contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        """Add the time spent in ``phase`` to this wake-up's account."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self._phases[phase] = self._phases.get(phase, 0.0) + time.monotonic() - t0

    def _step(self) -> None:
        with self._timed("connect"):
            backend = self._backend()
        # ends due now go first: a slow launch (the database busy with OAR) must not delay them
        self._apply_kills()
        self._collect_ends(self._now())
        with self._timed("deliver"):
            self._deliver(backend)
        with self._timed("launch"):
            self._launch(backend)
        self._collect_ends(self._now())  # zero-length jobs just launched
        with self._timed("deliver"):
            self._deliver(backend)
        with self._timed("forget"):
            self._forget_ended(backend)
        if self.opts.kick_reservations:
            self._kick_reservations(backend)
        if self._rekick_at is not None and (now := self.clock.now()) >= self._rekick_at:
            nxt = now + self.opts.rekick
            self._rekick_at = nxt if nxt <= self._rekick_until else None
            self._notify("Scheduling")

    def _check_faults(self) -> None:
        """Tell each new fault of the OAR server once (and when it is gone)."""
        if self.db is None:
            return
        found = {str(f) for f in faults.check(self.db, testbed.almighty_pid() is not None)}
        for f in sorted(found - self.faults):
            log.warning("OAR fault: %s", f)
        for f in sorted(self.faults - found):
            log.info("OAR fault gone: %s", f)
        self.faults = found

    def _notify(self, message: str) -> bool:
        """A notification that may be lost (the next event or poll makes up for it)."""
        try:
            notify(self.server, message)
            return True
        except OSError as exc:
            log.warning("Almighty unreachable (%s): %s not sent", exc, message)
            return False

    def _kick_reservations(self, backend: OarBackend) -> None:
        """Send ``Scheduling`` when a reservation's start comes (and every 2 s until it
        starts): alone, OAR may start it up to a minute late, or let a short one expire."""
        now = self.clock.now()
        waiting = dict(backend.waiting_reservations())
        self._kicked = {j: t for j, t in self._kicked.items() if j in waiting}
        due = [j for j, start in waiting.items()
               if start <= now and now - self._kicked.get(j, 0.0) >= 2.0]
        if due and self._notify("Scheduling"):
            self._kicked.update(dict.fromkeys(due, now))
            log.info("reservation(s) %s due: Scheduling sent", due)
        future = [s for s in waiting.values() if s > now]
        retry = [t + 2.0 for t in self._kicked.values()]
        self._next_kick = min(future + retry, default=None)

    def _adopt(self, backend: OarBackend) -> None:
        """Take over jobs OAR has Launching or Running that this daemon does not run yet."""
        known = set(self.jobs) | {end.job_id for end, *_ in self.pending}
        rows = [r for r in backend.running_jobs() if r[0] not in known]
        if not rows:
            return
        challenges = backend.challenges(r[0] for r in rows)
        now = self.clock.now()
        for job_id, command, state, start in rows:
            if state == "Launching" and not backend.finish_launching(job_id):
                continue
            begin = now if state == "Launching" else min(float(start), now)
            self._clock = max(self._clock, begin)
            self._start(job_id, self._spec(job_id, command), self._clock,
                        challenges.get(job_id, ""))
            self.counters.adopted += 1
        log.info("adopted %d job(s) already running in OAR", len(rows))

    def _spec(self, job_id: int, command: str) -> JobSpec:
        try:
            return parse_command(command, self.opts.default_exec_time)
        except SpecError as exc:
            return self._bad_args(job_id, exc)

    def _bad_args(self, job_id: int, error: Exception) -> JobSpec:
        """What a job with bad arguments runs: nothing, ending with --bad-args-exit-code."""
        self.counters.bad_args += 1
        log.warning("job %d: bad job arguments (%s): ends at once with exit code %d",
                    job_id, error, self.opts.bad_args_exit_code)
        return JobSpec(exec_time=0.0, exit_code=self.opts.bad_args_exit_code)

    def _start(self, job_id: int, spec: JobSpec, start: float, challenge: str) -> None:
        try:
            self.engine.start(job_id, spec, start)
        except ArithmeticError as exc:  # arguments the I/O model cannot take
            spec = self._bad_args(job_id, exc)
            self.engine.start(job_id, spec, start)
        self.jobs[job_id] = Running(spec, start, challenge)

    def _launch(self, backend: OarBackend) -> None:
        for path in self.opts.spool.glob("launch.*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        todo = backend.jobs_to_launch()
        if not todo:
            return
        started = set(backend.launch(j.job_id for j in todo))
        challenges = backend.challenges(started)
        for job in todo:
            if job.job_id not in started:
                continue
            self.counters.launched += 1
            kills = self.early_kills.pop(job.job_id, (0.0, []))[1]
            if job.noop:
                log.info("job %d: noop: Running until OAR ends it, as bipbip leaves it",
                         job.job_id)
                continue
            spec = self._spec(job.job_id, job.command)
            # the clock is read for each job: a signal applied below advances it
            self._start(job.job_id, spec, self._now(), challenges.get(job.job_id, ""))
            if job.client:
                self._tell_client(job.client, job.job_id, spec)
            for sig in kills:
                self._signal(job.job_id, sig)

    def _tell_client(self, client: str, job_id: int, spec: JobSpec) -> None:
        """An interactive oarsub waits for its job to connect to: say there is none (it
        prints the message and exits), as bipbip tells it of an error."""
        host, _, port = client.rpartition(":")
        message = (f"ERROR: job {job_id} is simulated by Orpheus for {spec.exec_time:g} s: "
                   "there is no node to connect to")
        try:
            notify(oarconf.ServerAddress(host, int(port)), message)
        except (OSError, ValueError) as exc:
            log.warning("job %d: interactive oarsub at %s unreachable (%s)", job_id, client, exc)

    def _forget_ended(self, backend: OarBackend) -> None:
        """Jobs that OAR ended without Orpheus (a node set Dead, ...) leave the engine, and
        their I/O share with them. Checked every CHECK_INTERVAL seconds."""
        now = self.clock.now()
        if not self.jobs or now < self._next_check:
            return
        self._next_check = now + CHECK_INTERVAL
        live = backend.live_jobs()
        for job_id in [j for j in self.jobs if j not in live]:
            self.engine.stop(job_id, self._now())
            del self.jobs[job_id]
            log.warning("job %d: ended in OAR without Orpheus: forgotten", job_id)

    def _apply_kills(self) -> None:
        """Signals OAR sent through the fake ssh (``kill.<job_id>``: one ``SIG host`` a line)."""
        for path in sorted(self.opts.spool.glob("kill.*")):
            try:
                job_id = int(path.name.split(".", 1)[1])
            except ValueError:
                continue
            taken = path.with_name(f".taken.{path.name}")
            try:
                path.rename(taken)
                lines = taken.read_text().splitlines()
            except FileNotFoundError:
                continue
            finally:
                with contextlib.suppress(FileNotFoundError):
                    taken.unlink()
            for line in lines:
                if line.split():
                    # Leon writes TERM, oardel and sarko SIGUSR2 / SIGURG
                    self.counters.signals += 1
                    self._signal(job_id, line.split()[0].removeprefix("SIG"))
        now = self.clock.now()
        self.early_kills = {j: (t, sigs) for j, (t, sigs) in self.early_kills.items()
                            if now - t < EARLY_KILL_TTL}

    def _signal(self, job_id: int, sig: str) -> None:
        job = self.jobs.get(job_id)
        if job is None or job_id not in self.engine:
            # a job deleted while toLaunch: the fake ssh told OAR the signal went through, so
            # it is applied as soon as the job is launched (OAR would re-send it only 20 s later)
            since, sigs = self.early_kills.get(job_id, (self.clock.now(), []))
            self.early_kills[job_id] = (since, [*sigs, sig])
            log.info("job %d: SIG%s for a job not running here: kept until it launches",
                     job_id, sig)
            return
        now = self._now()
        if sig in ("TERM", "KILL", "INT", "CRASH"):
            # CRASH: written by `orpheus fail-node`; the job dies with its node and OAR sets
            # it Error, as it would once it learns the node is gone
            self.engine.stop(job_id, now)
            self.counters.killed += 1
            outcome = "crashed" if sig == "CRASH" else "killed"
            log.info("job %d: %s (SIG%s)", job_id, outcome, sig)
            self._end(job_id, JobEnd(job_id, OAREXEC_KILLED, None, job.challenge), now, outcome)
            return
        job.signals.append(sig)
        if sig == "USR2" and job.spec.checkpoint_exit:
            self.engine.stop(job_id, now)
            log.info("job %d: checkpointed, ends as a checkpointing job", job_id)
            end = JobEnd(job_id, OAREXEC_CHECKPOINTED, wait_status(0), job.challenge)
            self._end(job_id, end, now, "checkpointed")
        else:
            log.info("job %d: SIG%s delivered", job_id, sig)

    def _collect_ends(self, now: float) -> None:
        for ended in self.engine.pop_ended(now):
            job = self.jobs.get(ended.job_id)
            if job is None:
                continue
            self._end(ended.job_id, self._job_end(ended, job), ended.time, ended.outcome)

    @staticmethod
    def _job_end(ended: Ended, job: Running) -> JobEnd:
        code = job.spec.fail_exit_code if ended.outcome == "failed" else job.spec.exit_code
        oarexec_exit = OAREXEC_OK
        if "USR2" in job.signals:
            oarexec_exit = OAREXEC_CHECKPOINTED
        elif "URG" in job.signals:
            oarexec_exit = OAREXEC_USER_SIGNAL
        return JobEnd(ended.job_id, oarexec_exit, wait_status(code), job.challenge)

    def _end(self, job_id: int, end: JobEnd, intended: float, outcome: str) -> None:
        job = self.jobs.pop(job_id)
        self.pending.append((end, intended, job.start, outcome))

    def _deliver(self, backend: OarBackend) -> None:
        """Hand pending ends to OAR; what cannot be delivered now stays pending.

        A database error propagates to the main loop, which reconnects and comes back here:
        nothing is lost. Writing an end again is a no-op (the update is conditional on
        Running), so a retry after a partial failure sends nothing twice to the database.
        """
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        delivered = 0
        try:
            if self.opts.mode == "event":
                backend.end_as_check_end_of_job(e for e, *_ in batch)
                notify(self.server, "ChState", "Term")
                delivered = len(batch)
            else:
                for end, *_ in batch:
                    notify(self.server, oarexec_message(end))
                    delivered += 1
        except OSError as exc:
            log.warning("Almighty unreachable (%s): %d end(s) will be retried", exc,
                        len(batch) - delivered)
        finally:
            self.pending = batch[delivered:] + self.pending
            self._account(batch[:delivered])
            if delivered:
                self._asked = self._now()
        if delivered and self.opts.rekick > 0:
            # Almighty defers a Scheduling that comes sooner than
            # SCHEDULER_MIN_TIME_BETWEEN_2_CALLS after the end of its last pass (whole seconds)
            # until its next command or its 10 s read timeout; a pass may still be running
            # now, so kick every S seconds until that timeout would have woken it anyway
            now = self.clock.now()
            self._rekick_at = now + self.opts.rekick
            self._rekick_until = now + ALMIGHTY_READ_TIMEOUT

    def _account(self, batch: list[tuple[JobEnd, float, float, str]]) -> None:
        now = self.clock.now()
        for end, intended, start, outcome in batch:
            late = now - intended
            self.counters.lateness.append(late)
            self.counters.terminated += 1
            if self._record_writer:
                self._record_writer.writerow(
                    (end.job_id, f"{start:.3f}", f"{intended:.3f}", f"{now:.3f}", f"{late:.4f}",
                     outcome, "" if end.status is None else end.status >> 8, end.oarexec_exit))
        if self._record:
            self._record.flush()


# ---------------------------------------------------------------------- command line
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the Orpheus daemon (as user oar)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conf", type=Path, default=oarconf.DEFAULT_PATH, help="OAR's oar.conf")
    p.add_argument("--mode", choices=END_MODES, default="oarexec",
                   help="how job ends reach OAR (default: oarexec)")
    p.add_argument("--spool", type=Path, default=SPOOL, help="directory shared with the shims")
    p.add_argument("--poll", type=float, default=1.0,
                   help="seconds between database polls when no signal comes (default 1)")
    p.add_argument("--default-exec-time", type=seconds, default=10.0,
                   help="exec_time of jobs whose command has no arguments (default 10 s)")
    p.add_argument("--bad-args-exit-code", type=int, default=1,
                   help="exit code of jobs with malformed arguments; they end at once")
    p.add_argument("--stats-interval", type=float, default=0.0,
                   help="log a stats line every N seconds (0: never)")
    add_model_options(p)
    p.add_argument("--record", type=Path, help="append one CSV line per job end to this file")
    p.add_argument("--rekick", type=float, default=0.0, metavar="S",
                   help="send Scheduling every S seconds for 10 s after ends (0: never; "
                        "faster than OAR alone, which may defer a request for up to 10 s)")
    p.add_argument("--kick-reservations", action="store_true",
                   help="send Scheduling to Almighty when an advance reservation's start comes")
    p.add_argument("--clock", choices=vclock.MODES,
                   help="real, or virtual: move the test bed's virtual clock (default: the "
                        "clock `orpheus testbed up --clock` gave the test bed)")
    p.add_argument("--user", default="oar",
                   help="user to run as when started by root (the shims signal it; default oar)")
    p.add_argument("--log-file", type=Path, help="log here instead of stderr")
    p.add_argument("--daemon", action="store_true", help="detach into the background")
    p.set_defaults(func=_main)


def _drop_privileges(user: str) -> None:
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(user)
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    os.environ.update(HOME=pw.pw_dir, USER=user, LOGNAME=user)


def running_daemon(spool: Path = SPOOL) -> int | None:
    """The pid of the Orpheus daemon that owns ``spool``, if one is alive."""
    try:
        pid = int((spool / "orpheus.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ValueError):
        return None
    return pid if b"orpheus" in cmdline and pid != os.getpid() else None


def _main(args: argparse.Namespace) -> int:
    other = running_daemon(args.spool)
    if other is not None:
        raise SystemExit(f"orpheus run: another daemon (pid {other}) already serves "
                         f"{args.spool}; stop it first (kill {other})")
    if args.bad_args_exit_code not in range(256):
        raise SystemExit("orpheus run: --bad-args-exit-code must be in 0..255")
    bed_clock = testbed.almighty_clock()
    clock = args.clock or bed_clock or "real"
    if clock == "virtual" and bed_clock != "virtual":
        raise SystemExit("orpheus run: --clock virtual needs Almighty on the virtual clock "
                         "(orpheus testbed up --clock virtual)")
    if clock == "virtual" and (args.rekick or args.kick_reservations):
        raise SystemExit("orpheus run: --rekick and --kick-reservations are for the real "
                         "clock: on the virtual one, the daemon kicks Almighty when due")
    opts = Options(conf=args.conf, mode=args.mode, spool=args.spool, poll=args.poll,
                   default_exec_time=args.default_exec_time,
                   bad_args_exit_code=args.bad_args_exit_code,
                   stats_interval=args.stats_interval, io_model=args.io_model,
                   io_capacity=args.io_capacity, record=args.record,
                   kick_reservations=args.kick_reservations, rekick=args.rekick, clock=clock)
    if args.log_file:  # opened before dropping rights, like oar.conf and the record file
        try:
            handler = logging.FileHandler(args.log_file)
        except OSError as exc:
            raise SystemExit(f"orpheus run: --log-file {args.log_file}: {exc.strerror}") from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.getLogger().handlers[:] = [handler]
    daemon = Daemon(opts)
    _drop_privileges(args.user)
    if args.daemon:
        if os.fork():
            return 0
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # release the caller's terminal or pipes: logs go to --log-file
            os.dup2(devnull, fd)
    return daemon.run()
