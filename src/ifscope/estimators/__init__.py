"""Influence estimators, each a pair of embeddings; ``METHODS`` maps a method name to its class."""

from .arnoldi import Arnoldi
from .base import Context, Estimator
from .cg import CG
from .ekfac import EKFAC
from .exact import Exact
from .graddot import GradDot
from .horizon import Horizon
from .kfac import KFAC
from .lissa import LiSSA
from .tracin import TracIn
from .unrolled import Unrolled

METHODS: dict[str, type[Estimator]] = {cls.name: cls for cls in (Exact, CG, LiSSA, Arnoldi, GradDot, TracIn, Horizon,
                                                               Unrolled, KFAC, EKFAC)}

__all__ = ["METHODS", "Arnoldi", "CG", "Context", "EKFAC", "Estimator", "Exact", "GradDot", "Horizon", "KFAC", "LiSSA",
           "TracIn", "Unrolled"]
