"""Criteria for pruning at initialization, pinned on a 2-layer MLP whose scores can be computed by hand (3 inputs,
2 hidden ReLU units, 2 outputs, zero biases), plus SynFlow's invariances, the iterative schedule, inversion, and
refusals of criteria an experiment cannot feed."""

import math

import pytest
import torch

from lth.errors import ConfigError
from lth.models.mlp import MLP
from lth.prune import (
    CRITERIA,
    CriterionContext,
    Mask,
    PrunePlan,
    check_criterion,
    score_and_select,
)
from lth.prune.criteria.init import GRASP_TEMPERATURE, smart_ratio_counts
from lth.prune.select import exponential_counts

W1 = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0]])
W2 = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
X = torch.tensor([[1.0, 0.0, 1.0]])  # both hidden units active: z1 = W1 x = (1.5, 1)
Y = torch.tensor([0])
NAMES = ["fc1.weight", "fc2.weight"]


def net(w1=W1, w2=W2) -> MLP:
    m = MLP(3, (2,), 2)
    with torch.no_grad():
        m.fc1.weight.copy_(w1), m.fc2.weight.copy_(w2)
        m.fc1.bias.zero_(), m.fc2.bias.zero_()
    return m


def context(model: MLP, batches=None, **kw) -> CriterionContext:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return CriterionContext(weights=state, initial=kw.pop("initial", state), mask=Mask.ones_like(model),
                            names=NAMES, generator=torch.Generator().manual_seed(0),
                            build=lambda: MLP(3, (2,), 2), batches=batches, input_shape=(3,), **kw)


def one_batch():
    while True:
        yield X, Y


def closed_form_grads(w1, w2, x, y, temperature=1.0):
    """∂L/∂W1, ∂L/∂W2 of cross-entropy(W2 relu(W1 x) / T) written out: δ = (softmax − onehot) / T."""
    z = w1 @ x[0]
    h = z.clamp(min=0)
    p = torch.softmax(w2 @ h / temperature, 0)
    delta = (p - torch.nn.functional.one_hot(y[0], 2).to(p.dtype)) / temperature
    g2 = torch.outer(delta, h)
    g1 = torch.outer((w2.t() @ delta) * (z > 0).to(p.dtype), x[0])
    return g1, g2


def test_synflow_scores_by_hand():
    # |θ| on an all-ones input: h = |W1|·1 = (3.5, 4); R = 1ᵀ|W2| h. ∂R/∂|W2|_ki = h_i, ∂R/∂|W1|_ij = colsum(|W2|)_i.
    scores = CRITERIA["synflow"](context(net()))
    assert torch.allclose(scores["fc2.weight"], torch.tensor([[3.5, 4.0], [1.75, 8.0]], dtype=torch.float64))
    assert torch.allclose(scores["fc1.weight"], torch.tensor([[1.5, 3.0, 0.75], [3.0, 3.0, 6.0]],
                                                             dtype=torch.float64))


def test_snip_scores_by_hand():
    g1, g2 = closed_form_grads(W1, W2, X, Y)
    raw = {"fc1.weight": (W1 * g1).abs(), "fc2.weight": (W2 * g2).abs()}
    total = sum(v.sum() for v in raw.values())
    scores = CRITERIA["snip"](context(net(), one_batch, extra={"batches": 1}))
    for n in NAMES:
        assert torch.allclose(scores[n], raw[n] / total, atol=1e-6)
    # The first input's weights and the third's get the same |gradient| (x = 1, 0, 1): the middle input none.
    assert scores["fc1.weight"][:, 1].abs().sum() == 0


def test_snip_sums_the_gradient_over_its_batches():
    batches = [(X, Y), (torch.tensor([[0.5, 1.0, 1.0]]), torch.tensor([1]))]
    g = [sum(t) for t in zip(*(closed_form_grads(W1, W2, x, y) for x, y in batches))]
    raw = {"fc1.weight": (W1 * g[0]).abs(), "fc2.weight": (W2 * g[1]).abs()}
    total = sum(v.sum() for v in raw.values())
    scores = CRITERIA["snip"](context(net(), lambda: iter(batches), extra={"batches": 2}))
    for n in NAMES:
        assert torch.allclose(scores[n], raw[n] / total, atol=1e-6)


def test_grasp_is_theta_times_hessian_gradient_product_at_temperature_200():
    """Hg by central differences of the written-out gradient (float64), independent of autograd."""
    w1, w2 = W1.double(), W2.double()
    g1, g2 = closed_form_grads(w1, w2, X.double(), Y, GRASP_TEMPERATURE)
    eps = 1e-4
    plus = closed_form_grads(w1 + eps * g1, w2 + eps * g2, X.double(), Y, GRASP_TEMPERATURE)
    minus = closed_form_grads(w1 - eps * g1, w2 - eps * g2, X.double(), Y, GRASP_TEMPERATURE)
    hg = [(p - m) / (2 * eps) for p, m in zip(plus, minus)]
    raw = {"fc1.weight": w1 * hg[0], "fc2.weight": w2 * hg[1]}
    norm = abs(sum(v.sum() for v in raw.values()))
    scores = CRITERIA["grasp"](context(net(), one_batch, extra={"batches": 1}))
    for n in NAMES:
        assert torch.allclose(scores[n].double(), raw[n] / norm, rtol=1e-3, atol=1e-5)


def test_grasp_keeps_the_highest_theta_hg_that_is_removes_the_highest_minus_theta_hg():
    model = net()
    ctx = context(model, one_batch, extra={"batches": 1})
    scores = CRITERIA["grasp"](ctx)
    plan = PrunePlan("global", {n: 0.5 for n in NAMES}, {"fc1.weight": 6, "fc2.weight": 4})
    mask = score_and_select("grasp", ctx, plan, 4)
    flat = torch.cat([scores[n].flatten() for n in NAMES])
    kept = torch.cat([mask[n].flatten() for n in NAMES])
    assert flat[kept].min() >= flat[~kept].max()


def test_magnitude_init_reads_theta0_not_the_weights():
    model = net()
    initial = {"fc1.weight": -W1.flip(1), "fc2.weight": W2.flip(0), "fc1.bias": torch.zeros(2),
               "fc2.bias": torch.zeros(2)}
    scores = CRITERIA["magnitude_init"](context(model, initial=initial))
    assert torch.equal(scores["fc1.weight"], W1.flip(1).abs()) and torch.equal(scores["fc2.weight"], W2.flip(0).abs())


def _mlp(seed=0, hidden=(16, 12)):
    from lth.config import ModelConfig
    from lth.models import build_model

    return build_model(ModelConfig(name="lenet_300_100", hidden=hidden, init="kaiming_normal"), input_shape=(8,),
                       num_classes=4, seed=seed)


def _synflow_mask(model, batches=None, keep=60):
    plan = PrunePlan("global", {n: 0.5 for n in ("fc1.weight", "fc2.weight", "fc3.weight")},
                     {n: p.numel() for n, p in model.named_parameters() if n.endswith("weight")}, "fc3.weight")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ctx = CriterionContext(weights=state, initial=state, mask=Mask.ones_like(model), names=plan.pruned,
                           generator=torch.Generator().manual_seed(1), build=lambda: _mlp(), batches=batches,
                           input_shape=(8,), plan=plan, counts=keep)
    return score_and_select("synflow", ctx, plan, keep), ctx


def test_synflow_needs_no_data_and_ignores_it():
    model = _mlp()

    def noise():
        g = torch.Generator().manual_seed(5)
        while True:
            yield torch.randn(10, 8, generator=g), torch.randint(0, 4, (10,), generator=g)

    without, _ = _synflow_mask(model)
    with_data, _ = _synflow_mask(model, noise)
    assert without == with_data
    assert sum(without.kept().values()) == 60
    assert "batches" not in __import__("lth.prune", fromlist=["criterion_spec"]).criterion_spec("synflow").needs


@pytest.mark.parametrize("c", [4.0, 3.0])
def test_synflow_is_invariant_to_rescaling_one_layer_by_c_and_the_next_by_1_over_c(c):
    model = _mlp()
    scaled = _mlp()
    with torch.no_grad():
        scaled.fc1.weight.mul_(c)
        scaled.fc2.weight.div_(c)
    a, ctx_a = _synflow_mask(model)
    b, ctx_b = _synflow_mask(scaled)
    sa, sb = CRITERIA["synflow"](ctx_a), CRITERIA["synflow"](ctx_b)
    for n in sa:
        assert torch.allclose(sa[n], sb[n], rtol=1e-6, atol=0)  # the float32 weights round c·w and w/c
    if c == 4.0:  # a power of two rescales exactly: the 100 rounds select the very same weights
        assert a == b


def test_synflow_iterates_100_rounds_on_an_exponential_schedule():
    from lth.prune import criterion_spec

    assert criterion_spec("synflow").iterations == 100 and criterion_spec("snip").iterations == 1
    plan = PrunePlan("global", {"w": 0.5}, {"w": 1000})
    mask = Mask({"w": torch.ones(1000, dtype=torch.bool)})
    counts = exponential_counts(mask, plan, 10, 4)
    assert counts == [round(1000 * 0.01 ** (j / 4)) for j in (1, 2, 3)] + [10] == [316, 100, 32, 10]
    assert exponential_counts(mask, plan, 10, 1) == [10]
    seen = []

    @__import__("lth.prune", fromlist=["criterion"]).criterion("test_counting", iterations=5)
    def counting(ctx):
        seen.append(int(ctx.mask["w"].sum()))
        return {"w": torch.arange(1000.0)}

    try:
        ctx = CriterionContext(weights={"w": torch.zeros(1000)}, mask=mask, names=["w"], generator=torch.Generator())
        out = score_and_select("test_counting", ctx, plan, 10)
        assert seen == [1000] + [round(1000 * 0.01 ** (j / 5)) for j in range(1, 5)]
        assert torch.nonzero(out["w"]).flatten().tolist() == list(range(990, 1000))
        inverted = score_and_select("test_counting", ctx, plan, 10, invert=True)
        assert torch.nonzero(inverted["w"]).flatten().tolist() == list(range(10))
    finally:
        del CRITERIA["test_counting"]


def test_smart_ratio_counts_follow_su_et_al():
    sizes = {"fc1": 100, "fc2": 50, "fc3": 20}
    # The classifier keeps 30%; fc1 and fc2 keep fractions 6 : 2 ((L-l+1)^2 + (L-l+1), L = 2) filling the rest.
    assert smart_ratio_counts(sizes, 56, "fc3") == {"fc1": 43, "fc2": 7, "fc3": 6}
    # fc1 would keep more than all of itself: it keeps everything and the rest goes to fc2.
    assert smart_ratio_counts(sizes, 126, "fc3") == {"fc1": 100, "fc2": 20, "fc3": 6}
    three = smart_ratio_counts({"a": 1000, "b": 1000, "c": 1000}, 600, None)  # 12 : 6 : 2, no classifier apart
    assert three == {"a": 360, "b": 180, "c": 60}


def test_smart_ratio_mask_has_those_counts_at_random_positions():
    model = _mlp(hidden=(30, 20))
    sizes = {n: p.numel() for n, p in model.named_parameters() if n.endswith("weight")}
    plan = PrunePlan("global", {n: 0.5 for n in sizes}, sizes, "fc3.weight")
    state = model.state_dict()
    ctx = CriterionContext(weights=state, mask=Mask.ones_like(model), names=list(sizes), plan=plan, counts=150,
                           generator=torch.Generator().manual_seed(0))
    mask = score_and_select("smart_ratio", ctx, plan, 150)
    assert mask.kept() == smart_ratio_counts(sizes, 150, "fc3.weight")
    other = score_and_select("smart_ratio", CriterionContext(**{**ctx.__dict__,
                                                                "generator": torch.Generator().manual_seed(1)}),
                             plan, 150)
    assert other.kept() == mask.kept() and other != mask


def test_criteria_an_experiment_cannot_feed_are_refused_with_the_fix():
    with pytest.raises(ConfigError, match="'grasp' needs training batches.*choose another --prune.criterion"):
        check_criterion("grasp", {"initial", "build"}, where="find_tickets")
    with pytest.raises(ConfigError, match="'synflow' needs the input shape"):
        check_criterion("synflow", {"build"})
    with pytest.raises(ConfigError, match="global selection"):
        check_criterion("smart_ratio", {"plan", "counts"}, strategy="layerwise")
    with pytest.raises(ConfigError, match="unknown pruning criterion 'snipp'"):
        check_criterion("snipp", set())
    check_criterion("snip", {"build", "batches"})  # fed: no error


def test_grasp_on_a_users_model_without_data_is_refused_before_training(tmp_path):
    from torch import nn

    from lth.config import LotteryConfig, PruneConfig
    from lth.experiments import find_tickets

    calls = []
    with pytest.raises(ConfigError, match="'grasp' needs training batches.*find_tickets"):
        find_tickets(lambda: nn.Sequential(nn.Linear(4, 3)), lambda model, mask: calls.append(1),
                     prune=PruneConfig(criterion="grasp"), lottery=LotteryConfig(levels=1),
                     out_dir=str(tmp_path), log=lambda *_: None)
    assert calls == [] and not list(tmp_path.rglob("summary.json"))


def test_imp_can_prune_with_synflow(tiny_cfg):
    from dataclasses import replace

    from lth.experiments import run_imp

    cfg = replace(tiny_cfg, prune=replace(tiny_cfg.prune, criterion="synflow", strategy="global"),
                  lottery=replace(tiny_cfg.lottery, levels=1, controls=()))
    store = run_imp(cfg, progress=False, log=lambda *_: None)
    mask = Mask.load(store.mask_path(0, 1))
    assert math.isclose(mask.density(), 0.5, abs_tol=1e-3)


def test_linear_time_selection_equals_a_stable_sort():
    """_keep_top (k-th value, then the earliest ties) keeps what the first k of a stable descending sort keep."""
    from lth.prune.select import _keep_top

    g = torch.Generator().manual_seed(0)
    for trial in range(300):
        n = int(torch.randint(1, 40, (1,), generator=g))
        scores = torch.randint(0, 4, (n,), generator=g).float() if trial % 2 else torch.randn(n, generator=g)
        if trial % 3 == 0:  # a diverged network: NaN ranks below every number, above the pruned (-inf)
            scores[torch.rand(n, generator=g) < 0.3] = torch.nan
        alive = torch.rand(n, generator=g) < 0.7
        k = int(torch.randint(0, n + 1, (1,), generator=g))
        ranked = torch.where(alive, scores.nan_to_num(nan=torch.finfo(scores.dtype).min), -torch.inf)
        expected = torch.zeros(n, dtype=torch.bool)
        expected[torch.sort(ranked, descending=True, stable=True).indices[:k]] = True
        assert torch.equal(_keep_top(scores, alive, k), expected)
        assert int(_keep_top(scores, alive, k).sum()) == k
