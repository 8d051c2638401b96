"""A mask is data: named boolean tensors, one per prunable weight, with sparsity accounting.

Saved as safetensors (the tensors, as uint8) plus a JSON summary a person can read. A mask knows the shapes
it was made for, so applying it to, or loading it for, another model is an error instead of a silent
broadcast.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from torch import nn

from lth.errors import UserError
from lth.fileio import (
    damaged,
    load_weights,
    place_metadata,
    read_json,
    write_bytes,
    write_json,
)


class MaskError(UserError, ValueError):
    """A mask does not fit the model or the other mask it is used with, or a mask file is not a mask."""


class Mask(Mapping[str, torch.Tensor]):
    """Boolean tensors keyed by parameter name (True = weight kept)."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]):
        self._t: dict[str, torch.Tensor] = {}
        for name, t in tensors.items():
            self._t[name] = t if t.dtype == torch.bool else t != 0

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def ones_like(cls, model: nn.Module, names: list[str] | None = None) -> "Mask":
        """The dense mask for `names` (default: the model's prunable weights)."""
        from lth.models import prunable_names

        params = dict(model.named_parameters())
        names = names if names is not None else prunable_names(model)
        missing = [n for n in names if n not in params]
        if missing:
            raise MaskError(f"model has no parameter(s) {missing}")
        return cls({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})

    @classmethod
    def from_module(cls, model: nn.Module) -> "Mask":
        """The masks of a model pruned with `torch.nn.utils.prune`, keyed by the names the parameters had
        before pruning (`fc1.weight`, not `fc1.weight_orig`), so a model pruned with torch's API can be
        exported, compared and reported by lth. Only the tensors torch prunes are covered, in module order.

        torch keeps each mask as a `<name>_mask` buffer, applied by a forward pre-hook; the hook (a
        BasePruningMethod, or a PruningContainer after repeated pruning) names the tensor it prunes."""
        from torch.nn.utils.prune import BasePruningMethod

        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in model.named_modules():
            for hook in module._forward_pre_hooks.values():
                if isinstance(hook, BasePruningMethod):
                    attr = hook._tensor_name
                    tensors[f"{prefix}.{attr}" if prefix else attr] = getattr(module, f"{attr}_mask").detach() != 0
        if not tensors:
            raise MaskError(f"{type(model).__name__} has no tensor pruned with torch.nn.utils.prune (no "
                            "<name>_mask buffer with its forward pre-hook); prune it first, e.g. "
                            "torch.nn.utils.prune.l1_unstructured(model.fc1, 'weight', amount=0.5), or make the "
                            "mask from tensors: Mask({'fc1.weight': keep})")
        return cls(tensors)

    # -- mapping protocol ----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._t[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._t)

    def __len__(self) -> int:
        return len(self._t)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask) or list(self) != list(other):
            return False
        return all(torch.equal(self[n].cpu(), other[n].cpu()) for n in self)

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, {100 * self.density():.2f}% remaining)"

    # -- accounting ------------------------------------------------------------------------------------
    def kept(self) -> dict[str, int]:
        return {n: int(t.sum()) for n, t in self._t.items()}

    def sizes(self) -> dict[str, int]:
        return {n: t.numel() for n, t in self._t.items()}

    def density(self) -> float:
        """Fraction of weights remaining over all tensors (P_m / 100)."""
        return sum(self.kept().values()) / max(1, sum(self.sizes().values()))

    def layer_density(self) -> dict[str, float]:
        kept, sizes = self.kept(), self.sizes()
        return {n: kept[n] / max(1, sizes[n]) for n in self._t}

    def summary(self) -> dict:
        kept, sizes = self.kept(), self.sizes()
        return {
            "remaining_percent": 100 * self.density(),
            "kept": sum(kept.values()),
            "total": sum(sizes.values()),
            "layers": {
                n: {"shape": list(self._t[n].shape), "kept": kept[n], "total": sizes[n],
                    "remaining_percent": 100 * kept[n] / max(1, sizes[n])}
                for n in self._t
            },
        }

    # -- use -------------------------------------------------------------------------------------------
    def check_fits(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        for n, t in self._t.items():
            if n not in params:
                raise MaskError(f"mask has tensor {n!r} but the model has no such parameter; "
                                "was the mask made for another model?")
            if tuple(params[n].shape) != tuple(t.shape):
                raise MaskError(f"mask tensor {n!r} has shape {tuple(t.shape)} but the model's parameter "
                                f"has {tuple(params[n].shape)}; was the mask made for another model?")

    def apply_(self, model: nn.Module) -> None:
        """Zero the pruned weights of `model` in place."""
        self.check_fits(model)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, t in self._t.items():
                params[n].mul_(t.to(params[n].device, params[n].dtype))

    def to(self, device: torch.device | str) -> "Mask":
        return Mask({n: t.to(device) for n, t in self._t.items()})

    # -- comparison ------------------------------------------------------------------------------------
    def _check_same_layout(self, other: "Mask") -> None:
        if self.sizes() != other.sizes() or list(self) != list(other):
            raise MaskError("masks cover different tensors or shapes; compare masks of the same model")

    def jaccard(self, other: "Mask") -> float:
        """|A ∩ B| / |A ∪ B| of the kept weights (1 = identical)."""
        self._check_same_layout(other)
        inter = sum(int((self[n] & other[n].to(self[n].device)).sum()) for n in self)
        union = sum(int((self[n] | other[n].to(self[n].device)).sum()) for n in self)
        return inter / union if union else 1.0

    def overlap(self, other: "Mask") -> float:
        """Fraction of this mask's kept weights that `other` keeps too."""
        self._check_same_layout(other)
        inter = sum(int((self[n] & other[n].to(self[n].device)).sum()) for n in self)
        kept = sum(self.kept().values())
        return inter / kept if kept else 1.0

    def hamming(self, other: "Mask") -> float:
        """Normalized Hamming distance: fraction of positions where the masks differ."""
        self._check_same_layout(other)
        diff = sum(int((self[n] ^ other[n].to(self[n].device)).sum()) for n in self)
        return diff / max(1, sum(self.sizes().values()))

    # -- persistence -----------------------------------------------------------------------------------
    def save(self, path: str | Path, place: dict | None = None) -> None:
        """Write `path` (.safetensors) and a readable summary next to it (.json), each atomically. `place`
        (where in a run the mask belongs) is recorded in the file and checked by `load(..., place=)`."""
        from safetensors.torch import save

        path = Path(path)
        tensors = {n: t.to(torch.uint8).contiguous().cpu() for n, t in self._t.items()}
        write_bytes(path, save(tensors, place_metadata(place)))
        write_json(path.with_suffix(".json"), self.summary())

    @classmethod
    def load(cls, path: str | Path, model: nn.Module | None = None, place: dict | None = None) -> "Mask":
        """Read a mask; with `model`, check that it covers exactly that model's prunable weights, in their
        shapes. A file that is not a mask (a weights file, a damaged file), or one written for another place
        than `place`, is refused, naming the file."""
        path = Path(path)
        if not path.exists():
            raise MaskError(f"no mask file at {path}")
        fix = "Delete it (and the trainings that used it) to recompute it, or point at another mask."
        tensors = load_weights(path, fix=fix, place=place)
        for n, t in tensors.items():
            if t.dtype not in (torch.uint8, torch.bool) or bool(((t != 0) & (t != 1)).any()):
                raise MaskError(f"{path} is not a mask: tensor {n!r} holds values other than 0 and 1 "
                                f"({t.dtype}); was a weights file given where a mask was expected?")
        # safetensors does not keep insertion order; the JSON summary does.
        meta = path.with_suffix(".json")
        order = sorted(tensors)
        if meta.exists():
            layers = read_json(meta, fix).get("layers")
            if not isinstance(layers, dict) or sorted(layers) != order:
                raise damaged(meta, "its layers do not match the mask's tensors", fix)
            order = list(layers)
        mask = cls({n: tensors[n].bool() for n in order})
        if model is not None:
            mask.check_fits(model)
            from lth.models import prunable_names

            missing = [n for n in prunable_names(model) if n not in mask]
            if missing:
                raise MaskError(f"{path} has no tensor for prunable weight(s) {', '.join(missing)} of the model; "
                                "was it made for another model?")
        return mask
