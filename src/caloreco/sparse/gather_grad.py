"""Gathers whose backward avoids contended atomics on CUDA.

The backward of ``x.index_select(0, idx)`` is ``index_add`` into the rows of ``x``. On CUDA
that is one atomic addition per gathered element, and when many elements go to the same
row the additions to that row serialise. Two gathers of the training graph do exactly that:

* the gather-GEMM convolution reads absent neighbours from one appended zero row: with 3-9
  of 27 neighbours present (dtau events of 8k-20k hits), 65-90 % of the ``[N K, C]``
  gathered rows send their gradient to that single row;
* per-event normalisation broadcasts ``[B, C]`` event statistics to the ``N`` rows: every
  row of an event sends its gradient to the same ``C`` addresses.

:func:`gather_padded` and :func:`event_broadcast` compute the same forward values and the
same gradients (up to the order of floating-point additions), but drop the absent rows
from the backward, or reduce with the spread partial sums of ``event_norm``'s per-event
sums. They apply only when a gradient is needed and no export is running;
otherwise the plain operations run (exportable, and no autograd state to keep).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor


#: Use the contention-free backwards (False: plain autograd, the same-run baseline of
#: ``benchmarks/bench_spvcnn.py``'s training steps).
ENABLED = True


def _plain(x: Tensor) -> bool:
    """Take the plain operation: no gradient wanted, or inside ``torch.export`` (ONNX)."""
    return (not ENABLED or not (torch.is_grad_enabled() and x.requires_grad)
            or torch.compiler.is_exporting())


class _GatherPadded(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, feats: Tensor, index: Tensor, present: Tensor) -> Tensor:
        ctx.shape = feats.shape
        ctx.save_for_backward(index, present)
        padded = torch.cat([feats, feats.new_zeros(1, feats.shape[1])], 0)
        return padded.index_select(0, index)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        index, present = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        # float32 sums of the (at most K) contributions of each row, then the input dtype
        acc = grad.new_zeros(ctx.shape, dtype=torch.promote_types(grad.dtype, torch.float32))
        rows = grad.index_select(0, present).to(acc.dtype)
        acc.index_add_(0, index.index_select(0, present), rows)
        return acc.to(grad.dtype), None, None


def gather_padded(feats: Tensor, index: Tensor, present: Callable[[], Tensor]) -> Tensor:
    """``cat([feats, zeros(1, C)]).index_select(0, index)``: rows of ``feats [N, C]``, a
    zero row where ``index == N``.

    Args:
        feats: ``[N, C]``.
        index: int64 ``[M]`` in ``[0, N]``.
        present: returns the int64 positions ``p`` with ``index[p] < N`` (called only when
            the backward needs them, so a caller can cache them per kernel map).
    """
    if _plain(feats):
        padded = torch.cat([feats, feats.new_zeros(1, feats.shape[1])], 0)
        return padded.index_select(0, index)
    return _GatherPadded.apply(feats, index, present())


class _EventBroadcast(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, stat: Tensor, event: Tensor, reduce: Any) -> Tensor:
        ctx.n_events = stat.shape[0]
        ctx.reduce = reduce
        ctx.save_for_backward(event)
        return stat.index_select(0, event)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:
        if not ctx.needs_input_grad[0]:
            return None, None, None
        (event,) = ctx.saved_tensors
        return ctx.reduce(grad, event, ctx.n_events), None, None


def event_broadcast(stat: Tensor, event: Tensor,
                    reduce: Callable[[Tensor, Tensor, int], Tensor]) -> Tensor:
    """``stat.index_select(0, event)`` (``[B, C]`` per-event values to ``[N, C]`` rows) whose
    backward sums the rows' gradients per event with ``reduce(grad, event, B)``."""
    if _plain(stat):
        return stat.index_select(0, event)
    return _EventBroadcast.apply(stat, event, reduce)


__all__ = ["event_broadcast", "gather_padded"]
