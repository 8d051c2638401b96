"""Every seed of an experiment, derived in one place from the config's seeds and where a training sits.

`seed_for(purpose, ...)` is the only way lth derives a seed. The purposes that existed before this module
keep their original formulas, so runs made with earlier versions resume and give the same numbers; a new
purpose gets an independent stream from a hash of its name and coordinates.

| purpose        | from                          | used for                                              |
|----------------|-------------------------------|-------------------------------------------------------|
| init           | seed + replicate              | θ_0 of a replicate                                    |
| data           | data_seed + replicate         | the data order (and augmentation) of a replicate      |
| dropout        | data seed (of the training)   | torch's global RNG during a training (dropout)        |
| prune          | (seed + replicate)·1009+level | the generator a pruning criterion may draw from       |
| reinit         | hash(seed, replicate, level, branch) | the fresh init of a reinit control            |
| random_prune   | hash(seed, replicate, level)  | the random mask of the random-pruning control         |
| anything else  | hash(purpose, seed, replicate, level, branch) |                                       |
"""

from __future__ import annotations

import hashlib


def _hashed(*parts: object) -> int:
    """A 63-bit seed from named parts, so every branch, level and replicate has its own stream."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_for(purpose: str, seed: int, replicate: int = 0, level: int = 0, branch: str = "") -> int:
    """The seed of `purpose` for the training at (replicate, level, branch) of an experiment seeded `seed`.

    For "data" and "dropout", `seed` is the config's data seed (train.data_seed); otherwise the config's
    seed."""
    if purpose in ("init", "data"):
        return seed + replicate
    if purpose == "dropout":
        import torch

        g = torch.Generator().manual_seed(seed * 7919 + 17)
        return int(torch.randint(0, 2**62, (1,), generator=g))
    if purpose == "prune":
        return (seed + replicate) * 1009 + level
    if purpose == "reinit":
        return _hashed("reinit", seed, replicate, level, branch)
    if purpose == "random_prune":
        return _hashed("random_prune", seed, replicate, level)
    return _hashed(purpose, seed, replicate, level, branch)
