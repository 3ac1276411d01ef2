"""Export of clustering networks to ONNX and TorchScript.

Kernel-map building (sorting, ``searchsorted``, ``unique``) has no ONNX equivalent, so an
exported SPVCNN is split in two:

1. **pre-processing** (:func:`preprocess`, Python/PyTorch, runs where the hits arrive, e.g.
   in the server): hit encoding, voxelisation and every kernel and point map of the
   network, as named int64/float32 tensors;
2. **network** (:class:`FrozenNetwork`, the exported graph): ``(features, *maps) ->
   (coords, beta)``, made of Gather, MatMul, ScatterND(add), BatchNorm and activations,
   with dynamic numbers of hits and voxels.

Export uses the ``"gemm"`` convolution (gather -> one matmul per layer, no data-dependent
loop) and the dynamo-based ONNX exporter, which turns ``index_add`` into an exact
ScatterND(reduction="add"); the legacy exporter would silently overwrite duplicates.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from caloreco.errors import ConfigError, MissingDependencyError
from caloreco.models.registry import output_names
from caloreco.sparse import Conv3d
from caloreco.sparse.manager import CoordinateManager
from caloreco.utils.atomic import atomic_path

#: ONNX opset used for export.
OPSET = 18


def map_names(model: nn.Module) -> list[str]:
    """Names of the pre-processed map inputs of ``model``'s frozen network, in order."""
    pts = torch.tensor([[100.5, 100.5, 0.5], [101.5, 100.5, 1.5]])
    mgr = model.prepare(pts, torch.zeros(2, dtype=torch.long))
    return list(model.build_maps(mgr))


def preprocess(model: nn.Module, points: Tensor, batch: Tensor) -> dict[str, Tensor]:
    """The named map tensors of the frozen network for these hits (see the module docs)."""
    mgr = model.prepare(points, batch)
    return model.build_maps(mgr)


class FrozenNetwork(nn.Module):
    """``model.run`` on pre-processed maps: ``forward(features, *maps) -> (coords, beta)``,
    then ``energy_factor`` and ``signal`` for a network with an energy or signal head
    (``output_names``, :func:`caloreco.models.registry.output_names`).

    Args:
        model: an SPVCNN-like network with ``prepare``, ``build_maps`` and ``run``; it is
            copied and switched to eval mode and the ``"gemm"`` convolution.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not all(hasattr(model, a) for a in ("prepare", "build_maps", "run")):
            raise ConfigError(f"{type(model).__name__} cannot be split into pre-processing and "
                              f"network (needs prepare/build_maps/run)")
        self.names = map_names(model)
        self.output_names = output_names(model)
        self.model = copy.deepcopy(model).cpu().eval()
        for m in self.model.modules():
            if isinstance(m, Conv3d):
                m.algorithm = "gemm"

    def forward(self, features: Tensor, *maps: Tensor) -> tuple[Tensor, ...]:
        mgr = CoordinateManager.from_tensors(dict(zip(self.names, maps)))
        out = self.model.run(features, mgr)
        return tuple(out[:len(self.output_names)])

    def example_inputs(self, features: Tensor, points: Tensor, batch: Tensor) -> tuple[Tensor, ...]:
        maps = preprocess(self.model, points, batch)
        return (features, *[maps[n] for n in self.names])


def _dynamic_shapes(names: Sequence[str]) -> tuple:
    from torch.export import Dim

    auto = Dim.AUTO
    return ({0: auto}, tuple({0: auto} for _ in names))  # (features, *maps): sizes dynamic


def export_onnx(frozen: FrozenNetwork, example: tuple[Tensor, ...], path: str | Path, *,
                opset: int = OPSET) -> Path:
    """Write the network as ONNX (dynamo exporter, dynamic sizes); returns the path."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("onnx onnxscript", "ONNX export") from exc
    path = Path(path)
    input_names = ["features", *frozen.names]
    with atomic_path(path) as tmp:
        prog = torch.onnx.export(frozen, example, dynamo=True, opset_version=opset,
                                 input_names=input_names, output_names=list(frozen.output_names),
                                 dynamic_shapes=_dynamic_shapes(frozen.names), verbose=False)
        prog.save(str(tmp), external_data=False)
    return path


def onnx_session(path: str | Path, *, providers: Sequence[str] = ("CPUExecutionProvider",)):  # type: ignore[no-untyped-def]
    """An onnxruntime session that computes the exported network correctly.

    The exported ``index_add`` is ``ScatterND(reduction="add")``, and onnxruntime's CPU
    kernel splits the updates of one ScatterND over its intra-op threads without atomic
    adds, so rows that share a voxel race: with 2 threads beta came out wrong by up to 0.16
    on a dtau event, and differently from run to run (microsoft/onnxruntime#18048,
    #23396). One intra-op thread is exact; parallelism belongs across requests (sessions or
    Triton instances). The Triton repository sets the same (``intra_op_thread_count``).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("onnxruntime", "running an exported ONNX network") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=list(providers))


def export_torchscript(frozen: FrozenNetwork, example: tuple[Tensor, ...], path: str | Path) -> Path:
    """Write the network as TorchScript (traced; sizes are dynamic in the traced graph)."""
    path = Path(path)
    with torch.no_grad():
        traced = torch.jit.trace(frozen, example, check_trace=False)
    with atomic_path(path) as tmp:
        traced.save(str(tmp))
    return path
