import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from lth.config import LotteryConfig, PruneConfig
from lth.lottery import find_tickets, run_imp
from lth.prune import Mask
from lth.store import RunLockedError, RunStore, Unit
from lth.train import load_weights


def quiet(*_):
    pass


def test_imp_levels_controls_and_rewinding_state(tiny_cfg):
    store = run_imp(tiny_cfg, progress=False, log=quiet)
    s = store.summaries()
    assert [(x["level"], x["branch"]) for x in s] == [
        (0, "ticket"), (1, "random_prune"), (1, "reinit"), (1, "ticket"),
        (2, "random_prune"), (2, "reinit"), (2, "ticket")]
    init = load_weights(store.rep_dir(0) / "init.safetensors")
    m1 = Mask.load(store.level_dir(0, 1) / "mask.safetensors")
    m2 = Mask.load(store.level_dir(0, 2) / "mask.safetensors")
    # rate 0.5 on hidden layers, 0.25 on the output layer: masks nest and shrink.
    assert all((m2[n] <= m1[n]).all() for n in m1)
    assert m1.kept()["fc1.weight"] == m1.sizes()["fc1.weight"] // 2
    assert m1.kept()["fc3.weight"] == round(0.75 * m1.sizes()["fc3.weight"])
    rand = Mask.load(store.unit_dir(Unit(0, 1, "random_prune")) / "mask.safetensors")
    assert rand.kept() == m1.kept() and rand != m1
    by = {(x["level"], x["branch"]): x for x in s}
    assert by[1, "ticket"]["remaining_percent"] == pytest.approx(100 * m1.density())
    assert by[1, "random_prune"]["remaining_percent"] == pytest.approx(100 * m1.density())
    # The level-1 ticket starts from θ_0 ⊙ m1 (its step-0 validation loss is that network's); reinit does not.
    from lth.data import load
    from lth.models import build_model
    from lth.train import evaluate

    data = load(tiny_cfg.data)
    net = build_model(tiny_cfg.model, input_shape=data.input_shape, num_classes=data.num_classes, seed=99)
    net.load_state_dict(init)
    m1.apply_(net)
    val_loss = evaluate(net, data.val.x, data.val.y)[0].item()
    assert store.metrics(Unit(0, 1, "ticket"))[0]["val_loss"] == pytest.approx(val_loss, rel=1e-6)
    assert store.metrics(Unit(0, 1, "reinit"))[0]["val_loss"] != pytest.approx(val_loss, rel=1e-6)


def test_rerun_skips_finished_work(tiny_cfg):
    run_imp(tiny_cfg, progress=False, log=quiet)
    store = RunStore.for_config(tiny_cfg)
    before = {p: p.stat().st_mtime_ns for p in store.root.rglob("summary.json")}
    run_imp(tiny_cfg, progress=False, log=quiet)
    assert {p: p.stat().st_mtime_ns for p in store.root.rglob("summary.json")} == before


def test_rewinding_and_one_shot(tiny_cfg):
    cfg = replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, rewind="20it", one_shot=True, controls=()))
    store = run_imp(cfg, progress=False, log=quiet)
    assert "oneshot-rewind20it" in store.root.name
    assert (store.rep_dir(0) / "rewind.safetensors").exists()
    s = {x["level"]: x for x in store.summaries()}
    assert s[1]["start_step"] == 20 and s[0]["start_step"] == 0
    # One-shot level 2 prunes the dense network straight to 2 rounds' counts.
    assert round(s[2]["remaining_percent"], 6) == round(100 * Mask.load(store.level_dir(0, 2) / "mask.safetensors").density(), 6)


def test_replicates_and_reinit_draws(tiny_cfg):
    cfg = replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, levels=1, replicates=2, reinit_draws=2,
                                            controls=("reinit",)))
    store = run_imp(cfg, progress=False, log=quiet)
    keys = {(x["replicate"], x["level"], x["branch"]) for x in store.summaries()}
    assert keys == {(r, 0, "ticket") for r in (0, 1)} | {(r, 1, b) for r in (0, 1) for b in ("ticket", "reinit", "reinit2")}
    a = load_weights(store.rep_dir(0) / "init.safetensors")["fc1.weight"]
    b = load_weights(store.rep_dir(1) / "init.safetensors")["fc1.weight"]
    assert not torch.equal(a, b)


@pytest.mark.parametrize("change, message", [
    (lambda c: replace(c, prune=replace(c.prune, rate=1.5)), "fraction in \\(0, 1\\)"),
    (lambda c: replace(c, lottery=replace(c.lottery, rewind="1000it")), "beyond the training budget"),
    (lambda c: replace(c, lottery=replace(c.lottery, controls=("shuffle",))), "unknown control"),
    (lambda c: replace(c, train=replace(c.train, budget="ten")), "like '500it'"),
    (lambda c: replace(c, model=replace(c.model, name="lenet5")), "unknown model"),
])
def test_bad_input_is_refused_before_training(tiny_cfg, change, message):
    cfg = change(tiny_cfg)
    with pytest.raises(ValueError, match=message):
        run_imp(cfg, progress=False, log=quiet)
    assert not list(Path(cfg.out_dir).rglob("summary.json"))


def test_unwritable_output_folder_is_refused(tiny_cfg, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermissionError, match="--out"):
        run_imp(replace(tiny_cfg, out_dir=str(blocker / "runs")), progress=False, log=quiet)


def test_second_process_is_locked_out(tiny_cfg):
    store = RunStore.for_config(tiny_cfg)
    code = ("import sys; from lth.store import RunStore\n"
            f"RunStore({str(store.root)!r}).lock()\n")
    with store:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "in use by process" in out.stderr
    with pytest.raises(RunLockedError):
        with store:
            RunStore(store.root).lock()


def test_find_tickets_on_a_users_own_model_and_loop(tmp_path):
    torch.manual_seed(0)
    x, y = torch.randn(256, 8), torch.randint(0, 2, (256,))
    seen = []

    def train_fn(model, mask):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(20):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        acc = (model(x).argmax(1) == y).float().mean().item()
        seen.append((model[0].weight == 0).float().mean().item())  # as the forward pass saw them
        return {"final_test_acc": acc}

    store = find_tickets(lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)), train_fn,
                         name="toy", prune=PruneConfig(rate=0.5), lottery=LotteryConfig(levels=2, controls=("reinit",)),
                         out_dir=str(tmp_path), log=quiet)
    s = store.summaries()
    assert len(s) == 5 and all("final_test_acc" in x for x in s)
    final = load_weights(store.unit_dir(Unit(0, 2, "ticket")) / "final.safetensors")
    mask = Mask.load(store.level_dir(0, 2) / "mask.safetensors")
    assert (final["0.weight"][~mask["0.weight"]] == 0).all()
    assert min(seen[-2:]) >= 0.74  # level 2: 75% of the first layer pruned, masked by lth in every forward


def test_sigkill_mid_level_then_resume_equals_uninterrupted(tiny_cfg, tmp_path):
    from resume_check import kill_and_resume

    cfg = replace(tiny_cfg, model=replace(tiny_cfg.model, hidden=(256, 128), dropout=0.2),
                  train=replace(tiny_cfg.train, budget="600it", eval_every="10it"),
                  lottery=replace(tiny_cfg.lottery, levels=2), checkpoint_seconds=0.0)

    def mid_level(root):  # killed while a level-1 training was partway
        assert not (root / "rep0/level02/ticket/summary.json").exists()

    kill_and_resume("run", cfg, tmp_path, "level01/*/resume.pt", mid_level)


def test_more_levels_replicates_or_controls_extend_the_run(tiny_cfg):
    small = replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, levels=1, controls=("reinit",)))
    store = run_imp(small, progress=False, log=quiet)
    done = {p: p.stat().st_mtime_ns for p in store.root.rglob("summary.json")}
    assert len(done) == 3  # dense, level-1 ticket, level-1 reinit
    bigger = replace(tiny_cfg, lottery=replace(tiny_cfg.lottery, levels=2, replicates=2,
                                               controls=("reinit", "random_prune")))
    extended = run_imp(bigger, progress=False, log=quiet)
    assert extended.root == store.root  # the same run, not a new one
    assert {p: p.stat().st_mtime_ns for p in done} == done  # finished trainings were not redone
    keys = {(s["replicate"], s["level"], s["branch"]) for s in extended.summaries()}
    assert (0, 1, "random_prune") in keys and (0, 2, "ticket") in keys and (1, 2, "reinit") in keys
    assert len(keys) == 2 * (1 + 2 * 3)
    assert json.loads((store.root / "config.json").read_text())["config"]["lottery"]["levels"] == 2
