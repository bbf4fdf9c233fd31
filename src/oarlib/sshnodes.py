"""A multi-node sshd test bed: the fake OAR nodes ``nodeN`` as real ssh servers on loopback.

``nodeN`` resolves to ``127.0.0.(N+1)``, beyond 253 nodes to ``127.0.1.1``... (``address``;
marked lines in ``/etc/hosts``; Linux routes all of 127/8 to ``lo``) and is served by its own
``/usr/sbin/sshd`` (own config, pid file and log under ``/var/lib/orpheus-sshnodes/nodeN/``,
``ListenAddress <address>:22``), so one node can be
stopped alone. One host key (generated once) serves every node and is listed for every name
and address in a shared known_hosts file; each user (``alice`` and ``root`` by default) gets
an ed25519 key authorised for itself and a marked block at the top of ``~/.ssh/config``
pointing ``node*`` at that known_hosts file. Everything is idempotent and runs as root; every
node shares this machine's file system and users, except its temporary directory: sessions on
``nodeN`` get ``TMPDIR=/tmp/orpheus-sshnodes/nodeN`` (tools that key their session files on the
host name, such as Open MPI's orted, would otherwise race each other in one ``/tmp``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from oarlib.run import run_checked

BASE = Path("/var/lib/orpheus-sshnodes")
HOSTS = Path("/etc/hosts")
MARK = "# orpheus-sshnodes"
BEGIN, END = "# BEGIN orpheus-sshnodes", "# END orpheus-sshnodes"
SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")
HOST_KEY = BASE / "ssh_host_ed25519_key"
KNOWN_HOSTS = BASE / "known_hosts"
NODE_TMP = Path("/tmp/orpheus-sshnodes")  # short: Unix socket paths under it are limited
DEFAULT_USERS = ("alice", "root")


class SshNodesError(RuntimeError):
    """The test bed could not be set up (the message names the node or user)."""


@dataclass(frozen=True)
class Config:
    nodes: int = 16
    users: tuple[str, ...] = DEFAULT_USERS
    prefix: str = "node"


def names(count: int, prefix: str = "node") -> list[str]:
    return [f"{prefix}{i}" for i in range(1, count + 1)]


PER_SUBNET = 254  # nodes per /24 beyond the first one (fourth octet 1..254)
MAX_NODES = 253 + 254 * PER_SUBNET


def address(node: str) -> str:
    """``nodeN`` -> ``127.0.0.(N+1)`` for N up to 253, then ``127.0.1.1`` to ``127.0.1.254``,
    ``127.0.2.1``... (pure; N up to ``MAX_NODES``)."""
    m = re.fullmatch(r"\D+(\d+)", node)
    if not m or not 1 <= int(m.group(1)) <= MAX_NODES:
        raise SshNodesError(f"{node}: a node name ends with a number from 1 to {MAX_NODES}")
    n = int(m.group(1))
    if n <= 253:
        return f"127.0.0.{n + 1}"
    k = n - 254
    return f"127.0.{1 + k // PER_SUBNET}.{1 + k % PER_SUBNET}"


def sshd_config(node: str) -> str:
    """The sshd configuration of one node (pure)."""
    d = BASE / node
    return "\n".join([
        f"# {node}: written by oarlib.sshnodes",
        f"ListenAddress {address(node)}:22",
        f"HostKey {HOST_KEY}",
        f"PidFile {d}/sshd.pid",
        "UsePAM no",
        "StrictModes no",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "MaxStartups 1024:30:2048",  # fan-out tests open many connections at once
        "MaxSessions 1024",  # one multiplexed connection carries many sessions
        "PrintMotd no",
        "PrintLastLog no",
        "UseDNS no",
        "LogLevel VERBOSE",  # one "Connection from" line per connection: counted by benchmarks
        "AcceptEnv OAR_*",
        f"SetEnv TMPDIR={NODE_TMP / node}",
        "Subsystem sftp /usr/lib/openssh/sftp-server",  # scp speaks SFTP since OpenSSH 9.0
        "",
    ])


def hosts_text(current: str, nodes: Sequence[str]) -> str:
    """``/etc/hosts`` with its marked lines replaced by one line per node (pure)."""
    kept = [line for line in current.splitlines() if not line.endswith(MARK)]
    return "\n".join([*kept, *(f"{address(n)} {n} {MARK}" for n in nodes)]) + "\n"


def ssh_config_text(current: str) -> str:
    """A user's ``~/.ssh/config`` with the marked block first (ssh keeps the first value)."""
    text = re.sub(rf"{BEGIN}\n.*?{END}\n", "", current, flags=re.S)
    block = (f"{BEGIN}\nHost node* 127.0.*.*\n  UserKnownHostsFile {KNOWN_HOSTS}\n"
             "  StrictHostKeyChecking accept-new\n  LogLevel ERROR\n"
             f"{END}\n")
    return block + text


# ------------------------------------------------------------------ shell
def _write_if_changed(path: Path, text: str, mode: int = 0o644) -> None:
    if not path.exists() or path.read_text() != text:
        path.write_text(text)  # in place: /etc/hosts may be a bind mount
    path.chmod(mode)


def pid_of(node: str) -> int | None:
    """The pid of the node's listening sshd, if it runs."""
    try:
        pid = int((BASE / node / "sshd.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    try:
        if "sshd" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return None
    except OSError:
        return None
    return pid


def listening(node: str, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((address(node), 22), timeout=timeout):
            return True
    except OSError:
        return False


def start(node: str, timeout: float = 10.0) -> int:
    """Start the node's sshd (no-op if it runs with the current configuration); its pid."""
    d = BASE / node
    d.mkdir(parents=True, exist_ok=True)
    tmp = NODE_TMP / node
    tmp.mkdir(parents=True, exist_ok=True)
    for t in (NODE_TMP, tmp):
        t.chmod(0o1777)
    conf = d / "sshd_config"
    pid = pid_of(node)
    if pid is not None:
        if conf.exists() and conf.read_text() == sshd_config(node):
            return pid
        stop(node)  # written by an older version: restart with the current configuration
    _write_if_changed(conf, sshd_config(node))
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    run_checked([SSHD, "-f", str(conf), "-E", str(d / "sshd.log")], SshNodesError)
    deadline = time.monotonic() + timeout
    while not (listening(node) and (pid := pid_of(node))):
        if time.monotonic() > deadline:
            raise SshNodesError(f"{node}: sshd did not listen on {address(node)}:22 within "
                                f"{timeout:g} s (see {d}/sshd.log)")
        time.sleep(0.05)
    return pid


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the per-connection sshd processes and their sessions)."""
    parents: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(p.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def stop(node: str, sessions: bool = True) -> None:
    """Stop the node's sshd; with ``sessions``, also its open connections (a node failure:
    what ran through them loses its ssh channel)."""
    pid = pid_of(node)
    if pid is None:
        return
    victims = ([pid] + [c for c in _children(pid) if _is_sshd(c)]) if sessions else [pid]
    for p in victims:
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while pid_of(node) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def _is_sshd(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "sshd"
    except OSError:
        return False


def connections(node: str) -> int:
    """How many ssh connections the node's sshd accepted (lines of its log)."""
    try:
        return (BASE / node / "sshd.log").read_text().count("Connection from ")
    except OSError:
        return 0


# ------------------------------------------------------------------ keys
def ensure_host_key() -> None:
    BASE.mkdir(parents=True, exist_ok=True)
    BASE.chmod(0o755)
    if not HOST_KEY.exists():
        run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "orpheus-sshnodes",
                     "-f", str(HOST_KEY)], SshNodesError)


def write_known_hosts(nodes: Iterable[str]) -> None:
    key = " ".join(Path(f"{HOST_KEY}.pub").read_text().split()[:2])
    _write_if_changed(KNOWN_HOSTS, "".join(f"{n},{address(n)} {key}\n" for n in nodes))


def ensure_user_keys(user: str) -> None:
    """An ed25519 key for ``user``, authorised for itself, and the marked ~/.ssh/config."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise SshNodesError(f"user {user} does not exist") from None
    _unlock(user)
    ssh = Path(pw.pw_dir) / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    key = ssh / "id_ed25519"
    if not key.exists():
        run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{user}@sshnodes",
                     "-f", str(key)], SshNodesError)
    pub = Path(f"{key}.pub").read_text().strip()
    auth = ssh / "authorized_keys"
    lines = auth.read_text().splitlines() if auth.exists() else []
    if pub not in lines:
        auth.write_text("".join(f"{line}\n" for line in [*lines, pub]))
    cfg = ssh / "config"
    _write_if_changed(cfg, ssh_config_text(cfg.read_text() if cfg.exists() else ""), 0o600)
    for p in [ssh, *ssh.iterdir()]:
        os.chown(p, pw.pw_uid, pw.pw_gid)
    auth.chmod(0o600)


def _unlock(user: str) -> None:
    """sshd without PAM refuses a locked account ('!' password, useradd's default): give it
    the password '*' (no password can match; key logins work)."""
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == user and fields[1].startswith("!"):
            run_checked(["usermod", "-p", "*", user], SshNodesError)


# ------------------------------------------------------------------ up / down / status
def running() -> list[str]:
    """Nodes whose sshd runs (from the per-node directories)."""
    if not BASE.exists():
        return []
    found = [d.name for d in BASE.iterdir() if d.is_dir() and pid_of(d.name) is not None]
    return sorted(found, key=lambda n: int(re.sub(r"\D", "", n) or 0))


def up(cfg: Config = Config()) -> dict[str, object]:
    """Bring ``cfg.nodes`` sshd nodes up (and stop the ones beyond); idempotent."""
    if os.geteuid() != 0:
        raise SshNodesError("the sshd test bed is set up as root")
    nodes = names(cfg.nodes, cfg.prefix)
    if Path("/tmp").stat().st_mode & 0o7777 != 0o1777:
        Path("/tmp").chmod(0o1777)  # the nodes' scratch directory, as on any Debian node
    ensure_host_key()
    _write_if_changed(HOSTS, hosts_text(HOSTS.read_text(), nodes), HOSTS.stat().st_mode & 0o777)
    write_known_hosts(nodes)
    for user in cfg.users:
        ensure_user_keys(user)
    for extra in set(running()) - set(nodes):
        stop(extra)
    pids = {n: start(n) for n in nodes}
    return {"nodes": len(pids), "first": nodes[0], "last": nodes[-1],
            "addresses": f"{address(nodes[0])}..{address(nodes[-1])}", "users": list(cfg.users)}


def down(remove_hosts: bool = True) -> None:
    """Stop every node's sshd; remove the marked /etc/hosts lines."""
    for n in running():
        stop(n)
    if remove_hosts and HOSTS.exists():
        _write_if_changed(HOSTS, hosts_text(HOSTS.read_text(), []),
                          HOSTS.stat().st_mode & 0o777)
