"""Reader for the CMS HGCAL reco-ntuple written by the CMSSW ``HGCalAnalysis`` analyzer.

The ntuple holds one TTree entry per event (default tree ``ana/hgc``) with one
``std::vector`` per quantity. :func:`read_cmssw_ntuple` maps each entry onto an
:class:`~caloreco.data.event.Event`:

hits (one per ``rechit_*`` element, stored order kept)
    ``x, y, z`` [cm] from ``rechit_x/y/z`` (the ntuple stores cm), ``energy`` [GeV] from
    ``rechit_energy``, ``time`` [ns] from ``rechit_time`` (-1 where the rechit has no
    timing, which is most of them), ``layer`` from ``rechit_layer`` as stored: 1-based, with
    the CE-E layers first and the CE-H layers offset by the number of CE-E layers
    (``HGCalAnalysis`` calls ``getLayerWithOffset``; 1-28 CE-E and 29-52 CE-H in the
    geometry of the reference sample), ``cell_id`` from ``rechit_detid`` (the 32-bit CMSSW
    DetId). ``cell_type`` (:class:`~caloreco.geometry.cells.CellType`) from
    ``rechit_thickness`` when that branch exists: 120 um -> 0, 200 um -> 1, 300 um -> 2,
    the scintillator sentinel (float max, ~3.4e38) -> 3.
truth on hits
    ``simcluster_hits_indices`` (rechit index per sim hit, -1 where the sim hit made no
    rechit) and ``simcluster_fractions`` give each (SimCluster, rechit) pair a fraction of
    the rechit energy. ``truth_cluster`` is the SimCluster with the largest
    ``fraction * rechit_energy`` (-1 for hits no SimCluster reaches: noise),
    ``truth_fraction`` its fraction; ``truth_cluster2`` / ``truth_fraction2`` the runner-up
    (-1 / 0 if none).
clusters (one per SimCluster, stored order)
    ``energy`` [GeV] ``simcluster_energy``; ``px, py, pz`` [GeV] from
    ``simcluster_pt/eta/phi``; ``deposited`` [GeV] = sum over its rechits of
    ``fraction * rechit_energy``; ``pdg`` from the matched generator particle (below, 0 if
    none); ``type`` EM for |pdg| 11/22, MIP for 13, HAD otherwise (unmatched clusters
    included); ``n_particles`` 1; ``is_pileup`` false.
particles (one per ``genpart_*`` element)
    ``pdg`` ``genpart_pid``, ``energy`` ``genpart_energy``, ``px, py, pz`` from
    ``genpart_pt/eta/phi``, ``vx, vy, vz`` [cm] the event vertex ``vtx_x/y/z`` (the ntuple
    stores no per-particle origin; ``genpart_dv*`` is where the particle reached HGCAL),
    ``cluster`` the SimCluster with the same kinematics (``simcluster_pt/eta/phi`` equal
    to ``genpart_pt/eta/phi`` within 1e-3 relative / in eta-phi distance), else -1.

``event_id`` is the entry number in the tree (the ``event`` branch of particle-gun samples
repeats). Events without rechits are returned with zero hits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from caloreco.data._rootio import READ_ERRORS, get_tree, nearest
from caloreco.data.event import ClusterType, Event
from caloreco.errors import InputFileError, InvalidDataError
from caloreco.geometry.cells import CellType

#: ``Event.detector`` of events from this reader.
DETECTOR = "cmssw-hgcal"

_HIT_BRANCHES = ("rechit_x", "rechit_y", "rechit_z", "rechit_energy", "rechit_time",
                 "rechit_layer", "rechit_detid")
_TRUTH_BRANCHES = ("simcluster_hits_indices", "simcluster_fractions", "simcluster_energy",
                   "simcluster_pt", "simcluster_eta", "simcluster_phi")
_PARTICLE_BRANCHES = ("genpart_pid", "genpart_energy", "genpart_pt", "genpart_eta",
                      "genpart_phi", "vtx_x", "vtx_y", "vtx_z")
_OPTIONAL_BRANCHES = ("rechit_thickness",)

#: Sensor thickness [um] of each silicon cell type; anything above 1e30 is scintillator
#: (HGCalAnalysis writes std::numeric_limits<float>::max() there).
_SILICON_THICKNESS_UM = {120.0: CellType.SI_FINE, 200.0: CellType.SI_COARSE_THIN,
                         300.0: CellType.SI_COARSE_THICK}
_SCINTILLATOR_THICKNESS_MIN = 1e30

#: Largest eta-phi distance and relative pt difference for a SimCluster to be the same
#: particle as a generator particle (both copy the SimTrack kinematics; float rounding only).
_MATCH_TOLERANCE = 1e-3


def read_cmssw_ntuple(path: str | Path, *, tree: str = "ana/hgc",
                      entry_start: int | None = None,
                      entry_stop: int | None = None) -> list[Event]:
    """Read HGCalAnalysis ntuple entries as events (mapping in the module docstring).

    Args:
        path: the ROOT file.
        tree: path of the TTree inside the file.
        entry_start, entry_stop: entry range, Python slice semantics (default: all).

    Returns:
        One :class:`Event` per entry, ``event_id`` = entry number, ``detector``
        ``"cmssw-hgcal"``.

    Raises:
        InputFileError: the file is missing, not ROOT, truncated, or lacks the tree or a
            branch.
        InvalidDataError: a non-finite hit value, or a SimCluster rechit index beyond the
            rechits of its event.
    """
    path = Path(path)
    arrays, first = _read_arrays(path, tree, entry_start, entry_stop)
    return [_event(arrays[i], first + i, str(path)) for i in range(len(arrays))]


def _read_arrays(path: Path, tree: str, entry_start: int | None,
                 entry_stop: int | None) -> tuple[ak.Array, int]:
    """All needed branches of the entry range, and the number of its first entry."""
    if not path.is_file():
        raise InputFileError(path, "file not found" if not path.exists() else "not a file")
    try:
        with uproot.open(path) as file:
            ttree = _get_tree(path, file, tree)
            available = set(ttree.keys())
            required = _HIT_BRANCHES + _TRUTH_BRANCHES + _PARTICLE_BRANCHES
            missing = [b for b in required if b not in available]
            if missing:
                raise InputFileError(
                    path, f"tree '{tree}' lacks {len(missing)} HGCalAnalysis branch(es) "
                    f"{missing[:8]}{' ...' if len(missing) > 8 else ''}; nearest to "
                    f"'{missing[0]}': {nearest(missing[0], available)}")
            names = list(required) + [b for b in _OPTIONAL_BRANCHES if b in available]
            entries = range(ttree.num_entries)[slice(entry_start, entry_stop)]
            arrays = ttree.arrays(names, entry_start=entries.start, entry_stop=entries.stop,
                                  library="ak")
            return arrays, entries.start
    except InputFileError:
        raise
    except READ_ERRORS as exc:
        raise InputFileError(path, f"cannot read the file as a ROOT ntuple (truncated or "
                                   f"not ROOT?): {type(exc).__name__}: "
                                   f"{str(exc).splitlines()[0]}") from exc


def _get_tree(path: Path, file: Any, name: str) -> Any:
    """The TTree ``name`` of an open file, or InputFileError listing the file's trees."""
    return get_tree(path, file, name, expected="an HGCalAnalysis ntuple")


def _event(rec: ak.Record, event_id: int, source: str) -> Event:
    """One ntuple entry as an Event."""
    energy = np.asarray(rec["rechit_energy"], dtype=np.float32)
    n_hits = len(energy)
    hits: dict[str, np.ndarray] = {
        "x": np.asarray(rec["rechit_x"]), "y": np.asarray(rec["rechit_y"]),
        "z": np.asarray(rec["rechit_z"]), "energy": energy,
        "time": np.asarray(rec["rechit_time"]), "layer": np.asarray(rec["rechit_layer"]),
        "cell_id": np.asarray(rec["rechit_detid"]).astype(np.int64),
    }
    if "rechit_thickness" in rec.fields:
        hits["cell_type"] = _cell_type(np.asarray(rec["rechit_thickness"]), source, event_id)

    idx = rec["simcluster_hits_indices"]
    n_clusters = len(idx)
    cl = np.repeat(np.arange(n_clusters), np.asarray(ak.num(idx, axis=1)))
    flat_idx = np.asarray(ak.flatten(idx), dtype=np.int64)
    frac = np.asarray(ak.flatten(rec["simcluster_fractions"]), dtype=np.float64)
    if len(frac) != len(flat_idx):
        raise InvalidDataError(
            f"simcluster_fractions has {len(frac)} entries but simcluster_hits_indices "
            f"{len(flat_idx)}; they must pair up", source=source, event=event_id)
    keep = flat_idx >= 0
    cl, flat_idx, frac = cl[keep], flat_idx[keep], frac[keep]
    if len(flat_idx) and flat_idx.max() >= n_hits:
        raise InvalidDataError(
            f"simcluster_hits_indices reaches rechit {int(flat_idx.max())} but the event has "
            f"{n_hits} rechits", source=source, event=event_id)
    hits.update(_hit_truth(cl, flat_idx, frac, n_hits, n_clusters))

    deposited = np.bincount(cl, weights=frac * energy[flat_idx], minlength=n_clusters)
    c_pt, c_eta, c_phi = (np.asarray(rec[f"simcluster_{k}"], dtype=np.float64)
                          for k in ("pt", "eta", "phi"))
    p_pt, p_eta, p_phi = (np.asarray(rec[f"genpart_{k}"], dtype=np.float64)
                          for k in ("pt", "eta", "phi"))
    p_pdg = np.asarray(rec["genpart_pid"], dtype=np.int32)
    particle_cluster = _match(c_pt, c_eta, c_phi, p_pt, p_eta, p_phi)
    cluster_pdg = np.zeros(n_clusters, dtype=np.int32)
    matched = particle_cluster >= 0
    cluster_pdg[particle_cluster[matched]] = p_pdg[matched]

    clusters = {
        "energy": np.asarray(rec["simcluster_energy"]), "deposited": deposited,
        "type": _cluster_type(cluster_pdg), "pdg": cluster_pdg,
        **_momentum(c_pt, c_eta, c_phi),
        "n_particles": np.ones(n_clusters), "is_pileup": np.zeros(n_clusters, dtype=bool),
    }
    n_part = len(p_pdg)
    particles = {
        "pdg": p_pdg, "energy": np.asarray(rec["genpart_energy"]),
        **_momentum(p_pt, p_eta, p_phi),
        "vx": np.full(n_part, rec["vtx_x"]), "vy": np.full(n_part, rec["vtx_y"]),
        "vz": np.full(n_part, rec["vtx_z"]), "cluster": particle_cluster,
        "is_pileup": np.zeros(n_part, dtype=bool),
    }
    return Event.from_columns(hits, clusters, particles, event_id=event_id,
                              detector=DETECTOR, source=source)


def _hit_truth(cl: np.ndarray, idx: np.ndarray, frac: np.ndarray, n_hits: int,
               n_clusters: int) -> dict[str, np.ndarray]:
    """Leading and second SimCluster of each hit from (cluster, hit, fraction) triples.

    Repeated (cluster, hit) pairs are summed first. For one hit every contribution is
    ``fraction * rechit_energy``, so ranking by fraction ranks by energy; ties go to the
    lower cluster index.
    """
    key, inverse = np.unique(idx * max(n_clusters, 1) + cl, return_inverse=True)
    frac = np.bincount(inverse, weights=frac, minlength=len(key))
    hit, cl = key // max(n_clusters, 1), key % max(n_clusters, 1)
    order = np.lexsort((-frac, hit))
    hit, cl, frac = hit[order], cl[order], frac[order]
    rank = np.arange(len(hit)) - np.searchsorted(hit, hit)  # 0 for the leading pair
    out = {"truth_cluster": np.full(n_hits, -1), "truth_fraction": np.zeros(n_hits),
           "truth_cluster2": np.full(n_hits, -1), "truth_fraction2": np.zeros(n_hits)}
    for r, suffix in ((0, ""), (1, "2")):
        sel = rank == r
        out["truth_cluster" + suffix][hit[sel]] = cl[sel]
        out["truth_fraction" + suffix][hit[sel]] = frac[sel]
    return out


def _match(c_pt: np.ndarray, c_eta: np.ndarray, c_phi: np.ndarray, p_pt: np.ndarray,
           p_eta: np.ndarray, p_phi: np.ndarray) -> np.ndarray:
    """For each particle, the SimCluster with the same kinematics, -1 if none.

    Pairs are taken closest first (in eta-phi distance) so that no cluster is used twice.
    """
    out = np.full(len(p_pt), -1, dtype=np.int32)
    if len(c_pt) == 0 or len(p_pt) == 0:
        return out
    dphi = np.angle(np.exp(1j * (p_phi[:, None] - c_phi[None, :])))
    dist = np.hypot(p_eta[:, None] - c_eta[None, :], dphi)
    rel_pt = np.abs(p_pt[:, None] - c_pt[None, :]) / np.maximum(p_pt[:, None], 1e-12)
    ok = (dist < _MATCH_TOLERANCE) & (rel_pt < _MATCH_TOLERANCE)
    used = np.zeros(len(c_pt), dtype=bool)
    for flat in np.argsort(np.where(ok, dist, np.inf), axis=None)[:int(ok.sum())]:
        p, c = divmod(int(flat), len(c_pt))
        if out[p] < 0 and not used[c]:
            out[p], used[c] = c, True
    return out


def _momentum(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray) -> dict[str, np.ndarray]:
    """Cartesian momentum [GeV] from pt [GeV], pseudorapidity and azimuth."""
    return {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta)}


def _cluster_type(pdg: np.ndarray) -> np.ndarray:
    """ClusterType code of a leading particle: EM for e/gamma, MIP for muons, else HAD."""
    apdg = np.abs(pdg)
    return np.select([(apdg == 11) | (apdg == 22), apdg == 13],
                     [ClusterType.EM, ClusterType.MIP], default=ClusterType.HAD)


def _cell_type(thickness: np.ndarray, source: str, event_id: int) -> np.ndarray:
    """CellType code from the sensor thickness [um] (see ``_SILICON_THICKNESS_UM``)."""
    out = np.full(len(thickness), -1, dtype=np.int8)
    out[thickness > _SCINTILLATOR_THICKNESS_MIN] = CellType.SCINTILLATOR
    for um, code in _SILICON_THICKNESS_UM.items():
        out[np.abs(thickness - um) < 1.0] = code
    bad = out < 0
    if bad.any():
        raise InvalidDataError(
            f"rechit_thickness {float(thickness[bad][0])} um at hit "
            f"{int(np.flatnonzero(bad)[0])} is none of {list(_SILICON_THICKNESS_UM)} um "
            f"(silicon) or the scintillator sentinel", source=source, event=event_id)
    return out
