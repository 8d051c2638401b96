"""A user's own training loop under find_tickets: masks that no optimizer step can revive, late rewinding
through the loop's reports, metrics it logs, and resuming from the state it saves."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lth.config import LotteryConfig, PruneConfig
from lth.errors import ConfigError, UserError
from lth.fileio import load_weights
from lth.lottery import find_tickets
from lth.prune import Mask
from lth.store import Unit


def quiet(*_):
    pass


X, Y = torch.randn(128, 6, generator=torch.Generator().manual_seed(0)), torch.arange(128) % 3


def net():
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


class Steps:
    """A loop of `total` SGD steps with coupled weight decay and gradient clipping (what SB3 does too), that
    reports every step, logs its loss every 5 and checkpoints every step."""

    def __init__(self, total=20, fail_at=None):
        self.total, self.fail_at, self.starts, self.revived = total, fail_at, [], []

    def __call__(self, model, mask, loop):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.1, momentum=0.9)
        step = loop.start_step
        if loop.resume_state is not None:
            opt.load_state_dict(loop.resume_state["optimizer"])
            step = loop.resume_step
        self.starts.append((loop.key, step))
        while step < self.total:
            opt.zero_grad()
            # Call a layer directly (no model.forward, so no forward hook) as SB3's evaluate_actions does.
            loss = nn.functional.cross_entropy(model[2](model[1](model[0](X))), Y)
            loss.backward()
            grad = model[0].weight.grad
            self.revived.append(float(grad[~mask["0.weight"]].abs().sum()))  # pruned weights get no gradient
            nn.utils.clip_grad_norm_(model.parameters(), 0.5)
            opt.step()
            self.revived.append(float(model[0].weight.detach()[~mask["0.weight"]].abs().sum()))
            step += 1
            loop.reached(step)
            if step % 5 == 0:
                loop.log(step, loss=loss.item())
            loop.save_state(step, {"optimizer": opt.state_dict()})
            if self.fail_at is not None and (loop.key, step) == self.fail_at:
                raise KeyboardInterrupt  # as a kill: the state of this step is saved
        return {"final_loss": loss.item()}


def test_no_optimizer_step_revives_a_pruned_weight(tmp_path):
    loop = Steps()
    store = find_tickets(net, loop, name="loop", prune=PruneConfig(rate=0.5), out_dir=str(tmp_path), log=quiet,
                         lottery=LotteryConfig(levels=2, controls=("random_prune",)))
    assert max(loop.revived) == 0.0  # within the loop, after every step (weight decay, momentum included)
    final = load_weights(store.final_path(Unit(0, 2, "ticket")))
    mask = Mask.load(store.mask_path(0, 2))
    assert (final["0.weight"][~mask["0.weight"]] == 0).all() and mask.density() < 0.4
    rows = store.metrics(Unit(0, 1, "ticket"))
    assert [r["step"] for r in rows] == [5, 10, 15, 20] and all(r["loss"] > 0 for r in rows)


def test_late_rewinding_through_the_loop(tmp_path):
    loop = Steps()
    store = find_tickets(net, loop, name="rewind", out_dir=str(tmp_path), log=quiet,
                         lottery=LotteryConfig(levels=1, rewind="3it", controls=("reinit",)))
    assert store.root.name.startswith("rewind-imp-rewind3it-")
    theta_k = load_weights(store.rewind_path(0))
    assert not torch.equal(theta_k["0.weight"], load_weights(store.init_path(0))["0.weight"])
    # Every level starts at step k from θ_k: the loop is told, and the summary records it.
    assert dict(loop.starts) == {"rep0/level00/ticket": 0, "rep0/level01/ticket": 3, "rep0/level01/reinit": 3}
    assert {s.branch: s.start_step for s in store.summaries() if s.level == 1} == {"ticket": 3, "reinit": 3}


def test_rewinding_needs_the_loop_to_report_step_k(tmp_path):
    def two_args(model, mask):
        return {}

    with pytest.raises(ConfigError, match="rewinding needs train_fn\\(model, mask, loop\\)"):
        find_tickets(net, two_args, out_dir=str(tmp_path), log=quiet, lottery=LotteryConfig(rewind="3it"))
    with pytest.raises(ConfigError, match="lth knows no epochs.*e.g. 2it"):
        find_tickets(net, Steps(), out_dir=str(tmp_path), log=quiet, lottery=LotteryConfig(rewind="2ep"))

    def jumps(model, mask, loop):
        loop.reached(2)
        loop.reached(4)

    with pytest.raises(UserError, match="reported step 4 but never step 3"):
        find_tickets(net, jumps, name="jumps", out_dir=str(tmp_path), log=quiet, lottery=LotteryConfig(rewind="3it"))

    def short(model, mask, loop):
        loop.reached(1)

    with pytest.raises(UserError, match="returned without reporting step 3"):
        find_tickets(net, short, name="short", out_dir=str(tmp_path), log=quiet, lottery=LotteryConfig(rewind="3it"))


def test_a_killed_loop_resumes_from_its_saved_state_bit_for_bit(tmp_path):
    lottery = LotteryConfig(levels=1, rewind="3it", controls=("reinit",))
    clean = find_tickets(net, Steps(), name="clean", out_dir=str(tmp_path / "a"), log=quiet, lottery=lottery)
    killed = Steps(fail_at=("rep0/level01/ticket", 12))
    with pytest.raises(KeyboardInterrupt):
        find_tickets(net, killed, name="clean", out_dir=str(tmp_path / "b"), log=quiet, lottery=lottery)
    resumed = Steps()
    store = find_tickets(net, resumed, name="clean", out_dir=str(tmp_path / "b"), log=quiet, lottery=lottery)
    assert resumed.starts[0] == ("rep0/level01/ticket", 12)  # the dense training was finished and skipped
    for unit in (Unit(0, 0, "ticket"), Unit(0, 1, "ticket")):
        assert store.summary(unit).extra == clean.summary(unit).extra
        assert store.metrics(unit) == clean.metrics(unit)
        a, b = load_weights(store.final_path(unit)), load_weights(clean.final_path(unit))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not store.resume_path(Unit(0, 1, "ticket")).exists()


def test_a_loop_that_logs_its_own_test_accuracy_is_not_damaged(tmp_path):
    """A user's loop may log a test accuracy other than the final one it returns (its last log comes before
    its final evaluation): the run folder is not damaged, and its report is written."""
    from lth.report import build_report

    def train_fn(model, mask, loop):
        loop.log(10, test_acc=0.4)
        return {"final_test_acc": 0.5}

    store = find_tickets(net, train_fn, name="logs", out_dir=str(tmp_path), log=quiet,
                         lottery=LotteryConfig(levels=1, controls=()))
    assert store.metrics(Unit(0, 1, "ticket"))[-1]["test_acc"] == 0.4
    assert build_report([store.root], tmp_path / "report").figures
