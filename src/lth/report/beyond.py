"""Report sections of the experiments beyond IMP: pruning at initialization against IMP on one accuracy-vs-P_m
axis, its ablations, the per-layer sparsity each criterion chooses, and strong tickets' accuracy against k.

Figures are drawn with lth.report.figures' helpers (axes, titles, saving); the functions that draw them live
here so that the IMP figure module stays IMP's.
"""

from __future__ import annotations

import json

import numpy as np

from lth.config.beyond import PAI_ABLATIONS
from lth.report import figures as F
from lth.report.load import RunData
from lth.report.sections import Context, section

CRITERION_COLORS = {"snip": "C0", "grasp": "C1", "synflow": "C2", "magnitude_init": "C4", "random": "0.5",
                    "smart_ratio": "C8", "edge_popup": "C0", "bernoulli": "C1", "large_final": "C2"}
ACCURACY_PANELS = [("early_stop_test_acc", "test accuracy at early stop (%)"),
                   ("final_test_acc", "test accuracy at end of training (%)")]


def _color(branch: str, i: int) -> str:
    return CRITERION_COLORS.get(branch, f"C{(i + 5) % 10}")


def _split(branch: str) -> tuple[str, str | None]:
    from lth.experiments.prune_at_init import split_branch  # here: the report module imports no torch

    return split_branch(branch)


def _criteria(run: RunData) -> list[str]:
    """The criteria a prune-at-init run trained (no ablations, no dense), in its config's order."""
    from lth.experiments.prune_at_init import section_of

    have = set(run.branches())
    return [c for c in section_of(run.config).criteria if c in have]


def _legend_below(fig, axes, columns: int = 4) -> None:
    """One legend for all panels (they share their curves), under them, so that no curve or bar is hidden;
    as many columns as the figure's width holds for the longest label."""
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fits = int(fig.get_figwidth() * 72 / (0.55 * 8) // (max(map(len, labels)) + 6))
        fig.legend(handles, labels, loc="outside lower center", ncols=max(1, min(columns, fits, len(labels))),
                   fontsize=8)


def _draw(ax, run: RunData, branch: str, key: str, label: str, color: str, ls: str, marker: str,
          pms: list[float]) -> None:
    s = F.series(run, branch, key, 100)
    if s is None:
        return
    x, m, lo, hi = s
    pms += list(x)
    ax.errorbar(x, m, yerr=np.clip([m - lo, hi - m], 0, None), color=color, ls=ls, marker=marker, ms=4, lw=1.4,
                capsize=2.5, elinewidth=1, label=label)


@section("pai_vs_imp")
def pai_vs_imp_section(ctx: Context) -> list[tuple[str, list]]:
    pai = [r for r in ctx.runs if r.experiment == "prune_at_init"]
    if not pai:
        return []
    imp = [r for r in ctx.runs if r.experiment == "imp"]
    fig, axes = F.new_figure(ncols=2, width=12, height=5.2, sharey=True)
    multi = len(pai) + len(imp) > 1
    for ax, (key, ylabel) in zip(axes[0], ACCURACY_PANELS):
        pms: list[float] = []
        for i, run in enumerate(pai):
            ls, marker = F.RUN_STYLES[i % len(F.RUN_STYLES)]
            tag = f" — {run.label}" if multi else ""
            for j, c in enumerate(_criteria(run)):
                _draw(ax, run, c, key, c + tag, _color(c, j), ls, marker, pms)
            dense = run.row(0, "dense")
            if dense is not None and key in dense:
                ax.axhline(100 * dense[key]["mean"], color="0.3", ls=":", lw=1, label="dense network" + tag)
        for i, run in enumerate(imp):
            tag = f" — {run.label}" if len(imp) > 1 else ""
            _draw(ax, run, "ticket", key, "IMP winning ticket" + tag, "black", "-", "*", pms)
            if "random_prune" in run.branches():
                _draw(ax, run, "random_prune", key, "IMP random pruning control" + tag, "0.35", "--", "x", pms)
        if pms:
            F.pm_axis(ax, pms)
        ax.set_ylabel(ylabel)
    _legend_below(fig, axes)
    head = "Pruning at initialization against IMP: test accuracy vs weights remaining"
    F.suptitle(fig, f"{head}\n{ctx.title}")
    caption = ("Each criterion prunes θ_0 once to the level's P_m and the subnetwork trains like an IMP ticket "
               "(same θ_0, data order and budget). Mean over replicates; bars span min to max.")
    if imp:
        caption += " IMP's ticket starts at the dense network (P_m = 100%)."
    return [("Pruning at initialization vs IMP", [ctx.save(fig, "pai_vs_imp", head, caption)])]


@section("pai_ablations")
def pai_ablations_section(ctx: Context) -> list[tuple[str, list]]:
    items = []
    pai = [r for r in ctx.runs if r.experiment == "prune_at_init"]
    for i, run in enumerate(pai):
        levels = sorted({r["level"] for r in run.rows if _split(r["branch"])[1] is not None})
        if not levels:
            continue
        fig = ablation_figure(run, levels[-4:])
        suffix = f"-run{i + 1}" if len(pai) > 1 else ""
        head = "Sanity checks: each criterion against its shuffled, reinitialized and inverted masks"
        items.append(ctx.save(fig, "pai_ablations" + suffix, head,
                              "Test accuracy at the early stop; mean over replicates, bars span min to max. A "
                              "criterion that survives shuffling (and reinitialization) relies on its per-layer "
                              "sparsity, not on which weights it keeps (Frankle et al. 2021)."))
    return [("Pruning at initialization: ablations", items)] if items else []


def ablation_figure(run: RunData, levels: list[int]):
    fig, axes = F.new_figure(ncols=len(levels), width=max(6.4, 4.6 * len(levels)), height=4.4, sharey=True)
    pm = run.pm()
    for ax, level in zip(axes[0], levels):
        rows = {r["branch"]: r for r in run.rows if r["level"] == level}
        bases = [c for c in _criteria(run) if any(_split(b) == (c, a) for b in rows for a in PAI_ABLATIONS)]
        kinds = [None] + [a for a in PAI_ABLATIONS if any(_split(b)[1] == a for b in rows)]
        width = 0.8 / len(kinds)
        for j, kind in enumerate(kinds):
            xs, ms, errs = [], [], [[], []]
            for x, c in enumerate(bases):
                row = rows.get(c if kind is None else f"{c}_{kind}")
                if row is None or "early_stop_test_acc" not in row:
                    continue
                stat = row["early_stop_test_acc"]
                xs.append(x + (j - (len(kinds) - 1) / 2) * width)
                ms.append(100 * stat["mean"])
                errs[0].append(100 * (stat["mean"] - stat["min"]))
                errs[1].append(100 * (stat["max"] - stat["mean"]))
            ax.bar(xs, ms, width=width, yerr=np.clip(errs, 0, None), capsize=2, label=kind or "criterion's mask",
                   color=f"C{j}", alpha=0.85)
        dense = run.row(0, "dense")
        if dense is not None:
            ax.axhline(100 * dense["early_stop_test_acc"]["mean"], color="0.3", ls=":", lw=1, label="dense network")
        ax.set_xticks(range(len(bases)))
        ax.set_xticklabels(bases, rotation=20, fontsize=8)
        ax.set_title(f"P_m = {F.pm_text(pm.get(level, 0))}% (level {level})", fontsize=9)
        ax.set_ylabel("test accuracy at early stop (%)")
        ax.grid(True, axis="y", alpha=0.3)
    _legend_below(fig, axes)
    F.suptitle(fig, f"Ablations of pruning at initialization\n{run.label}")
    return fig


def _layer_density(path) -> dict[str, float] | None:
    meta = path.with_suffix(".json")
    if not meta.exists():
        return None
    try:
        layers = json.loads(meta.read_text())["layers"]
        return {n: float(v["remaining_percent"]) for n, v in layers.items()}
    except (OSError, KeyError, ValueError, TypeError):
        return None


@section("pai_layers")
def pai_layers_section(ctx: Context) -> list[tuple[str, list]]:
    pai = [r for r in ctx.runs if r.experiment == "prune_at_init"]
    imp = [r for r in ctx.runs if r.experiment == "imp"]
    items = []
    for i, run in enumerate(pai):
        levels = [lv for lv in run.levels if lv > 0 and any(r["level"] == lv for r in run.rows)][-4:]
        if not levels:
            continue
        fig = layers_figure(run, levels, imp[0] if imp else None)
        if fig is None:
            continue
        suffix = f"-run{i + 1}" if len(pai) > 1 else ""
        head = "Weights each criterion keeps per layer"
        items.append(ctx.save(fig, "pai_layers" + suffix, head,
                              "From the masks of replicate 0. Global selection lets each criterion choose the "
                              "layers' shares; the IMP ticket of the same level (when an IMP run is in the report) "
                              "is drawn in black."))
    return [("Pruning at initialization: per-layer sparsity", items)] if items else []


def layers_figure(run: RunData, levels: list[int], imp: RunData | None):
    fig, axes = F.new_figure(ncols=len(levels), width=max(6.4, 4.4 * len(levels)), height=4.2, sharey=True)
    rep = run.replicates[0] if run.replicates else 0
    pm = run.pm()
    drawn = False
    for ax, level in zip(axes[0], levels):
        names: list[str] = []
        for j, c in enumerate(_criteria(run)):
            density = _layer_density(run.store.unit_mask_path(_unit(rep, level, c)))
            if density is None:
                continue
            names = list(density)
            ax.plot(range(len(names)), [max(v, 1e-3) for v in density.values()], marker="o", color=_color(c, j),
                    label=c)
            drawn = True
        if imp is not None and level in imp.pm() and abs(imp.pm()[level] - pm.get(level, -1)) < 0.5:
            density = _layer_density(imp.mask_path(rep, level))
            if density is not None:
                ax.plot(range(len(density)), list(density.values()), marker="*", color="black", lw=2,
                        label="IMP ticket")
        ax.set_yscale("log")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, fontsize=8)
        ax.set_title(f"P_m = {F.pm_text(pm.get(level, 0))}% (level {level})", fontsize=9)
        ax.set_ylabel("weights kept in the layer (%, log)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7.5)
    F.suptitle(fig, f"Per-layer sparsity chosen by each criterion\n{run.label}")
    return fig if drawn else None


def _unit(replicate: int, level: int, branch: str):
    from lth.store import Unit

    return Unit(replicate, level, branch)


@section("supermask_vs_k")
def supermask_section(ctx: Context) -> list[tuple[str, list]]:
    """One figure per supermask run: each has its own dense and untrained references (its own θ_0)."""
    runs = [r for r in ctx.runs if r.experiment == "supermask"]
    items = []
    for i, run in enumerate(runs):
        fig = supermask_figure(run, ctx.title if len(runs) == 1 else run.label)
        head = "Strong tickets: accuracy of masks on frozen random weights vs k"
        items.append(ctx.save(
            fig, "supermask_vs_k" + (f"-run{i + 1}" if len(runs) > 1 else ""), head + (f" ({run.label})" if
                                                                                       len(runs) > 1 else ""),
            "No weight is trained: edge-popup and the Bernoulli supermask learn only a mask of θ_0. Mean over "
            "replicates; bars span min to max. A Bernoulli mask is drawn at the fraction it learned to keep."))
    return [("Strong tickets (supermasks)", items)] if items else []


def supermask_figure(run: RunData, subtitle: str):
    fig, axes = F.new_figure(ncols=2, width=12, height=5.0, sharey=True)
    for ax, (key, ylabel) in zip(axes[0], ACCURACY_PANELS):
        for j, branch in enumerate(b for b in run.branches() if b not in ("dense", "untrained")):
            label = {"large_final": "large_final mask of the trained network on θ_0, untrained"}.get(branch, branch)
            _draw(ax, run, branch, key, label, _color(branch, j), "--" if branch == "large_final" else "-", "o", [])
        for branch, color, text in (("dense", "black", "dense network, weights trained"),
                                    ("untrained", "0.5", "dense network, untrained θ_0")):
            row = run.row(0, branch)
            if row is not None and key in row:
                ax.axhline(100 * row[key]["mean"], color=color, ls=":", lw=1.2, label=text)
        ax.set_xlabel("weights kept, k (%)")
        ax.set_xlim(0, 100)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    _legend_below(fig, axes)
    F.suptitle(fig, f"Strong tickets: accuracy of masks on frozen random weights vs k\n{subtitle}")
    return fig
