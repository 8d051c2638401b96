"""Weights as safetensors (portable, safe to load) and resumable training state, all written atomically
through lth.fileio: a kill at any moment leaves either the old file or the new one, never half of one.

Resumable state is loaded with `torch.load(weights_only=True)`: it holds only tensors, dicts, lists, numbers
and None, and a state that holds anything else (a pickled callable in a run folder received from someone)
is refused instead of run.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from lth.errors import RunFolderError
from lth.fileio import load_weights, save_weights, write_bytes  # noqa: F401 (weights live in fileio)


class DamagedState(RunFolderError):
    """A resume.pt that cannot be read (truncated, emptied): nothing is lost but the time since it started."""


def save_state(state: dict[str, Any], path: str | Path) -> None:
    """Training state (optimizer, RNG, metrics so far) for resuming; torch.save because it holds Python data.
    The number of CPU threads is recorded with it (see `warn_if_settings_differ`)."""
    buf = io.BytesIO()
    torch.save({**state, "threads": torch.get_num_threads()}, buf)
    write_bytes(path, buf.getvalue())


def load_state(path: str | Path) -> dict[str, Any]:
    """The resumable state at `path`. Refused (RunFolderError) if it holds anything but tensors and plain data;
    a DamagedState if it cannot be read at all."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only" in str(e):
            raise RunFolderError(f"{path} holds Python objects other than tensors and plain data; lth refuses to "
                                 "load it, since loading it could run code. Delete the file to restart that "
                                 "training from its start.") from None
        raise DamagedState(f"{path} is damaged ({e})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise DamagedState(f"{path} is damaged ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(state, dict) or not {"step", "model", "optimizer", "metrics"} <= set(state):
        raise DamagedState(f"{path} is damaged (not a resumable training state)")
    return state


def set_aside(path: Path) -> Path:
    """Move a damaged state out of the way (kept for inspection) so that its training restarts."""
    target = path.with_name(path.name + ".damaged")
    path.replace(target)
    return target


def warn_if_settings_differ(state: dict[str, Any], path: str | Path, device: torch.device, compute,
                            world_size: int = 1) -> None:
    """Warn when CPU training resumes with another thread count, other compute settings or another number of
    data-parallel processes (torchrun) than it was checkpointed with.

    The CPU matrix kernels may split their sums differently for another number of threads, and training
    amplifies a last-bit difference, so the resumed run would not end bit for bit where an uninterrupted
    one would. A warning, not an error: the run is still valid, only not an exact continuation."""
    saved = state.get("threads")
    if device.type == "cpu" and saved is not None and saved != torch.get_num_threads():
        warnings.warn(f"resuming {path} with {torch.get_num_threads()} CPU threads; it was checkpointed with "
                      f"{saved}. The results may differ from an uninterrupted run's; to continue it exactly, "
                      f"resume with --compute.threads {saved}.", stacklevel=3)
    saved_world = state.get("world_size", 1)
    if saved_world != world_size:
        warnings.warn(f"resuming {path} on {world_size} data-parallel process(es); it was checkpointed on "
                      f"{saved_world}. Each step then splits its batch another way, so the results may differ in "
                      f"the last bits from an uninterrupted run's.", stacklevel=3)
    recorded = state.get("compute")
    if recorded is not None:
        now = dataclasses.asdict(compute)
        changed = sorted(k for k in now if k != "threads" and k in recorded and recorded[k] != now[k])
        if changed:
            was = ", ".join(f"--compute.{k} {recorded[k]}" for k in changed)
            warnings.warn(f"resuming {path} with other compute settings than it was checkpointed with ({was}); "
                          "the results may differ in the last bits from an uninterrupted run's.", stacklevel=3)
