"""Bring your own regressor: a small MLP predicting disease progression (scikit-learn's diabetes data), handed to
ifscope as ``ifscope.regression``.

    in Python:               python -c "import ifscope.recipes as r; print(r.load_recipe('examples/regression.py:make'))"
    from the command line:   ifscope <command> --recipe examples/regression.py:make

The loss is the squared error ``(ŷ − y)²`` per example; the model may return ``[B]`` or ``[B, 1]``. For ``correct``
a mistake is ``|ŷ − y|`` above a tolerance (here in units of the target's standard deviation), set in the recipe's
``defaults["correct"]`` so that ``ifscope correct`` needs no flag; ``--tolerance`` overrides it.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_diabetes
from torch import nn

import ifscope
from ifscope.recipes import Recipe


def make(n_train: int = 300, n_test: int = 142, steps: int = 500, hidden: int = 16, lr: float = 1e-2,
         weight_decay: float = 1e-3, tolerance: float = 1.0, seed: int = 0) -> Recipe:
    # your data: 10 standardised features, and the target standardised on the training split
    x, y = load_diabetes(return_X_y=True)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    x = torch.as_tensor(x, dtype=torch.float32)[order]
    y = torch.as_tensor(y, dtype=torch.float32)[order]
    x = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
    y = (y - y[:n_train].mean()) / y[:n_train].std()
    train, test = (x[:n_train], y[:n_train]), (x[n_train:n_train + n_test], y[n_train:n_train + n_test])

    # your model and your usual training loop: full-batch Adam on the mean squared error with weight decay
    def fit(data: tuple[torch.Tensor, torch.Tensor], run_seed: int) -> nn.Module:
        torch.manual_seed(run_seed)
        model = nn.Sequential(nn.Linear(10, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        for _ in range(steps):
            loss = ((model(data[0])[:, 0] - data[1]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model.eval()
    model = fit(train, seed)

    # what ifscope needs: the task (squared error per example), the tolerance that makes a prediction wrong, and
    # (for `ifscope lds`) how to train from scratch on a subset of the training data
    task = ifscope.regression(model)
    return Recipe(model, task, train, test, info={"weight_decay": weight_decay},
                  defaults={"correct": {"tolerance": tolerance}},
                  retrain=lambda data, run_seed: fit(data, run_seed).state_dict())
