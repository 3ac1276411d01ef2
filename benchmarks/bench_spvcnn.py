"""SPVCNN inference and training throughput versus hits per event, split by stage.

Events of 1k, 5k, 20k and 100k hits are made from simulated dtau events (sub-sampled or
overlaid, so the voxel occupancy is that of real events). For each size and device:

* prepare: hit encoding + voxelisation + every kernel and point map (``build_maps``),
* network: the SPVCNN forward on the prepared maps,
* clustering: condensation clustering with the checkpoint's thresholds, rule, locality cut
  and left-over attachment (t_beta 0.1, t_d 0.7, first rule, neither for an untrained
  model); beside it, as the same-run baseline, Kieseler's rule with the same t_beta and
  t_d, no cut and no attachment ("plain"),

with events/s and hits/s; training steps/s (forward + loss + backward + AdamW) at 5k and
20k hits, beside the same step with plain autograd gathers (contended ``index_add``
backwards, :mod:`caloreco.sparse.gather_grad`). Baselines measured in the same run: dense
float32 matmul throughput (GFLOP/s), against which the network's arithmetic (counted per
layer from the kernel maps) gives the distance to the arithmetic floor, and one 3x3x3
submanifold layer, ours (gather-scatter and gather-GEMM) against spconv on one CPU thread
(where it is correct) when installed.

With ``--batch-sizes 1,4,16,64`` it also measures batched inference of distinct
``--batch-hits``-hit events (B events per network call, as a server's dynamic batcher or
``caloreco cluster --batch-size`` sends them): host encoding, then transfer + prepare +
network + clustering, in float32 and (``--amp``, CUDA) bfloat16 autocast.

Run: ``OMP_NUM_THREADS=1 python benchmarks/bench_spvcnn.py [--model CKPT] [--device cuda]
[--sizes 1000,5000,20000,100000] [--repeat 3] [--batch-sizes 1,4,16,64] [--amp]
[--json out.json]``. Quiet machines only.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

import caloreco.sparse.functional as sfn
import caloreco.sparse.gather_grad as gather_grad
from caloreco.clustering.condensation import condensation_clustering
from caloreco.clustering.model_clustering import condense_outputs, hit_xyz, stage_arrays
from caloreco.data.event import Event
from caloreco.models.encoding import HitEncoding
from caloreco.models.registry import build_model, named_outputs
from caloreco.simulation.production import DatasetSpec, simulate_range
from caloreco.training.data import cluster_weights


#: Condensation thresholds of the clustering stage: the checkpoint's when one is given.
THRESHOLDS: dict[str, Any] = {"t_beta": 0.1, "t_d": 0.7, "assign": "first", "r_max": None,
                              "position_scale": None}
#: Left-over attachment (and its signal threshold) of the clustering stage: the
#: checkpoint's when one is given.
ATTACH: dict[str, Any] = {"attach_r": None, "attach_passes": 1, "t_signal": None}


def uses_positions() -> bool:
    """Whether the clustering stage reads the hits' projected positions (locality cut or
    detector term)."""
    return THRESHOLDS["r_max"] is not None or THRESHOLDS["position_scale"] is not None


def cluster(beta: torch.Tensor, coords: torch.Tensor, batch: torch.Tensor | None,
            pos: torch.Tensor | None, xyz: torch.Tensor | None,
            signal: torch.Tensor | None = None) -> torch.Tensor:
    """The clustering stage: condensation with :data:`THRESHOLDS`, then the attachment
    (of the hits whose ``signal`` reaches ``t_signal`` when the model has a signal head)."""
    return condense_outputs(beta, coords, batch, **THRESHOLDS, positions=pos, **ATTACH, xyz=xyz,
                            signal=signal)


def network_outputs(model: torch.nn.Module, out: tuple[torch.Tensor, ...]
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(coords, beta, signal or None)`` of a network's output tuple, float32."""
    named = named_outputs(model, out)
    signal = named.get("signal")
    return (named["coords"].float(), named["beta"].float(),
            None if signal is None else signal.float())


def make_event(base: list[Event], n_hits: int, seed: int) -> dict[str, np.ndarray]:
    """Hit columns of an event with ``n_hits`` hits, sub-sampled from / overlaid of dtau events."""
    rng = np.random.default_rng(seed)
    cols = ("energy", "x", "y", "z", "layer", "time", "cell_type", "truth_cluster")
    pool: dict[str, list[np.ndarray]] = {c: [] for c in cols}
    total, k = 0, 0
    while total < n_hits:
        ev = base[k % len(base)]
        shift = 0 if k == 0 else 1000 * k  # keep truth ids distinct across overlaid events
        for c in cols:
            v = ev.hits[c]
            pool[c].append(np.where(v >= 0, v + shift, v) if c == "truth_cluster" else v)
        total += ev.n_hits
        k += 1
    hits = {c: np.concatenate(v) for c, v in pool.items()}
    keep = np.sort(rng.choice(total, n_hits, replace=False))
    return {c: v[keep] for c, v in hits.items()}


class FlopCounter:
    """Counts multiply-adds of sparse convolutions (pairs that exist) and linear layers."""

    def __init__(self) -> None:
        self.sparse = 0.0
        self.gemm = 0.0  # what the gather-GEMM form computes (all K offsets per output)
        self.dense = 0.0

    @contextmanager
    def count(self, model: torch.nn.Module) -> Iterator["FlopCounter"]:
        orig = sfn.sparse_conv

        def counting(feats, kmap, weight, *, algorithm="scatter"):  # type: ignore[no-untyped-def]
            vol, cin, cout = weight.shape
            if kmap.parent is not None:
                pairs, rows = kmap.parent.numel(), kmap.parent.numel()
            else:
                pairs, rows = int((kmap.nbr < feats.shape[0]).sum()), kmap.nbr.shape[0] * vol
            self.sparse += 2.0 * pairs * cin * cout
            self.gemm += 2.0 * rows * cin * cout
            return orig(feats, kmap, weight, algorithm=algorithm)

        hooks = []
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                hooks.append(m.register_forward_hook(
                    lambda mod, inp, out: setattr(self, "dense", self.dense + 2.0 * inp[0].shape[0]
                                                  * mod.in_features * mod.out_features)))
            if hasattr(m, "weight") and m.__class__.__name__ == "Conv3d" and m.kernel_size == 1:
                hooks.append(m.register_forward_hook(
                    lambda mod, inp, out: setattr(self, "dense", self.dense + 2.0 * inp[0].feats.shape[0]
                                                  * mod.in_channels * mod.out_channels)))
        import caloreco.sparse.nn as snn

        snn.F.sparse_conv = counting
        try:
            yield self
        finally:
            snn.F.sparse_conv = orig
            for h in hooks:
                h.remove()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeat: int) -> tuple[float, Any]:  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        sync(device)
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best, out


def matmul_gflops(device: torch.device, n: int = 1024, repeat: int = 5) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    dt, _ = timed(lambda: a @ b, device, repeat)
    return 2 * n ** 3 / dt / 1e9


def bench_layer(hits: dict[str, np.ndarray], enc: HitEncoding, channels: int, repeat: int) -> dict[str, float]:
    """One 3x3x3 submanifold layer on the stride-1 voxels, ours vs spconv (1 thread)."""
    from caloreco.sparse import Conv3d, SparseTensor, voxelize
    from caloreco.sparse.spconv_backend import SpconvConv3d, spconv_available

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pts = torch.from_numpy(enc.points(hits))
        mgr, _ = voxelize(pts, torch.zeros(len(pts), dtype=torch.long))
        x = SparseTensor(torch.randn(mgr.n_voxels(1), channels), 1, mgr)
        out: dict[str, float] = {"voxels": mgr.n_voxels(1)}
        t_map, _ = timed(lambda: __import__("caloreco.sparse.kernel_map", fromlist=["x"]).submanifold_map(
            mgr.coords(1), mgr.keys(1), 1, 3), torch.device("cpu"), repeat)
        out["kernel_map_ms"] = 1e3 * t_map
        conv = Conv3d(channels, channels, 3)
        with torch.no_grad():
            conv(x)
            for alg in ("scatter", "gemm"):
                conv.algorithm = alg
                out[f"ours_{alg}_ms"] = 1e3 * timed(lambda: conv(x), torch.device("cpu"), repeat)[0]
            if spconv_available():
                sp = SpconvConv3d(channels, channels, 3)
                sp.load_caloreco_weight(conv.weight)
                sp(x)
                out["spconv_1thread_ms"] = 1e3 * timed(lambda: sp(x), torch.device("cpu"), repeat)[0]
        return out
    finally:
        torch.set_num_threads(threads)


def bench_batches(model: torch.nn.Module, enc: HitEncoding, base: list[Event], n_hits: int,
                  batch_sizes: list[int], device: torch.device, repeat: int,
                  amp: bool) -> list[dict[str, float]]:
    """Events/s for B distinct ``n_hits``-hit events per call, per stage."""
    rows = []
    events = [make_event(base, n_hits, 1000 + i) for i in range(max(batch_sizes))]
    for bs in batch_sizes:
        chunk = events[:bs]
        # host side as ModelClusterer.cluster_events does it: encode, concatenate into
        # page-locked memory for CUDA (stage_arrays)
        t0 = time.perf_counter()
        feats = stage_arrays([enc.features(h) for h in chunk], device)
        pts = stage_arrays([enc.points(h) for h in chunk], device)
        pos = (stage_arrays([enc.projected_positions(h) for h in chunk], device)
               if uses_positions() else None)
        xyz = stage_arrays([hit_xyz(h) for h in chunk], device)
        t_enc = time.perf_counter() - t0
        for use_amp in ([False, True] if amp and device.type == "cuda" else [False]):
            def run() -> tuple[float, float, float]:
                sync(device)
                t0 = time.perf_counter()
                f = feats.to(device, non_blocking=True)
                b = torch.arange(bs, device=device).repeat_interleave(n_hits)
                mgr = model.prepare(pts.to(device, non_blocking=True), b)
                model.build_maps(mgr)
                sync(device)
                t1 = time.perf_counter()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                    out = model.run(f, mgr)
                sync(device)
                t2 = time.perf_counter()
                coords, beta, signal = network_outputs(model, out)
                cluster(beta, coords, b, None if pos is None else pos.to(device),
                        xyz.to(device), signal)
                sync(device)
                return t1 - t0, t2 - t1, time.perf_counter() - t2

            with torch.no_grad():
                run()  # warm-up (allocator, cuBLAS handles)
                best = min((run() for _ in range(repeat)), key=sum)
            total = sum(best)
            row = {"batch": bs, "hits_per_event": n_hits, "bf16": use_amp,
                   "encode_ms_per_event": 1e3 * t_enc / bs,
                   "prepare_ms": 1e3 * best[0], "network_ms": 1e3 * best[1],
                   "clustering_ms": 1e3 * best[2], "events_per_s": bs / total,
                   "hits_per_s": bs * n_hits / total,
                   "events_per_s_with_encoding": bs / (total + t_enc)}
            rows.append(row)
            print(f"{bs:>5} {'bf16' if use_amp else 'fp32':>5} {row['encode_ms_per_event']:>9.2f} "
                  f"{row['prepare_ms']:>10.2f} {row['network_ms']:>10.2f} {row['clustering_ms']:>10.2f} "
                  f"{row['events_per_s']:>9.1f} {row['hits_per_s'] / 1e6:>8.2f} "
                  f"{row['events_per_s_with_encoding']:>9.1f}")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=None, help="checkpoint (default: untrained SPVCNN, cr 0.5)")
    p.add_argument("--cr", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--sizes", default="1000,5000,20000,100000")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--train-sizes", default="5000,20000")
    p.add_argument("--batch-sizes", default="", help="e.g. 1,4,16,64: batched inference")
    p.add_argument("--batch-hits", type=int, default=20000, help="hits per event when batching")
    p.add_argument("--amp", action="store_true", help="also bfloat16 autocast (CUDA)")
    p.add_argument("--algorithm", default="auto", choices=["auto", "scatter", "gemm"],
                   help="sparse convolution algorithm (overrides the checkpoint's)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    enc = HitEncoding()
    if args.model:
        from caloreco.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.model)
        model, enc = ckpt.build(device)
        THRESHOLDS.update({k: ckpt.clustering[k] for k in THRESHOLDS if k in ckpt.clustering})
        ATTACH.update({k: ckpt.clustering[k] for k in ATTACH if k in ckpt.clustering})
        label = f"{args.model} (cr {ckpt.model_config.get('cr')})"
    else:
        model = build_model("spvcnn", {"in_features": enc.n_features, "cr": args.cr}).to(device).eval()
        label = f"untrained SPVCNN cr {args.cr}"
    from caloreco.sparse import Conv3d

    for m in model.modules():
        if isinstance(m, Conv3d):
            m.algorithm = args.algorithm
    label += f", algorithm {args.algorithm}"
    base = simulate_range(DatasetSpec(preset="dtau", n_events=12, seed=4242), 0, 12)
    sizes = [int(s) for s in args.sizes.split(",")]
    gflops = matmul_gflops(device)
    print(f"model: {label}; device {device}; torch threads {torch.get_num_threads()}")
    print(f"baseline: dense 1024^2 float32 matmul {gflops:.1f} GFLOP/s")
    results: dict[str, Any] = {"device": str(device), "threads": torch.get_num_threads(),
                               "model": label, "matmul_gflops": gflops, "inference": [],
                               "training": [], "layer": None}
    print(f"clustering: {THRESHOLDS}, {ATTACH}")
    print(f"{'hits':>7} {'voxels':>7} {'prepare ms':>10} {'network ms':>10} {'cluster ms':>10} "
          f"{'plain ms':>8} {'total ms':>9} {'events/s':>8} {'Mhits/s':>8} {'GFLOP':>7} {'GFLOP/s':>8} {'% of matmul':>11}")
    for n in sizes:
        hits = make_event(base, n, n)
        feats = torch.from_numpy(enc.features(hits)).to(device)
        pts = torch.from_numpy(enc.points(hits)).to(device)
        batch = torch.zeros(n, dtype=torch.long, device=device)
        with torch.no_grad():
            def prep():
                f = torch.from_numpy(enc.features(hits)).to(device)
                mgr = model.prepare(torch.from_numpy(enc.points(hits)).to(device), batch)
                model.build_maps(mgr)
                return f, mgr

            t_prep, (f, mgr) = timed(prep, device, args.repeat)
            model.run(f, mgr)  # warm-up (pair lists are cached per manager, as in real use)
            t_net, out = timed(lambda: model.run(f, mgr), device, args.repeat)
            coords, beta, signal = network_outputs(model, out)
            pos = (torch.from_numpy(enc.projected_positions(hits)).to(device)
                   if uses_positions() else None)
            xyz = torch.from_numpy(hit_xyz(hits)).to(device)
            t_cl, _ = timed(lambda: cluster(beta, coords, None, pos, xyz, signal), device,
                            args.repeat)
            t_plain, _ = timed(lambda: condensation_clustering(
                beta, coords, t_beta=THRESHOLDS["t_beta"], t_d=THRESHOLDS["t_d"]),
                device, args.repeat)
            counter = FlopCounter()
            with counter.count(model):
                model.run(f, model.prepare(pts, batch))
        total = t_prep + t_net + t_cl
        flops = counter.sparse + counter.dense
        row = {"hits": n, "voxels": mgr.n_voxels(1), "prepare_ms": 1e3 * t_prep,
               "network_ms": 1e3 * t_net, "clustering_ms": 1e3 * t_cl,
               "clustering_plain_ms": 1e3 * t_plain, "events_per_s": 1 / total,
               "hits_per_s": n / total, "gflop": flops / 1e9, "gflop_gemm_form": (counter.gemm + counter.dense) / 1e9,
               "network_gflops": flops / t_net / 1e9}
        results["inference"].append(row)
        print(f"{n:>7} {row['voxels']:>7} {row['prepare_ms']:>10.1f} {row['network_ms']:>10.1f} "
              f"{row['clustering_ms']:>10.1f} {row['clustering_plain_ms']:>8.1f} {1e3 * total:>9.1f} {row['events_per_s']:>8.2f} "
              f"{n / total / 1e6:>8.3f} {row['gflop']:>7.2f} {row['network_gflops']:>8.1f} "
              f"{100 * row['network_gflops'] / gflops:>10.0f}%")
    if args.batch_sizes:
        print(f"batched inference, {args.batch_hits} hits per event (prepare/network/cluster: "
              "ms per call; encode: host ms per event)")
        print(f"{'batch':>5} {'dtype':>5} {'encode ms':>9} {'prepare ms':>10} {'network ms':>10} "
              f"{'cluster ms':>10} {'events/s':>9} {'Mhits/s':>8} {'+encode':>9}")
        results["batched"] = bench_batches(
            model, enc, base, args.batch_hits, [int(b) for b in args.batch_sizes.split(",")],
            device, args.repeat, args.amp)
    from caloreco.losses.condensation import CondensationLoss

    loss_fn = CondensationLoss(weight_beta=True)
    train_model = build_model("spvcnn", {**model.config.to_dict(), "algorithm": args.algorithm}
                              ).to(device).train()
    opt = torch.optim.AdamW(train_model.parameters(), lr=1e-4)
    for n in [int(s) for s in args.train_sizes.split(",") if s]:
        hits = make_event(base, n, n + 1)
        f = torch.from_numpy(enc.features(hits)).to(device)
        pts = torch.from_numpy(enc.points(hits)).to(device)
        tgt = torch.from_numpy(hits["truth_cluster"].astype(np.int64)).to(device)
        w = torch.from_numpy(cluster_weights(hits["truth_cluster"], hits["energy"].astype(np.float64))).to(device)
        batch = torch.zeros(n, dtype=torch.long, device=device)

        def step():
            coords, beta = train_model(f, pts, batch)[:2]
            loss = loss_fn(beta, coords, tgt, batch, weights=w)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()

        timing = {}
        for name, enabled in (("plain_backward", False), ("step", True)):
            gather_grad.ENABLED = enabled  # baseline: plain autograd gathers (index_add)
            step()
            timing[name], _ = timed(step, device, args.repeat)
        gather_grad.ENABLED = True
        dt = timing["step"]
        results["training"].append({"hits": n, "step_s": dt, "steps_per_s": 1 / dt,
                                    "plain_backward_step_s": timing["plain_backward"]})
        print(f"training step at {n} hits: {dt:.3f} s ({1 / dt:.2f} steps/s); with plain "
              f"autograd gathers {timing['plain_backward']:.3f} s "
              f"({dt / timing['plain_backward']:.2f}x)")
    if device.type == "cpu":
        layer = bench_layer(make_event(base, 20000, 7), enc, 32, args.repeat)
        results["layer"] = layer
        sp = f", spconv (1 thread) {layer['spconv_1thread_ms']:.1f} ms" if "spconv_1thread_ms" in layer else ", spconv not installed"
        print(f"one SubM 3x3x3 32->32 layer on {layer['voxels']} voxels (1 thread): kernel map "
              f"{layer['kernel_map_ms']:.1f} ms; ours gather-scatter {layer['ours_scatter_ms']:.1f} ms, "
              f"gather-GEMM {layer['ours_gemm_ms']:.1f} ms{sp}")
    if args.json:
        from caloreco.utils.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
