"""The report's sections, by name. An experiment names the sections that show it (Experiment.report_sections);
a report of several runs shows every section any of them names, each drawing the runs it applies to.

A section is a function of a `Context` that returns (heading, items) pairs: items are figures (saved with
`ctx.save`) or HTML snippets. Adding one is a function here (or in a module imported below) registered with
`@section("name")`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lth.experiments.results import LM_COLUMNS, RL_COLUMNS, columns_for
from lth.report import figures as F
from lth.report import masks as M
from lth.report.html import table as html_table
from lth.report.load import RunData, common_title
from lth.report.table import user_keys


@dataclass
class Report:
    html: Path
    figures: list[F.FigureFile] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pending: list[tuple] = field(default_factory=list, repr=False)  # (figure, files) to write, see _save


@dataclass
class Context:
    runs: list[RunData]
    out: Path
    title: str
    report: Report
    curve_levels: list[int] | None = None
    weight_level: int = 0

    @property
    def multi(self) -> bool:
        return len(self.runs) > 1

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    def save(self, fig, name: str, title: str, caption: str) -> F.FigureFile:
        return _save(self.report, fig, self.out, name, title, caption)

    def runs_of(self, experiment: str) -> list[tuple[RunData, str, str]]:
        """(run, figure-name suffix, heading prefix) of each run of `experiment`, for sections drawn per run."""
        return [(run, f"-run{i + 1}" if self.multi else "", f"{run.label}: " if self.multi else "")
                for i, run in enumerate(self.runs) if run.experiment == experiment]


Section = Callable[[Context], list[tuple[str, list]]]
SECTIONS: dict[str, Section] = {}


def section(name: str) -> Callable[[Section], Section]:
    def register(fn: Section) -> Section:
        SECTIONS[name] = fn
        return fn

    return register


def applicable(ctx: Context, name: str) -> Context:
    """The context with only the runs whose experiment names section `name` (a run of an unknown experiment
    gets the IMP sections): an IMP figure does not draw a prune-at-init run's branches."""
    from lth.experiments import EXPERIMENTS

    default = ("results", "curves", "masks")

    def names(run: RunData) -> tuple[str, ...]:
        experiment = EXPERIMENTS.get(run.experiment)
        return experiment.report_sections if experiment is not None else default

    runs = [r for r in ctx.runs if name in names(r)]
    return Context(runs, ctx.out, common_title(runs) if runs else ctx.title, ctx.report, ctx.curve_levels,
                   ctx.weight_level) if len(runs) != len(ctx.runs) else ctx


def _save(rep: Report, fig, out: Path, name: str, title: str, caption: str) -> F.FigureFile:
    """The figure's files; it is written later, with the others (`F.write_figures`)."""
    name = f"fig-{name}"
    f = F.FigureFile(name, title, caption, out / f"{name}.png", out / f"{name}.svg")
    rep.figures.append(f)
    rep.pending.append((fig, f))
    return f


@section("results")
def results_section(ctx: Context) -> list[tuple[str, list]]:
    ctx = applicable(ctx, "results")
    if not ctx.runs:
        return []
    figs = result_figures(ctx.runs, ctx.out, ctx.title, ctx.report)
    return [("Results vs weights remaining", figs)] if figs else []


CURVES = "Ticket solid, random reinit (same mask) dashed; mean over replicates, band = min-max."
BARS = "Mean over replicates; bars span min to max."


def metric_set(runs: list[RunData]) -> tuple:
    """The runs' metric set (lth.experiments.results): classifier accuracy, language-model bits per character,
    or agent returns."""
    return columns_for([r for run in runs for r in run.rows])


@section("curves")
def curves_section(ctx: Context) -> list[tuple[str, list]]:
    ctx = applicable(ctx, "curves")
    if not ctx.runs:
        return []
    levels = {str(r.root): F.pick_levels(r, ctx.curve_levels) for r in ctx.runs}
    kind = metric_set(ctx.runs)
    if kind is LM_COLUMNS:
        what, name, options = "Test bits per character", "test_bpc_vs_iteration", {
            "key": "test_loss", "scale": 1 / math.log(2), "ylabel": "test bits per character"}
    elif kind is RL_COLUMNS:
        what, name, options = "Evaluation return", "return_vs_step", {
            "key": "eval_return", "scale": 1, "ylabel": "mean evaluation return", "xlabel": "environment step"}
    else:
        what, name, options = "Test accuracy", "test_accuracy_vs_iteration", {}
    fig = F.iteration_figure(ctx.runs, levels, f"{what} during training\n{ctx.title}", **options)
    if fig is None:
        ctx.note("no metrics.csv: curves vs iteration omitted")
        return []
    unit = "environment step" if kind is RL_COLUMNS else "training iteration"
    return [(f"{what} during training", [ctx.save(fig, name, f"{what} vs {unit}", CURVES)])]


@section("masks")
def masks_section(ctx: Context) -> list[tuple[str, list]]:
    ctx = applicable(ctx, "masks")
    if not ctx.runs:
        return []
    return [s for i, run in enumerate(ctx.runs)
            for s in mask_figures(run, ctx.out, f"-run{i + 1}" if ctx.multi else "", ctx.weight_level, ctx.report,
                                  ctx.multi)]


def result_figures(runs: list[RunData], out: Path, title: str, rep: Report) -> list[F.FigureFile]:
    kind = metric_set(runs)
    if kind is LM_COLUMNS:
        return lm_figures(runs, out, title, rep)
    if kind is RL_COLUMNS:
        return rl_figures(runs, out, title, rep)
    rows = [r for run in runs for r in run.rows]
    has = {k for r in rows for k, v in r.items() if isinstance(v, dict)}
    figs, bars = [], BARS
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
        figs.append(_early_stop(runs, out, title, rep))
    panels = [(k, y, 100) for k, y in (("final_train_acc", "train accuracy at end of training (%)"),
                                       ("final_test_acc", "test accuracy at end of training (%)")) if k in has]
    if panels:
        head = "Train and test accuracy at the end of training vs weights remaining"
        figs.append(_save(rep, F.pm_figure(runs, panels, f"{head}\n{title}"), out, "end_accuracy_vs_pm", head,
                          f"The gap between the panels is the generalization gap. {bars}"))
    return figs


def _early_stop(runs: list[RunData], out: Path, title: str, rep: Report) -> F.FigureFile:
    head = "Early-stop iteration (minimum validation loss) vs weights remaining"
    fig = F.pm_figure(runs, [("early_stop_step", "early-stop iteration", 1)], f"{head}\n{title}")
    return _save(rep, fig, out, "early_stop_vs_pm", head, f"Lower = learns faster. {BARS}")


def lm_figures(runs: list[RunData], out: Path, title: str, rep: Report) -> list[F.FigureFile]:
    """Language models: bits per character (lower is better) where classifiers show accuracy."""
    head = "Test bits per character at the early-stop iteration vs weights remaining"
    figs = [_save(rep, F.pm_figure(runs, [("early_stop_test_bpc", "test bits per character at early stop", 1)],
                                   f"{head}\n{title}"), out, "bpc_vs_pm", head, f"Lower is better. {BARS}"),
            _early_stop(runs, out, title, rep)]
    head = "Train and test bits per character at the end of training vs weights remaining"
    panels = [("final_train_bpc", "train bits per character at end of training", 1),
              ("final_test_bpc", "test bits per character at end of training", 1)]
    figs.append(_save(rep, F.pm_figure(runs, panels, f"{head}\n{title}"), out, "end_bpc_vs_pm", head,
                      f"The gap between the panels is the generalization gap. {BARS}"))
    return figs


def rl_figures(runs: list[RunData], out: Path, title: str, rep: Report) -> list[F.FigureFile]:
    """Agents: evaluation returns, and the first step at which the environment counted as solved."""
    head = "Evaluation return vs weights remaining"
    panels = [("final_return", "mean evaluation return at the end", 1),
              ("mean_return", "mean over the evaluations during training", 1)]
    figs = [_save(rep, F.pm_figure(runs, panels, f"{head}\n{title}"), out, "return_vs_pm", head,
                  f"Greedy policy, the same evaluation episodes for every training. {BARS}")]
    head = "First step at which the evaluation return reached the solved threshold vs weights remaining"
    figs.append(_save(rep, F.pm_figure(runs, [("solved_step", "environment steps to solve", 1)], f"{head}\n{title}"),
                      out, "solved_step_vs_pm", head,
                      f"Lower = learns faster; a missing point never reached the threshold. {BARS}"))
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


# Sections of the experiments that study IMP's tickets: each module registers its section on import.
from lth.report import early_bird, gradual, instability, transfer  # noqa: E402,F401
# Sections of other experiments, registered on import (each module imports this one's `section`).
from lth.report import beyond  # noqa: E402,F401
