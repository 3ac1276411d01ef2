"""Tests of data-set production: reproducibility, manifest, spec validation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from caloreco.data.parquet import count_events, read_events
from caloreco.errors import ConfigError
from caloreco.simulation.production import MANIFEST, DatasetSpec, simulate_dataset


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_same_seed_gives_identical_files(tmp_path: Path, tiny_spec: DatasetSpec,
                                         tiny_dataset: Path) -> None:
    again = simulate_dataset(tiny_spec, tmp_path / "again")
    assert _files(tmp_path / "again") == _files(tiny_dataset)  # shards and manifest
    # the returned manifest holds tuples where the JSON file has lists
    assert json.loads(json.dumps(again)) == json.loads((tiny_dataset / MANIFEST).read_text())


def test_workers_do_not_change_the_output(tmp_path: Path, tiny_spec: DatasetSpec,
                                          tiny_dataset: Path) -> None:
    simulate_dataset(tiny_spec, tmp_path / "parallel", workers=2)
    assert _files(tmp_path / "parallel") == _files(tiny_dataset)


def test_other_seed_differs(tmp_path: Path, tiny_spec: DatasetSpec, tiny_dataset: Path) -> None:
    manifest = simulate_dataset(replace(tiny_spec, seed=2), tmp_path / "seed2")
    assert manifest["seed"] == 2
    for shard in manifest["shards"]:
        assert (tmp_path / "seed2" / shard["file"]).read_bytes() != \
            (tiny_dataset / shard["file"]).read_bytes()


def test_manifest_matches_the_files(tiny_spec: DatasetSpec, tiny_dataset: Path) -> None:
    manifest = json.loads((tiny_dataset / MANIFEST).read_text())
    assert sorted(p.name for p in tiny_dataset.glob("*.parquet")) == \
        [s["file"] for s in manifest["shards"]] == ["events-00000.parquet", "events-00001.parquet"]
    assert manifest["n_events"] == tiny_spec.n_events and manifest["seed"] == tiny_spec.seed
    ids = []
    for shard in manifest["shards"]:
        events = read_events(tiny_dataset / shard["file"])
        assert count_events(tiny_dataset / shard["file"]) == shard["n_events"] == len(events)
        assert shard["n_hits"] == sum(e.n_hits for e in events) > 0
        assert events[0].event_id == shard["first_event"]
        ids += [e.event_id for e in events]
    assert ids == list(range(tiny_spec.n_events))
    assert manifest["n_hits"] == sum(s["n_hits"] for s in manifest["shards"])


@pytest.mark.parametrize("change, message", [
    ({"n_events": 0}, "must be >= 1"),
    ({"shards": 5}, "between 1 and the number of events"),
    ({"shards": 0}, "between 1 and the number of events"),
    ({"preset_options": {"particle": "e-", "colour": "red"}}, r"no option\(s\) \['colour'\]"),
    ({"preset": "nonsense"}, "unknown preset"),
])
def test_bad_spec_raises_config_error(tiny_spec: DatasetSpec, change: dict[str, object],
                                      message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        replace(tiny_spec, **change)
