"""Tests of the HGCalAnalysis ntuple reader on a real CMS file.

Reference: CMS Phase-2 HGCAL full simulation (CMSSW + Geant4), HGCalAnalysis reco-ntuple
``partGun_PDGid13_x2_E35.0To35.0_NTUP_1.root`` from github.com/lgray/hgcal_ldrd (BSD-3),
two events with two 35 GeV muons each, one per endcap (../shared/data/README.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import awkward as ak
import numpy as np
import pytest
import uproot

from caloreco.data import cmssw_ntuple
from caloreco.data.cmssw_ntuple import read_cmssw_ntuple
from caloreco.data.event import ClusterType, Event
from caloreco.errors import InputFileError, InvalidDataError
from caloreco.geometry.cells import CellType

NTUPLE = "cmssw-hgcal-ntuple/partGun_PDGid13_x2_E35.0To35.0_NTUP_1.root"


@pytest.fixture(scope="module")
def path(shared_file: Callable[[str], Path]) -> Path:
    return shared_file(NTUPLE)


@pytest.fixture(scope="module")
def events(path: Path) -> list[Event]:
    return read_cmssw_ntuple(path)


def test_hit_counts_and_ids(events: list[Event]) -> None:
    assert [e.n_hits for e in events] == [31444, 31592]
    assert [e.event_id for e in events] == [0, 1]
    assert all(e.detector == "cmssw-hgcal" for e in events)


def test_hits_are_physical(events: list[Event]) -> None:
    for ev in events:
        h = ev.hits
        assert (h["energy"] > 0).all()
        # HGCAL sits at 320 < |z| < 520 cm in both endcaps; positions are stored in cm
        assert 315 < np.abs(h["z"]).min() and np.abs(h["z"]).max() < 520
        assert (h["z"] > 0).any() and (h["z"] < 0).any()
        assert np.hypot(h["x"], h["y"]).max() < 300


def test_layers_follow_the_detid(events: list[Event]) -> None:
    """rechit_layer is 1..52: the DetId layer, plus 28 for the CE-H (silicon and scintillator)."""
    for ev in events:
        layer = ev.hits["layer"].astype(np.int64)
        detid = ev.hits["cell_id"]
        det = detid >> 28  # 8 CE-E silicon, 9 CE-H silicon, 10 CE-H scintillator
        assert set(np.unique(det)) == {8, 9, 10}
        si_layer = (detid >> 20) & 0x1F  # HGCSiliconDetId
        sc_layer = (detid >> 17) & 0x1F  # HGCScintillatorDetId
        expected = np.select([det == 8, det == 9], [si_layer, si_layer + 28], sc_layer + 28)
        np.testing.assert_array_equal(layer, expected)
        assert layer.min() >= 1 and layer.max() <= 52


def test_cell_type_matches_detid(events: list[Event]) -> None:
    for ev in events:
        detid, cell_type = ev.hits["cell_id"], ev.hits["cell_type"]
        det = detid >> 28
        si = det != 10
        np.testing.assert_array_equal(cell_type[si], (detid[si] >> 26) & 0x3)
        assert (cell_type[~si] == CellType.SCINTILLATOR).all()
        assert set(np.unique(cell_type)) == {0, 1, 2, 3}


def test_truth_clusters_are_the_two_muons(events: list[Event], path: Path) -> None:
    with uproot.open(path) as f:
        idx = f["ana/hgc"]["simcluster_hits_indices"].array()
    for ev, sim_idx in zip(events, idx):
        c = ev.clusters
        assert ev.n_clusters == 2
        assert sorted(c["pdg"].tolist()) == [-13, 13]
        assert (c["type"] == ClusterType.MIP).all()
        np.testing.assert_allclose(c["energy"], 35.0)
        tc = ev.hits["truth_cluster"]
        assert tc.min() >= -1 and tc.max() <= 1
        # every simcluster index >= 0 gives one truth hit (the two muons share no rechit)
        n_truth = [int(np.sum(np.asarray(s) >= 0)) for s in sim_idx]
        assert [int(np.sum(tc == k)) for k in range(2)] == n_truth
        assert (ev.hits["truth_cluster2"] == -1).all()
        np.testing.assert_allclose(ev.hits["truth_fraction"][tc >= 0], 1.0)
        for k in range(2):
            mine = tc == k
            # all fractions are 1, so the deposit is the plain energy sum of its hits
            assert c["deposited"][k] == pytest.approx(ev.hits["energy"][mine].sum(), rel=1e-5)
            # one muon per endcap: its hits lie on the side its momentum points to
            assert (np.sign(ev.hits["z"][mine]) == np.sign(c["pz"][k])).all()
    np.testing.assert_allclose([e.clusters["deposited"] for e in events],
                               [[2.76886, 3.65095], [4.23870, 2.24201]], rtol=1e-4)


def test_particles_match_clusters(events: list[Event]) -> None:
    for ev in events:
        p, c = ev.particles, ev.clusters
        assert sorted(p["pdg"].tolist()) == [-13, 13]
        np.testing.assert_allclose(p["energy"], 35.0)
        assert sorted(p["cluster"].tolist()) == [0, 1]
        np.testing.assert_array_equal(c["pdg"][p["cluster"]], p["pdg"])
        np.testing.assert_allclose(c["pz"][p["cluster"]], p["pz"], rtol=1e-5)
        assert np.abs(p["vz"]).max() < 10  # beam spot [cm]


def test_entry_range(path: Path) -> None:
    [ev] = read_cmssw_ntuple(path, entry_start=1)
    assert (ev.event_id, ev.n_hits) == (1, 31592)
    assert read_cmssw_ntuple(path, entry_start=0, entry_stop=0) == []


def test_non_finite_energy_is_invalid_data(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays, first = cmssw_ntuple._read_arrays(path, "ana/hgc", None, None)
    energy = arrays["rechit_energy"]
    flat = ak.to_numpy(ak.flatten(energy)).copy()
    flat[31444 + 7] = np.nan  # hit 7 of the second event
    arrays["rechit_energy"] = ak.unflatten(flat, ak.num(energy))
    monkeypatch.setattr(cmssw_ntuple, "_read_arrays", lambda *a, **k: (arrays, first))
    with pytest.raises(InvalidDataError, match="'energy'") as err:
        read_cmssw_ntuple(path)
    assert str(path) in str(err.value) and "event: 1" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.root"
    with pytest.raises(InputFileError, match="not found") as err:
        read_cmssw_ntuple(missing)
    assert str(missing) in str(err.value)


def test_text_file(text_as_root: Path) -> None:
    with pytest.raises(InputFileError, match="not a ROOT file") as err:
        read_cmssw_ntuple(text_as_root)
    assert str(text_as_root) in str(err.value)


def test_truncated_file(path: Path, truncated_copy: Callable[[Path], Path]) -> None:
    bad = truncated_copy(path)
    with pytest.raises(InputFileError, match="truncated") as err:
        read_cmssw_ntuple(bad)
    assert str(bad) in str(err.value)


def test_file_without_tree(root_without_tree: Path) -> None:
    with pytest.raises(InputFileError, match="no TTree 'ana/hgc'.*other \\(TTree\\)") as err:
        read_cmssw_ntuple(root_without_tree)
    assert str(root_without_tree) in str(err.value)


def test_tree_without_branches(tmp_path: Path) -> None:
    bad = tmp_path / "partial.root"
    with uproot.recreate(bad) as f:
        tree = f.mktree("ana/hgc", {"rechit_x": "var * float32"})
        tree.extend({"rechit_x": ak.Array([[1.0, 2.0], [3.0]])})
    with pytest.raises(InputFileError, match="lacks .*'rechit_y'") as err:
        read_cmssw_ntuple(bad)
    assert str(bad) in str(err.value)


def test_rntuple_is_not_the_ntuple(tmp_path: Path) -> None:
    bad = tmp_path / "rntuple.root"
    with uproot.recreate(bad) as f:
        f["ana/hgc"] = {"rechit_x": np.arange(3.0)}  # uproot writes an RNTuple here
    with pytest.raises(InputFileError, match="not the TTree"):
        read_cmssw_ntuple(bad)
