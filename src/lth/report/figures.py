"""Result figures in the style of Frankle & Carbin (2019), Figures 3 and 4: metrics against P_m on a reversed
log axis (dense on the left), the ticket and each control as mean with min-max bars over replicates, and test
accuracy against training iteration for a few levels.

matplotlib is used through Figure objects only, never pyplot: no global backend is chosen or changed, so a
report can be written headless, from a notebook, or from a thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lth.report.load import RunData

BRANCH_LABELS = {"dense": "dense network", "ticket": "winning ticket (IMP)", "reinit": "random reinit",
                 "random_prune": "random pruning"}
BRANCH_COLORS = {"dense": "black", "ticket": "C0", "reinit": "C1", "random_prune": "C2"}
RUN_STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 1)), "P")]
PM_LABEL = "$P_m$: weights remaining (%, log scale)"


@dataclass
class FigureFile:
    name: str
    title: str
    caption: str
    png: Path
    svg: Path


def branch_label(branch: str) -> str:
    if branch in BRANCH_LABELS:
        return BRANCH_LABELS[branch]
    if branch.startswith("reinit"):
        return f"random reinit #{branch[6:]}"
    return branch


def branch_color(branch: str) -> str:
    if branch in BRANCH_COLORS:
        return BRANCH_COLORS[branch]
    return "C3" if branch.startswith("reinit") else "C5"


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 6.4, height: float = 4.2, sharey: bool = False):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(nrows, ncols, squeeze=False, sharey=sharey)


def suptitle(fig, text: str, size: float = 9.5) -> None:
    """Figure title wrapped to the figure's width: the run description is long and must not be cut off.
    Lines break between its " · " phrases where possible, not inside one."""
    import textwrap

    chars = int(fig.get_figwidth() * 72 / (0.55 * size))  # ~0.55 em per character
    lines: list[str] = []
    for line in text.split("\n"):
        cur = ""
        for part in line.split(" · "):
            if cur and len(cur) + 3 + len(part) > chars:
                lines.append(cur)
                cur = part
            else:
                cur = f"{cur} · {part}" if cur else part
        lines += textwrap.wrap(cur, chars) or [""]
    fig.suptitle(plain("\n".join(lines)), fontsize=size)


def save(fig, out: Path, name: str, title: str, caption: str) -> FigureFile:
    import io

    import matplotlib

    from lth.fileio import write_bytes

    png, svg = out / f"{name}.png", out / f"{name}.svg"
    # Rendered in memory, then written atomically like every file lth writes (lth.fileio).
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    write_bytes(png, buf.getvalue())
    # Text stays text in the SVG (not glyph outlines): smaller, searchable and editable; no date, so an
    # unchanged run gives an identical file.
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    write_bytes(svg, buf.getvalue())
    return FigureFile(name, title, caption, png, svg)


def plain(text: str) -> str:
    """Text from a run (a folder name, a preset, a config value) as matplotlib shows it literally: a `$` would
    start mathtext, and an unbalanced one fails the whole figure."""
    return text.replace("$", r"\$")


def pm_text(pm: float) -> str:
    return "100" if pm >= 99.995 else f"{pm:.1f}" if pm >= 1 else f"{pm:.2g}"


def pm_axis(ax, pms: list[float]) -> None:
    """Log x axis, reversed (100% on the left), ticks at the levels' P_m; a tick closer to the previous one
    than a label's width is dropped so labels never overlap, but the sparsest level is always labelled."""
    from matplotlib.ticker import NullLocator

    vals = sorted({round(p, 6) for p in pms}, reverse=True)
    span = math.log10(vals[0] / vals[-1] * 1.12**2) if vals else 1.0
    width_in = ax.figure.get_figwidth() * ax.get_position().width  # before layout: close enough
    min_gap = span * 0.42 / max(width_in, 1.0)  # a label is about 0.42 inch wide
    ticks: list[float] = []
    for v in vals:
        if not ticks or math.log10(ticks[-1] / v) >= min_gap:
            ticks.append(v)
    if vals and ticks[-1] != vals[-1]:  # the sparsest level was too close to the last tick kept
        if len(ticks) > 1:
            ticks[-1] = vals[-1]
        else:
            ticks.append(vals[-1])
    ax.set_xscale("log")
    ax.set_xticks(ticks)
    ax.set_xticklabels([pm_text(t) for t in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    if vals:
        ax.set_xlim(vals[0] * 1.12, vals[-1] / 1.12)
    ax.set_xlabel(PM_LABEL)
    ax.grid(True, alpha=0.3)


def series(run: RunData, branch: str, key: str, scale: float) -> tuple[np.ndarray, ...] | None:
    """(P_m, mean, min, max) of `key` for a branch; the ticket starts at the dense level (its P_m = 100%)."""
    rows = [r for r in run.rows if key in r and (r["branch"] == branch or (branch == "ticket" and r["level"] == 0))]
    if not rows:
        return None
    x = np.array([r["remaining_percent"] for r in rows])
    m, lo, hi = (np.array([r[key][s] * scale for r in rows]) for s in ("mean", "min", "max"))
    return x, m, lo, hi


def pm_figure(runs: list[RunData], panels: list[tuple[str, str, float]], title: str):
    """One panel per (summary key, y label, scale): every run × branch as mean with min-max bars."""
    fig, axes = new_figure(ncols=len(panels), width=6.4 if len(panels) == 1 else 5.2 * len(panels), height=4.4)
    multi = len(runs) > 1
    for ax, (key, ylabel, scale) in zip(axes[0], panels):
        pms: list[float] = []
        for i, run in enumerate(runs):
            ls, marker = RUN_STYLES[i % len(RUN_STYLES)]
            for branch in [b for b in run.branches() if b != "dense"] or ["ticket"]:
                s = series(run, branch, key, scale)
                if s is None:
                    continue
                x, m, lo, hi = s
                pms += list(x)
                label = branch_label(branch) + (f" — {plain(run.label)}" if multi else "")
                err = np.clip([m - lo, hi - m], 0, None)  # float rounding can put the mean a hair outside
                ax.errorbar(x, m, yerr=err, color=branch_color(branch), ls=ls, marker=marker,
                            ms=4, lw=1.4, capsize=2.5, elinewidth=1, label=label)
            dense = run.row(0, "dense")
            if not multi and dense is not None and key in dense:
                ax.axhline(dense[key]["mean"] * scale, color="0.4", ls=":", lw=1,
                           label="dense network (P_m=100%), mean")
        pm_axis(ax, pms)
        if key.endswith("_step"):  # iterations are whole numbers
            from matplotlib.ticker import MaxNLocator

            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7.5 if multi else 8.5, loc="best")
    suptitle(fig, title)
    return fig


def pick_levels(run: RunData, wanted: list[int] | None) -> list[int]:
    """Levels with finished tickets: the ones asked for, else the dense, a middle and the sparsest."""
    have = sorted({s["level"] for s in run.summaries if s["branch"] == "ticket"})
    if wanted:
        return [lv for lv in wanted if lv in have]
    if len(have) <= 3:
        return have
    return [have[0], have[len(have) // 2], have[-1]]


def mean_curve(run: RunData, level: int, branch: str, key: str) -> tuple[np.ndarray, ...] | None:
    """Steps measured by every replicate, with the mean, min and max of `key` there."""
    curves = []
    for r in run.replicates:
        m = run.metrics(r, level, branch)
        if m is not None and key in m and "step" in m:
            ok = ~np.isnan(m[key])
            curves.append(dict(zip(m["step"][ok].tolist(), m[key][ok].tolist())))
    if not curves:
        return None
    steps = sorted(set(curves[0]).intersection(*curves[1:]))
    if not steps:
        return None
    vals = np.array([[c[s] for s in steps] for c in curves])
    return np.array(steps), vals.mean(0), vals.min(0), vals.max(0)


def iteration_figure(runs: list[RunData], levels: dict[str, list[int]], title: str, key: str = "test_acc"):
    """Test accuracy vs training iteration: one panel per run; ticket solid, random reinit dashed.
    None when no run has metrics.csv files (e.g. find_tickets runs)."""
    curves: dict[str, list] = {}
    for run in runs:
        pm = run.pm()
        for j, level in enumerate(levels.get(str(run.root), [])):
            for branch, ls in (("ticket", "-"), ("reinit", "--")):
                c = None if branch == "reinit" and level == 0 else mean_curve(run, level, branch, key)
                if c is not None:
                    name = "dense" if level == 0 else branch_label(branch)
                    curves.setdefault(str(run.root), []).append(
                        (c, f"C{j}", ls, f"P_m={pm_text(pm[level])}% (level {level}) {name}"))
    panels = [r for r in runs if str(r.root) in curves]
    if not panels:
        return None
    # Runs side by side on one y scale, so their accuracies compare at a glance.
    fig, axes = new_figure(ncols=len(panels), width=6.4 if len(panels) == 1 else 5.2 * len(panels), height=4.4,
                           sharey=True)
    for ax, run in zip(axes[0], panels):
        for (steps, m, lo, hi), color, ls, label in curves[str(run.root)]:
            ax.plot(steps, 100 * m, color=color, ls=ls, lw=1.5, label=label)
            if len(run.replicates) > 1:
                ax.fill_between(steps, 100 * lo, 100 * hi, color=color, alpha=0.12, lw=0)
        ax.set_xlabel("training iteration")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        if len(panels) > 1:
            ax.set_title(plain(run.label), fontsize=9)
    suptitle(fig, title)
    return fig


def weights_figure(init: dict[str, Any], final: dict[str, Any], alive: dict[str, Any], keep: dict[str, Any] | None,
                   title: str, max_points: int = 3000, max_layers: int = 4):
    """|θ_0| vs |θ_final| of the weights that trained, split by whether the next pruning keeps them.

    At most `max_points` per layer are drawn (a fixed random subset per class) so the figure and its SVG stay
    small for any network; points are rasterized inside the SVG for the same reason.
    """
    names = [n for n in alive if n in init and n in final][:max_layers]
    fig, axes = new_figure(ncols=len(names), width=max(6.4, 3.6 * len(names)), height=4.0)
    rng = np.random.default_rng(0)
    for ax, n in zip(axes[0], names):
        a = alive[n].reshape(-1)
        x0, x1 = np.abs(init[n].reshape(-1)), np.abs(final[n].reshape(-1))
        classes = [("kept by the next pruning", "C0", a & keep[n].reshape(-1)),
                   ("pruned by the next pruning", "C3", a & ~keep[n].reshape(-1))] if keep is not None else \
            [("trained weights", "C0", a)]
        per = max_points // len(classes)
        counts = []
        for label, color, sel in classes:
            idx = np.flatnonzero(sel)
            shown = rng.choice(idx, size=min(per, idx.size), replace=False) if idx.size else idx
            ax.scatter(x0[shown], x1[shown], s=3, alpha=0.35, color=color, lw=0, rasterized=True, label=label)
            more = f" ({shown.size:,} shown)" if shown.size < idx.size else ""
            counts.append(f"{idx.size:,} {label.split()[0]}{more}")
        # axline does not stretch the axes: each axis keeps its own range (final weights move far more).
        ax.axline((0, 0), slope=1, color="0.5", lw=0.8, ls=":", label="|θ_final| = |θ_0|")
        ax.set_xlabel("|initial weight θ_0|")
        ax.set_ylabel("|final weight after training|")
        ax.set_title(f"{n}\n" + ", ".join(counts), fontsize=8)
        ax.grid(True, alpha=0.3)
    # One legend for all panels, under them, so no panel's points are hidden behind it.
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8, markerscale=4)
    suptitle(fig, title)
    return fig
