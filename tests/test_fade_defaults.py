"""`ifscope fade` takes its option defaults from the recipe's defaults["fade"]; command-line flags override them,
and every built-in recipe declares only options its commands take, with valid values."""

import types

import pytest

import ifscope
from ifscope.cli import build_parser, resolve_command
from ifscope.options import COMMAND_OPTIONS, FadeOptions, resolve


def _args(*flags):
    args = build_parser().parse_args(["fade", *flags])
    args.workdir = None  # no run directory: no manifest layer
    return args


def test_recipe_defaults_fill_what_the_command_line_leaves_out():
    recipe = types.SimpleNamespace(defaults={"fade": {"n_ids": 3, "train_batch_size": 16,
                                                      "truth_dtype": "float32"}})
    got = resolve_command(_args("--n-ids", "5"), recipe, "fade").options
    assert (got.n_ids, got.train_batch_size, got.truth_dtype) == (5, 16, "float32")
    assert got.steps == FadeOptions().steps
    other = resolve_command(_args("--truth-dtype", "float64"), recipe, "fade").options
    assert other.truth_dtype == "float64" and other.n_ids == 3


def test_the_built_in_recipes_declare_valid_options_only():
    from ifscope.recipes.digits import CNN_FADE
    from ifscope.recipes.tweets import TWEETS_FADE
    for declared in (CNN_FADE, TWEETS_FADE):
        resolve(COMMAND_OPTIONS["fade"], recipe=declared)


def test_an_unknown_recipe_default_is_an_error():
    recipe = types.SimpleNamespace(defaults={"fade": {"n_idz": 3}})
    with pytest.raises(ifscope.ConfigError, match="n_idz"):
        resolve_command(_args(), recipe, "fade")
