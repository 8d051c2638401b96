"""The early-bird section: how far each mask drawn during the dense training is from the masks before it
(the FIFO distance You et al. stop on) and from IMP's mask, where the ticket was drawn, the drawn ticket's
accuracy against IMP's, and the iterations each needs to find its mask."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from lth.report import figures as F
from lth.report.load import common_title
from lth.report.sections import Context, section

F.BRANCH_LABELS.update({"early_bird": "early-bird ticket", "imp_ticket": "IMP ticket"})
F.BRANCH_COLORS.update({"early_bird": "C3", "imp_ticket": "C0"})


def draws(run) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = defaultdict(list)
    for s in run.summaries:
        if s["branch"] == "early_bird" and "window_distance" in s:
            out[s["level"]].append(s)
    return dict(sorted(out.items()))


def _mean(rows: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in r] for r in rows], dtype=float).mean(0)


def shown_levels(levels: list[int], most: int = 4) -> list[int]:
    """At most `most` levels, evenly spread from the first to the last: one line pair per level stays readable."""
    if len(levels) <= most:
        return levels
    return [levels[round(i * (len(levels) - 1) / (most - 1))] for i in range(most)]


def distance_figure(by_level: dict[int, list[dict]], title: str):
    """Color = level (at most four, evenly spread); solid = the FIFO distance You et al. stop on, dashed = the
    distance to IMP's mask. One legend under the axes."""
    from matplotlib.lines import Line2D

    fig, axes = F.new_figure(width=7.2, height=4.8)
    ax = axes[0, 0]
    levels = shown_levels(list(by_level))
    handles = []
    for i, level in enumerate(levels):
        recs = by_level[level]
        steps = np.array(recs[0]["steps"])
        color = f"C{i % 10}"
        ax.plot(steps, 100 * _mean([r["window_distance"] for r in recs]), color=color, lw=1.6, marker=".")
        ax.plot(steps, 100 * _mean([r["imp_distance"] for r in recs]), color=color, lw=1, ls="--")
        for r in recs:
            if r.get("draw_step") is not None:
                ax.axvline(r["draw_step"], color=color, lw=0.8, ls=":")
        handles.append(Line2D([], [], color=color, lw=2, label=f"level {level}: P_m={F.pm_text(recs[0]['remaining_percent'])}%"))
    first = by_level[levels[0]][0]
    eps = first["eps"]
    ax.axhline(100 * eps, color="0.3", lw=1, ls="-.")
    handles += [Line2D([], [], color="0.3", lw=1.6, marker=".", label=f"max distance to the previous {first['window'] - 1} masks"),
                Line2D([], [], color="0.3", lw=1, ls="--", label="distance to IMP's mask"),
                Line2D([], [], color="0.3", lw=1, ls="-.", label=f"ε = {eps:g}")]
    ax.set_xlabel("iteration of the dense training (dotted: where the ticket was drawn)")
    ax.set_ylabel("normalized Hamming distance (% of weights)")
    ax.grid(True, alpha=0.3)
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=7.5)
    shown = "" if len(levels) == len(by_level) else f" (levels {', '.join(map(str, levels))} of {len(by_level)})"
    head, _, rest = title.partition("\n")
    F.suptitle(fig, f"{head}{shown}\n{rest}" if rest else f"{head}{shown}")
    return fig


def iterations_figure(by_level: dict[int, list[dict]], title: str):
    fig, axes = F.new_figure(width=6.4, height=4.2)
    ax = axes[0, 0]
    pms = [recs[0]["remaining_percent"] for recs in by_level.values()]
    for key, label, color in (("imp_find_iterations", "IMP: dense + (L − 1) pruned trainings", "C0"),
                              ("draw_step", "early-bird: the draw step of the dense training", "C3")):
        points = [(pm, np.mean([r[key] for r in recs])) for pm, recs in zip(pms, by_level.values())
                  if all(r.get(key) is not None for r in recs)]  # a level never drawn has no draw step
        ax.plot([p[0] for p in points], [p[1] for p in points], color=color, marker="o", label=label)
    F.pm_axis(ax, pms)
    ax.set_yscale("log")
    ax.set_ylabel("iterations to find the level's mask")
    ax.legend(fontsize=8)
    F.suptitle(fig, title)
    return fig


@section("early_bird")
def early_bird_section(ctx: Context) -> list[tuple[str, list]]:
    out = []
    for run, suffix, prefix in ctx.runs_of("early_bird"):
        by_level = draws(run)
        if not by_level:
            ctx.note(f"{run.label}: no finished early-bird ticket yet")
            continue
        title = common_title([run])
        items = [
            ctx.save(distance_figure(by_level, f"Mask distances during the dense training\n{title}"),
                     f"early_bird_distance{suffix}", prefix + "Mask distance during the dense training",
                     "Solid: the largest normalized Hamming distance from the mask drawn at an evaluation point to the "
                     "ones drawn at the previous points of the FIFO; the ticket is drawn once it is at most ε. Dashed: "
                     "distance to the mask IMP finds for the same P_m. Mean over replicates."),
            ctx.save(F.pm_figure([run], [("final_test_acc", "test accuracy at end of training (%)", 100),
                                         ("early_stop_test_acc", "test accuracy at early stop (%)", 100)],
                                 f"Early-bird ticket against IMP's ticket\n{title}"),
                     f"early_bird_accuracy_vs_pm{suffix}", prefix + "Early-bird ticket against IMP's ticket",
                     "Both trained the same way (same start weights, data order and budget); only the mask differs. "
                     "Bars span the replicates."),
            ctx.save(iterations_figure(by_level, f"Iterations to find the mask\n{title}"),
                     f"early_bird_iterations{suffix}", prefix + "Compute to find the mask",
                     "IMP finds level L's mask after training the dense network and L − 1 pruned networks; early-bird "
                     "after its draw step."),
        ]
        out.append((prefix + "Early-bird tickets", items))
    return out
