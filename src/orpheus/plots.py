"""Report and comparison figures (matplotlib, PNG and SVG): Gantt charts, utilisation, waits.

Figures are made with matplotlib's object API (``Figure``, no pyplot state, no GUI backend).
Each function takes pure data (boxes, series, wait rows: :mod:`orpheus.metrics`,
:mod:`orpheus.compare`) and a path stem; it writes ``<stem>.png`` and ``<stem>.svg`` and
returns both paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from orpheus.metrics import FAILED, KILLED, SUCCESS, WALLTIME, Box

# final state -> (hatch, edge colour, legend label)
STYLE = {
    SUCCESS: ("", "black", "completed (exit 0)"),
    FAILED: ("..", "darkorange", "failed (non-zero exit or error)"),
    WALLTIME: ("//", "red", "killed at walltime"),
    KILLED: ("xx", "darkred", "killed (oardel, best-effort)"),
    None: ("", "grey", "still running"),
}


def _save(fig: Figure, stem: Path) -> list[Path]:
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1])
    return paths


MAX_NODE_LABELS = 64


def _draw_gantt(ax: Axes, boxes: Sequence[Box], top: int, t_max: float,
                job_index: dict[str, int]) -> None:
    """Draw the boxes on ``ax``: one colour per job (``job_index`` numbers them, shared
    between panels), hatching and edge colour by outcome; y from 0 to ``top``."""
    colours = colormaps["tab20"].colors
    for b in boxes:
        colour = colours[job_index.setdefault(b.job_id, len(job_index)) % len(colours)]
        hatch, edge, _ = STYLE.get(b.state, STYLE[None])
        height = b.hi - b.lo + 1
        if b.end > b.start:
            ax.add_patch(Rectangle((b.start, b.lo), b.end - b.start, height, facecolor=colour,
                                   edgecolor=edge, hatch=hatch, linewidth=0.6,
                                   alpha=0.5 if b.state is None else 1.0))
            if (b.end - b.start) > 0.04 * t_max and height >= max(1, top / 64):
                ax.text((b.start + b.end) / 2, b.lo + height / 2, b.job_id, ha="center",
                        va="center", fontsize=6, clip_on=True)
        else:  # ran for 0 s (OAR counts whole seconds): a tick, so that it stays visible
            ax.plot([b.start, b.start], [b.lo, b.hi + 1], color=edge, linewidth=0.8)
    ax.set_xlim(0, t_max * 1.02)
    ax.set_ylim(0, top)


def _outcome_legend(ax: Axes, states: set[str | None]) -> None:
    handles = [Patch(facecolor="white", edgecolor=STYLE[s][1], hatch=STYLE[s][0],
                     label=STYLE[s][2]) for s in STYLE if s in states]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1), fontsize=8,
                  title="outcome (box colour = job)", title_fontsize=8)


def gantt(boxes: Sequence[Box], nb_resources: int, stem: Path, title: str,
          nodes: Sequence[tuple[str, int, int]] = ()) -> list[Path]:
    """Resources on y, time on x; one colour per job, hatching and edge colour by outcome.

    ``nodes`` (name, first, last resource index) label the y axis by node when there are at
    most MAX_NODE_LABELS of them, with a faint line between nodes.
    """
    top = max([nb_resources, *(b.hi + 1 for b in boxes)])
    fig = Figure(figsize=(13, min(16, 4 + top * 0.06)))
    ax = fig.subplots()
    _draw_gantt(ax, boxes, top, max((b.end for b in boxes), default=1.0) or 1.0, {})
    ax.set_xlabel("time since the first submission (s)")
    if nodes and len(nodes) <= MAX_NODE_LABELS:
        ax.set_yticks([(lo + hi + 1) / 2 for _, lo, hi in nodes], [n for n, _, _ in nodes],
                      fontsize=7 if len(nodes) <= 32 else 5)
        for _, lo, _ in nodes[1:]:
            ax.axhline(lo, color="lightgrey", linewidth=0.5, zorder=0)
        ax.set_ylabel("resources (cores), grouped by node")
    else:
        ax.set_ylabel("resource (Batsim number: rank of the OAR resource_id)")
    ax.set_title(title)
    _outcome_legend(ax, {b.state for b in boxes})
    fig.tight_layout()
    return _save(fig, stem)


def utilisation(series: Sequence[tuple[float, int]], nb_resources: int, end: float,
                stem: Path, title: str) -> list[Path]:
    """Busy resources over time (a step function), with the test bed's size."""
    fig = Figure(figsize=(12, 4))
    ax = fig.subplots()
    xs = [t for t, _ in series] + [max(end, series[-1][0])]
    ys = [n for _, n in series] + [series[-1][1]]
    ax.step(xs, ys, where="post", color="tab:blue", label="busy resources")
    ax.fill_between(xs, ys, step="post", alpha=0.3, color="tab:blue")
    ax.axhline(nb_resources, color="black", linestyle="--", linewidth=1,
               label=f"resources ({nb_resources})")
    ax.set_xlim(0, xs[-1] or 1)
    ax.set_ylim(0, max(nb_resources, *ys) * 1.05 or 1)
    ax.set_xlabel("time since the first submission (s)")
    ax.set_ylabel("busy resources")
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)


def waits(rows: Sequence[dict[str, str]], stem: Path, title: str) -> list[Path]:
    """OAR's waits against the trace's (scaled) waits: scatter and cumulative distributions."""
    trace = [float(r["trace_wait"]) for r in rows]
    oar = [float(r["oar_wait"]) for r in rows]
    fig = Figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    left.scatter(trace, oar, s=8, alpha=0.6, color="tab:blue", label="one job")
    top = max([1.0, *trace, *oar])
    left.plot([0, top], [0, top], color="black", linewidth=0.8, label="equal waits")
    left.set_xscale("symlog", linthresh=1)
    left.set_yscale("symlog", linthresh=1)
    left.set_xlabel("wait in the trace, time-scaled (s)")
    left.set_ylabel("wait in OAR (s)")
    left.set_title("per job")
    left.legend(fontsize=8)
    for values, label, colour in ((trace, "trace (time-scaled)", "tab:orange"),
                                  (oar, "OAR replay", "tab:blue")):
        xs = sorted(values)
        right.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", label=label,
                   color=colour)
    right.set_xscale("symlog", linthresh=1)
    right.set_xlabel("wait (s)")
    right.set_ylabel("fraction of jobs")
    right.set_title("cumulative distribution")
    right.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, stem)


def compare_gantts(panels: Sequence[tuple[str, Sequence[Box]]], stem: Path,
                   title: str) -> list[Path]:
    """One Gantt chart per (label, boxes), one above the other on a shared time axis; a job
    keeps its colour in every panel."""
    t_max = max((b.end for _, boxes in panels for b in boxes), default=1.0) or 1.0
    tops = [max([1, *(b.hi + 1 for b in boxes)]) for _, boxes in panels]
    fig = Figure(figsize=(13, sum(min(6.0, 1.5 + top * 0.06) for top in tops) + 1))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        height_ratios=[min(6.0, 1.5 + top * 0.06) for top in tops])[:, 0]
    job_index: dict[str, int] = {}
    for ax, (label, boxes), top in zip(axes, panels, tops, strict=True):
        _draw_gantt(ax, boxes, top, t_max, job_index)
        ax.set_title(label, fontsize=9)
        ax.set_ylabel("resource")
    axes[-1].set_xlabel("time since the first matched submission (s)")
    _outcome_legend(axes[0], {b.state for _, boxes in panels for b in boxes})
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, stem)


def wait_scatter(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], stem: Path,
                 title: str) -> list[Path]:
    """Per (label, [(reference wait, run wait)]): one point a job, with the equal-waits line."""
    fig = Figure(figsize=(6.5, 6))
    ax = fig.subplots()
    colours = colormaps["tab10"].colors
    top = max([1.0, *(max(p) for _, points in series for p in points)])
    for i, (label, points) in enumerate(series):
        ax.scatter([p[0] for p in points], [p[1] for p in points], s=8, alpha=0.6,
                   color=colours[i % len(colours)], label=label)
    ax.plot([0, top], [0, top], color="black", linewidth=0.8, label="equal waits")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("wait in the reference (s)")
    ax.set_ylabel("wait in the run (s)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, stem)


def wait_cdfs(series: Sequence[tuple[str, Sequence[float]]], stem: Path,
              title: str) -> list[Path]:
    """Cumulative distributions of the waits, one step line per (label, waits)."""
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    colours = ["black", *colormaps["tab10"].colors]
    for i, (label, values) in enumerate(series):
        xs = sorted(values)
        ax.step(xs, [(j + 1) / len(xs) for j in range(len(xs))], where="post", label=label,
                color=colours[i % len(colours)])
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("wait (s)")
    ax.set_ylabel("fraction of jobs")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _save(fig, stem)
