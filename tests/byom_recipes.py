"""Tiny "bring your own model" recipes the project has never trained on, for the model-contract tests and for the
command line: ``ifscope check --recipe tests/byom_recipes.py:NAME``. Each builds in well under a second, untrained
(the contract is about how the model computes, not what it learned); no downloads.

Good ones: ``lstm``, ``gru``, ``batchnorm_eval``, ``gpt2``, ``float32_only`` (fails in float64). Bad ones, each refused with a one-line reason:
``batchnorm_batch_stats`` (BatchNorm on batch statistics), ``coupled`` (subtracts the batch mean),
``gpt2_no_pad`` (a decoder classifier without a pad token id).
"""

from __future__ import annotations

import torch
from torch import nn

from ifscope import classification, hf_classification
from ifscope.recipes import Recipe

VOCAB, LENGTH, CLASSES = 30, 7, 3


class RNNClassifier(nn.Module):
    """Embedding -> LSTM/GRU -> linear head on the last step."""

    def __init__(self, cell: type[nn.Module] = nn.LSTM, emb: int = 8, hidden: int = 12):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, emb)
        self.rnn = cell(emb, hidden, batch_first=True)
        self.head = nn.Linear(hidden, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.emb(x))
        return self.head(out[:, -1])


class Centered(nn.Module):
    """Subtracts the batch mean of its input: every example's output depends on the others."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(0, keepdim=True)


def _sequences(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (n, LENGTH), generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


def _features(n: int, seed: int, dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen), torch.randint(0, CLASSES, (n,), generator=gen)


def _recipe(model: nn.Module, train, test, task=None, **defaults) -> Recipe:
    # weight decay as in training: an LSTM's two bias vectors act alike, so without it the Hessian is singular
    return Recipe(model, task or classification(model), train, test, info={"weight_decay": 1e-3},
                  defaults={"influence": {"rank": 4, "iterations": 10, "batch_size": 16, **defaults}})


def lstm(seed: int = 0, n_train: int = 40) -> Recipe:
    """An LSTM classifier: no forward-mode derivative in float32 (mkldnn), no vmap(grad) in float64."""
    torch.manual_seed(seed)
    return _recipe(RNNClassifier(nn.LSTM).eval(), _sequences(n_train, 1), _sequences(10, 2))


def gru(seed: int = 0, n_train: int = 40) -> Recipe:
    """A GRU classifier: no vmap(grad) in either precision."""
    torch.manual_seed(seed)
    return _recipe(RNNClassifier(nn.GRU).eval(), _sequences(n_train, 1), _sequences(10, 2))


def _mlp_with(norm: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), norm, nn.ReLU(), nn.Linear(8, CLASSES))


class Float32Only(nn.Module):
    """An MLP that casts its input to float32 (as code written for one precision does): it fails in float64."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float())


def float32_only(seed: int = 0) -> Recipe:
    """A model that runs only in float32: fade's float64 ground truth and references fall back to float32."""
    torch.manual_seed(seed)
    return _recipe(Float32Only().eval(), _features(40, 1), _features(10, 2))


def batchnorm_eval(seed: int = 0) -> Recipe:
    """BatchNorm1d with running statistics, used in eval mode: per-example, accepted."""
    torch.manual_seed(seed)
    model = _mlp_with(nn.BatchNorm1d(8))
    model.train()
    with torch.no_grad():  # a few batches so that the running statistics are not the initial ones
        for s in range(3):
            model(_features(32, 10 + s)[0])
    return _recipe(model.eval(), _features(40, 1), _features(10, 2))


def batchnorm_batch_stats(seed: int = 0) -> Recipe:
    """BatchNorm1d with ``track_running_stats=False``: normalises by the batch's statistics even in eval mode."""
    torch.manual_seed(seed)
    return _recipe(_mlp_with(nn.BatchNorm1d(8, track_running_stats=False)), _features(40, 1), _features(10, 2))


def coupled(seed: int = 0) -> Recipe:
    """A model that subtracts the batch mean: no BatchNorm, still not per-example."""
    torch.manual_seed(seed)
    return _recipe(_mlp_with(Centered()), _features(40, 1), _features(10, 2))


def _gpt2(pad_token_id: int | None, seed: int) -> nn.Module:
    import transformers
    torch.manual_seed(seed)
    cfg = transformers.GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2, n_positions=32, num_labels=CLASSES,
                                  pad_token_id=pad_token_id, bos_token_id=1, eos_token_id=1,
                                  initializer_range=0.3)  # large enough weights that attention matters
    return transformers.GPT2ForSequenceClassification(cfg).eval()


def text_batch(n: int, seed: int, pad: int = 0, left: bool = False, length: int = 9) -> dict[str, torch.Tensor]:
    """``n`` random token sequences of 3..``length`` tokens, padded with ``pad`` on the right (or left)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, length + 1, (n,), generator=gen)
    lengths[0] = length
    ids = torch.full((n, length), pad)
    mask = torch.zeros(n, length, dtype=torch.long)
    for i, size in enumerate(lengths.tolist()):
        cols = slice(length - size, length) if left else slice(0, size)
        ids[i, cols] = torch.randint(2, 40, (size,), generator=gen)
        mask[i, cols] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.randint(0, CLASSES, (n,), generator=gen)}


def gpt2(seed: int = 0) -> Recipe:
    """A 2-block GPT-2 sequence classifier with its pad token id set: causal + padding masks."""
    model = _gpt2(0, seed)
    return _recipe(model, text_batch(16, 1), text_batch(4, 2), task=hf_classification(model), batch_size=8)


def gpt2_no_pad(seed: int = 0) -> Recipe:
    """The GPT-2 classifier without ``pad_token_id``: it cannot find the last token of a padded row."""
    model = _gpt2(None, seed)
    return _recipe(model, text_batch(16, 1), text_batch(4, 2), task=hf_classification(model), batch_size=8)
