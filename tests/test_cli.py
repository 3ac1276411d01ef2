"""The command line: help, simulate -> display round trip, convert, and user errors."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from caloreco.__main__ import entry

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COMMANDS = ["simulate", "convert", "display", "geometry", "validate", "demo", "train", "cluster", "export"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        entry([command, "--help"])
    assert exc.value.code == 0
    assert "usage: caloreco " + command in capsys.readouterr().out


def _simulate(out: Path, *extra: str) -> int:
    return entry(["simulate", "--preset", "gun", "--particle", "e-", "--energy", "30", "--eta", "2.2",
                  "--events", "3", "--shards", "2", "--seed", "5", "--out", str(out), *extra])


def test_simulate_display_and_reproducibility(tmp_path, capsys):
    assert _simulate(tmp_path / "a") == 0
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["n_events"] == 3 and len(manifest["shards"]) == 2
    assert _simulate(tmp_path / "b") == 0
    for shard in manifest["shards"]:
        assert (tmp_path / "a" / shard["file"]).read_bytes() == (tmp_path / "b" / shard["file"]).read_bytes()
    assert entry(["display", str(tmp_path / "a" / "events-00000.parquet"), "--event", "0", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "events-00000-event0.png").stat().st_size > 10_000
    assert (tmp_path / "events-00000-event0.html").exists()


def test_dtau_preset_from_the_command_line(tmp_path):
    assert entry(["simulate", "--preset", "dtau", "--events", "1", "--out", str(tmp_path), "--pileup", "5"]) == 0
    assert json.loads((tmp_path / "manifest.json").read_text())["n_hits"] > 5000


@pytest.mark.skipif(not (SHARED / "edm4hep-clic").exists(), reason="shared data not present")
def test_convert_edm4hep(tmp_path, capsys):
    src = SHARED / "edm4hep-clic" / "clic_gamma_10GeV.root"
    assert entry(["convert", str(src), "--format", "edm4hep", "--out", str(tmp_path / "out")]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["n_hits"] == 147 + 347 + 183


def _error(argv: list[str], capsys) -> str:
    code = entry(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("ERROR: ") and "Traceback" not in err
    return err


def test_user_errors_are_one_line_not_tracebacks(tmp_path, capsys):
    err = _error(["display", str(tmp_path / "missing.parquet")], capsys)
    assert "missing.parquet" in err
    (tmp_path / "text.parquet").write_text("not parquet")
    assert "text.parquet" in _error(["display", str(tmp_path / "text.parquet")], capsys)
    assert "graviton" in _error(["simulate", "--preset", "gun", "--particle", "graviton", "--events", "1",
                                 "--out", str(tmp_path / "x")], capsys)
    assert "text.parquet" in _error(["convert", str(tmp_path / "text.parquet"), "--format", "edm4hep", "--out",
                                     str(tmp_path / "y")], capsys)
    _simulate(tmp_path / "ok")
    assert "out of range" in _error(["display", str(tmp_path / "ok" / "events-00000.parquet"), "--event", "99"], capsys)


def test_bad_argument_values_are_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        entry(["simulate", "--events", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit):
        entry(["simulate", "--events", "2", "--energy", "ten", "--out", str(tmp_path)])
    assert "expected" in capsys.readouterr().err


def test_demo_clustering_step_runs_cluster_and_evaluate(dtau_dataset, tmp_path, capsys):
    """The demo's clustering step (what ``make demo`` runs after simulating): ``caloreco
    cluster`` with every option at its command-line default, then the comparison table."""
    import shutil

    from caloreco.cli import _demo_clustering

    shutil.copytree(dtau_dataset, tmp_path / "data")
    _demo_clustering(tmp_path, argparse.Namespace())
    summary = json.loads((tmp_path / "clusters" / "clusters.json").read_text())
    assert summary["n_events"] == 6 and summary["r_max"] is not None  # the shipped cut
    printed = capsys.readouterr().out
    assert "| spvcnn |" in printed and "| clue |" in printed
