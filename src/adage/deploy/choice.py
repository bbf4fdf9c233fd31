"""Which way a deployment reaches its nodes, and whether it can: the transport for a
submission and a transfer method (``get_transport``), the nodes' accepted methods
(``check_methods``), the propagation (``choose``: ssh, taktuk, chain or auto) and the open files
it needs (``descriptors``, ``ensure_descriptors``). Pure but for the open-files limit.
"""

from __future__ import annotations

import resource

from adage.deploy.layout import Layout
from adage.deploy.ssh import SshOptions, SshTransport
from adage.deploy.transport import (
    LocalTransport,
    Transport,
    TransportError,
    canonical_transfer,
)
from adage.errors import AdageError

KINDS = ("ssh", "taktuk", "chain")


class PropagationError(AdageError, ValueError):
    """The nodes cannot be reached the way the control parameters or options say."""


def get_transport(submission: str, transfer: str,
                  options: SshOptions | None = None) -> Transport:
    """The transport for a submission and a transfer method: ``local`` with ``tar`` (its own
    hard links), or ``ssh`` and ``oarsh`` with ``tar``, ``scp``, ``rsync`` (ssh) or ``oarcp``
    (oarsh); ``local`` is an alias of ``tar``. ``options`` (ssh/oarsh): connection
    timeout and multiplexing; without them, plain connections (status, clean, scripts)."""
    transfer = canonical_transfer(transfer)
    if submission == "local" and transfer == "tar":
        return LocalTransport()
    if submission in ("ssh", "oarsh"):
        return SshTransport(transfer,
                            options or SshOptions(multiplex=False), oarsh=submission == "oarsh")
    raise TransportError(f"submission method {submission!r} with transfer method {transfer!r} "
                         "is not available (local/local, ssh or oarsh)")


def check_methods(layout: Layout, nodes: list[str], method: str, transfer: str) -> None:
    """PropagationError unless every node accepts the submission and transfer methods (a tar
    stream over ssh/oarsh needs nothing of the node but a shell)."""
    transfer = canonical_transfer(transfer)
    over_ssh = method in ("ssh", "oarsh") and transfer == "tar"
    for node in nodes:
        n = layout.node(node)
        accepted = {canonical_transfer(t) for t in n.transfer}
        if method not in n.submission or (transfer not in accepted and not over_ssh):
            raise PropagationError(f"node {node} accepts submission {', '.join(n.submission)} "
                                   f"and transfer {', '.join(n.transfer)}, not "
                                   f"{method}/{transfer}")


def choose(wanted: str, nodes: int, fanout: int, method: str, transfer: str) -> str:
    """ssh, taktuk or chain: ``auto`` means taktuk when there are more nodes than ``fanout``
    (beyond what the front end contacts at once) and the nodes are reached over ssh."""
    if wanted == "auto":
        wanted = "taktuk" if nodes > fanout and method == "ssh" else "ssh"
    if wanted not in KINDS:
        raise PropagationError(f"unknown propagation {wanted!r} ({', '.join(KINDS)} or auto)")
    if wanted != "ssh" and (method != "ssh" or canonical_transfer(transfer) != "tar"):
        raise PropagationError(f"propagation {wanted} needs submission ssh and the tar "
                               f"transfer, not {method}/{transfer}")
    return wanted


FDS_PER_SATELLITE = 2  # ssh: a satellite's stdin and stdout pipes, held while it runs
FDS_PER_TRANSFER = 4  # a transfer under way: its command's pipes
FDS_SPARE = 64  # the front end's own files, the selector, a taktuk session


def descriptors(kind: str, nodes: int, fanout: int) -> int:
    """The file descriptors the front end may hold at once: over ssh, each node's satellite
    keeps its pipes and ``fanout`` transfers run at once; through taktuk one process carries
    every satellite and transfer, and only its window of connections (``min(fanout, 10)``)
    counts."""
    if kind != "taktuk":
        return FDS_PER_SATELLITE * nodes + FDS_PER_TRANSFER * fanout + FDS_SPARE
    return FDS_PER_TRANSFER * min(fanout, 10) + FDS_SPARE


def ensure_descriptors(kind: str, nodes: int, fanout: int) -> None:
    """Raise the soft limit of open files to the hard one if the deployment needs more (as
    clush does); PropagationError naming the way out if even the hard limit is short."""
    need = descriptors(kind, nodes, fanout)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if need <= soft:
        return
    if hard == resource.RLIM_INFINITY or need <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        return
    way_out = ("use --propagation taktuk or auto, whose file descriptors are bounded by the "
               "fan-out, or raise the limit" if kind == "ssh" else "raise the limit")
    raise PropagationError(f"{nodes} nodes over {kind} need about {need} open files, and the "
                           f"limit is {hard} (ulimit -n): {way_out}")
