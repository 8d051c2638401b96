"""Get a ticket out of lth, into the formats the tools people already use can read.

Three formats, all written with safetensors (no pickle: a file received from someone else is safe to open).
Each file's safetensors metadata records what it holds (`lth_export`: the format) and where it came from.

- `dense`: the state dict (every parameter and buffer) with the pruned weights exactly 0, loadable by
  `model.load_state_dict`; the mask is written next to it (`<stem>.mask.safetensors` + `.mask.json`, lth's
  own mask files, readable with `Mask.load`).
- `torch-prune`: the state dict in `torch.nn.utils.prune`'s layout: each pruned `<module>.weight` becomes
  `<module>.weight_orig` (the weights, pruned ones 0) and `<module>.weight_mask` (1 kept, 0 pruned, in the
  weight's dtype, as torch keeps it); other entries as they are. It loads into a model after
  `prepare_for_torch_prune(model)`, which applies `torch.nn.utils.prune.identity` to each prunable weight.
- `sparse`: each pruned weight in CSR, as the three tensors of `torch.sparse_csr` for the weight viewed as a
  matrix (out_features × everything else): `<name>.crow_indices`, `<name>.col_indices` (int32 while they
  fit) and `<name>.values`. The metadata entry `lth_sparse` maps each such name to its full shape (JSON).
  Other entries are dense, under their own names. The stored pattern is the mask's, so a kept weight that
  happens to be 0 stays stored. `SparseModel.load(path)` runs it: nn.Linear, nn.Conv1d and nn.Conv2d layers
  become CSR products.

`export_run` reads a run folder; `export_model` takes a model and a Mask in memory (a `find_tickets` user's own
network, or one pruned with torch's API: see `Mask.from_module`). `cli` is `lth export`.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lth.errors import ArgumentParser, UserError
from lth.fileio import refuse_link
from lth.prune.mask import Mask

FORMATS = ("dense", "torch-prune", "sparse")
SPARSE_LAYERS = "nn.Linear, and nn.Conv1d / nn.Conv2d with groups=1, padding_mode='zeros' and numeric padding"


class ExportError(UserError, ValueError):
    """An export that cannot be done as asked; the message names the fix."""


# -- reading a run folder ------------------------------------------------------------------------------------
def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")


def _final_weights(store, replicate: int, level: int, branch: str) -> Path:
    """The path of the training's final weights, or an error that says what the run does have."""
    from lth.store import Unit

    reps = sorted({u.replicate for u in store.units()})
    if replicate not in reps:
        raise ExportError(f"run {store.root} has no replicate {replicate}; replicates: "
                          f"{', '.join(map(str, reps)) or 'none yet'}")
    levels = sorted({u.level for u in store.units() if u.replicate == replicate})
    if level not in levels:
        raise ExportError(f"run {store.root} has no level {level} (replicate {replicate}); levels: "
                          f"{', '.join(map(str, levels)) or 'none yet'}")
    path = store.final_path(Unit(replicate, level, branch))
    if not path.exists():
        have = sorted(u.branch for u in store.units() if (u.replicate, u.level) == (replicate, level)
                      and store.final_path(u).exists())
        raise ExportError(
            f"{Unit(replicate, level, branch).key} of run {store.root} has no final weights: lth keeps them "
            "for the ticket (and the dense network) only, not for the controls, and only once trained. "
            f"Branches with final weights at this level: {', '.join(have) or 'none yet'} "
            f"(choose one with --branch)")
    return path


def _run_mask(store, replicate: int, level: int, branch: str, state: Mapping[str, torch.Tensor],
              model: nn.Module | None, config: dict[str, Any], place: dict[str, Any]) -> Mask:
    """The mask the branch trained under: its own (random_prune), the level's, or none (a dense training)."""
    from lth.store import Unit

    for path, where in ((store.unit_mask_path(Unit(replicate, level, branch)), {"branch": branch}),
                        (store.mask_path(replicate, level), {})):
        if path.exists():
            mask = Mask.load(path, place={**place, "file": "mask", **where})
            break
    else:
        # No mask file: a dense training (`lth train`), nothing pruned. Only lth's own models get here.
        from lth.models import prunable_names

        model = model if model is not None else _registered_model(config)
        mask = Mask({n: torch.ones_like(state[n], dtype=torch.bool) for n in prunable_names(model)})
    bad = [n for n in mask if n not in state or tuple(state[n].shape) != tuple(mask[n].shape)]
    if bad:
        raise ExportError(f"the mask of rep{replicate}/level{level:02d} does not fit the final weights "
                          f"({', '.join(bad)}); is run {store.root} damaged?")
    return mask


def _registered_model(config: dict[str, Any]) -> nn.Module:
    """An instance of the run's registered model (its weights are loaded afterwards)."""
    from lth.config import ModelConfig
    from lth.data import DATASETS
    from lth.models import build_model

    info = DATASETS[config["data"]["dataset"]]
    return build_model(ModelConfig(**config["model"]), input_shape=info.input_shape, num_classes=info.num_classes,
                       seed=0)


def _read_run(run, level: int, branch: str, replicate: int, model: nn.Module | None, need_model: bool):
    """(state, mask, model or None, metadata) of one training of a run, every check done before reading."""
    from lth.fileio import load_weights
    from lth.store import RunStore, Unit

    store = RunStore.open(run)
    config = store.config()
    final = _final_weights(store, replicate, level, branch)
    # A run without a model section (an agent of `lth rl`) holds a network lth's model registry cannot build:
    # like a find_tickets run, it exports from the files, or from an instance the caller passes.
    described = config.get("model") or {k: config[k] for k in ("env", "agent") if k in config}
    name = config["model"]["name"] if "model" in config else f"custom:{store.experiment()}"
    if model is None and need_model:
        if name.startswith("custom:"):
            raise ExportError(f"run {store.root} holds your own model ({name}, from find_tickets), which lth cannot "
                              "build from the run folder; pass an instance of it (model=YourNet()) in Python, or "
                              "export with --format dense or torch-prune, which need only the files")
        model = _registered_model(config)
    # Where the files belong, as the experiment recorded it in them: a file copied from elsewhere is refused.
    place = {"run": store.record()["hash"], "replicate": replicate, "level": level}
    state = load_weights(final, place={**place, "file": "final", "branch": branch})
    mask = _run_mask(store, replicate, level, branch, state, model, config, place)
    meta = {"source": str(store.unit_dir(Unit(replicate, level, branch))), "model": json.dumps(described)}
    if not name.startswith("custom:"):
        from lth.data import DATASETS

        info = DATASETS[config["data"]["dataset"]]
        meta.update(input_shape=json.dumps(list(info.input_shape)), num_classes=str(info.num_classes))
    return state, mask, model, meta


def load_ticket(run: str | Path, level: int, branch: str = "ticket", replicate: int = 0,
                model: nn.Module | None = None) -> tuple[nn.Module, Mask]:
    """A trained network of a run, with its final weights loaded, and its mask. lth builds registered models;
    for a `find_tickets` run, pass an instance of your model (it is not changed: a copy is loaded)."""
    state, mask, model, _ = _read_run(run, level, branch, replicate, copy.deepcopy(model), need_model=True)
    model.load_state_dict(state)
    return model.eval(), mask


# -- writing ---------------------------------------------------------------------------------------------------
def _zeroed(state: Mapping[str, torch.Tensor], mask: Mask) -> dict[str, torch.Tensor]:
    """The state with pruned weights set to +0 (torch.where, not a multiply, which leaves -0 for negatives)."""
    zero = torch.zeros(())
    return {k: torch.where(mask[k].to(v.device), v, zero.to(v.device, v.dtype)) if k in mask else v
            for k, v in state.items()}


def _to_csr(weight: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """CSR of the kept weights of `weight` viewed as out × rest. The pattern comes from the mask (so it is
    the mask, whatever the values); int32 indices (half the bytes of int64) while they fit."""
    w2 = weight.detach().reshape(weight.shape[0], -1)
    k2 = keep.to(w2.device).reshape(w2.shape)
    index = torch.int32 if k2.numel() < 2**31 else torch.int64
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        pattern = k2.to_sparse_csr()
        return torch.sparse_csr_tensor(pattern.crow_indices().to(index), pattern.col_indices().to(index),
                                       w2[k2], tuple(w2.shape), check_invariants=False)


def _save(tensors: Mapping[str, torch.Tensor], path: Path, meta: dict[str, str]) -> None:
    """Atomic safetensors write: a kill leaves the old file or the new one, never half of one."""
    from safetensors.torch import save

    from lth.fileio import write_bytes

    write_bytes(path, save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=meta))


def mask_path(path: str | Path) -> Path:
    """Where the dense format puts its mask: `<stem>.mask.safetensors` beside `<stem>.safetensors`."""
    path = Path(path)
    return path.with_name(f"{path.name.removesuffix('.safetensors')}.mask.safetensors")


def _write(fmt: str, state: Mapping[str, torch.Tensor], mask: Mask, path: Path, meta: dict[str, str]) -> Path:
    meta = {"lth_export": fmt, **meta, "remaining_percent": f"{100 * mask.density():.4f}"}
    state = _zeroed(state, mask)
    if fmt == "dense":
        _save(state, path, meta)
        mask.save(mask_path(path))
    elif fmt == "torch-prune":
        out = {}
        for k, v in state.items():
            if k in mask:
                out[f"{k}_orig"], out[f"{k}_mask"] = v, mask[k].to(v.device, v.dtype)
            else:
                out[k] = v
        _save(out, path, meta)
    else:
        out = {k: v for k, v in state.items() if k not in mask}
        for k in mask:
            csr = _to_csr(state[k], mask[k])
            out.update({f"{k}.crow_indices": csr.crow_indices(), f"{k}.col_indices": csr.col_indices(),
                        f"{k}.values": csr.values()})
        _save(out, path, {**meta, "lth_sparse": json.dumps({k: list(state[k].shape) for k in mask})})
    return path


def _out_path(out: str | Path | None, default_dir: Path | None, stem: str) -> Path:
    """`out` ending in .safetensors is the file; any other `out` is a folder for the default file name."""
    if out is not None and str(out).endswith(".safetensors"):
        return Path(out)
    if out is None and default_dir is None:
        raise ExportError("say where to write the export: out='ticket.safetensors' (a file) or out='DIR'")
    return Path(out if out is not None else default_dir) / f"{stem}.safetensors"


def export_run(run: str | Path, level: int, branch: str = "ticket", fmt: str = "dense",
               out: str | Path | None = None, replicate: int = 0, *, model: nn.Module | None = None) -> Path:
    """Export one trained network of a run folder (default: the ticket of `level`) in format `fmt`.

    Writes `<run>/export/rep<R>-level<LL>-<branch>-<fmt>.safetensors` unless `out` names a file
    (`*.safetensors`) or a folder; returns the path. `model` is needed only for the sparse format of a
    `find_tickets` run (lth checks its layers), as an instance of your network."""
    _check_format(fmt)
    state, mask, model, meta = _read_run(run, level, branch, replicate, model, need_model=fmt == "sparse")
    if fmt == "sparse":
        _check_sparse_layers(model, mask)
    if out is None:  # inside the run folder, which may be shared: never through a planted link
        refuse_link(Path(run) / "export")
    path = _out_path(out, Path(run) / "export", f"rep{replicate}-level{level:02d}-{branch}-{fmt}")
    return _write(fmt, state, mask, path, meta)


def export_model(model: nn.Module, mask: Mask, fmt: str = "dense", out: str | Path | None = None) -> Path:
    """Export a model in memory with its mask (e.g. your own network after find_tickets, or one pruned with
    torch.nn.utils.prune: take its mask with Mask.from_module, then prune.remove each module).
    `out` is the file (`*.safetensors`) or a folder for `ticket-<fmt>.safetensors`."""
    _check_format(fmt)
    if any(k.endswith("_orig") for k, _ in model.named_parameters()):
        raise ExportError("the model is still wrapped by torch.nn.utils.prune (it has *_orig parameters); read its "
                          "mask with Mask.from_module(model), then call torch.nn.utils.prune.remove(module, "
                          "'weight') on each pruned module, and export the model with that mask")
    mask.check_fits(model)
    if fmt == "sparse":
        _check_sparse_layers(model, mask)
    meta = {"model": type(model).__name__}
    return _write(fmt, model.state_dict(), mask, _out_path(out, None, f"ticket-{fmt}"), meta)


# -- torch.nn.utils.prune ---------------------------------------------------------------------------------------
def prepare_for_torch_prune(model: nn.Module, names: list[str] | None = None) -> nn.Module:
    """Apply `torch.nn.utils.prune.identity` to each weight in `names` (default: the model's prunable weights,
    which is what lth's masks cover), so that `model.load_state_dict` takes a torch-prune export: the model
    gets the `<name>_orig` / `<name>_mask` entries the file has. Weights already pruned are left alone."""
    from torch.nn.utils import prune

    from lth.models import prunable_names
    from lth.models.introspect import _owner

    for name in names if names is not None else prunable_names(model):
        module, attr = _owner(model, name)
        if not hasattr(module, f"{attr}_orig"):
            prune.identity(module, attr)
    return model


# -- sparse inference -------------------------------------------------------------------------------------------
def _check_sparse_layers(model: nn.Module, names) -> None:
    from lth.models.introspect import _owner

    bad = []
    for name in names:
        module, attr = _owner(model, name)
        if attr != "weight" or not _sparse_supported(module):
            bad.append(f"{name} ({module!r})")
    if bad:
        raise ExportError(f"the sparse format runs {SPARSE_LAYERS}; these weights are not of such a layer: "
                          f"{'; '.join(bad)}. Use --format dense or torch-prune for this model")


def _sparse_supported(module: nn.Module) -> bool:
    """Layers SparseLinear / SparseConv compute exactly as the module does (F.unfold has no other padding)."""
    if isinstance(module, nn.Linear):
        return True
    return (isinstance(module, (nn.Conv1d, nn.Conv2d)) and module.groups == 1 and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


class SparseLinear(nn.Module):
    """nn.Linear with its weight in CSR: y = W x + b as one CSR × dense product (torch.addmm, W on the left)
    on x transposed (the transposes are views). Inference only (no gradients)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().reshape(-1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1]).t()
        y = self.weight @ x2 if self.bias is None else torch.addmm(self.bias, self.weight, x2)
        return y.t().reshape(*x.shape[:-1], y.shape[0])


class SparseConv(nn.Module):
    """nn.Conv1d / nn.Conv2d with its weight in CSR: im2col (F.unfold), then one sparse × dense product."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        one_d = isinstance(conv, nn.Conv1d)
        pad = lambda v: (1, *v) if one_d else tuple(v)  # noqa: E731  Conv1d runs as a 1 × L Conv2d
        self.one_d, self.kernel = one_d, pad(conv.kernel_size)
        self.stride, self.dilation = pad(conv.stride), pad(conv.dilation)
        self.padding = (0, *conv.padding) if one_d else tuple(conv.padding)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None if bias is None else bias.detach().reshape(-1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(2) if self.one_d else x
        n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
        cols = F.unfold(x, self.kernel, self.dilation, self.padding, self.stride)  # N × (C·k) × L
        ho, wo = ((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in
                  zip((h, w), self.padding, self.dilation, self.kernel, self.stride))
        flat = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (C·k) × (N·L)
        y = self.weight @ flat if self.bias is None else torch.addmm(self.bias, self.weight, flat)
        y = y.reshape(-1, n, ho * wo).transpose(0, 1)
        return y.reshape(n, -1, wo) if self.one_d else y.reshape(n, -1, ho, wo)


class SparseModel(nn.Module):
    """A network whose pruned layers compute with CSR weights; its own forward runs unchanged around them.
    Inference only, in eval mode. It computes the dense ticket's logits up to float rounding (the sparse
    products add in another order).

        SparseModel.load("ticket-sparse.safetensors")                 # lth's registered models
        SparseModel.load("ticket-sparse.safetensors", model=MyNet())  # your own network
        SparseModel.from_dense(model, mask)                           # in memory
    """

    def __init__(self, model: nn.Module, weights: Mapping[str, torch.Tensor]):
        """`weights`: CSR tensors (out × rest) by parameter name. `model` is changed: those layers are replaced."""
        super().__init__()
        from lth.models.introspect import _owner

        _check_sparse_layers(model, weights)
        for name, csr in weights.items():
            module, _ = _owner(model, name)
            prefix = name.rpartition(".")[0]
            if isinstance(module, nn.Linear):
                layer = SparseLinear(csr, module.bias)
            else:
                layer = SparseConv(module, csr, module.bias)
            if not prefix:  # the model is the layer
                model = layer
                continue
            parent, _, child = prefix.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, layer)
        self.model = model.eval()

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.model(*args, **kwargs)

    @classmethod
    def from_dense(cls, model: nn.Module, mask: Mask) -> "SparseModel":
        """The sparse form of `model` (not changed: a copy is made) under `mask`."""
        mask.check_fits(model)
        params = dict(model.named_parameters())
        return cls(copy.deepcopy(model), {n: _to_csr(params[n], mask[n]) for n in mask})

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None,
             device: str | torch.device = "cpu") -> "SparseModel":
        """Run a sparse export. Without `model`, lth builds the registered model the file names; with it (your
        own network; not changed, a copy is loaded), the file's dense entries must match its state dict."""
        from safetensors import safe_open

        with safe_open(str(path), "pt", device=str(device)) as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("lth_export") != "sparse":
            raise ExportError(f"{path} is not an lth sparse export (its format: {meta.get('lth_export', 'none')}); "
                              "write one with lth export RUN --level L --format sparse")
        shapes = json.loads(meta["lth_sparse"])
        if model is None:
            model = _model_from_meta(meta, path)
        else:
            model = copy.deepcopy(model)
        weights = {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
            for name, shape in shapes.items():
                # Invariants checked: a malformed file must be an error, not an out-of-bounds read.
                try:
                    weights[name] = torch.sparse_csr_tensor(
                        tensors.pop(f"{name}.crow_indices"), tensors.pop(f"{name}.col_indices"),
                        tensors.pop(f"{name}.values"), (shape[0], math.prod(shape[1:])), check_invariants=True)
                except (KeyError, RuntimeError) as e:
                    raise ExportError(f"{path} is damaged: the CSR tensors of {name} are missing or invalid ({e}); "
                                      "export the ticket again") from None
        state = model.state_dict()
        expected = set(state) - set(shapes)
        wrong = [n for n, shape in shapes.items() if n not in state or list(state[n].shape) != shape]
        problems = [f"{what}: {names}" for what, names in (
            ("entries only in the file", sorted(set(tensors) - expected)),
            ("entries only in the model", sorted(expected - set(tensors))),
            ("sparse weights the model lacks or has in another shape", wrong)) if names]
        if problems:
            raise ExportError(f"{path} does not fit {type(model).__name__} ({'; '.join(problems)}); pass the network "
                              "it was exported from")
        model.load_state_dict(tensors, strict=False)
        return cls(model.to(device), weights)


def _model_from_meta(meta: dict[str, str], path) -> nn.Module:
    """The registered model an export of a run names in its metadata."""
    try:
        config = {"model": json.loads(meta["model"])}
        shape, classes = json.loads(meta["input_shape"]), int(meta["num_classes"])
    except (KeyError, ValueError, TypeError):
        raise ExportError(f"{path} does not name a model lth can build (exported from your own model); pass "
                          "an instance: SparseModel.load(path, model=YourNet())") from None
    from lth.config import ModelConfig
    from lth.models import build_model

    return build_model(ModelConfig(**config["model"]), input_shape=tuple(shape), num_classes=classes, seed=0)


# -- the command line -------------------------------------------------------------------------------------------
LOAD_HINTS = {
    "dense": "model.load_state_dict(safetensors.torch.load_file(PATH))",
    "torch-prune": "lth.export.prepare_for_torch_prune(model); "
                   "model.load_state_dict(safetensors.torch.load_file(PATH))",
    "sparse": "lth.export.SparseModel.load(PATH)",
}


def cli(argv: list[str]) -> int:
    """`lth export RUN --level L [--branch ticket] [--replicate 0] --format dense|torch-prune|sparse [--out PATH]`"""
    p = ArgumentParser(prog="lth export", description="Write a trained ticket of a run in a format other "
                                "tools read (see the Export section of the README).")
    p.add_argument("run", help="a run folder (printed by lth run)")
    p.add_argument("--level", type=int, required=True, help="the pruning level (0: the dense network)")
    p.add_argument("--branch", default="ticket", help="the training to export (default ticket; `lth train` runs: "
                   "dense); controls keep no final weights")
    p.add_argument("--replicate", type=int, default=0)
    p.add_argument("--format", dest="fmt", required=True, choices=FORMATS,
                   help="dense: pruned weights zeroed, mask beside it; torch-prune: torch.nn.utils.prune's "
                   "weight_orig/weight_mask layout; sparse: CSR weights for SparseModel")
    p.add_argument("--out", default=None, help="a .safetensors file, or a folder (default: RUN/export/)")
    args = p.parse_args(argv)
    path = export_run(args.run, args.level, args.branch, args.fmt, args.out, args.replicate)
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        pm = float(f.metadata()["remaining_percent"])
    print(f"wrote {path} ({args.fmt}, P_m {pm:.2f}%)")
    if args.fmt == "dense":
        print(f"wrote {mask_path(path)} and {mask_path(path).with_suffix('.json')} (the mask)")
    print(f"load with: {LOAD_HINTS[args.fmt].replace('PATH', repr(str(path)))}")
    return 0


if __name__ == "__main__":
    import sys

    try:
        sys.exit(cli(sys.argv[1:]))
    except (UserError, FileNotFoundError) as e:
        print(f"lth export: error: {e}", file=sys.stderr)
        sys.exit(2)
