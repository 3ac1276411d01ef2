"""The longitudinal layer stack: where each active layer sits and the material before it.

Layer ``l`` (1-based) samples the absorber slab between active layer ``l-1`` and ``l``;
a shower's energy deposited in that slab is assigned to layer ``l`` (calibrated to the
electromagnetic scale, like CMS rechits with dE/dx weights). Depths are measured along the
layer normal; a particle at an angle traverses ``1/cos`` more material.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LayerStack:
    """Per-layer arrays, all of length L (number of active layers).

    Attributes:
        position: z of the plane (endcap) or radius of the cylinder (barrel) [cm].
        x0: radiation lengths of the slab before the layer.
        lambda_i: nuclear interaction lengths of the slab before the layer.
        mip_gev: energy at EM scale that one MIP crossing the slab at normal incidence
            represents [GeV] (the dE/dx weight).
        moliere_cm: effective Moliere radius of the slab (sampling structure included) [cm].
        lambda_cm: effective interaction length of the slab (sampling structure included) [cm].
        section: name of the section each layer belongs to (e.g. "CE-E", "CE-H", "HB").
    """

    position: np.ndarray
    x0: np.ndarray
    lambda_i: np.ndarray
    mip_gev: np.ndarray
    moliere_cm: np.ndarray
    lambda_cm: np.ndarray
    section: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.position)

    @property
    def cum_x0(self) -> np.ndarray:
        """Depth in X0 at each active layer (material in front of it, inclusive)."""
        return np.cumsum(self.x0)

    @property
    def cum_lambda(self) -> np.ndarray:
        """Depth in lambda_I at each active layer."""
        return np.cumsum(self.lambda_i)

    def layer_at_depth(self, depth: np.ndarray, *, unit: str) -> np.ndarray:
        """0-based index of the layer that samples material at ``depth`` (-1 beyond the back).

        ``depth`` is in X0 (``unit="x0"``) or lambda_I (``unit="lambda"``) along the layer
        normal; material in slab ``l`` (between cum[l-1] and cum[l]) belongs to layer ``l``.
        """
        cum = self.cum_x0 if unit == "x0" else self.cum_lambda
        idx = np.searchsorted(cum, depth, side="left")
        return np.where(idx >= len(cum), -1, idx)

    def x0_at_lambda(self, depth_lambda: np.ndarray) -> np.ndarray:
        """Convert a depth in lambda_I into X0 by interpolating through the slabs."""
        lam = np.concatenate([[0.0], self.cum_lambda])
        x0 = np.concatenate([[0.0], self.cum_x0])
        out = np.interp(depth_lambda, lam, x0)
        # beyond the back: continue with the X0/lambda ratio of the last slab
        beyond = depth_lambda > lam[-1]
        ratio = self.x0[-1] / self.lambda_i[-1]
        return np.where(beyond, x0[-1] + (depth_lambda - lam[-1]) * ratio, out)
