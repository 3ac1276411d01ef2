"""Training losses, one per module.

- :mod:`caloreco.losses.condensation`  object condensation (Kieseler 2020,
  arXiv 2002.03605): :func:`condensation_loss` and the module :class:`CondensationLoss`
- :mod:`caloreco.losses.contrastive`  the optional neighbour contrastive term on hit pairs
  that are neighbours in the detector (:func:`contrastive_loss`)
- :mod:`caloreco.losses.signal`, :mod:`caloreco.losses.energy`  the losses of the signal
  and energy heads
"""

from caloreco.losses.condensation import CondensationLoss, condensation_loss

__all__ = ["CondensationLoss", "condensation_loss"]
