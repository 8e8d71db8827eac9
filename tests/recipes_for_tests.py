"""Small recipes for the command-line tests, given to `ifscope --recipe tests/recipes_for_tests.py:NAME`."""

from ifscope.recipes.digits import digits_mlp


def tiny(seed=0):
    """200 training digits, a 16-unit MLP: about a second to build."""
    return digits_mlp(n_train=200, n_test=40, steps=300, hidden=16, seed=seed)


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
