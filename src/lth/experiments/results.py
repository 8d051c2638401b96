"""Aggregate finished trainings into per-level, per-branch rows (mean, min, max over replicates) and print them.

These rows are what `lth run` prints per level, what `lth show` reprints, and what `lth show --json` emits.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from lth.names import RANDOM_PRUNE, REINIT, TICKET, display_branch, is_reinit
from lth.records import Summary

# (summary key, column title, scale, format): accuracies are shown in percent.
COLUMNS = (
    ("early_stop_step", "ES iter", 1, "{:.0f}"),
    ("early_stop_val_acc", "val@ES", 100, "{:.1f}"),
    ("early_stop_test_acc", "test@ES", 100, "{:.1f}"),
    ("final_train_acc", "train@end", 100, "{:.1f}"),
    ("final_test_acc", "test@end", 100, "{:.1f}"),
)
LM_COLUMNS = (
    ("early_stop_step", "ES iter", 1, "{:.0f}"),
    ("early_stop_val_bpc", "val bpc@ES", 1, "{:.3f}"),
    ("early_stop_test_bpc", "test bpc@ES", 1, "{:.3f}"),
    ("final_train_bpc", "train bpc@end", 1, "{:.3f}"),
    ("final_test_bpc", "test bpc@end", 1, "{:.3f}"),
)
"""Language models: bits per character (lower is better) where classifiers show accuracy."""
RL_COLUMNS = (
    ("solved_step", "solved at", 1, "{:.0f}"),
    ("final_return", "return@end", 1, "{:.1f}"),
    ("best_return", "best return", 1, "{:.1f}"),
    ("mean_return", "mean return", 1, "{:.1f}"),
)
"""Agents (lth.rl): the mean evaluation return at the end, the best and the mean over the evaluations during
training; "solved at" is the first step whose evaluation return reached the environment's threshold ("-":
never)."""
METRIC_SETS = (("final_test_bpc", LM_COLUMNS), ("final_return", RL_COLUMNS))
"""A run's summaries say which metrics it has: the first set whose marker key they hold, else COLUMNS. So a
run folder describes itself, and a classifier's tables stay as they were."""
STEP_KEYS = ("early_stop_step", "solved_step")
"""Step counts: shown without a ± spread."""


def columns_for(rows: list[dict[str, Any]]) -> tuple:
    """The columns of the metric set the rows (summaries or aggregate rows) belong to."""
    for marker, columns in METRIC_SETS:
        if any(marker in r for r in rows):
            return columns
    return COLUMNS


BRANCH_ORDER = {TICKET: 0, REINIT: 1, RANDOM_PRUNE: 9}


def branch_key(branch: str) -> tuple[int, str]:
    """Sort key of branches: the ticket, its reinit draws, other controls, random pruning last."""
    return (BRANCH_ORDER.get(branch, 5 if is_reinit(branch) else 8), branch)


def aggregate(summaries: list[Summary | dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (level, branch): replicates, P_m and {key: {mean, min, max}} of every numeric field."""
    groups: dict[tuple[int, str], list[Summary]] = defaultdict(list)
    for s in summaries:
        s = s if isinstance(s, Summary) else Summary.from_dict(s)
        groups[s.level, s.branch].append(s)
    rows = []
    for (level, branch), items in sorted(groups.items(), key=lambda kv: (kv[0][0], branch_key(kv[0][1]))):
        row: dict[str, Any] = {"level": level, "branch": display_branch(level, branch),
                               "replicates": sorted(s.replicate for s in items),
                               "remaining_percent": items[0].remaining_percent}
        numbers = [s.numbers() for s in items]
        for k in numbers[0]:
            vals = [float(n[k]) for n in numbers if k in n]
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                row[k] = {"mean": sum(vals) / len(vals), "min": min(vals), "max": max(vals)}
        rows.append(row)
    return rows


def level_rows(summaries: list[Summary | dict[str, Any]], level: int) -> list[dict[str, Any]]:
    return [r for r in aggregate(summaries) if r["level"] == level]


def _cell(row: dict[str, Any], key: str, scale: float, fmt: str) -> str:
    stat = row.get(key)
    if stat is None:
        return "-"
    text = fmt.format(stat["mean"] * scale)
    if len(row["replicates"]) > 1 and key not in STEP_KEYS:
        text += " ±" + fmt.format((stat["max"] - stat["min"]) * scale / 2)
    return text


def format_level(rows: list[dict[str, Any]], header: bool = False, columns: tuple | None = None,
                 branch_width: int = 13) -> str:
    """Fixed-width lines for one level (with replicates: mean ± half the min-max range); `branch_width`: the
    branch column's width, for experiments with longer branch names."""
    columns = columns or columns_for(rows)
    widths = [5, 7, branch_width] + [max(9, len(c[1]) + 1) for c in columns]
    wide = any(len(r["replicates"]) > 1 for r in rows)
    if wide:  # room for " ±" and the spread
        widths = widths[:3] + [w if c[0] in STEP_KEYS else w + 2 + len(c[3].format(0)) for w, c in
                               zip(widths[3:], columns)]
    lines = []
    if header:
        titles = ["level", "P_m %", "branch"] + [c[1] for c in columns]
        lines.append(" ".join(t.rjust(w) if i != 2 else t.ljust(w) for i, (t, w) in enumerate(zip(titles, widths))))
    for i, r in enumerate(rows):
        cells = [str(r["level"]) if i == 0 else "", f"{r['remaining_percent']:.2f}" if i == 0 else "", r["branch"]]
        cells += [_cell(r, k, s, f) for k, _, s, f in columns]
        lines.append(" ".join(c.rjust(w) if j != 2 else c.ljust(w) for j, (c, w) in enumerate(zip(cells, widths))))
    return "\n".join(lines)


def format_table(summaries: list[Summary | dict[str, Any]]) -> str:
    rows = aggregate(summaries)
    levels, columns = sorted({r["level"] for r in rows}), columns_for(rows)
    width = max([13] + [len(r["branch"]) + 1 for r in rows])
    return "\n".join(format_level([r for r in rows if r["level"] == lv], header=i == 0, columns=columns,
                                   branch_width=width)
                     for i, lv in enumerate(levels))
