"""The KServe v2 (Triton) inference protocol as ``caloreco serve`` speaks it: the model's
named tensors, their decoding from the wire, validation and the protocol errors.

Tensors (N hits, B events, D = clustering-space dimension of the model):

=================  =====  ==========  ====================================================
name               type   shape       meaning
=================  =====  ==========  ====================================================
``FEATURES``       FP32   [N, 7]      raw hit columns :data:`FEATURE_COLUMNS`, in order:
                                      energy [GeV], x, y, z [cm], layer, time [ns],
                                      cell_type (:class:`caloreco.geometry.CellType` code,
                                      -1 = unknown)
``EVENT_OFFSETS``  INT64  [B + 1]     optional: hits of event ``b`` are rows
                                      ``offsets[b]:offsets[b+1]``; ``offsets[0] = 0``,
                                      ``offsets[B] = N``, non-decreasing (empty events
                                      allowed). Absent: all hits are one event.
``CLUSTER_ID``     INT64  [N]         cluster per hit, ``0 .. K_b - 1`` within each event,
                                      -1 = noise
``BETA``           FP32   [N]         condensation score per hit
``COORDS``         FP32   [N, D]      clustering-space coordinates per hit
=================  =====  ==========  ====================================================

The server encodes the raw columns itself with the model's
:class:`~caloreco.models.encoding.HitEncoding`, exactly as in-process clustering does
(:func:`hits_columns` gives the same column dict an :class:`~caloreco.data.event.Event`
holds), so a request returns what ``ModelClusterer.cluster_events`` returns on the same hits.

Errors: a request breaking a rule raises :class:`~caloreco.errors.InvalidDataError`
(HTTP 400, gRPC ``INVALID_ARGUMENT``); :class:`RequestTooLargeError` is its subclass for
size limits (HTTP 413 for the body, 400 for too many hits; gRPC ``INVALID_ARGUMENT``);
:class:`UnknownModelError` an unknown model or version (HTTP 404, gRPC ``NOT_FOUND``);
:class:`ServerUnavailableError` a request arriving while the server shuts down (HTTP 503,
gRPC ``UNAVAILABLE``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from caloreco.errors import CalorecoError, ConfigError, InvalidDataError

#: Columns of the ``FEATURES`` input, in order (names as in :data:`caloreco.data.event.HIT_FIELDS`).
FEATURE_COLUMNS: tuple[str, ...] = ("energy", "x", "y", "z", "layer", "time", "cell_type")
#: Columns that must hold integer values (they are integer columns of an Event).
INTEGER_COLUMNS: tuple[str, ...] = ("layer", "cell_type")

FEATURES = "FEATURES"
EVENT_OFFSETS = "EVENT_OFFSETS"
CLUSTER_ID = "CLUSTER_ID"
BETA = "BETA"
COORDS = "COORDS"
#: per-hit energy-correction factor (models with an energy head only)
ENERGY_FACTOR = "ENERGY_FACTOR"
#: per-hit signal probability (models with a signal head only)
SIGNAL = "SIGNAL"
#: outputs of the exported network (a network with an energy head adds ``ENERGY_OUTPUT``,
#: then one with a signal head ``SIGNAL_OUTPUT``: :func:`caloreco.models.registry.output_names`)
NETWORK_OUTPUTS: tuple[str, ...] = ("coords", "beta")
ENERGY_OUTPUT = "energy_factor"
SIGNAL_OUTPUT = "signal"

#: The one version of every served model.
MODEL_VERSION = "1"

#: Wire datatypes (KServe v2 names) the server can decode, with their little-endian dtypes.
WIRE_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
_WIRE_NAMES: dict[np.dtype, str] = {v.newbyteorder("="): k for k, v in WIRE_DTYPES.items()}


#: Server name and the protocol extensions served (v2 server metadata).
SERVER_NAME = "caloreco"
EXTENSIONS: tuple[str, ...] = ("binary_tensor_data", "model_configuration", "statistics")


def server_metadata() -> dict[str, Any]:
    """v2 server metadata: name, version and extensions."""
    from caloreco import __version__

    return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}


class UnknownModelError(ConfigError):
    """The request names a model (or version) the server does not serve."""


class RequestTooLargeError(InvalidDataError):
    """The request exceeds a size limit (hits per request, body bytes)."""


class ServerUnavailableError(CalorecoError):
    """The server is shutting down and accepts no new requests."""


def wire_name(dtype: np.dtype) -> str:
    """KServe v2 datatype name of a numpy dtype (``float32`` -> ``FP32``)."""
    try:
        return _WIRE_NAMES[np.dtype(dtype).newbyteorder("=")]
    except KeyError:
        raise ConfigError(f"dtype {dtype} has no KServe v2 datatype") from None


@dataclass(frozen=True)
class TensorSpec:
    """Name, wire datatype and shape (-1 = any size) of a model input or output."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False

    def metadata(self) -> dict[str, Any]:
        """The tensor's entry of the v2 model metadata."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def config(self) -> dict[str, Any]:
        """The tensor's entry of the Triton model configuration."""
        out: dict[str, Any] = {"name": self.name, "data_type": "TYPE_" + self.datatype, "dims": list(self.shape)}
        if self.optional:
            out["optional"] = True
        return out


INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(FEATURES, "FP32", (-1, len(FEATURE_COLUMNS))),
    TensorSpec(EVENT_OFFSETS, "INT64", (-1,), optional=True),
)


def output_specs(coord_dim: int, energy_head: bool = False,
                 signal_head: bool = False) -> tuple[TensorSpec, ...]:
    """The output tensors of a model with ``coord_dim``-dimensional clustering space (and,
    with ``energy_head``, the per-hit energy-correction factor; with ``signal_head``, the
    per-hit signal probability)."""
    specs = (TensorSpec(CLUSTER_ID, "INT64", (-1,)), TensorSpec(BETA, "FP32", (-1,)),
             TensorSpec(COORDS, "FP32", (-1, coord_dim)))
    return (specs + ((TensorSpec(ENERGY_FACTOR, "FP32", (-1,)),) if energy_head else ())
            + ((TensorSpec(SIGNAL, "FP32", (-1,)),) if signal_head else ()))


def _shape(name: str, shape: Any) -> tuple[int, ...]:
    if (not isinstance(shape, (list, tuple)) or
            not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in shape)):
        raise InvalidDataError(f"input '{name}': shape must be a list of non-negative integers, got {shape!r}")
    return tuple(int(s) for s in shape)


def decode_tensor(name: str, datatype: str, shape: Any, *, raw: bytes | memoryview | None = None,
                  data: Any = None) -> np.ndarray:
    """One input tensor from its wire form: ``raw`` little-endian bytes (binary extension,
    gRPC ``raw_input_contents``) or ``data`` (JSON list, flat or nested, row-major)."""
    if datatype not in WIRE_DTYPES:
        raise InvalidDataError(f"input '{name}': datatype {datatype!r} is not supported "
                               f"(supported: {', '.join(WIRE_DTYPES)})")
    dims = _shape(name, shape)
    dtype = WIRE_DTYPES[datatype]
    size = int(np.prod(dims, dtype=np.int64))
    if raw is not None:
        if len(raw) != size * dtype.itemsize:
            raise InvalidDataError(f"input '{name}': {len(raw)} bytes of data for shape {list(dims)} "
                                   f"of {datatype}; expected {size * dtype.itemsize}")
        return np.frombuffer(raw, dtype).reshape(dims)
    if data is None:
        raise InvalidDataError(f"input '{name}' carries no data (neither 'data' nor binary data)")
    try:
        arr = np.asarray(data, dtype=dtype.newbyteorder("="))
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidDataError(f"input '{name}': data are not {datatype} values ({exc})") from None
    if arr.size != size:
        raise InvalidDataError(f"input '{name}': {arr.size} values for shape {list(dims)}; expected {size}")
    return arr.reshape(dims)


@dataclass(frozen=True)
class HitRequest:
    """The validated hits of one request.

    Shapes: ``features [N, 7]`` float32 (:data:`FEATURE_COLUMNS`), ``offsets [B + 1]`` int64.
    """

    features: np.ndarray
    offsets: np.ndarray

    @property
    def n_hits(self) -> int:
        return int(self.features.shape[0])

    @property
    def counts(self) -> np.ndarray:
        """Hits per event, int64 ``[B]``."""
        return np.diff(self.offsets)


def validate_inputs(tensors: Mapping[str, np.ndarray], *, max_hits: int) -> HitRequest:
    """Check the decoded input tensors of an infer request against the model's inputs.

    Raises:
        InvalidDataError: unknown or missing input, wrong datatype or shape, NaN/inf values,
            non-integer layer or cell type, inconsistent event offsets.
        RequestTooLargeError: more than ``max_hits`` hits.
    """
    names = [s.name for s in INPUTS]
    unknown = sorted(set(tensors) - set(names))
    if unknown:
        raise InvalidDataError(f"unknown input(s) {unknown}; the model's inputs are {names}")
    if FEATURES not in tensors:
        raise InvalidDataError(f"missing input '{FEATURES}' (FP32 [N, {len(FEATURE_COLUMNS)}]: "
                               f"{', '.join(FEATURE_COLUMNS)})")
    feats = tensors[FEATURES]
    if feats.dtype.newbyteorder("=") != np.float32:
        raise InvalidDataError(f"input '{FEATURES}' must be FP32, got {wire_name(feats.dtype)}")
    if feats.ndim != 2 or feats.shape[1] != len(FEATURE_COLUMNS):
        raise InvalidDataError(f"input '{FEATURES}' must have shape [N, {len(FEATURE_COLUMNS)}] "
                               f"(columns {', '.join(FEATURE_COLUMNS)}), got {list(feats.shape)}")
    n = feats.shape[0]
    if n > max_hits:
        raise RequestTooLargeError(f"request has {n} hits; this server accepts at most {max_hits} "
                                   f"hits per request (--max-hits)")
    bad = ~np.isfinite(feats)
    if bad.any():
        hit, col = (int(v) for v in np.argwhere(bad)[0])
        raise InvalidDataError(f"input '{FEATURES}': column '{FEATURE_COLUMNS[col]}' is not finite "
                               f"at hit {hit} ({feats[hit, col]}); NaN and inf are not allowed")
    for c in INTEGER_COLUMNS:
        col = feats[:, FEATURE_COLUMNS.index(c)]
        frac = col != np.round(col)
        if frac.any():
            hit = int(np.flatnonzero(frac)[0])
            raise InvalidDataError(f"input '{FEATURES}': column '{c}' must hold integers, got "
                                   f"{col[hit]} at hit {hit}")
    if EVENT_OFFSETS in tensors:
        offsets = tensors[EVENT_OFFSETS]
        if offsets.dtype.newbyteorder("=") != np.int64:
            raise InvalidDataError(f"input '{EVENT_OFFSETS}' must be INT64, got {wire_name(offsets.dtype)}")
        if offsets.ndim != 1 or offsets.shape[0] < 2:
            raise InvalidDataError(f"input '{EVENT_OFFSETS}' must have shape [B + 1] with B >= 1 "
                                   f"events, got {list(offsets.shape)}")
        offsets = offsets.astype(np.int64)
        if offsets[0] != 0 or offsets[-1] != n or (np.diff(offsets) < 0).any():
            raise InvalidDataError(f"input '{EVENT_OFFSETS}' must start at 0, never decrease and end "
                                   f"at N = {n} hits, got [{_head(offsets)}]")
    else:
        offsets = np.array([0, n], np.int64)
    return HitRequest(np.ascontiguousarray(feats, np.float32), offsets)


def _head(values: np.ndarray, k: int = 6) -> str:
    text = ", ".join(str(int(v)) for v in values[:k])
    return text + (", ..." if len(values) > k else "")


def hits_columns(features: np.ndarray) -> dict[str, np.ndarray]:
    """The hit columns of ``FEATURES`` rows, contiguous float32: the input of
    ``HitEncoding``. Layer and cell type stay float32 holding integers (checked by
    :func:`validate_inputs`); the encoding gives the same values as for an Event's int16/int8
    columns, since it converts them to float32/float64 and int64 itself."""
    return {c: np.ascontiguousarray(features[:, i]) for i, c in enumerate(FEATURE_COLUMNS)}


def hits_to_features(hits: Mapping[str, np.ndarray]) -> np.ndarray:
    """``FEATURES`` rows float32 ``[N, 7]`` from hit columns (an Event's ``hits``); a missing
    ``cell_type`` column becomes -1 (unknown). The client-side inverse of :func:`hits_columns`."""
    n = len(hits["energy"])
    out = np.empty((n, len(FEATURE_COLUMNS)), np.float32)
    for i, c in enumerate(FEATURE_COLUMNS):
        out[:, i] = hits[c] if c in hits else -1
    return out


def events_to_request(events: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(FEATURES [N, 7], EVENT_OFFSETS [B + 1])`` of several events (objects with ``hits``)."""
    feats = [hits_to_features(e.hits) for e in events]
    offsets = np.zeros(len(feats) + 1, np.int64)
    offsets[1:] = np.cumsum([len(f) for f in feats])
    return (np.concatenate(feats) if feats else np.zeros((0, len(FEATURE_COLUMNS)), np.float32)), offsets


def requested_outputs(names: Sequence[str], available: Sequence[str]) -> list[str]:
    """The outputs to return (all when ``names`` is empty), checked against the model's."""
    if not names:
        return list(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise InvalidDataError(f"unknown output(s) {unknown}; the model's outputs are {list(available)}")
    if len(set(names)) != len(names):
        raise InvalidDataError(f"output(s) requested twice: {list(names)}")
    return list(names)
