"""Slurm 22.05's front-end emulator on this machine, without systemd: build, configure, start, stop.

Hand-written because no library does it: PySlurm wants a full Slurm install and talks to a
running controller, and nothing sets up the front-end emulation (one ``slurmd`` standing in
for ``node[1-N]``) outside systemd.

Debian's ``slurm-wlm-emulator`` ships ``slurmctld``/``slurmd``/``slurmstepd`` built with
``--enable-front-end``, but they load the shared ``libslurmfull.so`` of
``slurm-wlm-basic-plugins``, built without it: with ``FrontendName`` in slurm.conf they die
("Use of FrontendName in slurm.conf without Slurm being configured/built with the
--enable-front-end option"), and without it ``slurmctld`` dies ("No front end nodes
defined"). Its ``slurmctld`` also has a front-end bug of Slurm 22.05 (still in 22.05.11): a
batch step has no node bitmap, and ending it dereferences it (SIGSEGV in
``_step_dealloc_lps`` at the first job's end). So ``build`` compiles, from the Slurm 22.05.8
source Debian's package is built from (its ``orig.tar.gz`` in Debian's pool, checksum
checked; SchedMD's tag ``slurm-22-05-8-1``), a front-end ``libslurmfull.so`` and a
``slurmctld`` with that one check added, into ``/opt/slurm-fe``. Debian's emulator
``slurmd``/``slurmstepd`` run as they are with that library (``LD_LIBRARY_PATH`` wins over
their RUNPATH), Debian's plugins are used as they are (no plugin of ours depends on
``HAVE_FRONT_END``), and so do the clients, ``slurm-client-emulator``'s ``*-emulator``
commands (``sbatch-emulator``, ``sinfo-emulator``...): all of them run with ``env()``.

``python benchmarks/slurm_emulator.py build [SRC] | start NODES CORES | stop | status``
(``ensure``, which the benchmark calls, installs the packages and builds once).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

PREFIX = Path("/opt/slurm-fe")
LIB = PREFIX / "lib"
SLURMCTLD = PREFIX / "sbin" / "slurmctld"
SLURMD = Path("/usr/sbin/slurmd-wlm-emulator")
CONF = Path("/etc/slurm/slurm.conf")
STATE = Path("/var/lib/slurm/slurmctld")
SPOOL = Path("/var/lib/slurm/slurmd")
LOGDIR = Path("/var/log/slurm")
JOBCOMP = LOGDIR / "jobcomp.log"
MUNGE_PID = Path("/run/munge/munged.pid")
CTLD_PID = Path("/run/slurmctld.pid")
SLURMD_PID = Path("/run/slurmd.pid")
PLUGINS = Path("/usr/lib/x86_64-linux-gnu/slurm-wlm")
# the one check the front-end slurmctld lacks (src/slurmctld/step_mgr.c, _step_dealloc_lps)
PATCH_AT = "\tif (step_ptr->step_layout == NULL)\t/* batch step */\n\t\treturn;\n"
PATCH_ADD = "\tif (!step_ptr->step_node_bitmap)\t/* front-end batch step */\n\t\treturn;\n"
FIELD = re.compile(r"(\w+)=(\S*)")
PACKAGES = ("slurm-wlm-emulator", "slurm-client-emulator", "munge", "build-essential")
ORIG = "http://deb.debian.org/debian/pool/main/s/slurm-wlm/slurm-wlm_22.05.8.orig.tar.gz"
ORIG_SHA256 = "8c8f6a26a5d51e6c63773f2e02653eb724540ee8b360125c8d7732314ce737d6"


def slurm_conf(nodes: int, cores: int, sched_params: str = "") -> str:
    """slurm.conf for ``nodes`` fake nodes of ``cores`` cores behind one front end.

    ``sched_params`` is ``SchedulerParameters`` (Slurm's defaults if empty).
    """
    params = f"SchedulerParameters={sched_params}\n" if sched_params else ""
    return f"""\
# orpheus benchmarks/slurm_emulator.py: {nodes} x {cores}, front-end emulation
ClusterName=orpheus
SlurmctldHost=localhost
FrontendName=localhost
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
PluginDir={PLUGINS}
StateSaveLocation={STATE}
SlurmdSpoolDir={SPOOL}
SlurmctldPidFile={CTLD_PID}
SlurmdPidFile={SLURMD_PID}
SlurmctldLogFile={LOGDIR}/slurmctld.log
SlurmdLogFile={LOGDIR}/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
{params}AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={JOBCOMP}
ReturnToService=2
MaxArraySize=100001
NodeName=node[1-{nodes}] CPUs={cores} State=UNKNOWN
PartitionName=all Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _epoch(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S").timestamp()


def parse_jobcomp(text: str) -> list[dict[str, str | float]]:
    """Records of jobcomp/filetxt lines: every ``Key=value``, with ``start``/``end`` in epoch s."""
    out: list[dict[str, str | float]] = []
    for line in text.splitlines():
        rec: dict[str, str | float] = dict(FIELD.findall(line))
        if "JobId" in rec:
            rec["start"] = _epoch(str(rec["StartTime"]))
            rec["end"] = _epoch(str(rec["EndTime"]))
            out.append(rec)
    return out


def fetch_source(under: Path = PREFIX / "src") -> Path:
    """Debian's Slurm 22.05.8 source (orig.tar.gz, checksum checked) unpacked ``under``."""
    top = under / "slurm-slurm-22-05-8-1"
    if top.is_dir():
        return top
    under.mkdir(parents=True, exist_ok=True)
    tgz = under / Path(ORIG).name
    urllib.request.urlretrieve(ORIG, tgz)
    if hashlib.sha256(tgz.read_bytes()).hexdigest() != ORIG_SHA256:
        raise SystemExit(f"{ORIG}: not the tarball Debian's slurm-wlm 22.05.8 is built from")
    with tarfile.open(tgz) as tf:
        tf.extractall(under)  # checksum checked: Debian's own tarball
    tgz.unlink()
    return top


def ensure() -> None:
    """The emulator's packages installed and the front-end build in place (built once)."""
    missing = [p for p in PACKAGES if subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status}", p], capture_output=True,
        text=True).stdout != "install ok installed"]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"})
    if not SLURMCTLD.exists() or not (LIB / "libslurmfull.so").exists():
        print(f"building Slurm's front-end library and slurmctld into {PREFIX} (once, a few "
              "minutes)", file=sys.stderr)
        build(fetch_source())


def build(src: Path) -> None:
    """Build the front-end ``libslurmfull.so`` and ``slurmctld`` from Slurm 22.05.8's ``src``."""
    step_mgr = src / "src/slurmctld/step_mgr.c"
    code = step_mgr.read_text()
    if PATCH_ADD not in code:
        if code.count(PATCH_AT) != 1:
            raise SystemExit(f"{step_mgr}: not Slurm 22.05's _step_dealloc_lps")
        step_mgr.write_text(code.replace(PATCH_AT, PATCH_AT + PATCH_ADD))
    if not (src / "config.h").exists():
        subprocess.run(["./configure", "--prefix=/usr", "--sysconfdir=/etc/slurm",
                        "--libdir=/usr/lib/x86_64-linux-gnu", "--runstatedir=/run",
                        "--localstatedir=/var", "--enable-front-end",
                        "--without-shared-libslurm"], cwd=src, check=True,
                       stdout=subprocess.DEVNULL)
    jobs = f"-j{os.cpu_count() or 1}"
    for target in (["-C", "src/common"], ["-C", "src/api", "full_version.map", "libslurmfull.la"],
                   ["-C", "src/slurmctld"]):
        subprocess.run(["make", jobs, *target], cwd=src, check=True, stdout=subprocess.DEVNULL)
    LIB.mkdir(parents=True, exist_ok=True)
    SLURMCTLD.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "src/api/.libs/libslurmfull.so", LIB / "libslurmfull.so")
    shutil.copy2(src / "src/slurmctld/slurmctld", SLURMCTLD)


def _alive(pidfile: Path) -> int | None:
    """The pid in ``pidfile`` if that process runs (a zombie does not: init may be slow to reap)."""
    try:
        pid = int(pidfile.read_text().split()[0])
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError, IndexError):
        return None
    return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid


def env() -> dict[str, str]:
    """The environment for Slurm's daemons and commands: the front-end library first."""
    return dict(os.environ) | {"LD_LIBRARY_PATH": str(LIB)}


def idle_nodes() -> int:
    """Nodes the controller reports idle, 0 until the front end is up (or if it does not answer)."""
    front = subprocess.run(["scontrol-emulator", "-o", "show", "frontend"],
                           capture_output=True, text=True, check=False, env=env())
    if "State=IDLE" not in front.stdout:
        return 0
    run = subprocess.run(["sinfo-emulator", "-h", "-t", "idle", "-o", "%D"],
                         capture_output=True, text=True, check=False, env=env())
    return sum(int(n) for n in run.stdout.split()) if run.returncode == 0 else 0


def start(nodes: int, cores: int, sched_params: str = "", timeout: float = 120) -> bool:
    """Bring munged, slurmctld and the front-end slurmd up at ``nodes`` x ``cores``.

    Running daemons are kept if slurm.conf is unchanged; otherwise they are stopped, the
    controller's saved state is dropped and they start on the new slurm.conf. True if they
    were (re)started.
    """
    if not SLURMCTLD.exists() or not (LIB / "libslurmfull.so").exists():
        raise SystemExit(f"no front-end build in {PREFIX}: python {__file__} build")
    conf = slurm_conf(nodes, cores, sched_params)
    same = CONF.exists() and CONF.read_text() == conf
    if same and _alive(CTLD_PID) and _alive(SLURMD_PID):
        return False
    stop(munge=False)
    if not same:
        CONF.write_text(conf)
    for state in STATE.iterdir():
        shutil.rmtree(state) if state.is_dir() else state.unlink()
    if not _alive(MUNGE_PID):
        Path("/run/munge").mkdir(mode=0o755, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
    shutil.chown(LOGDIR, "slurm", "slurm")
    subprocess.run([str(SLURMCTLD)], env=env(), check=True)
    subprocess.run([str(SLURMD)], env=env(), check=True)
    deadline = time.time() + timeout
    while idle_nodes() < nodes:
        if time.time() > deadline:
            raise SystemExit(f"Slurm: {idle_nodes()} of {nodes} nodes idle after {timeout} s "
                             f"(see {LOGDIR})")
        time.sleep(0.5)
    return True


def stop(munge: bool = True) -> None:
    """Stop slurmd, slurmctld and, with ``munge``, munged (SIGTERM, SIGKILL after 30 s)."""
    files = [SLURMD_PID, CTLD_PID, *([MUNGE_PID] if munge else [])]
    for pidfile in files:
        if (pid := _alive(pidfile)) is None:
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 30
        while _alive(pidfile) == pid and time.time() < deadline:
            time.sleep(0.2)
        if _alive(pidfile) == pid:
            os.kill(pid, signal.SIGKILL)


def status() -> dict[str, int | None]:
    """Pid of each daemon, None when it is not running."""
    return {"munged": _alive(MUNGE_PID), "slurmctld": _alive(CTLD_PID),
            "slurmd": _alive(SLURMD_PID)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("build").add_argument("src", type=Path, nargs="?",
                                         help="Slurm 22.05.8 source tree (default: Debian's, "
                                              f"fetched under {PREFIX}/src)")
    up = sub.add_parser("start")
    up.add_argument("nodes", type=int)
    up.add_argument("cores", type=int)
    up.add_argument("--sched-params", default="", help="SchedulerParameters (Slurm's defaults)")
    sub.add_parser("stop")
    sub.add_parser("status")
    args = ap.parse_args()
    if args.cmd == "build":
        ensure() if args.src is None else build(args.src)
    elif args.cmd == "start":
        print("started" if start(args.nodes, args.cores, args.sched_params) else "already running")
    elif args.cmd == "stop":
        stop()
    print(status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
