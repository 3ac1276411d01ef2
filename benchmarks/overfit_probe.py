"""Capacity probe: does a lower object-condensation loss give a higher PQ?

Fine-tunes every weight of a clustering checkpoint on a few training events, many passes
over the same events, and reports the loss together with the PQ / mIoU of the checkpoint's
own clustering (thresholds, cut, attachment) on those same events (what the network can
memorise) and on validation events (what generalises). If PQ on the memorised events
stays far below the target while the loss falls, the loss-plus-clustering, not the
training budget, bounds PQ.

Run: ``OMP_NUM_THREADS=2 python benchmarks/overfit_probe.py --train runs/data/train
--val runs/data/val --events 32 --steps 1800 --lr 5e-4`` (about 40 min on 2 CPU threads).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from caloreco.clustering.model_clustering import ModelClusterer
from caloreco.losses.condensation import CondensationLoss
from caloreco.metrics import ClusteringEvaluator
from caloreco.training.checkpoint import load_checkpoint
from caloreco.training.data import EncodedEvents, collate


def clustering_quality(clusterer: ModelClusterer, events: list[dict]) -> tuple[float, float]:
    """PQ and mIoU of ``clusterer`` (the checkpoint's clustering of its training model) on
    encoded ``events``; the model is left in training mode."""
    clusterer.model.eval()
    ev = ClusteringEvaluator()
    with torch.no_grad():
        for item in events:
            b = collate([item])
            cid = clusterer.predict_tensors(b["features"], b["points"], b["batch"],
                                            b["positions"], b["xyz"])[0]
            ev.add(b["target"].numpy(), cid.numpy(), b["energy"].numpy())
    clusterer.model.train()
    r = ev.result()
    return float(r["pq"]), float(r["miou"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="src/caloreco/pretrained/spvcnn_dtau.pt")
    p.add_argument("--train", required=True, help="training shards (the first --events)")
    p.add_argument("--val", required=True, help="validation shards (the first --val-events)")
    p.add_argument("--events", type=int, default=32)
    p.add_argument("--val-events", type=int, default=20)
    p.add_argument("--steps", type=int, default=1800)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--eval-every", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    ck = load_checkpoint(a.model)
    model, enc = ck.build("cpu")
    clusterer = ModelClusterer(model, enc, **ck.clustering)  # the checkpoint's own clustering
    model.train()
    tr_set, va_set = EncodedEvents(a.train, enc), EncodedEvents(a.val, enc)
    train = [tr_set[i] for i in range(min(a.events, len(tr_set)))]
    val = [va_set[i] for i in range(min(a.val_events, len(va_set)))]
    cfg = ck.training["config"]  # the checkpoint's own loss settings
    loss_fn = CondensationLoss(q_min=cfg.get("q_min", 0.1), s_b=cfg.get("s_b", 1.0),
                               weight_beta=True, repulsion=cfg.get("repulsion", "hits"),
                               r_local=cfg.get("r_local"), **cfg.get("loss_weights", {}))
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(a.seed)

    def report(step: int, loss: float) -> None:
        pq_t, miou_t = clustering_quality(clusterer, train)
        pq_v, miou_v = clustering_quality(clusterer, val)
        print(f"step {step:5d}  loss {loss:.4f}  memorised PQ {pq_t:.3f} mIoU {miou_t:.3f}  "
              f"validation PQ {pq_v:.3f} mIoU {miou_v:.3f}", flush=True)

    report(0, float("nan"))
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        b = collate([train[int(torch.randint(len(train), (1,), generator=gen))]])
        coords, beta = model(b["features"], b["points"], b["batch"])[:2]
        loss = loss_fn(beta, coords, b["target"], b["batch"], weights=b["weight"],
                       positions=b["positions"])["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step % a.eval_every == 0 or step == a.steps:
            report(step, float(np.mean(losses[-a.eval_every:])))
    print(f"{a.steps} steps in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
