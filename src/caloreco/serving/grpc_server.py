"""gRPC front end: ``inference.GRPCInferenceService`` of the KServe v2 / Triton protocol.

Implements ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelConfig,
ModelStatistics and ModelInfer (inputs as ``raw_input_contents`` or typed ``contents``;
outputs always as ``raw_output_contents``, as Triton does) on ``grpcio``'s thread-pool
server, with the service and message classes generated from Triton's ``grpc_service.proto``
that ``tritonclient[grpc]`` ships (``tritonclient.grpc.service_pb2``): the same definitions
the official client speaks. Other RPCs (repository, shared memory, trace, logging) answer
``UNIMPLEMENTED``.

Errors: :class:`~caloreco.errors.InvalidDataError` -> ``INVALID_ARGUMENT``,
:class:`UnknownModelError` -> ``NOT_FOUND``, :class:`ServerUnavailableError` ->
``UNAVAILABLE``, anything else -> ``INTERNAL``; the message is the error's text.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

import numpy as np

from caloreco.errors import CalorecoError, ConfigError, InvalidDataError, MissingDependencyError
from caloreco.serving.protocol import (MODEL_VERSION, ServerUnavailableError, UnknownModelError,
                                       decode_tensor, requested_outputs, server_metadata, wire_name)
from caloreco.serving.served_model import ModelRepository

log = logging.getLogger(__name__)

#: ``InferTensorContents`` field holding each datatype (FP16 travels only as raw bytes).
_CONTENTS_FIELD = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
                   "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
                   "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
                   "FP32": "fp32_contents", "FP64": "fp64_contents"}

T = TypeVar("T")


def _modules() -> tuple[Any, Any, Any, Any]:
    """``grpc``, ``service_pb2``, ``service_pb2_grpc``, ``model_config_pb2`` (imported on use)."""
    try:
        import grpc
        from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc
    except ImportError:
        raise MissingDependencyError("tritonclient[grpc]", "the gRPC inference server") from None
    return grpc, service_pb2, service_pb2_grpc, model_config_pb2


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GRPCFrontEnd:
    """The gRPC inference service on ``host:port`` (0 = a free port, see :attr:`port`).

    Args:
        repo: the served models.
        ready: set while the server accepts inference requests.
        max_message_bytes: largest request message (``grpc.max_receive_message_length``).
        workers: threads serving RPCs (concurrent requests beyond it wait in gRPC's queue).
    """

    def __init__(self, repo: ModelRepository, ready: threading.Event, host: str = "127.0.0.1",
                 port: int = 8001, *, max_message_bytes: int = 128 << 20, workers: int = 64) -> None:
        self.repo, self.ready = repo, ready
        self.host, self.requested_port = host, port
        self.max_message_bytes, self.workers = max_message_bytes, workers
        self.port: int | None = None
        self._server: Any = None

    def start(self) -> "GRPCFrontEnd":
        """Bind and start serving."""
        grpc, _, service_pb2_grpc, _ = _modules()
        options = [("grpc.max_receive_message_length", self.max_message_bytes),
                   ("grpc.max_send_message_length", -1), ("grpc.so_reuseport", 0)]
        server = grpc.server(ThreadPoolExecutor(self.workers, thread_name_prefix="caloreco-grpc"),
                             options=options)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(_make_servicer(self), server)
        address = _address(self.host, self.requested_port)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise ConfigError(f"cannot bind the gRPC server to {address}: {exc}") from None
        if not port:
            raise ConfigError(f"cannot bind the gRPC server to {address} (port in use?)")
        server.start()
        self.port, self._server = port, server
        return self

    def stop(self, grace_s: float) -> threading.Event:
        """Refuse new RPCs at once; running ones get ``grace_s`` seconds. The returned event
        is set once every RPC has ended."""
        if self._server is None:
            done = threading.Event()
            done.set()
            return done
        return self._server.stop(grace_s)


def _make_servicer(front: GRPCFrontEnd) -> Any:
    """A ``GRPCInferenceServiceServicer`` over the front end's models."""
    grpc, pb, service_pb2_grpc, model_config_pb2 = _modules()
    from google.protobuf import json_format

    def call(context: Any, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except UnknownModelError as exc:
            context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except ServerUnavailableError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except CalorecoError as exc:  # InvalidDataError, RequestTooLargeError, ConfigError
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception as exc:  # noqa: BLE001 - the client gets INTERNAL, the log the trace
            log.exception("gRPC request failed")
            context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        raise AssertionError("unreachable: context.abort raises")

    repo = front.repo

    class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc, name-defined]
        def ServerLive(self, request: Any, context: Any) -> Any:
            return pb.ServerLiveResponse(live=True)

        def ServerReady(self, request: Any, context: Any) -> Any:
            return pb.ServerReadyResponse(ready=front.ready.is_set())

        def ModelReady(self, request: Any, context: Any) -> Any:
            def run() -> Any:
                repo.get(request.name, request.version)
                return pb.ModelReadyResponse(ready=front.ready.is_set())
            return call(context, run)

        def ServerMetadata(self, request: Any, context: Any) -> Any:
            return json_format.ParseDict(server_metadata(), pb.ServerMetadataResponse())

        def ModelMetadata(self, request: Any, context: Any) -> Any:
            return call(context, lambda: json_format.ParseDict(
                repo.get(request.name, request.version).metadata(), pb.ModelMetadataResponse()))

        def ModelConfig(self, request: Any, context: Any) -> Any:
            return call(context, lambda: pb.ModelConfigResponse(config=json_format.ParseDict(
                repo.get(request.name, request.version).config(), model_config_pb2.ModelConfig())))

        def ModelStatistics(self, request: Any, context: Any) -> Any:
            def run() -> Any:
                models = [repo.get(request.name, request.version)] if request.name else list(repo)
                return json_format.ParseDict({"model_stats": [m.statistics() for m in models]},
                                             pb.ModelStatisticsResponse())
            return call(context, run)

        def ModelInfer(self, request: Any, context: Any) -> Any:
            return call(context, lambda: _infer(repo, request, pb))

    return Servicer()


def _infer(repo: ModelRepository, request: Any, pb: Any) -> Any:
    model = repo.get(request.model_name, request.model_version)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidDataError(f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} "
                               f"inputs; give all inputs as raw contents or none")
    tensors: dict[str, np.ndarray] = {}
    for i, inp in enumerate(request.inputs):
        if inp.name in tensors:
            raise InvalidDataError(f"input '{inp.name}' given twice")
        if any(k.startswith("shared_memory") for k in inp.parameters):
            raise InvalidDataError(f"input '{inp.name}': shared memory is not supported by this server")
        if raw:
            tensors[inp.name] = decode_tensor(inp.name, inp.datatype, list(inp.shape), raw=raw[i])
        else:
            field = _CONTENTS_FIELD.get(inp.datatype)
            data = list(getattr(inp.contents, field)) if field else None
            tensors[inp.name] = decode_tensor(inp.name, inp.datatype, list(inp.shape), data=data)
    for out in request.outputs:
        if any(k.startswith("shared_memory") or k == "classification" for k in out.parameters):
            raise InvalidDataError(f"output '{out.name}': shared memory and classification are not supported")
    names = requested_outputs([o.name for o in request.outputs], model.output_names)
    result = model.infer(tensors)
    response = pb.ModelInferResponse(model_name=model.name, model_version=MODEL_VERSION, id=request.id)
    for name in names:
        arr = result[name]
        response.outputs.add(name=name, datatype=wire_name(arr.dtype), shape=list(arr.shape))
        response.raw_output_contents.append(np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes())
    return response
