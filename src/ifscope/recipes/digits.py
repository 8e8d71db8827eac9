"""scikit-learn's 8×8 digits (1797 images, 10 classes), shipped inside the package: no download."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..task import classification
from ..training import load_params, train
from . import Recipe


def digits_data(n_train: int = 1000, n_test: int = 300, seed: int = 0, flip: float = 0.0
                ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], Tensor]:
    """Seeded split of ``load_digits`` into train/test, pixels scaled to [0, 1]; ``flip`` relabels that fraction of
    training labels to another class. Returns ``(train, test, flipped_mask)``."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)
    if n_train + n_test > len(x):
        raise ValueError(f"digits has {len(x)} images; n_train + n_test = {n_train + n_test} is too many")
    tr, te = perm[:n_train], perm[n_train:n_train + n_test]
    ytr = y[tr].clone()
    flipped = torch.zeros(n_train, dtype=torch.bool)
    if flip > 0:
        idx = torch.randperm(n_train, generator=gen)[: int(round(flip * n_train))]
        ytr[idx] = (ytr[idx] + torch.randint(1, 10, (len(idx),), generator=gen)) % 10
        flipped[idx] = True
    return (x[tr], ytr), (x[te], y[te]), flipped


def mlp(hidden: int = 32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, hidden), nn.Tanh(), nn.Linear(hidden, 10))


def digits_mlp(n_train: int = 1000, n_test: int = 300, hidden: int = 32, steps: int = 1500, lr: float = 0.02,
               weight_decay: float = 1e-3, flip: float = 0.0, seed: int = 0, progress: bool = False) -> Recipe:
    """A tanh MLP (64→hidden→10) trained to near convergence by full-batch Adam with weight decay.

    ``info`` also records the parameters at the start of training (``initial``) and at every quarter of it
    (``checkpoints``, ``(params, lr)`` pairs, the last one being the final model), for ``ifscope.diagnose``.
    """
    train_ds, test_ds, flipped = digits_data(n_train, n_test, seed, flip)
    model = mlp(hidden, seed)
    task = classification(model)
    initial = {k: v.detach().clone() for k, v in model.named_parameters()}
    result = train(task, train_ds, steps=steps, lr=lr, optimizer="adam", weight_decay=weight_decay, seed=seed,
                   checkpoint_every=max(1, steps // 4), progress=progress)
    load_params(model, result.params)
    return Recipe(model, task, train_ds, test_ds,
                  info={"weight_decay": weight_decay, "flipped": flipped, "image_shape": (8, 8),
                        "classes": [str(i) for i in range(10)], "final_loss": result.losses[-1],
                        "initial": initial, "checkpoints": result.checkpoints})
