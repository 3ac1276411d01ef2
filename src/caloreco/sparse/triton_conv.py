"""Fused sparse convolution for CUDA inference: one Triton kernel per layer (implicit GEMM).

The plain-PyTorch forms of :func:`caloreco.sparse.functional.sparse_conv` pay on a GPU
either for a launch and an atomic scatter per kernel offset (``"scatter"``) or for
materialising the ``[N_out, K C_in]`` gathered neighbourhood in memory (``"gemm"``). Here
each program owns a tile of ``BLOCK_M`` output sites x ``BLOCK_N`` output channels and
loops over the ``K`` offsets of the output-stationary table ``nbr [N_out, K]``, loading the
neighbour rows straight from ``feats`` (absent neighbours, ``nbr == N_in``, read as zeros)
and accumulating ``x_{nbr(o,k)} W_k`` in registers:

    y_o = sum_k sum_c x_{nbr(o,k), c} W_{k, c, :}

Nothing but the output is written. Forward only: it serves inference (no autograd graph);
training keeps the differentiable PyTorch forms. Triton is imported when first used; it
ships with CUDA builds of PyTorch, and CPU installs never reach this module.
"""

from __future__ import annotations

import functools
import importlib.util

import torch
from torch import Tensor


@functools.cache
def triton_available() -> bool:
    """True when Triton is importable (CUDA builds of PyTorch ship it)."""
    return importlib.util.find_spec("triton") is not None


@functools.cache
def _kernel():  # type: ignore[no-untyped-def]
    import triton
    import triton.language as tl

    # sizes vary per event: no recompilation for each new divisibility of N by 16
    @triton.jit(do_not_specialize=["n_out", "n_in"])
    def conv_kernel(x_ptr, nbr_ptr, w_ptr, y_ptr, n_out, n_in, c_in, c_out,
                    K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        row_ok = rows < n_out
        col_ok = cols < c_out
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k in range(K):
            src = tl.load(nbr_ptr + rows.to(tl.int64) * K + k, mask=row_ok, other=n_in)
            valid = src < n_in
            if tl.max(valid.to(tl.int32), axis=0) > 0:  # skip offsets absent for the whole tile
                for c0 in range(0, c_in, BLOCK_K):
                    ch = c0 + tl.arange(0, BLOCK_K)
                    ch_ok = ch < c_in
                    a = tl.load(x_ptr + src[:, None] * c_in + ch[None, :],
                                mask=valid[:, None] & ch_ok[None, :], other=0.0)
                    b = tl.load(w_ptr + (k * c_in + ch[:, None]).to(tl.int64) * c_out + cols[None, :],
                                mask=ch_ok[:, None] & col_ok[None, :], other=0.0)
                    if IEEE:
                        acc += tl.dot(a, b, input_precision="ieee")
                    else:
                        acc += tl.dot(a, b)
        out = y_ptr + rows[:, None].to(tl.int64) * c_out + cols[None, :]
        tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=row_ok[:, None] & col_ok[None, :])

    return conv_kernel


def _block(n: int, lo: int, hi: int) -> int:
    b = lo
    while b < n and b < hi:
        b *= 2
    return b


def sparse_conv_triton(feats: Tensor, nbr: Tensor, weight: Tensor) -> Tensor:
    """``y [N_out, C_out]`` of a sparse convolution over ``nbr [N_out, K]`` (absent = N_in).

    Under CUDA autocast the operands are cast to the autocast dtype (bfloat16 or float16)
    and the result has that dtype, as ``torch.matmul`` would give; otherwise float32
    products are exact IEEE (no TF32), so the result equals the PyTorch forms to round-off.

    Shapes:
        ``feats [N_in, C_in]``, ``nbr [N_out, K]`` int64, ``weight [K, C_in, C_out]``.
    """
    import triton

    vol, c_in, c_out = weight.shape
    if torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        feats, weight = feats.to(dtype), weight.to(dtype)
    else:
        dtype = torch.promote_types(feats.dtype, weight.dtype)
        feats, weight = feats.to(dtype), weight.to(dtype)
    feats, weight, nbr = feats.contiguous(), weight.contiguous(), nbr.contiguous()
    n_out = nbr.shape[0]
    y = torch.empty(n_out, c_out, dtype=dtype, device=feats.device)
    if n_out == 0:
        return y
    block_m = 64
    block_n = _block(c_out, 16, 64)
    block_k = _block(c_in, 16, 32)
    grid = (triton.cdiv(n_out, block_m), triton.cdiv(c_out, block_n))
    _kernel()[grid](feats, nbr, weight, y, n_out, feats.shape[0], c_in, c_out,
                    K=vol, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                    IEEE=dtype == torch.float32, num_warps=4)
    return y
