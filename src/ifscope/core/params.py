"""Flat vectors over a dict of named parameter tensors: the coordinates every curvature method works in."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

Params = dict[str, Tensor]


class ParamSpace:
    """The layout (names, shapes) of a parameter dict; maps ``dict ↔ vector`` of length ``dim``."""

    def __init__(self, params: Mapping[str, Tensor]):
        self.names = list(params)
        self.shapes = [tuple(p.shape) for p in params.values()]
        self.sizes = [p.numel() for p in params.values()]
        self.dim = sum(self.sizes)

    def flatten(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """``[..., dim]``: concatenation of the (possibly batched) tensors, in layout order."""
        first = tensors[self.names[0]]
        lead = first.shape[: first.dim() - len(self.shapes[0])]
        return torch.cat([tensors[n].reshape(*lead, -1) for n in self.names], dim=-1)

    def unflatten(self, vec: Tensor) -> Params:
        """Inverse of :meth:`flatten`; leading batch dimensions are kept."""
        lead = vec.shape[:-1]
        chunks = torch.split(vec, self.sizes, dim=-1)
        return {n: c.reshape(*lead, *s) for n, c, s in zip(self.names, chunks, self.shapes)}
