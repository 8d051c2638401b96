"""lth.models: architectures against the facts sheet, initializers, introspection, and config errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lth.config import ModelConfig
from lth.models import (
    INITIALIZERS,
    MODELS,
    build_model,
    count_weights,
    initialize,
    layer_kind,
    output_name,
    prunable_names,
)

CIFAR, MNIST, MNIST1D = (3, 32, 32), (1, 28, 28), (40,)
NATURAL_SHAPE = {"lenet_300_100": MNIST, "mnist1d_mlp": MNIST1D, "mnist1d_cnn": MNIST1D,
                 "lstm": (40, 1), "transformer": (40, 1)}  # sequence models: (steps, features)


def build(name: str, shape: tuple[int, ...] = CIFAR, seed: int = 0, **options) -> nn.Module:
    return build_model(ModelConfig(name=name, **options), input_shape=shape, num_classes=10, seed=seed)


def conv_weights(model: nn.Module) -> int:
    return count_weights(model, [n for n in prunable_names(model) if layer_kind(model, n) == "conv"])


# ---- parameter counts (facts sheet, Frankle & Carbin 2019 Figure 2)


@pytest.mark.parametrize(
    "name, shape, total, conv",
    [
        ("lenet_300_100", MNIST, 266_200, 0),
        ("conv2", CIFAR, 4_300_992, 38_592),
        ("conv4", CIFAR, 2_425_024, 259_776),
        ("conv6", CIFAR, 2_261_184, None),
        ("vgg19", CIFAR, 20_024_000, None),
    ],
)
def test_weight_counts_match_facts(name, shape, total, conv):
    model = build(name, shape)
    assert count_weights(model) == total
    if conv is not None:
        assert conv_weights(model) == conv


def test_resnet20_count():
    model = build("resnet20")
    n = count_weights(model)
    assert 265_000 <= n <= 280_000  # facts: ~271K (paper says 274K)
    assert n == 270_896
    shortcuts = [p for p in prunable_names(model) if "shortcut" in p]
    assert shortcuts == ["blocks.3.shortcut.0.weight", "blocks.6.shortcut.0.weight"]
    assert count_weights(build("resnet20", width=32)) > 3 * n  # width multiplies every stage


def test_lenet_names_and_hidden_override():
    model = build("lenet_300_100", MNIST)
    assert prunable_names(model) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    assert output_name(model) == "fc3.weight"
    small = build("lenet_300_100", MNIST, hidden=(50,))
    assert [tuple(small.get_parameter(n).shape) for n in prunable_names(small)] == [(50, 784), (10, 50)]
    mlp = build("mnist1d_mlp", MNIST1D)
    shapes = [tuple(mlp.get_parameter(n).shape) for n in prunable_names(mlp)]
    assert shapes == [(500, 40), (500, 500), (10, 500)]


# ---- every registered model runs on its natural input


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_backward(name):
    shape = NATURAL_SHAPE.get(name, CIFAR)
    model = build(name, shape)
    x = torch.randn(2, *shape)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    names = prunable_names(model)
    assert names and output_name(model) in names
    for n in names:
        assert model.get_parameter(n).grad is not None, n
        assert layer_kind(model, n) in ("conv", "linear", "recurrent", "attention", "embedding")
    assert layer_kind(model, output_name(model)) == "linear"


def test_dropout_only_in_training():
    model = build("conv2", dropout=0.5)
    x = torch.randn(4, *CIFAR)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


# ---- initialization


def test_initialize_deterministic_and_leaves_global_rng():
    model = build("resnet20")
    state = torch.get_rng_state()
    initialize(model, "glorot_normal", seed=7)
    first = {k: v.clone() for k, v in model.state_dict().items()}
    initialize(model, "glorot_normal", seed=7)
    assert all(torch.equal(first[k], v) for k, v in model.state_dict().items())
    initialize(model, "glorot_normal", seed=8)
    assert not torch.equal(first["conv.weight"], model.conv.weight)
    assert torch.equal(state, torch.get_rng_state())
    # building (PyTorch's own default init included) does not move the global RNG either
    build("conv2")
    assert torch.equal(state, torch.get_rng_state())


def test_build_model_uses_seed():
    a, b, c = (build("lenet_300_100", MNIST, seed=s) for s in (1, 1, 2))
    assert torch.equal(a.fc1.weight, b.fc1.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


def test_initialize_resets_bias_and_batchnorm():
    model = build("vgg11")
    with torch.no_grad():
        model.conv1.bias.fill_(3.0)
        model.bn1.weight.fill_(5.0)
        model.bn1.running_mean.fill_(2.0)
    initialize(model, "kaiming_normal", seed=0)
    assert model.conv1.bias.abs().sum() == 0
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    assert torch.all(model.bn1.running_mean == 0) and torch.all(model.bn1.running_var == 1)


def test_glorot_normal_std():
    layer = nn.Linear(1000, 1000)
    initialize(layer, "glorot_normal", seed=0)
    expected = math.sqrt(2 / (1000 + 1000))
    assert layer.weight.std().item() == pytest.approx(expected, rel=0.02)
    assert layer.weight.mean().item() == pytest.approx(0, abs=1e-3)


def test_kaiming_normal_std_on_conv():
    layer = nn.Conv2d(64, 128, 3)
    initialize(layer, "kaiming_normal", seed=0)
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)


def test_signed_kaiming_constant():
    model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Flatten(), nn.Linear(16, 8))
    initialize(model, "signed_kaiming_constant", seed=0)
    for weight, fan_in in ((model[0].weight, 3 * 9), (model[2].weight, 16)):
        c = math.sqrt(2 / fan_in)
        values = torch.unique(weight)
        assert values.tolist() == pytest.approx([-c, c])
        assert torch.all(weight.abs() == torch.tensor(c, dtype=torch.float32))
        assert 0.3 < (weight > 0).float().mean() < 0.7


@pytest.mark.parametrize("scheme", sorted(INITIALIZERS))
def test_every_initializer_runs(scheme):
    model = build("mnist1d_cnn", MNIST1D, init=scheme)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_initialize_leaves_other_params_alone():
    class WithScores(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.scores = nn.Parameter(torch.full((3, 4), 9.0))

    model = WithScores()
    initialize(model, "glorot_uniform", seed=0)
    assert torch.all(model.scores == 9.0)


# ---- introspection of a user's own model


def test_plain_sequential_introspection():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 20), nn.ReLU(),
        nn.Linear(20, 10),
    )
    assert prunable_names(model) == ["0.weight", "4.weight", "6.weight"]
    assert output_name(model) == "6.weight"
    assert layer_kind(model, "0.weight") == "conv" and layer_kind(model, "4.weight") == "linear"
    assert count_weights(model) == 4 * 9 + 4 * 26 * 26 * 20 + 200
    assert count_weights(model, ["6.weight"]) == 200
    with pytest.raises(ValueError):
        layer_kind(model, "1.weight")  # BatchNorm


# ---- config errors, raised before anything is built


def test_unknown_model():
    with pytest.raises(ValueError, match="unknown model 'lenet5'.*lenet_300_100.*resnet20"):
        build("lenet5")


def test_unsupported_option():
    with pytest.raises(ValueError, match="does not accept option width=32.*resnet20"):
        build("lenet_300_100", MNIST, width=32)
    with pytest.raises(ValueError, match="does not accept option hidden.*lenet_300_100"):
        build("resnet20", hidden=(10,))
    with pytest.raises(ValueError, match="does not accept option dropout.*conv2"):
        build("vgg11", dropout=0.5)


def test_unknown_init():
    with pytest.raises(ValueError, match="unknown initializer 'xavier'.*glorot_normal"):
        build("conv2", init="xavier")


@pytest.mark.parametrize(
    "name, shape",
    [
        ("conv2", MNIST1D),
        ("resnet20", MNIST1D),
        ("vgg19", (3, 8, 8)),
        ("mnist1d_cnn", CIFAR),
        ("conv6", (3, 4, 4)),
        ("mnist1d_cnn", (2,)),
    ],
)
def test_bad_input_shape(name, shape):
    with pytest.raises(ValueError, match=name):
        build(name, shape)


def test_mlps_accept_any_shape_and_cnn_takes_mnist_images():
    assert build("lenet_300_100", CIFAR)(torch.randn(2, *CIFAR)).shape == (2, 10)
    assert build("conv2", MNIST)(torch.randn(2, *MNIST)).shape == (2, 10)
    assert build("resnet20", MNIST)(torch.randn(2, *MNIST)).shape == (2, 10)
