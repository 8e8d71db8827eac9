"""Scoring a fitted estimator against data: training embeddings streamed (cached in memory or sharded in the run
directory), query embeddings, score matrices, streamed top-k and self-influence, split over distributed ranks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from ..core.checks import embed_located
from ..core.data import as_dataset, batches, take
from ..core.errors import ConfigError
from ..core.memory import release_freed
from ..core.scores import TopInfluences, assemble, top_k_blocks
from ..estimators import Estimator
from ..run import distributed


class Scoring:
    """What :class:`ifscope.Influence` does with its fitted estimator: ``scores = query_emb @ train_embᵀ`` and the
    products built on it. The host class provides ``task``, ``train``, ``config``, ``run``, ``device``, ``dtype``,
    ``n_train``, ``cache_budget``, ``_bar`` and ``_fitted``."""

    def _chunks(self, data, embed, desc: str, positions: Tensor | None = None) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(data) if positions is None else len(positions)
        bar = self._bar(desc, n)
        ctx, what = self._fitted().ctx, "training set" if data is self.train else "queries"
        with self.task.evaluating():
            for b, (pos, batch) in enumerate(batches(data, self.config["batch_size"], positions)):
                batch = self.task.cast(batch, self.dtype, self.device)
                yield pos, embed_located(embed, self.task, ctx.params, ctx.rest, pos, batch, b, what, desc)
                release_freed()  # resident memory flat in the number of batches (core/memory.py)
                if bar is not None:
                    bar.update(len(pos))
        if bar is not None:
            bar.close()

    def _local(self) -> Tensor:
        """Training positions this process handles: all, or its rank's block inside a process group."""
        return distributed.local_positions(self.n_train, self.config["batch_size"])

    def _train_chunks(self) -> Iterator[tuple[Tensor, Tensor]]:
        est = self._fitted()
        local = self._local()
        if self._train_emb is not None and torch.equal(self._train_emb[0], local):
            yield self._train_emb
            return
        if self.run is None:
            chunks = self._chunks(self.train, est.train_embed, "training embeddings", local)
        else:
            chunks = self._shards(est, local)
        parts: list[Tensor] = []
        for pos, emb in chunks:
            if emb.shape[1] * len(local) * emb.element_size() <= self.cache_budget:
                parts.append(emb)
            yield pos, emb
        if parts and sum(len(p) for p in parts) == len(local):
            self._train_emb = (local, torch.cat(parts))

    def _shards(self, est: Estimator, local: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        assert self.run is not None
        with self.task.evaluating():
            def embed(pos: Tensor) -> Tensor:  # a bad example (a label out of range) is named, as off the shard path
                batch = self.task.cast(take(self.train, pos), self.dtype, self.device)
                return embed_located(est.train_embed, self.task, est.ctx.params, est.ctx.rest, pos, batch,
                                     int(pos[0]) // self.config["batch_size"], "training set", "training embeddings")
            for pos, emb in self.run.train_shards(local, self.config["batch_size"], embed,
                                                  self._bar("training embeddings", len(local))):
                release_freed()
                yield pos, emb.to(self.device)  # shards read back from disk are CPU tensors

    def train_embeddings(self, train_ids: Sequence[int] | Tensor | None = None) -> Tensor:
        """``[n_train, d]``: the training-side embedding of every training example (or of those at ``train_ids``)."""
        if train_ids is not None:
            return torch.cat([e for _, e in self._chunks(self.train, self._fitted().train_embed,
                                                         "training embeddings", self._train_ids(train_ids))])
        local = [emb for _, emb in self._train_chunks()]
        if not local:  # a rank left without batches still needs the embedding width to take part in the gather
            local = [emb[:0] for _, emb in self._chunks(self.train, self._fitted().train_embed, "width", torch.arange(1))]
        return distributed.gather_blocks(torch.cat(local), self.n_train, self.config["batch_size"])

    def query_embeddings(self, queries: Any) -> Tensor:
        """``[n_queries, d]``: the query-side embedding, so that ``scores = query_emb @ train_embᵀ``."""
        data = as_dataset(queries, "queries")
        est = self._fitted()
        ctx = est.ctx
        with self.task.evaluating():
            self.task.check(ctx.params, ctx.rest,
                            self.task.cast(take(data, range(min(len(data), 8))), self.dtype, self.device), "queries")
        return torch.cat([emb for _, emb in self._chunks(data, est.query_embed, "query embeddings")])

    def _direct_scores(self, queries: Any, train_ids: Tensor | None = None) -> Tensor:
        """Scores of an estimator that has no embeddings (``direct``, e.g. ``unrolled``), all queries at once."""
        data, ctx = as_dataset(queries, "queries"), self._fitted().ctx
        with self.task.evaluating():
            batch = self.task.cast(take(data, range(len(data))), self.dtype, self.device)  # type: ignore[arg-type]
            self.task.check(ctx.params, ctx.rest, batch, "queries")
        return self._fitted().scores(batch, train_ids)  # type: ignore[attr-defined]

    def scores(self, queries: Any, train_ids: Sequence[int] | Tensor | None = None) -> Tensor:
        """``[n_queries, n_train]`` influence scores (or ``[n_queries, len(train_ids)]`` for those training
        positions only); positive = the training example helps the query."""
        if self._fitted().direct:
            return self._direct_scores(queries, None if train_ids is None else self._train_ids(train_ids))
        q = self.query_embeddings(queries)
        if train_ids is not None:  # streamed: memory flat in the number of ids (raw gradients of a large model)
            return torch.cat([q @ e.T for _, e in self._chunks(self.train, self._fitted().train_embed,
                                                               "training embeddings", self._train_ids(train_ids))], 1)
        local = self._local()
        start = int(local[0]) if len(local) else 0
        block = assemble(((pos - start, s) for pos, s in self._score_blocks(q)), q, len(local))
        return distributed.gather_blocks(block, self.n_train, self.config["batch_size"], dim=1)

    def _score_blocks(self, q: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
        """``(positions, S[:, positions])`` over this process's training positions: from the cached or sharded
        training embeddings, or straight from each batch when the estimator ``streams_scores`` and none are kept."""
        est = self._fitted()
        if est.streams_scores and self._train_emb is None and self.run is None:
            for pos, s in self._chunks(self.train, lambda b: est.train_scores(b, q), "training embeddings",
                                         self._local()):
                yield pos, s.T
            return
        for pos, emb in self._train_chunks():  # shards read back from disk are on CPU: score where the queries are
            yield pos, q @ emb.to(q.device).T

    def _train_ids(self, train_ids: Sequence[int] | Tensor) -> Tensor:
        ids = torch.as_tensor(train_ids, dtype=torch.long).reshape(-1)
        if len(ids) == 0 or int(ids.min()) < 0 or int(ids.max()) >= self.n_train:
            raise ConfigError(f"train_ids must be training positions in [0, {self.n_train}), got {ids.tolist()[:10]}")
        return ids

    def scores_over_horizons(self, queries: Any, train_ids: Sequence[int] | Tensor, steps: Sequence[int],
                             schedule: Any = None) -> Tensor:
        """``[len(steps), n_queries, len(train_ids)]``: scores at each horizon T for horizon-aware estimators (with
        the continued training's ``schedule`` where the method follows its batch order), the same scores repeated
        for the others."""
        est = self._fitted()
        ids = self._train_ids(train_ids)
        if not est.horizon_aware and not est.direct:
            return self.scores(queries, ids).unsqueeze(0).expand(len(steps), -1, -1)
        q_data = as_dataset(queries, "queries")
        q_batch = self.task.cast(take(q_data, range(len(q_data))), self.dtype, self.device)
        if est.direct:  # unrolled: exact through the continued training's own schedule
            return est.scores_over_horizons(q_batch, ids, steps, schedule=schedule)  # type: ignore[attr-defined]
        z_batch = self.task.cast(take(self.train, ids), self.dtype, self.device)
        with self.task.evaluating():
            if self.config.get("batch_order") == "schedule":
                if schedule is None:
                    raise ConfigError("batch_order='schedule' needs the schedule of the continued training: pass "
                                      "schedule=")
                return est.scores_for_schedule(q_batch, z_batch, ids, schedule, self.n_train, steps)  # type: ignore[attr-defined]
            return est.scores_over_horizons(q_batch, z_batch, steps)  # type: ignore[attr-defined]

    def top(self, queries: Any, k: int = 10) -> TopInfluences:
        """The ``k`` strongest proponents and opponents of each query, streamed over the training set."""
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        k = min(k, self.n_train)
        if self._fitted().direct:  # identity queries against score columns: top_k reads S itself
            s = self._direct_scores(queries)
            cols = torch.arange(self.n_train).split(self.config["batch_size"])
            return top_k_blocks(((pos, s[:, pos]) for pos in cols), s, k)
        q = self.query_embeddings(queries)
        return distributed.merge_top(top_k_blocks(self._score_blocks(q), q, k), k)

    def self_influence(self) -> Tensor:
        """``[n_train]``: ``score(z, z)`` for each training example; large values flag outliers and mislabels."""
        est = self._fitted()

        def both(batch):
            q, t = est.self_embed(batch)
            return (q * t).sum(1)
        local = [s for _, s in self._chunks(self.train, both, "self-influence", self._local())]
        block = torch.cat(local) if local else torch.empty(0, dtype=self.dtype, device=self.device)
        return distributed.gather_blocks(block, self.n_train, self.config["batch_size"])
