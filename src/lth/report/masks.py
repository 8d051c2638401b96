"""Mask analysis: per-layer remaining fraction, first-layer connectivity pictures, unconnected inputs, and
Jaccard overlap between successive levels and between replicates.

Masks can be large (VGG-19: 20M weights each), so they are streamed level by level: each mask file is read
once, every statistic is taken from it, and only the previous level's masks, the first layer and the few
masks asked for by `keep` stay in memory. They are read as numpy arrays (the files lth.prune.Mask writes),
so a report needs neither torch nor its import time.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np

from lth.report.figures import new_figure, pm_axis, pm_text, suptitle
from lth.report.load import RunData

# Datasets whose pictures are known: the shape one input is drawn as (channels are summed away).
PICTURES = {"mnist": (28, 28), "fashion_mnist": (28, 28), "mnist1d": (40,), "synthetic": (16, 16),
            "cifar10": (3, 32, 32), "cifar100": (3, 32, 32)}
SEQUENCES = {"mnist1d_seq", "mnist_rows", "chars", "chars_tiny"}
"""Datasets read step by step: a sequence model's first weight (an embedding, a recurrent input matrix) does not
connect to input positions, so it gets no input pictures."""


@dataclass
class MaskStats:
    layers: list[str]
    sizes: dict[str, int]
    pm: dict[int, float] = field(default_factory=dict)  # level -> mean P_m (%) over replicates
    layer_density: dict[int, dict[str, float]] = field(default_factory=dict)  # level -> layer -> mean fraction
    successive: dict[int, list[float]] = field(default_factory=dict)  # level -> J(mask_{l-1}, mask_l) per replicate
    between: dict[int, list[float]] = field(default_factory=dict)  # level -> J over replicate pairs
    first: dict[int, np.ndarray] = field(default_factory=dict)  # level -> first layer's 2-D mask (first_rep)
    first_rep: int = 0
    dead: dict[int, list[int]] = field(default_factory=dict)  # level -> unconnected inputs, per replicate
    kept: dict[tuple[int, int], dict[str, np.ndarray]] = field(default_factory=dict)  # (rep, level) -> mask

    @property
    def levels(self) -> list[int]:
        return sorted(self.pm)

    def random_jaccard(self, level: int) -> float:
        """Expected Jaccard of two independent random masks with this level's per-layer densities."""
        d = self.layer_density[level]
        inter = sum(self.sizes[n] * d[n] ** 2 for n in d)
        union = sum(self.sizes[n] * (2 * d[n] - d[n] ** 2) for n in d)
        return inter / union if union else 1.0


def load_mask(path: Path) -> dict[str, np.ndarray]:
    """A mask file as boolean arrays, in the layers' order (kept by the JSON summary beside it, as
    lth.prune.Mask.load does: safetensors does not keep insertion order)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    meta = path.with_suffix(".json")
    order = list(json.loads(meta.read_text())["layers"]) if meta.exists() else sorted(tensors)
    return {n: tensors[n] != 0 for n in order}


def _sizes(mask: dict[str, np.ndarray]) -> dict[str, int]:
    return {n: a.size for n, a in mask.items()}


def _density(mask: dict[str, np.ndarray]) -> float:
    return sum(np.count_nonzero(a) for a in mask.values()) / max(1, sum(a.size for a in mask.values()))


def _jaccard(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """|A ∩ B| / |A ∪ B| of the kept weights (1 = identical), as lth.prune.Mask.jaccard."""
    inter = sum(np.count_nonzero(a[n] & b[n]) for n in a)
    union = sum(np.count_nonzero(a[n] | b[n]) for n in a)
    return inter / union if union else 1.0


def mask_stats(run: RunData, keep: set[tuple[int, int]] = frozenset()) -> MaskStats | None:
    """One pass over the run's level masks (each file read once); None when the run has no masks."""
    stats: MaskStats | None = None
    prev: dict[int, dict[str, np.ndarray]] = {}
    for level in run.levels:
        cur = {r: load_mask(run.mask_path(r, level)) for r in run.replicates if run.mask_path(r, level).exists()}
        if not cur:
            prev = {}
            continue
        if stats is None:
            any_mask = next(iter(cur.values()))
            stats = MaskStats(list(any_mask), _sizes(any_mask), first_rep=min(cur))
        if any(list(m) != stats.layers or _sizes(m) != stats.sizes for m in cur.values()):
            continue  # a mask for another model cannot be compared; reported as missing by its absence
        stats.pm[level] = 100 * float(np.mean([_density(m) for m in cur.values()]))
        stats.layer_density[level] = {n: float(np.mean([np.count_nonzero(m[n]) / max(1, m[n].size)
                                                         for m in cur.values()])) for n in stats.layers}
        if prev:
            stats.successive[level] = [_jaccard(prev[r], cur[r]) for r in cur if r in prev]
        if len(cur) > 1 and level > 0:  # dense masks are all identical: nothing to learn from J = 1
            stats.between[level] = [_jaccard(cur[a], cur[b]) for a, b in combinations(sorted(cur), 2)]
        first = stats.layers[0]
        if cur[next(iter(cur))][first].ndim == 2:
            stats.dead[level] = [int(np.count_nonzero(~m[first].any(0))) for m in cur.values()]
            if stats.first_rep in cur:
                stats.first[level] = cur[stats.first_rep][first]
        for r in cur:
            if (r, level) in keep:
                stats.kept[r, level] = cur[r]
        prev = cur
    return stats


def input_picture(run: RunData, fan_in: int) -> tuple[int, ...] | None:
    """How one input of the first layer is drawn: (H, W), (L,) or (C, H, W); None if it is not the input."""
    dataset = str(run.config.get("data", {}).get("dataset", ""))
    custom = str(run.config.get("model", {}).get("name", "")).startswith("custom:")
    if dataset in SEQUENCES:
        return None
    shape = None if custom else PICTURES.get(dataset)
    if shape is not None:
        return shape if math.prod(shape) == fan_in else None
    # A user's model: guess from the fan-in (784 = 28×28 MNIST, 3072 = 3×32×32, squares are images).
    if fan_in == 3072:
        return (3, 32, 32)
    side = math.isqrt(fan_in)
    return (side, side) if side * side == fan_in and side >= 8 else (fan_in,)


def spread(levels: list[int], n: int) -> list[int]:
    """Up to n levels evenly spread from the first to the last."""
    if len(levels) <= n:
        return levels
    return sorted({levels[round(i * (len(levels) - 1) / (n - 1))] for i in range(n)})


# -- figures ---------------------------------------------------------------------------------------------

def layer_density_figure(stats: MaskStats, title: str):
    fig, axes = new_figure(width=6.8, height=4.4)
    ax = axes[0, 0]
    x = [stats.pm[lv] for lv in stats.levels]
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    # Layers pruned at one rate overlap exactly: distinct markers and dashes keep each visible.
    styles = ["-", "--", "-.", ":"]
    for i, n in enumerate(stats.layers[:10]):
        ax.plot(x, [100 * stats.layer_density[lv][n] for lv in stats.levels], marker="os^Dv<>ph*"[i], ms=4,
                lw=1.4, ls=styles[i % 4], color=f"C{i}", label=n, mfc="none" if i % 2 else None)
    ax.plot(x, x, color="black", ls=":", lw=1.2, label="all prunable weights (Pₘ)")
    pm_axis(ax, x)
    ax.set_yscale("log")
    low = min(min(d.values()) for d in stats.layer_density.values())
    # Less than a decade shown (few levels): 1-2-5 ticks would leave one or two labels.
    subs = (1, 2, 5) if low < 0.1 else (1, 1.5, 2, 3, 4, 5, 6, 7, 8)
    ax.yaxis.set_major_locator(LogLocator(subs=subs))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("weights remaining in the layer (%, log scale)")
    ax.legend(fontsize=8)
    suptitle(fig, title)
    return fig


def jaccard_figure(stats: MaskStats, title: str):
    fig, axes = new_figure(width=6.8, height=4.4)
    ax = axes[0, 0]
    for data, label, color in ((stats.successive, "successive levels: J(mask of previous level, mask)", "C0"),
                               (stats.between, "between replicates at one level (pairs)", "C1")):
        lv = [lv for lv in stats.levels if data.get(lv)]
        if not lv:
            continue
        x = np.array([stats.pm[v] for v in lv])
        m, lo, hi = (np.array([f(data[v]) for v in lv]) for f in (np.mean, np.min, np.max))
        err = np.clip([m - lo, hi - m], 0, None)
        ax.errorbar(x, m, yerr=err, marker="o", ms=4, capsize=2.5, color=color, label=label)
    if stats.between:
        lv = [v for v in stats.levels if v > 0]
        ax.plot([stats.pm[v] for v in lv], [stats.random_jaccard(v) for v in lv], color="black", ls=":", lw=1.5,
                zorder=5, label="expected for two independent random masks of the same per-layer density")
    pm_axis(ax, list(stats.pm.values()))
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("Jaccard overlap |A∩B| / |A∪B| of kept weights")
    ax.legend(fontsize=8)
    suptitle(fig, title)
    return fig


def units_figure(mask: np.ndarray, shape: tuple[int, ...], title: str, layer: str, n_units: int = 64):
    """Each unit's incoming mask as a picture (dark = kept), for evenly spaced units among those that keep
    any connection (at sparse levels most units are empty and would show nothing)."""
    alive = np.flatnonzero(mask.any(1))
    pool = alive if alive.size else np.arange(mask.shape[0])
    n_units = n_units if len(shape) > 1 else 2 * n_units  # 1-D rows are cheap: show more
    units = pool[np.unique(np.linspace(0, len(pool) - 1, min(n_units, len(pool))).round().astype(int))]
    title += (f"\n{len(units)} of the {alive.size} units that keep any connection "
              f"({mask.shape[0] - alive.size} of {mask.shape[0]} keep none)")
    if len(shape) == 1:  # 1-D inputs: one row per unit, rows far enough apart to read
        fig, axes = new_figure(width=6.4, height=2.4 + len(units) / 20)
        ax = axes[0, 0]
        ax.imshow(mask[units], aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1,
                  extent=(-0.5, mask.shape[1] - 0.5, len(units) - 0.5, -0.5))
        ax.set_yticks(range(0, len(units), max(1, len(units) // 16)))
        ax.set_yticklabels([str(units[i]) for i in range(0, len(units), max(1, len(units) // 16))], fontsize=7)
        ax.set_xlabel("input position")
        ax.set_ylabel(f"unit of {layer}")
    else:
        # One mosaic image, not one axes per unit: 64 axes take seconds to lay out, one image milliseconds.
        pics = mask[units].reshape(len(units), *shape).astype(float)
        pics = pics.sum(1) / shape[0] if len(shape) == 3 else pics  # channels: fraction of them kept
        h, w = pics.shape[1:]
        cols = math.ceil(math.sqrt(len(units)))
        rows = math.ceil(len(units) / cols)
        gap_x, gap_y = max(1, w // 14), max(3, h // 3)  # the row gap holds each unit's caption
        mosaic = np.full((rows * (h + gap_y), cols * (w + gap_x) - gap_x), np.nan)
        fig, axes = new_figure(width=7.0, height=1.0 + 6.2 * mosaic.shape[0] / mosaic.shape[1])
        ax = axes[0, 0]
        for i, (u, pic) in enumerate(zip(units, pics)):
            y, x = (i // cols) * (h + gap_y), (i % cols) * (w + gap_x)
            mosaic[y:y + h, x:x + w] = pic
            ax.text(x + w / 2, y + h + gap_y * 0.45, f"unit {u}: {int(mask[u].sum())} kept", ha="center",
                    va="center", fontsize=5.5)
        from matplotlib import colormaps
        from matplotlib.collections import PatchCollection
        from matplotlib.patches import Rectangle

        ax.imshow(mosaic, cmap=colormaps["Greys"].with_extremes(bad="white"), interpolation="nearest", vmin=0, vmax=1)
        # Outlines, since a pruned (white) edge pixel would otherwise merge with the white gaps.
        frames = [Rectangle(((i % cols) * (w + gap_x) - 0.5, (i // cols) * (h + gap_y) - 0.5), w, h)
                  for i in range(len(units))]
        ax.add_collection(PatchCollection(frames, facecolor="none", edgecolor="0.55", lw=0.5))
        ax.set_xlim(-1, mosaic.shape[1])  # room for the outermost outlines
        ax.set_ylim(mosaic.shape[0], -1)
        ax.set_axis_off()
    suptitle(fig, title, 9)
    return fig


def counts_figure(stats: MaskStats, levels: list[int], shape: tuple[int, ...], title: str):
    """Per input: how many first-layer units still connect to it; unconnected inputs marked with a red ×."""
    from matplotlib.patheffects import withStroke

    units = next(iter(stats.first.values())).shape[0]
    if len(shape) == 1:
        fig, axes = new_figure(nrows=len(levels), width=6.8, height=1.2 + 1.5 * len(levels))
        for ax, lv in zip(axes[:, 0], levels):
            counts = stats.first[lv].sum(0)
            ax.bar(np.arange(len(counts)), counts, color="C0", width=0.85)
            dead = np.flatnonzero(counts == 0)
            ax.scatter(dead, np.zeros_like(dead), marker="x", color="red", zorder=3, s=30,
                       label="no connection" if dead.size else None)
            ax.set_ylabel("units", fontsize=8)
            ax.set_title(f"P_m={pm_text(stats.pm[lv])}% (level {lv}): {dead.size} of {len(counts)} inputs "
                         "unconnected", fontsize=8.5)
            if dead.size:
                ax.legend(fontsize=7, loc="upper right")
        axes[-1, 0].set_xlabel(f"input position (bar: surviving connections, of {units} units)")
    else:
        fig, axes = new_figure(ncols=len(levels), width=max(6.4, 3.3 * len(levels)), height=3.9)
        for ax, lv in zip(axes[0], levels):
            counts = stats.first[lv].sum(0).reshape(shape)
            counts = counts.sum(0) if len(shape) == 3 else counts
            im = ax.imshow(counts, cmap="viridis", interpolation="nearest")
            dy, dx = np.nonzero(counts == 0)
            # White halo: a red × alone is hard to see on viridis' dark end, where count 0 sits.
            ax.scatter(dx, dy, marker="x", color="red", s=22, lw=1.4,
                       path_effects=[withStroke(linewidth=3, foreground="white")])
            ax.set_title(f"P_m={pm_text(stats.pm[lv])}% (level {lv})\n{dy.size} of {counts.size} pixels "
                         "unconnected (red ×)", fontsize=8.5)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, shrink=0.8).set_label(f"surviving connections (of {units} units)", fontsize=7.5)
    suptitle(fig, title)
    return fig


def weight_arrays(run: RunData, stats: MaskStats, rep: int, level: int):
    """(θ_0, θ_final of the level's ticket, the level's mask, the next level's mask or None) as numpy, or a
    reason string when the files are not there."""
    from safetensors.numpy import load_file

    init_path = run.root / f"rep{rep}" / "init.safetensors"
    final_path = run.unit_dir(rep, level, "ticket") / "final.safetensors"
    if not init_path.exists() or not final_path.exists() or (rep, level) not in stats.kept:
        return f"weights figure omitted: no θ_0 / trained ticket / mask for replicate {rep} at level {level}"
    try:
        init, final = load_file(str(init_path)), load_file(str(final_path))
    except Exception as e:  # e.g. bfloat16 tensors that numpy cannot hold
        return f"weights figure omitted: cannot read {final_path.name} as numpy ({e})"
    return init, final, stats.kept[rep, level], stats.kept.get((rep, level + 1))
