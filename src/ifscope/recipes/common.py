"""What built-in recipes share: a user cache of trained weights, and ordinary (train-mode) mini-batch pretraining."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.cache import cache_dir  # noqa: F401 (recipes' weights live there)
from ..core.data import as_dataset, take
from ..core.errors import ConfigError
from ..core.files import atomic_write_bytes, read_json, write_json
from ..core.progress import progress_bar
from ..core.task import Task
from ..truth.training import make_batches

EXTRA = "extra::"  # prefix of cached tensors that are not the model's state
TRAINING_THREADS = 1  # recipe weights are trained on one thread: the same weights whatever the machine's thread count


@contextmanager
def fixed_threads(n: int = TRAINING_THREADS) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the caller's count. A float32 reduction split over
    another number of threads sums in another order, so training under a fixed count is what makes weights (and
    every figure computed from them) come back on another machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cache_key(name: str, config: dict[str, Any]) -> str:
    """A hash of the recipe's name, arguments and the library version: any change trains anew."""
    from .._version import __version__
    blob = json.dumps({"recipe": name, "config": config, "version": __version__, "threads": TRAINING_THREADS},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cached_weights(model: nn.Module, name: str, config: dict[str, Any],
                   fit: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Load ``model``'s parameters and buffers from the cache, or run ``fit()`` (which trains ``model`` in place and
    returns facts about the run, e.g. its duration) on ``TRAINING_THREADS`` threads and store them. Returns those facts plus ``cached``.

    Facts may hold ``"tensors"``, a dict of extra tensors (e.g. training checkpoints) cached beside the weights."""
    from safetensors.torch import load, save
    path = cache_dir() / f"{name}-{cache_key(name, config)}.safetensors"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        try:
            stored = load(path.read_bytes())
            extra = {k[len(EXTRA):]: v for k, v in stored.items() if k.startswith(EXTRA)}
            model.load_state_dict({k: v for k, v in stored.items() if not k.startswith(EXTRA)}, strict=True)
            return {**read_json(meta_path), "tensors": extra, "cached": True, "cache_file": str(path)}
        except Exception as exc:  # a damaged or foreign cache entry is rebuilt, not trusted
            print(f"ifscope: ignoring unreadable cache entry {path} ({type(exc).__name__}); retraining",
                  file=sys.stderr)
    with fixed_threads():
        meta = fit()
    extra = meta.pop("tensors", {})
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    state.update({EXTRA + k: v.detach().contiguous().clone() for k, v in extra.items()})
    atomic_write_bytes(path, save(state))
    write_json(meta_path, {**meta, "config": config})
    return {**meta, "tensors": extra, "config": config, "cached": False, "cache_file": str(path)}


def stored_fact(facts: dict[str, Any], key: str, compute: Callable[[], Any]) -> Any:
    """``facts[key]``, else ``compute()`` written beside the cached weights that ``facts`` (from :func:`cached_weights`)
    describe, so a figure of the trained model (e.g. its test accuracy: 4 s of MiniLM forwards) is paid once per cache
    entry, not on every load. The entry's config fixes the data the figure is computed on."""
    if key in facts:
        return facts[key]
    value = compute()
    meta_path = Path(facts["cache_file"]).with_suffix(".json")
    try:
        write_json(meta_path, {**read_json(meta_path), key: value})
    except OSError as exc:  # a read-only cache still answers, it only recomputes next time
        print(f"ifscope: could not store {key} in {meta_path} ({exc})", file=sys.stderr)
    facts[key] = value
    return value


def pretrain(task: Task, train: Any, *, epochs: float, batch_size: int, lr: float, weight_decay: float,
             seed: int, desc: str = "pretraining") -> dict[str, Any]:
    """Mini-batch Adam on ``mean ℓ + (wd/2)‖θ‖²`` over the trainable parameters, in train mode (dropout on,
    BatchNorm on batch statistics), in a seeded batch order; the model is left in eval mode."""
    if epochs <= 0 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be positive, got {epochs} and {batch_size}")
    data = as_dataset(train, "train")
    n = len(data)
    steps = max(1, round(epochs * n / min(batch_size, n)))
    order = make_batches(n, steps, batch_size, seed)
    model = task.model
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(trainable, lr=lr, weight_decay=weight_decay)  # coupled decay = the L2 term above
    torch.manual_seed(seed)  # dropout masks
    model.train()
    losses, t0 = [], time.time()
    bar = progress_bar(desc, len(order))
    for idx in order:
        batch = task.cast(take(data, idx), torch.float32)
        args, kwargs = task.inputs(batch)
        loss = task.loss(task.outputs(model(*args, **kwargs)), task.targets(batch)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        bar.update(1)
    bar.close()
    model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return {"train_seconds": time.time() - t0, "steps": steps, "final_loss": sum(tail) / len(tail)}


def cached_pretrain(name: str, model: nn.Module, task: Task, train: Any, config: dict[str, Any]) -> dict[str, Any]:
    """:func:`cached_weights` of :func:`pretrain` with the training options of ``config``; the model ends in eval mode."""
    facts = cached_weights(model, name, config, lambda: pretrain(
        task, train, epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"],
        weight_decay=config["weight_decay"], seed=config["seed"], desc=name))
    model.eval()
    return facts


@torch.no_grad()
def accuracy(task: Task, data: Any, batch_size: int = 256) -> float:
    """Fraction of ``data`` whose argmax logit equals the label, with the model in eval mode."""
    from ..core.data import batches
    data = as_dataset(data, "data")
    right = 0
    with task.evaluating():
        for _, batch in batches(data, batch_size):
            batch = task.cast(batch, torch.float32)
            args, kwargs = task.inputs(batch)
            right += int((task.outputs(task.model(*args, **kwargs)).argmax(1) == task.targets(batch)).sum())
    return right / len(data)
