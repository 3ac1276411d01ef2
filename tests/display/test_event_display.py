"""Tests of caloreco.display.event_display on small synthetic events."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from caloreco.data.event import ClusterType, Event
from caloreco.display import draw_event, label_colours, write_event_html, write_event_png
from caloreco.display.event_display import CLUSTER_PALETTE, NOISE_COLOUR
from caloreco.errors import ConfigError, InvalidDataError, MissingDependencyError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_event(n_per_cluster: int = 100, n_noise: int = 60, seed: int = 7,
               event_id: int = 42) -> Event:
    """Three showers (EM, HAD, MIP) along different directions plus uniform noise."""
    rng = np.random.default_rng(seed)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in
                                         ("x", "y", "z", "energy", "layer", "truth_cluster")}
    axes = [(30.0, 10.0), (-40.0, 25.0), (5.0, -50.0)]
    for k, (x0, y0) in enumerate(axes):
        layer = rng.integers(1, 29, n_per_cluster)
        cols["layer"].append(layer)
        cols["z"].append(320.0 + 1.5 * layer)
        cols["x"].append(x0 + rng.normal(0, 2.0 + 0.1 * layer))
        cols["y"].append(y0 + rng.normal(0, 2.0 + 0.1 * layer))
        cols["energy"].append(rng.exponential(0.05 / (k + 1), n_per_cluster) + 1e-4)
        cols["truth_cluster"].append(np.full(n_per_cluster, k))
    layer = rng.integers(1, 29, n_noise)
    cols["layer"].append(layer)
    cols["z"].append(320.0 + 1.5 * layer)
    cols["x"].append(rng.uniform(-80, 80, n_noise))
    cols["y"].append(rng.uniform(-80, 80, n_noise))
    cols["energy"].append(rng.exponential(2e-4, n_noise))
    cols["truth_cluster"].append(np.full(n_noise, -1))
    hits = {k: np.concatenate(v) for k, v in cols.items()}
    n = len(hits["x"])
    hits["time"] = rng.normal(0, 0.1, n)
    hits["cell_id"] = np.arange(n, dtype=np.int64) + 1000
    clusters = {
        "energy": np.array([10.0, 20.0, 5.0]), "deposited": np.array([5.0, 3.0, 0.1]),
        "type": np.array([ClusterType.EM, ClusterType.HAD, ClusterType.MIP]),
        "pdg": np.array([22, 211, 13]), "px": np.zeros(3), "py": np.zeros(3),
        "pz": np.array([10.0, 20.0, 5.0]), "n_particles": np.ones(3),
        "is_pileup": np.zeros(3, dtype=bool),
    }
    return Event.from_columns(hits, clusters, event_id=event_id, detector="toy")


def empty_event() -> Event:
    hits = {k: np.zeros(0) for k in ("x", "y", "z", "energy", "time", "layer", "cell_id",
                                     "truth_cluster")}
    return Event.from_columns(hits, event_id=3)


def plotly_traces(html: str) -> list[dict]:
    """The data list passed to ``Plotly.newPlot`` in an HTML file written by plotly."""
    dec = json.JSONDecoder()
    i = html.index("Plotly.newPlot(") + len("Plotly.newPlot(")
    while html[i].isspace():
        i += 1
    _, i = dec.raw_decode(html, i)  # the div id
    while html[i].isspace() or html[i] == ",":
        i += 1
    data, _ = dec.raw_decode(html, i)
    return data


def values(col: list | dict) -> np.ndarray:
    """A trace column, decoding plotly's base64 typed arrays (``{"dtype", "bdata"}``)."""
    if isinstance(col, dict):
        return np.frombuffer(base64.b64decode(col["bdata"]), dtype=col["dtype"])
    return np.asarray(col)


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_draw_event_returns_figure_with_panels() -> None:
    fig = draw_event(make_event(), max_layers_panels=4)
    assert isinstance(fig, Figure)
    title = fig.get_suptitle()
    assert "Event 42" in title and "360 hits" in title and "3 truth clusters" in title
    # 3D + longitudinal + legend + 4 layer panels
    assert len(fig.axes) == 7
    assert any(ax.name == "3d" for ax in fig.axes)


def test_draw_event_predicted_labels() -> None:
    ev = make_event()
    labels = np.where(ev.hits["truth_cluster"] >= 0, 5 - ev.hits["truth_cluster"], -1)
    fig = draw_event(ev, labels=labels, colour_by="predicted", max_layers_panels=0)
    assert "3 predicted clusters" in fig.get_suptitle()
    assert len(fig.axes) == 3
    with pytest.raises(ConfigError, match="labels"):
        draw_event(ev, colour_by="predicted")
    with pytest.raises(ConfigError, match="colour_by"):
        draw_event(ev, colour_by="energy")
    with pytest.raises(InvalidDataError, match="one entry per hit"):
        draw_event(ev, labels=labels[:-1])


def test_label_colours_noise_grey_and_distinct() -> None:
    n = len(CLUSTER_PALETTE)
    cols = label_colours(np.array([-1, *range(n), n]))
    np.testing.assert_allclose(cols[0], NOISE_COLOUR)
    assert len({tuple(c) for c in cols[1:-1]}) == n == 18
    assert not np.any(np.ptp(cols[1:-1], axis=1) < 0.05)  # no grey that looks like noise
    np.testing.assert_allclose(cols[1], cols[-1])  # the palette cycles


def test_write_event_png(tmp_path: Path) -> None:
    out = write_event_png(make_event(), tmp_path / "event.png", dpi=60)
    assert out == tmp_path / "event.png"
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5000
    img = imread(out)
    assert img.shape[:2] == (600, 960)  # 16 x 10 inches at 60 dpi
    assert no_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["event.png"]


def test_write_event_html(tmp_path: Path) -> None:
    out = write_event_html(make_event(), tmp_path / "event.html")
    html = out.read_text(encoding="utf-8")
    assert 'class="plotly-graph-div"' in html
    assert not re.search(r"<script[^>]*\bsrc=", html)  # plotly.js embedded, not fetched
    traces = plotly_traces(html)
    assert [t["type"] for t in traces] == ["scatter3d"] * 4  # 3 clusters + noise
    names = [t["name"] for t in traces]
    assert names[0] == "noise"
    assert names[1:] == ["truth cluster 0 (EM)", "truth cluster 1 (HAD)", "truth cluster 2 (MIP)"]
    assert sum(len(values(t["x"])) for t in traces) == 360
    assert "layer" in traces[1]["hovertemplate"] and "cell" in traces[1]["hovertemplate"]
    assert no_temp_files(tmp_path)


def test_write_event_html_downsamples(tmp_path: Path) -> None:
    ev = make_event()
    html = write_event_html(ev, tmp_path / "e.html", max_hits=50).read_text(encoding="utf-8")
    traces = plotly_traces(html)
    assert sum(len(values(t["x"])) for t in traces) == 50
    assert "highest-energy of 360 hits" in html
    shown = np.concatenate([np.asarray(t["customdata"])[:, 0].astype(float) for t in traces])
    assert shown.min() >= np.sort(ev.hits["energy"])[-50] * (1 - 1e-6)
    with pytest.raises(ConfigError, match="max_hits"):
        write_event_html(ev, tmp_path / "f.html", max_hits=0)


def test_empty_event(tmp_path: Path) -> None:
    ev = empty_event()
    fig = draw_event(ev)
    assert any(t.get_text() == "no hits" for ax in fig.axes for t in ax.texts)
    png = write_event_png(ev, tmp_path / "empty.png")
    assert png.read_bytes()[:8] == PNG_MAGIC
    html = write_event_html(ev, tmp_path / "empty.html").read_text(encoding="utf-8")
    assert plotly_traces(html) == [] and "no hits" in html
    assert no_temp_files(tmp_path)


def test_write_into_missing_directory(tmp_path: Path) -> None:
    ev = make_event()
    target = tmp_path / "missing" / "event.png"
    with pytest.raises(ConfigError, match="does not exist"):
        write_event_png(ev, target)
    with pytest.raises(ConfigError, match="does not exist"):
        write_event_html(ev, tmp_path / "missing" / "event.html")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "event.png"
    target.write_bytes(b"old")

    def broken_savefig(self: Figure, fh, **kw) -> None:
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        write_event_png(make_event(), target)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["event.png"]


def test_missing_plotly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    with pytest.raises(MissingDependencyError, match="pip install plotly"):
        write_event_html(make_event(), tmp_path / "e.html")
    assert list(tmp_path.iterdir()) == []


def test_import_is_light() -> None:
    code = ("import sys, caloreco.display as d; "
            "assert 'plotly' not in sys.modules, 'plotly imported'; "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
