"""The transfer section: accuracy against P_m for the transferred ticket and its three controls (Morcos et
al. 2019), with the dense network on the target as the reference line."""

from __future__ import annotations

from lth.report import figures as F
from lth.report.load import common_title
from lth.report.sections import Context, section

F.BRANCH_LABELS.update({"transfer": "transferred ticket (source mask and weights)",
                        "target_ticket": "ticket found on the target (IMP)"})
F.BRANCH_COLORS.update({"transfer": "C0", "target_ticket": "C4"})


@section("transfer")
def transfer_section(ctx: Context) -> list[tuple[str, list]]:
    runs = [r for r in ctx.runs if r.experiment == "transfer"]
    if not any(row["branch"] == "transfer" for r in runs for row in r.rows):
        if runs:
            ctx.note("no finished transferred ticket yet: transfer figures omitted")
        return []
    sources = sorted({r.config.get("transfer", {}).get("source", "?") for r in runs})
    title = f"{common_title(runs)} · tickets from {', '.join(sources)}"
    fig = F.pm_figure(runs, [("early_stop_test_acc", "test accuracy at early stop (%)", 100),
                             ("final_test_acc", "test accuracy at end of training (%)", 100)],
                      f"Transferred tickets on the target\n{title}")
    item = ctx.save(fig, "transfer_accuracy_vs_pm", "Transferred ticket against its controls on the target",
                    "Transferred ticket: the source's mask and θ_0 (θ_k when it rewinds). Ticket found on the target: "
                    "IMP run on the target itself. Random pruning: a random mask with the same per-layer counts on "
                    "the source's weights. Random reinit: the transferred mask on a fresh init. Mean over replicates; "
                    "bars span min to max.")
    return [("Transfer", [item])]
