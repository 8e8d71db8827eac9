"""Kronecker-factored layers: which parameters form a layer, and each example's layer inputs and output gradients.

A layer ``s = W a`` (``nn.Linear``; ``nn.Conv1d``/``nn.Conv2d`` with ``a`` the unfolded input patches; ``nn.Embedding``
with ``a`` the one-hot vector of the token and ``W`` its weight transposed) has the per-example gradient
``G = Σₜ gₜ aₜᵀ`` over its positions ``t``, with ``g = ∂ℓ/∂s``; a selected bias is the weight of an appended constant
input 1. K-FAC approximates the Fisher block of ``W`` by ``S ⊗ A`` with ``A = E[a aᵀ]`` and ``S = E[g gᵀ]``, both
averaged over examples and positions; an embedding's ``A`` is the diagonal of its tokens' frequencies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core.data import Batch
from ..core.errors import ConfigError
from ..core.params import Params
from ..core.task import Task, check_class_targets

FISHERS = ("true", "empirical")
MAX_EMBEDDING_ROWS = 8192  # an embedding's A (diagonal, but kept as a dense matrix like every other layer's) and its
# eigenvectors are num_embeddings²: 8192 rows take 0.5 GiB in float64; larger vocabularies are refused


@dataclass
class Layer:
    """A supported module whose weight (and maybe bias) is selected: ``G`` is ``[out, in (+1 for the bias)]``."""

    name: str
    module: nn.Module
    weight: str
    bias: str | None

    @property
    def shape(self) -> tuple[int, int]:
        w = self.module.weight
        if isinstance(self.module, nn.Embedding):  # s = Wᵀ a: out = embedding_dim, in = num_embeddings
            return w.shape[1], w.shape[0]
        return w.shape[0], w[0].numel() + (self.bias is not None)

    def gradient(self, grads: Mapping[str, Tensor]) -> Tensor:
        """``[B, out, in']``: the per-example gradient of this layer's selected parameters as one matrix."""
        w = grads[self.weight]
        if isinstance(self.module, nn.Embedding):
            return w.transpose(1, 2)
        g = w.reshape(w.shape[0], w.shape[1], -1)
        return g if self.bias is None else torch.cat([g, grads[self.bias].unsqueeze(-1)], dim=-1)

    def rows(self, x: Tensor) -> Tensor:
        """``[B, positions, in']``: the layer's inputs (patches for a convolution, one-hot tokens for an embedding),
        with a constant 1 for the bias."""
        m = self.module
        if isinstance(m, nn.Embedding):
            return F.one_hot(x.reshape(x.shape[0], -1).long(), m.num_embeddings)
        if isinstance(m, nn.Linear):
            a = x.reshape(x.shape[0], -1, x.shape[-1])
        else:  # a Conv1d is a Conv2d of height 1
            one = isinstance(m, nn.Conv1d)
            lift = (lambda v, first=1: (first, *v)) if one else (lambda v, first=1: tuple(v))
            a = F.unfold(x.unsqueeze(2) if one else x, lift(m.weight.shape[2:]), dilation=lift(m.dilation),
                         padding=lift(m.padding, 0), stride=lift(m.stride)).transpose(1, 2)
        return a if self.bias is None else torch.cat([a, a.new_ones(*a.shape[:-1], 1)], dim=-1)

    def out_rows(self, g: Tensor) -> Tensor:
        """``[B, positions, out]``: output gradients with the channel last (a convolution puts it second)."""
        if isinstance(self.module, (nn.Linear, nn.Embedding)):
            return g.reshape(g.shape[0], -1, g.shape[-1])
        return g.flatten(2).transpose(1, 2)


def _why_unsupported(m: nn.Module) -> str | None:
    if isinstance(m, nn.Linear):
        return None
    if isinstance(m, nn.Embedding):
        if m.max_norm is not None:
            return "an nn.Embedding with max_norm (its forward pass rescales the rows)"
        if m.num_embeddings > MAX_EMBEDDING_ROWS:
            return f"an nn.Embedding of {m.num_embeddings} rows, above the {MAX_EMBEDDING_ROWS} K-FAC keeps densely"
        return None
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        if m.groups != 1 or isinstance(m.padding, str) or m.padding_mode != "zeros":
            return "a grouped, string-padded or non-zero-padded convolution"
        return None
    return f"a {type(m).__name__}"


def find_layers(task: Task, params: Params) -> list[Layer]:
    """The Kronecker-factored layers of the selected parameters; ConfigError naming any parameter outside them (the
    stated fallback is to refuse: select only the layers' parameters with ``params=``)."""
    layers, covered, why_not = [], set(), {}
    for name, m in task.model.named_modules():
        prefix = f"{name}." if name else ""
        weight, bias = f"{prefix}weight", f"{prefix}bias"
        if weight not in params:
            continue
        why = _why_unsupported(m)
        if why is not None:
            why_not[weight] = why
            continue
        layers.append(Layer(name, m, weight, bias if bias in params else None))
        covered.update({weight, bias})
    refused = [f"{n} ({why_not[n]})" if n in why_not else n for n in params if n not in covered]
    if refused:
        raise ConfigError(f"K-FAC and EK-FAC factor only nn.Linear, nn.Conv1d, nn.Conv2d and nn.Embedding weights (with their "
                          f"biases); these selected parameters are not: {refused[:6]}. Select the layers' parameters "
                          "with params=[...] (e.g. '*.weight'), or use method='arnoldi'")
    return layers


def sample_targets(task: Task, outputs: Tensor, fisher: str, batch: Batch, gen: torch.Generator) -> Tensor:
    """The labels the Fisher is taken at: observed (``empirical``), or drawn from the model's softmax (``true``)."""
    if fisher == "empirical":
        return task.targets(batch)
    if task.check_targets is not check_class_targets:
        raise ConfigError("fisher='true' samples labels from a classifier's softmax; this task is not a "
                          "classification task: use fisher='empirical'")
    probs = torch.softmax(outputs.detach().double(), dim=-1).cpu()
    return torch.multinomial(probs, 1, generator=gen)[:, 0].to(outputs.device)


@contextlib.contextmanager
def _probed(layers: list[Layer]) -> Iterator[tuple[list, list, list[int]]]:
    # Forward hooks are the one way to read a module's input and to add a zero probe to its output (whose gradient is
    # ∂ℓ/∂s) inside functional_call; they are registered here and removed on exit, leaving the modules as they were.
    inputs: list[Tensor | None] = [None] * len(layers)
    probes: list[Tensor | None] = [None] * len(layers)
    calls = [0]

    def hook(i: int, args: tuple, output: Tensor) -> Tensor:
        calls[0] += 1
        inputs[i] = args[0].detach()
        probes[i] = torch.zeros_like(output, requires_grad=True)
        return output + probes[i]
    handles = [layer.module.register_forward_hook(lambda m, a, o, i=i: hook(i, a, o)) for i, layer in enumerate(layers)]
    try:
        yield inputs, probes, calls
    finally:
        for h in handles:
            h.remove()


def layer_signals(task: Task, params: Params, rest: Mapping[str, Tensor], layers: list[Layer], batch: Batch,
                  fisher: str, gen: torch.Generator) -> list[tuple[Tensor, Tensor]]:
    """Per layer ``(a [B, P, in'], g [B, P, out])``: inputs and output gradients of each example's loss (at observed
    or sampled labels), by one forward and one backward pass over the batch."""
    with torch.enable_grad(), _probed(layers) as (inputs, probes, calls):
        out = task.forward(params, rest, batch)
        if calls[0] != len(layers):
            raise ConfigError(f"K-FAC needs each factored layer called once per forward pass; {len(layers)} layers "
                              f"made {calls[0]} calls (a module reused or skipped): use method='arnoldi'")
        losses = task.loss(out, sample_targets(task, out, fisher, batch, gen))
        grads = torch.autograd.grad(losses.sum(), probes)
    return [(layer.rows(x).to(g.dtype), layer.out_rows(g)) for layer, x, g in zip(layers, inputs, grads)]

