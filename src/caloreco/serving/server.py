"""``caloreco serve``: an inference server speaking the KServe v2 inference protocol (the
protocol of NVIDIA Triton, which CMS SONIC clients use) over HTTP/REST and gRPC.

Layers: :mod:`~caloreco.serving.protocol` (tensors, decoding, validation, errors) ->
:mod:`~caloreco.serving.batcher` (dynamic batching in front of one model instance per
device) -> :mod:`~caloreco.serving.served_model` (metadata, config, statistics, ``infer``)
-> the front ends :mod:`~caloreco.serving.http_server` and
:mod:`~caloreco.serving.grpc_server` -> :class:`InferenceServer` (starts both, shuts down
gracefully). User documentation: ``docs/serving.md``.

Why a focused server rather than the KServe Python SDK (``kserve==0.21.0``, evaluated in a
throw-away venv): its install pulls 68 packages / 450 MB (fastapi, uvicorn, kubernetes,
pandas, cryptography, ...; 42 s), and its v2 data plane lacks what tritonclient and SONIC
use: no ``/v2/models/{name}/config`` REST route and no ``ModelConfig`` RPC in its gRPC
service (``get_model_config`` fails), no statistics extension. Its REST server does
handle binary tensor data. Here the gRPC service is ``grpcio`` with the message and service
classes of Triton's own ``grpc_service.proto`` as ``tritonclient[grpc]`` ships them (the
official client's definitions, so the wire format cannot drift), and HTTP is the standard
library's threaded ``http.server``: one new dependency, ``tritonclient[grpc]``.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Sequence

from caloreco.errors import ConfigError
from caloreco.serving.grpc_server import GRPCFrontEnd
from caloreco.serving.http_server import HTTPFrontEnd
from caloreco.serving.served_model import ModelRepository, ServedModel

#: Default model name of the shipped SPVCNN.
DEFAULT_MODEL_NAME = "caloreco_spvcnn"


class InferenceServer:
    """HTTP and gRPC front ends over the same models.

    Args:
        models: the served models (each with its own batcher and model instance).
        host: interface to bind (default 127.0.0.1, loopback only).
        http_port, grpc_port: ports (0 = a free port; None = that front end off). The bound
            ports are :attr:`http_port` / :attr:`grpc_port` after :meth:`start`.
        max_body_bytes: largest HTTP body and gRPC message (default 128 MiB).
        grpc_workers: gRPC serving threads (default 64).
    """

    def __init__(self, models: ServedModel | Sequence[ServedModel], *, host: str = "127.0.0.1",
                 http_port: int | None = 8000, grpc_port: int | None = 8001,
                 max_body_bytes: int = 128 << 20, grpc_workers: int = 64) -> None:
        if http_port is None and grpc_port is None:
            raise ConfigError("at least one of http_port and grpc_port must be given")
        for name, port in (("http_port", http_port), ("grpc_port", grpc_port)):
            if port is not None and not 0 <= port <= 65535:
                raise ConfigError(f"{name} must be in 0..65535 (0 = a free port), got {port}")
        if max_body_bytes < 1:
            raise ConfigError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
        self.repo = ModelRepository([models] if isinstance(models, ServedModel) else list(models))
        self.ready = threading.Event()
        self.http = None if http_port is None else HTTPFrontEnd(
            self.repo, self.ready, host, http_port, max_body_bytes=max_body_bytes)
        self.grpc = None if grpc_port is None else GRPCFrontEnd(
            self.repo, self.ready, host, grpc_port, max_message_bytes=max_body_bytes, workers=grpc_workers)
        self.host = host
        self._stopped = threading.Event()

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, *, name: str = DEFAULT_MODEL_NAME,
                        device: str = "cpu", shipped: str = "spvcnn", max_hits: int = 500_000,
                        max_batch_events: int = 16, max_queue_delay_us: int = 1000,
                        host: str = "127.0.0.1", http_port: int | None = 8000, grpc_port: int | None = 8001,
                        max_body_bytes: int = 128 << 20) -> "InferenceServer":
        """A server for one checkpoint (default: the shipped ``shipped`` model)."""
        import torch

        from caloreco.clustering.model_clustering import ModelClusterer

        if torch.device(device).type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"--device {device} asked for, but torch sees no CUDA device")
        clusterer = ModelClusterer.from_checkpoint(path, device=device, shipped=shipped)
        model = ServedModel(name, clusterer, max_hits=max_hits, max_batch_events=max_batch_events,
                            max_queue_delay_us=max_queue_delay_us)
        return cls(model, host=host, http_port=http_port, grpc_port=grpc_port, max_body_bytes=max_body_bytes)

    @property
    def http_port(self) -> int | None:
        return None if self.http is None else self.http.port

    @property
    def grpc_port(self) -> int | None:
        return None if self.grpc is None else self.grpc.port

    # ------------------------------------------------------------------ life cycle
    def start(self) -> "InferenceServer":
        """Start the batchers and bind both front ends; on failure nothing keeps running."""
        for m in self.repo:
            m.batcher.start()
        try:
            if self.http is not None:
                self.http.start()
            if self.grpc is not None:
                self.grpc.start()
        except BaseException:
            self.stop(0.0)
            raise
        self.ready.set()
        return self

    def stop(self, grace_s: float = 30.0) -> None:
        """Graceful shutdown: refuse new requests and connections, let running requests
        finish (``grace_s`` seconds at most for gRPC and for HTTP), run what is queued, end."""
        if self._stopped.is_set():
            return
        self.ready.clear()
        if self.http is not None:
            self.http.stop_accepting()
        grpc_done = self.grpc.stop(grace_s) if self.grpc is not None else None
        for m in self.repo:  # nothing new arrives: queued requests need not wait for company
            m.batcher.drain()
        if self.http is not None:
            self.http.wait_idle(grace_s)
        if grpc_done is not None:
            grpc_done.wait(grace_s + 1.0)
        for m in self.repo:
            m.batcher.stop()
        if self.http is not None:
            self.http.close_connections()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server has stopped; False on timeout."""
        return self._stopped.wait(timeout)

    def serve_until_signal(self, signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
                           grace_s: float = 30.0) -> int:
        """Serve until one of ``signals`` arrives (main thread only), then :meth:`stop`.
        Returns the number of the signal received."""
        got: list[int] = []
        wake = threading.Event()

        def handler(signum: int, frame: FrameType | None) -> None:
            got.append(signum)
            wake.set()

        previous = {s: signal.signal(s, handler) for s in signals}
        try:
            while not wake.wait(0.5):  # a timed wait lets the handler run promptly
                pass
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
        self.stop(grace_s)
        return got[0]

    def __enter__(self) -> "InferenceServer":
        return self.start() if not self.ready.is_set() else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
