"""`ifscope fade` takes its option defaults from the recipe's defaults["fade"]; command-line flags override them."""

import argparse
import types

import pytest

import ifscope
from ifscope.cli import apply_defaults, build_parser
from ifscope.cli.fade import DEFAULTS


def _args(*flags):
    return build_parser().parse_args(["fade", *flags])


def test_recipe_defaults_fill_what_the_command_line_leaves_out():
    recipe = types.SimpleNamespace(defaults={"fade": {"n_ids": 3, "train_batch_size": 16,
                                                      "truth_dtype": "float32"}})
    got = _args("--n-ids", "5")
    apply_defaults(got, recipe, "fade", DEFAULTS)
    assert (got.n_ids, got.train_batch_size, got.truth_dtype) == (5, 16, "float32")
    assert got.steps == DEFAULTS["steps"]
    other = _args("--truth-dtype", "float64")
    apply_defaults(other, recipe, "fade", DEFAULTS)
    assert other.truth_dtype == "float64" and other.n_ids == 3


def test_the_built_in_recipes_declare_known_fade_options_only():
    from ifscope.recipes.digits import CNN_FADE
    from ifscope.recipes.tweets import TWEETS_FADE
    for declared in (CNN_FADE, TWEETS_FADE):
        assert set(declared) <= set(DEFAULTS)


def test_an_unknown_recipe_default_is_an_error():
    recipe = types.SimpleNamespace(defaults={"fade": {"n_idz": 3}})
    with pytest.raises(ifscope.ConfigError, match="n_idz"):
        apply_defaults(argparse.Namespace(recipe="x", **{k: None for k in DEFAULTS}), recipe, "fade", DEFAULTS)
