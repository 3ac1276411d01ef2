"""Many events at once: Parquet shards, a JSON manifest, parallel workers.

Event ``i`` of a data set with seed ``s`` is simulated with the random stream
``numpy.random.default_rng([s, i])``, so the output is identical whatever the number of
shards or workers. Shards are written atomically; the manifest is written last.
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, is_dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

import caloreco
from caloreco.data.parquet import write_events
from caloreco.errors import ConfigError
from caloreco.generators.io import GENERATOR_DIR, generator_path
from caloreco.geometry.registry import make_detector
from caloreco.simulation.guns import make_generator
from caloreco.simulation.simulator import SimulationConfig, Simulator
from caloreco.utils.atomic import atomic_write_text

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DatasetSpec:
    """Everything that defines a simulated data set."""

    preset: str = "dtau"
    preset_options: dict[str, Any] = field(default_factory=dict)
    detector: str = "hgcal"
    detector_options: dict[str, Any] = field(default_factory=dict)
    n_events: int = 10
    shards: int = 1
    seed: int = 0
    sim_config: SimulationConfig = field(default_factory=SimulationConfig)

    def __post_init__(self) -> None:
        if self.n_events < 1:
            raise ConfigError(f"n_events (--events) must be >= 1, got {self.n_events}")
        if not 1 <= self.shards <= self.n_events:
            raise ConfigError(f"shards (--shards) must be between 1 and the number of events ({self.n_events}), "
                              f"got {self.shards}")
        make_generator(self.preset, **self.preset_options)  # validate early, in the parent

    def shard_ranges(self) -> list[tuple[int, int]]:
        edges = np.linspace(0, self.n_events, self.shards + 1).round().astype(int)
        return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def simulate_range(spec: DatasetSpec, start: int, stop: int, *, records: list | None = None) -> list:
    """Simulate events [start, stop) of the data set.

    With a ``records`` list and a generator that keeps generator truth
    (``generate_with_record``, the ``pythia`` preset), ``(event_id, record)`` pairs are
    appended to it; the events are the same either way.
    """
    detector = make_detector(spec.detector, **spec.detector_options)
    generator = make_generator(spec.preset, **spec.preset_options)
    sim = Simulator(detector, spec.sim_config)
    with_record = getattr(generator, "generate_with_record", None)
    events = []
    for i in range(start, stop):
        rng = np.random.default_rng([spec.seed, i])
        if with_record is not None:
            particles, record = with_record(rng)
            if records is not None:
                records.append((i, record))
        else:
            particles = generator.generate(rng)
        events.append(sim.simulate(particles, rng, event_id=i))
    return events


def _shard_job(args: tuple[DatasetSpec, int, int, str]) -> dict[str, Any]:
    spec, start, stop, path = args
    records: list = []
    events = simulate_range(spec, start, stop, records=records)
    write_events(events, path)
    entry = {"file": Path(path).name, "first_event": start, "n_events": stop - start,
             "n_hits": int(sum(e.n_hits for e in events))}
    if records:  # generator truth beside the shard: generator/<shard name>
        gen_path = generator_path(path)
        make_generator(spec.preset, **spec.preset_options).write_records(records, gen_path)
        entry["generator_file"] = f"{GENERATOR_DIR}/{gen_path.name}"
    return entry


def _jsonable(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    return obj


def simulate_dataset(spec: DatasetSpec, out_dir: str | Path, *, workers: int = 1) -> dict[str, Any]:
    """Simulate ``spec`` into ``out_dir`` (shards ``events-NNNNN.parquet`` + manifest)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(spec, a, b, str(out / f"events-{k:05d}.parquet")) for k, (a, b) in enumerate(spec.shard_ranges())]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
            shards = list(pool.map(_shard_job, jobs))
    else:
        shards = [_shard_job(j) for j in jobs]
    manifest = {
        "caloreco_version": caloreco.__version__,
        "preset": spec.preset,
        "preset_options": spec.preset_options,
        "detector": spec.detector,
        "detector_options": spec.detector_options,
        "seed": spec.seed,
        "n_events": spec.n_events,
        "n_hits": sum(s["n_hits"] for s in shards),
        "simulation": asdict(spec.sim_config),
        "generator": asdict(make_generator(spec.preset, **spec.preset_options)),
        "shards": shards,
    }
    # shards of an earlier, larger run in the same directory would otherwise be read as ours
    current = {s["file"] for s in shards}
    for stale in out.glob("events-*.parquet"):
        if stale.name not in current:
            stale.unlink()
    current_gen = {s.get("generator_file") for s in shards}
    for stale in out.glob(f"{GENERATOR_DIR}/events-*.parquet"):
        if f"{GENERATOR_DIR}/{stale.name}" not in current_gen:
            stale.unlink()
    manifest = _jsonable(manifest)
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
