"""Shard tasks: one input shard turned into output files, atomically and idempotently.

A :class:`ShardJob` describes the work of a command on one shard (``process``), the files
it writes in its output directory (``outputs``) and everything its result depends on
besides the shard itself (``identity``: model hash, thresholds, options). :func:`run_shard`
runs it with a completion marker ``OUT/.batch/<shard name>.json``::

    {"version": 1, "job": "cluster",
     "input": {"name": "events-00000.parquet", "size": 123456, "mtime_ns": ...},
     "identity": {...}, "outputs": {"events-00000.parquet": {"size": ..., "mtime_ns": ...}},
     "summary": {...what process() returned...}}

Order of writes: the old marker is removed, the outputs are written (each atomically:
temporary file, then rename), then the marker is written (atomically). A shard counts as
complete only when its marker matches the input's size and modification time, the job's
identity, and every output's size and modification time, so a crash at any point, a
changed input shard, another model or other options, or an output overwritten since, all
lead to recomputation; a complete shard is skipped and its stored summary reused.

With ``resume=False`` (the serial commands) no marker is read or written (a stale one is
removed) and exceptions propagate; with ``resume=True`` (Dask) a failure becomes a
:class:`ShardResult` with status ``"failed"``, the input path and the error, so that the
other shards go on.

:func:`cached` keeps loaded models per process (one per Dask worker process), keyed by
what identifies them (checkpoint hash, device, thresholds), each with its own lock so that
a worker with several threads never runs one model object twice at once.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import traceback
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterator, Protocol, Sequence

from caloreco.errors import CalorecoError, ConfigError
from caloreco.utils.atomic import atomic_write_text

#: Directory of the completion markers inside a job's output directory.
MARKER_DIR = ".batch"
#: Version of the marker layout; markers of another version are ignored (recomputed).
MARKER_VERSION = 1
#: Models (or method sets) kept per process by :func:`cached`; the least recently used
#: is dropped beyond this (a worker serves one command at a time, 2 covers a model swap).
CACHE_SIZE = 2


class ShardJob(Protocol):
    """The work of one command on one shard (picklable: it travels to Dask workers).

    Attributes:
        name: the command (``"cluster"``, ``"evaluate"``), stored in the marker.
        out: output directory.
    """

    name: str
    out: Path

    def identity(self, shard: Path) -> dict[str, Any]:
        """JSON-able description of everything but the shard that the outputs depend on."""
        ...

    def outputs(self, shard: Path) -> list[str]:
        """Names (relative to ``out``) of the files :meth:`process` writes for ``shard``."""
        ...

    def process(self, shard: Path) -> dict[str, Any]:
        """Write the outputs of ``shard`` atomically; return a JSON-able summary."""
        ...


@dataclass
class ShardResult:
    """Outcome of one shard.

    Attributes:
        shard: input shard path.
        status: ``"done"`` (computed now), ``"skipped"`` (complete from an earlier run) or
            ``"failed"``.
        summary: what the job's ``process`` returned (stored in the marker when skipped).
        error: one-paragraph error message of a failed shard.
        traceback: the traceback of an unexpected (non-caloreco) exception.
        seconds: wall time of the task.
    """

    shard: str
    status: str
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None
    seconds: float = 0.0


# ------------------------------------------------------------------------- fingerprints
def file_fingerprint(path: str | Path) -> dict[str, int]:
    """``{"size", "mtime_ns"}`` of a file (what ``make`` trusts, without reading it)."""
    st = Path(path).stat()
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (model identity: a retrained model gets a new hash)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=True)


# ------------------------------------------------------------------------------ markers
def marker_path(out: str | Path, shard: str | Path) -> Path:
    """Completion marker of ``shard`` in output directory ``out``."""
    return Path(out) / MARKER_DIR / f"{Path(shard).name}.json"


def completed_summary(job: ShardJob, shard: Path) -> dict[str, Any] | None:
    """The stored summary if ``shard`` is complete for ``job`` (see the module docs), else None."""
    path = marker_path(job.out, shard)
    try:
        marker = json.loads(path.read_text())
        if not (isinstance(marker, dict) and marker.get("version") == MARKER_VERSION
                and marker.get("job") == job.name):
            return None
        if marker["input"] != {"name": shard.name, **file_fingerprint(shard)}:
            return None
        if _canonical(marker["identity"]) != _canonical(job.identity(shard)):
            return None
        expected = job.outputs(shard)
        if sorted(marker["outputs"]) != sorted(expected):
            return None
        for name in expected:
            if marker["outputs"][name] != file_fingerprint(job.out / name):
                return None
        return dict(marker["summary"])
    except (OSError, ValueError, KeyError, TypeError):  # missing, half-foreign or stale
        return None


def _write_marker(job: ShardJob, shard: Path, input_fp: dict[str, int],
                  summary: dict[str, Any]) -> None:
    marker = {"version": MARKER_VERSION, "job": job.name,
              "input": {"name": shard.name, **input_fp},
              "identity": job.identity(shard),
              "outputs": {name: file_fingerprint(job.out / name) for name in job.outputs(shard)},
              "summary": summary}
    atomic_write_text(marker_path(job.out, shard), json.dumps(marker, indent=1) + "\n")


# ---------------------------------------------------------------------------- one shard
def run_shard(job: ShardJob, shard: str | Path, *, resume: bool = True) -> ShardResult:
    """Process one shard (see the module docstring for ``resume``)."""
    shard = Path(shard)
    t0 = time.perf_counter()
    if not resume:
        marker_path(job.out, shard).unlink(missing_ok=True)
        summary = job.process(shard)
        return ShardResult(str(shard), "done", summary, seconds=time.perf_counter() - t0)
    try:
        stored = completed_summary(job, shard)
        if stored is not None:
            return ShardResult(str(shard), "skipped", stored, seconds=time.perf_counter() - t0)
        marker_path(job.out, shard).unlink(missing_ok=True)
        input_fp = file_fingerprint(shard)  # before reading: a change during the task is caught
        summary = job.process(shard)
        _write_marker(job, shard, input_fp, summary)
        return ShardResult(str(shard), "done", summary, seconds=time.perf_counter() - t0)
    except CalorecoError as exc:
        return ShardResult(str(shard), "failed", error=str(exc), seconds=time.perf_counter() - t0)
    except Exception as exc:  # any other failure of this shard must not stop the others
        return ShardResult(str(shard), "failed", error=f"{type(exc).__name__}: {exc}",
                           traceback=traceback.format_exc(), seconds=time.perf_counter() - t0)


@dataclass
class BatchRun:
    """Results of :func:`run_shards`, in shard order, and where they ran.

    Attributes:
        results: one :class:`ShardResult` per shard.
        runner: ``{"runner": "serial"}`` or ``{"runner": "dask", "scheduler": address,
            "workers": count}``.
    """

    results: list[ShardResult]
    runner: dict[str, Any]

    @property
    def failed(self) -> list[ShardResult]:
        return [r for r in self.results if r.status == "failed"]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)


def run_shards(job: ShardJob, shards: Sequence[Path], *, scheduler: str | None = None,
               workers: int | None = None,
               on_result: Callable[[ShardResult], None] | None = None) -> BatchRun:
    """Run ``job`` on every shard.

    Without ``scheduler`` and ``workers`` the shards run here, one after the other, with
    ``resume=False`` (the commands' serial behaviour: no markers, errors raised). With
    either, on Dask (:func:`caloreco.batch.dask_runner.run_on_dask`): resumable, failures
    collected. ``on_result`` is called with each result as it arrives.
    """
    if scheduler is None and workers is None:
        results = []
        for shard in shards:
            results.append(run_shard(job, shard, resume=False))
            if on_result is not None:
                on_result(results[-1])
        return BatchRun(results, {"runner": "serial"})
    from caloreco.batch.dask_runner import dask_client, describe, run_on_dask

    with dask_client(scheduler=scheduler, workers=workers) as client:
        return BatchRun(run_on_dask(client, job, shards, on_result=on_result), describe(client))


def failure_lines(results: Sequence[ShardResult]) -> list[str]:
    """One block per failed shard: its path, then the error (for the command's stderr)."""
    lines = []
    for r in results:
        if r.status == "failed":
            first, *rest = (r.error or "unknown error").splitlines() or ["unknown error"]
            lines.append(f"FAILED {r.shard}: {first}")
            lines.extend(f"    {line.strip()}" for line in rest)
    return lines


# ------------------------------------------------------------------------- model cache
class _Slot:
    """A cached object and the lock that serialises its use."""

    def __init__(self) -> None:
        self.value: Any = None
        self.lock = threading.Lock()


_CACHE: OrderedDict[Hashable, _Slot] = OrderedDict()
_CACHE_LOCK = threading.Lock()


@contextmanager
def cached(key: Hashable, factory: Callable[[], Any]) -> Iterator[Any]:
    """Yield the object cached under ``key`` in this process (built by ``factory`` on first
    use), holding its lock for the duration of the ``with`` block.

    On a Dask worker this loads each model once per worker process instead of once per
    shard; in the serial commands the model loaded to check the arguments is reused. A
    ``factory`` that raises leaves nothing cached (the next use tries again).
    """
    with _CACHE_LOCK:
        slot = _CACHE.get(key)
        if slot is None:
            slot = _CACHE[key] = _Slot()
        _CACHE.move_to_end(key)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    with slot.lock:
        if slot.value is None:
            slot.value = factory()
        yield slot.value


def cache_keys() -> list[Hashable]:
    """Keys of the objects cached in this process, least recently used first (for tests)."""
    with _CACHE_LOCK:
        return list(_CACHE)


def check_sha256(path: Path, expected: str, what: str) -> None:
    """Raise :class:`ConfigError` if ``path`` is not the file the driver hashed."""
    got = file_sha256(path)
    if got != expected:
        raise ConfigError(f"{what} seen by this process differs from the one the run was started "
                          f"with (sha256 {got[:12]}... instead of {expected[:12]}...); give every "
                          f"worker the same file\n  in file: {path}")
