"""Fine-tuning probe: does an extra loss term, trained into the whole network, raise PQ?

Fine-tunes every weight of the shipped SPVCNN (dtau) on the training events in file order,
one event per step at a constant learning rate, with the shipped loss (object condensation
with the local repulsion of the shipped training, ``r_local`` 10 cm, plus the signal
head's cross-entropy) and optionally the neighbour contrastive term
(:mod:`caloreco.losses.contrastive`, weight ``--contrast``). A run with ``--contrast 0`` is
the control: same events, same order, same seed. Each checkpoint is then scored on
validation events with ``benchmarks/select_thresholds.py`` (commands in docs/benchmarks.md,
"Neighbour contrastive term").

Run: ``OMP_NUM_THREADS=1 python benchmarks/finetune_probe.py --data runs/data/train
--contrast 0.5 --steps 1600 --out runs/ft/contrast.pt`` (about 40 min on one CPU thread).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from caloreco.losses.condensation import CondensationLoss
from caloreco.losses.contrastive import contrastive_loss
from caloreco.losses.signal import signal_loss
from caloreco.models.registry import named_outputs
from caloreco.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from caloreco.training.data import EncodedEvents, collate


def _save(ck: Checkpoint, model: torch.nn.Module, path: str) -> None:
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    save_checkpoint(dataclasses.replace(ck, state_dict=state), path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="src/caloreco/pretrained/spvcnn_dtau.pt")
    p.add_argument("--data", required=True, help="training shards")
    p.add_argument("--out", required=True, help="checkpoint written every 200 steps and at the end")
    p.add_argument("--contrast", type=float, default=0.0, help="weight of the contrastive term")
    p.add_argument("--k", type=int, default=16, help="detector neighbours per signal hit")
    p.add_argument("--margin", type=float, default=1.0)
    p.add_argument("--steps", type=int, default=1600)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    ck = load_checkpoint(a.model)
    model, enc = ck.build("cpu")
    model.train()
    if not ck.model_config.get("signal_head"):
        raise SystemExit(f"{a.model}: the probe expects a model with a signal head")
    events = EncodedEvents(a.data, enc)
    oc = CondensationLoss(q_min=0.1, s_b=1.0, weight_beta=True, repulsion="hits", r_local=10.0)
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    log: list[tuple[float, float, float]] = []
    t0 = time.perf_counter()
    for step in range(1, a.steps + 1):
        b = collate([events[(step - 1) % len(events)]])
        outs = named_outputs(model, model(b["features"], b["points"], b["batch"]))
        oc_loss = oc(outs["beta"], outs["coords"], b["target"], b["batch"], weights=b["weight"],
                     positions=b["positions"])["loss"]
        c = contrastive_loss(outs["coords"], b["target"], b["positions"], b["batch"], k=a.k,
                             margin=a.margin)
        loss = oc_loss + signal_loss(outs["signal"], b["target"], b["batch"])
        if a.contrast > 0:
            loss = loss + a.contrast * (c["contrast_same"] + c["contrast_other"])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        log.append((float(oc_loss), float(c["contrast_same"]), float(c["contrast_other"])))
        if step % 50 == 0:
            m = np.mean(log[-50:], axis=0)
            print(f"step {step}  condensation {m[0]:.4f}  contrast same {m[1]:.4f} "
                  f"other {m[2]:.4f}  {time.perf_counter() - t0:.0f} s", flush=True)
        if step % 200 == 0:
            _save(ck, model, a.out)
    _save(ck, model, a.out)
    print(f"saved {a.out} after {a.steps} steps")


if __name__ == "__main__":
    main()
