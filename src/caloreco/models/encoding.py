"""Hit encoding: per-hit input features and voxel-grid positions for the clustering models.

The encoding is part of a trained model (it is stored in its checkpoint): a network is
only valid on hits encoded the way it was trained.

Features (F = 11), each scaled to order one:

==========  =========================================================================
energy      ``log(E / 1 MeV) / 3``, E the hit energy [GeV] floored at 1 keV
x, y        ``x / 150 cm``, ``y / 150 cm`` (the HGCAL-like endcap reaches r ~ 150-260 cm)
z           ``(|z| - 320 cm) / 200 cm`` (front face at ~320 cm, back at ~520 cm)
layer       ``layer / 47`` (47 active layers)
time        ``(t - r / c)`` [ns], clipped to [-5, 5]: time after a prompt photon's arrival
cell type   one-hot of the 5 :class:`caloreco.geometry.CellType` codes (zeros if absent)
==========  =========================================================================

Voxel positions: ``((x - origin) / v, (y - origin) / v, layer - 1/2 (+ gap for z < 0))``
with ``v = voxel_cm``: transverse voxels of ``voxel_cm`` and one layer deep, the two
endcaps separated by ``endcap_gap`` layers so that no kernel reaches across.

Encodings by detector (the registry :data:`ENCODINGS`, chosen with ``caloreco train
--encoding``): ``hgcal`` is :class:`HitEncoding` (this module), ``hcal`` the barrel's
:class:`~caloreco.models.hcal_encoding.HcalEncoding` (eta, phi, depth voxels). Every
encoding has ``kind``, ``n_features``, ``features(hits)``, ``points(hits)``,
``projected_positions(hits)`` (for the locality cut of the clustering) and ``to_dict()``; a stored dict names its ``kind`` (dicts without one, from checkpoints
written before the registry, are ``hgcal``) and :func:`encoding_from_dict` rebuilds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Protocol

import numpy as np

from caloreco.errors import ConfigError, InvalidDataError

#: Speed of light [cm/ns].
C_CM_PER_NS = 29.9792458
#: Number of cell-type codes (caloreco.geometry.CellType).
N_CELL_TYPES = 5
#: |z| of the HGCAL-like endcap's front face [cm] (first CMS HGCAL layer at 319.8 cm, see
#: caloreco.geometry.hgcal): the reference plane of HitEncoding.projected_positions.
FRONT_FACE_Z_CM = 320.0
#: Hit columns the encoding reads.
REQUIRED_COLUMNS = ("energy", "x", "y", "z", "layer", "time")


@dataclass(frozen=True)
class HitEncoding:
    """How hits become model inputs.

    Args:
        voxel_cm: transverse voxel size [cm]. Default 0.7: on the dtau preset 99.97 % of
            hits have a voxel of their own (0.8 cm: 96.5 %, 1.0 cm: 88 %; fine silicon
            cells have a 0.81 cm pitch).
        origin_cm: lower corner of the voxel grid in x and y [cm].
        layers_per_voxel: longitudinal voxel size in layers.
        endcap_gap: voxel offset of the z < 0 endcap along the layer axis.
        kind: the encoding's registry name, always ``"hgcal"`` (stored in checkpoints).
    """

    voxel_cm: float = 0.7
    origin_cm: float = -300.0
    layers_per_voxel: float = 1.0
    endcap_gap: int = 128
    kind: str = "hgcal"

    def __post_init__(self) -> None:
        if self.kind != "hgcal":
            raise ConfigError(f"HitEncoding is the 'hgcal' encoding, got kind='{self.kind}'; "
                              f"rebuild stored encodings with encoding_from_dict()")
        if not (self.voxel_cm > 0 and self.layers_per_voxel > 0):
            raise ConfigError(f"voxel sizes must be > 0, got voxel_cm={self.voxel_cm}, "
                              f"layers_per_voxel={self.layers_per_voxel}")

    @property
    def n_features(self) -> int:
        return 6 + N_CELL_TYPES

    def to_dict(self) -> dict:
        return asdict(self)

    def _check(self, hits: Mapping[str, np.ndarray]) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in hits]
        if missing:
            raise InvalidDataError(f"hits lack column(s) {missing} needed by the hit encoding")
        for c in ("energy", "x", "y", "z", "time"):
            if not np.isfinite(hits[c]).all():
                i = int(np.flatnonzero(~np.isfinite(hits[c]))[0])
                raise InvalidDataError(f"hit column '{c}' is not finite at hit {i} ({hits[c][i]})")

    def features(self, hits: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 ``[N, 11]`` input features (see the module docstring)."""
        self._check(hits)
        n = len(hits["energy"])
        x, y, z = (np.asarray(hits[c], np.float64) for c in ("x", "y", "z"))
        r = np.sqrt(x * x + y * y + z * z)
        out = np.zeros((n, self.n_features), np.float32)
        out[:, 0] = np.log(np.maximum(hits["energy"], 1e-6) / 1e-3) / 3.0
        out[:, 1] = x / 150.0
        out[:, 2] = y / 150.0
        out[:, 3] = (np.abs(z) - 320.0) / 200.0
        out[:, 4] = np.asarray(hits["layer"], np.float32) / 47.0
        out[:, 5] = np.clip(hits["time"] - r / C_CM_PER_NS, -5.0, 5.0)
        if "cell_type" in hits:
            ct = np.asarray(hits["cell_type"], np.int64)
            ok = (ct >= 0) & (ct < N_CELL_TYPES)
            out[np.flatnonzero(ok), 6 + ct[ok]] = 1.0
        return out

    def points(self, hits: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 ``[N, 3]`` positions in voxel units (hit in voxel ``floor(p)``)."""
        self._check(hits)
        layer = np.asarray(hits["layer"], np.float64)
        k = (layer - 0.5) / self.layers_per_voxel
        k = np.where(np.asarray(hits["z"]) < 0, k + self.endcap_gap, k)
        p = np.stack([(np.asarray(hits["x"], np.float64) - self.origin_cm) / self.voxel_cm,
                      (np.asarray(hits["y"], np.float64) - self.origin_cm) / self.voxel_cm, k], 1)
        if len(p) and p.min() < 0:
            i = int(np.argmin(p.min(1)))
            raise InvalidDataError(f"hit {i} at ({hits['x'][i]}, {hits['y'][i]}, layer "
                                   f"{hits['layer'][i]}) lies below the voxel grid origin "
                                   f"{self.origin_cm} cm")
        return p.astype(np.float32)

    def projected_positions(self, hits: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 ``[N, 3]`` hit positions moved along their line of flight from the origin
        onto the front face of their endcap, ``(x, y, z) * z_f / |z|`` with
        ``z_f`` = :data:`FRONT_FACE_Z_CM`: distances between them are transverse distances
        at the front face (the two endcaps lie ``2 z_f`` apart). The positions of the
        locality cut of :func:`~caloreco.clustering.condensation.condensation_clustering`."""
        self._check(hits)
        return project_positions(hits, "z", FRONT_FACE_Z_CM)


def project_positions(hits: Mapping[str, np.ndarray], along: str, reference_cm: float
                      ) -> np.ndarray:
    """float32 ``[N, 3]`` positions scaled onto the surface where the coordinate ``along``
    (``"z"``: the plane ``|z| = reference_cm``; ``"rho"``: the cylinder ``rho =
    reference_cm``) equals ``reference_cm``, i.e. moved along the line from the origin.

    Raises:
        InvalidDataError: a hit at ``along = 0`` (no line of flight to scale).
    """
    xyz = np.stack([np.asarray(hits[c], np.float64) for c in ("x", "y", "z")], 1)
    size = np.abs(xyz[:, 2]) if along == "z" else np.hypot(xyz[:, 0], xyz[:, 1])
    if len(size) and not (size > 0).all():
        i = int(np.flatnonzero(~(size > 0))[0])
        raise InvalidDataError(f"hit {i} at ({xyz[i, 0]}, {xyz[i, 1]}, {xyz[i, 2]}) cm has "
                               f"{along} = 0: it cannot be projected along its line of flight")
    return (xyz * (reference_cm / size)[:, None]).astype(np.float32)


class Encoding(Protocol):
    """What the networks, trainer, clusterer and server read of a hit encoding
    (:class:`HitEncoding`, :class:`~caloreco.models.hcal_encoding.HcalEncoding`)."""

    kind: str

    @property
    def n_features(self) -> int: ...

    def features(self, hits: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def points(self, hits: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def projected_positions(self, hits: Mapping[str, np.ndarray]) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


#: Encoding kinds, by detector: name -> ``"module:class"`` (imported when used).
ENCODINGS: dict[str, str] = {"hgcal": "caloreco.models.encoding:HitEncoding",
                             "hcal": "caloreco.models.hcal_encoding:HcalEncoding"}


def encoding_class(kind: str) -> type:
    """The encoding class registered as ``kind``.

    Raises:
        ConfigError: unknown ``kind`` (the message lists the registered ones).
    """
    if kind not in ENCODINGS:
        raise ConfigError(f"unknown hit encoding '{kind}'; choose one of {sorted(ENCODINGS)}")
    from importlib import import_module

    module, name = ENCODINGS[kind].split(":")
    return getattr(import_module(module), name)


def make_encoding(kind: str = "hgcal", **options: Any) -> Encoding:
    """An encoding of ``kind`` (``hgcal`` or ``hcal``) with ``options`` (its fields)."""
    cls = encoding_class(kind)
    try:
        return cls(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options {sorted(options)} for the '{kind}' hit encoding: {exc}") from None


def encoding_from_dict(stored: Mapping[str, Any]) -> Encoding:
    """Rebuild an encoding from its ``to_dict()`` (as stored in checkpoints and configs).

    A dict without ``kind`` (checkpoints written before the registry, or an empty
    ``TrainConfig.encoding``) is the ``hgcal`` :class:`HitEncoding`.
    """
    options = dict(stored)
    return make_encoding(str(options.pop("kind", "hgcal")), **options)
