"""Clustering methods behind one interface, so that they can be compared on the same events.

A :class:`Method` has a ``name`` and ``cluster(events)``, returning one int64 array of
cluster ids per event (one id per hit, in the event's hit order, -1 for noise). The
implementations wrap the clustering entry points of :mod:`caloreco.clustering`:

- :class:`CondensationMethod`  a trained network with object-condensation inference
  (:class:`~caloreco.clustering.model_clustering.ModelClusterer`); it keeps the network
  outputs of its last call, so that :meth:`CondensationMethod.rescan` re-clusters with other
  thresholds without running the network again;
- :class:`ClueMethod`          CLUE3D-like reconstruction
  (:func:`~caloreco.clustering.clue3d.clue_event`);
- :class:`PFMethod`            CMS particle-flow clustering
  (:func:`~caloreco.clustering.pf.pf_cluster`);
- :class:`TruthMethod`         the truth labels themselves, a sanity check of the metrics
  (every metric at its best value).

:func:`make_methods` builds them from names, as the command line does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from caloreco.clustering.clue3d import ClueParams
from caloreco.data.event import Event
from caloreco.errors import ConfigError, InvalidDataError

if TYPE_CHECKING:
    from caloreco.clustering.model_clustering import ModelClusterer
    from caloreco.clustering.pf import PFParams

#: Names understood by :func:`make_methods`.
METHOD_NAMES = ("spvcnn", "gravnet", "clue", "pf", "truth")
#: Names of network methods and whether they have a shipped model (``models[name] = None``).
_NETWORKS = ("spvcnn", "gravnet")  # networks; both have a shipped model


@runtime_checkable
class Method(Protocol):
    """A clustering method evaluated by :func:`caloreco.evaluation.report.evaluate`.

    Attributes:
        name: label in reports and file names (letters, digits, ``-``, ``_`` and ``.``).

    ``cluster(events)`` returns one int64 array per event: cluster id per hit, in the hit
    order of the event, -1 for noise. Implementations may add ``details() -> dict`` (settings
    and timings written to the report).
    """

    name: str

    def cluster(self, events: Sequence[Event]) -> list[np.ndarray]: ...


class CondensationMethod:
    """A clustering network with object-condensation inference.

    Args:
        name: method label (e.g. ``"spvcnn"``).
        clusterer: the network, its hit encoding and thresholds ``t_beta``, ``t_d``.
        batch_size: events per network call (default 1, as online reconstruction).

    After :meth:`cluster`, ``last_beta`` and ``last_coords`` hold per event the network's
    ``beta`` [N] and clustering coordinates [N, D]; :meth:`rescan` re-clusters them. Each
    :meth:`cluster` call resets ``clusterer.timings``, so :meth:`details` gives the seconds
    per stage (prepare, network, clustering) of the last call.
    """

    def __init__(self, name: str, clusterer: ModelClusterer, *, batch_size: int = 1) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.name = name
        self.clusterer = clusterer
        self.batch_size = batch_size
        self.last_beta: list[np.ndarray] = []
        self.last_coords: list[np.ndarray] = []
        self.last_extra: list[dict[str, np.ndarray]] = []

    def cluster(self, events: Sequence[Event]) -> list[np.ndarray]:
        from caloreco.clustering.model_clustering import Timings

        self.clusterer.timings = Timings()  # details() reports the stages of this call
        preds = self.clusterer.cluster_events(list(events), batch_size=self.batch_size)
        self.last_beta = [p.beta for p in preds]
        self.last_coords = [p.coords for p in preds]
        # the hits' projected positions and x, y, z (and the signal head's output), for a
        # rescan with the clusterer's locality cut and left-over attachment
        self.last_extra = [p.extra if p.signal is None else {**p.extra, "signal": p.signal}
                           for p in preds]
        return [p.cluster_id.astype(np.int64, copy=False) for p in preds]

    def rescan(self, t_beta: float, t_d: float) -> list[np.ndarray]:
        """Cluster the network outputs of the last :meth:`cluster` call with thresholds
        ``t_beta`` (in (0, 1)) and ``t_d`` (> 0), the clusterer's rule, locality cut and
        left-over attachment; one
        id array per event, as :meth:`cluster`.

        Raises:
            ConfigError: no :meth:`cluster` call yet, or thresholds out of range.
        """
        import torch

        if not self.last_beta:
            raise ConfigError(f"method '{self.name}': rescan needs the network outputs of a "
                              f"cluster() call first")
        counts = [len(b) for b in self.last_beta]
        kept = [i for i, n in enumerate(counts) if n > 0]
        out = [np.full(n, -1, np.int64) for n in counts]
        if not kept:
            return out
        beta = torch.from_numpy(np.concatenate([self.last_beta[i] for i in kept]))
        coords = torch.from_numpy(np.concatenate([self.last_coords[i] for i in kept]))
        batch = torch.repeat_interleave(torch.arange(len(kept)),
                                        torch.tensor([counts[i] for i in kept]))
        extra = {k: torch.from_numpy(np.concatenate([self.last_extra[i][k] for i in kept]))
                 for k in self.last_extra[kept[0]]}
        cid = self.clusterer.condense(beta, coords, batch, extra.get("positions"),
                                      extra.get("xyz"), t_beta=t_beta, t_d=t_d,
                                      signal=extra.get("signal")).numpy()
        start = 0
        for i in kept:
            out[i] = cid[start:start + counts[i]]
            start += counts[i]
        return out

    def details(self) -> dict[str, Any]:
        c = self.clusterer
        return {"kind": "condensation", "model": type(c.model).__name__,
                "device": str(c.device), "t_beta": c.t_beta, "t_d": c.t_d, "assign": c.assign,
                "r_max": c.r_max, "attach_r": c.attach_r, "attach_passes": c.attach_passes,
                "position_scale": c.position_scale, "t_signal": c.t_signal,
                "batch_size": self.batch_size,
                "stage_timings": c.timings.as_dict()}


class ClueMethod:
    """CLUE3D-like clustering, event by event.

    Args:
        params: :class:`~caloreco.clustering.clue3d.ClueParams` (CMSSW defaults).
        name: method label (default ``"clue"``).
    """

    def __init__(self, params: ClueParams = ClueParams(), *, name: str = "clue") -> None:
        self.name = name
        self.params = params

    def cluster(self, events: Sequence[Event]) -> list[np.ndarray]:
        from caloreco.clustering.clue3d import clue_event

        return [clue_event(e, params=self.params).astype(np.int64, copy=False) for e in events]

    def details(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"kind": "clue3d", "params": asdict(self.params)}


class PFMethod:
    """CMS particle-flow clustering, event by event, hard-assigned (largest fraction).

    Args:
        detector_name: detector of the hits' cell ids, ``"hgcal"`` (default) or
            ``"hcal-barrel"``; the full detector is built, which holds the cells of any sector.
        params: :class:`~caloreco.clustering.pf.PFParams`; default
            :meth:`~caloreco.clustering.pf.PFParams.hgcal_like` for ``"hgcal"``,
            :meth:`~caloreco.clustering.pf.PFParams.hb_run3` otherwise.
        detector_options: config overrides of the detector (default none).
        name: method label (default ``"pf"``).
    """

    def __init__(self, detector_name: str = "hgcal", params: PFParams | None = None, *,
                 detector_options: Mapping[str, Any] | None = None, name: str = "pf") -> None:
        from caloreco.clustering.pf import PFParams
        from caloreco.geometry.registry import make_detector

        self.name = name
        self.detector_name = detector_name
        self.detector = make_detector(detector_name, **dict(detector_options or {}))
        if params is None:
            params = PFParams.hgcal_like() if detector_name == "hgcal" else PFParams.hb_run3()
        self.params = params

    def cluster(self, events: Sequence[Event]) -> list[np.ndarray]:
        from caloreco.clustering.pf import pf_cluster

        return [pf_cluster(e, self.detector, params=self.params).cluster_id for e in events]

    def details(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"kind": "pf", "detector": self.detector_name, "params": asdict(self.params)}


class TruthMethod:
    """The truth labels (``hits["truth_cluster"]``): the upper bound of every metric."""

    def __init__(self, *, name: str = "truth") -> None:
        self.name = name

    def cluster(self, events: Sequence[Event]) -> list[np.ndarray]:
        return [e.hits["truth_cluster"].astype(np.int64) for e in events]

    def details(self) -> dict[str, Any]:
        return {"kind": "truth"}


def make_methods(names: Sequence[str], *, models: Mapping[str, str | None] | None = None,
                 device: str = "cpu", batch_size: int = 1,
                 pf_detector: str = "hgcal") -> list[Method]:
    """Build methods by name, in the given order.

    Args:
        names: each one of :data:`METHOD_NAMES`, no repeats.
        models: checkpoint file or run directory per network name (``"spvcnn"``,
            ``"gravnet"``); ``None`` or a missing entry means the shipped pretrained model.
        device: where networks run (default ``"cpu"``).
        batch_size: events per network call (default 1).
        pf_detector: detector of the ``"pf"`` method (default ``"hgcal"``).

    Raises:
        ConfigError: an unknown or repeated name.
        InputFileError: a checkpoint that cannot be read (or no shipped model).
    """
    models = dict(models or {})
    if isinstance(names, str) or not names:
        raise ConfigError(f"names must be a non-empty list of method names from "
                          f"{list(METHOD_NAMES)}, got {names!r}")
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown:
        raise ConfigError(f"unknown method name(s) {unknown}; valid names are "
                          f"{list(METHOD_NAMES)}")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ConfigError(f"method name(s) {repeated} given more than once in {list(names)}")
    stray = sorted(set(models) - set(_NETWORKS))
    if stray:
        raise ConfigError(f"models has checkpoints for {stray}, which are not networks; its "
                          f"keys must be among {list(_NETWORKS)}")
    out: list[Method] = []
    for name in names:
        if name in _NETWORKS:
            from caloreco.clustering.model_clustering import ModelClusterer

            clusterer = ModelClusterer.from_checkpoint(models.get(name), device=device,
                                                       shipped=name)
            out.append(CondensationMethod(name, clusterer, batch_size=batch_size))
        elif name == "clue":
            out.append(ClueMethod(ClueParams.tuned_dtau()))
        elif name == "pf":
            out.append(PFMethod(pf_detector))
        else:
            out.append(TruthMethod())
    return out


def check_predictions(method: Method, events: Sequence[Event],
                      preds: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The predictions of ``method`` as int64 arrays, checked: one per event, one id per hit.

    Raises:
        InvalidDataError: a wrong count of arrays or a wrong length (naming the event).
    """
    if len(preds) != len(events):
        raise InvalidDataError(f"method '{method.name}' returned {len(preds)} label arrays "
                               f"for {len(events)} events")
    out = []
    for event, pred in zip(events, preds):
        arr = np.asarray(pred)
        if arr.shape != (event.n_hits,) or arr.dtype.kind not in "iu":
            raise InvalidDataError(f"method '{method.name}' must return one integer label per "
                                   f"hit ({event.n_hits}), got shape {arr.shape} of "
                                   f"{arr.dtype}", event=event.event_id)
        out.append(arr.astype(np.int64, copy=False))
    return out
