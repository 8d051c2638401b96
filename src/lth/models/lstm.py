"""An LSTM for sequence classification and for character-level language modelling.

classify: x [B, T, F] -> LSTM -> the top layer's hidden state at the last step -> `head` -> logits [B, C].
lm: token ids [B, T] -> `embed` -> LSTM -> `head` at every step -> logits [B, T, vocab].

Prunable: the embedding, every layer's input and recurrent matrices (`lstm.weight_ih_l{k}`,
`lstm.weight_hh_l{k}`) and the head; never the biases. nn.LSTM reads its weights from these very parameter
tensors, so a mask multiplied into them in place is what the next forward pass uses (tests/test_seq.py).
"""

from __future__ import annotations

import torch
from torch import nn

from .shapes import sequence_shape

DEFAULT_WIDTH, DEFAULT_LAYERS = 128, 1


class LSTMNet(nn.Module):
    """`embed` (lm only), `lstm` (width units, `layers` deep), `head` (the output layer)."""

    def __init__(self, task: str, features: int, num_classes: int, width: int = DEFAULT_WIDTH,
                 layers: int = DEFAULT_LAYERS):
        super().__init__()
        self.task, self.layers = task, layers
        if task == "lm":  # the vocabulary is the output classes: the next character
            self.embed = nn.Embedding(num_classes, width)
            features = width
        self.lstm = nn.LSTM(features, width, num_layers=layers, batch_first=True)
        self.head = nn.Linear(width, num_classes)

    @property
    def prunable_names(self) -> list[str]:
        recurrent = [f"lstm.weight_{kind}_l{k}" for k in range(self.layers) for kind in ("ih", "hh")]
        return (["embed.weight"] if self.task == "lm" else []) + recurrent + ["head.weight"]

    @property
    def output_name(self) -> str:
        return "head.weight"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.task == "lm":
            out, _ = self.lstm(self.embed(x))
            return self.head(out)
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def build_lstm(input_shape: tuple[int, ...], num_classes: int, *, hidden: tuple[int, ...] = (),
               width: int = 0, dropout: float = 0.0, layers: int = 0, task: str = "classify") -> LSTMNet:
    _, features = sequence_shape("lstm", input_shape, task)
    return LSTMNet(task, features, num_classes, width or DEFAULT_WIDTH, layers or DEFAULT_LAYERS)
