"""caloreco.evaluation: the method interface and the comparison report, on 4 dtau events
(both shards of the session data set) with truth, CLUE3D and an untrained small SPVCNN."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from caloreco.clustering.clue3d import ClueParams, clue_event
from caloreco.clustering.model_clustering import ModelClusterer
from caloreco.data.dataset import _shard_paths
from caloreco.data.parquet import read_events
from caloreco.errors import ConfigError, InputFileError, InvalidDataError
from caloreco.evaluation.methods import (
    ClueMethod,
    CondensationMethod,
    Method,
    TruthMethod,
    make_methods,
)
from caloreco.evaluation.report import SCAN_T_BETA, SCAN_T_D, evaluate
from caloreco.metrics import ClusteringEvaluator
from caloreco.models.encoding import HitEncoding
from caloreco.models.registry import build_model

N_EVENTS = 4  # 3 events per shard: reads both shards


def _untrained_net() -> CondensationMethod:
    torch.manual_seed(0)
    model = build_model("spvcnn", {"in_features": HitEncoding().n_features, "cr": 0.125})
    return CondensationMethod("net", ModelClusterer(model, HitEncoding()))


@pytest.fixture(scope="module")
def run(dtau_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report")
    methods = [*make_methods(["truth", "clue"], models={}), _untrained_net()]
    summary = evaluate(dtau_dataset, methods, out, max_events=N_EVENTS, scan=True, displays=1,
                       command="caloreco evaluate --test")
    return {"out": out, "summary": summary, "methods": methods, "data": dtau_dataset}


def _events(data: Path) -> list:
    events = [e for p in _shard_paths(data) for e in read_events(p)]
    return events[:N_EVENTS]


def _same(a: Any, b: float) -> bool:
    """A report value (None for NaN) equals a direct value."""
    if a is None:
        return math.isnan(b)
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_files_written(run: dict[str, Any]) -> None:
    out: Path = run["out"]
    expected = {"report.md", "report.json", "response.png", "efficiency.png", "fake_rate.png",
                "scan-net.png", *(f"display-{m}-event0.png" for m in ("truth", "clue", "net"))}
    names = {p.name for p in out.iterdir()}
    assert names == expected  # nothing else, no temporary files left behind
    assert set(run["summary"]["files"]) == expected
    for name in expected:
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((out / "report.json").read_text()) == run["summary"]
    md = (out / "report.md").read_text()
    assert "| method | mIoU | mIoU (E-weighted) | SQ | RQ | PQ | PQ unweighted |" in md
    assert "caloreco evaluate --test" in md and f"events: {N_EVENTS}" in md
    assert "## Threshold scan: net" in md
    assert md.count("| truth | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 |") == 1


def test_summary_contents(run: dict[str, Any]) -> None:
    s = run["summary"]
    events = _events(run["data"])
    assert s["n_events"] == N_EVENTS and len(s["shards"]) == 2
    assert s["n_hits"] == sum(e.n_hits for e in events)
    assert s["torch_threads"] == torch.get_num_threads()
    assert list(s["methods"]) == ["truth", "clue", "net"]
    for res in s["methods"].values():
        t = res["timing"]
        assert t["wall_s"] > 0 and t["events_per_s"] == pytest.approx(N_EVENTS / t["wall_s"])
        assert t["ms_per_event"] == pytest.approx(1e3 * t["wall_s"] / N_EVENTS)
    grid = s["scan"]["net"]
    assert list(s["scan"]) == ["net"]
    assert len(grid["points"]) == len(SCAN_T_BETA) * len(SCAN_T_D)
    assert grid["best"]["pq"] == max(p["pq"] for p in grid["points"])


def test_truth_is_perfect(run: dict[str, Any]) -> None:
    m = run["summary"]["methods"]["truth"]["metrics"]
    for key in ("miou", "miou_weighted", "sq", "rq", "pq", "pq_unweighted"):
        assert m[key] == pytest.approx(1.0), key
    assert m["fp"] == 0 and m["fn"] == 0 and m["tp"] > 0
    assert m["response"]["ALL"]["mean"] == pytest.approx(1.0)


def test_clue_agrees_with_direct_evaluation(run: dict[str, Any]) -> None:
    ev = ClusteringEvaluator()
    for e in _events(run["data"]):
        ev.add(e.hits["truth_cluster"], clue_event(e, params=ClueParams.tuned_dtau()), e.hits["energy"],
               truth_types=e.clusters["type"], truth_energy=e.clusters["energy"])
    direct = ev.result()
    got = run["summary"]["methods"]["clue"]["metrics"]
    for key in ("miou", "miou_weighted", "sq", "rq", "pq", "sq_unweighted", "rq_unweighted",
                "pq_unweighted"):
        assert _same(got[key], direct[key]), key
    for key in ("tp", "fp", "fn", "n_hits", "n_events"):
        assert got[key] == direct[key], key
    for name, group in direct["response"].items():
        assert got["response"][name]["count"] == group["count"]
        assert _same(got["response"][name]["mean"], group["mean"]), name
    for curve in ("efficiency", "fake_rate"):
        assert got[curve]["n_selected"] == direct[curve]["n_selected"]
        assert got[curve]["n_total"] == direct[curve]["n_total"]


def test_rescan_reproduces_cluster(run: dict[str, Any]) -> None:
    net = _untrained_net()
    events = _events(run["data"])[:1]
    pred = net.cluster(events)
    again = net.rescan(net.clusterer.t_beta, net.clusterer.t_d)
    assert len(again) == 1 and np.array_equal(again[0], pred[0])
    assert net.last_beta[0].shape == (events[0].n_hits,)


def test_methods_follow_the_protocol() -> None:
    truth, clue = make_methods(["truth", "clue"])
    assert isinstance(truth, TruthMethod) and isinstance(clue, ClueMethod)
    assert isinstance(truth, Method) and isinstance(_untrained_net(), Method)


def test_bad_method_names() -> None:
    with pytest.raises(ConfigError, match="valid names are .*'spvcnn'.*'truth'"):
        make_methods(["truth", "dbscan"])
    with pytest.raises(InputFileError, match="does not exist"):
        make_methods(["gravnet"], models={"gravnet": "no/such/checkpoint.pt"})
    with pytest.raises(ConfigError, match="more than once"):
        make_methods(["clue", "clue"])
    with pytest.raises(ConfigError, match="not networks"):
        make_methods(["clue"], models={"clue": "x.pt"})
    with pytest.raises(ConfigError, match="non-empty list"):
        make_methods([])
    rescanner = _untrained_net()
    with pytest.raises(ConfigError, match="cluster\\(\\) call first"):
        rescanner.rescan(0.1, 0.7)


def test_evaluate_rejects_bad_arguments(dtau_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="distinct"):
        evaluate(dtau_dataset, [TruthMethod(), TruthMethod()], tmp_path)
    with pytest.raises(ConfigError, match="file names"):
        evaluate(dtau_dataset, [TruthMethod(name="a/b")], tmp_path)
    with pytest.raises(ConfigError, match="max_events"):
        evaluate(dtau_dataset, [TruthMethod()], tmp_path, max_events=0)
    with pytest.raises(ConfigError, match="at least one"):
        evaluate(dtau_dataset, [], tmp_path)

    class Short:
        name = "short"

        def cluster(self, events: list) -> list[np.ndarray]:
            return [np.zeros(3, np.int64) for _ in events]

    with pytest.raises(InvalidDataError, match="one integer label per hit"):
        evaluate(dtau_dataset, [Short()], tmp_path, max_events=1, scan=False, displays=0)
    assert list(tmp_path.iterdir()) == []


def test_pf_method(dtau_dataset: Path) -> None:
    from caloreco.clustering.pf import PFParams

    (pf,) = make_methods(["pf"])
    assert pf.params == PFParams.hgcal_like()
    event = _events(dtau_dataset)[0]
    (pred,) = pf.cluster([event])
    assert pred.dtype == np.int64 and pred.shape == (event.n_hits,)
    assert (pred >= 0).any() and pred.min() >= -1
