"""Batch processing of data sets shard by shard, in this process or on a Dask cluster.

- :mod:`~caloreco.batch.shards`        the shard task: one input shard -> output files,
  written atomically, with a completion marker so that a re-run skips finished shards and
  recomputes those whose input or model changed; :func:`~caloreco.batch.shards.run_shards`
  runs the tasks serially or on Dask; the per-process model cache
- :mod:`~caloreco.batch.dask_runner`   the Dask adapter: connect to a scheduler or start a
  ``LocalCluster``, one task per shard, failures collected instead of raised
- :mod:`~caloreco.batch.cluster_job`   ``caloreco cluster``: a predictions file per shard
- :mod:`~caloreco.batch.evaluate_job`  ``caloreco evaluate``: per-event metric parts per
  shard, merged in event order into the report of the serial evaluation

Dask is imported only by :mod:`~caloreco.batch.dask_runner`, when a scheduler or a number
of workers is asked for.
"""
