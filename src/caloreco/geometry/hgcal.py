"""HGCAL-like endcap calorimeter (one side, z > 0).

Longitudinal structure (CMS Phase-2 HGCAL TDR, CERN-LHCC-2017-023, and the layer z
positions of the CMSSW geometry in ``../shared/data/cmssw-hgcal-ntuple``):

- CE-E: 26 silicon layers in cassette pairs, Pb/Cu/CuW absorbers, 27.7 X0 and 1.5 lambda_I.
- CE-H: 21 layers of steel absorber, 8 fine (35 mm steel) then 13 coarse (68 mm steel),
  about 8.5 lambda_I; silicon at small radius, scintillator tiles at large radius in the
  13 back layers.

Transverse segmentation: hexagonal silicon cells on two regular lattices (fine pitch
0.806 cm, coarse pitch 1.209 cm: the median nearest-neighbour distances of the CMSSW cell
table in ``../shared/data/hgcal-geometry-cee``) and scintillator tiles in (r, phi) with
1.25 degree phi segmentation and radial size r * dphi (square-ish tiles).

Cell id (int64): ``layer << 40 | lattice << 36 | (a + 2^17) << 18 | (b + 2^17)`` where
lattice is 0 (fine), 1 (coarse), 2 (scintillator) and (a, b) are axial hex coordinates or
(ring, phi index) for tiles. Decode with :func:`decode_cell_id`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from caloreco.geometry.cells import CellTable, CellType
from caloreco.geometry.detector import Detector
from caloreco.geometry.hexgrid import hex_area, hex_centres, hex_lattice_in_annulus, hex_round
from caloreco.geometry.layers import LayerStack

_OFFSET = 1 << 17
_MASK18 = (1 << 18) - 1

LATTICE_FINE, LATTICE_COARSE, LATTICE_SCINT = 0, 1, 2


def encode_cell_id(layer: np.ndarray, lattice: np.ndarray | int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pack (layer, lattice, a, b) into the int64 HGCAL cell id."""
    layer = np.asarray(layer, dtype=np.int64)
    return ((layer << 40) | (np.asarray(lattice, dtype=np.int64) << 36)
            | ((np.asarray(a, dtype=np.int64) + _OFFSET) << 18) | (np.asarray(b, dtype=np.int64) + _OFFSET))


def decode_cell_id(cell_id: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_cell_id`: (layer, lattice, a, b)."""
    cell_id = np.asarray(cell_id, dtype=np.int64)
    return (cell_id >> 40, (cell_id >> 36) & 0xF, ((cell_id >> 18) & _MASK18) - _OFFSET,
            (cell_id & _MASK18) - _OFFSET)


@dataclass(frozen=True)
class HGCalConfig:
    """Parameters of the HGCAL-like endcap (defaults: CMS Phase-2 design, one endcap)."""

    eta_min: float = 1.5  # acceptance (HGCAL TDR)
    eta_max: float = 3.0  # acceptance (HGCAL TDR)
    phi_min: float = -np.pi  # azimuthal coverage; a sector keeps tests small
    phi_max: float = np.pi
    # z of the first CE-E layer and the cassette spacing: CMSSW rechit z in the shared
    # ntuple (319.8, 320.7, 322.3, 323.2, ... cm: alternating 0.90 / 1.54 cm steps)
    ce_e_z0: float = 319.8
    ce_e_steps: tuple[float, float] = (0.90, 1.54)
    ce_e_layers: int = 26  # HGCAL TDR (v16 geometry): 26 CE-E layers
    # CE-H: first layer z and pitch of fine / coarse sections (CMSSW ntuple: 357.7 cm,
    # 4.9 cm steps, then 8.4 cm steps)
    ce_h_z0: float = 357.7
    ce_h_steps: tuple[float, float] = (4.9, 8.4)
    ce_h_fine_layers: int = 8  # HGCAL TDR: 35 mm steel in the first 8 CE-H layers
    ce_h_layers: int = 21  # HGCAL TDR (v16 geometry): 21 CE-H layers
    # lattice pitch = median nearest-neighbour distance of the CMSSW cell table
    pitch_fine: float = 0.806  # cm (120 um cells, area sqrt(3)/2 d^2 = 0.563 cm^2)
    pitch_coarse: float = 1.209  # cm (200/300 um cells, area 1.266 cm^2)
    scint_dphi_deg: float = 1.25  # HGCAL TDR: 1.25 degree tiles (288 in phi)
    scint_r0: float = 50.0  # reference radius of the log-spaced tile rings [cm]
    # silicon thickness regions in |eta| (CMSSW cell table: 120 um up to r ~ 80-86 cm,
    # 200 um to r ~ 110-124 cm at z ~ 320-350 cm)
    ce_e_eta_fine: float = 2.1
    ce_e_eta_thick: float = 1.78
    ce_h_eta_fine: float = 2.4  # CE-H fluence is lower: thin sensors only at high eta
    ce_h_eta_thick: float = 2.05
    ce_h_eta_scint: float = 1.9  # Si/scintillator border in the 13 coarse CE-H layers
    extra: dict[str, float] = field(default_factory=dict)


# --- material per slab ------------------------------------------------------------
# CE-E: 27.7 X0 and 1.5 lambda_I in total (HGCAL TDR); cassette pairs alternate a thin
# (Pb + steel cover) and a thick (Cu/CuW cooling plate + Pb) absorber. The CMSSW dE/dx
# weights alternate ~8.9 / 10.9 MeV per layer, i.e. a 0.96 / 1.18 X0 pattern.
_CE_E_FRONT_X0 = 1.0  # tracker, thermal screen and HGCAL front disk (CMS tracker TDR: ~1 X0 at eta 2)
_CE_E_SLAB_X0 = (0.96, 1.18)
_CE_E_LAMBDA_PER_X0 = 0.054  # Pb/Cu mixture: 1.5 lambda / 27.7 X0 (HGCAL TDR)
_CE_E_MIP_MEV_PER_X0 = 9.3  # CMSSW HGCalRecHit dEdX_weights: ~8.9-10.9 MeV per ~1 X0 layer
_CE_E_MOLIERE_CM = 2.7  # effective Moliere radius of CE-E, 2.5-3 cm (HGCAL TDR)
# CE-H: 35 mm steel (+cassette) = 0.27 lambda, 68 mm steel (+cassette) = 0.49 lambda so that
# CE-H totals 8.5 lambda (HGCAL TDR); steel lambda_I/X0 = 16.8/1.76 (PDG)
_CE_H_SLAB_LAMBDA = (0.27, 0.49)
_STEEL_X0_PER_LAMBDA = 16.8 / 1.76  # PDG: Fe X0 = 1.76 cm, lambda_I = 16.8 cm
# steel dE/dx_min = 11.4 MeV/cm (PDG); 35 (68) mm steel + ~6 mm Cu cassette -> 48 (85) MeV,
# consistent with CMSSW CE-H dEdX weights (~65-90 MeV per layer)
_CE_H_MIP_MEV = (48.0, 85.0)
_CE_H_MOLIERE_CM = 2.3  # Fe R_M = 1.72 cm (PDG) x pitch/steel thickness (4.9/3.5, 8.4/6.8) ~ 2.1-2.4


# --- noise ------------------------------------------------------------------------------
# HGCROC equivalent noise charge ~2000 e- (0.32 fC) at start of life (HGCAL TDR); MIP most
# probable charge = MPV deposit / 3.62 eV: 34 keV (120 um) -> 9.4k e-, 56 keV (200 um) ->
# 15.5k e-, 84 keV (300 um) -> 23.2k e- (physics-reference.md, PDG).
NOISE_MIP = {
    CellType.SI_FINE: 2000.0 / 9390.0,
    CellType.SI_COARSE_THIN: 2000.0 / 15470.0,
    CellType.SI_COARSE_THICK: 2000.0 / 23200.0,
    CellType.SCINTILLATOR: 0.15,  # SiPM-on-tile: MIP S/N > 5 over the lifetime (HGCAL TDR); start of life ~7
    CellType.HCAL_TOWER: 0.0,
}


class HGCalEndcap(Detector):
    """HGCAL-like endcap geometry; see the module docstring for the layout."""

    name = "hgcal"

    def __init__(self, config: HGCalConfig | None = None) -> None:
        self.config = config or HGCalConfig()
        self._layers = self._build_layers()
        self._noise_by_type = np.array([NOISE_MIP[t] for t in CellType], dtype=np.float32)

    # ------------------------------------------------------------------ layers
    @property
    def layers(self) -> LayerStack:
        return self._layers

    @property
    def n_ce_e(self) -> int:
        return self.config.ce_e_layers

    def _build_layers(self) -> LayerStack:
        c = self.config
        ne, nh, nhf = c.ce_e_layers, c.ce_h_layers, c.ce_h_fine_layers
        z = [c.ce_e_z0]
        for i in range(1, ne):
            z.append(z[-1] + c.ce_e_steps[(i - 1) % 2])
        z.append(c.ce_h_z0)
        for i in range(1, nh):
            z.append(z[-1] + (c.ce_h_steps[0] if i < nhf else c.ce_h_steps[1]))
        x0 = [_CE_E_FRONT_X0] + [_CE_E_SLAB_X0[(i - 1) % 2] for i in range(1, ne)]
        lam = [v * _CE_E_LAMBDA_PER_X0 for v in x0]
        mip = [v * _CE_E_MIP_MEV_PER_X0 * 1e-3 for v in x0]
        pitch_e = np.diff(z[:ne]).mean()
        lam_cm = [pitch_e / (_CE_E_SLAB_X0[0] * _CE_E_LAMBDA_PER_X0 + _CE_E_SLAB_X0[1] * _CE_E_LAMBDA_PER_X0) * 2] * ne
        mol = [_CE_E_MOLIERE_CM] * ne
        for i in range(nh):
            k = 0 if i < nhf else 1
            lam.append(_CE_H_SLAB_LAMBDA[k])
            x0.append(_CE_H_SLAB_LAMBDA[k] * _STEEL_X0_PER_LAMBDA)
            mip.append(_CE_H_MIP_MEV[k] * 1e-3)
            mol.append(_CE_H_MOLIERE_CM)
            lam_cm.append(c.ce_h_steps[k] / _CE_H_SLAB_LAMBDA[k])
        section = tuple(["CE-E"] * ne + ["CE-H"] * nh)
        f = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
        return LayerStack(position=f(z), x0=f(x0), lambda_i=f(lam), mip_gev=f(mip),
                          moliere_cm=f(mol), lambda_cm=f(lam_cm), section=section)

    # ------------------------------------------------------------------ regions
    def _region_radii(self, layer: int) -> dict[str, float]:
        """Radii [cm] of the acceptance and sensor-type borders on a 1-based layer."""
        c = self.config
        z = float(self.layers.position[layer - 1])
        r_of = lambda eta: z / np.sinh(eta)  # noqa: E731
        ce_e = layer <= self.n_ce_e
        fine = c.ce_e_eta_fine if ce_e else c.ce_h_eta_fine
        thick = c.ce_e_eta_thick if ce_e else c.ce_h_eta_thick
        mixed = (not ce_e) and (layer - self.n_ce_e) > c.ce_h_fine_layers
        r_max = r_of(c.eta_min)
        r_scint = r_max
        if mixed:
            # snap the Si/scintillator border to the inner edge of a tile ring, so tiles and
            # silicon meet without a strip that neither covers
            g = 1.0 + np.deg2rad(c.scint_dphi_deg)
            k = np.ceil(np.log(r_of(c.ce_h_eta_scint) / c.scint_r0) / np.log(g))
            r_scint = float(c.scint_r0 * g**k)
        return {"r_min": r_of(c.eta_max), "r_fine": r_of(fine), "r_thick": r_of(thick),
                "r_scint": r_scint, "r_max": r_max}

    def _scint_ring_edges(self, r_lo: float, r_hi: float) -> tuple[np.ndarray, np.ndarray]:
        """Ring indices k and inner radii of the tile rings covering [r_lo, r_hi)."""
        c = self.config
        g = 1.0 + np.deg2rad(c.scint_dphi_deg)
        k_lo = int(np.floor(np.log(r_lo / c.scint_r0) / np.log(g)))
        k_hi = int(np.ceil(np.log(r_hi / c.scint_r0) / np.log(g)))
        k = np.arange(k_lo, k_hi + 1)
        return k, c.scint_r0 * g**k

    # ------------------------------------------------------------------ cells
    def build_cells(self) -> CellTable:
        c = self.config
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ("cell_id", "x", "y", "z", "area", "type", "layer")}
        g = 1.0 + np.deg2rad(c.scint_dphi_deg)
        nphi = int(round(360.0 / c.scint_dphi_deg))
        dphi = 2 * np.pi / nphi
        for layer in range(1, len(self.layers) + 1):
            R = self._region_radii(layer)
            z = self.layers.position[layer - 1]
            for lattice, pitch, r_lo, r_hi in ((LATTICE_FINE, c.pitch_fine, R["r_min"], R["r_fine"]),
                                               (LATTICE_COARSE, c.pitch_coarse, max(R["r_min"], R["r_fine"]), R["r_scint"])):
                if r_hi <= r_lo:
                    continue
                a, b = hex_lattice_in_annulus(r_lo, r_hi, pitch)
                x, y = hex_centres(a, b, pitch)
                r = np.hypot(x, y)
                if lattice == LATTICE_FINE:
                    t = np.full(len(a), CellType.SI_FINE, dtype=np.int8)
                else:
                    t = np.where(r < R["r_thick"], CellType.SI_COARSE_THIN, CellType.SI_COARSE_THICK).astype(np.int8)
                self._append(cols, layer, lattice, a, b, x, y, z, np.full(len(a), hex_area(pitch)), t)
            if R["r_scint"] < R["r_max"]:
                k, r_in = self._scint_ring_edges(R["r_scint"], R["r_max"])
                r_c = r_in * np.sqrt(g)  # geometric centre of the ring
                ok = (r_in >= R["r_scint"] * (1 - 1e-9)) & (r_c < R["r_max"])
                k, r_in, r_c = k[ok], r_in[ok], r_c[ok]
                K, J = np.meshgrid(k, np.arange(nphi), indexing="ij")
                RC = np.broadcast_to(r_c[:, None], K.shape)
                RIN = np.broadcast_to(r_in[:, None], K.shape)
                phi = (J + 0.5) * dphi - np.pi
                area = 0.5 * dphi * (RIN * g) ** 2 - 0.5 * dphi * RIN**2
                self._append(cols, layer, LATTICE_SCINT, K.ravel(), J.ravel(), (RC * np.cos(phi)).ravel(),
                             (RC * np.sin(phi)).ravel(), z, area.ravel(),
                             np.full(K.size, CellType.SCINTILLATOR, dtype=np.int8))
        arrays = {k: np.concatenate(v) for k, v in cols.items()}
        if c.phi_max - c.phi_min >= 2 * np.pi:
            keep = np.ones(len(arrays["x"]), dtype=bool)  # full ring (arctan2 returns +pi at y = 0, x < 0)
        else:
            phi = np.arctan2(arrays["y"], arrays["x"])
            keep = (phi >= c.phi_min) & (phi < c.phi_max)
        return CellTable.from_columns(**{k: v[keep] for k, v in arrays.items()})

    @staticmethod
    def _append(cols: dict[str, list[np.ndarray]], layer: int, lattice: int, a: np.ndarray, b: np.ndarray,
                x: np.ndarray, y: np.ndarray, z: float, area: np.ndarray, t: np.ndarray) -> None:
        cols["cell_id"].append(encode_cell_id(np.full(len(a), layer), lattice, a, b))
        cols["x"].append(x)
        cols["y"].append(y)
        cols["z"].append(np.full(len(a), z))
        cols["area"].append(area)
        cols["type"].append(t)
        cols["layer"].append(np.full(len(a), layer))

    # ------------------------------------------------------------------ lookup
    @cached_property
    def _dense_index(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per lattice: (row map [layer, a - a0, b - b0], a0/b0 offsets, shape) for O(1) lookup.

        Dense maps cost ~30 MB for the full endcap and make lookup a pure array gather.
        """
        layer, lattice, a, b = decode_cell_id(self.cells.cell_id)
        maps = []
        for lat in (LATTICE_FINE, LATTICE_COARSE, LATTICE_SCINT):
            m = lattice == lat
            if not m.any():  # a lattice without cells (e.g. no scintillator): an empty map
                maps.append((np.full((0, 0, 0), -1, dtype=np.int32), np.zeros(2, dtype=np.int64)))
                continue
            lo = np.array([a[m].min(), b[m].min()])
            shape = (len(self.layers) + 1, int(a[m].max() - lo[0] + 1), int(b[m].max() - lo[1] + 1))
            table = np.full(shape, -1, dtype=np.int32)
            table[layer[m], a[m] - lo[0], b[m] - lo[1]] = np.flatnonzero(m)
            maps.append((table, lo))
        return maps

    def _lattice_coords(self, x: np.ndarray, y: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        c = self.config
        g = 1.0 + np.deg2rad(c.scint_dphi_deg)
        nphi = int(round(360.0 / c.scint_dphi_deg))
        r = np.maximum(np.hypot(x, y), 1e-6)
        k = np.floor(np.log(r / c.scint_r0) / np.log(g)).astype(np.int64)
        j = np.floor((np.arctan2(y, x) + np.pi) / (2 * np.pi / nphi)).astype(np.int64) % nphi
        return [hex_round(x, y, c.pitch_fine), hex_round(x, y, c.pitch_coarse), (k, j)]

    def cell_ids(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, layer: np.ndarray) -> np.ndarray:
        rows = self.lookup(x, y, z, layer)
        return np.where(rows >= 0, self.cells.cell_id[np.maximum(rows, 0)], -1)

    @cached_property
    def _region_table(self) -> np.ndarray:
        """(L + 1, 2) radii of the fine/coarse and silicon/scintillator borders per layer."""
        out = np.full((len(self.layers) + 1, 2), np.inf)
        for layer in range(1, len(self.layers) + 1):
            R = self._region_radii(layer)
            out[layer] = (R["r_fine"], R["r_scint"])
        return out

    @cached_property
    def _border_tree(self) -> tuple["object", np.ndarray]:
        """KD-tree over the cells within two pitches of a sensor border, for the strip where
        neither lattice has a cell (their centres lie on the other side of the border)."""
        from scipy.spatial import cKDTree

        c = self.cells
        r = np.hypot(c.x, c.y)
        borders = self._region_table[c.layer]
        margin = 2.0 * max(self.config.pitch_coarse, 3.0)
        near = (np.abs(r - borders[:, 0]) < margin) | (np.abs(r - borders[:, 1]) < margin)
        rows = np.flatnonzero(near)
        return cKDTree(np.c_[c.x[rows], c.y[rows], c.layer[rows] * 1.0e4]), rows

    def lookup(self, x: np.ndarray, y: np.ndarray, z: np.ndarray | None, layer: np.ndarray) -> np.ndarray:
        """Row of the cell containing each point (-1 outside every cell).

        The lattice of the point's own sensor region (by radius) is tried first, then the
        others, so every cell's centre maps to that cell. In the thin strip along a sensor
        border where no lattice has a cell, the nearest border cell of the layer (within
        one coarse pitch) is taken: the layer has no gaps inside the acceptance.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        layer = np.asarray(layer, dtype=np.int64)
        n_layers = len(self.layers)
        valid = (layer >= 1) & (layer <= n_layers)
        safe_layer = np.where(valid, layer, 0)
        r = np.hypot(x, y)
        borders = self._region_table[safe_layer]
        region = np.where(r < borders[:, 0], LATTICE_FINE, np.where(r < borders[:, 1], LATTICE_COARSE, LATTICE_SCINT))
        candidates = []
        for (table, lo), (a, b) in zip(self._dense_index, self._lattice_coords(x, y)):
            ia, ib = a - lo[0], b - lo[1]
            ok = valid & (safe_layer < table.shape[0]) & (ia >= 0) & (ib >= 0) & (ia < table.shape[1]) & (ib < table.shape[2])
            rows = np.full(x.shape, -1, dtype=np.int64)
            rows[ok] = table[safe_layer[ok], ia[ok], ib[ok]]
            candidates.append(rows)
        cand = np.stack(candidates)  # (3, N)
        rows = np.take_along_axis(cand, region[None, :], axis=0)[0]
        for lattice in (LATTICE_FINE, LATTICE_COARSE, LATTICE_SCINT):  # fall back to any other lattice
            rows = np.where(rows >= 0, rows, cand[lattice])
        hole = (rows < 0) & valid & (np.abs(r - borders[:, 0]) < 2 * self.config.pitch_coarse) | \
               ((rows < 0) & valid & (np.abs(r - borders[:, 1]) < 2 * self.config.pitch_coarse))
        if hole.any():
            tree, tree_rows = self._border_tree
            dist, idx = tree.query(np.c_[x[hole], y[hole], layer[hole] * 1.0e4],
                                   distance_upper_bound=self.config.pitch_coarse)
            found = np.isfinite(dist)
            fill = np.full(hole.sum(), -1, dtype=np.int64)
            fill[found] = tree_rows[idx[found]]
            rows[hole] = fill
        return rows

    # ------------------------------------------------------------------ tracking
    def surface_distance(self, vertex: np.ndarray, direction: np.ndarray, layer_index: np.ndarray) -> np.ndarray:
        z = self.layers.position[layer_index]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (z - vertex[:, 2]) / direction[:, 2]
        return np.where(direction[:, 2] > 0, s, np.nan)

    def path_factor(self, vertex: np.ndarray, direction: np.ndarray) -> np.ndarray:
        return 1.0 / np.maximum(np.abs(direction[:, 2]), 1e-3)

    def noise_mip(self, rows: np.ndarray) -> np.ndarray:
        return self._noise_by_type[self.cells.type[rows]]
