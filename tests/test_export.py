"""Export: the dense, torch-prune and sparse formats give back the ticket lth trained; Mask.from_module reads
torch.nn.utils.prune's masks; bad requests are refused with the fix."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import prune as torch_prune

from lth.config import (
    DataConfig,
    ExperimentConfig,
    LotteryConfig,
    ModelConfig,
    PruneConfig,
    TrainConfig,
)
from lth.data import DATASETS
from lth.errors import UsageError, UserError
from lth.export import (
    FORMATS,
    ExportError,
    SparseConv,
    SparseLinear,
    SparseModel,
    cli,
    export_model,
    export_run,
    load_ticket,
    mask_path,
    prepare_for_torch_prune,
)
from lth.models import build_model
from lth.prune import Mask, MaskError


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real IMP run: the dense level and one pruned level of a small LeNet on the synthetic data."""
    from lth.lottery import run_imp

    tmp = tmp_path_factory.mktemp("export")
    cfg = ExperimentConfig(
        data=DataConfig(dataset="synthetic", data_dir=str(tmp / "data")),
        model=ModelConfig(name="lenet_300_100", hidden=(32, 16)),
        train=TrainConfig(optimizer="adam", lr=3e-3, batch_size=50, budget="40it", eval_every="20it"),
        prune=PruneConfig(rate=0.5), lottery=LotteryConfig(levels=1, controls=()),
        out_dir=str(tmp / "runs"), device="cpu")
    return run_imp(cfg, progress=False, log=lambda _: None)


@pytest.fixture(scope="module")
def ticket(run):
    """The level-1 ticket as lth stored it, read without the export code: (model, final weights, mask)."""
    info = DATASETS["synthetic"]
    model = build_model(ModelConfig(name="lenet_300_100", hidden=(32, 16)), input_shape=info.input_shape,
                        num_classes=info.num_classes, seed=0)
    state = load_file(run.root / "rep0/level01/ticket/final.safetensors")
    model.load_state_dict(state)
    mask = Mask.load(run.root / "rep0/level01/mask.safetensors")
    assert 0.2 < mask.density() < 0.8  # really pruned, so the checks below can fail
    return model.eval(), state, mask


@pytest.fixture(scope="module")
def batch():
    return torch.randn(64, *DATASETS["synthetic"].input_shape, generator=torch.Generator().manual_seed(1))


def fresh_model():
    info = DATASETS["synthetic"]
    return build_model(ModelConfig(name="lenet_300_100", hidden=(32, 16)), input_shape=info.input_shape,
                       num_classes=info.num_classes, seed=7)


def test_dense_round_trip(run, ticket, tmp_path):
    _, state, mask = ticket
    path = export_run(run.root, 1, fmt="dense", out=tmp_path / "t.safetensors")
    got = load_file(path)
    assert set(got) == set(state)
    for k, v in state.items():
        if k in mask:
            assert torch.equal(got[k] == 0, ~mask[k] | (v == 0))  # zero exactly where pruned
            assert torch.equal(got[k][mask[k]], v[mask[k]])
            assert not torch.signbit(got[k][~mask[k]]).any()  # +0, not -0
        else:
            assert torch.equal(got[k], v)
    assert Mask.load(mask_path(path)) == mask
    assert json.loads(mask_path(path).with_suffix(".json").read_text())["kept"] == sum(mask.kept().values())


def test_default_path_is_in_the_run_folder(run):
    path = export_run(run.root, 1, fmt="dense")
    assert path == run.root / "export" / "rep0-level01-ticket-dense.safetensors" and path.exists()


def test_torch_prune_gives_the_tickets_logits(run, ticket, batch, tmp_path):
    model, _, mask = ticket
    path = export_run(run.root, 1, fmt="torch-prune", out=tmp_path)
    other = prepare_for_torch_prune(fresh_model())
    other.load_state_dict(load_file(path))  # strict: every weight_orig / weight_mask entry has its place
    assert torch.equal(other.fc1.weight_mask.bool(), mask["fc1.weight"])
    assert Mask.from_module(other) == mask
    with torch.no_grad():
        torch.testing.assert_close(other.eval()(batch), model(batch))


def test_sparse_gives_the_tickets_logits(run, ticket, batch, tmp_path):
    model, state, mask = ticket
    path = export_run(run.root, 1, fmt="sparse", out=tmp_path / "s.safetensors")
    sparse = SparseModel.load(path)  # the model is built from the file's metadata
    layer = sparse.model.fc1
    assert isinstance(layer, SparseLinear) and layer.weight.layout == torch.sparse_csr
    assert torch.equal(layer.weight.to_dense(), state["fc1.weight"] * mask["fc1.weight"])
    assert layer.weight.values().numel() == mask.kept()["fc1.weight"]  # the pattern is the mask
    with torch.no_grad():
        want = model(batch)
    torch.testing.assert_close(sparse(batch), want)
    torch.testing.assert_close(sparse(batch[:1]), want[:1])
    torch.testing.assert_close(SparseModel.load(path, model=fresh_model())(batch), want)


def test_load_ticket(run, ticket, batch):
    model, _, mask = ticket
    loaded, got_mask = load_ticket(run.root, 1)
    assert got_mask == mask
    with torch.no_grad():
        assert torch.equal(loaded(batch), model(batch))


def test_cli(run, capsys):
    assert cli([str(run.root), "--level", "1", "--format", "sparse"]) == 0
    out = capsys.readouterr().out
    assert "rep0-level01-ticket-sparse.safetensors" in out and "SparseModel.load" in out
    with pytest.raises(UsageError, match="invalid choice: 'onnx'"):  # one line through `lth`, no usage dump
        cli([str(run.root), "--level", "1", "--format", "onnx"])


class SmallConv(nn.Module):
    """Conv2d (stride, padding, dilation), Conv1d and Linear: the layer kinds the sparse format runs."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 6, (3, 2), padding=(2, 1), dilation=2, bias=False)
        self.c3 = nn.Conv1d(6, 5, 3, stride=2, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(5 * 4 * 5, 10))

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))  # N × 6 × 8 × 5
        x = torch.relu(self.c3(x.flatten(2)))  # N × 5 × 20
        return self.head(x.reshape(len(x), 5, 4, 5))


def random_mask(model, density=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    from lth.models import prunable_names

    params = dict(model.named_parameters())
    return Mask({n: torch.rand(params[n].shape, generator=g) < density for n in prunable_names(model)})


def test_export_model_all_formats_for_conv_layers(tmp_path):
    torch.manual_seed(0)
    model = SmallConv().eval()
    mask = random_mask(model)
    x = torch.randn(4, 3, 16, 10)
    mask.apply_(model)
    with torch.no_grad():
        want = model(x)
    dense = export_model(model, mask, "dense", tmp_path)
    assert dense.name == "ticket-dense.safetensors" and Mask.load(mask_path(dense)) == mask
    prepared = prepare_for_torch_prune(SmallConv())
    prepared.load_state_dict(load_file(export_model(model, mask, "torch-prune", tmp_path)))
    with torch.no_grad():
        torch.testing.assert_close(prepared.eval()(x), want)
    path = export_model(model, mask, "sparse", tmp_path)
    sparse = SparseModel.load(path, model=SmallConv())
    assert isinstance(sparse.model.c3, SparseConv) and isinstance(sparse.model.head[1], SparseLinear)
    torch.testing.assert_close(sparse(x), want)
    torch.testing.assert_close(SparseModel.from_dense(model, mask)(x), want)
    with pytest.raises(ExportError, match="pass an instance"):
        SparseModel.load(path)  # a user's own model: lth cannot build it
    with pytest.raises(ExportError, match=r"does not fit MLP \(entries only in the file: \['c1.bias'"):
        SparseModel.load(path, model=fresh_model())
    with pytest.raises(ExportError, match="not an lth sparse export"):
        SparseModel.load(dense, model=SmallConv())


def test_sparse_refuses_a_damaged_file(tmp_path):
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    path = export_model(model, random_mask(model, 0.5), "sparse", tmp_path / "s.safetensors")
    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["0.weight.col_indices"][0] = 6  # out of range: must be an error, not a read out of bounds
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ExportError, match="damaged: the CSR tensors of 0.weight"):
        SparseModel.load(path, model=model)


def test_sparse_refuses_unsupported_layers(tmp_path):
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(ExportError, match=r"runs nn\.Linear, and nn\.Conv1d / nn\.Conv2d with groups=1.*0\.weight"):
        export_model(model, random_mask(model), "sparse", tmp_path)


def test_mask_from_module_reads_torch_prune():
    model = fresh_model()
    w1, w2 = model.fc1.weight.detach().clone(), model.fc2.weight.detach().clone()
    torch_prune.l1_unstructured(model.fc1, "weight", amount=0.3)
    torch_prune.l1_unstructured(model.fc2, "weight", amount=100)
    torch_prune.l1_unstructured(model.fc2, "weight", amount=50)  # a second round: a PruningContainer
    mask = Mask.from_module(model)
    assert list(mask) == ["fc1.weight", "fc2.weight"]  # fc3 is not pruned
    assert torch.equal(mask["fc1.weight"], model.fc1.weight_mask.bool())
    # what torch applied, computed independently: the smallest |w| are gone
    k1 = round(0.3 * w1.numel())
    expect1 = torch.ones(w1.numel(), dtype=torch.bool)
    expect1[w1.abs().flatten().argsort()[:k1]] = False
    assert torch.equal(mask["fc1.weight"], expect1.view_as(w1))
    assert mask.kept()["fc2.weight"] == w2.numel() - 150
    assert torch.equal(model.fc2.weight == 0, ~mask["fc2.weight"])
    # bring it into lth: remove torch's reparametrization, then export with the mask
    with pytest.raises(ExportError, match=r"Mask.from_module\(model\), then call torch.nn.utils.prune.remove"):
        export_model(model, mask, "dense", "x.safetensors")
    with pytest.raises(MaskError, match="no tensor pruned with torch.nn.utils.prune"):
        Mask.from_module(fresh_model())


def test_bad_requests(run, tmp_path):
    with pytest.raises(ExportError, match=r"no level 4 \(replicate 0\); levels: 0, 1$"):
        export_run(run.root, 4)
    with pytest.raises(ExportError, match=r"no replicate 2; replicates: 0$"):
        export_run(run.root, 1, replicate=2)
    with pytest.raises(ExportError, match=r"level01/reinit .*no final weights.*at this level: ticket "):
        export_run(run.root, 1, branch="reinit")
    with pytest.raises(ExportError, match="unknown export format 'onnx'; choose one of: dense, torch-prune, sparse"):
        export_run(run.root, 1, fmt="onnx")
    assert FORMATS == ("dense", "torch-prune", "sparse")
    with pytest.raises(UserError, match="not an lth run folder"):
        export_run(tmp_path, 1)
    assert not (run.root / "export" / "rep0-level04-ticket-dense.safetensors").exists()


def test_custom_model_run(tmp_path):
    """A find_tickets run: dense and torch-prune work from the files; sparse needs the model instance."""
    import lth

    store = lth.find_tickets(lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)),
                             lambda model, mask: {}, name="tiny", out_dir=str(tmp_path),
                             lottery=LotteryConfig(levels=1, controls=()), log=lambda _: None)
    with pytest.raises(ExportError, match=r"custom:tiny.*pass an instance of it \(model=YourNet\(\)\).*--format dense"):
        export_run(store.root, 1, fmt="sparse")
    mask = Mask.load(store.root / "rep0/level01/mask.safetensors")
    state = load_file(export_run(store.root, 1, fmt="torch-prune"))
    assert torch.equal(state["0.weight_mask"].bool(), mask["0.weight"])
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    path = export_run(store.root, 1, fmt="sparse", model=net)
    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["lth_sparse"]) == {"0.weight": [5, 6], "2.weight": [3, 5]}
    net.load_state_dict(load_file(store.root / "rep0/level01/ticket/final.safetensors"))
    x = torch.randn(3, 6)
    fresh = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    torch.testing.assert_close(SparseModel.load(path, model=fresh)(x), net(x).detach())


def test_lth_export_through_the_cli(run, tmp_path, capsys):
    """`lth export` is a registered subcommand; a level that does not exist is refused with the ones that do."""
    from lth.cli import main

    out = tmp_path / "ticket.safetensors"
    assert main(["export", str(run.root), "--level", "1", "--format", "torch-prune", "--out", str(out)]) == 0
    assert out.exists() and "weight_orig" in "".join(load_file(out))
    assert main(["export", str(run.root), "--level", "7", "--format", "dense"]) == 2
    assert "no level 7 (replicate 0); levels: 0, 1" in capsys.readouterr().err
