"""Weights as safetensors (portable, safe to load) and resumable training state, all written atomically:
a kill at any moment leaves either the old file or the new one, never half of one."""

from __future__ import annotations

import os
import warnings
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
    """Training state (optimizer, RNG, metrics so far) for resuming; torch.save because it holds Python data.
    The number of CPU threads is recorded with it (see `warn_if_threads_differ`)."""
    path = Path(path)
    tmp = _atomic(path)
    torch.save({**state, "threads": torch.get_num_threads()}, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def warn_if_threads_differ(state: dict[str, Any], path: str | Path, device: torch.device) -> None:
    """Warn when CPU training resumes with another thread count than it was checkpointed with.

    The CPU matrix kernels may split their sums differently for another number of threads, and training
    amplifies a last-bit difference, so the resumed run would not end bit for bit where an uninterrupted
    one would. A warning, not an error: the run is still valid, only not an exact continuation."""
    saved = state.get("threads")
    if device.type == "cpu" and saved is not None and saved != torch.get_num_threads():
        warnings.warn(f"resuming {path} with {torch.get_num_threads()} CPU threads; it was checkpointed with "
                      f"{saved}. The results may differ from an uninterrupted run's; to continue it exactly, "
                      f"resume with OMP_NUM_THREADS={saved} (or torch.set_num_threads({saved})).", stacklevel=3)
