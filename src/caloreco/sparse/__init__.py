"""caloreco's sparse point-voxel engine, in plain PyTorch (CPU, CUDA, ONNX, TorchScript).

Layers, as in torch itself: :mod:`~caloreco.sparse.coords` (packed coordinate keys,
lookup by sorting) -> :mod:`~caloreco.sparse.kernel_map` (which voxel feeds which) ->
:mod:`~caloreco.sparse.manager` (coordinates and maps per stride, built once, cached,
frozen for export) -> :mod:`~caloreco.sparse.tensor` (:class:`SparseTensor`) ->
:mod:`~caloreco.sparse.functional` (convolution, voxelise, devoxelise) ->
:mod:`~caloreco.sparse.nn` (modules with weights).
"""

from caloreco.sparse.functional import point_to_voxel, sparse_conv, voxel_to_point, voxelize
from caloreco.sparse.manager import CoordinateManager
from caloreco.sparse.nn import BatchNorm, Conv3d, EventNorm, PointEventNorm, ReLU, to_points, to_voxels
from caloreco.sparse.tensor import SparseTensor, cat

__all__ = ["BatchNorm", "Conv3d", "CoordinateManager", "EventNorm", "PointEventNorm", "ReLU", "SparseTensor", "cat",
           "point_to_voxel", "sparse_conv", "to_points", "to_voxels", "voxel_to_point",
           "voxelize"]
