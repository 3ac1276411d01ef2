"""train / cluster / export from the command line."""

from __future__ import annotations

import json

import numpy as np
import torch

from caloreco.__main__ import entry
from caloreco.data.parquet import read_events
from caloreco.data.predictions import read_predictions
from caloreco.training.checkpoint import load_checkpoint


def test_cluster_with_the_shipped_model_keeps_event_and_hit_order(dtau_dataset, tmp_path, capsys):
    out = tmp_path / "clusters"
    assert entry(["cluster", "--data", str(dtau_dataset), "--out", str(out)]) == 0
    assert "events/s" in capsys.readouterr().out
    summary = json.loads((out / "clusters.json").read_text())
    assert summary["n_events"] == 6
    for shard in sorted(dtau_dataset.glob("*.parquet")):
        events, rows = read_events(shard), read_predictions(out / shard.name)
        assert [e.event_id for e in events] == [r["event_id"] for r in rows]
        for e, r in zip(events, rows):
            assert len(r["cluster_id"]) == e.n_hits and len(r["beta"]) == e.n_hits
            assert r["cluster_id"].min() >= -1 and ((r["beta"] >= 0) & (r["beta"] <= 1)).all()
            ids = np.unique(r["cluster_id"][r["cluster_id"] >= 0])
            assert np.array_equal(r["clusters"]["cluster_id"], ids)
            sel = r["cluster_id"] >= 0
            np.testing.assert_allclose(r["clusters"]["energy"].sum(), e.hits["energy"][sel].sum(),
                                       rtol=1e-4)
            assert r["clusters"]["n_hits"].sum() == sel.sum()


def test_train_then_cluster_with_the_run_and_resume(dtau_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--data", str(dtau_dataset), "--out", str(run), "--epochs", "1",
            "--cr", "0.125", "--val-events", "1", "--no-progress"]
    assert entry(args) == 0
    assert (run / "best.pt").exists() and (run / "metrics.csv").exists()
    assert "best checkpoint" in capsys.readouterr().out
    assert entry(args + ["--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert entry(["cluster", "--data", str(dtau_dataset), "--model", str(run), "--out",
                  str(tmp_path / "c"), "--t-d", "0.5", "--r-max", "9",
                  "--position-scale", "12"]) == 0
    summary = json.loads((tmp_path / "c" / "clusters.json").read_text())
    assert summary["t_d"] == 0.5 and summary["r_max"] == 9.0
    assert summary["position_scale"] == 12.0


def test_train_with_the_contrast_term(dtau_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    assert entry(["train", "--data", str(dtau_dataset), "--out", str(run), "--epochs", "1",
                  "--cr", "0.125", "--val-events", "1", "--no-progress", "--loss-weight",
                  "contrast=0.3", "--contrast-k", "3", "--contrast-margin", "0.8"]) == 0
    config = load_checkpoint(run / "last.pt").training["config"]
    assert config["loss_weights"] == {"contrast": 0.3}
    assert (config["contrast_k"], config["contrast_margin"]) == (3, 0.8)
    assert entry(["train", "--data", str(dtau_dataset), "--out", str(tmp_path / "bad"),
                  "--loss-weight", "contrastive=1"]) == 2
    assert "pair, contrast, energy or signal" in capsys.readouterr().err


def test_export_torchscript(tmp_path, capsys):
    out = tmp_path / "net.pt"
    assert entry(["export", "--format", "torchscript", "--out", str(out)]) == 0
    assert "pre-processed maps" in capsys.readouterr().out
    assert isinstance(torch.jit.load(str(out)), torch.jit.ScriptModule)


def test_reco_user_errors(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_text("garbage")
    assert entry(["cluster", "--data", str(tmp_path), "--model", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ERROR: not a readable checkpoint") and "bad.pt" in err
    assert "Traceback" not in err
    assert entry(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_signal_head_from_train_to_cluster_output(dtau_dataset, tmp_path):
    """caloreco train --signal-head --t-signal, then caloreco cluster: the checkpoint
    records t_signal, the predictions hold the per-hit probability, and only hits at or
    above --t-signal are attached."""
    run = tmp_path / "run"
    assert entry(["train", "--data", str(dtau_dataset), "--out", str(run), "--epochs", "1",
                  "--cr", "0.125", "--val-events", "1", "--no-progress", "--signal-head",
                  "--loss-weight", "signal=2", "--attach-radius", "4", "--attach-passes", "2",
                  "--t-signal", "0.5"]) == 0
    assert load_checkpoint(run / "last.pt").clustering["t_signal"] == 0.5
    shard = sorted(dtau_dataset.glob("*.parquet"))[0]
    outs = {}
    for t in ("0", "0.6"):
        outs[t] = tmp_path / f"clusters_{t}"
        assert entry(["cluster", "--data", str(dtau_dataset), "--model", str(run / "last.pt"),
                      "--out", str(outs[t]), "--t-beta", "0.1", "--t-d", "0.3",
                      "--t-signal", t]) == 0
    assert json.loads((outs["0.6"] / "clusters.json").read_text())["t_signal"] == 0.6
    rows_all = read_predictions(outs["0"] / shard.name)
    rows_gated = read_predictions(outs["0.6"] / shard.name)
    for e, a, g in zip(read_events(shard), rows_all, rows_gated):
        assert len(g["signal"]) == e.n_hits and ((g["signal"] > 0) & (g["signal"] < 1)).all()
        np.testing.assert_array_equal(a["signal"], g["signal"])
        # the gate only holds hits back (those below it); the clustered ones keep their ids
        kept = g["cluster_id"] >= 0
        np.testing.assert_array_equal(g["cluster_id"][kept], a["cluster_id"][kept])
        lost = (a["cluster_id"] >= 0) & ~kept
        assert (g["signal"][lost] < 0.6).all()


def test_energy_head_from_train_to_cluster_output(dtau_dataset, tmp_path):
    """caloreco train --energy-head, then caloreco cluster: per-hit factors and per-cluster
    corrected energies (the factor at the cluster's highest-beta hit times its sum)."""
    run = tmp_path / "run"
    assert entry(["train", "--data", str(dtau_dataset), "--out", str(run), "--epochs", "1",
                  "--cr", "0.125", "--val-events", "1", "--no-progress", "--energy-head",
                  "--loss-weight", "energy=2"]) == 0
    out = tmp_path / "clusters"
    assert entry(["cluster", "--data", str(dtau_dataset), "--model", str(run / "last.pt"),
                  "--out", str(out), "--t-beta", "0.1", "--t-d", "0.7"]) == 0
    shard = sorted(dtau_dataset.glob("*.parquet"))[0]
    events, rows = read_events(shard), read_predictions(out / shard.name)
    seen = 0
    for e, r in zip(events, rows):
        f, cid, beta = r["energy_factor"], r["cluster_id"], r["beta"]
        assert len(f) == e.n_hits and (f > 0).all()
        for k, corr in zip(r["clusters"]["cluster_id"], r["clusters"]["energy_corrected"]):
            m = np.flatnonzero(cid == k)
            cp = m[np.argmax(beta[m])]
            np.testing.assert_allclose(corr, f[cp] * e.hits["energy"][m].sum(), rtol=1e-4)
            seen += 1
    assert seen > 0
