"""Typed options: the fields every options dataclass is made of, the estimators' shared options, each command's
options, and the one resolver that fills them (flag > run manifest > recipe > library)."""

from .commands import (
    COMMAND_OPTIONS,
    CorrectSelection,
    CounterfactualOptions,
    DiagnoseOptions,
    FadeOptions,
    LDSOptions,
    ScoresOptions,
    SelfInfluenceOptions,
    TopOptions,
)
from .fields import (
    CURVATURES,
    DTYPES,
    PROJECTION_DTYPES,
    PROJECTIONS,
    as_dtype,
    build,
    choice,
    content_hash,
    default_of,
    flag_fields,
    from_json,
    list_of,
    non_negative,
    opt,
    optional_of,
    positive_int,
    positive_number,
    to_json,
    values,
)
from .fit import FitOptions
from .resolve import LAYERS, Resolved, pick, resolve

__all__ = [
    "COMMAND_OPTIONS", "CURVATURES", "CorrectSelection", "CounterfactualOptions", "DTYPES", "DiagnoseOptions",
    "FadeOptions", "FitOptions", "LAYERS", "LDSOptions", "PROJECTIONS", "PROJECTION_DTYPES", "Resolved",
    "ScoresOptions", "SelfInfluenceOptions", "TopOptions", "as_dtype", "build", "choice", "content_hash",
    "default_of", "flag_fields", "from_json", "list_of", "non_negative", "opt", "optional_of", "positive_int", "positive_number",
    "pick", "resolve", "to_json", "values",
]
