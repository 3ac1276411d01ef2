"""The ``pythia`` simulation preset: species mapping, propagation into the simulation, shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pythia8mc")

from caloreco.cli import main  # noqa: E402
from caloreco.data.parquet import read_events  # noqa: E402
from caloreco.errors import ConfigError  # noqa: E402
from caloreco.generators.io import generator_path, iter_generator_file  # noqa: E402
from caloreco.generators.preset import PythiaConfig, simulation_pdg, to_simulation  # noqa: E402
from caloreco.generators.propagation import Surface  # noqa: E402
from caloreco.simulation.guns import make_generator  # noqa: E402
from caloreco.simulation.production import MANIFEST, DatasetSpec, simulate_dataset  # noqa: E402


def test_species_mapping() -> None:
    pdg = np.array([11, -11, 22, 13, 211, -321, 130, 2112, 2212, -2212, -2112, 310, 3222, 12, -14, 16])
    charge = np.array([-1, 1, 0, -1, 1, -1, 0, 0, 1, -1, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(simulation_pdg(pdg, charge),
                                  [11, -11, 22, 13, 211, -321, 130, 2112, 2212, -211, 130, 130, 211, 0, 0, 0])


def test_to_simulation_links_and_fates() -> None:
    cfg = PythiaConfig(process="ttbar", detector="hcal-barrel", min_energy=0.5)
    particles, gen = cfg.generate_with_record(np.random.default_rng([0, 3]))
    st = gen.stable
    sim = st["sim_index"] >= 0
    assert (st["fate"][sim] == 0).all() and (st["fate"][~sim] > 0).all()
    np.testing.assert_array_equal(st["sim_index"][sim], np.arange(len(particles)))
    assert (st["fate"][np.isin(np.abs(st["pdg"]), [12, 14, 16])] == 1).all()
    assert (st["e"][st["fate"] == 4] < 0.5).all()
    # simulated particles start on the HB front face with their generator energy
    np.testing.assert_allclose(np.hypot(particles.vx, particles.vy), 177.7, rtol=1e-9)
    np.testing.assert_allclose(particles.energy, np.maximum(st["e"][sim], particles.mass() + 1e-6))
    np.testing.assert_array_equal(particles.pdg, simulation_pdg(st["pdg"][sim], st["charge"][sim]))
    # momenta: |p| from the mapped mass, p_z of charged particles unchanged by the field
    p = np.sqrt(particles.px**2 + particles.py**2 + particles.pz**2)
    np.testing.assert_allclose(p, np.sqrt(particles.energy**2 - particles.mass() ** 2), rtol=1e-9)
    same = particles.pdg == st["pdg"][sim]
    np.testing.assert_allclose(particles.pz[same], st["pz"][sim][same], rtol=1e-6, atol=1e-9)
    # loopers: charged, with p_T below the 1.01 GeV needed to reach r = 1.777 m
    loop = st["fate"] == 2
    assert (st["charge"][loop] != 0).all() and (np.hypot(st["px"], st["py"])[loop] < 1.02).all()


def test_to_simulation_into_a_disc() -> None:
    cfg = PythiaConfig(process="zmumu")
    _, gen = cfg.generate_with_record(np.random.default_rng([1, 1]))
    disc = Surface("disc", z=319.8, r_min=319.8 / np.sinh(3.0), r_max=319.8 / np.sinh(1.5))
    particles = to_simulation(gen, disc)
    np.testing.assert_allclose(particles.vz, 319.8)
    r = np.hypot(particles.vx, particles.vy)
    assert (r >= disc.r_min).all() and (r < disc.r_max).all()


def test_preset_is_registered_and_validated() -> None:
    gen = make_generator("pythia", process="zmumu", pileup=50.0, detector="hgcal")
    assert isinstance(gen, PythiaConfig)
    with pytest.raises(ConfigError, match="process"):
        make_generator("pythia", process="higgs")
    with pytest.raises(ConfigError, match="pileup"):
        make_generator("pythia", pileup=-1.0)
    with pytest.raises(ConfigError, match="detector"):
        make_generator("pythia", detector="ecal")


def test_dataset_with_generator_truth(tmp_path: Path) -> None:
    spec = DatasetSpec(preset="pythia", preset_options={"process": "ttbar"}, detector="hcal-barrel",
                       n_events=3, shards=2, seed=4)
    manifest = simulate_dataset(spec, tmp_path / "a")
    assert manifest["generator"]["process"] == "ttbar"
    for shard in manifest["shards"]:
        events = read_events(tmp_path / "a" / shard["file"])
        gens = list(iter_generator_file(tmp_path / "a" / shard["generator_file"]))
        assert generator_path(tmp_path / "a" / shard["file"]) == tmp_path / "a" / shard["generator_file"]
        assert [e.event_id for e in events] == [i for i, _ in gens]
        for ev, (_, gen) in zip(events, gens):
            st = gen.stable
            sim = st["sim_index"] >= 0
            assert sim.sum() == len(ev.particles["pdg"])
            np.testing.assert_array_equal(ev.particles["pdg"], simulation_pdg(st["pdg"][sim], st["charge"][sim]))
            assert ev.n_hits > 50 and (ev.hits["truth_cluster"] >= 0).mean() > 0.8
            assert (np.abs(gen.record["pdg"]) == 6).any()
    # same seed: identical shards and generator files; readers of *.parquet see only the shards
    simulate_dataset(spec, tmp_path / "b")
    for shard in manifest["shards"]:
        for name in (shard["file"], shard["generator_file"]):
            assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").glob("*.parquet")) == [s["file"] for s in manifest["shards"]]
    # a smaller rerun removes the stale generator file too
    simulate_dataset(DatasetSpec(**{**spec.__dict__, "n_events": 1, "shards": 1}), tmp_path / "a")
    assert sorted(p.name for p in (tmp_path / "a" / "generator").iterdir()) == ["events-00000.parquet"]


def test_cli_simulate_pythia(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "z"
    assert main(["simulate", "--preset", "pythia", "--process", "zmumu", "--events", "2", "--detector", "hgcal",
                 "--truth", "particle", "--pt-hat-min", "30", "--out", str(out)]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["preset_options"] == {"process": "zmumu", "pileup": 0.0, "detector": "hgcal", "pt_hat_min": 30.0}
    assert manifest["simulation"]["truth"]["merge_shared_fraction"] > 1.0  # per-particle truth
    assert (out / "generator" / "events-00000.parquet").exists()
    assert "simulated 2 events" in capsys.readouterr().out
