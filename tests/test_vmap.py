"""K networks trained in one batched pass equal K separate trainings; resume is exact; grouping rules."""

import copy
import shutil
from dataclasses import replace

import pytest
import torch

from lth.config import ComputeConfig, TrainConfig
from lth.experiments import run_imp
from lth.prune import Mask
from lth.train import Hooks, Member, train, train_batched
from lth.train.loop import read_resume_state
from lth.train.vmap import batch_groups, why_not_batchable

CFG = TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="100it", eval_every="25it")


def random_mask(model, seed):
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(p.shape, generator=g) > 0.4 for n, p in model.named_parameters() if n.endswith("weight")})


def three(data, mlp, cfg=CFG):
    """Three networks with their own init, data order (two share one) and mask."""
    models = [mlp(data, seed=s) for s in range(3)]
    cfgs = [replace(cfg, data_seed=s) for s in (0, 1, 0)]
    masks = [random_mask(models[0], s) for s in range(3)]
    return models, cfgs, masks


def close(a, b, rtol=1e-4, atol=1e-6):
    return a is None and b is None or (a is not None and b is not None and abs(a - b) <= atol + rtol * abs(b))


def same_row(row, ref):
    """Losses and step within rtol 1e-4; an accuracy is a count, and a logit that rounds the other way
    near a tie flips one prediction, so accuracies may differ by a few examples (0.5%)."""
    return all(close(row[k], ref[k], atol=5e-3 if k.endswith("acc") else 1e-6) for k in row)


def test_batched_equals_separate_training(data, mlp):
    models, cfgs, masks = three(data, mlp)
    separate = []
    for m, c, mk in zip(models, cfgs, masks):
        alone = copy.deepcopy(m)
        separate.append((alone, train(alone, data, c, mask=mk, progress=False)))
    batched = [copy.deepcopy(m) for m in models]
    results = train_batched([Member(m, c, mk) for m, c, mk in zip(batched, cfgs, masks)], data, progress=False)
    for (alone, ref), model, res, mk in zip(separate, batched, results, masks):
        assert [list(r) for r in res.metrics] == [list(r) for r in ref.metrics]
        for row, ref_row in zip(res.metrics, ref.metrics):
            assert same_row(row, ref_row), (row, ref_row)
        assert res.summary.keys() == ref.summary.keys()
        assert res.summary["early_stop_step"] == ref.summary["early_stop_step"]
        assert same_row(res.summary, ref.summary)
        for (n, p), q in zip(model.named_parameters(), alone.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=n)
        params = dict(model.named_parameters())
        for n, keep in mk.items():
            assert (params[n][~keep] == 0).all(), f"{n}: pruned weights moved"


def test_a_networks_numbers_do_not_depend_on_its_pass(data, mlp):
    """Bit for bit the same alone, in a pass of three, or in another order: what makes resume exact."""
    models, cfgs, masks = three(data, mlp, replace(CFG, budget="60it"))
    full = [copy.deepcopy(m) for m in models]
    ref = train_batched([Member(m, c, mk) for m, c, mk in zip(full, cfgs, masks)], data, progress=False)
    for order in ([1], [2, 0]):
        part = [copy.deepcopy(models[i]) for i in order]
        res = train_batched([Member(part[j], cfgs[i], masks[i]) for j, i in enumerate(order)], data, progress=False)
        for j, i in enumerate(order):
            assert res[j].metrics == ref[i].metrics and res[j].summary == ref[i].summary
            assert all(torch.equal(p, q) for p, q in zip(part[j].parameters(), full[i].parameters()))


class Killed(Exception):
    pass


def resume_steps(hooks):
    return [None if (s := read_resume_state(h.resume_path)) is None else s["step"] for h in hooks]


def test_save_at_and_resume_in_groups_by_step_equals_uninterrupted(data, tmp_path, mlp):
    models, cfgs, masks = three(data, mlp)
    clean = [copy.deepcopy(m) for m in models]
    saved = {}
    hooks = [Hooks(save_at={30: lambda s, m, k=k: saved.setdefault(k, m.fc1.weight.detach().clone())})
             for k in range(3)]
    ref = train_batched([Member(m, c, mk, h) for m, c, mk, h in zip(clean, cfgs, masks, hooks)], data, progress=False)
    # save_at hands each network its own module at that step.
    assert len(saved) == 3 and not torch.equal(saved[0], saved[1])

    paths = [tmp_path / f"job{k}" / "resume.pt" for k in range(3)]

    def run(kill_at=None):
        """One pass over the jobs as the local executor groups them; a hook kills it at `kill_at`."""
        fresh = [mlp(data, seed=99) for _ in range(3)]  # resumed weights must come from the states
        for f, m, p in zip(fresh, models, paths):
            if not p.exists():
                f.load_state_dict(m.state_dict())
        hk = [Hooks(resume_path=p, checkpoint_seconds=0) for p in paths]
        if kill_at is not None:
            hk[0].save_at[kill_at] = lambda s, m: (_ for _ in ()).throw(Killed())
        out = {}
        for group in batch_groups(fresh, cfgs, [0] * 3, resume_steps(hk), 16):
            res = train_batched([Member(fresh[i], cfgs[i], masks[i], hk[i]) for i in group], data, progress=False)
            out.update(zip(group, res))
        return fresh, out

    with pytest.raises(Killed):
        run(kill_at=30)  # states of all three at step 25
    shutil.copy(paths[2], tmp_path / "old.pt")
    with pytest.raises(Killed):
        run(kill_at=60)  # states at step 50
    # As if killed while writing the three states: job 2's is still the one of step 25.
    shutil.copy(tmp_path / "old.pt", paths[2])
    assert len(batch_groups(models, cfgs, [0] * 3, resume_steps([Hooks(resume_path=p) for p in paths]), 16)) == 2
    final, out = run()
    for k in range(3):
        assert out[k].metrics == ref[k].metrics and out[k].summary == ref[k].summary
        assert all(torch.equal(p, q) for p, q in zip(final[k].parameters(), clean[k].parameters()))


def test_a_batched_checkpoint_resumes_alone(data, tmp_path, mlp):
    """The per-network state has train's format: `train` can take over from a batched pass."""
    models, cfgs, masks = three(data, mlp)
    ref = train(copy.deepcopy(models[1]), data, cfgs[1], mask=masks[1], progress=False)
    path = tmp_path / "resume.pt"
    hk = [Hooks(), Hooks(resume_path=path, checkpoint_seconds=0,
                         save_at={60: lambda s, m: (_ for _ in ()).throw(Killed())})]
    with pytest.raises(Killed):
        train_batched([Member(copy.deepcopy(models[i]), cfgs[i], masks[i], hk[j]) for j, i in enumerate((0, 1))],
                      data, progress=False)
    res = train(mlp(data, seed=99), data, cfgs[1], mask=masks[1], progress=False, hooks=Hooks(resume_path=path))
    for row, ref_row in zip(res.metrics, ref.metrics):
        assert same_row(row, ref_row), (row, ref_row)


def test_grouping_rules_and_fallbacks(data, mlp):
    plain, other, drop = mlp(data, 0), mlp(data, 1), mlp(data, 2, dropout=0.3)
    assert why_not_batchable(plain) is None and "dropout" in why_not_batchable(drop)
    assert "buffers" in why_not_batchable(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)))
    models = [plain, other, drop, copy.deepcopy(plain), copy.deepcopy(plain)]
    cfgs = [CFG, replace(CFG, data_seed=5), CFG, replace(CFG, lr=1e-3), CFG]
    starts = [0, 0, 0, 0, 20]
    resumes = [None] * 5
    # data_seed may differ; dropout trains alone; another lr or start step is another pass.
    assert batch_groups(models, cfgs, starts, resumes, 8) == [[0, 1], [2], [3], [4]]
    assert batch_groups(models, cfgs, starts, resumes, 1) == [[0], [1], [2], [3], [4]]
    assert batch_groups(models, cfgs, starts, [None, 5, None, None, None], 8) == [[0], [1], [2], [3], [4]]
    assert ComputeConfig(batch="0").batch_limit("cuda") == 0 and ComputeConfig(batch="4").batch_limit("cpu") == 4
    auto = ComputeConfig()
    assert auto.batch_limit("cpu") == 0 and auto.batch_limit("cuda") > 1  # auto: batched on GPUs only
    with pytest.raises(ValueError, match="share their train config"):
        train_batched([Member(mlp(data), CFG), Member(mlp(data), cfgs[3])], data, progress=False)


def test_imp_with_batched_levels_matches_one_at_a_time(tiny_cfg):
    quiet = lambda *_: None  # noqa: E731
    seq = run_imp(replace(tiny_cfg, out_dir=tiny_cfg.out_dir + "-seq", compute=ComputeConfig(batch="0")),
                  progress=False, log=quiet).summaries()
    store = run_imp(replace(tiny_cfg, compute=ComputeConfig(batch="16")), progress=False, log=quiet)
    bat = store.summaries()
    assert [(s["level"], s["branch"]) for s in bat] == [(s["level"], s["branch"]) for s in seq]
    for a, b in zip(bat, seq):
        for key in ("early_stop_step", "iterations", "remaining_percent", "start_step"):
            assert a[key] == b[key], key
        for key in ("final_test_acc", "final_train_loss", "early_stop_val_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), key
    assert not list(store.root.rglob("resume.pt"))
