"""Stateless sparse operations: convolution, voxelisation, devoxelisation.

All of them are plain PyTorch tensor operations (index, matmul, ``index_add``), so they run
on CPU and CUDA, differentiate with autograd and export to ONNX and TorchScript.
"""

from __future__ import annotations

import torch
from torch import Tensor

from caloreco.errors import ConfigError, InvalidDataError
from caloreco.sparse.coords import SPATIAL_LIMIT, check_coords, pack, unpack
from caloreco.sparse.gather_grad import event_broadcast, gather_padded
from caloreco.sparse.kernel_map import KernelMap
from caloreco.sparse.manager import CoordinateManager

#: Convolution algorithms: "scatter" loops over the offsets, ``out.index_add_(0, o,
#: x[i] @ W_k)`` on the existing pairs only (the fastest in eager mode: calorimeter voxels
#: have 3-9 of 27 neighbours occupied at 8k-20k hits); "gemm" gathers every offset of each
#: output into one row and multiplies once (``[N_out, K C_in] @ [K C_in, C_out]``): more arithmetic,
#: but a static graph of Gather + MatMul without scatter, used for export.
ALGORITHMS = ("auto", "gemm", "scatter", "triton")


def sparse_conv(feats: Tensor, kmap: KernelMap, weight: Tensor, *,
                algorithm: str = "auto") -> Tensor:
    """Sparse convolution ``y_o = sum_k W_k^T x_{in(o, k)}`` over a kernel map.

    Two algorithms, identical up to float round-off:

    * ``"scatter"``: per offset, gather the existing pairs, multiply, ``index_add`` into the
      outputs. Least arithmetic and memory; one small GEMM and two launches per offset.
    * ``"gemm"``: gather all ``K`` neighbours of every output (absent = a zero row) into
      ``[N_out, K C_in]`` and do one GEMM, no scatter. ``K/pairs-per-output`` times the
      arithmetic, but two launches per layer and no atomics: the fast form on GPUs, and the
      export form.
    * ``"triton"``: the gemm form fused into one Triton kernel that never materialises the
      gathered rows (:mod:`caloreco.sparse.triton_conv`); CUDA, forward only.
    * ``"auto"`` (default): on CUDA ``"triton"`` when no gradient is needed and Triton is
      importable, else ``"gemm"``; ``"scatter"`` elsewhere (measured in
      ``benchmarks/bench_spvcnn.py``; ``docs/benchmarks.md``).

    Args:
        feats: ``[N_in, C_in]`` input features.
        kmap: connections (:mod:`caloreco.sparse.kernel_map`).
        weight: ``[K, C_in, C_out]``, offsets in conv3d order.
        algorithm: ``"auto"``, ``"scatter"``, ``"gemm"`` or ``"triton"``.

    Returns:
        ``[N_out, C_out]``.
    """
    vol, c_in, c_out = weight.shape
    if kmap.parent is not None:
        # Each output has exactly one input: transform every input by all K offsets, pick.
        y = feats @ weight.permute(1, 0, 2).reshape(c_in, vol * c_out)
        return y.reshape(-1, c_out)[kmap.parent]
    assert kmap.nbr is not None
    if algorithm == "auto":
        algorithm = "scatter"
        if feats.is_cuda:
            algorithm = "triton" if _triton_ok(feats, weight) else "gemm"
    if algorithm == "triton":
        from caloreco.sparse.triton_conv import sparse_conv_triton

        if not _triton_ok(feats, weight):
            raise ConfigError("algorithm 'triton' needs CUDA float32/float16/bfloat16 tensors, "
                              "Triton installed, and no gradient (it is forward-only)")
        return sparse_conv_triton(feats, kmap.nbr, weight)
    if algorithm == "gemm":
        gathered = gather_padded(feats, kmap.nbr.reshape(-1),  # [N_out * K, C_in]
                                 lambda: kmap.present(feats.shape[0]))
        return gathered.reshape(-1, vol * c_in) @ weight.reshape(vol * c_in, c_out)
    if algorithm == "scatter":
        if kmap.identity is not None:
            out = feats @ weight[kmap.identity]  # centre offset: every voxel onto itself
        else:
            out = (feats[:1] @ weight[0]).new_zeros(kmap.n_out, c_out)
        for k, (i, o) in enumerate(kmap.pairs(feats.shape[0])):
            if k != kmap.identity and len(i):
                prod = feats.index_select(0, i) @ weight[k]  # dtype follows autocast
                out = out.index_add_(0, o, prod.to(out.dtype))
        return out
    raise ConfigError(f"algorithm must be one of {ALGORITHMS}, got '{algorithm}'")


def _triton_ok(feats: Tensor, weight: Tensor) -> bool:
    """The fused kernel applies: CUDA, a float type ``tl.dot`` takes, no autograd graph."""
    if not feats.is_cuda or feats.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    if torch.is_grad_enabled() and (feats.requires_grad or weight.requires_grad):
        return False
    from caloreco.sparse.triton_conv import triton_available

    return triton_available()


def _fused_ok(x: Tensor, *params: Tensor | None) -> bool:
    """A fused Triton kernel applies: a float type it takes, no autograd graph, Triton."""
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or any(p is not None and p.requires_grad
                                                           for p in params)):
        return False
    from caloreco.sparse.triton_conv import triton_available

    return triton_available()


def voxelize(points: Tensor, batch: Tensor) -> tuple[CoordinateManager, Tensor]:
    """Assign points to stride-1 voxels.

    Args:
        points: float ``[N, 3]`` positions in voxel units; point ``p`` lies in voxel
            ``floor(p)``, which must lie in ``[0, 2**16)``.
        batch: int64 ``[N]`` event index of each point.

    Returns:
        ``(manager, point_voxel)``: the coordinate manager (unique voxel coordinates,
        sorted by ``(batch, i, j, k)``) and the voxel row of each point.
    """
    if points.dim() != 2 or points.shape[1] != 3:
        raise InvalidDataError(f"points must have shape [N, 3], got {tuple(points.shape)}")
    if batch.shape != (points.shape[0],):
        raise InvalidDataError(f"batch must have shape [{points.shape[0]}] like points, got "
                               f"{tuple(batch.shape)}")
    if not bool(torch.isfinite(points).all()):
        raise InvalidDataError("points hold non-finite positions")
    cell = torch.floor(points).long()
    if points.shape[0] and (int(cell.min()) < 0 or int(cell.max()) >= SPATIAL_LIMIT):
        raise InvalidDataError(
            f"points fall outside the voxel grid [0, {SPATIAL_LIMIT}) per axis (voxel range "
            f"{cell.min(0).values.tolist()} to {cell.max(0).values.tolist()}); check the "
            f"voxel size and origin")
    coords = torch.cat([batch.long()[:, None], cell], 1)
    check_coords(coords, "voxel coordinates")  # batch index range too: keys must be exact
    # unique rows through their order-preserving int64 keys: a 1-d unique (one sort)
    # instead of unique(dim=0)'s row-wise comparisons, with the same sorted result
    keys, inverse = torch.unique(pack(coords), sorted=True, return_inverse=True)
    uniq = unpack(keys)
    mgr = CoordinateManager(uniq, points=points, points_batch=batch.long(), point_voxel=inverse)
    return mgr, inverse


def point_to_voxel(point_feats: Tensor, point_voxel: Tensor, n_voxels: int) -> Tensor:
    """Mean of the features of the points in each voxel, ``[V, C]``.

    Voxels are those of ``point_voxel`` (int64 ``[N]``, values in ``[0, V)``); every
    voxel must hold at least one point (true for voxels made from the points).
    """
    c = point_feats.shape[1]
    if point_feats.dtype in (torch.float16, torch.bfloat16):
        point_feats = point_feats.float()  # sums of many half-precision values lose digits
    sums = point_feats.new_zeros(n_voxels, c).index_add(0, point_voxel, point_feats)
    counts = point_feats.new_zeros(n_voxels, 1).index_add(
        0, point_voxel, point_feats.new_ones(point_feats.shape[0], 1))
    return sums / counts.clamp(min=1)


def voxel_to_point(voxel_feats: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Interpolate voxel features at the points: ``sum_c w_pc x_{index_pc}``.

    Computed by ``embedding_bag`` (mode ``sum`` with per-sample weights, absent corners as
    its ``padding_idx``): one fused gather-and-sum kernel on CPU and CUDA that skips absent
    corners and never materialises the ``[N, M, C]`` gathered rows (the explicit form took
    22 % of SPVCNN's GPU time at batch 256). Under ``torch.export`` (the ONNX exporter) the
    explicit gather, multiply and sum, which ONNX expresses without a loop.

    Args:
        voxel_feats: ``[V, C]``.
        index: int64 ``[N, M]`` voxel rows (``V`` = absent, weight 0), e.g. ``M = 8``
            trilinear corners or ``M = 1`` for the nearest voxel.
        weight: ``[N, M]``.
    """
    n_vox, c = voxel_feats.shape
    padded = torch.cat([voxel_feats, voxel_feats.new_zeros(1, c)], 0)
    w = weight.to(voxel_feats.dtype)
    if torch.compiler.is_exporting() or index.shape[0] == 0:
        gathered = padded.index_select(0, index.reshape(-1)).reshape(*index.shape, c)
        return (gathered * w.unsqueeze(2)).sum(1)
    return torch.nn.functional.embedding_bag(index, padded, per_sample_weights=w,
                                             mode="sum", padding_idx=n_vox)


#: Partial-sum slots per event for :func:`_event_sum` on CUDA.
EVENT_SUM_SLOTS = 256


def _event_sum(x: Tensor, event: Tensor, n_events: int) -> Tensor:
    """``[B, C]`` per-event column sums of ``x [N, C]``.

    On CUDA, ``index_add`` of N rows into B << N rows serialises on atomics to the same
    addresses (measured: a third of SPVCNN's GPU time); rows are spread over
    :data:`EVENT_SUM_SLOTS` partial sums per event (slot = row mod S), then the slots are
    summed. Elsewhere a plain ``index_add`` (also the export form).
    """
    if not x.is_cuda:
        return x.new_zeros(n_events, x.shape[1]).index_add(0, event, x)
    s = EVENT_SUM_SLOTS
    slot = event * s + torch.arange(x.shape[0], device=x.device) % s
    part = x.new_zeros(n_events * s, x.shape[1]).index_add(0, slot, x)
    return part.view(n_events, s, x.shape[1]).sum(1)


def event_norm(x: Tensor, event: Tensor, events: Tensor, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalise each channel over the rows of each event:
    ``y = (x - mu_b) / sqrt(var_b + eps) * w + b`` with ``mu_b``, ``var_b`` (biased) the
    mean and variance over the rows of event ``b``.

    Batch norm trained one event per step computes exactly these statistics; unlike its
    running averages they hold at inference too, and an event's output does not depend on
    the other events of a batch. On CUDA without autograd the fused kernels of
    :mod:`caloreco.sparse.triton_norm` compute the same.

    Args:
        x: ``[N, C]``; event: int64 ``[N]`` event of each row, in ``[0, B)``;
        events: any ``[B]`` tensor (its length is the number of events, exportable as a
            dynamic size); weight, bias: ``[C]`` or None.
    """
    n_ev = events.shape[0]
    if x.is_cuda and _fused_ok(x, weight, bias):
        from caloreco.sparse.triton_norm import event_norm_triton

        return event_norm_triton(x, event, n_ev, weight, bias, eps)
    xf = x if x.dtype == torch.float64 else x.float()  # float32 at least (bf16 inputs)
    counts = _event_sum(xf.new_ones(x.shape[0], 1), event, n_ev).clamp(min=1)
    mean = _event_sum(xf, event, n_ev) / counts
    # (the broadcasts' gradients are summed per event like the statistics: no contended
    # atomics on CUDA, see caloreco.sparse.gather_grad)
    centred = xf - event_broadcast(mean, event, _event_sum)
    var = _event_sum(centred * centred, event, n_ev) / counts
    y = centred * torch.rsqrt(event_broadcast(var, event, _event_sum) + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.to(x.dtype)
