"""A clustering model as the inference server serves it: metadata, configuration,
statistics and ``infer`` on decoded tensors, shared by the HTTP and gRPC front ends.

``infer`` validates the request (:func:`~caloreco.serving.protocol.validate_inputs`),
encodes the raw hit columns with the model's :class:`~caloreco.models.encoding.HitEncoding`
in the calling (request) thread, queues the encoded hits on the
:class:`~caloreco.serving.batcher.DynamicBatcher` and returns the output tensors.
Statistics follow Triton's statistics extension (``inference_count`` = events,
``execution_count`` = network calls, ``batch_stats`` per events per call).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator, Mapping

import numpy as np

from caloreco.clustering.model_clustering import ModelClusterer
from caloreco.errors import ConfigError
from caloreco.serving.batcher import DynamicBatcher
from caloreco.serving.protocol import (BETA, CLUSTER_ID, COORDS, ENERGY_FACTOR, FEATURE_COLUMNS, INPUTS, SIGNAL,
                                       MODEL_VERSION, UnknownModelError, hits_columns, output_specs,
                                       validate_inputs)


def model_coord_dim(clusterer: ModelClusterer) -> int:
    """Clustering-space dimension ``D`` of the clusterer's network."""
    dim = getattr(getattr(clusterer.model, "config", None), "coord_dim", None)
    if not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"cannot serve network {type(clusterer.model).__name__}: it has no "
                          f"config.coord_dim (the clustering-space dimension)")
    return dim


class ServedModel:
    """One model behind the protocol.

    Args:
        name: model name in the URLs and requests.
        clusterer: the network, its encoding and condensation thresholds.
        max_hits: hits per request at most (more: an error, nothing queued).
        max_batch_events, max_queue_delay_us: dynamic batching (see :class:`DynamicBatcher`).
    """

    platform = "pytorch"

    def __init__(self, name: str, clusterer: ModelClusterer, *, max_hits: int = 500_000,
                 max_batch_events: int = 16, max_queue_delay_us: int = 1000) -> None:
        if not name or "/" in name:
            raise ConfigError(f"model name must be non-empty without '/', got {name!r}")
        if max_hits < 1:
            raise ConfigError(f"max_hits must be >= 1, got {max_hits}")
        self.name = name
        self.clusterer = clusterer
        self.max_hits = max_hits
        self.coord_dim = model_coord_dim(clusterer)
        self.outputs = output_specs(self.coord_dim, clusterer.has_energy_head,
                                    clusterer.has_signal_head)
        self.output_names = [s.name for s in self.outputs]
        self.batcher = DynamicBatcher(clusterer, self.coord_dim, max_batch_events=max_batch_events,
                                      max_queue_delay_us=max_queue_delay_us)
        self._lock = threading.Lock()
        self._success = [0, 0]  # requests, ns
        self._fail = [0, 0]
        self._queue = [0, 0]
        self._input = [0, 0]  # decoding + validation + encoding
        self._infer = [0, 0]

    # ------------------------------------------------------------------ descriptions
    def check_version(self, version: str) -> None:
        """Raise :class:`UnknownModelError` unless ``version`` is empty or the served one."""
        if version not in ("", MODEL_VERSION):
            raise UnknownModelError(f"model '{self.name}' has no version '{version}' "
                                    f"(available: {MODEL_VERSION})")

    def metadata(self) -> dict[str, Any]:
        """v2 model metadata."""
        return {"name": self.name, "versions": [MODEL_VERSION], "platform": self.platform,
                "inputs": [s.metadata() for s in INPUTS], "outputs": [s.metadata() for s in self.outputs]}

    def config(self) -> dict[str, Any]:
        """Triton model configuration (``max_batch_size`` 0: events are batched through
        ``EVENT_OFFSETS`` and the server's own dynamic batcher)."""
        b = self.batcher
        params = {"feature_columns": ",".join(FEATURE_COLUMNS), "max_hits_per_request": str(self.max_hits),
                  "max_batch_events": str(b.max_batch_events), "device": str(self.clusterer.device),
                  "network": type(self.clusterer.model).__name__, "t_beta": str(self.clusterer.t_beta),
                  "t_d": str(self.clusterer.t_d), "assign": self.clusterer.assign,
                  "r_max": "none" if self.clusterer.r_max is None else str(self.clusterer.r_max),
                  "attach_r": "none" if self.clusterer.attach_r is None else str(self.clusterer.attach_r),
                  "attach_passes": str(self.clusterer.attach_passes),
                  "position_scale": ("none" if self.clusterer.position_scale is None
                                     else str(self.clusterer.position_scale)),
                  "t_signal": ("none" if self.clusterer.t_signal is None
                               else str(self.clusterer.t_signal))}
        return {"name": self.name, "platform": self.platform, "backend": "caloreco", "max_batch_size": 0,
                "input": [s.config() for s in INPUTS], "output": [s.config() for s in self.outputs],
                "dynamic_batching": {"max_queue_delay_microseconds": round(b.max_queue_delay_s * 1e6)},
                "instance_group": [{"count": 1, "kind": "KIND_GPU" if self.clusterer.device.type == "cuda"
                                    else "KIND_CPU"}],
                "parameters": {k: {"string_value": v} for k, v in params.items()}}

    def statistics(self) -> dict[str, Any]:
        """Triton statistics of this model (``model_stats`` entry)."""
        s = self.batcher.stats()

        def dur(pair: list[int]) -> dict[str, int]:
            return {"count": pair[0], "ns": pair[1]}

        with self._lock:
            inference = {"success": dur(self._success), "fail": dur(self._fail), "queue": dur(self._queue),
                         "compute_input": dur(self._input), "compute_infer": dur(self._infer),
                         "compute_output": dur([self._success[0], 0])}
        return {"name": self.name, "version": MODEL_VERSION, "last_inference": s.last_inference_ms,
                "inference_count": s.events, "execution_count": s.executions, "inference_stats": inference,
                "batch_stats": [{"batch_size": k, "compute_input": dur([v[0], 0]),
                                 "compute_infer": dur(v), "compute_output": dur([v[0], 0])}
                                for k, v in sorted(s.batch_sizes.items())]}

    # ------------------------------------------------------------------ inference
    def infer(self, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs ``{CLUSTER_ID, BETA, COORDS}`` (and ``ENERGY_FACTOR`` for a model with an
        energy head, ``SIGNAL`` for one with a signal head) for decoded input tensors.

        Raises:
            InvalidDataError: the inputs break a rule (see :func:`validate_inputs`).
            ServerUnavailableError: the server is shutting down.
        """
        t0 = time.perf_counter()
        try:
            req = validate_inputs(tensors, max_hits=self.max_hits)
            hits = hits_columns(req.features)
            enc = self.clusterer.encoding
            feats = enc.features(hits) if req.n_hits else np.zeros((0, enc.n_features), np.float32)
            points = enc.points(hits) if req.n_hits else np.zeros((0, 3), np.float32)
            detector = self.clusterer.detector_inputs(hits) if req.n_hits else {}
            t1 = time.perf_counter()
            out = self.batcher.infer(feats, points, req.counts, detector)
        except BaseException:
            self._count(self._fail, time.perf_counter() - t0)
            raise
        with self._lock:
            for pair, seconds in ((self._input, t1 - t0), (self._queue, out.queue_ns * 1e-9),
                                  (self._infer, out.compute_ns * 1e-9)):
                pair[0] += 1
                pair[1] += int(seconds * 1e9)
        self._count(self._success, time.perf_counter() - t0)
        result = {CLUSTER_ID: out.cluster_id, BETA: out.beta, COORDS: out.coords}
        if out.energy_factor is not None:
            result[ENERGY_FACTOR] = out.energy_factor
        if out.signal is not None:
            result[SIGNAL] = out.signal
        return result

    def _count(self, pair: list[int], seconds: float) -> None:
        with self._lock:
            pair[0] += 1
            pair[1] += int(seconds * 1e9)


class ModelRepository:
    """The served models by name."""

    def __init__(self, models: list[ServedModel]) -> None:
        self.models = {m.name: m for m in models}
        if len(self.models) != len(models):
            raise ConfigError(f"model names must be unique, got {[m.name for m in models]}")

    def get(self, name: str, version: str = "") -> ServedModel:
        """The model ``name`` (``version`` empty or the served one), else :class:`UnknownModelError`."""
        model = self.models.get(name)
        if model is None:
            raise UnknownModelError(f"unknown model '{name}'; this server serves {sorted(self.models)}")
        model.check_version(version)
        return model

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self.models.values())
