"""Strong tickets: edge-popup keeps exactly round(k·n) weights per layer, no weight changes while a mask trains,
the straight-through gradients are the papers', k is refused outside (0, 1], and the `supermask` experiment
records, reports and resumes after a kill with identical results."""

import json
from dataclasses import replace

import pytest
import torch
from resume_check import kill_and_resume

from lth.config import (
    DataConfig,
    ModelConfig,
    SupermaskConfig,
    SupermaskSection,
    TrainConfig,
)
from lth.errors import ConfigError
from lth.train.supermask import (
    SCORES,
    BernoulliStepper,
    EdgePopupStepper,
    kept_count,
    learned_mask,
    split_state,
)

CPU = torch.device("cpu")
TRAIN = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4, schedule="cosine", batch_size=50,
                    budget="40it", eval_every="20it")


def quiet(*_):
    pass


def make(data, mlp, stepper=EdgePopupStepper, k=0.33, hidden=None):
    from lth.models import build_model

    model = mlp(data) if hidden is None else build_model(
        ModelConfig(name="lenet_300_100", hidden=hidden, init="signed_kaiming_constant"),
        input_shape=data.input_shape, num_classes=data.num_classes, seed=0)
    return model, stepper(model, TRAIN, None, device=CPU, k=k, seed=3)


def test_edge_popup_uses_exactly_round_k_n_weights_of_every_layer(data, mlp):
    model, stepper = make(data, mlp, hidden=(37, 23), k=0.33)
    masks = stepper.masks(True)
    for n, p in (("fc1.weight", 37 * 16 * 16), ("fc2.weight", 23 * 37), ("fc3.weight", 10 * 23)):
        assert masks[n].shape == dict(model.named_parameters())[n].shape
        assert int(masks[n].sum()) == kept_count(0.33, p) == round(0.33 * p)
        # the kept ones are those of largest |score|
        s = stepper.score(n).detach().abs()
        assert s[masks[n].bool()].min() >= s[~masks[n].bool()].max()
    # the forward pass multiplies exactly those weights in: a network holding θ ⊙ M gives the same logits
    x = data.val.x[:5]
    import copy

    reference = copy.deepcopy(model)  # its forward ignores the scores it carries
    with torch.no_grad():
        for n, m in masks.items():
            dict(reference.named_parameters())[n].mul_(m)
    logits = stepper._gradients(x, data.val.y[:5])[1]
    assert torch.allclose(logits, reference(x), atol=1e-5)


def test_ties_still_keep_exactly_round_k_n():
    from lth.train.supermask import _TopK

    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.5, 2.0])
    mask = _TopK.apply(scores, 3)
    assert mask.tolist() == [0, 1, 1, 1, 0, 0]  # ties at the threshold: the earliest


@pytest.mark.parametrize("stepper", [EdgePopupStepper, BernoulliStepper])
def test_weights_do_not_change_while_a_mask_trains(data, mlp, stepper):
    from lth.train.loop import Member, run_loop

    model, st = make(data, mlp, stepper, k=0.5)
    before_w, before_s = split_state({k: v.clone() for k, v in model.state_dict().items()})
    [result] = run_loop(st, [Member(model, TRAIN)], data, progress=False)
    after_w, after_s = split_state(model.state_dict())
    assert before_w.keys() == after_w.keys() and all(torch.equal(before_w[k], after_w[k]) for k in before_w)
    assert any(not torch.equal(before_s[k], after_s[k]) for k in before_s)  # the scores did train
    assert set(st.trainable_parameters()) == set(getattr(model, SCORES).parameters())
    assert result.summary["iterations"] == 40


def test_straight_through_gradients():
    """edge-popup: ∂L/∂s = sign(s) ⊙ ∂L/∂(θ⊙M) ⊙ θ; Bernoulli: ∂L/∂m = σ'(m) ⊙ ∂L/∂(θ⊙M) ⊙ θ."""
    from lth.models.mlp import MLP

    torch.manual_seed(0)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    for cls in (EdgePopupStepper, BernoulliStepper):
        model = MLP(6, (5,), 3)
        st = cls(model, TRAIN, None, device=CPU, k=0.4, seed=1)
        torch.manual_seed(7)
        st._gradients(x, y)
        torch.manual_seed(7)  # the same Bernoulli draw
        masks = {n: m.detach() for n, m in st.masks(True).items()}
        eff = {n: (st.weights[n] * masks[n]).requires_grad_() for n in st.names}
        loss = torch.nn.functional.cross_entropy(torch.func.functional_call(model, eff, (x,)), y)
        grads = dict(zip(eff, torch.autograd.grad(loss, list(eff.values()))))
        for n in st.names:
            s = st.score(n).detach()
            local = s.sign() if cls is EdgePopupStepper else torch.sigmoid(s) * (1 - torch.sigmoid(s))
            assert torch.allclose(st.score(n).grad, local * grads[n] * st.weights[n], atol=1e-6)


@pytest.mark.parametrize("k, message", [((0.0,), r"in \(0, 1\]"), ((1.5,), r"in \(0, 1\]"), ((-0.1, 0.5), r"in \(0, 1\]")])
def test_k_outside_0_1_is_refused_naming_the_flag(k, message):
    with pytest.raises(ConfigError, match="--supermask.k must be kept fractions " + message):
        SupermaskSection(k=k).check()
    SupermaskSection(k=(1.0,)).check()  # keeping everything is allowed for edge-popup


def test_methods_may_be_none_but_not_unknown_or_twice():
    SupermaskSection(methods=()).check()  # the dense, untrained and large_final networks only
    for methods in (("edge_popup", "edge_popup"), ("popup",)):
        with pytest.raises(ConfigError, match="--supermask.methods must name some of edge_popup, bernoulli"):
            SupermaskSection(methods=methods).check()


def test_bernoulli_needs_an_initial_keep_probability_below_1():
    with pytest.raises(ConfigError, match="bernoulli.*below 1"):
        SupermaskSection(k=(0.5, 1.0), methods=("bernoulli",)).check()


def tiny(tmp_path, **supermask) -> SupermaskConfig:
    return SupermaskConfig(data=DataConfig(dataset="synthetic", data_dir=str(tmp_path / "data")),
                           model=ModelConfig(name="lenet_300_100", hidden=(32, 16), init="signed_kaiming_constant"),
                           train=TRAIN, supermask=SupermaskSection(**supermask), out_dir=str(tmp_path / "runs"),
                           device="cpu")


def test_a_k_that_keeps_no_weight_of_a_layer_is_refused_before_training(tmp_path):
    from lth.experiments import launch

    with pytest.raises(ConfigError, match="keeps round.*= 0 weights of layer fc3.weight"):
        launch(tiny(tmp_path, k=(0.5, 0.001)), progress=False, log=quiet)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("summary.json"))


def test_supermask_run_records_levels_and_learned_masks(tmp_path):
    from lth.experiments import launch
    from lth.fileio import load_weights
    from lth.prune import Mask
    from lth.store import Unit

    store = launch(tiny(tmp_path, k=(0.2, 0.6), methods=("edge_popup", "bernoulli")), progress=False, log=quiet)
    keys = {(s.level, s.branch) for s in store.summaries()}
    assert keys == {(0, "dense"), (0, "untrained")} | {(lv, b) for lv in (1, 2)
                                                       for b in ("edge_popup", "bernoulli", "large_final")}
    init = load_weights(store.init_path(0))
    for level, k in ((1, 0.2), (2, 0.6)):
        mask = Mask.load(store.unit_mask_path(Unit(0, level, "edge_popup")))
        assert mask.kept() == {n: round(k * t.numel()) for n, t in mask.items()}
        scores = load_weights(store.unit_dir(Unit(0, level, "edge_popup")) / "scores.safetensors")
        assert Mask(learned_mask("edge_popup", scores, k)) == mask
        s = store.summary(Unit(0, level, "edge_popup"))
        assert s.remaining_percent == pytest.approx(100 * mask.density()) and s.extra["k"] == k
        # large_final: the trained dense network's largest weights per layer, on the untrained θ_0
        trained = load_weights(store.final_path(Unit(0, 0, "dense")))
        lf = Mask.load(store.unit_mask_path(Unit(0, level, "large_final")))
        for n in lf:
            kept, dropped = trained[n].abs()[lf[n]], trained[n].abs()[~lf[n]]
            assert len(kept) == round(k * lf[n].numel()) and kept.min() >= dropped.max()
        assert store.summary(Unit(0, level, "large_final")).iterations == 0
    assert not torch.equal(init["fc1.weight"], trained["fc1.weight"])
    # θ_0 is the signed Kaiming constant ±sqrt(2 / fan_in), and learning the masks left it as it was
    assert torch.allclose(init["fc1.weight"].abs(), torch.full((32, 256), (2 / 256) ** 0.5))
    assert json.loads((store.root / "plan.json").read_text())["k"] == [0.2, 0.6]


def test_sigkill_mid_training_then_resume_equals_uninterrupted(tmp_path):
    # The Bernoulli supermask draws its masks from the global generator: the resumed draws must be the same.
    cfg = tiny(tmp_path, k=(0.5,), methods=("bernoulli",))
    cfg = replace(cfg, model=replace(cfg.model, hidden=(128, 64)),
                  train=replace(cfg.train, budget="200it", eval_every="10it"), checkpoint_seconds=0.0)
    kill_and_resume("supermask", cfg, tmp_path, "level01/bernoulli/resume.pt")
