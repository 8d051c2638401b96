import math

import pytest
import torch

from lth.config import ComputeConfig, TrainConfig
from lth.prune import Mask
from lth.train import Hooks, to_iterations, train
from lth.train.checkpoint import load_state
from lth.train.optim import lr_factor

CFG = TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="100it", eval_every="25it")


def test_step_counts():
    assert to_iterations("500it", 703) == 500
    assert to_iterations("160ep", 703) == 112_480  # VGG-19 on CIFAR-10's 45K at batch 64 (facts sheet)
    with pytest.raises(ValueError, match="like '500it' or '2ep'"):
        to_iterations("10 epochs", 10)


def test_learning_rate_schedules():
    warm = lr_factor(TrainConfig(warmup="10it"), 100, 1000)
    assert warm(0) == pytest.approx(0.1) and warm(9) == 1.0 and warm(500) == 1.0
    multi = lr_factor(TrainConfig(schedule="multistep", milestones=("2ep", "300it")), 100, 1000)
    assert [multi(s) for s in (199, 200, 299, 300)] == pytest.approx([1, 0.1, 0.1, 0.01])
    cos = lr_factor(TrainConfig(schedule="cosine"), 100, 1000)
    assert cos(0) == 1.0 and cos(500) == pytest.approx(0.5) and cos(1000) == pytest.approx(0.0)


def test_training_learns_records_and_respects_mask(data, mlp):
    model = mlp(data)
    mask = Mask({n: torch.rand(p.shape, generator=torch.Generator().manual_seed(0)) > 0.5
                 for n, p in model.named_parameters() if n.endswith("weight")})
    result = train(model, data, CFG, mask=mask, progress=False)
    assert [m["step"] for m in result.metrics] == [0, 25, 50, 75, 100]
    s = result.summary
    best = min(result.metrics, key=lambda m: m["val_loss"])
    assert s["early_stop_step"] == best["step"] and s["early_stop_test_acc"] == best["test_acc"]
    assert s["final_test_acc"] == result.metrics[-1]["test_acc"]
    assert s["final_test_acc"] > 0.5  # 10 classes: chance is 0.1
    params = dict(model.named_parameters())
    for n, m in mask.items():
        assert (params[n][~m] == 0).all(), f"{n}: pruned weights moved"
        assert (params[n][m] != 0).any()


def test_training_is_deterministic_and_leaves_global_rng_alone(data, mlp):
    state = torch.get_rng_state()
    a = train(mlp(data, dropout=0.3), data, CFG, progress=False)
    assert torch.equal(state, torch.get_rng_state())
    b = train(mlp(data, dropout=0.3), data, CFG, progress=False)
    assert a.metrics == b.metrics
    c = train(mlp(data, dropout=0.3), data, TrainConfig(**{**CFG.__dict__, "data_seed": 1}), progress=False)
    assert c.metrics != a.metrics


def test_lth_train_is_the_training_loop_and_the_package(data, mlp):
    import lth
    import lth.train.vmap as vmap  # "import ... as" resolves lth.train by attribute

    assert lth.train.Hooks is Hooks and vmap.VmapStepper is lth.train.vmap.VmapStepper
    a = lth.train(mlp(data), data, CFG, progress=False)
    assert a.metrics == train(mlp(data), data, CFG, progress=False).metrics


class Killed(Exception):
    pass


def test_resume_from_state_is_bit_identical(data, tmp_path, mlp):
    """Interrupt training after a checkpoint, resume from it: same metrics and weights as uninterrupted."""
    reference_model = mlp(data, dropout=0.3)
    reference = train(reference_model, data, CFG, progress=False)

    resume = tmp_path / "resume.pt"

    def die(step, model):
        raise Killed

    with pytest.raises(Killed):
        train(mlp(data, dropout=0.3), data, CFG, progress=False,
              hooks=Hooks(save_at={60: die}, resume_path=resume, checkpoint_seconds=0))
    assert resume.exists()
    # A fresh model with other weights: everything must come from the saved state.
    model = mlp(data, seed=99, dropout=0.3)
    resumed = train(model, data, CFG, progress=False, hooks=Hooks(resume_path=resume, checkpoint_seconds=0))
    assert resumed.metrics == reference.metrics
    for (n, p), q in zip(model.state_dict().items(), reference_model.state_dict().values()):
        assert torch.equal(p, q), n


def test_resuming_with_another_thread_count_warns(data, tmp_path, mlp):
    resume = tmp_path / "resume.pt"

    def die(step, model):
        raise Killed

    with pytest.raises(Killed):
        train(mlp(data), data, CFG, progress=False,
              hooks=Hooks(save_at={60: die}, resume_path=resume, checkpoint_seconds=0))
    state = load_state(resume)
    assert state["threads"] == torch.get_num_threads()
    torch.save({**state, "threads": torch.get_num_threads() + 6}, resume)  # as if checkpointed elsewhere
    with pytest.warns(UserWarning, match=f"checkpointed with {torch.get_num_threads() + 6}"):
        train(mlp(data), data, CFG, progress=False, hooks=Hooks(resume_path=resume, checkpoint_seconds=0))


def test_save_at_named_steps(data, mlp):
    saved = {}
    train(mlp(data), data, CFG, progress=False,
          hooks=Hooks(save_at={0: lambda s, m: saved.setdefault(s, m.fc1.weight.clone()),
                               30: lambda s, m: saved.setdefault(s, m.fc1.weight.clone())}))
    assert set(saved) == {0, 30} and not torch.equal(saved[0], saved[30])


def test_start_step_beyond_budget_is_refused(data, mlp):
    with pytest.raises(ValueError, match="outside the training budget"):
        train(mlp(data), data, CFG, start_step=101, progress=False)


def test_final_train_accuracy_is_measured_on_the_whole_train_split(data, mlp):
    result = train(mlp(data), data, CFG, progress=False)
    acc = result.summary["final_train_acc"]
    assert 0 <= acc <= 1 and not math.isnan(acc)
    assert acc * len(data.train) == pytest.approx(round(acc * len(data.train)))


def test_onednn_linear_equals_pytorchs_and_can_be_turned_off(data, monkeypatch, mlp):
    from lth.train.kernels import fast_kernels, onednn_available

    model = mlp(data)
    x = data.train.x[:37]
    ref = model(x)
    ref_grads = torch.autograd.grad(ref.square().sum(), list(model.parameters()))
    with fast_kernels("cpu"):
        out = model(x)
    grads = torch.autograd.grad(out.square().sum(), list(model.parameters()))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-4)
    assert onednn_available() or not torch.backends.mkldnn.is_available()
    # Off with --compute.kernels torch. Adam turns last-bit differences in near-zero gradients into whole steps,
    # so two trainings that differ only in summation order drift apart slowly: compare loosely.
    fast = train(mlp(data), data, CFG, progress=False, compute=ComputeConfig(chain=False))
    assert not onednn_available("torch")
    plain = train(mlp(data), data, CFG, progress=False, compute=ComputeConfig(chain=False, kernels="torch"))
    for a, b in zip(fast.metrics, plain.metrics):
        assert a["step"] == b["step"] and (a["val_loss"] == pytest.approx(b["val_loss"], rel=2e-2))


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fast_optimizer_step_equals_optimizer_step(name):
    from lth.train.optim import fast_step, make_optimizer

    cfg = TrainConfig(optimizer=name, lr=1e-2, weight_decay=1e-2)
    g = torch.Generator().manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in ((7, 5), (5,), (3, 7))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    opt_a, opt_b = make_optimizer(a, cfg), make_optimizer(b, cfg)
    step = fast_step(opt_b)
    assert step != opt_b.step or not opt_b.param_groups[0].get("fused")
    for i in range(5):
        grads = [torch.randn(p.shape, generator=g) for p in a]
        for p, q, gr in zip(a, b, grads):
            p.grad, q.grad = gr.clone(), gr.clone()
        opt_a.step()
        step()
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    sa, sb = opt_a.state_dict()["state"], opt_b.state_dict()["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sa for k in sa[i])
