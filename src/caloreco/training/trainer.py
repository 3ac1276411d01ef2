"""Training loop for the object-condensation clustering models.

A plain loop rather than Lightning: the only moving parts are an optimiser, a schedule,
checkpoint/resume at step granularity and optional DDP, and keeping them explicit keeps
checkpoints loadable with ``weights_only=True`` and the CPU path free of a framework's
start-up cost. Per step: forward (autocast on CUDA), object condensation loss, backward,
gradient-norm clipping, AdamW step, warm-up + cosine learning-rate schedule.

Outputs in the run directory: ``last.pt`` (every ``checkpoint_every`` steps and at each
epoch end; what ``--resume`` continues from), ``best.pt`` (best validation PQ),
``metrics.csv`` (one row per logged step and per validation), ``tb/`` (TensorBoard) and
``config.json``.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from caloreco.errors import ConfigError
from caloreco.losses.contrastive import check_contrast, contrastive_loss
from caloreco.losses.energy import energy_loss
from caloreco.losses.signal import signal_loss
from caloreco.models.registry import named_outputs
from caloreco.models.encoding import encoding_from_dict
from caloreco.models.registry import build_model
from caloreco.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from caloreco.training.data import EncodedEvents, ShardLocalSampler, collate
from caloreco.training.distributed import any_rank, barrier, broadcast_buffers
from caloreco.utils.atomic import atomic_path, atomic_write_text


@dataclass
class TrainConfig:
    """Settings of one training run (written to ``config.json``)."""

    data: str
    out: str
    model: str = "spvcnn"
    model_options: dict[str, Any] = field(default_factory=dict)
    # hit encoding: {"kind": "hgcal" (default) or "hcal", **its options}; {} = hgcal defaults
    encoding: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    batch_size: int = 1
    lr: float = 2e-3
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    val_fraction: float = 0.1
    val_events: int = 100  # validation events evaluated at each epoch end (at most)
    max_train_events: int | None = None
    device: str = "cpu"
    amp: bool = True  # autocast (bfloat16) on CUDA
    seed: int = 0
    checkpoint_every: int = 100  # steps
    log_every: int = 10  # steps
    time_limit_min: float | None = None  # stop cleanly (checkpointed) after this long
    q_min: float = 0.1
    s_b: float = 1.0
    repulsion: str = "hits"  # normalisation of the repulsive term: "hits" or "groups"
    # local repulsion: only hits within this radius [cm] of a condensation point repel it
    # (projected positions, as the inference's locality cut); None: the whole event
    r_local: float | None = None
    # margin of the condensation-point repulsion (loss weight "pair", default 0: off)
    pair_margin: float = 1.0
    # neighbour contrastive term (loss weight "contrast", default 0: off): each signal hit's
    # contrast_k nearest signal hits in the projected positions, margin in clustering units
    contrast_k: int = 16
    contrast_margin: float = 1.0
    # coefficients of the loss terms (attractive, repulsive, beta, noise, pair; see
    # CondensationLoss), "contrast" (the neighbour contrastive term,
    # caloreco.losses.contrastive; default 0), "energy" (the energy regression of a model
    # with an energy head, caloreco.losses.energy; default 1) and "signal" (the signal/noise
    # classification of a model with a signal head, caloreco.losses.signal; default 1)
    loss_weights: dict[str, float] = field(default_factory=dict)
    # train only the parameters whose names start with one of these prefixes (e.g.
    # ["energy_mlp"]: the energy head alone on a trained network); empty: all
    trainable: list[str] = field(default_factory=list)
    t_beta: float = 0.1
    t_d: float = 0.7
    assign: str = "first"  # hit-to-point rule of the validation clustering
    r_max: float | None = None  # locality cut of the validation clustering [cm]; None: none
    # left-over attachment of the validation clustering [cm] and its passes; None: none
    attach_r: float | None = None
    attach_passes: int = 1
    # detector term of the validation clustering [cm per clustering unit]; None: none
    position_scale: float | None = None
    # the validation clustering attaches only left-over hits whose signal probability is
    # at least this (a model with a signal head); None: every left-over hit
    t_signal: float | None = None
    progress: bool = True
    # data-loading processes (decode + encode ahead of the device); 0: in the training loop.
    # The batches and their order are the same whatever the number.
    workers: int = 0
    # start from this checkpoint's weights (fine-tuning; fresh optimiser and schedule)
    init: str | None = None


#: columns of a run's ``metrics.csv`` (training rows and validation rows alike)
METRIC_FIELDS = ("kind", "epoch", "step", "lr", "grad_norm", "sec_per_step", "loss",
                 "attractive", "repulsive", "coward", "noise", "pair", "contrast_same",
                 "contrast_other", "energy", "signal", "val_loss", "pq", "sq", "rq", "miou",
                 "miou_weighted", "val_energy", "val_signal")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation split of ``n`` events."""
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be in (0, 1), got {val_fraction}")
    perm = np.random.default_rng([seed, 7]).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise ConfigError(f"{n} events are too few to split off {n_val} for validation")
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def warmup_cosine(total: int, warmup: int, floor: float = 0.01) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then a cosine from 1 down
    to ``floor`` at step ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return factor


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
            for k, v in batch.items()}


class Trainer:
    """Runs :class:`TrainConfig`; ``fit()`` returns the path of the best checkpoint."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False,
                 rank: int = 0, world_size: int = 1) -> None:
        from caloreco.clustering.attach import check_attach, check_t_signal
        from caloreco.clustering.condensation import check_assign, check_r_max
        from caloreco.clustering.model_clustering import check_position_scale
        from caloreco.losses.condensation import CondensationLoss

        # the validation clustering's settings, checked before any work
        check_assign(cfg.assign)
        check_r_max(cfg.r_max)
        check_attach(cfg.attach_r, cfg.attach_passes)
        check_position_scale(cfg.position_scale)
        check_t_signal(cfg.t_signal)
        if not 0.0 < cfg.t_beta < 1.0 or not cfg.t_d > 0.0:
            raise ConfigError(f"validation clustering needs 0 < t_beta < 1 and t_d > 0, got "
                              f"t_beta {cfg.t_beta}, t_d {cfg.t_d}")
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.out = Path(cfg.out)
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda asked for, but torch sees no CUDA device")
        self.encoding = encoding_from_dict(cfg.encoding)
        opts = {"in_features": self.encoding.n_features, **cfg.model_options}
        torch.manual_seed(cfg.seed)
        self.model = build_model(cfg.model, opts).to(self.device)
        self.model_config = self.model.config.to_dict()
        weights = dict(cfg.loss_weights)
        self.energy_weight = float(weights.pop("energy", 1.0))
        self.signal_weight = float(weights.pop("signal", 1.0))
        self.contrast_weight = float(weights.pop("contrast", 0.0))
        if not self.contrast_weight >= 0:
            raise ConfigError(f"the weight of the contrast term must be >= 0, got "
                              f"{self.contrast_weight}")
        check_contrast(cfg.contrast_k, cfg.contrast_margin)
        if cfg.t_signal is not None and not self.model_config.get("signal_head"):
            raise ConfigError(f"--t-signal {cfg.t_signal} needs a model with a signal head "
                              f"(--signal-head)")
        self.loss_fn = CondensationLoss(q_min=cfg.q_min, s_b=cfg.s_b, weight_beta=True,
                                        repulsion=cfg.repulsion, r_local=cfg.r_local,
                                        pair_margin=cfg.pair_margin, **weights)
        params = self._trainable(cfg.trainable)

        full = EncodedEvents(cfg.data, self.encoding)
        train_idx, val_idx = split_indices(len(full), cfg.val_fraction, cfg.seed)
        if cfg.max_train_events:
            train_idx = train_idx[: cfg.max_train_events]
        self.train_set = EncodedEvents(cfg.data, self.encoding, train_idx)
        self.val_set = EncodedEvents(cfg.data, self.encoding, val_idx[: cfg.val_events])
        self.sampler = ShardLocalSampler(self.train_set, seed=cfg.seed, rank=rank,
                                         num_replicas=world_size)
        self.steps_per_epoch = max(1, len(self.sampler) // cfg.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.epochs

        self.net: torch.nn.Module = self.model
        if world_size > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, warmup_cosine(self.total_steps, warmup=max(1, self.total_steps // 20)))
        self.epoch, self.step_in_epoch, self.global_step = 0, 0, 0
        self.best_pq, self.best_energy, self.best_signal = -math.inf, math.inf, math.inf
        if resume:
            self._resume()
        elif cfg.init:
            self._init_weights(cfg.init)

    def _trainable(self, prefixes: list[str]) -> list[torch.nn.Parameter]:
        """The parameters to train (names starting with a prefix; all without prefixes);
        the others are frozen."""
        if not prefixes:
            return list(self.model.parameters())
        chosen = []
        for name, p in self.model.named_parameters():
            p.requires_grad_(any(name.startswith(pre) for pre in prefixes))
            if p.requires_grad:
                chosen.append(p)
        if not chosen:
            names = sorted({n.split(".")[0] for n, _ in self.model.named_parameters()})
            raise ConfigError(f"--trainable {prefixes} matches no parameter of {self.cfg.model}; "
                              f"its modules are {names}")
        return chosen

    def _train_mode(self) -> None:
        """Training mode; with ``trainable`` prefixes only those modules train, the frozen
        rest runs as at inference (no dropout), so that a head trained alone on a trained
        network sees the features it will read."""
        self.model.train()
        if self.cfg.trainable:
            self.model.eval()
            for name, module in self.model.named_modules():
                if name and name.startswith(tuple(self.cfg.trainable)):
                    module.train()

    # ------------------------------------------------------------------ state
    def _checkpoint(self, metrics: dict[str, Any] | None = None) -> Checkpoint:
        cfg = self.cfg
        return Checkpoint(cfg.model, self.model_config, self.encoding.to_dict(),
                          self.model.state_dict(),
                          clustering={"t_beta": cfg.t_beta, "t_d": cfg.t_d,
                                      "assign": cfg.assign, "r_max": cfg.r_max,
                                      "attach_r": cfg.attach_r,
                                      "attach_passes": cfg.attach_passes,
                                      "position_scale": cfg.position_scale,
                                      "t_signal": cfg.t_signal},
                          training={"epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                                    "global_step": self.global_step, "best_pq": self.best_pq,
                                    "best_energy": self.best_energy,
                                    "best_signal": self.best_signal,
                                    "optimizer": self.opt.state_dict(),
                                    "scheduler": self.sched.state_dict(),
                                    "rng_cpu": torch.get_rng_state(),
                                    "rng_cuda": (torch.cuda.get_rng_state(self.device)
                                                 if self.device.type == "cuda" else None),
                                    "config": asdict(cfg)},
                          metrics=metrics or {})

    def _resume(self) -> None:
        path = self.out / "last.pt"
        if not path.exists():
            raise ConfigError(f"--resume: {path} does not exist (nothing to resume)")
        ckpt = load_checkpoint(path, expect_model=self.cfg.model, expect_config=self.model_config)
        self.model.load_state_dict(ckpt.state_dict)
        t = ckpt.training
        self.opt.load_state_dict(t["optimizer"])
        self.sched.load_state_dict(t["scheduler"])
        self.epoch, self.step_in_epoch = int(t["epoch"]), int(t["step_in_epoch"])
        self.global_step, self.best_pq = int(t["global_step"]), float(t["best_pq"])
        self.best_energy = float(t.get("best_energy", math.inf))
        self.best_signal = float(t.get("best_signal", math.inf))
        torch.set_rng_state(t["rng_cpu"])  # dropout masks continue as without interruption
        if t.get("rng_cuda") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(t["rng_cuda"], self.device)

    def _init_weights(self, path: str) -> None:
        """Load the weights of checkpoint ``path``: same network, configuration and encoding;
        a checkpoint without the energy or signal head may start a run with one (the head
        starts fresh, every other weight is loaded)."""
        heads = {"energy_head": "energy_mlp.", "signal_head": "signal_mlp."}
        expect = {k: v for k, v in self.model_config.items() if k not in heads}
        ckpt = load_checkpoint(path, expect_model=self.cfg.model, expect_config=expect)
        added = []
        for key, prefix in heads.items():
            ours, theirs = bool(self.model_config.get(key)), bool(ckpt.model_config.get(key))
            if theirs and not ours:
                raise ConfigError(f"--init {path}: the checkpoint has a{'n' if key[0] == 'e' else ''} "
                                  f"{key.replace('_', ' ')}; train with "
                                  f"--{key.replace('_', '-')} to keep it")
            if ours and not theirs:
                added.append(prefix)
        if encoding_from_dict(ckpt.encoding).to_dict() != self.encoding.to_dict():
            raise ConfigError(f"--init {path}: the checkpoint's hit encoding {ckpt.encoding} "
                              f"differs from this run's {self.encoding.to_dict()}")
        # float16 shipped weights become float32
        result = self.model.load_state_dict(ckpt.state_dict, strict=not added)
        if added and (result.unexpected_keys or any(
                not k.startswith(tuple(added)) for k in result.missing_keys)):
            raise ConfigError(f"--init {path}: weights do not fit this network (missing "
                              f"{result.missing_keys}, unexpected {result.unexpected_keys})")

    def _save_last(self) -> None:
        if self.rank == 0:
            save_checkpoint(self._checkpoint(), self.out / "last.pt")

    # ------------------------------------------------------------------ loop
    def _forward_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        amp = self.cfg.amp and self.device.type == "cuda"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
            outs = named_outputs(self.model, self.net(batch["features"], batch["points"],
                                                      batch["batch"]))
        coords, beta = outs["coords"].float(), outs["beta"].float()
        terms = self.loss_fn(beta, coords, batch["target"], batch["batch"],
                             weights=batch["weight"], positions=batch["positions"])
        if self.contrast_weight > 0:  # the neighbour contrastive term
            terms.update(contrastive_loss(coords, batch["target"], batch["positions"],
                                          batch["batch"], k=self.cfg.contrast_k,
                                          margin=self.cfg.contrast_margin))
            terms["loss"] = terms["loss"] + self.contrast_weight * (
                terms["contrast_same"] + terms["contrast_other"])
        if "signal" in outs:  # the signal head
            terms["signal"] = signal_loss(outs["signal"].float(), batch["target"], batch["batch"])
            terms["loss"] = terms["loss"] + self.signal_weight * terms["signal"]
        if "energy_factor" in outs:  # the energy head
            if bool(torch.isnan(batch["energy_target"]).any()):
                raise ConfigError("the model has an energy head, but the training events have "
                                  "no generated cluster energies (clusters['energy'])")
            terms["energy"] = energy_loss(outs["energy_factor"].float(), beta, batch["target"],
                                          batch["energy_target"], batch["batch"],
                                          q_min=self.cfg.q_min)
            terms["loss"] = terms["loss"] + self.energy_weight * terms["energy"]
        return terms

    def fit(self, on_log: Callable[[dict[str, Any]], None] | None = None) -> Path:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        if self.rank == 0:
            atomic_write_text(self.out / "config.json", json.dumps(asdict(cfg), indent=2))
        writer = None
        if self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.out / "tb"))
        t_start = time.monotonic()
        stop = False
        while self.epoch < cfg.epochs and not stop:
            self.sampler.set_epoch(self.epoch)
            order = self.sampler.order()[self.step_in_epoch * cfg.batch_size:]
            # own generator: creating the loader must not consume the global RNG (dropout
            # masks after a resume must match those of an uninterrupted run)
            loader = DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=order,
                                collate_fn=collate, num_workers=cfg.workers,
                                prefetch_factor=4 if cfg.workers else None,
                                pin_memory=self.device.type == "cuda",
                                generator=torch.Generator().manual_seed(cfg.seed))
            self._train_mode()
            bar = None
            if cfg.progress and self.rank == 0:
                from tqdm import tqdm

                bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch,
                           desc=f"epoch {self.epoch + 1}/{cfg.epochs}", mininterval=5.0)
            running: dict[str, float] = {}
            t_log = time.monotonic()
            for batch in loader:
                if self.step_in_epoch >= self.steps_per_epoch:
                    break
                batch = _to(batch, self.device)
                terms = self._forward_loss(batch)
                self.opt.zero_grad(set_to_none=True)
                terms["loss"].backward()
                gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
                if torch.isfinite(gnorm):
                    self.opt.step()
                self.sched.step()
                self.step_in_epoch += 1
                self.global_step += 1
                for k, v in terms.items():
                    running[k] = running.get(k, 0.0) + float(v.detach())
                running["n"] = running.get("n", 0) + 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(terms['loss']):.3f}")
                if self.global_step % cfg.log_every == 0 and self.rank == 0:
                    n = running.pop("n")
                    row = {"kind": "train", "epoch": self.epoch, "step": self.global_step,
                           "lr": self.sched.get_last_lr()[0], "grad_norm": float(gnorm),
                           "sec_per_step": (time.monotonic() - t_log) / n,
                           **{k: v / n for k, v in running.items()}}
                    running, t_log = {}, time.monotonic()
                    self._log(row, writer)
                    if on_log:
                        on_log(row)
                if self.global_step % cfg.checkpoint_every == 0:
                    self._save_last()
                late = bool(cfg.time_limit_min) and time.monotonic() - t_start > 60 * cfg.time_limit_min
                if any_rank(late, self.world_size):  # every rank stops at the same step
                    stop = True
                    break
            if bar is not None:
                bar.close()
            broadcast_buffers(self.model, self.world_size)
            if stop:
                self._save_last()
                barrier(self.world_size)
                break
            self.epoch += 1
            self.step_in_epoch = 0
            metrics = self.validate() if self.rank == 0 else {}
            if self.rank == 0:
                row = {"kind": "val", "epoch": self.epoch, "step": self.global_step, **metrics}
                self._log(row, writer)
                if on_log:
                    on_log(row)
                # best: highest PQ; at equal PQ (e.g. only the energy or signal head
                # trains) the lower validation energy loss, then signal loss
                key = (metrics.get("pq", -1), -metrics.get("val_energy", math.inf),
                       -metrics.get("val_signal", math.inf))
                if key > (self.best_pq, -self.best_energy, -self.best_signal):
                    self.best_pq = metrics["pq"]
                    self.best_energy = metrics.get("val_energy", math.inf)
                    self.best_signal = metrics.get("val_signal", math.inf)
                    save_checkpoint(self._checkpoint(metrics), self.out / "best.pt")
            self._save_last()
            barrier(self.world_size)  # the other ranks wait for rank 0's validation
        if writer is not None:
            writer.close()
        best = self.out / "best.pt"
        return best if best.exists() else self.out / "last.pt"

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Loss, mIoU and PQ of the condensation clustering on the validation events."""
        from caloreco.clustering.model_clustering import condense_outputs
        from caloreco.metrics import ClusteringEvaluator

        self.model.eval()
        ev = ClusteringEvaluator()
        losses, e_losses, s_losses = [], [], []
        for i in range(len(self.val_set)):
            b = _to(collate([self.val_set[i]]), self.device)
            outs = named_outputs(self.model, self.model(b["features"], b["points"], b["batch"]))
            coords, beta, signal = outs["coords"], outs["beta"], outs.get("signal")
            terms = self.loss_fn(beta.float(), coords.float(), b["target"], b["batch"],
                                 weights=b["weight"], positions=b["positions"])
            losses.append(float(terms["loss"]))
            if signal is not None:
                s_losses.append(float(signal_loss(signal.float(), b["target"])))
            if "energy_factor" in outs and not bool(torch.isnan(b["energy_target"]).any()):
                e_losses.append(float(energy_loss(outs["energy_factor"].float(), beta.float(),
                                                  b["target"],
                                                  b["energy_target"], b["batch"],
                                                  q_min=self.cfg.q_min)))
            cfg = self.cfg  # the clustering the checkpoint records (one definition)
            pred = condense_outputs(beta.float(), coords.float(), None, t_beta=cfg.t_beta,
                                    t_d=cfg.t_d, assign=cfg.assign, r_max=cfg.r_max,
                                    positions=b["positions"], attach_r=cfg.attach_r,
                                    attach_passes=cfg.attach_passes, xyz=b["xyz"],
                                    position_scale=cfg.position_scale,
                                    signal=None if signal is None else signal.float(),
                                    t_signal=cfg.t_signal)
            ev.add(b["target"].cpu().numpy(), pred.cpu().numpy(), b["energy"].cpu().numpy())
        r = ev.result()
        self._train_mode()
        out = {"val_loss": float(np.mean(losses)) if losses else float("nan"),
               "pq": float(r["pq"]), "sq": float(r["sq"]), "rq": float(r["rq"]),
               "miou": float(r["miou"]), "miou_weighted": float(r["miou_weighted"])}
        if e_losses:
            out["val_energy"] = float(np.mean(e_losses))
        if s_losses:
            out["val_signal"] = float(np.mean(s_losses))
        return out

    def _log(self, row: dict[str, Any], writer: Any) -> None:
        path = self.out / "metrics.csv"
        fields = list(METRIC_FIELDS)
        header: list[str] | None = None
        if path.exists():
            with path.open(newline="") as fh:
                header = next(csv.reader(fh), None)
        if header is not None and header != fields:
            # a run resumed from an older version: rewrite its rows under the current header
            # (new columns empty), so that every row lines up with the header
            with path.open(newline="") as fh:
                old = list(csv.DictReader(fh))
            with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
                w.writeheader()
                w.writerows(old)
            header = fields
        with path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            if header is None:
                w.writeheader()
            w.writerow(row)
        if writer is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    writer.add_scalar(f"{row['kind']}/{k}", v, row["step"])
