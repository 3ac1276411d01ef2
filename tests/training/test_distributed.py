"""Distributed training: 2 CPU processes (gloo) end with identical weights; torchrun CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, data: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    from caloreco.training.distributed import init_from_env, shutdown
    from caloreco.training.trainer import Trainer, TrainConfig

    info = init_from_env("cpu")
    cfg = TrainConfig(data=data, out=out, model_options={"cr": 0.125}, epochs=2, val_fraction=0.2,
                      val_events=1, checkpoint_every=1, log_every=1, progress=False)
    trainer = Trainer(cfg, rank=info.rank, world_size=info.world_size)
    trainer.fit()
    torch.save({"state": trainer.model.state_dict(), "steps": trainer.global_step},
               os.path.join(out, f"rank{rank}.pt"))
    shutdown()


def test_two_processes_hold_identical_weights(dtau_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), str(dtau_dataset), str(out)), nprocs=2, join=True)
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["steps"] == r1["steps"] == 4  # 5 training events -> 2 per rank per epoch
    for name, a in r0["state"].items():
        torch.testing.assert_close(a, r1["state"][name], rtol=0, atol=0, msg=name)
    assert (out / "best.pt").exists() and (out / "metrics.csv").exists()


def test_torchrun_runs_the_cli(dtau_dataset, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           f"--master_port={_free_port()}", "-m", "caloreco", "train", "--data", str(dtau_dataset),
           "--out", str(tmp_path / "run"), "--epochs", "1", "--cr", "0.125", "--val-events", "1",
           "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "best checkpoint" in proc.stdout and (tmp_path / "run" / "best.pt").exists()
