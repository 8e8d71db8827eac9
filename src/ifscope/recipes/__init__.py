"""Built-in recipes: plain functions returning a :class:`Recipe`, the same shape a user's recipe file returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Recipe


def _registry() -> dict[str, Callable[..., Recipe]]:
    from .digits import digits_cnn, digits_mlp
    from .linear import digits_linear
    from .mnist1d import mnist1d_cnn, mnist1d_mlp
    from .tweets import tweets_minilm
    from .tweets_gpt import tweets_gpt
    return {"digits-linear": digits_linear, "digits-mlp": digits_mlp, "digits-cnn": digits_cnn,
            "tweets-minilm": tweets_minilm, "mnist1d-mlp": mnist1d_mlp, "mnist1d-cnn": mnist1d_cnn,
            "mnist1d": mnist1d_mlp,  # issue 23's name for the MLP
            "tweets-gpt": tweets_gpt}


def builtin(name: str) -> Callable[..., Recipe]:
    """The built-in recipe function called ``name``."""
    from ..core.errors import ConfigError
    recipes = _registry()
    if name not in recipes:
        raise ConfigError(f"no built-in recipe {name!r}; built-in ones are {sorted(recipes)}, or give FILE.py:FUNCTION")
    return recipes[name]


def is_file_recipe(spec: str) -> bool:
    """Whether ``spec`` names a recipe file (``path/to/file.py:function``, code to run) rather than a built-in."""
    return ":" in spec and spec.split(":", 1)[0].endswith(".py")


def load_recipe(spec: str, optional: dict[str, Any] | None = None, **kwargs: Any) -> Recipe:
    """Build the recipe named ``spec``: a built-in name (``digits-mlp``) or ``path/to/file.py:function``.

    ``kwargs`` go to the recipe function (one it does not take is an error); ``optional`` ones (e.g. ``seed``)
    only where the function takes them."""
    import importlib.util
    import inspect
    from pathlib import Path

    from ..core.checks import check_recipe
    from ..core.errors import ConfigError, IfscopeError
    if is_file_recipe(spec):
        path, func = spec.split(":", 1)
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"recipe file {path!r} does not exist")
        module_spec = importlib.util.spec_from_file_location(f"ifscope_recipe_{file.stem}", file)
        module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
        try:
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:
            raise ConfigError(f"recipe file {path!r} failed to import: {type(exc).__name__}: {exc}") from exc
        fn = getattr(module, func, None)
        if not callable(fn):
            raise ConfigError(f"recipe file {path!r} has no function {func!r}")
    else:
        fn = builtin(spec)
    params = inspect.signature(fn).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown and not takes_any:
        raise ConfigError(f"recipe {spec!r} takes no option(s) {unknown}; it takes {sorted(params)}")
    kwargs.update({k: v for k, v in (optional or {}).items() if takes_any or k in params})
    try:
        recipe = fn(**kwargs)
    except IfscopeError:
        raise
    except Exception as exc:
        import traceback
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        raise ConfigError(f"recipe {spec!r} raised {type(exc).__name__}: {exc} (at {frame.filename}:{frame.lineno}); "
                          "fix the recipe function") from exc
    if not isinstance(recipe, Recipe):
        raise ConfigError(f"recipe {spec!r} returned a {type(recipe).__name__}; it must return "
                          "ifscope.recipes.Recipe(model, task, train, test)")
    check_recipe(recipe, spec)
    check_defaults(recipe.defaults, spec)
    return recipe


def check_defaults(defaults: Any, spec: str) -> None:
    """A recipe's ``defaults[command]`` name commands that exist and, for the experiment commands, options that
    command takes with valid values (``influence`` and ``correct`` are checked when those commands resolve)."""
    from ..core.errors import ConfigError
    from ..options import COMMAND_OPTIONS, resolve
    if not isinstance(defaults, dict):
        raise ConfigError(f"recipe {spec!r}: defaults must be a dict {{command: {{option: value}}}}")
    unknown = sorted(set(defaults) - {"influence", *COMMAND_OPTIONS})
    if unknown:
        raise ConfigError(f"recipe {spec!r} declares defaults for unknown command(s) {unknown}; commands with "
                          f"defaults: {sorted({'influence', *COMMAND_OPTIONS})}")
    for command, given in defaults.items():
        if command not in ("influence", "correct"):
            resolve(COMMAND_OPTIONS[command], recipe=given, what=f"recipe {spec!r}'s defaults[{command!r}]")


__all__ = ["Recipe", "builtin", "load_recipe"]
