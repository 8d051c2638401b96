"""The hand-written MLP pass (lth.train.chain) computes the module's function and its gradients, and the
trainer uses it only where it is exact."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lth.config import ModelConfig, TrainConfig
from lth.models import build_model
from lth.train import train
from lth.train.chain import chain_for, chain_layers, chain_usable


def lenet(seed=0, **options):
    return build_model(ModelConfig(name="lenet_300_100", **options), input_shape=(1, 28, 28), num_classes=10,
                       seed=seed)


def lenet_and_batch(batch: int, seed: int):
    """Full-size LeNet-300-100 (its first layer's products are large enough for oneDNN) and a random batch."""
    g = torch.Generator().manual_seed(seed)
    return lenet(), torch.randn(batch, 1, 28, 28, generator=g), torch.randint(0, 10, (batch,), generator=g)


@pytest.mark.parametrize("kernels", ["auto", "torch"])
def test_forward_and_gradients_match_autograd(kernels):
    model, x, y = lenet_and_batch(64, seed=1)
    params = list(model.parameters())
    ref_logits = model(x)
    ref_grads = torch.autograd.grad(F.cross_entropy(ref_logits, y), params)
    forward = chain_for(model, "cpu", kernels)
    assert forward.onednn == (kernels == "auto" and torch.backends.mkldnn.is_available())
    logits = forward(x)
    grads = torch.autograd.grad(F.cross_entropy(logits, y), params)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    for (name, _), a, b in zip(model.named_parameters(), grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("kernels", ["auto", "torch"])
def test_train_step_is_the_autograd_step_bit_for_bit(kernels):
    # train_step skips the autograd engine but must issue the same operations: the same loss, logits and
    # gradients, exactly, as F.cross_entropy(chain(x), y).backward().
    model, x, y = lenet_and_batch(60, seed=2)
    chain = chain_for(model, "cpu", kernels)
    logits = chain(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    ref = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    step_loss, step_logits = chain.train_step(x, y)
    assert not step_loss.requires_grad and step_loss.shape == ()
    assert torch.equal(step_loss, loss.detach()) and torch.equal(step_logits, logits.detach())
    for (name, p), r in zip(model.named_parameters(), ref):
        assert torch.equal(p.grad, r), name
    with torch.no_grad():  # evaluation: plain products, the same logits
        assert torch.equal(chain(x), logits.detach())


def test_input_gradient_matches_autograd():
    model = lenet(hidden=(20, 10))
    x = torch.randn(8, 784, requires_grad=True)
    (gx_ref,) = torch.autograd.grad(model(x).square().sum(), x)
    (gx,) = torch.autograd.grad(chain_for(model, "cpu")(x).square().sum(), x)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-6)


def test_frozen_layers_get_no_gradient_and_the_rest_match_autograd():
    model = lenet(hidden=(20, 10))
    model.fc1.requires_grad_(False)
    x = torch.randn(8, 784)
    trainable = [p for p in model.parameters() if p.requires_grad]
    ref = torch.autograd.grad(model(x).square().sum(), trainable)
    out = chain_for(model, "cpu")(x).square().sum()
    out.backward()
    assert model.fc1.weight.grad is None and model.fc1.bias.grad is None
    for p, r in zip(trainable, ref):
        torch.testing.assert_close(p.grad, r, rtol=1e-5, atol=1e-6)
    for p in trainable:
        p.grad = None
    y = torch.randint(0, 10, (8,))
    ref = torch.autograd.grad(F.cross_entropy(model(x), y), trainable)
    chain_for(model, "cpu").train_step(x, y)
    assert model.fc1.weight.grad is None and model.fc1.bias.grad is None
    for p, r in zip(trainable, ref):
        torch.testing.assert_close(p.grad, r, rtol=1e-5, atol=1e-6)


def test_only_exact_cases_take_the_chain():
    assert chain_layers(lenet()) is not None
    assert chain_usable(lenet(), "cpu") and not chain_usable(lenet(), "cuda")
    assert chain_layers(lenet(dropout=0.5)) is None  # dropout: the module's own forward draws its masks

    hooked = lenet()
    hooked.register_forward_pre_hook(lambda module, args: None)  # e.g. find_tickets' mask hook
    assert chain_layers(hooked) is None

    class Scaled(nn.Linear):
        def forward(self, x):
            return 2 * super().forward(x)

    swapped = lenet()
    swapped.fc2 = Scaled(300, 100)  # a layer swapped for a subclass changes the function
    assert chain_layers(swapped) is None
    conv = build_model(ModelConfig(name="conv2"), input_shape=(3, 32, 32), num_classes=10, seed=0)
    assert chain_layers(conv) is None
    assert chain_for(conv, "cpu") is None


def test_a_bad_compute_setting_is_refused_before_training(tmp_path):
    from lth.config import ImpConfig, override
    from lth.errors import ConfigError

    with pytest.raises(ConfigError, match="--compute.batch must be auto"):
        override(ImpConfig(), {"compute.batch": "lots"})
    with pytest.raises(ConfigError, match="compute.kernels must be one of auto, onednn, torch"):
        override(ImpConfig(), {"compute.kernels": "mkl"})


def test_training_through_the_chain_matches_the_module(data, mlp):
    from lth.config import ComputeConfig

    cfg = TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="40it", eval_every="20it")
    results = {}
    for chain in (True, False):
        model = mlp(data)
        assert chain_usable(model, "cpu")
        results[chain] = (train(model, data, cfg, device="cpu", progress=False, compute=ComputeConfig(chain=chain)),
                          model)
    (a, ma), (b, mb) = results[True], results[False]
    for ra, rb in zip(a.metrics, b.metrics):
        for key in ("val_loss", "test_loss"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-4), key
    for pa, pb in zip(ma.parameters(), mb.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-3, atol=1e-5)
