"""Input checks shared by the object-condensation loss and inference."""

from __future__ import annotations

from torch import Tensor

from caloreco.errors import InvalidDataError


def check_beta_x(beta: Tensor, x: Tensor) -> int:
    """Check ``beta [N]`` and clustering coordinates ``x [N, D]``; returns N.

    Raises:
        InvalidDataError: wrong ranks or a length of ``x`` other than ``len(beta)``.
    """
    if beta.dim() != 1:
        raise InvalidDataError(f"beta must have shape [N], got {list(beta.shape)}")
    n = beta.shape[0]
    if x.dim() != 2 or x.shape[0] != n:
        raise InvalidDataError(f"x must have shape [N, D] with N = len(beta) = {n}, got "
                               f"{list(x.shape)}")
    return n
