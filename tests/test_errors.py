"""The catalogue of bad inputs: each row raises an IfscopeError subclass whose message names the culprit and the fix.

``CASES`` is the catalogue; docs/errors.md lists the same ids (a test below keeps the two in step). Run this file
as a script to print the table with the messages as they are now:
``PYTHONPATH=src python tests/test_errors.py``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import IterableDataset

import ifscope
from ifscope import (
    ConfigError,
    DataError,
    IfscopeError,
    Influence,
    ModelError,
    NonFiniteError,
    NumericalError,
)
from ifscope.core.errors import ArtifactError, NumericalWarning
from ifscope.core.files import atomic_write_bytes, write_json
from ifscope.core.task import Task
from ifscope.recipes import load_recipe
from ifscope.truth.groundtruth import actual_changes
from ifscope.truth.training import Schedule, make_batches, replay, train

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "errors.md"


# --------------------------------------------------------------------------------------------- tiny inputs
def data(n: int = 24, d: int = 4, c: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randint(0, c, (n,), generator=gen)


def mlp(d: int = 4, c: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, 5), nn.Tanh(), nn.Linear(5, c))


def task() -> Task:
    return ifscope.classification(mlp())


def inf(method: str = "graddot", train=None, **kw) -> Influence:
    return Influence(task() if "task" not in kw else kw.pop("task"), data() if train is None else train,
                     method=method, progress=False, **kw)


class LogFirst(nn.Module):
    """Logits from ``log(x[:, 0])``: finite for positive first features, NaN for negative ones."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(torch.cat([torch.log(x[:, :1]), x[:, 1:]], 1))


def positive_data(n: int = 24, bad_row: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs with a positive first feature, except at ``bad_row`` (finite there, but ``log`` of it is NaN)."""
    x, y = data(n)
    x = x.abs() + 0.1
    if bad_row is not None:
        x[bad_row, 0] = -1.0
    return x, y


class SqrtGate(nn.Module):
    """``logits = lin(x) · sqrt(s)`` with ``s = 0``: the loss is finite, its gradient in ``s`` is infinite."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(4, 3)
        self.s = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * torch.sqrt(self.s)


def concave_task() -> Task:
    """A loss ``−(w·x)²`` whose Hessian ``−2 E[x xᵀ]`` is negative definite."""
    torch.manual_seed(0)
    return Task(model=nn.Linear(4, 1, bias=False), loss=lambda out, y: -(out[:, 0] ** 2))


def squares_task(bias: bool = False) -> Task:
    torch.manual_seed(0)
    return Task(model=nn.Linear(4, 1, bias=bias), loss=lambda out, y: 0.5 * (out[:, 0] - y) ** 2)


# --------------------------------------------------------------------------------------------- the catalogue
@dataclass
class Case:
    id: str
    input: str
    run: Callable[[], object]
    exc: type[BaseException]
    fragments: tuple[str, ...]


CASES: list[Case] = []


def case(id: str, input: str, exc: type[BaseException], *fragments: str):
    def register(fn: Callable[[], object]) -> Callable[[], object]:
        CASES.append(Case(id, input, fn, exc, fragments))
        return fn
    return register


@case("empty-dataset", "an empty training set", DataError, "train is empty", "at least one example")
def _():
    x, y = data()
    inf(train=(x[:0], y[:0]))


@case("empty-queries", "an empty query set", DataError, "queries is empty")
def _():
    x, y = data()
    inf().fit().scores((x[:0], y[:0]))


@case("column-lengths", "x and y of different lengths", DataError, "train columns have different lengths",
      "one row per example")
def _():
    x, y = data()
    inf(train=(x, y[:-1]))


@case("nan-inputs", "NaN in the training inputs", DataError, "train[0]", "NaN or inf", "rows [3]")
def _():
    x, y = data()
    x[3, 1] = float("nan")
    inf(train=(x, y))


@case("inf-queries", "inf in the query inputs", DataError, "queries[0]", "NaN or inf", "rows [1]")
def _():
    x, y = data()
    x[1, 0] = float("inf")
    inf().fit().scores((x[:4], y[:4]))


@case("numpy-columns", "numpy arrays instead of tensors", DataError, "train is a tuple of ['ndarray', 'ndarray']",
      "torch.as_tensor")
def _():
    x, y = data()
    inf(train=(x.numpy(), y.numpy()))


@case("wrong-container", "a file name instead of a dataset", DataError, "train must be a torch Dataset", "not str")
def _():
    inf(train="train.csv")


@case("iterable-dataset", "an IterableDataset (no length)", DataError, "train has no length", "__len__")
def _():
    class Stream(IterableDataset):
        def __iter__(self):
            return iter([])
    inf(train=Stream())


@case("scalar-column", "a 0-d tensor as a dataset column", DataError, "train[1]", "is a scalar")
def _():
    x, _ = data()
    inf(train=(x, torch.tensor(3)))


@case("input-shape", "inputs with 7 features for a model expecting 4", DataError,
      "the model failed on the training set", "input shapes")
def _():
    _, y = data()
    inf(train=(torch.randn(24, 7), y)).fit()


@case("query-shape", "queries of the wrong shape", DataError, "the model failed on the queries", "input shapes")
def _():
    x, y = data()
    inf().fit().scores((torch.randn(3, 5), y[:3]))


@case("labels-range", "labels outside [0, classes)", DataError, "labels must lie in [0, 3)", "[0, 5]",
      "in the training set")
def _():
    x, y = data()
    y[2] = 5
    inf(train=(x, y)).fit()


@case("labels-range-late", "a label out of range at example 20 (past the rows checked up front), arnoldi",
      DataError, "labels must lie in [0, 3)", "Hessian sample of the training set, batch 0 (examples 0..23)")
def _():
    x, y = data()
    y[20] = 9
    inf("arnoldi", train=(x, y), batch_size=8, rank=2, iterations=4).fit()


@case("labels-range-queries", "a query label out of range at query 10", DataError, "labels must lie in [0, 3)",
      "queries, batch 2 (examples 8..11)")
def _():
    x, y = data()
    y[10] = -1
    inf(batch_size=4).fit().scores((x[:12], y[:12]))


@case("labels-fractional", "fractional float labels", DataError, "integer class indices", "fractional")
def _():
    x, y = data()
    inf(train=(x, y.float() + 0.5)).fit()


@case("labels-shape", "labels of shape [n, 1]", DataError, "labels of shape (8, 1)", "one integer class per example")
def _():
    x, y = data()
    inf(train=(x, y[:, None])).fit()


@case("dict-no-adapter", "a dict batch without an input adapter", DataError, "a dict batch needs an input adapter",
      "inputs=")
def _():
    x, y = data()
    inf(train={"x": x, "labels": y}).fit()


def tokens(n: int = 8, length: int = 5, vocab: int = 10, **extra) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, vocab, (n, length), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), **extra}


def bigram(vocab: int = 10) -> nn.Module:
    """The smallest causal language model: each position's logits read its own token only."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Embedding(vocab, 4), nn.Linear(4, vocab))


@case("lm-not-dict", "a tuple batch for a language model", DataError, "language_model expects dict batches",
      "ifscope.encode_lm")
def _():
    inf(task=ifscope.language_model(bigram()), train=(tokens()["input_ids"],)).fit()


@case("lm-logits-shape", "a language model returning [batch, vocabulary]", DataError,
      "must return logits [batch, length, vocabulary] = [8, 5, V], got (8, 10)")
def _():
    class Pooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = bigram()

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.net(ids).mean(1)
    inf(task=ifscope.language_model(Pooled()), train=tokens()).fit()


@case("lm-token-range", "token ids beyond the model's vocabulary", DataError,
      "token ids must lie in [0, 10) for a vocabulary of 10, got range")
def _():
    train = tokens()
    train["input_ids"][0, -1] = 10  # the embedding of a 12-word model reads row 10; the logits have 10
    model = bigram()
    model[0] = nn.Embedding(12, 4)
    inf(task=ifscope.language_model(model), train=train).fit()


@case("lm-nothing-counted", "a loss_mask that counts no token of an example", DataError,
      "rows [3] have no counted next-token prediction", "loss_mask")
def _():
    mask = torch.ones(8, 5, dtype=torch.long)
    mask[3] = 0
    inf(task=ifscope.language_model(bigram()), train=tokens(loss_mask=mask)).fit()


@case("loss-scalar", "a loss that returns a scalar (reduction='mean')", DataError, "the loss returned shape ()",
      "reduction='none'")
def _():
    inf(task=Task(model=mlp(), loss=lambda o, y: F.cross_entropy(o, y))).fit()


@case("loss-length", "a loss returning the wrong number of values", DataError,
      "the loss returned 1 values for a training set of 8 examples")
def _():
    inf(task=Task(model=mlp(), loss=lambda o, y: F.cross_entropy(o, y, reduction="none")[:1])).fit()


@case("nan-loss-first-rows", "a loss that is NaN on example 2 (checked up front)", DataError,
      "the loss is NaN or inf on the training set (rows [2])", "check the inputs and the model")
def _():
    inf(train=positive_data(bad_row=2), task=ifscope.classification(LogFirst())).fit()


@case("nan-loss-curvature", "a loss that becomes NaN at example 20 (arnoldi fit)", NonFiniteError,
      "Hessian-vector products", "batch 0 of the Hessian sample of the training set (examples 0..23)",
      "example(s) [20]")
def _():
    inf("arnoldi", train=positive_data(bad_row=20), task=ifscope.classification(LogFirst()),
        batch_size=8, rank=2, iterations=4).fit()


@case("nan-loss-train", "a loss that becomes NaN at batch 1 of the training set (graddot)", NonFiniteError,
      "training embeddings", "batch 1 of the training set (examples 8..15)", "example(s) [13]")
def _():
    inf(train=positive_data(bad_row=13), task=ifscope.classification(LogFirst()), batch_size=8).fit() \
        .scores(positive_data(2))


@case("nan-loss-queries", "a loss that becomes NaN at batch 3 of the queries", NonFiniteError,
      "query embeddings", "batch 3 of the queries (examples 12..15)", "example(s) [14]")
def _():
    inf(train=positive_data(), task=ifscope.classification(LogFirst()), batch_size=4).fit() \
        .scores(positive_data(16, bad_row=14))


@case("inf-gradient", "a finite loss with an infinite gradient", NonFiniteError,
      "query embeddings are NaN or inf at batch 0 of the queries (examples 0..3)", "loss itself is finite")
def _():
    inf(task=ifscope.classification(SqrtGate())).fit().scores(data(4))


@case("inf-scores", "scores that overflow float32 (loss scaled by 1e20)", NonFiniteError,
      "scores against training examples from position 0", "NaN or inf")
def _():
    big = Task(model=mlp(), loss=lambda o, y: 1e20 * F.cross_entropy(o, y, reduction="none"))
    inf(task=big).fit().scores(data(4))


@case("nan-params", "a checkpoint whose weights are NaN", NumericalError, "model parameter(s) ['0.weight']",
      "load a good checkpoint")
def _():
    t = task()
    with torch.no_grad():
        t.model[0].weight[0, 0] = float("nan")
    inf(task=t).fit()


@case("no-trainable", "a model with no trainable parameters", ConfigError, "has no trainable parameters", "unfreeze")
def _():
    m = mlp()
    m.requires_grad_(False)
    ifscope.classification(m)


@case("selection-none", "a parameter selection that matches nothing", ConfigError,
      "parameter pattern 'head.*' matches no trainable parameter", "'0.weight'")
def _():
    ifscope.classification(mlp(), params="head.*")


@case("not-a-module", "a plain function as the model", ConfigError, "model must be a torch.nn.Module")
def _():
    ifscope.classification(lambda x: x)


@case("not-a-task", "a model where a Task is expected", ConfigError, "task must be an ifscope.Task",
      "ifscope.classification(model)")
def _():
    Influence(mlp(), data())


def byom():
    sys.path.insert(0, str(ROOT / "tests"))
    import byom_recipes
    return byom_recipes


@case("batchnorm-batch-stats", "BatchNorm1d with track_running_stats=False (batch statistics)", ModelError,
      "not per-example", "module '1' (BatchNorm1d)", "track_running_stats=True")
def _():
    recipe = byom().batchnorm_batch_stats()
    inf(task=recipe.task, train=recipe.train).fit()


@case("batch-mixing", "a model that subtracts the batch mean", ModelError, "not per-example",
      "inside a batch of 8", "module '1' (Centered) mixes the examples")
def _():
    recipe = byom().coupled()
    inf(task=recipe.task, train=recipe.train).fit()


@case("lost-causal-mask", "a GPT-2 classifier given an encoder's padding-only mask", ModelError,
      "differs from GPT2ForSequenceClassification's own forward", "causal")
def _():
    import dataclasses

    from ifscope.core.hf import _hf_inputs
    b = byom()
    model = b._gpt2(0, 0)
    ifscope.check_model(dataclasses.replace(ifscope.hf_classification(model), inputs=_hf_inputs), b.text_batch(6, 3))


@case("decoder-no-pad", "a GPT-2 classifier without config.pad_token_id", ConfigError,
      "without a pad token id", "set model.config.pad_token_id")
def _():
    byom().gpt2_no_pad()


@case("jvp-unsupported", "projection='jvp' on an LSTM (no forward-mode derivative in float32)", ConfigError,
      "projection='jvp' needs forward-mode derivatives", "mkldnn_rnn_layer", "'auto' or 'vmap'")
def _():
    recipe = byom().lstm()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inf("arnoldi", task=recipe.task, train=recipe.train, rank=2, iterations=4, projection="jvp").scores(
            recipe.test)


@case("ggn-unsupported", "curvature='ggn' on an LSTM (no forward-mode derivative in float32)", ConfigError,
      "curvature='ggn' needs forward-mode derivatives", "use curvature='hessian'")
def _():
    recipe = byom().lstm()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inf("arnoldi", task=recipe.task, train=recipe.train, rank=2, iterations=4, curvature="ggn").fit()


@case("unknown-method", "an unknown method name", ConfigError, "unknown method 'newton'", "'arnoldi'")
def _():
    inf("newton")


@case("unknown-option", "an option of another method", ConfigError, "unknown option(s) ['depth'] for method 'arnoldi'",
      "'iterations'")
def _():
    inf("arnoldi", depth=3)


@case("negative-damping", "damping < 0", ConfigError, "damping must be a non-negative number", "-1.0")
def _():
    inf("cg", damping=-1.0)


@case("nan-damping", "damping = NaN", ConfigError, "damping must be a non-negative number, got nan")
def _():
    inf("cg", damping=float("nan"))


@case("bad-dtype", "dtype float16", ConfigError, "dtype must be torch.float32 or torch.float64", "'float16'")
def _():
    inf(dtype="float16")


@case("bad-batch-size", "batch_size = 0", ConfigError, "batch_size must be a positive integer", "0")
def _():
    inf(batch_size=0)


@case("bad-hessian-samples", "hessian_samples = 0", ConfigError, "hessian_samples must be a positive integer")
def _():
    inf(hessian_samples=0)


@case("bad-curvature", "an unknown curvature kind", ConfigError, "curvature must be one of ('hessian', 'ggn')", "'fisher'")
def _():
    inf(curvature="fisher")


@case("bad-projection", "an unknown projection path", ConfigError, "projection must be one of", "'fast'")
def _():
    inf(projection="fast")


@case("rank-over-params", "rank larger than the parameter count", ConfigError,
      "rank=100 exceeds the 43 selected parameters", "rank <= 43")
def _():
    inf("arnoldi", rank=100, iterations=200).fit()


@case("rank-over-iterations", "rank larger than the Arnoldi iterations", ConfigError,
      "rank=10 exceeds iterations=5", "raise iterations")
def _():
    inf("arnoldi", rank=10, iterations=5).fit()


@case("rank-zero", "rank = 0", ConfigError, "rank must be a positive integer, got 0")
def _():
    inf("arnoldi", rank=0).fit()


@case("bad-select", "an unknown eigenvalue selection rule", ConfigError, "select must be one of ('positive', 'value', 'magnitude'), got 'largest'",
      "'positive'")
def _():
    inf("arnoldi", rank=2, iterations=4, select="largest").fit()


@case("no-positive-eigenvalue", "arnoldi on a loss with negative-definite Hessian", NumericalError,
      "no positive eigenvalue", "select='magnitude'")
def _():
    inf("arnoldi", task=concave_task(), rank=2, iterations=4).fit()


@case("cg-indefinite", "CG on a Hessian that is not positive definite", NumericalError,
      "CG met non-positive curvature", "damping=")
def _():
    inf("cg", task=concave_task()).fit().scores(data(2))


@case("lissa-diverges", "LiSSA with scale below the top eigenvalue", NumericalError, "LiSSA diverged at step",
      "raise scale=")
def _():
    inf("lissa", task=squares_task(), train=(data()[0], torch.randn(24)), scale=0.01, depth=100) \
        .fit().scores((data()[0][:2], torch.randn(2)))


@case("lissa-scale", "LiSSA with scale = 0", ConfigError, "scale must be a positive number or None, got 0")
def _():
    inf("lissa", scale=0.0).fit()


@case("lissa-flat", "LiSSA on a loss with zero curvature", NumericalError, "the curvature is zero on the Hessian sample",
      "parameter selection")
def _():
    flat = Task(model=nn.Linear(4, 1, bias=False), loss=lambda out, y: out[:, 0])  # linear in θ: H = 0
    inf("lissa", task=flat).fit()


@case("kfac-unsupported", "ekfac on a model with a LayerNorm", ConfigError, "factor only nn.Linear", "params=[...]")
def _():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.LayerNorm(5), nn.Linear(5, 3))
    inf("ekfac", task=ifscope.classification(model)).fit()


@case("kfac-true-fisher", "fisher='true' on a regression loss", ConfigError, "not a classification task",
      "fisher='empirical'")
def _():
    inf("ekfac", task=squares_task(), train=(data()[0], torch.randn(24))).fit()


@case("exact-singular", "exact inverse of a singular Hessian", NumericalError, "the Hessian is singular",
      "add damping=")
def _():
    x, _ = data()
    x[:, 3] = 0.0  # the weight on a constant-zero feature has zero curvature
    inf("exact", task=squares_task(), train=(x, torch.randn(24)), dtype="float64").fit()


@case("top-k", "top(k=0)", ConfigError, "k must be a positive integer, got 0")
def _():
    inf().fit().top(data(3), k=0)


@case("tracin-no-checkpoints", "tracin without checkpoints", ConfigError, "tracin needs checkpoints")
def _():
    inf("tracin").fit()


@case("tracin-missing-params", "a tracin checkpoint lacking parameters", ConfigError,
      "tracin checkpoint 0 lacks parameters", "model.state_dict()")
def _():
    inf("tracin", checkpoints=[({"0.weight": torch.zeros(5, 4)}, 0.1)]).fit()


@case("train-optimizer", "an unknown optimizer", ConfigError, "unknown optimizer 'adamw'", "'sgd'")
def _():
    train(task(), data(), steps=1, lr=0.1, optimizer="adamw")


@case("train-lr", "a non-positive learning rate", ConfigError, "learning rate must be positive, got 0.0")
def _():
    train(task(), data(), steps=1, lr=0.0)


@case("train-diverges", "training that diverges (least squares, lr 1e3)", NumericalError,
      "became NaN or inf at step", "lower the learning rate")
def _():
    train(squares_task(), (data()[0], torch.randn(24)), steps=100, lr=1e3)


@case("replay-weights", "re-weighting with the wrong number of weights", ConfigError,
      "weights must have one entry per training example (24)", "(23,)")
def _():
    t = task()
    replay(t, t.state()[0], data(), Schedule(make_batches(24, 2, None, 0), lr=0.1), weights=torch.ones(23))


@case("groundtruth-ids", "ground-truth ids outside the training set", ConfigError,
      "ids must be training positions in [0, 24)", "[30]")
def _():
    actual_changes(task(), data(), data(2), [30], [1], Schedule(make_batches(24, 2, None, 0), lr=0.1),
                   progress=False)


@case("groundtruth-horizon", "a horizon T beyond the recorded schedule", ConfigError,
      "the largest T (5) exceeds the schedule's 2 steps")
def _():
    actual_changes(task(), data(), data(2), [0], [5], Schedule(make_batches(24, 2, None, 0), lr=0.1),
                   progress=False)


@case("recipe-unknown", "a recipe name that does not exist", ConfigError, "no built-in recipe 'cifar'",
      "FILE.py:FUNCTION")
def _():
    load_recipe("cifar")


@case("recipe-missing-file", "a recipe file that does not exist", ConfigError, "recipe file 'nope.py' does not exist")
def _():
    load_recipe("nope.py:make")


@case("recipe-wrong-type", "a recipe returning a tuple instead of a Recipe", ConfigError, "returned a tuple",
      "Recipe(model, task, train, test)")
def _():
    load_recipe(_recipe_file("wrong_type", "return (None, None)") + ":make")


@case("recipe-other-model", "a recipe whose task wraps another model", ConfigError,
      "its task wraps a different model object", "the same model")
def _():
    load_recipe(_recipe_file("other_model", "return Recipe(mlp(), ifscope.classification(mlp()), data(), data())")
                + ":make")


@case("recipe-raises", "a recipe function that raises", ConfigError, "raised ZeroDivisionError", "other_raises.py:")
def _():
    load_recipe(_recipe_file("other_raises", "return 1 / 0") + ":make")


@case("disk-full", "a full disk while writing an artifact", ArtifactError, "could not write", "No space left on device",
      "nothing was replaced")
def _():
    _write_with_failing_disk(OSError(errno.ENOSPC, "No space left on device"))


def real_data(n: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    x, _ = data(n)
    return x, x[:, 0] - 0.5 * x[:, 1] + 0.25


def regressor(out: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, out))


@case("regression-no-tolerance", "correct on ifscope.regression without a tolerance", ConfigError,
      "a regression task has no mistakes without a tolerance", "tolerance=")
def _():
    ifscope.correct(inf(task=ifscope.regression(regressor()), train=real_data()).fit(), real_data(6), lr=0.1, k=4,
                    progress=False)


@case("tolerance-classifier", "correct with a tolerance on a classifier", ConfigError,
      "tolerance applies to regression tasks", "drop the tolerance")
def _():
    ifscope.correct(inf().fit(), data(6), lr=0.1, k=4, tolerance=0.5, progress=False)


@case("correct-no-judge", "correct on a Task built without a judge", ConfigError,
      "correct needs to know what a wrong prediction is", "ifscope.regression")
def _():
    bare = Task(regressor(), loss=lambda out, y: (out[:, 0] - y) ** 2)
    ifscope.correct(inf(task=bare, train=real_data()).fit(), real_data(6), lr=0.1, k=4, progress=False)


@case("regression-int-targets", "integer targets for ifscope.regression", DataError,
      "regression targets must be real numbers", "ifscope.classification")
def _():
    inf(task=ifscope.regression(regressor())).fit()


@case("regression-outputs", "a regressor with 3 outputs per example", DataError,
      "regression needs one real output per example", "[batch, 1]")
def _():
    inf(task=ifscope.regression(regressor(3)), train=real_data()).fit()


RECIPE_DIR: list[Path] = []


def _recipe_file(name: str, body: str) -> str:
    """A recipe file ``name.py`` in a fresh folder whose ``make()`` runs ``body`` (tiny data and MLP at hand)."""
    path = RECIPE_DIR[0] / f"{name}.py"
    path.write_text(textwrap.dedent(f"""
        import torch
        from torch import nn
        import ifscope
        from ifscope.recipes import Recipe

        def data(n=24, bad_label=False, nan=False):
            gen = torch.Generator().manual_seed(0)
            x, y = torch.randn(n, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)
            if bad_label:
                y[10] = 7
            if nan:
                x[5, 2] = float("nan")
            return x, y

        def mlp():
            torch.manual_seed(0)
            return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3))

        def make():
            {body}
        """))
    return str(path)


def _write_with_failing_disk(error: BaseException, target: Path | None = None) -> Path:
    """Write over a good artifact while every file write raises ``error``; return the artifact's path."""
    target = target or RECIPE_DIR[0] / "artifact.json"
    write_json(target, {"good": True})
    real = os.fdopen

    class Failing:
        def __init__(self, fd, mode):
            self.fh = real(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise error

    os.fdopen = Failing  # type: ignore[assignment]
    try:
        write_json(target, {"good": False, "pad": "x" * 10_000})
    finally:
        os.fdopen = real  # type: ignore[assignment]
    return target


@pytest.fixture(autouse=True)
def recipe_dir(tmp_path):
    RECIPE_DIR[:] = [tmp_path]
    yield tmp_path


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_catalogue(c: Case) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(c.exc) as info:
            c.run()
    assert isinstance(info.value, IfscopeError), f"{type(info.value).__name__} is not an IfscopeError"
    message = str(info.value)
    for fragment in c.fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --------------------------------------------------------------------------------------------- the CLI
CLI_CASES = [
    # id, recipe body (or a recipe spec starting with "="), expected fragments of stderr
    ("cli-recipe-unknown", "=cifar", ["no built-in recipe 'cifar'"]),
    ("cli-recipe-no-function", "=FILE:build", ["has no function 'build'"]),
    ("cli-recipe-import-fails", "=BROKEN:make", ["failed to import", "ModuleNotFoundError"]),
    ("cli-recipe-wrong-type", "return {'model': mlp()}", ["returned a dict", "Recipe(model, task, train, test)"]),
    ("cli-labels-range", "m = mlp(); return Recipe(m, ifscope.classification(m), data(), data(bad_label=True))",
     ["labels must lie in [0, 3)", "test set, batch 1 (examples 8..15)"]),
    ("cli-nan-data", "m = mlp(); return Recipe(m, ifscope.classification(m), data(nan=True), data())",
     ["'train set[0]'", "NaN or inf", "rows [5]"]),
]


CLI_INPUTS = {
    "cli-recipe-unknown": "with a recipe name that does not exist",
    "cli-recipe-no-function": "FILE.py:FUNC where the file has no such function",
    "cli-recipe-import-fails": "on a file that fails to import",
    "cli-recipe-wrong-type": "on a recipe returning a dict",
    "cli-labels-range": "on a recipe whose test labels go out of range in batch 1",
    "cli-nan-data": "on a recipe with NaN in the training inputs",
}


def run_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "ifscope", *argv], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("cid,body,fragments", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_catalogue(cid: str, body: str, fragments: list[str], tmp_path: Path) -> None:
    if body.startswith("="):
        spec = body[1:]
        spec = spec.replace("FILE", _recipe_file("ok", "return None"))
        if spec.startswith("BROKEN"):
            broken = tmp_path / "broken.py"
            broken.write_text("import no_such_module_for_ifscope\n")
            spec = spec.replace("BROKEN", str(broken))
    else:
        spec = _recipe_file(cid.replace("-", "_"), body) + ":make"
    proc = run_cli("check", "--recipe", spec, "--batch-size", "8", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("ifscope: error: ")
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_cli_check_passes_on_a_good_recipe(tmp_path: Path) -> None:
    spec = _recipe_file("good", "m = mlp(); return Recipe(m, ifscope.classification(m), data(), data(10))") + ":make"
    proc = run_cli("check", "--recipe", spec, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["parameters"] == 43 and out["train"]["examples"] == 24 and out["test"]["examples"] == 10
    assert out["train"]["grad_norm"] > 0


# --------------------------------------------------------------------------------------------- writes
def test_full_disk_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError):
        path = tmp_path / "a.json"
        _write_with_failing_disk(OSError(errno.ENOSPC, "No space left on device"), path)
    assert json.loads((tmp_path / "a.json").read_text()) == {"good": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_interrupted_write_keeps_the_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    with pytest.raises(KeyboardInterrupt):
        _write_with_failing_disk(KeyboardInterrupt(), path)
    assert json.loads(path.read_text()) == {"good": True}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_sigkill_during_writes_leaves_a_whole_file(tmp_path: Path) -> None:
    """A writer killed at a random moment leaves the target either the old or a new whole JSON document."""
    path = tmp_path / "a.json"
    write_json(path, {"i": -1, "pad": ""})
    script = (f"from ifscope.core.files import write_json\nimport sys\ni = 0\nwhile True:\n"
              f"    write_json({str(path)!r}, {{'i': i, 'pad': 'x' * 200_000}})\n"
              f"    i += 1\n    print(i, flush=True) if i == 1 else None\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "1"  # at least one write finished
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    doc = json.loads(path.read_text())
    assert doc["i"] >= 0 and doc["pad"] == "x" * 200_000


def test_atomic_write_bytes_replaces_whole(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "b.bin", b"old")
    atomic_write_bytes(tmp_path / "b.bin", b"new!")
    assert (tmp_path / "b.bin").read_bytes() == b"new!"


# --------------------------------------------------------------------------------------------- numerical health
def _recorded(fn: Callable[[], object]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [str(w.message) for w in caught if issubclass(w.category, NumericalWarning)]


def test_arnoldi_breakdown_is_reported() -> None:
    """``H = E[x xᵀ]`` with every x on one line has rank one: the Krylov space is invariant after 2 steps."""
    x = torch.randn(24, 1) * torch.tensor([[1.0, 2.0, -1.0, 0.5]])
    est = None

    def fit():
        nonlocal est
        est = inf("arnoldi", task=squares_task(), train=(x, torch.randn(24)), rank=1, iterations=4, block=1,
                  weight_decay=0.0).fit().estimator
    messages = _recorded(fit)
    assert est is not None and est.breakdown
    assert any("Arnoldi broke down after 2 of 4 iterations" in m for m in messages), messages


def test_no_breakdown_warning_when_the_space_is_exhausted() -> None:
    """Running as many iterations as parameters always ends the Krylov space; that is not a breakdown to report."""
    x, _ = data(24)
    messages = _recorded(lambda: inf("arnoldi", task=squares_task(), train=(x, torch.randn(24)), rank=4,
                                     iterations=4, dtype="float64").fit())
    assert not [m for m in messages if "broke down" in m], messages


def test_tiny_kept_eigenvalues_warn_with_the_threshold() -> None:
    """Features on scales 1 and 1e-4 give Hessian eigenvalues ~1 and ~1e-8: a ratio far below 1e-6."""
    x, _ = data(24)
    x = x * torch.tensor([1.0, 1.0, 1.0, 1e-4])
    messages = _recorded(lambda: inf("arnoldi", task=squares_task(), train=(x.double(), torch.randn(24).double()),
                                     rank=4, iterations=4, dtype="float64").fit())
    assert any("smallest kept eigenvalue" in m and f"below {ifscope.TINY_EIGENVALUE_RATIO:g}" in m
               for m in messages), messages
    # damping lifts the small eigenvalue: the warning goes away
    messages = _recorded(lambda: inf("arnoldi", task=squares_task(), train=(x.double(), torch.randn(24).double()),
                                     rank=4, iterations=4, dtype="float64", damping=1e-3).fit())
    assert not [m for m in messages if "smallest kept eigenvalue" in m], messages


def test_fewer_positive_eigenpairs_than_rank_warn() -> None:
    messages = _recorded(lambda: inf("arnoldi", rank=40, iterations=43, dtype="float64").fit())
    assert any("kept only" in m and "of rank=40" in m for m in messages), messages


def test_lissa_converges_when_scale_is_right() -> None:
    """The same problem as the divergence row, with the default scale (1.1 x top eigenvalue), matches exact."""
    x, y = data()[0].double(), torch.randn(24).double()
    exact = inf("exact", task=squares_task(), train=(x, y), dtype="float64").fit().scores((x[:3], y[:3]))
    lissa = inf("lissa", task=squares_task(), train=(x, y), dtype="float64", depth=300, batch_size=24).fit() \
        .scores((x[:3], y[:3]))
    torch.testing.assert_close(lissa, exact, rtol=1e-4, atol=1e-8)


# --------------------------------------------------------------------------------------------- the docs table
def test_docs_table_lists_every_row_and_only_tested_rows() -> None:
    fragments_of = {c.id: c.fragments for c in CASES} | {c[0]: tuple(c[2]) for c in CLI_CASES}
    rows = set()
    for line in DOC.read_text().splitlines():
        found = re.search(r"`test_(?:cli_)?catalogue\[([\w-]+)\]` \|$", line)
        if found:
            assert line.startswith(f"| `{found.group(1)}` |"), line
            rows.add(found.group(1))
            message = line.split(" | ")[-2].replace("\\|", "|")
            for fragment in fragments_of.get(found.group(1), ()):  # the documented message is the tested one
                assert fragment in message, f"docs/errors.md row {found.group(1)}: {fragment!r} not in {message!r}"
    ids = {c.id for c in CASES} | {c[0] for c in CLI_CASES}
    assert ids - rows == set(), f"rows missing from docs/errors.md: {sorted(ids - rows)}"
    assert rows - ids == set(), f"rows in docs/errors.md without a test: {sorted(rows - ids)}"
    assert len(ids) >= 25


def markdown_table() -> str:
    """The catalogue as a Markdown table, messages as raised now (run this file as a script)."""
    import tempfile
    lines = ["| id | input | exception | message (as raised) | test |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        RECIPE_DIR[:] = [Path(tmp)]
        for c in CASES:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    c.run()
                message, name = "(no error raised)", "-"
            except Exception as exc:  # noqa: BLE001
                message, name = str(exc).replace("|", "\\|").replace(tmp, "TMP"), type(exc).__name__
            lines.append(f"| `{c.id}` | {c.input} | {name} | {message} | `test_catalogue[{c.id}]` |")
        for cid, body, _ in CLI_CASES:
            spec = body[1:] if body.startswith("=") else _recipe_file(cid.replace("-", "_"), body) + ":make"
            spec = spec.replace("FILE", _recipe_file("ok", "return None"))
            if spec.startswith("BROKEN"):
                (Path(tmp) / "broken.py").write_text("import no_such_module_for_ifscope\n")
                spec = spec.replace("BROKEN", str(Path(tmp) / "broken.py"))
            proc = run_cli("check", "--recipe", spec, "--batch-size", "8", cwd=Path(tmp))
            err = proc.stderr.strip().replace("|", "\\|").replace(tmp, "TMP")
            lines.append(f"| `{cid}` | `ifscope check --recipe` {CLI_INPUTS[cid]} | exit {proc.returncode}, no traceback | "
                         f"{err} | `test_cli_catalogue[{cid}]` |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
