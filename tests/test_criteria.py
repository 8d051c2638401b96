"""The criteria registry: each of Zhou et al.'s mask criteria on a hand-made example, a user's own criterion,
and `--prune.criterion` end to end."""

from dataclasses import replace

import pytest
import torch

from lth.errors import ConfigError
from lth.prune import CRITERIA, CriterionContext, Mask, PrunePlan, criterion, prune

# One layer of six weights: initial and trained values chosen so that every criterion keeps a different set.
W_I = torch.tensor([0.9, -0.1, 0.5, -0.8, 0.2, 0.05])
W_F = torch.tensor([1.2, -0.7, 0.1, -0.85, -0.45, 0.6])
PLAN = PrunePlan("layerwise", {"w": 0.5}, {"w": 6})  # keep 3 of 6


def kept(name: str, mask: Mask | None = None) -> list[int]:
    mask = mask or Mask({"w": torch.ones(6, dtype=torch.bool)})
    ctx = CriterionContext(weights={"w": W_F}, initial={"w": W_I}, mask=mask, names=["w"],
                           generator=torch.Generator().manual_seed(0))
    out = prune({"w": W_F}, mask, PLAN, criterion=name, context=ctx)
    return torch.nonzero(out["w"]).flatten().tolist()


@pytest.mark.parametrize("name, expected", [
    ("magnitude", [0, 1, 3]),            # |w_f| = 1.2, .7, .1, .85, .45, .6
    ("large_final", [0, 1, 3]),
    ("small_final", [2, 4, 5]),          # the three smallest |w_f|
    ("large_init", [0, 2, 3]),           # |w_i| = .9, .1, .5, .8, .2, .05
    ("magnitude_increase", [0, 1, 5]),   # |w_f|-|w_i| = .3, .6, -.4, .05, .25, .55
    ("movement", [1, 4, 5]),             # |w_f-w_i| = .3, .6, .4, .05, .65, .55
    # ranks by |w_i|: 5,1,3,4,2,0 and by |w_f|: 5,3,0,4,1,2 -> min: 5,1,0,4,1,0 -> top 3: 0, 3, then 1 (ties at
    # 1: the earlier)
    ("large_init_large_final", [0, 1, 3]),
])
def test_each_criterion_keeps_what_its_definition_says(name, expected):
    assert kept(name) == expected


def test_large_init_large_final_is_the_intersection_of_two_top_sets():
    # Keeping 2: the smallest q with |top-q by |w_i| ∩ top-q by |w_f|| >= 2 is q = 3 ({0, 2, 3} ∩ {0, 1, 3}).
    plan = PrunePlan("layerwise", {"w": 4 / 6}, {"w": 6})
    mask = Mask({"w": torch.ones(6, dtype=torch.bool)})
    ctx = CriterionContext(weights={"w": W_F}, initial={"w": W_I}, mask=mask, names=["w"],
                           generator=torch.Generator())
    out = prune({"w": W_F}, mask, plan, criterion="large_init_large_final", context=ctx)
    assert torch.nonzero(out["w"]).flatten().tolist() == [0, 3]


def test_pruned_weights_stay_pruned_whatever_their_score():
    mask = Mask({"w": torch.tensor([False, True, True, True, True, True])})  # w0 (the best) already pruned
    assert 0 not in kept("magnitude", mask) and len(kept("magnitude", mask)) == 3


def test_random_is_seeded_and_keeps_the_counts():
    a, b = kept("random"), kept("random")
    assert a == b and len(a) == 3


def test_a_criterion_that_needs_theta0_says_so():
    mask = Mask({"w": torch.ones(6, dtype=torch.bool)})
    with pytest.raises(ConfigError, match="'movement' needs initial"):
        prune({"w": W_F}, mask, PLAN, criterion="movement")


def test_unknown_criterion_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown pruning criterion 'biggest'.*magnitude_increase"):
        prune({"w": W_F}, Mask({"w": torch.ones(6, dtype=torch.bool)}), PLAN, criterion="biggest")


def test_a_users_criterion_in_a_few_lines(tiny_cfg):
    @criterion("test_negated_movement")
    def negated_movement(ctx):
        return {n: -(ctx.weights[n] - ctx.initial[n]).abs() for n in ctx.names}

    try:
        assert kept("test_negated_movement") == [0, 2, 3]  # the three that moved least: .3, .4, .05
        from lth.experiments import run_imp

        cfg = replace(tiny_cfg, prune=replace(tiny_cfg.prune, criterion="test_negated_movement"),
                      lottery=replace(tiny_cfg.lottery, levels=1, controls=()))
        store = run_imp(cfg, log=lambda *_: None, progress=False)
        assert [s.branch for s in store.summaries()] == ["ticket", "ticket"]
    finally:
        del CRITERIA["test_negated_movement"]


def test_magnitude_increase_end_to_end_through_the_cli(tmp_path, capsys):
    """`lth run --prune.criterion magnitude_increase` keeps, at level 1, the weights whose magnitude grew most
    in the dense training (checked against the run's own θ_0 and trained weights)."""
    from lth.cli import main
    from lth.fileio import load_weights
    from lth.store import RunStore, Unit

    args = ["run", "--data.dataset", "synthetic", "--model.name", "lenet_300_100", "--model.hidden", "16",
            "--train.budget", "40it", "--train.eval_every", "20it", "--train.batch_size", "50", "--device", "cpu",
            "--lottery.levels", "1", "--lottery.controls", "--prune.criterion", "magnitude_increase", "--quiet",
            "--no-report", "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path / "data")]
    assert main(args) == 0
    assert "magnitude_increase" in capsys.readouterr().out
    [root] = (tmp_path / "runs").iterdir()
    store = RunStore.open(root)
    init = load_weights(store.init_path(0))
    final = load_weights(store.final_path(Unit(0, 0, "ticket")))
    mask = Mask.load(store.mask_path(0, 1))
    w = "fc1.weight"
    growth = final[w].abs() - init[w].abs()
    assert growth[mask[w]].min() >= growth[~mask[w]].max()
    assert mask.kept()[w] == mask.sizes()[w] - round(0.3 * mask.sizes()[w])


def test_the_readme_criterion_registers_through_lth(tmp_path):
    import lth

    @lth.criterion("test_sign_kept")
    def sign_kept(ctx):
        return {n: ctx.weights[n].abs() * (ctx.weights[n].sign() == ctx.initial[n].sign()) for n in ctx.names}

    try:
        # Signs: w_i = +,-,+,-,+,+ and w_f = +,-,+,-,-,+: weight 4 flipped and scores 0.
        assert kept("test_sign_kept") == [0, 1, 3]
        assert 4 not in kept("test_sign_kept")
    finally:
        del CRITERIA["test_sign_kept"]
