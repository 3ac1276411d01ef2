"""Where SPVCNN inference spends its time: torch.profiler over prepare + network + clustering.

Profiles the three stages of one pass separately - prepare (voxelisation, kernel and point
maps), network, clustering (with the checkpoint's thresholds, rule, locality cut and
left-over attachment) - for B distinct events of ``--hits`` hits, and prints per stage its
total and the operators with the largest self time (device time on CUDA, CPU time
otherwise); ``--trace`` writes a Chrome trace per stage.

Run: ``python benchmarks/profile_spvcnn.py --device cuda --batch 16 [--model CKPT] [--amp]``.
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from caloreco.clustering.model_clustering import hit_xyz
from caloreco.models.encoding import HitEncoding
from caloreco.models.registry import build_model
from caloreco.simulation.production import DatasetSpec, simulate_range

import bench_spvcnn  # noqa: E402  (benchmarks/ is the script's directory)
from bench_spvcnn import cluster, make_event, network_outputs  # noqa: E402


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
    p.add_argument("--trace", default=None, help="Chrome traces TRACE.<stage>.json")
    args = p.parse_args()
    device = torch.device(args.device)
    enc = HitEncoding()
    clustering = bench_spvcnn.THRESHOLDS  # the clustering stage of bench_spvcnn, configured here
    if args.model:
        from caloreco.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.model)
        model, enc = ckpt.build(device)
        clustering.update({k: ckpt.clustering[k] for k in clustering if k in ckpt.clustering})
        bench_spvcnn.ATTACH.update({k: ckpt.clustering[k] for k in bench_spvcnn.ATTACH
                                    if k in ckpt.clustering})
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
    pos = (torch.from_numpy(np.concatenate([enc.projected_positions(h) for h in events])).to(device)
           if bench_spvcnn.uses_positions() else None)
    xyz = torch.from_numpy(np.concatenate([hit_xyz(h) for h in events])).to(device)
    print(f"clustering: {clustering}, {bench_spvcnn.ATTACH}")

    def stages() -> dict[str, Callable[[], Any]]:
        """The three stages of one pass, each a closure over the previous one's output."""
        state: dict[str, Any] = {}

        def prepare() -> None:
            state["mgr"] = model.prepare(pts, batch)
            model.build_maps(state["mgr"])

        def network() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
                state["out"] = model.run(feats, state["mgr"])

        def clustering_stage() -> None:
            coords, beta, signal = network_outputs(model, state["out"])
            cluster(beta, coords, batch, pos, xyz, signal)

        return {"prepare": prepare, "network": network, "clustering": clustering_stage}

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with torch.no_grad():
        for _ in range(2):  # warm-up: allocator, Triton compilation
            for fn in stages().values():
                fn()
        profs = {}
        for name, fn in stages().items():  # one profile per stage: operators by stage
            with profile(activities=activities) as prof:
                fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
            profs[name] = prof
    for name, prof in profs.items():
        total = sum(getattr(e, key) for e in prof.key_averages()) / 1e3
        print(f"== {name}: {total:.1f} ms {key.replace('_total', '')} ==")
        print(prof.key_averages().table(sort_by=key, row_limit=args.rows))
    if args.trace:
        for name, prof in profs.items():
            prof.export_chrome_trace(f"{args.trace}.{name}.json")


if __name__ == "__main__":
    main()
