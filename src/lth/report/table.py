"""The summary table: aggregate()'s rows flattened to CSV (raw values, mean/min/max) and to Markdown (readable,
accuracies in percent, `mean [min-max]` over replicates)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from lth.experiments.results import (
    COLUMNS,
    LM_COLUMNS,
    METRIC_SETS,
    RL_COLUMNS,
    columns_for,
)
from lth.fileio import write_text
from lth.report.load import RunData

# Summary fields lth's trainer writes besides COLUMNS: kept in the CSV, left out of the readable table.
BOOKKEEPING = ("start_step", "iterations", "early_stop_val_loss", "final_val_acc", "final_test_loss",
               "final_train_loss", "seconds", "early_stop_test_loss")
LTH_KEYS = {c[0] for c in COLUMNS} | {c[0] for _, cols in METRIC_SETS for c in cols} | set(BOOKKEEPING)
"""Every field lth itself writes: a language model's accuracies stay in the CSV, out of its readable table."""
NOTES = {
    COLUMNS: "Accuracies in percent; with several replicates: mean [min–max]. ES = early stop (minimum "
                 "validation loss).",
    LM_COLUMNS: "Bits per character (lower is better); with several replicates: mean [min–max]. ES = early "
                    "stop (minimum validation loss).",
    RL_COLUMNS: "Mean evaluation return of the greedy policy over fixed episodes; solved at = the first step "
                    "whose return reached the threshold (- = never); with several replicates: mean [min–max].",
}


def stat_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Every {mean,min,max} field in the rows: COLUMNS' order first, then a user's own keys as found."""
    found: list[str] = []
    for r in rows:
        found += [k for k, v in r.items() if isinstance(v, dict) and k not in found]
    main = [c[0] for c in columns_for(rows) if c[0] in found]
    return main + [k for k in found if k not in main]


def user_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Keys that are neither lth's columns nor its bookkeeping: what a find_tickets train_fn returned."""
    return [k for k in stat_keys(rows) if k not in LTH_KEYS]


def flat_rows(runs: list[RunData]) -> tuple[list[str], list[dict[str, Any]]]:
    keys = stat_keys([r for run in runs for r in run.rows])
    header = ["run", "label", "level", "branch", "remaining_percent", "n_replicates", "replicates"]
    header += [f"{k}_{s}" for k in keys for s in ("mean", "min", "max")]
    out = []
    for run in runs:
        for r in run.rows:
            row = {"run": run.name, "label": run.label, "level": r["level"], "branch": r["branch"],
                   "remaining_percent": r["remaining_percent"], "n_replicates": len(r["replicates"]),
                   "replicates": " ".join(map(str, r["replicates"]))}
            for k in keys:
                for s in ("mean", "min", "max"):
                    row[f"{k}_{s}"] = r[k][s] if k in r else ""
            out.append(row)
    return header, out


def write_csv(runs: list[RunData], path: Path) -> None:
    header, rows = flat_rows(runs)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=header)
    w.writeheader()
    w.writerows(rows)
    write_text(path, buf.getvalue())


def _fmt(key: str, stat: dict[str, float] | None, n: int, cols: tuple = COLUMNS) -> str:
    if stat is None:
        return "-"
    spec = {c[0]: (c[2], c[3]) for c in cols}
    if key in spec:
        scale, f = spec[key]
    elif "acc" in key and 0 <= stat["min"] and stat["max"] <= 1:
        scale, f = 100, "{:.1f}"
    else:
        scale, f = 1, "{:.4g}"
    text = f.format(stat["mean"] * scale)
    if n > 1:
        text += f" [{f.format(stat['min'] * scale)}–{f.format(stat['max'] * scale)}]"
    return text


def columns(runs: list[RunData]) -> tuple[list[str], list[list[str]]]:
    """Readable header and cells, shared by the Markdown and the HTML table."""
    rows = [r for run in runs for r in run.rows]
    cols = columns_for(rows)
    titles = {c[0]: c[1] + (" %" if c[2] == 100 else "") for c in cols}
    keys = [c[0] for c in cols if c[0] in stat_keys(rows)] + user_keys(rows)
    multi = len(runs) > 1
    header = (["run"] if multi else []) + ["level", "P_m %", "branch", "n"] + [titles.get(k, k) for k in keys]
    cells = []
    for run in runs:
        for r in run.rows:
            n = len(r["replicates"])
            cells.append(([run.label] if multi else []) + [str(r["level"]), f"{r['remaining_percent']:.2f}",
                                                           r["branch"], str(n)]
                         + [_fmt(k, r.get(k), n, cols) for k in keys])
    return header, cells


def markdown(runs: list[RunData]) -> str:
    header, cells = columns(runs)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    return "\n".join(lines) + "\n\n" + table_note(runs) + "\n"


def table_note(runs: list[RunData]) -> str:
    """What the readable table's numbers are, for the metric set of the runs."""
    return NOTES[columns_for([r for run in runs for r in run.rows])]
