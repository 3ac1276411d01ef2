"""caloreco cluster / evaluate on a Dask LocalCluster of 2 workers, against the serial commands,
on the 2-shard dtau data set: identical outputs, resume, failures, model and input changes."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from caloreco.__main__ import entry
from caloreco.batch.shards import MARKER_DIR, cached, file_sha256, marker_path
from caloreco.data.predictions import read_predictions

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """Address of a LocalCluster(n_workers=2, threads_per_worker=1) shared by the tests."""
    from caloreco.batch.dask_runner import dask_client

    with dask_client(workers=2) as client:
        yield client.scheduler.address


@pytest.fixture(scope="module")
def serial_clusters(dtau_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``caloreco cluster`` without Dask (the reference outputs)."""
    out = tmp_path_factory.mktemp("serial") / "clusters"
    assert entry(["cluster", "--data", str(dtau_dataset), "--out", str(out)]) == 0
    return out


def _copy_data(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for p in src.glob("*.parquet"):
        shutil.copy2(p, dst / p.name)
    return dst


def _mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(out.glob("*.parquet"))}


def _cluster(data: Path, out: Path, *extra: str) -> int:
    return entry(["cluster", "--data", str(data), "--out", str(out), *extra])


def test_cluster_on_dask_equals_serial_then_skips_complete_shards(
        dtau_dataset, serial_clusters, scheduler, tmp_path, capsys):
    out = tmp_path / "dask"
    assert _cluster(dtau_dataset, out, "--scheduler", scheduler) == 0
    assert "2 computed, 0 already complete, 0 failed (2 Dask workers" in capsys.readouterr().out
    shards = sorted(p.name for p in dtau_dataset.glob("*.parquet"))
    assert sorted(_mtimes(out)) == shards
    for name in shards:  # the same per-shard code: byte-identical files
        assert (out / name).read_bytes() == (serial_clusters / name).read_bytes()
    serial, dask = (json.loads((d / "clusters.json").read_text()) for d in (serial_clusters, out))
    for key in ("model", "t_beta", "t_d", "n_events", "n_hits", "shards"):
        assert dask[key] == serial[key]
    assert dask["timings"]["events"] == serial["timings"]["events"] == 6
    assert dask["batch"]["done"] == 2 and dask["batch"]["failed"] == []

    from distributed import Client

    from caloreco.batch.shards import cache_keys

    with Client(scheduler) as client:  # the workers keep the loaded model for later shards
        keys = client.run(cache_keys)
    sha = json.loads(marker_path(out, dtau_dataset / shards[0]).read_text())["identity"]
    assert any(("cluster", sha["model_sha256"]) == tuple(k[:2]) for ks in keys.values()
               for k in ks)

    before = _mtimes(out)
    assert _cluster(dtau_dataset, out, "--scheduler", scheduler) == 0
    assert "0 computed, 2 already complete" in capsys.readouterr().out
    assert _mtimes(out) == before  # not rewritten
    summary = json.loads((out / "clusters.json").read_text())
    assert summary["batch"]["skipped"] == 2 and summary["n_events"] == 6


def test_changed_input_or_output_is_recomputed(dtau_dataset, scheduler, tmp_path, capsys):
    data = _copy_data(dtau_dataset, tmp_path / "data")
    out = tmp_path / "out"
    assert _cluster(data, out, "--scheduler", scheduler) == 0
    first, second = sorted(data.glob("*.parquet"))
    before = _mtimes(out)
    first.touch()  # a re-written input shard
    (out / second.name).write_bytes((out / second.name).read_bytes())  # output replaced since
    capsys.readouterr()
    assert _cluster(data, out, "--scheduler", scheduler) == 0
    assert "2 computed, 0 already complete" in capsys.readouterr().out
    assert all(_mtimes(out)[n] != before[n] for n in before)
    assert _cluster(data, out, "--scheduler", scheduler) == 0
    assert "0 computed, 2 already complete" in capsys.readouterr().out


def test_changed_model_is_recomputed(dtau_dataset, scheduler, tmp_path, capsys):
    from caloreco.clustering.model_clustering import pretrained_path
    from caloreco.training.checkpoint import load_checkpoint, save_checkpoint

    out = tmp_path / "out"
    assert _cluster(dtau_dataset, out, "--scheduler", scheduler) == 0
    shipped = [r["beta"] for s in sorted(dtau_dataset.glob("*.parquet"))
               for r in read_predictions(out / s.name)]
    ckpt = load_checkpoint(pretrained_path())
    state = {k: v * 1.5 if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}
    model = save_checkpoint(replace(ckpt, state_dict=state), tmp_path / "changed.pt", half=True)
    capsys.readouterr()
    assert _cluster(dtau_dataset, out, "--scheduler", scheduler, "--model", str(model)) == 0
    assert "2 computed, 0 already complete" in capsys.readouterr().out
    changed = [r["beta"] for s in sorted(dtau_dataset.glob("*.parquet"))
               for r in read_predictions(out / s.name)]
    assert not all(np.array_equal(a, b) for a, b in zip(shipped, changed))
    marker = json.loads(marker_path(out, sorted(dtau_dataset.glob("*.parquet"))[0]).read_text())
    assert marker["identity"]["model_sha256"] == file_sha256(model)


def test_corrupt_shard_is_reported_and_the_other_completes(dtau_dataset, scheduler, tmp_path,
                                                           capsys):
    data = _copy_data(dtau_dataset, tmp_path / "data")
    good, bad = sorted(data.glob("*.parquet"))
    bad.write_bytes(bad.read_bytes()[:1000])  # truncated
    out = tmp_path / "out"
    assert _cluster(data, out, "--scheduler", scheduler) == 1
    captured = capsys.readouterr()
    assert f"FAILED {bad}: not a readable Parquet event file" in captured.err
    assert "1 of 2 shard(s) failed" in captured.err
    rows = read_predictions(out / good.name)
    assert len(rows) == 3 and marker_path(out, good).exists()
    assert not (out / bad.name).exists() and not marker_path(out, bad).exists()
    summary = json.loads((out / "clusters.json").read_text())
    assert [f["input"] for f in summary["batch"]["failed"]] == [str(bad)]
    assert summary["n_events"] == 3

    shutil.copy2(dtau_dataset / bad.name, bad)  # repaired: only that shard is computed
    assert _cluster(data, out, "--scheduler", scheduler) == 0
    assert "1 computed, 1 already complete, 0 failed" in capsys.readouterr().out


def _report_without_timing(path: Path) -> dict[str, Any]:
    report = json.loads(path.read_text())
    for entry_ in report["methods"].values():
        entry_.pop("timing")
        entry_["details"].pop("stage_timings", None)
    for key in ("batch", "command"):
        report.pop(key, None)
    return report


def test_evaluate_on_dask_equals_serial_and_resumes(dtau_dataset, scheduler, tmp_path, capsys):
    # 4 of 6 events: the second shard is read in part. First on a LocalCluster of its own
    # (--workers), then resumed on the shared one: the runner is not part of the identity.
    args = ["evaluate", "--data", str(dtau_dataset), "--methods", "spvcnn,truth",
            "--max-events", "4", "--displays", "1"]
    serial, dask = tmp_path / "serial", tmp_path / "dask"
    assert entry([*args, "--out", str(serial)]) == 0
    assert entry([*args, "--out", str(dask), "--workers", "2"]) == 0
    ref, got = (_report_without_timing(d / "report.json") for d in (serial, dask))
    assert got == ref  # every metric, curve, scan point and file name
    assert got["n_events"] == 4 and got["methods"]["spvcnn"]["metrics"]["n_events"] == 4
    for name in got["files"]:
        if name.startswith("display-"):  # the same labels drawn
            assert (dask / name).read_bytes() == (serial / name).read_bytes()
    partials = {p.name: p.stat().st_mtime_ns for p in (dask / "partials").iterdir()}
    assert len(partials) == 2 and len(list((dask / MARKER_DIR).iterdir())) == 2

    capsys.readouterr()
    assert entry([*args, "--out", str(dask), "--scheduler", scheduler]) == 0
    assert capsys.readouterr().out.count(": skipped") == 2
    assert {p.name: p.stat().st_mtime_ns for p in (dask / "partials").iterdir()} == partials
    assert _report_without_timing(dask / "report.json") == ref


def test_evaluate_failure_writes_no_report(dtau_dataset, scheduler, tmp_path, capsys):
    data = _copy_data(dtau_dataset, tmp_path / "data")
    bad = sorted(data.glob("*.parquet"))[1]
    bad.write_text("not parquet")
    out = tmp_path / "out"
    assert entry(["evaluate", "--data", str(data), "--methods", "truth", "--out", str(out),
                  "--scheduler", scheduler, "--displays", "0"]) == 1
    err = capsys.readouterr().err
    assert f"FAILED {bad}" in err and "no report written" in err
    assert not (out / "report.json").exists()
    good = sorted(data.glob("*.parquet"))[0]
    assert [p.name for p in (out / "partials").iterdir()] == [f"{good.name}.json"]


def test_batch_options_and_missing_dask(monkeypatch, tmp_path, capsys):
    from caloreco.batch.dask_runner import dask_client
    from caloreco.errors import ConfigError, MissingDependencyError

    with pytest.raises(SystemExit):  # argparse: not allowed together
        entry(["cluster", "--data", "x", "--out", "y", "--workers", "2",
               "--scheduler", "tcp://a:1"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="either a Dask scheduler"):
        with dask_client():
            pass
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingDependencyError, match="pip install dask"):
        with dask_client(workers=1):
            pass


def test_model_is_loaded_once_per_process(dtau_dataset, tmp_path, monkeypatch):
    from caloreco.batch.cluster_job import ClusterJob
    from caloreco.batch.shards import run_shard
    from caloreco.clustering.model_clustering import ModelClusterer

    loads = []
    original = ModelClusterer.from_checkpoint.__func__
    monkeypatch.setattr(ModelClusterer, "from_checkpoint",
                        classmethod(lambda cls, *a, **k: loads.append(1) or original(cls, *a, **k)))
    job = ClusterJob.create(tmp_path / "a", t_d=0.55)  # checks the model: one load
    for shard in sorted(dtau_dataset.glob("*.parquet")):
        assert run_shard(job, shard).status == "done"
    assert len(loads) == 1
    for shard in sorted(dtau_dataset.glob("*.parquet")):  # complete: skipped, nothing loaded
        assert run_shard(job, shard).status == "skipped"
    assert len(loads) == 1


def test_cache_builds_once_per_key_and_serialises_use():
    calls: list[int] = []
    inside = threading.Semaphore(1)

    def factory() -> object:
        calls.append(1)
        return object()

    def use() -> None:
        with cached(("test-cache",), factory) as obj:
            assert inside.acquire(blocking=False)  # never two users at once
            seen.append(obj)
            inside.release()

    seen: list[object] = []
    threads = [threading.Thread(target=use) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({id(o) for o in seen}) == 1 and len(seen) == 8
