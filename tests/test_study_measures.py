"""The measurements behind the ticket studies, pinned to facts: the interpolation path and its error barrier
(Frankle et al. 2020), Zhu & Gupta's cubic schedule and the stepper that follows it, and You et al.'s
early-bird stop."""

import pytest
import torch

from lth.config import ComputeConfig, PruneConfig, TrainConfig
from lth.prune import Mask


# -- interpolation ---------------------------------------------------------------------------------------
def trained(data, mlp, data_seed: int, steps: str = "40it"):
    from lth.train import train

    net = mlp(data, seed=0)
    train(net, data, TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget=steps, eval_every=steps,
                                 data_seed=data_seed), progress=False)
    return net


def test_barrier_of_two_identical_networks_is_zero(data, mlp):
    from lth.train.interpolate import interpolate

    net = trained(data, mlp, 0)
    path = interpolate(lambda: mlp(data), net.state_dict(), net.state_dict(), data.test.x, data.test.y, points=30)
    assert len(path.errors) == 30 and len(set(path.errors)) == 1
    assert path.barrier == 0.0


def test_path_ends_are_the_two_networks(data, mlp):
    from lth.train import evaluate
    from lth.train.interpolate import alphas, error_barrier, interpolate

    a, b = trained(data, mlp, 0, "20it"), trained(data, mlp, 1, "20it")
    path = interpolate(lambda: mlp(data), a.state_dict(), b.state_dict(), data.test.x, data.test.y, points=30)
    for net, error, loss in ((a, path.errors[0], path.losses[0]), (b, path.errors[-1], path.losses[-1])):
        net_loss, acc = evaluate(net, data.test.x, data.test.y)
        assert error == 1 - acc.item() and loss == net_loss.item()
    assert path.alphas == alphas(30) and path.alphas[0] == 0.0 and path.alphas[-1] == 1.0
    assert path.alphas[1] == pytest.approx(1 / 29)
    assert path.barrier == error_barrier(path.errors) >= 0
    assert error_barrier([0.1, 0.5, 0.2]) == pytest.approx(0.35)


def test_two_masked_networks_stay_on_their_mask_along_the_path(data, mlp):
    from lth.train.interpolate import blend

    a, b = mlp(data, seed=1).state_dict(), mlp(data, seed=2).state_dict()
    keep = torch.rand_like(a["fc1.weight"]) > 0.5
    a["fc1.weight"] *= keep
    b["fc1.weight"] *= keep
    assert not blend(a, b, 0.3)["fc1.weight"][~keep].any()


# -- gradual pruning ----------------------------------------------------------------------------------------
def test_cubic_schedule_at_start_midpoint_and_end():
    from lth.prune.gradual import GradualSchedule, cubic_sparsity

    t0, n, dt, s_i, s_f = 100, 10, 50, 0.1, 0.9
    assert cubic_sparsity(t0, t0, n, dt, s_i, s_f) == s_i
    assert cubic_sparsity(t0 + n * dt // 2, t0, n, dt, s_i, s_f) == pytest.approx(s_f + (s_i - s_f) / 8)
    assert cubic_sparsity(t0 + n * dt, t0, n, dt, s_i, s_f) == s_f
    assert cubic_sparsity(10_000, t0, n, dt, s_i, s_f) == s_f and cubic_sparsity(0, t0, n, dt, s_i, s_f) == s_i

    schedule = GradualSchedule.spanning(100, 620, 50, {"w": 37}, {"w": 1000})
    assert (schedule.n, schedule.end) == (10, 600)
    assert [t for t in range(700) if schedule.is_update(t)] == list(range(100, 601, 50))
    assert schedule.counts(100) == {"w": 1000} and schedule.counts(600) == {"w": 37}
    assert schedule.counts(350)["w"] == 1000 - round((0.963 - 0.963 / 8) * 1000)
    counts = [schedule.counts(t)["w"] for t in range(100, 601, 50)]
    assert counts == sorted(counts, reverse=True)  # never regrows
    assert GradualSchedule.spanning(0, 100, 10, 250, {"a": 600, "b": 400}).counts(100) == 250  # global


def test_gradual_stepper_resumes_exactly_with_its_mask(data, mlp, tmp_path):
    from lth.prune import PrunePlan
    from lth.prune.gradual import GradualSchedule
    from lth.train.gradual import GradualChainStepper, GradualStepper, gradual_stepper
    from lth.train.loop import Hooks, Member, run_loop

    class Killed(Exception):
        pass

    cfg = TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="60it", eval_every="10it")
    plan = PrunePlan.for_model(mlp(data), PruneConfig(rate=0.5))
    final = plan.target_counts(Mask.ones_like(mlp(data)), rounds=2)
    schedule = GradualSchedule.spanning(10, 40, 5, final, {n: plan.sizes[n] for n in plan.pruned})

    def run(resume, kill_at=None, chain=True):
        net = mlp(data)
        stepper = gradual_stepper(net, cfg, device=torch.device("cpu"), compute=ComputeConfig(chain=chain),
                                  schedule=schedule, plan=plan)
        hooks = Hooks(resume_path=resume, checkpoint_seconds=0,
                      save_at={kill_at: lambda s, m: (_ for _ in ()).throw(Killed)} if kill_at else {})
        result = run_loop(stepper, [Member(net, cfg, None, hooks)], data)[0]
        return stepper, net, result

    stepper, net, clean = run(None)
    assert type(stepper) is GradualChainStepper and type(run(None, chain=False)[0]) is GradualStepper
    assert stepper.mask.kept() == final
    assert all(not net.state_dict()[n][~stepper.mask[n]].any() for n in stepper.mask)
    with pytest.raises(Killed):
        run(tmp_path / "r.pt", kill_at=27)  # mid-schedule: the last checkpoint (step 20) holds a partial mask
    assert torch.load(tmp_path / "r.pt", weights_only=False)["step"] == 20
    resumed_stepper, resumed, again = run(tmp_path / "r.pt")
    assert resumed_stepper.mask == stepper.mask
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in net.state_dict().items())
    assert again.metrics == clean.metrics


# -- early-bird -----------------------------------------------------------------------------------------------
def masks(*rows: str) -> list[Mask]:
    """Hand-made masks of 10 weights: '1' kept, '0' pruned."""
    return [Mask({"w": torch.tensor([c == "1" for c in row])}) for row in rows]


def test_early_bird_stops_once_the_window_has_settled():
    from lth.prune.early_bird import early_bird

    sequence = masks("1111100000",   # 0
                     "0000011111",   # 1: far from 0
                     "1111100000",   # 2
                     "1111010000",   # 3: 0.2 from 2
                     "1111010000",   # 4: window 2..4 has 0.2 (4 vs 2)
                     "1111010000",   # 5: window 3..5 all 0 -> drawn here (window 3)
                     "0000011111")
    bird = early_bird(sequence, eps=0.1, window=3)
    assert bird.index == 5
    assert bird.distances[:2] == [None, None] and bird.distances[2] == 1.0 and bird.distances[4] == 0.2
    assert early_bird(sequence, eps=0.2, window=3).index == 4   # at most ε: 0.2 passes
    assert early_bird(sequence, eps=0.1, window=5).index is None  # the window of 5 never settles
    assert early_bird(sequence[:5], eps=0.1, window=3).index is None


def test_early_bird_distance_is_normalized_over_all_weights():
    from lth.prune.early_bird import window_distances

    a = Mask({"x": torch.tensor([True, False]), "y": torch.ones(8, dtype=torch.bool)})
    b = Mask({"x": torch.tensor([False, True]), "y": torch.ones(8, dtype=torch.bool)})
    assert window_distances([a, b], window=2) == [None, 0.2]


def test_gradual_early_stop_skips_the_evaluation_before_the_last_update():
    """The evaluation at step `end` follows the step at index end − 1, before the last mask update: it is one
    update short of the final sparsity, so it may not be the early stop even where its loss is lowest."""
    from types import SimpleNamespace

    from lth.experiments.gradual import pruned_early_stop

    rows = [{"step": s, "val_loss": loss, "val_acc": 0.5, "test_acc": 0.5, "test_loss": loss}
            for s, loss in ((0, 0.1), (100, 0.2), (200, 0.05), (300, 0.3), (400, 0.4))]
    result = SimpleNamespace(metrics=rows, summary={"final_train_loss": 0.3, "final_train_acc": 0.9})
    assert pruned_early_stop(result, end=200)["early_stop_step"] == 300


def test_gradual_mask_never_regrows_where_the_final_sparsity_is_below_the_initial():
    from lth.prune.gradual import GradualSchedule

    schedule = GradualSchedule(0, 4, 10, {"a": 80, "b": 20}, {"a": 100, "b": 100}, initial_sparsity=0.5)
    kept = [schedule.counts(t) for t in range(0, 50, 10)]
    assert [k["a"] for k in kept] == [80] * 5  # final sparsity 0.2 < s_i 0.5: it starts (and stays) there
    assert [k["b"] for k in kept][0] == 50 and kept[-1]["b"] == 20
    assert all(x >= y for x, y in zip([k["b"] for k in kept], [k["b"] for k in kept][1:]))
