"""Invariances every estimator must satisfy (Hypothesis): batch size, query order, training-set order, top-k streaming.

A tiny tanh MLP in float64, trained near a minimum with weight decay so that the Hessian is positive definite
(CG and LiSSA need it). Differences are compared relative to the largest score, at 1e-6: only the order of
floating-point sums may change.
"""

from __future__ import annotations

import warnings
from functools import cache, lru_cache

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import ifscope
from ifscope import Influence
from ifscope.truth.training import load_params, train

N, Q, WD = 16, 4, 0.01
SETTINGS = settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@lru_cache(maxsize=1)
def problem():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N + Q, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (N + Q,), generator=gen)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    task = ifscope.classification(model)
    result = train(task, (x[:N], y[:N]), steps=300, lr=0.05, optimizer="adam", weight_decay=WD, checkpoint_every=100)
    load_params(model, result.params)
    return task, (x[:N], y[:N]), (x[N:], y[N:]), result.checkpoints


def options(method: str) -> dict:
    return {"exact": {}, "cg": {"tol": 1e-12}, "lissa": {"depth": 10}, "arnoldi": {"rank": 8, "iterations": 31},
            "graddot": {}, "tracin": {"checkpoints": problem()[3]}}[method]


METHODS = ["exact", "cg", "lissa", "arnoldi", "graddot", "tracin"]


def influence(method: str, train_data=None, batch_size: int = N) -> Influence:
    task, train_ds, _, _ = problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ifscope.NumericalWarning)
        return Influence(task, train_ds if train_data is None else train_data, method=method, weight_decay=WD,
                         dtype=torch.float64, batch_size=batch_size, progress=False, **options(method)).fit()


@cache
def reference(method: str) -> torch.Tensor:
    return influence(method).scores(problem()[2])


def sizes(method: str) -> st.SearchStrategy[int]:
    """Batch sizes to try; the iterative solvers (one HVP per batch per step) start at 4 to keep the test fast."""
    return st.integers(4 if method in ("cg", "lissa") else 1, N)


def assert_same(a: torch.Tensor, b: torch.Tensor) -> None:
    scale = float(b.abs().max())
    assert scale > 0
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(data=st.data())
def test_scores_do_not_depend_on_batch_size(method: str, data: st.DataObject) -> None:
    batch_size = data.draw(sizes(method), "batch_size")
    assert_same(influence(method, batch_size=batch_size).scores(problem()[2]), reference(method))


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(data=st.data(), k=st.integers(1, N))
def test_streamed_top_k_matches_the_full_matrix(method: str, data: st.DataObject, k: int) -> None:
    batch_size = data.draw(sizes(method), "batch_size")
    top = influence(method, batch_size=batch_size).top(problem()[2], k=k)
    ref = reference(method)
    assert_same(top.proponent_scores, ref.topk(k, dim=1).values)
    assert_same(top.opponent_scores, -(-ref).topk(k, dim=1).values)
    assert_same(ref.gather(1, top.proponents), top.proponent_scores)  # the indices point at those scores
    assert_same(ref.gather(1, top.opponents), top.opponent_scores)


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(perm=st.permutations(list(range(Q))))
def test_permuting_queries_permutes_rows(method: str, perm: list[int]) -> None:
    xq, yq = problem()[2]
    idx = torch.tensor(perm)
    assert_same(influence(method).scores((xq[idx], yq[idx])), reference(method)[idx])


@pytest.mark.parametrize("method", METHODS)
@SETTINGS
@given(perm=st.permutations(list(range(N))), data=st.data())
def test_permuting_training_set_permutes_columns(method: str, perm: list[int], data: st.DataObject) -> None:
    batch_size = data.draw(sizes(method), "batch_size")
    x, y = problem()[1]
    idx = torch.tensor(perm)
    scores = influence(method, train_data=(x[idx], y[idx]), batch_size=batch_size).scores(problem()[2])
    assert_same(scores, reference(method)[:, idx])


@pytest.mark.parametrize("method", METHODS)
def test_self_influence_is_the_diagonal(method: str) -> None:
    inf = influence(method, batch_size=5)
    assert_same(inf.self_influence(), torch.diagonal(inf.scores(problem()[1])))
