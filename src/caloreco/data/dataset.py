"""PyTorch access to caloreco Parquet shards: one item per event, hits concatenated in batches.

:class:`EventDataset` indexes the events of many shards from the Parquet metadata alone
(:func:`~caloreco.data.parquet.count_events`) and decodes a shard only when one of its
events is asked for, keeping the last few decoded shards (sequential or shard-local access
decodes each shard once). :func:`collate_events` joins events without padding, in the
``batch``-vector convention of PyTorch Geometric.

Items hold the raw hit columns (GeV, cm, ns, layer numbers); normalisation, such as
``log(1 + E / 1 MeV)``, belongs in the ``transform``.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from caloreco.data.event import HIT_FIELDS, OPTIONAL_HIT_FIELDS, Event
from caloreco.data.parquet import count_events, read_events
from caloreco.errors import ConfigError, InputFileError, InvalidDataError

#: Default feature columns, in this order.
DEFAULT_FEATURES = ("energy", "x", "y", "z", "layer", "time")

Item = dict[str, Any]


def _shard_paths(paths_or_dir: str | Path | Sequence[str | Path]) -> list[Path]:
    """The shard files: a directory's ``*.parquet`` files (sorted), one file, or a list."""
    if isinstance(paths_or_dir, (str, Path)):
        root = Path(paths_or_dir)
        if not root.exists():
            raise InputFileError(root, "event directory or file does not exist")
        if not root.is_dir():
            return [root]
        paths = sorted(p for p in root.glob("*.parquet") if not p.name.startswith("."))
        if not paths:
            raise InputFileError(root, "directory holds no *.parquet event shards")
        return paths
    paths = [Path(p) for p in paths_or_dir]
    if not paths:
        raise ConfigError("paths_or_dir is an empty list; give shard files or a directory")
    return paths


class EventDataset(Dataset):
    """Events of Parquet shards as dictionaries of tensors.

    Args:
        paths_or_dir: a directory (all its ``*.parquet`` files, sorted by name), one shard
            file, or a list of shard files (events in list order).
        features: hit columns stacked as features, in this order (default
            ``("energy", "x", "y", "z", "layer", "time")``); any required or optional hit
            column of :mod:`caloreco.data.event`.
        target: integer hit column used as the per-hit label (default ``"truth_cluster"``:
            truth-cluster index within the event, -1 for noise).
        transform: optional function applied to each item dictionary, returning the
            item to use (e.g. feature normalisation).
        cache_shards: number of decoded shards kept in memory (>= 1, default 2).

    Items (N hits of the event, F features):
        ``features`` float32 [N, F], ``target`` int64 [N], ``energy`` float32 [N] (GeV),
        ``event_id`` int64 scalar. Events without hits give N = 0.

    Raises:
        InputFileError: a missing directory or file, a directory without shards, or an
            unreadable shard (when indexed or decoded).
        ConfigError: an unknown feature or target column, or bad ``cache_shards``.
        InvalidDataError: bad values in a shard, or an optional feature column the shard
            lacks (when decoded).
    """

    def __init__(self, paths_or_dir: str | Path | Sequence[str | Path], *,
                 features: Sequence[str] = DEFAULT_FEATURES, target: str = "truth_cluster",
                 transform: Callable[[Item], Item] | None = None,
                 cache_shards: int = 2) -> None:
        columns = {**HIT_FIELDS, **OPTIONAL_HIT_FIELDS}
        if isinstance(features, str) or not features:
            raise ConfigError(f"features must be a non-empty list of hit columns, got "
                              f"{features!r}")
        unknown = [f for f in features if f not in columns]
        if unknown:
            raise ConfigError(f"features {unknown} are not hit columns; choose from "
                              f"{list(columns)}")
        if target not in columns or columns[target].kind not in "iu":
            ints = [k for k, d in columns.items() if d.kind in "iu"]
            raise ConfigError(f"target must be an integer hit column, one of {ints}, got "
                              f"'{target}'")
        if cache_shards < 1:
            raise ConfigError(f"cache_shards must be >= 1, got {cache_shards}")
        self.features = tuple(features)
        self.target = target
        self.transform = transform
        self.cache_shards = cache_shards
        self.paths = _shard_paths(paths_or_dir)
        self.counts = np.array([count_events(p) for p in self.paths], dtype=np.int64)
        self._ends = np.cumsum(self.counts)
        self._cache: OrderedDict[int, list[Event]] = OrderedDict()

    def __len__(self) -> int:
        return int(self._ends[-1])

    def _shard(self, k: int) -> list[Event]:
        """Decoded events of shard ``k``, through the LRU cache."""
        if k in self._cache:
            self._cache.move_to_end(k)
            return self._cache[k]
        events = read_events(self.paths[k])
        if len(events) != self.counts[k]:
            raise InputFileError(self.paths[k], f"shard changed since it was indexed: "
                                                f"{len(events)} events, {self.counts[k]} before")
        self._cache[k] = events
        while len(self._cache) > self.cache_shards:
            self._cache.popitem(last=False)
        return events

    def __getitem__(self, index: int) -> Item:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"event index {index} out of range for {n} events")
        index %= n
        k = int(np.searchsorted(self._ends, index, side="right"))
        event = self._shard(k)[index - int(self._ends[k] - self.counts[k])]
        missing = [f for f in (*self.features, self.target) if f not in event.hits]
        if missing:
            raise InvalidDataError(f"hit column(s) {missing} asked for by the dataset are "
                                   f"not in the shard", source=str(self.paths[k]),
                                   event=event.event_id)
        hits = event.hits
        item: Item = {
            "features": torch.from_numpy(np.stack(
                [hits[f].astype(np.float32) for f in self.features], axis=1)),
            "target": torch.from_numpy(hits[self.target].astype(np.int64)),
            "energy": torch.from_numpy(hits["energy"].astype(np.float32, copy=True)),
            "event_id": torch.tensor(event.event_id, dtype=torch.int64),
        }
        return self.transform(item) if self.transform is not None else item


def collate_events(batch: Sequence[Item], *, offset_targets: bool = False) -> Item:
    """Concatenate the hits of B events, without padding.

    Args:
        batch: items of :class:`EventDataset` (after its transform).
        offset_targets: if true, labels >= 0 of each event get a running offset (the sum
            of ``max label + 1`` of the events before it), so that cluster ids are unique
            across the batch; -1 (noise) is kept. Default: labels stay per event. With a
            ``DataLoader`` use ``functools.partial(collate_events, offset_targets=True)``.

    Returns:
        ``features`` [sum N, F], ``target`` int64 [sum N], ``energy`` [sum N],
        ``batch`` int64 [sum N] (event index within the batch of each hit), ``offsets``
        int64 [B + 1] (hits of event b are ``offsets[b]:offsets[b + 1]``), ``event_id``
        int64 [B]. Other keys a transform added are returned as lists of B values.

    Raises:
        ConfigError: an empty batch.
    """
    if len(batch) == 0:
        raise ConfigError("collate_events needs at least one event, got an empty batch")
    counts = torch.tensor([len(item["target"]) for item in batch], dtype=torch.int64)
    offsets = torch.zeros(len(batch) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    targets = [item["target"] for item in batch]
    if offset_targets:
        shifted, shift = [], 0
        for t in targets:
            shifted.append(torch.where(t >= 0, t + shift, t))
            shift += int(t.max()) + 1 if len(t) and int(t.max()) >= 0 else 0
        targets = shifted
    out: Item = {
        "features": torch.cat([item["features"] for item in batch]),
        "target": torch.cat(targets),
        "energy": torch.cat([item["energy"] for item in batch]),
        "batch": torch.repeat_interleave(torch.arange(len(batch)), counts),
        "offsets": offsets,
        "event_id": torch.stack([torch.as_tensor(item["event_id"], dtype=torch.int64)
                                 for item in batch]),
    }
    for key in batch[0]:
        if key not in out:
            out[key] = [item[key] for item in batch]
    return out
