"""Networks of the lottery-ticket literature, their initializers, and model introspection.

`build_model(cfg, input_shape=..., num_classes=..., seed=...)` makes any registered network; `initialize`
re-draws any nn.Module's weights deterministically; `prunable_names` / `output_name` / `layer_kind` /
`count_weights` tell the pruning code what to prune, for these models and for a user's own.
"""

from .init import INITIALIZERS, initialize
from .introspect import (
    count_weights,
    layer_kind,
    output_name,
    output_names,
    prunable_names,
)
from .registry import MODELS, ModelInfo, build_model

__all__ = [
    "INITIALIZERS",
    "MODELS",
    "ModelInfo",
    "build_model",
    "count_weights",
    "initialize",
    "layer_kind",
    "output_name",
    "output_names",
    "prunable_names",
]
