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

LM_COLUMNS = ("input_ids", "attention_mask", "loss_mask")


def counted(batch: Batch) -> Tensor:
    """``[B, L-1]`` bool: next-token prediction ``t → t+1`` counts when token ``t+1`` is real (not padding) and, where
    the batch has a ``loss_mask``, marked there (``loss_mask[b, t+1] = 1``: e.g. the completion after a prompt)."""
    ids = batch["input_ids"]
    keep = torch.ones_like(ids, dtype=torch.bool) if "attention_mask" not in batch else batch["attention_mask"] > 0
    if "loss_mask" in batch:
        keep = keep & (batch["loss_mask"] > 0)
    return keep[:, 1:]


def token_nll(logits: Tensor, batch: Batch) -> Tensor:
    """``[B, L-1]``: ``−log softmax(logits[b, t])[input_ids[b, t+1]]`` at every position, counted or not."""
    logp = torch.log_softmax(logits[:, :-1], dim=-1)
    return -logp.gather(-1, batch["input_ids"][:, 1:, None])[..., 0]


def mean_counted(values: Tensor, mask: Tensor) -> Tensor:
    """``[B]``: the mean of ``values`` over each row's counted positions."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(1) / mask.sum(1).clamp(min=1)


def _lm_targets(batch: Batch) -> Batch:
    # the loss needs the ids and both masks, not one target tensor; the dict passes through Task.per_example_loss
    return {k: batch[k] for k in LM_COLUMNS if k in batch}


def _lm_loss(logits: Tensor, batch: Batch) -> Tensor:
    return mean_counted(token_nll(logits, batch), counted(batch))


def check_lm_targets(logits: Tensor, batch: Batch) -> None:
    """Raise a DataError unless ``logits`` is ``[B, L, V]`` over the batch's ids and every example counts a token."""
    ids = batch["input_ids"]
    if logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(ids.shape):
        raise DataError(f"a language model must return logits [batch, length, vocabulary] = [{ids.shape[0]}, "
                        f"{ids.shape[1]}, V], got {tuple(logits.shape)}")
    if int(ids.min()) < 0 or int(ids.max()) >= logits.shape[-1]:
        raise DataError(f"token ids must lie in [0, {logits.shape[-1]}) for a vocabulary of {logits.shape[-1]}, "
                        f"got range [{int(ids.min())}, {int(ids.max())}]")
    empty = (~counted(batch).any(1)).nonzero()[:5, 0].tolist()
    if empty:
        raise DataError(f"rows {empty} have no counted next-token prediction (a real token after the first whose "
                        "loss_mask is 1); give every example at least two tokens and mark its completion in loss_mask")


def _lm_inputs_for(model: nn.Module):
    # the 2-D padding mask goes to the model as it is: a Hugging Face decoder then combines it with its own causal
    # mask (a prepared 4-D mask would replace the causal one); a plain module without the argument gets ids only
    # (right padding never reaches a real token's prediction in a causal model)
    takes = inspect.signature(model.forward).parameters
    with_mask = "attention_mask" in takes or any(p.kind is p.VAR_KEYWORD for p in takes.values())
    extra = {"use_cache": False} if "use_cache" in takes else {}  # no key/value cache: nothing decodes further

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
    return LMTask(model=model, loss=_lm_loss, inputs=_lm_inputs_for(model), targets=_lm_targets, outputs=_logits,
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
        miss = outputs[:, :-1].argmax(-1) != batch["input_ids"][:, 1:]
        return (miss & counted(batch)).any(1)

    def group(self, batch: Batch) -> Tensor | None:
        """The ``labels`` (or ``group``) column, e.g. a topic per text; ``None`` without one."""
        for key in ("labels", "group"):
            if isinstance(batch, Mapping) and key in batch:
                return batch[key]
        return None

    def held_out(self, outputs: Tensor, batch: Batch) -> Tensor:
        """``[B]``: the mean NLL per counted token (its exponential, averaged, is the perplexity)."""
        return _lm_loss(outputs, batch)

    def _text(self, ids: list[int]) -> str:
        if self.tokenizer is None:
            return "tokens " + " ".join(str(i) for i in ids)
        return repr(self.tokenizer.decode(ids))

    def show_target(self, batch: Batch, i: int) -> str:
        """The counted tokens of example ``i`` (its completion), as text when there is a tokenizer."""
        mask = counted(batch)[i]
        return self._text(batch["input_ids"][i, 1:][mask].tolist())

    def show_prediction(self, outputs: Tensor, batch: Batch, i: int) -> str:
        """The model's argmax next tokens at example ``i``'s counted positions (its greedy completion)."""
        mask = counted(batch)[i]
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
