"""Tests of the Parquet event shards: exact round trip, atomic writes, broken files."""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caloreco.data.event import (
    CLUSTER_FIELDS,
    HIT_FIELDS,
    OPTIONAL_HIT_FIELDS,
    PARTICLE_FIELDS,
    Event,
)
from caloreco.data.parquet import count_events, iter_events, read_events, write_events
from caloreco.errors import InputFileError, InvalidDataError

SCHEMAS = {"hits": {**HIT_FIELDS, **OPTIONAL_HIT_FIELDS}, "clusters": CLUSTER_FIELDS,
           "particles": PARTICLE_FIELDS}


def _empty(event: Event) -> Event:
    """``event`` without hits (every hit column kept, zero rows; truth tables kept)."""
    return event.select_hits(np.zeros(event.n_hits, dtype=bool))


def _assert_same(a: Event, b: Event) -> None:
    assert (a.event_id, a.detector) == (b.event_id, b.detector)
    for table in SCHEMAS:
        ta, tb = getattr(a, table), getattr(b, table)
        assert list(ta) == list(tb), table
        for key in ta:
            assert ta[key].dtype == tb[key].dtype, (table, key)
            np.testing.assert_array_equal(ta[key], tb[key], err_msg=f"{table}.{key}")


@pytest.fixture
def shard(tmp_path: Path, tiny_events: list[Event]) -> Path:
    return write_events(tiny_events, tmp_path / "events.parquet")


def _rewrite_hits(source: Path, out: Path, key: str, flat_index: int, value: float) -> None:
    """Copy a shard with one hit value replaced (bypassing the Event checks)."""
    array = ak.from_parquet(source)
    hits = array["hits"]
    column = ak.to_numpy(ak.flatten(hits[key])).copy()
    column[flat_index] = value
    hits = ak.with_field(hits, ak.unflatten(column, ak.num(hits)), key)
    ak.to_parquet(ak.with_field(array, hits, "hits"), out)


def test_round_trip_is_exact(tmp_path: Path, tiny_events: list[Event]) -> None:
    events = [*tiny_events[:2], _empty(tiny_events[2]), tiny_events[3]]
    path = write_events(events, tmp_path / "events.parquet")
    assert count_events(path) == 4
    back = read_events(path)
    assert [e.n_hits for e in back] == [e.n_hits for e in events]
    assert back[2].n_hits == 0 and back[2].n_clusters == events[2].n_clusters
    for a, b in zip(events, back):
        _assert_same(a, b)
    for table, schema in SCHEMAS.items():  # the simulation fills every column
        assert {k: v.dtype for k, v in getattr(back[0], table).items()} == schema


def test_round_trip_of_empty_events_only(tmp_path: Path, tiny_events: list[Event]) -> None:
    events = [_empty(tiny_events[0]), Event.from_columns(
        {k: np.zeros(0, d) for k, d in HIT_FIELDS.items()}, event_id=9, detector="")]
    # the second event has only the required columns: the optional ones are not written
    with pytest.warns(UserWarning, match="not present in every event"):
        path = write_events(events, tmp_path / "empty.parquet")
    back = read_events(path)
    assert [(e.event_id, e.n_hits) for e in back] == [(0, 0), (9, 0)]
    assert "energy_mip" not in back[0].hits
    assert back[0].hits["energy"].dtype == np.float32
    assert back[1].detector == ""


def test_iter_events_matches_read_events(shard: Path) -> None:
    assert [e.event_id for e in iter_events(shard)] == [e.event_id for e in read_events(shard)]


def test_failed_write_leaves_nothing(tmp_path: Path, tiny_events: list[Event],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    existing = write_events(tiny_events[:1], tmp_path / "events.parquet")
    before = existing.read_bytes()

    def fail(array: ak.Array, destination: Path, **kwargs: object) -> None:
        Path(destination).write_bytes(b"PAR1 half written")
        raise OSError("disk full")

    monkeypatch.setattr(ak, "to_parquet", fail)
    with pytest.raises(OSError, match="disk full"):
        write_events(tiny_events, tmp_path / "new.parquet")
    with pytest.raises(OSError, match="disk full"):
        write_events(tiny_events, existing)
    assert os.listdir(tmp_path) == ["events.parquet"]
    assert existing.read_bytes() == before


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.parquet"
    for read in (read_events, count_events):
        with pytest.raises(InputFileError, match="does not exist") as err:
            read(path)
        assert str(path) in str(err.value)


def test_truncated_shard(tmp_path: Path, shard: Path) -> None:
    data = shard.read_bytes()
    path = tmp_path / "truncated.parquet"
    path.write_bytes(data[: len(data) // 2])
    for read in (read_events, count_events):
        with pytest.raises(InputFileError, match="not a readable Parquet") as err:
            read(path)
        assert str(path) in str(err.value)


def test_foreign_parquet(tmp_path: Path) -> None:
    path = tmp_path / "foreign.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]}), path)
    with pytest.raises(InputFileError, match="lacks field") as err:
        read_events(path)
    assert str(path) in str(err.value) and "['a', 'b']" in str(err.value)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.parquet"
    path.write_text("not parquet\n" * 50)
    for read in (read_events, count_events):
        with pytest.raises(InputFileError) as err:
            read(path)
        assert str(path) in str(err.value)


def test_nan_energy_names_file_event_and_field(tmp_path: Path, shard: Path,
                                               tiny_events: list[Event]) -> None:
    bad = tmp_path / "nan.parquet"
    _rewrite_hits(shard, bad, "energy", tiny_events[0].n_hits + 3, np.nan)
    with pytest.raises(InvalidDataError, match="hit column 'energy'") as err:
        read_events(bad)
    assert err.value.source == str(bad) and err.value.event == tiny_events[1].event_id
    assert str(bad) in str(err.value) and "event: 1" in str(err.value)
    assert len(read_events(bad, validate=False)) == len(tiny_events)


def test_truth_cluster_out_of_range(tmp_path: Path, shard: Path,
                                    tiny_events: list[Event]) -> None:
    bad = tmp_path / "truth.parquet"
    _rewrite_hits(shard, bad, "truth_cluster", 0, tiny_events[0].n_clusters + 5)
    with pytest.raises(InvalidDataError, match="truth_cluster") as err:
        read_events(bad)
    assert err.value.source == str(bad) and err.value.event == tiny_events[0].event_id
