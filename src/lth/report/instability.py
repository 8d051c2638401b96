"""The instability section: the test error along the line between two copies, the error barrier against
the rewind step k, and the barrier against P_m for the ticket and IMP's controls (Frankle et al. 2020)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from lth.report import figures as F
from lth.report.load import common_title
from lth.report.sections import Context, section

STABLE = 2.0
"""The paper calls a network stable when its barrier is below 2% (error)."""
BASE_STYLES = {"dense": "-", "ticket": "-", "reinit": "--", "random_prune": ":"}


def measurements(run) -> dict[tuple[int, str, int], list[dict]]:
    """(level, base, k) -> the replicates' measurement records."""
    out: dict[tuple[int, str, int], list[dict]] = defaultdict(list)
    for s in run.summaries:
        if "barrier" in s:
            out[s["level"], s["branch"].rsplit("_k", 1)[0], int(s["rewind_step"])].append(s)
    return dict(sorted(out.items()))


def _stats(values: list[float]) -> tuple[float, float, float]:
    return float(np.mean(values)), float(np.min(values)), float(np.max(values))


def _base_label(base: str) -> str:
    return {"ticket": "ticket", "dense": "dense"}.get(base, F.branch_label(base))


def path_figure(groups, title: str):
    """One panel per level; color = k, line style = network. One legend for all panels, under them."""
    from matplotlib.lines import Line2D

    levels = sorted({lv for lv, _, _ in groups})
    ks = sorted({k for _, _, k in groups})
    fig, axes = F.new_figure(ncols=len(levels), width=max(6.4, 4.2 * len(levels)), height=4.4, sharey=True)
    for ax, level in zip(axes[0], levels):
        pm = None
        for (lv, base, k), recs in groups.items():
            if lv == level:
                pm = recs[0]["remaining_percent"]
                errors = 100 * np.mean([r["test_error"] for r in recs], axis=0)
                ax.plot(recs[0]["alpha"], errors, color=f"C{ks.index(k)}", ls=BASE_STYLES.get(base, "-."), lw=1.5)
        ax.set_title(f"level {level}: P_m={F.pm_text(pm)}%", fontsize=9)
        ax.set_xlabel("α: (1 − α)·copy a + α·copy b")
        ax.set_ylabel("test error (%)")
        ax.grid(True, alpha=0.3)
    bases = sorted({base for _, base, _ in groups}, key=list(BASE_STYLES).index)
    handles = [Line2D([], [], color=f"C{i}", lw=2, label=f"k = {k}") for i, k in enumerate(ks)]
    handles += [Line2D([], [], color="0.3", ls=BASE_STYLES[b], lw=1.5, label=_base_label(b)) for b in bases]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    F.suptitle(fig, title)
    return fig


def barrier_k_figure(groups, title: str):
    """Color = network, line style and marker = level."""
    ks = sorted({k for _, _, k in groups})
    levels = sorted({lv for lv, _, _ in groups})
    fig, axes = F.new_figure(width=6.8, height=4.4)
    ax = axes[0, 0]
    series = sorted({(lv, base) for lv, base, _ in groups}, key=lambda t: (t[0], list(BASE_STYLES).index(t[1])))
    for level, base in series:
        points = [(ks.index(k), _stats([100 * r["barrier"] for r in groups[level, base, k]]), groups[level, base, k])
                  for k in ks if (level, base, k) in groups]
        x = [p[0] for p in points]
        m, lo, hi = (np.array([p[1][j] for p in points]) for j in range(3))
        pm = points[0][2][0]["remaining_percent"]
        ls, marker = F.RUN_STYLES[levels.index(level) % len(F.RUN_STYLES)]
        ax.errorbar(x, m, yerr=np.clip([m - lo, hi - m], 0, None), color=F.branch_color(base), ls=ls, marker=marker,
                    ms=4, capsize=2.5, label=f"{_base_label(base)}, P_m={F.pm_text(pm)}%")
    ax.axhline(STABLE, color="0.4", ls=":", lw=1, label="2%: the paper's threshold for stable")
    ax.set_xticks(range(len(ks)))
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("k: the copies start from θ_k (iteration)")
    ax.set_ylabel("error barrier (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7.5)
    F.suptitle(fig, title)
    return fig


def barrier_pm_figure(groups, title: str):
    ks = sorted({k for _, _, k in groups})
    fig, axes = F.new_figure(ncols=len(ks), width=max(6.4, 4.4 * len(ks)), height=4.4, sharey=True)
    for ax, k in zip(axes[0], ks):
        pms: list[float] = []
        for base, color in (("ticket", "C0"), ("reinit", "C1"), ("random_prune", "C2")):
            keys = [key for key in groups if key[2] == k and (key[1] == base or (base == "ticket" and key[1] == "dense"))]
            if not keys:
                continue
            x = np.array([groups[key][0]["remaining_percent"] for key in keys])
            m, lo, hi = (np.array(v) for v in zip(*(_stats([100 * r["barrier"] for r in groups[key]]) for key in keys)))
            pms += list(x)
            ax.errorbar(x, m, yerr=np.clip([m - lo, hi - m], 0, None), color=color, ls=BASE_STYLES[base], marker="o",
                        ms=4, capsize=2.5, label=F.branch_label(base) if base != "ticket" else "IMP ticket (dense at 100%)")
        ax.axhline(STABLE, color="0.4", ls=":", lw=1, label="2% (stable below)")
        F.pm_axis(ax, pms)
        ax.set_title(f"k = {k}", fontsize=9)
        ax.set_ylabel("error barrier (%)")
        ax.legend(fontsize=7.5)
    F.suptitle(fig, title)
    return fig


@section("instability")
def instability_section(ctx: Context) -> list[tuple[str, list]]:
    out = []
    for run, suffix, prefix in ctx.runs_of("instability"):
        groups = measurements(run)
        if not groups:
            ctx.note(f"{run.label}: no finished instability measurement yet")
            continue
        title = common_title([run])
        items = [ctx.save(path_figure(groups, f"Test error between two copies trained from θ_k\n{title}"),
                          f"instability_path{suffix}", prefix + "Test error along the line between the two copies",
                          "Each copy trains from θ_k to the end with its own data order; the line is (1 − α)·a + α·b "
                          "under the level's mask. Mean over replicates.")]
        items.append(ctx.save(barrier_k_figure(groups, f"Error barrier against k\n{title}"),
                              f"instability_barrier_vs_k{suffix}", prefix + "Error barrier against the rewind step k",
                              "Barrier = highest test error on the line − mean of the endpoints'. Bars span the "
                              "replicates."))
        if any(lv > 0 for lv, _, _ in groups):
            items.append(ctx.save(barrier_pm_figure(groups, f"Error barrier against weights remaining\n{title}"),
                                  f"instability_barrier_vs_pm{suffix}",
                                  prefix + "Error barrier against P_m: IMP tickets and controls",
                                  "The paper's claim: the tickets that match the dense network are the stable ones "
                                  "(barrier about 0); random reinit and random pruning are not."))
        out.append((prefix + "Instability (linear mode connectivity)", items))
    return out
