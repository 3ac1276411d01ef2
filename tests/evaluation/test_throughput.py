"""Throughput measurement and ``caloreco bench``."""

from __future__ import annotations

import json

import pytest

from caloreco.__main__ import entry
from caloreco.errors import ConfigError
from caloreco.evaluation.throughput import format_table, measure


def test_rows_per_method_and_batch_size(tiny_events):
    rows = measure(["clue", "spvcnn", "truth"], tiny_events, batch_sizes=[1, 2], repeat=1)
    assert [(r.method, r.batch_size) for r in rows] == [("clue", 1), ("spvcnn", 1), ("spvcnn", 2),
                                                         ("truth", 1)]
    mean_hits = sum(e.n_hits for e in tiny_events) / len(tiny_events)
    for r in rows:
        assert r.events == len(tiny_events) and r.hits_per_event == pytest.approx(mean_hits)
        assert r.events_per_s == pytest.approx(1e3 / r.ms_per_event)
        assert r.hits_per_s == pytest.approx(r.events_per_s * mean_hits)
    assert rows[0].ratio_to_baseline == 1.0
    assert rows[1].ratio_to_baseline == pytest.approx(rows[1].events_per_s / rows[0].events_per_s)
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| spvcnn | cpu | 2 |" in table


def test_bad_arguments(tiny_events):
    with pytest.raises(ConfigError, match="baseline 'clue' is not among"):
        measure(["truth"], tiny_events)
    with pytest.raises(ConfigError, match="at least one event"):
        measure(["truth"], [], baseline=None)
    with pytest.raises(ConfigError, match="batch sizes"):
        measure(["truth"], tiny_events, batch_sizes=[0], baseline=None)


def test_bench_command_writes_json(dtau_dataset, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert entry(["bench", "--data", str(dtau_dataset), "--events", "2", "--methods", "clue,pf",
                  "--repeat", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| clue | cpu | 1 |" in text and "| pf | cpu | 1 |" in text
    report = json.loads(out.read_text())
    assert report["events"] == 2 and [r["method"] for r in report["rows"]] == ["clue", "pf"]
    assert entry(["bench", "--data", str(dtau_dataset), "--methods", "pf", "--baseline",
                  "clue"]) == 2
    assert "not among" in capsys.readouterr().err


def test_dataset_detector_from_manifest(dtau_dataset, tmp_path):
    """``evaluate`` sets up PF clustering for the detector the data were simulated for."""
    from caloreco.errors import InputFileError
    from caloreco.evaluation.report import dataset_detector

    assert dataset_detector(dtau_dataset) == "hgcal"
    assert dataset_detector(sorted(dtau_dataset.glob("*.parquet"))[0]) == "hgcal"
    (tmp_path / "hcal").mkdir()
    (tmp_path / "hcal" / "manifest.json").write_text('{"detector": "hcal-barrel"}')
    assert dataset_detector(tmp_path / "hcal") == "hcal-barrel"
    assert dataset_detector(tmp_path) == "hgcal"  # no manifest: a converted foreign file
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(InputFileError, match="manifest"):
        dataset_detector(tmp_path / "bad")
