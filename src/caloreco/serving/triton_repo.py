"""An NVIDIA Triton model repository for a trained clustering network.

:func:`build_triton_repo` writes (``NAME`` defaults to ``caloreco``)::

    DIR/NAME/config.pbtxt               ensemble: raw hits in, cluster ids out
    DIR/NAME/1/                         (empty: an ensemble has no model file)
    DIR/NAME_preprocess/config.pbtxt    Python backend: raw hits -> network inputs
    DIR/NAME_preprocess/1/model.py
    DIR/NAME_network/config.pbtxt       onnxruntime_onnx or pytorch_libtorch (or python)
    DIR/NAME_network/1/model.onnx       (or model.pt; with the python backend also model.py)
    DIR/NAME_postprocess/config.pbtxt   Python backend: condensation -> cluster ids
    DIR/NAME_postprocess/1/model.py

The ensemble takes the tensors of the caloreco server: ``FEATURES`` FP32 ``[N, 7]``, the
raw hit columns of :data:`RAW_HIT_COLUMNS` (the
:class:`~caloreco.models.encoding.HitEncoding` order, then the cell type), and
``EVENT_OFFSETS`` INT64 ``[B + 1]`` (optional; the hits of event ``b`` are rows
``offsets[b]:offsets[b + 1]``; default one event), and returns per hit ``CLUSTER_ID``
INT64 ``[N]`` (-1 = noise, ids per event from 0), ``BETA`` FP32 ``[N]`` and ``COORDS``
FP32 ``[N, D]`` (and, for a network with an energy head, ``ENERGY_FACTOR`` FP32 ``[N]``,
the per-hit energy-correction factor; for one with a signal head, ``SIGNAL`` FP32 ``[N]``,
the per-hit signal probability): what :meth:`~caloreco.clustering.model_clustering.ModelClusterer.cluster_events`
gives for the same hits.

Why three models: kernel-map building (sort, ``searchsorted``, ``unique``) has no ONNX
equivalent (:mod:`caloreco.serving.export`), so it runs in the Python backend
(:class:`Preprocessor`, which imports caloreco: the Triton Python environment needs
caloreco and torch installed); the exported network runs in onnxruntime or libtorch, on
the GPU when the server has one; the condensation (:class:`Postprocessor`) runs in Python.
With ``network_backend="python"`` the network file is run by :class:`NetworkRunner` in a
Python-backend model instead (torch for TorchScript, onnxruntime for ONNX), for servers
built without the libtorch or onnxruntime backend, such as the one in ``nvidia-pytriton``.

Batching: every model has ``max_batch_size: 0`` and no ``dynamic_batching``. The network
takes one concatenated hit tensor (variable first dimension, events told apart by the
event-index maps), and its map tensors hold row indices into that request's own voxels:
Triton's batcher would concatenate two requests' tensors without offsetting the indices,
so the result would be wrong. Events are batched by the client (several events per
request, ``EVENT_OFFSETS``) and by the pre-processing, which builds the maps of all events
of a request together; run more requests in parallel with ``instance_group { count }``.

Parameters (thresholds, encoding, network configuration) are in the configs'
``parameters``, so ``t_beta``, ``t_d``, ``assign``, ``r_max`` (the locality cut in cm,
``none`` for none), ``position_scale`` (the detector term in cm, ``none`` for none) and the
attachment (with its signal threshold ``t_signal``) can be changed without re-exporting. The
repository is written into a temporary directory beside ``DIR`` and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from caloreco.errors import ConfigError, InvalidDataError, MissingDependencyError
from caloreco.models.encoding import REQUIRED_COLUMNS
from caloreco.serving.protocol import NETWORK_OUTPUTS, SIGNAL_OUTPUT

if TYPE_CHECKING:
    import torch
    from torch import nn

    from caloreco.models.encoding import HitEncoding
    from caloreco.serving.export import FrozenNetwork

#: Columns of the raw ``FEATURES`` tensor: the hit encoding's columns, then the cell type
#: (a :class:`caloreco.geometry.CellType` code, -1 when unknown); the order of the
#: ``FEATURES`` input of ``caloreco serve``, so that a client can use either server.
RAW_HIT_COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, "cell_type")
#: Raw columns that hold integers.
INTEGER_COLUMNS: tuple[str, ...] = ("layer", "cell_type")
#: Units of the raw columns, written into the configs.
RAW_HIT_UNITS = {"energy": "GeV", "x": "cm", "y": "cm", "z": "cm", "layer": "1..47",
                 "time": "ns", "cell_type": "CellType code, -1 = unknown"}
#: Model version directory written.
VERSION = "1"
#: Pre-processing output that gives the post-processing the event index of each hit.
HIT_EVENT = "hit_event"
#: Pre-processing output and post-processing input: the hits' projected positions [cm]
#: (``encoding.projected_positions``) for the locality cut of the condensation.
HIT_POSITION = "hit_position"
#: Pre-processing output and post-processing input: the hits' x, y, z [cm]
#: (``model_clustering.hit_xyz``) for the left-over attachment.
HIT_XYZ = "hit_xyz"

_NAME_RULE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_TYPES = {np.dtype(np.float32): "TYPE_FP32", np.dtype(np.int64): "TYPE_INT64"}


# ---------------------------------------------------------------- request handling
def raw_hits(features: np.ndarray) -> dict[str, np.ndarray]:
    """The hit columns of a raw ``FEATURES`` array ``[N, 7]`` (see :data:`RAW_HIT_COLUMNS`),
    float32; the encoding gives layer and cell type the values of an Event's integer columns.

    Raises:
        InvalidDataError: another shape, non-finite values, non-integer layer or cell type.
    """
    features = np.asarray(features, np.float32)
    if features.ndim != 2 or features.shape[1] != len(RAW_HIT_COLUMNS):
        raise InvalidDataError(f"FEATURES must have shape [N, {len(RAW_HIT_COLUMNS)}] (columns "
                               f"{', '.join(RAW_HIT_COLUMNS)}), got {list(features.shape)}")
    hits = {c: np.ascontiguousarray(features[:, i]) for i, c in enumerate(RAW_HIT_COLUMNS)}
    for c, col in hits.items():
        bad = ~np.isfinite(col) | ((col != np.round(col)) if c in INTEGER_COLUMNS else False)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            rule = "a finite integer" if c in INTEGER_COLUMNS else "finite"
            raise InvalidDataError(f"FEATURES column '{c}' must be {rule}, got {col[i]} at hit {i}")
    return hits


def event_index(offsets: np.ndarray | None, n_hits: int) -> np.ndarray:
    """int64 ``[N]`` event index of each hit from ``EVENT_OFFSETS`` (None: one event).

    Raises:
        InvalidDataError: offsets not starting at 0, decreasing, or not ending at ``n_hits``.
    """
    if offsets is None:
        return np.zeros(n_hits, np.int64)
    off = np.asarray(offsets).reshape(-1).astype(np.int64)
    if len(off) < 2 or off[0] != 0 or off[-1] != n_hits or (np.diff(off) < 0).any():
        raise InvalidDataError(f"EVENT_OFFSETS must rise from 0 to the number of hits "
                               f"({n_hits}) in B + 1 entries, got {off.tolist()[:8]}"
                               f"{' ...' if len(off) > 8 else ''}")
    return np.repeat(np.arange(len(off) - 1, dtype=np.int64), np.diff(off))


def from_triton(tensor: Any) -> np.ndarray:
    """The values of a Python-backend request tensor, read through DLPack.

    Not ``tensor.as_numpy()``: Triton's Python backend (2.51, the server of nvidia-pytriton
    0.7.0; a known issue up to at least 2.52, triton-inference-server/server#8301) built
    with a pybind11 older than numpy 2 hands ``as_numpy()`` arrays of the right shape whose
    every element is the first one when numpy >= 2 is installed: silently wrong clusters.
    DLPack bypasses numpy's C interface.
    """
    import torch

    return torch.from_dlpack(tensor.to_dlpack()).cpu().numpy()


def to_triton(pb_utils: Any, name: str, array: np.ndarray) -> Any:
    """A Python-backend output tensor of ``array``, made through DLPack (see :func:`from_triton`)."""
    import torch

    return pb_utils.Tensor.from_dlpack(name, torch.from_numpy(np.ascontiguousarray(array)))


def respond(pb_utils: Any, requests: Sequence[Any],
            handle: Callable[[Callable[[str], np.ndarray | None]], Mapping[str, np.ndarray]],
            outputs: Sequence[str] | None = None) -> list[Any]:
    """The ``execute`` loop of caloreco's Python-backend models: one response per request.

    ``handle(read)`` computes a request's outputs, where ``read(name)`` is the request tensor
    ``name`` (:func:`from_triton`; None when an optional input is absent); the ``outputs``
    named (default: all it returns) are sent through :func:`to_triton`. An exception becomes
    that request's error response, so one bad request does not fail the others.
    """
    responses = []
    for request in requests:
        def read(name: str, request: Any = request) -> np.ndarray | None:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            return None if tensor is None else from_triton(tensor)

        try:
            out = handle(read)
            names = list(out) if outputs is None else outputs
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[to_triton(pb_utils, name, out[name]) for name in names]))
        except Exception as exc:  # noqa: BLE001 - reported to the client, not raised
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[], error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
    return responses


class Preprocessor:
    """Raw hits -> the inputs of the exported network (the pre-processing model).

    Args:
        model: the network (only its ``prepare``/``build_maps`` are used: weights unused).
        encoding: its hit encoding.
        input_names: the map tensors to return, in the network's input order (after
            ``"features"``).
    """

    def __init__(self, model: nn.Module, encoding: HitEncoding, input_names: Sequence[str]) -> None:
        self.model = model.eval()
        self.encoding = encoding
        self.input_names = list(input_names)

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> "Preprocessor":
        """Build from the ``parameters`` of the pre-processing config (written by
        :func:`build_triton_repo`)."""
        from caloreco.models.encoding import encoding_from_dict
        from caloreco.models.registry import build_model

        model = build_model(params["model_name"], json.loads(params["model_config"]))
        return cls(model, encoding_from_dict(json.loads(params["encoding"])),
                   json.loads(params["map_names"]))

    def __call__(self, features: np.ndarray, offsets: np.ndarray | None = None
                 ) -> dict[str, np.ndarray]:
        """``{"features": [N, F], map name: map, ..., "hit_event": [N],
        "hit_position": [N, 3], "hit_xyz": [N, 3]}`` for raw hits.

        Raises:
            InvalidDataError: malformed hits or offsets, no hits.
        """
        import torch

        from caloreco.clustering import model_clustering
        from caloreco.serving.export import preprocess

        hits = raw_hits(features)
        n = len(hits["energy"])
        if n == 0:
            raise InvalidDataError("FEATURES holds no hits; send at least one hit per request")
        batch = event_index(offsets, n)
        maps = preprocess(self.model, torch.from_numpy(self.encoding.points(hits)),
                          torch.from_numpy(batch))
        out = {"features": self.encoding.features(hits)}
        for name in self.input_names:
            out[name] = maps[name].numpy()
        out[HIT_EVENT] = batch
        out[HIT_POSITION] = self.encoding.projected_positions(hits)
        out[HIT_XYZ] = model_clustering.hit_xyz(hits)
        return out


class NetworkRunner:
    """The exported network in a Python-backend model: TorchScript by torch, ONNX by
    onnxruntime (one intra-op thread, :func:`caloreco.serving.export.onnx_session`).

    Args:
        path: ``model.pt`` or ``model.onnx``.
        input_names: the network inputs in call order.
        device: ``"cpu"`` or ``"cuda:N"`` (TorchScript only; ONNX runs on the CPU).
        output_names: the network outputs in order (default ``NETWORK_OUTPUTS`` of
            :mod:`caloreco.serving.protocol`; an energy head adds ``"energy_factor"``, a
            signal head ``"signal"``).
    """

    def __init__(self, path: str | Path, input_names: Sequence[str], *,
                 device: str = "cpu", output_names: Sequence[str] = NETWORK_OUTPUTS) -> None:
        import torch

        self.path = Path(path)
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.onnx = self.path.suffix == ".onnx"
        if self.onnx:
            from caloreco.serving.export import onnx_session

            self.session = onnx_session(self.path)
            self.device = torch.device("cpu")
        else:
            self.device = torch.device(device if torch.cuda.is_available() else "cpu")
            self.module = torch.jit.load(str(self.path), map_location=self.device).eval()

    @classmethod
    def from_parameters(cls, params: Mapping[str, str], version_dir: str | Path, *,
                        device: str = "cpu") -> "NetworkRunner":
        return cls(Path(version_dir) / params["model_file"], json.loads(params["input_names"]),
                   device=device, output_names=json.loads(params.get(
                       "output_names", json.dumps(list(NETWORK_OUTPUTS)))))

    def __call__(self, arrays: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """``{"coords": [N, D], "beta": [N]}`` (and ``"energy_factor"``, ``"signal"``
        [N]), float32, for the inputs in call order."""
        import torch

        if len(arrays) != len(self.input_names):
            raise InvalidDataError(f"the network takes {len(self.input_names)} inputs "
                                   f"{self.input_names}, got {len(arrays)}")
        if self.onnx:
            outs = self.session.run(self.output_names, dict(zip(self.input_names, arrays)))
        else:
            with torch.no_grad():
                res = self.module(*(torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
                                    for a in arrays))
            outs = [t.float().cpu().numpy() for t in res]
        return {name: np.asarray(o, dtype=np.float32) for name, o in zip(self.output_names, outs)}


class Postprocessor:
    """Network outputs -> per-hit cluster ids by condensation, as
    :meth:`~caloreco.clustering.model_clustering.ModelClusterer.predict_tensors`.

    Args:
        t_beta, t_d: condensation thresholds.
        assign: hit-to-point rule, ``"first"`` or ``"nearest"``.
        r_max: locality cut [cm] on the hits' projected positions; None: none.
        attach_r, attach_passes: left-over attachment [cm] on the hits' x, y, z; None: none.
        position_scale: detector term [cm per clustering unit] on the hits' projected
            positions; None: none.
        t_signal: the attachment takes only hits whose ``signal`` input (a network's signal
            head) is at least this; None: every left-over hit.
    """

    def __init__(self, t_beta: float, t_d: float, assign: str = "first",
                 r_max: float | None = None, attach_r: float | None = None,
                 attach_passes: int = 1, position_scale: float | None = None,
                 t_signal: float | None = None) -> None:
        from caloreco.clustering.attach import check_attach, check_t_signal
        from caloreco.clustering.condensation import check_assign, check_r_max
        from caloreco.clustering.model_clustering import check_position_scale

        self.t_beta, self.t_d = float(t_beta), float(t_d)
        self.assign = check_assign(assign)
        self.r_max = check_r_max(None if r_max is None else float(r_max))
        self.attach_r = check_attach(None if attach_r is None else float(attach_r), attach_passes)
        self.attach_passes = int(attach_passes)
        self.position_scale = check_position_scale(
            None if position_scale is None else float(position_scale))
        self.t_signal = check_t_signal(None if t_signal is None else float(t_signal))

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> "Postprocessor":
        """From the config ``parameters``; ``r_max`` / ``attach_r`` / ``position_scale`` /
        ``t_signal`` absent or ``"none"``: no locality cut / no attachment / no detector
        term / every left-over hit attached."""
        r_max = params.get("r_max", "none")
        attach_r = params.get("attach_r", "none")
        scale = params.get("position_scale", "none")
        t_signal = params.get("t_signal", "none")
        return cls(float(params["t_beta"]), float(params["t_d"]), params.get("assign", "first"),
                   None if r_max == "none" else float(r_max),
                   None if attach_r == "none" else float(attach_r),
                   int(params.get("attach_passes", "1")),
                   None if scale == "none" else float(scale),
                   None if t_signal == "none" else float(t_signal))

    def __call__(self, coords: np.ndarray, beta: np.ndarray, hit_event: np.ndarray,
                 hit_position: np.ndarray | None = None, hit_xyz: np.ndarray | None = None,
                 energy_factor: np.ndarray | None = None,
                 signal: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``{"CLUSTER_ID": int64 [N], "BETA": float32 [N], "COORDS": float32 [N, D]}``, and
        ``"ENERGY_FACTOR"``, ``"SIGNAL"``: float32 [N] (passed through) when
        ``energy_factor``, ``signal`` are given; ``hit_position`` [N, 3] is used when
        ``r_max`` or ``position_scale`` is set, ``hit_xyz`` [N, 3] when ``attach_r`` is,
        ``signal`` [N] when ``attach_r`` and ``t_signal`` are."""
        import torch

        from caloreco.clustering.model_clustering import condense_outputs

        c = torch.from_numpy(np.ascontiguousarray(coords)).float()
        b = torch.from_numpy(np.ascontiguousarray(beta)).float()
        pos = xyz = None
        if self.r_max is not None or self.position_scale is not None:
            if hit_position is None:
                what = (f"the locality cut (r_max = {self.r_max} cm)" if self.r_max is not None
                        else f"the detector term (position_scale = {self.position_scale} cm)")
                raise InvalidDataError(f"{what} needs the '{HIT_POSITION}' input")
            pos = torch.from_numpy(np.ascontiguousarray(hit_position)).float()
        if self.attach_r is not None:
            if hit_xyz is None:
                raise InvalidDataError(f"the left-over attachment (attach_r = {self.attach_r} "
                                       f"cm) needs the '{HIT_XYZ}' input")
            xyz = torch.from_numpy(np.ascontiguousarray(hit_xyz)).float()
        gate = self.t_signal if self.attach_r is not None else None
        if gate is not None and signal is None:
            raise InvalidDataError(f"the signal threshold of the attachment (t_signal = "
                                   f"{gate}) needs the network's '{SIGNAL_OUTPUT}' output")
        cid = condense_outputs(b, c, torch.from_numpy(np.asarray(hit_event, np.int64)),
                               t_beta=self.t_beta, t_d=self.t_d, assign=self.assign,
                               r_max=self.r_max, positions=pos, attach_r=self.attach_r,
                               attach_passes=self.attach_passes, xyz=xyz,
                               position_scale=self.position_scale,
                               signal=None if gate is None else torch.from_numpy(
                                   np.asarray(signal, np.float32)), t_signal=gate)
        out = {"CLUSTER_ID": cid.numpy(), "BETA": b.numpy(), "COORDS": c.numpy()}
        if energy_factor is not None:
            out["ENERGY_FACTOR"] = np.asarray(energy_factor, dtype=np.float32)
        if signal is not None:
            out["SIGNAL"] = np.asarray(signal, dtype=np.float32)
        return out


def config_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """The ``parameters`` of a Triton model config (``args["model_config"]`` of a Python
    model, parsed) as ``{key: string_value}``."""
    return {k: v["string_value"] for k, v in dict(model_config.get("parameters", {})).items()}


# ------------------------------------------------------------------ config text
@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a model config: name, ``TYPE_*`` data type, dims (-1 =
    variable), optional (inputs only)."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    optional: bool = False

    def renamed(self, name: str) -> "TensorSpec":
        return TensorSpec(name, self.data_type, self.dims, self.optional)


def _pbtxt_string(text: str) -> str:
    """A protobuf text-format string literal (escapes, non-ASCII as octal UTF-8 bytes)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in "\"\\":
            out.append("\\" + ch)
        elif 32 <= byte < 127:
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _io(kind: str, specs: Sequence[TensorSpec]) -> list[str]:
    lines = [f"{kind} ["]
    for i, s in enumerate(specs):
        opt = " optional: true" if s.optional else ""
        dims = ", ".join(str(d) for d in s.dims)
        lines.append(f"  {{ name: {_pbtxt_string(s.name)} data_type: {s.data_type} "
                     f"dims: [ {dims} ]{opt} }}{',' if i < len(specs) - 1 else ''}")
    return lines + ["]"]


def _parameters(params: Mapping[str, str]) -> list[str]:
    return [f"parameters {{ key: {_pbtxt_string(k)} value {{ string_value: {_pbtxt_string(v)} }} }}"
            for k, v in params.items()]


def _comment(text: str) -> list[str]:
    return [f"# {line}".rstrip() for line in text.strip().splitlines()]


_BATCHING_NOTE = """
No dynamic_batching and max_batch_size 0: the network takes one concatenated hit tensor
(variable first dimension) and map tensors holding row indices into that request's voxels;
Triton's batcher would concatenate two requests without offsetting those indices. Batch
events on the client (several events per request, EVENT_OFFSETS): the pre-processing builds
the maps of all of them together. More throughput: raise instance_group count.
"""


def _raw_columns_note() -> str:
    cols = ", ".join(f"{i} {c} [{RAW_HIT_UNITS[c]}]" for i, c in enumerate(RAW_HIT_COLUMNS))
    return (f"FEATURES: raw hit columns (HitEncoding order): {cols}.\n"
            f"EVENT_OFFSETS (optional): hits of event b are rows "
            f"offsets[b]:offsets[b+1]; without it the request is one event.")


_ORT_THREADS_NOTE = """
intra_op_thread_count 1: onnxruntime's CPU ScatterND(reduction=add), the exported index_add,
splits its updates over threads without atomics, so duplicate indices race and the sums come
out wrong (microsoft/onnxruntime#18048; dtau events: beta off by up to 0.3 with the default
threads, exact with one). Scale with instance_group count instead.
"""


def network_config(name: str, platform: str, inputs: Sequence[TensorSpec],
                   outputs: Sequence[TensorSpec]) -> str:
    """config.pbtxt of the exported network (onnxruntime: one intra-op thread, see the note)."""
    onnx = platform == "onnxruntime_onnx"
    lines = _comment(f"caloreco clustering network (exported by caloreco export "
                     f"--triton-repo): pre-processed hits -> clustering coordinates and beta.\n"
                     f"{_BATCHING_NOTE}{_ORT_THREADS_NOTE if onnx else ''}")
    lines += [f"name: {_pbtxt_string(name)}", f"platform: {_pbtxt_string(platform)}",
              "max_batch_size: 0", *_io("input", inputs), *_io("output", outputs),
              "# KIND_AUTO: on the GPU when the server has one, else on the CPU",
              "instance_group [ { count: 1 kind: KIND_AUTO } ]"]
    if onnx:
        lines += _parameters({"intra_op_thread_count": "1"})
    return "\n".join(lines + [""])


def python_config(name: str, purpose: str, inputs: Sequence[TensorSpec],
                  outputs: Sequence[TensorSpec], params: Mapping[str, str], *,
                  kind: str = "KIND_CPU") -> str:
    """config.pbtxt of a Python-backend model (needs caloreco in the Triton Python environment)."""
    lines = _comment(f"{purpose}\nPython backend: the Triton Python environment needs caloreco "
                     f"(and torch) installed, see docs/serving-triton.md.\n{_BATCHING_NOTE}")
    lines += [f"name: {_pbtxt_string(name)}", 'backend: "python"', "max_batch_size: 0",
              *_io("input", inputs), *_io("output", outputs),
              f"instance_group [ {{ count: 1 kind: {kind} }} ]", *_parameters(params), ""]
    return "\n".join(lines)


def ensemble_config(name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                    steps: Sequence[tuple[str, Mapping[str, str], Mapping[str, str]]]) -> str:
    """config.pbtxt of the ensemble; ``steps``: ``(model, {model input: ensemble tensor},
    {model output: ensemble tensor})`` in execution order."""
    lines = _comment(f"caloreco clustering: raw hits in, cluster id per hit out "
                     f"(pre-processing -> network -> condensation).\n{_raw_columns_note()}\n"
                     f"CLUSTER_ID: -1 = noise, ids 0..K-1 per event; BETA: condensation "
                     f"likelihood; COORDS: clustering-space coordinates.\n{_BATCHING_NOTE}")
    lines += [f"name: {_pbtxt_string(name)}", 'platform: "ensemble"', "max_batch_size: 0",
              *_io("input", inputs), *_io("output", outputs), "ensemble_scheduling {", "  step ["]
    for i, (model, in_map, out_map) in enumerate(steps):
        lines += ["    {", f"      model_name: {_pbtxt_string(model)}", "      model_version: -1"]
        lines += [f"      input_map {{ key: {_pbtxt_string(k)} value: {_pbtxt_string(v)} }}"
                  for k, v in in_map.items()]
        lines += [f"      output_map {{ key: {_pbtxt_string(k)} value: {_pbtxt_string(v)} }}"
                  for k, v in out_map.items()]
        lines.append("    }" + ("," if i < len(steps) - 1 else ""))
    return "\n".join(lines + ["  ]", "}", ""])


# ------------------------------------------------------------------ the repository
def example_inputs(frozen: FrozenNetwork, encoding: HitEncoding, *, n_hits: int = 256,
                   n_events: int = 2) -> tuple[torch.Tensor, ...]:
    """Random hits of ``n_events`` events in one endcap (an example shape for export;
    every size stays dynamic)."""
    import torch

    rng = np.random.default_rng(0)
    hits = {"energy": rng.exponential(0.01, n_hits).astype(np.float32),
            "x": rng.uniform(-50, 50, n_hits).astype(np.float32),
            "y": rng.uniform(-50, 50, n_hits).astype(np.float32),
            "z": np.full(n_hits, 330.0, np.float32), "layer": rng.integers(1, 28, n_hits),
            "time": np.full(n_hits, 11.0, np.float32)}
    batch = torch.from_numpy(np.sort(rng.integers(0, n_events, n_hits)))
    return frozen.example_inputs(torch.from_numpy(encoding.features(hits)),
                                 torch.from_numpy(encoding.points(hits)), batch)


def _spec(name: str, tensor: Any) -> TensorSpec:
    arr = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
    if arr.dtype not in _TYPES:
        raise ConfigError(f"tensor '{name}' has dtype {arr.dtype}; the repository supports "
                          f"{sorted(str(d) for d in _TYPES)}")
    return TensorSpec(name, _TYPES[arr.dtype], (-1, *arr.shape[1:]))


def _prepare_target(repo: Path, force: bool) -> None:
    if repo.exists() and not repo.is_dir():
        raise ConfigError(f"--triton-repo {repo} exists and is not a directory")
    if repo.is_dir() and any(repo.iterdir()) and not force:
        raise ConfigError(f"--triton-repo {repo} exists and is not empty; give --force to "
                          f"replace it, or another directory")


def _install(tmp: Path, repo: Path) -> None:
    """Rename the finished ``tmp`` onto ``repo`` (an old one is moved aside, then removed)."""
    old = None
    if repo.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{repo.name}.old.", dir=repo.parent))
        os.replace(repo, old / repo.name)
    try:
        os.replace(tmp, repo)
    except BaseException:
        if old is not None:
            os.replace(old / repo.name, repo)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _template(name: str) -> str:
    return (resources.files("caloreco.serving") / "triton_templates" / name).read_text()


#: Who runs the network model: Triton's own backend for the format, or the Python backend.
NETWORK_BACKENDS = ("native", "python")


def build_triton_repo(checkpoint: str | Path, repo: str | Path, *, fmt: str = "onnx",
                      name: str = "caloreco", force: bool = False,
                      network_backend: str = "native") -> Path:
    """Write the Triton model repository of ``checkpoint`` into ``repo`` (see the module docs).

    Args:
        checkpoint: checkpoint file or run directory of an SPVCNN-like network.
        repo: the repository directory (created; an existing non-empty one needs ``force``).
        fmt: network format, ``"onnx"`` (onnxruntime_onnx) or ``"torchscript"``
            (pytorch_libtorch).
        name: the ensemble's name; the other models are ``NAME_preprocess``,
            ``NAME_network`` and ``NAME_postprocess``.
        force: replace an existing non-empty ``repo``.
        network_backend: ``"native"`` (onnxruntime_onnx or pytorch_libtorch, default) or
            ``"python"`` (the network file run by :class:`NetworkRunner` in a Python-backend
            model).

    Returns:
        ``repo``.

    Raises:
        ConfigError: bad ``fmt`` or ``name``, an existing non-empty ``repo`` without ``force``,
            a network that cannot be split into pre-processing and network.
        InputFileError: unreadable checkpoint.
        MissingDependencyError: ONNX export without onnx/onnxscript.
    """
    import torch

    from caloreco.serving.export import FrozenNetwork, export_onnx, export_torchscript
    from caloreco.training.checkpoint import load_checkpoint

    if fmt not in ("onnx", "torchscript"):
        raise ConfigError(f"format must be 'onnx' or 'torchscript', got {fmt!r}")
    if network_backend not in NETWORK_BACKENDS:
        raise ConfigError(f"network backend must be one of {list(NETWORK_BACKENDS)}, got "
                          f"{network_backend!r}")
    if not _NAME_RULE.match(name):
        raise ConfigError(f"Triton model name must be letters, digits, '_', '-' and '.', got "
                          f"{name!r}")
    repo = Path(repo)
    _prepare_target(repo, force)
    ckpt = load_checkpoint(checkpoint)
    model, encoding = ckpt.build("cpu")
    frozen = FrozenNetwork(model)
    example = example_inputs(frozen, encoding)
    with torch.no_grad():
        outs = frozen(*example)
    inputs = [_spec("features", example[0]),
              *(_spec(n, t) for n, t in zip(frozen.names, example[1:]))]
    outputs = [_spec(n, t) for n, t in zip(frozen.output_names, outs)]
    pre, net, post = f"{name}_preprocess", f"{name}_network", f"{name}_postprocess"

    repo.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{repo.name}.", suffix=".tmp", dir=repo.parent))
    try:
        (tmp / net / VERSION).mkdir(parents=True)
        if fmt == "onnx":
            path = export_onnx(frozen, example, tmp / net / VERSION / "model.onnx")
            inputs = _onnx_inputs(path, inputs)
            net_in = {s.name: s.name for s in inputs}  # model tensor -> ensemble tensor
            net_out = {s.name: s.name for s in outputs}
            platform = "onnxruntime_onnx"
        else:
            export_torchscript(frozen, example, tmp / net / VERSION / "model.pt")
            # libtorch's NAMED_INDEX convention: <name>__<position>
            net_in = {f"{s.name}__{i}": s.name for i, s in enumerate(inputs)}
            net_out = {f"{s.name}__{i}": s.name for i, s in enumerate(outputs)}
            platform = "pytorch_libtorch"
        by_name = {s.name: s for s in inputs + outputs}
        if network_backend == "python":  # plain tensor names, the file run by NetworkRunner
            net_in = {s.name: s.name for s in inputs}
            net_out = {s.name: s.name for s in outputs}
            (tmp / net / VERSION / "model.py").write_text(_template("network.py"))
            (tmp / net / "config.pbtxt").write_text(python_config(
                net, "caloreco clustering network, run by torch (TorchScript) or onnxruntime "
                     "(ONNX) in the Python backend: pre-processed hits -> clustering "
                     "coordinates and beta.", inputs, outputs,
                {"model_file": "model.onnx" if fmt == "onnx" else "model.pt",
                 "input_names": json.dumps([s.name for s in inputs]),
                 "output_names": json.dumps([s.name for s in outputs])}, kind="KIND_AUTO"))
        else:
            (tmp / net / "config.pbtxt").write_text(network_config(
                net, platform, [by_name[v].renamed(k) for k, v in net_in.items()],
                [by_name[v].renamed(k) for k, v in net_out.items()]))

        raw = [TensorSpec("FEATURES", "TYPE_FP32", (-1, len(RAW_HIT_COLUMNS))),
               TensorSpec("EVENT_OFFSETS", "TYPE_INT64", (-1,), optional=True)]
        hit_event = TensorSpec(HIT_EVENT, "TYPE_INT64", (-1,))
        hit_position = TensorSpec(HIT_POSITION, "TYPE_FP32", (-1, 3))
        hit_xyz_spec = TensorSpec(HIT_XYZ, "TYPE_FP32", (-1, 3))
        map_names = [s.name for s in inputs[1:]]
        _write_python_model(tmp / pre, "preprocess.py", python_config(
            pre, "Raw hits -> network inputs: hit encoding, voxelisation and kernel maps "
                 "(sort, searchsorted, unique: not expressible in ONNX).\n" + _raw_columns_note(),
            raw, [*inputs, hit_event, hit_position, hit_xyz_spec],
            {"model_name": ckpt.model_name, "model_config": json.dumps(ckpt.model_config),
             "encoding": json.dumps(encoding.to_dict()), "map_names": json.dumps(map_names),
             "hit_columns": json.dumps(list(RAW_HIT_COLUMNS))}))
        results = [TensorSpec("CLUSTER_ID", "TYPE_INT64", (-1,)),
                   outputs[1].renamed("BETA"), outputs[0].renamed("COORDS"),
                   *(s.renamed(s.name.upper()) for s in outputs[2:])]  # ENERGY_FACTOR, SIGNAL
        _write_python_model(tmp / post, "postprocess.py", python_config(
            post, "Network outputs -> cluster id per hit: object condensation (points with "
                  "beta > t_beta, hits within t_d of them, and within r_max [cm] of them in "
                  "hit_position unless r_max is none; distances extended by hit_position / "
                  "position_scale [cm] unless it is none; then, unless attach_r is none, "
                  "unassigned hits join the nearest clustered hit within attach_r [cm] in "
                  "hit_xyz, attach_passes times; with t_signal not none, only hits whose "
                  "signal output is >= t_signal).",
            [*outputs, hit_event, hit_position, hit_xyz_spec], results,
            {"t_beta": repr(float(ckpt.clustering.get("t_beta", 0.1))),
             "t_d": repr(float(ckpt.clustering.get("t_d", 0.7))),
             "assign": str(ckpt.clustering.get("assign", "first")),
             "r_max": ("none" if ckpt.clustering.get("r_max") is None
                       else repr(float(ckpt.clustering["r_max"]))),
             "attach_r": ("none" if ckpt.clustering.get("attach_r") is None
                          else repr(float(ckpt.clustering["attach_r"]))),
             "attach_passes": str(int(ckpt.clustering.get("attach_passes", 1))),
             "position_scale": ("none" if ckpt.clustering.get("position_scale") is None
                                else repr(float(ckpt.clustering["position_scale"]))),
             "t_signal": ("none" if ckpt.clustering.get("t_signal") is None
                          else repr(float(ckpt.clustering["t_signal"])))}))

        (tmp / name / VERSION).mkdir(parents=True)
        steps = [
            (pre, {"FEATURES": "FEATURES", "EVENT_OFFSETS": "EVENT_OFFSETS"},
             {s.name: s.name for s in [*inputs, hit_event, hit_position, hit_xyz_spec]}),
            (net, net_in, net_out),
            (post, {s.name: s.name for s in [*outputs, hit_event, hit_position, hit_xyz_spec]},
             {s.name: s.name for s in results}),
        ]
        (tmp / name / "config.pbtxt").write_text(ensemble_config(name, raw, results, steps))
        _install(tmp, repo)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return repo


def _onnx_inputs(path: Path, specs: Sequence[TensorSpec]) -> list[TensorSpec]:
    """The specs of the inputs the ONNX graph kept, in its order (the exporter may drop an
    unused input)."""
    try:
        import onnx
    except ImportError as exc:  # export_onnx checked it already
        raise MissingDependencyError("onnx", "the Triton repository of an ONNX network") from exc
    by_name = {s.name: s for s in specs}
    names = [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ConfigError(f"the exported ONNX graph has inputs {unknown} that the network does "
                          f"not declare")
    return [by_name[n] for n in names]


def _write_python_model(root: Path, template: str, config: str) -> None:
    (root / VERSION).mkdir(parents=True)
    (root / VERSION / "model.py").write_text(_template(template))
    (root / "config.pbtxt").write_text(config)
