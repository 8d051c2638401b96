"""A small pre-LayerNorm Transformer for sequence classification and causal language modelling.

Input: token ids [B, T] -> `embed` (lm), or vectors [B, T, F] -> `input_proj` (classify); plus learned
positions `pos_embed`. Then `layers` blocks of x += attn(ln1(x)); x += mlp_out(gelu(mlp_in(ln2(x)))), a final
LayerNorm, and `head`: at every step for lm (logits [B, T, vocab]), on the mean over steps for classify
(logits [B, C]). Attention is causal for lm only.

Attention keeps q, k, v and out as four separate nn.Linear so that each is its own prunable weight (and its
own row in a mask report); layer_kind calls them "attention". Prunable: embed, input_proj, q/k/v/out,
mlp_in/out, head; never biases, LayerNorms or the positional embedding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .shapes import sequence_shape

DEFAULT_WIDTH, DEFAULT_LAYERS, DEFAULT_HEADS = 128, 2, 4
MLP_RATIO = 4  # hidden width of each block's MLP, as a multiple of the model width (GPT-2's)
_ATTENTION = ("q", "k", "v", "out")


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.out = (nn.Linear(width, width) for _ in _ATTENTION)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        b, t, d = x.shape

        def split(z: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, heads, T, D / heads]
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)), is_causal=causal)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp_in = nn.Linear(width, MLP_RATIO * width)
        self.mlp_out = nn.Linear(MLP_RATIO * width, width)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), causal)
        return x + self.mlp_out(F.gelu(self.mlp_in(self.ln2(x))))


class Transformer(nn.Module):
    def __init__(self, task: str, steps: int, features: int, num_classes: int, width: int = DEFAULT_WIDTH,
                 layers: int = DEFAULT_LAYERS, heads: int = DEFAULT_HEADS):
        super().__init__()
        if width % heads:
            raise ConfigError(f"transformer: width {width} is not divisible by {heads} heads. "
                             "Fix: choose --model.width as a multiple of --model.heads")
        self.task, self.layers = task, layers
        if task == "lm":  # the vocabulary is the output classes: the next token
            self.embed = nn.Embedding(num_classes, width)
        else:
            self.input_proj = nn.Linear(features, width)
        self.pos_embed = nn.Embedding(steps, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def _block_weights(self) -> list[str]:
        return [f"blocks.{i}.{w}.weight" for i in range(self.layers)
                for w in (*(f"attn.{a}" for a in _ATTENTION), "mlp_in", "mlp_out")]

    @property
    def prunable_names(self) -> list[str]:
        first = "embed.weight" if self.task == "lm" else "input_proj.weight"
        return [first, *self._block_weights(), "head.weight"]

    @property
    def output_name(self) -> str:
        return "head.weight"

    @property
    def layer_kinds(self) -> dict[str, str]:
        """The attention projections are nn.Linear; name their kind so pruning reports can group them."""
        return {n: "attention" for n in self._block_weights() if ".attn." in n}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        causal = self.task == "lm"
        if x.shape[1] > self.pos_embed.num_embeddings:
            raise ConfigError(f"transformer: a sequence of {x.shape[1]} steps is longer than the "
                             f"{self.pos_embed.num_embeddings} positions it was built for")
        h = self.embed(x) if causal else self.input_proj(x)
        h = h + self.pos_embed.weight[: h.shape[1]]
        for block in self.blocks:
            h = block(h, causal)
        h = self.ln_f(h)
        return self.head(h) if causal else self.head(h.mean(dim=1))


def build_transformer(input_shape: tuple[int, ...], num_classes: int, *, hidden: tuple[int, ...] = (),
                      width: int = 0, dropout: float = 0.0, layers: int = 0, heads: int = 0,
                      task: str = "classify") -> Transformer:
    steps, features = sequence_shape("transformer", input_shape, task)
    return Transformer(task, steps, features, num_classes, width or DEFAULT_WIDTH, layers or DEFAULT_LAYERS,
                       heads or DEFAULT_HEADS)
