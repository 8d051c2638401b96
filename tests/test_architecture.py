"""The seats of the design: the hash of non-default fields, run folders of lth 0.1, compute settings as
recorded config, the experiments registry behind the CLI, imports that point down the layers, and a CLI
whose help needs no torch."""

import ast
import dataclasses
import json
import subprocess
import sys
from dataclasses import field, replace
from pathlib import Path

import pytest

from lth import presets
from lth.config import (
    ComputeConfig,
    ImpConfig,
    RunConfig,
    TrainConfig,
    config_hash,
    hashed_dict,
    legacy_hash,
    to_dict,
)
from lth.experiments import run_imp
from lth.store import Unit

SRC = Path(__file__).resolve().parents[1] / "src" / "lth"


def quiet(*_):
    pass


def test_hash_covers_only_fields_that_differ_from_their_defaults():
    assert hashed_dict(ImpConfig()) == {}
    cfg = ImpConfig(train=TrainConfig(lr=0.1), seed=3)
    assert hashed_dict(cfg) == {"train": {"lr": 0.1}, "seed": 3}
    # A field added later, with a default, leaves every existing hash as it is.
    Extended = dataclasses.make_dataclass("TrainConfig", [("new_knob", int, field(default=3))], bases=(TrainConfig,),
                                          frozen=True)
    extended = replace(cfg, train=Extended(lr=0.1))
    assert config_hash(extended) == config_hash(cfg)
    assert config_hash(replace(cfg, train=Extended(lr=0.1, new_knob=4))) != config_hash(cfg)
    # The experiment is part of the identity: a dense training and an IMP run of one config differ.
    assert config_hash(RunConfig(seed=3)) != config_hash(ImpConfig(seed=3))


def test_compute_settings_are_recorded_but_not_hashed(tiny_cfg):
    fast = replace(tiny_cfg, compute=ComputeConfig(kernels="torch", chain=False))
    assert config_hash(fast) == config_hash(tiny_cfg)
    store = run_imp(replace(fast, lottery=replace(fast.lottery, levels=0)), progress=False, log=quiet)
    recorded = json.loads((store.root / "config.json").read_text())["config"]["compute"]
    assert recorded["kernels"] == "torch" and recorded["chain"] is False


def test_legacy_hashes_are_those_lth_0_1_gave():
    # Folder names lth 0.1 (commit e39281b) gave the default `lth run` and `lth train` configs.
    imp = presets.get("mnist1d_mlp")
    assert legacy_hash(imp) == "750fadd6"
    dense = RunConfig(**{f.name: getattr(imp, f.name) for f in dataclasses.fields(RunConfig)})
    assert legacy_hash(dense) == "b5dfbdd3"
    assert legacy_hash(replace(imp, prune=replace(imp.prune, criterion="movement"))) is None


def test_a_run_folder_of_lth_0_1_is_adopted_and_resumed(tiny_cfg):
    """As if lth 0.1 made the folder: its name has the old hash and its config.json the old layout. The same
    command now renames it and resumes it: finished trainings are not redone."""
    dense_only = replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, levels=0))
    store = run_imp(dense_only, progress=False, log=quiet)
    old = store.root.with_name(store.root.name.replace(config_hash(tiny_cfg), legacy_hash(tiny_cfg)))
    record = json.loads((store.root / "config.json").read_text())
    store.root.rename(old)
    (old / "config.json").write_text(json.dumps({"kind": "imp", "hash": legacy_hash(tiny_cfg),
                                                 "config": record["config"]}))
    done = (old / "rep0/level00/ticket/summary.json").stat().st_mtime_ns
    notes = []
    resumed = run_imp(replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, levels=1)), progress=False,
                      log=notes.append)
    assert resumed.root == store.root and not old.exists()
    assert any("made by lth 0.1" in n for n in notes)
    assert (store.root / "rep0/level00/ticket/summary.json").stat().st_mtime_ns == done
    assert {(s.level, s.branch) for s in resumed.summaries()} >= {(0, "ticket"), (1, "ticket"), (1, "reinit")}
    assert json.loads((store.root / "config.json").read_text())["format"] == 2


def test_resuming_with_other_compute_settings_warns(data, tmp_path, mlp):
    from lth.train import Hooks, train

    class Killed(Exception):
        pass

    cfg = TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="60it", eval_every="20it")
    resume = tmp_path / "resume.pt"

    def die(step, model):
        raise Killed

    with pytest.raises(Killed):
        train(mlp(data), data, cfg, progress=False, hooks=Hooks(save_at={30: die}, resume_path=resume,
                                                               checkpoint_seconds=0))
    import torch

    assert torch.load(resume, weights_only=True)["compute"]["kernels"] == "auto"
    with pytest.warns(UserWarning, match="--compute.kernels auto"):
        train(mlp(data), data, cfg, progress=False, hooks=Hooks(resume_path=resume),
              compute=ComputeConfig(kernels="torch"))


def test_the_cli_is_built_from_the_experiments_registry(tmp_path, capsys):
    """A new experiment is one module and one registration; the CLI, the run folder's name and `lth show`
    follow from it."""
    from lth.cli import main
    from lth.experiments import EXPERIMENTS, Experiment, register
    from lth.records import Summary

    @dataclasses.dataclass(frozen=True)
    class ToyConfig(RunConfig):
        experiment = "toy"
        answer: int = 42

    def run(cfg, executor, store, log):
        store.write_result(Unit(0, 0, "dense"), [], Summary(0, 0, "dense", 100.0, extra={"answer": cfg.answer}))
        log(f"recorded {cfg.answer}")

    register(Experiment(name="toy", config=ToyConfig, run=run, help="a toy", report_sections=(),
                        show=lambda store: f"answer {store.summary(Unit(0, 0, 'dense'))['answer']}"))
    try:
        assert main(["--help"]) == 0 and "lth toy" in capsys.readouterr().out
        out = str(tmp_path / "runs")
        assert main(["toy", "--answer", "7", "--data.dataset", "synthetic", "--out", out,
                     "--data-dir", str(tmp_path / "data")]) == 0
        assert "recorded 7" in capsys.readouterr().out
        [root] = Path(out).iterdir()
        assert "-toy-" in root.name
        assert main(["show", str(root)]) == 0 and "answer 7" in capsys.readouterr().out
    finally:
        del EXPERIMENTS["toy"]


# -- layers -------------------------------------------------------------------------------------------------
LAYERS = [
    {"errors", "names", "seeds", "records", "fileio"},
    {"config"},
    {"presets", "data", "models"},
    {"prune"},
    {"train"},
    {"store", "tracking"},
    {"executors", "validate"},
    {"experiments"},
    {"lottery", "report", "export"},
    {"cli", "__main__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def lth_imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lth"):
            out.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            parts = path.relative_to(SRC.parent).with_suffix("").parts
            base = parts[:len(parts) - node.level]  # an __init__ counts as a part: `.x` is a sibling
            out.append(".".join(base + ((node.module,) if node.module else ())))
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("lth")]
    return out


def test_imports_point_down_the_layers():
    """No module imports from a higher layer (imports inside functions included)."""
    wrong = []
    for path in SRC.rglob("*.py"):
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        if module == "lth.__init__":
            continue  # the package's face: lazy names from every layer
        for target in lth_imports(path):
            if target in ("lth",):
                continue
            if layer_of(target) > layer_of(module):
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_help_and_presets_do_not_import_torch():
    code = ("import sys\nfrom lth.cli import main\n"
            "for argv in (['--help'], ['presets'], ['run', '--help'], ['train', '--help'], ['rl', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = ('torch', 'stable_baselines3', 'gymnasium')\n"
            "print('TORCH' if any(m in sys.modules for m in heavy) else 'NO TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("NO TORCH"), out.stdout[-500:]
    assert "--lottery.levels" in out.stdout and "--compute.batch" in out.stdout and "--env.id" in out.stdout


def test_summaries_are_typed_records(tiny_cfg):
    store = run_imp(replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, levels=1, controls=())), progress=False,
                    log=quiet)
    s = store.summary(Unit(0, 1, "ticket"))
    assert s.level == 1 and s.start_step == 0 and 0 < s.remaining_percent < 100
    assert s["early_stop_step"] == s.early_stop_step  # still readable as the JSON's keys
    assert to_dict(tiny_cfg)["lottery"]["levels"] == 2


def test_config_files_of_lth_0_1_read_under_the_new_names():
    """lth 0.1's `prune.score` is `prune.criterion` now, and `train.amp` moved to the compute section."""
    from lth.config import from_dict

    cfg = from_dict(ImpConfig, {"train": {"amp": False, "lr": 0.1}, "prune": {"score": "random"}})
    assert (cfg.compute.amp, cfg.train.lr, cfg.prune.criterion) == (False, 0.1, "random")
