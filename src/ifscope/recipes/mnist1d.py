"""MNIST-1D (Greydanus & Kobak): 40-sample 1-D signals of 10 classes, generated procedurally by the ``mnist1d``
package's ``make_dataset`` with its default arguments and a fixed seed, so offline; an MLP and a small 1-D CNN."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..core.errors import ConfigError
from ..core.task import classification
from .base import Recipe

DATA_SEED = 42  # make_dataset's own default: the dataset the MNIST-1D paper reports on
# `ifscope lds` on these recipes: 50 subsets of half the training set, one retraining each, 50 queries
LDS = {"subsets": 50, "seeds": 1, "queries": 50}
MLP_INFLUENCE = {"rank": 50, "iterations": 200, "hessian_samples": 1000, "batch_size": 256}
CNN_INFLUENCE = {"rank": 30, "iterations": 100, "hessian_samples": 512, "batch_size": 256}


def mnist1d_data(n_train: int = 4000, n_test: int = 1000, seed: int = DATA_SEED
                 ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """``(train, test)`` as ``([N, 40] float32, [N] long)`` from ``make_dataset`` (never the downloading loader),
    generated once per argument set and kept in the cache; the caller's numpy and ``random`` states are restored."""
    from safetensors.torch import load, save

    from ..core.files import atomic_write_bytes
    from .common import cache_dir, cache_key
    if n_train < 1 or n_test < 1 or (n_train + n_test) % 10:
        raise ConfigError(f"mnist1d draws the same number of signals per class: n_train + n_test must be a positive "
                          f"multiple of 10, got {n_train} + {n_test}")
    config = dict(n_train=n_train, n_test=n_test, seed=seed)
    path = cache_dir() / f"mnist1d-data-{cache_key('mnist1d-data', config)}.safetensors"
    if path.is_file():
        d = load(path.read_bytes())
        return (d["x"], d["y"]), (d["x_test"], d["y_test"])
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = n_train + n_test, n_train / (n_train + n_test), seed
    states = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(states[0])
        random.setstate(states[1])
    tensors = {k: torch.tensor(d[k], dtype=torch.float32 if k.startswith("x") else torch.long).contiguous()
               for k in ("x", "y", "x_test", "y_test")}
    atomic_write_bytes(path, save(tensors))
    return (tensors["x"], tensors["y"]), (tensors["x_test"], tensors["y_test"])


def mlp(hidden: int = 64, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10))


def cnn(channels: int = 16, seed: int = 0) -> nn.Module:
    """Two strided 1-D convolutions (40 → 20 → 10 positions) and a linear read-out."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, channels, 5, 2, 2), nn.ReLU(),
                         nn.Conv1d(channels, channels, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(10 * channels, 10))


def _recipe(name: str, build, width: int, n_train: int, n_test: int, epochs: float, batch_size: int, lr: float,
            weight_decay: float, seed: int, influence: dict[str, Any]) -> Recipe:
    from .common import accuracy, cached_pretrain, fixed_threads, pretrain, stored_fact
    config = dict(n_train=n_train, n_test=n_test, width=width, epochs=epochs, batch_size=batch_size, lr=lr,
                  weight_decay=weight_decay, seed=seed)
    train_ds, test_ds = mnist1d_data(n_train, n_test)
    model = build(width, seed)
    task = classification(model)
    facts = cached_pretrain(name, model, task, train_ds, config)

    def retrain(data, run_seed: int) -> dict[str, Tensor]:
        fresh = build(width, run_seed)
        with fixed_threads():
            pretrain(classification(fresh), data, epochs=epochs, batch_size=batch_size, lr=lr,
                     weight_decay=weight_decay, seed=run_seed, desc="retraining")
        return fresh.state_dict()
    return Recipe(model, task, train_ds, test_ds,
                  info={"weight_decay": weight_decay, "classes": [str(i) for i in range(10)],
                        "test_accuracy": stored_fact(facts, "test_accuracy", lambda: accuracy(task, test_ds)), **facts},
                  defaults={"influence": dict(influence), "lds": dict(LDS),
                            "counterfactual": {k: LDS[k] for k in ("seeds", "queries")}},
                  retrain=retrain)


def mnist1d_mlp(n_train: int = 4000, n_test: int = 1000, hidden: int = 64, epochs: float = 30, batch_size: int = 128,
                lr: float = 3e-3, weight_decay: float = 1e-3, seed: int = 0) -> Recipe:
    """A ReLU MLP (40→hidden→hidden→10) trained by mini-batch Adam with weight decay on one thread; cached."""
    return _recipe("mnist1d-mlp", mlp, hidden, n_train, n_test, epochs, batch_size, lr, weight_decay, seed,
                   MLP_INFLUENCE)


def mnist1d_cnn(n_train: int = 4000, n_test: int = 1000, channels: int = 16, epochs: float = 30,
                batch_size: int = 128, lr: float = 3e-3, weight_decay: float = 1e-3, seed: int = 0) -> Recipe:
    """A 1-D CNN (two strided convolutions of ``channels``, linear read-out) trained like the MLP; cached."""
    return _recipe("mnist1d-cnn", cnn, channels, n_train, n_test, epochs, batch_size, lr, weight_decay, seed,
                   CNN_INFLUENCE)
