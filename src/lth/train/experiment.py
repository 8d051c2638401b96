"""`lth train`: one dense training of a config's model on its dataset, stored in a run folder."""

from __future__ import annotations

import json
from collections.abc import Callable

from lth.config import ExperimentConfig
from lth.store import RunStore, Unit, write_json
from lth.train.checkpoint import save_weights
from lth.train.loop import Hooks, TrainResult, resolve_device, train


def train_experiment(cfg: ExperimentConfig, *, progress: bool | None = None,
                     log: Callable[[str], None] = print) -> tuple[RunStore, TrainResult | None]:
    """Train the dense network of `cfg`; write config, metrics (CSV and JSON) and final weights.

    Resumes an interrupted training in the same run folder; a finished one is not trained again (the
    returned result is then None and the stored summary is in `store`).
    """
    from lth.data import load
    from lth.models import build_model
    from lth.validate import check_experiment

    check_experiment(cfg, lottery=False)
    device = resolve_device(cfg.device)
    data = load(cfg.data, device=device)
    store = RunStore.for_config(cfg, kind="train")
    unit = Unit(0, 0, "dense")
    with store:
        if store.is_done(unit):
            log(f"already trained: {store.unit_dir(unit)}")
            return store, None
        model = build_model(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, seed=cfg.seed)
        d = store.unit_dir(unit)
        d.mkdir(parents=True, exist_ok=True)
        save_weights(model, d / "init.safetensors")
        hooks = Hooks(resume_path=d / "resume.pt", checkpoint_seconds=cfg.checkpoint_seconds)
        result = train(model, data, cfg.train, hooks=hooks, device=device, augment=cfg.data.augment,
                       progress=progress, desc="dense")
        save_weights(model, d / "final.safetensors")
        write_json(d / "metrics.json", result.metrics)
        store.write_result(unit, result.metrics, {"replicate": 0, "level": 0, "branch": "dense",
                                                  "remaining_percent": 100.0, **result.summary,
                                                  "seconds": round(result.seconds, 3)})
    return store, result


def format_summary(summary: dict) -> str:
    s = summary
    return (f"{s['iterations']} iterations in {s.get('seconds', 0):.1f} s | early stop (min val loss) at "
            f"iteration {s['early_stop_step']}: val acc {100 * s['early_stop_val_acc']:.1f}%, "
            f"test acc {100 * s['early_stop_test_acc']:.1f}% | end of training: train acc "
            f"{100 * s['final_train_acc']:.1f}%, test acc {100 * s['final_test_acc']:.1f}%")


def load_summary(store: RunStore) -> dict:
    return json.loads((store.unit_dir(Unit(0, 0, "dense")) / "summary.json").read_text())
