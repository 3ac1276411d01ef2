"""HCAL-like barrel calorimeter (CMS HB, Run-3 readout), both halves -1.3 < eta < 1.3.

Transverse segmentation: projective eta-phi towers of 0.087 x 0.087 (5 degrees), 15 per
eta side (``ieta`` = -15..-1, 1..15 as in CMS; ``ieta`` 16 is shared with HE and left out)
and 72 in phi (``iphi`` = 1..72, ``iphi`` 1 covering 0 <= phi < 5 deg).

Longitudinal structure (CMS Collaboration, JINST 3 (2008) S08004, sec. 5.2): 17 plastic
scintillator layers (0..16) between the HB inner radius 177.7 cm and outer radius
287.65 cm; layer 0 sits directly behind the ECAL barrel, then a 40 mm steel front plate,
eight 50.5 mm and six 56.5 mm brass plates and a 75 mm steel back plate, each followed by
a scintillator layer. The Run-3 SiPM readout sums the layers into 4 depths
(CMSSW ``Geometry/HcalCommonData/data/hcalRecNumbering/2021/hcalRecNumbering.xml``,
``layerGroupRecEta1``): depth 1 = layer 0, depth 2 = layers 1-4, depth 3 = layers 5-9,
depth 4 = layers 10-16.

The depths are the "layers" of the :class:`~caloreco.geometry.layers.LayerStack`
(1-based). A depth covers several scintillator layers, but the simulation treats each
depth as one sampling layer: slab ``d`` is all material in front of the scintillator
layers of depth ``d`` (the absorber plate before each of them), and for depth 1 the
material in front of HB (ECAL barrel crystals). ``position`` is the mean radius of the
depth's scintillator layers.

Cell id (int64): ``depth << 40 | (ieta + 2^17) << 18 | iphi``; see
:func:`encode_tower_id` / :func:`decode_tower_id`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caloreco.errors import ConfigError
from caloreco.geometry.cells import CellTable, CellType
from caloreco.geometry.detector import Detector
from caloreco.geometry.layers import LayerStack

_IETA_OFFSET = 1 << 17
_MASK18 = (1 << 18) - 1


def encode_tower_id(depth: np.ndarray, ieta: np.ndarray, iphi: np.ndarray) -> np.ndarray:
    """Pack (depth, ieta, iphi) into the int64 HB cell id."""
    depth = np.asarray(depth, dtype=np.int64)
    return (depth << 40) | ((np.asarray(ieta, dtype=np.int64) + _IETA_OFFSET) << 18) | np.asarray(iphi, dtype=np.int64)


def decode_tower_id(cell_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_tower_id`: (depth, ieta, iphi)."""
    cell_id = np.asarray(cell_id, dtype=np.int64)
    return cell_id >> 40, ((cell_id >> 18) & _MASK18) - _IETA_OFFSET, cell_id & _MASK18


# --- materials (PDG "Atomic and nuclear properties of materials"; physics-reference.md) ---
# (X0 [cm], lambda_I [cm], dE/dx_min [MeV/cm], Moliere radius [cm])
_MATERIALS: dict[str, tuple[float, float, float, float]] = {
    "brass": (1.49, 16.4, 12.6, 1.6),  # CMS HB cartridge brass (70% Cu / 30% Zn), PDG
    "steel": (1.757, 16.77, 11.4, 1.72),  # iron, PDG
    "pbwo4": (0.8903, 20.27, 10.2, 1.959),  # PbWO4 crystals of the ECAL barrel, PDG
}

# HB absorber plates in radial order; plate k (1-based) precedes scintillator layer k
# (CMS JINST 3 (2008) S08004, sec. 5.2: 40 mm steel, 8 x 50.5 mm and 6 x 56.5 mm brass, 75 mm steel).
_HB_PLATES: tuple[tuple[str, float], ...] = (
    (("steel", 4.0),) + (("brass", 5.05),) * 8 + (("brass", 5.65),) * 6 + (("steel", 7.5),))
# Published HB absorber depth at eta = 0: 5.82 lambda_I (JINST 3 S08004 sec. 5.2; physics-reference).
# The plates alone give 5.21 lambda_I with the PDG constants; every plate's material is scaled
# by the ratio (1.117) so that the total matches (the rest is structure not listed per plate).
_HB_LAMBDA_ETA0 = 5.82
# Material in front of HB: the ECAL barrel crystals, 23 cm of PbWO4 = 25.8 X0 and 1.1 lambda_I
# (CMS ECAL TDR, CERN-LHCC-97-033). A MIP loses 10.2 MeV/cm x 23 cm = 0.235 GeV in them.
_FRONT_MATERIAL, _FRONT_CM = "pbwo4", 23.0


@dataclass(frozen=True)
class HCalBarrelConfig:
    """Parameters of the HCAL-like barrel (defaults: CMS HB with the Run-3 readout)."""

    n_eta: int = 15  # towers per eta side, |ieta| = 1..15 (CMS HB; ieta 16 is shared with HE)
    deta: float = 0.087  # tower size in eta (CMS HCAL TDR, CERN-LHCC-97-031)
    n_phi: int = 72  # 5 degree towers in phi (CMS HCAL TDR)
    r_inner: float = 177.7  # HB inner radius [cm] (CMS HCAL TDR)
    r_outer: float = 287.65  # HB outer radius [cm] (CMS HCAL TDR)
    # depth of scintillator layers 0..16: cmssw hcalRecNumbering 2021, layerGroupRecEta1 (ieta 1-15)
    layer_depth: tuple[int, ...] = (1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4)
    # Run-3 PF rechit thresholds per depth [GeV]: cmssw RecoParticleFlow/PFClusterProducer/python/
    # particleFlowRecHitHBHE_cfi.py, cuts2019 (run3_HB modifier); 2023 data use (0.4, 0.3, 0.3, 0.3)
    zs_threshold_gev: tuple[float, ...] = (0.1, 0.2, 0.3, 0.3)
    threshold_sigmas: float = 3.0  # a threshold is ~3 sigma of the electronics noise

    def __post_init__(self) -> None:
        if self.n_eta < 1 or self.n_phi < 1 or not self.deta > 0:
            raise ConfigError(f"n_eta, n_phi and deta must be positive, got {self.n_eta}, {self.n_phi}, {self.deta}")
        if not 0 < self.r_inner < self.r_outer:
            raise ConfigError(f"need 0 < r_inner < r_outer, got {self.r_inner}, {self.r_outer}")
        if len(self.layer_depth) != len(_HB_PLATES) + 1:
            raise ConfigError(f"layer_depth needs one depth per scintillator layer ({len(_HB_PLATES) + 1}), "
                              f"got {len(self.layer_depth)}")
        depths = np.asarray(self.layer_depth)
        n_depth = int(depths.max())
        if depths[0] != 1 or (np.diff(depths) < 0).any() or (np.diff(depths) > 1).any():
            raise ConfigError(f"layer_depth must start at 1 and grow in steps of 0 or 1, got {self.layer_depth}")
        if len(self.zs_threshold_gev) != n_depth or min(self.zs_threshold_gev) <= 0:
            raise ConfigError(f"zs_threshold_gev needs {n_depth} positive values (one per depth), "
                              f"got {self.zs_threshold_gev}")
        if not self.threshold_sigmas > 0:
            raise ConfigError(f"threshold_sigmas must be positive, got {self.threshold_sigmas}")

    @property
    def n_depth(self) -> int:
        return int(max(self.layer_depth))

    @property
    def dphi(self) -> float:
        return 2.0 * np.pi / self.n_phi

    @property
    def eta_max(self) -> float:
        """Edge of the acceptance, n_eta * deta (1.305 for HB)."""
        return self.n_eta * self.deta


class HCalBarrel(Detector):
    """CMS-HB-like barrel: projective eta-phi towers read out in depths (see module docstring)."""

    name = "hcal-barrel"

    def __init__(self, config: HCalBarrelConfig | None = None) -> None:
        self.config = config or HCalBarrelConfig()
        self._scint_r = self._scintillator_radii()
        self._layers = self._build_layers()
        c = self.config
        # per-depth noise sigma in GeV, then in MIPs of that depth
        self._noise_gev = np.asarray(c.zs_threshold_gev, dtype=np.float64) / c.threshold_sigmas
        self._noise_mip = (self._noise_gev / self._layers.mip_gev).astype(np.float32)

    # ------------------------------------------------------------------ layers
    @property
    def layers(self) -> LayerStack:
        return self._layers

    def _scintillator_radii(self) -> np.ndarray:
        """Radius of the 17 scintillator layers: plates of nominal thickness, equal gaps.

        The 17 gaps share the radial space the plates leave free: g = (r_out - r_in - sum t) / 17
        (1.42 cm); layer k sits in the middle of the gap that follows plate k.
        """
        c = self.config
        t = np.array([th for _, th in _HB_PLATES])
        gap = (c.r_outer - c.r_inner - t.sum()) / (len(t) + 1)
        if gap <= 0:
            raise ConfigError(f"r_outer - r_inner = {c.r_outer - c.r_inner:.1f} cm cannot hold the "
                              f"{t.sum():.1f} cm of HB absorber plates")
        before = np.concatenate([[0.0], np.cumsum(t)])  # absorber in front of layer k
        return c.r_inner + before + gap * (np.arange(len(t) + 1) + 0.5)

    def _build_layers(self) -> LayerStack:
        c = self.config
        mats = _MATERIALS
        plate_lambda = sum(th / mats[m][1] for m, th in _HB_PLATES)
        scale = _HB_LAMBDA_ETA0 / plate_lambda
        depth_of = np.asarray(c.layer_depth)
        r = self._scint_r
        pos, x0, lam, mip, mol, lam_cm = [], [], [], [], [], []
        for d in range(1, c.n_depth + 1):
            ks = np.flatnonzero(depth_of == d)
            pos.append(r[ks].mean())
            # components of slab d: (X0, lambda_I, MIP [GeV], Moliere radius [cm], radial extent [cm])
            comps = []
            if ks[0] == 0:
                m = mats[_FRONT_MATERIAL]
                comps.append((_FRONT_CM / m[0], _FRONT_CM / m[1], _FRONT_CM * m[2] * 1e-3, m[3], _FRONT_CM))
            for k in ks[ks >= 1]:
                name, th = _HB_PLATES[k - 1]
                m = mats[name]
                extent = r[k] - r[k - 1]  # plate plus one scintillator gap
                # sampling dilutes the absorber: R_M,eff = R_M * extent / plate (as for HGCAL CE-H)
                comps.append((scale * th / m[0], scale * th / m[1], scale * th * m[2] * 1e-3,
                              m[3] * extent / th, extent))
            a = np.asarray(comps)
            x0.append(a[:, 0].sum())
            lam.append(a[:, 1].sum())
            mip.append(a[:, 2].sum())
            mol.append(float((a[:, 0] * a[:, 3]).sum() / a[:, 0].sum()))  # X0-weighted
            lam_cm.append(a[:, 4].sum() / a[:, 1].sum())
        f = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
        return LayerStack(position=f(pos), x0=f(x0), lambda_i=f(lam), mip_gev=f(mip), moliere_cm=f(mol),
                          lambda_cm=f(lam_cm), section=("HB",) * c.n_depth)

    # ------------------------------------------------------------------ towers
    def ieta_values(self) -> np.ndarray:
        """All tower eta indices, -n_eta..-1, 1..n_eta."""
        n = self.config.n_eta
        return np.concatenate([np.arange(-n, 0), np.arange(1, n + 1)])

    def tower_eta(self, ieta: np.ndarray) -> np.ndarray:
        """Eta of the tower centre: sign(ieta) * (|ieta| - 1/2) * deta."""
        ieta = np.asarray(ieta)
        return np.sign(ieta) * (np.abs(ieta) - 0.5) * self.config.deta

    def tower_phi(self, iphi: np.ndarray) -> np.ndarray:
        """Phi of the tower centre in [0, 2 pi): (iphi - 1/2) * dphi."""
        return (np.asarray(iphi) - 0.5) * self.config.dphi

    def build_cells(self) -> CellTable:
        """One cell per (depth, ieta, iphi), centred at the tower centre on the depth radius.

        Area of a tower on the cylinder of radius r (z = r sinh eta):
        ``A = (r dphi) * r (sinh eta_hi - sinh eta_lo)`` ~ r^2 dphi deta cosh(eta).
        """
        c = self.config
        depth, ieta, iphi = np.meshgrid(np.arange(1, c.n_depth + 1), self.ieta_values(),
                                        np.arange(1, c.n_phi + 1), indexing="ij")
        depth, ieta, iphi = depth.ravel(), ieta.ravel(), iphi.ravel()
        r = self.layers.position[depth - 1]
        eta, phi = self.tower_eta(ieta), self.tower_phi(iphi)
        lo = np.where(ieta > 0, ieta - 1, ieta) * c.deta
        area = r * c.dphi * r * (np.sinh(lo + c.deta) - np.sinh(lo))
        return CellTable.from_columns(
            cell_id=encode_tower_id(depth, ieta, iphi), x=r * np.cos(phi), y=r * np.sin(phi), z=r * np.sinh(eta),
            area=area, type=np.full(len(depth), CellType.HCAL_TOWER), layer=depth)

    def cell_ids(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, layer: np.ndarray) -> np.ndarray:
        """Tower id from the direction of each point seen from the origin, -1 outside |eta| < eta_max.

        ``eta = asinh(z / rho)``, ``ieta = sign(eta) (floor(|eta| / deta) + 1)``,
        ``iphi = floor((phi mod 2 pi) / dphi) + 1``; ``layer`` is the 1-based depth.
        """
        c = self.config
        x, y, z = (np.asarray(v, dtype=np.float64) for v in (x, y, z))
        depth = np.asarray(layer, dtype=np.int64)
        rho = np.hypot(x, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(z / rho)
        aeta = np.abs(eta)
        inside = np.isfinite(eta) & (aeta < c.eta_max) & (depth >= 1) & (depth <= c.n_depth)
        k = np.floor(np.where(inside, aeta, 0.0) / c.deta).astype(np.int64) + 1
        k = np.minimum(k, c.n_eta)  # float rounding right at eta_max
        ieta = np.where(eta < 0, -k, k)
        iphi = np.floor(np.mod(np.arctan2(y, x), 2 * np.pi) / c.dphi).astype(np.int64) % c.n_phi + 1
        return np.where(inside, encode_tower_id(np.where(inside, depth, 1), ieta, iphi), -1)

    # ------------------------------------------------------------------ tracking
    def surface_distance(self, vertex: np.ndarray, direction: np.ndarray, layer_index: np.ndarray) -> np.ndarray:
        """Outgoing intersection with the cylinder rho = R: solve |v_T + s d_T|^2 = R^2 for s.

        ``a s^2 + b s + c = 0`` with a = |d_T|^2, b = 2 v_T.d_T, c = |v_T|^2 - R^2; the larger
        root is returned (positive for a vertex inside the cylinder), NaN if there is none.
        """
        R = self.layers.position[np.asarray(layer_index)]
        a = direction[:, 0] ** 2 + direction[:, 1] ** 2
        b = 2.0 * (vertex[:, 0] * direction[:, 0] + vertex[:, 1] * direction[:, 1])
        c = vertex[:, 0] ** 2 + vertex[:, 1] ** 2 - R**2
        disc = b * b - 4.0 * a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (-b + np.sqrt(disc)) / (2.0 * a)
        return np.where((disc >= 0) & (a > 0), s, np.nan)

    def path_factor(self, vertex: np.ndarray, direction: np.ndarray) -> np.ndarray:
        """1 / |d . n| with n the radial normal where the line crosses the middle of HB.

        For a line from the origin n is parallel to d_T, so the factor is 1 / sin(theta) =
        cosh(eta). Lines that never reach HB use their own transverse direction (same
        result). Clipped at 1000 for lines along the axis.
        """
        mid = 0.5 * (self.config.r_inner + self.config.r_outer)
        a = direction[:, 0] ** 2 + direction[:, 1] ** 2
        b = 2.0 * (vertex[:, 0] * direction[:, 0] + vertex[:, 1] * direction[:, 1])
        c = vertex[:, 0] ** 2 + vertex[:, 1] ** 2 - mid**2
        disc = b * b - 4.0 * a * c
        ok = (disc >= 0) & (a > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.where(ok, (-b + np.sqrt(np.where(ok, disc, 0.0))) / (2.0 * a), 0.0)
        px = np.where(ok, vertex[:, 0] + s * direction[:, 0], direction[:, 0])
        py = np.where(ok, vertex[:, 1] + s * direction[:, 1], direction[:, 1])
        norm = np.hypot(px, py)
        with np.errstate(divide="ignore", invalid="ignore"):
            cos = np.abs(direction[:, 0] * px + direction[:, 1] * py) / norm
        return 1.0 / np.maximum(np.nan_to_num(cos, nan=0.0), 1e-3)

    def noise_mip(self, rows: np.ndarray) -> np.ndarray:
        """Noise sigma in MIPs: (zs threshold / threshold_sigmas) / mip_gev of the depth."""
        return self._noise_mip[self.cells.layer[rows].astype(np.int64) - 1]

    def noise_gev(self, rows: np.ndarray) -> np.ndarray:
        """Noise sigma in GeV (zs threshold of the depth / threshold_sigmas)."""
        return self._noise_gev[self.cells.layer[rows].astype(np.int64) - 1]

    # ------------------------------------------------------------------ neighbour graph frame
    def neighbour_frame(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates in which towers are squares, and their size (see :mod:`.neighbours`).

        Cells are placed on the unit cylinder unrolled in eta: ``(cos phi, sin phi, eta)``;
        there a tower is a deta x dphi square, and phi wraps around naturally. The size is
        the hexagon-equivalent pitch ``sqrt(2 deta dphi / sqrt(3))`` of that square.
        """
        c = self.cells
        x, y, z = (np.asarray(v[rows], dtype=np.float64) for v in (c.x, c.y, c.z))
        rho = np.hypot(x, y)
        coords = np.column_stack([x / rho, y / rho, np.arcsinh(z / rho)])
        pitch = np.full(len(rows), np.sqrt(2.0 * self.config.deta * self.config.dphi / np.sqrt(3.0)))
        return coords, pitch
