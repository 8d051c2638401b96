"""Weights as safetensors (portable, safe to load) and resumable training state, all written atomically:
a kill at any moment leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn


def _atomic(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def save_weights(state: dict[str, torch.Tensor] | nn.Module, path: str | Path) -> None:
    from safetensors.torch import save_file

    if isinstance(state, nn.Module):
        state = state.state_dict()
    path = Path(path)
    tmp = _atomic(path)
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp))
    os.replace(tmp, path)


def load_weights(path: str | Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path), device=str(device))


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """Training state (optimizer, RNG, metrics so far) for resuming; torch.save because it holds Python data."""
    path = Path(path)
    tmp = _atomic(path)
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)
