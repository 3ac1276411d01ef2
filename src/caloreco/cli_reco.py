"""Command-line handlers of the reconstruction commands: ``train``, ``cluster``, ``export``.

Registered on the main parser by :func:`add_commands`; like :mod:`caloreco.cli` they only
parse arguments and call the library.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from caloreco.errors import ConfigError


def _positive_int(text: str) -> int:
    from caloreco.cli import _positive_int as pi

    return pi(text)


# ---------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from caloreco.training.distributed import init_from_env, shutdown
    from caloreco.training.trainer import TrainConfig, Trainer

    dist_info = init_from_env(args.device)  # under torchrun: join the process group
    try:
        return _train(args, dist_info)
    finally:
        shutdown()


def _train(args: argparse.Namespace, dist_info: Any) -> int:
    from caloreco.training.trainer import TrainConfig, Trainer

    opts: dict[str, Any] = {}
    if args.cr is not None:
        opts["cr"] = args.cr
    if args.coord_dim is not None:
        opts["coord_dim"] = args.coord_dim
    weights: dict[str, float] = {}
    for item in args.loss_weight or []:
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--loss-weight expects NAME=VALUE (e.g. repulsive=10), got "
                              f"'{item}'") from None
    unknown = sorted(set(weights) - {"attractive", "repulsive", "beta", "noise"})
    if unknown:
        raise ConfigError(f"--loss-weight names {unknown} are not loss terms; use attractive, "
                          f"repulsive, beta or noise")
    cfg = TrainConfig(data=args.data, out=args.out, model=args.model, model_options=opts,
                      loss_weights=weights,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      device=dist_info.device, seed=args.seed, val_events=args.val_events,
                      max_train_events=args.max_events, time_limit_min=args.time_limit,
                      checkpoint_every=args.checkpoint_every, progress=not args.no_progress)
    if args.resume:
        stored = Path(args.out) / "config.json"
        if stored.exists():  # resume with the stored run settings unless overridden
            cfg = TrainConfig(**{**json.loads(stored.read_text()), "device": dist_info.device,
                                 "progress": not args.no_progress})
    t0 = time.perf_counter()
    trainer = Trainer(cfg, resume=args.resume, rank=dist_info.rank,
                      world_size=dist_info.world_size)
    if trainer.epoch >= cfg.epochs:
        print(f"run in {args.out} already finished {cfg.epochs} epochs; nothing to do")
        return 0

    def log(row: dict[str, Any]) -> None:
        if row["kind"] == "val":
            print(f"epoch {row['epoch']}: val loss {row['val_loss']:.4f}, PQ {row['pq']:.3f}, "
                  f"mIoU {row['miou']:.3f}", flush=True)

    best = trainer.fit(on_log=log if dist_info.rank == 0 else None)
    if dist_info.rank != 0:
        return 0
    print(f"trained {trainer.global_step} steps in {(time.perf_counter() - t0) / 60:.1f} min; "
          f"best checkpoint {best}")
    return 0


# ---------------------------------------------------------------------------- cluster
def cmd_cluster(args: argparse.Namespace) -> int:
    from caloreco.clustering.model_clustering import ModelClusterer
    from caloreco.data.dataset import _shard_paths
    from caloreco.data.parquet import read_events
    from caloreco.data.predictions import write_predictions
    from caloreco.utils.atomic import atomic_write_text

    clusterer = ModelClusterer.from_checkpoint(args.model, device=args.device,
                                               t_beta=args.t_beta, t_d=args.t_d)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shards = _shard_paths(args.data)
    t0 = time.perf_counter()
    n_events = n_hits = 0
    written = []
    for shard in shards:
        events = read_events(shard)
        preds = clusterer.cluster_events(events, batch_size=args.batch_size)
        target = out / shard.name
        write_predictions(target, events, [p.cluster_id for p in preds], [p.beta for p in preds])
        written.append({"input": str(shard), "file": target.name, "n_events": len(events)})
        n_events += len(events)
        n_hits += sum(e.n_hits for e in events)
    dt = time.perf_counter() - t0
    summary = {"model": str(args.model or "shipped"), "t_beta": clusterer.t_beta,
               "t_d": clusterer.t_d, "n_events": n_events, "n_hits": n_hits, "seconds": dt,
               "shards": written, "timings": clusterer.timings.as_dict()}
    atomic_write_text(out / "clusters.json", json.dumps(summary, indent=2))
    print(f"clustered {n_events} events ({n_hits} hits) in {dt:.1f} s: "
          f"{n_events / max(dt, 1e-9):.1f} events/s -> {out}")
    return 0


# ---------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from caloreco.clustering.model_clustering import pretrained_path
    from caloreco.serving.export import FrozenNetwork, export_onnx, export_torchscript
    from caloreco.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(args.model if args.model else pretrained_path())
    model, encoding = ckpt.build("cpu")
    frozen = FrozenNetwork(model)
    rng = np.random.default_rng(0)  # an example event shape; sizes stay dynamic
    n = 256
    hits = {"energy": rng.exponential(0.01, n).astype(np.float32),
            "x": rng.uniform(-50, 50, n).astype(np.float32),
            "y": rng.uniform(-50, 50, n).astype(np.float32),
            "z": np.full(n, 330.0, np.float32), "layer": rng.integers(1, 28, n),
            "time": np.full(n, 11.0, np.float32)}
    example = frozen.example_inputs(torch.from_numpy(encoding.features(hits)),
                                    torch.from_numpy(encoding.points(hits)),
                                    torch.zeros(n, dtype=torch.long))
    out = Path(args.out)
    if args.format == "onnx":
        export_onnx(frozen, example, out)
    elif args.format == "torchscript":
        export_torchscript(frozen, example, out)
    else:  # argparse restricts the choices
        raise ConfigError(f"unknown export format {args.format}")
    print(f"exported {ckpt.model_name} ({args.format}) -> {out}; inputs: features + "
          f"{len(frozen.names)} pre-processed maps ({', '.join(frozen.names[:3])}, ...)")
    return 0


# ---------------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from caloreco.evaluation.methods import make_methods
    from caloreco.evaluation.report import evaluate

    names = [n.strip() for n in args.methods.split(",") if n.strip()]
    models = {"spvcnn": args.spvcnn_model, "gravnet": args.gravnet_model}
    models = {k: v for k, v in models.items() if k in names}
    methods = make_methods(names, models=models, device=args.device)
    command = "caloreco " + " ".join(shlex.quote(a) for a in (args.argv or sys.argv[1:]))
    summary = evaluate(args.data, methods, args.out, max_events=args.max_events,
                       scan=not args.no_scan, displays=args.displays, command=command)
    print((Path(args.out) / "report.md").read_text().split("\n\n## ")[0] if args.print else
          f"report -> {Path(args.out) / 'report.md'}")
    return 0 if summary else 1


def add_commands(sub: Any) -> None:
    """Register ``train``, ``cluster`` and ``export`` on the sub-parser collection."""
    t = sub.add_parser("train", help="train a clustering network (object condensation)",
                       description="Train SPVCNN (or another registered network) with the object "
                                   "condensation loss on caloreco Parquet shards.")
    t.add_argument("--data", required=True, help="directory of Parquet shards (with manifest)")
    t.add_argument("--model", default="spvcnn", help="network name (default spvcnn)")
    t.add_argument("--out", required=True, help="run directory (checkpoints, logs)")
    t.add_argument("--epochs", type=_positive_int, default=10)
    t.add_argument("--batch-size", type=_positive_int, default=1, help="events per step")
    t.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (warm-up, then cosine decay)")
    t.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    t.add_argument("--cr", type=float, default=None, help="SPVCNN channel ratio (default 0.5)")
    t.add_argument("--coord-dim", type=int, default=None, help="clustering-space dimension")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--loss-weight", action="append", metavar="NAME=VALUE",
                   help="coefficient of a loss term: attractive, repulsive, beta, noise "
                        "(repeatable; default 1 each)")
    t.add_argument("--val-events", type=_positive_int, default=100)
    t.add_argument("--max-events", type=_positive_int, default=None, help="limit training events")
    t.add_argument("--checkpoint-every", type=_positive_int, default=100, help="steps")
    t.add_argument("--time-limit", type=float, default=None, help="minutes, then stop (resumable)")
    t.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.epilog = ("Several processes: torchrun --nproc_per_node N -m caloreco train ... "
                "(DistributedDataParallel; gloo on CPU, nccl on CUDA)")
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("cluster", help="cluster events with a trained network",
                       description="Cluster every event of the Parquet shards; writes one predictions "
                                   "shard per input shard (same event and hit order) and clusters.json.")
    c.add_argument("--data", required=True, help="directory of Parquet shards, or one shard")
    c.add_argument("--model", default=None, help="checkpoint or run directory (default: shipped model)")
    c.add_argument("--out", required=True)
    c.add_argument("--device", default="cpu")
    c.add_argument("--batch-size", type=_positive_int, default=1, help="events per network call")
    c.add_argument("--t-beta", type=float, default=None, help="condensation threshold (default: model's)")
    c.add_argument("--t-d", type=float, default=None, help="cluster radius in clustering space")
    c.set_defaults(func=cmd_cluster)

    v = sub.add_parser("evaluate", help="compare clustering methods on the same events",
                       description="Run every method on the same events and write report.md/json "
                                   "(mIoU, SQ, RQ, PQ, response per type, events/s) and plots.")
    v.add_argument("--data", required=True, help="directory of Parquet shards, or one shard")
    v.add_argument("--methods", default="spvcnn,clue", help="comma list of spvcnn, gravnet, clue, "
                                                            "pf, truth (default spvcnn,clue)")
    v.add_argument("--out", required=True)
    v.add_argument("--spvcnn-model", default=None, help="SPVCNN checkpoint (default: shipped)")
    v.add_argument("--gravnet-model", default=None, help="GravNet checkpoint (default: shipped)")
    v.add_argument("--device", default="cpu")
    v.add_argument("--max-events", type=_positive_int, default=None)
    v.add_argument("--displays", type=int, default=2, help="events drawn per method (default 2)")
    v.add_argument("--no-scan", action="store_true", help="skip the t_beta x t_d scan")
    v.add_argument("--print", action="store_true", help="print the report table")
    v.set_defaults(func=cmd_evaluate, argv=None)

    e = sub.add_parser("export", help="export a trained network to ONNX or TorchScript",
                       description="Export the network part of a trained model; the pre-processing "
                                   "(voxelisation, kernel maps) runs outside, see docs/architecture.md.")
    e.add_argument("--model", default=None, help="checkpoint or run directory (default: shipped model)")
    e.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    e.add_argument("--out", required=True, help="output file")
    e.set_defaults(func=cmd_export)


__all__ = ["add_commands"]
