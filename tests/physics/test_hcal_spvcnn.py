"""HCAL barrel SPVCNN end to end: events -> PF targets -> train (hcal encoding) -> clusters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from caloreco.__main__ import entry
from caloreco.clustering.model_clustering import ModelClusterer
from caloreco.data.parquet import read_events
from caloreco.errors import ConfigError
from caloreco.geometry.registry import make_detector
from caloreco.models.hcal_encoding import HcalEncoding
from caloreco.physics.targets import pf_targets, with_pf_targets


@pytest.fixture(scope="module")
def hcal_pf_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 events of 3 charged pions in HB, converted to PF targets with ``caloreco pf-targets``."""
    from caloreco.simulation.production import DatasetSpec, simulate_dataset

    root = tmp_path_factory.mktemp("hcal")
    spec = DatasetSpec(preset="gun", preset_options={"particle": "pi+", "energy": (10.0, 40.0),
                                                     "eta": (-1.0, 1.0), "n_particles": 3},
                       detector="hcal-barrel", n_events=6, shards=2, seed=5)
    simulate_dataset(spec, root / "merged")
    assert entry(["pf-targets", "--data", str(root / "merged"), "--out", str(root / "pf")]) == 0
    return root


def test_pf_target_dataset_holds_the_pf_clusters(hcal_pf_dataset: Path) -> None:
    det = make_detector("hcal-barrel")
    manifest = json.loads((hcal_pf_dataset / "pf" / "manifest.json").read_text())
    assert manifest["targets"] == "pf" and manifest["n_events"] == 6
    for shard in manifest["shards"]:
        for src, dst in zip(read_events(hcal_pf_dataset / "merged" / shard["file"]),
                            read_events(hcal_pf_dataset / "pf" / shard["file"])):
            labels, _ = pf_targets(src, det)
            # same partition of the hits as the PF clusters (ids renumbered densely)
            pairs = {(int(a), int(b)) for a, b in zip(labels, dst.hits["truth_cluster"])}
            assert len(pairs) == len(np.unique(labels)) and dst.n_hits == src.n_hits


def test_event_without_pf_clusters(hcal_pf_dataset: Path) -> None:
    det = make_detector("hcal-barrel")
    ev = read_events(hcal_pf_dataset / "merged" / "events-00000.parquet")[0]
    hits = dict(ev.hits)
    one = np.argmin(hits["energy"])  # a single soft hit: no PF seed
    soft = ev.__class__.from_columns({k: np.asarray(v)[[one]] for k, v in hits.items()}, ev.clusters,
                                     ev.particles, event_id=ev.event_id, detector=ev.detector)
    pf = with_pf_targets(soft, det)
    assert pf.n_clusters == 0 and (pf.hits["truth_cluster"] == -1).all()


def test_train_hcal_encoding_then_cluster(hcal_pf_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert entry(["train", "--data", str(hcal_pf_dataset / "pf"), "--out", str(run), "--encoding", "hcal",
                  "--cr", "0.125", "--epochs", "1", "--max-events", "2", "--val-events", "1",
                  "--loss-weight", "repulsive=10", "--no-progress"]) == 0
    assert json.loads((run / "config.json").read_text())["encoding"] == {"kind": "hcal"}
    clusterer = ModelClusterer.from_checkpoint(run)
    assert isinstance(clusterer.encoding, HcalEncoding)
    events = read_events(hcal_pf_dataset / "pf" / "events-00001.parquet")
    preds = clusterer.cluster_events(events, batch_size=2)
    for ev, p in zip(events, preds):
        assert len(p.cluster_id) == ev.n_hits and p.cluster_id.min() >= -1
        assert ((p.beta >= 0) & (p.beta <= 1)).all()


def test_physics_accepts_an_hcal_checkpoint(hcal_pf_dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    from caloreco.physics.analysis import PhysicsConfig, run_physics

    run = tmp_path / "run"
    assert entry(["train", "--data", str(hcal_pf_dataset / "pf"), "--out", str(run), "--encoding", "hcal",
                  "--cr", "0.125", "--epochs", "1", "--max-events", "1", "--val-events", "1",
                  "--no-progress"]) == 0
    summary = run_physics(PhysicsConfig(process="ttbar", events=2, seed=4, methods=("truth", "pf", "spvcnn"),
                                        spvcnn_model=str(run), spvcnn_t_d=0.9), tmp_path / "phys")
    assert set(summary["methods"]) == {"truth", "pf", "spvcnn"}
    settings = summary["methods"]["spvcnn"]["settings"]
    assert settings["t_d"] == 0.9 and settings["r_max"] is None and settings["assign"] == "first"
    for m in summary["methods"].values():
        assert 0 <= m["clustered_energy_fraction"] <= 1
    assert summary["methods"]["truth"]["clustered_energy_fraction"] > 0.9
    assert "t_d = 0.9, rule first, locality cut none" in (tmp_path / "phys" / "physics.md").read_text()


def test_physics_refuses_a_model_of_the_other_detector() -> None:
    from caloreco.clustering.model_clustering import pretrained_path
    from caloreco.errors import ConfigError
    from caloreco.physics.analysis import check_model_detector, spvcnn_checkpoint

    check_model_detector(pretrained_path("spvcnn"), "hgcal")
    check_model_detector(spvcnn_checkpoint("hcal-barrel"), "hcal-barrel")  # the shipped HB model
    assert spvcnn_checkpoint("hgcal") == pretrained_path("spvcnn")
    with pytest.raises(ConfigError, match="'hgcal' hit encoding.*--encoding hcal"):
        check_model_detector(pretrained_path("spvcnn"), "hcal-barrel")


def test_physics_t_d_scan_reuses_the_network(tmp_path: Path) -> None:
    """The scan at the model's own t_d reproduces the main SPVCNN jet table exactly."""
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    from caloreco.physics.analysis import PhysicsConfig, run_physics, spvcnn_checkpoint
    from caloreco.training.checkpoint import load_checkpoint

    model = spvcnn_checkpoint("hcal-barrel")
    t_d = float(load_checkpoint(model).clustering["t_d"])
    summary = run_physics(PhysicsConfig(process="ttbar", events=3, seed=5, methods=("spvcnn",),
                                        spvcnn_model=str(model), spvcnn_t_d_scan=(t_d, 2.0)),
                          tmp_path / "phys")
    scan = summary["td_scan"]
    assert list(scan) == [f"{t_d:g}", "2"]
    main = [r for r in summary["methods"]["spvcnn"]["jets_vs_pt"]]
    assert [r["n"] for r in scan[f"{t_d:g}"]["jets_vs_pt"]] == [r["n"] for r in main]
    np.testing.assert_allclose([r["median"] for r in scan[f"{t_d:g}"]["jets_vs_pt"]],
                               [r["median"] for r in main], equal_nan=True)
    assert scan["2"]["all"]["n"] > 0
    assert "SPVCNN cluster radius t_d vs jets" in (tmp_path / "phys" / "physics.md").read_text()
    with pytest.raises(ConfigError, match="t_d_scan"):
        PhysicsConfig(methods=("truth",), spvcnn_t_d_scan=(0.7,))
