"""`lth report`: figures (PNG and SVG), a summary table (CSV and Markdown) and one self-contained HTML page for
one or more run folders.

    from lth.report import write_report
    html = write_report([Path("runs/mnist1d_mlp-imp-1a2b3c4d")])        # -> runs/.../report/report.html

A run still in progress, or partly failed, is reported with what it has; what is missing is listed in the
page and printed (`log`). Several runs share the result figures, each curve labelled by how its config
differs from the others (e.g. "lottery.one_shot=True").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lth.errors import ConfigError, RunFolderError
from lth.experiments import EXPERIMENTS
from lth.fileio import make_dir, refuse_link, write_text
from lth.report import figures as F
from lth.report.html import page
from lth.report.html import (
    table as html_table,  # not `table`: the submodule lth.report.table takes that name
)
from lth.report.load import RunData, common_title, label_runs, load_run
from lth.report.sections import SECTIONS, Context, Report, section
from lth.report.table import columns, markdown, table_note, write_csv

__all__ = ["Report", "SECTIONS", "build_report", "load_run", "section", "write_report"]

DEFAULT_SECTIONS = ("results", "curves", "masks")


def sections_of(runs: list[RunData]) -> list[str]:
    """Every section any run's experiment names, in first-seen order."""
    out: list[str] = []
    for run in runs:
        experiment = EXPERIMENTS.get(run.experiment)
        for name in experiment.report_sections if experiment is not None else DEFAULT_SECTIONS:
            if name not in out:
                out.append(name)
    return out


def write_report(runs: list[Path], out: str | Path | None = None, *, curve_levels: list[int] | None = None,
                 weight_level: int = 0, log: Callable[[str], None] = print, processes: int | None = None) -> Path:
    """Write the report of `runs` into `out` (default `<first run>/report/`) and return the HTML path.

    `curve_levels`: levels drawn in test accuracy vs iteration (default: dense, a middle, the sparsest).
    `weight_level`: the level whose ticket's initial vs final weights are drawn (default 0: the dense
    network, split by what the first pruning keeps). Notes on missing pieces go to `log`. `processes`: how many
    processes write the figures (default: one per CPU, on Linux; 1: this process only).
    """
    report = build_report(runs, out, curve_levels=curve_levels, weight_level=weight_level, processes=processes)
    for note in report.notes:
        log(f"note: {note}")
    return report.html


@F.gc_frozen
def build_report(runs: list[Path], out: str | Path | None = None, *, curve_levels: list[int] | None = None,
                 weight_level: int = 0, processes: int | None = None) -> Report:
    paths = [Path(r) for r in runs]
    if not paths:
        raise ConfigError("no run folders given: lth report RUN [RUN ...]")
    loaded = [load_run(p) for p in paths]
    if not any(r.summaries for r in loaded):
        raise RunFolderError(f"nothing to report: no finished trainings in {', '.join(map(str, paths))} "
                         "(a training is finished once its summary.json is written; run or resume `lth run`)")
    notes = [f"{r.root}: no finished trainings yet; left out" for r in loaded if not r.summaries]
    data = [r for r in loaded if r.summaries]
    label_runs(data)
    multi = len(data) > 1
    for r in data:
        notes += [f"{r.label}: {m}" if multi else m for m in r.missing]

    out = Path(out) if out is not None else paths[0] / "report"
    if out == paths[0] / "report":  # inside a run folder, which may be shared: never through a planted link
        refuse_link(out)
    make_dir(out)
    for name in ("report.html", "summary.csv", "summary.md"):  # refused when written too; this is before the work
        refuse_link(out / name)
    if (out / "report.html").exists():  # a previous report here: drop its figures so none go stale
        for old in [*out.glob("fig-*.png"), *out.glob("fig-*.svg")]:
            old.unlink()
    rep = Report(out / "report.html", notes=notes)
    title = common_title(data)
    ctx = Context(data, out, title, rep, curve_levels, weight_level)
    drawn = [(name, SECTIONS[name](ctx)) for name in sections_of(data) if name in SECTIONS]

    write_csv(data, out / "summary.csv")
    write_text(out / "summary.md", f"# {title}\n\n{markdown(data)}")
    rep.tables = {"csv": out / "summary.csv", "markdown": out / "summary.md"}
    header, cells = columns(data)
    summary = html_table(header, cells, left=1 if multi else 0) + (
        f"<p><small>{table_note(data)} Also in summary.csv (raw values) and summary.md.</small></p>")
    # The results first, then the table, then everything else.
    first = [s for name, parts in drawn if name == "results" for s in parts]
    rest = [s for name, parts in drawn if name != "results" for s in parts]
    sections = [*first, ("Summary table", [summary]), *rest]
    F.write_figures(rep.pending, processes)  # all at once, in parallel where that pays; the page embeds the PNGs
    rep.pending.clear()
    write_text(rep.html, page(title, data, rep.notes, sections))
    return rep


