"""Tests of the conversion of external files into caloreco Parquet shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from caloreco.data.cmssw_ntuple import read_cmssw_ntuple
from caloreco.data.convert import FORMATS, MANIFEST, convert_file
from caloreco.data.parquet import read_events
from caloreco.errors import ConfigError, InputFileError

NTUPLE = "cmssw-hgcal-ntuple/partGun_PDGid13_x2_E35.0To35.0_NTUP_1.root"
CLIC = "edm4hep-clic/clic_gamma_10GeV.root"


def test_cmssw_ntuple_round_trip(tmp_path: Path, shared_file: Callable[[str], Path]) -> None:
    source = shared_file(NTUPLE)
    manifest = convert_file(source, "cmssw-ntuple", tmp_path, events_per_shard=1)
    assert manifest == json.loads((tmp_path / MANIFEST).read_text())
    assert (manifest["source"], manifest["format"], manifest["collections"]) == \
        (source.name, "cmssw-ntuple", None)
    assert (manifest["n_events"], manifest["n_hits"]) == (2, 31444 + 31592)
    assert manifest["shards"] == [
        {"file": "events-00000.parquet", "first_event": 0, "n_events": 1, "n_hits": 31444},
        {"file": "events-00001.parquet", "first_event": 1, "n_events": 1, "n_hits": 31592}]
    back = [e for s in manifest["shards"] for e in read_events(tmp_path / s["file"])]
    assert [(e.event_id, e.n_hits, e.detector) for e in back] == \
        [(0, 31444, "cmssw-hgcal"), (1, 31592, "cmssw-hgcal")]
    original = read_cmssw_ntuple(source, entry_start=1)[0]
    for key, column in original.hits.items():
        np.testing.assert_array_equal(back[1].hits[key], column, err_msg=key)
    np.testing.assert_array_equal(back[1].clusters["energy"], original.clusters["energy"])


def test_edm4hep_keeps_empty_events(tmp_path: Path, shared_file: Callable[[str], Path]) -> None:
    manifest = convert_file(shared_file(CLIC), "edm4hep", tmp_path, collections=["ECALEndcap"],
                            events_per_shard=2)
    assert manifest["collections"] == ["ECALEndcap"]
    assert [(s["first_event"], s["n_events"]) for s in manifest["shards"]] == [(0, 2), (2, 1)]
    back = [e for s in manifest["shards"] for e in read_events(tmp_path / s["file"])]
    assert [(e.event_id, e.n_hits) for e in back] == [(0, 147), (1, 0), (2, 183)]


def test_bad_arguments(tmp_path: Path, shared_file: Callable[[str], Path]) -> None:
    with pytest.raises(ConfigError, match="fmt must be one of") as err:
        convert_file(tmp_path / "x.root", "lcio", tmp_path / "out")
    assert all(f in str(err.value) for f in FORMATS)
    with pytest.raises(ConfigError, match="events_per_shard"):
        convert_file(tmp_path / "x.root", "edm4hep", tmp_path / "out", events_per_shard=0)
    with pytest.raises(ConfigError, match="'edm4hep' only"):
        convert_file(tmp_path / "x.root", "cmssw-ntuple", tmp_path / "out",
                     collections=["ECALEndcap"])
    with pytest.raises(InputFileError, match="file not found"):
        convert_file(tmp_path / "x.root", "cmssw-ntuple", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_refuses_an_existing_data_set(tmp_path: Path,
                                      shared_file: Callable[[str], Path]) -> None:
    source = shared_file(CLIC)
    convert_file(source, "edm4hep", tmp_path)
    with pytest.raises(ConfigError, match="already holds a data set"):
        convert_file(source, "edm4hep", tmp_path)
