"""Truth beside prediction: one figure, two rows (truth clusters, predicted clusters).

Each row shows the transverse view (``x``-``y``, all layers) and the longitudinal view
(``z`` against ``r``). Predicted clusters are recoloured to the truth cluster they overlap
most (by energy), so that a correct prediction looks like the truth row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from caloreco.data.event import Event
from caloreco.display.event_display import _atomic_write, _marker_size, label_colours
from caloreco.errors import InvalidDataError


def align_labels(truth: np.ndarray, pred: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Relabel predicted clusters with the truth label they share most energy with (each
    truth label used once; unmatched predictions get labels after the truth ones)."""
    out = np.full_like(pred, -1)
    ids = np.unique(pred[pred >= 0])
    used: set[int] = set()
    nxt = int(truth.max()) + 1 if len(truth) and truth.max() >= 0 else 0
    order = sorted(ids, key=lambda k: -float(energy[pred == k].sum()))
    for k in order:
        sel = (pred == k) & (truth >= 0)
        best = -1
        if sel.any():
            sums = np.bincount(truth[sel], weights=energy[sel])
            for t in np.argsort(-sums):
                if sums[t] <= 0:
                    break
                if int(t) not in used:
                    best = int(t)
                    break
        if best < 0:
            best, nxt = nxt, nxt + 1
        used.add(best)
        out[pred == k] = best
    return out


def draw_comparison(event: Event, pred: np.ndarray, *, title: str = "prediction") -> Figure:
    """The two-row figure for ``event`` and per-hit predicted labels ``pred`` (-1 noise)."""
    pred = np.asarray(pred)
    if pred.shape != (event.n_hits,):
        raise InvalidDataError(f"pred must hold one label per hit ({event.n_hits}), got shape "
                               f"{pred.shape}", event=event.event_id)
    h = event.hits
    truth = h["truth_cluster"].astype(np.int64)
    shown = align_labels(truth, pred.astype(np.int64), h["energy"])
    r = np.hypot(h["x"], h["y"])
    size = _marker_size(h["energy"]) * 0.3
    fig = Figure(figsize=(12, 9), constrained_layout=True)
    axes = fig.subplots(2, 2)
    for row, (labels, name) in enumerate(((truth, "truth"), (shown, title))):
        colours = label_colours(labels)
        order = np.argsort(labels >= 0, kind="stable")  # noise drawn first, below
        n_cl = len(np.unique(labels[labels >= 0]))
        ax = axes[row, 0]
        ax.scatter(h["x"][order], h["y"][order], s=size[order], c=colours[order], linewidths=0)
        ax.set_xlabel("x [cm]")
        ax.set_ylabel("y [cm]")
        ax.set_title(f"{name}: {n_cl} clusters, x-y")
        ax = axes[row, 1]
        ax.scatter(h["z"][order], r[order], s=size[order], c=colours[order], linewidths=0)
        ax.set_xlabel("z [cm]")
        ax.set_ylabel("r [cm]")
        ax.set_title(f"{name}: z-r (event {event.event_id})")
    return fig


def write_comparison_png(event: Event, pred: np.ndarray, path: str | Path, *,
                         title: str = "prediction", dpi: int = 90) -> Path:
    """Write :func:`draw_comparison` as a PNG, atomically."""
    fig = draw_comparison(event, pred, title=title)
    return _atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))
