"""Dask adapter: run a :class:`~caloreco.batch.shards.ShardJob` on a cluster, one task per shard.

- :func:`dask_client` connects to an existing scheduler (``--scheduler tcp://host:8786``)
  or starts a ``LocalCluster(n_workers=N, threads_per_worker=1)`` (``--workers N``) and
  closes what it started;
- :func:`run_on_dask` submits :func:`~caloreco.batch.shards.run_shard` for every shard
  (``resume=True``: finished shards are skipped, failures are returned, not raised),
  reports each result as it arrives and returns them in shard order. A task lost with
  its worker (``KilledWorker``, a crash inside a compiled library) is a failed shard too.

Workers need caloreco installed and the shard and checkpoint paths readable at the same
paths (a shared file system); each worker process loads a model once
(:func:`~caloreco.batch.shards.cached`) and keeps it for its later shards.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from caloreco.batch.shards import ShardJob, ShardResult, run_shard
from caloreco.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from distributed import Client

#: Seconds to wait for an existing scheduler to answer.
CONNECT_TIMEOUT_S = 30
#: Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``: glibc then returns
#: every freed block above 64 kB to the system and takes it back zeroed, and the network
#: runs 2.5x slower (dtau shard: 2.3 s instead of 0.9 s per 3 events, one thread). Local
#: clusters started here unset it; set it yourself on workers of an existing scheduler
#: (``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_: null`` in the Dask config).
_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise MissingDependencyError("dask[distributed]", "--scheduler / --workers (batch "
                                     "processing on Dask)") from exc
    return distributed


@contextmanager
def dask_client(*, scheduler: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A client of ``scheduler``, or of a local cluster of ``workers`` single-threaded
    worker processes started (and closed) here. Exactly one of the two is given.

    Raises:
        ConfigError: both or neither given, ``workers < 1``, or no scheduler answering.
        MissingDependencyError: dask.distributed is not installed.
    """
    if (scheduler is None) == (workers is None):
        raise ConfigError("give either a Dask scheduler address (--scheduler) or a number of "
                          "local workers (--workers), not both or neither")
    if workers is not None and (isinstance(workers, bool) or int(workers) != workers
                                or workers < 1):
        raise ConfigError(f"workers must be an integer >= 1, got {workers!r}")
    distributed = _distributed()
    if scheduler is not None:
        try:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at --scheduler {scheduler!r} "
                              f"({type(exc).__name__}: {exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    # processes, not threads: torch releases the GIL only partly, and each worker keeps its
    # own model; no dashboard (its default port may be taken, and it needs bokeh)
    with dask.config.set({_TRIM_KEY: None}):
        cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                           processes=True, dashboard_address=":0")
    with cluster, distributed.Client(cluster) as client:
        yield client


def describe(client: Client) -> dict[str, Any]:
    """Scheduler address and worker count, for the run summaries."""
    info = client.scheduler_info()
    return {"runner": "dask", "scheduler": client.scheduler.address,
            "workers": len(info.get("workers", {}))}


def run_on_dask(client: Client, job: ShardJob, shards: Sequence[Path], *,
                on_result: Callable[[ShardResult], None] | None = None) -> list[ShardResult]:
    """Run ``job`` on every shard on ``client``'s cluster; results in shard order."""
    distributed = _distributed()
    run_id = uuid.uuid4().hex[:8]
    futures = {}
    for i, shard in enumerate(shards):
        fut = client.submit(run_shard, job, Path(shard), resume=True, pure=False,
                            key=f"caloreco-{job.name}-{run_id}-{i}-{Path(shard).name}")
        futures[fut] = i
    results: list[ShardResult | None] = [None] * len(shards)
    for fut in distributed.as_completed(list(futures)):
        i = futures[fut]
        try:
            res = fut.result()
        except Exception as exc:  # the task itself was lost (worker died, unpicklable input)
            res = ShardResult(str(shards[i]), "failed", error=f"{type(exc).__name__}: {exc}")
        results[i] = res
        if on_result is not None:
            on_result(res)
    return [r for r in results if r is not None]
