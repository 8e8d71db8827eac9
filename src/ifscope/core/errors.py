"""The one exception type a user of ifscope needs to catch."""

from __future__ import annotations


class IfscopeError(Exception):
    """A problem with the user's input or artifacts; the message names it and says what to do."""


class ConfigError(IfscopeError, ValueError):
    """An unknown or out-of-range option."""


class DataError(IfscopeError, ValueError):
    """A dataset, batch or model output of the wrong shape, type or value."""


class ModelError(IfscopeError, ValueError):
    """A model that breaks the contract influence needs: an example's loss depends on the rest of its batch, or the
    task does not reproduce the model's own forward."""


class NumericalError(IfscopeError, FloatingPointError):
    """A non-finite loss, gradient, Hessian-vector product or score."""


class ArtifactError(IfscopeError):
    """A run directory or file that is corrupted, mismatched or from another version."""


class NumericalWarning(UserWarning):
    """A result that is computed but numerically fragile (Arnoldi breakdown, tiny kept eigenvalues)."""


class NonFiniteError(NumericalError):
    """A NaN or inf appeared in a loss, gradient, Hessian-vector product, embedding or score."""
