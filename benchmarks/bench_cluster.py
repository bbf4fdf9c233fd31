"""ADAGE over ssh against ClusterShell and TakTuk, on the loopback sshd test bed (as root).

Run: ``python benchmarks/bench_cluster.py [--nodes 32] [--procs 256] [--size-mb 200]
[--repeat 3] [--user alice] [--ssh-option OPT ...] [--skip-start|--skip-copy]
[--copy-propagations ssh,chain,taktuk]``.
Each tool runs ``--repeat`` times, in turn, each repeat in another order (no tool always
follows the same one); every figure is the median, with the spread (min-max) beside it.
Every tool runs as ``--user`` (default ``alice``, the test bed's user; setpriv, with that
user's HOME and a plain PATH), as a user would: root's shell on these machines runs ``pyenv
rehash`` under one global lock at every ssh login, which serialises hundreds of concurrent
logins (ADAGE on 128 nodes: 60 s as root, 13.6 s as alice).
Figures printed:
1. start ``--procs`` processes (``sleep``) on ``--nodes`` ssh nodes: ADAGE over ssh and
   through TakTuk (``adage -x [--propagation taktuk]``, wall time of the command and ADAGE's
   own time until every process was acknowledged), ``clush -w node[1-N]`` and ``taktuk`` each
   starting the same processes in the background; the ratio to the faster of the two (of the
   medians, and the median of each round's: this machine's speed drifts over minutes), the
   CPU time the whole machine spent (front end and nodes: on this one machine the nodes' work
   adds up instead of running in parallel), the CPU time of the front end alone (the tool and
   what it ran here, its ssh clients above all: what bounds a launch on a real cluster, whose
   nodes work in parallel) with its ratio to that of the tool of the same shape (ADAGE over
   ssh to clush, a session per node; ADAGE through TakTuk to taktuk, a tree), and the ssh
   connections each opened per node (counted in the nodes' sshd logs);
2. a large fan-out (``--fanout 1000``) on the same nodes: open files and ssh processes of
   ADAGE at its peak (one master and one satellite session per node: no fd exhaustion);
3. putting a ``--size-mb`` file on every node: ADAGE over ssh (one tar stream per node),
   ADAGE through TakTuk (one stream through the tree), ADAGE along a chain (the stream once,
   each node forwarding it to the next), ``clush --copy`` (to one path, which
   on this one file system is one file overwritten 32 times; and to a file per node, one
   ``clush`` per node at once) and TakTuk's own ``broadcast put``; for the TakTuk runs, how
   many nodes the front end sent the file to. Each copy starts after ``sync``: the last
   tool's gigabytes, still being written back to the disk, slowed the next one by up to 30 %.
ADAGE's deployments of the first figure are cleaned once every run is over, not between runs:
the nodes of this bed share one ext4 file system, without a journal here, whose inode
allocator reads, for every new file, each free inode deleted in the last 30 to 60 s
(``find_inode_bit`` -> ``recently_deleted``). A deployment made after the previous one's clean
(1,400 files at 32 nodes) paid ~9 ms of CPU a node for it (``perf record -a``: its satellites
795 ms a run against 382), a cost that grows with the square of the files of all the nodes
together, where a real node's disk only holds its own.
ADAGE runs from this checkout with its bytecode compiled first (as an installed package's is,
and clush's and taktuk's are): compiling its modules at every start cost it ~40 ms a run.
Every started process is killed and every copy removed at the end; the sshd nodes found
running are left as they were.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import pwd
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from oarlib import sshnodes

ROOT = Path(__file__).resolve().parents[1]
MARK = "adage-bench-cluster"


AS: list[str] = []  # the prefix running a command as --user (``as_user``)
SSH_OPTIONS: list[str] = []  # --ssh-option: every tool's ssh gets them


def ssh_line() -> str:
    """The ssh command line clush (``-o``) and taktuk (``-c``) get: no prompt, and the
    --ssh-option's (ADAGE gets them as its own --ssh-option's)."""
    return shlex.join(["ssh", "-o", "BatchMode=yes", *(a for o in SSH_OPTIONS for a in ("-o", o))])


def as_user(user: str) -> list[str]:
    """``setpriv`` to ``user`` (it execs: the pid is the command's), with its HOME, a plain
    PATH and the rest of this environment."""
    pw = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--",
            "env", f"HOME={pw.pw_dir}", f"USER={user}", f"LOGNAME={user}",
            "PATH=/usr/local/bin:/usr/bin:/bin"]


def busy() -> float:
    """CPU seconds the machine has spent so far, all cores (``/proc/stat``, idle excluded)."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def front_end() -> float:
    """CPU seconds spent so far by this process's reaped descendants: a tool and what it ran
    on the front end (its ssh clients, taktuk and its connectors), not what runs on the nodes
    (under their sshd). This process adopts its orphans (``adopt``) and reaps them first: a
    tool killing its children's parent (ADAGE ends taktuk with a SIGKILL of its process group)
    would otherwise hand their CPU to init."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            time.sleep(0.05)
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def adopt() -> None:
    """Become the reaper of this process's orphaned descendants (``PR_SET_CHILD_SUBREAPER``)."""
    if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def settle(most: float = 10.0) -> None:
    """Wait until the machine is idle (under a tenth of a core over 0.2 s; ``most`` seconds at
    most): the previous tool's processes, killed, and its sessions still end for a while, and
    their CPU would count for the next tool."""
    deadline = time.monotonic() + most
    while time.monotonic() < deadline:
        before = busy()
        time.sleep(0.2)
        if busy() - before < 0.02:
            return


def timed(argv: list[str], **kw: object) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    done = subprocess.run([*AS, *argv], capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]
    took = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{argv[0]} failed ({done.returncode}): {done.stderr[-800:]}")
    return took, done


def connections(nodes: list[str]) -> dict[str, int]:
    return {n: sshnodes.connections(n) for n in nodes}


def per_node(before: dict[str, int], nodes: list[str]) -> str:
    counts = sorted({sshnodes.connections(n) - before[n] for n in nodes})
    return "/".join(map(str, counts))


def marker(tag: str) -> str:
    """The argument that tells this run's processes apart: ``sleep 3600 0.<pid><n>`` (sleep
    adds its arguments, so the marker must be a number)."""
    return f"0.{os.getpid()}{'ACTFK'.index(tag) + 1}"


def kill_marked(tag: str) -> int:
    """Kill, by pid, the ``sleep 3600 <marker>`` processes this run started; how many."""
    want = ["sleep", "3600", marker(tag)]
    pids = []
    for q in Path("/proc").iterdir():
        try:
            if q.name.isdigit() and (q / "cmdline").read_bytes().split(b"\0")[:3] == \
                    [w.encode() for w in want]:
                pids.append(int(q.name))
        except OSError:
            continue
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
    return len(pids)


CONNECT_TIMEOUT = ["--connect-timeout", "10"]  # adage's deployments (--connect-timeout)


def adage_env(work: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ADAGE_HOME": str(work / "home")}


def compile_adage() -> None:
    """ADAGE's bytecode in the checkout's ``__pycache__`` (as an installed package has it, as
    the clush and taktuk run here have theirs): written by this process's user, read by
    ``--user``."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True,
                   stdout=subprocess.DEVNULL)


def adage(work: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = adage_env(work)
    # hundreds of nodes on two cores: connections queue, and a node's cleanup scans every
    # process of this one machine
    extra = [*CONNECT_TIMEOUT, *(["--timeout", "120"] if args[0] == "clean" else []),
             *(f"--ssh-option={o}" for o in SSH_OPTIONS)]
    return timed([sys.executable, "-m", "adage", *args, *extra], cwd=work, env=env)


def appl(path: Path, count: int, tag: str, data: str = "") -> Path:
    files = f'<files><file type="data" src="{data}"/></files>' if data else ""
    path.write_text(
        '<generic_appl_descr><proc_groups><proc_group id="g" type="generic" '
        f'cardinality="{count}"><process id="p"><executable>sleep</executable><arguments>'
        f"<arg>3600</arg><arg>{marker(tag)}</arg></arguments>{files}</process></proc_group>"
        "</proc_groups></generic_appl_descr>")
    return path


def spread(times: list[float]) -> str:
    """``median (min-max)`` of a tool's runs."""
    return f"{statistics.median(times):7.2f} ({min(times):.2f}-{max(times):.2f})"


def bench_start(work: Path, nodes: list[str], procs: int, repeat: int) -> None:
    per = procs // len(nodes)
    nf = work / "nodefile"
    nf.write_text("".join(f"{n}\n" for n in nodes))
    spec = f"node[1-{len(nodes)}]"
    walls: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    fronts: dict[str, list[float]] = {}
    conns: dict[str, str] = {}
    acked: dict[str, list[float]] = {}
    deployments: list[str] = []

    def start(tag: str) -> str:
        return (f"for i in $(seq {per}); do setsid sleep 3600 {marker(tag)} </dev/null "
                ">/dev/null 2>&1 & done")

    def run_adage(prop: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        return adage(work, "-a", str(appl(work / "a.xml", procs, "A")), "-o", str(nf), "-x",
                     "-l", "1", "--timeout", "120", "--propagation", prop)

    taktuk = ["taktuk", "-s", "-c", ssh_line()]
    for n in nodes:
        taktuk += ["-m", n]
    tools = {  # each: the run, then what ends it (cleanup outside the measure)
        "adage/ssh": (lambda: run_adage("ssh"), "A"),
        "adage/taktuk": (lambda: run_adage("taktuk"), "A"),
        "clush": (lambda: timed(["clush", "-w", spec, "-f", "64", "-o", ssh_line()[4:],
                                 start("C")]), "C"),
        "taktuk": (lambda: timed([*taktuk, "broadcast", "exec", "[", start("T"), "]"]), "T"),
    }
    order = list(tools)
    for k in range(repeat):
        for tool in order[k % 4:] + order[:k % 4]:  # no tool always follows the same one
            run, tag = tools[tool]
            settle()
            before, cpu, front = connections(nodes), busy(), front_end()
            wall, done = run()
            cpus.setdefault(tool, []).append(busy() - cpu)
            fronts.setdefault(tool, []).append(front_end() - front)
            walls.setdefault(tool, []).append(wall)
            conns[tool] = per_node(before, nodes)
            if tag == "A":
                acked.setdefault(tool, []).append(
                    float(done.stderr.split("acknowledged in ")[1].split()[0]))
                deployments.append(done.stderr.split("deployment ")[1].split(":")[0])
            kill_marked(tag)
    for dep in deployments:  # cleaned after every run, not between (module docstring)
        adage(work, "clean", dep)

    best = min(statistics.median(walls["clush"]), statistics.median(walls["taktuk"]))
    like = {"adage/ssh": "clush", "adage/taktuk": "taktuk"}  # a session per node; a tree
    print(f"\n{procs} processes on {len(nodes)} ssh nodes ({per} per node), {repeat} runs "
          "each: median (min-max); ratios of medians to the faster of clush and taktuk, and "
          "of the front end's CPU to that of the tool of the same shape (a session per node: "
          "clush; a tree: taktuk)")
    print(f"{'tool':12} {'wall s':>20} {'ratio':>6} {'CPU s (machine)':>20} "
          f"{'CPU s (front end)':>20} {'ratio':>6}  ssh connections per node")
    for tool, times in walls.items():
        front = statistics.median(fronts[tool]) / statistics.median(fronts[like.get(tool, tool)])
        print(f"{tool:12} {spread(times):>20} {statistics.median(times) / best:6.2f} "
              f"{spread(cpus[tool]):>20} {spread(fronts[tool]):>20} {front:6.2f}  "
              f"{conns[tool]}")
    for tool, times in acked.items():
        print(f"{tool}: every process acknowledged after {spread(times).strip()} s "
              f"(ratio {statistics.median(times) / best:.2f})")
    for tool in acked:  # a round's tools run within seconds: the machine's slow drifts cancel
        rounds = [w / min(c, t) for w, c, t in zip(walls[tool], walls["clush"], walls["taktuk"],
                                                     strict=True)]
        print(f"{tool}: ratio to the faster of clush and taktuk of the same round "
              f"{statistics.median(rounds):.2f} ({min(rounds):.2f}-{max(rounds):.2f})")


def bench_fanout(work: Path, nodes: list[str], procs: int) -> None:
    nf = work / "nodefile"
    env = adage_env(work)
    p = subprocess.Popen([*AS, sys.executable, "-m", "adage", "-a",
                          str(appl(work / "f.xml", procs, "F")), "-o", str(nf), "-x", "-l", "1",
                          "--timeout", "120", "--fanout", "1000",
                          *(f"--ssh-option={o}" for o in SSH_OPTIONS)],
                         cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = {"fds": 0, "ssh": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                fds = len(os.listdir(f"/proc/{p.pid}/fd"))
                ssh = sum(1 for q in Path("/proc").iterdir() if q.name.isdigit()
                          and _comm(q) == "ssh")
            except OSError:
                break
            peak["fds"], peak["ssh"] = max(peak["fds"], fds), max(peak["ssh"], ssh)
            time.sleep(0.05)

    t = threading.Thread(target=sample)
    t.start()
    try:
        _, err = p.communicate(timeout=180)
    finally:
        stop.set()
        t.join()
    if p.returncode != 0:
        sys.exit(f"adage --fanout 1000 failed: {err.decode()[-800:]}")
    adage(work, "clean")
    kill_marked("F")
    print(f"\n--fanout 1000 on {len(nodes)} nodes: at most {peak['fds']} open files in adage "
          f"and {peak['ssh']} ssh processes (masters + sessions) on the machine")


def _comm(q: Path) -> str:
    try:
        return (q / "comm").read_text().strip()
    except OSError:
        return ""


class FrontEndCopies:
    """Counts the ssh connectors that taktuk runs on the front end (its children in the tree)
    while a command runs: each sends the file once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self.stop.is_set():
            for q in Path("/proc").iterdir():
                if q.name.isdigit() and _comm(q) == "ssh" and _comm(
                        Path(f"/proc/{_ppid(Path(f'/proc/{_ppid(q)}'))}")) == "taktuk":
                    self.seen.add(int(q.name))
            time.sleep(0.1)

    def __enter__(self) -> FrontEndCopies:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def _ppid(q: Path) -> int:
    try:
        stat = (q / "stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError):
        return 0


def bench_copy(work: Path, nodes: list[str], size_mb: int, repeat: int,
               propagations: list[str]) -> None:
    big = work / "big.bin"
    with open(big, "wb") as f:
        f.write(os.urandom(1 << 20) * size_mb)
    nf = work / "nodefile"
    nf.write_text("".join(f"{n}\n" for n in nodes))
    walls: dict[str, list[float]] = {}
    what: dict[str, str] = {}
    dest = Path(f"/tmp/{MARK}")
    spec = f"node[1-{len(nodes)}]"
    for _ in range(repeat):
        for prop in propagations:
            name = f"adage -x --propagation {prop}"
            os.sync()  # no writeback of the last tool's copies during this one
            before = connections(nodes)
            with FrontEndCopies() as copies:
                wall, _ = adage(work, "-a", str(appl(work / "c.xml", len(nodes), "K", str(big))),
                                "-o", str(nf), "-x", "-l", "1", "--timeout", "900",
                                "--propagation", prop)
            walls.setdefault(name, []).append(wall)
            sent = {"taktuk": f", sent by the front end to {len(copies.seen)} nodes",
                    "chain": ", sent by the front end to 1 node"}.get(prop, "")
            what[name] = f"connections/node {per_node(before, nodes)}{sent}"
            adage(work, "clean")
            kill_marked("K")
        timed(["clush", "-w", spec, f"mkdir -p {dest}"])
        os.sync()
        before = connections(nodes)
        name = "clush --copy (one shared file)"
        walls.setdefault(name, []).append(timed(
            ["clush", "-w", spec, "-f", "64", "-o", ssh_line()[4:], "--copy", str(big),
             "--dest", str(dest)])[0])
        what[name] = f"connections/node {per_node(before, nodes)}"
        shutil.rmtree(dest, ignore_errors=True)
        # the nodes share this file system: made here, outside the timing
        timed(["mkdir", "-p", *(f"{dest}/{n}" for n in nodes)])
        os.sync()
        before = connections(nodes)
        t0 = time.perf_counter()
        each = [subprocess.Popen([*AS, "clush", "-w", n, "-o", ssh_line()[4:], "--copy",
                                  str(big), "--dest", f"{dest}/{n}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                for n in nodes]
        if any(c.wait() != 0 for c in each):
            sys.exit("clush --copy to a file per node failed")
        name = "clush --copy (a file per node)"
        walls.setdefault(name, []).append(time.perf_counter() - t0)
        what[name] = f"connections/node {per_node(before, nodes)}"
        os.sync()
        before = connections(nodes)
        argv = ["taktuk", "-s", "-c", ssh_line()]
        for n in nodes:
            argv += ["-m", n]
        argv += ["synchronize", "broadcast", "put", "[", str(big), "]", "[",
                 f"{dest}/big-$TAKTUK_HOSTNAME.bin", "]"]
        with FrontEndCopies() as copies:
            walls.setdefault("taktuk broadcast put", []).append(timed(argv)[0])
        what["taktuk broadcast put"] = (f"connections/node {per_node(before, nodes)}, sent by "
                                        f"the front end to {len(copies.seen)} nodes")
        shutil.rmtree(dest, ignore_errors=True)
    best = min(statistics.median(walls["clush --copy (a file per node)"]),
               statistics.median(walls["taktuk broadcast put"]))
    print(f"\n{size_mb} MB file put on {len(nodes)} nodes, {repeat} runs each (one file system: "
          f"{size_mb * len(nodes) / 1024:.1f} GB written, except by the shared-file clush row, "
          f"whose copies all overwrite one file); median (min-max) s, ratios of medians to the "
          f"faster of the per-node clush and taktuk")
    for name, times in walls.items():
        print(f"{name:30} {spread(times):>22}  ratio {statistics.median(times) / best:5.2f}  "
              f"{what[name]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=32)
    ap.add_argument("--procs", type=int, default=256)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each tool (default 3)")
    ap.add_argument("--connect-timeout", default="10",
                    help="adage's --connect-timeout (default 10; hundreds of nodes on two "
                         "cores need more)")
    ap.add_argument("--ssh-option", action="append", default=[], metavar="OPT",
                    help="an ssh -o option for every tool (clush -o, taktuk -c, adage "
                         "--ssh-option), e.g. KexAlgorithms=curve25519-sha256; repeatable")
    ap.add_argument("--user", default="alice",
                    help="who runs every tool (default alice, the test bed's user; root too)")
    ap.add_argument("--skip-copy", action="store_true")
    ap.add_argument("--skip-start", action="store_true", help="only the copy")
    ap.add_argument("--copy-propagations", default="ssh,chain,taktuk",
                    help="ADAGE's copy rows (default ssh,chain,taktuk; through TakTuk, 128 "
                         "nodes take 15 minutes here)")
    args = ap.parse_args()
    CONNECT_TIMEOUT[1] = args.connect_timeout
    SSH_OPTIONS[:] = args.ssh_option
    had = len(sshnodes.running())
    sshnodes.up(sshnodes.Config(nodes=max(args.nodes, 16),
                                users=tuple(sorted({"alice", "root", args.user}))))
    nodes = sshnodes.names(args.nodes)
    work = Path(tempfile.mkdtemp(prefix=MARK))
    pw = pwd.getpwnam(args.user)
    os.chown(work, pw.pw_uid, pw.pw_gid)
    AS[:] = as_user(args.user) if args.user != "root" else []
    compile_adage()
    adopt()
    if any(_comm(q) == "Almighty" for q in Path("/proc").iterdir() if q.name.isdigit()):
        print("note: OAR's server runs on this machine (the test bed: `orpheus testbed down` "
              "stops it); its scheduler's passes count in every figure")
    try:
        if not args.skip_start:
            bench_start(work, nodes, args.procs, args.repeat)
            bench_fanout(work, nodes, args.procs)
        if not args.skip_copy:
            bench_copy(work, nodes, args.size_mb, args.repeat,
                       args.copy_propagations.split(","))
    finally:
        for tag in "ACTFK":
            kill_marked(tag)
        shutil.rmtree(work, ignore_errors=True)
        if had:
            sshnodes.up(sshnodes.Config(nodes=had))  # the node count found


if __name__ == "__main__":
    main()
