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

from caloreco.cli_types import non_negative_int as _non_negative_int
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
    if args.energy_head:
        opts["energy_head"] = True
    if args.signal_head:
        opts["signal_head"] = True
    weights: dict[str, float] = {}
    for item in args.loss_weight or []:
        name, _, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"--loss-weight expects NAME=VALUE (e.g. repulsive=10), got "
                              f"'{item}'") from None
    unknown = sorted(set(weights) - {"attractive", "repulsive", "beta", "noise", "pair",
                                     "contrast", "energy", "signal"})
    if unknown:
        raise ConfigError(f"--loss-weight names {unknown} are not loss terms; use attractive, "
                          f"repulsive, beta, noise, pair, contrast, energy or signal")
    cfg = TrainConfig(data=args.data, out=args.out, model=args.model, model_options=opts,
                      loss_weights=weights, encoding={"kind": args.encoding},
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      device=dist_info.device, seed=args.seed, val_events=args.val_events,
                      max_train_events=args.max_events, time_limit_min=args.time_limit,
                      checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
                      q_min=args.q_min, repulsion=args.repulsion, r_local=args.repulsion_radius,
                      pair_margin=args.pair_margin, contrast_k=args.contrast_k,
                      contrast_margin=args.contrast_margin,
                      init=args.init, workers=args.workers, trainable=args.trainable or [],
                      t_beta=args.t_beta, t_d=args.t_d, assign=args.assign, r_max=args.r_max,
                      attach_r=args.attach_radius, attach_passes=args.attach_passes,
                      position_scale=args.position_scale, t_signal=args.t_signal)
    if args.resume:
        stored = Path(args.out) / "config.json"
        if stored.exists():  # resume with the stored run settings unless overridden
            cfg = TrainConfig(**{**json.loads(stored.read_text()), "device": dist_info.device,
                                 "progress": not args.no_progress, "workers": args.workers})
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
    import sys

    from caloreco.batch.cluster_job import ClusterJob, cluster_summary
    from caloreco.batch.shards import failure_lines, run_shards
    from caloreco.data.dataset import _shard_paths
    from caloreco.utils.atomic import atomic_write_text

    job = ClusterJob.create(args.out, args.model, device=args.device,
                            batch_size=args.batch_size, t_beta=args.t_beta, t_d=args.t_d,
                            assign=args.assign, r_max=args.r_max,
                            attach_r=args.attach_radius, attach_passes=args.attach_passes,
                            position_scale=args.position_scale, t_signal=args.t_signal)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shards = _shard_paths(args.data)
    t0 = time.perf_counter()
    scheduler, workers = _batch_target(args)
    run = run_shards(job, shards, scheduler=scheduler, workers=workers,
                     on_result=_batch_progress(args))
    dt = time.perf_counter() - t0
    summary = cluster_summary(job, run, dt, str(args.model or "shipped"))
    atomic_write_text(out / "clusters.json", json.dumps(summary, indent=2))
    n_events, n_hits = summary["n_events"], summary["n_hits"]
    if "batch" not in summary:
        print(f"clustered {n_events} events ({n_hits} hits) in {dt:.1f} s: "
              f"{n_events / max(dt, 1e-9):.1f} events/s -> {out}")
    else:  # a rate would mix computed and skipped shards
        b = summary["batch"]
        print(f"clustered {n_events} events ({n_hits} hits) in {dt:.1f} s -> {out}\n"
              f"shards: {b['done']} computed, {b['skipped']} already complete, "
              f"{len(b['failed'])} failed ({b['workers']} Dask workers at {b['scheduler']})")
    if run.failed:
        print("\n".join(failure_lines(run.results)), file=sys.stderr)
        print(f"{len(run.failed)} of {len(shards)} shard(s) failed; the others are complete. "
              f"Fix or remove the failed shard(s) and re-run: complete shards are skipped.",
              file=sys.stderr)
        return 1
    return 0


def _batch_target(args: argparse.Namespace) -> tuple[str | None, int | None]:
    """``(--scheduler, --workers)``; both None (serial) for callers that build the arguments
    themselves (the demo calls :func:`cmd_cluster` with the serial options only)."""
    return getattr(args, "scheduler", None), getattr(args, "workers", None)


def _batch_progress(args: argparse.Namespace) -> Any:
    """A per-shard progress line on Dask runs (None for serial runs: no change of output)."""
    if _batch_target(args) == (None, None):
        return None

    def report(result: Any) -> None:
        where = Path(result.shard).name
        if result.status == "failed":
            print(f"  {where}: FAILED", flush=True)
        else:
            print(f"  {where}: {result.status} ({result.seconds:.1f} s)", flush=True)

    return report


def _add_batch_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run one task per shard on this Dask scheduler (e.g. "
                            "tcp://host:8786); resumable: complete shards are skipped")
    group.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                       help="run one task per shard on a local Dask cluster of N "
                            "single-threaded worker processes; resumable")


# ---------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from caloreco.clustering.model_clustering import pretrained_path

    checkpoint = args.model if args.model else pretrained_path()
    if args.triton_repo is not None:
        from caloreco.serving.triton_repo import build_triton_repo

        repo = build_triton_repo(checkpoint, args.triton_repo, fmt=args.format,
                                 name=args.triton_name, force=args.force,
                                 network_backend=args.triton_network_backend)
        print(f"Triton model repository ({args.format}) -> {repo}: ensemble '{args.triton_name}' "
              f"(FEATURES, EVENT_OFFSETS -> CLUSTER_ID, BETA, COORDS); see docs/serving-triton.md")
        if args.out is not None:  # the repository's network file: no second export
            import shutil

            from caloreco.utils.atomic import atomic_path

            net = repo / f"{args.triton_name}_network" / "1"
            with atomic_path(args.out) as tmp:
                shutil.copyfile(net / ("model.onnx" if args.format == "onnx" else "model.pt"), tmp)
            print(f"exported the network ({args.format}) -> {args.out}")
        return 0
    if args.out is None:
        raise ConfigError("export needs --out FILE (the network alone), --triton-repo DIR (a "
                          "Triton model repository), or both")
    from caloreco.serving.export import FrozenNetwork, export_onnx, export_torchscript
    from caloreco.serving.triton_repo import example_inputs
    from caloreco.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model, encoding = ckpt.build("cpu")
    frozen = FrozenNetwork(model)
    example = example_inputs(frozen, encoding)  # an example shape; sizes stay dynamic
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
    command = "caloreco " + " ".join(shlex.quote(a) for a in (args.argv or sys.argv[1:]))
    scheduler, workers = _batch_target(args)
    if scheduler is not None or workers is not None:
        from caloreco.batch.evaluate_job import run_evaluation
        from caloreco.batch.shards import failure_lines

        summary, run = run_evaluation(args.data, names, args.out, models=models,
                                      device=args.device, max_events=args.max_events,
                                      scan=not args.no_scan, displays=args.displays,
                                      command=command, scheduler=scheduler, workers=workers,
                                      on_result=_batch_progress(args))
        if summary is None:
            print("\n".join(failure_lines(run.results)), file=sys.stderr)
            print(f"{len(run.failed)} of {len(run.results)} shard(s) failed; no report written. "
                  f"The other shards' partial results are kept in {Path(args.out) / 'partials'}: "
                  f"fix or remove the failed shard(s) and re-run.", file=sys.stderr)
            return 1
    else:
        from caloreco.evaluation.report import dataset_detector

        methods = make_methods(names, models=models, device=args.device,
                               pf_detector=dataset_detector(args.data))
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
    t.add_argument("--energy-head", action="store_true",
                   help="also predict a per-hit energy-correction factor, trained with the "
                        "energy regression loss (loss weight 'energy'); with --init from a "
                        "model without one, the head starts fresh")
    t.add_argument("--signal-head", action="store_true",
                   help="also predict a per-hit signal probability (shower, not noise), "
                        "trained with a binary cross-entropy (loss weight 'signal'); with "
                        "--init from a model without one, the head starts fresh")
    t.add_argument("--trainable", action="append", metavar="PREFIX",
                   help="train only parameters whose names start with PREFIX (repeatable), "
                        "e.g. energy_mlp or signal_mlp: that head alone; default: all")
    t.add_argument("--encoding", choices=["hgcal", "hcal"], default="hgcal",
                   help="hit encoding: hgcal (x, y, layer voxels; default) or hcal (barrel "
                        "eta, phi, depth voxels); stored in the checkpoints")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--loss-weight", action="append", metavar="NAME=VALUE",
                   help="coefficient of a loss term: attractive, repulsive, beta, noise, "
                        "pair (the condensation-point repulsion; default 0), contrast (the "
                        "neighbour contrastive term; default 0), energy (the "
                        "energy head's regression), signal (the signal head's "
                        "classification; repeatable; default 1 each)")
    t.add_argument("--q-min", type=float, default=0.1, help="minimal condensation charge "
                   "q_min (default 0.1)")
    t.add_argument("--repulsion", choices=["hits", "groups"], default="hits",
                   help="normalisation of the repulsive potential: mean over the event's other "
                        "hits (default, Kieseler 2020) or over its other objects and noise "
                        "(every neighbour counts alike, however small)")
    t.add_argument("--repulsion-radius", type=float, default=None, metavar="CM",
                   help="local repulsion: only hits within CM of a condensation point (positions "
                        "projected onto the front face, as the clustering's --r-max) repel it "
                        "(default: the whole event)")
    t.add_argument("--pair-margin", type=float, default=1.0, metavar="M",
                   help="margin in the clustering space of the condensation-point repulsion "
                        "(loss weight 'pair': the points of two showers, within the "
                        "--repulsion-radius of each other where given, are pushed at least M "
                        "apart; default 1)")
    t.add_argument("--contrast-k", type=int, default=16, metavar="K",
                   help="neighbour contrastive term (loss weight 'contrast', default 0: off): "
                        "each signal hit and its K nearest signal hits in the projected "
                        "positions form pairs, pulled together when of the same shower and "
                        "pushed at least --contrast-margin apart when not (default 16)")
    t.add_argument("--contrast-margin", type=float, default=1.0, metavar="M",
                   help="margin in the clustering space of the neighbour contrastive term "
                        "(default 1)")
    t.add_argument("--init", default=None, metavar="CKPT",
                   help="start from the weights of this checkpoint or run directory (same "
                        "network and encoding; fresh optimiser and learning-rate schedule)")
    t.add_argument("--t-beta", type=float, default=0.1,
                   help="condensation threshold of the validation clustering (default 0.1)")
    t.add_argument("--t-d", type=float, default=0.7,
                   help="cluster radius of the validation clustering (default 0.7)")
    t.add_argument("--assign", choices=["first", "nearest"], default="first",
                   help="hit-to-point rule of the validation clustering (default first)")
    t.add_argument("--r-max", type=float, default=None, metavar="CM",
                   help="locality cut of the validation clustering [cm] (default none)")
    t.add_argument("--attach-radius", type=float, default=None, metavar="CM",
                   help="left-over attachment of the validation clustering [cm] (default none)")
    t.add_argument("--attach-passes", type=_positive_int, default=1, metavar="N",
                   help="repetitions of that attachment (default 1)")
    t.add_argument("--position-scale", type=float, default=None, metavar="CM",
                   help="detector term of the validation clustering [cm per clustering unit] "
                        "(default none)")
    t.add_argument("--t-signal", type=float, default=None, metavar="P",
                   help="the validation clustering attaches only left-over hits with signal "
                        "probability >= P (needs --signal-head; default: all left-over hits)")
    t.add_argument("--val-events", type=_positive_int, default=100)
    t.add_argument("--max-events", type=_positive_int, default=None, help="limit training events")
    t.add_argument("--checkpoint-every", type=_positive_int, default=100, help="steps")
    t.add_argument("--workers", type=_non_negative_int, default=0,
                   help="data-loading processes that decode and encode events ahead of the "
                        "training step (default 0: in the loop); same batches in the same order")
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
    c.add_argument("--assign", choices=["first", "nearest"], default=None,
                   help="hit-to-point rule: first point within t_d in decreasing-beta order, "
                        "or nearest point within t_d (default: the model's)")
    c.add_argument("--r-max", type=float, default=None, metavar="CM",
                   help="locality cut: a condensation point takes only hits whose line of flight "
                        "passes within CM of it at the front face (default: the model's; inf: "
                        "none)")
    c.add_argument("--attach-radius", type=float, default=None, metavar="CM",
                   help="left-over attachment: unclustered hits join the cluster of the nearest "
                        "clustered hit within CM in x, y, z (default: the model's; inf: none)")
    c.add_argument("--attach-passes", type=_positive_int, default=None, metavar="N",
                   help="repetitions of the attachment (default: the model's)")
    c.add_argument("--position-scale", type=float, default=None, metavar="CM",
                   help="detector term: distances to a condensation point also count the "
                        "front-face distance over CM (1 cm = 1/CM clustering units; default: "
                        "the model's; inf: none)")
    c.add_argument("--t-signal", type=float, default=None, metavar="P",
                   help="the attachment takes only left-over hits whose signal probability "
                        "(a model with a signal head) is >= P (default: the model's; 0: all)")
    _add_batch_options(c)
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
    _add_batch_options(v)
    v.set_defaults(func=cmd_evaluate, argv=None)

    e = sub.add_parser("export", help="export a trained network to ONNX or TorchScript",
                       description="Export the network part of a trained model; the pre-processing "
                                   "(voxelisation, kernel maps) runs outside, see docs/architecture.md.")
    e.add_argument("--model", default=None, help="checkpoint or run directory (default: shipped model)")
    e.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    e.add_argument("--out", default=None, help="output file of the network alone")
    e.add_argument("--triton-repo", default=None, metavar="DIR",
                   help="write an NVIDIA Triton model repository: pre-processing (Python "
                        "backend), network, condensation and an ensemble chaining them "
                        "(docs/serving-triton.md)")
    e.add_argument("--triton-name", default="caloreco", metavar="NAME",
                   help="name of the ensemble in the repository (default caloreco; the "
                        "other models are NAME_preprocess, NAME_network, NAME_postprocess)")
    e.add_argument("--triton-network-backend", choices=["native", "python"], default="native",
                   help="run the network in Triton's onnxruntime/libtorch backend (native, "
                        "default) or in the Python backend with torch/onnxruntime (for servers "
                        "without those backends, e.g. the nvidia-pytriton one)")
    e.add_argument("--force", action="store_true",
                   help="replace an existing non-empty --triton-repo directory")
    e.set_defaults(func=cmd_export)


__all__ = ["add_commands"]
