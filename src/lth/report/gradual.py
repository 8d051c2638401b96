"""The gradual section: gradual magnitude pruning (Zhu & Gupta) against IMP's tickets at the same final
sparsity, at equal steps and at equal total compute, and the iterations each spends."""

from __future__ import annotations

from lth.report import figures as F
from lth.report.load import common_title
from lth.report.sections import Context, section

F.BRANCH_LABELS.update({"gradual": "gradual pruning, one IMP training's steps",
                        "gradual_total": "gradual pruning, IMP's total steps", "imp_ticket": "IMP ticket"})
F.BRANCH_COLORS.update({"gradual": "C1", "gradual_total": "C3", "imp_ticket": "C0"})


def iterations_figure(run, title: str):
    fig, axes = F.new_figure(width=6.4, height=4.2)
    ax = axes[0, 0]
    pms: list[float] = []
    for branch, key in (("imp_ticket", "imp_total_iterations"), ("gradual", "budget_iterations"),
                        ("gradual_total", "budget_iterations")):
        rows = [r for r in run.rows if r["branch"] == branch and key in r]
        if rows:
            x = [r["remaining_percent"] for r in rows]
            pms += x
            label = "IMP: L + 1 trainings in all" if branch == "imp_ticket" else F.branch_label(branch)
            ax.plot(x, [r[key]["mean"] for r in rows], color=F.branch_color(branch), marker="o",
                    ls="--" if branch == "gradual_total" else "-", label=label)
    F.pm_axis(ax, pms)
    ax.set_yscale("log")
    ax.set_ylabel("training iterations")
    ax.legend(fontsize=8)
    F.suptitle(fig, title)
    return fig


@section("gradual")
def gradual_section(ctx: Context) -> list[tuple[str, list]]:
    out = []
    for run, suffix, prefix in ctx.runs_of("gradual"):
        if not any(r["branch"] in ("gradual", "gradual_total") for r in run.rows):
            ctx.note(f"{run.label}: no finished gradual training yet")
            continue
        title = common_title([run])
        items = [
            ctx.save(F.pm_figure([run], [("final_test_acc", "test accuracy at end of training (%)", 100),
                                         ("early_stop_test_acc", "test accuracy at early stop (%)", 100)],
                                 f"Gradual magnitude pruning against IMP\n{title}"),
                     f"gradual_accuracy_vs_pm{suffix}", prefix + "Gradual pruning against IMP at equal sparsity",
                     "Each gradual run reaches exactly the per-layer counts of IMP's level. Bars span the replicates."),
            ctx.save(iterations_figure(run, f"Training iterations spent\n{title}"), f"gradual_iterations{suffix}",
                     prefix + "Training iterations spent to reach each sparsity",
                     "IMP trains L + 1 times to reach level L (from step k after the dense training when it "
                     "rewinds); gradual pruning trains once."),
        ]
        out.append((prefix + "Gradual magnitude pruning", items))
    return out
