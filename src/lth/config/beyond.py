"""The configs of `lth prune_at_init` and `lth supermask`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from lth.config.fields import _extent, _positive_finite
from lth.config.sections import PruneConfig, RunConfig
from lth.errors import ConfigError

PAI_ABLATIONS = ("shuffle", "reinit", "invert")
"""Frankle et al. 2021's sanity checks: the mask permuted within each layer, the same mask on a new θ_0, and
the lowest-scoring weights kept instead of the highest."""


@dataclass(frozen=True)
class PaiSection:
    """Pruning at initialization: which criteria, to which P_m, and the ablations that test them.

    The target P_m are IMP's: level L keeps what L rounds of `--prune.rate` (layer-wise or global, as the
    prune section says) would keep, so a level has the P_m of the same level of an IMP run."""

    criteria: tuple[str, ...] = _extent(("snip", "grasp", "synflow", "magnitude_init", "random", "smart_ratio"))
    """Criteria from the registry (`lth models`), one training per level each."""
    levels: tuple[int, ...] = _extent((3, 6, 9, 12))
    """Levels of the IMP schedule to prune to (P_m printed with the run)."""
    scope: Literal["global", "layerwise"] = "global"
    """global: the top scores over all pruned layers (the papers' choice); layerwise: IMP's per-layer counts."""
    ablations: tuple[str, ...] = _extent(())
    """shuffle | reinit | invert, run for every criterion except random and smart_ratio (random positions)."""
    ablation_levels: tuple[int, ...] = _extent(())
    """Levels that also run the ablations (empty: all of `levels`)."""
    batches: int = 0
    """Batches of --train.batch_size that SNIP and GraSP score on (0: enough for 10 examples per class, the
    Synaptic-Flow code's default)."""
    replicates: int = _extent(1)
    """Independent seeds (θ_0 and data order), as for IMP."""

    def check(self) -> None:
        if not self.criteria:
            raise ConfigError("--pai.criteria is empty: name at least one criterion (e.g. snip synflow random)")
        if len(set(self.criteria)) != len(self.criteria):
            raise ConfigError(f"--pai.criteria names a criterion twice: {self.criteria}")
        if not self.levels or any(lv < 1 for lv in self.levels) or len(set(self.levels)) != len(self.levels):
            raise ConfigError(f"--pai.levels must be distinct levels >= 1 of the IMP schedule (e.g. 3 6 9 12), got "
                              f"{self.levels}")
        unknown = [a for a in self.ablations if a not in PAI_ABLATIONS]
        if unknown:
            raise ConfigError(f"unknown ablation(s) {unknown}; choose from {', '.join(PAI_ABLATIONS)} "
                              "(--pai.ablations shuffle invert)")
        stray = [lv for lv in self.ablation_levels if lv not in self.levels]
        if stray:
            raise ConfigError(f"--pai.ablation_levels {stray} are not in --pai.levels {self.levels}; ablations run at "
                              "levels that are pruned anyway")
        if self.batches < 0:
            raise ConfigError(f"--pai.batches must be >= 0 (0: 10 examples per class), got {self.batches}")
        if self.replicates < 1:
            raise ConfigError(f"--pai.replicates must be >= 1, got {self.replicates}")


@dataclass(frozen=True)
class PruneAtInitConfig(RunConfig):
    """Pruning at initialization (`lth prune_at_init`): each criterion prunes θ_0 once to each level's P_m,
    then the subnetwork trains like any other; level 0 is the dense network."""

    experiment: ClassVar[str] = "prune_at_init"

    prune: PruneConfig = field(default_factory=PruneConfig)
    """The IMP schedule that sets the target P_m (rate, output_rate, strategy, exclude); the criterion is
    --pai.criteria's."""
    pai: PaiSection = field(default_factory=PaiSection)


SUPERMASK_METHODS = ("edge_popup", "bernoulli")


@dataclass(frozen=True)
class SupermaskSection:
    """Strong tickets: masks learned on frozen random weights (no weight is trained)."""

    k: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    """Kept fractions, one level each: edge-popup keeps exactly round(k·n) weights of every layer (k = 0.5
    keeps half; k is what is *kept*, not removed); the Bernoulli supermask starts with keep probability k."""
    methods: tuple[str, ...] = _extent(("edge_popup",))
    """edge_popup (Ramanujan et al. 2020) and/or bernoulli (Zhou et al. 2019), one training per k each; none
    runs only the dense network, the untrained one and the large_final masks."""
    signed_constant: bool = False
    """Bernoulli: replace each weight by sign(θ_0)·std of its layer's θ_0 (Zhou et al.'s signed constant).
    For edge-popup use --model.init signed_kaiming_constant."""
    dense_lr: float | None = None
    """Learning rate of the dense network's (weight) training at level 0 (None: --train.lr). Mask logits may
    want a rate that would make weights diverge."""
    replicates: int = _extent(1)
    """Independent seeds (θ_0, scores and data order)."""

    def check(self) -> None:
        if not self.k:
            raise ConfigError("--supermask.k is empty: give kept fractions in (0, 1], e.g. 0.1 0.3 0.5")
        bad = [k for k in self.k if not (math.isfinite(k) and 0 < k <= 1)]
        if bad:
            raise ConfigError(f"--supermask.k must be kept fractions in (0, 1] (0.5 keeps half of each layer's "
                              f"weights), got {bad}")
        if len(set(self.k)) != len(self.k):
            raise ConfigError(f"--supermask.k names a fraction twice: {self.k}")
        unknown = [m for m in self.methods if m not in SUPERMASK_METHODS]
        if unknown or len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"--supermask.methods must name some of {', '.join(SUPERMASK_METHODS)} (or none, for "
                              f"the dense, untrained and large_final networks only), got {self.methods}")
        if "bernoulli" in self.methods and 1.0 in self.k:
            raise ConfigError("--supermask.k 1 with the bernoulli method: k is its initial keep probability, which "
                              "must be below 1 (its mask logits would be infinite); drop 1 from --supermask.k")
        if self.replicates < 1:
            raise ConfigError(f"--supermask.replicates must be >= 1, got {self.replicates}")
        if self.dense_lr is not None:
            _positive_finite(self.dense_lr, "--supermask.dense_lr")


@dataclass(frozen=True)
class SupermaskConfig(RunConfig):
    """Strong tickets (`lth supermask`): level 0 holds the dense network trained as usual and the untrained
    θ_0; level i, for the i-th k, a mask learned on the frozen θ_0 by each method, and the magnitude mask of
    the trained dense network applied to the untrained θ_0 (Zhou et al.'s large_final supermask)."""

    experiment: ClassVar[str] = "supermask"

    supermask: SupermaskSection = field(default_factory=SupermaskSection)
