"""Steppers that learn a mask on frozen weights (strong tickets): edge-popup (Ramanujan et al. 2020) and the
Bernoulli supermask (Zhou et al. 2019).

Every prunable weight gets a score, held by the model itself (a `mask_scores` submodule), so the scores are
in the model's state dict: checkpoints, resume and the final state carry them like any weights. The
optimizer sees only the scores; every parameter of the network is frozen, and the forward pass uses
θ ⊙ M(scores) through torch.func.functional_call, so the stored weights never change.

k is the *kept* fraction (the reference code calls it "prune rate" in one place and uses it as the kept
fraction, and "sparsity" in another, meaning the same; here it has one meaning):
- edge-popup keeps exactly round(k·n) weights of each layer of n, those with the largest |score|; the
  gradient reaches the scores straight through (∂L/∂s = sign(s) · ∂L/∂(θ⊙M) ⊙ θ, the reference code's
  GetSubnet on |s|). Scores start Kaiming-uniform (PyTorch's nn.Linear default, a = √5).
- the Bernoulli supermask samples M ~ Bernoulli(σ(m)) at every step from mask logits m, straight through
  with σ's gradient (M + σ(m) − stop_gradient(σ(m)), Zhou et al.'s code); the logits start at logit(k), so
  k is the initial keep probability. Evaluations draw one mask from a fixed seed, so every split of one
  evaluation sees the same network and evaluations do not disturb the training's random stream.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call

from lth.config import ComputeConfig, TrainConfig
from lth.prune.select import keep_top_k
from lth.train.metrics import evaluate
from lth.train.module import ModuleStepper

SCORES = "mask_scores"
"""The submodule of the model that holds the scores; state-dict keys `mask_scores.<weight name with __>`."""


def score_key(name: str) -> str:
    """The scores' parameter name for weight `name` (parameter names cannot contain dots)."""
    return name.replace(".", "__")


def split_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the network's own state, the scores by weight name) of a learned-mask model's state dict."""
    prefix = SCORES + "."
    scores = {k[len(prefix):].replace("__", "."): v for k, v in state.items() if k.startswith(prefix)}
    return {k: v for k, v in state.items() if not k.startswith(prefix)}, scores


def kept_count(k: float, n: int) -> int:
    """Weights edge-popup keeps of a layer of n at kept fraction k."""
    return round(k * n)


class _TopK(torch.autograd.Function):
    """The mask of the `kept` largest entries; the gradient passes straight through to the scores."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, kept: int) -> torch.Tensor:
        # Linear time and no host sync (a top-k partial sort was the slowest part of a step).
        return keep_top_k(scores.reshape(-1), kept).to(scores.dtype).view_as(scores)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


class LearnedMaskStepper(ModuleStepper):
    """One network whose weights are frozen and whose masks are learned from scores (subclasses say how the
    scores start and how they make a mask)."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, mask=None, *, device: torch.device,
                 compute: ComputeConfig = ComputeConfig(), k: float, seed: int = 0):
        from lth.models import prunable_names

        if mask is not None and not all(bool(mask[n].all()) for n in mask):
            raise ValueError("a learned-mask stepper learns its own mask; start it from the dense network")
        self.k, self.seed = k, seed
        self.names = prunable_names(model)
        params = dict(model.named_parameters())
        for p in model.parameters():
            p.requires_grad_(False)
        if not hasattr(model, SCORES):
            g = torch.Generator().manual_seed(seed)  # the layers draw in the model's order from one stream
            scores = nn.Module()
            for n in self.names:
                scores.register_parameter(score_key(n), nn.Parameter(self.initial_scores(params[n], g)))
            model.add_module(SCORES, scores)
        super().__init__(model, cfg, None, device=device, compute=compute)
        self.weights = {n: params[n] for n in self.names}

    # -- what subclasses define ------------------------------------------------------------------------
    def initial_scores(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def masks(self, training: bool) -> dict[str, torch.Tensor]:
        """The mask of every prunable weight (differentiable in the scores while training)."""
        raise NotImplementedError

    # -- the stepper -----------------------------------------------------------------------------------
    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(getattr(self.model, SCORES).parameters())

    def score(self, name: str) -> torch.Tensor:
        return getattr(getattr(self.model, SCORES), score_key(name))

    def _gradients(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from lth.train.metrics import cross_entropy

        masks = self.masks(True)  # outside the kernels' context, which only the products need
        weights = {n: self.weights[n] * masks[n] for n in self.names}
        with self.autocast():
            logits = functional_call(self.model, weights, (x,))
            loss = cross_entropy(logits, y)
        for p in self.params:
            p.grad = None
        loss.backward()
        return loss, logits

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks = {n: m.detach() for n, m in self.masks(False).items()}  # one mask for the whole split

        def forward(batch: torch.Tensor) -> torch.Tensor:
            return functional_call(self.model, {n: self.weights[n] * masks[n] for n in self.names}, (batch,))

        return evaluate(self.model, x, y, autocast=self.autocast(), forward=forward)


class EdgePopupStepper(LearnedMaskStepper):
    """edge-popup: the top round(k·n) |scores| of each layer, straight-through gradients."""

    def initial_scores(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        t = torch.empty(weight.shape)
        nn.init.kaiming_uniform_(t, a=math.sqrt(5), generator=generator)
        return t.to(weight.device)

    def masks(self, training: bool) -> dict[str, torch.Tensor]:
        out = {}
        for n in self.names:
            s = self.score(n)
            out[n] = _TopK.apply(s.abs(), kept_count(self.k, s.numel()))
        return out


class BernoulliStepper(LearnedMaskStepper):
    """Zhou et al.'s supermask: M ~ Bernoulli(σ(m)), straight through; logits start at logit(k)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stochastic = True  # training draws its masks from torch's global generator

    def initial_scores(self, weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return torch.full(weight.shape, math.log(self.k / (1 - self.k)), device=weight.device)

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {n: torch.sigmoid(self.score(n)) for n in self.names}

    def masks(self, training: bool) -> dict[str, torch.Tensor]:
        probs = self.probabilities()
        if training:  # a uniform draw below p is a Bernoulli(p) sample (the reference code's way, and faster)
            return {n: (torch.rand_like(p) < p).to(p.dtype) + p - p.detach() for n, p in probs.items()}
        g = torch.Generator().manual_seed(self.seed)
        return {n: (torch.rand(p.shape, generator=g).to(p.device) < p).to(p.dtype) for n, p in probs.items()}


STEPPERS = {"edge_popup": EdgePopupStepper, "bernoulli": BernoulliStepper}


@torch.no_grad()
def learned_mask(method: str, scores: dict[str, torch.Tensor], k: float) -> dict[str, torch.Tensor]:
    """The mask a finished training learned, from its scores: edge-popup's top round(k·n) |scores| per layer
    (as its forward pass used them), the Bernoulli supermask's weights with σ(m) > 1/2 (its most likely
    mask)."""
    if method == "edge_popup":
        return {n: _TopK.apply(s.abs(), kept_count(k, s.numel())).bool() for n, s in scores.items()}
    return {n: s > 0 for n, s in scores.items()}


@torch.no_grad()
def expected_density(method: str, scores: dict[str, torch.Tensor], k: float) -> float:
    """The fraction of the weights the learned mask keeps (Bernoulli: in expectation, Σσ(m) / n)."""
    total = sum(s.numel() for s in scores.values())
    if method == "edge_popup":
        return sum(kept_count(k, s.numel()) for s in scores.values()) / total
    return float(sum(torch.sigmoid(s.float()).sum() for s in scores.values()) / total)
