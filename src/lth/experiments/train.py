"""`lth train`: one dense training of a config's model on its dataset, stored in a run folder."""

from __future__ import annotations

from collections.abc import Callable

from lth.config import RunConfig
from lth.experiments.base import Experiment, launch, register
from lth.names import DENSE


def run(cfg: RunConfig, executor, store, log: Callable[[str], None] = print) -> None:
    """Train the dense network of `cfg`; write config, metrics (CSV and JSON), initial and final weights.

    Resumes an interrupted training in the same run folder; a finished one is not trained again."""
    from functools import partial

    from lth.executors import TrainJob
    from lth.experiments.imp import ModelBuilder
    from lth.fileio import load_weights, save_weights, write_json
    from lth.records import Summary
    from lth.store import Unit

    unit = Unit(0, 0, DENSE)
    if store.is_done(unit):
        log(f"already trained: {store.unit_dir(unit)}")
        log(show(store))
        return
    data = executor.dataset(cfg.data)
    build = partial(ModelBuilder.for_data(cfg.model, data), cfg.seed)
    init = store.unit_dir(unit) / "init.safetensors"
    place = {"run": store.record()["hash"], "file": "init", "replicate": 0}  # checked when read back
    if not init.exists():
        save_weights(build(), init, place)
    job = TrainJob(key=unit.key, build=build, train=cfg.train, start=load_weights(init, place=place), data=cfg.data,
                   augment=cfg.data.augment, resume_path=store.resume_path(unit),
                   checkpoint_seconds=cfg.checkpoint_seconds)
    [result] = executor.gather([executor.train(job)])
    save_weights(result.final, store.final_path(unit), {**place, "file": "final", "level": 0, "branch": DENSE})
    write_json(store.unit_dir(unit) / "metrics.json", result.metrics)
    store.write_result(unit, result.metrics, Summary.from_dict(
        {"replicate": 0, "level": 0, "branch": DENSE, "remaining_percent": 100.0, "start_step": 0, **result.summary,
         "seconds": round(result.seconds, 3)}))
    log(show(store))


def format_summary(s) -> str:
    if "final_test_bpc" in s:  # a language model: bits per character where a classifier shows accuracy
        return (f"{s.iterations} iterations in {s.seconds or 0:.1f} s | early stop (min val loss) at "
                f"iteration {s.early_stop_step}: val {s['early_stop_val_bpc']:.3f} bpc, test "
                f"{s['early_stop_test_bpc']:.3f} bpc | end of training: train {s['final_train_bpc']:.3f} bpc, "
                f"test {s['final_test_bpc']:.3f} bpc")
    return (f"{s.iterations} iterations in {s.seconds or 0:.1f} s | early stop (min val loss) at "
            f"iteration {s.early_stop_step}: val acc {100 * s.early_stop_val_acc:.1f}%, "
            f"test acc {100 * s.early_stop_test_acc:.1f}% | end of training: train acc "
            f"{100 * s.final_train_acc:.1f}%, test acc {100 * s.final_test_acc:.1f}%")


def show(store) -> str:
    from lth.store import Unit

    unit = Unit(0, 0, DENSE)
    if not store.is_done(unit):
        return "not finished yet"
    cfg = store.config()
    return f"dense {cfg['model']['name']} on {cfg['data']['dataset']}: {format_summary(store.summary(unit))}"


TRAIN = register(Experiment(name="train", config=RunConfig, run=run, commands=("train",), show=show,
                            branches=lambda config, level: [DENSE] if level == 0 else [],
                            help="train the dense network once", report_sections=("results", "curves")))


def train_experiment(cfg: RunConfig, *, progress: bool | None = None, log: Callable[[str], None] = print):
    """Train the dense network of `cfg` in its run folder (resuming, or skipping it when finished); returns the
    RunStore."""
    if type(cfg) is not RunConfig:  # an IMP config (e.g. a preset): its data, model and training
        from lth.config import from_dict, to_dict

        cfg = from_dict(RunConfig, {k: v for k, v in to_dict(cfg).items() if k in RunConfig.__dataclass_fields__})
    return launch(cfg, progress=progress, log=log)
