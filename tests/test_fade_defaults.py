"""`ifscope fade` takes its option defaults from the recipe's defaults["fade"]; command-line flags override them."""

import argparse
import types

import pytest

import ifscope
from ifscope.cli import build_parser
from ifscope.cli.fade import FALLBACK, fade_options


def _args(*flags):
    return build_parser().parse_args(["fade", *flags])


def test_recipe_defaults_fill_what_the_command_line_leaves_out():
    recipe = types.SimpleNamespace(defaults={"fade": {"n_ids": 3, "train_batch_size": 16, "dtype": "float32",
                                                      "last_blocks": 1}})
    got = fade_options(_args("--n-ids", "5"), recipe)
    assert (got.n_ids, got.train_batch_size, got.dtype, got.last_blocks) == (5, 16, "float32", 1)
    assert got.truth_dtype == "float32" and got.steps == FALLBACK["steps"]
    assert fade_options(_args("--train-batch-size", "0", "--truth-dtype", "float64"), recipe).train_batch_size is None
    assert fade_options(_args(), recipe).n_ids == 3


def test_the_built_in_recipes_declare_known_fade_options_only():
    from ifscope.recipes.digits import CNN_FADE
    from ifscope.recipes.tweets import TWEETS_FADE
    for declared in (CNN_FADE, TWEETS_FADE):
        assert set(declared) <= set(FALLBACK)
    assert TWEETS_FADE["last_blocks"] == 1


def test_an_unknown_recipe_default_is_an_error():
    recipe = types.SimpleNamespace(defaults={"fade": {"n_idz": 3}})
    with pytest.raises(ifscope.ConfigError, match="n_idz"):
        fade_options(argparse.Namespace(**{k: None for k in FALLBACK}), recipe)
