"""Compare clustering methods on the same events: metrics, speed, threshold scans, plots.

:func:`evaluate` reads the events of a data set, runs every
:class:`~caloreco.evaluation.methods.Method` on them (timed), scores each with
:class:`~caloreco.metrics.ClusteringEvaluator` (truth types and generated energies from the
events' cluster tables, as :func:`~caloreco.metrics.evaluate_events`), scans the
condensation thresholds of network methods without re-running the networks, and writes
into the output directory:

- ``report.md``    the comparison table, the threshold scans, data set and reproduction command;
- ``report.json``  every number (the dictionary :func:`evaluate` returns; NaN written as null);
- ``response.png`` E_reco / E_true histograms of matched clusters, one panel per truth type
  (EM, HAD, MIP, MIX), one histogram per method;
- ``efficiency.png``, ``fake_rate.png``  versus truth energy and predicted-cluster energy;
- ``scan-<method>.png``  PQ versus ``t_d``, one curve per ``t_beta`` (condensation methods,
  with ``scan``);
- ``display-<method>-event<k>.png``  truth beside prediction for the first events.

Every file is written atomically (temporary file in the same directory, then rename).
"""

from __future__ import annotations

import json
import math
import re
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure

from caloreco.data.event import ClusterType, Event
from caloreco.errors import ConfigError, InputFileError, InvalidDataError
from caloreco.evaluation.methods import Method, check_predictions
from caloreco.metrics import ClusteringEvaluator, match_clusters, matched_energies
from caloreco.utils.atomic import atomic_write_text

#: Threshold grid of the condensation scan (``t_beta`` rows, ``t_d`` columns).
SCAN_T_BETA: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
SCAN_T_D: tuple[float, ...] = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 1.1)
#: Metrics kept per scan point.
SCAN_KEYS = ("pq", "sq", "rq", "pq_unweighted", "miou", "miou_weighted")
#: Range and bin count of the response histograms (E_reco / E_true; outside values are
#: drawn in the first / last bin).
RESPONSE_RANGE = (0.0, 2.0)
RESPONSE_BINS = 40
#: Truth types shown, in order.
TYPE_NAMES = tuple(c.name for c in ClusterType)

_NAME_RULE = re.compile(r"^[A-Za-z0-9_.-]+$")
_DPI = 90


def dataset_detector(data: str | Path) -> str:
    """The detector a data set was simulated for (``manifest.json`` beside the shards;
    ``"hgcal"`` when there is none, e.g. a converted foreign file)."""
    import json

    path = Path(data)
    manifest = (path if path.is_dir() else path.parent) / "manifest.json"
    if not manifest.exists():
        return "hgcal"
    try:
        return str(json.loads(manifest.read_text()).get("detector", "hgcal"))
    except (OSError, ValueError) as exc:
        raise InputFileError(manifest, f"unreadable data-set manifest: {exc}") from exc


def load_events(data: str | Path, max_events: int | None = None) -> tuple[list[Event], list[Path]]:
    """The events of every shard of ``data`` (a directory or one file), in shard order, up
    to ``max_events``; also the shard paths read."""
    from caloreco.data.dataset import _shard_paths
    from caloreco.data.parquet import iter_events

    events: list[Event] = []
    used: list[Path] = []
    for path in _shard_paths(data):
        if max_events is not None and len(events) >= max_events:
            break
        used.append(path)
        for event in iter_events(path):
            if max_events is not None and len(events) >= max_events:
                break
            events.append(event)
    return events, used


def score(events: Sequence[Event], preds: Sequence[np.ndarray]
          ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics of per-hit predictions on ``events`` and the response values per truth type.

    Returns:
        ``(ClusteringEvaluator.result(), {type name: E_reco / E_true of matched pairs}``),
        the response with the deposited truth energy, as the evaluator's.
    """
    evaluator = ClusteringEvaluator()
    ratios: dict[str, list[np.ndarray]] = {t: [] for t in TYPE_NAMES}
    for event, pred in zip(events, preds):
        truth, energy = event.hits["truth_cluster"], event.hits["energy"]
        types, gen = event.clusters["type"], event.clusters["energy"]
        evaluator.add(truth, pred, energy, truth_types=types, truth_energy=gen,
                      event=event.event_id)
        match = match_clusters(truth, pred, energy, weighted=True, truth_energy=gen,
                               event=event.event_id)
        e_reco, e_true, t = matched_energies(match, truth_types=types, event=event.event_id)
        ok = e_true > 0
        for c in ClusterType:
            sel = ok & (t == int(c))
            ratios[c.name].append(e_reco[sel] / e_true[sel])
    return evaluator.result(), {k: np.concatenate([np.zeros(0), *v]) for k, v in ratios.items()}


def evaluate(data: str | Path, methods: Sequence[Method], out: str | Path, *,
             max_events: int | None = None, scan: bool = True, displays: int = 2,
             command: str | None = None, warmup: bool = True,
             scan_t_beta: Sequence[float] = SCAN_T_BETA,
             scan_t_d: Sequence[float] = SCAN_T_D) -> dict[str, Any]:
    """Run and score ``methods`` on the same events and write the report into ``out``.

    Args:
        data: a directory of ``*.parquet`` shards (all read, sorted by name) or one shard.
        methods: the methods, with distinct names made of letters, digits, ``-_.``.
        out: output directory (created if missing).
        max_events: read at most this many events (default all).
        scan: scan ``t_beta`` x ``t_d`` for methods with ``rescan`` (default True).
        displays: truth-versus-prediction pictures for this many first events (default 2).
        command: the command that reproduces the report, written in ``report.md``.
        warmup: run each method once on the first event before timing it (default True:
            lazy initialisation, allocator and kernel-map caches are not timed).
        scan_t_beta, scan_t_d: the scan grid (default :data:`SCAN_T_BETA`, :data:`SCAN_T_D`).

    Returns:
        The report dictionary, as written to ``report.json``: ``data``, ``shards``,
        ``n_events``, ``n_hits``, ``hits_per_event``, ``command``, ``torch_threads``,
        ``plot_style``; ``methods`` (per name: ``details``, ``timing`` with ``wall_s``,
        ``events_per_s``, ``ms_per_event``, ``hits_per_s``, ``torch_threads``, and ``metrics``,
        :meth:`ClusteringEvaluator.result`); ``scan`` (per condensation method: the grid and
        ``points``, one dict per (t_beta, t_d) with :data:`SCAN_KEYS`, and ``best`` by PQ);
        ``files`` (names written in ``out``). NaN values are None.

    Raises:
        ConfigError: no methods, bad or repeated names, bad ``max_events`` / ``displays``.
        InputFileError: missing or unreadable data.
        InvalidDataError: no events, or a method returning malformed labels.
    """
    import torch

    _check_arguments(methods, max_events, displays)
    events, shards = load_events(data, max_events)
    if not events:
        raise InvalidDataError(f"no events to evaluate in '{data}'")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_hits = int(sum(e.n_hits for e in events))
    threads = torch.get_num_threads()

    results: dict[str, dict[str, Any]] = {}
    preds: dict[str, list[np.ndarray]] = {}
    ratios: dict[str, dict[str, np.ndarray]] = {}
    for method in methods:
        if warmup:
            method.cluster(events[:1])
        t0 = time.perf_counter()
        raw = method.cluster(events)
        wall = time.perf_counter() - t0
        preds[method.name] = check_predictions(method, events, raw)
        metrics, ratios[method.name] = score(events, preds[method.name])
        details = method.details() if callable(getattr(method, "details", None)) else {}
        results[method.name] = {
            "details": details,
            "timing": {"wall_s": wall, "events_per_s": len(events) / wall if wall > 0 else None,
                       "ms_per_event": 1e3 * wall / len(events),
                       "hits_per_s": n_hits / wall if wall > 0 else None,
                       "torch_threads": threads, "warmup_events": 1 if warmup else 0},
            "metrics": metrics,
        }

    scans: dict[str, dict[str, Any]] = {}
    if scan:
        for method in methods:
            if callable(getattr(method, "rescan", None)):
                scans[method.name] = _scan(method, events, scan_t_beta, scan_t_d)

    plot_style, style = _plot_style()
    files: list[str] = []
    with style:
        files.append(_write_figure(_response_figure(ratios), out / "response.png"))
        files.append(_write_figure(_curve_figure(results, "efficiency"), out / "efficiency.png"))
        files.append(_write_figure(_curve_figure(results, "fake_rate"), out / "fake_rate.png"))
        for name, grid in scans.items():
            files.append(_write_figure(_scan_figure(name, grid), out / f"scan-{name}.png"))
    files.extend(_write_displays(events, methods, preds, out, displays))

    summary = {
        "data": str(data),
        "shards": [str(p) for p in shards],
        "n_events": len(events),
        "n_hits": n_hits,
        "hits_per_event": n_hits / len(events),
        "command": command,
        "torch_threads": threads,
        "plot_style": plot_style,
        "methods": results,
        "scan": scans,
        "files": ["report.md", "report.json", *files],
    }
    summary = _jsonable(summary)
    atomic_write_text(out / "report.md", _markdown(summary))
    atomic_write_text(out / "report.json", json.dumps(summary, indent=1) + "\n")
    return summary


# ----------------------------------------------------------------------------- checks

def _check_arguments(methods: Sequence[Method], max_events: int | None, displays: int) -> None:
    if not methods:
        raise ConfigError("methods must hold at least one clustering method")
    names = [getattr(m, "name", None) for m in methods]
    for name in names:
        if not isinstance(name, str) or not _NAME_RULE.match(name):
            raise ConfigError(f"method names must be non-empty strings of letters, digits, "
                              f"'-', '_' and '.' (used in file names), got {name!r}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"method names must be distinct, {repeated} appear more than once")
    if max_events is not None and (isinstance(max_events, bool) or int(max_events) != max_events
                                   or max_events < 1):
        raise ConfigError(f"max_events must be an integer >= 1 or None, got {max_events!r}")
    if isinstance(displays, bool) or int(displays) != displays or displays < 0:
        raise ConfigError(f"displays must be an integer >= 0, got {displays!r}")


# ------------------------------------------------------------------------------ scan

def _scan(method: Any, events: Sequence[Event], t_betas: Sequence[float],
          t_ds: Sequence[float]) -> dict[str, Any]:
    points = []
    for t_beta in t_betas:
        for t_d in t_ds:
            pred = check_predictions(method, events, method.rescan(t_beta, t_d))
            metrics, _ = score(events, pred)
            points.append({"t_beta": float(t_beta), "t_d": float(t_d),
                           **{k: metrics[k] for k in SCAN_KEYS}})
    finite = [p for p in points if np.isfinite(p["pq"])]
    best = max(finite, key=lambda p: p["pq"]) if finite else None
    return {"t_beta": [float(t) for t in t_betas], "t_d": [float(t) for t in t_ds],
            "points": points, "best": best}


# ----------------------------------------------------------------------------- plots

def _plot_style() -> tuple[str, AbstractContextManager[Any]]:
    """The CMS style of mplhep when installed, else matplotlib's default."""
    try:
        import mplhep
    except ImportError:
        return "matplotlib", nullcontext()
    import matplotlib.style

    return "mplhep.style.CMS", matplotlib.style.context(mplhep.style.CMS)


def _write_figure(fig: Figure, path: Path) -> str:
    from caloreco.display.event_display import _atomic_write

    _atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=_DPI))
    return path.name


def _response_figure(ratios: dict[str, dict[str, np.ndarray]]) -> Figure:
    fig = Figure(figsize=(12, 9), constrained_layout=True)
    axes = fig.subplots(2, 2).ravel()
    edges = np.linspace(*RESPONSE_RANGE, RESPONSE_BINS + 1)
    lo, hi = RESPONSE_RANGE
    eps = 1e-9 * (hi - lo)
    for ax, tname in zip(axes, TYPE_NAMES):
        drawn = False
        for name, per_type in ratios.items():
            r = per_type[tname]
            if len(r) == 0:
                continue
            ax.hist(np.clip(r, lo + eps, hi - eps), bins=edges, histtype="step", linewidth=1.5,
                    label=f"{name} ({len(r)})")
            drawn = True
        ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(lo, hi)
        ax.set_xlabel(r"$E_\mathrm{reco} / E_\mathrm{true}$")
        ax.set_ylabel("matched clusters")
        ax.set_title(f"{tname}", fontsize="medium")
        if drawn:
            ax.legend(fontsize="x-small")
        else:
            ax.text(0.5, 0.5, "no matched clusters", ha="center", va="center",
                    transform=ax.transAxes)
    return fig


def _curve_figure(results: dict[str, dict[str, Any]], key: str) -> Figure:
    fig = Figure(figsize=(9, 7), constrained_layout=True)
    ax = fig.subplots()
    for name, res in results.items():
        curve = res["metrics"][key]
        edges = np.asarray(curve["edges"], dtype=np.float64)
        frac = np.asarray(curve["fraction"], dtype=np.float64)
        err = np.asarray(curve["error"], dtype=np.float64)
        centre = np.sqrt(np.maximum(edges[:-1], 0.1 * edges[1]) * edges[1:])  # log centres
        ok = np.isfinite(frac)
        if ok.any():
            ax.errorbar(centre[ok], frac[ok], yerr=err[ok], marker="o", markersize=4,
                        capsize=2, label=name)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.05)
    if key == "efficiency":
        ax.set_xlabel("truth cluster energy (generated) [GeV]")
        ax.set_ylabel("efficiency (matched truth clusters)")
    else:
        ax.set_xlabel("predicted cluster energy [GeV]")
        ax.set_ylabel("fake rate (unmatched predicted clusters)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return fig


def _scan_figure(name: str, grid: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(9, 7), constrained_layout=True)
    ax = fig.subplots()
    for t_beta in grid["t_beta"]:
        pts = [p for p in grid["points"] if p["t_beta"] == t_beta]
        ax.plot([p["t_d"] for p in pts], [np.nan if p["pq"] is None else p["pq"] for p in pts],
                marker="o", label=rf"$t_\beta$ = {t_beta:g}")
    ax.set_xlabel(r"$t_d$")
    ax.set_ylabel("PQ (energy-weighted)")
    ax.set_ylim(bottom=0.0)
    ax.set_title(name, fontsize="medium")
    ax.legend(fontsize="small")
    return fig


def _write_displays(events: Sequence[Event], methods: Sequence[Method],
                    preds: dict[str, list[np.ndarray]], out: Path, displays: int) -> list[str]:
    from caloreco.display.comparison import write_comparison_png

    files = []
    for k in range(min(displays, len(events))):
        for method in methods:
            path = out / f"display-{method.name}-event{k}.png"
            write_comparison_png(events[k], preds[method.name][k], path, title=method.name)
            files.append(path.name)
    return files


# ---------------------------------------------------------------------------- output

def _jsonable(obj: Any) -> Any:
    """Plain JSON types; NaN and infinities become None."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


def _fmt(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _rate(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def _failure_table(methods: dict[str, Any]) -> list[str]:
    """Markdown lines: the outcome of every truth and predicted cluster, per method."""
    rows = [(name, r["metrics"]["failures"]) for name, r in methods.items()
            if "failures" in r["metrics"]]
    if not rows:
        return []
    head = ["method", "truth: matched", "merged", "split", "lost",
            "predicted: matched", "fragment", "noise", "mixed"]
    lines = ["## Why clusters do not match", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, f in rows:
        cells = [f"{f[side][k]} ({_fmt(f[side][k + '_fraction'], 2)})"
                 for side, keys in (("truth", ("matched", "merged", "split", "lost")),
                                    ("pred", ("matched", "fragment", "noise", "mixed")))
                 for k in keys]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return lines + ["", "Counts (fraction) of truth and predicted clusters, energy-weighted "
                        "matching: a truth cluster is *merged* when one predicted cluster "
                        "holds most of it but also much else, *split* when none holds half, "
                        "*lost* when most of it is called noise; an unmatched predicted "
                        "cluster is a *fragment* of one truth cluster, mostly *noise*, or "
                        "*mixed* (`caloreco.metrics.failures`).", ""]


def _markdown(s: dict[str, Any]) -> str:
    lines = ["# Clustering comparison", ""]
    lines += [f"- data: `{s['data']}` ({len(s['shards'])} shard(s))",
              f"- events: {s['n_events']}, hits/event: {s['hits_per_event']:.1f}",
              f"- torch threads: {s['torch_threads']}; speed measured after one warm-up event "
              f"(wall time of the whole method call)" if any(
                  r["timing"]["warmup_events"] for r in s["methods"].values())
              else f"- torch threads: {s['torch_threads']}",
              f"- reproduce: `{s['command']}`" if s["command"] else "- reproduce: (not given)",
              ""]
    head = ["method", "mIoU", "mIoU (E-weighted)", "SQ", "RQ", "PQ", "PQ unweighted",
            *[f"{t} response mean / res." for t in TYPE_NAMES], "events/s", "ms/event"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in s["methods"].items():
        m, t = r["metrics"], r["timing"]
        resp = []
        for tname in TYPE_NAMES:
            g = m["response"].get(tname, {})
            resp.append("n/a" if not g.get("count") else
                        f"{_fmt(g.get('mean'), 2)} / {_fmt(g.get('resolution'), 2)}")
        row = [name, _fmt(m["miou"]), _fmt(m["miou_weighted"]), _fmt(m["sq"]), _fmt(m["rq"]),
               _fmt(m["pq"]), _fmt(m["pq_unweighted"]), *resp, _rate(t["events_per_s"]),
               _fmt(t["ms_per_event"], 1)]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "SQ, RQ, PQ energy-weighted (IoU > 0.5 matching); response = E_reco / E_true "
              "(deposited) of matched clusters, resolution = (q84 - q16) / 2 / median.", ""]
    lines += _failure_table(s["methods"])
    for name, grid in s["scan"].items():
        lines += [f"## Threshold scan: {name} (PQ, energy-weighted)", ""]
        lines += ["| t_beta \\ t_d | " + " | ".join(f"{d:g}" for d in grid["t_d"]) + " |",
                  "|" + "---|" * (len(grid["t_d"]) + 1)]
        for tb in grid["t_beta"]:
            pts = {p["t_d"]: p for p in grid["points"] if p["t_beta"] == tb}
            lines.append(f"| {tb:g} | " + " | ".join(_fmt(pts[d]["pq"]) for d in grid["t_d"])
                         + " |")
        best = grid["best"]
        if best is not None:
            lines += ["", f"best: t_beta = {best['t_beta']:g}, t_d = {best['t_d']:g}: "
                          f"PQ {_fmt(best['pq'])}, PQ unweighted {_fmt(best['pq_unweighted'])}, "
                          f"mIoU (E-weighted) {_fmt(best['miou_weighted'])}"]
        lines.append("")
    lines += ["## Files", ""] + [f"- `{f}`" for f in s["files"]] + [""]
    return "\n".join(lines)
