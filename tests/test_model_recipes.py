"""Tiny configurations of the digits-cnn and tweets-minilm recipes and of the bring-your-own-model examples."""

from pathlib import Path

import pytest
import torch

import ifscope
from ifscope.recipes import load_recipe
from ifscope.recipes.common import cache_dir

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_CNN = dict(n_train=48, n_test=12, width=4, epochs=2, batch_size=16)


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IFSCOPE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_digits_cnn_is_cached_with_its_batchnorm_statistics(tmp_cache):
    first = load_recipe("digits-cnn", **TINY_CNN)
    assert cache_dir() == tmp_cache and not first.info["cached"]
    assert len(list(tmp_cache.glob("digits-cnn-*.safetensors"))) == 1
    second = load_recipe("digits-cnn", **TINY_CNN)
    assert second.info["cached"] and second.info["train_seconds"] == first.info["train_seconds"]
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any("running_mean" in k and a[k].abs().sum() > 0 for k in a)  # trained statistics, not the init
    other = load_recipe("digits-cnn", **{**TINY_CNN, "seed": 1})
    assert not other.info["cached"] and len(list(tmp_cache.glob("digits-cnn-*.safetensors"))) == 2
    assert not torch.equal(other.model.state_dict()["1.weight"], a["1.weight"])


def test_test_accuracy_is_measured_once_per_cache_entry_and_matches_the_model(tmp_cache, monkeypatch):
    from ifscope.recipes import common
    first = load_recipe("digits-cnn", **TINY_CNN)
    expected = common.accuracy(first.task, first.test)
    assert first.info["test_accuracy"] == expected
    calls = []
    monkeypatch.setattr(common, "accuracy", lambda *a, **k: calls.append(1) or -1.0)
    again = load_recipe("digits-cnn", **TINY_CNN)
    assert again.info["cached"] and again.info["test_accuracy"] == expected and not calls  # read, not recomputed
    assert load_recipe("digits-cnn", **{**TINY_CNN, "seed": 1}).info["test_accuracy"] == -1.0 and calls  # a new entry measures


def test_influence_on_a_batchnorm_cnn_ignores_the_callers_train_mode():
    r = load_recipe("digits-cnn", **TINY_CNN)
    x, y = r.test
    queries = (x[:3], y[:3])
    kw = dict(method="arnoldi", rank=3, iterations=6, hessian_samples=16, weight_decay=r.info["weight_decay"],
              progress=False)
    buffers = {k: v.clone() for k, v in r.model.named_buffers()}
    expected = ifscope.Influence(r.task, r.train, **kw).scores(queries)
    r.model.train()
    inf = ifscope.Influence(r.task, r.train, **kw)
    s1, s2 = inf.scores(queries), inf.scores(queries)
    assert r.model.training and all(m.training for m in r.model.modules())
    assert torch.equal(s1, s2)  # the same fit: bit for bit
    # two fits may run other (equivalent) kernels; train-mode BatchNorm would change the scores far beyond this
    torch.testing.assert_close(s1, expected, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(v, buffers[k]) for k, v in r.model.named_buffers())  # running stats not updated
    assert inf.self_influence().shape == (48,)
    assert len(inf.task.parameter_names) == len(list(r.model.parameters()))


def test_tweets_minilm_tiny_end_to_end():
    pytest.importorskip("transformers")
    r = load_recipe("tweets-minilm", n_train=8, n_test=3, epochs=1, batch_size=4, max_length=12)
    assert r.model.num_parameters() == 22_714_371
    texts = r.info["texts"]
    assert len(texts["train"]) == 8 and len(texts["test"]) == 3 and r.info["classes"][0] == "negative"
    assert r.train["input_ids"].shape[0] == 8 and r.train["input_ids"].shape[1] <= 12
    task = ifscope.hf_classification(r.model, last_blocks=1)
    assert len(task.parameter_names) < len(r.task.parameter_names)  # the recipe trains 2 blocks; we take 1
    r.model.train()  # dropout on in the caller's model: influence must switch it off and restore the mode
    inf = ifscope.Influence(task, r.train, method="arnoldi", rank=2, iterations=3, hessian_samples=4, batch_size=4,
                            projection="jvp", weight_decay=r.info["weight_decay"], progress=False)
    top = inf.top(r.test, k=2)
    assert top.proponents.shape == (3, 2)
    assert all(isinstance(texts["train"][int(i)], str) for i in top.proponents.flatten())
    s1, s2 = inf.scores(r.test), inf.scores(r.test)
    # dropout (p=0.1) would change scores by orders of magnitude more than float32 kernel rounding
    torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-7)
    assert inf.self_influence().shape == (8,)
    assert r.model.training and r.model.bert.encoder.layer[0].attention.self.dropout.training


@pytest.mark.parametrize("spec,kwargs", [
    ("byom_cnn.py:make", dict(n_train=32, n_test=8, epochs=1)),
    ("byom_hf.py:make", dict(n_train=8, n_test=4, epochs=1, max_length=12)),
    ("causal_lm.py:make", dict(n_train=8, n_test=4, n_embd=8, epochs=1, max_length=12)),
    ("regression.py:make", dict(n_train=32, n_test=8, steps=20)),
])
def test_examples_load_as_recipes_and_score(spec, kwargs):
    if spec in ("byom_hf.py:make", "causal_lm.py:make"):
        pytest.importorskip("transformers")
    r = load_recipe(str(EXAMPLES / spec), **kwargs)
    inf = ifscope.Influence(r.task, r.train, method="arnoldi", rank=2, iterations=4, hessian_samples=8,
                            weight_decay=r.info["weight_decay"], progress=False)
    s = inf.scores(r.test)
    assert s.shape == (kwargs["n_test"], kwargs["n_train"]) and torch.isfinite(s).all()


def test_digits_mlp_is_cached_bit_for_bit(tmp_cache):
    a = load_recipe("digits-mlp", n_train=40, n_test=10, steps=5)
    b = load_recipe("digits-mlp", n_train=40, n_test=10, steps=5)
    assert not a.info["cached"] and b.info["cached"]
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert len(list(tmp_cache.glob("digits-mlp-*.json"))) == 1
