"""Result figures in the style of Frankle & Carbin (2019), Figures 3 and 4: metrics against P_m on a reversed
log axis (dense on the left), the ticket and each control as mean with min-max bars over replicates, and test
accuracy against training iteration for a few levels.

matplotlib is used through Figure objects only, never pyplot: no global backend is chosen or changed, so a
report can be written headless, from a notebook, or from a thread.

Drawing is most of a report's time. `write_figures` lays each figure out once for both its PNG and its SVG,
and on Linux spreads the figures over one process per CPU (`processes=N` of write_report sets the number; 1
writes them all in the calling process).
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
PM_LABEL = "Pₘ: weights remaining (%, log scale)"  # plain text: mathtext costs a parse per label


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


def gc_frozen(fn):
    """Run `fn` with the objects that exist when it starts (torch's, matplotlib's, the caller's) left out of
    garbage collections: a full collection walks them all, a tenth of a report's time when one falls in it,
    and in a forked child it would also copy the memory the child shares with its parent. Objects made
    during the call are collected as usual. Left as it is when the caller froze objects already."""
    import functools

    @functools.wraps(fn)
    def frozen(*args, **kwargs):
        import gc

        if gc.get_freeze_count():
            return fn(*args, **kwargs)
        gc.freeze()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.unfreeze()

    return frozen


PNG_DPI = 120


def _write(fig, f: FigureFile) -> None:
    """PNG and SVG of `fig`, laid out once.

    savefig alone would run the constrained layout in a dry draw before each file's real draw: four passes
    over every artist. Here the layout runs once, at the PNG's dpi with the renderer that then draws the
    PNG (so its text sizes are measured once), the engine is removed, and each file is one draw. The
    positions are fractions of the figure, so the SVG, drawn at 72 dpi, gets the same layout.
    """
    import io

    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from lth.fileio import write_bytes

    dpi = fig.dpi
    FigureCanvasAgg(fig)  # the figure's canvas, so the layout and the PNG share one renderer
    fig.set_dpi(PNG_DPI)
    engine = fig.get_layout_engine()
    if engine is not None:
        engine.execute(fig)
        with matplotlib.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)  # no engine at all: "none" would still cost a dry draw per file
    # Each file is drawn in memory, then written atomically like every file lth writes (lth.fileio).
    # zlib level 3: a third faster to encode than the default 6, and the files come out no larger.
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI, pil_kwargs={"compress_level": 3})
    write_bytes(f.png, buf.getvalue())
    fig.set_dpi(dpi)
    # Text stays text in the SVG (not glyph outlines): smaller, searchable and editable; no date, so an
    # unchanged run gives an identical file. Rasterized artists are drawn at the figure's own dpi, as before.
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", dpi=dpi, metadata={"Date": None})
    write_bytes(f.svg, buf.getvalue())


def _write_named(fig, f: FigureFile) -> None:
    from lth.errors import UserError

    try:
        _write(fig, f)
    except UserError:  # a full disk, a planted link: the user's to fix, and the message says how
        raise
    except Exception as e:
        raise RuntimeError(f"writing figure {f.name} failed: {type(e).__name__}: {e}") from e


# A child's UserError reaches the parent through the error pipe as this marker, its kind and its message.
_USER_ERROR = "\0lth-user-error\0"


def report_processes(n_figures: int, processes: int | None = None) -> int:
    """How many processes write the figures: `processes` if given (1: all in this process), else one per CPU
    this process may use. Only on Linux, where forking is safe and cheap (1 elsewhere), and for at most 1024
    figures, whose indices fit in any pipe's buffer at once (see write_figures)."""
    import os
    import sys

    if processes is not None:
        if processes < 1:
            from lth.errors import ConfigError

            raise ConfigError(f"processes must be >= 1 (1: figures written in this process), not {processes}")
        n = processes
    else:
        n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return max(1, min(n, n_figures)) if sys.platform == "linux" and n_figures <= 1024 else 1


def write_figures(jobs: list[tuple[Any, FigureFile]], processes: int | None = None) -> None:
    """Write every (figure, files) as PNG and SVG: in this process and `report_processes - 1` forked ones.

    Drawing is Python-bound, so processes, not threads, run it in parallel. The children are forked after
    the figures are built and inherit them; each process takes the next figure from a shared pipe of
    indices (biggest first) until none is left, then a child exits. Nothing waits on this process, so a
    child whose parent was killed still ends on its own. All children are waited for before this returns,
    also on an error, which is raised here with the figure's name and the child's traceback.
    """
    import os
    import sys
    import traceback
    import warnings

    from lth.errors import UserError

    n = report_processes(len(jobs), processes)
    if n == 1:
        for fig, f in jobs:
            _write_named(fig, f)
        return
    # The backends are imported once here, not once per child.
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.backends.backend_svg  # noqa: F401

    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i][0]))
    todo_r, todo_w = os.pipe()
    os.write(todo_w, b"".join(i.to_bytes(4, "little") for i in order))  # <= 4 KiB: written whole
    os.close(todo_w)  # once every index is read, a read returns b"": the work is done

    def work() -> None:
        # Linux serves a 4-byte read from a pipe whole, to one reader: no figure is taken twice or torn.
        while len(i := os.read(todo_r, 4)) == 4:
            _write_named(*jobs[int.from_bytes(i, "little")])

    sys.stdout.flush()  # a child's stray write must not repeat what this process had buffered
    sys.stderr.flush()
    children: list[tuple[int, int]] = []  # (pid, read end of its error pipe)
    try:
        for _ in range(n - 1):
            err_r, err_w = os.pipe()
            try:
                with warnings.catch_warnings():
                    # Python >= 3.12 warns when forking a process with threads (e.g. torch's, after `lth
                    # run`); a child runs only matplotlib, never those threads' code.
                    warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)
                    pid = os.fork()
            except OSError:  # no process to be had (a limit on processes or memory): fewer do the work
                os.close(err_r)
                os.close(err_w)
                break
            if pid == 0:  # the child: write figures, report any error through the pipe, exit without cleanup
                code = 1
                try:
                    os.close(err_r)
                    work()
                    code = 0
                except UserError as e:
                    os.write(err_w, f"{_USER_ERROR}{type(e).__name__}\0{e}".encode(errors="replace")[:16000])
                except BaseException:
                    os.write(err_w, traceback.format_exc().encode(errors="replace")[-16000:])
                finally:
                    os._exit(code)
            os.close(err_w)
            children.append((pid, err_r))
        work()
    finally:
        while os.read(todo_r, 4096):  # after an error here: the children stop after their current figure
            pass
        os.close(todo_r)
        failures = []
        for pid, err_r in children:
            with os.fdopen(err_r, "rb") as pipe:
                text = pipe.read().decode(errors="replace").strip()  # read first: a full pipe would block it
            status = os.waitpid(pid, 0)[1]
            if status != 0:
                failures.append(text or f"the child process died ({_status_text(status)})")
    if failures:  # only reached without an error of this process's own, which then takes precedence
        if failures[0].startswith(_USER_ERROR):  # raised again here as the kind it was, with its message
            import lth.errors

            kind, message = failures[0][len(_USER_ERROR):].split("\0", 1)
            raise getattr(lth.errors, kind, UserError)(message)
        raise RuntimeError("writing the report's figures failed in a child process:\n" + failures[0])


def _status_text(status: int) -> str:
    import os
    import signal

    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _cost(fig) -> int:
    """A rough measure of a figure's drawing time, to start with the biggest: its axes and texts."""
    return sum(4 + len(ax.texts) // 4 + len(ax.collections) for ax in fig.axes)


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


def iteration_figure(runs: list[RunData], levels: dict[str, list[int]], title: str, key: str = "test_acc",
                     scale: float = 100, ylabel: str = "test accuracy (%)", xlabel: str = "training iteration"):
    """`key` of metrics.csv (default test accuracy) vs training iteration: one panel per run; ticket solid,
    random reinit dashed. None when no run has metrics.csv files (e.g. find_tickets runs)."""
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
            ax.plot(steps, scale * m, color=color, ls=ls, lw=1.5, label=label)
            if len(run.replicates) > 1:
                ax.fill_between(steps, scale * lo, scale * hi, color=color, alpha=0.12, lw=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
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
