"""Representation probe: what do a trained SPVCNN's final point features know?

The clustering head of SPVCNN reads one feature vector per hit (the output of the last
point MLP, 48 values at cr 0.5). This probe caches those vectors for some events, then
trains small new readouts on them with the network frozen, and scores each readout with
the checkpoint's own clustering (rule, locality cut, attachment; the thresholds scanned) on
validation events, without the checkpoint's detector term unless ``--position-scale S`` is
given (the comparison of readouts is made without it):

``cache``
    run the checkpoint on events and store, per event, the point features, the network's
    own outputs and what the loss and the clustering need (truth, weights, positions).
``head``
    a fresh object-condensation head (MLP) trained with the loss the shipped model was
    trained with (local repulsion 10 cm, energy weights). ``--anchor S`` anchors the first
    three clustering coordinates at the hit's projected position: ``x[:3] = p / S +
    offset`` with ``p`` the position on the front face [cm] and ``S`` [cm per unit], so
    that the head predicts an offset towards its shower (centre voting, as in PointGroup or
    Panoptic-DeepLab) instead of an absolute place in the clustering space.
    ``--train-position-scale S`` computes the loss in the coordinates extended by the
    detector term (:func:`~caloreco.clustering.model_clustering.with_detector_term`), the
    training counterpart of ``--position-scale S``. ``--shipped`` scores the network's own
    head instead.
``edge``
    a same-shower classifier on the 10 nearest neighbours of each hit in x, y, z (both
    hits' features and their separation): how many neighbour pairs of *different* showers
    it can tell apart from pairs of the same shower.

A readout that does much better than the network's own head would show that the features
hold what the clustering lacks; if none does, the representation itself is the limit.

Run::

    python benchmarks/frozen_feature_probe.py cache --data runs/data/train --out runs/probe/train --events 400
    python benchmarks/frozen_feature_probe.py cache --data runs/data/val --out runs/probe/val --events 100
    python benchmarks/frozen_feature_probe.py head --val runs/probe/val --shipped
    python benchmarks/frozen_feature_probe.py head --val runs/probe/val --shipped --position-scale 10
    python benchmarks/frozen_feature_probe.py head --train runs/probe/train --val runs/probe/val
    python benchmarks/frozen_feature_probe.py head --train runs/probe/train --val runs/probe/val --anchor 3
    python benchmarks/frozen_feature_probe.py edge --train runs/probe/train --val runs/probe/val

(about 4 min to cache 400 events on one CPU thread, 2-5 min per readout).
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from caloreco.clustering.model_clustering import condense_outputs, with_detector_term
from caloreco.losses.condensation import CondensationLoss
from caloreco.metrics import ClusteringEvaluator
from caloreco.training.checkpoint import load_checkpoint
from caloreco.training.data import EncodedEvents, collate

#: what one cached event holds besides the features ``z``
FIELDS = ("coords", "beta", "target", "weight", "energy", "positions", "xyz")
#: neighbours per hit of the edge classifier
K_EDGE = 10


def cache(args: argparse.Namespace) -> None:
    """Store the head's input features and the network's outputs of ``--events`` events."""
    model, enc = load_checkpoint(args.model).build("cpu")
    model.eval()
    captured: dict[str, torch.Tensor] = {}
    model.head.register_forward_hook(lambda m, inp, out: captured.__setitem__("z", inp[0]))
    data = EncodedEvents(args.data, enc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(min(args.events, len(data))):
        b = collate([data[i]])
        with torch.no_grad():
            coords, beta = model(b["features"], b["points"], b["batch"])[:2]
        np.savez(out / f"{i:05d}.npz", z=captured["z"].numpy().astype(np.float16),
                 coords=coords.numpy(), beta=beta.numpy(),
                 **{k: b[k].numpy() for k in FIELDS[2:]})


def load(folder: str, n: int) -> list[dict[str, torch.Tensor]]:
    """The first ``n`` cached events of ``folder``."""
    files = sorted(Path(folder).glob("*.npz"))[:n]
    if not files:
        raise SystemExit(f"no cached events in {folder}: run the 'cache' step first")
    events = []
    for f in files:
        with np.load(f) as z:
            events.append({k: torch.from_numpy(z[k]) for k in z.files})
    return events


def score(val: list[dict], outputs: list[tuple[torch.Tensor, torch.Tensor]], clustering: dict,
          t_betas: list[float], t_ds: list[float], position_scale: float | None) -> dict:
    """Best PQ (with mIoU, SQ, RQ) over the threshold grid, clustering as the checkpoint
    but with the detector term ``position_scale`` (None: none)."""
    best: dict = {}
    for tb, td in itertools.product(t_betas, t_ds):
        ev = ClusteringEvaluator()
        for e, (x, beta) in zip(val, outputs):
            cid = condense_outputs(beta, x, None, t_beta=tb, t_d=td,
                                   assign=clustering.get("assign", "first"),
                                   r_max=clustering.get("r_max"), positions=e["positions"],
                                   attach_r=clustering.get("attach_r"),
                                   attach_passes=int(clustering.get("attach_passes", 1)),
                                   xyz=e["xyz"], position_scale=position_scale)
            ev.add(e["target"].numpy(), cid.numpy(), e["energy"].numpy())
        r = ev.result()
        row = {"t_beta": tb, "t_d": td, **{k: round(float(r[k]), 4)
                                          for k in ("pq", "miou", "sq", "rq")}}
        print(row, flush=True)
        if not best or row["pq"] > best["pq"]:
            best = row
    return best


class Head(nn.Module):
    """MLP readout ``z -> (x [N, D], beta [N])``; with ``anchor`` [cm per unit] the first
    three coordinates are offsets from the hit's projected position."""

    def __init__(self, cin: int, hidden: int, dim: int, anchor: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                                 nn.ReLU(), nn.Linear(hidden, dim + 1))
        self.dim, self.anchor = dim, anchor

    def forward(self, z: torch.Tensor,
                positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.net(z)
        x = o[:, :self.dim]
        if self.anchor > 0:
            x = torch.cat([x[:, :3] + positions / self.anchor, x[:, 3:]], 1)
        return x, torch.sigmoid(o[:, self.dim])


def head(args: argparse.Namespace, clustering: dict) -> dict:
    """Train a fresh readout (or score the network's own) and print its best PQ."""
    val = load(args.val, args.val_events)
    grid = ([float(t) for t in args.t_beta.split(",")], [float(t) for t in args.t_d.split(",")],
            args.position_scale)
    if args.shipped:
        return score(val, [(e["coords"], e["beta"]) for e in val], clustering, *grid)
    train = load(args.train, args.train_events)
    net = Head(train[0]["z"].shape[1], args.hidden, args.dim, args.anchor)
    loss_fn = CondensationLoss(q_min=0.1, weight_beta=True, r_local=10.0)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.05)
    rng = np.random.default_rng(args.seed)
    t0, log = time.time(), []
    for step in range(args.steps):
        es = [train[i] for i in rng.choice(len(train), args.batch, replace=False)]
        cat = {k: torch.cat([e[k] for e in es]) for k in ("z", "positions", "target", "weight")}
        batch = torch.cat([torch.full((len(e["target"]),), j) for j, e in enumerate(es)])
        x, beta = net(cat["z"].float(), cat["positions"])
        if args.train_position_scale:  # the loss in the coordinates the clustering will use
            x = with_detector_term(x, cat["positions"], args.train_position_scale)
        terms = loss_fn(beta, x, cat["target"], batch, weights=cat["weight"],
                        positions=cat["positions"])
        opt.zero_grad()
        terms["loss"].backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        log.append([float(terms[k].detach()) for k in ("loss", "attractive", "repulsive",
                                                      "coward", "noise")])
        if (step + 1) % 100 == 0:
            m = np.mean(log[-100:], 0)
            print(f"step {step + 1}: loss {m[0]:.4f} (attractive {m[1]:.4f}, repulsive "
                  f"{m[2]:.4f}, coward {m[3]:.4f}, noise {m[4]:.4f}), {time.time() - t0:.0f} s",
                  flush=True)
    with torch.no_grad():
        outs = [net(e["z"].float(), e["positions"]) for e in val]
    return score(val, outs, clustering, *grid)


def edges(e: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbour pairs (each hit to its :data:`K_EDGE` nearest in x, y, z), their features
    and their label (1: both hits of the same truth shower)."""
    xyz = e["xyz"].numpy()
    _, nb = cKDTree(xyz).query(xyz, K_EDGE + 1)
    src = torch.from_numpy(np.repeat(np.arange(len(xyz)), K_EDGE))
    dst = torch.from_numpy(nb[:, 1:].reshape(-1))
    z = e["z"].float()
    log_e = (torch.log(e["energy"].clamp(min=1e-6) / 1e-3) / 3.0)[:, None]
    d = (e["xyz"][dst] - e["xyz"][src]) / 5.0
    feats = torch.cat([z[src], z[dst], d, d.norm(dim=1, keepdim=True), log_e[src], log_e[dst]], 1)
    t = e["target"]
    same = (t[src] == t[dst]) & (t[src] >= 0)
    signal = (t[src] >= 0) & (t[dst] >= 0)
    return feats, same.float(), signal


def edge(args: argparse.Namespace) -> dict:
    """Train the same-shower classifier; print the kept fractions of neighbour pairs of the
    same and of different showers at three thresholds, and the ROC AUC."""
    train = load(args.train, args.train_events)
    val = load(args.val, args.val_events)
    net = nn.Sequential(nn.Linear(2 * train[0]["z"].shape[1] + 6, 96), nn.ReLU(),
                        nn.Linear(96, 64), nn.ReLU(), nn.Linear(64, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps,
                                                pct_start=0.05)
    bce = nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(args.seed)
    for step in range(args.steps):
        feats, label, _ = edges(train[rng.integers(len(train))])
        loss = bce(net(feats).squeeze(1), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if (step + 1) % 200 == 0:
            print(f"step {step + 1}: BCE {float(loss.detach()):.4f}", flush=True)
    same_p, cross_p = [], []
    with torch.no_grad():
        for e in val:
            feats, label, signal = edges(e)
            p = torch.sigmoid(net(feats).squeeze(1))
            same_p.append(p[signal & (label > 0)])
            cross_p.append(p[signal & (label == 0)])
    s, c = torch.cat(same_p).numpy(), torch.cat(cross_p).numpy()
    ranks = np.argsort(np.argsort(np.concatenate([c, s]))) + 1
    auc = (ranks[len(c):].sum() - len(s) * (len(s) + 1) / 2) / (len(s) * len(c))
    out = {"signal_pairs_same": len(s), "signal_pairs_cross": len(c), "auc": round(float(auc), 4)}
    for th in (0.5, 0.7, 0.9):
        out[f"kept_same@{th}"] = round(float((s > th).mean()), 4)
        out[f"kept_cross@{th}"] = round(float((c > th).mean()), 4)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=("cache", "head", "edge"))
    p.add_argument("--model", default="src/caloreco/pretrained/spvcnn_dtau.pt")
    p.add_argument("--data", help="cache: event shards")
    p.add_argument("--out", help="cache: folder of the cached events")
    p.add_argument("--events", type=int, default=400, help="cache: events to cache")
    p.add_argument("--train", help="head/edge: cached training events")
    p.add_argument("--val", help="head/edge: cached validation events")
    p.add_argument("--train-events", type=int, default=400)
    p.add_argument("--val-events", type=int, default=100)
    p.add_argument("--shipped", action="store_true", help="head: score the network's own head")
    p.add_argument("--position-scale", type=float, default=None,
                   help="head: score with the detector term of this scale [cm] (default none)")
    p.add_argument("--anchor", type=float, default=0.0,
                   help="head: anchor 3 coordinates at projected position / ANCHOR [cm]; 0: off")
    p.add_argument("--train-position-scale", type=float, default=None,
                   help="head: compute the loss in the coordinates extended by the detector "
                        "term of this scale [cm] (default: the plain coordinates)")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=4, help="head: events per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--dim", type=int, default=5, help="head: clustering-space dimension")
    p.add_argument("--t-beta", default="0.6,0.8,0.875,0.9")
    p.add_argument("--t-d", default="0.5,0.7,0.8,0.9,1.0")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    if args.step == "cache":
        if not (args.data and args.out):
            p.error("cache needs --data and --out")
        cache(args)
        return
    if not args.val or (args.train is None and not (args.step == "head" and args.shipped)):
        p.error(f"{args.step} needs --val (and --train unless --shipped)")
    clustering = load_checkpoint(args.model).clustering
    result = head(args, clustering) if args.step == "head" else edge(args)
    print(f"result: {result}")


if __name__ == "__main__":
    main()
