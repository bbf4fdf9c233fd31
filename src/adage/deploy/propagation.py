"""How the front end reaches the nodes of a deployment: puts each node's tree on it, starts
its satellite, and lets go (``detach``, then ``cut`` its session). ``SshPropagation``: a
transport session per node, ``fanout`` transfers at a time in the background (``transfers``);
over ssh with tar one session carries the tree (none if only directories) then the satellite's
lines. ``TaktukPropagation``: one ``taktuk`` carries every stage (none if only directories on
one node) and satellite's lines.
``ChainPropagation``: the common files along a chain of nodes, then a session per node. All
start at most ``fanout`` satellites not yet up at a time (``Propagation``, chosen by ``choice``)."""

from __future__ import annotations

import contextlib
import shlex
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from subprocess import Popen
from threading import Thread

from adage.deploy import archive, chain, taktuk
from adage.deploy.choice import PropagationError, ensure_descriptors
from adage.deploy.context import Setup
from adage.deploy.links import Link, PipeLink, TaktukLink, TaktukSource
from adage.deploy.program import framed
from adage.deploy.protocol import DETACH
from adage.deploy.ssh import SshTransport
from adage.deploy.taktuk_session import TaktukSession, release_fifo, stream_fifo
from adage.deploy.transfers import Transfers
from adage.deploy.transport import Transport, TransportError, build_tree
from oarlib.sshopts import base_options


class Propagation:
    """Staging and satellites of one deployment (subclasses: how)."""

    def __init__(self, setup: Setup, transport: Transport) -> None:
        self.setup = setup
        self.transport = transport
        self.fanout = max(1, setup.ssh.fanout)
        self.links: dict[str, Link] = {}
        self.to_start: list[str] = []  # nodes whose satellite is not started yet, last first
        self.staged: set[str] = set()  # nodes whose tree is in place

    def header(self) -> list[str]:
        """Dry run: how the nodes are reached, if worth a line."""
        return []

    def origin(self, first: str) -> str:
        """Dry run: where the tree of the stage of ``first`` comes from."""
        raise NotImplementedError

    def treeless(self, first: str) -> bool:
        """Whether the stage of ``first`` sends no tree (the satellite makes its directories)."""
        return False

    def stage(self) -> None:
        """Put every node's tree on it (and start the satellites that can be)."""
        raise NotImplementedError

    def start(self, node: str) -> None:
        """Start the satellite of a staged ``node``."""
        raise NotImplementedError

    def up(self, node: str) -> None:
        """The satellite of ``node`` said hello."""

    def start_ready(self) -> None:
        """Start the satellites of staged nodes, at most ``fanout`` not yet up at a time."""
        ready = [n for n in self.to_start if n in self.staged]
        while ready and sum(1 for k in self.links.values()
                            if k.pid is None and not k.closed) < self.fanout:
            node = ready.pop()
            self.to_start.remove(node)
            self.start(node)

    def detach(self) -> None:
        """Tell every satellite to go on alone, and stop talking to it."""
        for link in self.links.values():
            link.send(DETACH)
            link.close_input()

    def cut(self, wait: bool = False) -> None:
        """End the sessions of satellites that went on alone (waiting until they are gone)."""

    def close(self) -> None:
        """Release everything (the transport's connections too)."""
        self.transport.close()


class SshPropagation(Propagation):
    """A session per node from the front end, through the deployment's transport. When each
    node gets one session (the tree and the satellite in one stream: the tar transfer, a
    stage per node), without master connections: one would cost a fork per node, and an
    ``ssh -O exit`` per node to end it."""

    def __init__(self, setup: Setup, transport: Transport) -> None:
        super().__init__(setup, transport)
        if isinstance(transport, SshTransport) and self._one_session_each():
            transport.options = replace(transport.options, multiplex=False)
        self.transfers: Transfers | None = None

    def _one_session_each(self) -> bool:
        return all(self._streamed(first) for first in self.setup.stages)

    def cut(self, wait: bool = False) -> None:
        """Every ssh session at once (a local satellite is our own child: it goes on)."""
        if isinstance(self.transport, SshTransport):
            for link in self.links.values():
                link.hang_up()
            for link in self.links.values() if wait else ():
                link.force_kill()

    def close(self) -> None:
        self._stop_transfers()
        self.cut(wait=True)
        super().close()

    def origin(self, first: str) -> str:
        if self.treeless(first):
            return "no tree: the satellite's program on the session's stdin makes the directories"
        return ("one tar stream, then the satellite" if self._streamed(first) else
                f"from {self.setup.prestage.name}/{first}")

    def treeless(self, first: str) -> bool:
        """A streamed bare stage: no tar (its start alone: 2.2 ms of CPU a node), the
        satellite's program on stdin makes its processes' run directories."""
        return self._streamed(first) is not None and self.setup.stages[first].bare

    def _streamed(self, first: str) -> SshTransport | None:
        """The transport, if one session carries the stage of ``first`` and its satellite (ssh
        or oarsh, the tar transfer, one node)."""
        t = self.transport
        one = len(self.setup.stages[first].nodes) == 1
        return t if isinstance(t, SshTransport) and t.transfer == "tar" and one else None

    def stage(self) -> None:
        """Start the transfers, ``fanout`` at a time, in the background: ``start_ready``
        follows each satellite they start and raises the first failure."""
        prestage, s = self.setup.prestage, self.setup
        shutil.rmtree(prestage, ignore_errors=True)
        self._check_files()
        try:
            for first, st in s.stages.items():
                if self._streamed(first) is None:
                    build_tree(prestage / first, st, {**st.texts, **{
                        st.rel(s.layout.satellite(n)): s.program for n in st.nodes}})
        except OSError as e:
            shutil.rmtree(prestage, ignore_errors=True)
            raise PropagationError(f"prestage tree {prestage}: {e}") from None
        self._put_trees()

    def _check_files(self) -> None:
        for first, st in self.setup.stages.items():
            for dest, src in st.files.items():
                if not Path(src).is_file():
                    raise PropagationError(f"node {first}: file {src} (to {st.base}/{dest}) "
                                           "does not exist")

    def _put(self, first: str) -> Popen[bytes] | None:
        """The tree of the stage of ``first`` on its node(s); the session left open, if it
        starts the satellite too."""
        s = self.setup
        st, node = s.stages[first], s.layout.node(first)
        streamed = self._streamed(first)
        if streamed is not None and self.treeless(first):
            return streamed.start_with_input(node, s.layout.satellite_argv(first, True),
                                             framed(s.satellite), s.log(first))
        if streamed is not None:
            texts = {**st.texts, st.rel(s.layout.satellite(first)): s.program}
            return streamed.start_with_tree(
                node, lambda tf: archive.write_tree(tf, st.dirs, files=st.files, texts=texts),
                st.base, s.argv(first), s.log(first))
        self.transport.put_tree(node, s.prestage / first, st.base, s.timeout)
        return None

    def _put_trees(self) -> None:
        """Every stage's transfer in the background (``Transfers``; see ``stage``)."""
        self.to_start = sorted(self.setup.nodes, reverse=True)
        self.transfers = Transfers(self._put, list(self.setup.stages), self.fanout,
                                   self.setup.timeout, self.transport.cancel)

    def start_ready(self) -> None:
        if self.transfers is not None:
            try:
                done = self.transfers.collect()
            except OSError as e:
                self._stop_transfers()
                raise PropagationError(f"prestage tree {self.setup.prestage}: {e}") from None
            except BaseException:
                self._stop_transfers()
                raise
            if not self.transfers.pending:  # all done (and closed)
                self.transfers = None
                shutil.rmtree(self.setup.prestage, ignore_errors=True)
            for first, popen in done:
                self.staged.update(self.setup.stages[first].nodes)
                if popen is not None:
                    self.to_start.remove(first)
                    self._follow(first, popen)
        super().start_ready()

    def _stop_transfers(self) -> None:
        """Stop the transfers under way; follow the satellites they started (to be killed)."""
        if self.transfers is not None:
            for first, popen in self.transfers.stop():
                self._follow(first, popen)
            self.transfers = None
            shutil.rmtree(self.setup.prestage, ignore_errors=True)

    def _follow(self, node: str, popen: Popen[bytes]) -> None:
        link = PipeLink(node, popen, self.setup.log(node))
        self.links[node] = link
        self.setup.watch(link)
        self.setup.starting(node)

    def start(self, node: str) -> None:
        s = self.setup
        self._follow(node, self.transport.start(s.layout.node(node), s.argv(node), s.log(node)))


class ChainPropagation(SshPropagation):
    """The common tree (every distinct file and the satellite) once along a chain of the
    stages' first nodes (``chain``), then a session per node carrying its own small tar (hard
    links into the common tree) followed by its satellite."""

    names: dict[str, str]

    def _one_session_each(self) -> bool:
        return False  # the preconnections and the chain's first hop ride on the masters

    def header(self) -> list[str]:
        return [f"chain: {' -> '.join(self.setup.stages)}"]

    def origin(self, first: str) -> str:
        return "the common tar along the chain, its own tar, then the satellite"

    def treeless(self, first: str) -> bool:
        return False  # the satellite is in the common tree

    def _common(self, first: str) -> str:
        return f"{self.setup.layout.adage_dir(first)}/common-{first}"

    def hops(self) -> list[chain.Hop]:
        """The chain: the first node of every stage, in order, and where its copy goes."""
        s = self.setup
        return [chain.Hop(first, s.layout.address(first), self._common(first),
                          s.layout.python(first), f"{s.layout.adage_dir(first)}/chain-%C")
                for first in s.stages]

    def _node_ssh(self) -> list[str]:
        """ssh from node to node: the base options, no multiplexing of the front end's."""
        return ["ssh", *base_options(self.setup.ssh.connect_timeout, self.setup.ssh.extra)]

    def chain_argv(self, hops: list[chain.Hop]) -> list[str]:
        """The front end's command: ssh to the first hop (as every session), running the relay."""
        return self._ssh().command(self.setup.layout.node(hops[0].name),
                                   chain.relay_argv(hops, self._node_ssh()))

    def _preconnect(self, hops: list[chain.Hop]) -> None:
        """Every hop's master connection to the next, ``fanout`` at a time. A speed-up only:
        a hop that cannot make it is then tried, and named, by the chain itself."""
        t, s = self._ssh(), self.setup

        def one(pair: tuple[chain.Hop, chain.Hop]) -> None:
            node = s.layout.node(pair[0].name)
            with contextlib.suppress(TransportError):
                t.run(node, t.command(node, chain.preconnect_argv(*pair, self._node_ssh())),
                      s.timeout)

        with ThreadPoolExecutor(self.fanout) as pool:
            list(pool.map(one, pairwise(hops)))

    def stage(self) -> None:
        s = self.setup
        self._check_files()
        self.names = archive.common_names(s.stages.values())
        hops = self.hops()
        self._preconnect(hops)
        chain.broadcast(self.chain_argv(hops), lambda out: archive.write_common(
            out, self.names, s.program), hops, s.timeout)
        self._put_trees()

    def _ssh(self) -> SshTransport:
        assert isinstance(self.transport, SshTransport)  # choose() wants ssh and tar
        return self.transport

    def _put(self, first: str) -> Popen[bytes] | None:
        s = self.setup
        st, common = s.stages[first], self._common(first)
        sats = [st.rel(s.layout.satellite(n)) for n in st.nodes]
        argv = ["sh", "-c", 'rm -rf "$1" && shift && exec "$@"', "sh", common, *s.argv(first)]
        return self._ssh().start_with_tree(
            s.layout.node(first),
            lambda tf: archive.write_node_tree(tf, st, st.rel(common), self.names, sats),
            st.base, argv, s.log(first))


class TaktukPropagation(Propagation):
    """One front-end ``taktuk`` for every node: the common tar stream once through its tree
    (a FIFO), each stage's own small tar, the satellite exec'd on what follows (the other
    nodes of a shared stage: once the first one says hello); a bare stage's satellite runs on
    its program, sent once through the tree to every such node."""

    def __init__(self, setup: Setup, transport: Transport) -> None:
        super().__init__(setup, transport)
        self.session = TaktukSession({n: setup.layout.address(n) for n in setup.nodes}, setup.ssh)
        self.source = TaktukSource(self.session)
        self.fifo: tuple[Path, Thread] | None = None

    def header(self) -> list[str]:
        return [f"through taktuk: {shlex.join(self.session.argv)}"]

    def origin(self, first: str) -> str:
        if self.treeless(first):
            return "no tree: the satellite's program through the tree makes the directories"
        return "the common tar through the tree, its own tar, then the satellite"

    def treeless(self, first: str) -> bool:
        return self.setup.stages[first].bare

    def stage(self) -> None:
        s, session = self.setup, self.session
        shutil.rmtree(s.prestage, ignore_errors=True)
        names = archive.common_names(s.stages.values())
        bare = [first for first in s.stages if self.treeless(first)]
        trees = [first for first in s.stages if first not in bare]
        fifo = s.prestage / "common.fifo"
        try:
            session.start(s.state_dir / "taktuk.log")
            session.wait_numbered(s.timeout)
            s.watch(self.source)
            s.prestage.mkdir(parents=True)
            for first in bare:
                self._start(first, shlex.join(s.layout.satellite_argv(first, True)))
            if bare:
                (s.prestage / "satellite").write_bytes(framed(s.satellite))
            for first in trees:
                st, common = s.stages[first], f"{s.layout.adage_dir(first)}/common-{first}"
                taktuk.node_archive(s.prestage / f"{first}.tar", st, st.rel(common), names,
                                    [st.rel(s.layout.satellite(n)) for n in st.nodes])
                self._start(first, taktuk.stage_and_start(st.base, common, s.argv(first)))
            if trees:
                self.fifo = (fifo, stream_fifo(fifo, names, s.program))
        except OSError as e:
            raise PropagationError(f"prestage tree {s.prestage}: {e}") from None
        session.input_file(bare, s.prestage / "satellite")
        session.input_file(trees, fifo)
        for first in trees:
            session.input_file([first], s.prestage / f"{first}.tar")
        self.to_start = sorted({n for st in s.stages.values() for n in st.nodes[1:]},
                               reverse=True)

    def _start(self, node: str, line: str) -> None:
        log = self.setup.log(node)
        link = TaktukLink(self.session, self.session.start_command(node, line, log), log)
        self.source.links[node] = self.links[node] = link
        self.setup.starting(node)

    def start(self, node: str) -> None:
        self._start(node, shlex.join(self.setup.argv(node)))

    def up(self, node: str) -> None:
        if node in self.setup.stages:
            self.staged.update(self.setup.stages[node].nodes)  # its tree is extracted

    def detach(self) -> None:
        super().detach()  # the satellites read "detach" before taktuk ends
        self.session.barrier([p.rank for p in self.session.peers.values()], self.setup.timeout)

    def close(self) -> None:
        self.session.close()
        if self.fifo is not None:
            release_fifo(*self.fifo)
        shutil.rmtree(self.setup.prestage, ignore_errors=True)
        super().close()


def propagation(kind: str, setup: Setup, transport: Transport) -> Propagation:
    """The propagation named ``kind`` (from ``choose``), once the open files it needs are
    known to be available (``ensure_descriptors``)."""
    ensure_descriptors(kind, len(setup.nodes), max(1, setup.ssh.fanout))
    kinds = {"ssh": SshPropagation, "chain": ChainPropagation, "taktuk": TaktukPropagation}
    return kinds[kind](setup, transport)

