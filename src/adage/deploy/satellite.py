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
Each process runs in its run directory (``cwd``), in its own session, stdout and stderr to
files ``stdout`` and ``stderr`` there; its exit code is also written to ``adage.exit``. If stdin
closes without "detach" (the front end died), every process is killed.

A process's end wakes the satellite at once (SIGCHLD). Report files are read every POLL
seconds while a watched process runs or after anything happened, else twice as seldom each
time nothing does, up to POLL_MAX: on a one-machine test bed, hundreds of satellites reading
eight files 20 times a second took CPU from the nodes still being started.
"""

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time

POLL = 0.05
POLL_MAX = 0.4
GRACE = 2.0


class Proc:
    def __init__(self, key, pid_id, popen, cwd, report, watch):
        self.key = key
        self.watch = watch
        self.cwd = cwd
        self.id = pid_id
        self.popen = popen
        self.report = report
        self.offset = 0
        self.partial = b""


def environment(ops):
    env = dict(os.environ)
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
        with open(os.path.join(cwd, "stderr"), "rb") as f:
            f.seek(0, os.SEEK_END)
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

    def emit(self, obj):
        if not self.attached:
            return
        try:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, OSError):
            self.attached = False

    def launch(self, msg):
        key = msg["key"]
        pids = {}
        for spec in msg["procs"]:
            cwd = spec["cwd"]
            env = environment(spec["env"])
            try:
                with open(os.path.join(cwd, "stdout"), "wb") as out, \
                        open(os.path.join(cwd, "stderr"), "wb") as err:
                    popen = subprocess.Popen(spec["argv"], cwd=cwd, env=env, stdout=out,
                                             stderr=err, stdin=subprocess.DEVNULL,
                                             start_new_session=True)
            except (OSError, ValueError) as e:
                self.emit({"ev": "error", "key": key, "proc": spec["id"],
                           "message": "{}: {}".format(spec["argv"][0], e)})
                return
            self.procs.append(Proc(key, spec["id"], popen, cwd, env.get("ADAGE_REPORT", ""),
                                   msg.get("watch", False)))
            pids[spec["id"]] = popen.pid
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
        """Read report files and reap ended processes; whether anything came of it."""
        news = False
        for p in list(self.procs):
            news = self.read_report(p) or news
            code = p.popen.poll()
            if code is None:
                continue
            news = True
            self.procs.remove(p)
            try:
                with open(os.path.join(p.cwd, "adage.exit"), "w") as f:
                    f.write(str(code) + "\n")
            except OSError:
                pass
            self.emit({"ev": "exit", "key": p.key, "proc": p.id, "code": code,
                       "stderr": stderr_tail(p.cwd) if code else ""})
        return news

    def kill(self):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.procs:
                with contextlib.suppress(OSError):
                    os.killpg(p.popen.pid, sig)
            deadline = time.time() + GRACE
            while time.time() < deadline and any(p.popen.poll() is None for p in self.procs):
                time.sleep(POLL)
        self.poll()
        self.emit({"ev": "killed"})

    def run(self):
        self.emit({"ev": "hello", "node": self.node, "pid": os.getpid(),
                   "python": sys.version.split()[0]})
        fd = sys.stdin.fileno()
        wake = wakeup_on_child_exit()
        buf = b""
        wait = POLL
        while self.attached or self.procs:
            ready, _, _ = select.select([fd, wake] if self.attached else [wake], [], [], wait)
            if wake in ready:
                with contextlib.suppress(OSError):
                    os.read(wake, 4096)
            if fd in ready:
                data = os.read(fd, 65536)
                if data == b"":
                    self.kill()
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    msg = json.loads(line.decode("utf-8"))
                    if msg["op"] == "launch":
                        self.launch(msg)
                    elif msg["op"] == "kill":
                        self.kill()
                        return
                    elif msg["op"] == "detach":
                        self.emit({"ev": "detached"})
                        self.attached = False
            news = self.poll()
            busy = ready or news or any(p.watch for p in self.procs)
            wait = POLL if busy else min(wait * 2, POLL_MAX)


def wakeup_on_child_exit():
    """A pipe's read end that becomes readable when a child process ends."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
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
