"""Small recipes for the command-line tests, given to `ifscope --recipe tests/recipes_for_tests.py:NAME`."""

from ifscope.recipes.digits import digits_mlp


def tiny(seed=0, n_test=40):
    """200 training digits, a 16-unit MLP: about a second to build."""
    return digits_mlp(n_train=200, n_test=n_test, steps=300, hidden=16, seed=seed)


def wide(seed=0):
    """1000 training digits, so that a scores run writes many shards (the resume test kills it midway)."""
    return digits_mlp(n_train=1000, n_test=20, steps=200, hidden=16, seed=seed)


def flipped(seed=0, flip=0.0):
    """The tiny recipe with a fraction ``flip`` of its training labels flipped (for `ifscope self-influence`)."""
    return digits_mlp(n_train=200, n_test=40, steps=300, hidden=16, seed=seed, flip=flip)


def sized(seed=0):
    """The tiny recipe with its own estimator defaults, as built-in recipes declare them."""
    recipe = tiny(seed)
    recipe.defaults["influence"] = {"rank": 6, "iterations": 18, "hessian_samples": 50, "batch_size": 40}
    return recipe


def texts(seed=0):
    """A 2-block BERT of hidden size 16 (untrained) on 12 made-up 'texts': a text recipe in a second."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))  # loaded by file path from the command line
    from test_hf import text_data, tiny_bert

    from ifscope import hf_classification
    from ifscope.recipes import Recipe
    model = tiny_bert(seed).eval()
    train, test = text_data(12, seed=1), text_data(4, seed=2)
    words = {split: [f"{split} text {i} <{i % 3}>" for i in range(len(d["labels"]))]
             for split, d in (("train", train), ("test", test))}
    return Recipe(model, hf_classification(model), train, test,
                  info={"classes": ["neg", "neu", "pos"], "texts": words},
                  defaults={"influence": {"last_blocks": 0, "rank": 2, "iterations": 6, "batch_size": 4}})
