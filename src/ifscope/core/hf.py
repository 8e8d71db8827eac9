"""Text classifiers on dict batches (``input_ids``, ``attention_mask``, ``labels``): Hugging Face models or an
encoder + linear head, with trailing padding trimmed, dropout off, and parameters selected by transformer block."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .data import Batch, cast_batch
from .errors import ConfigError, DataError
from .judges import ClassificationJudge
from .task import Task, _cross_entropy, check_class_targets

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _columns(batch: Batch) -> dict[str, Tensor]:
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise DataError("hf_classification expects dict batches with 'input_ids' (and 'attention_mask', 'labels'); "
                        "build them with ifscope.encode_texts(tokenizer, texts, labels)")
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def _hf_inputs(batch: Batch) -> tuple[tuple, dict]:
    """An encoder's inputs: the 2-D padding mask made additive ``[B, 1, 1, L]`` (see :func:`additive_mask`)."""
    kwargs = _columns(batch)
    mask = kwargs.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        kwargs["attention_mask"] = additive_mask(mask)
    return (), kwargs


def _hf_causal_inputs(batch: Batch) -> tuple[tuple, dict]:
    """A decoder's inputs, the 2-D padding mask as given: the model combines it with its causal mask (a prepared 4-D
    mask would replace both), and transformers builds that mask without data-dependent branches, under vmap too."""
    return (), _columns(batch)


def additive_mask(mask: Tensor) -> Tensor:
    """``[B, 1, 1, L]``: 0 on tokens, the float32 minimum on padding, added to attention scores before the softmax."""
    # A prepared 4D additive mask is used as-is by transformers; an encoder's 2D one would be inspected with
    # data-dependent branches (mask.all()) that vmap cannot trace.
    return (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min


def _hf_targets(batch: Batch) -> Tensor:
    if "labels" not in batch:
        raise DataError("the text batch has no 'labels' column; give one integer class per example")
    return batch["labels"]


def _logits(raw: Any) -> Tensor:
    if isinstance(raw, Tensor):
        return raw
    logits = getattr(raw, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(raw, (tuple, list)) and raw and isinstance(raw[0], Tensor):
        return raw[0]
    raise DataError(f"the model returned a {type(raw).__name__} without a .logits tensor; return logits [batch, classes]")


@dataclass
class TextTask(Task):
    """A :class:`Task` on dict batches whose trailing all-padding columns are cut off before each use.

    Cutting columns where every ``attention_mask`` entry is 0 changes nothing (masked keys get zero attention
    weight, positions of real tokens stay), so per-example results do not depend on how a batch was padded.
    """

    def cast(self, batch: Batch, dtype: torch.dtype, device: torch.device | str | None = None) -> Batch:
        if isinstance(batch, Mapping) and "attention_mask" in batch and batch["attention_mask"].dim() == 2:
            mask = batch["attention_mask"]
            used = mask.any(0).nonzero()
            length = int(used[-1]) + 1 if len(used) else 1
            if length < mask.shape[1]:
                batch = {k: v[:, :length] if k in MODEL_INPUTS and v.dim() == 2 else v for k, v in batch.items()}
        return cast_batch(batch, dtype, self.device if device is None else device)

    def own_forward(self, batch: Batch) -> Tensor | None:
        """``model(input_ids=..., attention_mask=...[, token_type_ids=...]).logits`` on the batch as given (2-D mask,
        untrimmed): what :meth:`forward` must reproduce."""
        return _logits(self.model(**_columns(batch)))


def is_causal(model: nn.Module) -> bool:
    """Whether the model's attention is causal (a decoder: some module has ``is_causal = True``, as transformers'
    attention modules declare)."""
    return any(getattr(m, "is_causal", False) is True for m in model.modules())


def _check_pad_token(model: nn.Module) -> None:
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "pad_token_id", 0) is None:
        raise ConfigError(f"{type(model).__name__} is a decoder classifier without a pad token id: it reads the "
                          "last non-padding token of each row and cannot find it; set model.config.pad_token_id "
                          "(e.g. = tokenizer.pad_token_id, or tokenizer.eos_token_id for GPT-2)")


def transformer_blocks(model: nn.Module) -> tuple[str, int]:
    """``(prefix, count)`` of the model's stack of transformer blocks: the ``nn.ModuleList`` of same-type modules
    holding the most parameters (e.g. ``("bert.encoder.layer", 6)``)."""
    best, best_size = None, 0
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(m) for m in module}) == 1:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = (name, len(module)), size
    if best is None:
        raise ConfigError(f"{type(model).__name__} has no nn.ModuleList of transformer blocks; select parameters "
                          "by name patterns instead, e.g. params=['classifier.*', 'encoder.layers.5.*']")
    return best


def last_blocks_params(model: nn.Module, n: int) -> list[str]:
    """Names of the trainable parameters of the last ``n`` transformer blocks and of everything after them in model
    order (pooler, final norm, classification head); ``n = 0`` selects only what follows the blocks."""
    prefix, count = transformer_blocks(model)
    if not isinstance(n, int) or not 0 <= n <= count:
        raise ConfigError(f"last_blocks must be an integer in [0, {count}] ({type(model).__name__} has {count} blocks "
                          f"under {prefix!r}), got {n!r}")
    named = list(model.named_parameters())
    in_blocks = [i for i, (name, _) in enumerate(named) if name.startswith(prefix + ".")]
    firsts = [i for i, (name, _) in enumerate(named) if name.startswith(f"{prefix}.{count - n}.")]
    start = firsts[0] if n > 0 and firsts else in_blocks[-1] + 1
    names = [name for name, p in named[start:] if p.requires_grad]
    if not names:
        raise ConfigError(f"no trainable parameter in the last {n} blocks of {type(model).__name__} or after them; "
                          "unfreeze them or choose a larger last_blocks")
    return names


def _use_eager_attention(model: nn.Module) -> None:
    # PyTorch's fused CPU attention kernels have no forward-mode derivative (needed for HVPs and JVP projections).
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", "eager") == "eager":
        return
    setter = getattr(model, "set_attn_implementation", None)
    if setter is None:
        raise ConfigError(f"{type(model).__name__} uses attention {config._attn_implementation!r}, which has no "
                          "forward-mode derivative; load it with attn_implementation='eager'")
    setter("eager")


def hf_classification(model: nn.Module, params: Sequence[str] | str | None = None,
                      last_blocks: int | None = None) -> TextTask:
    """A text classifier ``model(input_ids, attention_mask[, token_type_ids]) -> logits`` (or ``.logits``) on dict
    batches, with loss ``ℓ = −log softmax(logits)[labels]``.

    Select parameters by name patterns (``params``) or with ``last_blocks=N``: the last N transformer blocks and
    everything after them (pooler, head). A Hugging Face model is switched to eager attention, since fused
    attention kernels have no forward-mode derivative. Encoders (BERT, RoBERTa, DistilBERT) get an additive padding
    mask; decoders (GPT-2, Llama) their 2-D mask, which they combine with their causal mask, and need
    ``config.pad_token_id`` to find each row's last token.
    """
    if params is not None and last_blocks is not None:
        raise ConfigError("give either params (name patterns) or last_blocks, not both")
    if last_blocks is not None:
        params = last_blocks_params(model, last_blocks)
    _use_eager_attention(model)
    causal = is_causal(model)
    if causal:
        _check_pad_token(model)
    return TextTask(model=model, loss=_cross_entropy, inputs=_hf_causal_inputs if causal else _hf_inputs,
                    targets=_hf_targets, outputs=_logits, params=params, check_targets=check_class_targets,
                    judge=ClassificationJudge(_hf_targets))


def encode_texts(tokenizer: Any, texts: Sequence[str], labels: Sequence[int] | Tensor,
                 max_length: int = 64) -> dict[str, Tensor]:
    """Tokenize ``texts`` (right-padded to the longest, truncated at ``max_length``) into the dict of columns that
    ``hf_classification`` reads: ``input_ids``, ``attention_mask`` (, ``token_type_ids``) and ``labels``."""
    texts = list(texts)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if len(texts) != len(labels):
        raise DataError(f"{len(texts)} texts but {len(labels)} labels; give one label per text")
    if not texts:
        raise DataError("no texts to encode; give at least one")
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=max_length, return_tensors="pt")
    columns = {k: enc[k] for k in MODEL_INPUTS if k in enc}
    columns["labels"] = labels
    return columns
