"""A frozen prefix computed once: ``(task, datasets) → (task′, cached datasets)`` with ``ℓ′(cached z, θ) = ℓ(z, θ)``
for every value ``θ`` of the selected parameters.

For a BERT-style classifier whose selected parameters start at transformer block ``s``, the hidden states entering
block ``s`` and the attention mask are cached; ``task′`` replays blocks ``s..``, the pooler and the head, and runs the
last block only at the first token, the one row the pooler reads. Any other task (e.g. a CNN whose influence covers
all parameters) is returned unchanged: nothing is frozen, nothing is cached. ``task′`` has the same parameter names,
so checkpoints, schedules and training ids carry over, and every ifscope function that takes a Task takes it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..core.data import Batch, as_dataset, batches, cast_batch
from ..core.hf import TextTask, _hf_targets, _logits, additive_mask, transformer_blocks
from ..core.params import Params
from ..core.progress import progress_bar
from ..core.task import Task, _cross_entropy, check_class_targets

HIDDEN = "hidden_states"


@dataclass
class Prefix:
    """``task`` and ``datasets`` to use in place of the originals; ``start`` the first replayed block (None: nothing
    cached); ``seconds`` spent computing the cache."""

    task: Task
    datasets: list[Any]
    start: int | None
    seconds: float = 0.0


class _Shell(nn.Module):
    """The base model without its embeddings, under the same attribute names (so the same parameter names)."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.encoder, self.pooler = base.encoder, base.pooler


def _layer(layer: nn.Module, h: Tensor, mask: Tensor) -> Tensor:
    out = layer(h, mask)
    return out[0] if isinstance(out, tuple) else out  # transformers < 5 returns a tuple


def _first_token_layer(layer: nn.Module, h: Tensor, mask: Tensor) -> Tensor:
    """``layer(h, mask)[:, :1]`` without computing the other rows, eager attention as in BertSelfAttention.

    With one query row the key and value projections are moved to the query side by linearity:
    ``q·(W_k h_j + b_k) = (W_kᵀ q)·h_j + q·b_k`` and ``Σ_j p_j (W_v h_j + b_v) = W_v (Σ_j p_j h_j) + b_v``, so the
    cost per example is O(heads·L·H) instead of O(L·H²)."""
    att = layer.attention.self
    b, _, width = h.shape
    heads, d = att.num_attention_heads, att.attention_head_size
    q = att.query(h[:, 0]).view(b, heads, d)
    w_k, w_v = att.key.weight.view(heads, d, width), att.value.weight.view(heads, d, width)
    scores = torch.einsum("bnh,blh->bnl", torch.einsum("bnd,ndh->bnh", q, w_k), h)
    if att.key.bias is not None:
        scores = scores + (q * att.key.bias.view(heads, d)).sum(-1, keepdim=True)
    probs = torch.softmax(scores * getattr(att, "scaling", d ** -0.5) + mask[:, 0], dim=-1)
    context = torch.einsum("bnh,ndh->bnd", torch.einsum("bnl,blh->bnh", probs, h), w_v)
    if att.value.bias is not None:
        context = context + att.value.bias.view(heads, d)
    attended = layer.attention.output(context.reshape(b, 1, heads * d), h[:, :1])
    return layer.output(layer.intermediate(attended), attended)


class _BertTail(nn.Module):
    """Blocks ``start..`` (the last one at the first token only), pooler, dropout and classifier of the model."""

    def __init__(self, model: nn.Module, start: int):
        super().__init__()
        self.base_name, self.start = model.base_model_prefix, start
        self.add_module(self.base_name, _Shell(getattr(model, self.base_name)))
        self.dropout, self.classifier = model.dropout, model.classifier

    def forward(self, hidden_states: Tensor, attention_mask: Tensor) -> Tensor:
        base = getattr(self, self.base_name)
        layers = base.encoder.layer
        h = hidden_states
        for layer in layers[self.start:len(layers) - 1]:
            h = _layer(layer, h, attention_mask)
        if self.start < len(layers):
            h = _first_token_layer(layers[-1], h, attention_mask)
        return self.classifier(self.dropout(base.pooler(h)))


class _BertPrefix(nn.Module):
    """Embeddings and blocks ``< start`` of the model, under the model's own parameter names."""

    def __init__(self, model: nn.Module, start: int):
        super().__init__()
        self.base_name, self.start = model.base_model_prefix, start
        self.add_module(self.base_name, getattr(model, self.base_name))

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        base = getattr(self, self.base_name)
        h = base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        for layer in base.encoder.layer[:self.start]:
            h = _layer(layer, h, attention_mask)
        return h


def _cached_inputs(batch: Batch) -> tuple[tuple, dict]:
    return (), {HIDDEN: batch[HIDDEN], "attention_mask": additive_mask(batch["attention_mask"])}


@dataclass
class CachedTextTask(TextTask):
    """A :class:`TextTask` on cached hidden states: trailing all-padding columns are cut off the states as well."""

    def cast(self, batch: Batch, dtype: torch.dtype, device: torch.device | str | None = None) -> Batch:
        mask = batch["attention_mask"]
        used = mask.any(0).nonzero()
        length = int(used[-1]) + 1 if len(used) else 1
        trimmed = {k: v[:, :length] if k in (HIDDEN, "attention_mask") else v for k, v in batch.items()}
        return cast_batch(trimmed, dtype, self.device if device is None else device)

    def own_forward(self, batch: Batch) -> Tensor | None:
        return None  # the tail of a model on cached states has no ordinary call of its own


def bert_start(task: Task) -> int | None:
    """The first transformer block holding a selected parameter of a BERT-style text classifier (the number of
    blocks when only the pooler and head are selected), or None when no prefix can be frozen and cached."""
    model = task.model
    base = getattr(model, getattr(model, "base_model_prefix", ""), None)
    if not isinstance(task, TextTask) or isinstance(task, CachedTextTask) or base is None:
        return None
    if not all(hasattr(base, a) for a in ("embeddings", "encoder", "pooler")) or base.pooler is None \
            or not isinstance(getattr(model, "classifier", None), nn.Module) or not hasattr(model, "dropout"):
        return None
    config = getattr(model, "config", None)
    if getattr(config, "is_decoder", False) or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return None
    try:
        prefix, count = transformer_blocks(model)
    except Exception:
        return None
    if prefix != f"{model.base_model_prefix}.encoder.layer":
        return None
    tails = (f"{model.base_model_prefix}.pooler.", "classifier.")
    blocks = []
    for name in task.parameter_names:
        if name.startswith(prefix + "."):
            blocks.append(int(name[len(prefix) + 1:].split(".")[0]))
        elif not name.startswith(tails):
            return None  # e.g. embeddings selected: nothing before the selection is frozen
    return min(blocks) if blocks else count


def cache_prefix(task: Task, *datasets: Any, dtype: torch.dtype | None = None, batch_size: int = 128,
                 progress: bool = False) -> Prefix:
    """``task′`` and the ``datasets`` with the frozen prefix's output cached (in ``dtype``, default float32); the
    task and data unchanged when the selection has no frozen prefix to cache (see :func:`bert_start`)."""
    start = bert_start(task)
    if start is None:
        return Prefix(task, list(datasets), None)
    t0 = time.time()
    dtype = dtype or torch.float32
    model = task.model
    prefix = _BertPrefix(model, start)
    params, rest = task.state(dtype)
    own = {n for n, _ in prefix.named_parameters()} | {n for n, _ in prefix.named_buffers()}
    state = {k: v for k, v in {**rest, **params}.items() if k in own}
    count = len(getattr(model, model.base_model_prefix).encoder.layer)
    cached = [_cache(task, prefix, state, as_dataset(ds, "dataset"), dtype, batch_size, start == count, progress)
              for ds in datasets]
    tail = CachedTextTask(model=_BertTail(model, start), loss=_cross_entropy, inputs=_cached_inputs,
                          targets=_hf_targets, outputs=_logits, params=task.parameter_names,
                          check_targets=check_class_targets, judge=task.judge)
    return Prefix(tail, cached, start, time.time() - t0)


def _cache(task: Task, prefix: nn.Module, state: Params | Mapping[str, Tensor], data: Any, dtype: torch.dtype,
           batch_size: int, first_token: bool, progress: bool = False) -> dict[str, Tensor]:
    """``{hidden_states [N, L, H] (L = 1 when only the first token is read), attention_mask [N, L], labels}``."""
    columns = data.columns if hasattr(data, "columns") else None
    if columns is None or "attention_mask" not in columns:
        from ..core.errors import DataError
        raise DataError("cache_prefix needs dict datasets with 'input_ids', 'attention_mask' and 'labels'")
    mask = columns["attention_mask"]
    width = 1 if first_token else mask.shape[1]
    out: Tensor | None = None
    with task.evaluating(), torch.no_grad():
        bar = progress_bar(f"caching the frozen prefix ({len(mask)} rows)", -(-len(mask) // batch_size), progress)
        for pos, batch in batches(data, batch_size):
            bar.update(1)
            args, kwargs = task.inputs(task.cast(batch, dtype))
            h = functional_call(prefix, state, args, kwargs, strict=False)
            if out is None:
                out = torch.zeros(len(mask), width, h.shape[-1], dtype=h.dtype)
            h = h[:, :width]
            out[pos, : h.shape[1]] = h
        bar.close()
    kept_mask = torch.ones(len(mask), 1, dtype=mask.dtype) if first_token else mask.clone()
    return {HIDDEN: out, "attention_mask": kept_mask, "labels": columns["labels"].clone()}
