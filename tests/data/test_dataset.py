"""Tests of the PyTorch event dataset and the batch collation."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from caloreco.data.dataset import EventDataset, collate_events
from caloreco.data.event import Event
from caloreco.data.parquet import read_events, write_events
from caloreco.errors import ConfigError, InputFileError, InvalidDataError


@pytest.fixture(scope="module")
def dataset(tiny_dataset: Path) -> EventDataset:
    return EventDataset(tiny_dataset)


@pytest.fixture
def with_empty(tmp_path: Path, tiny_events: list[Event]) -> EventDataset:
    """Three events, the middle one without hits."""
    empty = tiny_events[1].select_hits(np.zeros(tiny_events[1].n_hits, dtype=bool))
    return EventDataset(write_events([tiny_events[0], empty, tiny_events[2]],
                                     tmp_path / "events.parquet"))


def test_length_and_order_across_shards(dataset: EventDataset, tiny_dataset: Path) -> None:
    assert [p.name for p in dataset.paths] == ["events-00000.parquet", "events-00001.parquet"]
    assert len(dataset) == 4 and dataset.counts.tolist() == [2, 2]
    assert [int(dataset[i]["event_id"]) for i in range(4)] == [0, 1, 2, 3]
    assert int(dataset[-1]["event_id"]) == 3
    with pytest.raises(IndexError):
        dataset[4]


def test_item_shapes_dtypes_and_values(dataset: EventDataset, tiny_dataset: Path) -> None:
    event = read_events(tiny_dataset / "events-00001.parquet")[1]
    item = dataset[3]
    n = event.n_hits
    assert item["features"].shape == (n, 6) and item["features"].dtype == torch.float32
    assert item["target"].shape == (n,) and item["target"].dtype == torch.int64
    assert item["energy"].dtype == torch.float32 and item["event_id"].dtype == torch.int64
    for j, key in enumerate(("energy", "x", "y", "z", "layer", "time")):
        np.testing.assert_array_equal(item["features"][:, j].numpy(),
                                      event.hits[key].astype(np.float32))
    np.testing.assert_array_equal(item["target"].numpy(), event.hits["truth_cluster"])
    np.testing.assert_array_equal(item["energy"].numpy(), event.hits["energy"])


def test_features_target_and_transform(tiny_dataset: Path) -> None:
    def log_energy(item: dict) -> dict:
        item["features"] = torch.log1p(item["features"] / 1e-3)
        return item

    ds = EventDataset(tiny_dataset, features=("energy", "energy_mip"), target="layer",
                      transform=log_energy, cache_shards=1)
    item = ds[0]
    assert item["features"].shape[1] == 2
    torch.testing.assert_close(item["features"][:, 0], torch.log1p(item["energy"] / 1e-3))
    assert item["target"].min() >= 1  # layers are 1-based
    assert int(ds[2]["event_id"]) == 2 and int(ds[0]["event_id"]) == 0  # cache of one shard


def test_collate_offsets_and_batch_vector(dataset: EventDataset) -> None:
    items = [dataset[i] for i in range(3)]
    n = [len(item["target"]) for item in items]
    out = collate_events(items)
    assert out["features"].shape == (sum(n), 6)
    assert out["offsets"].tolist() == [0, n[0], n[0] + n[1], sum(n)]
    assert out["batch"].tolist() == [0] * n[0] + [1] * n[1] + [2] * n[2]
    assert out["event_id"].tolist() == [0, 1, 2]
    for b, item in enumerate(items):
        a, e = out["offsets"][b], out["offsets"][b + 1]
        assert torch.equal(out["features"][a:e], item["features"])
        assert torch.equal(out["target"][a:e], item["target"])  # ids kept per event


def test_offset_targets_makes_ids_unique(dataset: EventDataset) -> None:
    items = [dataset[i] for i in range(3)]
    out = collate_events(items, offset_targets=True)
    shift = 0
    for b, item in enumerate(items):
        t = out["target"][out["offsets"][b]:out["offsets"][b + 1]]
        expected = torch.where(item["target"] >= 0, item["target"] + shift, item["target"])
        assert torch.equal(t, expected)
        shift += int(item["target"].max()) + 1
    ids = [set(out["target"][out["batch"] == b].tolist()) - {-1} for b in range(3)]
    assert all(ids) and not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])


def test_empty_event_in_a_batch(with_empty: EventDataset) -> None:
    empty = with_empty[1]
    assert empty["features"].shape == (0, 6) and empty["target"].shape == (0,)
    n0, n2 = len(with_empty[0]["target"]), len(with_empty[2]["target"])
    for offset_targets in (False, True):
        out = collate_events([with_empty[i] for i in range(3)], offset_targets=offset_targets)
        assert out["offsets"].tolist() == [0, n0, n0, n0 + n2]
        assert out["batch"].tolist() == [0] * n0 + [2] * n2
        assert out["features"].shape == (n0 + n2, 6)
    only_empty = collate_events([empty], offset_targets=True)
    assert only_empty["features"].shape == (0, 6) and only_empty["offsets"].tolist() == [0, 0]
    assert only_empty["batch"].dtype == torch.int64


def test_dataloader_iterates(dataset: EventDataset) -> None:
    loader = DataLoader(dataset, batch_size=3, num_workers=0,
                        collate_fn=partial(collate_events, offset_targets=True))
    batches = list(loader)
    assert [len(b["event_id"]) for b in batches] == [3, 1]
    assert sum(len(b["target"]) for b in batches) == sum(len(dataset[i]["target"])
                                                         for i in range(len(dataset)))


def test_bad_inputs(tmp_path: Path, tiny_dataset: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        EventDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no \\*.parquet"):
        EventDataset(tmp_path / "empty")
    with pytest.raises(InputFileError, match="does not exist"):
        EventDataset([tiny_dataset / "events-00000.parquet", tmp_path / "gone.parquet"])
    with pytest.raises(ConfigError, match="not hit columns"):
        EventDataset(tiny_dataset, features=("energy", "colour"))
    with pytest.raises(ConfigError, match="integer hit column"):
        EventDataset(tiny_dataset, target="energy")
    with pytest.raises(ConfigError, match="empty batch"):
        collate_events([])


def test_missing_optional_feature_names_the_file(tmp_path: Path,
                                                 tiny_events: list[Event]) -> None:
    plain = Event.from_columns({k: tiny_events[0].hits[k] for k in
                                ("x", "y", "z", "energy", "time", "layer", "cell_id",
                                 "truth_cluster")}, tiny_events[0].clusters, event_id=5)
    path = write_events([plain], tmp_path / "plain.parquet")
    with pytest.raises(InvalidDataError, match="energy_mip") as err:
        EventDataset(path, features=("energy_mip",))[0]
    assert err.value.source == str(path) and err.value.event == 5
