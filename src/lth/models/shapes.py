"""Input-shape checks shared by the builders.

They run before any layer is created, so a wrong dataset/model pairing fails with a sentence that names
both, instead of a shape mismatch deep inside the first forward pass.
"""

from __future__ import annotations

import math

from lth.errors import ConfigError


def flat_features(name: str, input_shape: tuple[int, ...]) -> int:
    """Number of input features of an MLP (which flattens any input)."""
    _positive(name, input_shape)
    return math.prod(input_shape)


def image_shape(name: str, input_shape: tuple[int, ...], min_size: int = 1) -> tuple[int, int, int]:
    """(channels, height, width) of a 2-D convolutional net's input, at least `min_size` pixels a side."""
    _positive(name, input_shape)
    if len(input_shape) != 3:
        raise ConfigError(
            f"model {name!r} is a 2-D convolutional network and needs image input (channels, height, width), "
            f"e.g. (3, 32, 32); got input shape {tuple(input_shape)}"
        )
    c, h, w = input_shape
    if h < min_size or w < min_size:
        raise ConfigError(
            f"model {name!r} pools its input down and needs images of at least {min_size}x{min_size}; "
            f"got input shape {tuple(input_shape)}"
        )
    return c, h, w


def signal_shape(name: str, input_shape: tuple[int, ...], min_length: int = 1) -> tuple[int, int]:
    """(channels, length) of a 1-D convolutional net's input; a bare (length,) means one channel."""
    _positive(name, input_shape)
    if len(input_shape) not in (1, 2):
        raise ConfigError(
            f"model {name!r} is a 1-D convolutional network and needs signal input (length,) or "
            f"(channels, length), e.g. (40,); got input shape {tuple(input_shape)}"
        )
    c, length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
    if length < min_length:
        raise ConfigError(f"model {name!r} needs signals of length >= {min_length}; got {tuple(input_shape)}")
    return c, length


def _positive(name: str, input_shape: tuple[int, ...]) -> None:
    if len(input_shape) == 0 or any(int(d) != d or d < 1 for d in input_shape):
        raise ConfigError(f"model {name!r}: input shape must be positive integers, got {tuple(input_shape)}")


TASKS = ("classify", "lm")


def sequence_shape(name: str, input_shape: tuple[int, ...], task: str) -> tuple[int, int]:
    """(steps, features) of a sequence model's input: [T, F] vectors to classify, or [T] token ids to model
    (features is then 0: the model embeds the ids instead)."""
    if task not in TASKS:
        raise ConfigError(f"model {name!r}: unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    _positive(name, input_shape)
    if task == "lm":
        if len(input_shape) != 1:
            raise ConfigError(
                f"model {name!r} models language on token ids and needs input shape (context,), e.g. (64,); "
                f"got {tuple(input_shape)}. Fix: use a language-modelling dataset (chars, chars_tiny)"
            )
        return input_shape[0], 0
    if len(input_shape) != 2:
        raise ConfigError(
            f"model {name!r} classifies sequences and needs input shape (steps, features), e.g. (40, 1) or "
            f"(28, 28); got {tuple(input_shape)}. Fix: use a sequence dataset (mnist1d_seq, mnist_rows)"
        )
    return input_shape[0], input_shape[1]
