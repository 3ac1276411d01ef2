"""Session fixtures shared by the test packages: a tiny simulated data set.

The simulation is imported inside the fixtures so that tests not using them stay light.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# One intra-op thread per test process: `make test` runs 2 xdist workers on 2 cores, and
# OpenMP barriers of 2 x 2 threads on 2 busy cores stall small kernels by orders of magnitude.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


if TYPE_CHECKING:
    from caloreco.data.event import Event
    from caloreco.simulation.production import DatasetSpec

#: 20 GeV electrons at eta 2.2, phi 0.25 into a 0.5 rad HGCAL sector: 4 events, 2 shards.
TINY_SPEC: dict[str, Any] = dict(
    preset="gun", preset_options={"particle": "e-", "energy": 20.0, "eta": 2.2, "phi": 0.25},
    detector="hgcal", detector_options={"phi_min": 0.0, "phi_max": 0.5},
    n_events=4, shards=2, seed=1)


@pytest.fixture(scope="session")
def tiny_spec() -> DatasetSpec:
    """The :data:`TINY_SPEC` data set specification."""
    from caloreco.simulation.production import DatasetSpec

    return DatasetSpec(**TINY_SPEC)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory, tiny_spec: DatasetSpec) -> Path:
    """Directory with the shards and manifest of ``tiny_spec`` (do not modify)."""
    from caloreco.simulation.production import simulate_dataset

    out = tmp_path_factory.mktemp("tiny_dataset")
    simulate_dataset(tiny_spec, out)
    return out


@pytest.fixture(scope="session")
def tiny_events(tiny_spec: DatasetSpec) -> list[Event]:
    """The events of ``tiny_spec``, simulated in memory (do not modify)."""
    from caloreco.simulation.production import simulate_range

    return simulate_range(tiny_spec, 0, tiny_spec.n_events)


#: A few dtau events (two tau jets, ~11k hits each, ~40 % noise hits): 6 events, 2 shards.
DTAU_SPEC: dict[str, Any] = dict(preset="dtau", n_events=6, shards=2, seed=11)


@pytest.fixture(scope="session")
def dtau_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory with the shards and manifest of :data:`DTAU_SPEC` (do not modify)."""
    from caloreco.simulation.production import DatasetSpec, simulate_dataset

    out = tmp_path_factory.mktemp("dtau_dataset")
    simulate_dataset(DatasetSpec(**DTAU_SPEC), out)
    return out
