"""``benchmarks/pileup_study.py``: the study's core on two tiny pileup points."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "pileup_study.py"


@pytest.fixture(scope="module")
def study() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pileup_study", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_soft_pileup_structure_and_growth(study: ModuleType, tmp_path: Path) -> None:
    result = study.run_study((0, 30), 2, seed=5, pileup_model="soft")
    assert result["settings"]["methods"] == ["spvcnn", "clue"] and result["settings"]["baseline"] == "clue"
    low, high = result["per_mu"]
    assert [low["mu"], high["mu"]] == [0.0, 30.0] and low["events"] == high["events"] == 2
    assert high["hits_mean"] > low["hits_mean"]
    assert low["pileup_hit_fraction"] == 0.0 and low["pileup_clusters_mean"] == 0.0
    assert 0.0 < high["pileup_hit_fraction"] < 1.0 and high["pileup_clusters_mean"] > 0
    for entry in result["per_mu"]:
        for name in ("spvcnn", "clue"):
            m = entry["methods"][name]
            for key in ("miou", "sq", "rq", "pq", "sq_hs", "rq_hs", "pq_hs"):
                assert 0.0 <= m[key] <= 1.0, (entry["mu"], name, key)
            assert m["ms_per_event"] > 0 and m["us_per_hit"] > 0
        assert entry["voxels_mean"] > 0 and entry["neighbours_per_voxel"] >= 0
    # without pileup the hard-scatter view is the full one
    for name in ("spvcnn", "clue"):
        assert low["methods"][name]["pq_hs"] == pytest.approx(low["methods"][name]["pq"])
    # hard events are the same generated particles at every mu: the mu = 0 event is
    # event i of the dtau preset, simulated with its own shower stream
    assert [r["event"] for r in result["per_event"]] == [0, 1, 0, 1]
    assert set(result["fits"]) == {"spvcnn", "clue", "spvcnn vs pairs"}
    fit = result["fits"]["clue"]
    assert math.isfinite(fit["b_ms_per_1k"]) and set(fit["mean_rel_residual"]) == {"0", "30"}
    table = study.format_markdown(result)
    assert "| 30 | spvcnn |" in table and "| clue | hits |" in table
    json.dumps(result, default=float)  # JSON-ready


def test_pythia_overlay_grows_with_mu(study: ModuleType) -> None:
    pytest.importorskip("pythia8mc")
    from caloreco.generators.propagation import calorimeter_surface
    from caloreco.geometry.registry import make_detector

    surface = calorimeter_surface(make_detector("hgcal"))
    none = study.minbias_overlay(0.0, np.random.default_rng(1), surface)
    some = study.minbias_overlay(3.0, np.random.default_rng(1), surface)
    assert len(none) == 0
    assert len(some) > 0 and some.is_pileup.all()
    # every particle starts on the HGCAL front face, inside the endcap
    np.testing.assert_allclose(some.vz, surface.z, rtol=1e-9)


def test_bad_arguments(study: ModuleType) -> None:
    from caloreco.errors import ConfigError

    with pytest.raises(ConfigError, match="pileup_model"):
        study.CrossingMaker("minbias")
    with pytest.raises(ConfigError, match="one per mu"):
        study.run_study((0, 50), [1, 2, 3])
    with pytest.raises(ConfigError, match=">= 0"):
        study.run_study((-1,), 1)
