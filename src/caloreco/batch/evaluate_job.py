"""``caloreco evaluate`` shard by shard: per-event metric parts, merged in event order.

The serial :func:`caloreco.evaluation.report.evaluate` runs every method on all events and
adds the events one by one to a :class:`~caloreco.metrics.ClusteringEvaluator`. Its state
is made of sums (intersections and unions, summed IoU and TP/FP/FN counts) and of
per-event lists (per-event values, efficiency, fake-rate and response entries). Per-shard
evaluators could be merged by adding their sums, but floating-point addition is not
associative, so the energy-weighted values would differ in the last bits. Each shard task
therefore keeps, per method and event, the event's *addends* (the state of a one-event
evaluator) and the driver replays them in event order into one evaluator: the additions are
the serial ones, in the serial order, and the report's metrics are identical (tested).

Shard task (:class:`EvaluateJob`, on a Dask worker): read the shard's events (up to the
shard's share of ``max_events``), run each method (timed; warmed up once per worker
process), check its labels, compute the per-event parts, re-cluster condensation methods
over the threshold grid with their counts parts, and write ``OUT/partials/<shard>.json``
(atomic), with the labels of the first ``displays`` events for the pictures.

Driver (:func:`run_evaluation`): split ``max_events`` over the shards (Parquet metadata),
run the tasks (:func:`~caloreco.batch.shards.run_shards`), and when every shard succeeded,
merge (:func:`merge_partials`) and write the report with the report module's writers (its
private figure and markdown helpers: the serial :func:`~caloreco.evaluation.report.evaluate`
is left as it is, and a public ``write_report`` there would be the cleaner interface).

Timing: ``wall_s`` of a method is the sum over shards of its wall time on each worker, so
``events_per_s`` is the speed of one worker, comparable with the serial report; the run's
elapsed time is under ``batch``.
"""

from __future__ import annotations

import json
import time
from dataclasses import astuple, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping, Sequence

import numpy as np

from caloreco.batch.cluster_job import checkpoint_file
from caloreco.batch.shards import (
    BatchRun,
    ShardResult,
    cached,
    check_sha256,
    file_sha256,
    run_shards,
)
from caloreco.errors import ConfigError, InputFileError, InvalidDataError
from caloreco.utils.atomic import atomic_write_text

#: Directory of the per-shard partial results inside the report directory.
PARTIAL_DIR = "partials"
#: Layout version of the partial files (part of the job identity).
PARTIAL_VERSION = 1


# ------------------------------------------------------------------ arrays in JSON
def _enc(a: Any) -> list[Any]:
    """``[dtype, values]``: exact for integers, booleans and floats (repr round-trips)."""
    a = np.asarray(a)
    return [a.dtype.str, a.tolist()]


def _dec(v: Sequence[Any]) -> np.ndarray:
    return np.asarray(v[1], dtype=np.dtype(v[0]))


# ------------------------------------------------------------------ per-event parts
def _event_parts(event: Any, pred: np.ndarray, *, counts_only: bool = False) -> dict[str, Any]:
    """The addends of ``event`` to a :class:`ClusteringEvaluator`'s state, as the serial
    :func:`caloreco.evaluation.report.score` adds them (same arguments)."""
    from caloreco.metrics import ClusteringEvaluator

    ev = ClusteringEvaluator()
    values = ev.add(event.hits["truth_cluster"], pred, event.hits["energy"],
                    truth_types=event.clusters["type"], truth_energy=event.clusters["energy"],
                    event=event.event_id)
    parts: dict[str, Any] = {
        "n_hits": ev.n_hits,
        "seg": [_enc(ev._seg.intersection), _enc(ev._seg.union)],
        "seg_w": [_enc(ev._seg_w.intersection), _enc(ev._seg_w.union)],
        "pq": [float(ev._pq.iou_sum), int(ev._pq.tp), int(ev._pq.fp), int(ev._pq.fn)],
        "pq_u": [float(ev._pq_u.iou_sum), int(ev._pq_u.tp), int(ev._pq_u.fp), int(ev._pq_u.fn)],
        "failures": list(astuple(ev._failures)),
    }
    if not counts_only:
        parts.update({
            "values": {k: float(v) for k, v in values.items()},
            "eff": [_enc(a) for a in ev._eff[0]],
            "fake": [_enc(a) for a in ev._fake[0]],
            "resp": [_enc(a) for a in ev._resp[0]],
            "has_types": bool(ev._has_types),
        })
    return parts


def _replay(evaluator: Any, parts: Mapping[str, Any]) -> None:
    """Add one event's parts to ``evaluator`` exactly as ``ClusteringEvaluator.add`` does.

    This reaches into the evaluator's state; a public ``ClusteringEvaluator.merge`` of
    per-event parts in :mod:`caloreco.metrics.summary` would be the better home for it.
    """
    from caloreco.metrics import FailureCounts, PanopticCounts, SegmentationCounts

    evaluator.n_events += 1
    evaluator.n_hits += parts["n_hits"]
    evaluator._seg += SegmentationCounts(*(_dec(a) for a in parts["seg"]))
    evaluator._seg_w += SegmentationCounts(*(_dec(a) for a in parts["seg_w"]))
    evaluator._pq += PanopticCounts(*parts["pq"])
    evaluator._pq_u += PanopticCounts(*parts["pq_u"])
    evaluator._failures += FailureCounts(*parts["failures"])
    if "values" in parts:
        evaluator._eff.append(tuple(_dec(a) for a in parts["eff"]))
        evaluator._fake.append(tuple(_dec(a) for a in parts["fake"]))
        evaluator._resp.append(tuple(_dec(a) for a in parts["resp"]))
        evaluator._has_types |= parts["has_types"]
        for key, value in parts["values"].items():
            evaluator._per_event[key].append(value)


def _ratios(resp: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """E_reco / E_true per truth type of one event's matched pairs, as
    :func:`caloreco.evaluation.report.score` computes them (its matching is the evaluator's)."""
    from caloreco.data.event import ClusterType

    e_reco, e_true, t = resp
    ok = e_true > 0
    return {c.name: e_reco[ok & (t == int(c))] / e_true[ok & (t == int(c))] for c in ClusterType}


# ------------------------------------------------------------------------ the job
@dataclass(frozen=True)
class EvaluateJob:
    """Run and score methods on one shard (see the module docstring).

    Attributes:
        out: report directory (partials go to ``out/partials``).
        methods: method names (:data:`caloreco.evaluation.methods.METHOD_NAMES`).
        models: ``(network name, checkpoint file or None for the shipped one, sha256)``.
        device: where networks run.
        limits: ``(shard name, events read)`` for shards read only in part (``max_events``).
        scan: re-cluster condensation methods over ``scan_t_beta`` x ``scan_t_d``.
        displays: labels of this many first events kept per shard for the pictures.
        warmup: run each method once on the shard's first event before timing it (once per
            worker process).
        pf_detector: detector settings of the ``pf`` method (the data set's detector).
    """

    out: Path
    methods: tuple[str, ...]
    models: tuple[tuple[str, str | None, str], ...]
    device: str
    limits: tuple[tuple[str, int], ...]
    scan: bool
    scan_t_beta: tuple[float, ...]
    scan_t_d: tuple[float, ...]
    displays: int
    warmup: bool = True
    name: str = "evaluate"
    pf_detector: str = "hgcal"

    def _limit(self, shard: Path) -> int | None:
        return dict(self.limits).get(shard.name)

    def identity(self, shard: Path) -> dict[str, Any]:
        return {"version": PARTIAL_VERSION, "methods": list(self.methods),
                "models": {n: sha for n, _, sha in self.models}, "device": self.device,
                "limit": self._limit(shard), "scan": self.scan,
                "scan_t_beta": list(self.scan_t_beta), "scan_t_d": list(self.scan_t_d),
                "displays": self.displays, "warmup": self.warmup, "pf_detector": self.pf_detector}

    def outputs(self, shard: Path) -> list[str]:
        return [f"{PARTIAL_DIR}/{shard.name}.json"]

    def _key(self) -> tuple[Any, ...]:
        return ("evaluate", self.methods, self.models, self.device, self.pf_detector)

    def _load(self) -> dict[str, Any]:
        from caloreco.evaluation.methods import make_methods

        files = {}
        for name, ckpt, sha in self.models:
            path = checkpoint_file(ckpt, shipped=name)
            check_sha256(path, sha, f"the {name} checkpoint")
            files[name] = str(path)
        return {"methods": make_methods(list(self.methods), models=files, device=self.device,
                                        pf_detector=self.pf_detector),
                "warm": set()}

    def process(self, shard: Path) -> dict[str, Any]:
        import torch

        from caloreco.data.parquet import iter_events
        from caloreco.evaluation.methods import check_predictions

        limit = self._limit(shard)
        events = []
        for event in iter_events(shard):
            if limit is not None and len(events) >= limit:
                break
            events.append(event)
        per_method = []
        with cached(self._key(), self._load) as entry:
            for method in entry["methods"]:
                if self.warmup and method.name not in entry["warm"] and events:
                    method.cluster(events[:1])
                    entry["warm"].add(method.name)
                t0 = time.perf_counter()
                raw = method.cluster(events) if events else []  # an empty shard: no call
                wall = time.perf_counter() - t0
                preds = check_predictions(method, events, raw)
                details = method.details() if callable(getattr(method, "details", None)) else {}
                record: dict[str, Any] = {
                    "name": method.name, "wall_s": wall, "details": details,
                    "events": [_event_parts(e, p) for e, p in zip(events, preds)],
                    "display_labels": [_enc(p) for p in preds[:self.displays]]}
                if self.scan and callable(getattr(method, "rescan", None)):
                    record["scan"] = [
                        [_event_parts(e, p, counts_only=True) for e, p in zip(
                            events, check_predictions(method, events, method.rescan(tb, td)
                                                      if events else []))]
                        for tb in self.scan_t_beta for td in self.scan_t_d]
                per_method.append(record)
        partial = {"version": PARTIAL_VERSION, "input": str(shard), "n_events": len(events),
                   "n_hits": int(sum(e.n_hits for e in events)),
                   "torch_threads": torch.get_num_threads(), "methods": per_method}
        name = self.outputs(shard)[0]
        atomic_write_text(self.out / name, json.dumps(partial))
        return {"input": str(shard), "file": name, "n_events": len(events)}


# ------------------------------------------------------------------------- driver
def _event_limits(shards: Sequence[Path], max_events: int | None
                  ) -> tuple[list[Path], tuple[tuple[str, int], ...]]:
    """The shards read and the shards read in part, as the serial ``load_events`` does."""
    from caloreco.data.parquet import count_events

    if max_events is None:
        return list(shards), ()
    used, limits, taken = [], [], 0
    for shard in shards:
        if taken >= max_events:
            break
        used.append(shard)
        try:
            n = count_events(shard)
        except InputFileError:
            limits.append((shard.name, max_events - taken))  # the task reports the error
            continue
        if taken + n > max_events:
            limits.append((shard.name, max_events - taken))
        taken += min(n, max_events - taken)
    return used, tuple(limits)


def create_job(out: str | Path, names: Sequence[str], *, models: Mapping[str, str | None],
               device: str, limits: tuple[tuple[str, int], ...], scan: bool, displays: int,
               scan_t_beta: Sequence[float] | None = None,
               scan_t_d: Sequence[float] | None = None, pf_detector: str = "hgcal") -> EvaluateJob:
    """Check the method names and checkpoints here (before any task) and describe the job.

    Raises:
        ConfigError: unknown or repeated method names, ``displays < 0``.
        InputFileError: a checkpoint that cannot be read.
    """
    from caloreco.evaluation.methods import METHOD_NAMES
    from caloreco.evaluation.report import SCAN_T_BETA, SCAN_T_D
    from caloreco.training.checkpoint import load_checkpoint

    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown or not names:
        raise ConfigError(f"unknown method name(s) {unknown}; valid names are "
                          f"{list(METHOD_NAMES)}")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise ConfigError(f"method name(s) {repeated} given more than once in {list(names)}")
    if isinstance(displays, bool) or int(displays) != displays or displays < 0:
        raise ConfigError(f"displays must be an integer >= 0, got {displays!r}")
    nets = []
    for name in names:
        if name in ("spvcnn", "gravnet"):
            path = checkpoint_file(models.get(name), shipped=name)
            load_checkpoint(path)  # readable, a caloreco checkpoint
            nets.append((name, None if models.get(name) is None else str(path),
                         file_sha256(path)))
    return EvaluateJob(Path(out), tuple(names), tuple(nets), device, limits, scan,
                       tuple(float(t) for t in (scan_t_beta or SCAN_T_BETA)),
                       tuple(float(t) for t in (scan_t_d or SCAN_T_D)), int(displays),
                       pf_detector=pf_detector)


def merge_partials(job: EvaluateJob, partials: Sequence[Mapping[str, Any]]
                   ) -> tuple[dict[str, Any], dict[str, dict[str, Any]],
                              dict[str, dict[str, np.ndarray]], dict[str, list[np.ndarray]]]:
    """Replay the shards' parts in shard and event order.

    Returns:
        ``(methods, scans, ratios, display_labels)``: per method name the report entry
        (``details``, ``timing``, ``metrics``), the threshold scan of condensation methods,
        the response ratios per truth type and the labels of the first ``job.displays``
        events.
    """
    from caloreco.evaluation.report import SCAN_KEYS
    from caloreco.metrics import ClusteringEvaluator

    n_events = sum(p["n_events"] for p in partials)
    n_hits = sum(p["n_hits"] for p in partials)
    threads = partials[0]["torch_threads"]
    results, scans, ratios, labels = {}, {}, {}, {}
    for m, name in enumerate(job.methods):
        records = [p["methods"][m] for p in partials]
        evaluator = ClusteringEvaluator()
        per_type: dict[str, list[np.ndarray]] = {}
        for rec in records:
            for parts in rec["events"]:
                _replay(evaluator, parts)
                for t, r in _ratios([_dec(a) for a in parts["resp"]]).items():
                    per_type.setdefault(t, []).append(r)
        ratios[name] = {t: np.concatenate([np.zeros(0), *v]) for t, v in per_type.items()}
        labels[name] = [_dec(a) for rec in records for a in rec["display_labels"]][:job.displays]
        wall = sum(rec["wall_s"] for rec in records)
        details = next((r["details"] for r in records if r["events"]), records[0]["details"])
        if "stage_timings" in details:  # per call: sum over the shards' calls
            stages: dict[str, float] = {}
            for rec in (r for r in records if r["events"]):  # empty shards ran nothing
                for k, v in rec["details"]["stage_timings"].items():
                    stages[k] = stages.get(k, 0) + v
            details = {**details, "stage_timings": stages}
        results[name] = {
            "details": details,
            "timing": {"wall_s": wall, "events_per_s": n_events / wall if wall > 0 else None,
                       "ms_per_event": 1e3 * wall / n_events,
                       "hits_per_s": n_hits / wall if wall > 0 else None,
                       "torch_threads": threads, "warmup_events": 1 if job.warmup else 0},
            "metrics": evaluator.result(),
        }
        if "scan" in records[0]:
            grid = [(tb, td) for tb in job.scan_t_beta for td in job.scan_t_d]
            points = []
            for g, (tb, td) in enumerate(grid):
                ev = ClusteringEvaluator()
                for rec in records:
                    for parts in rec["scan"][g]:
                        _replay(ev, parts)
                metrics = ev.result()
                points.append({"t_beta": tb, "t_d": td, **{k: metrics[k] for k in SCAN_KEYS}})
            finite = [p for p in points if np.isfinite(p["pq"])]
            scans[name] = {"t_beta": list(job.scan_t_beta), "t_d": list(job.scan_t_d),
                           "points": points,
                           "best": max(finite, key=lambda p: p["pq"]) if finite else None}
    return results, scans, ratios, labels


def write_report(job: EvaluateJob, data: str | Path, shards: Sequence[Path],
                 partials: Sequence[Mapping[str, Any]], *, command: str | None,
                 batch: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the partials and write ``report.md``, ``report.json`` and the figures, as
    :func:`caloreco.evaluation.report.evaluate` does; returns the report dictionary (with
    a ``batch`` entry: runner, elapsed seconds, shards computed and skipped)."""
    from caloreco.data.parquet import iter_events
    from caloreco.evaluation import report as rp

    n_events = sum(p["n_events"] for p in partials)
    if n_events == 0:
        raise InvalidDataError(f"no events to evaluate in '{data}'")
    n_hits = sum(p["n_hits"] for p in partials)
    results, scans, ratios, labels = merge_partials(job, partials)
    out = job.out
    plot_style, style = rp._plot_style()
    files: list[str] = []
    with style:
        files.append(rp._write_figure(rp._response_figure(ratios), out / "response.png"))
        files.append(rp._write_figure(rp._curve_figure(results, "efficiency"),
                                      out / "efficiency.png"))
        files.append(rp._write_figure(rp._curve_figure(results, "fake_rate"),
                                      out / "fake_rate.png"))
        for name, grid in scans.items():
            files.append(rp._write_figure(rp._scan_figure(name, grid), out / f"scan-{name}.png"))
    shown: list[Any] = []  # the first `displays` events, as the labels kept per shard
    for shard, partial in zip(shards, partials):
        take = min(job.displays - len(shown), partial["n_events"])
        for event in iter_events(shard) if take > 0 else ():
            if take == 0:
                break
            shown.append(event)
            take -= 1
    methods = [SimpleNamespace(name=n) for n in job.methods]
    files.extend(rp._write_displays(shown, methods, labels, out, job.displays))
    summary = {
        "data": str(data), "shards": [str(p) for p in shards], "n_events": n_events,
        "n_hits": n_hits, "hits_per_event": n_hits / n_events, "command": command,
        "torch_threads": partials[0]["torch_threads"], "plot_style": plot_style,
        "methods": results, "scan": scans, "files": ["report.md", "report.json", *files],
        "batch": dict(batch),
    }
    summary = rp._jsonable(summary)
    atomic_write_text(out / "report.md", rp._markdown(summary))
    atomic_write_text(out / "report.json", json.dumps(summary, indent=1) + "\n")
    return summary


def run_evaluation(data: str | Path, names: Sequence[str], out: str | Path, *,
                   models: Mapping[str, str | None] | None = None, device: str = "cpu",
                   max_events: int | None = None, scan: bool = True, displays: int = 2,
                   command: str | None = None, scheduler: str | None = None,
                   workers: int | None = None,
                   on_result: Any = None) -> tuple[dict[str, Any] | None, BatchRun]:
    """``caloreco evaluate`` on Dask: one task per shard, then the merged report.

    Returns:
        ``(report dictionary or None, run)``: None (and no report written) when a shard
        failed; the completed shards' partials stay for the next run.

    Raises:
        ConfigError, InputFileError: as :func:`create_job`; missing data.
        InvalidDataError: no events.
    """
    from caloreco.data.dataset import _shard_paths

    if max_events is not None and (isinstance(max_events, bool) or int(max_events) != max_events
                                   or max_events < 1):
        raise ConfigError(f"max_events must be an integer >= 1 or None, got {max_events!r}")
    shards, limits = _event_limits(_shard_paths(data), max_events)
    from caloreco.evaluation.report import dataset_detector

    job = create_job(out, names, models=dict(models or {}), device=device, limits=limits,
                     scan=scan, displays=displays, pf_detector=dataset_detector(data))
    job.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run = run_shards(job, shards, scheduler=scheduler, workers=workers, on_result=on_result)
    if run.failed:
        return None, run
    partials = [_read_partial(job, r) for r in run.results]
    batch = {**run.runner, "elapsed_s": time.perf_counter() - t0, "done": run.count("done"),
             "skipped": run.count("skipped")}
    return write_report(job, data, shards, partials, command=command, batch=batch), run


def _read_partial(job: EvaluateJob, result: ShardResult) -> dict[str, Any]:
    path = job.out / result.summary["file"]
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"unreadable partial result of shard {result.shard} ({exc}); "
                                   f"delete it and re-run") from None
