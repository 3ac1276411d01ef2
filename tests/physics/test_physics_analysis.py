"""End to end: Pythia events -> HCAL barrel simulation -> truth / PF clusters -> jets, recoil."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

from caloreco.cli import main  # noqa: E402
from caloreco.errors import ConfigError, InputFileError  # noqa: E402
from caloreco.physics.analysis import PhysicsConfig, load_dataset, run_physics  # noqa: E402
from caloreco.physics.clusters import clusters_from_labels  # noqa: E402
from caloreco.physics.jets import antikt_jets, jet_pairs  # noqa: E402


@pytest.fixture(scope="module")
def ttbar_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("physics_ttbar")
    summary = run_physics(PhysicsConfig(process="ttbar", events=6, seed=3), out)
    return out, summary


def _all_jets(summary: dict, method: str) -> dict:
    rows = [r for r in summary["methods"][method]["jets_vs_pt"] if r["n"] > 0]
    return {"n": sum(r["n"] for r in rows), "median": np.average([r["median"] for r in rows],
                                                                   weights=[r["n"] for r in rows])}


def test_report_files_and_jet_response(ttbar_run: tuple[Path, dict]) -> None:
    out, summary = ttbar_run
    for name in ("physics.md", "physics.json", "jets.parquet", "neutral.parquet", "jet_response.png",
                 "jet_response_eta.png", "data/manifest.json", "data/generator/events-00000.parquet"):
        assert (out / name).exists(), name
    assert json.loads((out / "physics.json").read_text())["n_events"] == 6
    assert "## pf" in (out / "physics.md").read_text()
    truth, pf = _all_jets(summary, "truth"), _all_jets(summary, "pf")
    eff = summary["methods"]["truth"]["jet_efficiency"]
    assert eff["n_gen"] >= 4 and eff["n_matched"] >= 0.8 * eff["n_gen"]
    # EM-scale barrel calorimeter behind a 3.8 T field: hadrons respond at ~0.87, photons ~1,
    # tracks below 1 GeV never arrive and soft ones bend out of the cone -> ~0.75
    assert 0.6 < truth["median"] < 0.95
    assert abs(pf["median"] - truth["median"]) < 0.1  # PF re-finds the showers


def test_calorimeter_scale_of_truth_clusters(ttbar_run: tuple[Path, dict]) -> None:
    """Against jets of the particles *entering* the calorimeter (impact direction, generator
    energy; no field or acceptance losses) the truth-cluster jets respond at the calorimeter
    scale: single pions ~0.87 and photons ~1.0-1.1 at EM scale above 20 GeV, baryons
    shower their kinetic energy only and the softest deposits fall below the zero
    suppression, so ~0.8 (0.81 on 20 events of seed 0)."""
    out, _ = ttbar_run
    events, _, _ = load_dataset(out / "data")
    ratios = []
    for ev in events:
        p = ev.particles
        keep = np.abs(p["pdg"]) != 13
        d = np.column_stack([p["vx"], p["vy"], p["vz"]])[keep].astype(np.float64)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        e = p["energy"][keep].astype(np.float64)
        entering = antikt_jets(np.column_stack([e[:, None] * d, e]), pt_min=20.0)
        clusters, _ = clusters_from_labels(ev.hits, ev.hits["truth_cluster"])
        reco = antikt_jets(clusters.four_momenta(), pt_min=5.0)
        pairs = jet_pairs(entering, reco)
        inside = np.abs(pairs["eta_gen"]) < 0.9
        ratios.extend((pairs["e_reco"] / pairs["e_gen"])[inside])
    ratios = np.asarray(ratios)
    assert np.isfinite(ratios).sum() >= 4
    assert 0.7 < np.nanmedian(ratios) < 1.05


def test_zmumu_recoil_and_data_reuse(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["physics", "--out", str(tmp_path / "z"), "--process", "zmumu", "--events", "8",
                 "--seed", "5"]) == 0
    assert "recoil of 8 Z events" in capsys.readouterr().out
    summary = json.loads((tmp_path / "z" / "physics.json").read_text())
    rec = summary["methods"]["truth"]["recoil_vs_qt"]
    assert sum(r["n"] for r in rec) == 8
    assert (tmp_path / "z" / "recoil.png").exists()
    ref = summary["recoil_reference_vs_qt"]
    assert sum(r["n"] for r in ref) == 8
    # reading the data set back gives the same numbers, with the data set's own description
    assert main(["physics", "--out", str(tmp_path / "again"), "--data", str(tmp_path / "z" / "data"),
                 "--process", "ttbar"]) == 0
    again = json.loads((tmp_path / "again" / "physics.json").read_text())
    assert again["config"]["process"] == "zmumu"
    assert again["methods"]["pf"]["recoil_vs_qt"] == summary["methods"]["pf"]["recoil_vs_qt"]


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spvcnn"):
        PhysicsConfig(methods=("truth", "spvcnn"))
    with pytest.raises(ConfigError, match="methods"):
        PhysicsConfig(methods=("clue",))
    with pytest.raises(ConfigError, match="detector"):
        PhysicsConfig(detector="ecal")
    with pytest.raises(InputFileError, match="manifest"):
        run_physics(PhysicsConfig(), tmp_path / "out", data=tmp_path)
    # a data set without generator truth (a particle gun) is refused
    assert main(["simulate", "--preset", "gun", "--particle", "pi+", "--energy", "20", "--events", "1",
                 "--detector", "hcal-barrel", "--out", str(tmp_path / "gun")]) == 0
    with pytest.raises(InputFileError, match="generator truth"):
        run_physics(PhysicsConfig(), tmp_path / "out", data=tmp_path / "gun")


def test_spvcnn_checkpoint_on_hgcal(tmp_path: Path) -> None:
    """The network path: the shipped HGCAL SPVCNN stands in for a trained HCAL model."""
    from caloreco.clustering.model_clustering import pretrained_path

    summary = run_physics(PhysicsConfig(process="ttbar", events=2, detector="hgcal", seed=1,
                                        methods=("truth", "spvcnn"), spvcnn_model=str(pretrained_path("spvcnn"))),
                          tmp_path)
    assert list(summary["methods"]) == ["truth", "spvcnn"]
    assert summary["eta_variable"] == "eta" and summary["seconds"]["spvcnn_clustering"] > 0
    assert "## spvcnn" in (tmp_path / "physics.md").read_text()
