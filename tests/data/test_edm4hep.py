"""Tests of the EDM4hep reader on a real CLICdet file.

Reference: CLICdet full simulation and reconstruction (ddsim/Geant4, digitisation,
PandoraPFA) of single photons, ``clic_gamma_10GeV.root`` from github.com/key4hep/k4Clue
(Apache-2.0), 3 events in EDM4hep/podio format (../shared/data/README.md: ECAL hits per
event 147 endcap, 347 barrel, 183 endcap; PandoraClusters E = 3.762, 9.784, 5.741 GeV).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import awkward as ak
import numpy as np
import pytest
import uproot

from caloreco.data import edm4hep
from caloreco.data.edm4hep import read_edm4hep
from caloreco.data.event import Event
from caloreco.errors import ConfigError, InputFileError, InvalidDataError

CLIC = "edm4hep-clic/clic_gamma_10GeV.root"
PANDORA_CLUSTER_ENERGY = [3.762, 9.784, 5.741]  # GeV, from the README


@pytest.fixture(scope="module")
def path(shared_file: Callable[[str], Path]) -> Path:
    return shared_file(CLIC)


@pytest.fixture(scope="module")
def events(path: Path) -> list[Event]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cellID encodings must decode without warning
        return read_edm4hep(path)


def test_hit_counts(events: list[Event]) -> None:
    # default = every CalorimeterHit collection; only ECALEndcap/ECALBarrel have hits
    assert [e.n_hits for e in events] == [147, 347, 183]
    assert [e.event_id for e in events] == [0, 1, 2]


def test_default_is_all_calorimeter_hit_collections(path: Path, events: list[Event]) -> None:
    ecal = read_edm4hep(path, collections=["ECALEndcap", "ECALBarrel"])
    for a, b in zip(events, ecal):
        for key in ("x", "energy", "cell_id", "layer"):
            np.testing.assert_array_equal(np.sort(a.hits[key]), np.sort(b.hits[key]))


def test_positions_in_cm(events: list[Event]) -> None:
    endcap0, barrel, endcap2 = events
    # CLICdet ECAL barrel: inner radius 1.5 m, ~20 cm deep
    r = np.hypot(barrel.hits["x"], barrel.hits["y"])
    assert 150 < r.min() and r.max() < 175
    # ECAL endcaps start at |z| ~ 2.3 m
    for ev, sign in ((endcap0, -1), (endcap2, 1)):
        z = ev.hits["z"] * sign
        assert 230 < z.min() and z.max() < 250


def test_energy_matches_pandora_clusters(events: list[Event]) -> None:
    for ev, e_cluster in zip(events, PANDORA_CLUSTER_ENERGY):
        assert (ev.hits["energy"] > 0).all()
        assert ev.hits["energy"].sum() == pytest.approx(e_cluster, rel=0.03)


def test_cell_id_and_layer(path: Path, events: list[Event]) -> None:
    """cell_id round-trips to the uint64 cellID; layer equals the CaloHitType layer digits."""
    with uproot.open(path) as f:
        raw = f["events"].arrays(filter_name=["ECALBarrel.cellID", "ECALBarrel.type"])
    cell = np.asarray(raw["ECALBarrel.cellID"][1])
    hit_type = np.asarray(raw["ECALBarrel.type"][1])  # CHT: type + 10 id + 1000 layout + 1e4 layer
    barrel = events[1]
    np.testing.assert_array_equal(barrel.hits["cell_id"].view(np.uint64), cell)
    np.testing.assert_array_equal(barrel.hits["layer"], hit_type // 10000)
    for ev in events:
        assert ev.hits["layer"].min() >= 1 and ev.hits["layer"].max() <= 40


def test_truth_and_particles(events: list[Event]) -> None:
    for ev, e_cluster in zip(events, PANDORA_CLUSTER_ENERGY):
        assert (ev.hits["truth_cluster"] == -1).all() and ev.n_clusters == 0
        p = ev.particles
        assert p["pdg"].tolist() == [22] and p["cluster"].tolist() == [-1]
        # the "10 GeV" photons of this sample carry 3.7, 10.0 and 5.8 GeV
        assert p["energy"][0] == pytest.approx(e_cluster, rel=0.03)
        np.testing.assert_allclose(p["energy"] ** 2,
                                   p["px"] ** 2 + p["py"] ** 2 + p["pz"] ** 2, rtol=1e-5)


def test_empty_event_is_returned(path: Path) -> None:
    evs = read_edm4hep(path, collections=["ECALEndcap"], entry_start=1)
    assert [(e.event_id, e.n_hits) for e in evs] == [(1, 0), (2, 183)]
    assert evs[0].hits["cell_id"].dtype == np.int64


def test_layer_field_parsing() -> None:
    # implicit offsets (the VXD strings of the same file) and a signed field
    assert edm4hep._layer_field("system:5,side:-2,layer:6,module:11") == (7, 6, False)
    assert edm4hep._layer_field("system:0:8,barrel:8:3,layer:11:8,r:32:-16") == (11, 8, False)
    assert edm4hep._layer_field("system:8,x:-4") is None
    cells = np.array([0b1111 << 3, 0b0101 << 3], dtype=np.uint64)
    np.testing.assert_array_equal(edm4hep._decode(cells, 3, 4, True), [-1, 5])


@pytest.mark.parametrize("collections, message", [
    (["ECALBarel"], r"no collection 'ECALBarel'.*\['ECALBarrel'"),
    (["ECalBarrelCollection"], "SimCalorimeterHitData>, not edm4hep::CalorimeterHit"),
])
def test_bad_collection(path: Path, collections: list[str], message: str) -> None:
    with pytest.raises(InputFileError, match=message) as err:
        read_edm4hep(path, collections=collections)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("collections", [[], "ECALBarrel", ["ECALBarrel", "ECALBarrel"]])
def test_bad_collections_argument(path: Path, collections: list[str] | str) -> None:
    with pytest.raises(ConfigError, match="collections"):
        read_edm4hep(path, collections=collections)


def test_non_finite_position_is_invalid_data(path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    hit_arrays, particles, layers, entries = edm4hep._read_arrays(path, None, None, None)
    x = hit_arrays["ECALEndcap"]["position.x"]
    flat = ak.to_numpy(ak.flatten(x)).copy()
    flat[147 + 3] = np.inf  # hit 3 of event 2 (event 1 has no endcap hits)
    hit_arrays["ECALEndcap"]["position.x"] = ak.unflatten(flat, ak.num(x))
    monkeypatch.setattr(edm4hep, "_read_arrays",
                        lambda *a, **k: (hit_arrays, particles, layers, entries))
    with pytest.raises(InvalidDataError, match="'x'") as err:
        read_edm4hep(path)
    assert str(path) in str(err.value) and "event: 2" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.root"
    with pytest.raises(InputFileError, match="not found") as err:
        read_edm4hep(missing)
    assert str(missing) in str(err.value)


def test_text_file(text_as_root: Path) -> None:
    with pytest.raises(InputFileError, match="not a ROOT file") as err:
        read_edm4hep(text_as_root)
    assert str(text_as_root) in str(err.value)


def test_truncated_file(path: Path, truncated_copy: Callable[[Path], Path]) -> None:
    bad = truncated_copy(path)
    with pytest.raises(InputFileError, match="truncated") as err:
        read_edm4hep(bad)
    assert str(bad) in str(err.value)


def test_file_without_tree(root_without_tree: Path) -> None:
    with pytest.raises(InputFileError, match=r"no TTree 'events'.*other \(TTree\)") as err:
        read_edm4hep(root_without_tree)
    assert str(root_without_tree) in str(err.value)


def test_tree_without_calorimeter_hits(tmp_path: Path) -> None:
    bad = tmp_path / "no_hits.root"
    with uproot.recreate(bad) as f:
        tree = f.mktree("events", {"energy": "var * float32"})
        tree.extend({"energy": ak.Array([[1.0, 2.0], [3.0]])})
    with pytest.raises(InputFileError, match="no edm4hep::CalorimeterHit collection") as err:
        read_edm4hep(bad)
    assert str(bad) in str(err.value)
