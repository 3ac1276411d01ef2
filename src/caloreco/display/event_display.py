"""Event displays: a static matplotlib overview (PNG) and an interactive plotly view (HTML).

:func:`draw_event` builds a :class:`matplotlib.figure.Figure` with three kinds of panel:

- a 3D scatter of the hits with the beam axis ``z`` horizontal,
- a longitudinal view, ``z`` against the transverse radius ``r = hypot(x, y)``,
- small ``x``-``y`` views of the layers holding the most energy.

Hits are coloured by truth cluster (noise, ``truth_cluster == -1``, in light grey) or by
predicted labels from a clustering algorithm; marker areas grow with ``log10(energy)``.
:func:`write_event_png` and :func:`write_event_html` write files atomically (temporary file
in the target directory, then :func:`os.replace`), so a reader never sees a partial file.

Figures are made with ``Figure`` objects directly (no pyplot state, no global backend
switch); plotly is imported only when an HTML display is requested.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Callable

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from caloreco.data.event import ClusterType, Event
from caloreco.errors import ConfigError, InvalidDataError, MissingDependencyError

PathLike = str | os.PathLike[str]

#: Valid values of ``colour_by``.
COLOUR_BY = ("truth_cluster", "predicted")

#: tab20 reordered so that neighbouring labels get clearly different colours: tab20 stores
#: (dark, light) pairs of ten hues; the permutation walks the dark shades first, then the
#: light ones, each time alternating warm and cool hues. The grey pair (14, 15) is left out
#: so that no cluster can be mistaken for noise: 18 colours in all.
_TAB20_ORDER = (0, 6, 2, 8, 4, 18, 12, 16, 10, 1, 7, 3, 9, 5, 19, 13, 17, 11)
CLUSTER_PALETTE: np.ndarray = np.asarray(colormaps["tab20"].colors)[list(_TAB20_ORDER)]
#: Colour of noise hits (label -1), a light grey that recedes behind the clusters.
NOISE_COLOUR = np.array([0.80, 0.80, 0.80])

#: Marker size scale: hit energies are clipped to [_E_MIN, _E_MAX] GeV (10 keV, a fraction of
#: a MIP in silicon, to 10 GeV, the core cell of a high-energy EM shower), then mapped
#: linearly in log10(E) onto marker areas [_S_MIN, _S_MAX] in points^2 for matplotlib
#: (diameters in px for plotly).
_E_MIN, _E_MAX = 1e-5, 1e1
_S_MIN, _S_MAX = 1.0, 60.0
_PLOTLY_SIZE = (1.5, 10.0)

#: Clusters named in the PNG legend (highest energy first); the rest are summarised.
_LEGEND_MAX = 12


def _marker_size(energy: np.ndarray, smin: float = _S_MIN, smax: float = _S_MAX) -> np.ndarray:
    """Marker size growing linearly with log10(energy), clipped to ``[smin, smax]``."""
    loge = np.log10(np.clip(energy.astype(np.float64), _E_MIN, _E_MAX))
    frac = (loge - np.log10(_E_MIN)) / (np.log10(_E_MAX) - np.log10(_E_MIN))
    return smin + frac * (smax - smin)


def label_colours(labels: np.ndarray) -> np.ndarray:
    """RGB colours (shape ``(N, 3)``) for integer labels; negative labels (noise) are grey.

    Label ``k >= 0`` gets ``CLUSTER_PALETTE[k % 18]``, so a label keeps its colour in every
    panel and every event display.
    """
    labels = np.asarray(labels)
    out = np.broadcast_to(NOISE_COLOUR, (len(labels), 3)).copy()
    good = labels >= 0
    out[good] = CLUSTER_PALETTE[labels[good] % len(CLUSTER_PALETTE)]
    return out


def _resolve_labels(event: Event, labels: np.ndarray | None, colour_by: str) -> tuple[np.ndarray, str]:
    """The per-hit labels used for colouring and a word naming them for titles."""
    if colour_by not in COLOUR_BY:
        raise ConfigError(f"colour_by must be one of {list(COLOUR_BY)}, got {colour_by!r}")
    if labels is None:
        if colour_by == "predicted":
            raise ConfigError("colour_by='predicted' needs the 'labels' argument (one integer "
                              "label per hit, -1 for noise), got labels=None")
        return event.hits["truth_cluster"].astype(np.int64), "truth cluster"
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != event.n_hits:
        raise InvalidDataError(f"labels must be a 1D array with one entry per hit "
                               f"({event.n_hits}), got shape {arr.shape}", event=event.event_id)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidDataError(f"labels must be integers (-1 for noise), got dtype {arr.dtype}",
                               event=event.event_id)
    return arr.astype(np.int64), "predicted cluster"


def _cluster_type_name(event: Event, k: int) -> str:
    """Name of truth cluster ``k``'s :class:`ClusterType`, or ``"noise"`` for ``k < 0``."""
    if k < 0 or k >= event.n_clusters:
        return "noise" if k < 0 else "?"
    code = int(event.clusters["type"][k])
    try:
        return ClusterType(code).name
    except ValueError:
        return str(code)


def _title(event: Event) -> str:
    """One-line summary: event id, detector, hit and truth-cluster counts, total energy."""
    det = f" ({event.detector})" if event.detector else ""
    return (f"Event {event.event_id}{det}: {event.n_hits} hits, {event.n_clusters} truth "
            f"clusters, E_total = {float(event.hits['energy'].sum()):.4g} GeV")


def _check_count(name: str, value: int, minimum: int) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _empty_figure(event: Event, figsize: tuple[float, float]) -> Figure:
    """A figure with the event title and the words "no hits"."""
    fig = Figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.text(0.5, 0.5, "no hits", ha="center", va="center", fontsize=20, color="0.4",
            transform=ax.transAxes)
    fig.suptitle(_title(event))
    return fig


def _legend_handles(event: Event, labels: np.ndarray, energy: np.ndarray, word: str) -> list[Line2D]:
    """Legend entries: the highest-energy labels, then a summary line and noise."""
    handles: list[Line2D] = []
    good = labels >= 0
    uniq, inv = np.unique(labels[good], return_inverse=True)
    esum = np.bincount(inv, weights=energy[good], minlength=len(uniq))
    order = np.argsort(-esum, kind="stable")
    truth = word.startswith("truth")
    for i in order[:_LEGEND_MAX]:
        k = int(uniq[i])
        kind = f" {_cluster_type_name(event, k)}" if truth else ""
        handles.append(Line2D([], [], ls="", marker="o", color=label_colours(np.array([k]))[0],
                              label=f"{k}{kind}: {esum[i]:.3g} GeV"))
    if len(uniq) > _LEGEND_MAX:
        handles.append(Line2D([], [], ls="", label=f"... {len(uniq) - _LEGEND_MAX} more"))
    if (~good).any():
        handles.append(Line2D([], [], ls="", marker="o", color=NOISE_COLOUR,
                              label=f"noise: {energy[~good].sum():.3g} GeV"))
    return handles


def draw_event(event: Event, labels: np.ndarray | None = None, *, max_layers_panels: int = 6,
               colour_by: str = "truth_cluster") -> Figure:
    """Draw an overview of one event.

    Args:
        event: the event to draw.
        labels: optional integer label per hit (shape ``(N,)``, ``-1`` for noise), e.g. the
            output of a clustering algorithm; when given it overrides the truth colouring.
        max_layers_panels: number of per-layer ``x``-``y`` panels (default 6), showing the
            layers with the most energy, in layer order; 0 leaves them out.
        colour_by: ``"truth_cluster"`` (default) or ``"predicted"`` (requires ``labels``).

    Returns:
        A new :class:`~matplotlib.figure.Figure` (no pyplot state is touched). An event
        without hits gives a figure saying "no hits".

    Raises:
        ConfigError: unknown ``colour_by``, ``"predicted"`` without labels, or a negative
            ``max_layers_panels``.
        InvalidDataError: ``labels`` of the wrong shape or dtype.
    """
    _check_count("max_layers_panels", max_layers_panels, 0)
    lab, word = _resolve_labels(event, labels, colour_by)
    if event.n_hits == 0:
        return _empty_figure(event, (8.0, 4.0))
    n_panels = min(max_layers_panels, len(np.unique(event.hits["layer"])))
    figsize = (16.0, 10.0 if n_panels else 6.5)

    h = event.hits
    x, y, z, e = h["x"], h["y"], h["z"], h["energy"]
    r = np.hypot(x, y)
    colours = label_colours(lab)
    size = _marker_size(e)
    order = np.lexsort((e, lab >= 0))  # noise first, then by energy: big hits drawn on top
    x, y, z, e, r, colours, size, layer = (a[order] for a in (x, y, z, e, r, colours, size,
                                                              h["layer"]))

    fig = Figure(figsize=figsize, layout="constrained")
    outer = fig.add_gridspec(2 if n_panels else 1, 1, height_ratios=[1.7, 1] if n_panels else None)
    top = outer[0].subgridspec(1, 3, width_ratios=[1.5, 1.0, 0.32])

    ax3: Any = fig.add_subplot(top[0], projection="3d")
    ax3.scatter(z, x, y, c=colours, s=size, depthshade=False, linewidths=0)
    ax3.set_xlabel("z [cm]")
    ax3.set_ylabel("x [cm]")
    ax3.set_zlabel("y [cm]")
    ax3.set_box_aspect((1.6, 1.0, 1.0))
    for axis in (ax3.xaxis, ax3.yaxis, ax3.zaxis):
        axis.set_major_locator(MaxNLocator(5))
    ax3.tick_params(labelsize="small")
    ax3.view_init(elev=18, azim=-60)
    ax3.set_title("3D view")

    axl = fig.add_subplot(top[1])
    axl.scatter(z, r, c=colours, s=size, linewidths=0)
    axl.set_xlabel("z [cm]")
    axl.set_ylabel("r = hypot(x, y) [cm]")
    axl.set_title("longitudinal view")

    axg = fig.add_subplot(top[2])
    axg.set_axis_off()
    axg.legend(handles=_legend_handles(event, lab, h["energy"], word), loc="upper left",
               title=word, fontsize="small", title_fontsize="small", frameon=False,
               borderaxespad=0.0, handletextpad=0.2)

    if n_panels:
        layers, inv = np.unique(layer, return_inverse=True)
        lay_e = np.bincount(inv, weights=np.clip(e, 0, None), minlength=len(layers))
        chosen = np.sort(np.argsort(-lay_e, kind="stable")[:n_panels])
        bottom = outer[1].subgridspec(1, n_panels)
        for j, li in enumerate(chosen):
            sel = inv == li
            ax: Axes = fig.add_subplot(bottom[j])
            ax.scatter(x[sel], y[sel], c=colours[sel], s=size[sel], linewidths=0)
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_title(f"layer {layers[li]}: {lay_e[li]:.3g} GeV, {int(sel.sum())} hits",
                         fontsize="small")
            ax.set_xlabel("x [cm]", fontsize="small")
            ax.tick_params(labelsize="x-small")
            if j == 0:
                ax.set_ylabel("y [cm]", fontsize="small")

    coloured = "" if word.startswith("truth") else \
        f"; coloured by {len(np.unique(lab[lab >= 0]))} predicted clusters"
    fig.suptitle(_title(event) + coloured)
    return fig


def _atomic_write(path: PathLike, write: Callable[[Any], None]) -> Path:
    """Call ``write(binary_file)`` on a temporary file next to ``path``, then rename it.

    The temporary file is removed if anything fails, so ``path`` is either untouched or
    complete. The final file gets the usual permissions (``0o666`` minus the umask).

    Raises:
        ConfigError: the directory of ``path`` does not exist or ``path`` is a directory.
        OSError: writing failed (disk full, permission denied).
    """
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"output path must be in an existing directory, but '{parent}' "
                          f"does not exist\n  for file: {path}")
    if path.is_dir():
        raise ConfigError(f"output path must be a file, but '{path}' is a directory")
    tmp = parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_event_png(event: Event, path: PathLike, *, dpi: int = 100, **kw: Any) -> Path:
    """Draw ``event`` with :func:`draw_event` (``kw`` forwarded) and write a PNG atomically.

    Args:
        event: the event to draw.
        path: output file; its directory must exist.
        dpi: resolution (default 100: a 1600x1000 pixel image with layer panels).
        **kw: ``labels``, ``max_layers_panels``, ``colour_by`` of :func:`draw_event`.

    Returns:
        The path written.
    """
    fig = draw_event(event, **kw)
    return _atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))


def _plotly_figure(event: Event, labels: np.ndarray | None, colour_by: str, max_hits: int) -> Any:
    """The plotly figure of :func:`write_event_html`."""
    try:
        import plotly.graph_objects as go
    except ImportError as exc:
        raise MissingDependencyError("plotly", "the interactive HTML event display") from exc

    _check_count("max_hits", max_hits, 1)
    lab, word = _resolve_labels(event, labels, colour_by)
    h = event.hits
    title = _title(event)
    keep = np.arange(event.n_hits)
    if event.n_hits > max_hits:
        keep = np.sort(np.argpartition(-h["energy"], max_hits - 1)[:max_hits])
        title += f"<br>(showing the {max_hits} highest-energy of {event.n_hits} hits)"
    if word.startswith("predicted"):
        title += f"<br>coloured by {len(np.unique(lab[lab >= 0]))} predicted clusters"

    fig = go.Figure()
    hover = ("E = %{customdata[0]:.4g} GeV<br>layer %{customdata[1]}<br>cell %{customdata[2]}"
             "<br>truth cluster %{customdata[3]} (%{customdata[4]})<br>z = %{x:.1f}, "
             "x = %{y:.1f}, y = %{z:.1f} cm<extra>%{fullData.name}</extra>")
    tc = h["truth_cluster"]
    for k in np.unique(lab):
        sel = keep[lab[keep] == k]
        if not len(sel):
            continue
        types = [_cluster_type_name(event, int(t)) for t in tc[sel]]
        custom = np.empty((len(sel), 5), dtype=object)
        custom[:, 0] = h["energy"][sel].astype(float)
        custom[:, 1] = h["layer"][sel].astype(int)
        custom[:, 2] = h["cell_id"][sel].astype(np.int64)
        custom[:, 3] = tc[sel].astype(int)
        custom[:, 4] = types
        noise = k < 0
        rgb = label_colours(np.array([k]))[0]
        name = "noise" if noise else (f"{word} {k}" + (f" ({types[0]})" if word.startswith(
            "truth") else ""))
        fig.add_trace(go.Scatter3d(
            x=h["z"][sel], y=h["x"][sel], z=h["y"][sel], mode="markers", name=name,
            customdata=custom, hovertemplate=hover,
            marker=dict(size=_marker_size(h["energy"][sel], *_PLOTLY_SIZE), line=dict(width=0),
                        color="rgb({:.0f},{:.0f},{:.0f})".format(*(255 * rgb)),
                        opacity=0.35 if noise else 0.9)))
    if event.n_hits == 0:
        fig.add_annotation(text="no hits", showarrow=False, font=dict(size=24))
    fig.update_layout(
        title=dict(text=title), legend=dict(itemsizing="constant"), margin=dict(l=0, r=0, b=0),
        scene=dict(xaxis_title="z [cm]", yaxis_title="x [cm]", zaxis_title="y [cm]",
                   aspectmode="manual", aspectratio=dict(x=1.6, y=1.0, z=1.0)))
    return fig


def write_event_html(event: Event, path: PathLike, *, labels: np.ndarray | None = None,
                     colour_by: str = "truth_cluster", max_hits: int = 50000) -> Path:
    """Write an interactive, self-contained plotly 3D display of ``event`` atomically.

    One trace per truth cluster (or per predicted label when ``labels`` is given) plus one
    for noise; hovering a hit shows its energy, layer, cell id, truth cluster and cluster
    type. plotly.js is embedded in the file (a few MB), so it opens offline.

    Args:
        event: the event to draw.
        path: output file; its directory must exist.
        labels: optional integer label per hit (``-1`` noise), overriding the truth colours.
        colour_by: ``"truth_cluster"`` (default) or ``"predicted"`` (requires ``labels``).
        max_hits: at most this many hits, the highest-energy ones, are drawn (default
            50000); the title says when hits were left out.

    Returns:
        The path written.

    Raises:
        MissingDependencyError: plotly is not installed.
        ConfigError: bad ``colour_by``/``max_hits`` or an output directory that does not exist.
    """
    fig = _plotly_figure(event, labels, colour_by, max_hits)
    html = fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8")
    return _atomic_write(path, lambda fh: fh.write(html))
