"""Influence estimators, each a pair of embeddings; ``METHODS`` maps a method name to its class."""

from .arnoldi import Arnoldi
from .base import Context, Estimator
from .cg import CG
from .exact import Exact
from .graddot import GradDot
from .horizon import Horizon
from .lissa import LiSSA
from .tracin import TracIn
from .unrolled import Unrolled

METHODS: dict[str, type[Estimator]] = {cls.name: cls for cls in (Exact, CG, LiSSA, Arnoldi, GradDot, TracIn, Horizon,
                                                               Unrolled)}

__all__ = ["METHODS", "Arnoldi", "CG", "Context", "Estimator", "Exact", "GradDot", "Horizon", "LiSSA", "TracIn", "Unrolled"]
