"""A single-machine OAR 2.5.9 test bed with fake nodes: bring it up, report on it, stop it.

``up`` is idempotent and does only what is missing: Debian packages, the database server
(PostgreSQL or MariaDB), oar.conf, OAR's database, N fake nodes x C cores registered in bulk,
a submitting user, then Almighty (restarted when oar.conf changed since it started).

Resources are written the way ``oar_resources_add | bash`` writes them (``oarproperty`` columns,
then one ``oarnodesetting -a -h nodeN -p host=.. -p cpu=.. -p core=.. -p cpuset=..`` per core,
i.e. ``OAR::IO::add_resource`` + ``set_resources_property``), but with a few multi-row
parameterised statements instead of one Perl process per core. The pure functions at the top
(layout, plan, log rows, conf values) hold every decision; the rest is a thin shell of
subprocesses and SQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from oarlib import conf as oarconf
from oarlib import faults, pgauth, preload, stacklimit, vclock
from oarlib.almighty import notify
from oarlib.conf import DbParams, ServerAddress
from oarlib.db import Db, chunks, marks

log = logging.getLogger("oarlib.testbed")

CONF_PATH = oarconf.DEFAULT_PATH
STATE_DIR = Path("/var/lib/orpheus-testbed")  # pristine oar.conf, Almighty start record
OAR_SERVER_PIDFILE = Path("/var/run/oar-server.pid")
FAKE_COMMANDS_DIR = Path("/usr/local/lib/orpheus")  # where `orpheus install` puts fake-*
ENV_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
DB_ROLES = {"oar": "oarpass", "oar_ro": "oarropass"}  # OAR's roles (read-write, read-only)
COMMON_PACKAGES = ("oar-server", "oar-user", "libyaml-perl", "libyaml-syck-perl",
                   "libxml-dumper-perl", "libfaketime", "libsocket-msghdr-perl")
BACKEND_PACKAGES = {
    "pg": ("postgresql", "oar-server-pgsql", "oar-user-pgsql"),
    "mysql": ("mariadb-server", "oar-server-mysql", "oar-user-mysql"),
}
ACTIVE_JOB_STATES = ("toLaunch", "Launching", "Running", "Finishing", "Suspended", "Resuming")
STATE_NUM = {"Alive": 1, "Absent": 2, "Suspected": 3, "Dead": 4}  # OAR::IO %State_to_num
# oar_resources_add's properties: name -> column type oarproperty gives (-c = VARCHAR(255))
PROPERTIES = {"host": "VARCHAR(255)", "cpu": "INT", "core": "INT"}
# a new row's value of each property oarnodesetting sets (schema default; NULL for new columns)
INITIAL = {"host": None, "cpu": None, "core": None, "cpuset": "0"}
AVAILABLE_UPTO = {True: "2147483646", False: "2147483647"}  # energy saving on / off


class TestbedError(RuntimeError):
    """Something the test bed cannot do, with a message meant for the operator."""


# ----------------------------------------------------------------------------- pure core

@dataclass(frozen=True)
class Config:
    """What ``orpheus testbed up`` is asked for."""

    db: str = "pg"  # "pg" or "mysql"
    nodes: int = 16
    cores: int = 4
    port: int = 6666
    log_level: int = 2
    sched_interval: int = 5  # SCHEDULER_MIN_TIME_BETWEEN_2_CALLS (Debian's value)
    max_jobs_per_user: int = 30  # SCHEDULER_FAIRSHARING_MAX_JOB_PER_USER (Debian's value)
    security_time: int = 60  # SCHEDULER_JOB_SECURITY_TIME: margin after each job in the plan
    user: str = "alice"
    energy: bool = False
    energy_idle: int = 600  # seconds idle before Hulot halts a node
    boot_time: int = 5  # seconds a woken-up fake node takes to come back Alive
    prefix: str = "node"
    clock: str = "real"  # "virtual": OAR and its database on Orpheus's clock (oarlib.vclock)

    def check(self) -> None:
        """Raise TestbedError naming the first bad setting."""
        if self.db not in BACKEND_PACKAGES:
            raise TestbedError(f"--db must be pg or mysql, not {self.db!r}")
        for name in ("nodes", "cores", "port", "energy_idle"):
            if getattr(self, name) < 1:
                raise TestbedError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("sched_interval", "max_jobs_per_user", "security_time", "boot_time"):
            if getattr(self, name) < 0:
                raise TestbedError(f"--{name.replace('_', '-')} must be >= 0")
        if self.clock not in vclock.MODES:
            raise TestbedError(f"--clock must be real or virtual, not {self.clock!r}")
        if self.clock == "virtual" and self.db != "pg":
            raise TestbedError("--clock virtual needs --db pg")
        if not 1 <= self.log_level <= 3:
            raise TestbedError("--log-level must be 1, 2 or 3")
        if self.user in ("root", "oar") or not self.user.isidentifier():
            raise TestbedError(f"--user {self.user!r}: OAR refuses root and oar; use a plain name")


@dataclass(frozen=True)
class Resource:
    """One fake core, keyed as ``oarnodesetting -a`` registers it."""

    network_address: str
    host: str
    cpu: int
    core: int
    cpuset: str

    def properties(self) -> list[tuple[str, str]]:
        """The ``-p name=value`` pairs of its oarnodesetting line, in that order."""
        return [("host", self.host), ("cpu", str(self.cpu)), ("core", str(self.core)),
                ("cpuset", self.cpuset)]

    def log_rows(self) -> list[tuple[str, str]]:
        """(attribute, value) rows oarnodesetting adds to resource_logs for it, in order.

        ``add_resource`` logs the state; ``set_resources_property`` then logs a property only
        when it changes the new row (``cpuset=0`` equals the column default: no row).
        """
        return [("state", "Alive")] + [(p, v) for p, v in self.properties() if INITIAL[p] != v]


def layout(nodes: int, cores: int, prefix: str = "node") -> list[Resource]:
    """``oar_resources_add -H nodes -C 1 -c cores --host-prefix prefix``: one CPU per node."""
    return [
        Resource(f"{prefix}{h}", f"{prefix}{h}", h, (h - 1) * cores + c + 1, str(c))
        for h in range(1, nodes + 1)
        for c in range(cores)
    ]


@dataclass(frozen=True)
class Plan:
    """How to turn the registered resources into the asked ones."""

    remove: list[int]  # resource ids
    update: list[tuple[int, Resource]]  # resource id -> the properties it must get
    add: list[Resource]


def plan(existing: Iterable[tuple[int, Resource]], wanted: Sequence[Resource]) -> Plan:
    """Match registered and asked resources on (node, cpuset): a match keeps its id (and the
    jobs that ran on it) and gets the asked properties; the rest is removed or added."""
    asked = {(r.network_address, r.cpuset): r for r in wanted}
    seen: set[tuple[str, str]] = set()
    remove: list[int] = []
    update: list[tuple[int, Resource]] = []
    for rid, res in sorted(existing, key=lambda e: e[0]):
        key = (res.network_address, res.cpuset)
        if key in asked and key not in seen:
            seen.add(key)
            if res != asked[key]:
                update.append((rid, asked[key]))
        else:
            remove.append(rid)
    add = [r for r in wanted if (r.network_address, r.cpuset) not in seen]
    return Plan(remove, update, add)


def conf_values(cfg: Config, fake_commands: Path = FAKE_COMMANDS_DIR) -> dict[str, str | None]:
    """The oar.conf settings the test bed owns for ``cfg``."""
    pg = cfg.db == "pg"
    values: dict[str, str | None] = {
        "DB_TYPE": "Pg" if pg else "mysql",
        "DB_HOSTNAME": "localhost" if pg else "127.0.0.1",
        "DB_PORT": "5432" if pg else "3306",
        "DB_BASE_NAME": "oar",
        "DB_BASE_LOGIN": "oar",
        "DB_BASE_PASSWD": DB_ROLES["oar"],
        "DB_BASE_LOGIN_RO": "oar_ro",
        "DB_BASE_PASSWD_RO": DB_ROLES["oar_ro"],
        "SERVER_HOSTNAME": "localhost",
        "SERVER_PORT": str(cfg.port),
        "LOG_LEVEL": str(cfg.log_level),
        "SCHEDULER_MIN_TIME_BETWEEN_2_CALLS": str(cfg.sched_interval),
        "SCHEDULER_FAIRSHARING_MAX_JOB_PER_USER": str(cfg.max_jobs_per_user),
        "SCHEDULER_JOB_SECURITY_TIME": str(cfg.security_time),
        "ENERGY_SAVING_INTERNAL": "yes" if cfg.energy else "no",
    }
    if cfg.energy:  # Hulot with fake halt/wake-up commands (see the recipe)
        values |= {
            "ENERGY_SAVING_NODE_MANAGER_WAKE_UP_CMD":
                f"{fake_commands}/fake-wakeup {cfg.boot_time}",
            "ENERGY_SAVING_NODE_MANAGER_SLEEP_CMD": f"{fake_commands}/fake-halt",
            "SCHEDULER_NODE_MANAGER_IDLE_TIME": str(cfg.energy_idle),
            "SCHEDULER_NODE_MANAGER_SLEEP_TIME": str(cfg.energy_idle),
            "SCHEDULER_NODE_MANAGER_WAKEUP_TIME": str(cfg.boot_time + 5),
            "ENERGY_SAVING_NODE_MANAGER_WAKEUP_TIMEOUT": str(cfg.boot_time + 60),
            "ENERGY_SAVING_WINDOW_TIME": "0",
        }
    return values


def is_oar_server_process(argv: Sequence[str]) -> bool:
    """Whether a command line is Almighty, one of its renamed children or sarko."""
    if not argv:
        return False
    first = argv[0]
    if first.split(":")[0].strip() in ("Almighty", "sarko") or first.startswith("Almighty:"):
        return True
    return any(a in ("/usr/lib/oar/Almighty", "/usr/lib/oar/sarko") for a in argv[:3])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------- processes

def run(cmd: Sequence[str], *, check: bool = True, quiet: bool = False,
        **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command from /tmp (``su postgres`` cannot cd to /root); raise with its output."""
    kw.setdefault("cwd", "/tmp")
    proc = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        raise TestbedError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {out[-2000:]}")
    if not quiet and proc.stdout.strip():
        log.debug("%s: %s", cmd[0], proc.stdout.strip())
    return proc


def require_root() -> None:
    if os.geteuid() != 0:
        raise TestbedError("this needs root (it installs packages and configures OAR)")


def wait_until(pred: Callable[[], bool], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TestbedError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


# ----------------------------------------------------------------------------- packages

def missing_packages(names: Iterable[str]) -> list[str]:
    out = []
    for name in names:
        proc = run(["dpkg-query", "-W", "-f=${Status}", name], check=False, quiet=True)
        if "install ok installed" not in proc.stdout:
            out.append(name)
    return out


def ensure_packages(db: str) -> None:
    install_packages((*BACKEND_PACKAGES[db], *COMMON_PACKAGES))


def install_packages(names: Iterable[str]) -> None:
    """Install the Debian packages among ``names`` that are missing (without recommends)."""
    missing = missing_packages(names)
    if not missing:
        return
    log.info("installing Debian packages: %s", " ".join(missing))
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


# ----------------------------------------------------------------------------- DB servers

def pg_version() -> str:
    versions = sorted(Path("/usr/lib/postgresql").iterdir(), key=lambda p: int(p.name))
    if not versions:
        raise TestbedError("PostgreSQL is not installed (/usr/lib/postgresql is empty)")
    return versions[-1].name


def pg_cluster_status(version: str) -> str | None:
    """'online', 'down' or None when the cluster ``<version>/main`` does not exist."""
    for line in run(["pg_lsclusters", "-h"], quiet=True).stdout.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] == version and f[1] == "main":
            return f[3]
    return None


def pg_ready() -> bool:
    return run(["pg_isready", "-q", "-h", "localhost", "-p", "5432"], check=False).returncode == 0


def mysql_ready() -> bool:
    return run(["mysqladmin", "--protocol=socket", "ping"], check=False,
               quiet=True).returncode == 0


MARIADB_CNF = Path("/etc/mysql/mariadb.conf.d/90-oar-testbed.cnf")
# OAR 2.5.9 inserts rows without every NOT NULL column (e.g. resources.expiry_date), which
# MariaDB's default strict sql_mode rejects: run it with the permissive mode OAR was written for.
MARIADB_CNF_TEXT = ("# written by `orpheus testbed up`: OAR 2.5.9 needs a non-strict sql_mode\n"
                    "[mysqld]\nsql_mode = NO_ENGINE_SUBSTITUTION\n")


def mariadb_strict() -> bool:
    return "STRICT" in run(["mysql", "--protocol=socket", "-N", "-B", "-e",
                            "SELECT @@GLOBAL.sql_mode"], quiet=True).stdout


def pg_environment_path(version: str) -> Path:
    return Path(f"/etc/postgresql/{version}/main/environment")


def pg_hba_path(version: str) -> Path:
    return Path(f"/etc/postgresql/{version}/main/pg_hba.conf")


def pg_clock() -> str:
    """The clock the PostgreSQL cluster is configured with ("real" or "virtual")."""
    try:
        path = pg_environment_path(pg_version())
        return "virtual" if vclock.pg_is_virtual(path.read_text()) else "real"
    except (OSError, TestbedError):
        return "real"


def start_db_server(db: str, clock: str = "real") -> None:
    """Start PostgreSQL (creating its cluster if needed) or MariaDB; wait for connections.
    PostgreSQL is restarted when it must move to another clock."""
    if db == "pg":
        version = pg_version()
        status = pg_cluster_status(version)
        if status is None:
            log.info("creating PostgreSQL cluster %s/main", version)
            run(["pg_createcluster", version, "main"])
            status = "down"
        env_path = pg_environment_path(version)
        env_text = env_path.read_text() if env_path.exists() else ""
        if (wanted := vclock.pg_environment(env_text, clock == "virtual")) != env_text:
            env_path.write_text(wanted)
            if status.startswith("online"):
                log.info("restarting PostgreSQL %s/main on the %s clock", version, clock)
                stop_almighty()  # it would lose its connections
                run(["pg_ctlcluster", version, "main", "stop"])
                status = "down"
        if not status.startswith("online"):
            log.info("starting PostgreSQL %s/main", version)
            run(["pg_ctlcluster", version, "main", "start"])
        wait_until(pg_ready, 60, "PostgreSQL to accept connections")
        return
    if not MARIADB_CNF.exists() or MARIADB_CNF.read_text() != MARIADB_CNF_TEXT:
        MARIADB_CNF.write_text(MARIADB_CNF_TEXT)
    if mysql_ready() and mariadb_strict():
        log.info("restarting MariaDB with a non-strict sql_mode")
        run(["/etc/init.d/mariadb", "stop"])
    if not mysql_ready():
        log.info("starting MariaDB")
        run(["/etc/init.d/mariadb", "start"])
    wait_until(mysql_ready, 60, "MariaDB to accept connections")


def stop_db_servers() -> None:
    if Path("/usr/lib/postgresql").is_dir():
        version = pg_version()
        if (pg_cluster_status(version) or "").startswith("online"):
            run(["pg_ctlcluster", version, "main", "stop"])
    if Path("/etc/init.d/mariadb").exists() and mysql_ready():
        run(["/etc/init.d/mariadb", "stop"])


# ----------------------------------------------------------------------------- oar.conf

def read_conf_text() -> str:
    return CONF_PATH.read_text()


def write_conf_text(text: str) -> bool:
    """Write oar.conf (mode 600, owner oar) if it changed; return whether it did."""
    if CONF_PATH.exists() and CONF_PATH.read_text() == text:
        return False
    st = CONF_PATH.stat()
    tmp = CONF_PATH.with_name(CONF_PATH.name + ".orpheus-tmp")
    tmp.write_text(text)
    os.chown(tmp, pwd.getpwnam("oar").pw_uid, st.st_gid)
    tmp.chmod(0o600)
    tmp.replace(CONF_PATH)
    return True


def configure(cfg: Config) -> bool:
    """Set the test bed's oar.conf values, keeping a pristine copy first; True if changed."""
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    pristine = STATE_DIR / "oar.conf.dist"
    if not pristine.exists():
        shutil.copy2(CONF_PATH, pristine)
    return write_conf_text(oarconf.set_values(read_conf_text(), conf_values(cfg)))


def conf_db_params() -> DbParams:
    return DbParams.from_conf(oarconf.parse(read_conf_text()))


def conf_server() -> ServerAddress:
    return ServerAddress.from_conf(oarconf.parse(read_conf_text()))


# ----------------------------------------------------------------------------- OAR database

def database_ok() -> bool:
    return run(["oar-database", "--check"], check=False).returncode == 0


def mysql_admin(sql: str, database: str = "") -> str:
    """Run SQL as MariaDB's root over the unix socket (how ``--db-is-local`` works)."""
    return run(["mysql", "--protocol=socket", "-N", "-B", "-e", sql,
                *([database] if database else [])], quiet=True).stdout


def create_walltime_change() -> None:
    """Create OAR's walltime_change table on MariaDB, where 2.5.9's schema cannot.

    ``mysql_structure.sql`` names a column ``force``, a reserved word of MariaDB 10.11, so
    ``oar-database --create`` stops at that (last) table. The same statement with the column
    name quoted gives the table OAR expects (only used when WALLTIME_CHANGE_ENABLED=yes).
    """
    text = Path("/usr/lib/oar/database/mysql_structure.sql").read_text()
    m = re.search(r"CREATE TABLE IF NOT EXISTS walltime_change \(.*?\);", text, re.S)
    if m is None:
        raise TestbedError("no walltime_change table in /usr/lib/oar/database/mysql_structure.sql")
    mysql_admin(re.sub(r"^force ", "`force` ", m.group(0), flags=re.M), "oar")


def ensure_database(db: str) -> None:
    """Create OAR's database if ``oar-database --check`` fails."""
    if database_ok():
        return
    log.info("creating the OAR database (%s)", db)
    cmd = ["oar-database", "--create", f"--db-type={'Pg' if db == 'pg' else 'mysql'}",
           "--db-is-local", "-y"]
    if db == "mysql":
        if mysql_admin("SHOW DATABASES LIKE 'oar'").strip():
            log.info("dropping the incomplete MariaDB database oar")
            run(["oar-database", "--drop", "--db-type=mysql", "--db-is-local", "-y"])
        cmd.append("--force-sql")  # go past walltime_change (see create_walltime_change)
    proc = run(cmd, check=db == "pg")
    if db == "mysql":
        create_walltime_change()
    if not database_ok():
        out = (proc.stdout + proc.stderr).strip()[-2000:]
        raise TestbedError(f"oar-database --check still fails after --create: {out}")


def _driver_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("psycopg", "pymysql")


@contextlib.contextmanager
def connect() -> Iterator[Db]:
    """A connection to OAR's database (as oar.conf says); driver errors become TestbedError."""
    try:
        with Db(conf_db_params()) as db:
            yield db
    except Exception as exc:
        if _driver_error(exc):
            raise TestbedError(f"OAR's database ({conf_db_params().type}): {exc}") from exc
        raise


def columns(db: Db) -> set[str]:
    rows = db.query("SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'resources' AND table_schema = "
                    + ("current_schema()" if db.kind == "Pg" else "DATABASE()"))
    return {r[0].lower() for r in rows}


def ensure_properties(db: Db) -> None:
    """``oarproperty -c -a host; oarproperty -a cpu; oarproperty -a core`` when missing."""
    have = columns(db)
    for name, sqltype in PROPERTIES.items():
        if name not in have:
            db.execute(f"ALTER TABLE resources ADD COLUMN {name} {sqltype}")


def registered(db: Db) -> list[tuple[int, Resource]]:
    rows = db.query("SELECT resource_id, network_address, host, cpu, core, cpuset FROM resources")
    return [(rid, Resource(na, host or "", cpu if cpu is not None else -1,
                           core if core is not None else -1, str(cpuset)))
            for rid, na, host, cpu, core, cpuset in rows]


def _insert(db: Db, table: str, cols: Sequence[str], rows: Sequence[Sequence[Any]],
            chunk: int = 2000) -> None:
    """Multi-row parameterised INSERT, ``chunk`` rows per statement."""
    one = "(" + ",".join(["%s"] * len(cols)) + ")"
    for part in chunks(rows, chunk):
        db.execute(f"INSERT INTO {table} ({','.join(cols)}) VALUES " + ",".join([one] * len(part)),
                   [v for row in part for v in row])


def lock_resources(db: Db) -> None:
    """What oarnodesetting does before touching resources (Pg: exclusive table lock)."""
    if db.kind == "Pg":
        db.execute("LOCK TABLE resources, resource_logs IN EXCLUSIVE MODE")


def add_resources(db: Db, resources: Sequence[Resource]) -> list[int]:
    """Register resources as ``oarnodesetting -a -h H -p host=.. -p cpu=.. ...`` would."""
    if not resources:
        return []
    with db.transaction():
        lock_resources(db)
        before = db.scalar("SELECT COALESCE(MAX(resource_id), 0) FROM resources")
        now = db.now()
        _insert(db, "resources",
                ("network_address", "state", "state_num", "host", "cpu", "core", "cpuset"),
                [(r.network_address, "Alive", STATE_NUM["Alive"], r.host, r.cpu, r.core,
                  r.cpuset) for r in resources], chunk=1000)
        new = db.query("SELECT resource_id, network_address, cpuset FROM resources "
                       "WHERE resource_id > %s ORDER BY resource_id", [before])
        ids = {(na, str(cs)): rid for rid, na, cs in new}
        logs = [(ids[(r.network_address, r.cpuset)], attr, value, now)
                for r in resources for attr, value in r.log_rows()]
        _insert(db, "resource_logs", ("resource_id", "attribute", "value", "date_start"), logs)
    return [ids[(r.network_address, r.cpuset)] for r in resources]


def set_property(db: Db, ids: Sequence[int], prop: str, value: str) -> int:
    """``OAR::IO::set_resources_property`` in bulk: update, close old log rows, log new ones."""
    if prop not in columns(db) or not prop.isidentifier():
        raise TestbedError(f"no resource property {prop!r}")
    changed: list[int] = []
    with db.transaction():
        lock_resources(db)
        for part in chunks(list(ids), 5000):
            changed += [r[0] for r in db.query(
                f"SELECT resource_id FROM resources WHERE resource_id IN ({marks(part)}) "
                f"AND ({prop} != %s OR {prop} IS NULL)", [*part, value])]
        now = db.now()
        for part in chunks(changed, 5000):
            db.execute(f"UPDATE resources SET {prop} = %s WHERE resource_id IN ({marks(part)})",
                       [value, *part])
            db.execute("UPDATE resource_logs SET date_stop = %s WHERE date_stop = 0 AND "
                       f"attribute = %s AND resource_id IN ({marks(part)})", [now, prop, *part])
        _insert(db, "resource_logs", ("resource_id", "attribute", "value", "date_start"),
                [(rid, prop, value, now) for rid in changed])
    return len(changed)


def busy_jobs(db: Db, ids: Sequence[int]) -> list[int]:
    """Jobs in an active state that hold one of these resources."""
    jobs: set[int] = set()
    states = f"({marks(ACTIVE_JOB_STATES)})"
    for part in chunks(list(ids), 5000):
        jobs.update(r[0] for r in db.query(
            "SELECT DISTINCT j.job_id FROM jobs j JOIN assigned_resources a "
            "ON a.moldable_job_id = j.assigned_moldable_job "
            f"WHERE j.state IN {states} AND a.resource_id IN ({marks(part)})",
            [*ACTIVE_JOB_STATES, *part]))
    return sorted(jobs)


def remove_resources(db: Db, ids: Sequence[int]) -> None:
    """``oarremoveresource`` in bulk (it also deletes the jobs that ran on them)."""
    if not ids:
        return
    busy = busy_jobs(db, ids)
    if busy:
        shown = ", ".join(map(str, busy[:10])) + (" ..." if len(busy) > 10 else "")
        raise TestbedError(f"cannot remove {len(ids)} resources: jobs {shown} are running on "
                           "them (wait for them or oardel them, then run `testbed up` again)")
    with db.transaction():
        lock_resources(db)
        for part in chunks(list(ids), 5000):
            jobs = db.query("SELECT DISTINCT j.job_id, j.assigned_moldable_job FROM jobs j "
                            "JOIN assigned_resources a ON a.moldable_job_id = "
                            f"j.assigned_moldable_job WHERE a.resource_id IN ({marks(part)})", part)
            for jpart in chunks(jobs, 5000):
                jids = [j for j, _ in jpart]
                molds = [m for _, m in jpart]
                db.execute(f"DELETE FROM event_logs WHERE job_id IN ({marks(jids)})", jids)
                db.execute(f"DELETE FROM frag_jobs WHERE frag_id_job IN ({marks(jids)})", jids)
                db.execute(f"DELETE FROM jobs WHERE job_id IN ({marks(jids)})", jids)
                db.execute(f"DELETE FROM assigned_resources WHERE moldable_job_id IN "
                           f"({marks(molds)})", molds)
            for table in ("assigned_resources", "resource_logs", "resources"):
                db.execute(f"DELETE FROM {table} WHERE resource_id IN ({marks(part)})", part)


def forget_virtual_future(db: Db) -> None:
    """Bring resources' ``last_job_date`` back to now when a virtual-clock run left it ahead.

    Hulot's idle check (``search_idle_nodes``) takes a node as idle only when its last job
    date is ``ENERGY_SAVING_IDLE_TIME`` behind now: a date left days ahead by a virtual run
    would keep that node on for those days. Unfinished jobs dated ahead are named, not touched.
    """
    now = int(time.time())
    with db.transaction():
        lock_resources(db)
        db.execute("UPDATE resources SET last_job_date = %s WHERE last_job_date > %s",
                   [now, now])
    ahead = [r[0] for r in db.query(
        f"SELECT job_id FROM jobs WHERE state IN ({marks(ACTIVE_JOB_STATES)}) AND "
        "GREATEST(start_time, submission_time) > %s ORDER BY job_id",
        [*ACTIVE_JOB_STATES, now + 60])]
    if ahead:
        shown = ", ".join(map(str, ahead[:10])) + (" ..." if len(ahead) > 10 else "")
        log.warning("jobs %s were dated by a virtual clock ahead of the real one: oardel them, "
                    "or bring the bed back with --clock virtual", shown)


def register(cfg: Config, db: Db) -> Plan:
    """Bring the registered resources to ``cfg.nodes`` x ``cfg.cores``; notify Almighty."""
    ensure_properties(db)
    todo = plan(registered(db), layout(cfg.nodes, cfg.cores, cfg.prefix))
    if todo.remove:
        log.info("removing %d resources that were not asked for", len(todo.remove))
        remove_resources(db, todo.remove)
    if todo.update:
        log.info("renumbering %d resources", len(todo.update))
        changes: dict[tuple[str, str], list[int]] = {}
        for rid, res in todo.update:
            for prop, value in res.properties():
                changes.setdefault((prop, value), []).append(rid)
        for (prop, value), ids in changes.items():
            set_property(db, ids, prop, value)  # logs only the values that change
    if todo.add:
        log.info("registering %d resources", len(todo.add))
        add_resources(db, todo.add)
    all_ids = [r[0] for r in db.query("SELECT resource_id FROM resources")]
    set_property(db, all_ids, "available_upto", AVAILABLE_UPTO[cfg.energy])
    if todo.remove or todo.update or todo.add:
        notify_quietly("ChState", "Term")  # as oarnodesetting does
    return todo


def notify_quietly(*messages: str) -> None:
    """Send messages to Almighty if it listens (OAR's notify_tcp_socket ignores failures too)."""
    with contextlib.suppress(OSError):
        notify(conf_server(), *messages)


def non_alive() -> int:
    with connect() as db:
        return int(db.scalar("SELECT COUNT(*) FROM resources WHERE state <> 'Alive'"))


def set_alive(timeout: float = 30) -> int:
    """Set every non-Alive resource Alive with the real oarnodesetting (Almighty applies it);
    wait until it has; return how many there were."""
    bad = non_alive()
    if bad:
        log.info("setting %d non-Alive resources Alive", bad)
        run(["oarnodesetting", "--sql", "state <> 'Alive'", "-s", "Alive"])
        wait_until(lambda: non_alive() == 0, timeout, "Almighty to set the resources Alive",
                   step=0.5)
    return bad


# ----------------------------------------------------------------------------- user

def ensure_user(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        log.info("creating user %s", name)
        run(["useradd", "-m", "-s", "/bin/bash", name])
    home = Path(pwd.getpwnam(name).pw_dir)
    if not home.is_dir():
        run(["mkhomedir_helper", name], check=False)
        if not home.is_dir():
            home.mkdir(parents=True)
            shutil.chown(home, name, name)


# ----------------------------------------------------------------------------- Almighty

def almighty_pid() -> int | None:
    pid = read_pid(OAR_SERVER_PIDFILE)
    if pid and pid_alive(pid) and is_oar_server_process(cmdline(pid)):
        return pid
    return None


def _record_path() -> Path:
    return STATE_DIR / "almighty.json"


def almighty_started_with() -> dict[str, Any] | None:
    """The record written when the test bed started Almighty (pid, oar.conf checksum)."""
    try:
        return json.loads(_record_path().read_text())
    except (OSError, ValueError):
        return None


def almighty_is_current(clock: str | None = None) -> bool:
    """Whether a running Almighty was started by us with today's oar.conf and environment
    (and on ``clock``; a virtual-clock Almighty, with its preload server)."""
    pid, rec = almighty_pid(), almighty_started_with()
    started_on = rec.get("clock", "real") if rec else None
    return bool(pid and rec and rec.get("pid") == pid
                and rec.get("conf_sha256") == sha256(CONF_PATH.read_bytes())
                and clock in (None, started_on)
                and rec.get("env") == almighty_env(started_on)
                and (started_on != "virtual" or preload.server_pid() is not None))


def almighty_clock() -> str | None:
    """The clock the running Almighty was started on (None if it does not run)."""
    rec = almighty_started_with()
    return rec.get("clock", "real") if rec and almighty_pid() == rec.get("pid") else None


# what /usr/sbin/Almighty (setuid, through oardodo) gives /usr/lib/oar/Almighty
ALMIGHTY_ENV = {"PATH": "/bin:/sbin:/usr/bin:/usr/sbin:/usr/lib/oar/oardodo", "LANG": "C",
                "OARDO_USER": "root", "OARDO_UID": "0", "OARDIR": "/usr/lib/oar",
                "PERL5LIB": "/usr/lib/oar", "RUBYLIB": "/usr/lib/oar",
                "OARCONFFILE": str(CONF_PATH), "OARXAUTHLOCATION": "/usr/bin/xauth",
                "USER": "oar", "OARUSER": "oar", "LOGNAME": "oar",
                "SHELL": "/usr/lib/oar/oarsh_shell", "HOME": "/var/lib/oar"}


# Every OAR module loads Net::SMTP (through OAR::Modules::Judas, for mail), which loads
# IO::Socket::SSL when it is installed (Debian installs it for oar-restful-api): 19 ms of a
# module's ~80-ms start, and a virtual-clock replay starts ~9 modules a job. OAR never asks
# Net::SMTP for SSL, so the Almighty started here finds a module that refuses to load first
# on its path, as on a machine without IO::Socket::SSL.
PERL_SHADOW = vclock.CLOCK_DIR / "perl5"
_NO_SSL = ('die "IO::Socket::SSL is not loaded by the OAR server on the Orpheus test bed '
           '(OAR does not use SSL)\\n";\n')


def _write_perl_shadow() -> None:
    stub = PERL_SHADOW / "IO" / "Socket" / "SSL.pm"
    if not stub.is_file() or stub.read_text() != _NO_SSL:
        stub.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        stub.write_text(_NO_SSL)
        stub.chmod(0o644)


def almighty_env(clock: str) -> dict[str, str] | None:
    """The environment the test bed starts Almighty with on ``clock`` (None: the package's
    ``oar-server`` gives it, on the real clock)."""
    if clock != "virtual":
        return None
    return ALMIGHTY_ENV | vclock.faketime_env() | {
        "PERL5LIB": f"{PERL_SHADOW}:{ALMIGHTY_ENV['PERL5LIB']}", "OARDIR": str(preload.OARDIR)}


def _spawn_virtual_almighty() -> None:
    """Almighty as user oar with libfaketime preloaded, its modules forked from a preloaded
    Perl (``oarlib.preload``). The package's setuid wrapper would drop LD_PRELOAD, so its
    environment is given here and the pid file written as ``oar-server`` writes it."""
    _write_perl_shadow()
    env = almighty_env("virtual")
    assert env is not None
    preload.start(env, conf_db_params().type, CONF_PATH)
    child = subprocess.Popen(
        ["/usr/lib/oar/Almighty"], cwd="/", env=env,
        user="oar", group="oar", extra_groups=[], umask=0, start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    OAR_SERVER_PIDFILE.write_text(f"{child.pid}\n")


def start_almighty(timeout: float = 60, clock: str = "real") -> int:
    """Start Almighty under a clean environment (on ``clock``) and wait for its TCP port."""
    conf_bytes = CONF_PATH.read_bytes()
    port = ServerAddress.from_conf(oarconf.parse(conf_bytes.decode())).port
    if port_open(port):
        raise TestbedError(f"port {port} is already in use by another process")
    log.info("starting Almighty (port %d, %s clock)", port, clock)
    if clock == "virtual":
        _spawn_virtual_almighty()
    else:
        run(["env", "-i", f"PATH={ENV_PATH}", "LANG=C", "/usr/sbin/oar-server"], cwd="/")
    wait_until(lambda: almighty_pid() is not None and port_open(port), timeout,
               f"Almighty to listen on port {port} (see /var/log/oar.log)")
    pid = almighty_pid()
    assert pid is not None
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    _record_path().write_text(json.dumps({"pid": pid, "conf_sha256": sha256(conf_bytes),
                                          "started": time.time(), "clock": clock,
                                          "env": almighty_env(clock)}))
    return pid


def leftover_pids() -> list[int]:
    pids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [pid for pid in pids if pid != os.getpid() and is_oar_server_process(cmdline(pid))]


def stop_almighty(timeout: float = 15) -> bool:
    """SIGTERM Almighty, wait, then kill leftovers by name (as the init script); True if any."""
    pid = almighty_pid()
    found = pid is not None
    if pid:
        log.info("stopping Almighty (pid %d)", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(TestbedError):
            wait_until(lambda: not pid_alive(pid), timeout, "Almighty to exit")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = leftover_pids()
        if not left:
            break
        found = True
        log.info("sending %s to leftover OAR server processes %s", sig.name, left)
        for p in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        with contextlib.suppress(TestbedError):
            wait_until(lambda: not leftover_pids(), 5, "leftover OAR processes to exit")
    OAR_SERVER_PIDFILE.unlink(missing_ok=True)
    _record_path().unlink(missing_ok=True)
    preload.stop()
    vclock.clean_shm()
    return found


def restart_almighty_if_running() -> int | None:
    """Restart Almighty if it runs (it reads oar.conf only at start); return the new pid."""
    if almighty_pid() is None:
        return None
    clock = almighty_clock() or "real"
    stop_almighty()
    return start_almighty(clock=clock)


# ----------------------------------------------------------------------------- commands

def up(cfg: Config, install: Callable[[], None] | None = None,
       before_switch: Callable[[], None] | None = None) -> dict[str, Any]:
    """Bring the test bed to ``cfg`` (idempotent); return ``status()``.

    ``install`` runs after OAR is configured and before Almighty starts (the Orpheus install
    step, without restarting Almighty); ``before_switch`` runs when the DB backend changes
    (e.g. stop a daemon bound to the old database).
    """
    cfg.check()
    require_root()
    ensure_packages(cfg.db)
    if cfg.clock == "virtual":
        vclock.ensure()
    start_db_server(cfg.db, cfg.clock)
    current = oarconf.parse(read_conf_text()).get("DB_TYPE", "")
    switching = current.lower() != conf_values(cfg)["DB_TYPE"].lower()  # type: ignore[union-attr]
    if switching and (almighty_pid() or leftover_pids()):
        log.info("switching OAR's database from %s to %s", current or "none", cfg.db)
        if before_switch:
            before_switch()
        stop_almighty()
    configure(cfg)
    ensure_database(cfg.db)
    if cfg.db == "pg":
        pgauth.ensure(pg_hba_path(pg_version()), "oar", DB_ROLES)
    with connect() as db:
        register(cfg, db)
        if cfg.clock == "real":
            forget_virtual_future(db)
    ensure_user(cfg.user)
    stacklimit.wrap()
    if install:
        install()
    if not almighty_is_current(cfg.clock):
        stop_almighty()
        start_almighty(clock=cfg.clock)
    set_alive()
    return status()


def down(all_servers: bool = False, before: Callable[[], None] | None = None) -> None:
    """Stop Almighty (after ``before``, e.g. the Orpheus daemon); DB servers too if asked."""
    require_root()
    if before:
        before()
    stop_almighty()
    stacklimit.restore()
    if all_servers:
        stop_db_servers()


def current() -> Config:
    """The test bed as it is now (size, scheduler settings, clock): what to restore after
    changing it. Energy saving and the user are not read back (their defaults)."""
    conf = oarconf.parse(read_conf_text())
    with connect() as db:
        nodes, cores = db.query("SELECT count(DISTINCT network_address), count(*) "
                                "FROM resources")[0]
    return Config(db="pg" if conf["DB_TYPE"] == "Pg" else "mysql", nodes=int(nodes) or 16,
                  cores=int(cores) // max(1, int(nodes)) or 4, port=int(conf["SERVER_PORT"]),
                  log_level=int(conf["LOG_LEVEL"]),
                  sched_interval=int(conf["SCHEDULER_MIN_TIME_BETWEEN_2_CALLS"]),
                  max_jobs_per_user=int(conf["SCHEDULER_FAIRSHARING_MAX_JOB_PER_USER"]),
                  security_time=int(conf["SCHEDULER_JOB_SECURITY_TIME"]),
                  clock=almighty_clock() or pg_clock())


def status() -> dict[str, Any]:
    """What runs and what is registered, as plain data (for ``--json`` and tests)."""
    out: dict[str, Any] = {"conf": str(CONF_PATH)}
    try:
        conf = oarconf.parse(read_conf_text())
    except OSError as exc:
        return out | {"error": f"cannot read {CONF_PATH}: {exc.strerror}"}
    params, server = DbParams.from_conf(conf), ServerAddress.from_conf(conf)
    pid = almighty_pid()
    out["almighty"] = {"pid": pid, "port": server.port,
                       "listening": port_open(server.port) if pid else False,
                       "conf_current": almighty_is_current()}
    out["stack_limit"] = stacklimit.state()
    clock = almighty_clock() or pg_clock()
    out["clock"] = {"mode": clock, "offset": vclock.Clock().read() if clock == "virtual"
                    else 0.0}
    if clock == "virtual":
        out["clock"]["preload_pid"] = preload.server_pid()
    out["db"] = {"type": params.type, "host": params.host, "port": params.port,
                 "name": params.name, "reachable": False}
    try:
        with Db(params, connect_timeout=3) as db:
            out["db"]["reachable"] = True
            out["resources"] = dict(db.query(
                "SELECT state, COUNT(*) FROM resources GROUP BY state ORDER BY state"))
            nodes = db.query("SELECT network_address, COUNT(*) FROM resources "
                             "GROUP BY network_address")
            out["nodes"] = len(nodes)
            out["cores_per_node"] = sorted({n for _, n in nodes})
            out["jobs"] = dict(db.query(
                "SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state"))
            out["faults"] = [asdict(f) for f in faults.check(db, pid is not None)]
    except Exception as exc:  # any driver error: reported, not raised
        out["db"]["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    return out
