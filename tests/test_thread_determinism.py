"""Recipe weights do not depend on the caller's thread count (they are trained on a fixed one)."""

import pytest
import torch

from ifscope.core.fingerprint import model_fingerprint
from ifscope.recipes import load_recipe

CONFIGS = {"digits-mlp": dict(n_train=400, steps=300), "digits-cnn": dict(n_train=256, width=8, epochs=2)}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_recipe_weights_are_the_same_at_one_and_two_threads(name, tmp_path, monkeypatch):
    before = torch.get_num_threads()
    prints = []
    try:
        for threads in (1, 2):
            monkeypatch.setenv("IFSCOPE_CACHE", str(tmp_path / f"cache{threads}"))
            torch.set_num_threads(threads)
            recipe = load_recipe(name, **CONFIGS[name])
            assert not recipe.info["cached"]  # trained here, not read from the other cache
            assert torch.get_num_threads() == threads  # the caller's count is restored
            prints.append(model_fingerprint(recipe.model))
    finally:
        torch.set_num_threads(before)
    assert prints[0] == prints[1]
