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
from dataclasses import dataclass, field
from pathlib import Path

from lth.report import figures as F
from lth.report import masks as M
from lth.report.html import page
from lth.report.html import table as html_table  # not `table`: the submodule lth.report.table takes that name
from lth.report.load import RunData, common_title, label_runs, load_run
from lth.report.table import columns, markdown, user_keys, write_csv

__all__ = ["Report", "build_report", "load_run", "write_report"]


@dataclass
class Report:
    html: Path
    figures: list[F.FigureFile] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pending: list[tuple] = field(default_factory=list, repr=False)  # (figure, files) to write, see _save


def write_report(runs: list[Path], out: str | Path | None = None, *, curve_levels: list[int] | None = None,
                 weight_level: int = 0, log: Callable[[str], None] = print) -> Path:
    """Write the report of `runs` into `out` (default `<first run>/report/`) and return the HTML path.

    `curve_levels`: levels drawn in test accuracy vs iteration (default: dense, a middle, the sparsest).
    `weight_level`: the level whose ticket's initial vs final weights are drawn (default 0: the dense
    network, split by what the first pruning keeps). Notes on missing pieces go to `log`.
    """
    report = build_report(runs, out, curve_levels=curve_levels, weight_level=weight_level)
    for note in report.notes:
        log(f"note: {note}")
    return report.html


@F.gc_frozen
def build_report(runs: list[Path], out: str | Path | None = None, *, curve_levels: list[int] | None = None,
                 weight_level: int = 0) -> Report:
    paths = [Path(r) for r in runs]
    if not paths:
        raise ValueError("no run folders given")
    loaded = [load_run(p) for p in paths]
    if not any(r.summaries for r in loaded):
        raise ValueError(f"nothing to report: no finished trainings in {', '.join(map(str, paths))} "
                         "(a training is finished once its summary.json is written; run or resume `lth run`)")
    notes = [f"{r.root}: no finished trainings yet; left out" for r in loaded if not r.summaries]
    data = [r for r in loaded if r.summaries]
    label_runs(data)
    multi = len(data) > 1
    for r in data:
        notes += [f"{r.label}: {m}" if multi else m for m in r.missing]

    out = Path(out) if out is not None else paths[0] / "report"
    out.mkdir(parents=True, exist_ok=True)
    if (out / "report.html").exists():  # a previous report here: drop its figures so none go stale
        for old in [*out.glob("fig-*.png"), *out.glob("fig-*.svg")]:
            old.unlink()
    rep = Report(out / "report.html", notes=notes)
    title = common_title(data)
    results = result_figures(data, out, title, curve_levels, rep)
    mask_sections = [s for i, run in enumerate(data)
                     for s in mask_figures(run, out, f"-run{i + 1}" if multi else "", weight_level, rep, multi)]

    write_csv(data, out / "summary.csv")
    (out / "summary.md").write_text(f"# {title}\n\n{markdown(data)}")
    rep.tables = {"csv": out / "summary.csv", "markdown": out / "summary.md"}
    header, cells = columns(data)
    summary = html_table(header, cells, left=1 if multi else 0) + (
        "<p><small>Accuracies in percent; with several replicates: mean [min–max]. ES = early stop (minimum "
        "validation loss). Also in summary.csv (raw values) and summary.md.</small></p>")
    sections = [("Results vs weights remaining", results), ("Summary table", [summary]), *mask_sections]
    F.write_figures(rep.pending)  # all at once, in parallel where that pays; the page embeds the PNGs
    rep.pending.clear()
    rep.html.write_text(page(title, data, rep.notes, sections))
    return rep


def _save(rep: Report, fig, out: Path, name: str, title: str, caption: str) -> F.FigureFile:
    """The figure's files; it is written later, with the others (`F.write_figures`)."""
    name = f"fig-{name}"
    f = F.FigureFile(name, title, caption, out / f"{name}.png", out / f"{name}.svg")
    rep.figures.append(f)
    rep.pending.append((fig, f))
    return f


def result_figures(runs: list[RunData], out: Path, title: str, curve_levels: list[int] | None,
                   rep: Report) -> list[F.FigureFile]:
    rows = [r for run in runs for r in run.rows]
    has = {k for r in rows for k, v in r.items() if isinstance(v, dict)}
    figs, bars = [], "Mean over replicates; bars span min to max."
    if "early_stop_test_acc" in has:
        head = "Test accuracy at the early-stop iteration vs weights remaining"
        fig = F.pm_figure(runs, [("early_stop_test_acc", "test accuracy at early stop (%)", 100)], f"{head}\n{title}")
        figs.append(_save(rep, fig, out, "accuracy_vs_pm", head, f"Frankle & Carbin Fig. 3/4 style. {bars}"))
    else:
        keys = user_keys(rows)[:3]
        if keys:  # a find_tickets run: plot what its train_fn returned
            head = f"{', '.join(keys)} vs weights remaining"
            panels = [(k, k + (" (%)" if "acc" in k else ""), 100 if "acc" in k else 1) for k in keys]
            figs.append(_save(rep, F.pm_figure(runs, panels, f"{head}\n{title}"), out, "metrics_vs_pm", head, bars))
        rep.notes.append("no early-stop fields in the summaries (e.g. a find_tickets run): early-stop figures omitted")
    if "early_stop_step" in has:
        head = "Early-stop iteration (minimum validation loss) vs weights remaining"
        fig = F.pm_figure(runs, [("early_stop_step", "early-stop iteration", 1)], f"{head}\n{title}")
        figs.append(_save(rep, fig, out, "early_stop_vs_pm", head, f"Lower = learns faster. {bars}"))
    panels = [(k, y, 100) for k, y in (("final_train_acc", "train accuracy at end of training (%)"),
                                       ("final_test_acc", "test accuracy at end of training (%)")) if k in has]
    if panels:
        head = "Train and test accuracy at the end of training vs weights remaining"
        figs.append(_save(rep, F.pm_figure(runs, panels, f"{head}\n{title}"), out, "end_accuracy_vs_pm", head,
                          f"The gap between the panels is the generalization gap. {bars}"))
    levels = {str(r.root): F.pick_levels(r, curve_levels) for r in runs}
    fig = F.iteration_figure(runs, levels, f"Test accuracy during training\n{title}")
    if fig is None:
        rep.notes.append("no metrics.csv: curves vs iteration omitted")
    else:
        figs.append(_save(rep, fig, out, "test_accuracy_vs_iteration", "Test accuracy vs training iteration",
                          "Ticket solid, random reinit (same mask) dashed; mean over replicates, band = min-max."))
    return figs


def mask_figures(run: RunData, out: Path, suffix: str, weight_level: int, rep: Report,
                 multi: bool) -> list[tuple[str, list]]:
    prefix = f"{run.label}: " if multi else ""
    w_rep = run.replicates[0] if run.replicates else 0
    stats = M.mask_stats(run, keep={(w_rep, weight_level), (w_rep, weight_level + 1)})
    if stats is None or not stats.levels:
        rep.notes.append(f"{prefix}no level masks found: mask analysis omitted")
        return []
    title = common_title([run])
    items: list = []

    def add(fig, name: str, head: str, caption: str) -> None:
        items.append(_save(rep, fig, out, name + suffix, prefix + head, caption))

    head = "Weights remaining per layer"
    add(M.layer_density_figure(stats, f"{head}\n{title}"), "mask_layer_density", head,
        "From the level masks (mean over replicates). Layer-wise pruning gives each layer its own rate (by default "
        "the output layer half the others'); with global pruning the layers' shares are free to differ.")
    if stats.successive or stats.between:
        head = "Mask overlap (Jaccard) between levels and between replicates"
        add(M.jaccard_figure(stats, f"{head}\n{title}"), "mask_jaccard", head,
            "Iterative masks nest, so successive-level overlap is the ratio of their P_m. Overlap between "
            "replicates above the dotted line means different seeds find similar tickets.")
    items += mask_tables(stats)

    first = stats.layers[0]
    shape = M.input_picture(run, next(iter(stats.first.values())).shape[1]) if stats.first else None
    sparse = [lv for lv in stats.levels if lv > 0 and lv in stats.first]
    if shape is not None and not sparse:
        rep.notes.append(f"{prefix}no pruned level has a mask yet: first-layer pictures omitted")
    elif shape is None:
        rep.notes.append(f"{prefix}first prunable layer {first} is not a fully connected input layer "
                         f"(shape {_shape(run, stats)}): input-connectivity pictures omitted")
    else:
        last = sparse[-1]
        head = f"First-layer masks of single units at P_m={F.pm_text(stats.pm[last])}%"
        add(M.units_figure(stats.first[last], shape,
                           f"{head} (level {last}, replicate {stats.first_rep}), dark = connection kept\n{title}",
                           first), "first_layer_units", head,
            f"Each picture is one {first} unit's incoming connections laid out like the input; the number is how "
            "many it keeps.")
        head = "Surviving first-layer connections per input"
        add(M.counts_figure(stats, M.spread(sparse, 4), shape, f"{head} (replicate {stats.first_rep})\n{title}"),
            "first_layer_inputs", head, "Inputs with no connection left cannot influence the network at all.")

    got = M.weight_arrays(run, stats, w_rep, weight_level)
    if isinstance(got, str):
        rep.notes.append(prefix + got)
    else:
        init, final, alive, keep = got
        nxt = f"kept/pruned by the pruning to level {weight_level + 1} (P_m={F.pm_text(stats.pm[weight_level + 1])}%)" \
            if keep is not None else "no next level yet"
        head = f"Initial vs final weight magnitude, level {weight_level} ticket"
        add(F.weights_figure(init, final, alive, keep, f"{head} (replicate {w_rep}); {nxt}\n{title}"),
            "weights_init_vs_final", head,
            "Magnitude pruning keeps the largest final weights of each layer; the scatter shows how that relates "
            "to their initial magnitude. Subsampled for readability.")
    return [(prefix + "Masks and weights", items)]


def _shape(run: RunData, stats: M.MaskStats) -> tuple[int, ...]:
    import json

    meta = run.mask_path(stats.first_rep, stats.levels[0]).with_suffix(".json")
    try:
        return tuple(json.loads(meta.read_text())["layers"][stats.layers[0]]["shape"])
    except (OSError, KeyError, ValueError):
        return ()


def mask_tables(stats: M.MaskStats) -> list[str]:
    def cell(vals: list) -> str:
        if not vals:
            return "-"
        m = sum(vals) / len(vals)
        return f"{m:.3f}" if len(vals) == 1 else f"{m:.3f} [{min(vals):.3f}–{max(vals):.3f}]"

    header = ["level", "P_m %", "J(prev level)", "J(between replicates)", "J(random masks)"]
    has_dead = bool(stats.dead)
    if has_dead:
        header.append(f"unconnected inputs of {stats.layers[0]} (per replicate)")
    rows = []
    for lv in stats.levels:
        row = [str(lv), f"{stats.pm[lv]:.2f}", cell(stats.successive.get(lv, [])), cell(stats.between.get(lv, [])),
               f"{stats.random_jaccard(lv):.3f}" if lv > 0 else "-"]
        if has_dead:
            row.append(" ".join(map(str, stats.dead.get(lv, []))) or "-")
        rows.append(row)
    return ["<p>Mask overlap (Jaccard, mean [min–max]) and inputs left without any connection:</p>"
            + html_table(header, rows)]
