import pytest
import torch
from torch import nn

from lth.config import ModelConfig, PruneConfig
from lth.models import build_model
from lth.prune import (
    Mask,
    MaskError,
    PrunePlan,
    kept_after,
    pm_schedule,
    prune,
    random_mask_like,
)

# Frankle & Carbin: LeNet-300-100, layer-wise 20% with the output layer at 10%, rounds 0..18 (facts sheet).
LENET_PM = [100, 80.04, 64.06, 51.28, 41.05, 32.87, 26.32, 21.07, 16.88, 13.52, 10.83, 8.68, 6.95, 5.57,
            4.47, 3.58, 2.87, 2.31, 1.85]


def lenet():
    return build_model(ModelConfig(name="lenet_300_100"), input_shape=(1, 28, 28), num_classes=10, seed=0)


def test_lenet_pm_schedule_matches_paper():
    plan = PrunePlan.for_model(lenet(), PruneConfig(rate=0.2))  # output rate defaults to half: 10%
    assert plan.rates == {"fc1.weight": 0.2, "fc2.weight": 0.2, "fc3.weight": 0.1}
    schedule = pm_schedule(plan.sizes, plan.rates, 18)
    assert [round(p, 2) for p in schedule] == LENET_PM


def test_iterative_pruning_reaches_the_schedule_and_prunes_smallest():
    model = lenet()
    plan = PrunePlan.for_model(model, PruneConfig(rate=0.2))
    mask = Mask.ones_like(model)
    weights = dict(model.named_parameters())
    for level in range(1, 4):
        new = prune(weights, mask, plan)
        assert all((new[n] <= mask[n]).all() for n in mask), "a pruned weight came back"
        mask = new
        assert round(100 * mask.density(), 2) == LENET_PM[level]
    # Every kept weight of a layer is at least as large as every pruned one.
    w, m = weights["fc1.weight"].detach().abs(), mask["fc1.weight"]
    assert w[m].min() >= w[~m].max()


def test_one_shot_counts_equal_iterative_counts():
    model = lenet()
    plan = PrunePlan.for_model(model, PruneConfig(rate=0.2))
    dense = Mask.ones_like(model)
    one_shot = prune(dict(model.named_parameters()), dense, plan, rounds=5)
    assert one_shot.kept() == kept_after(dense.kept(), plan.rates, 5)


def test_global_pruning_with_exclusion():
    model = lenet()
    plan = PrunePlan.for_model(model, PruneConfig(strategy="global", rate=0.5, exclude=("fc3.*",)))
    assert plan.pruned == ["fc1.weight", "fc2.weight"]
    mask = prune(dict(model.named_parameters()), Mask.ones_like(model), plan)
    assert mask.kept()["fc3.weight"] == 1000
    assert mask.kept()["fc1.weight"] + mask.kept()["fc2.weight"] == (235200 + 30000) // 2
    # Global: one threshold across layers.
    ws = dict(model.named_parameters())
    kept = torch.cat([ws[n].detach().abs()[mask[n]] for n in plan.pruned])
    dropped = torch.cat([ws[n].detach().abs()[~mask[n]] for n in plan.pruned])
    assert kept.min() >= dropped.max()


def test_ties_are_broken_by_position():
    w = {"w": torch.ones(10)}
    plan = PrunePlan("layerwise", {"w": 0.3}, {"w": 10})
    mask = prune(w, Mask({"w": torch.ones(10, dtype=torch.bool)}), plan)
    assert mask["w"].tolist() == [True] * 7 + [False] * 3


def test_exclude_pattern_that_matches_nothing_is_an_error():
    with pytest.raises(ValueError, match="matches no prunable weight"):
        PrunePlan.for_model(lenet(), PruneConfig(exclude=("conv*",)))


def test_random_mask_keeps_per_layer_counts():
    model = lenet()
    plan = PrunePlan.for_model(model, PruneConfig(rate=0.2))
    mask = prune(dict(model.named_parameters()), Mask.ones_like(model), plan, rounds=3)
    rand = random_mask_like(mask, torch.Generator().manual_seed(1))
    assert rand.kept() == mask.kept()
    assert rand != mask


def test_mask_save_load_roundtrip_and_wrong_model(tmp_path):
    model = lenet()
    plan = PrunePlan.for_model(model, PruneConfig(rate=0.2))
    mask = prune(dict(model.named_parameters()), Mask.ones_like(model), plan, rounds=2)
    mask.save(tmp_path / "mask.safetensors")
    loaded = Mask.load(tmp_path / "mask.safetensors", model)
    assert loaded == mask and list(loaded) == list(mask)
    assert (tmp_path / "mask.json").exists()
    other = build_model(ModelConfig(name="lenet_300_100", hidden=(100, 50)), input_shape=(1, 28, 28),
                        num_classes=10, seed=0)
    with pytest.raises(MaskError, match="another model"):
        Mask.load(tmp_path / "mask.safetensors", other)


def test_mask_comparisons():
    a = Mask({"w": torch.tensor([1, 1, 0, 0], dtype=torch.bool)})
    b = Mask({"w": torch.tensor([1, 0, 1, 0], dtype=torch.bool)})
    assert a.jaccard(b) == pytest.approx(1 / 3)
    assert a.hamming(b) == pytest.approx(0.5)
    assert a.overlap(b) == pytest.approx(0.5)
    assert a.jaccard(a) == 1.0 and a.hamming(a) == 0.0
    with pytest.raises(MaskError):
        a.jaccard(Mask({"w": torch.ones(5, dtype=torch.bool)}))


def test_apply_zeroes_pruned_weights():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    mask = Mask({"0.weight": torch.rand(3, 4) > 0.5})
    mask.apply_(model)
    assert (model[0].weight[~mask["0.weight"]] == 0).all()
