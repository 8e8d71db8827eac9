"""tweets-minilm at any N (issue 22): n_train=all, weights cached per N, a step cap, every block selectable, streamed
embeddings in a run directory; and benchmarks/scale.py's arithmetic. Tiny sizes only."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import ifscope
from ifscope.core.errors import ConfigError
from ifscope.recipes import load_recipe

pytest.importorskip("transformers")
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(n_test=3, epochs=1, batch_size=4, max_length=12)


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IFSCOPE_CACHE", str(tmp_path))
    return tmp_path


def test_n_train_all_is_every_tweet_but_the_held_out_ones():
    from ifscope.recipes.tweets import train_size, tweet_rows
    assert train_size("all", 400) == len(tweet_rows()) - 400 > 30_000
    assert train_size(8, 3) == 8
    for bad in ("ALL", 2.5, True, "8"):
        with pytest.raises(ConfigError, match="n_train must be a positive integer or 'all'"):
            train_size(bad, 3)
    with pytest.raises(ConfigError, match="n_train and n_test must be positive"):
        load_recipe("tweets-minilm", n_train=len(tweet_rows()), n_test=3)


def test_n_train_all_parses_from_the_command_line():
    from ifscope.cli import recipe_arg
    assert recipe_arg("n_train=all") == ("n_train", "all")
    assert recipe_arg("n_train=8000") == ("n_train", 8000)


def test_weights_are_cached_per_n_train(tmp_cache):
    a = load_recipe("tweets-minilm", n_train=8, **TINY)
    b = load_recipe("tweets-minilm", n_train=12, **TINY)
    again = load_recipe("tweets-minilm", n_train=8, **TINY)
    assert not a.info["cached"] and not b.info["cached"] and again.info["cached"]  # 12 never reuses 8's weights
    assert a.info["cache_file"] == again.info["cache_file"] != b.info["cache_file"]
    assert len(list(tmp_cache.glob("tweets-minilm-*.safetensors"))) == 2
    trained = a.task.parameter_names
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), again.model.parameters()))
    assert not all(torch.equal(dict(a.model.named_parameters())[n], dict(b.model.named_parameters())[n])
                   for n in trained)


def test_max_steps_caps_training_and_enters_the_cache_key_only_when_it_binds(tmp_cache):
    capped = load_recipe("tweets-minilm", n_train=16, max_steps=2, **TINY)  # one epoch would be 4 steps
    assert capped.info["steps"] == 2 and capped.info["config"]["max_steps"] == 2
    free = load_recipe("tweets-minilm", n_train=16, max_steps=4, **TINY)
    assert free.info["steps"] == 4 and "max_steps" not in free.info["config"]
    assert capped.info["cache_file"] != free.info["cache_file"]
    with pytest.raises(ConfigError, match="max_steps"):
        load_recipe("tweets-minilm", n_train=16, max_steps=0, **TINY)


def test_every_block_is_selectable_while_the_recipe_task_keeps_the_trained_parameters():
    r = load_recipe("tweets-minilm", n_train=8, **TINY)
    named = dict(r.model.named_parameters())
    blocks = [n for n in named if n.startswith("bert.encoder.layer.")]
    tail = [n for n in named if n.startswith(("bert.pooler.", "classifier."))]
    six = ifscope.hf_classification(r.model, last_blocks=6).parameter_names
    assert six == blocks + tail  # every block and what follows, no embedding
    assert sum(named[n].numel() for n in six) > 10_000_000
    two = [n for n in blocks if n.startswith(("bert.encoder.layer.4.", "bert.encoder.layer.5."))] + tail
    assert r.task.parameter_names == two  # what the recipe trained (train_blocks=2)


def test_streamed_embeddings_in_a_run_directory_equal_the_in_memory_ones(tmp_path):
    r = load_recipe("tweets-minilm", n_train=10, **TINY)
    task = ifscope.hf_classification(r.model, last_blocks=1)
    kw = dict(method="arnoldi", rank=2, iterations=3, hessian_samples=4, batch_size=4, projection="jvp",
              weight_decay=r.info["weight_decay"], progress=False)
    memory = ifscope.Influence(task, r.train, **kw).fit()
    disk = ifscope.Influence(task, r.train, workdir=tmp_path / "run", **kw).fit()
    disk.cache_budget = 0  # nothing kept in memory: every pass reads the shards
    expected = memory.train_embeddings()
    torch.testing.assert_close(disk.train_embeddings(), expected, rtol=1e-5, atol=1e-7)
    assert len(list((tmp_path / "run" / "train").glob("*.safetensors"))) == 3  # 10 tweets in shards of 4
    full = memory.query_embeddings(r.test) @ expected.T
    top = disk.top(r.test, k=3)
    assert torch.equal(top.proponents, full.topk(3, dim=1).indices)


def _scale():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import scale
    return scale


def _row(n: int, seconds: float, influence_mb: float, last_blocks: int = 1) -> dict:
    return {"n_train": n, "last_blocks": last_blocks, "embed_s": seconds, "influence_mb": influence_mb,
            "rss_top_mb": 1000 + influence_mb + n / 1000, "top_command_s": seconds + 10, "embed_over_floor": 2.0}


def test_scale_slope_and_verdict_read_linear_cost_and_flat_memory():
    scale = _scale()
    linear = [_row(n, 0.01 * n, 50) for n in (2000, 8000, 32000)]
    assert scale.slope(linear, "embed_s") == pytest.approx(1.0)
    (line,) = scale.verdict(linear)
    assert "N^1.00 (linear)" in line and "stays flat" in line
    quadratic = [_row(n, 1e-6 * n * n, 0.05 * n) for n in (2000, 8000, 32000)]
    assert scale.slope(quadratic, "embed_s") == pytest.approx(2.0)
    (line,) = scale.verdict(quadratic)
    assert "NOT linear" in line and "does NOT stay flat" in line
    assert scale.verdict([_row(2000, 1.0, 50)]) == []  # one N says nothing about growth
    met, embed = scale.targets(linear)
    assert "(≤ 600 s: met)" in met and "(≤ 4096 MB: met)" in met and "(met)" in embed


def test_scale_floor_restores_which_parameters_require_gradients():
    r = load_recipe("tweets-minilm", n_train=8, **TINY)
    before = {n: p.requires_grad for n, p in r.model.named_parameters()}
    task = ifscope.hf_classification(r.model, last_blocks=1)
    assert _scale().floor_per_example(task, r.train, 8, 4, repeats=1) > 0
    assert {n: p.requires_grad for n, p in r.model.named_parameters()} == before
    assert all(p.grad is None for p in r.model.parameters())


def test_scale_script_measures_one_tiny_configuration_and_renders_it(tmp_path):
    import json
    import os
    import subprocess
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    out = tmp_path / "scale.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--n", "40", "--last-blocks", "1",
                    "--queries", "2", "-k", "3", "--floor-examples", "16", "--json", str(out)],
                   env=env, check=True, timeout=600, capture_output=True)
    d = json.loads(out.read_text())
    (row,) = d["rows"]
    assert row["n_train"] == 40 and row["last_blocks"] == 1 and row["projection"] == "vmap"
    assert row["rss_load_mb"] <= row["rss_fit_mb"] <= row["rss_embed_mb"] <= row["rss_top_mb"]
    assert row["embed_over_floor"] == pytest.approx(row["embed_per_example_ms"] / row["floor_per_example_ms"])
    assert d["verdict"][0].startswith("target at N = 40, last block")  # one N: no growth verdict, only the targets
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import docs_render_scripts
    d["_meta"] = {"command": "scale.py --n 40", "threads": 1, "seconds": 1.0, "machine": "x", "date": "d"}
    table = docs_render_scripts.scale_summary({"scale-tiny": d})
    assert "| 40 | 1 | 1.9M | vmap |" in table and "`scale.py --n 40` (1 s)" in table
