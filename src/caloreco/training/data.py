"""Training data: encoded events, a shard-local shuffling sampler and the batch collation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from caloreco.data.dataset import EventDataset
from caloreco.data.event import Event
from caloreco.clustering.model_clustering import hit_xyz
from caloreco.losses.energy import energy_targets
from caloreco.models.encoding import HitEncoding

#: Raw hit columns read for training (the encoding needs the first six).
COLUMNS = ("energy", "x", "y", "z", "layer", "time", "cell_type")


def cluster_weights(target: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Per-hit loss weights from the energy of the hit's truth cluster.

    ``w_i = log(1 + E_k / 1 GeV) / <log(1 + E / 1 GeV)>_objects`` for a hit of truth
    cluster ``k`` (``E_k`` = summed hit energy of ``k``), 1 for noise: energetic showers
    count more, as in the seed work's energy weighting, but logarithmically so that MIPs and
    soft photons are still learned. The mean weight over the event's objects is 1.
    """
    w = np.ones(len(target), np.float32)
    sig = target >= 0
    if not sig.any():
        return w
    ids, inv = np.unique(target[sig], return_inverse=True)
    e_k = np.bincount(inv, weights=energy[sig], minlength=len(ids))
    lw = np.log1p(np.maximum(e_k, 0.0))
    mean = lw.mean()
    if mean > 0:
        w[sig] = (lw / mean)[inv]
    return w


def encode_event(event: Event, encoding: HitEncoding) -> dict[str, Any]:
    """Tensors of one event: ``features``, ``points``, ``target``, ``weight``, ``energy``,
    ``positions`` (the projected positions of the local repulsion), ``xyz`` (the positions of
    the validation clustering's left-over attachment) and ``energy_target``
    (the energy-correction target per hit, :func:`caloreco.losses.energy.energy_targets`;
    NaN where the event has no generated cluster energies)."""
    hits = event.hits
    target = hits["truth_cluster"].astype(np.int64)
    generated = event.clusters.get("energy") if event.clusters else None
    if generated is not None and (len(target) == 0 or target.max() < len(generated)):
        e_target = energy_targets(target, hits["energy"], np.asarray(generated, np.float64))
    else:
        e_target = np.full(len(target), np.nan, np.float32)
    return {
        "features": torch.from_numpy(encoding.features(hits)),
        "points": torch.from_numpy(encoding.points(hits)),
        "target": torch.from_numpy(target),
        "weight": torch.from_numpy(cluster_weights(target, hits["energy"].astype(np.float64))),
        "energy": torch.from_numpy(hits["energy"].astype(np.float32)),
        "positions": torch.from_numpy(encoding.projected_positions(hits)),
        "energy_target": torch.from_numpy(e_target),
        "xyz": torch.from_numpy(hit_xyz(hits)),
        "event_id": event.event_id,
    }


class EncodedEvents(Dataset):
    """Events of Parquet shards, encoded for a clustering model.

    Args:
        paths_or_dir: shard directory, file or list of files.
        encoding: the :class:`HitEncoding` of the model.
        indices: the event indices (global, over the shards) this dataset exposes.
    """

    def __init__(self, paths_or_dir: str | Path | Sequence[str | Path], encoding: HitEncoding,
                 indices: Sequence[int] | None = None) -> None:
        self.events = EventDataset(paths_or_dir, features=("energy",), cache_shards=2)
        self.encoding = encoding
        self.indices = np.arange(len(self.events)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def shard_of(self, i: int) -> int:
        return int(np.searchsorted(self.events._ends, self.indices[i], side="right"))

    def event(self, i: int) -> Event:
        g = int(self.indices[i])
        k = int(np.searchsorted(self.events._ends, g, side="right"))
        return self.events._shard(k)[g - int(self.events._ends[k] - self.events.counts[k])]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return encode_event(self.event(i), self.encoding)


class ShardLocalSampler(Sampler[int]):
    """Shuffle shards, then events within each shard (each shard is decoded once per
    epoch); deterministic given ``seed`` and the epoch. With ``num_replicas > 1`` each rank
    takes every ``num_replicas``-th index of the same order (distributed training)."""

    def __init__(self, dataset: EncodedEvents, *, seed: int = 0, shuffle: bool = True,
                 rank: int = 0, num_replicas: int = 1) -> None:
        self.dataset, self.seed, self.shuffle = dataset, seed, shuffle
        self.rank, self.num_replicas = rank, num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> list[int]:
        n = len(self.dataset)
        if not self.shuffle:
            idx = list(range(n))
        else:
            rng = np.random.default_rng([self.seed, self.epoch])
            shards = np.array([self.dataset.shard_of(i) for i in range(n)])
            idx = []
            for s in rng.permutation(np.unique(shards)):
                members = np.flatnonzero(shards == s)
                idx.extend(rng.permutation(members).tolist())
        per_rank = len(idx) // self.num_replicas if self.num_replicas > 1 else len(idx)
        return idx[self.rank::self.num_replicas][:per_rank]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.num_replicas if self.num_replicas > 1 else n


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate encoded events; ``batch`` gives each hit's event, targets stay per event."""
    counts = [len(it["target"]) for it in items]
    out = {k: torch.cat([it[k] for it in items]) for k in ("features", "points", "target",
                                                           "weight", "energy", "positions",
                                                           "energy_target", "xyz")}
    out["batch"] = torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts))
    out["offsets"] = torch.tensor([0, *np.cumsum(counts).tolist()])
    out["event_id"] = [it["event_id"] for it in items]
    return out
