"""Gradual magnitude pruning (Zhu & Gupta 2017): the sparsity schedule of one training.

The sparsity rises from s_i to s_f along a cubic, with masks updated every Δt steps from step t_0:

    s_t = s_f + (s_i − s_f) · (1 − (t − t_0) / (n·Δt))³      for t = t_0, t_0 + Δt, ..., t_0 + n·Δt

and stays at s_f afterwards. It prunes fast while many weights are redundant and slowly near the end. Each
update keeps the largest-magnitude weights among those still alive (pruned weights stay pruned), layer by
layer towards each layer's own final count (layer-wise), or over all pruned layers together (global), so
that a gradual run ends at exactly the per-layer sparsity of an IMP level.
"""

from __future__ import annotations

from dataclasses import dataclass

from lth.errors import ConfigError


def cubic_sparsity(t: int, t0: int, n: int, dt: int, s_i: float, s_f: float) -> float:
    """Zhu & Gupta's s_t: s_i before t_0, s_f from t_0 + n·Δt on, the cubic in between."""
    if t <= t0:
        return s_i
    progress = min(1.0, (t - t0) / (n * dt))
    return s_f + (s_i - s_f) * (1.0 - progress) ** 3


@dataclass(frozen=True)
class GradualSchedule:
    """When the mask changes and how many weights each update keeps.

    `final`: the kept count at the end, per pruned layer (layer-wise) or as one total over the pruned layers
    (global); `sizes`: those layers' sizes."""

    t0: int
    n: int
    dt: int
    final: dict[str, int] | int
    sizes: dict[str, int]
    initial_sparsity: float = 0.0

    @classmethod
    def spanning(cls, begin: int, end: int, dt: int, final: dict[str, int] | int, sizes: dict[str, int],
                 initial_sparsity: float = 0.0) -> "GradualSchedule":
        """Updates every `dt` steps from `begin`, the last at or before `end`."""
        if dt < 1 or end - begin < dt:
            raise ConfigError(f"gradual pruning needs at least one update of Δt={dt} steps between step {begin} and "
                              f"step {end}; lower --gradual.every or widen --gradual.begin/--gradual.end")
        return cls(begin, (end - begin) // dt, dt, final, sizes, initial_sparsity)

    @property
    def end(self) -> int:
        return self.t0 + self.n * self.dt

    def is_update(self, t: int) -> bool:
        return self.t0 <= t <= self.end and (t - self.t0) % self.dt == 0

    def counts(self, t: int) -> dict[str, int] | int:
        """Kept counts after the update at step t: size − round(s_t · size), which is exactly `final` at the end."""
        if isinstance(self.final, int):
            total = sum(self.sizes.values())
            return total - round(self.sparsity(t, 1 - self.final / total) * total)
        return {name: size - round(self.sparsity(t, 1 - self.final[name] / size) * size)
                for name, size in self.sizes.items()}

    def sparsity(self, t: int, s_f: float) -> float:
        # A layer whose final sparsity is below s_i starts at its final sparsity: a mask never regrows.
        return cubic_sparsity(t, self.t0, self.n, self.dt, min(self.initial_sparsity, s_f), s_f)
