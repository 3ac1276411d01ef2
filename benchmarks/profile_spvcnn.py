"""Where SPVCNN inference spends its time: torch.profiler over prepare + network + clustering.

Prints the operators with the largest self time (device time on CUDA, CPU time otherwise)
for B distinct events of ``--hits`` hits, and writes a Chrome trace with ``--trace``.

Run: ``python benchmarks/profile_spvcnn.py --device cuda --batch 16 [--model CKPT] [--amp]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from caloreco.clustering.condensation import condensation_clustering
from caloreco.models.encoding import HitEncoding
from caloreco.models.registry import build_model
from caloreco.simulation.production import DatasetSpec, simulate_range

from bench_spvcnn import make_event  # noqa: E402  (benchmarks/ is the script's directory)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None)
    p.add_argument("--cr", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--hits", type=int, default=20000)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--rows", type=int, default=30)
    p.add_argument("--algorithm", default="auto", choices=["auto", "scatter", "gemm", "triton"],
                   help="sparse convolution algorithm (overrides the checkpoint's)")
    p.add_argument("--trace", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    enc = HitEncoding()
    if args.model:
        from caloreco.training.checkpoint import load_checkpoint

        model, enc = load_checkpoint(args.model).build(device)
    else:
        model = build_model("spvcnn", {"in_features": enc.n_features, "cr": args.cr}).to(device)
    model.eval()
    from caloreco.sparse import Conv3d

    for m in model.modules():
        if isinstance(m, Conv3d):
            m.algorithm = args.algorithm
    base = simulate_range(DatasetSpec(preset="dtau", n_events=12, seed=4242), 0, 12)
    events = [make_event(base, args.hits, 1000 + i) for i in range(args.batch)]
    feats = torch.from_numpy(np.concatenate([enc.features(h) for h in events])).to(device)
    pts = torch.from_numpy(np.concatenate([enc.points(h) for h in events])).to(device)
    batch = torch.repeat_interleave(torch.arange(args.batch), args.hits).to(device)

    def once() -> None:
        mgr = model.prepare(pts, batch)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
            coords, beta = model.run(feats, mgr)[:2]
        condensation_clustering(beta.float(), coords.float(), batch, t_beta=0.1, t_d=0.7)

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.no_grad():
        once()
        once()
        with profile(activities=activities) as prof:
            once()
            if device.type == "cuda":
                torch.cuda.synchronize()
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=args.rows))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if args.trace:
        prof.export_chrome_trace(args.trace)


if __name__ == "__main__":
    main()
