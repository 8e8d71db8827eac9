"""Scores from embeddings, streamed over training chunks: full matrices, top-k, self-influence."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import NonFiniteError


def _check(block: Tensor, start: int) -> Tensor:
    if not torch.isfinite(block).all():
        raise NonFiniteError(f"scores against training examples from position {start} are NaN or inf; "
                             "check the checkpoint and the curvature (diagnose), add damping, or use "
                             "dtype=torch.float64 if the products overflow float32")
    return block


def _blocks(query_emb: Tensor, train_chunks: Iterable[tuple[Tensor, Tensor]]) -> Iterator[tuple[Tensor, Tensor]]:
    for pos, emb in train_chunks:  # shards read back from disk are on CPU: score where the queries are
        yield pos, query_emb @ emb.to(query_emb.device).T


def assemble(blocks: Iterable[tuple[Tensor, Tensor]], like: Tensor, n_train: int) -> Tensor:
    """``[n_queries, n_train]`` from score blocks ``(positions, S[:, positions])``, on ``like``'s dtype and device."""
    out = torch.empty(len(like), n_train, dtype=like.dtype, device=like.device)
    for pos, block in blocks:
        out[:, pos] = _check(block, int(pos[0]))
    return out


def score_matrix(query_emb: Tensor, train_chunks: Iterable[tuple[Tensor, Tensor]], n_train: int) -> Tensor:
    """``S[q, i] = query_emb[q] · train_emb[i]`` over chunks ``(positions, train_emb)``: ``[n_queries, n_train]``."""
    return assemble(_blocks(query_emb, train_chunks), query_emb, n_train)


@dataclass
class TopInfluences:
    """Per query, the ``k`` strongest proponents (largest scores) and opponents (most negative), best first."""

    proponents: Tensor          # [n_queries, k] training indices
    proponent_scores: Tensor    # [n_queries, k]
    opponents: Tensor           # [n_queries, k]
    opponent_scores: Tensor     # [n_queries, k]


def top_k(query_emb: Tensor, train_chunks: Iterable[tuple[Tensor, Tensor]], k: int) -> TopInfluences:
    """Running top-k over training chunks; memory ``O(n_queries · (k + chunk))``, never the full matrix."""
    return top_k_blocks(_blocks(query_emb, train_chunks), query_emb, k)


def top_k_blocks(blocks: Iterable[tuple[Tensor, Tensor]], like: Tensor, k: int) -> TopInfluences:
    """Running top-k over score blocks ``(positions, S[:, positions])`` (one row per query of ``like``)."""
    q, dev, dtype = len(like), like.device, like.dtype
    best = (torch.empty(q, 0, dtype=dtype, device=dev), torch.empty(q, 0, dtype=torch.long, device=dev))
    worst = (torch.empty(q, 0, dtype=dtype, device=dev), torch.empty(q, 0, dtype=torch.long, device=dev))
    for pos, block in blocks:
        s = _check(block, int(pos[0]))
        idx = pos.to(dev).unsqueeze(0).expand(q, -1)
        for side, sign in ((0, 1.0), (1, -1.0)):
            vals, ids = (best, worst)[side]
            vals = torch.cat([vals, sign * s], 1)
            ids = torch.cat([ids, idx], 1)
            kk = min(k, vals.shape[1])
            top = torch.topk(vals, kk, dim=1, sorted=True)
            pair = (top.values, ids.gather(1, top.indices))
            best, worst = (pair, worst) if side == 0 else (best, pair)
    return TopInfluences(best[1], best[0], worst[1], -worst[0])
