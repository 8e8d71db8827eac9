"""A convex recipe: multinomial logistic regression on the digits with weight decay, trained to its unique optimum.

Its objective ``mean ℓ + (wd/2)‖θ‖²`` is strictly convex, so retraining on any subset from any start lands on that
subset's own optimum: the setting where classic influence functions are expected to predict retraining well, which
anchors the counterfactual evaluation (``ifscope.lds``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ..core.data import as_dataset, take
from ..core.errors import NumericalError
from ..core.params import Params
from ..core.task import Task, classification
from ..truth.training import load_params
from .base import Recipe


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(64, 10)


def minimise(task: Task, data: Any, weight_decay: float, params0: Mapping[str, Tensor], *,
             dtype: torch.dtype = torch.float64, iterations: int = 1000, tolerance: float = 1e-9) -> Params:
    """``argmin_θ mean_i ℓ(zᵢ, θ) + (wd/2)‖θ‖²`` over the task's parameters by full-batch L-BFGS (strong Wolfe line
    search) from ``params0``, in ``dtype``; raises NumericalError if the gradient norm is still above ``tolerance``×100."""
    data = as_dataset(data, "train")
    batch = task.cast(take(data, range(len(data))), dtype)
    rest = task.state(dtype)[1]
    params = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in params0.items()}
    opt = torch.optim.LBFGS(list(params.values()), lr=1.0, max_iter=iterations, tolerance_grad=tolerance,
                            tolerance_change=1e-16, history_size=50, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = task.per_example_loss(params, rest, batch).mean()
        loss = loss + 0.5 * weight_decay * sum((v * v).sum() for v in params.values())
        loss.backward()
        return loss
    with task.evaluating():
        opt.step(closure)
        closure()
    norm = float(torch.sqrt(sum((v.grad * v.grad).sum() for v in params.values())))
    if not norm <= 100 * tolerance:
        raise NumericalError(f"L-BFGS stopped with gradient norm {norm:.3g} after {iterations} iterations; "
                             "raise iterations or weight_decay")
    return {k: v.detach() for k, v in params.items()}


def digits_linear(n_train: int = 1000, n_test: int = 300, weight_decay: float = 1e-3, seed: int = 0) -> Recipe:
    """Logistic regression 64→10 (650 parameters) at the float64 L-BFGS optimum of the weight-decayed mean
    cross-entropy; cached. ``retrain(data, seed)`` reaches the optimum of a subset from the seed's initialisation."""
    from .common import accuracy, cached_weights, fixed_threads, stored_fact
    from .digits import digits_data
    config = dict(n_train=n_train, n_test=n_test, weight_decay=weight_decay, seed=seed)
    train_ds, test_ds, flipped = digits_data(n_train, n_test, seed)
    model = linear(seed)
    task = classification(model)

    def retrain(data: Any, run_seed: int) -> Params:
        start = dict(classification(linear(run_seed)).state()[0])
        with fixed_threads():
            return minimise(task, data, weight_decay, start)

    def fit() -> dict[str, Any]:
        load_params(model, retrain(train_ds, seed))
        return {}
    facts = cached_weights(model, "digits-linear", config, fit)
    facts.pop("tensors", None)
    return Recipe(model, task, train_ds, test_ds,
                  info={"weight_decay": weight_decay, "flipped": flipped, "image_shape": (8, 8),
                        "classes": [str(i) for i in range(10)], "test_accuracy": stored_fact(facts, "test_accuracy", lambda: accuracy(task, test_ds)), **facts},
                  defaults={"lds": {"subsets": 100, "seeds": 1, "queries": 50},
                            "counterfactual": {"seeds": 1, "queries": 10}},
                  retrain=retrain)
