"""Clustering with a trained network: encode hits, run the model, condense.

:class:`ModelClusterer` is the one entry point that ``caloreco cluster``, ``caloreco
evaluate``, the demo, the benchmarks and the inference server share, so that every
consumer gets identical clusters for identical hits.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from caloreco.clustering.attach import attach_leftovers, check_attach, check_t_signal
from caloreco.clustering.condensation import check_assign, check_r_max, condensation_clustering
from caloreco.data.event import Event
from caloreco.errors import ConfigError, InputFileError
from caloreco.models.encoding import HitEncoding

#: File name pattern of the shipped pretrained models (HGCAL dtau preset) in the package.
PRETRAINED = "{model}_dtau.pt"


def pretrained_path(model: str = "spvcnn") -> Path:
    """Path of the shipped pretrained ``model`` (``"spvcnn"`` or ``"gravnet"``)."""
    path = Path(str(resources.files("caloreco") / "pretrained" / PRETRAINED.format(model=model)))
    if not path.exists():
        raise InputFileError(path, f"no shipped pretrained {model} model in the package")
    return path


def hit_xyz(hits: Mapping[str, np.ndarray]) -> np.ndarray:
    """float32 ``[N, 3]`` detector positions ``(x, y, z)`` [cm] of raw hits: the positions of
    the left-over attachment (:mod:`caloreco.clustering.attach`)."""
    return np.stack([np.asarray(hits[c], np.float32) for c in ("x", "y", "z")], 1).reshape(-1, 3)


def stage_arrays(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Concatenate host arrays (along axis 0) into one tensor bound for ``device``.

    For CUDA the concatenation is written straight into page-locked memory (PyTorch's
    caching host allocator reuses it), so the copy to the GPU runs at full DMA speed and
    asynchronously (``non_blocking``) instead of through a staging copy of pageable memory;
    elsewhere a plain concatenation.
    """
    if device.type != "cuda":
        return torch.from_numpy(np.concatenate(arrays))
    first = np.asarray(arrays[0])
    n = sum(len(a) for a in arrays)
    out = torch.empty((n, *first.shape[1:]), dtype=torch.from_numpy(first[:0]).dtype,
                      pin_memory=True)
    np.concatenate(arrays, out=out.numpy())
    return out


def check_position_scale(scale: float | None) -> float | None:
    """A detector-term scale [cm per clustering-space unit] checked: finite and > 0, or None."""
    if scale is not None and not (scale > 0 and math.isfinite(scale)):
        raise ConfigError(f"position_scale must be a finite number > 0 [cm] (or none), got "
                          f"{scale}")
    return None if scale is None else float(scale)


def with_detector_term(coords: torch.Tensor, positions: torch.Tensor,
                       scale: float) -> torch.Tensor:
    r"""Clustering coordinates extended by the hits' detector positions ``p`` over ``scale``:
    ``[x, p / s]``, so that distances become

    .. math:: d_{ij}^2 = \lVert x_i - x_j \rVert^2 + \lVert p_i - p_j \rVert^2 / s^2

    (a hit 1 cm further from a condensation point in the detector counts as ``1 / s``
    further in the clustering space)."""
    return torch.cat([coords, positions.to(coords.device, coords.dtype) / scale], 1)


def condense_outputs(beta: torch.Tensor, coords: torch.Tensor, batch: torch.Tensor | None, *,
                     t_beta: float, t_d: float, assign: str = "first",
                     r_max: float | None = None, positions: torch.Tensor | None = None,
                     attach_r: float | None = None, attach_passes: int = 1,
                     xyz: torch.Tensor | None = None,
                     position_scale: float | None = None,
                     signal: torch.Tensor | None = None,
                     t_signal: float | None = None) -> torch.Tensor:
    """Cluster ids from a network's outputs: condensation clustering (with the locality cut
    on ``positions`` when ``r_max`` is set, and in the coordinates extended by the detector
    term :func:`with_detector_term` when ``position_scale`` is set), then the left-over
    attachment on ``xyz`` when ``attach_r`` is set, of the hits whose ``signal``
    probability (a signal head's output) is at least ``t_signal`` when that is set. The
    one definition used by :class:`ModelClusterer`, the trainer's validation and the
    Triton post-processing."""
    check_position_scale(position_scale)
    check_t_signal(t_signal)
    if t_signal is not None and signal is None:
        raise ConfigError(f"the signal threshold (t_signal = {t_signal}) needs the network's "
                          f"signal output (a model with a signal head)")
    if (r_max is not None or position_scale is not None) and positions is None:
        raise ConfigError("the locality cut (r_max) and the detector term (position_scale) "
                          "need the hits' projected positions")
    if position_scale is not None:
        coords = with_detector_term(coords, positions, position_scale)
    cid = condensation_clustering(beta, coords, batch, t_beta=t_beta, t_d=t_d, assign=assign,
                                  positions=None if r_max is None else positions.to(beta.device),
                                  r_max=r_max)
    if attach_r is not None:
        if xyz is None:
            raise ConfigError(f"the left-over attachment (attach_r = {attach_r} cm) needs the "
                              f"hits' x, y, z")
        cid = attach_leftovers(cid, xyz.to(beta.device), batch, radius=attach_r,
                               passes=attach_passes,
                               candidates=None if t_signal is None
                               else signal.to(beta.device) >= t_signal)
    return cid


def no_attach_is_none(radius: float | None, passes: int) -> float | None:
    """An attachment radius [cm] checked, with inf (no attachment) as None."""
    if radius is not None and math.isinf(radius) and radius > 0:
        return None
    return check_attach(None if radius is None else float(radius), passes)


def no_cut_is_none(r_max: float | None) -> float | None:
    """A locality cut ``r_max`` [cm] checked, with inf (no cut) as None."""
    if r_max is not None and math.isinf(r_max) and r_max > 0:
        return None
    check_r_max(r_max)
    return None if r_max is None else float(r_max)


@dataclass
class Timings:
    """Seconds spent per stage, summed over calls."""

    prepare: float = 0.0  # encoding, voxelisation and kernel maps
    network: float = 0.0
    clustering: float = 0.0
    events: int = 0
    hits: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"prepare_s": self.prepare, "network_s": self.network,
                "clustering_s": self.clustering, "events": self.events, "hits": self.hits}


@dataclass
class Prediction:
    """Per-hit outputs of one event."""

    cluster_id: np.ndarray  # int64 [N], -1 = noise
    beta: np.ndarray  # float32 [N]
    coords: np.ndarray  # float32 [N, D]
    # "positions" [N, 3] with a locality cut, "xyz" [N, 3] with the left-over attachment
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    # float32 [N] energy-correction factor per hit (models with an energy head), else None
    energy_factor: np.ndarray | None = None
    # float32 [N] signal probability per hit (models with a signal head), else None
    signal: np.ndarray | None = None


class ModelClusterer:
    """A trained clustering network with its encoding and condensation thresholds.

    Args:
        model: network mapping ``(features, points, batch)`` to ``(coords, beta, ...)``.
        encoding: the :class:`HitEncoding` it was trained with.
        t_beta, t_d: condensation thresholds (Kieseler 2020; defaults 0.1, 0.7).
        assign: hit-to-point rule, ``"first"`` or ``"nearest"`` (see
            :func:`~caloreco.clustering.condensation.condensation_clustering`).
        r_max: locality cut [cm] on the hits' projected positions
            (``encoding.projected_positions``); None or inf: none.
        attach_r, attach_passes: left-over attachment (:mod:`caloreco.clustering.attach`):
            unassigned hits join the cluster of the nearest clustered hit within
            ``attach_r`` [cm] in the detector (:func:`hit_xyz`), ``attach_passes`` times;
            None or inf: none.
        position_scale: detector term [cm per clustering-space unit]: condensation runs in
            the coordinates extended by the projected positions over it
            (:func:`with_detector_term`); None or inf: none.
        t_signal: the attachment takes only left-over hits whose signal probability (the
            network's signal head, :mod:`caloreco.losses.signal`) is at least this; None:
            every left-over hit (0 too, for any network: it is stored as None).
        device: where the network runs.
    """

    def __init__(self, model: nn.Module, encoding: HitEncoding, *, t_beta: float = 0.1,
                 t_d: float = 0.7, assign: str = "first", r_max: float | None = None,
                 attach_r: float | None = None, attach_passes: int = 1,
                 position_scale: float | None = None, t_signal: float | None = None,
                 device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device")
        self.model = model.to(self.device).eval()
        self.encoding = encoding
        self.t_beta, self.t_d = t_beta, t_d
        self.assign = check_assign(assign)
        self.r_max = no_cut_is_none(r_max)
        self.attach_r = no_attach_is_none(attach_r, attach_passes)
        self.attach_passes = int(attach_passes)
        self.position_scale = check_position_scale(
            None if position_scale is not None and math.isinf(position_scale)
            and position_scale > 0 else position_scale)  # inf: no detector term
        t_signal = check_t_signal(t_signal)
        self.t_signal = None if t_signal == 0 else t_signal  # 0 gates nothing: as none
        if self.t_signal is not None and not self.has_signal_head:
            raise ConfigError(f"t_signal = {self.t_signal} needs a network with a signal head; "
                              f"{type(model).__name__} has none")
        self.timings = Timings()

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, *, device: str = "cpu",
                        t_beta: float | None = None, t_d: float | None = None,
                        assign: str | None = None, r_max: float | None = None,
                        attach_r: float | None = None, attach_passes: int | None = None,
                        position_scale: float | None = None, t_signal: float | None = None,
                        shipped: str = "spvcnn") -> "ModelClusterer":
        """Load a checkpoint file or run directory (default: the shipped ``shipped`` model);
        thresholds, assignment rule, locality cut, left-over attachment (with its signal
        threshold) and detector term default to the checkpoint's clustering record
        (``r_max=math.inf``, ``attach_r=math.inf``, ``position_scale=math.inf`` switch
        recorded ones off, ``t_signal=0`` lets every left-over hit be attached)."""
        from caloreco.training.checkpoint import load_checkpoint

        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device")
        ckpt = load_checkpoint(pretrained_path(shipped) if path is None else path)
        model, encoding = ckpt.build(device)
        return cls(model, encoding, device=device,
                   t_beta=ckpt.clustering.get("t_beta", 0.1) if t_beta is None else t_beta,
                   t_d=ckpt.clustering.get("t_d", 0.7) if t_d is None else t_d,
                   assign=ckpt.clustering.get("assign", "first") if assign is None else assign,
                   r_max=ckpt.clustering.get("r_max") if r_max is None else r_max,
                   attach_r=ckpt.clustering.get("attach_r") if attach_r is None else attach_r,
                   attach_passes=int(ckpt.clustering.get("attach_passes", 1))
                   if attach_passes is None else attach_passes,
                   position_scale=ckpt.clustering.get("position_scale")
                   if position_scale is None else position_scale,
                   t_signal=ckpt.clustering.get("t_signal") if t_signal is None else t_signal)

    @property
    def has_energy_head(self) -> bool:
        """Whether the network also predicts a per-hit energy-correction factor."""
        from caloreco.models.registry import has_energy_head

        return has_energy_head(self.model)

    @property
    def has_signal_head(self) -> bool:
        """Whether the network also predicts a per-hit signal probability."""
        from caloreco.models.registry import has_signal_head

        return has_signal_head(self.model)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def predict_tensors(self, features: torch.Tensor, points: torch.Tensor,
                        batch: torch.Tensor, positions: torch.Tensor | None = None,
                        xyz: torch.Tensor | None = None, *, return_energy: bool = False
                        ) -> tuple[torch.Tensor, ...]:
        """``(cluster_id [N], beta [N], coords [N, D])`` for encoded hits of B events;
        ``positions`` (``encoding.projected_positions``) are needed when ``r_max`` or
        ``position_scale`` is set, ``xyz`` (:func:`hit_xyz`) when ``attach_r`` is. With
        ``return_energy`` a fourth entry: the energy-correction factor ``[N]`` of a model
        with an energy head, or None. :meth:`predict_outputs` gives every output."""
        out = self.predict_outputs(features, points, batch, positions, xyz)
        result = out["cluster_id"], out["beta"], out["coords"]
        return result + (out.get("energy_factor"),) if return_energy else result

    @torch.no_grad()
    def predict_outputs(self, features: torch.Tensor, points: torch.Tensor,
                        batch: torch.Tensor, positions: torch.Tensor | None = None,
                        xyz: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``{"cluster_id" [N], "beta" [N], "coords" [N, D]}`` plus the network's other
        outputs (``"energy_factor"``, ``"signal"`` [N]; :func:`~caloreco.models.registry.
        output_names`), float32, for encoded hits of B events (inputs as
        :meth:`predict_tensors`)."""
        from caloreco.models.registry import named_outputs

        self._check_inputs(positions, xyz)
        t0 = time.perf_counter()
        # non_blocking: copies from page-locked inputs (stage_arrays) run asynchronously
        features, points, batch = (t.to(self.device, non_blocking=True)
                                   for t in (features, points, batch))
        mgr = self.model.prepare(points, batch) if hasattr(self.model, "prepare") else None
        if mgr is not None and hasattr(self.model, "build_maps"):
            self.model.build_maps(mgr)  # kernel and point maps: counted as preparation
        self._sync()
        t1 = time.perf_counter()
        out = named_outputs(self.model, self.model.run(features, mgr) if mgr is not None
                            else self.model(features, points, batch))
        out = {k: v.float() for k, v in out.items()}
        self._sync()
        t2 = time.perf_counter()
        cid = self.condense(out["beta"], out["coords"], batch, positions, xyz,
                            signal=out.get("signal"))
        self._sync()
        t3 = time.perf_counter()
        self.timings.prepare += t1 - t0
        self.timings.network += t2 - t1
        self.timings.clustering += t3 - t2
        return {"cluster_id": cid, **out}

    def _check_inputs(self, positions: torch.Tensor | None, xyz: torch.Tensor | None) -> None:
        if self.r_max is not None and positions is None:
            raise ConfigError(f"this clusterer has a locality cut (r_max = {self.r_max} cm): "
                              f"it needs the hits' projected positions")
        if self.position_scale is not None and positions is None:
            raise ConfigError(f"this clusterer has a detector term (position_scale = "
                              f"{self.position_scale} cm): it needs the hits' projected "
                              f"positions")
        if self.attach_r is not None and xyz is None:
            raise ConfigError(f"this clusterer attaches left-over hits (attach_r = "
                              f"{self.attach_r} cm): it needs the hits' x, y, z")

    def condense(self, beta: torch.Tensor, coords: torch.Tensor, batch: torch.Tensor | None,
                 positions: torch.Tensor | None = None, xyz: torch.Tensor | None = None, *,
                 t_beta: float | None = None, t_d: float | None = None,
                 signal: torch.Tensor | None = None) -> torch.Tensor:
        """Cluster ids from the network's outputs with this clusterer's thresholds (or
        ``t_beta``, ``t_d`` given here), rule, locality cut and left-over attachment
        (``positions`` and ``xyz`` are ignored when the clusterer has no cut or no
        attachment; ``signal``, the network's signal output, is needed with ``t_signal``
        and an attachment)."""
        self._check_inputs(positions, xyz)
        return condense_outputs(beta, coords, batch,
                                t_beta=self.t_beta if t_beta is None else t_beta,
                                t_d=self.t_d if t_d is None else t_d, assign=self.assign,
                                r_max=self.r_max, positions=positions,
                                attach_r=self.attach_r, attach_passes=self.attach_passes,
                                xyz=xyz, position_scale=self.position_scale,
                                signal=signal,
                                t_signal=self.t_signal if self.attach_r is not None else None)

    def clustering_record(self) -> dict[str, float | str | None]:
        """Thresholds, rule, locality cut, attachment (and its signal threshold) and
        detector term, as a checkpoint's clustering record holds them."""
        return {"t_beta": self.t_beta, "t_d": self.t_d, "assign": self.assign, "r_max": self.r_max,
                "attach_r": self.attach_r, "attach_passes": self.attach_passes,
                "position_scale": self.position_scale, "t_signal": self.t_signal}

    def detector_inputs(self, hits: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """What the clustering needs besides the network outputs, for raw hits: projected
        ``positions`` with a locality cut or a detector term, ``xyz`` with the attachment
        (float32 [N, 3])."""
        out = {}
        if self.r_max is not None or self.position_scale is not None:
            out["positions"] = self.encoding.projected_positions(hits)
        if self.attach_r is not None:
            out["xyz"] = hit_xyz(hits)
        return out

    def cluster_events(self, events: Sequence[Event], *, batch_size: int = 1) -> list[Prediction]:
        """Cluster events, ``batch_size`` events per network call; one :class:`Prediction`
        per event, hits in input order. Events without hits give empty predictions."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        out: list[Prediction] = []
        for start in range(0, len(events), batch_size):
            chunk = events[start:start + batch_size]
            t0 = time.perf_counter()
            feats = [self.encoding.features(e.hits) for e in chunk]
            pts = [self.encoding.points(e.hits) for e in chunk]
            det = [self.detector_inputs(e.hits) for e in chunk]
            counts = [len(f) for f in feats]
            self.timings.prepare += time.perf_counter() - t0
            if sum(counts) == 0:
                head, sig = self.has_energy_head, self.has_signal_head
                out.extend(Prediction(np.zeros(0, np.int64), np.zeros(0, np.float32),
                                      np.zeros((0, 0), np.float32), d,
                                      np.zeros(0, np.float32) if head else None,
                                      np.zeros(0, np.float32) if sig else None) for d in det)
                continue
            # the event index is made on the device (no N-long transfer)
            batch = torch.repeat_interleave(torch.arange(len(chunk), device=self.device),
                                            torch.tensor(counts, device=self.device),
                                            output_size=sum(counts))
            joined = {k: stage_arrays([d[k] for d in det], self.device) for k in det[0]}
            res = {k: v.cpu().numpy() for k, v in self.predict_outputs(
                stage_arrays(feats, self.device), stage_arrays(pts, self.device),
                batch, joined.get("positions"), joined.get("xyz")).items()}
            factor, signal = res.get("energy_factor"), res.get("signal")
            ends = np.cumsum(counts)
            for b, end in enumerate(ends):
                sl = slice(end - counts[b], end)
                out.append(Prediction(res["cluster_id"][sl], res["beta"][sl], res["coords"][sl],
                                      det[b], None if factor is None else factor[sl],
                                      None if signal is None else signal[sl]))
            self.timings.events += len(chunk)
            self.timings.hits += int(sum(counts))
        return out
