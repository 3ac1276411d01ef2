"""Training losses, one per module.

- :mod:`caloreco.losses.condensation`  object condensation (Kieseler 2020,
  arXiv 2002.03605): :func:`condensation_loss` and the module :class:`CondensationLoss`
"""

from caloreco.losses.condensation import CondensationLoss, condensation_loss

__all__ = ["CondensationLoss", "condensation_loss"]
