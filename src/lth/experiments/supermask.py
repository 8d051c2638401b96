"""Strong tickets (`lth supermask`): is there a subnetwork that works with no weight training at all?

Per replicate, θ_0 is drawn once (by --model.init; edge-popup's paper uses signed_kaiming_constant). Then:
- level 0, `dense`: the network trained as usual (its weights, not a mask), the reference to beat;
- level 0, `untrained`: θ_0 evaluated as it is, the floor;
- level i (the i-th --supermask.k), one training per method: `edge_popup` (exactly round(k·n) weights of
  every layer) or `bernoulli` (Zhou et al.; k is the initial keep probability), scores trained, θ_0 frozen;
- level i, `large_final`: the mask keeping the round(k·n) largest weights of each layer of the trained dense
  network, applied to the untrained θ_0 (original signs) and evaluated without training: Zhou et al.'s
  large_final supermask: one-shot magnitude pruning of the trained network, the same k in every layer (an
  IMP run's level mask is iterative, with the output layer at half the rate).

Each training is recorded like any other (metrics, early stop, summary). A learned mask is kept in its unit
folder (mask.safetensors) with the scores it came from (scores.safetensors); P_m of a learned mask is the
fraction it keeps (Bernoulli: the expected fraction Σσ(m)/n at the end).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from lth.config import SupermaskConfig, SupermaskSection
from lth.errors import ConfigError
from lth.experiments.base import Experiment, ShipsWithoutData, draw_init, init_state, register
from lth.names import DENSE
from lth.seeds import seed_for

UNTRAINED = "untrained"
LARGE_FINAL = "large_final"


def branch_names(section: SupermaskSection, level: int) -> list[str]:
    if level == 0:
        return [DENSE, UNTRAINED]
    if level > len(section.k):
        return []
    return [*section.methods, LARGE_FINAL]


def check(cfg: SupermaskConfig, data) -> None:
    """Every layer must keep at least one weight at every k."""
    from lth.experiments.imp import ModelBuilder
    from lth.models import prunable_names
    from lth.train.supermask import kept_count

    model = ModelBuilder.for_data(cfg.model, data)(cfg.seed)
    params = dict(model.named_parameters())
    for k in cfg.supermask.k:
        for n in prunable_names(model):
            if kept_count(k, params[n].numel()) == 0:
                raise ConfigError(f"--supermask.k {k} keeps round({k}·{params[n].numel()}) = 0 weights of layer {n}: "
                                  f"that network could not pass a signal; use k >= {0.5 / params[n].numel():.2g}")


class Supermask(ShipsWithoutData):
    def __init__(self, cfg: SupermaskConfig, store, build, data):
        self.cfg, self.store, self.build, self._data, self._has_data = cfg, store, build, data, data is not None
        self.ks = cfg.supermask.k

    def seed(self, replicate: int) -> int:
        return seed_for("init", self.cfg.seed, replicate)

    @staticmethod
    def unit(replicate: int, level: int, branch: str):
        from lth.store import Unit

        return Unit(replicate, level, branch)

    def k(self, level: int) -> float:
        return self.ks[level - 1]

    # -- weights -----------------------------------------------------------------------------------
    def init(self, replicate: int) -> None:
        draw_init(self.store, self.build, self.seed(replicate), replicate)

    def _init_state(self, replicate: int) -> dict:
        return init_state(self.store, replicate)

    def _start(self, replicate: int, method: str) -> dict:
        """θ_0, or for the Bernoulli supermask with --supermask.signed_constant, sign(θ_0)·std(layer)."""
        state = self._init_state(replicate)
        if method != "bernoulli" or not self.cfg.supermask.signed_constant:
            return state
        from lth.models import prunable_names

        names = prunable_names(self.build(self.seed(replicate)))
        return {k: (v.sign() * v.std(unbiased=False)) if k in names else v for k, v in state.items()}

    # -- trainings ---------------------------------------------------------------------------------
    def job(self, replicate: int, level: int, branch: str, *_deps):
        from functools import partial

        from lth.executors import TrainJob
        from lth.train.supermask import STEPPERS

        unit = self.unit(replicate, level, branch)
        if self.store.is_done(unit):
            return None
        stepper = None
        if level > 0:
            stepper = partial(STEPPERS[branch], k=self.k(level),
                              seed=seed_for("scores", self.cfg.seed, replicate, level, branch))
        train = replace(self.cfg.train, data_seed=seed_for("data", self.cfg.train.data_seed, replicate))
        if level == 0 and self.cfg.supermask.dense_lr is not None:
            train = replace(train, lr=self.cfg.supermask.dense_lr)
        return TrainJob(key=unit.key, build=partial(self.build, self.seed(replicate)), train=train,
                        start=self._start(replicate, branch), data=self.cfg.data, augment=self.cfg.data.augment,
                        resume_path=self.store.resume_path(unit), checkpoint_seconds=self.cfg.checkpoint_seconds,
                        stepper=stepper)

    def record(self, replicate: int, level: int, branch: str, result):
        from lth.fileio import save_weights
        from lth.prune import Mask
        from lth.records import Summary
        from lth.train.supermask import expected_density, learned_mask, split_state

        unit = self.unit(replicate, level, branch)
        if result is None:
            return self.store.summary(unit)
        weights, scores = split_state(result.final)
        pm, extra = 100.0, {}
        if level == 0:
            save_weights(weights, self.store.final_path(unit))  # large_final's source
        else:
            save_weights(scores, self.store.unit_dir(unit) / "scores.safetensors")
            Mask(learned_mask(branch, scores, self.k(level))).save(self.store.unit_mask_path(unit))
            pm = 100 * expected_density(branch, scores, self.k(level))
            extra = {"k": self.k(level)}
        summary = Summary.from_dict({"replicate": replicate, "level": level, "branch": branch,
                                     "remaining_percent": pm, "start_step": 0, **result.summary, **extra,
                                     "seconds": round(result.seconds, 3)})
        self.store.write_result(unit, result.metrics, summary)
        return summary

    # -- untrained networks ------------------------------------------------------------------------
    def untrained(self, replicate: int, level: int, branch: str, *_deps):
        """Evaluate θ_0 (level 0) or θ_0 under the trained dense network's large_final mask (level i)."""
        import time

        from lth.fileio import load_weights
        from lth.prune import Mask
        from lth.records import Summary

        unit = self.unit(replicate, level, branch)
        if self.store.is_done(unit):
            return self.store.summary(unit)
        t0 = time.perf_counter()
        model = self.build(self.seed(replicate))
        model.load_state_dict(self._init_state(replicate))
        pm, extra = 100.0, {}
        if level > 0:
            trained = load_weights(self.store.final_path(self.unit(replicate, 0, DENSE)),
                                   fix="It is the trained dense network; delete its folder to retrain it.")
            mask = large_final_mask(trained, list(Mask.ones_like(model)), self.k(level))
            mask.save(self.store.unit_mask_path(unit))
            mask.apply_(model)
            pm, extra = 100 * mask.density(), {"k": self.k(level)}
        metrics, summary = evaluate_untrained(model, self.data)
        self.store.write_result(unit, metrics, Summary.from_dict({
            "replicate": replicate, "level": level, "branch": branch, "remaining_percent": pm, "start_step": 0,
            **summary, **extra, "seconds": round(time.perf_counter() - t0, 3)}))
        return self.store.summary(unit)

    # -- the run -----------------------------------------------------------------------------------
    def submit(self, executor) -> list[list]:
        levels: list[list] = [[] for _ in range(len(self.ks) + 1)]
        for r in range(self.cfg.supermask.replicates):
            ready = executor.submit(self.init, r)
            dense = executor.submit(self.record, r, 0, DENSE,
                                    executor.train(executor.submit(self.job, r, 0, DENSE, ready)))
            levels[0] += [dense, executor.submit(self.untrained, r, 0, UNTRAINED, ready)]
            for level in range(1, len(self.ks) + 1):
                for branch in branch_names(self.cfg.supermask, level):
                    if branch == LARGE_FINAL:
                        levels[level].append(executor.submit(self.untrained, r, level, branch, dense))
                    else:
                        job = executor.submit(self.job, r, level, branch, ready)
                        levels[level].append(executor.submit(self.record, r, level, branch, executor.train(job)))
        return levels

    def run(self, executor, log: Callable[[str], None] = print) -> None:
        log(f"run folder: {self.store.root}")
        self.store.write_plan({"pm_percent": [100.0, *(100 * k for k in self.ks)], "k": list(self.ks)})
        for level, handles in enumerate(self.submit(executor)):
            log(format_rows(executor.gather(handles), header=level == 0))


def large_final_mask(trained: dict[str, Any], names: list[str], k: float):
    """Per layer, the round(k·n) weights of largest trained magnitude (ties: the earlier position)."""
    from lth.prune import Mask
    from lth.prune.select import keep_top_k
    from lth.train.supermask import kept_count

    out = {}
    for n in names:
        w = trained[n].detach().abs().float().flatten()
        out[n] = keep_top_k(w, kept_count(k, w.numel())).view(trained[n].shape)
    return Mask(out)


def evaluate_untrained(model, data) -> tuple[list[dict], dict]:
    """The metrics row and summary of a network evaluated as it is (step 0, no training)."""
    from lth.train import evaluate, summarize

    device = data.train.x.device
    model.to(device)
    (vl, va), (tl, ta) = evaluate(model, data.val.x, data.val.y), evaluate(model, data.test.x, data.test.y)
    train_loss, train_acc = evaluate(model, data.train.x, data.train.y)
    row = {"step": 0, "train_loss": None, "train_acc": None, "val_loss": vl.item(), "val_acc": va.item(),
           "test_loss": tl.item(), "test_acc": ta.item()}
    return [row], summarize([row], (train_loss.item(), train_acc.item()))


COLUMNS = (("early_stop_test_acc", "test@ES"), ("final_test_acc", "test@end"), ("final_train_acc", "train@end"))


def format_rows(summaries, header: bool = False) -> str:
    """One line per (level, branch), each with its own kept fraction (a Bernoulli mask learns its own)."""
    from lth.experiments.results import aggregate

    rows = aggregate(summaries)
    width = 13 if any(len(r["replicates"]) > 1 for r in rows) else 9  # room for "±x.x" with replicates
    lines = [f"{'level':>5} {'k':>5} {'branch':<12} {'P_m %':>7} " + " ".join(f"{t:>{width}}" for _, t in COLUMNS)] \
        if header else []
    previous = None
    for r in rows:
        k = r["k"]["mean"] if isinstance(r.get("k"), dict) else None
        first = r["level"] != previous
        previous = r["level"]
        cells = [f"{r['level'] if first else '':>5}",
                 f"{k:>5.2f}" if k is not None and first else f"{'-' if first else '':>5}",
                 f"{r['branch']:<12}", f"{r['remaining_percent']:>7.2f}"]
        for key, _ in COLUMNS:
            stat = r.get(key)
            text = "-" if stat is None else f"{100 * stat['mean']:.1f}"
            if stat is not None and len(r["replicates"]) > 1:
                text += f" ±{100 * (stat['max'] - stat['min']) / 2:.1f}"
            cells.append(f"{text:>{width}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def run(cfg: SupermaskConfig, executor, store, log: Callable[[str], None] = print) -> None:
    from lth.experiments.imp import ModelBuilder

    data = executor.dataset(cfg.data)
    Supermask(cfg, store, ModelBuilder.for_data(cfg.model, data), data).run(executor, log)


def show(store) -> str:
    summaries = store.summaries()
    return format_rows(summaries, header=True) if summaries else "no finished trainings yet"


def section_of(config: dict) -> SupermaskSection:
    from lth.config import from_dict

    return from_dict(SupermaskSection, config.get("supermask", {}))


SUPERMASK = register(Experiment(
    name="supermask", config=SupermaskConfig, run=run, commands=("supermask",), check=check, show=show,
    branches=lambda config, level: branch_names(section_of(config), level),
    report_sections=("supermask_vs_k",), default_preset="mnist1d_mlp_edge_popup",
    help="strong tickets: masks learned on frozen random weights"))
