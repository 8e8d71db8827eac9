"""Causal language models on dict batches (``input_ids``, ``attention_mask``, optional ``loss_mask``): the per-example
loss is the mean next-token NLL over the counted tokens, and a judge that says which completions the model gets wrong."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .data import Batch
from .errors import ConfigError, DataError
from .hf import TextTask, _logits, _use_eager_attention, last_blocks_params

IGNORE = -100  # a target that does not count (Hugging Face's convention for ``labels``)


def next_token_targets(batch: Batch) -> Tensor:
    """``[B, L]``: ``input_ids`` where token ``t`` is a counted prediction target (a real token, not the first, marked in
    the optional ``loss_mask``), ``IGNORE`` elsewhere; position ``t`` is predicted by the logits at ``t − 1``."""
    ids = batch["input_ids"]
    keep = torch.ones_like(ids, dtype=torch.bool) if "attention_mask" not in batch else batch["attention_mask"] > 0
    if "loss_mask" in batch:
        keep = keep & (batch["loss_mask"] > 0)
    keep = keep & (torch.arange(ids.shape[1], device=ids.device) > 0)
    return torch.where(keep, ids, torch.full_like(ids, IGNORE))


def token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """``[B, L-1]``: ``−log softmax(logits[b, t])[targets[b, t+1]]`` at every position (0 where not counted)."""
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    nll = -logp.gather(-1, targets[:, 1:, None].clamp(min=0))[..., 0]
    return nll * (targets[:, 1:] != IGNORE).to(nll.dtype)


def _lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    return token_nll(logits, targets).sum(1) / (targets[:, 1:] != IGNORE).sum(1).clamp(min=1).to(logits.dtype)


def check_lm_targets(logits: Tensor, targets: Tensor) -> None:
    """Raise a DataError unless ``logits`` is ``[B, L, V]`` over the batch's ids and every example counts a token."""
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(targets.shape):
        raise DataError(f"a language model must return logits [batch, length, vocabulary] = [{targets.shape[0]}, "
                        f"{targets.shape[1]}, V], got {tuple(logits.shape)}")
    counted = targets[targets != IGNORE]
    if len(counted) and (int(counted.min()) < 0 or int(counted.max()) >= logits.shape[-1]):
        raise DataError(f"token ids must lie in [0, {logits.shape[-1]}) for a vocabulary of {logits.shape[-1]}, "
                        f"got range [{int(counted.min())}, {int(counted.max())}]")
    empty = (targets == IGNORE).all(1).nonzero()[:5, 0].tolist()
    if empty:
        raise DataError(f"rows {empty} have no counted next-token prediction (a real token after the first whose "
                        "loss_mask is 1); give every example at least two tokens and mark its completion in loss_mask")


def _takes_mask(model: nn.Module) -> bool:
    takes = inspect.signature(model.forward).parameters
    return "attention_mask" in takes or any(p.kind is p.VAR_KEYWORD for p in takes.values())


def _lm_inputs_for(model: nn.Module):
    # the 2-D padding mask goes to the model as it is: a Hugging Face decoder then combines it with its own causal
    # mask (a prepared 4-D mask would replace the causal one); a plain module without the argument gets ids only
    # (right padding never reaches a real token's prediction in a causal model)
    with_mask = _takes_mask(model)
    extra = {"use_cache": False} if "use_cache" in inspect.signature(model.forward).parameters else {}  # no key/value cache: nothing decodes further

    def inputs(batch: Batch) -> tuple[tuple, dict]:
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            raise DataError("language_model expects dict batches with 'input_ids' (and 'attention_mask', optional "
                            "'loss_mask'); build them with ifscope.encode_lm(tokenizer, texts)")
        if with_mask and "attention_mask" in batch:
            return (), {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], **extra}
        return (batch["input_ids"],), {}
    return inputs


@dataclass
class LMTask(TextTask):
    """A :class:`TextTask` for causal language models: trailing padding is cut from ``loss_mask`` as well."""

    judge: Any = None

    def cast(self, batch: Batch, dtype: torch.dtype, device: torch.device | str | None = None) -> Batch:
        out = super().cast(batch, dtype, device)
        if isinstance(out, Mapping) and "loss_mask" in out:
            out = {**out, "loss_mask": out["loss_mask"][:, : out["input_ids"].shape[1]]}
        return out

    def own_forward(self, batch: Batch) -> Tensor | None:
        """``model(input_ids, attention_mask).logits`` on the batch as given, cut to the columns :meth:`cast` keeps
        (trailing padding only): what :meth:`forward` must reproduce. ``None`` for a model without that argument."""
        if not _takes_mask(self.model):
            return None
        args, kwargs = self.inputs(batch)
        width = self.cast(batch, torch.float32)["input_ids"].shape[1]
        return _logits(self.model(*args, **kwargs))[:, :width]


def language_model(model: nn.Module, params: Sequence[str] | str | None = None, last_blocks: int | None = None,
                   tokenizer: Any = None) -> LMTask:
    """A causal language model ``model(input_ids, attention_mask) -> logits [B, L, V]`` (or ``.logits``) on dict
    batches, with loss ``ℓ = mean over counted t of −log p(x_{t+1} | x_≤t)`` (counted: real tokens marked in the
    optional ``loss_mask``).

    Select parameters by name patterns (``params``) or ``last_blocks=N`` (the last N transformer blocks and what
    follows them). ``tokenizer`` (anything with ``decode(ids)``) lets ``top``, ``correct`` and the report show text.
    """
    if params is not None and last_blocks is not None:
        raise ConfigError("give either params (name patterns) or last_blocks, not both")
    if last_blocks is not None:
        params = last_blocks_params(model, last_blocks)
    _use_eager_attention(model)
    return LMTask(model=model, loss=_lm_loss, inputs=_lm_inputs_for(model), targets=next_token_targets, outputs=_logits,
                  params=params, check_targets=check_lm_targets, judge=LMJudge(tokenizer))


class LMJudge:
    """A (prompt, completion) is wrong when some counted position's argmax is not its next token, i.e. greedy
    decoding from the prompt does not produce the completion; the side-effect figure is the mean token NLL."""

    kind = "language_model"
    held_out_name = "NLL/token"

    def __init__(self, tokenizer: Any = None):
        self.tokenizer = tokenizer

    def wrong(self, outputs: Tensor, batch: Batch) -> Tensor:
        """``[B]`` bool: some counted next token differs from the model's argmax."""
        targets = next_token_targets(batch)[:, 1:]
        return ((outputs[:, :-1].argmax(-1) != targets) & (targets != IGNORE)).any(1)

    def group(self, batch: Batch) -> Tensor | None:
        """The ``labels`` (or ``group``) column, e.g. a topic per text; ``None`` without one."""
        for key in ("labels", "group"):
            if isinstance(batch, Mapping) and key in batch:
                return batch[key]
        return None

    def held_out(self, outputs: Tensor, batch: Batch) -> Tensor:
        """``[B]``: the mean NLL per counted token (its exponential, averaged, is the perplexity)."""
        return _lm_loss(outputs, next_token_targets(batch))

    def _text(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return "tokens " + " ".join(str(i) for i in ids)
        return repr(self.tokenizer.decode(ids))

    def show_target(self, batch: Batch, i: int) -> str:
        """The counted tokens of example ``i`` (its completion), as text when there is a tokenizer."""
        targets = next_token_targets(batch)[i]
        return self._text(targets[targets != IGNORE].tolist())

    def show_prediction(self, outputs: Tensor, batch: Batch, i: int) -> str:
        """The model's argmax next tokens at example ``i``'s counted positions (its greedy completion)."""
        mask = next_token_targets(batch)[i, 1:] != IGNORE
        return self._text(outputs[i, :-1].argmax(-1)[mask].tolist())


def encode_lm(tokenizer: Any, texts: Sequence[str], completion_tokens: int | None = None,
              labels: Sequence[int] | Tensor | None = None, max_length: int = 64) -> dict[str, Tensor]:
    """Tokenize ``texts`` (right-padded, truncated at ``max_length``) into ``input_ids``, ``attention_mask`` and a
    ``loss_mask`` counting every real token, or with ``completion_tokens=n`` only each text's last ``n`` tokens (the
    completion after a prompt); ``labels`` (e.g. a topic per text) become the ``labels`` column. Training and query
    sets thus share their columns, so that examples of both can be stacked in one batch (``correct``)."""
    texts = list(texts)
    if not texts:
        raise DataError("no texts to encode; give at least one")
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    columns = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    columns["loss_mask"] = (columns["attention_mask"].clone() if completion_tokens is None else
                            completion_mask(columns["attention_mask"], completion_tokens))
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long)
        if len(labels) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(labels)} labels; give one label per text")
        columns["labels"] = labels
    return columns


def completion_mask(attention_mask: Tensor, n: int) -> Tensor:
    """``[B, L]``: 1 on each row's last ``n`` real tokens (never its first), 0 elsewhere."""
    if n < 1:
        raise ConfigError(f"completion_tokens must be at least 1, got {n}")
    lengths = attention_mask.sum(1, keepdim=True)
    pos = torch.arange(attention_mask.shape[1])[None]
    start = (lengths - n).clamp(min=1)
    return ((pos >= start) & (pos < lengths)).long()
