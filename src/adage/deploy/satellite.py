#!/usr/bin/env python3
"""ADAGE satellite: one per node, started by the front end with the node's Python.

Standard library only (it is copied to the node and run there). Protocol: JSON, one object per
line. The front end writes operations on the satellite's stdin:
  {"op": "launch", "key": K, "procs": [{"id", "cwd", "argv", "env": [[name, value, action]]}],
   "watch": true}    (watch, optional: other processes wait for these ones' values)
  {"op": "kill"}      kill every process group started, then exit
  {"op": "detach"}    stop talking; keep watching the processes, write exit codes, exit last
and reads events on its stdout:
  {"ev": "hello", "node", "pid", "python"}                   once, at start
  {"ev": "started", "key", "pids": {id: pid}}                 every process of K was started
  {"ev": "error", "key", "proc", "message"}                   a process could not be started
  {"ev": "value", "key", "proc", "name", "value"}             a KEY=VALUE line of ADAGE_REPORT
  {"ev": "exit", "key", "proc", "code", "stderr"}             (negative code: signal; stderr:
                                                              its last lines if code != 0)
  {"ev": "killed"}                                            after "kill", before exiting
  {"ev": "detached"}                                          after "detach", its last line
Each process runs in its run directory (``cwd``, made if missing), in its own session, stdout
and stderr to files ``stdout`` and ``stderr`` there; its exit code is also written to
``adage.exit``. If stdin closes without "detach" (the front end died), every process is killed.

A process's end wakes the satellite at once (SIGCHLD). Report files are read every POLL
seconds while a watched process runs or after anything happened, else twice as seldom each
time nothing does, up to POLL_MAX: on a one-machine test bed, hundreds of satellites reading
eight files 20 times a second took CPU from the nodes still being started. They are read once
more on "detach", before "detached", and no more after it: a detached satellite only waits for
its processes' ends.

Its start is paid on every node, so it imports little: ``posix_spawn`` instead of
``subprocess``, and on CPython the C halves of ``json`` and ``signal`` (their Python halves
import ``re`` and ``enum``): 10 ms of CPU a start instead of 24 (Python 3.11). ``posix``, the
built-in module under ``os``, instead of ``os``, whose Python half (and ``_collections_abc``)
cost 1.1 ms more: the few helpers of ``os`` it needs are below. Needs Python 3.9.
"""

import posix
import select
import sys
import time


class Plain:
    """What the C JSON scanner asks of its decoder: ``json.JSONDecoder()``'s defaults."""

    strict = True
    object_hook = object_pairs_hook = None
    parse_float = parse_constant = float
    parse_int = int


try:  # CPython: the C halves (what json and signal are built on)
    import _signal as signal
    from _json import encode_basestring_ascii as quote
    from _json import make_scanner

    scan = make_scanner(Plain())
except ImportError:  # another Python: the public modules
    import signal
    from json import JSONDecoder
    from json.encoder import encode_basestring_ascii as quote

    scan = JSONDecoder().scan_once

POLL = 0.05
POLL_MAX = 0.4
GRACE = 2.0


def loads(text):
    """One JSON value (an operation line), as ``json.loads``."""
    try:
        obj, end = scan(text, 0)
    except StopIteration as e:  # what the scanner raises where no JSON value starts
        raise ValueError(f"not JSON at character {e.value}: {text[:40]!r}") from None
    if text[end:].strip():
        raise ValueError("extra data after JSON: " + text[end:end + 40])
    return obj


def dumps(obj):
    """``json.dumps(obj)`` for what events hold: str, int, bool, None and dicts of them."""
    if isinstance(obj, str):
        return quote(obj)
    if obj is None or isinstance(obj, bool):
        return {None: "null", True: "true", False: "false"}[obj]
    if isinstance(obj, int):
        return str(obj)
    return "{" + ", ".join(quote(str(k)) + ": " + dumps(v) for k, v in obj.items()) + "}"


def quietly(call, *args):
    """``call(*args)``, an OSError ignored (``contextlib.suppress`` would import 4 ms)."""
    try:
        return call(*args)
    except OSError:
        return None


def is_a(path, kind):
    """Whether ``path`` is a file of ``kind`` (0o100000 regular, 0o040000 directory)."""
    try:
        return posix.stat(path).st_mode & 0o170000 == kind
    except (OSError, ValueError):
        return False


def makedirs(path):
    """``os.makedirs(path)``: ``path`` and its missing parents."""
    head = path.rstrip("/").rpartition("/")[0]
    if head and not is_a(head, 0o040000):
        try:  # noqa: SIM105 (contextlib.suppress: 4 ms of every start)
            makedirs(head)
        except FileExistsError:  # made meanwhile (another node's, on a shared file system)
            pass
    posix.mkdir(path)


def environ():
    """The environment this satellite was started with, decoded as ``os`` decodes it: read
    from ``/proc/self/environ`` where there is one, since CPython puts ``LC_CTYPE=C.UTF-8`` in
    its own when it starts under the C locale (PEP 538, the usual case of an ssh session),
    which the processes must not inherit: they run in the environment the node gave."""
    codec = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
    try:
        with open("/proc/self/environ", "rb") as f:
            entries = [e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e]
    except OSError:
        entries = posix.environ.items()
    env = {}
    for k, v in entries:  # the first of a name, as os.environ
        env.setdefault(k.decode(*codec), v.decode(*codec))
    return env


def which(name, env):
    """The file ``name`` runs as: itself with a slash, else the first executable of that name
    on the ``PATH`` of ``env`` (as ``subprocess`` and ``execvp`` look it up)."""
    if "/" in name:
        return name
    for d in env.get("PATH", "/bin:/usr/bin").split(":"):
        path = (d or ".") + "/" + name
        if is_a(path, 0o100000) and posix.access(path, posix.X_OK):
            return path
    raise FileNotFoundError(2, "No such file or directory", name)


def spawn(argv, cwd, env):
    """Start ``argv`` in ``cwd`` in its own session, stdin from /dev/null, stdout and stderr
    to files of ``cwd``, SIGPIPE and SIGXFSZ not ignored (as ``subprocess``): its pid.
    posix_spawn has no cwd: the satellite goes there for the spawn (it has one thread)."""
    home = posix.open(".", posix.O_RDONLY)  # back here by descriptor, whatever became of its path
    opened = []
    try:
        posix.chdir(cwd)
        for name in ("stdout", "stderr"):
            opened.append(posix.open(name, posix.O_WRONLY | posix.O_CREAT | posix.O_TRUNC,
                                     0o666))
        return posix.posix_spawn(
            which(argv[0], env), argv, env, setsid=True,
            setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
            file_actions=[(posix.POSIX_SPAWN_OPEN, 0, "/dev/null", posix.O_RDONLY, 0),
                          (posix.POSIX_SPAWN_DUP2, opened[0], 1),
                          (posix.POSIX_SPAWN_DUP2, opened[1], 2)])
    finally:
        for fd in opened:
            posix.close(fd)
        posix.fchdir(home)
        posix.close(home)


class Proc:
    def __init__(self, key, pid_id, pid, cwd, report, watch):
        self.key = key
        self.watch = watch
        self.cwd = cwd
        self.id = pid_id
        self.pid = pid
        self.code = None
        self.report = report
        self.offset = 0
        self.partial = b""

    def poll(self):
        """Its exit code (negative: the signal that ended it), None while it runs."""
        if self.code is None:
            try:
                pid, status = posix.waitpid(self.pid, posix.WNOHANG)
            except ChildProcessError:  # reaped by someone else: as subprocess, 0
                pid, status = self.pid, 0
            if pid:
                self.code = posix.waitstatus_to_exitcode(status)
        return self.code


def environment(base, ops):
    """``base`` with the ``[name, value, action]`` operations of a process applied."""
    env = dict(base)
    for name, value, action in ops:
        old = env.get(name, "")
        if action == "add" and old:
            env[name] = old + ":" + value
        elif action == "prepend" and old:
            env[name] = value + ":" + old
        else:
            env[name] = value
    return env


def stderr_tail(cwd, lines=3, size=400):
    """The last ``lines`` non-blank lines of a process's stderr file, at most ``size`` chars."""
    try:
        with open(cwd + "/stderr", "rb") as f:
            f.seek(0, 2)  # from the end
            f.seek(max(0, f.tell() - 4096))
            data = f.read()
    except OSError:
        return ""
    text = [t.strip() for t in data.decode("utf-8", "replace").splitlines() if t.strip()]
    return " | ".join(text[-lines:])[-size:]


class Satellite:
    def __init__(self, node):
        self.node = node
        self.procs = []
        self.attached = True
        self.out = []  # lines emitted since the last flush
        self.environ = environ()

    def emit(self, obj):
        if self.attached:
            self.out.append(dumps(obj) + "\n")

    def flush(self):
        """Send the lines emitted since the last flush, in one write (a batch of operations
        read at once is answered at once)."""
        data, self.out = "".join(self.out).encode(), []
        try:
            while data and self.attached:
                data = data[posix.write(1, data):]
        except OSError:
            self.attached = False

    def launch(self, msg):
        key = msg["key"]
        pids = {}
        for spec in msg["procs"]:
            cwd = spec["cwd"]
            env = environment(self.environ, spec["env"])
            try:
                if not is_a(cwd, 0o040000):  # no tree was sent (``program.BOOT``)
                    makedirs(cwd)
                pid = spawn(spec["argv"], cwd, env)
            except (OSError, ValueError, IndexError) as e:
                self.emit({"ev": "error", "key": key, "proc": spec["id"],
                           "message": "{}: {}".format((spec["argv"] or [""])[0], e)})
                return
            self.procs.append(Proc(key, spec["id"], pid, cwd, env.get("ADAGE_REPORT", ""),
                                   msg.get("watch", False)))
            pids[spec["id"]] = pid
        self.emit({"ev": "started", "key": key, "pids": pids})

    def read_report(self, p):
        """Emit the KEY=VALUE lines appended to ``p``'s report file; whether there were any."""
        if not p.report or not self.attached:
            return False
        try:
            with open(p.report, "rb") as f:
                f.seek(p.offset)
                data = f.read()
        except OSError:
            return False
        p.offset += len(data)
        lines = (p.partial + data).split(b"\n")
        p.partial = lines.pop()
        for line in lines:
            text = line.decode("utf-8", "replace").strip()
            if "=" in text:
                name, value = text.split("=", 1)
                self.emit({"ev": "value", "key": p.key, "proc": p.id, "name": name.strip(),
                           "value": value.strip()})
        return bool(data)

    def poll(self):
        """Read report files (while attached: their values go nowhere after) and reap ended
        processes; whether anything came of it."""
        news = False
        for p in list(self.procs):
            if self.attached:
                news = self.read_report(p) or news
            code = p.poll()
            if code is None:
                continue
            news = True
            self.procs.remove(p)
            try:
                with open(p.cwd + "/adage.exit", "w") as f:
                    f.write(str(code) + "\n")
            except OSError:
                pass
            self.emit({"ev": "exit", "key": p.key, "proc": p.id, "code": code,
                       "stderr": stderr_tail(p.cwd) if code else ""})
        return news

    def kill(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.procs:
                quietly(posix.killpg, p.pid, sig)
            deadline = time.time() + GRACE
            while time.time() < deadline and any(p.poll() is None for p in self.procs):
                time.sleep(POLL)
        self.poll()
        self.emit({"ev": "killed"})
        self.flush()

    def run(self):
        self.emit({"ev": "hello", "node": self.node, "pid": posix.getpid(),
                   "python": sys.version.split()[0]})
        self.flush()
        fd = sys.stdin.fileno()
        wake = wakeup_on_child_exit()
        buf = b""
        wait = POLL
        while self.attached or self.procs:
            ready, _, _ = select.select([fd, wake] if self.attached else [wake], [], [], wait)
            if wake in ready:
                quietly(posix.read, wake, 4096)
            if fd in ready:
                data = posix.read(fd, 65536)
                if data == b"":
                    self.kill()
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = loads(line.decode("utf-8"))
                    if msg["op"] == "launch":
                        self.launch(msg)
                    elif msg["op"] == "kill":
                        self.kill()
                        return
                    elif msg["op"] == "detach":
                        self.poll()  # the values written so far, before "detached"
                        self.emit({"ev": "detached"})
                        self.flush()
                        self.attached = False
            news = self.poll()
            self.flush()
            busy = ready or news or any(p.watch for p in self.procs)
            # detached: nothing to read, only ends to wait for (SIGCHLD)
            wait = (POLL if busy else min(wait * 2, POLL_MAX)) if self.attached else None


def wakeup_on_child_exit():
    """A pipe's read end that becomes readable when a child process ends."""
    r, w = posix.pipe()
    posix.set_blocking(r, False)
    posix.set_blocking(w, False)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    return r


def main():
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sat = Satellite(sys.argv[1] if len(sys.argv) > 1 else "")

    def on_term(signum, frame):
        sat.kill()
        sys.exit(1)

    signal.signal(signal.SIGTERM, on_term)
    sat.run()


if __name__ == "__main__":
    main()
