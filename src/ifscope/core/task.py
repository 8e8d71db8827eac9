"""Task: a model, its per-example loss, an input adapter and the parameters influence is taken over."""

from __future__ import annotations

import contextlib
import fnmatch
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from .data import Batch, batch_len, cast_batch
from .errors import ConfigError, DataError, IfscopeError
from .judges import ClassificationJudge, Judge, RegressionJudge, as_column
from .params import Params


def _default_inputs(batch: Batch) -> tuple[tuple, dict]:
    if isinstance(batch, Mapping):
        raise DataError("a dict batch needs an input adapter: use ifscope.hf_classification, or pass "
                        "inputs=lambda batch: ((), {...}) to Task")
    return (batch[0],), {}


def _default_targets(batch: Batch) -> Tensor:
    if isinstance(batch, Mapping):
        return batch["labels"]
    return batch[1]


@dataclass
class Task:
    """How to compute the per-example loss ``ℓ(z, θ)`` of ``model`` on a batch, with ``θ`` a parameter dict.

    ``loss(outputs, targets) -> Tensor[B]`` takes the model's output tensor (e.g. logits) and the targets;
    ``inputs(batch) -> (args, kwargs)`` and ``targets(batch)`` adapt a batch; ``outputs(raw)`` extracts the
    tensor from the model's return value (e.g. ``.logits``); ``params`` are name patterns (fnmatch) selecting
    the parameters influence is taken over (default: all trainable ones). Everything else (frozen parameters,
    buffers such as BatchNorm statistics) is passed through ``functional_call`` untouched. ``judge`` says what a
    wrong prediction is (:class:`ifscope.core.judges.Judge`); ``correct`` and ``top`` need one.
    """

    model: nn.Module
    loss: Callable[[Tensor, Tensor], Tensor]
    inputs: Callable[[Batch], tuple[tuple, dict]] = _default_inputs
    targets: Callable[[Batch], Tensor] = _default_targets
    outputs: Callable[[Any], Tensor] = lambda raw: raw
    params: Sequence[str] | None = None
    check_targets: Callable[[Tensor, Tensor], None] | None = None
    judge: Judge | None = None
    _names: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, not {type(self.model).__name__}")
        if isinstance(self.params, str):
            self.params = [self.params]
        trainable = [n for n, p in self.model.named_parameters() if p.requires_grad]
        if not trainable:
            raise ConfigError(f"model {type(self.model).__name__} has no trainable parameters "
                               "(requires_grad is False everywhere); unfreeze the ones to take influence over")
        if self.params is None:
            self._names = trainable
        else:
            for pat in self.params:
                if not any(fnmatch.fnmatchcase(n, pat) for n in trainable):
                    raise ConfigError(f"parameter pattern {pat!r} matches no trainable parameter of "
                                       f"{type(self.model).__name__}; names look like {trainable[:4]}")
            self._names = [n for n in trainable if any(fnmatch.fnmatchcase(n, p) for p in self.params)]

    @property
    def parameter_names(self) -> list[str]:
        """Names of the parameters that influence is taken over, in model order."""
        return list(self._names)

    def state(self, dtype: torch.dtype | None = None) -> tuple[Params, dict[str, Tensor]]:
        """``(params, rest)``: detached copies of the selected parameters, and every other parameter and buffer."""
        def copy(t: Tensor) -> Tensor:
            t = t.detach()
            return t.to(dtype).clone() if dtype is not None and t.is_floating_point() else t.clone()
        named = dict(self.model.named_parameters())
        params = {n: copy(named[n]) for n in self._names}
        rest = {n: copy(p) for n, p in named.items() if n not in params}
        rest.update({n: copy(b) for n, b in self.model.named_buffers()})
        return params, rest

    @contextlib.contextmanager
    def evaluating(self) -> Iterator[None]:
        """Put the model in eval mode (dropout off, BatchNorm on its running statistics), then restore the caller's modes."""
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            yield
        finally:
            for m, was in modes:
                m.train(was)

    def forward(self, params: Params, rest: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """Model output tensor (e.g. logits) for ``batch`` under parameters ``params``."""
        args, kwargs = self.inputs(batch)
        raw = functional_call(self.model, {**rest, **params}, args, kwargs, strict=False)
        return self.outputs(raw)

    def own_forward(self, batch: Batch) -> Tensor | None:
        """The model's own output on ``batch`` by its ordinary call, where it differs from :meth:`forward`'s (e.g. a
        Hugging Face model given its 2-D mask): the model contract checks that ``forward`` reproduces it. ``None``:
        nothing to compare."""
        return None

    def per_example_loss(self, params: Params, rest: Mapping[str, Tensor], batch: Batch) -> Tensor:
        """``ℓ(z_b, θ)`` for each example ``b`` of the batch: ``Tensor[B]``."""
        out = self.forward(params, rest, batch)
        losses = self.loss(out, self.targets(batch))
        if losses.dim() != 1:
            n = batch_len(batch)
            raise DataError(f"the loss returned shape {tuple(losses.shape)} but must return one value per example "
                            f"(shape [{n}]); use reduction='none'")
        return losses

    def check(self, params: Params, rest: Mapping[str, Tensor], batch: Batch, what: str = "batch") -> Tensor:
        """Run the loss once outside any transform and raise a clear error on wrong shapes, labels or values."""
        try:
            with torch.no_grad():
                out = self.forward(params, rest, batch)
        except IfscopeError:
            raise
        except (RuntimeError, TypeError, ValueError, IndexError, KeyError) as exc:
            raise DataError(f"the model failed on the {what}: {exc}. Check that the input shapes match the model") \
                from exc
        if self.check_targets is not None:
            try:
                self.check_targets(out, self.targets(batch))
            except DataError as exc:
                raise DataError(f"{exc} (in the {what})") from None
        with torch.no_grad():
            losses = self.per_example_loss(params, rest, batch)
        if len(losses) != batch_len(batch):
            raise DataError(f"the loss returned {len(losses)} values for a {what} of {batch_len(batch)} examples; "
                            "return one loss per example (e.g. reduction='none')")
        if not torch.isfinite(losses).all():
            bad = (~torch.isfinite(losses)).nonzero()[:5, 0].tolist()
            raise DataError(f"the loss is NaN or inf on the {what} (rows {bad}); check the inputs and the model")
        return losses

    @property
    def device(self) -> torch.device:
        """Where the model's selected parameters are: batches and products go there unless told otherwise."""
        return dict(self.model.named_parameters())[self._names[0]].device

    def cast(self, batch: Batch, dtype: torch.dtype, device: torch.device | str | None = None) -> Batch:
        """The batch with its floating-point tensors in ``dtype``, every tensor on ``device`` (default: the model's)."""
        return cast_batch(batch, dtype, self.device if device is None else device)


def _cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(logits, y.long(), reduction="none")


def check_class_targets(logits: Tensor, y: Tensor) -> None:
    """Raise a DataError unless ``logits`` is ``[B, C]`` and ``y`` holds ``B`` integer classes in ``[0, C)``."""
    if logits.dim() != 2:
        raise DataError(f"classification expects logits of shape [batch, classes], got {tuple(logits.shape)}")
    if y.dim() != 1 or len(y) != len(logits):
        raise DataError(f"labels of shape {tuple(y.shape)} do not match logits of shape {tuple(logits.shape)}; "
                        "give one integer class per example")
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise DataError("labels must be integer class indices, got fractional values")
    c = logits.shape[1]
    if int(y.min()) < 0 or int(y.max()) >= c:
        raise DataError(f"labels must lie in [0, {c}) for a model with {c} outputs, got range "
                        f"[{int(y.min())}, {int(y.max())}]; fix the labels or the model's number of outputs")


def classification(model: nn.Module, params: Sequence[str] | str | None = None) -> Task:
    """A classifier ``model(x) -> logits`` on batches ``(x, y)``, with loss ``ℓ = −log softmax(logits)[y]``."""
    return Task(model=model, loss=_cross_entropy, params=params, check_targets=check_class_targets,
                judge=ClassificationJudge(_default_targets))


def _squared_error(out: Tensor, y: Tensor) -> Tensor:
    return (as_column(out, "output") - as_column(y, "target").to(out.dtype)) ** 2


def check_real_targets(out: Tensor, y: Tensor) -> None:
    """Raise a DataError unless ``out`` and ``y`` hold one real value per example (``[B]`` or ``[B, 1]``)."""
    as_column(out, "output")
    if len(as_column(y, "target")) != len(out):
        raise DataError(f"targets of shape {tuple(y.shape)} do not match outputs of shape {tuple(out.shape)}; give "
                        "one real target per example")
    if not y.is_floating_point():
        raise DataError(f"regression targets must be real numbers, got dtype {y.dtype} (integer labels: use "
                        "ifscope.classification)")


def regression(model: nn.Module, params: Sequence[str] | str | None = None, tolerance: float | None = None,
               groups: Callable[[Batch], Tensor] | None = None) -> Task:
    """A regressor ``model(x) -> ŷ`` (``[B]`` or ``[B, 1]``) on batches ``(x, y)`` with real ``y``, loss
    ``ℓ = (ŷ − y)²``; for ``correct`` a mistake is ``|ŷ − y| > tolerance`` (``groups(batch) -> [B]`` ints enables
    the same-group baseline)."""
    return Task(model=model, loss=_squared_error, params=params, check_targets=check_real_targets,
                judge=RegressionJudge(_default_targets, tolerance, groups))
