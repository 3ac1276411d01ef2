"""Dynamic batching: concurrent requests queued and merged into one network call.

One worker thread owns the model (one instance per device). It takes the oldest queued
request, waits until ``max_queue_delay_us`` after that request arrived or until the queued
requests hold ``max_batch_events`` events, then runs every request that fits into the batch
in one :meth:`ModelClusterer.predict_tensors` call and splits the outputs back per request.
A request with more events than ``max_batch_events`` runs as a batch of its own. While a
batch runs, new requests queue, so a loaded server batches even with a zero delay.

Merging is exact: the networks normalise per event, voxels carry the event index and
condensation runs per event, so a hit's outputs do not depend on the other events of the
batch (``tests/serving/test_server.py`` checks cluster ids against in-process clustering).
If a merged batch fails, its requests are retried one by one, so only a bad request fails.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
import torch

from caloreco.clustering.model_clustering import ModelClusterer, stage_arrays
from caloreco.errors import ConfigError
from caloreco.serving.protocol import ServerUnavailableError


@dataclass
class BatchItem:
    """One queued request: encoded hits of its events.

    Shapes: ``features [N, F]`` float32, ``points [N, 3]`` float32, ``counts [B]`` int64;
    ``detector``: what the clusterer's condensation needs besides the network outputs
    (``ModelClusterer.detector_inputs``: ``positions`` [N, 3] with a locality cut, ``xyz``
    [N, 3] with the left-over attachment; empty for neither).
    """

    features: np.ndarray
    points: np.ndarray
    counts: np.ndarray
    detector: dict[str, np.ndarray] = field(default_factory=dict)
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.perf_counter)

    @property
    def n_events(self) -> int:
        return int(self.counts.shape[0])


@dataclass
class BatchOutput:
    """The outputs of one request (hits in request order) and where its time went.

    Shapes: ``cluster_id [N]`` int64, ``beta [N]`` float32, ``coords [N, D]`` float32,
    ``energy_factor [N]`` float32 (None without an energy head), ``signal [N]`` float32
    (None without a signal head).
    """

    cluster_id: np.ndarray
    beta: np.ndarray
    coords: np.ndarray
    queue_ns: int
    compute_ns: int
    batch_events: int
    energy_factor: np.ndarray | None = None
    signal: np.ndarray | None = None


@dataclass
class BatcherStats:
    """Counters since start: ``batch_sizes`` maps events per network call to
    ``[calls, nanoseconds]``."""

    requests: int = 0
    executions: int = 0
    events: int = 0
    hits: int = 0
    max_requests_per_batch: int = 0
    batch_sizes: dict[int, list[int]] = field(default_factory=dict)
    last_inference_ms: int = 0

    def copy(self) -> "BatcherStats":
        return BatcherStats(self.requests, self.executions, self.events, self.hits,
                            self.max_requests_per_batch,
                            {k: list(v) for k, v in self.batch_sizes.items()}, self.last_inference_ms)


class DynamicBatcher:
    """Queue of requests in front of one :class:`ModelClusterer`.

    Args:
        clusterer: the model; only the worker thread calls it.
        coord_dim: clustering-space dimension ``D`` (shape of empty outputs).
        max_batch_events: events merged into one network call at most (default 16).
        max_queue_delay_us: how long the oldest request waits for others [microseconds]
            (default 1000; 0 = run at once, batching only what queued meanwhile).
    """

    def __init__(self, clusterer: ModelClusterer, coord_dim: int, *, max_batch_events: int = 16,
                 max_queue_delay_us: int = 1000) -> None:
        if max_batch_events < 1:
            raise ConfigError(f"max_batch_events must be >= 1, got {max_batch_events}")
        if max_queue_delay_us < 0:
            raise ConfigError(f"max_queue_delay_us must be >= 0, got {max_queue_delay_us}")
        self.clusterer = clusterer
        self.coord_dim = coord_dim
        self.max_batch_events = max_batch_events
        self.max_queue_delay_s = max_queue_delay_us * 1e-6
        self._queue: deque[BatchItem] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._draining = False
        self._stats = BatcherStats()
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "DynamicBatcher":
        """Start the worker thread."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._run, name="caloreco-batcher", daemon=True)
            self._worker.start()
        return self

    def drain(self) -> None:
        """Stop waiting for more requests: from now on a batch runs as soon as the worker is
        free. New requests are still accepted (requests in flight at shutdown)."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def stop(self, timeout: float | None = None) -> None:
        """Refuse new requests, run every queued one, then end the worker thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)

    # ------------------------------------------------------------------ requests
    def submit(self, item: BatchItem) -> Future:
        """Queue ``item``; its future resolves to a :class:`BatchOutput`."""
        with self._cond:
            if self._stopping or self._worker is None:
                raise ServerUnavailableError("the server is shutting down and accepts no new requests")
            self._queue.append(item)
            self._cond.notify_all()
        return item.future

    def infer(self, features: np.ndarray, points: np.ndarray, counts: np.ndarray,
              detector: dict[str, np.ndarray] | None = None) -> BatchOutput:
        """Queue one request and wait for its outputs."""
        return self.submit(BatchItem(features, points, counts, detector or {})).result()

    def pending(self) -> int:
        """Requests queued and not yet taken into a batch."""
        with self._cond:
            return len(self._queue)

    def stats(self) -> BatcherStats:
        """A copy of the counters."""
        with self._cond:
            return self._stats.copy()

    # ------------------------------------------------------------------ worker
    def _take(self) -> list[BatchItem] | None:
        with self._cond:
            while not self._queue and not self._stopping:
                self._cond.wait()
            if not self._queue:
                return None
            deadline = self._queue[0].enqueued + self.max_queue_delay_s
            while not (self._stopping or self._draining):
                if sum(i.n_events for i in self._queue) >= self.max_batch_events:
                    break
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = [self._queue.popleft()]
            events = batch[0].n_events
            while self._queue and events + self._queue[0].n_events <= self.max_batch_events:
                events += self._queue[0].n_events
                batch.append(self._queue.popleft())
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self._execute(batch)
            except Exception as exc:  # noqa: BLE001 - a failed batch is retried request by request
                if len(batch) == 1:
                    batch[0].future.set_exception(exc)
                    continue
                for item in batch:
                    try:
                        self._execute([item])
                    except Exception as single:  # noqa: BLE001 - reported to its request
                        item.future.set_exception(single)

    def _execute(self, batch: list[BatchItem]) -> None:
        start = time.perf_counter()
        counts = np.concatenate([i.counts for i in batch])
        n = int(counts.sum())
        if n:
            dev = self.clusterer.device
            nonempty = torch.from_numpy(counts[counts > 0]).to(dev)  # consecutive event ids
            event = torch.repeat_interleave(torch.arange(len(nonempty), device=dev), nonempty,
                                            output_size=n)
            det = {k: stage_arrays([i.detector[k] for i in batch], dev) for k in batch[0].detector}
            res = {k: v.cpu().numpy() for k, v in self.clusterer.predict_outputs(
                stage_arrays([i.features for i in batch], dev),
                stage_arrays([i.points for i in batch], dev), event,
                det.get("positions"), det.get("xyz")).items()}
            cid, beta, coords = res["cluster_id"], res["beta"], res["coords"]
            factor, signal = res.get("energy_factor"), res.get("signal")
        else:
            cid, beta = np.zeros(0, np.int64), np.zeros(0, np.float32)
            coords = np.zeros((0, self.coord_dim), np.float32)
            factor = np.zeros(0, np.float32) if self.clusterer.has_energy_head else None
            signal = np.zeros(0, np.float32) if self.clusterer.has_signal_head else None
        compute_ns = int((time.perf_counter() - start) * 1e9)
        with self._cond:
            s = self._stats
            s.requests += len(batch)
            s.executions += 1
            s.events += len(counts)
            s.hits += n
            s.max_requests_per_batch = max(s.max_requests_per_batch, len(batch))
            size = s.batch_sizes.setdefault(len(counts), [0, 0])
            size[0] += 1
            size[1] += compute_ns
            s.last_inference_ms = int(time.time() * 1000)
        lo = 0
        for item in batch:
            hi = lo + int(item.counts.sum())
            item.future.set_result(BatchOutput(
                cid[lo:hi], beta[lo:hi], coords[lo:hi], int((start - item.enqueued) * 1e9),
                compute_ns, len(counts), None if factor is None else factor[lo:hi],
                None if signal is None else signal[lo:hi]))
            lo = hi
