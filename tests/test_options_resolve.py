"""One resolver for every command: each option set at each layer (flag, manifest, recipe, library) wins in that
order, and the layer it came from is recorded; the command line is generated from the same dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from types import SimpleNamespace

import pytest
from cli_helpers import TINY, ifscope

from ifscope.cli import build_parser, resolve_command
from ifscope.core.errors import ConfigError
from ifscope.experiments.correct import CorrectOptions
from ifscope.options import COMMAND_OPTIONS, default_of, optional_of, resolve, to_json
from ifscope.run.store import RunDir

CHOICES = {"checks": ["convexity", "stability", "trajectory"], "methods": [["run"], ["horizon"], ["graddot"]],
           "baselines": [["random"], ["query_itself"], ["random_same_class"]], "queries": ["0-1", "0-2", "1-2"],
           "strategy": ["both", "opponents", "proponents"], "rank_by": ["unrolled", "checkpoint", "unrolled"]}


def _every_command() -> dict[str, tuple[type, ...]]:
    return {**COMMAND_OPTIONS, "correct": (CorrectOptions, *COMMAND_OPTIONS["correct"])}


def _values(cls: type, f: dataclasses.Field) -> list:
    """Three valid values for the flag, manifest and recipe layers, different from the library default and from
    each other where the type allows."""
    kind = typing.get_type_hints(cls)[f.name]
    base, default = optional_of(kind), default_of(f)
    if f.metadata.get("choices"):
        opts = [c for c in f.metadata["choices"] if c != default] or list(f.metadata["choices"])
        return [opts[i % len(opts)] for i in range(3)]
    if f.name in CHOICES and base is not int and not (base is str and f.name != "queries" and f.name not in CHOICES):
        v = CHOICES[f.name]
        return [v[0], v[1], v[2]] if f.name != "checks" else [[v[0]], [v[1]], [v[2]]]
    if typing.get_origin(base) in (list, tuple):
        item = typing.get_args(base)[0]
        return [[item(1)], [item(2)], [item(3)]] if item is int else [[0.2], [0.3], [0.4]]
    if base is bool:
        return [not default, default, not default]
    if base is int:
        start = default if isinstance(default, int) else 3
        return [start + 1, start + 2, start + 3]
    if base is float:
        return [0.2, 0.3, 0.4]
    raise AssertionError(f"no test values for {cls.__name__}.{f.name}: {kind}")


CASES = [(command, cls, f) for command, classes in _every_command().items() for cls in classes
         for f in dataclasses.fields(cls) if f.name != "seed"]


@pytest.mark.parametrize("command,cls,field", CASES, ids=[f"{c}-{f.name}" for c, _, f in CASES])
def test_each_option_at_each_layer(command, cls, field):
    classes = _every_command()[command]
    name = field.name
    flag, manifest, recipe = _values(cls, field)
    layers = {"flag": {name: flag}, "manifest": {name: to_json(manifest)}, "recipe": {name: recipe}}
    expected = {"flag": flag, "manifest": manifest, "recipe": recipe}
    for winner in ("flag", "manifest", "recipe", "library"):
        given = {k: v for k, v in layers.items() if list(expected).index(k) >= list(expected).index(winner)} \
            if winner != "library" else {}
        got = resolve(classes, flag=given.get("flag"), manifest=given.get("manifest"), recipe=given.get("recipe"))
        obj = next(o for o in got.objects if isinstance(o, cls))
        want = default_of(field) if winner == "library" else expected[winner]
        assert got.source[name] == winner
        assert to_json(getattr(obj, name)) == to_json(type(getattr(obj, name))(want)) \
            if isinstance(want, (list, tuple)) else getattr(obj, name) == want


def test_flags_given_as_none_were_not_given_but_a_recorded_none_wins():
    got = resolve(COMMAND_OPTIONS["fade"], flag={"train_lr": None}, manifest={"train_lr": None},
                  recipe={"train_lr": 0.5})
    assert got.options.train_lr is None and got.source["train_lr"] == "manifest"


def test_a_recipe_default_the_command_does_not_take_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['rank'\]"):
        resolve(COMMAND_OPTIONS["fade"], recipe={"rank": 4}, what="`ifscope fade`")


def test_a_bad_value_names_its_layer():
    with pytest.raises(ConfigError, match="n_ids must be a positive integer.*from the recipe"):
        resolve(COMMAND_OPTIONS["fade"], recipe={"n_ids": 0})


def test_every_field_is_a_flag_of_its_command():
    """The command line is generated from the dataclasses: no option of a command lacks its flag."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, classes in _every_command().items():
        dests = {a.dest for a in subparsers.choices[command]._actions}
        missing = [f.name for c in classes for f in dataclasses.fields(c) if f.name != "seed" and f.name not in dests]
        assert not missing, f"{command}: no flag for {missing}"


def test_three_step_sizes_three_flags():
    parser = build_parser()
    fade = parser.parse_args(["fade", "--train-lr", "0.1", "--horizon-lr", "0.2"])
    assert fade.train_lr == 0.1 and fade.lr == 0.2
    assert parser.parse_args(["fade", "--lr", "0.3"]).train_lr == 0.3  # the old flag keeps its old meaning
    assert parser.parse_args(["correct", "--correct-lr", "0.4"]).lr == 0.4
    assert parser.parse_args(["fit", "--horizon-lr", "0.5"]).lr == 0.5
    assert parser.parse_args(["diagnose", "--steps", "1,3", "10"]).steps == [1, 3, 10]
    assert parser.parse_args(["correct", "--baselines", "random"]).baselines == ["random"]
    with pytest.raises(SystemExit):
        parser.parse_args(["correct", "--baselines", "sideways"])


def test_resolve_command_reads_the_run_manifest_and_the_recipe(tmp_path, capsys):
    run = RunDir(tmp_path)
    run.manifest = {"format_version": 2}
    run.record_options("fade", {"n_ids": 7, "steps": [1, 2]})
    args = SimpleNamespace(workdir=str(tmp_path), n_ids=None, steps=[5], n_queries=None)
    recipe = SimpleNamespace(defaults={"fade": {"n_ids": 9, "n_queries": 3}})
    got = resolve_command(args, recipe, "fade")
    o = got.options
    assert (o.n_ids, o.steps, o.n_queries, o.epsilon) == (7, [5], 3, 0.01)
    assert [got.source[k] for k in ("n_ids", "steps", "n_queries", "epsilon")] == \
        ["manifest", "flag", "recipe", "library"]
    assert "n ids 7 (manifest)" in capsys.readouterr().err


def test_the_command_line_records_its_options_for_the_next_run(tmp_path):
    """`top -k 3` records k in the manifest; a later `top` without -k uses it, saying where it came from."""
    work = str(tmp_path / "run")
    fit = ["--recipe", TINY, "--rank", "4", "--iterations", "12", "--batch-size", "64", "--workdir", work]
    first = json.loads(ifscope("top", *fit, "--queries", "0", "-k", "3", "--json").stdout)
    assert first["command_options"]["source"]["k"] == "flag"
    assert RunDir(work).manifest["options"]["top"]["k"] == 3
    again = ifscope("top", "--recipe", TINY, "--workdir", work, "--queries", "0", "--json")
    out = json.loads(again.stdout)
    assert out["k"] == 3 and out["command_options"]["source"]["k"] == "manifest"
    assert "k 3 (manifest)" in again.stderr
