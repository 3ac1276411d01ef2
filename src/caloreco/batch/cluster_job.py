"""``caloreco cluster`` per shard: one predictions file per input shard.

:class:`ClusterJob` clusters the events of one shard with
:class:`~caloreco.clustering.model_clustering.ModelClusterer` and writes
``OUT/<shard name>`` (:func:`~caloreco.data.predictions.write_predictions`, atomic). The
serial command and every Dask worker run this same code, so their files are identical.
:func:`cluster_summary` reduces the shard results to ``clusters.json``.
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from pathlib import Path
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from caloreco.batch.shards import BatchRun, cached, check_sha256, file_sha256

if TYPE_CHECKING:
    from caloreco.clustering.model_clustering import ModelClusterer


def checkpoint_file(model: str | Path | None, shipped: str = "spvcnn") -> Path:
    """The checkpoint file that :func:`~caloreco.training.checkpoint.load_checkpoint` reads
    for ``model`` (a file, or the ``best.pt``/``last.pt``/``model.pt`` of a run directory;
    None: the shipped ``shipped`` model). Missing files are reported by the loader."""
    from caloreco.clustering.model_clustering import pretrained_path

    if model is None:
        return pretrained_path(shipped)
    path = Path(model)
    if path.is_dir():
        for name in ("best.pt", "last.pt", "model.pt"):
            if (path / name).exists():
                return path / name
    return path


@dataclass(frozen=True)
class ClusterJob:
    """Cluster the events of a shard (see the module docstring).

    Build with :meth:`create`, which loads (and so checks) the model here first.

    Attributes:
        out: output directory.
        checkpoint: checkpoint file, or None for the shipped model (each worker then uses
            its own installed copy, checked against ``model_sha256``).
        model_sha256: hash of the checkpoint file (part of the identity).
        device, batch_size: where the network runs, events per network call.
        t_beta, t_d: the condensation thresholds in use (the model's unless overridden).
        assign: the hit-to-point rule in use (the model's unless overridden).
        r_max: the locality cut in use [cm] (the model's unless overridden), None: none.
        attach_r, attach_passes: the left-over attachment in use (the model's unless
            overridden), None: none.
        position_scale: the detector term in use [cm] (the model's unless overridden),
            None: none.
        t_signal: the signal threshold of the attachment in use (the model's unless
            overridden), None: none.
    """

    out: Path
    checkpoint: str | None
    model_sha256: str
    device: str
    batch_size: int
    t_beta: float
    t_d: float
    assign: str = "first"
    r_max: float | None = None
    attach_r: float | None = None
    attach_passes: int = 1
    position_scale: float | None = None
    t_signal: float | None = None
    name: str = "cluster"

    @classmethod
    def create(cls, out: str | Path, model: str | Path | None = None, *, device: str = "cpu",
               batch_size: int = 1, t_beta: float | None = None,
               t_d: float | None = None, assign: str | None = None,
               r_max: float | None = None, attach_r: float | None = None,
               attach_passes: int | None = None,
               position_scale: float | None = None,
               t_signal: float | None = None) -> "ClusterJob":
        """Resolve and hash the checkpoint, load it into this process's cache (which checks
        it and gives the thresholds in effect) and describe the job. ``r_max=math.inf``
        (``attach_r=math.inf``, ``position_scale=math.inf``) switches the model's locality cut
        (attachment, detector term) off; ``t_signal=0`` lets every left-over hit be attached.

        Raises:
            InputFileError: a missing or unreadable checkpoint.
            ConfigError: bad thresholds, batch size or device.
        """
        from caloreco.clustering.model_clustering import ModelClusterer

        path = checkpoint_file(model)
        clusterer = ModelClusterer.from_checkpoint(path, device=device, t_beta=t_beta, t_d=t_d,
                                                   assign=assign, r_max=r_max, attach_r=attach_r,
                                                   attach_passes=attach_passes,
                                                   position_scale=position_scale,
                                                   t_signal=t_signal)
        job = cls(Path(out), None if model is None else str(path), file_sha256(path), device,
                  batch_size, clusterer.t_beta, clusterer.t_d, clusterer.assign, clusterer.r_max,
                  clusterer.attach_r, clusterer.attach_passes, clusterer.position_scale,
                  clusterer.t_signal)
        with cached(job._key(), lambda: clusterer):  # serial runs reuse it
            pass
        return job

    def _key(self) -> tuple[Any, ...]:
        return ("cluster", self.model_sha256, self.device, self.t_beta, self.t_d, self.assign,
                self.r_max, self.attach_r, self.attach_passes, self.position_scale, self.t_signal)

    def _load(self) -> ModelClusterer:
        from caloreco.clustering.model_clustering import ModelClusterer

        path = checkpoint_file(self.checkpoint)
        check_sha256(path, self.model_sha256, "the checkpoint")
        return ModelClusterer.from_checkpoint(path, device=self.device, t_beta=self.t_beta,
                                              t_d=self.t_d, assign=self.assign,
                                              r_max=math.inf if self.r_max is None else self.r_max,
                                              attach_r=(math.inf if self.attach_r is None
                                                        else self.attach_r),
                                              attach_passes=self.attach_passes,
                                              position_scale=(math.inf
                                                              if self.position_scale is None
                                                              else self.position_scale),
                                              t_signal=0.0 if self.t_signal is None
                                              else self.t_signal)

    def _clusterer(self) -> AbstractContextManager[ModelClusterer]:
        return cached(self._key(), self._load)

    def identity(self, shard: Path) -> dict[str, Any]:
        return {"model_sha256": self.model_sha256, "device": self.device,
                "batch_size": self.batch_size, "t_beta": self.t_beta, "t_d": self.t_d,
                "assign": self.assign, "r_max": self.r_max, "attach_r": self.attach_r,
                "attach_passes": self.attach_passes, "position_scale": self.position_scale,
                "t_signal": self.t_signal}

    def outputs(self, shard: Path) -> list[str]:
        return [shard.name]

    def process(self, shard: Path) -> dict[str, Any]:
        from caloreco.clustering.model_clustering import Timings
        from caloreco.data.parquet import read_events
        from caloreco.data.predictions import write_predictions

        events = read_events(shard)
        with self._clusterer() as clusterer:
            clusterer.timings = Timings()  # this shard's stages only
            preds = clusterer.cluster_events(events, batch_size=self.batch_size)
            timings = clusterer.timings.as_dict()
        factors = [p.energy_factor for p in preds]
        signals = [p.signal for p in preds]
        write_predictions(self.out / shard.name, events, [p.cluster_id for p in preds],
                          [p.beta for p in preds],
                          factors if preds and all(f is not None for f in factors) else None,
                          signals if preds and all(s is not None for s in signals) else None)
        return {"input": str(shard), "file": shard.name, "n_events": len(events),
                "n_hits": int(sum(e.n_hits for e in events)), "timings": timings}


def cluster_summary(job: ClusterJob, run: BatchRun, seconds: float,
                    model_label: str) -> dict[str, Any]:
    """The ``clusters.json`` dictionary: model, thresholds, totals, shards written, stage
    timings summed over shards; with Dask also ``batch`` (runner, shard counts, failures)."""
    ok = [r for r in run.results if r.status != "failed"]
    timings: dict[str, float] = {}
    for r in ok:
        for k, v in r.summary["timings"].items():
            timings[k] = timings.get(k, 0) + v
    summary: dict[str, Any] = {
        "model": model_label, "t_beta": job.t_beta, "t_d": job.t_d, "assign": job.assign,
        "r_max": job.r_max, "attach_r": job.attach_r, "attach_passes": job.attach_passes,
        "position_scale": job.position_scale, "t_signal": job.t_signal,
        "n_events": sum(r.summary["n_events"] for r in ok),
        "n_hits": sum(r.summary["n_hits"] for r in ok),
        "seconds": seconds,
        "shards": [{k: r.summary[k] for k in ("input", "file", "n_events")} for r in ok],
        "timings": timings,
    }
    if run.runner["runner"] != "serial":
        summary["batch"] = {**run.runner, "done": run.count("done"),
                            "skipped": run.count("skipped"),
                            "failed": [{"input": r.shard, "error": r.error} for r in run.failed]}
    return summary
