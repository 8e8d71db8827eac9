"""Bring your own model: a 30k-parameter LSTM sequence classifier with its own data and training, no option sized.

    ifscope fade --recipe examples/byom_lstm.py:make       (the experiment sizes itself to the machine: see stderr)

The recipe gives no ``defaults``: ``fade``, ``diagnose`` and the others measure one replay step and one unrolled
step of this model and choose how many ids, queries and horizons fit their time budget (``--budget-s``), saying what
they chose. The task: sequences of 12 tokens from a 50-token vocabulary, the class the token most frequent in the
sequence belongs to (4 classes of tokens). Trained in seconds by full-batch Adam (60 steps).
"""

from __future__ import annotations

import torch
from torch import nn

import ifscope
from ifscope.recipes import Recipe

VOCAB, LENGTH, CLASSES = 50, 12, 4
WEIGHT_DECAY = 1e-3


class LSTMClassifier(nn.Module):
    """Embedding (32) -> LSTM (68 units) -> linear head on the last step: 29.6k parameters."""

    def __init__(self, emb: int = 32, hidden: int = 68):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, emb)
        self.rnn = nn.LSTM(emb, hidden, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.emb(x))
        return self.head(out[:, -1])


def sequences(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` token sequences and their labels: the class (token mod 4) of the most frequent token."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, VOCAB, (n, LENGTH), generator=gen)
    counts = torch.zeros(n, CLASSES).scatter_add_(1, x % CLASSES, torch.ones(n, LENGTH))
    return x, counts.argmax(1)


def make(seed: int = 0, n_train: int = 400, n_test: int = 100, steps: int = 60) -> Recipe:
    """The trained LSTM (eval mode), its task, 400 training and 100 test sequences; weight decay 1e-3."""
    torch.manual_seed(seed)
    model = LSTMClassifier()
    data, test = sequences(n_train, seed + 1), sequences(n_test, seed + 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.02, weight_decay=0.0)
    for _ in range(steps):  # your own training loop: full-batch Adam on cross-entropy + (wd/2)‖θ‖²
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(data[0]), data[1])
        (loss + 0.5 * WEIGHT_DECAY * sum((p * p).sum() for p in model.parameters())).backward()
        opt.step()
    model.eval()
    return Recipe(model, ifscope.classification(model), data, test, info={"weight_decay": WEIGHT_DECAY})
