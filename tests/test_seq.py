"""Sequence models (LSTM, Transformer), sequence and text datasets, and pruning them by layer group."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lth.data.locate as locate
from lth.config import DataConfig, ModelConfig, PruneConfig
from lth.data import DATASETS, DataError, check_available, load, load_dataset
from lth.data import text as text_data
from lth.models import (
    build_model,
    count_weights,
    initialize,
    layer_kind,
    output_name,
    prunable_names,
)
from lth.prune import Mask, PrunePlan, pm_schedule, prune

VOCAB, STEPS, FEATURES, CLASSES = 23, 12, 5, 10


def seq_model(name: str, task: str, seed: int = 0, init: str = "glorot_normal", **options):
    shape = (STEPS,) if task == "lm" else (STEPS, FEATURES)
    return build_model(ModelConfig(name=name, init=init, **options), input_shape=shape,
                       num_classes=VOCAB if task == "lm" else CLASSES, seed=seed, task=task)


def seq_input(task: str, batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if task == "lm":
        return torch.randint(0, VOCAB, (batch, STEPS), generator=g)
    return torch.randn(batch, STEPS, FEATURES, generator=g)


def loss_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training loop's convention for both tasks: logits [B, C] or [B, T, V], y [B] or [B, T]."""
    return F.cross_entropy(logits.flatten(0, -2), y.flatten())


# ---------------------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("task", ["classify", "lm"])
def test_lstm_parameter_count(task):
    h, layers = 32, 2
    model = seq_model("lstm", task, width=h, layers=layers)
    # Layer k of an LSTM: input matrix 4H x in_k, recurrent matrix 4H x H, two bias vectors of 4H; the first
    # layer's input is the F features (classify) or the H-wide embedding of V tokens (lm); head H x C + C.
    first_in = FEATURES if task == "classify" else h
    c = CLASSES if task == "classify" else VOCAB
    embed = VOCAB * h if task == "lm" else 0
    recurrent = 4 * h * (first_in + h) + 4 * h * (h + h)
    total = embed + recurrent + layers * 8 * h + h * c + c
    assert sum(p.numel() for p in model.parameters()) == total
    assert count_weights(model) == embed + recurrent + h * c  # no biases


@pytest.mark.parametrize("task", ["classify", "lm"])
def test_transformer_parameter_count(task):
    d, layers = 32, 3
    model = seq_model("transformer", task, width=d, layers=layers, heads=4)
    # A block: q, k, v, out (d x d + d each), two LayerNorms (2d each), MLP d -> 4d -> d (8 d^2 + 5d).
    block = 4 * (d * d + d) + 2 * 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert block == 12 * d * d + 13 * d
    c = CLASSES if task == "classify" else VOCAB
    first = VOCAB * d if task == "lm" else FEATURES * d + d  # token embedding, or input projection + bias
    total = first + STEPS * d + layers * block + 2 * d + d * c + c  # + positions, final LayerNorm, head
    assert sum(p.numel() for p in model.parameters()) == total
    first_weight = VOCAB * d if task == "lm" else FEATURES * d
    assert count_weights(model) == first_weight + layers * 12 * d * d + d * c


def test_defaults_width_layers_heads():
    lstm, tf = seq_model("lstm", "lm"), seq_model("transformer", "lm")
    assert lstm.lstm.hidden_size == 128 and lstm.lstm.num_layers == 1
    assert len(tf.blocks) == 2 and tf.blocks[0].attn.heads == 4 and tf.head.in_features == 128


# ------------------------------------------------------------------------------- what is prunable, and kinds


def test_prunable_names_and_kinds():
    lstm_lm = seq_model("lstm", "lm", layers=2, width=16)
    assert prunable_names(lstm_lm) == ["embed.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0",
                                       "lstm.weight_ih_l1", "lstm.weight_hh_l1", "head.weight"]
    assert [layer_kind(lstm_lm, n) for n in prunable_names(lstm_lm)] == (
        ["embedding"] + ["recurrent"] * 4 + ["linear"])
    assert prunable_names(seq_model("lstm", "classify", width=16))[0] == "lstm.weight_ih_l0"

    tf = seq_model("transformer", "lm", layers=1, width=16)
    block = ["blocks.0.attn.q.weight", "blocks.0.attn.k.weight", "blocks.0.attn.v.weight",
             "blocks.0.attn.out.weight", "blocks.0.mlp_in.weight", "blocks.0.mlp_out.weight"]
    assert prunable_names(tf) == ["embed.weight", *block, "head.weight"]
    assert [layer_kind(tf, n) for n in prunable_names(tf)] == (
        ["embedding"] + ["attention"] * 4 + ["linear"] * 3)
    assert prunable_names(seq_model("transformer", "classify", layers=1, width=16))[0] == "input_proj.weight"
    for model in (lstm_lm, tf):
        assert output_name(model) == "head.weight"
        params = dict(model.named_parameters())
        unprunable = set(params) - set(prunable_names(model))
        # Exactly the biases, LayerNorms and positional embedding stay dense.
        assert all(n.rsplit(".", 1)[-1].startswith("bias") or ".ln" in n or n.startswith(("ln_f", "pos_embed"))
                   for n in unprunable)
        assert all(params[n].dim() == 2 for n in prunable_names(model))


# ----------------------------------------------------------------------------- shapes, causality, loss


@pytest.mark.parametrize("name", ["lstm", "transformer"])
@pytest.mark.parametrize("task", ["classify", "lm"])
def test_output_shapes_and_loss_convention(name, task):
    model = seq_model(name, task, width=16)
    x = seq_input(task, batch=4)
    logits = model(x)
    if task == "lm":
        assert logits.shape == (4, STEPS, VOCAB)
        y = torch.randint(0, VOCAB, (4, STEPS))
    else:
        assert logits.shape == (4, CLASSES)
        y = torch.randint(0, CLASSES, (4,))
    loss = loss_of(logits, y)
    loss.backward()
    assert torch.isfinite(loss)
    for n in prunable_names(model):
        assert model.get_parameter(n).grad is not None, n


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_language_models_are_causal(name):
    model = seq_model(name, "lm", width=16).eval()
    x = seq_input("lm", batch=2)
    changed = x.clone()
    j = 7
    changed[:, j] = (changed[:, j] + 1) % VOCAB
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.equal(a[:, :j], b[:, :j])  # earlier positions cannot see token j
    assert not torch.allclose(a[:, j:], b[:, j:])


def test_transformer_classifier_sees_the_whole_sequence():
    model = seq_model("transformer", "classify", width=16).eval()
    x = seq_input("classify")
    changed = x.clone()
    changed[:, -1] += 1.0
    with torch.no_grad():
        assert not torch.allclose(model(x), model(changed))


def test_transformer_refuses_sequences_longer_than_built_for():
    model = seq_model("transformer", "lm", width=16)
    with pytest.raises(ValueError, match="longer than the 12 positions"):
        model(torch.zeros(1, STEPS + 1, dtype=torch.long))


# ----------------------------------------------------------------------------------------- initialization


@pytest.mark.parametrize("name", ["lstm", "transformer"])
@pytest.mark.parametrize("task", ["classify", "lm"])
def test_initialize_redraws_every_parameter_from_the_seed(name, task):
    reference = seq_model(name, task, seed=5, width=16, layers=2)
    model = seq_model(name, task, seed=0, width=16, layers=2)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    state = torch.get_rng_state()
    initialize(model, "glorot_normal", seed=5)
    assert torch.equal(state, torch.get_rng_state())
    for (n, p), q in zip(model.named_parameters(), reference.parameters()):
        assert torch.equal(p, q), n  # every parameter drawn again, the same way from the same seed
    other = seq_model(name, task, seed=6, width=16, layers=2)
    for n in prunable_names(model):
        assert not torch.equal(model.get_parameter(n), other.get_parameter(n)), n


def test_recurrent_and_embedding_initialization_scale():
    h = 256
    model = seq_model("lstm", "lm", width=h)
    # Glorot per gate: each gate's H x H recurrent block has fan-in = fan-out = H, so std = sqrt(1 / H).
    assert model.lstm.weight_hh_l0.std().item() == pytest.approx((1 / h) ** 0.5, rel=0.03)
    assert model.lstm.bias_ih_l0.abs().sum() == 0 and model.lstm.bias_hh_l0.abs().sum() == 0
    # The embedding is the map one-hot(V) -> H: Glorot std sqrt(2 / (V + H)).
    assert model.embed.weight.std().item() == pytest.approx((2 / (VOCAB + h)) ** 0.5, rel=0.05)
    tf = seq_model("transformer", "lm", width=16)
    assert torch.all(tf.ln_f.weight == 1) and torch.all(tf.blocks[0].ln1.bias == 0)


def test_existing_models_initialize_as_before():
    # Values drawn by the code before sequence models were added (commit e39281b): unchanged.
    lenet = build_model(ModelConfig(name="lenet_300_100"), input_shape=(1, 28, 28), num_classes=10, seed=0)
    assert lenet.fc1.weight[0, :3].tolist() == [-0.04835896193981171, -0.04949810728430748, -0.01076327171176672]
    assert lenet.fc3.weight[9, -2:].tolist() == [-0.000460022158222273, 0.009461249224841595]
    resnet = build_model(ModelConfig(name="resnet20"), input_shape=(3, 32, 32), num_classes=10, seed=0)
    assert resnet.conv.weight.flatten()[:2].tolist() == [-0.1217568889260292, -0.12462500482797623]
    assert resnet.fc.weight.flatten()[-2:].tolist() == [0.05872107669711113, -0.08195094019174576]


# ------------------------------------------------------------------------------- masks really act on an LSTM


def manual_lstm(x: torch.Tensor, w_ih, w_hh, b_ih, b_hh) -> torch.Tensor:
    """One LSTM layer from its equations (gates i, f, g, o), independent of nn.LSTM's kernels."""
    h = c = torch.zeros(x.shape[0], w_hh.shape[1])
    outs = []
    for t in range(x.shape[1]):
        i, f, g, o = (x[:, t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, dim=1)


def test_mask_multiplied_in_place_is_what_nn_lstm_computes_with():
    model = seq_model("lstm", "classify", width=8).eval()
    x = seq_input("classify")
    with torch.no_grad():
        dense = model(x)
        g = torch.Generator().manual_seed(0)
        mask = Mask({n: torch.rand(model.get_parameter(n).shape, generator=g) > 0.5 for n in prunable_names(model)})
        mask.apply_(model)  # an in-place multiply, as the training loop does after every step
        sparse = model(x)
        lstm = model.lstm
        assert (lstm.weight_hh_l0 == 0).sum() >= mask["lstm.weight_hh_l0"].logical_not().sum()
        expected = manual_lstm(x, lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0)
        assert torch.allclose(sparse, model.head(expected[:, -1]), atol=1e-6)
    assert not torch.allclose(dense, sparse)


# ------------------------------------------------------------------------------------ building: errors


def test_build_errors_name_the_fix():
    with pytest.raises(ValueError, match="cannot be built for task 'lm'.*lstm, transformer"):
        build_model(ModelConfig(name="conv2"), input_shape=(64,), num_classes=VOCAB, seed=0, task="lm")
    with pytest.raises(ValueError, match="needs input shape \\(steps, features\\).*mnist1d_seq"):
        build_model(ModelConfig(name="lstm"), input_shape=(1, 28, 28), num_classes=10, seed=0)
    with pytest.raises(ValueError, match="needs input shape \\(context,\\).*chars"):
        build_model(ModelConfig(name="transformer"), input_shape=(40, 1), num_classes=10, seed=0, task="lm")
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        seq_model("transformer", "lm", heads=3)
    with pytest.raises(ValueError, match="does not accept option heads=2.*transformer"):
        seq_model("lstm", "lm", heads=2)
    with pytest.raises(ValueError, match="does not accept option layers=2.*lstm, transformer"):
        build_model(ModelConfig(name="lenet_300_100", layers=2), input_shape=(40,), num_classes=10, seed=0)
    with pytest.raises(ValueError, match="model.layers must be a positive integer"):
        seq_model("lstm", "lm", layers=-1)


# ------------------------------------------------------------------------------------------ text datasets


def decode(ids: torch.Tensor, vocab: str) -> str:
    return "".join(vocab[i] for i in ids.flatten().tolist())


def test_chars_tiny_shapes_registry_and_targets():
    ds = load_dataset("chars_tiny")
    info = DATASETS["chars_tiny"]
    assert info.task == "lm" and ds.task == "lm" and DATASETS["mnist"].task == "classify"
    assert ds.num_classes == info.num_classes == len(ds.vocab) == 23
    assert ds.input_shape == info.input_shape == (32,)
    for split in (ds.train, ds.val, ds.test):
        assert split.x.dtype == split.y.dtype == torch.int64 and split.x.shape == split.y.shape
        assert split.x.shape[1] == 32
        assert torch.equal(split.x[:, 1:], split.y[:, :-1])  # y is x shifted by one character
        assert torch.equal(split.y[:-1, -1], split.x[1:, 0])  # windows follow each other without gaps


def test_splits_are_contiguous_blocks_90_5_5_without_shared_text():
    corpus = text_data.tiny_corpus()
    n, t = len(corpus), 32
    ds = load_dataset("chars_tiny")
    bounds = [(0, n * 90 // 100), (n * 90 // 100, n * 90 // 100 + n * 5 // 100), (n * 90 // 100 + n * 5 // 100, n)]
    assert text_data.block_bounds(n) == bounds
    for split, (a, b) in zip((ds.train, ds.val, ds.test), bounds):
        assert len(split) == (b - a - 1) // t  # every window, with its next character, inside its block
        used = len(split) * t
        assert decode(split.x, ds.vocab) == corpus[a:a + used]
        assert decode(split.y, ds.vocab) == corpus[a + 1:a + used + 1]
        assert a + used + 1 <= b  # the last target is still inside the block: no text shared with the next
    assert (len(ds.train), len(ds.val), len(ds.test)) == (225, 12, 12)


def test_vocabulary_is_sorted_and_deterministic(tmp_path):
    folder = tmp_path / "chars"
    folder.mkdir()
    corpus = "zebra ünïcode Ωmega, then ascii: abc ABC 123.\n" * 40
    (folder / "corpus.txt").write_text(corpus, encoding="utf-8")
    a = load_dataset("chars", data_dir=tmp_path, context=8)
    b = load(DataConfig(dataset="chars", data_dir=str(tmp_path), context=8))
    assert a.vocab == b.vocab == "".join(sorted(set(corpus)))
    assert a.num_classes == len(a.vocab) and a.input_shape == (8,)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert int(a.train.x.max()) < a.num_classes  # every character of every split has an id


def test_corpus_too_small_for_the_context(tmp_path):
    folder = tmp_path / "chars"
    folder.mkdir()
    t = 9
    # The validation block is 5% of the text and needs t + 1 characters: 20 * (t + 1) is the least that works.
    (folder / "corpus.txt").write_text("a" * (20 * (t + 1)))
    ds = load_dataset("chars", data_dir=tmp_path, context=t)
    assert (len(ds.val), len(ds.test)) == (1, 1)
    (folder / "corpus.txt").write_text("a" * (20 * (t + 1) - 1))
    with pytest.raises(DataError, match="too small for context 9.*validation block.*Fix: --data.context 8 "
                                        "\\(or shorter\\), or a corpus of at least 200 characters"):
        load_dataset("chars", data_dir=tmp_path, context=t)
    with pytest.raises(DataError, match="too small.*at least 40020 characters"):
        load_dataset("chars_tiny", context=2000)


def test_missing_corpus_names_the_apt_command(tmp_path, monkeypatch):
    monkeypatch.setitem(locate.SYSTEM_DIRS, "chars", [tmp_path / "no-debian-here"])
    for call in (lambda: check_available("chars", data_dir=tmp_path),
                 lambda: load_dataset("chars", data_dir=tmp_path)):
        with pytest.raises(DataError, match="apt-get install fortunes-min.*corpus.txt"):
            call()
    check_available("chars_tiny", data_dir=tmp_path)  # generated: never missing


def test_context_and_val_size_rules():
    assert load_dataset("chars_tiny", context=16).train.x.shape[1] == 16
    with pytest.raises(DataError, match="val_size=5 does not apply.*contiguous 5% block"):
        load_dataset("chars_tiny", val_size=5)
    with pytest.raises(DataError, match="applies to language-modelling datasets"):
        load_dataset("synthetic", context=16)
    with pytest.raises(DataError, match="context=-3 is invalid"):
        load_dataset("chars_tiny", context=-3)


@pytest.mark.skipif(text_data.find_corpus(None) is None or
                    text_data.find_corpus(None)[0].parent != locate.SYSTEM_DIRS["chars"][0],
                    reason="Debian's fortunes-min is not installed (apt-get install fortunes-min)")
def test_debian_fortunes_min_corpus(tmp_path):
    ds = load_dataset("chars", data_dir=tmp_path)  # an empty data folder: found in the Debian folder
    assert ds.input_shape == (64,) and ds.num_classes == len(ds.vocab) > 60
    assert len(ds.train) > 1000 and len(ds.val) > 50 and len(ds.test) > 50


# ---------------------------------------------------------------------------------- sequence views of images


def write_idx(path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    path.write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))


def test_mnist_rows_are_mnist_images_row_by_row(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    check_available("mnist_rows", data_dir=tmp_path, download=False)
    images = load_dataset("mnist", data_dir=tmp_path, val_size=8, download=False)
    rows = load_dataset("mnist_rows", data_dir=tmp_path, val_size=8, download=False)
    assert rows.input_shape == (28, 28) and rows.train.x.shape == (32, 28, 28) and rows.task == "classify"
    for a, b in ((images.train, rows.train), (images.val, rows.val), (images.test, rows.test)):
        assert torch.equal(a.x[:, 0], b.x) and torch.equal(a.y, b.y)  # same normalization, same split


def test_mnist_rows_missing_files_point_at_the_mnist_folder(tmp_path):
    with pytest.raises(DataError, match="MNIST files not found.*" + str(tmp_path / "mnist")):
        check_available("mnist_rows", data_dir=tmp_path, download=False)


def test_mnist1d_seq_has_mnist1d_examples_and_split(tmp_path):
    flat = load_dataset("mnist1d", data_dir=tmp_path)
    seq = load_dataset("mnist1d_seq", data_dir=tmp_path)  # the same cached generation
    assert seq.input_shape == (40, 1) and seq.train.x.shape == (3500, 40, 1)
    for a, b in ((flat.train, seq.train), (flat.val, seq.val), (flat.test, seq.test)):
        assert torch.equal(a.x, b.x[..., 0]) and torch.equal(a.y, b.y)


# ------------------------------------------------------------------------------------------ pruning groups


def test_embedding_rate_and_default_rates():
    model = seq_model("transformer", "lm", layers=1, width=16)
    plan = PrunePlan.for_model(model, PruneConfig(rate=0.2, embedding_rate=0.05))
    assert plan.rates["embed.weight"] == 0.05 and plan.rates["head.weight"] == 0.1
    assert all(plan.rates[n] == 0.2 for n in prunable_names(model)[1:-1])
    same = PrunePlan.for_model(model, PruneConfig(rate=0.2))  # None: the embedding is pruned at `rate`
    assert same.rates["embed.weight"] == 0.2
    lstm = seq_model("lstm", "lm", width=16)
    assert PrunePlan.for_model(lstm, PruneConfig(rate=0.3, embedding_rate=0.1, output_rate=0.15)).rates == {
        "embed.weight": 0.1, "lstm.weight_ih_l0": 0.3, "lstm.weight_hh_l0": 0.3, "head.weight": 0.15}


def test_embedding_rate_is_checked_like_the_other_rates():
    from lth.config import ImpConfig

    with pytest.raises(ValueError, match="--prune.embedding_rate must be a fraction in \\(0, 1\\)"):
        ImpConfig(prune=PruneConfig(embedding_rate=1.5)).check()


def test_exclusion_patterns_on_sequence_models():
    lm = seq_model("lstm", "lm", width=16)
    plan = PrunePlan.for_model(lm, PruneConfig(exclude=("embed*",)))
    assert "embed.weight" not in plan.rates and plan.sizes["embed.weight"] == VOCAB * 16
    classify = seq_model("lstm", "classify", width=16)
    with pytest.raises(ValueError, match="'embed\\*' matches no prunable weight.*lstm.weight_ih_l0"):
        PrunePlan.for_model(classify, PruneConfig(exclude=("embed*",)))
    tf = seq_model("transformer", "lm", layers=1, width=16)
    with pytest.raises(ValueError, match="'pos_embed\\*' matches no prunable weight"):
        PrunePlan.for_model(tf, PruneConfig(exclude=("pos_embed*",)))  # positions are never prunable
    attention_only = PrunePlan.for_model(tf, PruneConfig(exclude=("*.mlp_*", "embed*", "head*")))
    assert attention_only.pruned == [f"blocks.0.attn.{p}.weight" for p in "qkv"] + ["blocks.0.attn.out.weight"]


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_imp_schedule_by_layer_group_is_exact(name):
    d, rounds = 24, 6
    model = seq_model(name, "lm", width=d, layers=2)
    cfg = PruneConfig(rate=0.2, embedding_rate=0.07, output_rate=0.13)
    plan = PrunePlan.for_model(model, cfg)
    # Sizes by hand: embedding V x d; LSTM layers 4d x d (input) and 4d x d (recurrent); Transformer blocks
    # 4 attention d x d, MLP 4d x d and d x 4d; head d x V.
    if name == "lstm":
        groups = {"embedding": [VOCAB * d], "body": [4 * d * d] * 4, "output": [d * VOCAB]}
    else:
        groups = {"embedding": [VOCAB * d], "body": ([d * d] * 4 + [4 * d * d] * 2) * 2, "output": [d * VOCAB]}
    rates = {"embedding": 0.07, "body": 0.2, "output": 0.13}
    kept = {g: list(sizes) for g, sizes in groups.items()}
    total = sum(sum(s) for s in groups.values())
    expected_pm, expected_kept = [100.0], []
    for _ in range(rounds):
        kept = {g: [k - round(rates[g] * k) for k in ks] for g, ks in kept.items()}  # Python's round
        expected_kept.append(kept)
        expected_pm.append(100 * sum(sum(ks) for ks in kept.values()) / total)

    assert list(plan.sizes.values()) == groups["embedding"] + groups["body"] + groups["output"]
    assert pm_schedule(plan.sizes, plan.rates, rounds) == pytest.approx(expected_pm, abs=1e-12)

    mask = Mask.ones_like(model)
    weights = dict(model.named_parameters())
    names = prunable_names(model)
    for level in range(rounds):
        with torch.no_grad():  # perturb the weights as training would, so each round ranks anew
            for w in weights.values():
                w.add_(0.01 * torch.randn_like(w))
        mask = prune(weights, mask, plan)
        k = expected_kept[level]
        assert list(mask.kept().values()) == k["embedding"] + k["body"] + k["output"], f"round {level + 1}"
        assert 100 * mask.density() == pytest.approx(expected_pm[level + 1], abs=1e-12)
    assert list(mask) == names


# ------------------------------------------------------------------------------------ they learn: a few steps


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_a_few_steps_lower_the_loss_on_the_tiny_corpus(name):
    ds = load_dataset("chars_tiny")
    model = build_model(ModelConfig(name=name, width=32, layers=1), input_shape=ds.input_shape,
                        num_classes=ds.num_classes, seed=0, task=ds.task)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = ds.train.x[:64], ds.train.y[:64]
    with torch.no_grad():
        before = loss_of(model(ds.val.x), ds.val.y).item()
    for _ in range(30):
        optimizer.zero_grad()
        loss_of(model(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        after = loss_of(model(ds.val.x), ds.val.y).item()
    assert before > 2.5 and after < before - 1.0  # ln 23 = 3.1 at chance
