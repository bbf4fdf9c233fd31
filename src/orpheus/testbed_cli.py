"""``orpheus testbed up|down|status``: the single-machine OAR test bed (see docs/testbed.md)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from rich.table import Table

import orpheus
from oarlib import testbed, web
from oarlib.testbed import Config, TestbedError
from orpheus import install

log = logging.getLogger("orpheus.testbed")


def config_from_args(args: argparse.Namespace) -> Config:
    return Config(db=args.db, nodes=args.nodes, cores=args.cores, port=args.port,
                  log_level=args.log_level, sched_interval=args.sched_interval,
                  max_jobs_per_user=args.max_jobs_per_user, security_time=args.security_time,
                  user=args.user, energy=args.energy,
                  energy_idle=args.energy_idle, boot_time=args.boot_time, clock=args.clock)


def full_status() -> dict[str, Any]:
    """The test bed's status plus whether Orpheus is installed and its daemon runs."""
    return testbed.status() | {"orpheus": install.status(), "web": web.status()}


def _switch_hook() -> None:
    """Before a DB switch: stop the daemon and forget job ids that belong to the old DB."""
    if install.stop_daemon():
        log.warning("the Orpheus daemon was stopped (its database changes): start it again")
    install.clear_spool_state()


def bring_up(cfg: Config, orpheus: bool = True, with_web: bool | None = None) -> dict[str, Any]:
    """What ``orpheus testbed up`` does: ``testbed.up`` with the Orpheus install step, then
    OAR's web tools up (``with_web``), stopped (False) or, if None, kept as they are (and
    reconfigured when they run: the database may have changed)."""
    if cfg.energy and not orpheus:
        raise TestbedError("--energy needs the fake halt/wake-up commands: drop --no-orpheus")
    hook = (lambda: install.install(restart=False)) if orpheus else None
    keep_web = with_web if with_web is not None else web.apache_pid() is not None
    if testbed.almighty_clock() not in (None, cfg.clock) and install.stop_daemon():
        log.warning("the Orpheus daemon was stopped (the clock changes): start it again")
    testbed.up(cfg, install=hook, before_switch=_switch_hook)
    if keep_web:
        web.up(cfg.user)
    else:
        web.down()
    return full_status()


def up(args: argparse.Namespace) -> int:
    show(bring_up(config_from_args(args), orpheus=not args.no_orpheus, with_web=args.web),
         args.json)
    return 0


def down(args: argparse.Namespace) -> int:
    testbed.down(all_servers=args.all, before=install.stop_daemon)
    web.down()
    if not args.json:
        print("test bed stopped" + (" (database servers too)" if args.all else ""))
    else:
        show(full_status(), True)
    return 0


def status(args: argparse.Namespace) -> int:
    st = full_status()
    show(st, args.json)
    ok = st.get("db", {}).get("reachable") and st.get("almighty", {}).get("listening")
    return 0 if ok else 3


def _counts(d: dict[str, int] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (d or {}).items()) or "none"


def show(st: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(st, indent=1, sort_keys=True))
        return
    table = Table(title="OAR test bed", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if "error" in st:
        table.add_row("error", st["error"])
    db, alm, orph = st.get("db", {}), st.get("almighty", {}), st["orpheus"]
    if db:
        reach = "reachable" if db["reachable"] else f"[red]unreachable[/]: {db.get('error', '')}"
        table.add_row("database", f"{db['type']} {db['host']}:{db['port']}/{db['name']} {reach}")
    if alm:
        run = (f"pid {alm['pid']}, port {alm['port']}"
               + ("" if alm["listening"] else " [red](not listening)[/]")
               + ("" if alm["conf_current"] else " [yellow](oar.conf changed since start)[/]")
               if alm["pid"] else f"[red]not running[/] (port {alm['port']})")
        table.add_row("Almighty", run)
    if "resources" in st:
        cores = "/".join(map(str, st["cores_per_node"])) or "0"
        table.add_row("nodes x cores", f"{st['nodes']} x {cores}")
        table.add_row("resources", _counts(st["resources"]))
        table.add_row("jobs", _counts(st["jobs"]))
    if clock := st.get("clock"):
        if clock["mode"] == "virtual":
            pid = clock.get("preload_pid")
            table.add_row("clock", f"virtual (offset +{clock['offset']:.0f} s), OAR's modules "
                          + (f"preloaded (oar-preload pid {pid})" if pid else "not preloaded"))
        else:
            table.add_row("clock", clock["mode"])
    if "stack_limit" in st:
        low = [name for name, raised in st["stack_limit"].items() if not raised]
        table.add_row("stack limit", "raised for OAR's schedulers and oarsub" if not low
                      else f"[yellow]8 MiB for {len(low)} of OAR's programs[/] (they crash "
                           "above ~30,000 resources: orpheus testbed up)")
    for f in st.get("faults", []):
        table.add_row("[red]fault[/]", f"{f['subject']} {f['problem']}\n  cause: {f['cause']}"
                                       f"\n  fix: {f['fix']}")
    table.add_row("Orpheus", ("installed" if orph["installed"] else "[yellow]not installed[/]")
                  + (f", daemon pid {orph['daemon_pid']}" if orph["daemon_running"]
                     else ", daemon not running"))
    urls = st.get("web", {}).get("urls")
    table.add_row("web", "\n".join(f"{k}: {u}" for k, u in urls.items()) if urls
                  else "not running (testbed up --web)")
    orpheus.console().print(table)


def _guarded(func: Any) -> Any:
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except TestbedError as exc:
            log.error("%s", exc)
            return 1
    return wrapper


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``testbed`` with its actions ``up``, ``down`` and ``status``."""
    d = Config()
    p = sub.add_parser("testbed", help="single-machine OAR test bed with fake nodes (root)",
                       description=__doc__)
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    u = actions.add_parser("up", help="install, configure and start everything (idempotent)")
    u.add_argument("--db", choices=("pg", "mysql"), default=d.db, help="database backend")
    u.add_argument("--nodes", type=int, default=d.nodes, help="fake nodes (default %(default)s)")
    u.add_argument("--cores", type=int, default=d.cores, help="cores per node (%(default)s)")
    u.add_argument("--port", type=int, default=d.port, help="Almighty's TCP port (%(default)s)")
    u.add_argument("--log-level", type=int, choices=(1, 2, 3), default=d.log_level,
                   help="OAR LOG_LEVEL (%(default)s)")
    u.add_argument("--sched-interval", type=int, default=d.sched_interval,
                   help="SCHEDULER_MIN_TIME_BETWEEN_2_CALLS, s (%(default)s)")
    u.add_argument("--max-jobs-per-user", type=int, default=d.max_jobs_per_user,
                   help="SCHEDULER_FAIRSHARING_MAX_JOB_PER_USER (%(default)s)")
    u.add_argument("--security-time", type=int, default=d.security_time,
                   help="SCHEDULER_JOB_SECURITY_TIME, s: margin the scheduler keeps after "
                        "each job (%(default)s; lower it for time-scaled replays)")
    u.add_argument("--user", default=d.user, help="submitting user to create (%(default)s)")
    u.add_argument("--energy", action="store_true", help="enable Hulot energy saving")
    u.add_argument("--energy-idle", type=int, default=d.energy_idle,
                   help="idle seconds before Hulot halts a node (%(default)s)")
    u.add_argument("--boot-time", type=int, default=d.boot_time,
                   help="seconds a woken-up fake node takes to boot (%(default)s)")
    u.add_argument("--clock", choices=("real", "virtual"), default=d.clock,
                   help="real, or virtual: OAR and its database on a clock Orpheus's daemon "
                        "moves, jumping over idle time (docs/virtual-clock.md; default "
                        "%(default)s)")
    u.add_argument("--no-orpheus", action="store_true", help="skip `orpheus install`")
    u.add_argument("--web", action="store_true",
                   help="OAR's Drawgantt, Monika and REST API behind Apache (stopped without)")
    u.add_argument("--json", action="store_true", help="print the status as JSON")
    u.set_defaults(func=_guarded(up))

    dn = actions.add_parser("down", help="stop the Orpheus daemon and Almighty")
    dn.add_argument("--all", action="store_true", help="stop the database servers too")
    dn.add_argument("--json", action="store_true", help="print the status as JSON")
    dn.set_defaults(func=_guarded(down))

    s = actions.add_parser("status", help="what runs, what is registered (exit 3 if not up)")
    s.add_argument("--json", action="store_true", help="print the status as JSON")
    s.set_defaults(func=_guarded(status))
