"""The tweets-gpt recipe at tiny size: a 2-layer GPT-2 decoder on a 40-word vocabulary builds, caches and scores."""

import pytest
import torch

import ifscope
from ifscope.recipes import load_recipe
from ifscope.recipes.tweets_gpt import WordTokenizer

pytest.importorskip("transformers")
TINY = dict(n_train=48, n_test=6, vocab_size=40, n_embd=16, n_layer=2, n_head=2, max_length=12, batch_size=16)


@pytest.fixture(autouse=True)
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IFSCOPE_CACHE", str(tmp_path / "cache"))


def test_word_tokenizer_round_trips_known_words():
    tok = WordTokenizer.build(["the cat sat", "the dog sat on http://x.co/1"], size=4)
    assert tok.words[3:] == ["sat", "the", "<url>", "cat"]
    enc = tok(["the cat ran", "sat"])
    assert enc["input_ids"].tolist() == [[2, 4, 6, 1], [2, 3, 0, 0]] and enc["attention_mask"].sum(1).tolist() == [4, 2]
    assert tok.decode(enc["input_ids"][0].tolist()) == "the cat <unk>"


def test_tweets_gpt_tiny_builds_caches_and_scores():
    r = load_recipe("tweets-gpt", **TINY)
    assert not r.info["cached"] and len(r.info["tokenizer"]) == 43
    assert r.model.transformer.h[0].attn.c_attn.weight.shape[0] == 16 and len(r.model.transformer.h) == 2
    assert r.train["input_ids"].shape[0] == 48 and r.train["input_ids"].shape[1] <= 12
    assert (r.test["loss_mask"].sum(1) == 2).all() and r.test["labels"].shape == (6,)
    assert torch.equal(r.train["loss_mask"], r.train["attention_mask"])  # the same columns as the queries
    again = load_recipe("tweets-gpt", **TINY)
    assert again.info["cached"] and all(torch.equal(p, q) for p, q in zip(r.model.parameters(), again.model.parameters()))
    assert r.task.parameter_names[0].startswith("transformer.h.") is False  # the recipe's task: every parameter
    task = ifscope.language_model(r.model, **{"last_blocks": r.defaults["influence"]["last_blocks"]})
    inf = ifscope.Influence(task, r.train, method="arnoldi", rank=2, iterations=4, hessian_samples=8, batch_size=16,
                            projection="jvp", weight_decay=r.info["weight_decay"], progress=False)
    s = inf.scores(r.test)
    assert s.shape == (6, 48) and torch.isfinite(s).all()
    top = inf.top(r.test, k=3)
    torch.testing.assert_close(top.proponent_scores, s.topk(3, dim=1).values)
    batch = r.task.cast(r.test, torch.float32)
    params, rest = r.task.state()
    with torch.no_grad():
        out = r.task.forward(params, rest, batch)
    shown = r.task.judge.show_target(batch, 0)
    assert shown.startswith("'") and "tokens" not in shown
    assert r.task.judge.wrong(out, batch).shape == (6,)
