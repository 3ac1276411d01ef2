"""Per-hit clustering targets for HCAL training and studies: three truth definitions.

(a) ``particle``: each hit belongs to the particle that deposited most of its energy.
    Made at simulation time: ``caloreco simulate --truth particle`` (no shower merging,
    :func:`caloreco.simulation.truth.truth_params`).
(c) ``merged`` (default): as (a), but particles whose showers share more than
    ``merge_shared_fraction`` of the smaller deposit are one truth cluster
    (:mod:`caloreco.simulation.truth`).
(b) ``pf``: the clusters of the CMS particle-flow algorithm on the hits
    (:func:`caloreco.clustering.pf.pf_cluster`); each hit's target is the PF cluster that
    holds the largest fraction ``f_ik`` of its energy (the energy-sharing fractions of the
    Gaussian-mixture step), -1 for hits in no cluster. Computed from any event here.

:func:`with_pf_targets` returns a copy of an event whose ``truth_cluster`` are the PF
targets, with a cluster table built from the PF clusters, so the training and evaluation
code can use (b) unchanged. :func:`write_pf_target_dataset` does it for a whole data set
(``caloreco pf-targets --data SRC --out DST``), which ``caloreco train`` then reads as any
other: a network trained on it learns to reproduce PF clustering.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caloreco.data.event import ClusterType, Event
from caloreco.errors import ConfigError
from caloreco.geometry.detector import Detector

if TYPE_CHECKING:
    from caloreco.clustering.pf import PFParams

TARGET_DEFINITIONS = ("particle", "pf", "merged")


def default_pf_params(detector: Detector) -> PFParams:
    """CMS HB Run-3 PF parameters for the barrel HCAL, the HGCAL-like ones otherwise."""
    from caloreco.clustering.pf import PFParams
    from caloreco.geometry.hcal import HCalBarrel

    return PFParams.hb_run3() if isinstance(detector, HCalBarrel) else PFParams.hgcal_like()


def pf_targets(event: Event, detector: Detector, params: PFParams | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-hit PF target ``(cluster id [N] int64, -1: none; its fraction [N] float64)``.

    Shapes: N hits. ``params`` defaults to :func:`default_pf_params`.
    """
    from caloreco.clustering.pf import pf_cluster

    n = event.n_hits
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    res = pf_cluster(event, detector, params=params or default_pf_params(detector))
    frac = np.zeros(n)
    f = res.fractions
    has = res.cluster_id >= 0
    # the fraction of each hit in its own (largest-fraction) cluster
    match = res.cluster_id[f.hit_index] == f.cluster_index
    frac[f.hit_index[match]] = f.fraction[match]
    return np.where(has, res.cluster_id, -1), frac


def with_pf_targets(event: Event, detector: Detector, params: PFParams | None = None) -> Event:
    """A copy of ``event`` whose hit truth is the PF target (definition (b)).

    Cluster table of the copy, one row per PF cluster that is the target of a hit:
    ``energy`` = ``deposited`` = the summed energy of its target hits [GeV]; ``type``,
    ``pdg`` and ``is_pileup`` of the original truth cluster that contributes most of that
    energy (MIX if it contributes less than half); ``px, py, pz`` = energy times the
    direction of the energy-weighted centroid from the origin; ``n_particles`` = the number
    of original truth clusters among its hits (0 for a cluster of noise hits only, whose
    ``pdg`` is then 0 and ``type`` MIX).
    """
    labels, frac = pf_targets(event, detector, params)
    h = event.hits
    ids, inv = np.unique(labels[labels >= 0], return_inverse=True)
    k = len(ids)
    new = np.full(event.n_hits, -1, np.int64)
    new[labels >= 0] = inv
    e = h["energy"].astype(np.float64)
    sel = new >= 0
    # (float64: bincount of an empty selection, an event without PF clusters, is int64)
    energy = np.bincount(new[sel], weights=e[sel], minlength=k).astype(np.float64)
    xyz = np.stack([h["x"], h["y"], h["z"]], axis=1).astype(np.float64)
    centre = np.stack([np.bincount(new[sel], weights=e[sel] * xyz[sel, j], minlength=k) for j in range(3)],
                      axis=1).astype(np.float64)
    centre /= np.maximum(energy, 1e-12)[:, None]
    unit = centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-12)
    old = h["truth_cluster"].astype(np.int64)
    ctype = np.full(k, int(ClusterType.MIX), np.int8)
    pdg = np.zeros(k, np.int32)
    pileup = np.zeros(k, bool)
    n_part = np.zeros(k, np.int16)
    for c in range(k):
        members = sel & (new == c)
        olds = old[members]
        valid = olds >= 0
        if not valid.any():
            continue
        o_ids, o_inv = np.unique(olds[valid], return_inverse=True)
        share = np.bincount(o_inv, weights=e[members][valid])
        top = int(o_ids[np.argmax(share)])
        n_part[c] = len(o_ids)
        pdg[c] = event.clusters["pdg"][top]
        pileup[c] = bool(event.clusters["is_pileup"][top])
        if share.max() >= 0.5 * energy[c]:
            ctype[c] = event.clusters["type"][top]
    clusters = {"energy": energy, "deposited": energy, "type": ctype, "pdg": pdg,
                "px": energy * unit[:, 0], "py": energy * unit[:, 1], "pz": energy * unit[:, 2],
                "n_particles": n_part, "is_pileup": pileup}
    hits = dict(h)
    hits["truth_cluster"] = new
    if "truth_fraction" in hits:
        hits["truth_fraction"] = frac
    for key, value in (("truth_cluster2", -1), ("truth_fraction2", 0.0)):
        if key in hits:
            hits[key] = np.full(event.n_hits, value, dtype=np.asarray(hits[key]).dtype)
    particles = dict(event.particles)
    particles["cluster"] = np.full(len(particles["pdg"]), -1, np.int32)  # no particle -> PF link
    return Event.from_columns(hits, clusters, particles, event_id=event.event_id, detector=event.detector)


def hit_targets(event: Event, definition: str, detector: Detector | None = None) -> np.ndarray:
    """Per-hit target ids of ``definition``: ``pf`` computes them; ``merged`` and ``particle``
    are the event's ``truth_cluster`` (which of the two it is was fixed at simulation time)."""
    if definition not in TARGET_DEFINITIONS:
        raise ConfigError(f"unknown target definition '{definition}'; choose one of {list(TARGET_DEFINITIONS)}")
    if definition == "pf":
        if detector is None:
            raise ConfigError("target definition 'pf' needs the detector of the event")
        return pf_targets(event, detector)[0]
    return event.hits["truth_cluster"].astype(np.int64)


def write_pf_target_dataset(src: str | Path, dst: str | Path, params: PFParams | None = None) -> dict[str, Any]:
    """Copy the data set ``src`` to ``dst`` with PF targets (definition (b)) as truth.

    Every shard of the manifest is read, each event replaced by :func:`with_pf_targets`
    (detector and options from the manifest; ``params`` default :func:`default_pf_params`)
    and written under the same name; generator-truth files are copied unchanged, so the
    physics validation can read ``dst`` too. The manifest is ``src``'s plus ``targets`` =
    ``"pf"``, ``pf_params`` and ``source``. Returns it.

    Raises:
        InputFileError: ``src`` is not a data set directory (no ``manifest.json``).
        ConfigError: ``dst`` is ``src``.
    """
    from caloreco.data.parquet import read_events, write_events
    from caloreco.errors import InputFileError
    from caloreco.geometry.registry import make_detector
    from caloreco.utils.atomic import atomic_path, atomic_write_text

    src, dst = Path(src), Path(dst)
    if not (src / "manifest.json").exists():
        raise InputFileError(src, "not a data set directory (no manifest.json)")
    if dst.resolve() == src.resolve():
        raise ConfigError(f"--out must differ from --data ({src}): the source shards are read while writing")
    manifest = json.loads((src / "manifest.json").read_text())
    detector = make_detector(manifest["detector"], **manifest.get("detector_options", {}))
    params = params or default_pf_params(detector)
    dst.mkdir(parents=True, exist_ok=True)
    n_clusters = 0
    for shard in manifest["shards"]:
        events = [with_pf_targets(ev, detector, params) for ev in read_events(src / shard["file"])]
        n_clusters += sum(ev.n_clusters for ev in events)
        write_events(events, dst / shard["file"])
        if "generator_file" in shard:
            (dst / shard["generator_file"]).parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dst / shard["generator_file"]) as tmp:
                shutil.copyfile(src / shard["generator_file"], tmp)
    manifest.update(targets="pf", pf_params=asdict(params), source=str(src), n_target_clusters=n_clusters)
    atomic_write_text(dst / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
