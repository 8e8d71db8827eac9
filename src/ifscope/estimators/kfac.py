"""K-FAC: ``score = ∇ℓ(q)ᵀ (S ⊗ A + δ)⁻¹ ∇ℓ(z)`` layer by layer, in the eigenbasis ``Q_S ⊗ Q_A`` of the factors.

Each factored layer's Fisher block is ``S ⊗ A`` (``ifscope.estimators.kronecker``); with ``A = Q_A Λ_A Q_Aᵀ`` and
``S = Q_S Λ_S Q_Sᵀ`` its eigenvalues are ``λ_S,i λ_A,j``, and a gradient ``G`` rotates to ``R = Q_Sᵀ G Q_A``. The
train embedding is ``R / (λ + wd + δ)``, the query embedding ``R``: their dot product is the preconditioned score.
``δ`` is the shared ``damping``, or when it is None 0.1 × the mean eigenvalue of each layer (kronfluence's rule).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core.data import Batch, take
from ..core.errors import ArtifactError
from ..options import choice
from .base import CurvatureEstimator
from .kronecker import FISHERS, Layer, find_layers, layer_signals

HEURISTIC_DAMPING = 0.1  # × the mean eigenvalue of a layer when damping is None


@dataclass
class KFACOptions:
    """``fisher``: ``true`` (labels drawn from the model's softmax) or ``empirical`` (the observed labels)."""

    fisher: str = "true"

    def validate(self) -> None:
        choice("fisher", self.fisher, FISHERS)


class KFAC(CurvatureEstimator):
    """Train embedding ``Q_Sᵀ G Q_A / (λ + wd + δ)``, query embedding ``Q_Sᵀ G Q_A``, all factored layers side by side;
    the factors are averaged over the Hessian sample (``hessian_samples``) at the checkpoint."""

    name = "kfac"
    Options = KFACOptions
    default_damping = None
    refit_free = frozenset({"damping", "weight_decay"})  # added to the fitted eigenvalues (rebound)

    def fit(self) -> None:
        ctx = self.ctx
        self.layers = find_layers(ctx.task, ctx.params)
        cov = [[torch.zeros(n, n, dtype=torch.float64, device=ctx.device) for n in (out, inp)]
               for out, inp in (layer.shape for layer in self.layers)]  # per layer: [S, A] summed over rows
        rows = [0] * len(self.layers)  # examples × positions of each layer
        for signals in self.signals():
            for i, ((s_sum, a_sum), (a, g)) in enumerate(zip(cov, signals)):
                g, a = g.double().flatten(0, 1), a.double().flatten(0, 1)
                s_sum += g.T @ g
                a_sum += a.T @ a
                rows[i] += len(g)
        self.factors = [(s_sum / n, a_sum / n) for (s_sum, a_sum), n in zip(cov, rows)]  # (S, A), not saved
        self.qs, self.qa, factor_values = [], [], []
        for s, a in self.factors:
            ls, qs = torch.linalg.eigh(s)
            la, qa = torch.linalg.eigh(a)
            self.qs.append(qs.to(ctx.dtype))
            self.qa.append(qa.to(ctx.dtype))
            factor_values.append(torch.outer(ls, la).clamp_min(0))
        self.set_eigenvalues(self.basis_eigenvalues(factor_values))

    def signals(self) -> Iterator[list[tuple[Tensor, Tensor]]]:
        """Per batch of the Hessian sample, per layer ``(inputs, output gradients)`` as ``[B, P, ·]``; the sampled
        labels are drawn from a generator seeded with ``seed``, so that every pass sees the same ones."""
        ctx, gen = self.ctx, torch.Generator().manual_seed(self.ctx.seed)
        idx = ctx.hessian_indices()
        bar = ctx.progress(f"{self.name} pass", len(idx))
        for start in range(0, len(idx), ctx.batch_size):
            batch = ctx.task.cast(take(ctx.train, idx[start:start + ctx.batch_size]), ctx.dtype, ctx.device)
            yield layer_signals(ctx.task, ctx.params, ctx.rest, self.layers, batch, self.options["fisher"], gen)
            if bar is not None:
                bar.update(min(ctx.batch_size, len(idx) - start))
        if bar is not None:
            bar.close()

    def basis_eigenvalues(self, factor_values: list[Tensor]) -> list[Tensor]:
        """``[out, in']`` per layer: the curvature's eigenvalues in the Kronecker eigenbasis (K-FAC: ``λ_S λ_Aᵀ``)."""
        return factor_values

    def set_eigenvalues(self, values: list[Tensor], damping: Sequence[float] | None = None) -> None:
        """Keep the eigenvalues, the damping of each layer (given, or from the options) and the embedding's weights."""
        self.values = [v.to(self.ctx.dtype) for v in values]
        if damping is None:
            damping = [self.ctx.damping if self.ctx.damping is not None else HEURISTIC_DAMPING * float(v.mean())
                       for v in values]
        self.damping = [float(d) for d in damping]
        self.weights = [self.weight(v + self.ctx.weight_decay + d) for v, d in zip(self.values, self.damping)]

    def rebound(self) -> None:
        self.set_eigenvalues(self.values)

    def weight(self, lam: Tensor) -> Tensor:
        """The function of the damped eigenvalues the train embedding is scaled by: ``1/λ``."""
        return 1.0 / lam

    def rotated(self, batch: Batch) -> list[Tensor]:
        """Per layer ``[B, out, in']``: each example's gradient in the Kronecker eigenbasis, ``Q_Sᵀ G Q_A``."""
        grads = self.ctx.space.unflatten(self.ctx.grads(batch))
        return [qs.T @ layer.gradient(grads) @ qa for layer, qs, qa in zip(self.layers, self.qs, self.qa)]

    @staticmethod
    def flat(parts: list[Tensor]) -> Tensor:
        return torch.cat([p.flatten(1) for p in parts], dim=1)

    def train_embed(self, batch: Batch) -> Tensor:
        return self.flat([r * w for r, w in zip(self.rotated(batch), self.weights)])

    def query_embed(self, batch: Batch) -> Tensor:
        return self.flat(self.rotated(batch))

    def self_embed(self, batch: Batch) -> tuple[Tensor, Tensor]:
        r = self.rotated(batch)
        return self.flat(r), self.flat([p * w for p, w in zip(r, self.weights)])

    def state_dict(self) -> dict[str, Tensor]:
        state = {}
        for i, layer in enumerate(self.layers):
            state.update({f"{layer.weight}.qs": self.qs[i], f"{layer.weight}.qa": self.qa[i],
                          f"{layer.weight}.eigenvalues": self.values[i],
                          f"{layer.weight}.damping": torch.tensor(self.damping[i], dtype=torch.float64)})
        return state

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.layers: list[Layer] = find_layers(self.ctx.task, self.ctx.params)
        missing = [layer.weight for layer in self.layers if f"{layer.weight}.qs" not in state]
        if missing:
            raise ArtifactError(f"the saved K-FAC factors lack the layers {missing[:4]}; refit (delete the run's "
                                "curvature file)")
        self.qs = [state[f"{layer.weight}.qs"] for layer in self.layers]
        self.qa = [state[f"{layer.weight}.qa"] for layer in self.layers]
        self.set_eigenvalues([state[f"{layer.weight}.eigenvalues"] for layer in self.layers],
                             [float(state[f"{layer.weight}.damping"]) for layer in self.layers])
