"""Throughput of clustering methods on the same events: events/s, ms/event, hits/s.

Each method clusters the whole event list after a warm-up call (allocators, kernel
compilation, caches); the best of ``repeat`` passes is kept, as timings on shared
machines only ever err on the slow side. Networks are measured at each batch size
(events per network call); the other methods cluster event by event. Every row also gives
its ratio to a baseline method measured in the same run (default CLUE), the only figure
comparable between runs on a noisy machine.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from caloreco.data.event import Event
from caloreco.errors import ConfigError


@dataclass
class ThroughputRow:
    """One measured configuration."""

    method: str
    device: str
    batch_size: int
    threads: int
    events: int
    hits_per_event: float
    ms_per_event: float
    events_per_s: float
    hits_per_s: float
    ratio_to_baseline: float = float("nan")

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def time_method(method: object, events: Sequence[Event], *, repeat: int = 2,
                warmup: int = 1) -> float:
    """Best wall time in seconds of ``method.cluster(events)`` over ``repeat`` passes,
    after a warm-up call on the first ``warmup`` events (a network's batch size, so that
    kernels compiled per batch shape are compiled before the timing)."""
    if repeat < 1:
        raise ConfigError(f"repeat must be >= 1, got {repeat}")
    method.cluster(list(events[:max(1, warmup)]))  # type: ignore[attr-defined]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        method.cluster(list(events))  # type: ignore[attr-defined]
        best = min(best, time.perf_counter() - t0)
    return best


def measure(names: Sequence[str], events: Sequence[Event], *, device: str = "cpu",
            batch_sizes: Sequence[int] = (1,), models: Mapping[str, str | None] | None = None,
            repeat: int = 2, baseline: str | None = "clue",
            on_row: Callable[[ThroughputRow], None] | None = None) -> list[ThroughputRow]:
    """Throughput of each method on ``events``.

    Args:
        names: method names (:data:`caloreco.evaluation.methods.METHOD_NAMES`).
        events: the events every method clusters (non-empty).
        device: where networks run (``"cpu"``, ``"cuda"``).
        batch_sizes: events per network call, each measured for the networks.
        models: checkpoints per network name (default: the shipped models).
        repeat: timed passes per configuration (the best is kept).
        baseline: method whose events/s divides every row's (must be in ``names``), or None.
        on_row: called with each row as soon as it is measured (before the ratios).

    Returns:
        One :class:`ThroughputRow` per method and (for networks) batch size.
    """
    import torch

    from caloreco.evaluation.methods import _NETWORKS, make_methods

    if not events:
        raise ConfigError("throughput needs at least one event")
    if baseline is not None and baseline not in names:
        raise ConfigError(f"baseline '{baseline}' is not among the methods {list(names)}")
    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"batch sizes must be >= 1, got {list(batch_sizes)}")
    hits = float(np.mean([e.n_hits for e in events]))
    rows: list[ThroughputRow] = []
    for name in names:
        sizes = list(batch_sizes) if name in _NETWORKS else [1]
        for bs in sizes:
            method = make_methods([name], models=models, device=device, batch_size=bs)[0]
            dt = time_method(method, events, repeat=repeat, warmup=bs)
            n = len(events)
            rows.append(ThroughputRow(
                method=name, device=device if name in _NETWORKS else "cpu", batch_size=bs,
                threads=torch.get_num_threads(), events=n, hits_per_event=hits,
                ms_per_event=1e3 * dt / n, events_per_s=n / dt, hits_per_s=n * hits / dt))
            if on_row is not None:
                on_row(rows[-1])
    if baseline is not None:
        ref = next(r.events_per_s for r in rows if r.method == baseline)
        for r in rows:
            r.ratio_to_baseline = r.events_per_s / ref
    return rows


def format_table(rows: Sequence[ThroughputRow], baseline: str | None = "clue") -> str:
    """A markdown table of ``rows``."""
    head = ("| method | device | batch | threads | hits/event | ms/event | events/s | hits/s | "
            f"x {baseline or 'baseline'} |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.method} | {r.device} | {r.batch_size} | {r.threads} | "
                     f"{r.hits_per_event:.0f} | {r.ms_per_event:.1f} | {r.events_per_s:.2f} | "
                     f"{r.hits_per_s:.3g} | {r.ratio_to_baseline:.2f} |")
    return "\n".join(lines)
